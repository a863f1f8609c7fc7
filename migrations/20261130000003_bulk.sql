-- Bulk rotations (POST /v1/rotations, `rotor rotate`): the credentials in the order they
-- rotate (a canary, then growing waves) and each wave's task once it has started. One
-- runner at a time moves every RUNNING bulk on; a restart resumes from these rows.
CREATE TABLE bulk_rotations (
    id             uuid PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('RUNNING', 'SUCCESSFUL', 'STOPPED', 'FAILED')),
    spec           jsonb NOT NULL,
    requested_by_kind text NOT NULL,
    requested_by_name text NOT NULL,
    credential_ids uuid[] NOT NULL,
    max_failures   integer NOT NULL CHECK (max_failures >= 0),
    max_failure_ratio double precision CHECK (max_failure_ratio > 0 AND max_failure_ratio <= 1),
    message        text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz
);
CREATE INDEX bulk_rotations_running ON bulk_rotations (created_at) WHERE status = 'RUNNING';

CREATE TABLE bulk_waves (
    bulk_id   uuid NOT NULL REFERENCES bulk_rotations (id) ON DELETE CASCADE,
    number    integer NOT NULL,
    first     integer NOT NULL,   -- index into credential_ids
    size      integer NOT NULL CHECK (size > 0),
    task_id   uuid REFERENCES tasks (id),
    -- Nothing left to rotate in it (its credentials or resource went away meanwhile).
    skipped   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (bulk_id, number)
);
