#!/usr/bin/env bash
# Lets the test bed's PostgreSQL check passwords for some roles: members of the group role
# rotor_scram_login log in on 127.0.0.1 with SCRAM-SHA-256 (one pg_hba.conf line, first,
# marked), while every other role keeps the trust the test bed assumes. The postgresql
# platform's tests rotate such roles. Idempotent; leaves PostgreSQL running (a reload).
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=pg-scram.sh
source scripts/lib.sh
[ "$(id -u)" = 0 ] || die "run as root (it edits pg_hba.conf)"
PG="psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -XAtq"
MARK="# rotor test bed: SCRAM for members of rotor_scram_login (scripts/pg-scram.sh)"
LINE="host all +rotor_scram_login 127.0.0.1/32 scram-sha-256"

$PG -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rotor_scram_login') THEN CREATE ROLE rotor_scram_login NOLOGIN; END IF; END \$\$"
hba=$($PG -c 'SHOW hba_file')
[[ -f $hba ]] || die "no pg_hba.conf at $hba"
if grep -qxF "$MARK" "$hba" && [[ $(grep -A1 -xF "$MARK" "$hba" | tail -n 1) == "$LINE" ]] && [[ $(head -n 1 "$hba") == "$MARK" ]]; then
    log "ok: $hba checks passwords of rotor_scram_login members"
    exit 0
fi
# Our two lines first (before any trust line), without an older copy of them.
tmp=$(mktemp "$hba.rotor.XXXXXX")
{ echo "$MARK"; echo "$LINE"; grep -vxF -e "$MARK" -e "$LINE" "$hba"; } >"$tmp"
chown --reference="$hba" "$tmp"
chmod --reference="$hba" "$tmp"
mv -f "$tmp" "$hba"
$PG -c 'SELECT pg_reload_conf()' >/dev/null
log "changed: $hba checks passwords of rotor_scram_login members (SCRAM), first rule"
