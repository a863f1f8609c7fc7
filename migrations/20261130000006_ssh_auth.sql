-- How accounts of a resource prove their passwords over SSH: "password", "keyboard-interactive"
-- (ESXi and appliances with PasswordAuthentication no), or "auto" (what the server offers).
ALTER TABLE resources
    ADD COLUMN ssh_auth text NOT NULL DEFAULT 'auto' CHECK (ssh_auth IN ('password', 'keyboard-interactive', 'auto'));
