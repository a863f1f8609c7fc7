-- The lockout budget: a resource's `lockout_threshold` (refused logins that lock an account
-- on the target, e.g. pam_faillock deny=3), and per credential the refused logins rotor
-- spent since its last accepted one, with when the last of them was.
ALTER TABLE resources
    ADD COLUMN lockout_threshold integer NOT NULL DEFAULT 3 CHECK (lockout_threshold BETWEEN 2 AND 100);
ALTER TABLE credentials
    ADD COLUMN login_failures   integer NOT NULL DEFAULT 0,
    ADD COLUMN login_failure_at timestamptz;
