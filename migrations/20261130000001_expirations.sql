-- What the target's OS says of each credential's password aging (`chage -l`), read by the
-- expirations checks and pre-flight: when the password expires (NULL: never, or not
-- known while expiry_checked_at is NULL) and its maximum age, which plans the next
-- rotation ahead of the expiry.
ALTER TABLE credentials
    ADD COLUMN password_expires_on date,
    ADD COLUMN password_max_days   integer,
    ADD COLUMN expiry_checked_at   timestamptz;

-- VCF's expirations API: one check (POST /v1/credentials/expirations) and, per credential,
-- what it found. A check whose process died stays IN_PROGRESS until its deadline, then
-- reads as FAILED.
CREATE TABLE expiration_checks (
    id            uuid PRIMARY KEY,
    status        text NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETED', 'FAILED')),
    requested_by  jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    deadline      timestamptz NOT NULL
);
CREATE INDEX expiration_checks_created ON expiration_checks (created_at);

CREATE TABLE expiration_results (
    check_id      uuid NOT NULL REFERENCES expiration_checks (id) ON DELETE CASCADE,
    credential_id uuid NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    connectivity  text NOT NULL CHECK (connectivity IN ('ACTIVE', 'ERROR', 'UNKNOWN')),
    status        text NOT NULL CHECK (status IN ('ACTIVE', 'EXPIRING', 'EXPIRED', 'UNKNOWN')),
    expiry_date   date,
    checked_at    timestamptz NOT NULL,
    error         text,
    PRIMARY KEY (check_id, credential_id)
);
