#!/usr/bin/python3
"""
test_verify.py - recipient verification by RCPT probe (issue 3).

example.net has no recipient list and verify_recipients legacy: at RCPT,
splitmxd probes the legacy target (an aiosmtpd peer that refuses
ghost@example.net with 550) before answering. example.org probes a
target whose port is closed.

Asserts:
  known_user_accepted   alice@example.net gets 250 and is delivered.
  unknown_user_refused  ghost@example.net gets 550 5.1.1 at RCPT, so the
                        backup path never accepts mail that would bounce;
                        nothing is queued for it.
  answer_is_cached      a second RCPT for ghost in a new session is refused
                        without a new probe (the peer saw one RCPT for it).
  probe_is_rewritten    the probe asks for the address the target will
                        receive (the target's rewrite applies).
  unreachable_default_accepts  probe target down, verify_tempfail no
                        (default): 250.
  unreachable_tempfail  a second daemon with verify_tempfail yes: 450 4.1.1.
  pipelined_order       MAIL + three RCPTs (known, unknown, known) + DATA in
                        one write: replies come back in order (250, 550,
                        250, 354) even though RCPTs wait for probes.
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


def conf(tempfail):
    return "\n".join([
        peers.queue_conf(),
        "target legacy { type smtp; host 127.0.0.1:%d; tls none; "
        "rewrite @example.net @legacy.example.net }" % S["legacy"].port,
        "target down { type smtp; host 127.0.0.1:%d; tls none; "
        "timeout_connect 2s }" % S["closed_port"],
        "verify_cache 1h",
        "verify_tempfail %s" % ("yes" if tempfail else "no"),
        "domain example.net { targets legacy; verify_recipients legacy }",
        "domain example.org { targets legacy; verify_recipients down }",
    ])


def setup():
    S["legacy"] = peers.SmtpPeer("legacy", rules=[
        {"stage": "rcpt", "match": "ghost@legacy.example.net",
         "reply": "550 5.1.1 <ghost@legacy.example.net>: no such user"},
    ]).start()
    S["closed_port"] = lib.free_port()
    S["env"] = lib.Env("verify", domains=[], extra=conf(False))


def rcpt_reply(port, rcpt):
    c = lib.Client(port)
    c.start("client.test")
    lib.expect_reply(c.cmd("MAIL FROM:<s@client.test>"), 250)
    r = c.cmd("RCPT TO:<%s>" % rcpt)
    c.close()
    return r


def probe_count(addr):
    """How many RCPT commands for addr the legacy peer has seen."""
    return sum(1 for e in S["legacy"].events()
               if e.get("kind") == "rcpt" and e.get("addr") == addr)


def test_known():
    env = S["env"]
    r = rcpt_reply(env.port, "alice@example.net")
    lib.expect_reply(r, 250, "2.1.5", "known user")
    qid = peers.smtp_send(env.port, "s@client.test", ["alice@example.net"],
                          peers.test_message("verified", rcpt="alice@example.net"))
    peers.wait_journal(env.spool, 15, "delivered to legacy",
                       kind="delivered", qid=qid, target="legacy")


def test_unknown():
    env = S["env"]
    before = len(lib.list_dir(lib.queue_dir(env.spool)))
    r = rcpt_reply(env.port, "ghost@example.net")
    lib.expect_reply(r, 550, "5.1.1", "unknown user")
    check(len(lib.list_dir(lib.queue_dir(env.spool))) == before,
          "something was queued for an unknown user")


def test_cached():
    env = S["env"]
    msgs_before = probe_count("ghost@legacy.example.net")
    r = rcpt_reply(env.port, "GHOST@example.net")
    lib.expect_reply(r, 550, "5.1.1", "cached unknown user")
    time.sleep(0.3)
    after = probe_count("ghost@legacy.example.net")
    check(after == msgs_before, "a cached answer probed again (%d -> %d)" %
          (msgs_before, after))


def test_rewritten():
    check(probe_count("ghost@legacy.example.net") >= 1,
          "the probe did not use the rewritten address")
    check(probe_count("ghost@example.net") == 0,
          "the probe used the address before the target's rewrite")


def test_unreachable_accepts():
    r = rcpt_reply(S["env"].port, "anyone@example.org")
    lib.expect_reply(r, 250, "2.1.5", "probe target down, default accepts")


def test_unreachable_tempfail():
    env = lib.Env("verify-tf", domains=[], extra=conf(True))
    try:
        r = rcpt_reply(env.port, "anyone@example.org")
        lib.expect_reply(r, 450, "4.1.1", "probe target down, tempfail")
    finally:
        env.daemon.stop()


def test_pipelined():
    env = S["env"]
    c = lib.Client(env.port)
    c.start("client.test")
    c.send(b"MAIL FROM:<s@client.test>\r\nRCPT TO:<bob@example.net>\r\n"
           b"RCPT TO:<ghost@example.net>\r\nRCPT TO:<carol@example.net>\r\n"
           b"DATA\r\n")
    codes = [c.read_reply().code for _ in range(5)]
    check(codes == [250, 250, 550, 250, 354],
          "pipelined replies out of order: %r" % codes)
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\n")
    lib.expect_reply(c.read_reply(), 250, "2.0.0", "pipelined message")
    c.close()


def main(runner):
    if not runner.run("setup", setup):
        return
    runner.run("known_user_accepted", test_known)
    runner.run("unknown_user_refused", test_unknown)
    runner.run("answer_is_cached", test_cached)
    runner.run("probe_is_rewritten", test_rewritten)
    runner.run("unreachable_default_accepts", test_unreachable_accepts)
    runner.run("unreachable_tempfail", test_unreachable_tempfail)
    runner.run("pipelined_order", test_pipelined)
    runner.run("stop", S["env"].daemon.stop)
    S["legacy"].stop()


if __name__ == "__main__":
    lib.main_guard(main)
