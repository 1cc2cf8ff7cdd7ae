#!/usr/bin/python3
"""
test_duplicates.py - duplicate and loop suppression (issue 4).

Two aiosmtpd targets, legacy and cloud; example.com is dual-delivered.
Asserts:
  two_mx_paths        the same message (same Message-ID) accepted twice
                      within the window, as through two MX paths: each
                      target receives it once per recipient; the second
                      copy is journaled "duplicate ... first=QID1" and
                      leaves the queue without a DSN.
  retry_after_lost_250  a sender that loses our 250 (connection cut right
                      after the final dot) and sends again: delivered once.
  no_message_id       two copies without Message-ID but identical From,
                      Date, Subject, To and body are duplicates; a changed
                      body is not.
  returning_loop      a copy that comes back carrying our X-Splitmx-Trace
                      (as the cloud would forward it) to a recipient every
                      target already had: not delivered again, journaled
                      "looped", never bounced.
  returning_new_rcpt  the same returning copy also addressed to a recipient
                      that was not in the first delivery: only that one is
                      delivered.
  trace_loop_rewritten a delivered copy that comes back with a new
                      Message-ID, a changed Subject, an added header and
                      body, but our trace naming the first queue id: not
                      delivered again to a (recipient, target) that id
                      claimed (duplicate loop=trace); a new recipient still
                      goes; a copy every target had is "looped", not bounced.
  trace_unknown_node  the same with the trace's node changed to one we do
                      not know: delivered.
  survives_restart    after a restart of splitmxd the index still knows
                      the first message: a third copy is a duplicate.
  plain_dup_not_loop  a second copy from an ordinary client is a duplicate
                      but not a loop (no "looped" record).
  trusted_host_loop   (second daemon, trusted_hosts 127.0.0.1) the same
                      second copy, now from a target's outbound host, is
                      returning mail: journaled "looped" and dropped.
  twenty_at_once      20 sessions submit the same message at the same
                      moment, with and without a Message-ID: each target
                      gets one copy per recipient (claims before delivery,
                      not records after it).
  released_on_failure a copy refused for good (550) by one target gives up
                      its claim there: a later copy reaches that target,
                      while the target that had it gets no second one.
"""

import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

S = {}
SENDER = "sender@sender.test"


def setup():
    S["legacy"] = peers.SmtpPeer("legacy").start()
    # kate@ is refused once, for good, by the cloud (released_on_failure).
    S["cloud"] = peers.SmtpPeer("cloud", rules=[
        {"stage": "rcpt", "match": "kate@example.com",
         "reply": "550 5.1.1 no such user here yet", "times": 1}]).start()
    S["bounces"] = peers.SmtpPeer("bounces").start()
    extra = "\n".join([
        peers.queue_conf(),
        "target legacy { type smtp; host 127.0.0.1:%d; tls none }" %
        S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls none }" %
        S["cloud"].port,
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        S["bounces"].port,
        "default_target bounces",
        "domain example.com { targets legacy cloud }",
    ])
    S["env"] = lib.Env("dups", domains=[], extra=extra)


def count(peer, marker, rcpt=None):
    n = 0
    for m in peer.messages():
        if marker.encode() in m["data"] and (
                rcpt is None or rcpt in m.get("rcpts", [])):
            n += 1
    return n


def wait_gone(qid):
    peers.wait_queue_gone(S["env"].spool, qid, 20)


def msg(marker, with_id=True, body=None):
    content = peers.test_message("dup " + marker, marker=marker,
                                 sender=SENDER)
    if not with_id:
        content = b"".join(l for l in content.splitlines(True)
                           if not l.lower().startswith(b"message-id:"))
    if body is not None:
        head, _, _ = content.partition(b"\r\n\r\n")
        content = head + b"\r\n\r\n" + body
    return content


