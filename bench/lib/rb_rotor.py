"""bench/lib/rotbench.py's work with rotor: inventory, AMQP and PostgreSQL, latency, the rotation."""

import json
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rb_common import FINAL, account_name, die, layout, log, resource_id, results_add, spread, write_private
from rb_target import ssh_login


# ----------------------------------------------------------------------------------------
# rotor: inventory, AMQP, PostgreSQL
# ----------------------------------------------------------------------------------------

def cmd_inventory(a):
    fprs = {}
    with open(a.fprs) as f:
        for line in f:
            h, fpr = line.split()
            fprs[int(h)] = fpr
    out = ["# Written by bench/rotations.sh: one resource per bench sshd, its accounts onboarded", ""]
    for h in range(1, a.hosts + 1):
        out += [
            "[[resource]]",
            f'id = "{resource_id(h)}"',
            f'name = "{resource_id(h)}.bench"',
            'type = "LINUX"',
            'address = "127.0.0.1"',
            f"port = {a.base_port + h}",
            f'host_keys = ["{fprs[h]}"]',
            'platform = "linux-chpasswd"',
            "",
            "[resource.admin]",
            f'username = "{a.admin}"',
            f'private_key_file = "{a.hostdir}/h{h}/admin_ed25519"',
            "sudo = true",
            "",
        ]
        for n in range(1, a.accounts + 1):
            u = account_name(h, n)
            out += ["[[resource.account]]", f'username = "{u}"', 'account_type = "SERVICE"',
                    f'password_file = "{a.pwdir}/{u}"', ""]
    with open(a.out, "w") as f:
        f.write("\n".join(out))


def add_rotor_args(p):
    p.add_argument("--db", required=True, help="PostgreSQL URL of rotor's database")
    p.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    p.add_argument("--exchange", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--rotor", help="rotor binary (ROTOR_CONFIG set in the environment)")
    p.add_argument("--pid", type=int, help="pid of the running rotor")


class Amqp:
    """A publisher with confirms; every message persistent, user_id = the URL's user.

    A lost connection (the broker restarted) is made again and the message published
    again under the same message_id: rotor takes a repeated message_id only once."""

    def __init__(self, url, exchange, retry_seconds=90):
        import pika
        self.pika = pika
        self.params = pika.URLParameters(url)
        self.user = self.params.credentials.username
        self.exchange = exchange
        self.retry_seconds = retry_seconds
        self.conn = None
        self._connect()

    def _connect(self):
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                self.conn = self.pika.BlockingConnection(self.params)
                self.ch = self.conn.channel()
                self.ch.confirm_delivery()
                return
            except self.pika.exceptions.AMQPConnectionError as e:
                if time.monotonic() > deadline:
                    raise
                log(f"amqp: cannot connect ({e!r}); trying again")
                time.sleep(1)

    def publish(self, body, message_id, routing_key="credentials.update"):
        props = self.pika.BasicProperties(delivery_mode=2, user_id=self.user, message_id=message_id,
                                          content_type="application/json")
        data = json.dumps(body).encode()
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                # mandatory: a message no queue takes raises UnroutableError instead of vanishing.
                self.ch.basic_publish(self.exchange, routing_key, data, props, mandatory=True)
                return
            except (self.pika.exceptions.AMQPConnectionError, self.pika.exceptions.AMQPChannelError,
                    self.pika.exceptions.StreamLostError, self.pika.exceptions.ConnectionWrongStateError,
                    self.pika.exceptions.ChannelWrongStateError) as e:
                if isinstance(e, self.pika.exceptions.UnroutableError) or time.monotonic() > deadline:
                    raise
                log(f"amqp: publish of {message_id} failed ({e!r}): the broker went away; publishing it again")
                self.close()
                time.sleep(1)
                self._connect()

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


class Db:
    """One autocommit connection; made again if PostgreSQL drops it (a restart), for up
    to retry_seconds. Only reads go through it, so repeating one is harmless."""

    def __init__(self, url, retry_seconds=90):
        import psycopg
        self.psycopg = psycopg
        self.url = url
        self.retry_seconds = retry_seconds
        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql, params=None):
        deadline = time.monotonic() + self.retry_seconds
        while True:
            try:
                return self.conn.execute(sql, params)
            except self.psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    raise
                log(f"db: {str(e).strip()[:200]}; connecting again")
                time.sleep(1)
                try:
                    self.conn.close()
                    self.conn = self.psycopg.connect(self.url, autocommit=True)
                except self.psycopg.OperationalError:
                    pass


