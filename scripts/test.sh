#!/usr/bin/env bash
# Runs rotor's whole test suite against the real services: PostgreSQL and RabbitMQ on
# 127.0.0.1 (already running on this machine kind) and a local OpenSSH sshd with real
# Linux accounts, which scripts/testbed.sh installs and starts. Needs root (useradd).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "test.sh: $1 is required" >&2; exit 1; }; }
need cargo
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (the tests create Linux accounts)" >&2; exit 1; }

# PostgreSQL and RabbitMQ: installed, started and set up as assumed when they are not.
bash scripts/services.sh up
bash scripts/testbed.sh up >/dev/null
# Tests delete their accounts; this catches any a failed or killed test left behind.
# A test process that died hard may also have left its daemons running.
trap 'pkill -f "rotor-it-.*/rotor.toml run" || true; pkill -f "sshd -f /tmp/rotor-it-sshd-" || true
      bash scripts/testbed.sh remove-accounts rtit >/dev/null 2>&1 || true' EXIT

# TLS on the same servers: a test CA and server certificate, RabbitMQ's amqps listener
# (127.0.0.1:5671), PostgreSQL verify-full, a second AMQP user. Its ROTOR_TLS_* lines are
# exported for the tests (HTTPS/rustls uses the same certificate). Assigned first, so a
# failing tls.sh stops us here (`eval "$(...)"` would hide its exit status).
tls_env=$(bash scripts/tls.sh up)
set -a
eval "$tls_env"
set +a

# Password checks (SCRAM) on the local PostgreSQL for the roles the postgresql platform's
# tests rotate (members of rotor_scram_login); every other role keeps trust.
bash scripts/pg-scram.sh

# Broadcom's VCF Python bindings, which one test drives rotor through, unchanged.
ROTOR_VCF_PYTHON=$(bash scripts/vcf-client.sh)
export ROTOR_VCF_PYTHON

# The architecture's rule: no import circle in src/, no file over 500 lines.
python3 scripts/check-imports.py
# One layout for all the code: rustfmt's defaults.
cargo fmt --check

# The build needs no database: query metadata is committed in .sqlx/.
export SQLX_OFFLINE=true
# The tests' build has the failpoints (crash injection); a release build never does.
cargo build --all-targets --locked --features failpoints
cargo test --locked --all-targets --features failpoints -- --test-threads="${ROTOR_TEST_THREADS:-4}" "$@"
