-- The due scan skips paused and OUT_OF_SYNC credentials; keep them out of the index too,
-- so that a tick costs the rows it can schedule, not every overdue row it must step over.
DROP INDEX credentials_due;
CREATE INDEX credentials_due ON credentials (next_rotation_at)
    WHERE next_rotation_at IS NOT NULL AND auto_rotate_days IS NOT NULL AND NOT auto_paused AND status = 'ACTIVE';
