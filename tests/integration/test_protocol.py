#!/usr/bin/python3
"""
test_protocol.py - the SMTP command state machine and its replies.

One daemon with two listeners (STARTTLS on one, plain on the other),
message_size 1M, errors 5, bare_newline reject. Each check uses fresh
connections so the error limit of one check does not leak into another.
"""

import hashlib
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

LIMITS = {
    "message_size": "1M",
    "recipients": "5",
    "errors": "5",
    "max_received": "50",
    "bare_newline": "reject",
    "timeout_command": "30s",
}
SIZE_1M = 1048576   # "1M" read as 2^20 octets
EXPECTED_KEYWORDS = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN",
                     "SMTPUTF8", "CHUNKING"]

env = None


def fresh(port=None, ehlo=True):
    c = env.client(port)
    if ehlo:
        c.start()
    else:
        expect_reply(c.read_reply(), 220, None, "banner")
    return c


def keywords(reply):
    return [l.split(" ")[0].upper() for l in reply.lines[1:]]


def kwline(reply, kw):
    for l in reply.lines[1:]:
        if l.split(" ")[0].upper() == kw:
            return l
    return None


def t_banner():
    c = env.client()
    r = c.read_reply()
    expect_reply(r, 220, None, "banner")
    check(r.lines[0].startswith("mx.test ESMTP splitmx"),
          "banner: expected '220 mx.test ESMTP splitmx', got '%s'" % r)
    c.quit()


def check_ehlo(r, starttls):
    check(r.lines[0].split(" ")[0] == "mx.test",
          "EHLO first line should start with the hostname: %s" % r)
    kws = keywords(r)
    for k in EXPECTED_KEYWORDS:
        check(k in kws, "EHLO lacks %s: %s" % (k, r))
    size = kwline(r, "SIZE")
    check(size is not None, "EHLO lacks SIZE: %s" % r)
    check(size == "SIZE %d" % SIZE_1M,
          "expected 'SIZE %d' (message_size 1M), got '%s'" % (SIZE_1M, size))
    if starttls:
        check("STARTTLS" in kws, "EHLO on a TLS listener lacks STARTTLS: %s"
              % r)
    else:
        check("STARTTLS" not in kws, "STARTTLS advertised where it must not "
              "be: %s" % r)


def t_ehlo_keywords_tls_listener():
    c = fresh(ehlo=False)
    check_ehlo(c.ehlo(), starttls=True)
    c.starttls(lib.client_tls_context(env.cert))
    check_ehlo(c.ehlo(), starttls=False)
    r = c.cmd("STARTTLS")
    check(500 <= r.code <= 554, "STARTTLS with TLS active: expected 5xx, got "
          "'%s'" % r)
    c.expect("NOOP", 250)
    c.close()       # QUIT over TLS is checked in quit_over_tls


def t_quit_over_tls():
    c = fresh(ehlo=True)
    c.starttls(lib.client_tls_context(env.cert))
    c.ehlo()
    c.expect("NOOP", 250)
    try:
        r = c.cmd("QUIT")
    except lib.ConnectionClosed:
        lib.fail("QUIT over TLS: connection closed without the 221 reply")
    expect_reply(r, 221, None, "QUIT over TLS")
    c.wait_closed(5)
    c.close()


def t_ehlo_keywords_plain_listener():
    c = fresh(env.plain_port, ehlo=False)
    check_ehlo(c.ehlo(), starttls=False)
    r = c.cmd("STARTTLS")
    check(500 <= r.code <= 504, "STARTTLS on a listener without a cert: "
          "expected 50x, got '%s'" % r)
    c.quit()


def t_starttls_with_argument():
    c = fresh()
    c.expect("STARTTLS now", 501, "5.5.4")
    c.quit()


def t_helo():
    c = fresh(ehlo=False)
    r = c.expect("HELO client.test", 250)
    check(len(r.lines) == 1, "HELO reply must be one line: %s" % r)
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.quit()


def t_lowercase_verbs():
    c = fresh(ehlo=False)
    c.expect("ehlo client.test", 250)
    c.expect("mail from:<s@client.test>", 250, "2.1.0")
    c.expect("rcpt to:<alice@example.com>", 250, "2.1.5")
    c.expect("rset", 250)
    c.quit()


