#!/usr/bin/python3
"""
test_starttls_injection.py - plaintext pipelined after STARTTLS must be
discarded (CVE-2011-0411 class), and the session state is reset by TLS.
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

env = None


def tls_ctx():
    return lib.client_tls_context(env.cert)


def t_injected_rset_discarded():
    c = env.client()
    c.start()
    c.send(b"STARTTLS\r\nRSET\r\n")
    r = c.read_reply()
    expect_reply(r, 220, "2.0.0", "STARTTLS")
    check(r.lines[0] == "2.0.0 Ready to start TLS",
          "STARTTLS reply text: %s" % r)
    extra = c.pending_data(0.5)
    check(extra == b"", "plaintext after the 220, before the handshake: %r"
          % extra)
    c.wrap_tls(tls_ctx())
    # Anything the server sends now unasked would be the injected RSET's reply.
    extra = c.pending_data(0.5)
    check(extra == b"", "unsolicited data after the handshake (the injected "
          "RSET was executed?): %r" % extra)
    r = c.cmd("NOOP")
    expect_reply(r, 250, None, "first reply after the handshake")
    r = c.cmd("HELP")
    expect_reply(r, 214, None, "HELP after NOOP (a 250 here means the "
                 "injected RSET was executed)")
    extra = c.pending_data(0.3)
    check(extra == b"", "unexpected data after HELP: %r" % extra)
    c.close()


def t_injected_mail_discarded():
    c = env.client()
    c.start()
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@client.test>\r\n"
           b"RCPT TO:<alice@example.com>\r\n")
    expect_reply(c.read_reply(), 220, "2.0.0", "STARTTLS")
    check(c.pending_data(0.5) == b"", "plaintext after 220: %r" % c.buf)
    c.wrap_tls(tls_ctx())
    check(c.pending_data(0.5) == b"", "unsolicited data after the "
          "handshake: %r" % c.buf)
    # TLS resets the session: EHLO is needed again and no MAIL is in effect.
    c.expect("MAIL FROM:<s@client.test>", 503, "5.5.1",
             "MAIL right after the handshake without a new EHLO")
    c.ehlo()
    c.expect("RCPT TO:<alice@example.com>", 503, "5.5.1",
             "RCPT after the handshake (the injected MAIL must be gone)")
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<alice@example.com>", 250, "2.1.5")
    msg = lib.message("after injection")
    r = c.data(msg)
    qid = r.queue_id()
    check(qid, "not queued: %s" % r)
    c.expect("NOOP", 250)
    c.close()       # (QUIT over TLS: see test_protocol quit_over_tls)
    qf = lib.queue_file(env.spool, qid)
    check(qf.sender == "s@client.test", "sender %r (injected MAIL used?)"
          % qf.sender)
    check(qf.rcpt_addrs() == ["alice@example.com"], "rcpts %r" %
          qf.rcpt_addrs())
    check(qf.get("tls") is not None, "no tls line in the queue file")


def t_ehlo_state_forgotten():
    # HELO/EHLO before TLS does not count after it (RFC 3207 4.2).
    c = env.client()
    c.start()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.starttls(tls_ctx())
    c.expect("RCPT TO:<alice@example.com>", 503, "5.5.1",
             "RCPT after TLS with the MAIL given before TLS")
    c.close()


def t_plaintext_instead_of_handshake():
    c = env.client()
    c.start()
    expect_reply(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
    c.send(b"EHLO not-tls\r\n")
    c.wait_closed(15)
    c.close()
    check(env.daemon.alive(), "daemon died after a failed handshake")
    c = env.client()
    c.start()
    c.quit()


def t_tls_handshake_timeout():
    c = env.client()
    c.start()
    expect_reply(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
    t0 = time.monotonic()
    c.wait_closed(15)        # timeout_tls 3s
    dt = time.monotonic() - t0
    check(dt >= 2.0, "closed after %.1f s, before timeout_tls 3s" % dt)
    c.close()


def t_overlong_line_around_tls():
    # An overlong line before STARTTLS does not disturb the handshake, and
    # one inside TLS is refused like in plaintext, the session going on.
    c = env.client()
    c.start()
    c.send(b"NOOP " + b"p" * 3000 + b"\r\nSTARTTLS\r\n")
    expect_reply(c.read_reply(), 500, "5.5.2", "overlong line before TLS")
    expect_reply(c.read_reply(), 220, "2.0.0", "STARTTLS after it")
    c.wrap_tls(tls_ctx())
    c.ehlo()
    c.send(b"NOOP " + b"t" * 5000 + b"\r\nNOOP\r\n")
    expect_reply(c.read_reply(), 500, "5.5.2", "overlong line over TLS")
    expect_reply(c.read_reply(), 250, None, "NOOP after it, over TLS")
    c.send_message("s@client.test", ["alice@example.com"],
                   lib.message("over TLS after an overlong line"))
    c.quit()


def main(runner):
    global env
    env = lib.Env("starttls", tls=True, limits={"timeout_tls": "3s"})
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)
    runner.run("tmp_empty", lib.wait_tmp_empty, env.spool)


if __name__ == "__main__":
    lib.main_guard(main)
