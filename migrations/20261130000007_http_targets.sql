-- An http resource's recipe (`[resource.http]` as the inventory gave it: a preset name,
-- request templates, a CA file or pinned certificate fingerprints). Never a secret: the
-- admin's credentials stay in its password_file.
ALTER TABLE resources ADD COLUMN http jsonb;
