-- Refresh tokens of API users who logged in (POST /v1/tokens). Only a digest of each
-- token is kept: this table alone lets no one in.
CREATE TABLE api_refresh_tokens (
    digest      bytea PRIMARY KEY,
    username    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX api_refresh_tokens_expiry ON api_refresh_tokens (expires_at);
