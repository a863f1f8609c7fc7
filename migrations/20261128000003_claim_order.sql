-- Workers take the runnable subtasks recorded together breadth-first: the first
-- credential of every task, then the second, ... A request per host naming all its
-- accounts then keeps every host busy to the end, instead of draining hosts one after
-- another and finishing on the last few at worker.per_host each.
DROP INDEX subtasks_runnable;
CREATE INDEX subtasks_runnable ON subtasks (not_before, seq, created_at) WHERE status IN ('PENDING', 'IN_PROGRESS');
