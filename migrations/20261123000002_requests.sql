-- A password supplied in a request (UPDATE, REMEDIATE, PrivX set-password), encrypted
-- and bound to its subtask, kept until that subtask has stored it as a credential version.
CREATE TABLE subtask_secrets (
    subtask_id  uuid PRIMARY KEY REFERENCES subtasks (id) ON DELETE CASCADE,
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL
);

-- What a subtask was asked beyond its operation: {"reconcile": true} for REMEDIATE
-- without a password, {"enable": bool, "frequencyInDays": n} for UPDATE_AUTO_ROTATE_POLICY.
ALTER TABLE subtasks ADD COLUMN params jsonb NOT NULL DEFAULT '{}';

-- Tasks whose subtasks were cancelled before they started.
CREATE INDEX tasks_status ON tasks (status, created_at DESC);
