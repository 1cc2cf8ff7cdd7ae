#!/usr/bin/python3
"""
test_delivery_limits.py - per-target rate and messages per connection
(issue 3).

Asserts:
  rate_limit          target "slow" with rate 120 (one message start per
                      0.5 s): 5 messages queued at once reach it spread
                      over at least 1.6 s (4 gaps of 0.5 s, minus slack),
                      while target "fast" (no rate) gets its 5 copies of
                      the same messages well before the slow ones finish.
  per_connection      target "fast" has messages_per_connection 2: its 5
                      messages arrive over at least 3 connections (EHLOs).
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


def setup():
    S["slow"] = peers.SmtpPeer("slow").start()
    S["fast"] = peers.SmtpPeer("fast").start()
    S["env"] = lib.Env("dlimits", domains=[], extra="\n".join([
        peers.queue_conf(),
        "target slow { type smtp; host 127.0.0.1:%d; tls none; rate 120 }"
        % S["slow"].port,
        "target fast { type smtp; host 127.0.0.1:%d; tls none; "
        "connections 1; messages_per_connection 2 }" % S["fast"].port,
        "domain example.com { targets slow fast }",
        "duplicates no",
    ]))
    c = lib.Client(S["env"].port)
    c.start("client.test")
    for i in range(5):
        c.send_message("s@client.test", ["a@example.com"],
                       lib.message("limit %d" % i))
    c.quit()
    peers.wait_queue_empty(S["env"].spool, 30)


def times(peer):
    return sorted(m["time"] for m in peer.messages())


def test_rate():
    slow, fast = times(S["slow"]), times(S["fast"])
    check(len(slow) == 5 and len(fast) == 5, "copies: slow %d fast %d" %
          (len(slow), len(fast)))
    span = slow[-1] - slow[0]
    print("    slow target: 5 messages over %.2f s; fast target over "
          "%.2f s" % (span, fast[-1] - fast[0]))
    check(span >= 1.6, "rate 120/min not applied: 5 messages in %.2f s" %
          span)
    check(fast[-1] < slow[-1], "the unlimited target waited for the "
          "limited one")


def test_per_connection():
    ehlos = [e for e in S["fast"].events() if e.get("kind") == "ehlo"]
    check(len(ehlos) >= 3, "5 messages over %d connections with "
          "messages_per_connection 2" % len(ehlos))


def main(runner):
    if not runner.run("setup", setup):
        return
    runner.run("rate_limit", test_rate)
    runner.run("per_connection", test_per_connection)
    runner.run("stop", S["env"].daemon.stop)
    for k in ("slow", "fast"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