def db_connect(url):
    return Db(url)


def rotate_spec(resource, users):
    return {"operationType": "ROTATE",
            "elements": [{"resourceId": resource, "resourceType": "LINUX",
                          "credentials": [{"username": u} for u in users]}]}


def task_statuses(db, pattern):
    rows = db.execute("SELECT status, count(*) FROM tasks WHERE request_key LIKE %s GROUP BY 1", (pattern,)).fetchall()
    return {s: n for s, n in rows}


def proc_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def subtask_failures(db, pattern, limit=8):
    """(username, first error) of failed subtasks of the tasks whose key matches."""
    rows = db.execute(
        """SELECT c.username, s.errors FROM subtasks s JOIN tasks t ON t.id = s.task_id
             JOIN credentials c ON c.id = s.credential_id
            WHERE t.request_key LIKE %s AND s.status = 'FAILED' ORDER BY c.username LIMIT %s""",
        (pattern, limit)).fetchall()
    return [(user, first_error(errors, 300)) for user, errors in rows]


def task_errors(db, pattern, limit=5):
    rows = db.execute("SELECT id, errors FROM tasks WHERE request_key LIKE %s AND status = 'FAILED' LIMIT %s",
                      (pattern, limit)).fetchall()
    return [(str(tid), first_error(errors, 400, context=True)) for tid, errors in rows]


def first_error(errors, width, context=False):
    """The first of a row's `errors` (JSON), on one line of at most `width` characters."""
    e = errors[0] if isinstance(errors, list) and errors else errors
    if isinstance(e, dict):
        e = f"{e.get('errorCode')}: {e.get('message')}" + (f" {json.dumps(e.get('context', {}))}" if context else "")
    return " ".join(str(e).split())[:width]


def stage_breakdown(db, pattern):
    """Where one rotation's time went, from the database's own clock: the task's creation
    to its first stage, each stage's duration, and the gaps between them (ms); and
    VERIFY_NEW's seconds (it holds the target's refused-login wait)."""
    rows = db.execute(
        """SELECT st.name, st.started_at, st.completed_at, t.created_at
             FROM stages st JOIN subtasks s ON s.id = st.subtask_id JOIN tasks t ON t.id = s.task_id
            WHERE t.request_key LIKE %s AND st.started_at IS NOT NULL ORDER BY st.seq""",
        (pattern,)).fetchall()
    if not rows:
        return "no stage times", None
    parts = [f"task->first stage {(rows[0][1] - rows[0][3]).total_seconds() * 1000:.0f}"]
    prev_end = None
    verify = None
    for name, started, completed, _ in rows:
        if name == "VERIFY_NEW" and completed is not None:
            verify = (completed - started).total_seconds()
        if prev_end is not None:
            gap = (started - prev_end).total_seconds() * 1000
            if gap >= 1:
                parts.append(f"gap {gap:.0f}")
        if completed is not None:
            parts.append(f"{name} {(completed - started).total_seconds() * 1000:.0f}")
            prev_end = completed
    return "ms: " + ", ".join(parts), verify