def test_two_paths():
    env = S["env"]
    m = msg("twopaths")
    q1 = peers.smtp_send(env.port, SENDER, ["alice@example.com"], m)
    wait_gone(q1)
    q2 = peers.smtp_send(env.port, SENDER, ["alice@example.com"], m)
    wait_gone(q2)
    check(count(S["legacy"], "twopaths") == 1, "legacy got %d copies" %
          count(S["legacy"], "twopaths"))
    check(count(S["cloud"], "twopaths") == 1, "cloud got %d copies" %
          count(S["cloud"], "twopaths"))
    d = peers.delivery_records(env.spool, kind="duplicate", qid=q2)
    check(len(d) == 2, "expected 2 duplicate records, got %r" % d)
    check(all(r["fields"].get("first") == q1 for r in d),
          "duplicate records do not name the first id: %r" % d)
    check(not peers.delivery_records(env.spool, kind="bounced", qid=q2),
          "a duplicate was bounced")


def test_lost_250():
    env = S["env"]
    m = msg("lost250")
    c = lib.Client(env.port)
    c.start("client.test")
    lib.expect_reply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
    lib.expect_reply(c.cmd("RCPT TO:<bob@example.com>"), 250)
    lib.expect_reply(c.cmd("DATA"), 354)
    c.send(lib.dot_stuff(m) + b".\r\n")
    c.sock.shutdown(socket.SHUT_RDWR)   # never reads the 250
    c.close()
    time.sleep(1.0)
    q2 = peers.smtp_send(env.port, SENDER, ["bob@example.com"], m)
    wait_gone(q2)
    time.sleep(0.5)
    check(count(S["legacy"], "lost250") == 1 and
          count(S["cloud"], "lost250") == 1,
          "copies: legacy %d cloud %d" % (count(S["legacy"], "lost250"),
                                          count(S["cloud"], "lost250")))


def test_no_message_id():
    env = S["env"]
    a = msg("noid", with_id=False)
    q1 = peers.smtp_send(env.port, SENDER, ["carol@example.com"], a)
    q2 = peers.smtp_send(env.port, SENDER, ["carol@example.com"], a)
    b = msg("noid", with_id=False, body=b"another body noid\r\n")
    q3 = peers.smtp_send(env.port, SENDER, ["carol@example.com"], b)
    for q in (q1, q2, q3):
        wait_gone(q)
    check(count(S["cloud"], "noid") == 2,
          "cloud got %d copies (want 2: first and changed body)" %
          count(S["cloud"], "noid"))


def test_returning():
    env = S["env"]
    m = msg("returnloop7")
    q1 = peers.smtp_send(env.port, SENDER, ["dave@example.com"], m)
    wait_gone(q1)
    got = [x for x in S["cloud"].messages() if b"returnloop7" in x["data"]]
    check(len(got) == 1, "cloud did not get the first copy")
    back = got[0]["data"]
    check(b"X-Splitmx-Trace:" in back, "no trace header on the copy")
    S["back"] = back
    q2 = peers.smtp_send(env.port, SENDER, ["dave@example.com"], back)
    wait_gone(q2)
    check(count(S["cloud"], "returnloop7") == 1 and
          count(S["legacy"], "returnloop7") == 1,
          "the returning copy was delivered again")
    check(peers.delivery_records(env.spool, kind="looped", qid=q2),
          "no looped record:\n" + peers.journal_dump(env.spool, q2))
    check(not peers.delivery_records(env.spool, kind="bounced", qid=q2),
          "a loop was bounced")


def test_returning_new_rcpt():
    env = S["env"]
    q = peers.smtp_send(env.port, SENDER, ["dave@example.com",
                                           "erin@example.com"], S["back"])
    wait_gone(q)
    check(count(S["cloud"], "returnloop7", "erin@example.com") == 1,
          "erin did not get the returning copy")
    check(count(S["cloud"], "returnloop7", "dave@example.com") == 1,
          "dave got the returning copy again")


def rewrite(content, new_id, extra_header):
    """What a gateway or journaling system does: a new Message-ID, an
    added header, a changed Subject."""
    head, _, body = content.partition(b"\r\n\r\n")
    out = []
    for line in head.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"message-id:"):
            line = b"Message-ID: " + new_id
        elif low.startswith(b"subject:"):
            line = line + b" [journaled]"
        out.append(line)
    return (extra_header + b"\r\n" + b"\r\n".join(out) + b"\r\n\r\n" +
            body + b"journal footer\r\n")