def t_sequence_errors():
    c = fresh(ehlo=False)
    c.expect("MAIL FROM:<s@client.test>", 503, "5.5.1",
             "MAIL before EHLO")
    c.quit()
    c = fresh()
    c.expect("RCPT TO:<alice@example.com>", 503, "5.5.1", "RCPT before MAIL")
    c.expect("DATA", 503, "5.5.1", "DATA before MAIL")
    c.quit()
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("DATA", 503, "5.5.1", "DATA before any RCPT")
    c.expect("MAIL FROM:<s@client.test>", 503, "5.5.1", "nested MAIL")
    c.quit()
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<x@foreign.example>", 554, "5.7.1")
    c.expect("DATA", 554, "5.5.1", "DATA when every RCPT was refused")
    c.quit()
    # RSET ends the transaction.
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RSET", 250)
    c.expect("RCPT TO:<alice@example.com>", 503, "5.5.1", "RCPT after RSET")
    c.quit()


def t_unknown_command():
    c = fresh()
    c.expect("XYZZY", 500, "5.5.1")
    c.expect("NOOP", 250)
    c.quit()


def t_syntax_errors():
    cases = [
        ("EHLO", 501, "5.5.4"),
        ("HELO", 501, "5.5.4"),
        ("MAIL FROM", 501, "5.5.4"),
        ("MAIL TO:<s@client.test>", 501, "5.5.4"),
        ("MAIL FROM:<a b@client.test>", 501, "5.1.7"),
        ("MAIL FROM:<user@>", 501, "5.1.7"),
        ("MAIL FROM:<a@b@client.test>", 501, "5.1.7"),
        ("MAIL FROM:<s@client.test> SIZE=abc", 501, "5.5.4"),
        ("MAIL FROM:<s@client.test> FOO=BAR", 555, "5.5.4"),
    ]
    for line, code, enh in cases:
        c = fresh(ehlo=not line.startswith(("EHLO", "HELO")))
        c.expect(line, code, enh)
        c.quit()
    rcases = [
        ("RCPT alice@example.com", 501, "5.5.4"),
        ("RCPT TO:<@@>", 501, "5.1.3"),
        ("RCPT TO:<alice@example..com>", 501, "5.1.3"),
        ("RCPT TO:<alice@example.com> BAR=1", 555, "5.5.4"),
        ("RCPT TO:<alice@example.com> NOTIFY=NEVER,SUCCESS", 501, "5.5.4"),
        ("RCPT TO:<alice@example.com> NOTIFY=SOMETIMES", 501, "5.5.4"),
        ("RCPT TO:<alice@example.com> ORCPT=alice@example.com", 501, "5.5.4"),
    ]
    for line, code, enh in rcases:
        c = fresh()
        c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
        c.expect(line, code, enh)
        c.quit()
    mcases = [
        ("MAIL FROM:<s@client.test> RET=SOMETIMES", 501, "5.5.4"),
        ("MAIL FROM:<s@client.test> ENVID=a ENVID=b", 501, "5.5.4"),
        ("MAIL FROM:<s@client.test> RET=FULL RET=HDRS", 501, "5.5.4"),
    ]
    for line, code, enh in mcases:
        c = fresh()
        c.expect(line, code, enh)
        c.quit()


def label_domain(total, tld=".example"):
    """A syntactically valid domain of exactly total octets."""
    body = total - len(tld)
    labels = []
    while body > 0:
        n = min(50, body)
        if body - n == 1:       # avoid a trailing empty label
            n -= 1
        labels.append("d" * n)
        body -= n + 1
        if body == 0:
            break
    d = ".".join(labels)
    d = d[:total - len(tld)] + tld
    return d


def t_length_limits():
    ok_local = "l" * 64
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<%s@example.org>" % ok_local, 250, "2.1.5",
             "64-octet local part")
    c.quit()
    c = fresh()
    r = c.cmd("MAIL FROM:<%s@client.test>" % ("l" * 65))
    expect_reply(r, 501, None, "MAIL with a 65-octet local part")
    c.quit()
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    r = c.cmd("RCPT TO:<%s@example.org>" % ("l" * 65))
    expect_reply(r, 501, None, "RCPT with a 65-octet local part")
    c.quit()
    dom = label_domain(256)
    check(len(dom) == 256, "test bug: domain length %d" % len(dom))
    c = fresh()
    r = c.cmd("MAIL FROM:<s@%s>" % dom)
    expect_reply(r, 501, None, "MAIL with a 256-octet domain")
    c.quit()
    # Path over 256 octets with each part within its own limit.
    dom = label_domain(200)
    c = fresh()
    r = c.cmd("MAIL FROM:<%s@%s>" % ("l" * 64, dom))
    expect_reply(r, 501, None, "MAIL with a %d-octet path" % (
        64 + 1 + len(dom) + 2))
    c.quit()


