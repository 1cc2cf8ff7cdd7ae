#!/usr/bin/python3
"""
test_smuggling.py - SMTP smuggling: only <CRLF>.<CRLF> ends DATA.

For each non-standard end-of-data vector embedded mid-body and followed by
a fake "MAIL FROM/RCPT TO/DATA" transaction, then the real CRLF.CRLF:
  - bare_newline normalize: exactly one message is queued, it holds the
    smuggled commands as content, and exactly one 250 "queued" comes back;
  - bare_newline reject: the message is refused (554 5.6.0) and nothing is
    queued, and the smuggled commands are not executed either.
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

VECTORS = [
    ("LF.LF", b"\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("LF.CR", b"\n.\r"),
]

SMUGGLED = (b"MAIL FROM:<evil@x>\r\n"
            b"RCPT TO:<alice@example.com>\r\n"
            b"DATA\r\n"
            b"From: <evil@x>\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"smuggled body\r\n")


def normalize(b):
    return re.sub(rb"\r\n|\r|\n", b"\r\n", b)


def session(env, vector):
    """Returns (replies after DATA's 354, queue names added, content sent)."""
    before = set(lib.list_dir(lib.queue_dir(env.spool)))
    c = env.client()
    c.start()
    c.mail_rcpt("real@client.test", ["bob@example.com"])
    c.expect("DATA", 354)
    head = (b"From: <real@client.test>\r\nSubject: real\r\n\r\n"
            b"real body")
    sent = head + vector + SMUGGLED
    # SMUGGLED ends in CRLF, so ".\r\n" completes the only real CRLF.CRLF.
    c.send(sent + b".\r\nQUIT\r\n")
    replies = c.read_all_replies(timeout=10)
    c.close()
    after = set(lib.list_dir(lib.queue_dir(env.spool)))
    return replies, sorted(after - before), sent


def check_normalize(env, name, vector):
    replies, new, sent = session(env, vector)
    queued = [r for r in replies if r.queue_id()]
    check(len(queued) == 1, "%s: expected exactly one '250 queued', got "
          "replies %s" % (name, replies))
    check(replies[0].queue_id() is not None,
          "%s: first reply after the data should be 250 queued: %s" % (
              name, replies))
    check(len(replies) == 2 and replies[1].code == 221,
          "%s: expected [250 queued, 221], got %s" % (name, replies))
    check(len(new) == 1, "%s: expected 1 new queue file, got %s" % (name,
                                                                   new))
    check(new[0] == queued[0].queue_id(), "%s: queued id %s but file %s" % (
        name, queued[0].queue_id(), new[0]))
    qf = lib.queue_file(env.spool, new[0])
    check(qf.rcpt_addrs() == ["bob@example.com"], "%s: rcpts %r (smuggled "
          "RCPT took effect?)" % (name, qf.rcpt_addrs()))
    check(qf.sender == "real@client.test", "%s: sender %r" % (name,
                                                             qf.sender))
    check(b"MAIL FROM:<evil@x>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
          in qf.content, "%s: smuggled commands not in the content" % name)
    stripped = qf.content.replace(b"\r\n", b"")
    check(b"\r" not in stripped and b"\n" not in stripped,
          "%s: bare CR or LF stored despite bare_newline normalize" % name)


def expected_stored(sent):
    """
    The decoder contract (include/smtp_proto.h): lines are CRLF-delimited
    only; a line starting with "." loses that dot; then with normalize each
    bare CR or LF becomes CRLF.
    """
    lines = sent.split(b"\r\n")
    lines = [l[1:] if l.startswith(b".") else l for l in lines]
    return normalize(b"\r\n".join(lines))


def check_normalize_exact(env, name, vector):
    replies, new, sent = session(env, vector)
    check(len(new) == 1, "%s: expected 1 new queue file, got %s" % (name,
                                                                   new))
    qf = lib.queue_file(env.spool, new[0])
    qf.received_and_body(expected_stored(sent))


def check_reject(env, name, vector):
    replies, new, sent = session(env, vector)
    check(not any(r.code == 250 for r in replies),
          "%s: a 250 came back with bare_newline reject: %s" % (name,
                                                               replies))
    check(replies and replies[0].code == 554 and replies[0].enh == "5.6.0",
          "%s: expected 554 5.6.0 after the data, got %s" % (name, replies))
    check(len(replies) == 2 and replies[1].code == 221,
          "%s: expected [554 5.6.0, 221], got %s" % (name, replies))
    check(new == [], "%s: queue files added: %s" % (name, new))


def main(runner):
    norm = lib.Env("smuggle-normalize", limits={"bare_newline": "normalize"})
    for name, v in VECTORS:
        runner.run("normalize_" + name, check_normalize, norm, name, v)
        runner.run("normalize_exact_" + name, check_normalize_exact, norm,
                   name, v)
    runner.run("normalize_tmp_empty", lib.wait_tmp_empty, norm.spool)
    rej = lib.Env("smuggle-reject", limits={"bare_newline": "reject"})
    for name, v in VECTORS:
        runner.run("reject_" + name, check_reject, rej, name, v)
    runner.run("reject_tmp_empty", lib.wait_tmp_empty, rej.spool)


if __name__ == "__main__":
    lib.main_guard(main)
