#!/usr/bin/python3
"""
test_delivery_crash.py - kill -9 during delivery, restart on the same spool
(issue 3: each target gets each message at least once).

Two targets: "legacy", an aiosmtpd that sleeps 0.1 s per message, and
"cloud", one that sleeps 0.2 s (2 connections each). 100 messages, each
with a unique marker in its Message-ID, are accepted; when the cloud has
stored some but not all of them, splitmxd gets SIGKILL (with transactions
in DATA at both targets); it is restarted on the same spool.

Asserts: at the kill, neither target had received everything (the kill
really was mid-delivery); after the restart each target eventually holds
every one of the 100 markers (duplicates allowed, reported), each copy of
each message is the spooled content (ends with the bytes sent, starts with
our Received header); queue/ empties; the journal ends with a delivered
record for every (message, target) and no failed record; the daemon stops
cleanly.
"""

import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check, fail  # noqa: E402

N = 100
S = {}


def setup():
    S["legacy"] = peers.SmtpPeer("legacy", delay=0.1).start()
    S["cloud"] = peers.SmtpPeer("cloud", delay=0.2).start()
    extra = "\n".join([
        peers.queue_conf(lifetime="120s"),
        "target legacy { type smtp; host 127.0.0.1:%d; tls none; "
        "connections 2 }" % S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls none; "
        "connections 2 }" % S["cloud"].port,
        "default_target legacy",
        "domain example.com { targets legacy cloud }",
    ])
    S["env"] = lib.Env("dcrash", domains=[], extra=extra)


MARK_RE = re.compile(rb"Message-ID: <(crash-\d+-[0-9a-f]+)@client\.test>")


def markers_of(peer):
    out = {}
    for m in peer.messages():
        mm = MARK_RE.search(m["data"])
        if mm:
            out.setdefault(mm.group(1).decode(), []).append(m)
    return out


def test_crash():
    import smtplib
    env = S["env"]
    sent = {}
    tag = os.urandom(4).hex()
    with smtplib.SMTP(lib.HOST, env.port, timeout=30) as s:
        s.ehlo("client.test")
        for i in range(N):
            marker = "crash-%d-%s" % (i, tag)
            content = peers.test_message("crash %d" % i, marker,
                                         body=lib.random_body(3000))
            code, msg = s.mail("sender@client.test")
            check(code == 250, "MAIL %d %r" % (code, msg))
            code, msg = s.rcpt("user%d@example.com" % (i % 7))
            check(code == 250, "RCPT %d %r" % (code, msg))
            code, msg = s.data(content)
            check(code == 250 and lib.QUEUED_RE.match(msg.decode()),
                  "DATA %d %r" % (code, msg))
            sent[marker] = content
    # Wait until the cloud is mid-way, then kill.
    deadline = time.monotonic() + 30
    while True:
        n = len(markers_of(S["cloud"]))
        if n >= 15:
            break
        if time.monotonic() > deadline:
            fail("cloud received only %d messages in 30 s; journal tail:\n%s"
                 % (n, peers.journal_dump(env.spool, None, 15)))
        time.sleep(0.05)
    env.daemon.kill9()
    at_kill_cloud = len(markers_of(S["cloud"]))
    at_kill_legacy = len(markers_of(S["legacy"]))
    in_queue = len(lib.list_dir(lib.queue_dir(env.spool)))
    print("    at kill -9: cloud %d/%d, legacy %d/%d, %d in queue/" % (
        at_kill_cloud, N, at_kill_legacy, N, in_queue))
    check(at_kill_cloud < N and at_kill_legacy < N,
          "a target already had every message at the kill; not a "
          "mid-delivery crash")
    env.restart()
    deadline = time.monotonic() + 90
    while True:
        mc, ml = markers_of(S["cloud"]), markers_of(S["legacy"])
        if len(mc) >= N and len(ml) >= N:
            break
        if time.monotonic() > deadline:
            miss_c = sorted(set(sent) - set(mc))
            miss_l = sorted(set(sent) - set(ml))
            fail("after restart: cloud lacks %d (%s), legacy lacks %d (%s); "
                 "journal tail:\n%s" % (len(miss_c), miss_c[:5], len(miss_l),
                                        miss_l[:5], peers.journal_dump(
                                            env.spool, None, 15)))
        time.sleep(0.2)
    peers.wait_queue_empty(env.spool, 30)
    for name, got in (("cloud", mc), ("legacy", ml)):
        extra = set(got) - set(sent)
        check(not extra, "%s got unknown markers %s" % (name, extra))
        for marker, copies in got.items():
            for c in copies:
                data = peers.strip_auth_fields(c["data"], name)
                check(data.endswith(sent[marker]),
                      "%s copy of %s does not end with the bytes sent" % (
                          name, marker))
                check(data.startswith(b"Received: "),
                      "%s copy of %s lacks our Received header" % (name,
                                                                  marker))
    dup_c = sum(len(v) - 1 for v in mc.values())
    dup_l = sum(len(v) - 1 for v in ml.values())
    print("    after restart: every message at both targets; duplicates: "
          "cloud %d, legacy %d" % (dup_c, dup_l))
    j = env.journal()
    check(not j.malformed, "malformed journal lines: %r" % j.malformed[:3])
    ids = set(j.accepted_ids())
    check(len(ids) >= N, "%d accepted records" % len(ids))
    delivered = {}
    for r in j.of("delivered"):
        delivered.setdefault(r["fields"].get("target"), set()).add(
            r["fields"].get("id"))
    for t in ("legacy", "cloud"):
        missing = ids - delivered.get(t, set())
        check(not missing, "%d accepted ids without a delivered record for "
              "%s: %s" % (len(missing), t, sorted(missing)[:5]))
    check(not j.of("failed"), "failed records: %s" % [
        r["raw"] for r in j.of("failed")[:3]])
    removed = {r["fields"].get("id") for r in j.of("removed")}
    check(ids <= removed, "%d ids without a removed record" % len(
        ids - removed))


def main(runner):
    if not runner.run("setup_peers", setup):
        return
    runner.run("kill9_mid_delivery", test_crash)
    runner.run("stop_daemon", S["env"].daemon.stop)
    for k in ("legacy", "cloud"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