def test_trace_loop():
    env = S["env"]
    m = msg("traceloop3")
    q1 = peers.smtp_send(env.port, SENDER, ["lena@example.com"], m)
    wait_gone(q1)
    got = [x for x in S["cloud"].messages() if b"traceloop3" in x["data"]]
    check(len(got) == 1, "cloud did not get the first copy")
    back = rewrite(got[0]["data"], b"<rewritten.1@gateway.test>",
                   b"X-Journal: archived")
    check(b"id=" + q1.encode() in back, "the copy does not carry q1's trace")
    q2 = peers.smtp_send(env.port, SENDER, ["lena@example.com",
                                            "mona@example.com"], back)
    wait_gone(q2)
    for name in ("legacy", "cloud"):
        n = count(S[name], "traceloop3", "lena@example.com")
        check(n == 1, "%s got %d copies for lena (want 1): the trace "
              "did not stop the rewritten copy" % (name, n))
        n = count(S[name], "traceloop3", "mona@example.com")
        check(n == 1, "%s got %d copies for mona, a new recipient "
              "(want 1)" % (name, n))
    d = peers.delivery_records(env.spool, kind="duplicate", qid=q2)
    check(len(d) == 2 and all(r["fields"].get("first") == q1 and
                              r["fields"].get("loop") == "trace"
                              for r in d),
          "want 2 duplicate records first=%s loop=trace: %r" % (q1, d))
    # Every target already had lena: a copy for her alone is dropped.
    back2 = rewrite(got[0]["data"], b"<rewritten.2@gateway.test>",
                    b"X-Journal: again")
    q3 = peers.smtp_send(env.port, SENDER, ["lena@example.com"], back2)
    wait_gone(q3)
    check(count(S["cloud"], "traceloop3", "lena@example.com") == 1,
          "the second rewritten copy reached the cloud")
    check(peers.delivery_records(env.spool, kind="looped", qid=q3),
          "no looped record:\n" + peers.journal_dump(env.spool, q3))
    check(not peers.delivery_records(env.spool, kind="bounced", qid=q3),
          "a loop was bounced")


def test_trace_unknown_node():
    """A trace naming a node that is neither us nor a known peer proves
    nothing: the rewritten copy is delivered."""
    env = S["env"]
    m = msg("tracenode4")
    q1 = peers.smtp_send(env.port, SENDER, ["nina@example.com"], m)
    wait_gone(q1)
    got = [x for x in S["cloud"].messages() if b"tracenode4" in x["data"]]
    check(len(got) == 1, "cloud did not get the first copy")
    data = got[0]["data"].replace(b"node=mx.test;", b"node=elsewhere.test;")
    check(b"node=elsewhere.test; id=" + q1.encode() in data,
          "trace not rewritten: %r" % data[:400])
    back = rewrite(data, b"<rewritten.3@gateway.test>", b"X-Journal: x")
    q2 = peers.smtp_send(env.port, SENDER, ["nina@example.com"], back)
    wait_gone(q2)
    check(count(S["cloud"], "tracenode4", "nina@example.com") == 2,
          "a trace from an unknown node suppressed a delivery")


def test_restart():
    env = S["env"]
    env.daemon.stop()
    env.restart()
    q = peers.smtp_send(env.port, SENDER, ["alice@example.com"],
                        msg("twopaths"))
    wait_gone(q)
    check(count(S["cloud"], "twopaths") == 1,
          "after restart the index forgot the first message")


def test_plain_not_loop():
    env = S["env"]
    m = msg("plainnoloop")
    q1 = peers.smtp_send(env.port, SENDER, ["frank@example.com"], m)
    wait_gone(q1)
    q2 = peers.smtp_send(env.port, SENDER, ["frank@example.com"], m)
    wait_gone(q2)
    check(peers.delivery_records(env.spool, kind="duplicate", qid=q2),
          "second copy not a duplicate")
    check(not peers.delivery_records(env.spool, kind="looped", qid=q2),
          "an ordinary duplicate was called a loop")


