-- One-time enrollment tokens, one per deploy script (GET /v1/deploy/script). Only a digest
-- is kept; a token registers one new resource, once, before it expires.
CREATE TABLE enrollment_tokens (
    digest       bytea PRIMARY KEY,
    created_by   text NOT NULL,
    -- The issuer's resource globs (SQL LIKE): the host may register only within them.
    resource_patterns text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    resource_id  text
);
CREATE INDEX enrollment_tokens_expiry ON enrollment_tokens (expires_at);
