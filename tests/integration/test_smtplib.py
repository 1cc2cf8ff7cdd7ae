#!/usr/bin/python3
"""
test_smtplib.py - Python's smtplib as a real client: STARTTLS with an
openssl-made certificate, byte-exact content, several recipients, and
PIPELINING from a raw socket (MAIL+RCPT+RCPT+DATA in one write).
"""

import os
import re
import smtplib
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

env = None


def smtp():
    s = smtplib.SMTP(lib.HOST, env.port, local_hostname="smtplib.client.test",
                     timeout=20)
    return s


def t_starttls_send():
    s = smtp()
    try:
        code, resp = s.ehlo()
        check(code == 250 and s.has_extn("starttls"),
              "EHLO before TLS: %d %r" % (code, resp))
        code, resp = s.starttls(context=lib.client_tls_context(env.cert))
        check(code == 220 and resp.startswith(b"2.0.0 Ready to start TLS"),
              "STARTTLS: expected '220 2.0.0 Ready to start TLS', got %d %r"
              % (code, resp))
        code, resp = s.ehlo()
        check(code == 250, "EHLO after TLS: %d %r" % (code, resp))
        check(not s.has_extn("starttls"), "STARTTLS still advertised after "
              "TLS: %r" % resp)
        msg = lib.message("over tls", body=b"secret body\r\n.dot line\r\n")
        refused = s.sendmail("tls@client.test", ["alice@example.com"], msg)
        check(not refused, "refused: %r" % refused)
    finally:
        s.close()
    # smtplib does not return the DATA reply; find the message by content.
    q = env.queue()
    hits = [qf for qf in q.values() if qf.content.endswith(msg)]
    check(len(hits) == 1, "expected 1 queue file with the TLS message, "
          "found %d" % len(hits))
    qf = hits[0]
    check(not qf.intact_problems(), "not intact: %s" % qf.intact_problems())
    rcv = qf.received_and_body(msg)
    flat = re.sub(rb"\r\n[ \t]+", b" ", rcv)
    check(re.search(rb"TLS|ESMTPS", flat),
          "Received header does not mention TLS: %r" % rcv)
    tls = qf.get("tls")
    check(tls is not None and b"TLS" in tls,
          "queue file lacks a 'tls' line: %r" % qf.fields)


def t_byte_exact_multiple_rcpts():
    body = b"".join([
        b"plain line\r\n",
        b".starts with a dot\r\n",
        b"..two dots\r\n",
        b".\r\n".join([b"a", b"b"]),          # "a.\r\nb": no lone dot line
        b"\r\n",
        b"trailing spaces   \r\n",
        b"\ttab line\r\n",
        b"high bytes \xc3\xa9\xff\x80\r\n",
        b"=?utf-8?q?x?=\r\n",
        b"\r\n",
        b"last\r\n",
    ])
    msg = lib.message("exact", body=body,
                      extra_headers=b"X-Folded: a\r\n\tb\r\n  c\r\n")
    s = smtp()
    try:
        s.ehlo()
        refused = s.sendmail("multi@client.test",
                             ["alice@example.com", "bob@example.com",
                              "nobody@example.com", "carol@example.org"],
                             msg, mail_options=["BODY=8BITMIME"])
        check(set(refused) == {"nobody@example.com"},
              "expected only nobody@example.com refused, got %r" % refused)
        check(refused["nobody@example.com"][0] == 550,
              "nobody refused with %r" % (refused["nobody@example.com"],))
    finally:
        s.close()
    hits = [qf for qf in env.queue().values() if qf.content.endswith(msg)]
    check(len(hits) == 1, "expected 1 queue file, found %d" % len(hits))
    qf = hits[0]
    check(not qf.intact_problems(), "; ".join(qf.intact_problems()))
    qf.received_and_body(msg)
    check(qf.rcpt_addrs() == ["alice@example.com", "bob@example.com",
                              "carol@example.org"],
          "rcpts %r" % qf.rcpt_addrs())
    check(qf.sender == "multi@client.test", "sender %r" % qf.sender)


def t_pipelining_raw():
    c = env.client()
    ehlo = c.start()
    check("PIPELINING" in [l.split(" ")[0] for l in ehlo.lines[1:]],
          "no PIPELINING: %s" % ehlo)
    c.send(b"MAIL FROM:<pipe@client.test>\r\n"
           b"RCPT TO:<alice@example.com>\r\n"
           b"RCPT TO:<bob@example.com>\r\n"
           b"DATA\r\n")
    got = [c.read_reply() for _ in range(4)]
    want = [(250, "2.1.0"), (250, "2.1.5"), (250, "2.1.5"), (354, None)]
    for (code, enh), r in zip(want, got):
        check(r.code == code and (enh is None or r.enh == enh),
              "pipelined replies: expected %s, got %s" % (want, got))
    msg = lib.message("pipelined")
    c.send(lib.dot_stuff(msg) + b".\r\nQUIT\r\n")
    r = c.read_reply(30)
    qid = r.queue_id()
    check(qid, "pipelined DATA: %s" % r)
    expect_reply(c.read_reply(), 221, None, "QUIT pipelined after the dot")
    c.wait_closed(5)
    c.close()
    qf = lib.queue_file(env.spool, qid)
    qf.received_and_body(msg)
    check(qf.rcpt_addrs() == ["alice@example.com", "bob@example.com"],
          "rcpts %r" % qf.rcpt_addrs())


def t_pipelining_with_refusals():
    # A refused RCPT in the middle of a pipelined group keeps the order.
    c = env.client()
    c.start()
    c.send(b"MAIL FROM:<pipe@client.test>\r\n"
           b"RCPT TO:<x@foreign.example>\r\n"
           b"RCPT TO:<bob@example.com>\r\n"
           b"DATA\r\n")
    got = [c.read_reply() for _ in range(4)]
    codes = [(r.code, r.enh) for r in got]
    check(codes == [(250, "2.1.0"), (554, "5.7.1"), (250, "2.1.5"),
                    (354, None)], "pipelined replies: %s" % got)
    msg = lib.message("pipelined 2")
    c.send(lib.dot_stuff(msg) + b".\r\n")
    qid = c.read_reply(30).queue_id()
    check(qid, "not queued")
    c.quit()
    check(lib.queue_file(env.spool, qid).rcpt_addrs() == ["bob@example.com"],
          "rcpts")


def t_smtplib_many_messages_one_session():
    s = smtp()
    msgs = []
    try:
        s.ehlo()
        for i in range(20):
            m = lib.message("seq %d" % i, body=lib.random_body(2000))
            msgs.append(m)
            refused = s.sendmail("seq@client.test", ["bob@example.com"], m)
            check(not refused, "refused %r" % refused)
        s.quit()
    finally:
        s.close()
    contents = [qf.content for qf in env.queue().values()]
    for i, m in enumerate(msgs):
        n = sum(1 for c in contents if c.endswith(m))
        check(n == 1, "message %d found %d times in queue/" % (i, n))


def main(runner):
    global env
    env = lib.Env("smtplib", tls=True, limits={"message_size": "10M"})
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)
    runner.run("tmp_empty", lib.wait_tmp_empty, env.spool)


if __name__ == "__main__":
    lib.main_guard(main)
