#!/usr/bin/env bash
# Regenerates .sqlx/ (the query metadata that lets `SQLX_OFFLINE=true cargo build`
# work without a database). Run it after changing any SQL or migration.
# Needs the local PostgreSQL (127.0.0.1:5432, trust auth).
set -euo pipefail
cd "$(dirname "$0")/.."
db=rotor_sqlx_prepare
psql_() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql_ -d test -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
for f in migrations/*.sql; do psql_ -d "$db" -f "$f"; done
rm -rf .sqlx && mkdir .sqlx
# Touch the sources so the query macros expand again and write their metadata.
find src tests -name '*.rs' -exec touch {} +
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" \
    cargo check --all-targets --quiet
psql_ -d test -c "DROP DATABASE $db"
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/" >&2
