#!/usr/bin/python3
"""
test_sigterm.py - graceful shutdown. On SIGTERM the daemon stops listening
at once, lets a DATA in progress finish within shutdown_grace (and
acknowledges it only once durable), then exits 0. Idle sessions do not hold
it up; a DATA that outlasts the grace period is not acknowledged.
"""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402


def wait_refused(port, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if lib.port_refuses(port):
            return time.monotonic()
        time.sleep(0.05)
    lib.fail("port %d still accepts connections %.1f s after SIGTERM" % (
        port, within))


def t_data_finishes_after_sigterm():
    env = lib.Env("sigterm", limits={"shutdown_grace": "10s",
                                     "timeout_data": "60s"})
    c = env.client(timeout=20)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    m = lib.message("in flight at SIGTERM", body=lib.random_body(50000))
    half = len(m) // 2
    c.send(lib.dot_stuff(m[:half]))
    time.sleep(0.3)
    t0 = time.monotonic()
    env.daemon.signal(signal.SIGTERM)
    wait_refused(env.port, 2.0)
    check(env.daemon.alive(), "daemon exited with a DATA in progress (rc=%s)"
          % env.daemon.proc.returncode)
    time.sleep(1.0)
    c.send(lib.dot_stuff(m[half:]) + b".\r\n")
    r = c.read_reply(15)
    qid = r.queue_id()
    check(qid, "DATA finished during the grace period: expected 250 queued, "
          "got %s" % r)
    check(time.monotonic() - t0 < 10, "250 came after shutdown_grace")
    try:
        c.send(b"QUIT\r\n")
        rs = c.read_all_replies(5)
        check(all(x.code in (221, 421) for x in rs), "after 250: %s" % rs)
    except OSError:
        pass
    c.close()
    rc = env.daemon.wait_exit(15)
    check(rc is not None, "daemon still running 15 s after the last "
          "session ended")
    env.daemon.stop()          # exit status 0 and sanitizer checks
    lib.queue_file(env.spool, qid).received_and_body(m)
    check(not lib.tmp_files(env.spool), "tmp/ not empty: %s" %
          lib.tmp_files(env.spool))


def t_idle_sessions_do_not_delay_exit():
    env = lib.Env("sigterm-idle", limits={"shutdown_grace": "3s",
                                          "timeout_command": "300s"})
    idle = env.client(timeout=20)
    idle.start()
    banner_only = env.client(timeout=20)
    expect_reply(banner_only.read_reply(), 220, None, "banner")
    t0 = time.monotonic()
    env.daemon.signal(signal.SIGTERM)
    wait_refused(env.port, 2.0)
    rc = env.daemon.wait_exit(3 + 5)
    dt = time.monotonic() - t0
    check(rc is not None, "daemon did not exit within shutdown_grace 3s + 5 s"
          " with idle sessions open")
    print("    exited %.1f s after SIGTERM" % dt)
    for c in (idle, banner_only):
        rest = c.wait_closed(5)
        check(rest == b"" or rest.startswith(b"421 "),
              "idle session got %r on shutdown (expected nothing or 421)"
              % rest)
        c.close()
    env.daemon.stop()


def t_data_outlasting_grace():
    env = lib.Env("sigterm-slow", limits={"shutdown_grace": "2s",
                                          "timeout_data": "60s"})
    before = set(lib.list_dir(lib.queue_dir(env.spool)))
    c = env.client(timeout=20)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    c.send(b"Subject: slow\r\n\r\npart one\r\n")
    env.daemon.signal(signal.SIGTERM)
    rc = env.daemon.wait_exit(2 + 6)
    check(rc is not None, "daemon did not exit within shutdown_grace 2s + 6 s"
          " while a client stalled in DATA")
    try:
        c.send(b"part two\r\n.\r\n")
        rs = c.read_all_replies(3)
    except OSError:
        rs = []
    check(not any(r.code == 250 for r in rs), "a 250 after the daemon "
          "exited: %s" % rs)
    c.close()
    env.daemon.stop()
    check(set(lib.list_dir(lib.queue_dir(env.spool))) == before,
          "the unfinished message is in queue/")


def t_tls_session_open_at_sigterm():
    env = lib.Env("sigterm-tls", tls=True, limits={"shutdown_grace": "3s"})
    c = env.client(timeout=20)
    c.start()
    c.starttls(lib.client_tls_context(env.cert))
    c.ehlo()
    env.daemon.signal(signal.SIGTERM)
    rc = env.daemon.wait_exit(3 + 5)
    check(rc is not None, "daemon did not exit with a TLS session open")
    try:
        rs = c.read_all_replies(3)
    except Exception:
        rs = []
    check(all(r.code == 421 for r in rs), "TLS session got %s" % rs)
    c.close()
    env.daemon.stop()           # exit 0, no leak report


def main(runner):
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)


if __name__ == "__main__":
    lib.main_guard(main)
