#!/usr/bin/env bash
# scripts/services.sh — the PostgreSQL and RabbitMQ that rotor's demo and tests use, on
# this machine: installed from Debian's packages when missing, started when stopped, and
# set up as the README assumes (PostgreSQL on 127.0.0.1:5432 with trust auth for local
# TCP and a database `test`; RabbitMQ on 127.0.0.1:5672 with guest/guest, which a fresh
# install allows from loopback). Idempotent: where both already run as assumed, it changes
# nothing. Needs root only when it has something to install, start or change.
#
#   scripts/services.sh up
#
# Works with or without systemd (containers): it starts PostgreSQL with pg_ctlcluster and
# RabbitMQ with `rabbitmq-server -detached`, never through sudo.
set -euo pipefail
cd "$(dirname "$0")"
PROG=services.sh
STATE_DIR=${ROTOR_TESTBED_DIR:-/var/lib/rotor-testbed}
# shellcheck source=lib.sh
source ./lib.sh

PG="psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -XAtq"
HBA_MARK="# rotor test bed: trust on loopback TCP (scripts/services.sh)"

pg_answers() { $PG -c 'SELECT 1' >/dev/null 2>&1; }
pg_listening() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

ensure_postgresql() {
    if pg_answers; then
        log "ok: PostgreSQL answers on 127.0.0.1:5432"
    else
        need_root up "PostgreSQL needs installing, starting or its pg_hba.conf a line"
        command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
        local ver conf_dir hba i
        # shellcheck disable=SC2012 # version dirs are plain numbers
        ver=$(ls /etc/postgresql | sort -V | tail -n 1)
        if ! pg_listening; then
            log "starting PostgreSQL $ver/main"
            mkdir -p "$STATE_DIR"
            # The server must not inherit our stdout/stderr (a caller reading them to EOF
            # would wait for PostgreSQL to exit).
            pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null >"$STATE_DIR/pg-start.log" 2>&1 \
                || { tail -n 20 "$STATE_DIR/pg-start.log" >&2; die "pg_ctlcluster $ver main start failed"; }
            for ((i = 0; i < 60; i++)); do pg_listening && break; sleep 0.5; done
        fi
        if ! pg_answers; then
            conf_dir=/etc/postgresql/$ver/main
            hba=$conf_dir/pg_hba.conf
            if ! grep -qxF "$HBA_MARK" "$hba"; then
                log "changed: $hba trusts local TCP connections (the test bed's assumption), first rule"
                { echo "$HBA_MARK"; echo "host all all 127.0.0.1/32 trust"; echo "host all all ::1/128 trust"; cat "$hba"; } >"$hba.rotor"
                chown --reference="$hba" "$hba.rotor"; chmod --reference="$hba" "$hba.rotor"
                mv -f "$hba.rotor" "$hba"
                su postgres -c "psql -XAtq -c 'SELECT pg_reload_conf()'" >/dev/null
            fi
            for ((i = 0; i < 20; i++)); do pg_answers && break; sleep 0.5; done
        fi
        pg_answers || die "PostgreSQL does not answer on 127.0.0.1:5432 as postgres (see $STATE_DIR/pg-start.log)"
        log "changed: PostgreSQL answers on 127.0.0.1:5432"
    fi
    if [[ $($PG -c "SELECT count(*) FROM pg_database WHERE datname = 'test'") == 0 ]]; then
        $PG -c 'CREATE DATABASE test'
        log "changed: created database test"
    fi
}

rabbit_answers() { timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }

ensure_rabbitmq() {
    local i
    if rabbit_answers; then
        log "ok: RabbitMQ listens on 127.0.0.1:5672"
        return
    fi
    need_root up "RabbitMQ needs installing or starting"
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    if ! rabbitmqctl -q status >/dev/null 2>&1; then
        log "starting RabbitMQ (rabbitmq-server -detached)"
        mkdir -p "$STATE_DIR"
        (cd / && rabbitmq-server -detached) </dev/null >>"$STATE_DIR/rabbitmq-start.log" 2>&1 \
            || log "rabbitmq-server -detached returned non-zero (see $STATE_DIR/rabbitmq-start.log)"
    fi
    rabbitmqctl -q -t 120 await_startup >/dev/null 2>&1 || true
    for ((i = 0; i < 120; i++)); do rabbit_answers && break; sleep 0.5; done
    rabbit_answers || die "RabbitMQ does not listen on 127.0.0.1:5672 (see $STATE_DIR/rabbitmq-start.log)"
    log "changed: RabbitMQ listens on 127.0.0.1:5672"
}

case ${1:-} in
    up) ensure_postgresql; ensure_rabbitmq ;;
    *) echo "usage: scripts/services.sh up" >&2; exit 2 ;;
esac
