#!/usr/bin/env bash
# scripts/testbed.sh — a local OpenSSH target for rotor's demo and integration tests.
#
# It runs a private sshd (its own host key, config, pid file and log under the state
# dir) on 127.0.0.1 only, next to (never instead of) the distro's sshd, plus an admin
# account that logs in with a key and may run `sudo -n /usr/sbin/chpasswd` (plus the
# read-only `chage -l USER` and `passwd -S USER` for pre-flight checks).
#
#   scripts/testbed.sh up                     install what is missing, start, print env lines
#   scripts/testbed.sh env                    print the env lines of a running test bed
#   scripts/testbed.sh account NAME           create/reset account NAME, password = one line on stdin
#   scripts/testbed.sh remove-accounts PREFIX delete local users whose name starts with PREFIX
#   scripts/testbed.sh down                   stop our sshd (accounts stay)
#   scripts/testbed.sh status                 say whether it is up (exit 0 up, 1 down)
#
# `up` and `env` print exactly four KEY=VALUE lines on stdout (safe for `eval`):
#   ROTOR_TESTBED_PORT, ROTOR_TESTBED_ADMIN, ROTOR_TESTBED_ADMIN_KEY, ROTOR_TESTBED_HOST_KEY_FPR
# Everything else goes to stderr. Every subcommand is idempotent, never reads stdin
# except `account`, and needs no terminal (CI=true, stdin=/dev/null are fine).
#
# Settings (environment):
#   ROTOR_TESTBED_DIR    state dir          (default /var/lib/rotor-testbed)
#   ROTOR_TESTBED_PORT   port on 127.0.0.1  (default 2222)
#   ROTOR_TESTBED_ADMIN  admin account      (default rotoradm)
#   ROTOR_TESTBED_PASSWORD_AUTH  no: sshd refuses SSH "password" authentication and takes
#                        passwords only by keyboard-interactive, as ESXi does (default yes)
#   ROTOR_TESTBED_FAILLOCK_DENY  N: this sshd runs under a name of its own, so PAM reads a
#                        service of its own with pam_faillock deny=N (tally in the state
#                        dir's faillock/), as a target that locks an account would
#                        (default: none, the distro's sshd PAM service)
# `up` records the values it used in $ROTOR_TESTBED_DIR/testbed.env; env/status/down
# read them from there, so they only need the same ROTOR_TESTBED_DIR.
set -euo pipefail

# ---------------------------------------------------------------------------------------
# Settings and fixed paths
# ---------------------------------------------------------------------------------------
STATE_DIR=${ROTOR_TESTBED_DIR:-/var/lib/rotor-testbed}
PORT=${ROTOR_TESTBED_PORT:-2222}
ADMIN=${ROTOR_TESTBED_ADMIN:-rotoradm}

SSHD=/usr/sbin/sshd
HOST_KEY=$STATE_DIR/ssh_host_ed25519_key
CONFIG=$STATE_DIR/sshd_config
PID_FILE=$STATE_DIR/sshd.pid
LOG_FILE=$STATE_DIR/sshd.log
ADMIN_KEY=$STATE_DIR/admin_ed25519
KNOWN_HOSTS=$STATE_DIR/known_hosts      # our host key, for the smoke test (and for anyone)
ENV_FILE=$STATE_DIR/testbed.env         # the four lines `up` printed last
LOCK_FILE=$STATE_DIR/.lock
# The sudoers drop-in (no '.' in the name: sudo skips such files). A non-default admin
# gets its own file, so a second test bed cannot take the default admin's rights away.
SUDOERS_FILE=/etc/sudoers.d/rotor-testbed
[[ $ADMIN == rotoradm ]] || SUDOERS_FILE=/etc/sudoers.d/rotor-testbed-$ADMIN
PAM_SSHD=/etc/pam.d/sshd
FAILLOCK_DENY=${ROTOR_TESTBED_FAILLOCK_DENY:-}
PASSWORD_AUTH=${ROTOR_TESTBED_PASSWORD_AUTH:-yes}
# sshd names its PAM service after its program name: a symlink of our own gives it one.
SSHD_RUN=$SSHD
PAM_SERVICE_FILE=
if [[ -n $FAILLOCK_DENY ]]; then
    SSHD_RUN=/usr/local/sbin/rotor-testbed-sshd-$PORT
    PAM_SERVICE_FILE=/etc/pam.d/rotor-testbed-sshd-$PORT
