#!/usr/bin/env bash
# Issue 13's one-run benchmark: verified rotations against real sshd hosts with rotor's
# DEFAULT configuration, side by side with the OpenSSH login rate and two Ansible
# playbooks, plus intake, the scheduler tick, memory and latency, printed as ONE table.
#
#   bench/rotations.sh                       # 10 hosts x 100 accounts, everything
#   HOSTS=1 ACCOUNTS=10 bench/rotations.sh   # a smaller scale (a row per scale)
#   HOSTS=2 ACCOUNTS=10 INTAKE_N=500 SKIP_TICK=1 bench/rotations.sh
#   bench/rotations.sh clean                 # remove accounts, sshds, databases, queues, state
#
# What one run does, in this order (root; Debian; local PostgreSQL and RabbitMQ):
#  1. HOSTS private sshds on 127.0.0.1:BASE_PORT+1.. (scripts/testbed.sh, one state dir,
#     host key and config each; the same admin `rotoradm`, key + `sudo -n chpasswd`) and
#     ACCOUNTS real Linux accounts per host (rb<h>x<n>, one newusers + one chpasswd
#     call), reset to their initial random passwords (0600 files kept under STATE).
#  2. The yardstick: LOGINS OpenSSH password logins (sshpass -e), LOGIN_PARALLEL at once,
#     across all accounts (at most LOGIN_SECONDS); the refused-login delay (a wrong
#     password's login minus the same login sending no password, on REFUSED_N accounts in
#     turn, mean and median; minus a right one's login too, the yardstick before stop 26).
#  3. rotor (release build) with its default configuration, only what it needs set, on a
#     fresh database: idle RSS, publish->SUCCESSFUL latency of one ROTATE (mean and median
#     of LATENCY_N; judged on the means), then one ROTATE CredentialsUpdateSpec per host naming all its accounts,
#     timed from publish to every task SUCCESSFUL; peak RSS; a sample (SAMPLE accounts)
#     checked on the target: rotor's new password logs in, the one before is refused.
#  4. Intake: rotor stopped, INTAKE_N UPDATE_AUTO_ROTATE_POLICY requests queued, rotor
#     started; time from the first task to the INTAKE_N-th (count polled every 50 ms,
#     taken on the safe side: from the last poll that saw none to the first that saw all).
#  5. Ansible (ansible-core in a venv, forks FORKS): (a) `user` module with
#     password_hash('sha512', rounds=5000), unverified; (b) the same plus a login check of
#     each new password. They run after rotor, on the same accounts (rotor's view of the
#     passwords is stale afterwards; the next run resets every account first).
#  6. The tick: bench/scheduler.sh (TICK_TOTAL credentials, TICK_DUE due, TICK_ROUNDS).
#
# Knobs: HOSTS=10 ACCOUNTS=100 BASE_PORT=2300 LOGINS=400 LOGIN_SECONDS=20
# LOGIN_PARALLEL=16 REFUSED_N=60 LATENCY_N=60 SAMPLE=20 INTAKE_N=5000 FORKS=16
# TICK_TOTAL=100000 TICK_DUE=1000 TICK_ROUNDS=3 ROT_TIMEOUT=1800 SKIP_ANSIBLE=1
# SKIP_INTAKE=1 SKIP_TICK=1 SKIP_ROTATION=1 (no latency, rotation or sample check)
# ROTOR_BIN=path (use that binary, no build).
#
# Secrets: passwords live in 0600 files under STATE and in pipes/environment variables
# (sshpass -e, chpasswd/newusers stdin, Ansible extra-vars file); none is printed or put
# on a command line. Ansible needs an admin with full sudo (the test bed's rotoradm may
# only run chpasswd): a bench-only account `rotorbench` with its own key and NOPASSWD
# sudo (/etc/sudoers.d/rotor-bench) is created for it, kept across runs, removed by clean.
# (The `user` module itself passes the sha512 HASH to usermod -p on the target.)
#
# The targets: the test bed's sshd_config has MaxStartups 200:30:400 (a stock 10:30:100
# would drop connections past 10 unauthenticated at once per host), MaxSessions 10 (per
# connection) and MaxAuthTries 6; Debian's PAM gives pam_unix's ~2 s fail delay (no
# nodelay), which sshd pads to about 2.2 or 4.2 s; accounts hold yescrypt hashes (PAM
# chpasswd, as rotor's change makes them); Ansible's user module writes sha512 ones.
#
# Exit status: 0 when every part ran, every rotation succeeded and the sample verified
# (the goals are judged in the table, not in the exit status); 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CI=${CI:-true} DEBIAN_FRONTEND=noninteractive

