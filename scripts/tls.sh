#!/usr/bin/env bash
# scripts/tls.sh — TLS for the local RabbitMQ and PostgreSQL, for rotor's integration tests.
#
# It makes its own test CA (plus a second, unrelated "wrong" CA for negative tests) and
# one server certificate signed by the CA (SAN IP:127.0.0.1 + DNS:localhost, serverAuth,
# CA:FALSE, P-256 key in PKCS#8 PEM: fine for RabbitMQ/Erlang, PostgreSQL/OpenSSL and a
# rustls HTTPS server). Then it gives
#   - PostgreSQL that certificate (ALTER SYSTEM ssl_cert_file/ssl_key_file/ssl + reload),
#     so `sslmode=verify-full sslrootcert=$ROTOR_TLS_CA` works; plain connections stay;
#   - RabbitMQ a TLS listener on 127.0.0.1:$ROTOR_TLS_AMQPS_PORT next to (never instead
#     of) its plain 5672 listener (a marked block in rabbitmq.conf; restarted only when
#     that block or the certificate files changed, or TLS is not served right);
#   - RabbitMQ a second user, rotor-producer (random password in a 0600 file), with
#     permissions .* .* .* on vhost /, so tests can publish as a distinct producer;
#   - RabbitMQ's management plugin, served over HTTPS only on 127.0.0.1:$ROTOR_TLS_MGMT_PORT
#     with the same certificate, and an administrator, rotor-mgmt-admin (random password
#     in a 0600 file): the http platform's rabbitmq preset rotates users through it.
#
#   scripts/tls.sh up       make/reuse the certificates, configure both servers, print env lines
#   scripts/tls.sh env      print the env lines of a test bed that is set up and working
#   scripts/tls.sh status   say whether TLS works on both servers (exit 0 yes, 1 no)
#
# `up` and `env` print exactly ten KEY=VALUE lines on stdout (safe for `eval`):
#   ROTOR_TLS_CA, ROTOR_TLS_WRONG_CA, ROTOR_TLS_CERT, ROTOR_TLS_KEY, ROTOR_TLS_AMQPS_PORT,
#   ROTOR_TLS_PRODUCER_USER, ROTOR_TLS_PRODUCER_PASSWORD_FILE, ROTOR_TLS_MGMT_PORT,
#   ROTOR_TLS_MGMT_ADMIN, ROTOR_TLS_MGMT_ADMIN_PASSWORD_FILE
# Everything else goes to stderr. Every subcommand is idempotent, never reads stdin and
# needs no terminal (CI=true, stdin=/dev/null are fine). Key material is reused while it
# is valid (more than 30 days left, key matches certificate, chain verifies), so a second
# `up` changes nothing and restarts nothing. PostgreSQL and RabbitMQ are left running on
# every path: if RabbitMQ was stopped for a restart and anything fails, the EXIT trap
# starts it again (with the previous rabbitmq.conf if the new one keeps it from booting).
#
# Settings (environment):
#   ROTOR_TLS_DIR          state dir                   (default /var/lib/rotor-testbed/tls)
#   ROTOR_TLS_AMQPS_PORT   RabbitMQ TLS port on 127.0.0.1 (default 5671)
#   ROTOR_TLS_MGMT_PORT    RabbitMQ management HTTPS port on 127.0.0.1 (default 15671)
# `up` records the values it used in $ROTOR_TLS_DIR/tls.env; env/status read them from
# there, so they only need the same ROTOR_TLS_DIR. There is one RabbitMQ and one
# PostgreSQL: the copies they use live in /etc/rabbitmq/rotor-tls and
# /etc/postgresql/<version>/main/rotor-tls, so the last `up` (of any state dir) wins.
set -euo pipefail

# ---------------------------------------------------------------------------------------
# Settings and fixed paths
# ---------------------------------------------------------------------------------------
STATE_DIR=${ROTOR_TLS_DIR:-/var/lib/rotor-testbed/tls}
AMQPS_PORT=${ROTOR_TLS_AMQPS_PORT:-5671}
MGMT_PORT=${ROTOR_TLS_MGMT_PORT:-15671}
PRODUCER=rotor-producer
MGMT_ADMIN=rotor-mgmt-admin

CA_KEY=$STATE_DIR/ca.key
CA_CERT=$STATE_DIR/ca.pem
WRONG_CA_KEY=$STATE_DIR/wrong-ca.key
WRONG_CA_CERT=$STATE_DIR/wrong-ca.pem
SERVER_KEY=$STATE_DIR/server.key
SERVER_CERT=$STATE_DIR/server.pem
PRODUCER_PW_FILE=$STATE_DIR/producer.password
MGMT_PW_FILE=$STATE_DIR/mgmt-admin.password
RABBIT_PLUGINS=/etc/rabbitmq/enabled_plugins
ENV_FILE=$STATE_DIR/tls.env             # the seven lines `up` printed last
LOCK_FILE=$STATE_DIR/.lock
RABBIT_START_LOG=$STATE_DIR/rabbitmq-start.log

CA_CN='rotor test bed CA'
WRONG_CA_CN='rotor test bed WRONG CA (trusts nothing of ours)'
CA_DAYS=3650
SERVER_DAYS=825
RENEW_SECONDS=$((30 * 86400))           # renew what expires within 30 days

PG_HOST=127.0.0.1
PG_PORT=5432
AMQP_PORT=5672                          # RabbitMQ's plain listener; must stay up

