#!/usr/bin/env bash
# A virtualenv holding Broadcom's VCF Python bindings (vmware-sddc-manager), for the test
# that drives rotor through them unchanged. Idempotent; prints the venv's python on stdout.
#   ROTOR_VCF_VENV   where (default /var/lib/rotor-testbed/vcf-venv)
set -euo pipefail
VERSION=9.1.1.0
venv=${ROTOR_VCF_VENV:-/var/lib/rotor-testbed/vcf-venv}
if ! "$venv/bin/python" -c "import vmware.sddc_manager_client" >/dev/null 2>&1 \
    || [[ $("$venv/bin/pip" show vmware-sddc-manager 2>/dev/null | sed -n 's/^Version: //p') != "$VERSION" ]]; then
    echo "vcf-client.sh: installing vmware-sddc-manager $VERSION into $venv" >&2
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
        [[ $(id -u) == 0 ]] && { apt-get update -qq >&2; apt-get install -y -qq python3-venv >&2; }
    fi
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "vmware-sddc-manager==$VERSION" >&2
fi
echo "$venv/bin/python"
