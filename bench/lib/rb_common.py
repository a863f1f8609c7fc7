"""bench/lib/rotbench.py's shared helpers: logging, secrets in 0600 files, the results file, the layout."""

import os
import secrets
import string
import sys


# Characters of the passwords the harness makes: no quote, backslash, brace, percent or
# hash, so they survive TOML/JSON/YAML and Jinja (Ansible templates extra-vars strings).
PW_ALPHABET = string.ascii_letters + string.digits + "-_.@+="
FINAL = ("SUCCESSFUL", "FAILED", "CANCELLED")


def log(*a):
    print("rotbench:", *a, file=sys.stderr, flush=True)


def die(msg):
    log("error:", msg)
    sys.exit(1)


def new_password(n=20):
    # At least one lower, upper, digit and special, so any usual policy takes it.
    while True:
        pw = "".join(secrets.choice(PW_ALPHABET) for _ in range(n))
        if (any(c.islower() for c in pw) and any(c.isupper() for c in pw)
                and any(c.isdigit() for c in pw) and any(c in "-_.@+=" for c in pw)):
            return pw


def write_private(path, text):
    """Writes text to path with mode 0600 from the start (no window with wider rights)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_secret(path):
    with open(path) as f:
        return f.read().rstrip("\r\n")


def results_add(path, **kv):
    if not path:
        return
    with open(path, "a") as f:
        for k, v in kv.items():
            f.write(f"{k}={v}\n")


def results_load(path):
    out = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, v = line.split("=", 1)
                    out[k] = v
    return out


# ----------------------------------------------------------------------------------------
# The layout: host h (1..H) listens on base_port + h, its accounts are rb<h>x<n> (n 1..A),
# its resource id in rotor is bench-h<h>.
# ----------------------------------------------------------------------------------------

def account_name(h, n):
    return f"rb{h}x{n}"


def resource_id(h):
    return f"bench-h{h}"


def layout(hosts, accounts, base_port):
    """[(h, port, resource, username)] for every account."""
    return [(h, base_port + h, resource_id(h), account_name(h, n))
            for h in range(1, hosts + 1) for n in range(1, accounts + 1)]


def spread(hosts, accounts, base_port, n):
    """n accounts taken across the hosts in turn (rb1x1, rb2x1, ..., rb1x2, ...), cycling."""
    out = []
    for i in range(n):
        h, k = 1 + i % hosts, 1 + (i // hosts) % accounts
        out.append((h, base_port + h, resource_id(h), account_name(h, k)))
    return out


def add_layout_args(p):
    p.add_argument("--hosts", type=int, required=True)
    p.add_argument("--accounts", type=int, required=True)
    p.add_argument("--base-port", type=int, default=2300)
    p.add_argument("--pwdir", help="folder of the initial password files (one per account)")
    p.add_argument("--results")
