#!/usr/bin/env bash
# The cost of one scheduler tick: TOTAL credentials in the table, DUE of them due.
#
#   bench/scheduler.sh                 # 100,000 credentials, 1,000 due, 5 rounds
#   TOTAL=1000000 DUE=1000 ROUNDS=3 bench/scheduler.sh
#
# Each round resets the same DUE credentials to overdue (and deletes the tasks the last
# round made), then times `rotor scheduler tick`: four statements in one transaction (the
# leader lock, the breaker, the backlog's size, and one statement that takes the due
# credentials by an indexed batch and writes their tasks, subtasks and events).
# Two configurations, in one run:
#   - the defaults (scheduler.batch 500, burst 20): the tick takes 500 of the DUE and
#     spreads them (a backlog above burst), the rest go to the next ticks;
#   - batch = burst = DUE: every due credential becomes a task in this one tick.
# The time is taken inside the process around the tick alone (start-up and connecting
# are not in it). An idle tick (nothing due) is timed too, and the plan of the due scan
# is printed to show it reads the index, not the table.
#
# Needs the local PostgreSQL (127.0.0.1:5432, trust auth). Builds --release.
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL=${TOTAL:-100000}
DUE=${DUE:-1000}
ROUNDS=${ROUNDS:-5}
db=rotor_bench_scheduler
dir=$(mktemp -d)
psql_() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
cleanup() {
    psql_ -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# ROTOR_BIN=path: time that binary instead of building the release one.
if [[ -n ${ROTOR_BIN:-} ]]; then
    rotor=$ROTOR_BIN
else
    SQLX_OFFLINE=true cargo build --release --quiet --bin rotor
    rotor="${CARGO_TARGET_DIR:-target}/release/rotor"
fi

psql_ -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
cat >"$dir/rotor.toml" <<EOF
[database]
url = "postgres://postgres@127.0.0.1:5432/$db"
[vault]
master_key_file = "$dir/master.key"
[log]
filter = "${LOG_FILTER:-warn}"
EOF
cp "$dir/rotor.toml" "$dir/defaults.toml"
printf '[scheduler]\nbatch = %d\nburst = %d\n' "$DUE" "$DUE" >>"$dir/rotor.toml"
export ROTOR_CONFIG=$dir/rotor.toml
"$rotor" keygen --out "$dir/master.key" >/dev/null
"$rotor" migrate >/dev/null

# 100 hosts; every credential auto-rotates every 30 days, planned over the coming month;
# the first DUE (by username) are overdue.
psql_ -d "$db" <<EOF
INSERT INTO resources (id, name, type, address, port, host_keys, platform, policy, admin_username, admin_private_key_file, admin_sudo)
SELECT 'host' || h, 'host' || h || '.bench', 'LINUX', '10.0.' || (h / 250) || '.' || (h % 250 + 1), 22,
       ARRAY['SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'], 'linux-chpasswd', 'linux', 'rotor', '/etc/rotor/id_ed25519', true
  FROM generate_series(0, 99) h;
INSERT INTO credentials (id, resource_id, username, account_type, credential_type, auto_rotate_days, next_rotation_at, last_rotated_at)
SELECT gen_random_uuid(), 'host' || (i % 100), 'svc' || lpad(i::text, 7, '0'), 'SERVICE', 'SSH', 30,
       now() + (1 + random() * 29) * interval '1 day', now() - interval '1 day'
  FROM generate_series(0, $TOTAL - 1) i;
CREATE TABLE bench_due AS SELECT id FROM credentials ORDER BY username LIMIT $DUE;
VACUUM ANALYZE;
${EXTRA_SQL:-}
EOF

reset_due() {
    psql_ -d "$db" <<EOF
DELETE FROM tasks;
UPDATE credentials SET next_rotation_at = now() - interval '1 hour', auto_task_id = NULL WHERE id IN (SELECT id FROM bench_due);
VACUUM ANALYZE credentials;
VACUUM ANALYZE subtasks;
VACUUM ANALYZE tasks;
EOF
}

tick() { "$rotor" scheduler tick --json 2>>"${TICK_LOG:-/dev/null}"; }
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(psql -h 127.0.0.1 -U postgres -d test -Atc 'SHOW server_version' | cut -d' ' -f1) PostgreSQL"
echo "table: $TOTAL credentials on 100 hosts, $DUE due; $ROUNDS rounds"
echo
reset_due
echo "due scan plan, $DUE due:"
psql_ -d "$db" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
    SELECT c.id FROM credentials c
     WHERE c.next_rotation_at <= now() AND c.auto_rotate_days IS NOT NULL AND NOT c.auto_paused AND c.status = 'ACTIVE'
     ORDER BY c.next_rotation_at LIMIT $DUE FOR NO KEY UPDATE SKIP LOCKED" | sed 's/^/    /'
echo
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rows=()
# measure LABEL CONFIG EXPECTED: ROUNDS busy ticks (each after a reset) and ROUNDS idle ones.
measure() {
    local label=$1 expected=$3 busy=() idle=() r out created ms
    export ROTOR_CONFIG=$2
    echo "$label:"
    for ((r = 1; r <= ROUNDS; r++)); do
        reset_due
        out=$(tick)
        created=$(echo "$out" | field created)
        [[ $created == "$expected" ]] || { echo "bench: round $r created $created tasks, expected $expected: $out" >&2; exit 1; }
        ms=$(echo "$out" | field milliseconds)
        busy+=("$ms")
        printf '  round %d: %d due -> %d tasks in %.1f ms\n' "$r" "$DUE" "$created" "$ms"
    done
    # Idle: nothing due at all.
    psql_ -d "$db" -c "UPDATE credentials SET next_rotation_at = now() + interval '1 day' WHERE next_rotation_at <= now()"
    for ((r = 1; r <= ROUNDS; r++)); do
        out=$(tick)
        idle+=("$(echo "$out" | field milliseconds)")
    done
    rows+=("$(printf '| %d | %d | %.1f (%.1f-%.1f) | %.3f | %.1f | %s |' "$TOTAL" "$DUE" "$(median "${busy[@]}")" \
        "$(printf '%s\n' "${busy[@]}" | sort -g | head -1)" "$(printf '%s\n' "${busy[@]}" | sort -g | tail -1)" \
        "$(awk -v m="$(median "${busy[@]}")" -v n="$expected" 'BEGIN { print m / n }')" "$(median "${idle[@]}")" "$label")")
}
measure "defaults (batch 500, burst 20): $(( DUE < 500 ? DUE : 500 )) tasks a tick" "$dir/defaults.toml" $(( DUE < 500 ? DUE : 500 ))
measure "batch = burst = $DUE: $DUE tasks in one tick" "$dir/rotor.toml" "$DUE"
tasks=$(psql_ -d "$db" -Atc "SELECT count(*) FROM tasks WHERE is_auto_rotate")
echo "after the last round: $tasks auto-rotation tasks"
echo
echo '| credentials | due | tick: median ms (min-max) | per task made, ms | idle tick: median ms | configuration |'
echo '| ---: | ---: | ---: | ---: | ---: | --- |'
printf '%s\n' "${rows[@]}"
