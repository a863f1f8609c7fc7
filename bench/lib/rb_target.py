"""bench/lib/rotbench.py's work on the targets through the OpenSSH client: accounts, the login rate,
the refused-login delay, and the Ansible runs' passwords and check."""

import json
import os
import random
import socket
import statistics
import subprocess
import threading
import time

from rb_common import die, layout, log, new_password, read_secret, results_add, spread, write_private


# ----------------------------------------------------------------------------------------
# SSH logins through the OpenSSH client
# ----------------------------------------------------------------------------------------

SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=30"]


def ssh_login(port, user, password, timeout=120):
    """True if `user` logs in on 127.0.0.1:port with `password` and runs `true`."""
    env = dict(os.environ, SSHPASS=password)
    try:
        r = subprocess.run(["sshpass", "-e", "ssh", "-p", str(port), *SSH_OPTS, f"{user}@127.0.0.1", "true"],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    return r.returncode == 0, f"exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[:200]}"


def ssh_unauthenticated(port, user):
    """The same client and connection as `ssh_login` up to the password, which it never
    sends (BatchMode: no password prompt): connect, key exchange, the "none" request,
    "Permission denied". A refused login minus this is the target's wait on a password."""
    env = dict(os.environ, SSHPASS="-")
    r = subprocess.run(["sshpass", "-e", "ssh", "-p", str(port), *SSH_OPTS, "-o", "BatchMode=yes",
                        f"{user}@127.0.0.1", "true"],
                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
    said = r.stderr.decode(errors="replace")
    if r.returncode == 0 or "Permission denied" not in said:
        die(f"a login without a password did not end in 'Permission denied': exit {r.returncode}: {said.strip()[:200]}")


def cmd_accounts(a):
    """Every account exists on this machine with its initial password (created or reset).

    The password files are made once (random) and kept, so re-runs reset the same values.
    New accounts come from one `newusers` call, existing ones are reset by one `chpasswd`
    call; both read name:password lines on stdin only."""
    os.makedirs(a.pwdir, mode=0o700, exist_ok=True)
    os.chmod(a.pwdir, 0o700)
    existing = set()
    with open("/etc/passwd") as f:
        for line in f:
            existing.add(line.split(":", 1)[0])
    new_lines, reset_lines = [], []
    for (_h, _port, _res, user) in layout(a.hosts, a.accounts, a.base_port):
        path = os.path.join(a.pwdir, user)
        if not os.path.exists(path):
            write_private(path, new_password() + "\n")
        os.chmod(path, 0o600)
        pw = read_secret(path)
        if user in existing:
            reset_lines.append(f"{user}:{pw}\n")
        else:
            # name:password:uid:gid:gecos:home:shell; empty uid/gid: newusers picks them
            # (and makes a group named after the user). The home exists, so it is not made.
            new_lines.append(f"{user}:{pw}:::rotor bench account:{a.home}:/bin/bash\n")
    t = time.monotonic()
    if new_lines:
        r = subprocess.run(["newusers"], input="".join(new_lines).encode(), capture_output=True)
        if r.returncode != 0:
            die(f"newusers failed: {r.stderr.decode(errors='replace').strip()}")
    if reset_lines:
        r = subprocess.run(["chpasswd"], input="".join(reset_lines).encode(), capture_output=True)
        if r.returncode != 0:
            die(f"chpasswd failed: {r.stderr.decode(errors='replace').strip()}")
    log(f"accounts: {len(new_lines)} created, {len(reset_lines)} reset to their initial password "
        f"({time.monotonic() - t:.1f} s)")


def cmd_logins(a):
    accts = layout(a.hosts, a.accounts, a.base_port)
    pw = {u: read_secret(os.path.join(a.pwdir, u)) for (_h, _p, _r, u) in accts}
    rng = random.Random(13)
    order = [accts[i % len(accts)] for i in range(a.count)]
    rng.shuffle(order)
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0, "first_error": None}
    deadline = time.monotonic() + a.seconds

    def worker():
        while True:
            with lock:
                i = state["next"]
                if i >= len(order) or time.monotonic() >= deadline:
                    return
                state["next"] = i + 1
            _h, port, _r, user = order[i]
            ok, why = ssh_login(port, user, pw[user])
            with lock:
                if ok:
                    state["ok"] += 1
                else:
                    state["failed"] += 1
                    state["first_error"] = state["first_error"] or f"{user}@{port}: {why}"

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    rate = state["ok"] / elapsed
    log(f"logins: {state['ok']} ok, {state['failed']} failed in {elapsed:.2f} s, {a.parallel} in parallel: {rate:.2f}/s")
    if state["failed"]:
        log(f"logins: first failure: {state['first_error']}")
    results_add(a.results, login_ok=state["ok"], login_failed=state["failed"],
                login_seconds=f"{elapsed:.3f}", login_rate=f"{rate:.3f}", login_parallel=a.parallel)
    if state["failed"]:
        die("some logins with the right password failed: the yardstick is not valid")


def cmd_refused(a):
    """On n accounts in turn (the same accounts, in the same order, as `latency` rotates),
    one at a time: an accepted login, a refused one, and one that sends no password."""
    wrong = new_password()
    right_t, wrong_t, bare_t = [], [], []
    for (_h, port, _r, user) in spread(a.hosts, a.accounts, a.base_port, a.n):
        pw = read_secret(os.path.join(a.pwdir, user))
        t = time.monotonic()
        ok, why = ssh_login(port, user, pw)
        right_t.append(time.monotonic() - t)
        if not ok:
            die(f"the right password of {user} did not log in: {why}")
        t = time.monotonic()
        ok, _ = ssh_login(port, user, wrong)
        wrong_t.append(time.monotonic() - t)
        if ok:
            die("a wrong password logged in")
        t = time.monotonic()
        ssh_unauthenticated(port, user)
        bare_t.append(time.monotonic() - t)
    r, w, b = statistics.median(right_t), statistics.median(wrong_t), statistics.median(bare_t)
    # sshd pads a failed attempt to a per-user minimum that it doubles until it exceeds the
    # time already spent (auth2.c ensure_minimum_time_since), on top of pam_unix's jittered
    # ~2 s: a refusal takes either about 2.2 s or about 4.2 s. Hence the spread and mean.
    # The wait is the refused login minus the same login without the password (b): both
    # end at "Permission denied" with the same process, connection and key exchange. The
    # accepted login (r) also opens a session and runs `true`, which a refusal never does;
    # refused minus accepted, the earlier yardstick, is kept for comparison.
    log(f"refused: accepted login {r:.3f} s, no password {b:.3f} s, refused login {w:.3f} s (medians of {a.n}; "
        f"refused min {min(wrong_t):.2f} max {max(wrong_t):.2f} mean {statistics.mean(wrong_t):.2f}): "
        f"wait {w - b:.3f} s (refused - accepted {w - r:.3f} s)")
    results_add(a.results, login_accepted_s=f"{r:.3f}", login_bare_s=f"{b:.3f}", login_refused_s=f"{w:.3f}",
                refused_delay_s=f"{w - b:.3f}", refused_min_s=f"{min(wrong_t) - b:.2f}",
                refused_max_s=f"{max(wrong_t) - b:.2f}", refused_mean_s=f"{statistics.mean(wrong_t) - b:.2f}",
                refused_sd_s=f"{statistics.stdev(wrong_t):.3f}" if len(wrong_t) > 1 else "0",
                refused_vs_accepted_s=f"{w - r:.3f}",
                refused_vs_accepted_mean_s=f"{statistics.mean(wrong_t) - r:.2f}")


# ----------------------------------------------------------------------------------------
# Ansible
# ----------------------------------------------------------------------------------------

def cmd_ansible_vars(a):
    accts = layout(a.hosts, a.accounts, a.base_port)
    pw, by_host = {}, {}
    for (h, _p, _r, u) in accts:
        pw[u] = new_password()
        by_host.setdefault(f"h{h}", []).append(u)
    write_private(a.out, json.dumps({"bench_pw": pw, "bench_accounts": by_host}))


def cmd_ansible_check(a):
    with open(a.vars) as f:
        v = json.load(f)
    accts = layout(a.hosts, a.accounts, a.base_port)
    sample = random.Random().sample(accts, min(a.sample, len(accts)))
    good = sum(1 for (_h, p, _r, u) in sample if ssh_login(p, u, v["bench_pw"][u])[0])
    log(f"ansible-check: {good}/{len(sample)} sampled accounts log in with the password the playbook set")
    results_add(a.results, **{f"{a.prefix}_checked_ok": good, f"{a.prefix}_checked_n": len(sample)})
    if good != len(sample):
        die("the playbook did not set the passwords it claims")


def cmd_free_port(_a):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()