HOSTS=${HOSTS:-10}
ACCOUNTS=${ACCOUNTS:-100}
BASE_PORT=${BASE_PORT:-2300}
LOGINS=${LOGINS:-400}
LOGIN_SECONDS=${LOGIN_SECONDS:-20}
LOGIN_PARALLEL=${LOGIN_PARALLEL:-16}
REFUSED_N=${REFUSED_N:-60}
LATENCY_N=${LATENCY_N:-60}
SAMPLE=${SAMPLE:-20}
INTAKE_N=${INTAKE_N:-5000}
FORKS=${FORKS:-16}
TICK_TOTAL=${TICK_TOTAL:-100000}
TICK_DUE=${TICK_DUE:-1000}
TICK_ROUNDS=${TICK_ROUNDS:-3}
ROT_TIMEOUT=${ROT_TIMEOUT:-1800}
SKIP_ANSIBLE=${SKIP_ANSIBLE:-0}
SKIP_INTAKE=${SKIP_INTAKE:-0}
SKIP_ROTATION=${SKIP_ROTATION:-0}
SKIP_TICK=${SKIP_TICK:-0}
ROTOR_BIN=${ROTOR_BIN:-}

# Under the test bed's folder: rotor's [inventory] allowed_dir is /var/lib/rotor-testbed.
TESTBED_ROOT=/var/lib/rotor-testbed
STATE=$TESTBED_ROOT/bench
HOSTDIR=$STATE/hosts
PWDIR=$STATE/pw
RUN=$STATE/run
VENV=$STATE/venv
ANS=$STATE/ansible
ROTORDIR=$STATE/rotor
ACCOUNT_HOME=$STATE/home
DB=rotor_bench_rot
AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
EXCHANGE=rotor.bench
QUEUE=rotor.bench.requests
QUEUES=(rotor.bench.requests rotor.bench.requests.dead rotor.bench.requests.quarantine)
EXCHANGES=(rotor.bench rotor.bench.dlx rotor.bench.events)
BENCH_ADMIN=rotorbench
BENCH_SUDOERS=/etc/sudoers.d/rotor-bench
ADMIN=rotoradm
helper=$root/bench/lib/rotbench.py

