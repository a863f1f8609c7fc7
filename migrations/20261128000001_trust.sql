-- The trust boundary (SPEC section 8): who asked for each task, resources retired
-- rather than erased, an audit log that is append-only and hash-chained, and a runtime
-- role that may only add to it.

-- requestedBy: TOKEN | USER | PRODUCER | SCHEDULER | CLI, and the name. Tasks recorded
-- before this migration name nobody.
ALTER TABLE tasks
    ADD COLUMN requested_by_kind text CHECK (requested_by_kind IN ('TOKEN', 'USER', 'PRODUCER', 'SCHEDULER', 'CLI')),
    ADD COLUMN requested_by_name text;

-- DELETE /v1/resources/{id} retires a resource: its accounts stop rotating, their
-- stored versions stay readable until `rotor resource purge`.
ALTER TABLE resources
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN deleted_by text;

-- The hash chain: entry n holds hash(n) = sha256(hash(n-1) || payload(n)), where the
-- payload is the entry's fields as a JSON array. `seq` orders the chain (ids can
-- commit out of order; seq is given under a lock, in commit order).
ALTER TABLE audit_log
    ADD COLUMN seq bigint UNIQUE,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;

CREATE FUNCTION audit_log_payload(seq bigint, at timestamptz, actor text, action text, credential_id uuid, detail jsonb)
RETURNS bytea LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public AS $$
    SELECT convert_to(
        jsonb_build_array(seq, (extract(epoch FROM at) * 1000000)::bigint, actor, action, credential_id, detail)::text,
        'UTF8')
$$;

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    -- One writer at a time, held to commit: entries chain in the order they commit.
    PERFORM pg_advisory_xact_lock(7461727467);
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := last_hash;
    NEW.hash := sha256(coalesce(last_hash, ''::bytea)
                       || audit_log_payload(NEW.seq, NEW.at, NEW.actor, NEW.action, NEW.credential_id, NEW.detail));
    RETURN NEW;
END
$$;

-- Entries written before the chain existed join it in id order.
DO $$
DECLARE
    r record;
    n bigint := 0;
    h bytea := NULL;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        n := n + 1;
        UPDATE audit_log
           SET seq = n, prev_hash = h,
               hash = sha256(coalesce(h, ''::bytea) || audit_log_payload(n, r.at, r.actor, r.action, r.credential_id, r.detail))
         WHERE id = r.id
        RETURNING hash INTO h;
    END LOOP;
END
$$;

ALTER TABLE audit_log ALTER COLUMN seq SET NOT NULL, ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The runtime role: `rotor run --no-migrate` logs in as a role that is a member of
-- rotor_runtime. It reads and writes rotor's tables, but only adds to the audit log
-- and cannot change the schema or the migration history. The migrating (owner) role
-- needs CREATEROLE, or an administrator creates rotor_runtime beforehand.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rotor_runtime') THEN
        CREATE ROLE rotor_runtime NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- Nobody but the owner creates objects in rotor's schema (PostgreSQL 15's default; older
-- versions let every role create there, e.g. a function shadowing one the triggers call).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO rotor_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO rotor_runtime;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO rotor_runtime;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM rotor_runtime;
DO $$
BEGIN
    IF to_regclass('_sqlx_migrations') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM rotor_runtime;
    END IF;
END
$$;
-- Tables later migrations create get the same rights.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO rotor_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO rotor_runtime;