RABBIT_CONF=/etc/rabbitmq/rabbitmq.conf
RABBIT_TLS_DIR=/etc/rabbitmq/rotor-tls
RABBIT_CONF_ORIG=$STATE_DIR/rabbitmq.conf.orig   # the conf before our first edit
RABBIT_CONF_PREV=$STATE_DIR/rabbitmq.conf.prev   # the conf before this run's edit
BLOCK_BEGIN='# BEGIN rotor scripts/tls.sh (managed block, rewritten by "scripts/tls.sh up": edit the script instead)'
BLOCK_END='# END rotor scripts/tls.sh'

PROG=tls.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# fd 7: a copy of our stderr for the EXIT trap. A TERM/INT trap (and so the EXIT trap)
# can run while a command's `>/dev/null 2>&1` is still in effect; cleanup() puts fd 2
# back from here so its messages are not lost. Daemons we start get it closed (7>&-).
exec 7>&2

validate_settings() {
    # The dir ends up in rabbitmq.conf, in ALTER SYSTEM and in eval'ed output: keep it
    # to a plain absolute path.
    [[ $STATE_DIR =~ ^/[A-Za-z0-9._/-]+$ && $STATE_DIR != / ]] \
        || die "ROTOR_TLS_DIR must be an absolute path of [A-Za-z0-9._/-] (got '$STATE_DIR')"
    if ! [[ $AMQPS_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$AMQPS_PORT < 1 || 10#$AMQPS_PORT > 65535)); then
        die "ROTOR_TLS_AMQPS_PORT must be a port number 1-65535 (got '$AMQPS_PORT')"
    fi
    AMQPS_PORT=$((10#$AMQPS_PORT))
    ((AMQPS_PORT != AMQP_PORT && AMQPS_PORT != PG_PORT)) \
        || die "ROTOR_TLS_AMQPS_PORT must not be $AMQP_PORT or $PG_PORT"
    if ! [[ $MGMT_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$MGMT_PORT < 1 || 10#$MGMT_PORT > 65535)); then
        die "ROTOR_TLS_MGMT_PORT must be a port number 1-65535 (got '$MGMT_PORT')"
    fi
    MGMT_PORT=$((10#$MGMT_PORT))
    ((MGMT_PORT != AMQP_PORT && MGMT_PORT != AMQPS_PORT && MGMT_PORT != PG_PORT)) \
        || die "ROTOR_TLS_MGMT_PORT must differ from the AMQP, AMQPS and PostgreSQL ports"
}



# Values recorded by the last `up` (the port), so env/status need no settings.
load_recorded() {
    local line
    [[ -r $ENV_FILE ]] || return 0
    while IFS= read -r line; do
        case $line in
            ROTOR_TLS_AMQPS_PORT=*) AMQPS_PORT=${line#*=} ;;
            ROTOR_TLS_MGMT_PORT=*) MGMT_PORT=${line#*=} ;;
        esac
    done <"$ENV_FILE"
}

# ---------------------------------------------------------------------------------------
# Traps: RabbitMQ must be running whatever happens once we stopped it
# ---------------------------------------------------------------------------------------
PG_TLS_ERR=''            # why the last pg_tls_ok failed
RABBIT_STOPPED=0        # 1 from the moment we ask RabbitMQ to stop until it is back up
TMP_DIR=''
cleanup() {
    set +e
    exec 2>&7
    if ((RABBIT_STOPPED)); then
        log "RabbitMQ was stopped by this run and is not confirmed up: starting it again"
        rabbit_recover
    fi
    [[ -n $TMP_DIR && -d $TMP_DIR ]] && rm -rf "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------

install_packages() {
    local missing=()
    pkg_installed openssl || missing+=(openssl)
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]} == 0)); then
        log "ok: packages openssl, curl and a psql installed"
    else
        apt_install "${missing[@]}"
    fi
    command -v openssl >/dev/null || die "openssl did not install"
    command -v psql >/dev/null || die "psql did not install"
    command -v rabbitmqctl >/dev/null || die "rabbitmqctl not found: RabbitMQ is expected to be installed"
    command -v rabbitmq-server >/dev/null || die "rabbitmq-server not found"
}


# Prints the command names of the processes holding a LISTEN socket on PORT (IPv4 or
# IPv6, any address), one per line; nothing if nobody listens. State 0A = LISTEN.
listen_owners() {
    local port=$1 hexport inodes fd link
    hexport=$(printf '%04X' "$port")
    inodes=$(awk -v p=":$hexport" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
    [[ -n $inodes ]] || return 0
    for fd in /proc/[0-9]*/fd/*; do
        link=$(readlink "$fd" 2>/dev/null) || continue
        [[ $link == socket:\[*\] ]] || continue
        link=${link#socket:[}
        link=${link%]}
        if grep -qxF "$link" <<<"$inodes"; then
            fd=${fd#/proc/}
            cat "/proc/${fd%%/*}/comm" 2>/dev/null || echo '?'
        fi
    done | sort -u
}

# True if something listens on PORT (IPv4 or IPv6).
is_listening() {
    local hexport
    hexport=$(printf '%04X' "$1")
    awk -v p=":$hexport" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

sha256_fpr() { openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null | sed 's/^.*=//'; }

# ---------------------------------------------------------------------------------------
# Key material
# ---------------------------------------------------------------------------------------

# openssl config for our certificates: standalone, so the distro's openssl.cnf (its
# default x509_extensions) cannot add or duplicate extensions.
write_openssl_cnf() {
    cat >"$1" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
}

# A P-256 key as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY").
new_key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$1" 2>/dev/null) || die "openssl genpkey failed"
}

# A random positive 128-bit serial.
new_serial() { printf '0x%02x%s' $((RANDOM % 127 + 1)) "$(openssl rand -hex 15)"; }

key_matches_cert() {
    local key=$1 cert=$2 a b
    a=$(openssl pkey -in "$key" -pubout 2>/dev/null) || return 1
    b=$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null) || return 1
    [[ -n $a && $a == "$b" ]]
}

is_pkcs8() { [[ $(head -n 1 "$1" 2>/dev/null) == '-----BEGIN PRIVATE KEY-----' ]]; }

not_expiring() { openssl x509 -in "$1" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1; }

basic_constraints() { openssl x509 -in "$1" -noout -ext basicConstraints 2>/dev/null | tr -d ' \n'; }

# ca_ok KEY CERT: a usable CA pair of ours.
ca_ok() {
    local key=$1 cert=$2
    [[ -s $key && -s $cert ]] && is_pkcs8 "$key" && not_expiring "$cert" \
        && key_matches_cert "$key" "$cert" && [[ $(basic_constraints "$cert") == *CA:TRUE* ]]
}

server_ok() {
    [[ -s $SERVER_KEY && -s $SERVER_CERT ]] && is_pkcs8 "$SERVER_KEY" && not_expiring "$SERVER_CERT" \
        && key_matches_cert "$SERVER_KEY" "$SERVER_CERT" \
        && [[ $(basic_constraints "$SERVER_CERT") == *CA:FALSE* ]] \
        && openssl verify -CAfile "$CA_CERT" -purpose sslserver -verify_ip 127.0.0.1 \
            -verify_hostname localhost "$SERVER_CERT" >/dev/null 2>&1
}

# ensure_ca KEY CERT CN: reuse the pair if valid, else make a new self-signed CA.
# Returns 0 if it made a new one.
ensure_ca() {
    local key=$1 cert=$2 cn=$3
    if ca_ok "$key" "$cert"; then
        log "ok: CA $cert (valid until $(openssl x509 -in "$cert" -noout -enddate | sed 's/^notAfter=//'))"
        return 1
    fi
    [[ -e $cert ]] && log "CA $cert missing its key, expiring or unusable: making a new one"
    new_key "$TMP_DIR/ca.key"
    openssl req -x509 -new -config "$TMP_DIR/openssl.cnf" -extensions v3_ca \
        -key "$TMP_DIR/ca.key" -subj "/CN=$cn" -days "$CA_DAYS" -sha256 \
        -set_serial "$(new_serial)" -out "$TMP_DIR/ca.pem" 2>/dev/null \
        || die "openssl req -x509 failed for $cert"
    install -m 0600 -o root -g root "$TMP_DIR/ca.key" "$key"
    install -m 0644 -o root -g root "$TMP_DIR/ca.pem" "$cert"
    rm -f "$TMP_DIR/ca.key" "$TMP_DIR/ca.pem"
    log "changed: made CA $cert ('$cn', $CA_DAYS days)"
    return 0
}

ensure_server_cert() {
    local force=$1
    if ((!force)) && server_ok; then
        log "ok: server certificate $SERVER_CERT (valid until $(openssl x509 -in "$SERVER_CERT" -noout -enddate | sed 's/^notAfter=//'))"
        return
    fi
    new_key "$TMP_DIR/server.key"
    openssl req -new -config "$TMP_DIR/openssl.cnf" -key "$TMP_DIR/server.key" \
        -subj '/CN=localhost' -out "$TMP_DIR/server.csr" 2>/dev/null || die "openssl req (CSR) failed"
    openssl x509 -req -in "$TMP_DIR/server.csr" -CA "$CA_CERT" -CAkey "$CA_KEY" \
        -set_serial "$(new_serial)" -days "$SERVER_DAYS" -sha256 \
        -extfile "$TMP_DIR/openssl.cnf" -extensions v3_server -out "$TMP_DIR/server.pem" 2>/dev/null \
        || die "openssl x509 -req (signing the server certificate) failed"
    install -m 0600 -o root -g root "$TMP_DIR/server.key" "$SERVER_KEY"
    install -m 0644 -o root -g root "$TMP_DIR/server.pem" "$SERVER_CERT"
    rm -f "$TMP_DIR/server.key" "$TMP_DIR/server.pem" "$TMP_DIR/server.csr"
    server_ok || die "the new server certificate does not verify against $CA_CERT"
    log "changed: made server certificate $SERVER_CERT (SAN IP:127.0.0.1, DNS:localhost; $SERVER_DAYS days)"
}

ensure_material() {
    local ca_new=0
    mkdir -p "$STATE_DIR"
    # 0755: the certificates and tls.env stay readable for a non-root env/status;
    # the keys and the producer password are 0600 root.
    chmod 0755 "$STATE_DIR"
    TMP_DIR=$(mktemp -d /tmp/rotor-tls.XXXXXX)
    write_openssl_cnf "$TMP_DIR/openssl.cnf"
    ensure_ca "$CA_KEY" "$CA_CERT" "$CA_CN" && ca_new=1
    ensure_ca "$WRONG_CA_KEY" "$WRONG_CA_CERT" "$WRONG_CA_CN" || true
    ensure_server_cert "$ca_new"
    # Guard against the two CAs ever being the same key (the negative tests would lie).
    [[ $(openssl x509 -in "$CA_CERT" -noout -pubkey) != "$(openssl x509 -in "$WRONG_CA_CERT" -noout -pubkey)" ]] \
        || die "$CA_CERT and $WRONG_CA_CERT share a key; delete $STATE_DIR and run up again"
    if openssl verify -CAfile "$WRONG_CA_CERT" "$SERVER_CERT" >/dev/null 2>&1; then
        die "$SERVER_CERT verifies against the wrong CA $WRONG_CA_CERT"
    fi
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------
PG_PLAIN="host=$PG_HOST port=$PG_PORT dbname=postgres user=postgres sslmode=disable connect_timeout=10"

# (stdin stays ours to give: ALTER SYSTEM goes in on stdin so psql fills in :'v'.)
psql_admin() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$PG_PLAIN" "$@"; }

# pg_tls_ok CA HOST: a verify-full TLS connection that really is TLS.
pg_tls_ok() {
    local ca=$1 host=${2:-$PG_HOST} out
    PG_TLS_ERR=''
    out=$(psql -X -A -t "host=$host hostaddr=$PG_HOST port=$PG_PORT dbname=postgres user=postgres sslmode=verify-full sslrootcert=$ca connect_timeout=10" \
        -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' </dev/null 2>&1) || { PG_TLS_ERR=$out; return 1; }
    [[ $out == t ]] || { PG_TLS_ERR="connected, but pg_stat_ssl says ssl=$out"; return 1; }
}

# True if PostgreSQL's TLS handshake presents exactly our current server certificate
# (verify-full alone would also accept an older certificate from the same CA).
pg_serves_our_cert() {
    local fpr
    fpr=$(timeout 15 openssl s_client -connect "$PG_HOST:$PG_PORT" -starttls postgres \
        -CAfile "$CA_CERT" -verify_return_error </dev/null 2>/dev/null 9>&- \
        | openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/^.*=//') || return 1
    [[ -n $fpr && $fpr == "$(sha256_fpr "$SERVER_CERT")" ]]
}

ensure_pg_running() {
    local ver i
    if psql_admin -c 'SELECT 1' >/dev/null 2>&1; then
        return
    fi
    # shellcheck disable=SC2012 # version dirs are plain numbers
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n $ver ]] || die "PostgreSQL is not reachable on $PG_HOST:$PG_PORT and /etc/postgresql has no cluster"
    log "PostgreSQL not reachable on $PG_HOST:$PG_PORT: starting cluster $ver/main"
    # Output to a file: the server must not inherit our stdout/stderr (a caller reading
    # them to EOF, like a test's Command::output(), would wait for PostgreSQL to exit).
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null >"$STATE_DIR/pg-start.log" 2>&1 7>&- 9>&- \
        || { log "pg_ctlcluster start failed:"; tail -n 20 "$STATE_DIR/pg-start.log" >&2; }
    for ((i = 0; i < 60; i++)); do
        psql_admin -c 'SELECT 1' >/dev/null 2>&1 && { log "changed: started PostgreSQL $ver/main"; return; }
        sleep 0.5
    done
    die "PostgreSQL is not reachable on $PG_HOST:$PG_PORT (plain connection as postgres)"
}

ensure_pg_tls() {
    local conf_dir dir changed=0 name want have i
    ensure_pg_running
    conf_dir=$(psql_admin -c 'SHOW config_file')
    conf_dir=$(dirname "$conf_dir")
    [[ -d $conf_dir ]] || die "PostgreSQL's config dir $conf_dir does not exist here"
    dir=$conf_dir/rotor-tls
    install -d -m 0700 -o postgres -g postgres "$dir"
    write_if_changed "$dir/server.pem" 0644 postgres:postgres <"$SERVER_CERT" && changed=1
    write_if_changed "$dir/server.key" 0600 postgres:postgres <"$SERVER_KEY" && changed=1
    if ((changed)); then log "changed: copied the server certificate and key to $dir"; fi

    # ALTER SYSTEM (postgresql.auto.conf) overrides Debian's snakeoil lines in
    # postgresql.conf; all three are reloadable (PostgreSQL >= 10), no restart.
    for name in ssl_cert_file ssl_key_file ssl; do
        case $name in
            ssl_cert_file) want=$dir/server.pem ;;
            ssl_key_file) want=$dir/server.key ;;
            ssl) want=on ;;
        esac
        have=$(psql_admin -c "SELECT setting FROM pg_settings WHERE name = '$name'" </dev/null)
        if [[ $have != "$want" ]]; then
            psql_admin -v v="$want" -f - <<<"ALTER SYSTEM SET $name = :'v';" >/dev/null
            log "changed: ALTER SYSTEM SET $name = '$want' (was '$have')"
            changed=1
        fi
    done

    if ((!changed)) && pg_tls_ok "$CA_CERT" && pg_serves_our_cert; then
        log "ok: PostgreSQL serves our certificate (verify-full with $CA_CERT)"
    else
        ((changed)) || log "PostgreSQL does not serve $SERVER_CERT (verify-full: ${PG_TLS_ERR:-ok}): reloading"
        psql_admin -c 'SELECT pg_reload_conf()' >/dev/null
        for ((i = 0; i < 50; i++)); do
            pg_tls_ok "$CA_CERT" && pg_serves_our_cert && break
            sleep 0.2
        done
        if ! pg_tls_ok "$CA_CERT" || ! pg_serves_our_cert; then
            psql_admin -c "SELECT sourcefile || ':' || sourceline || ': ' || name || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL" >&2 || true
            die "PostgreSQL does not serve $SERVER_CERT after reload (verify-full: ${PG_TLS_ERR:-ok}; see the PostgreSQL log)"
        fi
        log "changed: PostgreSQL reloaded; it serves our certificate"
    fi

    # The checks the tests rely on: both names in the SAN, the wrong CA refused, and
    # plain (non-TLS) connections still working.
    pg_tls_ok "$CA_CERT" localhost || die "PostgreSQL: verify-full as host 'localhost' fails: $PG_TLS_ERR"
    if pg_tls_ok "$WRONG_CA_CERT"; then
        die "PostgreSQL: verify-full with the wrong CA $WRONG_CA_CERT succeeded"
    fi
    psql_admin -c 'SELECT 1' >/dev/null || die "PostgreSQL: plain (sslmode=disable) connection fails"
    log "ok: PostgreSQL verify-full works (127.0.0.1 and localhost), wrong CA refused, plain connections work"
}

# ---------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------

# rabbitmqctl runs as the rabbitmq user through Debian's wrapper; never waits forever,
# never reads our stdin, never inherits the lock.
rmq() { timeout 120 rabbitmqctl "$@" </dev/null 9>&-; }

rabbit_booted() { rmq -q await_startup --timeout 10 >/dev/null 2>&1; }

# rabbit_tls_probe CA: a TLS handshake with 127.0.0.1:AMQPS_PORT verifying the chain
# against CA and the name (IP 127.0.0.1 and DNS localhost); prints the sha256
# fingerprint of the certificate the server sent.
rabbit_tls_probe() {
    local ca=$1 out
    out=$(timeout 15 openssl s_client -connect "127.0.0.1:$AMQPS_PORT" -servername localhost \
        -CAfile "$ca" -verify_ip 127.0.0.1 -verify_hostname localhost -verify_return_error \
        </dev/null 2>/dev/null 9>&-) || return 1
    openssl x509 -noout -fingerprint -sha256 <<<"$out" 2>/dev/null | sed 's/^.*=//'
}

# True if RabbitMQ serves exactly our current server certificate over verified TLS.
rabbit_tls_ok() {
    local fpr
    fpr=$(rabbit_tls_probe "$CA_CERT") || return 1
    [[ -n $fpr && $fpr == "$(sha256_fpr "$SERVER_CERT")" ]]
}

# AMQP over TLS: send the AMQP 0-9-1 protocol header, expect the server's
# connection.start (it names the product and the PLAIN mechanism).
# (The writer keeps s_client's stdin open until the reply is in, at most 10 s.)
rabbit_amqp_over_tls_ok() {
    local f=$TMP_DIR/amqp-reply i out
    : >"$f"
    # shellcheck disable=SC2094 # on purpose: the writer watches what s_client wrote
    {
        printf 'AMQP\0\0\x09\x01'
        for ((i = 0; i < 100; i++)); do
            grep -aq PLAIN "$f" && break
            sleep 0.1
        done
    } | timeout 15 openssl s_client -quiet -no_ign_eof -connect "127.0.0.1:$AMQPS_PORT" \
        -servername localhost -CAfile "$CA_CERT" -verify_ip 127.0.0.1 -verify_return_error \
        >"$f" 2>/dev/null 9>&- || true
    out=$(tr -c '[:print:]' ' ' <"$f")
    [[ $out == *RabbitMQ* && $out == *PLAIN* ]]
}

# rabbit_wait_up [plain]: waits (up to ~3 min) until the node is booted, the plain
# listener is there and (unless `plain`, used after putting back the previous conf) if
# our block is in the conf, TLS is served with our certificate.
rabbit_wait_up() {
    local mode=${1:-tls} start=$SECONDS deadline=$((SECONDS + 180)) gone=0
    while ((SECONDS < deadline)); do
        rabbit_booted && break
        # A node that stopped on its own (bad config, port taken) will not boot: give
        # up once its VM has been gone for a few checks, not after 180 s.
        if ! rabbit_vm_alive; then
            gone=$((gone + 1))
            if ((gone >= 3 && SECONDS - start >= 5)); then
                log "RabbitMQ's node process exited while booting"
                return 1
            fi
        else
            gone=0
        fi
        sleep 1
    done
    rabbit_booted || { log "RabbitMQ did not finish booting within 180 s"; return 1; }
    while ((SECONDS < deadline)); do
        if is_listening "$AMQP_PORT"; then
            if [[ $mode == plain ]] || ! grep -qxF "$BLOCK_BEGIN" "$RABBIT_CONF" 2>/dev/null || rabbit_tls_ok; then
                return 0
            fi
        fi
        sleep 0.5
    done
    if [[ $mode == plain ]]; then
        log "RabbitMQ booted but 127.0.0.1:$AMQP_PORT is not there"
    else
        log "RabbitMQ booted but 127.0.0.1:$AMQP_PORT and/or verified TLS on 127.0.0.1:$AMQPS_PORT are not there"
    fi
    return 1
}

rabbit_tail_logs() {
    log "last lines of $RABBIT_START_LOG and /var/log/rabbitmq/*.log:"
    tail -n 15 "$RABBIT_START_LOG" >&2 2>/dev/null || true
    tail -n 30 /var/log/rabbitmq/rabbit@*.log >&2 2>/dev/null || true
}

# True while a RabbitMQ node process (the Erlang VM of the rabbitmq user) exists,
# booting or not. Only looked at, never signalled.
rabbit_vm_alive() { pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; }

# rabbit_start [plain]: see rabbit_wait_up.
rabbit_start() {
    if rabbit_vm_alive; then
        # E.g. the EXIT trap fired while a start we made was still booting.
        log "a RabbitMQ node process is already running: waiting for it to finish booting"
    else
        log "starting RabbitMQ (rabbitmq-server -detached; its output goes to $RABBIT_START_LOG)"
        # Its own log file for stdout/stderr: the detached node must hold neither our
        # stdout (eval "$(tls.sh up)" would wait for it) nor a CI pipe; fd 7 (our stderr)
        # and fd 9 (the lock) closed.
        (cd / && rabbitmq-server -detached) </dev/null >>"$RABBIT_START_LOG" 2>&1 7>&- 9>&- \
            || log "rabbitmq-server -detached returned non-zero"
    fi
    rabbit_wait_up "${1:-tls}"
}

rabbit_stop() {
    local i out
    if ! rabbit_vm_alive; then
        log "ok: RabbitMQ is not running (nothing to stop)"
        return 0
    fi
    log "stopping RabbitMQ (rabbitmqctl shutdown)"
    if ! out=$(rmq shutdown 2>&1); then
        log "rabbitmqctl shutdown returned non-zero:"
        head -n 5 <<<"$out" >&2
    fi
    for ((i = 0; i < 60; i++)); do
        if ! rabbit_vm_alive && ! is_listening "$AMQP_PORT" && ! is_listening "$AMQPS_PORT"; then
            return 0
        fi
        sleep 0.5
    done
    log "RabbitMQ's node process is still there 30 s after shutdown"
    return 1
}

# Start RabbitMQ; if it does not come up and this run changed rabbitmq.conf, put the
# previous conf back and start again. Returns 0 once RabbitMQ is up.
rabbit_recover() {
    if rabbit_start; then
        RABBIT_STOPPED=0
        return 0
    fi
    rabbit_tail_logs
    if [[ -f $RABBIT_CONF_PREV ]] && ! cmp -s "$RABBIT_CONF_PREV" "$RABBIT_CONF"; then
        log "putting the previous $RABBIT_CONF back (kept as $RABBIT_CONF.rotor-failed) and starting again"
        cp -p "$RABBIT_CONF" "$RABBIT_CONF.rotor-failed" || true
        cp "$RABBIT_CONF_PREV" "$RABBIT_CONF" || true
        rabbit_stop || true
        if rabbit_start plain || rabbit_booted; then
            RABBIT_STOPPED=0
            log "RabbitMQ is running again with the previous configuration"
        else
            log "RabbitMQ could not be started again; start it by hand: rabbitmq-server -detached"
        fi
    elif rabbit_booted; then
        RABBIT_STOPPED=0
        log "RabbitMQ is running (but not as configured)"
    fi
    return 1
}

render_rabbit_block() {
    cat <<EOF
$BLOCK_BEGIN
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
ssl_options.cacertfile = $RABBIT_TLS_DIR/ca.pem
ssl_options.certfile = $RABBIT_TLS_DIR/server.pem
ssl_options.keyfile = $RABBIT_TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
management.ssl.ip = 127.0.0.1
management.ssl.port = $MGMT_PORT
management.ssl.cacertfile = $RABBIT_TLS_DIR/ca.pem
management.ssl.certfile = $RABBIT_TLS_DIR/server.pem
management.ssl.keyfile = $RABBIT_TLS_DIR/server.key
$BLOCK_END
EOF
}

# The management plugin, enabled in the file RabbitMQ reads at boot (its settings in our
# block would stop a node without it from booting). Returns 0 if it changed the file.
ensure_mgmt_plugin() {
    if [[ -f $RABBIT_PLUGINS ]] && grep -q 'rabbitmq_management[],. ]' "$RABBIT_PLUGINS"; then
        log "ok: the management plugin is enabled"
        return 1
    fi
    timeout 120 rabbitmq-plugins --offline enable rabbitmq_management </dev/null >&2 9>&- \
        || die "rabbitmq-plugins could not enable rabbitmq_management"
    log "changed: enabled the management plugin (it starts with RabbitMQ's next boot)"
    return 0
}

# True if the management API answers over verified HTTPS on 127.0.0.1:MGMT_PORT.
mgmt_ok() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$CA_CERT" \
        "https://127.0.0.1:$MGMT_PORT/api/overview" 2>/dev/null) || return 1
    # 401: it answered (and wants credentials).
    [[ $code == 401 || $code == 200 ]]
}

# Prints the conf with our block replaced (or appended): everything outside the block
# is kept as it is.
render_rabbit_conf() {
    local begins ends kept
    if [[ -f $RABBIT_CONF ]]; then
        begins=$(grep -cxF "$BLOCK_BEGIN" "$RABBIT_CONF" || true)
        ends=$(grep -cxF "$BLOCK_END" "$RABBIT_CONF" || true)
        ((begins <= 1 && begins == ends)) \
            || die "$RABBIT_CONF has $begins begin and $ends end marker lines of our block: fix it by hand"
        # TLS settings outside our block would fight with ours.
        if awk -v b="$BLOCK_BEGIN" -v e="$BLOCK_END" '
                $0 == b { inblock = 1; next } $0 == e { inblock = 0; next }
                !inblock && /^[[:space:]]*(listeners\.ssl|ssl_options\.)/ { print; found = 1 }
                END { exit !found }' "$RABBIT_CONF" >&2; then
            die "$RABBIT_CONF sets the TLS keys above outside our block: remove them (or move them into it)"
        fi
        kept=$(awk -v b="$BLOCK_BEGIN" -v e="$BLOCK_END" '
            $0 == b { inblock = 1; next } $0 == e { inblock = 0; next } !inblock { print }' "$RABBIT_CONF")
        # $(...) dropped the trailing newlines; one blank line separates our block.
        [[ -z $kept ]] || printf '%s\n\n' "$kept"
    fi
    render_rabbit_block
}

ensure_rabbit_tls() {
    local changed=0 conf_changed=0 owners tmp
    install -d -m 0750 -o rabbitmq -g rabbitmq "$RABBIT_TLS_DIR"
    write_if_changed "$RABBIT_TLS_DIR/ca.pem" 0644 rabbitmq:rabbitmq <"$CA_CERT" && changed=1
    write_if_changed "$RABBIT_TLS_DIR/server.pem" 0644 rabbitmq:rabbitmq <"$SERVER_CERT" && changed=1
    write_if_changed "$RABBIT_TLS_DIR/server.key" 0600 rabbitmq:rabbitmq <"$SERVER_KEY" && changed=1
    if ((changed)); then log "changed: copied the CA, server certificate and key to $RABBIT_TLS_DIR"; fi
    if ensure_mgmt_plugin; then changed=1; fi

    # Before anything changes: a port some other program holds would keep RabbitMQ
    # from booting with our block.
    owners=$(listen_owners "$AMQPS_PORT" | grep -vx 'beam.smp' || true)
    [[ -z $owners ]] \
        || die "port $AMQPS_PORT is taken by $(tr '\n' ' ' <<<"$owners"| sed 's/ $//'): pick another ROTOR_TLS_AMQPS_PORT"

    tmp=$TMP_DIR/rabbitmq.conf
    render_rabbit_conf >"$tmp"
    if [[ -f $RABBIT_CONF ]] && cmp -s "$tmp" "$RABBIT_CONF"; then
        log "ok: $RABBIT_CONF has our block (TLS on 127.0.0.1:$AMQPS_PORT)"
    else
        mkdir -p "$(dirname "$RABBIT_CONF")"
        if [[ -f $RABBIT_CONF ]]; then
            [[ -e $RABBIT_CONF_ORIG ]] || cp -p "$RABBIT_CONF" "$RABBIT_CONF_ORIG"
            cp -p "$RABBIT_CONF" "$RABBIT_CONF_PREV"
        else
            : >"$RABBIT_CONF_PREV"
        fi
        write_if_changed "$RABBIT_CONF" 0644 <"$tmp" || true
        conf_changed=1
        log "changed: wrote our block into $RABBIT_CONF (original kept as $RABBIT_CONF_ORIG)"
    fi

    if ! rabbit_booted; then
        # Not running (or not answering): start it, it reads the new conf at boot.
        log "RabbitMQ is not running"
        RABBIT_STOPPED=1
        rabbit_recover || die "RabbitMQ does not come up with TLS on 127.0.0.1:$AMQPS_PORT"
    elif ((conf_changed || changed)) || ! rabbit_tls_ok || ! mgmt_ok; then
        # RabbitMQ reads rabbitmq.conf (and caches the PEM files) at boot: restart.
        if ((conf_changed || changed)); then
            log "RabbitMQ must restart to pick up the changed configuration/certificates"
        else
            log "RabbitMQ does not serve our certificate on 127.0.0.1:$AMQPS_PORT: restarting it"
        fi
        RABBIT_STOPPED=1
        rabbit_stop || true
        rabbit_recover || die "RabbitMQ does not come up with TLS on 127.0.0.1:$AMQPS_PORT"
        log "changed: RabbitMQ restarted"
    else
        log "ok: RabbitMQ already serves our certificate on 127.0.0.1:$AMQPS_PORT (no restart)"
    fi
    rm -f "$RABBIT_CONF_PREV"

    # The checks the tests rely on.
    is_listening "$AMQP_PORT" || die "RabbitMQ's plain listener 127.0.0.1:$AMQP_PORT is gone"
    rabbit_tls_ok || die "RabbitMQ: verified TLS handshake on 127.0.0.1:$AMQPS_PORT with $CA_CERT fails"
    if rabbit_tls_probe "$WRONG_CA_CERT" >/dev/null; then
        die "RabbitMQ: TLS handshake verified against the wrong CA $WRONG_CA_CERT"
    fi
    rabbit_amqp_over_tls_ok || die "RabbitMQ: no AMQP connection.start over TLS on 127.0.0.1:$AMQPS_PORT"
    local i
    for ((i = 0; i < 30; i++)); do mgmt_ok && break; sleep 1; done
    mgmt_ok || die "RabbitMQ: the management API does not answer over HTTPS on 127.0.0.1:$MGMT_PORT"
    log "ok: RabbitMQ TLS on 127.0.0.1:$AMQPS_PORT verifies (IP and localhost), speaks AMQP; wrong CA refused; plain $AMQP_PORT up"
}

# ensure_rabbit_user NAME PASSWORD_FILE TAGS: a RabbitMQ user with a random password
# kept in a 0600 file and permissions .* .* .* on vhost /. rabbitmqctl 3.10 takes
# passwords only as arguments (briefly visible in ps); acceptable for a local, random,
# test-only password.
ensure_rabbit_user() {
    local user=$1 file=$2 tags=$3 pw perms
    if [[ ! -s $file ]]; then
        pw=$(openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | head -c 32)
        ((${#pw} == 32)) || die "could not generate a password"
        (umask 077 && printf '%s' "$pw" >"$file.tmp")
        mv -f "$file.tmp" "$file"
        log "changed: generated the $user password in $file"
    fi
    chown root:root "$file"
    chmod 0600 "$file"
    pw=$(<"$file")
    [[ $pw =~ ^[A-Za-z0-9]{16,}$ ]] || die "$file does not hold a plain password; delete it and run up again"

    if rmq -q list_users --no-table-headers | awk -v u="$user" '$1 == u { f = 1 } END { exit !f }'; then
        if rmq -q authenticate_user "$user" "$pw" >/dev/null 2>&1; then
            log "ok: RabbitMQ user $user exists with the password in $file"
        else
            rmq -q change_password "$user" "$pw" >/dev/null
            log "changed: RabbitMQ user $user: password set to the one in $file"
        fi
    else
        rmq -q add_user "$user" "$pw" >/dev/null
        log "changed: created RabbitMQ user $user"
    fi
    pw=''
    if [[ -n $tags ]]; then
        rmq -q set_user_tags "$user" "$tags" >/dev/null
    fi
    perms=$(rmq -q list_user_permissions --no-table-headers "$user")
    if grep -qxF "$(printf '/\t.*\t.*\t.*')" <<<"$perms"; then
        log "ok: $user has .* .* .* on vhost /"
    else
        rmq -q set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
        log "changed: gave $user .* .* .* on vhost /"
    fi
}

env_lines() {
    printf 'ROTOR_TLS_CA=%s\n' "$CA_CERT"
    printf 'ROTOR_TLS_WRONG_CA=%s\n' "$WRONG_CA_CERT"
    printf 'ROTOR_TLS_CERT=%s\n' "$SERVER_CERT"
    printf 'ROTOR_TLS_KEY=%s\n' "$SERVER_KEY"
    printf 'ROTOR_TLS_AMQPS_PORT=%s\n' "$AMQPS_PORT"
    printf 'ROTOR_TLS_PRODUCER_USER=%s\n' "$PRODUCER"
    printf 'ROTOR_TLS_PRODUCER_PASSWORD_FILE=%s\n' "$PRODUCER_PW_FILE"
    printf 'ROTOR_TLS_MGMT_PORT=%s\n' "$MGMT_PORT"
    printf 'ROTOR_TLS_MGMT_ADMIN=%s\n' "$MGMT_ADMIN"
    printf 'ROTOR_TLS_MGMT_ADMIN_PASSWORD_FILE=%s\n' "$MGMT_PW_FILE"
}

# ---------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------

cmd_up() {
    need_root up "it configures RabbitMQ and PostgreSQL"
    take_lock
    install_packages
    ensure_material
    ensure_pg_tls
    ensure_rabbit_tls
    ensure_rabbit_user "$PRODUCER" "$PRODUCER_PW_FILE" ""
    ensure_rabbit_user "$MGMT_ADMIN" "$MGMT_PW_FILE" administrator
    env_lines | write_if_changed "$ENV_FILE" 0644 || true
    cat "$ENV_FILE"
}

# Prints problems with TLS on both servers to stderr; returns 0 if there are none.
check_working() {
    local bad=0
    if [[ ! -s $ENV_FILE || ! -s $CA_CERT || ! -s $WRONG_CA_CERT || ! -s $SERVER_CERT || ! -e $SERVER_KEY || ! -e $PRODUCER_PW_FILE ]]; then
        log "not set up in $STATE_DIR: run 'scripts/tls.sh up' (as root)"
        return 1
    fi
    if ! pg_tls_ok "$CA_CERT"; then
        log "PostgreSQL: verify-full with $CA_CERT fails: ${PG_TLS_ERR:-?}"
        bad=1
    elif ! pg_serves_our_cert; then
        log "PostgreSQL: serves a certificate other than $SERVER_CERT"
        bad=1
    fi
    if ! rabbit_tls_ok; then
        log "RabbitMQ: no verified TLS with our certificate on 127.0.0.1:$AMQPS_PORT"
        bad=1
    fi
    if ! mgmt_ok; then
        log "RabbitMQ: the management API does not answer over HTTPS on 127.0.0.1:$MGMT_PORT"
        bad=1
    fi
    return "$bad"
}

cmd_env() {
    load_recorded
    validate_settings
    check_working || die "TLS test bed in $STATE_DIR is not working: run 'scripts/tls.sh up' (as root)"
    env_lines
}

cmd_status() {
    load_recorded
    validate_settings
    if check_working; then
        echo "up: PostgreSQL $PG_HOST:$PG_PORT verify-full and RabbitMQ TLS on 127.0.0.1:$AMQPS_PORT work with $CA_CERT"
    else
        echo "down: TLS is not working on both servers (state dir $STATE_DIR; run 'up' to fix)"
        exit 1
    fi
}

usage() {
    cat >&2 <<EOF
usage: $PROG up | env | status
  up       make (or reuse) the test CA, the wrong CA and the server certificate, give
           PostgreSQL TLS and RabbitMQ a TLS listener on 127.0.0.1:\$ROTOR_TLS_AMQPS_PORT
           (default 5671), create the RabbitMQ user $PRODUCER; print the env lines
  env      print the env lines of a working set-up (exit 1 if none)
  status   print whether TLS works on both servers (exit 0 if it does, 1 if not)
EOF
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    validate_settings
    case $cmd in
        up) [[ $# -eq 0 ]] || { usage; exit 2; }; cmd_up ;;
        env) [[ $# -eq 0 ]] || { usage; exit 2; }; cmd_env ;;
        status) [[ $# -eq 0 ]] || { usage; exit 2; }; cmd_status ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