def t_vrfy_help_noop_rset_quit():
    c = fresh()
    c.expect("VRFY alice", 252)
    c.expect("HELP", 214)
    c.expect("NOOP", 250)
    c.expect("RSET", 250)
    r = c.cmd("QUIT")
    expect_reply(r, 221, None, "QUIT")
    c.wait_closed(5)
    c.close()


def t_error_limit():
    c = fresh()
    got = []
    for i in range(12):
        r = c.cmd("XYZZY%d" % i)
        got.append(str(r))
        if r.code != 500:
            break
    check(got and got[-1].startswith("421 4.7.0"),
          "expected 421 4.7.0 after errors limit 5; got %s" % got)
    n500 = len(got) - 1
    check(n500 in (4, 5), "421 came after %d errors; limit is 5 (expected "
          "after the 5th or 6th bad command): %s" % (n500, got))
    c.wait_closed(5)
    c.close()


def t_long_line():
    # Refused, discarded, and the session goes on (as Postfix does).
    c = fresh()
    c.send(b"NOOP " + b"x" * 2100 + b"\r\n")
    r = c.read_reply()
    expect_reply(r, 500, "5.5.2", "command line of 2107 octets")
    c.expect("NOOP", 250, None, "NOOP after an overlong line")
    c.quit()


def t_line_length_boundary():
    c = fresh()
    line = b"NOOP " + b"x" * (2048 - 7)
    check(len(line) + 2 == 2048, "test bug")
    c.send(line + b"\r\n")
    expect_reply(c.read_reply(), 250, None,
                 "NOOP line of exactly 2048 octets with CRLF")
    c.send(b"NOOP " + b"x" * (2049 - 7) + b"\r\n")
    expect_reply(c.read_reply(), 500, "5.5.2",
                 "NOOP line of 2049 octets with CRLF")
    c.expect("NOOP", 250, None, "NOOP after the 2049-octet line")
    c.quit()


def t_http_request_closed():
    c = env.client()
    c.send(b"GET / HTTP/1.1\r\nHost: mx.test\r\nUser-Agent: x\r\n\r\n")
    replies = c.read_all_replies(timeout=8)
    check(replies and replies[0].code == 220,
          "expected the banner first: %s" % replies)
    for r in replies[1:]:
        check(r.code >= 400, "HTTP request got a positive reply: %s" % r)
    check(c.eof, "connection not closed after an HTTP request; replies %s"
          % replies)
    c.close()


def t_dsn_params_stored():
    c = fresh()
    c.expect("MAIL FROM:<s@client.test> RET=HDRS ENVID=QQ+2B123", 250,
             "2.1.0")
    c.expect("RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE "
             "ORCPT=rfc822;alice@example.com", 250, "2.1.5")
    c.expect("RCPT TO:<bob@example.com> NOTIFY=NEVER", 250, "2.1.5")
    msg = lib.message("dsn")
    r = c.data(msg)
    qid = r.queue_id()
    check(qid, "DSN message not queued: %s" % r)
    c.quit()
    qf = lib.queue_file(env.spool, qid)
    qf.received_and_body(msg)
    check(len(qf.rcpts) == 2, "expected 2 rcpt lines, got %s" % qf.rcpts)
    a, b = qf.rcpts
    check(a["addr"] == b"alice@example.com", "rcpt 1: %r" % a)
    n = a["params"].get("notify", b"").lower()
    check(b"success" in n and b"failure" in n and b"never" not in n,
          "rcpt alice notify=%r, expected SUCCESS,FAILURE" % n)
    check(a["params"].get("orcpt") == b"rfc822;alice@example.com",
          "rcpt alice orcpt=%r" % a["params"].get("orcpt"))
    check(b["params"].get("notify", b"").lower() == b"never",
          "rcpt bob notify=%r, expected never" % b["params"].get("notify"))
    check("orcpt" not in b["params"], "bob has an orcpt: %r" % b)
    rets = [(k, v) for k, v in qf.fields if "ret" in k]
    check(any(lib.unescape(v).lower() == b"hdrs" for k, v in rets),
          "RET=HDRS not stored (fields with 'ret': %r)" % rets)
    envids = [(k, v) for k, v in qf.fields if "envid" in k]
    check(any(lib.unescape(v) == b"QQ+2B123" for k, v in envids),
          "ENVID=QQ+2B123 not stored (fields with 'envid': %r)" % envids)


