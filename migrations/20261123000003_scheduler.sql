-- Auto-rotation and heartbeat state per credential.
ALTER TABLE credentials
    -- `rotor credential pause`: kept out of auto-rotation until resumed.
    ADD COLUMN auto_paused boolean NOT NULL DEFAULT false,
    -- Consecutive failed auto-rotations; at scheduler.max_failures auto-rotation stops.
    ADD COLUMN auto_failures integer NOT NULL DEFAULT 0,
    -- The auto-rotation task in flight, if any (its next_rotation_at is cleared meanwhile).
    ADD COLUMN auto_task_id uuid,
    -- Last heartbeat: when the stored current password was last seen to log in (or not).
    ADD COLUMN heartbeat_at timestamptz;

CREATE INDEX credentials_heartbeat ON credentials (heartbeat_at NULLS FIRST);
CREATE INDEX subtasks_auto_not_before ON subtasks (not_before DESC) WHERE status = 'PENDING';
