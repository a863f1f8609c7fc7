-- Only requests with an idempotency key need the uniqueness check: the scheduler's
-- auto-rotations and keyless HTTP requests (most tasks) no longer each add a NULL entry
-- to a unique index. Writers name the predicate in ON CONFLICT.
ALTER TABLE tasks DROP CONSTRAINT tasks_request_key_key;
CREATE UNIQUE INDEX tasks_request_key ON tasks (request_key) WHERE request_key IS NOT NULL;