def t_smtputf8():
    c = fresh()
    c.expect("MAIL FROM:<j\u00f6rg@client.test> SMTPUTF8 BODY=8BITMIME", 250,
             "2.1.0", "UTF-8 sender with SMTPUTF8")
    c.expect("RCPT TO:<j\u00f6rg@example.org>", 250, "2.1.5",
             "UTF-8 recipient with SMTPUTF8")
    msg = ("From: j\u00f6rg@client.test\r\nSubject: gr\u00fc\u00dfe\r\n\r\n"
           "b\u00f6dy\r\n").encode()
    r = c.data(msg)
    qid = r.queue_id()
    check(qid, "SMTPUTF8 message not queued: %s" % r)
    c.quit()
    qf = lib.queue_file(env.spool, qid)
    qf.received_and_body(msg)
    check(qf.rcpt_addrs() == ["j\u00f6rg@example.org"],
          "stored rcpt %r" % qf.rcpt_addrs())
    check(qf.get("sender") == "j\u00f6rg@client.test".encode(),
          "stored sender %r" % qf.get("sender"))
    # Without SMTPUTF8.
    c = fresh()
    c.expect("MAIL FROM:<j\u00f6rg@client.test>", 553, "5.6.7",
             "UTF-8 sender without SMTPUTF8")
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<j\u00f6rg@example.org>", 553, "5.6.7",
             "UTF-8 recipient without SMTPUTF8")
    c.quit()


def t_postmaster():
    c = fresh()
    c.expect("MAIL FROM:<>", 250, "2.1.0", "null sender")
    c.expect("RCPT TO:<postmaster>", 250, "2.1.5")
    c.expect("RCPT TO:<Postmaster>", 250, "2.1.5",
             "<Postmaster> (case-insensitive per RFC 5321 4.5.1)")
    c.expect("RCPT TO:<postmaster@example.com>", 250, "2.1.5")
    msg = lib.message("pm", sender="")
    r = c.data(msg)
    qid = r.queue_id()
    check(qid, "not queued: %s" % r)
    c.quit()
    qf = lib.queue_file(env.spool, qid)
    check(qf.get("sender") == b"", "null sender stored as %r" % qf.get(
        "sender"))


def t_recipient_policy():
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<nobody@example.com>", 550, "5.1.1", "unknown user")
    c.expect("RCPT TO:<Alice@example.com>", 250, "2.1.5",
             "listed user, other case")
    c.expect("RCPT TO:<sales-eu@example.com>", 250, "2.1.5",
             "pattern sales-*")
    c.expect("RCPT TO:<anyone@example.org>", 250, "2.1.5",
             "domain without a list")
    c.expect("RCPT TO:<x@foreign.example>", 554, "5.7.1")
    c.quit()


