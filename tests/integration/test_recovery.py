#!/usr/bin/python3
"""
test_recovery.py - start-up recovery of a damaged spool (STYLE.md 12:
"feed the loader a truncated or corrupt spool file and expect it
quarantined and logged, not deleted").

With the daemon stopped, the test plants files in the spool (the only test
that writes there): a truncated copy of a queue file, a queue file with a
wrong first line, and a half-received file in tmp/. On restart the good
messages stay, the damaged ones move to corrupt/ (same name, same bytes)
with a log line naming them, and the tmp/ file is removed and journaled as
discarded.
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

env = None
good = {}


def t_recover_damaged_spool():
    global env
    env = lib.Env("recovery")
    c = env.client()
    c.start()
    for i in range(3):
        m = lib.message("good %d" % i)
        good[c.send_message("s@client.test", ["alice@example.com"], m)] = m
    c.quit()
    env.daemon.stop()

    qdir = lib.queue_dir(env.spool)
    src = open(os.path.join(qdir, sorted(good)[0]), "rb").read()
    planted = {
        "0000000000TRUNC1": src[:len(src) - 10],
        "0000000000BADHDR": b"not-a-queue-file 9\n" + src.split(b"\n", 1)[1],
    }
    for name, data in planted.items():
        lib.write_file(os.path.join(qdir, name), data)
    tmp_name = "0000000000HALFTX"
    lib.write_file(os.path.join(env.spool, "tmp", tmp_name), src[:200])

    env.restart()
    log = env.daemon.log_text()
    for qid, m in good.items():
        lib.queue_file(env.spool, qid).received_and_body(m)
    corrupt = os.path.join(env.spool, "corrupt")
    for name, data in planted.items():
        check(not os.path.exists(os.path.join(qdir, name)),
              "%s still in queue/ after recovery" % name)
        p = os.path.join(corrupt, name)
        check(os.path.exists(p), "%s not quarantined in corrupt/ (corrupt/ "
              "has %s)" % (name, lib.list_dir(corrupt)))
        check(open(p, "rb").read() == data, "%s changed in quarantine" %
              name)
        check(name in log, "no log line names the quarantined %s" % name)
    check(lib.tmp_files(env.spool) == [], "tmp/ not emptied: %s" %
          lib.tmp_files(env.spool))
    j = env.journal()
    check(tmp_name in {r["fields"].get("id") for r in j.of("discarded")},
          "no 'discarded id=%s' journal record" % tmp_name)
    # Still serves, and a second restart changes nothing.
    c = env.client()
    c.start()
    m = lib.message("after recovery")
    good[c.send_message("s@client.test", ["bob@example.com"], m)] = m
    c.quit()
    env.daemon.stop()
    env.restart()
    check(set(lib.list_dir(qdir)) == set(good), "queue/ after the second "
          "restart: %s" % lib.list_dir(qdir))
    check(set(lib.list_dir(corrupt)) == set(planted), "corrupt/ changed")


def main(runner):
    runner.run("recover_damaged_spool", t_recover_damaged_spool)


if __name__ == "__main__":
    lib.main_guard(main)