def cmd_latency(a):
    amqp = Amqp(a.amqp, a.exchange)
    db = db_connect(a.db)
    times = []
    own = []
    for i, (_h, _p, resource, user) in enumerate(spread(a.hosts, a.accounts, a.base_port, a.n)):
        key = f"bench-lat-{a.run_id}-{i}"
        pattern = f"%{key}"
        time.sleep(a.pause)
        t0 = time.monotonic()
        amqp.publish(rotate_spec(resource, [user]), key)
        status = None
        while time.monotonic() - t0 < a.timeout:
            time.sleep(0.02)
            row = db.execute("SELECT status FROM tasks WHERE request_key LIKE %s", (pattern,)).fetchone()
            if row and row[0] in FINAL:
                status = row[0]
                break
        dt = time.monotonic() - t0
        if status != "SUCCESSFUL":
            for user, err in subtask_failures(db, pattern):
                log(f"latency: {user}: {err}")
            for tid, err in task_errors(db, pattern):
                log(f"latency: task {tid}: {err}")
            results_add(a.results, latency_failed=f"{status or 'TIMEOUT'}")
            die(f"latency: rotation {i + 1} ended {status or 'in no final state within %d s' % a.timeout}")
        times.append(dt)
        breakdown, verify = stage_breakdown(db, pattern)
        if verify is not None:
            own.append(dt - verify)
        log(f"latency: rotation {i + 1}/{a.n} ({user}): publish -> SUCCESSFUL in {dt:.3f} s; " + breakdown)
    amqp.close()
    med = statistics.median(times)
    results_add(a.results, latency_s=f"{med:.3f}", latency_min_s=f"{min(times):.3f}", latency_max_s=f"{max(times):.3f}",
                latency_mean_s=f"{statistics.mean(times):.3f}", latency_n=a.n,
                latency_sd_s=f"{statistics.stdev(times):.3f}" if len(times) > 1 else "0")
    if own:
        results_add(a.results, latency_own_ms=f"{statistics.median(own) * 1000:.0f}",
                    latency_own_mean_ms=f"{statistics.mean(own) * 1000:.0f}",
                    latency_own_max_ms=f"{max(own) * 1000:.0f}", latency_own_n=len(own))


def reveal(rotor, resource, user):
    r = subprocess.run([rotor, "credential", "reveal", "--resource", resource, "--username", user],
                       stdin=subprocess.DEVNULL, capture_output=True)
    if r.returncode != 0:
        die(f"rotor credential reveal {resource}/{user} failed: {r.stderr.decode(errors='replace').strip()[:300]}")
    return r.stdout.decode().rstrip("\r\n")


def cmd_snapshot(a):
    accts = layout(a.hosts, a.accounts, a.base_port)
    rng = random.Random()
    sample = rng.sample(accts, min(a.sample, len(accts)))
    data = [{"port": p, "resource": r, "user": u, "old": reveal(a.rotor, r, u)} for (_h, p, r, u) in sample]
    write_private(a.out, json.dumps(data))
    log(f"snapshot: current passwords of {len(data)} sampled accounts kept (0600) for the check")


def cmd_verify(a):
    with open(a.sample) as f:
        data = json.load(f)
    def check(d):
        new = reveal(a.rotor, d["resource"], d["user"])
        if new == d["old"]:
            log(f"verify: {d['user']}: rotor holds the same password as before the rotation")
            return False
        ok_new, why_new = ssh_login(d["port"], d["user"], new)
        ok_old, _ = ssh_login(d["port"], d["user"], d["old"])
        if ok_new and not ok_old:
            return True
        log(f"verify: {d['user']}: new password logs in: {ok_new} ({why_new if not ok_new else 'ok'}); "
            f"old refused: {not ok_old}")
        return False

    # A refused login waits 2-4 s on the target: the sample is checked 16 at a time.
    with ThreadPoolExecutor(16) as pool:
        good = sum(1 for ok in pool.map(check, data) if ok)
    log(f"verify: {good}/{len(data)} sampled accounts: new password logs in, old one refused")
    results_add(a.results, verified_ok=good, verified_n=len(data))


