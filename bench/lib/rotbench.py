#!/usr/bin/env python3
"""Measurements for bench/rotations.sh (issue 13). Run by that script, not by hand.

Subcommands (each appends KEY=VALUE lines to --results when given, and logs to stderr):
  accounts        create/reset the bench's Linux accounts, initial passwords in 0600 files
  logins          OpenSSH password logins/s, P in parallel, across all hosts and accounts
  refused         the refused-login delay: a refused login minus the same login sending no
                  password (and minus an accepted one, the yardstick before stop 26)
  inventory       rotor's inventory TOML, one [[resource]] per host
  snapshot        before the rotation: the sample's current passwords (rotor's vault) to a 0600 file
  latency         publish one ROTATE, poll every 20 ms until it ends; mean and median of N
  rotate          publish one ROTATE per host naming all its accounts; wait for every task
  verify          after the rotation: the sample's new password logs in, the old one is refused
  intake-publish  N UPDATE_AUTO_ROTATE_POLICY requests onto the (stopped) rotor's queue
  intake-measure  poll the task count every 50 ms while rotor starts and takes them in
  ansible-vars    new random passwords for the Ansible runs, as an extra-vars file (0600)
  ansible-check   a few accounts log in with the passwords an Ansible run set
  amqp-clean      delete the bench's exchanges and queues
  free-port       print a free TCP port on 127.0.0.1
  report          print the one table from the results file

No password is ever printed, logged or put on a command line: sshpass reads SSHPASS from
its environment, chpasswd/newusers read stdin, rotor's reveal is read from its stdout.
Only the standard library is needed for accounts/logins/refused/inventory/ansible-*;
pika (AMQP) and psycopg (PostgreSQL) are imported where needed (the bench's venv).

The subcommands live beside this file: rb_target.py (the targets through the OpenSSH
client, Ansible's passwords), rb_rotor.py (rotor: inventory, AMQP, PostgreSQL, latency,
the rotation), rb_intake.py, rb_report.py (the table) and rb_common.py (shared helpers).
"""

import argparse

from rb_common import add_layout_args
from rb_intake import cmd_amqp_clean, cmd_intake_measure, cmd_intake_publish
from rb_report import cmd_report
from rb_rotor import add_rotor_args, cmd_inventory, cmd_latency, cmd_rotate, cmd_snapshot, cmd_verify
from rb_target import cmd_accounts, cmd_ansible_check, cmd_ansible_vars, cmd_free_port, cmd_logins, cmd_refused


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("accounts"); add_layout_args(p); p.add_argument("--home", required=True)
    p.set_defaults(fn=cmd_accounts)
    p = sub.add_parser("logins"); add_layout_args(p)
    p.add_argument("--parallel", type=int, default=16); p.add_argument("--count", type=int, default=400)
    p.add_argument("--seconds", type=float, default=20); p.set_defaults(fn=cmd_logins)
    p = sub.add_parser("refused"); add_layout_args(p)
    p.add_argument("--n", type=int, default=9); p.set_defaults(fn=cmd_refused)
    p = sub.add_parser("inventory"); add_layout_args(p)
    p.add_argument("--fprs", required=True); p.add_argument("--hostdir", required=True)
    p.add_argument("--admin", default="rotoradm"); p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_inventory)
    p = sub.add_parser("snapshot"); add_layout_args(p)
    p.add_argument("--rotor", required=True); p.add_argument("--sample", type=int, default=20)
    p.add_argument("--out", required=True); p.set_defaults(fn=cmd_snapshot)
    p = sub.add_parser("verify"); p.add_argument("--rotor", required=True); p.add_argument("--sample", required=True)
    p.add_argument("--results"); p.set_defaults(fn=cmd_verify)
    p = sub.add_parser("latency"); add_layout_args(p); add_rotor_args(p)
    p.add_argument("--n", type=int, default=5); p.add_argument("--pause", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=120)
    p.set_defaults(fn=cmd_latency)
    p = sub.add_parser("rotate"); add_layout_args(p); add_rotor_args(p)
    p.add_argument("--timeout", type=float, default=1800); p.set_defaults(fn=cmd_rotate)
    p = sub.add_parser("intake-publish"); add_layout_args(p); add_rotor_args(p)
    p.add_argument("--queue", required=True); p.add_argument("--n", type=int, default=5000)
    p.set_defaults(fn=cmd_intake_publish)
    p = sub.add_parser("intake-measure"); add_rotor_args(p)
    p.add_argument("--n", type=int, default=5000); p.add_argument("--ready", required=True)
    p.add_argument("--timeout", type=float, default=300); p.add_argument("--finish-timeout", type=float, default=300)
    p.add_argument("--results"); p.set_defaults(fn=cmd_intake_measure)
    p = sub.add_parser("amqp-clean"); p.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    p.add_argument("--queues", nargs="*", default=[]); p.add_argument("--exchanges", nargs="*", default=[])
    p.set_defaults(fn=cmd_amqp_clean)
    p = sub.add_parser("ansible-vars"); add_layout_args(p); p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_ansible_vars)
    p = sub.add_parser("ansible-check"); add_layout_args(p); p.add_argument("--vars", required=True)
    p.add_argument("--sample", type=int, default=5); p.add_argument("--prefix", required=True)
    p.set_defaults(fn=cmd_ansible_check)
    p = sub.add_parser("free-port"); p.set_defaults(fn=cmd_free_port)
    p = sub.add_parser("report"); p.add_argument("--results", required=True); p.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
