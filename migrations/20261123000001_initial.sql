-- rotor's system of record and its work queue.
-- Enumerations are stored as text (checked here, parsed with FromStr in Rust).

CREATE TABLE resources (
    id                            text PRIMARY KEY,
    name                          text NOT NULL,
    type                          text NOT NULL,
    address                       text NOT NULL,
    port                          integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    host_keys                     text[] NOT NULL DEFAULT '{}',
    insecure_accept_any_host_key  boolean NOT NULL DEFAULT false,
    platform                      text NOT NULL,
    policy                        text NOT NULL,
    admin_username                text,
    admin_private_key_file        text,
    admin_password_file           text,
    admin_sudo                    boolean NOT NULL DEFAULT false,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    id                uuid PRIMARY KEY,
    resource_id       text NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    username          text NOT NULL,
    account_type      text NOT NULL CHECK (account_type IN ('USER', 'SYSTEM', 'SERVICE')),
    credential_type   text NOT NULL CHECK (credential_type IN ('SSO', 'SSH', 'API', 'FTP', 'AUDIT')),
    status            text NOT NULL DEFAULT 'ACTIVE',
    auto_rotate_days  integer CHECK (auto_rotate_days BETWEEN 1 AND 365),
    next_rotation_at  timestamptz,
    last_rotated_at   timestamptz,
    -- The lease: which subtask owns the credential (one rotation at a time), which
    -- worker runs it until when, and the fencing token that worker must still hold
    -- for any of its writes to count.
    lease_subtask     uuid,
    lease_owner       text,
    lease_expires_at  timestamptz,
    lease_fence       bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (resource_id, username)
);

CREATE INDEX credentials_due ON credentials (next_rotation_at) WHERE next_rotation_at IS NOT NULL;

-- Every password rotor ever knew for a credential, encrypted (AES-256-GCM).
-- PENDING is written before the target is touched; COMMIT makes it CURRENT.
CREATE TABLE credential_versions (
    credential_id     uuid NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    version           integer NOT NULL CHECK (version > 0),
    state             text NOT NULL CHECK (state IN ('PENDING', 'CURRENT', 'PREVIOUS', 'RETIRED', 'ABANDONED')),
    origin            text NOT NULL CHECK (origin IN ('GENERATED', 'SUPPLIED', 'ONBOARDED')),
    key_id            text NOT NULL,
    nonce             bytea NOT NULL,
    ciphertext        bytea NOT NULL,
    subtask_id        uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    state_changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential_id, version)
);

CREATE UNIQUE INDEX credential_versions_one_pending  ON credential_versions (credential_id) WHERE state = 'PENDING';
CREATE UNIQUE INDEX credential_versions_one_current  ON credential_versions (credential_id) WHERE state = 'CURRENT';
CREATE UNIQUE INDEX credential_versions_one_previous ON credential_versions (credential_id) WHERE state = 'PREVIOUS';

CREATE TABLE tasks (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    type               text NOT NULL,
    operation          text NOT NULL CHECK (operation IN ('ROTATE', 'UPDATE', 'REMEDIATE', 'UPDATE_AUTO_ROTATE_POLICY', 'SET_PASSWORD')),
    status             text NOT NULL CHECK (status IN ('PENDING', 'IN_PROGRESS', 'SUCCESSFUL', 'FAILED', 'CANCELLED')),
    resolution_status  text NOT NULL DEFAULT 'RESOLVED' CHECK (resolution_status IN ('RESOLVED', 'UNRESOLVED')),
    is_auto_rotate     boolean NOT NULL DEFAULT false,
    source             text NOT NULL,
    -- The producer's idempotency key (AMQP message_id): one task per key.
    request_key        text UNIQUE,
    errors             jsonb NOT NULL DEFAULT '[]',
    created_at         timestamptz NOT NULL DEFAULT now(),
    completed_at       timestamptz
);

CREATE INDEX tasks_newest_first ON tasks (created_at DESC, id);

CREATE TABLE subtasks (
    id                uuid PRIMARY KEY,
    task_id           uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq               integer NOT NULL,
    credential_id     uuid NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    status            text NOT NULL CHECK (status IN ('PENDING', 'IN_PROGRESS', 'SUCCESSFUL', 'FAILED', 'CANCELLED', 'NOT_APPLICABLE')),
    attempts          integer NOT NULL DEFAULT 0,
    not_before        timestamptz NOT NULL DEFAULT now(),
    worker            text,
    fence             bigint,
    -- Set when a failure left the target's real password unknown (REMEDIATE repairs it).
    unresolved        boolean NOT NULL DEFAULT false,
    errors            jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    UNIQUE (task_id, seq)
);

CREATE INDEX subtasks_runnable ON subtasks (not_before, created_at) WHERE status IN ('PENDING', 'IN_PROGRESS');
CREATE INDEX subtasks_by_credential ON subtasks (credential_id);

CREATE TABLE stages (
    subtask_id    uuid NOT NULL REFERENCES subtasks (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    name          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('PENDING', 'IN_PROGRESS', 'SUCCESSFUL', 'FAILED', 'NOT_APPLICABLE', 'CANCELLED')),
    started_at    timestamptz,
    completed_at  timestamptz,
    errors        jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (subtask_id, seq)
);

-- Who revealed which password when (SPEC: reveal is audit-logged).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    credential_id uuid,
    detail      jsonb NOT NULL DEFAULT '{}'
);