say() { printf '\n== [%ds] %s\n' "$SECONDS" "$*" >&2; }
note() { printf '   %s\n' "$*" >&2; }
die() { printf 'bench/rotations.sh: error: %s\n' "$*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
psql_() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
vpy() { "$VENV/bin/python" "$helper" "$@"; }

[[ $(id -u) == 0 ]] || die "run as root (it creates Linux accounts, sudoers and sshds)"
for v in HOSTS ACCOUNTS BASE_PORT LOGINS LOGIN_SECONDS LOGIN_PARALLEL REFUSED_N LATENCY_N SAMPLE INTAKE_N FORKS \
    TICK_TOTAL TICK_DUE TICK_ROUNDS ROT_TIMEOUT; do
    is_uint "${!v}" || die "$v must be a whole number (got '${!v}')"
done
((HOSTS >= 1 && ACCOUNTS >= 1)) || die "HOSTS and ACCOUNTS must be at least 1"
((ACCOUNTS <= 1000)) || die "ACCOUNTS must be at most 1000 (rotor's max_credentials_per_request)"
((BASE_PORT + HOSTS <= 65535 && BASE_PORT >= 1024)) || die "BASE_PORT+HOSTS out of range"
if ((BASE_PORT < 2222 && BASE_PORT + HOSTS >= 2222)); then
    die "ports $((BASE_PORT + 1))-$((BASE_PORT + HOSTS)) include 2222, the test suite's sshd: pick another BASE_PORT"
fi

# ---------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------

testbed() { # h subcommand...
    local h=$1
    shift
    ROTOR_TESTBED_DIR=$HOSTDIR/h$h ROTOR_TESTBED_PORT=$((BASE_PORT + h)) ROTOR_TESTBED_ADMIN=$ADMIN \
        bash "$root/scripts/testbed.sh" "$@"
}

rotor_pid=
measure_pid=
hosts_started=()

# Stops our rotor gracefully (TERM, up to 60 s, then KILL and say so).
stop_rotor() {
    local i
    [[ -n $rotor_pid ]] || return 0
    if kill -0 "$rotor_pid" 2>/dev/null; then
        kill -TERM "$rotor_pid" 2>/dev/null || true
        for ((i = 0; i < 600; i++)); do
            kill -0 "$rotor_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$rotor_pid" 2>/dev/null; then
            note "rotor (pid $rotor_pid) did not stop within 60 s of TERM: KILL"
            kill -KILL "$rotor_pid" 2>/dev/null || true
        fi
    fi
    wait "$rotor_pid" 2>/dev/null || true
    rotor_pid=
    rm -f "$RUN/rotor.pid"
}

cleanup() {
    local rc=$? h
    trap - EXIT INT TERM
    if [[ -n $measure_pid ]]; then
        kill "$measure_pid" 2>/dev/null || true
        wait "$measure_pid" 2>/dev/null || true
    fi
    stop_rotor
    for h in "${hosts_started[@]}"; do
        testbed "$h" down >>"$RUN/testbed.log" 2>&1 || true
    done
    ((${#hosts_started[@]} == 0)) || note "stopped the ${#hosts_started[@]} bench sshd(s); accounts stay (bench/rotations.sh clean removes them)"
    exit "$rc"
}

# ---------------------------------------------------------------------------------------
# clean
# ---------------------------------------------------------------------------------------

cmd_clean() {
    local d pid n=0 name uid pub ak home
    say "clean: bench sshds, accounts, admin, databases, queues and state under $STATE"
    if [[ -r $RUN/rotor.pid ]]; then
        read -r pid <"$RUN/rotor.pid" || true
        if [[ ${pid:-} =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' run'; then
            kill -TERM "$pid" 2>/dev/null || true
            note "stopped rotor (pid $pid)"
        fi
    fi
    for d in "$HOSTDIR"/h*; do
        [[ -d $d ]] || continue
        ROTOR_TESTBED_DIR=$d bash "$root/scripts/testbed.sh" down >/dev/null 2>&1 || true
        # The test bed appended this host's admin key to rotoradm's authorized_keys.
        home=$(getent passwd "$ADMIN" | cut -d: -f6 || true)
        ak=$home/.ssh/authorized_keys
        if [[ -n $home && -f $ak && -s $d/admin_ed25519.pub ]]; then
            pub=$(cut -d' ' -f2 "$d/admin_ed25519.pub")
            grep -vF "$pub" "$ak" >"$ak.bench.tmp" || true
            cat "$ak.bench.tmp" >"$ak"
            rm -f "$ak.bench.tmp"
        fi
    done
    note "bench sshds stopped, their admin keys taken out of $ADMIN's authorized_keys"
    while IFS=: read -r name _ uid _; do
        [[ $name =~ ^rb[0-9]+x[0-9]+$ ]] || continue
        ((uid >= 1000)) || continue
        userdel "$name" 2>/dev/null || userdel -f "$name" 2>/dev/null || note "could not remove $name"
        n=$((n + 1))
    done < <(cat /etc/passwd)
    note "removed $n bench account(s)"
    if getent passwd "$BENCH_ADMIN" >/dev/null; then
        userdel -r "$BENCH_ADMIN" 2>/dev/null || userdel -f -r "$BENCH_ADMIN" 2>/dev/null || true
        note "removed the bench-only admin $BENCH_ADMIN"
    fi
    rm -f "$BENCH_SUDOERS"
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS rotor_bench_scheduler WITH (FORCE)" \
        && note "dropped databases $DB, rotor_bench_scheduler"
    if [[ -x $VENV/bin/python ]]; then
        vpy amqp-clean --amqp "$AMQP_URL" --queues "${QUEUES[@]}" --exchanges "${EXCHANGES[@]}" \
            && note "deleted queues ${QUEUES[*]} and exchanges ${EXCHANGES[*]}"
    else
        note "no venv: queues ${QUEUES[*]} not deleted (delete them with rabbitmqctl)"
    fi
    rm -rf "$STATE"
    note "removed $STATE (venv included)"
}

if [[ ${1:-run} == clean ]]; then
    cmd_clean
    exit 0
elif [[ ${1:-run} != run ]]; then
    echo "usage: bench/rotations.sh [run|clean]   (knobs in the environment; see the header)" >&2
    exit 2
fi

# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------

install -d -m 0755 "$TESTBED_ROOT" "$STATE" "$ACCOUNT_HOME"
install -d -m 0700 "$PWDIR" "$ROTORDIR" "$ANS" "$HOSTDIR"
rm -rf "$RUN"
install -d -m 0700 "$RUN"
: >"$RUN/results.env"
results=$RUN/results.env
res() { printf '%s=%s\n' "$1" "$2" >>"$results"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
status=0

cmdline="HOSTS=$HOSTS ACCOUNTS=$ACCOUNTS"
for v in BASE_PORT LOGINS LOGIN_SECONDS LOGIN_PARALLEL REFUSED_N LATENCY_N SAMPLE INTAKE_N FORKS TICK_TOTAL TICK_DUE \
    TICK_ROUNDS ROT_TIMEOUT SKIP_ANSIBLE SKIP_INTAKE SKIP_TICK SKIP_ROTATION ROTOR_BIN; do
    case $v in
        BASE_PORT) d=2300 ;; LOGINS) d=400 ;; LOGIN_SECONDS) d=20 ;; LOGIN_PARALLEL) d=16 ;; REFUSED_N) d=60 ;; LATENCY_N) d=60 ;;
        SAMPLE) d=20 ;; INTAKE_N) d=5000 ;; FORKS) d=16 ;; TICK_TOTAL) d=100000 ;; TICK_DUE) d=1000 ;;
        TICK_ROUNDS) d=3 ;; ROT_TIMEOUT) d=1800 ;; SKIP_*) d=0 ;; ROTOR_BIN) d= ;;
    esac
    [[ ${!v} == "$d" ]] || cmdline+=" $v=${!v}"
