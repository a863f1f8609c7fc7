#!/usr/bin/env bash
# rotor end to end on this machine: a local sshd with a real Linux account, rotor
# running against the local PostgreSQL and RabbitMQ, every link over TLS (a CA this
# script makes), one ROTATE request over AMQP from a named producer, its stages as they
# happen, then proof on the target itself (the new password logs in, the old one is
# refused). No password is printed. Needs root (useradd, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates a Linux account and starts sshd)" >&2; exit 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! command -v curl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

say "PostgreSQL and RabbitMQ on 127.0.0.1 (installed and started if they are not)"
bash scripts/services.sh up

say "test bed: local sshd on 127.0.0.1 with an admin account (key + sudo chpasswd)"
eval "$(bash scripts/testbed.sh up)"

say "TLS: a local CA; RabbitMQ on 5671 and PostgreSQL with certificates it signed"
tls_env=$(bash scripts/tls.sh up)
eval "$tls_env"

say "building rotor"
SQLX_OFFLINE=true cargo build --locked --quiet
rotor="$root/target/debug/rotor"

# Under the test bed's folder: the inventory's files (the admin key) must lie under
# [inventory] allowed_dir.
demo=$(mktemp -d /var/lib/rotor-testbed/demo.XXXXXX)
db=rotor_demo
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    userdel rotordemo 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT

say "configuration, master key and API token in $demo"
psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
"$rotor" keygen --out "$demo/master.key"
(umask 077; head -c 24 /dev/urandom | base64 | tr -d "\n" > "$demo/ops.token")
# rotor reads the broker as guest; the producer publishes as rotor-producer. Both URLs
# hold a password, so they live in files (0600), not in the configuration.
(umask 077
 echo "amqps://guest:guest@127.0.0.1:$ROTOR_TLS_AMQPS_PORT/%2f" > "$demo/daemon.url"
 echo "amqps://$ROTOR_TLS_PRODUCER_USER:$(cat "$ROTOR_TLS_PRODUCER_PASSWORD_FILE")@127.0.0.1:$ROTOR_TLS_AMQPS_PORT/%2f" > "$demo/producer.url")
cat > "$demo/rotor.toml" <<TOML
[database]
url = "postgres://postgres@127.0.0.1:5432/$db?sslmode=verify-full"
ca_file = "$ROTOR_TLS_CA"
[amqp]
url_file = "daemon.url"
ca_file = "$ROTOR_TLS_CA"
exchange = "rotor.demo"
queue = "rotor.demo.requests"
dead_letter_exchange = "rotor.demo.dlx"
dead_letter_queue = "rotor.demo.requests.dead"
events_exchange = "rotor.demo.events"
[[amqp.producer]]
user = "$ROTOR_TLS_PRODUCER_USER"
scopes = ["credentials:manage"]
resources = ["demo-*"]
[http]
listen = "127.0.0.1:18443"
tls_cert_file = "$ROTOR_TLS_CERT"
tls_key_file = "$ROTOR_TLS_KEY"
ops_listen = "127.0.0.1:18090"
[[http.token]]
name = "ops"
token_file = "ops.token"
scopes = ["admin"]
[vault]
master_key_file = "master.key"
[inventory]
allowed_dir = "/var/lib/rotor-testbed"
TOML
export ROTOR_CONFIG="$demo/rotor.toml"
"$rotor" config check

say "a real account 'rotordemo' on the sshd, with a generated initial password"
"$rotor" policy generate linux > "$demo/initial.pw"
chmod 600 "$demo/initial.pw"
bash scripts/testbed.sh account rotordemo < "$demo/initial.pw"

cat > "$demo/inventory.toml" <<TOML
[[resource]]
id = "demo-host"
name = "demo-host.local"
type = "LINUX"
address = "127.0.0.1"
port = $ROTOR_TESTBED_PORT
host_keys = ["$ROTOR_TESTBED_HOST_KEY_FPR"]
platform = "linux-chpasswd"

[resource.admin]
username = "$ROTOR_TESTBED_ADMIN"
private_key_file = "$ROTOR_TESTBED_ADMIN_KEY"
sudo = true

[[resource.account]]
username = "rotordemo"
account_type = "SERVICE"
password_file = "initial.pw"
TOML

say "rotor run (logs in $demo/rotor.log)"
"$rotor" run >"$demo/rotor.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -fsS http://127.0.0.1:18090/readyz >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$demo/rotor.log"; exit 1; }
    sleep 0.1
done

say "inventory"
"$rotor" resource apply -f "$demo/inventory.toml"
"$rotor" credential list

say "a producer rotor does not know (guest) is refused, and nothing changes"
if "$rotor" enqueue rotate --resource demo-host --username rotordemo; then
    echo "guest's request was accepted: NO"; exit 1
fi

say "ROTATE over AMQP from the named producer $ROTOR_TLS_PRODUCER_USER (the reply names the task)"
task=$(ROTOR_AMQP__URL_FILE="$demo/producer.url" "$rotor" enqueue rotate --resource demo-host --username rotordemo)
echo "task $task"

say "stages"
"$rotor" task watch "$task" --interval-ms 100

say "the target itself"
login() {
    SSHPASS="$1" sshpass -e ssh -p "$ROTOR_TESTBED_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o PreferredAuthentications=password -o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1 \
        rotordemo@127.0.0.1 true </dev/null 2>/dev/null
}
new=$("$rotor" credential reveal --resource demo-host --username rotordemo)
old=$(cat "$demo/initial.pw")
if login "$new"; then echo "new password (vault version 2) logs in:  yes"; else echo "new password logs in: NO"; exit 1; fi
if login "$old"; then echo "old password refused: NO"; exit 1; else echo "old password (version 1) is refused:    yes"; fi

say "the task as the HTTP API shows it, over HTTPS (requestedBy names the producer)"
json=$(curl -fsS --cacert "$ROTOR_TLS_CA" -H "Authorization: Bearer $(cat "$demo/ops.token")" "https://127.0.0.1:18443/v1/credentials/tasks/$task")
if command -v jq >/dev/null; then echo "$json" | jq .; else echo "$json"; fi
echo "demo done: rotor rotated a real account end to end."
