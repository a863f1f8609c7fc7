-- Which master key seals new secrets, one for every process sharing the database:
-- `rotor vault rekey` sets it to its first key before it moves any row, and a process
-- that does not hold that key refuses (transiently) to seal rather than write rows
-- under a key the others may soon drop. Empty until the first secret is sealed.
CREATE TABLE vault_sealing_key (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    key_id  text NOT NULL,
    set_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON vault_sealing_key TO rotor_runtime;
