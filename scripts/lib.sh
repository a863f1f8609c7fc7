# shellcheck shell=bash
# scripts/lib.sh: helpers the test-bed scripts share (sourced, not run). The sourcing
# script sets PROG (its name, for messages), and STATE_DIR and LOCK_FILE before take_lock.

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# need_root SUBCOMMAND WHY
need_root() {
    [[ $(id -u) == 0 ]] || die "'$1' needs root ($2): run it as root"
}

# Serialises the mutating subcommands of one script (fd 9 holds the lock).
take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>>"$LOCK_FILE"
    flock -w 300 9 || die "another $PROG has held $LOCK_FILE for 300 s"
}

pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# apt_install PKG...: apt-get update, then install, never prompting (CI has no stdin);
# apt's output to stderr (stdout carries only env lines); fd 9 (the lock) closed so no
# postinst child keeps it.
apt_install() {
    log "installing $* (apt-get update first)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q -o DPkg::Lock::Timeout=300 update </dev/null >&2 9>&-
    apt-get -q -y -o DPkg::Lock::Timeout=300 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        --no-install-recommends install "$@" </dev/null >&2 9>&-
}

# write_if_changed FILE MODE [OWNER]: replaces FILE with stdin only if the content
# differs, so a second run changes nothing. Returns 0 if it wrote, 1 if FILE was already
# right. Mode and owner are (re)applied either way; without OWNER a replaced file keeps
# its previous owner.
write_if_changed() {
    local file=$1 mode=$2 owner=${3:-} tmp
    tmp=$(mktemp "$file.tmp.XXXXXX")
    cat >"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        chmod "$mode" "$file"
        [[ -z $owner ]] || chown "$owner" "$file"
        return 1
    fi
    chmod "$mode" "$tmp"
    if [[ -n $owner ]]; then
        chown "$owner" "$tmp"
    elif [[ -e $file ]]; then
        chown --reference="$file" "$tmp"
    fi
    mv -f "$tmp" "$file"
    return 0
}
