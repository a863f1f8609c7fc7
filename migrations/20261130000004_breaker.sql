-- The scheduler's breaker: when too many of the recent auto-rotations failed, auto-rotation
-- pauses everywhere (scheduler.BREAKER_OPEN) until an operator resumes it.
CREATE TABLE scheduler_breaker (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    open       boolean NOT NULL DEFAULT false,
    opened_at  timestamptz,
    closed_at  timestamptz,
    reason     text NOT NULL DEFAULT ''
);
INSERT INTO scheduler_breaker (singleton) VALUES (true);

-- The breaker reads the subtasks that ended lately.
CREATE INDEX subtasks_completed ON subtasks (completed_at) WHERE completed_at IS NOT NULL;