def test_trusted_loop():
    extra = "\n".join([
        peers.queue_conf(),
        "target cloud { type smtp; host 127.0.0.1:%d; tls none }" %
        S["cloud"].port,
        "domain example.com { targets cloud }",
        "trusted_hosts 127.0.0.1",
    ])
    env = lib.Env("dups-trusted", domains=[], extra=extra)
    try:
        m = msg("trustedloop")
        q1 = peers.smtp_send(env.port, SENDER, ["gina@example.com"], m)
        peers.wait_queue_gone(env.spool, q1, 20)
        q2 = peers.smtp_send(env.port, SENDER, ["gina@example.com"], m)
        peers.wait_queue_gone(env.spool, q2, 20)
        check(peers.delivery_records(env.spool, kind="looped", qid=q2),
              "mail from a trusted host was not treated as returning:\n" +
              peers.journal_dump(env.spool, q2))
        check(count(S["cloud"], "trustedloop") == 1,
              "the returning copy was delivered again")
    finally:
        env.daemon.stop()


def test_twenty_at_once():
    env = S["env"]
    rcpts = ["helen@example.com", "ivan@example.com"]
    for marker, with_id in (("twentyid", True), ("twentynoid", False)):
        m = msg(marker, with_id=with_id)
        qids, errors = [], []
        start = threading.Barrier(20)

        def send():
            try:
                start.wait(10)
                qids.append(peers.smtp_send(env.port, SENDER, rcpts, m))
            except Exception as e:  # reported below, not lost
                errors.append(repr(e))

        threads = [threading.Thread(target=send) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check(not errors and len(qids) == 20,
              "%s: %d accepted, errors %r" % (marker, len(qids), errors))
        for q in qids:
            wait_gone(q)
        for name in ("legacy", "cloud"):
            for r in rcpts:
                n = count(S[name], marker, r)
                check(n == 1, "%s: %s got %d copies for %s (want 1)" %
                      (marker, name, n, r))
        dups = sum(len(peers.delivery_records(env.spool, kind="duplicate",
                                              qid=q)) for q in qids)
        check(dups == 19 * 2 * len(rcpts),
              "%s: %d duplicate records, want %d" % (marker, dups,
                                                     19 * 2 * len(rcpts)))


def test_released_on_failure():
    env = S["env"]
    m = msg("releasekate")
    q1 = peers.smtp_send(env.port, SENDER, ["kate@example.com"], m)
    wait_gone(q1)
    check(count(S["legacy"], "releasekate") == 1 and
          count(S["cloud"], "releasekate") == 0,
          "first copy: legacy %d cloud %d (want 1, 0)" % (
              count(S["legacy"], "releasekate"),
              count(S["cloud"], "releasekate")))
    q2 = peers.smtp_send(env.port, SENDER, ["kate@example.com"], m)
    wait_gone(q2)
    check(count(S["cloud"], "releasekate") == 1,
          "the cloud never got the second copy: the failed claim held")
    check(count(S["legacy"], "releasekate") == 1,
          "legacy got the message twice")
    d = peers.delivery_records(env.spool, kind="duplicate", qid=q2)
    check(len(d) == 1 and d[0]["fields"].get("target") == "legacy",
          "second copy: want one duplicate record, at legacy: %r" % d)


def main(runner):
    if not runner.run("setup", setup):
        return
    runner.run("two_mx_paths", test_two_paths)
    runner.run("retry_after_lost_250", test_lost_250)
    runner.run("no_message_id", test_no_message_id)
    runner.run("returning_loop", test_returning)
    runner.run("returning_new_rcpt", test_returning_new_rcpt)
    runner.run("trace_loop_rewritten", test_trace_loop)
    runner.run("trace_unknown_node", test_trace_unknown_node)
    runner.run("survives_restart", test_restart)
    runner.run("plain_dup_not_loop", test_plain_not_loop)
    runner.run("trusted_host_loop", test_trusted_loop)
    runner.run("twenty_at_once", test_twenty_at_once)
    runner.run("released_on_failure", test_released_on_failure)
    runner.run("stop", S["env"].daemon.stop)
    for k in ("legacy", "cloud", "bounces"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
