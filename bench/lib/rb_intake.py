"""bench/lib/rotbench.py's intake measurement and the broker's clean-up."""

import time

from rb_common import FINAL, die, layout, log, results_add
from rb_rotor import Amqp, db_connect, subtask_failures, task_errors, task_statuses


def cmd_intake_publish(a):
    accts = layout(a.hosts, a.accounts, a.base_port)
    amqp = Amqp(a.amqp, a.exchange)
    t0 = time.monotonic()
    for i in range(a.n):
        _h, _p, r, u = accts[i % len(accts)]
        body = {"operationType": "UPDATE_AUTO_ROTATE_POLICY",
                "elements": [{"resourceId": r, "resourceType": "LINUX", "credentials": [{"username": u}]}],
                "autoRotatePolicy": {"frequencyInDays": 30, "enableAutoRotatePolicy": True}}
        amqp.publish(body, f"bench-intake-{a.run_id}-{i}")
    q = amqp.ch.queue_declare(a.queue, passive=True)
    amqp.close()
    log(f"intake: {a.n} requests published (confirmed) in {time.monotonic() - t0:.2f} s; "
        f"queue {a.queue} holds {q.method.message_count}")
    if q.method.message_count < a.n:
        die(f"intake: the queue holds {q.method.message_count} messages, expected at least {a.n}")


def cmd_intake_measure(a):
    """Polls the task count every 50 ms from before rotor starts (the script starts rotor
    once --ready exists).

    The figure is N / (time from the first task's appearance to the N-th), taken on the
    safe side: from the last poll that saw no task to the first poll that saw all N, so
    it never overstates the rate (by at most two poll intervals over the span). The log
    also gives (N - n_first) / (t_last - t_first), the rate after the first poll's tasks
    (a batched intake commits hundreds at once)."""
    db = db_connect(a.db)
    pattern = f"%bench-intake-{a.run_id}-%"
    q = "SELECT count(*) FROM tasks WHERE request_key LIKE %s"
    n0 = db.execute(q, (pattern,)).fetchone()[0]
    if n0:
        die(f"intake: {n0} tasks of this run exist before rotor started")
    with open(a.ready, "w") as f:
        f.write("polling\n")
    t0 = t_zero = time.monotonic()
    t_first = t_last = None
    n_first = 0
    count = 0
    while time.monotonic() - t0 < a.timeout:
        count = db.execute(q, (pattern,)).fetchone()[0]
        now = time.monotonic()
        if not count:
            t_zero = now
        elif t_first is None:
            t_first, n_first = now, count
            log(f"intake: first tasks seen {now - t0:.2f} s after the poll started ({count} then)")
        if count >= a.n:
            t_last = now
            break
        time.sleep(0.05)
    if t_last is None:
        results_add(a.results, intake_rate="TIMEOUT", intake_seen=count)
        die(f"intake: only {count}/{a.n} tasks after {a.timeout} s")
    span = t_last - t_zero
    rate = a.n / span
    after = (a.n - n_first) / (t_last - t_first) if t_last > t_first and a.n > n_first else None
    # The database's view: created_at is the inserting transaction's start, so this is a
    # cross-check only (a batched intake shares one timestamp per batch).
    lo, hi = db.execute("SELECT min(created_at), max(created_at) FROM tasks WHERE request_key LIKE %s",
                        (pattern,)).fetchone()
    db_span = (hi - lo).total_seconds()
    log(f"intake: {a.n} tasks in {span:.3f} s (last empty poll to the first poll seeing all): {rate:.0f}/s; "
        f"after the first poll's {n_first}: {f'{after:.0f}/s' if after else 'n/a'}; "
        f"created_at spans {db_span:.3f} s; all seen {t_last - t0:.2f} s after rotor's start")
    results_add(a.results, intake_n=a.n, intake_seconds=f"{span:.3f}", intake_first_n=n_first,
                intake_rate=f"{rate:.1f}", intake_after_first=f"{after:.1f}" if after else "n/a",
                intake_db_seconds=f"{db_span:.3f}", intake_from_start_s=f"{t_last - t0:.3f}")
    # Then let them run (they touch no target) and count how they ended.
    t1 = time.monotonic()
    st = {}
    while time.monotonic() - t1 < a.finish_timeout:
        st = task_statuses(db, pattern)
        if sum(st.get(s, 0) for s in FINAL) >= a.n:
            break
        time.sleep(0.2)
    log(f"intake: task statuses {time.monotonic() - t1:.1f} s later: {st}")
    results_add(a.results, intake_successful=st.get("SUCCESSFUL", 0), intake_failed=st.get("FAILED", 0),
                intake_finished_s=f"{time.monotonic() - t1:.2f}")
    if st.get("FAILED", 0):
        for tid, err in task_errors(db, pattern):
            log(f"intake: FAILED task {tid}: {err}")
        for user, err in subtask_failures(db, pattern):
            log(f"intake: FAILED {user}: {err}")


def cmd_amqp_clean(a):
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp))
    for kind, names, delete in (("queue", a.queues, "queue_delete"), ("exchange", a.exchanges, "exchange_delete")):
        for name in names:
            ch = conn.channel()
            try:
                getattr(ch, delete)(name)
            except Exception as e:
                log(f"amqp-clean: {kind} {name}: {e}")
    conn.close()
