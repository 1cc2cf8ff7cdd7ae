#!/usr/bin/python3
"""
test_dsn_outcome.py - what the sender is told is decided per recipient,
not per copy (issue 8, item 3).

Two aiosmtpd targets, legacy and cloud; example.com is dual-delivered; a
"bounces" aiosmtpd peer receives the DSNs (default_target). Scripted
replies: the cloud refuses pat@ and quinn@ for good (550), legacy refuses
quinn@ too; the cloud defers rita@ and sam@ (451) forever, legacy defers
sam@ too. delay_warning 2s, lifetime 6s.

Asserts:
  failed_where_delivered  pat@: 550 at the cloud, delivered at legacy: no
                          DSN reaches the sender; the journal has a
                          "partial" record (target=cloud delivered=legacy)
                          written with "removed", and no "bounced"; the
                          log has the warning.
  failed_everywhere       quinn@: 550 at both: a failure DSN naming quinn@
                          reaches the sender; "bounced" journaled.
  deferred_where_delivered rita@: delivered at legacy, deferred at the
                          cloud until the lifetime ends: no delay notice
                          and no bounce; "partial" once the cloud expires.
  deferred_everywhere     sam@: deferred at both: a delay notice, then a
                          failure DSN once the lifetime ends.
"""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

S = {}
SENDER = "sender@sender.test"


def refuse(addr, reply):
    return {"stage": "rcpt", "match": addr, "reply": reply}


def setup():
    S["legacy"] = peers.SmtpPeer("legacy", rules=[
        refuse("quinn@example.com", "550 5.1.1 quinn unknown at legacy"),
        refuse("sam@example.com", "451 4.3.0 legacy busy for sam"),
    ]).start()
    S["cloud"] = peers.SmtpPeer("cloud", rules=[
        refuse("pat@example.com", "550 5.1.1 pat not provisioned yet"),
        refuse("quinn@example.com", "550 5.1.1 quinn unknown at cloud"),
        refuse("rita@example.com", "451 4.7.0 throttled"),
        refuse("sam@example.com", "451 4.7.0 throttled"),
    ]).start()
    S["bounces"] = peers.SmtpPeer("bounces").start()
    extra = "\n".join([
        "queue { retry_initial 1s; retry_max 1s; lifetime 6s; "
        "delay_warning 2s }",
        "target legacy { type smtp; host 127.0.0.1:%d; tls none }" %
        S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls none }" %
        S["cloud"].port,
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        S["bounces"].port,
        "default_target bounces",
        "domain example.com { targets legacy cloud }",
    ])
    S["env"] = lib.Env("dsnoutcome", domains=[], extra=extra)


def dsns_naming(addr):
    """DSNs at the sender's target that report addr."""
    return [m for m in S["bounces"].messages()
            if m.get("mail_from") in ("", "<>") and
            addr.encode() in m["data"]]


def send(rcpt, marker):
    env = S["env"]
    return peers.smtp_send(env.port, SENDER, [rcpt], peers.test_message(
        "outcome " + marker, marker=marker, sender=SENDER, rcpt=rcpt))


def settle():
    """Every message (and any DSN it made) has left the queue, and the
    DSNs queued meanwhile have reached the bounces peer."""
    peers.wait_queue_empty(S["env"].spool, 30)


def test_failed_where_delivered():
    env = S["env"]
    qid = send("pat@example.com", "patmark")
    settle()
    check(peers.delivery_records(env.spool, "delivered", qid=qid,
                                 target="legacy"),
          "legacy did not deliver pat@:\n" +
          peers.journal_dump(env.spool, qid))
    check(peers.delivery_records(env.spool, "failed", qid=qid,
                                 target="cloud"),
          "no failed record at the cloud:\n" +
          peers.journal_dump(env.spool, qid))
    p = peers.delivery_records(env.spool, "partial", qid=qid)
    check(len(p) == 1 and p[0]["fields"].get("target") == "cloud" and
          p[0]["fields"].get("delivered") == "legacy",
          "want one partial record target=cloud delivered=legacy: %r" % p)
    check(not peers.delivery_records(env.spool, "bounced", qid=qid),
          "a recipient that legacy delivered was bounced")
    check(not dsns_naming("pat@example.com"),
          "the sender got a DSN for pat@, who has the message")
    check("but target=legacy has it: no bounce" in env.daemon.log_text(),
          "no warning in the log")


def test_failed_everywhere():
    env = S["env"]
    qid = send("quinn@example.com", "quinnmark")
    settle()
    check(peers.delivery_records(env.spool, "bounced", qid=qid),
          "no bounced record:\n" + peers.journal_dump(env.spool, qid))
    check(not peers.delivery_records(env.spool, "partial", qid=qid),
          "a partial record for a recipient nobody delivered")
    d = dsns_naming("quinn@example.com")
    check(len(d) == 1, "want 1 DSN for quinn@, got %d" % len(d))
    check(b"Action: failed" in d[0]["data"], "the DSN is not a failure")


def test_deferred_where_delivered():
    env = S["env"]
    qid = send("rita@example.com", "ritamark")
    settle()
    check(not dsns_naming("rita@example.com"),
          "the sender was told about rita@, whom legacy delivered")
    check(not peers.delivery_records(env.spool, "warned", qid=qid),
          "a delay notice was journaled for rita@")
    p = peers.delivery_records(env.spool, "partial", qid=qid)
    check(len(p) == 1 and p[0]["fields"].get("target") == "cloud",
          "want one partial record at the cloud: %r\n%s" % (
              p, peers.journal_dump(env.spool, qid)))


def test_deferred_everywhere():
    env = S["env"]
    qid = send("sam@example.com", "sammark")
    settle()
    check(peers.delivery_records(env.spool, "warned", qid=qid),
          "no delay notice for sam@:\n" + peers.journal_dump(env.spool, qid))
    check(peers.delivery_records(env.spool, "bounced", qid=qid),
          "no bounce for sam@:\n" + peers.journal_dump(env.spool, qid))
    d = dsns_naming("sam@example.com")
    actions = sorted(b"Action: delayed" in m["data"] for m in d)
    check(actions == [False, True],
          "want a delay notice and a failure DSN for sam@, got %d DSNs" %
          len(d))


def main(runner):
    if not runner.run("setup", setup):
        return
    runner.run("failed_where_delivered", test_failed_where_delivered)
    runner.run("failed_everywhere", test_failed_everywhere)
    runner.run("deferred_where_delivered", test_deferred_where_delivered)
    runner.run("deferred_everywhere", test_deferred_everywhere)
    runner.run("stop", S["env"].daemon.stop)
    for k in ("legacy", "cloud", "bounces"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