done
cmdline+=" bench/rotations.sh"
res hosts "$HOSTS"
res accounts "$ACCOUNTS"
res refused_n "$REFUSED_N"
res ansible_forks "$FORKS"

say "tools: packages, rotor release build, Python venv ($VENV)"
missing=()
for p in curl python3-venv; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    note "installing ${missing[*]}"
    apt-get -q -o DPkg::Lock::Timeout=300 update </dev/null >"$RUN/apt.log" 2>&1
    apt-get -q -y -o DPkg::Lock::Timeout=300 --no-install-recommends install "${missing[@]}" </dev/null >>"$RUN/apt.log" 2>&1 \
        || { tail -20 "$RUN/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
fi
if [[ -n $ROTOR_BIN ]]; then
    [[ -x $ROTOR_BIN ]] || die "ROTOR_BIN=$ROTOR_BIN is not an executable"
    src_bin=$ROTOR_BIN
else
    SQLX_OFFLINE=true cargo build --release --quiet --bin rotor 2>"$RUN/build.log" \
        || { tail -30 "$RUN/build.log" >&2; die "cargo build --release failed (log: $RUN/build.log)"; }
    src_bin=${CARGO_TARGET_DIR:-$root/target}/release/rotor
fi
# A copy, so a rebuild by someone else during the run does not swap the binary under us.
install -m 0755 "$src_bin" "$RUN/rotor"
rotor=$RUN/rotor
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$root" status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null) ]] || commit+=" + uncommitted changes"
[[ -z $ROTOR_BIN ]] || commit="$ROTOR_BIN, given (work tree at $commit)"
note "rotor: $commit"
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import pika, psycopg, passlib, ansible' 2>/dev/null; then
    note "pip install pika psycopg[binary] ansible-core passlib (once)"
    "$VENV/bin/pip" install -q --disable-pip-version-check pika 'psycopg[binary]' ansible-core passlib >"$RUN/pip.log" 2>&1 \
        || { tail -20 "$RUN/pip.log" >&2; die "pip install failed (log: $RUN/pip.log)"; }
fi
# (all of its output read: ansible exits 250 on a closed pipe)
ansible_version=$("$VENV/bin/ansible" --version 2>/dev/null || true)
ansible_version=$(sed -n '1s/^ansible \[core \(.*\)\]$/ansible-core \1/p' <<<"$ansible_version")

say "$HOSTS sshd host(s) on 127.0.0.1:$((BASE_PORT + 1))-$((BASE_PORT + HOSTS)) (scripts/testbed.sh, one state dir each)"
: >"$RUN/fprs"
for ((h = 1; h <= HOSTS; h++)); do
    out=$(testbed "$h" up 2>>"$RUN/testbed.log") || { tail -20 "$RUN/testbed.log" >&2; die "testbed up for host $h failed"; }
    hosts_started+=("$h")
    fpr=$(sed -n 's/^ROTOR_TESTBED_HOST_KEY_FPR=//p' <<<"$out")
    [[ $fpr == SHA256:* ]] || die "no host key fingerprint from testbed up for host $h"
    echo "$h $fpr" >>"$RUN/fprs"
done
note "up: $HOSTS sshd(s), admin $ADMIN with a key per host (log: $RUN/testbed.log)"
cfg1=$HOSTDIR/h1/sshd_config
limits="$(grep -E '^(MaxStartups|MaxSessions|MaxAuthTries|LoginGraceTime|PerSourcePenalties)' "$cfg1" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
pam="pam_unix without nodelay (its ~2 s fail delay applies)"
if grep -Eqs '^[^#]*pam_unix\.so.*nodelay' /etc/pam.d/common-auth; then pam="pam_unix with nodelay"; fi
if grep -Eqs '^[^#]*pam_faildelay' /etc/pam.d/sshd /etc/pam.d/common-auth; then
    pam+="; pam_faildelay: $(grep -Ehs '^[^#]*pam_faildelay' /etc/pam.d/sshd /etc/pam.d/common-auth | head -1 | xargs)"
fi
note "target limits: $limits; $pam"

say "$((HOSTS * ACCOUNTS)) accounts (rb<h>x<n>), reset to their initial passwords (files in $PWDIR, 0600)"
python3 "$helper" accounts --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --pwdir "$PWDIR" --home "$ACCOUNT_HOME"

say "yardstick: OpenSSH password logins, $LOGIN_PARALLEL in parallel ($LOGINS logins or ${LOGIN_SECONDS} s)"
vpy logins --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --pwdir "$PWDIR" --parallel "$LOGIN_PARALLEL" \
    --count "$LOGINS" --seconds "$LOGIN_SECONDS" --results "$results"
# On REFUSED_N accounts in turn across the hosts (sshd's padding of a refusal depends on
# the user name); the latency below rotates the first LATENCY_N of the same accounts.
vpy refused --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --pwdir "$PWDIR" --n "$REFUSED_N" \
    --results "$results"

# ---------------------------------------------------------------------------------------
# rotor
# ---------------------------------------------------------------------------------------
say "rotor: default configuration, fresh database $DB, queues ${QUEUE}*"
psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
vpy amqp-clean --amqp "$AMQP_URL" --queues "${QUEUES[@]}" --exchanges "${EXCHANGES[@]}"
rm -f "$ROTORDIR/master.key"
"$rotor" keygen --out "$ROTORDIR/master.key" >/dev/null
(umask 077; head -c 32 /dev/urandom | base64 | tr -d '\n' >"$ROTORDIR/bench.token")
http_port=$(python3 "$helper" free-port)
# Only what rotor needs to run here: no [worker], [ssh] or [scheduler] tuning.
cat >"$ROTORDIR/rotor.toml" <<EOF
# Written by bench/rotations.sh: rotor's defaults, plus where things are.
[database]
url = "postgres://postgres@127.0.0.1:5432/$DB"

[amqp]
url = "$AMQP_URL"
exchange = "$EXCHANGE"
queue = "$QUEUE"
dead_letter_exchange = "rotor.bench.dlx"
dead_letter_queue = "rotor.bench.requests.dead"
events_exchange = "rotor.bench.events"

[[amqp.producer]]
user = "guest"
scopes = ["credentials:manage"]
resources = ["*"]

[http]
listen = "127.0.0.1:$http_port"

[[http.token]]
name = "bench"
token_file = "bench.token"
scopes = ["admin"]

[vault]
master_key_file = "master.key"

[inventory]
allowed_dir = "$TESTBED_ROOT"
EOF
chmod 0600 "$ROTORDIR/rotor.toml"
export ROTOR_CONFIG=$ROTORDIR/rotor.toml
"$rotor" config check >"$RUN/config-check.log" 2>&1 || { cat "$RUN/config-check.log" >&2; die "rotor config check failed"; }
python3 "$helper" inventory --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --pwdir "$PWDIR" \
    --fprs "$RUN/fprs" --hostdir "$HOSTDIR" --admin "$ADMIN" --out "$ROTORDIR/inventory.toml"

start_rotor() {
    "$rotor" run >>"$RUN/rotor.log" 2>&1 &
    rotor_pid=$!
    echo "$rotor_pid" >"$RUN/rotor.pid"
}
wait_ready() {
    local i
    for ((i = 0; i < 600; i++)); do
        curl -fsS -o /dev/null "http://127.0.0.1:$http_port/readyz" 2>/dev/null && return 0
        kill -0 "$rotor_pid" 2>/dev/null || { tail -20 "$RUN/rotor.log" >&2; die "rotor exited at start (log: $RUN/rotor.log)"; }
        sleep 0.1
    done
    tail -20 "$RUN/rotor.log" >&2
    die "rotor not ready within 60 s (log: $RUN/rotor.log)"
}
rotor_args=(--db "postgres://postgres@127.0.0.1:5432/$DB" --amqp "$AMQP_URL" --exchange "$EXCHANGE")
run_id=$(date +%s)-$$

start_rotor
wait_ready
sleep 5
rss_idle=$(awk '/^VmRSS:/ {print $2}' "/proc/$rotor_pid/status")
res rss_idle_kb "$rss_idle"
note "rotor pid $rotor_pid ready on 127.0.0.1:$http_port; idle VmRSS $((rss_idle / 1024)) MB (log: $RUN/rotor.log)"
"$rotor" resource apply -f "$ROTORDIR/inventory.toml" >"$RUN/apply.log" 2>&1 \
    || { tail -20 "$RUN/apply.log" >&2; die "rotor resource apply failed (log: $RUN/apply.log)"; }
note "inventory applied: $HOSTS resources, $((HOSTS * ACCOUNTS)) accounts onboarded (log: $RUN/apply.log)"

if [[ $SKIP_ROTATION != 1 ]]; then
    say "latency: one ROTATE on an idle rotor, publish -> SUCCESSFUL (polled every 20 ms), $LATENCY_N times"
    if ! vpy latency "${rotor_args[@]}" --run-id "$run_id" --hosts "$HOSTS" --accounts "$ACCOUNTS" \
        --base-port "$BASE_PORT" --n "$LATENCY_N" --results "$results"; then
        status=1
        note "latency run FAILED (see above and $RUN/rotor.log)"
    fi
    
    say "rotation: one ROTATE request per host naming all its accounts ($((HOSTS * ACCOUNTS)) rotations)"
    vpy snapshot --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --rotor "$rotor" --sample "$SAMPLE" \
        --out "$RUN/sample.json"
    if vpy rotate --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" "${rotor_args[@]}" --run-id "$run_id" \
        --pid "$rotor_pid" --timeout "$ROT_TIMEOUT" --results "$results"; then
        :
    else
        status=1
        note "the rotation run did NOT succeed in full: no rate claimed (log: $RUN/rotor.log)"
    fi
    note "checking a sample on the targets: rotor's new password logs in, the previous one is refused"
    vpy verify --rotor "$rotor" --sample "$RUN/sample.json" --results "$results" || status=1
    vok=$(sed -n 's/^verified_ok=//p' "$results")
    [[ -n $vok && $vok == "$(sed -n 's/^verified_n=//p' "$results")" ]] || status=1
fi
stop_rotor
note "rotor stopped"

# ---------------------------------------------------------------------------------------
# intake
# ---------------------------------------------------------------------------------------
if [[ $SKIP_INTAKE != 1 ]]; then
    say "intake: $INTAKE_N UPDATE_AUTO_ROTATE_POLICY requests queued while rotor is stopped, then rotor starts"
    vpy intake-publish --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" "${rotor_args[@]}" \
        --run-id "$run_id" --queue "$QUEUE" --n "$INTAKE_N"
    rm -f "$RUN/intake.ready"
    vpy intake-measure "${rotor_args[@]}" --run-id "$run_id" --n "$INTAKE_N" --ready "$RUN/intake.ready" \
        --results "$results" &
    measure_pid=$!
    for ((i = 0; i < 300; i++)); do
        [[ -e $RUN/intake.ready ]] && break
        kill -0 "$measure_pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -e $RUN/intake.ready ]] || die "the intake poller did not start"
    start_rotor
    if ! wait "$measure_pid"; then
        status=1
        note "intake measurement FAILED (log: $RUN/rotor.log)"
    fi
    measure_pid=
    grep -q '^intake_failed=0$' "$results" || status=1
    stop_rotor
    note "rotor stopped"
fi

# ---------------------------------------------------------------------------------------
# Ansible
# ---------------------------------------------------------------------------------------
if [[ $SKIP_ANSIBLE != 1 ]]; then
    say "Ansible ($ansible_version), forks $FORKS, as the bench-only admin $BENCH_ADMIN (key, NOPASSWD sudo: ALL)"
    note "the test bed's $ADMIN may only run 'sudo -n /usr/sbin/chpasswd', which the user module cannot use;"
    note "$BENCH_ADMIN exists for this bench only (kept across runs; 'bench/rotations.sh clean' removes it)"
    if ! getent passwd "$BENCH_ADMIN" >/dev/null; then
        useradd -m -s /bin/bash -c 'rotor bench Ansible admin' "$BENCH_ADMIN"
    fi
    usermod -L "$BENCH_ADMIN" 2>/dev/null || true
    [[ -s $ANS/admin_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C rotor-bench-ansible -f "$ANS/admin_ed25519" </dev/null
    chmod 0600 "$ANS/admin_ed25519"
    bhome=$(getent passwd "$BENCH_ADMIN" | cut -d: -f6)
    install -d -m 0700 -o "$BENCH_ADMIN" -g "$(id -gn "$BENCH_ADMIN")" "$bhome/.ssh"
    install -m 0600 -o "$BENCH_ADMIN" -g "$(id -gn "$BENCH_ADMIN")" "$ANS/admin_ed25519.pub" "$bhome/.ssh/authorized_keys"
    tmp=$(mktemp /tmp/rotor-bench-sudoers.XXXXXX)
    printf '# bench/rotations.sh: the Ansible admin of the benchmark (removed by bench/rotations.sh clean)\n%s ALL=(ALL) NOPASSWD: ALL\n' \
        "$BENCH_ADMIN" >"$tmp"
    visudo -q -cf "$tmp" >/dev/null || { rm -f "$tmp"; die "sudoers drop-in does not validate"; }
    install -m 0440 -o root -g root "$tmp" "$BENCH_SUDOERS"
    rm -f "$tmp"
    {
        echo "[bench]"
        for ((h = 1; h <= HOSTS; h++)); do
            echo "h$h ansible_host=127.0.0.1 ansible_port=$((BASE_PORT + h)) bench_port=$((BASE_PORT + h))"
        done
        echo
        echo "[bench:vars]"
        echo "ansible_user=$BENCH_ADMIN"
        echo "ansible_ssh_private_key_file=$ANS/admin_ed25519"
        echo "ansible_python_interpreter=/usr/bin/python3"
        echo "ansible_become_method=sudo"
    } >"$ANS/inventory.ini"
    cat >"$ANS/ansible.cfg" <<EOF
# bench/rotations.sh: Ansible's defaults but for the forks, host keys (throwaway test
# hosts on one address) and no colour. Pipelining stays off, as shipped.
[defaults]
forks = $FORKS
host_key_checking = False
nocolor = True
retry_files_enabled = False
interpreter_python = /usr/bin/python3

[ssh_connection]
ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR
EOF
    export ANSIBLE_CONFIG=$ANS/ansible.cfg ANSIBLE_HOME=$ANS/home ANSIBLE_LOCAL_TEMP=$ANS/home/tmp
    rm -rf "${ANS:?}/home"
    install -d -m 0700 "$ANS/home"
    run_playbook() { # key playbook
        local key=$1 book=$2 t0 t1 secs rc=0
        python3 "$helper" ansible-vars --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --out "$ANS/$key.vars.json"
        t0=$(date +%s.%N)
        "$VENV/bin/ansible-playbook" -i "$ANS/inventory.ini" -e "@$ANS/$key.vars.json" "$root/bench/ansible/$book" \
            </dev/null >"$RUN/$key.log" 2>&1 || rc=$?
        t1=$(date +%s.%N)
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
        res "${key}_n" "$((HOSTS * ACCOUNTS))"
        res "${key}_seconds" "$secs"
        if ((rc != 0)); then
            res "${key}_rate" FAILED
            status=1
            tail -15 "$RUN/$key.log" >&2
            note "$book FAILED (exit $rc; log: $RUN/$key.log)"
            return 0
        fi
        res "${key}_rate" "$(awk -v n="$((HOSTS * ACCOUNTS))" -v s="$secs" 'BEGIN { printf "%.3f", n / s }')"
        recap=$(grep -E '^h[0-9]+ +:' "$RUN/$key.log" | awk '{ for (i = 3; i <= NF; i++) { split($i, kv, "="); s[kv[1]] += kv[2] } }
            END { printf "recap over the hosts: ok=%d changed=%d failed=%d unreachable=%d", s["ok"], s["changed"], s["failed"], s["unreachable"] }')
        note "$book: $((HOSTS * ACCOUNTS)) accounts in $secs s ($recap; log: $RUN/$key.log)"
        vpy ansible-check --hosts "$HOSTS" --accounts "$ACCOUNTS" --base-port "$BASE_PORT" --vars "$ANS/$key.vars.json" \
            --sample 5 --prefix "$key" --results "$results" || status=1
    }
    run_playbook ansible_a set-passwords.yml
    run_playbook ansible_b set-and-check.yml
    rm -f "$ANS"/ansible_*.vars.json
fi

# ---------------------------------------------------------------------------------------
# tick
# ---------------------------------------------------------------------------------------
if [[ $SKIP_TICK != 1 ]]; then
    say "scheduler tick: bench/scheduler.sh, $TICK_TOTAL credentials, $TICK_DUE due, $TICK_ROUNDS rounds"
    # ROTOR_BIN: the same binary as the rest of the run (a scheduler.sh without that knob builds).
    if ROTOR_BIN=$rotor ROUNDS=$TICK_ROUNDS TOTAL=$TICK_TOTAL DUE=$TICK_DUE bash "$root/bench/scheduler.sh" >"$RUN/tick.log" 2>&1; then
        # Its table's rows: | total | due | median (min-max) | per due | idle | configuration |;
        # the first is the defaults (the tick takes scheduler.batch of the due), the last
        # has every due credential made a task in one tick: the goal's reading, judged
        # since stop 24; the defaults' row is in the table too since stop 27.
        rows=$(grep -E '^\| [0-9]+ \| [0-9]+ \|' "$RUN/tick.log")
        cell() { awk -F'|' -v c="$2" '{ split($4, a, " "); gsub(/[()]/, "", a[2]); gsub(/ /, "", $6);
                                        print (c == "med") ? a[1] : (c == "range") ? a[2] : $6 }' <<<"$1"; }
        row=$(tail -1 <<<"$rows")
        med=$(cell "$row" med) range=$(cell "$row" range) idle=$(cell "$row" idle)
        res tick_ms "$med"
        res tick_range "$range ms, idle tick $idle ms"
        first=$(head -1 <<<"$rows")
        default=$(cell "$first" med)
        res tick_default_ms "$default"
        res tick_default_range "$(cell "$first" range) ms"
        res tick_default_made "$(sed -nE 's/.*: ([0-9]+) tasks a tick \|$/\1/p' <<<"$first")"
        res tick_total "$TICK_TOTAL"
        res tick_due "$TICK_DUE"
        res tick_rounds "$TICK_ROUNDS"
        note "tick: median $med ms ($range), idle $idle ms; defaults: $default ms (log: $RUN/tick.log)"
    else
        status=1
        res tick_ms FAILED
        tail -15 "$RUN/tick.log" >&2
        note "bench/scheduler.sh FAILED (log: $RUN/tick.log)"
    fi
fi

# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
pgv=$(psql_ -d postgres -c 'SHOW server_version' | cut -d' ' -f1)
sshv=$(ssh -V 2>&1 | cut -d, -f1)
{
    echo
    echo "machine: $(nproc) cores, $cpu, $mem RAM, Debian $(cat /etc/debian_version), PostgreSQL $pgv, $sshv, kernel $(uname -r)"
    echo "rotor: release build, $commit; Ansible: ${ansible_version:-n/a}; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "command: $cmdline"
    echo "target sshd: $limits; $pam"
    [[ $SKIP_ANSIBLE == 1 ]] || echo "Ansible ran as the bench-only admin $BENCH_ADMIN (key, NOPASSWD sudo ALL): rotoradm may only run chpasswd"
    if grep -q '^rot_stages=' "$results"; then
        echo "rotor stage durations s (median/max): $(sed -n 's/^rot_stages=//p' "$results")"
    fi
    echo
    vpy report --results "$results"
    echo
    if ((status != 0)); then
        echo "RESULT: FAILURES (see above; logs in $RUN)"
    else
        echo "RESULT: a valid run: every part ran, every rotation succeeded, the sample verified (the goals: see the table)"
    fi
}
exit "$status"
