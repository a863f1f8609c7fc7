#!/bin/sh
# rotor host enrollment, made for this installation by GET /v1/deploy/script.
# Run it as root on the host rotor is to manage. It:
#   1. creates the admin account @ADMIN@ (no password: it logs in with rotor's key only);
#   2. installs rotor's public key for it, with `restrict`;
#   3. lets it run chpasswd, and read `chage -l USER` and `passwd -S USER`, through sudo
#      (a drop-in checked with visudo before it is installed);
#   4. reads this host's own SSH key fingerprint;
#   5. registers the host with rotor, with a one-time token good until @EXPIRES@.
# Running it again changes nothing on the host; the token works once.
#
# Settings (environment), all optional:
#   ROTOR_RESOURCE_ID    the resource id (default: the short host name)
#   ROTOR_ADDRESS        the address rotor reaches this host at (default: its first address)
#   ROTOR_SSH_PORT       sshd's port (default 22)
#   ROTOR_HOST_KEY_FILE  the host key to pin (default /etc/ssh/ssh_host_ed25519_key.pub)
#   ROTOR_ACCOUNTS       accounts rotor is to manage, space-separated (default: none)
set -eu

ROTOR_API='@API@'
ENROLL_TOKEN='@TOKEN@'
ADMIN='@ADMIN@'
PUBKEY='@PUBKEY@'
ROTOR_CA='@CA@'

say() { printf 'rotor-deploy: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root"
for tool in useradd passwd visudo ssh-keygen curl getent install; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done

RESOURCE_ID=${ROTOR_RESOURCE_ID:-$(hostname -s)}
ADDRESS=${ROTOR_ADDRESS:-$(hostname -I 2>/dev/null | awk '{print $1}')}
SSH_PORT=${ROTOR_SSH_PORT:-22}
HOST_KEY_FILE=${ROTOR_HOST_KEY_FILE:-/etc/ssh/ssh_host_ed25519_key.pub}
ACCOUNTS=${ROTOR_ACCOUNTS:-}
# Each value goes into the registration's JSON: nothing but the characters named (a
# newline included, `case` refuses anything else).
case $RESOURCE_ID in '' | *[!A-Za-z0-9._-]*) die "ROTOR_RESOURCE_ID: letters, digits, '.', '_' and '-' only" ;; esac
case $ADDRESS in '' | *[!A-Za-z0-9.:-]*) die "ROTOR_ADDRESS: not an address" ;; esac
case $SSH_PORT in '' | *[!0-9]* | ??????*) die "ROTOR_SSH_PORT: not a port" ;; esac
for a in $ACCOUNTS; do
    case $a in [a-z_]*) ;; *) die "ROTOR_ACCOUNTS: bad account name '$a'" ;; esac
    case $a in *[!a-z0-9_.-]*) die "ROTOR_ACCOUNTS: bad account name '$a'" ;; esac
    id "$a" >/dev/null 2>&1 || die "ROTOR_ACCOUNTS: no account '$a' on this host"
done

# 1. The admin account: key login only.
if id "$ADMIN" >/dev/null 2>&1; then
    say "ok: account $ADMIN exists"
else
    useradd -m -s /bin/sh "$ADMIN"
    passwd -l "$ADMIN" >/dev/null
    say "changed: created account $ADMIN (password locked)"
fi
home=$(getent passwd "$ADMIN" | cut -d: -f6)
group=$(id -gn "$ADMIN")

# 2. rotor's public key, restricted (no forwarding, no pty, no ~/.ssh/rc).
install -d -m 0700 -o "$ADMIN" -g "$group" "$home/.ssh"
keys=$home/.ssh/authorized_keys
line="restrict $PUBKEY"
if [ -f "$keys" ] && grep -qxF "$line" "$keys"; then
    say "ok: rotor's key is in $keys"
else
    printf '%s\n' "$line" >>"$keys"
    say "changed: added rotor's key to $keys"
fi
chown "$ADMIN:$group" "$keys"
chmod 0600 "$keys"

# 3. sudo: chpasswd, and reading an account's aging and status. Arguments are regular
# expressions (sudo 1.9.10 or later): one -l or -S and one account name, nothing else.
sudoers=/etc/sudoers.d/rotor-$ADMIN
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" <<EOF
# Managed by rotor's deploy script: $ADMIN may change passwords and read their aging.
$ADMIN ALL=(root) NOPASSWD: /usr/sbin/chpasswd, /usr/bin/chage ^-l [a-z_][a-z0-9_.-]*\$, /usr/bin/passwd ^-S [a-z_][a-z0-9_.-]*\$
EOF
visudo -q -cf "$tmp" >/dev/null || die "the sudoers drop-in does not validate; nothing installed"
if [ -f "$sudoers" ] && cmp -s "$tmp" "$sudoers"; then
    say "ok: $sudoers"
else
    install -m 0440 -o root -g root "$tmp" "$sudoers"
    say "changed: wrote $sudoers"
fi

# 4. This host's own key, to pin.
[ -r "$HOST_KEY_FILE" ] || die "cannot read $HOST_KEY_FILE (ROTOR_HOST_KEY_FILE)"
fingerprint=$(ssh-keygen -lf "$HOST_KEY_FILE" | awk '{print $2}')
case $fingerprint in SHA256:*) ;; *) die "no SHA256 fingerprint in $HOST_KEY_FILE" ;; esac
case ${fingerprint#SHA256:} in *[!A-Za-z0-9+/]*) die "no SHA256 fingerprint in $HOST_KEY_FILE" ;; esac
say "host key $fingerprint"

# 5. Registration: once, with the token.
name=$(hostname -f 2>/dev/null || true)
case $name in '' | *[!A-Za-z0-9._-]*) name=$RESOURCE_ID ;; esac
accounts=''
for a in $ACCOUNTS; do
    accounts="$accounts${accounts:+,}\"$a\""
done
body=$(printf '{"token":"%s","resourceId":"%s","name":"%s","address":"%s","port":%s,"hostKeys":["%s"],"accounts":[%s]}' \
    "$ENROLL_TOKEN" "$RESOURCE_ID" "$name" "$ADDRESS" "$SSH_PORT" "$fingerprint" "$accounts")
set -- -sS -o "$tmp" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @-
if [ -n "$ROTOR_CA" ]; then
    ca=$(mktemp)
    trap 'rm -f "$tmp" "$ca"' EXIT
    printf '%s\n' "$ROTOR_CA" >"$ca"
    set -- "$@" --cacert "$ca"
fi
status=$(printf '%s' "$body" | curl "$@" "$ROTOR_API/v1/deploy/enroll") || die "cannot reach $ROTOR_API"
case $status in
    201) say "registered $RESOURCE_ID with rotor" ;;
    *) die "rotor refused the registration ($status): $(cat "$tmp")" ;;
esac
