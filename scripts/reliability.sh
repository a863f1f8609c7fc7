#!/usr/bin/env bash
# The "no password lost" proofs of RELIABILITY.md, at full size. Slow (about half an
# hour on 2 cores) and disruptive: it restarts RabbitMQ and PostgreSQL, so run it on a
# machine nothing else uses. Needs root, like scripts/test.sh.
#   ROTOR_RELIABILITY_TRIALS  trials per crash point          (default 20)
#   ROTOR_PROOF_ROTATIONS     rotations for kill/db proofs    (default 200 / 100)
#   ROTOR_PROOF_REQUESTS      requests for 2-process/broker   (default 500 / 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "reliability.sh: run as root" >&2; exit 1; }
bash scripts/testbed.sh up >/dev/null
trap 'pkill -f "rotor-it-.*/rotor.toml run" || true; pkill -f "sshd -f /tmp/rotor-it-sshd-" || true
      bash scripts/testbed.sh remove-accounts rtit >/dev/null 2>&1 || true' EXIT
export SQLX_OFFLINE=true
cargo build --locked --tests --quiet
log=${ROTOR_RELIABILITY_LOG:-reliability.log}
: > "$log"
run() {
    local name=$1; shift
    echo "== $name" | tee -a "$log"
    local start=$SECONDS
    env "$@" cargo test --locked --quiet --features failpoints --test it "$name" -- --include-ignored --exact --nocapture --test-threads=1 2>&1 |
        grep -E '^PROOF|^crash points|test result|panicked|FAILED' | tee -a "$log"
    echo "   ($((SECONDS - start)) s)" | tee -a "$log"
}
run reliability::a_crash_at_any_stage_boundary_loses_no_password ROTOR_RELIABILITY_TRIALS="${ROTOR_RELIABILITY_TRIALS:-20}"
run proofs::random_kills_during_a_batch_lose_no_password ROTOR_PROOF_ROTATIONS="${ROTOR_PROOF_ROTATIONS:-200}"
run proofs::two_processes_share_the_work_without_overlapping ROTOR_PROOF_REQUESTS="${ROTOR_PROOF_REQUESTS:-500}"
run proofs::broker_restarts_lose_no_confirmed_request ROTOR_PROOF_REQUESTS="${ROTOR_PROOF_REQUESTS:-1000}"
run proofs::a_database_restart_mid_batch_loses_nothing ROTOR_PROOF_ROTATIONS="${ROTOR_PROOF_ROTATIONS:-100}"
run reliability::a_dead_host_fails_cleanly_and_other_hosts_still_rotate
echo "results in $log"
