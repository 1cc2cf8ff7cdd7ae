#!/usr/bin/python3
"""
test_limits.py - connection limits (421 4.7.0), timeouts (421 4.4.2) and
the per-message recipient limit (452 4.5.3).
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402


def over_limit(env, n, what):
    held = []
    try:
        for i in range(n):
            c = env.client()
            expect_reply(c.read_reply(), 220, None, "%s: connection %d of %d"
                         % (what, i + 1, n))
            held.append(c)
        c = env.client()
        r = c.read_reply()
        expect_reply(r, 421, "4.7.0", "%s: connection %d" % (what, n + 1))
        c.wait_closed(5)
        c.close()
        # The held sessions still work.
        for h in held:
            h.expect("NOOP", 250, None, "%s: held session" % what)
        # Freeing one slot lets a new client in.
        held.pop(0).quit()

        def admitted():
            c = env.client()
            r = c.read_reply()
            if r.code == 220:
                held.append(c)
                return True
            c.close()
            return False
        lib.wait_for(admitted, 5, 0.1, "a free slot after one client quit")
    finally:
        for h in held:
            h.close()


def t_connections_per_ip():
    env = lib.Env("perip", limits={"connections_per_ip": "3",
                                   "connections": "100"})
    over_limit(env, 3, "connections_per_ip 3")
    env.daemon.stop()


def t_connections_total():
    env = lib.Env("conntotal", limits={"connections_per_ip": "100",
                                       "connections": "3"})
    over_limit(env, 3, "connections 3")
    env.daemon.stop()


def t_resets_do_not_leak_slots():
    import socket
    import struct
    env = lib.Env("perip-rst", limits={"connections_per_ip": "3",
                                       "connections": "100"})
    # 30 clients vanish with a reset at various points of a session.
    for i in range(30):
        c = env.client()
        if i % 3 >= 1:
            c.read_reply()
        if i % 3 == 2:
            c.send(b"EHLO x\r\nMAIL FROM:<s@client.test>\r\n")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()

    def three_admitted():
        held = []
        try:
            for _ in range(3):
                c = env.client()
                r = c.read_reply()
                held.append(c)
                if r.code != 220:
                    return False
            return True
        finally:
            for c in held:
                c.close()
    lib.wait_for(three_admitted, 5, 0.2, "3 connections admitted after 30 "
                 "reset ones (slot leak?)")
    env.daemon.stop()


tenv = None


def timed_close(c, what, lo=1.5, hi=8.0):
    t0 = time.monotonic()
    r = c.read_reply(hi + 2)
    dt = time.monotonic() - t0
    expect_reply(r, 421, "4.4.2", what)
    check(lo <= dt <= hi, "%s: 421 after %.1f s, expected about 2 s" % (
        what, dt))
    c.wait_closed(5)
    c.close()


def t_timeout_after_banner():
    c = tenv.client(timeout=15)
    expect_reply(c.read_reply(), 220, None, "banner")
    timed_close(c, "idle after the banner (timeout_command 2s)")


def t_timeout_in_transaction():
    c = tenv.client(timeout=15)
    c.start()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    timed_close(c, "idle after MAIL")


def t_timeout_partial_line():
    c = tenv.client(timeout=15)
    c.start()
    c.send(b"NOOP")
    timed_close(c, "partial command line")


def t_activity_keeps_session():
    c = tenv.client(timeout=15)
    c.start()
    for _ in range(5):
        time.sleep(1.0)
        c.expect("NOOP", 250, None, "NOOP every second")
    c.quit()


def t_timeout_data():
    before = set(lib.list_dir(lib.queue_dir(tenv.spool)))
    c = tenv.client(timeout=15)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    c.send(b"Subject: stalled\r\n\r\nsome data\r\n")
    timed_close(c, "stalled DATA (timeout_data 2s)")
    lib.wait_tmp_empty(tenv.spool)
    check(set(lib.list_dir(lib.queue_dir(tenv.spool))) == before,
          "stalled message was queued")


def t_timeout_bdat():
    before = set(lib.list_dir(lib.queue_dir(tenv.spool)))
    c = tenv.client(timeout=15)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.send(b"BDAT 100 LAST\r\nSubject: short\r\n")
    timed_close(c, "stalled BDAT chunk (timeout_data 2s)")
    lib.wait_tmp_empty(tenv.spool)
    check(set(lib.list_dir(lib.queue_dir(tenv.spool))) == before,
          "stalled BDAT message was queued")


def t_recipients_limit():
    c = tenv.client()
    c.start()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    rcpts = ["r%d@example.org" % i for i in range(5)]
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250, "2.1.5")
    c.expect("RCPT TO:<r5@example.org>", 452, "4.5.3", "6th RCPT "
             "(recipients 5)")
    c.expect("RCPT TO:<r6@example.org>", 452, "4.5.3", "7th RCPT")
    m = lib.message("five rcpts")
    r = c.data(m)
    qid = r.queue_id()
    check(qid, "message to 5 recipients not queued: %s" % r)
    # The limit is per message: the next transaction gets 5 again.
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250, "2.1.5", "limit is per message")
    c.expect("RSET", 250)
    c.quit()
    qf = lib.queue_file(tenv.spool, qid)
    check(qf.rcpt_addrs() == rcpts, "stored rcpts %r" % qf.rcpt_addrs())


def main(runner):
    global tenv
    runner.run("connections_per_ip", t_connections_per_ip)
    runner.run("connections_total", t_connections_total)
    runner.run("resets_do_not_leak_slots", t_resets_do_not_leak_slots)
    tenv = lib.Env("timeouts", limits={"timeout_command": "2s",
                                       "timeout_data": "2s",
                                       "recipients": "5"})
    for name in ("timeout_after_banner", "timeout_in_transaction",
                 "timeout_partial_line", "activity_keeps_session",
                 "timeout_data", "timeout_bdat", "recipients_limit"):
        runner.run(name, globals()["t_" + name])


if __name__ == "__main__":
    lib.main_guard(main)
