#!/usr/bin/python3
"""
test_limits.py - connection limits (421 4.7.0), timeouts (421 4.4.2),
the per-message recipient limit (452 4.5.3) and overlong command lines
(500 5.5.2, the session goes on; past 64 KiB it closes).
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


def daemon_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def t_overlong_line_keeps_session():
    # Issue 8 item 4: 500 5.5.2, the rest of the line is discarded, the
    # session goes on, and a whole message still goes through after it.
    c = tenv.client()
    c.start()
    line = b"NOOP " + b"x" * (2105 - 7) + b"\r\n"
    check(len(line) == 2105, "test bug")
    c.send(line)
    expect_reply(c.read_reply(), 500, "5.5.2", "2,105-octet NOOP")
    c.expect("NOOP", 250, None, "NOOP after the overlong line")
    m = lib.message("after an overlong line")
    c.send_message("s@client.test", ["alice@example.com"], m)
    c.quit()


def t_overlong_line_pipelined():
    # Replies stay in order around the refused line, inside a transaction.
    c = tenv.client()
    c.start()
    c.send(b"MAIL FROM:<s@client.test>\r\n"
           b"RCPT TO:<" + b"a" * 3000 + b"@example.com>\r\n"
           b"RCPT TO:<alice@example.com>\r\nNOOP\r\n")
    got = [c.read_reply() for _ in range(4)]
    check([r.code for r in got] == [250, 500, 250, 250],
          "pipelined MAIL, overlong RCPT, RCPT, NOOP answered %s"
          % [str(r) for r in got])
    check(got[1].enh == "5.5.2", "overlong RCPT answered %s" % got[1])
    r = c.data(lib.message("pipelined after an overlong RCPT"))
    check(r.queue_id(), "message not queued: %s" % r)
    qf = lib.queue_file(tenv.spool, r.queue_id())
    check(qf.rcpt_addrs() == ["alice@example.com"],
          "stored rcpts %r" % qf.rcpt_addrs())
    c.quit()


def t_overlong_line_in_pieces():
    # The line arrives over many reads; nothing of it is kept.
    c = tenv.client()
    c.start()
    c.send(b"NOOP ")
    for _ in range(8):
        c.send(b"y" * 4000)
        time.sleep(0.02)
    c.send(b"\r\nNOOP\r\n")
    expect_reply(c.read_reply(), 500, "5.5.2", "32 KB NOOP in pieces")
    expect_reply(c.read_reply(), 250, None, "NOOP after it")
    c.quit()


def t_overlong_bdat_closes():
    # A BDAT line too long to parse: its chunk cannot be told from
    # commands, so the session ends (as for a BDAT syntax error).
    c = tenv.client()
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.send(b"BDAT 12 LAST " + b"X" * 3000 + b"\r\nQUIT\r\nRSET\r\n")
    expect_reply(c.read_reply(), 500, "5.5.2", "overlong BDAT line")
    c.wait_closed(5)
    c.close()


def t_megabyte_line_closes():
    # Past 64 KiB the line is not worth waiting for: 500 and close, with
    # no memory kept for it.
    pid = tenv.daemon.pid
    rss0 = daemon_rss_kib(pid)
    c = tenv.client(timeout=15)
    c.start()
    sent = 0
    try:
        for _ in range(256):
            c.send(b"z" * 4096)
            sent += 4096
    except OSError:
        pass  # closed under us: that is the answer
    r = c.read_reply(10)
    expect_reply(r, 500, "5.5.2", "1 MiB without CRLF (sent %d)" % sent)
    c.wait_closed(10)
    c.close()
    rss1 = daemon_rss_kib(pid)
    check(rss1 - rss0 < 16 * 1024, "daemon RSS grew from %d to %d KiB on a "
          "1 MiB line" % (rss0, rss1))
    # Others are served as before.
    c = tenv.client()
    c.start()
    c.quit()


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
                 "timeout_data", "timeout_bdat", "recipients_limit",
                 "overlong_line_keeps_session", "overlong_line_pipelined",
                 "overlong_line_in_pieces", "overlong_bdat_closes",
                 "megabyte_line_closes"):
        runner.run(name, globals()["t_" + name])


if __name__ == "__main__":
    lib.main_guard(main)