def cmd_rotate(a):
    accts = layout(a.hosts, a.accounts, a.base_port)
    by_host = {}
    for (_h, _p, r, u) in accts:
        by_host.setdefault(r, []).append(u)
    total = len(accts)
    db = db_connect(a.db)
    amqp = Amqp(a.amqp, a.exchange)
    prefix = f"bench-rot-{a.run_id}-"
    pattern = f"%{prefix}%"
    peak_rss = 0
    t0 = time.monotonic()
    for r, users in by_host.items():
        amqp.publish(rotate_spec(r, users), prefix + r)
    t_pub = time.monotonic() - t0
    amqp.close()
    log(f"rotate: {len(by_host)} requests ({total} accounts) published in {t_pub:.3f} s")
    last_log = 0.0
    status = {}
    while True:
        time.sleep(0.1)
        status = task_statuses(db, pattern)
        now = time.monotonic() - t0
        if a.pid:
            rss = proc_kb(a.pid, "VmRSS")
            if rss is None:
                die("rotate: rotor exited during the rotation run (see its log)")
            peak_rss = max(peak_rss, rss)
        done = sum(status.get(s, 0) for s in FINAL)
        if now - last_log >= 5:
            last_log = now
            sub = dict(db.execute(
                """SELECT s.status, count(*) FROM subtasks s JOIN tasks t ON t.id = s.task_id
                    WHERE t.request_key LIKE %s GROUP BY 1""", (pattern,)).fetchall())
            log(f"rotate: {now:6.1f} s  tasks {dict(status)}  subtasks {sub}")
        if done >= len(by_host):
            break
        if now > a.timeout:
            break
    elapsed = time.monotonic() - t0
    hwm = proc_kb(a.pid, "VmHWM") if a.pid else None
    sub = dict(db.execute(
        """SELECT s.status, count(*) FROM subtasks s JOIN tasks t ON t.id = s.task_id
            WHERE t.request_key LIKE %s GROUP BY 1""", (pattern,)).fetchall())
    ok = status.get("SUCCESSFUL", 0) == len(by_host) and sub.get("SUCCESSFUL", 0) == total
    log(f"rotate: after {elapsed:.2f} s: tasks {status}, subtasks {sub}")
    # Where the time went: each stage's median duration over the subtasks.
    try:
        rows = db.execute(
            """SELECT st.name, percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM st.completed_at - st.started_at)),
                      max(extract(epoch FROM st.completed_at - st.started_at)), min(st.seq)
                 FROM stages st JOIN subtasks s ON s.id = st.subtask_id JOIN tasks t ON t.id = s.task_id
                WHERE t.request_key LIKE %s AND st.completed_at IS NOT NULL AND st.started_at IS NOT NULL
                GROUP BY st.name ORDER BY 4""", (pattern,)).fetchall()
        stages = ", ".join(f"{n} {float(m):.2f}/{float(x):.2f}" for n, m, x, _ in rows)
        log(f"rotate: stage durations s, median/max: {stages}")
        results_add(a.results, rot_stages=stages)
    except Exception as e:  # the schema is rotor's; a change there must not sink the run
        log(f"rotate: no stage breakdown ({e})")
    results_add(a.results, rot_total=total, rot_seconds=f"{elapsed:.3f}",
                rot_succeeded=sub.get("SUCCESSFUL", 0),
                rot_failed=sub.get("FAILED", 0), rot_unfinished=total - sum(sub.get(s, 0) for s in FINAL),
                rot_tasks_failed=status.get("FAILED", 0))
    if hwm:
        results_add(a.results, rss_peak_kb=hwm)
    if ok:
        results_add(a.results, rot_rate=f"{total / elapsed:.3f}")
        log(f"rotate: {total} verified rotations in {elapsed:.2f} s: {total / elapsed:.2f}/s")
    else:
        for user, err in subtask_failures(db, pattern):
            log(f"rotate: FAILED {user}: {err}")
        for tid, err in task_errors(db, pattern):
            log(f"rotate: FAILED task {tid}: {err}")
        results_add(a.results, rot_rate="FAILED")
        log("rotate: NOT every rotation succeeded: no rate is claimed")
        sys.exit(3)
