-- A reconcile (REMEDIATE without a password) sets aside the unresolved pending password
-- of an earlier rotation; if the reconcile then changes nothing on the target, that
-- version is put back as PENDING, so the credential stays as unresolved as it was.
ALTER TABLE credential_versions ADD COLUMN set_aside_by uuid;