def t_accepted_message_envelope_and_journal():
    c = fresh(ehlo=False)
    c.ehlo("helo.client.test")
    body = (b"Line one\r\n.leading dot\r\n..two dots\r\n.\tdot tab\r\n"
            b"8bit \xe9\xe8\xff\r\n" + b"y" * 998 + b"\r\n\r\n\r\nend\r\n")
    msg = lib.message("envelope", body=body)
    qid = c.send_message("s@client.test", ["alice@example.com",
                                            "bob@example.com"], msg,
                         " BODY=8BITMIME")
    c.quit()
    qf = lib.queue_file(env.spool, qid)
    rcv = qf.received_and_body(msg)
    check(qf.sender == "s@client.test", "sender %r" % qf.sender)
    check(qf.rcpt_addrs() == ["alice@example.com", "bob@example.com"],
          "rcpts %r" % qf.rcpt_addrs())
    check(qf.get("client-addr") == b"127.0.0.1",
          "client-addr %r" % qf.get("client-addr"))
    check(qf.get("helo") == b"helo.client.test", "helo %r" % qf.get("helo"))
    check(qf.get("listener") == ("127.0.0.1:%d" % env.port).encode(),
          "listener %r, expected 127.0.0.1:%d" % (qf.get("listener"),
                                                 env.port))
    check(qf.get("tls") is None, "tls field on a plaintext session")
    # RFC 5321 4.4: From (with the EHLO name and TCP info), By, and a date.
    flat = re.sub(rb"\r\n[ \t]+", b" ", rcv)
    check(re.match(rb"^Received: from helo\.client\.test\b", flat),
          "Received lacks 'from helo.client.test': %r" % rcv)
    check(b"127.0.0.1" in flat, "Received lacks client IP: %r" % rcv)
    check(b"by mx.test" in flat, "Received lacks 'by mx.test': %r" % rcv)
    check(re.search(rb";\s*\S.*\d{4} \d\d:\d\d:\d\d [+-]\d{4}", flat),
          "Received lacks '; date-time': %r" % rcv)
    j = env.journal()
    recs = [r for r in j.of("accepted") if r["fields"].get("id") == qid]
    check(len(recs) == 1, "journal accepted lines for %s: %d" % (qid,
                                                               len(recs)))
    f = recs[0]["fields"]
    check(f.get("size") == str(qf.size), "journal size=%s, queue size %d" % (
        f.get("size"), qf.size))
    check(f.get("sha256", "").lower() == qf.sha256,
          "journal sha256=%s, queue %s" % (f.get("sha256"), qf.sha256))
    check(hashlib.sha256(qf.content).hexdigest() == qf.sha256, "sha")
    check(f.get("from") in ("s@client.test", "<s@client.test>"),
          "journal from=%r" % f.get("from"))
    check("msgid" in f and "client.test" in f["msgid"],
          "journal msgid=%r" % f.get("msgid"))


def t_nul_in_data():
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    before = set(lib.list_dir(lib.queue_dir(env.spool)))
    r = c.data(b"Subject: nul\r\n\r\nbad \x00 byte\r\n")
    expect_reply(r, 554, "5.6.0", "NUL in data")
    # Session stays usable.
    qid = c.send_message("s@client.test", ["alice@example.com"],
                         lib.message("after nul"))
    c.quit()
    after = set(lib.list_dir(lib.queue_dir(env.spool)))
    check(after - before == {qid}, "queue changes: %s" % (after - before))


def t_bare_lf_rejected():
    for name, body in (("bare LF", b"one\ntwo\r\n"),
                       ("bare CR", b"one\rtwo\r\n")):
        c = fresh()
        c.mail_rcpt("s@client.test", ["alice@example.com"])
        before = set(lib.list_dir(lib.queue_dir(env.spool)))
        r = c.data(b"Subject: bare\r\n\r\n" + body)
        expect_reply(r, 554, "5.6.0", "%s in data (bare_newline reject)"
                     % name)
        c.send_message("s@client.test", ["alice@example.com"],
                       lib.message("after bare"))
        c.quit()
        after = set(lib.list_dir(lib.queue_dir(env.spool)))
        check(len(after - before) == 1, "queue changes: %s" % (
            after - before))


def t_max_received():
    def msg_with(n):
        hdrs = b"".join(b"Received: from h%d.example by h%d.example; "
                        b"Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i + 1)
                        for i in range(n))
        return hdrs + lib.message("hops")
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    r = c.data(msg_with(51))
    expect_reply(r, 554, "5.4.6", "message with 51 Received fields "
                 "(max_received 50)")
    m = msg_with(10)
    qid = c.send_message("s@client.test", ["alice@example.com"], m)
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(m)


