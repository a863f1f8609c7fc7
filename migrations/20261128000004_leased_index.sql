-- The live leases per resource, read by every claim to skip the hosts already at
-- worker.per_host (one small index scan instead of counting each candidate's host).
CREATE INDEX credentials_leased ON credentials (resource_id) WHERE lease_subtask IS NOT NULL;
