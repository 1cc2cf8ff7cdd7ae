#!/usr/bin/python3
"""
test_delivery_delay.py - the optional delay warning (issue 3).

queue { delay_warning 2s; lifetime 60s }, the cloud target's port closed,
default_target "bounces" (an aiosmtpd peer) for the sender's domain.

Asserts:
  delay_warning_sent   after ~2 s one DSN reaches the sender: null MAIL
                       FROM, multipart/report, Action: delayed for the
                       waiting recipient; the journal has "warned"; the
                       message is still queued (not failed).
  only_once            later retries send no second warning.
  notify_never         a message with NOTIFY=NEVER gets no warning.
  delivered_later      once the cloud comes up the message is delivered
                       and leaves the queue; no failure DSN follows.
"""

import email
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


def setup():
    S["cloud_port"] = lib.free_port()
    S["bounces"] = peers.SmtpPeer("bounces").start()
    extra = "\n".join([
        "queue { retry_initial 1s; retry_max 1s; lifetime 60s; "
        "delay_warning 2s }",
        "target cloud { type smtp; host 127.0.0.1:%d; tls none }" %
        S["cloud_port"],
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        S["bounces"].port,
        "default_target bounces",
        "domain example.com { targets cloud }",
    ])
    S["env"] = lib.Env("delay", domains=[], extra=extra)


def dsns():
    return [m for m in S["bounces"].messages()
            if m.get("mail_from") in ("", "<>")]


def test_warning():
    env = S["env"]
    S["qid"] = peers.smtp_send(env.port, SENDER, ["alice@example.com"],
                               peers.test_message("delayed", sender=SENDER))
    peers.wait_journal(env.spool, 15, "warned", kind="warned",
                       qid=S["qid"])
    deadline = time.monotonic() + 10
    while not dsns() and time.monotonic() < deadline:
        time.sleep(0.1)
    got = dsns()
    check(len(got) == 1, "expected one delay DSN, got %d" % len(got))
    msg = email.message_from_bytes(got[0]["data"])
    check(msg.get_content_type() == "multipart/report",
          "DSN type %s" % msg.get_content_type())
    status = msg.get_payload()[1]
    text = status.as_string()
    check("Action: delayed" in text, "no 'Action: delayed' in:\n" + text)
    check("alice@example.com" in text, "recipient not named:\n" + text)
    check(os.path.exists(os.path.join(lib.queue_dir(env.spool), S["qid"])),
          "message left the queue after a delay warning")
    check(not peers.delivery_records(env.spool, kind="failed",
                                     qid=S["qid"]),
          "a delay warning failed the recipient")


def test_once():
    time.sleep(3)
    check(len(dsns()) == 1, "a second delay warning was sent (%d DSNs)" %
          len(dsns()))


def test_notify_never():
    env = S["env"]
    c = lib.Client(env.port)
    c.start("client.test")
    lib.expect_reply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
    lib.expect_reply(c.cmd("RCPT TO:<bob@example.com> NOTIFY=NEVER"), 250)
    lib.expect_reply(c.cmd("DATA"), 354)
    c.send(b"Subject: never\r\n\r\nbody\r\n.\r\n")
    r = c.read_reply()
    lib.expect_reply(r, 250, "2.0.0", "NOTIFY=NEVER message")
    qid = r.queue_id()
    c.close()
    time.sleep(4)
    check(not peers.delivery_records(env.spool, kind="warned", qid=qid),
          "NOTIFY=NEVER message was warned about")
    check(len(dsns()) == 1, "NOTIFY=NEVER produced a DSN")


def test_delivered_later():
    env = S["env"]
    S["cloud"] = peers.SmtpPeer("cloud", port=S["cloud_port"]).start()
    peers.wait_queue_gone(env.spool, S["qid"], 20)
    check(peers.delivery_records(env.spool, kind="delivered", qid=S["qid"],
                                 target="cloud"), "no delivered record")
    time.sleep(1)
    check(len(dsns()) == 1, "a DSN followed the late delivery")


def main(runner):
    if not runner.run("setup", setup):
        return
    runner.run("delay_warning_sent", test_warning)
    runner.run("only_once", test_once)
    runner.run("notify_never", test_notify_never)
    runner.run("delivered_later", test_delivered_later)
    runner.run("stop", S["env"].daemon.stop)
    for k in ("cloud", "bounces"):
        if k in S:
            S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
