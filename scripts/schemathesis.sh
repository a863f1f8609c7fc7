#!/usr/bin/env bash
# Fuzzes rotor's live HTTP API against its own /openapi.json with schemathesis (PyPI):
# no 5xx, every status code and body as documented, bad input refused, auth enforced.
#
#   scripts/schemathesis.sh                  # MAX_EXAMPLES=50 per operation
#   MAX_EXAMPLES=200 scripts/schemathesis.sh
#
# It builds rotor, starts `rotor run` with its own PostgreSQL database and AMQP names on
# the local services, onboards a small inventory whose host is a closed port (so no real
# account is touched, whatever the fuzzer asks), runs schemathesis, then stops rotor and
# drops the database. schemathesis is installed into a virtualenv under
# ${ROTOR_SCHEMATHESIS_VENV:-/tmp/rotor-schemathesis-venv}. Exit status: schemathesis's.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES=${MAX_EXAMPLES:-50}
SCHEMATHESIS_VERSION=4.32.5
# Hypothesis after 6.130 describes a filter's lambda by parsing its whole module with
# `ast.parse`, which on Debian 12's CPython 3.11 can fail with "SystemError: AST
# constructor recursion depth mismatch" (a CPython bug) and end the coverage phase. The
# oldest release schemathesis accepts does not do that.
HYPOTHESIS_VERSION=6.130.12
venv=${ROTOR_SCHEMATHESIS_VENV:-/tmp/rotor-schemathesis-venv}
id=st$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
db=rotor_$id
dir=$(mktemp -d)
psql_() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    psql_ -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

if [[ ! -x $venv/bin/schemathesis ]] || ! "$venv/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION" \
    || [[ $("$venv/bin/python" -c 'import hypothesis; print(hypothesis.__version__)') != "$HYPOTHESIS_VERSION" ]]; then
    echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
fi

SQLX_OFFLINE=true cargo build --quiet --bin rotor
rotor=${CARGO_TARGET_DIR:-target}/debug/rotor

psql_ -d test -c "CREATE DATABASE $db"
token=$(head -c24 /dev/urandom | base64 | tr -d '/+=')
(umask 077; printf '%s' "$token" >"$dir/admin.token")
cat >"$dir/rotor.toml" <<EOF
[database]
url = "postgres://postgres@127.0.0.1:5432/$db"
[amqp]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
exchange = "rotor-$id"
queue = "rotor.requests-$id"
dead_letter_exchange = "rotor.dlx-$id"
dead_letter_queue = "rotor.requests.dead-$id"
events_exchange = "rotor.events-$id"
[http]
listen = "127.0.0.1:0"
failed_login_limit = 1000000   # the fuzzer sends many requests without a token, on purpose
[[http.token]]
name = "schemathesis"
token_file = "admin.token"
scopes = ["admin"]
[vault]
master_key_file = "master.key"
[worker]
max_attempts = 1
[scheduler]
heartbeat_tick = ""
[log]
format = "json"
filter = "info,sqlx=warn,lapin=warn"
[inventory]
allowed_dir = "$dir"
[[amqp.producer]]
user = "guest"
scopes = ["credentials:manage"]
EOF
export ROTOR_CONFIG=$dir/rotor.toml
"$rotor" keygen --out "$dir/master.key" >/dev/null
"$rotor" migrate >/dev/null
(umask 077; printf 'Seed-Passw0rd-For-Fuzzing!\n' >"$dir/app.pw")
(umask 077; : >"$dir/admin.key")   # never used: the host (port 1) is unreachable
cat >"$dir/inventory.toml" <<EOF
[[resource]]
id = "st-host"
name = "st-host.example"
type = "LINUX"
address = "127.0.0.1"
port = 1
host_keys = ["SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
[resource.admin]
username = "rotor"
private_key_file = "$dir/admin.key"
sudo = true
[[resource.account]]
username = "app"
password_file = "$dir/app.pw"
auto_rotate_days = 30
[[resource.account]]
username = "svc"
account_type = "SERVICE"
EOF
"$rotor" resource apply -f "$dir/inventory.toml" >/dev/null

"$rotor" run 2>"$dir/rotor.log" &
pid=$!
addr=
for _ in $(seq 1 300); do
    addr=$(grep -o '"addr":"[^"]*"' "$dir/rotor.log" | head -1 | cut -d'"' -f4 || true)
    [[ -n $addr ]] && curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/rotor.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { echo "schemathesis.sh: rotor did not come up" >&2; cat "$dir/rotor.log" >&2; exit 1; }
echo "schemathesis.sh: rotor on http://$addr, database $db" >&2

# Every check but one that does not fit this API: positive_data_acceptance expects 2xx
# for any schema-valid request, but a valid-looking request naming a resource or task
# that does not exist is rightly refused (400/404). The stateful phase follows the
# document's links (a created task or resource is then read, retried, cancelled, deleted).
# The PrivX routes name a host and an account in the path: give them the seeded ones
# (the fuzzer still sends its own values in the negative and coverage phases).
cat >"$dir/schemathesis.toml" <<EOF
[parameters]
"path.host_id" = "st-host"
"path.account" = "app"
EOF
status=0
"$venv/bin/schemathesis" --config-file "$dir/schemathesis.toml" run "http://$addr/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --workers 2 \
    --seed "${SEED:-20261123}" \
    --generation-database none \
    --no-color \
    --report-dir "$dir/report" || status=$?
if grep -q 'panicked' "$dir/rotor.log"; then
    echo "schemathesis.sh: rotor panicked" >&2
    status=1
fi
exit "$status"
