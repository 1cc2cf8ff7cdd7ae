#!/usr/bin/python3
"""
test_srs.py - SRS toward a target, and bounces coming back (issue 4).

srs_domain srs.mx.test; the cloud target has "srs yes", legacy does not.
Asserts:
  forward_rewritten   the cloud sees MAIL FROM:<SRS0=HHHH=TT=sender.test=
                      sender@srs.mx.test>; legacy sees the original sender.
  null_sender_kept    a message from <> reaches the cloud from <>.
  bounce_reversed     a bounce (MAIL FROM:<>) to that SRS address is
                      accepted and delivered to the original sender (via
                      default_target), also when the address comes back
                      lower-cased.
  forged_refused      one changed hash character: 550 5.7.1 at RCPT.
  bad_config          srs yes without srs_domain/srs_secret_file: the
                      daemon refuses the config (-n), naming the file.
"""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

S = {}
SENDER = "sender@sender.test"


def setup():
    d = lib.make_tmpdir("srs")
    secret = os.path.join(d, "srs.secret")
    lib.write_file(secret, "0123456789abcdef-test-secret\n")
    S["legacy"] = peers.SmtpPeer("legacy").start()
    S["cloud"] = peers.SmtpPeer("cloud").start()
    S["bounces"] = peers.SmtpPeer("bounces").start()
    extra = "\n".join([
        peers.queue_conf(),
        "srs_domain srs.mx.test",
        "srs_secret_file %s" % secret,
        "target legacy { type smtp; host 127.0.0.1:%d; tls none }" %
        S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls none; srs yes }" %
        S["cloud"].port,
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        S["bounces"].port,
        "default_target bounces",
        "domain example.com { targets legacy cloud }",
    ])
    S["env"] = lib.Env("srs", domains=[], extra=extra)


def mail_from(peer, marker):
    for m in peer.messages():
        if marker.encode() in m["data"]:
            return m["mail_from"]
    lib.fail("%s has no message %s" % (peer.name, marker))


def test_forward():
    env = S["env"]
    q = peers.smtp_send(env.port, SENDER, ["alice@example.com"],
                        peers.test_message("srs", marker="srsfwd1",
                                           sender=SENDER))
    peers.wait_queue_gone(env.spool, q, 20)
    cloud = mail_from(S["cloud"], "srsfwd1")
    check(re.match(r"^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=sender\.test=sender"
                   r"@srs\.mx\.test$", cloud), "cloud MAIL FROM %r" % cloud)
    check(mail_from(S["legacy"], "srsfwd1") == SENDER,
          "legacy MAIL FROM %r" % mail_from(S["legacy"], "srsfwd1"))
    S["srs"] = cloud


def test_null_sender():
    env = S["env"]
    q = peers.smtp_send(env.port, "", ["alice@example.com"],
                        peers.test_message("srs0", marker="srsnull1",
                                           sender="mailer-daemon@x.test"))
    peers.wait_queue_gone(env.spool, q, 20)
    check(mail_from(S["cloud"], "srsnull1") in ("", "<>"),
          "null sender rewritten: %r" % mail_from(S["cloud"], "srsnull1"))


def bounce_to(addr, marker):
    return peers.smtp_send(S["env"].port, "", [addr],
                           peers.test_message("bounce", marker=marker,
                                              sender="mailer-daemon@x.test",
                                              rcpt=addr))


def test_bounce():
    q = bounce_to(S["srs"], "srsback1")
    peers.wait_queue_gone(S["env"].spool, q, 20)
    got = [m for m in S["bounces"].messages() if b"srsback1" in m["data"]]
    check(len(got) == 1 and got[0]["rcpts"] == [SENDER],
          "bounce not delivered to the original sender: %r" %
          [(m["mail_from"], m["rcpts"]) for m in got])
    q = bounce_to(S["srs"].lower(), "srsback2")
    peers.wait_queue_gone(S["env"].spool, q, 20)
    got = [m for m in S["bounces"].messages() if b"srsback2" in m["data"]]
    check(len(got) == 1 and got[0]["rcpts"] == [SENDER],
          "lower-cased SRS address not reversed")


def test_forged():
    local = S["srs"].split("@")[0]
    h = local[5:9]
    bad = local[:5] + ("A" if h[0] != "A" else "B") + h[1:] + local[9:]
    c = lib.Client(S["env"].port)
    c.start("client.test")
    lib.expect_reply(c.cmd("MAIL FROM:<>"), 250)
    r = c.cmd("RCPT TO:<%s@srs.mx.test>" % bad)
    lib.expect_reply(r, 550, "5.7.1", "forged SRS address")
    c.close()


def test_bad_config():
    d = lib.make_tmpdir("srsbad")
    path = os.path.join(d, "splitmx.conf")
    lib.write_file(path, lib.config_text(
        os.path.join(d, "spool"), [{"port": lib.free_port()}],
        domains=[], extra="target t { type smtp; host 127.0.0.1:1; "
        "srs yes }\ndomain example.com { targets t }"))
    r = lib.run_splitmxd(["-n", "-f", path])
    check(r.returncode != 0, "srs yes without a secret was accepted")
    check(b"srs_domain" in r.stderr, "no reason given: %r" % r.stderr)


def main(runner):
    if not runner.run("setup", setup):
        return
    runner.run("forward_rewritten", test_forward)
    runner.run("null_sender_kept", test_null_sender)
    runner.run("bounce_reversed", test_bounce)
    runner.run("forged_refused", test_forged)
    runner.run("bad_config", test_bad_config)
    runner.run("stop", S["env"].daemon.stop)
    for k in ("legacy", "cloud", "bounces"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
