#!/usr/bin/env bash
# Builds the Debian package: target/debian/rotor_<version>-1_amd64.deb, with cargo-deb
# (installed into ~/.cargo/bin when missing). It holds /usr/bin/rotor, the systemd unit
# (installed, neither enabled nor started), /etc/rotor/rotor.toml as a conffile, a
# sysusers and a tmpfiles entry (the rotor user; /etc/rotor 0750 root:rotor), the README
# and contrib/. Its postinst never starts the service.
#
#   scripts/package.sh                 # release build (fat LTO: minutes)
#   PROFILE=dev scripts/package.sh     # from the debug build, for the package's own test
#   PROFILE=dev NO_BUILD=1 scripts/package.sh   # that build as it is (no cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
PROFILE=${PROFILE:-release}
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" >&2
fi
if ! command -v dpkg-deb >/dev/null; then
    echo "package.sh: dpkg-deb is required (a Debian system)" >&2
    exit 1
fi
export SQLX_OFFLINE=true
args=(--locked --profile "$PROFILE")
# NO_BUILD=1: package the binary already built (the test suite's own, while cargo runs it).
[[ ${NO_BUILD:-0} == 1 ]] && args+=(--no-build)
[[ $PROFILE == release ]] || args+=(--no-strip --fast)
out=$(cargo deb "${args[@]}" 2>&1 | tee /dev/stderr | tail -n 1)
[[ -f $out ]] || { echo "package.sh: cargo deb wrote no package" >&2; exit 1; }
echo "$out"
