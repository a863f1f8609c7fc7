#!/usr/bin/env bash
# Password generation throughput: rotor's presets side by side with `pwgen -s` and
# `openssl rand -base64` at the same length, in one run on this machine.
#
#   bench/policy.sh            # builds --release, then measures
#   N=50000 ONESHOT=200 bench/policy.sh
#
# Two figures per tool: "bulk" is passwords per second when one process writes N of them
# (`rotor policy generate NAME -n N`, `pwgen -s LEN N`, one `openssl rand -base64` of N
# passwords' worth of bytes); "one-shot" is milliseconds per password when a process is
# started for each, as a script would (`rotor policy generate NAME`, `pwgen -s LEN 1`,
# `openssl rand -base64 BYTES`). rotor's one-shot includes loading the configuration and
# building the four presets' tables. pwgen -s and openssl only draw random characters:
# they do not enforce the presets' rules. nsx draws its length uniformly from 12 to 127;
# the others run at its mean, 70.
#
# Needs pwgen and openssl (Debian: apt-get update && apt-get install -y pwgen openssl).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
ONESHOT=${ONESHOT:-300}
for tool in pwgen openssl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y $tool)" >&2; exit 1; }
done

SQLX_OFFLINE=true cargo build --release --quiet --bin rotor
target=${CARGO_TARGET_DIR:-target}
rotor="$target/release/rotor"
config=$(mktemp)
trap 'rm -f "$config"' EXIT
export ROTOR_CONFIG=$config   # empty: defaults and the built-in presets

now() { date +%s.%N; }
# seconds taken by a command, output discarded
seconds() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }'
}
# seconds taken by ONESHOT runs of a command
seconds_loop() {
    local t0 t1 i
    t0=$(now)
    for ((i = 0; i < ONESHOT; i++)); do "$@" >/dev/null; done
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }'
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
per_ms() { awk -v n="$ONESHOT" -v s="$1" 'BEGIN { printf "%.2f", 1000 * s / n }'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "rotor $("$rotor" --version | cut -d' ' -f2), pwgen $(dpkg-query -W -f='${Version}' pwgen 2>/dev/null || echo '?'), $(openssl version | cut -d' ' -f1-2)"
echo "N = $N passwords per bulk run, $ONESHOT processes per one-shot run"
echo
printf '| preset | length | rotor bulk pw/s | pwgen -s bulk pw/s | openssl bulk pw/s | rotor one-shot ms | pwgen -s one-shot ms | openssl one-shot ms |\n'
printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for preset in vcf esxi nsx linux; do
    case $preset in
        vcf | esxi) len=20 ;;
        nsx) len=70 ;;
        linux) len=24 ;;
    esac
    # base64 of b bytes is 4*ceil(b/3) characters: the fewest bytes giving len characters
    bytes=$(( (len * 3 + 3) / 4 ))
    n=$N
    [ "$preset" = nsx ] && n=$(( N / 4 ))
    r_bulk=$(seconds "$rotor" policy generate "$preset" -n "$n")
    p_bulk=$(seconds pwgen -s "$len" "$n")
    o_bulk=$(seconds openssl rand -base64 $(( bytes * n )))
    r_one=$(seconds_loop "$rotor" policy generate "$preset")
    p_one=$(seconds_loop pwgen -s "$len" 1)
    o_one=$(seconds_loop openssl rand -base64 "$bytes")
    label=$len
    [ "$preset" = nsx ] && label="12-127 (pwgen/openssl: 70)"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$preset" "$label" \
        "$(rate "$n" "$r_bulk")" "$(rate "$n" "$p_bulk")" "$(rate "$n" "$o_bulk")" \
        "$(per_ms "$r_one")" "$(per_ms "$p_one")" "$(per_ms "$o_one")"
done