def t_first_data_line_dot():
    # The 354 counts as the preceding CRLF: a leading "." on the very first
    # line is transparency too (RFC 5321 4.5.2).
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    c.send(b"..first line\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
    qid = c.read_reply().queue_id()
    check(qid, "not queued")
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(
        b".first line\r\nSubject: x\r\n\r\nbody\r\n")


def t_empty_message():
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    c.send(b".\r\n")
    r = c.read_reply()
    qid = r.queue_id()
    check(qid, "empty message: expected 250 queued, got %s" % r)
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(b"")


def t_data_split_byte_by_byte():
    import socket as _s
    import time as _t
    msg = (b"Subject: slow\r\n\r\n.dot\r\n..\r\nline\r\n\r\n"
           b"x.\r\n.\r\n")
    # msg ends with the terminator; everything before is content.
    content = b"Subject: slow\r\n\r\ndot\r\n.\r\nline\r\n\r\nx.\r\n"
    c = fresh()
    c.sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    for i in range(len(msg)):
        c.send(msg[i:i + 1])
        _t.sleep(0.002)
    qid = c.read_reply().queue_id()
    check(qid, "not queued")
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(content)


def t_ehlo_resets_transaction():
    c = fresh()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.ehlo()
    c.expect("RCPT TO:<alice@example.com>", 503, "5.5.1",
             "RCPT after a second EHLO (RFC 5321 4.1.4: EHLO resets)")
    c.quit()


def t_received_counting():
    def hdrs(name, n):
        return b"".join(b"%s: from h%d by h%d; Mon, 1 Jan 2024 00:00:00 "
                        b"+0000\r\n" % (name, i, i + 1) for i in range(n))
    cases = [
        ("50 Received fields (the limit)", hdrs(b"Received", 50) +
         lib.message("50"), True),
        ("51 lower-case received fields", hdrs(b"received", 51) +
         lib.message("51 lc"), False),
        ("51 X-Received fields", hdrs(b"X-Received", 51) +
         lib.message("x-received"), True),
        ("51 Received lines in the body", lib.message(
            "body", body=hdrs(b"Received", 51)), True),
    ]
    for what, m, ok in cases:
        c = fresh()
        c.mail_rcpt("s@client.test", ["alice@example.com"])
        r = c.data(m)
        if ok:
            check(r.queue_id(), "%s: expected 250 queued, got %s" % (what, r))
        else:
            expect_reply(r, 554, "5.4.6", what)
        c.quit()


def t_abort_mid_data_cleans_up():
    before = set(lib.list_dir(lib.queue_dir(env.spool)))
    for i in range(5):
        c = fresh()
        c.mail_rcpt("s@client.test", ["alice@example.com"])
        c.expect("DATA", 354)
        c.send(lib.message("aborted", body=lib.random_body(20000)))
        c.close()
    lib.wait_tmp_empty(env.spool, 10)
    check(set(lib.list_dir(lib.queue_dir(env.spool))) == before,
          "an aborted message reached queue/")
    check(env.daemon.alive(), "daemon died")


def t_long_data_line():
    # One 300 KiB line: refusing it (RFC 5321 4.5.3.1.6 allows that) or
    # storing it exactly are both fine; memory must stay bounded, no crash.
    m = b"Subject: long\r\n\r\n" + b"z" * (300 * 1024) + b"\r\n"
    c = fresh()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    r = c.data(m)
    if r.code == 250:
        lib.queue_file(env.spool, r.queue_id()).received_and_body(m)
    else:
        check(500 <= r.code < 600, "long line: %s" % r)
    c.quit()


def t_pipelined_many_rcpts():
    c = fresh()
    cmds = [b"MAIL FROM:<s@client.test>"]
    cmds += [b"RCPT TO:<p%d@example.org>" % i for i in range(8)]
    cmds += [b"RSET", b"NOOP"]
    c.send(b"".join(x + b"\r\n" for x in cmds))
    got = [c.read_reply() for _ in cmds]
    want = [250] + [250] * 5 + [452] * 3 + [250, 250]
    check([r.code for r in got] == want, "pipelined replies %s, expected "
          "codes %s" % (got, want))
    c.quit()


def t_pipelined_errors_stop_at_limit():
    c = fresh()
    c.send(b"".join(b"BOGUS%d\r\n" % i for i in range(10)) +
           b"MAIL FROM:<s@client.test>\r\n")
    rs = c.read_all_replies(5)
    codes = [r.code for r in rs]
    check(421 in codes, "no 421 after 10 pipelined bad commands: %s" % rs)
    check(codes[codes.index(421) + 1:] == [], "replies after 421: %s" % rs)
    check(250 not in codes, "the MAIL after the error limit was executed: "
          "%s" % rs)
    check(c.eof, "connection not closed after 421")
    c.close()


def main(runner):
    global env
    env = lib.Env("protocol", tls=True, plain_listener=True, limits=LIMITS)
    tests = [(n[2:], f) for n, f in sorted(globals().items())
             if n.startswith("t_") and callable(f)]
    for name, fn in tests:
        runner.run(name, fn)
    runner.run("tmp_empty", lib.wait_tmp_empty, env.spool)
    runner.run("daemon_alive", lambda: check(env.daemon.alive(),
                                             "daemon died"))


if __name__ == "__main__":
    lib.main_guard(main)
