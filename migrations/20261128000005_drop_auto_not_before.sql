-- The catch-up spread's "latest planned start" reads subtasks_runnable backwards (its
-- first column is not_before); this second index on not_before only cost every subtask
-- written or finished an index entry (intake and the scheduler tick write thousands).
DROP INDEX IF EXISTS subtasks_auto_not_before;
