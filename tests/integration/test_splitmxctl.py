#!/usr/bin/python3
"""
test_splitmxctl.py - the second binary, built from util and global alone:
check-config reports errors as FILE:LINE with EX_CONFIG, and journal-check
reads a spool's journal read-only (beside a running daemon, which holds the
spool's lock) and reports a torn last record without failing, a line that
is not a record with EX_DATAERR.
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

CTL = os.environ.get("SPLITMXCTL", "build/san/splitmxctl")
EX_USAGE, EX_DATAERR, EX_CONFIG = 64, 65, 78


def ctl(*args):
    return subprocess.run([CTL] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30, env=lib.daemon_env(), text=True)


def checked(p, rc, what):
    lib.check_no_sanitizer(p.stderr, "splitmxctl")
    check(p.returncode == rc, "%s: exit %d, want %d (stderr %r)" %
          (what, p.returncode, rc, p.stderr))
    return p


def t_check_config():
    d = lib.make_tmpdir("ctl-conf")
    good = lib.write_file(os.path.join(d, "good.conf"), lib.config_text(
        os.path.join(d, "spool"), [{"port": lib.free_port()}]))
    p = checked(ctl("-f", good, "check-config"), 0, "good config")
    check("configuration OK" in p.stdout, "no OK line: %r" % p.stdout)
    bad = lib.write_file(os.path.join(d, "bad.conf"),
                         "hostname mx.test\nspool_dir %s\nfrobnicate yes\n"
                         % os.path.join(d, "spool"))
    p = checked(ctl("-f", bad, "check-config"), EX_CONFIG, "bad config")
    check("%s:3:" % bad in p.stderr, "error lacks FILE:LINE: %r" % p.stderr)
    checked(ctl("-f", good), EX_USAGE, "no command")
    checked(ctl("-f", good, "frobnicate"), EX_USAGE, "unknown command")


def t_journal_check():
    env = lib.Env("ctl-journal")
    c = env.client()
    c.start()
    for i in range(2):
        c.send_message("s@client.test", ["alice@example.com"],
                       lib.message("ctl %d" % i))
    c.quit()
    # The daemon holds the spool's lock: the read side needs none.
    p = checked(ctl("-f", env.conf_path, "journal-check"), 0,
                "journal-check beside the daemon")
    check(" 2 accepted," in p.stdout, "accepted count: %r" % p.stdout)
    env.daemon.stop()

    journal = os.path.join(env.spool, "journal")
    with open(journal, "ab") as f:
        f.write(b"2026-11-23T01:20:00.000001Z delivered id=0000")  # torn
    p = checked(ctl("-f", env.conf_path, "journal-check"), 0, "torn tail")
    check("torn last record: 45 octets" in p.stdout,
          "torn tail not reported: %r" % p.stdout)
    with open(journal, "ab") as f:
        f.write(b"\nnot a journal record\n")
    p = checked(ctl("-f", env.conf_path, "journal-check"), EX_DATAERR,
                "foreign lines")
    check(" 2 not records" in p.stdout, "foreign lines: %r" % p.stdout)


def main(runner):
    if not os.access(CTL, os.X_OK):
        lib.fail("splitmxctl not built (%s); run make test-build" % CTL)
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)


if __name__ == "__main__":
    lib.main_guard(main)
