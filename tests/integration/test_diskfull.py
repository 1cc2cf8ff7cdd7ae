#!/usr/bin/python3
"""
test_diskfull.py - the spool on a 2 MiB tmpfs. A 3 MiB message must get
452 4.3.1 (after its final dot), leave no temp file behind, and the daemon
must go on accepting small messages. Needs root (mount); prints SKIP
otherwise.
"""

import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

env = None


def wait_space(min_kib=768, timeout=10.0):
    """
    The spool's filesystem has min_kib free again. A refused message's
    file is closed and unlinked by a worker after (or while) the 452 goes
    out, and the spool's pool of empty temp files is refilled by another:
    the space comes back a moment after the reply, not with it. Fails if
    it never does (a leaked file). Below 1 MiB: the spool's log keeps a
    little written ahead (spool/log/, splitmx-spool(5)).
    """
    def free_kib():
        st = os.statvfs(env.spool)
        return st.f_bavail * st.f_frsize // 1024
    deadline = time.monotonic() + timeout
    while free_kib() < min_kib:
        if time.monotonic() > deadline:
            lib.fail("the spool still has only %d KiB free after %.0f s"
                     % (free_kib(), timeout))
        time.sleep(0.02)


def big_then_small(tag):
    wait_space()
    c = env.client(timeout=60)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    big = lib.message("big " + tag, body=lib.random_body(3 * 1024 * 1024))
    c.send(lib.dot_stuff(big) + b".\r\n")
    r = c.read_reply(60)
    expect_reply(r, 452, "4.3.1", "3 MiB message on a 2 MiB spool")
    lib.wait_tmp_empty(env.spool, 10)
    wait_space()
    small = lib.message("small " + tag)
    qid = c.send_message("s@client.test", ["bob@example.com"], small)
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(small)
    for qf in env.queue().values():
        check(not qf.content.endswith(big), "the big message is in queue/")


def t_big_refused_small_accepted():
    big_then_small("1")


def t_again_in_new_session():
    big_then_small("2")


def t_bdat_big():
    wait_space()
    c = env.client(timeout=60)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    big = lib.message("bdat big", body=lib.random_body(3 * 1024 * 1024))
    step = 512 * 1024
    chunks = [big[i:i + step] for i in range(0, len(big), step)]
    last = None
    for i, ch in enumerate(chunks):
        is_last = i == len(chunks) - 1
        c.send(b"BDAT %d%s\r\n" % (len(ch), b" LAST" if is_last else b"")
               + ch)
        last = c.read_reply(60)
        if last.code != 250 or is_last:
            break
    expect_reply(last, 452, "4.3.1", "3 MiB BDAT message on a 2 MiB spool")
    # The refused message's temp file is removed by a worker after the
    # reply: until it is gone the spool is still full (as in big_then_small).
    lib.wait_tmp_empty(env.spool, 10)
    wait_space()
    c.expect("RSET", 250)
    small = lib.message("small after bdat")
    qid = c.send_message("s@client.test", ["bob@example.com"], small)
    c.quit()
    lib.queue_file(env.spool, qid)
    lib.wait_tmp_empty(env.spool, 10)


def main(runner):
    global env
    if os.geteuid() != 0:
        print("SKIP test_diskfull: needs root to mount a tmpfs")
        sys.exit(0)
    d = lib.make_tmpdir("diskfull")
    spool = os.path.join(d, "spool")
    os.mkdir(spool)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                        spool], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    if r.returncode != 0:
        print("SKIP test_diskfull: mount failed: %s" % r.stdout.decode(
            "utf-8", "replace").strip())
        sys.exit(0)
    try:
        env = lib.Env("diskfull", spool_dir=spool,
                      limits={"message_size": "10M"})
        for name, fn in sorted((n[2:], f) for n, f in globals().items()
                               if n.startswith("t_")):
            runner.run(name, fn)
        runner.run("stop", env.daemon.stop)
    finally:
        if env is not None and env.daemon.alive():
            env.daemon._emergency_kill()
        subprocess.run(["umount", spool], timeout=30)
    runner.finish()


if __name__ == "__main__":
    lib.main_guard(main)