fi
FAILLOCK_DIR=$STATE_DIR/faillock
POLICY_RC=/usr/sbin/policy-rc.d
# Marker line of the policy-rc.d we create temporarily; only a file with it is removed.
POLICY_RC_MARK='# rotor-testbed: temporary, blocks service starts during apt-get install'

PROG=testbed.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Local user names we accept: lowercase letter first, then [a-z0-9_-], at most 32 chars.
NAME_RE='^[a-z][a-z0-9_-]{0,31}$'

validate_settings() {
    # The dir ends up in sshd_config and in eval'ed output: keep it to a plain absolute path.
    [[ $STATE_DIR =~ ^/[A-Za-z0-9._/-]+$ && $STATE_DIR != / ]] \
        || die "ROTOR_TESTBED_DIR must be an absolute path of [A-Za-z0-9._/-] (got '$STATE_DIR')"
    if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
        die "ROTOR_TESTBED_PORT must be a port number 1-65535 (got '$PORT')"
    fi
    PORT=$((10#$PORT))
    [[ $ADMIN =~ $NAME_RE ]] || die "ROTOR_TESTBED_ADMIN '$ADMIN' is not a valid user name"
    [[ $ADMIN != root ]] || die "ROTOR_TESTBED_ADMIN must not be root"
}



# Values recorded by the last `up` (port/admin), so env/status/down need no settings.
load_recorded() {
    local line
    [[ -r $ENV_FILE ]] || return 0
    while IFS= read -r line; do
        case $line in
            ROTOR_TESTBED_PORT=*) PORT=${line#*=} ;;
            ROTOR_TESTBED_ADMIN=*) ADMIN=${line#*=} ;;
        esac
    done <"$ENV_FILE"
}

# ---------------------------------------------------------------------------------------
# Process and port checks (plain /proc, so they need no extra tools and make no
# connections that would clutter the sshd log)
# ---------------------------------------------------------------------------------------

# Prints the pid from the pid file if that process is alive and really is our sshd
# (the binary is sshd and its command line names our config: guards against a stale
# pid file whose pid was reused).
our_sshd_pid() {
    local pid exe cmdline
    [[ -r $PID_FILE ]] || return 1
    read -r pid <"$PID_FILE" || true
    [[ ${pid:-} =~ ^[0-9]+$ ]] || return 1
    [[ -d /proc/$pid ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$CONFIG"* ]] || return 1
    # /proc/PID/exe is readable only by root; a non-root status/env trusts the cmdline.
    if exe=$(readlink "/proc/$pid/exe" 2>/dev/null); then
        [[ $exe == "$SSHD" || $exe == "$SSHD (deleted)" ]] || return 1
    fi
    printf '%s\n' "$pid"
}

# Prints the socket inode of a TCP socket LISTENing on 127.0.0.1:PORT (or 0.0.0.0:PORT,
# which would also take our connections), nothing if there is none.
# /proc/net/tcp holds addresses as little-endian hex: 127.0.0.1 = 0100007F; state 0A = LISTEN.
listen_inode() {
    local hexport
    hexport=$(printf '%04X' "$PORT")
    awk -v a="0100007F:$hexport" -v b="00000000:$hexport" \
        '$4 == "0A" && ($2 == a || $2 == b) { print $10; exit }' /proc/net/tcp
}

# True if PID holds the socket with inode INODE (root only; non-root assumes yes).
pid_holds_socket() {
    local pid=$1 inode=$2 fd
    [[ -r /proc/$pid/fd ]] || return 0
    for fd in /proc/"$pid"/fd/*; do
        [[ $(readlink "$fd" 2>/dev/null) == "socket:[$inode]" ]] && return 0
    done
    return 1
}

# True if our sshd is alive and it (not someone else) listens on 127.0.0.1:PORT.
is_up() {
    local pid inode
    pid=$(our_sshd_pid) || return 1
    inode=$(listen_inode)
    [[ -n $inode ]] && pid_holds_socket "$pid" "$inode"
}

# ---------------------------------------------------------------------------------------
# up: the pieces
# ---------------------------------------------------------------------------------------

# The policy-rc.d we may create is removed on any exit (error, Ctrl-C, TERM).
CREATED_POLICY_RC=0
cleanup() {
    if ((CREATED_POLICY_RC)) && [[ -f $POLICY_RC ]] && grep -qxF "$POLICY_RC_MARK" "$POLICY_RC"; then
        rm -f "$POLICY_RC"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


install_packages() {
    local missing=() p
    # faketime (libfaketime): the scheduler tests run `rotor run` a day or more ahead.
    # curl: the deploy script registers a host with it. libpam-modules-bin: faillock.
    # libpasswdqc1: the library of pam_passwdqc (ESXi's password checker), for the esxi group.
    for p in openssh-server sudo sshpass faketime curl libpam-modules-bin libpasswdqc1; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "ok: packages openssh-server sudo sshpass faketime curl libpam-modules-bin libpasswdqc1 installed"
        return
    fi
    # openssh-server's postinst would start the distro sshd on port 22 (all addresses).
    # We do not want that one: a policy-rc.d that exits 101 ("action forbidden") stops
    # invoke-rc.d from starting any service during this install. Only created if none is
    # there already (container images often ship one), and removed again by cleanup().
    if [[ ! -e $POLICY_RC ]]; then
        printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_RC_MARK" >"$POLICY_RC"
        chmod 0755 "$POLICY_RC"
        CREATED_POLICY_RC=1
    fi
    apt_install "${missing[@]}"
    cleanup
    CREATED_POLICY_RC=0
    for p in "${missing[@]}"; do
        pkg_installed "$p" || die "package $p did not install"
    done
}

prepare_dirs() {
    # 0755: the public parts (host key .pub, known_hosts, testbed.env, pid file) stay
    # readable for a non-root `env`/`status`; the private keys and the log are 0600.
    mkdir -p "$STATE_DIR"
    chmod 0755 "$STATE_DIR"
    # sshd refuses to start without its privilege separation dir (normally made by the
    # init script / systemd RuntimeDirectory, neither of which runs here).
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
}

# ensure_key FILE COMMENT: an ed25519 key pair without passphrase, private part 0600.
ensure_key() {
    local file=$1 comment=$2
    if [[ ! -s $file ]]; then
        rm -f "$file" "$file.pub"
        ssh-keygen -q -t ed25519 -N '' -C "$comment" -f "$file" </dev/null >&2
        log "changed: generated $file"
    fi
    chmod 0600 "$file"
    chown root:root "$file"
    if [[ ! -s $file.pub ]]; then
        ssh-keygen -y -f "$file" >"$file.pub"
        log "changed: rebuilt $file.pub"
    fi
    chmod 0644 "$file.pub"
}


ensure_admin() {
    local home shell status ak pub
    if ! getent passwd "$ADMIN" >/dev/null; then
        useradd -m -s /bin/bash -c 'rotor testbed admin' "$ADMIN" >&2
        log "changed: created user $ADMIN"
    fi
    IFS=: read -r _ _ _ _ _ home shell < <(getent passwd "$ADMIN")
    if [[ $shell != /bin/bash ]]; then
        usermod -s /bin/bash "$ADMIN" >&2
        log "changed: shell of $ADMIN set to /bin/bash"
    fi
    # Locked password: the admin logs in by key only. (With UsePAM yes sshd does not
    # refuse key logins of accounts whose password is locked with '!'.)
    status=$(passwd -S "$ADMIN" | awk '{print $2}')
    if [[ $status != L ]]; then
        usermod -L "$ADMIN" >&2 2>/dev/null || passwd -l "$ADMIN" >&2
        log "changed: password of $ADMIN locked"
    fi
    [[ -n $home && $home != / ]] || die "user $ADMIN has no usable home directory ('$home')"
    if [[ ! -d $home ]]; then
        mkdir -p "$home"
        chown "$ADMIN": "$home"
        chmod 0750 "$home"
        log "changed: created home $home"
    fi
    # StrictModes: home and ~/.ssh must not be group/world writable and must belong to the user.
    chmod go-w "$home"
    install -d -m 0700 -o "$ADMIN" -g "$(id -gn "$ADMIN")" "$home/.ssh"
    # Our key is added if absent, other lines are kept: a second test bed (another
    # ROTOR_TESTBED_DIR) with the same admin must not lock the first one out.
    ak=$home/.ssh/authorized_keys
    pub=$(cut -d' ' -f1,2 "$ADMIN_KEY.pub")
    if [[ -f $ak ]] && grep -qF "$pub" "$ak"; then
        log "ok: admin key in $ak"
    else
        cat "$ADMIN_KEY.pub" >>"$ak"
        log "changed: added $ADMIN_KEY.pub to $ak"
    fi
    chown "$ADMIN": "$ak"
    chmod 0600 "$ak"
}

ensure_sudoers() {
    local tmp
    [[ -d /etc/sudoers.d ]] || install -d -m 0755 /etc/sudoers.d
    grep -Eq '^[@#]includedir[[:space:]]+/etc/sudoers\.d' /etc/sudoers \
        || die "/etc/sudoers does not include /etc/sudoers.d"
    # Build and validate in /tmp first: a broken file in /etc/sudoers.d breaks sudo for all.
    tmp=$(mktemp /tmp/rotor-testbed-sudoers.XXXXXX)
    cat >"$tmp" <<EOF
# Managed by rotor scripts/testbed.sh: the test bed's admin may run chpasswd as root,
# without a password, and read (never change) an account's status and aging for
# rotor's pre-flight checks. The arguments are regular expressions: one -l or -S and
# one account name, nothing else.
# \`passwd NAME\` (one account name, no option) is the esxi platform's change, as root's
# on ESXi: it may set a password as chpasswd may.
$ADMIN ALL=(root) NOPASSWD: /usr/sbin/chpasswd, /usr/bin/chage ^-l [a-z_][a-z0-9_.-]*$, /usr/bin/passwd ^-S [a-z_][a-z0-9_.-]*$, /usr/bin/passwd ^[a-z_][a-z0-9_.-]*$
EOF
    if ! visudo -q -cf "$tmp" >&2; then
        rm -f "$tmp"
        die "generated sudoers drop-in does not validate"
    fi
    if [[ -f $SUDOERS_FILE ]] && cmp -s "$tmp" "$SUDOERS_FILE"; then
        rm -f "$tmp"
        log "ok: $SUDOERS_FILE"
    else
        install -m 0440 -o root -g root "$tmp" "$SUDOERS_FILE"
        rm -f "$tmp"
        log "changed: wrote $SUDOERS_FILE"
    fi
    chmod 0440 "$SUDOERS_FILE"
}

# pam_loginuid: Debian's /etc/pam.d/sshd has "session required pam_loginuid.so", which
# writes the user's uid to /proc/self/loginuid when a session opens. In a container
# (no CAP_AUDIT_CONTROL while the loginuid is already set, or audit loginuid made
# immutable) that write fails with EPERM, the session cannot open, and every login,
# password or key, is dropped right after authentication ("PAM session failed"), so
# no exec channel ever runs. We probe the same write our sshd's children will do (a
# throwaway shell of ours writes its own loginuid; sshd inherits our loginuid and
# capabilities, so the result carries over) and only if it fails make the module
# "optional" (a backup of the original goes to the state dir). On machines where the
# write works (VMs, real hosts) the PAM stack is left as the distro ships it.
ensure_pam_loginuid() {
    [[ -f $PAM_SSHD ]] || die "$PAM_SSHD missing (openssh-server not installed right?)"
    if ! grep -Eq '^[[:space:]]*session[[:space:]]+required[[:space:]]+pam_loginuid\.so' "$PAM_SSHD"; then
        log "ok: pam_loginuid is not required in $PAM_SSHD"
        return
    fi
    if [[ ! -e /proc/self/loginuid ]]; then
        log "ok: kernel has no loginuid (pam_loginuid ignores that)"
        return
    fi
    if sh -c 'echo 65534 > /proc/self/loginuid' 2>/dev/null; then
        log "ok: loginuid is writable here, pam_loginuid left as required"
        return
    fi
    [[ -e $STATE_DIR/pam.d-sshd.orig ]] || cp -p "$PAM_SSHD" "$STATE_DIR/pam.d-sshd.orig"
    sed -i -E 's/^([[:space:]]*session[[:space:]]+)required([[:space:]]+pam_loginuid\.so)/\1optional\2/' "$PAM_SSHD"
    log "changed: loginuid is not writable here (container), pam_loginuid made optional in $PAM_SSHD (original in $STATE_DIR/pam.d-sshd.orig)"
}

# Does this sshd know OPTION VALUE? (`sshd -t` on a minimal config holding it.)
sshd_supports() {
    local tmp ok=1
    tmp=$(mktemp /tmp/rotor-testbed-probe.XXXXXX)
    printf 'HostKey %s\n%s\n' "$HOST_KEY" "$1" >"$tmp"
    "$SSHD" -t -f "$tmp" >/dev/null 2>&1 && ok=0
    rm -f "$tmp"
    return $ok
}

# Prints our sshd_config.
render_config() {
    local penalties=''
    # OpenSSH >= 9.8 penalises sources that fail authentication (PerSourcePenalties) and
    # would block 127.0.0.1 after a few wrong-password tests; 9.2 (Debian 12) has no
    # such option, so it is only set where sshd knows it.
    if sshd_supports 'PerSourcePenalties no'; then
        penalties='PerSourcePenalties no'
    fi
    cat <<EOF
# Managed by rotor scripts/testbed.sh — regenerated by every \`up\`; edit the script instead.
# Standalone: it includes nothing from /etc/ssh, so the distro config cannot leak in.
Port $PORT
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $HOST_KEY
PidFile $PID_FILE
LogLevel VERBOSE

# Authentication: keys (admin) and passwords through PAM (the accounts under test).
# PAM gives the real pam_unix fail delay (about 2 s) on a wrong password.
UsePAM yes
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication $PASSWORD_AUTH
KbdInteractiveAuthentication yes
PermitEmptyPasswords no
PermitRootLogin no
StrictModes yes
MaxAuthTries 6
LoginGraceTime 30
# Up to 200 unauthenticated connections are never refused, then random early drops up
# to 400: tests open ~100 at once.
MaxStartups 200:30:400
MaxSessions 10
$penalties

# No reverse DNS for 127.0.0.1 (no resolver delays), no environment from clients
# (no AcceptEnv line = none accepted), no forwarding of any kind.
UseDNS no
PermitUserEnvironment no
AllowAgentForwarding no
AllowTcpForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTunnel no
GatewayPorts no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
EOF
}

# Starts our sshd and polls (up to 15 s) until it holds a LISTEN socket on the port.
start_sshd() {
    local i pid inode
    # Keep the log from growing without bound across many test runs.
    if [[ -f $LOG_FILE ]] && (($(stat -c %s "$LOG_FILE") > 64 * 1024 * 1024)); then
        mv -f "$LOG_FILE" "$LOG_FILE.old"
    fi
    rm -f "$PID_FILE"
    # sshd daemonises (its parent returns at once) and detaches from our fds; closing
    # fd 9 makes sure the lock is not inherited either.
    "$SSHD_RUN" -f "$CONFIG" -E "$LOG_FILE" </dev/null >&2 9>&- \
        || die "sshd failed to start; see $LOG_FILE"
    for ((i = 0; i < 150; i++)); do
        if pid=$(our_sshd_pid); then
            inode=$(listen_inode)
            if [[ -n $inode ]] && pid_holds_socket "$pid" "$inode"; then
                log "changed: sshd started (pid $pid) on 127.0.0.1:$PORT"
                return
            fi
        fi
        sleep 0.1
    done
    log "sshd did not come up within 15 s; last lines of $LOG_FILE:"
    tail -n 20 "$LOG_FILE" >&2 || true
    exit 1
}

stop_sshd() {
    local pid i
    pid=$(our_sshd_pid) || { rm -f "$PID_FILE"; return 1; }
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "sshd (pid $pid) ignored TERM for 10 s, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped sshd (pid $pid); sessions already open end on their own"
}

# A real key login of the admin with an exec channel, against our pinned host key:
# proves sshd, PAM (session included) and the key are all fine.
smoke_test() {
    local out
    if ! out=$(ssh -F /dev/null -p "$PORT" -i "$ADMIN_KEY" \
        -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KNOWN_HOSTS" \
        -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 -o LogLevel=ERROR \
        "$ADMIN@127.0.0.1" 'echo rotor-testbed-ok' </dev/null 2>&1 9>&-) \
        || [[ $out != *rotor-testbed-ok* ]]; then
        log "smoke test failed: admin key login with exec: $out"
        log "last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 || true
        if grep -q 'pam_loginuid\|PAM session' "$LOG_FILE" 2>/dev/null; then
            log "hint: PAM session setup fails; see the pam_loginuid note in this script"
        fi
        exit 1
    fi
    log "ok: admin key login with an exec channel works"
}

host_key_fpr() {
    local out
    out=$(ssh-keygen -l -E sha256 -f "$HOST_KEY.pub")
    awk '{print $2}' <<<"$out"
}

env_lines() {
    printf 'ROTOR_TESTBED_PORT=%s\n' "$PORT"
    printf 'ROTOR_TESTBED_ADMIN=%s\n' "$ADMIN"
    printf 'ROTOR_TESTBED_ADMIN_KEY=%s\n' "$ADMIN_KEY"
    printf 'ROTOR_TESTBED_HOST_KEY_FPR=%s\n' "$(host_key_fpr)"
}

# ---------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------

# With ROTOR_TESTBED_FAILLOCK_DENY: the symlink sshd runs as, and its PAM service (the
# password check of pam_unix, guarded by pam_faillock).
ensure_faillock_service() {
    [[ -n $FAILLOCK_DENY ]] || return 0
    [[ $FAILLOCK_DENY =~ ^[1-9][0-9]?$ ]] || die "ROTOR_TESTBED_FAILLOCK_DENY must be 1 to 99"
    [[ -e /usr/lib/x86_64-linux-gnu/security/pam_faillock.so || -e /lib/x86_64-linux-gnu/security/pam_faillock.so ]] \
        || command -v faillock >/dev/null || die "pam_faillock is not installed (libpam-modules)"
    install -d -m 0700 "$FAILLOCK_DIR"
    install -d -m 0755 /usr/local/sbin
    [[ $(readlink "$SSHD_RUN" 2>/dev/null) == "$SSHD" ]] || ln -sfn "$SSHD" "$SSHD_RUN"
    local opts="dir=$FAILLOCK_DIR deny=$FAILLOCK_DENY fail_interval=900 unlock_time=900"
    write_if_changed "$PAM_SERVICE_FILE" 0644 <<EOF && log "changed: wrote $PAM_SERVICE_FILE"
# Managed by rotor scripts/testbed.sh: the PAM service of the test bed's sshd on port
# $PORT. pam_faillock locks an account after $FAILLOCK_DENY refused logins within 15
# minutes; an accepted login clears its tally (the account phase).
auth     requisite                   pam_faillock.so preauth $opts
auth     [success=1 default=ignore]  pam_unix.so
auth     [default=die]               pam_faillock.so authfail $opts
auth     sufficient                  pam_faillock.so authsucc $opts
auth     requisite                   pam_deny.so
account  required                    pam_faillock.so $opts
account  required                    pam_unix.so
password required                    pam_unix.so
session  required                    pam_unix.so
EOF
    printf '%s\n' "$PAM_SERVICE_FILE" "$SSHD_RUN" >"$STATE_DIR/faillock-files"
}

# ESXi's password prompts: members of the group rotor-esxi change passwords through
# pam_passwdqc with ESXi's settings, so `passwd` asks "Enter new password:" and
# "Re-type new password:" and refuses what ESXi refuses. The module comes out of the
# libpam-passwdqc package without installing it: installed, its pam-auth-update profile
# would put passwdqc in front of every account's password change on this machine.
# /etc/pam.d/passwd gets a marked block that applies only to the group.
PASSWDQC_DIR=/usr/local/lib/rotor-testbed
PASSWDQC_MODULE=$PASSWDQC_DIR/pam_passwdqc.so
ESXI_GROUP=rotor-esxi
PAM_PASSWD=/etc/pam.d/passwd
PAM_MARK_BEGIN='# >>> rotor-testbed: ESXi password rules for group rotor-esxi'
PAM_MARK_END='# <<< rotor-testbed'
ensure_esxi_passwd() {
    local tmp
    if [[ ! -f $PASSWDQC_MODULE ]]; then
        tmp=$(mktemp -d /tmp/rotor-testbed-passwdqc.XXXXXX)
        (cd "$tmp" && apt-get -q download libpam-passwdqc </dev/null >&2 9>&-) \
            || { apt-get -q -o DPkg::Lock::Timeout=300 update </dev/null >&2 9>&-; (cd "$tmp" && apt-get -q download libpam-passwdqc </dev/null >&2 9>&-); } \
            || die "cannot download libpam-passwdqc"
        dpkg -x "$tmp"/libpam-passwdqc_*.deb "$tmp/x"
        install -d -m 0755 "$PASSWDQC_DIR"
        install -m 0644 "$(find "$tmp/x" -name pam_passwdqc.so | head -1)" "$PASSWDQC_MODULE"
        rm -rf "$tmp"
        log "changed: installed $PASSWDQC_MODULE"
    fi
    getent group "$ESXI_GROUP" >/dev/null || groupadd --system "$ESXI_GROUP"
    [[ -f $PAM_PASSWD ]] || die "$PAM_PASSWD missing"
    # The file without our block, then our block in front of its first line that is not a comment.
    tmp=$(mktemp /tmp/rotor-testbed-pam-passwd.XXXXXX)
    awk -v b="$PAM_MARK_BEGIN" -v e="$PAM_MARK_END" -v m="$PASSWDQC_MODULE" -v g="$ESXI_GROUP" '
        $0 == b { skip = 1; next }
        skip && $0 == e { skip = 0; next }
        skip { next }
        !done && $0 !~ /^#/ && $0 !~ /^[[:space:]]*$/ {
            print b
            print "password [success=ignore default=2] pam_succeed_if.so quiet user ingroup " g
            print "password requisite " m " retry=3 min=disabled,disabled,disabled,7,7"
            print "password [success=done default=die] pam_unix.so use_authtok obscure yescrypt"
            print e
            done = 1
        }
        { print }' "$PAM_PASSWD" >"$tmp"
    write_if_changed "$PAM_PASSWD" 0644 <"$tmp" && log "changed: ESXi block in $PAM_PASSWD"
    rm -f "$tmp"
}

cmd_up() {
    local pid inode config_changed=0
    [[ $PASSWORD_AUTH == yes || $PASSWORD_AUTH == no ]] || die "ROTOR_TESTBED_PASSWORD_AUTH must be yes or no"
    need_root up "it manages users, sudoers and sshd"
    take_lock
    install_packages
    prepare_dirs
    ensure_key "$HOST_KEY" "rotor-testbed-host"
    ensure_key "$ADMIN_KEY" "rotor-testbed-admin"
    write_if_changed "$KNOWN_HOSTS" 0644 <<<"[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$HOST_KEY.pub")" \
        && log "changed: wrote $KNOWN_HOSTS"
    ensure_admin
    ensure_sudoers
    ensure_pam_loginuid
    ensure_faillock_service
    ensure_esxi_passwd

    # Config: validated with `sshd -t` before it replaces the one in use.
    local tmp
    tmp=$(mktemp /tmp/rotor-testbed-sshd_config.XXXXXX)
    render_config >"$tmp"
    if ! "$SSHD" -t -f "$tmp" >&2; then
        rm -f "$tmp"
        die "generated sshd_config does not validate (sshd -t)"
    fi
    if write_if_changed "$CONFIG" 0644 <"$tmp"; then
        config_changed=1
        log "changed: wrote $CONFIG"
    else
        log "ok: $CONFIG"
    fi
    rm -f "$tmp"
    "$SSHD" -t -f "$CONFIG" >&2 || die "$CONFIG does not validate (sshd -t)"

    if pid=$(our_sshd_pid); then
        inode=$(listen_inode)
        if ((config_changed)); then
            log "config changed: restarting sshd (pid $pid)"
            stop_sshd || true
            start_sshd
        elif [[ -n $inode ]] && pid_holds_socket "$pid" "$inode"; then
            log "ok: sshd already running (pid $pid) on 127.0.0.1:$PORT"
        else
            log "sshd (pid $pid) is alive but not listening on 127.0.0.1:$PORT: restarting it"
            stop_sshd || true
            start_sshd
        fi
    else
        if [[ -n $(listen_inode) ]]; then
            die "127.0.0.1:$PORT is already taken by another program; pick another ROTOR_TESTBED_PORT"
        fi
        start_sshd
    fi

    smoke_test
    env_lines | write_if_changed "$ENV_FILE" 0644 || true
    cat "$ENV_FILE"
}

cmd_env() {
    load_recorded
    if [[ ! -s $ENV_FILE || ! -s $HOST_KEY.pub || ! -e $ADMIN_KEY || ! -s $CONFIG ]]; then
        die "test bed not set up in $STATE_DIR: run 'scripts/testbed.sh up' (as root)"
    fi
    if ! is_up; then
        die "test bed in $STATE_DIR is set up but its sshd is not running: run 'scripts/testbed.sh up'"
    fi
    env_lines
}

cmd_status() {
    local pid
    load_recorded
    if is_up; then
        pid=$(our_sshd_pid)
        echo "up: sshd pid $pid on 127.0.0.1:$PORT, admin $ADMIN, state in $STATE_DIR"
    elif pid=$(our_sshd_pid); then
        echo "down: sshd pid $pid is alive but not listening on 127.0.0.1:$PORT (run 'up' to fix)"
        exit 1
    else
        echo "down: no sshd of the test bed is running (state dir $STATE_DIR)"
        exit 1
    fi
}

cmd_down() {
    need_root down "it manages users, sudoers and sshd"
    load_recorded
    take_lock
    stop_sshd || log "ok: sshd was not running"
    # The faillock variant's PAM service and symlink go with it.
    if [[ -r $STATE_DIR/faillock-files ]]; then
        local f
        while IFS= read -r f; do
            case $f in
                /etc/pam.d/rotor-testbed-sshd-* | /usr/local/sbin/rotor-testbed-sshd-*) rm -f "$f" ;;
            esac
        done <"$STATE_DIR/faillock-files"
        rm -f "$STATE_DIR/faillock-files"
    fi
}

# Refuse to touch root, system accounts and the admin.
protected_user() {
    local name=$1 uid
    [[ $name == "$ADMIN" || $name == root ]] && return 0
    uid=$(getent passwd "$name" | cut -d: -f3) || return 1
    [[ -n $uid ]] && ((uid < 1000))
}

cmd_account() {
    local name=${1:-} pw='' shell
    [[ -n $name ]] || die "usage: $PROG account NAME   (password: one line on stdin)"
    [[ $name =~ $NAME_RE ]] \
        || die "bad account name '$name': lowercase letter first, then a-z 0-9 _ -, at most 32 chars"
    need_root account "it manages users, sudoers and sshd"
    load_recorded
    protected_user "$name" && die "refusing to touch '$name' (root, a system account or the admin)"
    # One line from stdin; a last line without newline counts too. No echo on a terminal.
    if [[ -t 0 ]]; then
        printf 'password for %s: ' "$name" >&2
        IFS= read -r -s pw || true
        echo >&2
    else
        IFS= read -r pw || [[ -n $pw ]] || die "no password on stdin"
    fi
    [[ -n $pw ]] || die "empty password"
    take_lock
    if ! getent passwd "$name" >/dev/null; then
        useradd -M -s /bin/bash "$name" >&2
        log "created user $name"
    else
        IFS=: read -r _ _ _ _ _ _ shell < <(getent passwd "$name")
        [[ $shell == /bin/bash ]] || usermod -s /bin/bash "$name" >&2
        log "resetting password of existing user $name"
    fi
    # The password travels only through a pipe: printf is a bash builtin, so it never
    # shows up in any process's argv (ps, /proc/*/cmdline).
    printf '%s:%s\n' "$name" "$pw" | chpasswd
    pw=''
    log "password of $name set"
}

cmd_remove_accounts() {
    local prefix=${1:-} name uid n=0
    [[ -n $prefix ]] || die "usage: $PROG remove-accounts PREFIX   (PREFIX at least 4 characters)"
    ((${#prefix} >= 4)) || die "prefix '$prefix' is shorter than 4 characters: refusing"
    [[ $prefix =~ ^[a-z][a-z0-9_-]*$ ]] || die "prefix '$prefix' cannot start a valid user name"
    need_root remove-accounts "it manages users, sudoers and sshd"
    load_recorded
    take_lock
    # Local accounts only (/etc/passwd), literal prefix match (the quotes make it literal).
    while IFS=: read -r name _ uid _; do
        [[ $name == "$prefix"* ]] || continue
        if [[ $name == "$ADMIN" || $name == root ]] || ((uid < 1000)); then
            log "skipping $name (admin, root or system account)"
            continue
        fi
        # -f only if plain userdel refuses (e.g. a test's session is still open).
        if userdel "$name" >&2 2>/dev/null || userdel -f "$name" >&2; then
            log "removed user $name"
            n=$((n + 1))
        else
            log "could not remove user $name"
        fi
    done < <(cat /etc/passwd)
    log "removed $n account(s) starting with '$prefix'"
}

usage() {
    cat >&2 <<EOF
usage: $PROG up | env | account NAME | remove-accounts PREFIX | down | status
  up                      install openssh-server/sudo/sshpass if missing, start the private
                          sshd on 127.0.0.1:\$ROTOR_TESTBED_PORT, print the env lines
  env                     print the env lines of the running test bed (exit 1 if none)
  account NAME            create or reset local account NAME; password = one line on stdin
  remove-accounts PREFIX  delete local users whose names start with PREFIX (>= 4 chars)
  down                    stop the test bed's sshd (accounts stay)
  status                  print whether it is up (exit 0 if up, 1 if not)
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
        down) [[ $# -eq 0 ]] || { usage; exit 2; }; cmd_down ;;
        account) [[ $# -eq 1 ]] || { usage; exit 2; }; cmd_account "$1" ;;
        remove-accounts) [[ $# -eq 1 ]] || { usage; exit 2; }; cmd_remove_accounts "$1" ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
