#!/usr/bin/python3
"""
test_delivery_faults.py - delivery faults against real peers (issue 3).

One daemon (retry_initial 1s, retry_max 2s, lifetime 30s) with a Postfix
legacy host and one aiosmtpd target per scenario, chosen by per-recipient
routes; default_target is an aiosmtpd "bounces" server that catches DSNs to
sender@sender.test. A second daemon with lifetime 3s covers expiry.

Asserts:
  cloud_down_then_up  legacy copy arrives while the cloud port is closed;
                      journal: deferred (cloud, attempt=1, next=) before the
                      cloud starts; after it starts the cloud copy arrives
                      (byte-exact) and is journaled delivered; queue empty.
  451_then_250        DATA answered 451 twice then 250: two deferred records
                      then delivered; exactly one stored copy.
  550_one_rcpt_dsn    RCPT 550 for one of two recipients: the other is
                      delivered, this one failed; one DSN to the sender
                      (null MAIL FROM, multipart/report with a
                      message/delivery-status part naming the recipient,
                      Action failed, Status 5.1.1, the 550 text), the human
                      part naming the target; journal bounced dsn=ID.
  null_sender_no_dsn  the same 550 for a message from <>: failed, no DSN.
  timeout             a target that accepts TCP and never speaks: deferred
                      with a reason that says timeout; nothing else.
  tls_verify_fail     target tls verify with a CA that did not sign the
                      peer's cert: deferred with a certificate reason, the
                      peer never sees MAIL FROM or a message.
  dns_nxdomain        mx target whose domain does not exist: failed + DSN.
  dns_servfail        mx target whose domain SERVFAILs: deferred, not
                      failed.
  no_8bitmime_defers  BODY=8BITMIME toward a target that does not offer
                      8BITMIME: deferred with a reason naming 8BITMIME, the
                      target never sees MAIL FROM (bytes never mangled).
  no_smtputf8_defers  SMTPUTF8 toward a target without SMTPUTF8: same.
  stop_while_connecting  (own daemon) SIGTERM while an outbound
                      connection waits for a greeting that never comes:
                      exit 0 within 15 s, no sanitizer/leak report; the
                      message is still queued, not failed, and is resumed
                      by a restart.
  lifetime_expiry     (second daemon, lifetime 3s, target port closed)
                      deferred, then failed + DSN after ~3 s, queue empty.
"""

import email
import email.policy
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check, fail  # noqa: E402

S = {}
SENDER = "sender@sender.test"


def setup():
    S["legacy"] = peers.PostfixLegacy(
        ["late@example.com", "alice@example.com"])
    S["legacy"].start()
    S["late_port"] = lib.free_port()          # cloud, started later
    S["flaky"] = peers.SmtpPeer("flaky", rules=[
        {"stage": "data", "match": "*",
         "reply": "451 4.3.0 flaky: try again later", "times": 2}]).start()
    S["strict"] = peers.SmtpPeer("strict", rules=[
        {"stage": "rcpt", "match": "x@example.com",
         "reply": "550 5.1.1 <x@example.com>: recipient unknown (strict)"},
        {"stage": "rcpt", "match": "x2@example.com",
         "reply": "550 5.1.1 <x2@example.com>: recipient unknown (strict)"},
    ]).start()
    S["silent"] = peers.SilentListener()
    d1 = lib.make_tmpdir("tlspeer")
    cert, key = peers.make_named_cert(d1, "cloud.test")
    d2 = lib.make_tmpdir("otherca")
    other_ca, _ = peers.make_named_cert(d2, "cloud.test")
    S["tlspeer"] = peers.SmtpPeer("tlspeer", tls_cert=cert,
                                  tls_key=key).start()
    S["mxpeer"] = peers.SmtpPeer("mxpeer").start()
    S["no8"] = peers.SmtpPeer("no8", eightbit=False).start()
    S["noutf8"] = peers.SmtpPeer("noutf8", smtputf8=False).start()
    S["bounces"] = peers.SmtpPeer("bounces").start()
    S["dns"] = peers.Dnsmasq(
        mx=[("example.net", "mx1.example.net", 10)],
        hosts=[("mx1.example.net", "127.0.0.1")]).start()
    extra = "\n".join([
        "resolvers 127.0.0.1:%d" % S["dns"].port,
        peers.queue_conf(),
        "target legacy { type smtp; host 127.0.0.1:%d; tls none; "
        "connections 4 }" % S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls none; "
        "timeout_connect 5s; timeout_command 5s; timeout_data 5s }" %
        S["late_port"],
        "target flaky { type smtp; host 127.0.0.1:%d; tls none }" %
        S["flaky"].port,
        "target strict { type smtp; host 127.0.0.1:%d; tls none }" %
        S["strict"].port,
        "target silent { type smtp; host 127.0.0.1:%d; tls none; "
        "timeout_connect 2s; timeout_command 2s; timeout_data 2s }" %
        S["silent"].port,
        "target tlsbad { type smtp; host 127.0.0.1:%d; tls verify; "
        "tls_ca %s; tls_name cloud.test }" % (S["tlspeer"].port, other_ca),
        "target nxmx { type smtp; mx nx.test; port %d; tls none }" %
        S["mxpeer"].port,
        "target sfmx { type smtp; mx servfail.test; port %d; tls none }" %
        S["mxpeer"].port,
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        S["bounces"].port,
        "target no8 { type smtp; host 127.0.0.1:%d; tls none }" %
        S["no8"].port,
        "target noutf8 { type smtp; host 127.0.0.1:%d; tls none }" %
        S["noutf8"].port,
        "default_target bounces",
        "domain example.com { targets legacy cloud }",
        "route eight@example.com no8",
        "route utf@example.com noutf8",
        "route flaky@example.com flaky",
        "route ok@example.com strict",
        "route x@example.com strict",
        "route x2@example.com strict",
        "route slow@example.com silent",
        "route tls@example.com tlsbad",
        "route nx@example.com nxmx",
        "route sf@example.com sfmx",
    ])
    S["env"] = lib.Env("faults", domains=[], extra=extra)


def jdump(qid=None):
    return peers.journal_dump(S["env"].spool, qid)


def dsns_for(peer, text):
    return [m for m in peer.messages() if text.encode() in m["data"]]


def wait_dsn(peer, text, timeout, qid):
    deadline = time.monotonic() + timeout
    while True:
        d = dsns_for(peer, text)
        if d:
            return d
        if time.monotonic() > deadline:
            fail("no DSN mentioning %s reached the sender within %.0f s; "
                 "journal:\n%s" % (text, timeout, jdump(qid)))
        time.sleep(0.1)


def check_dsn(d, rcpt, target, reply_text, status="5.1.1"):
    """d: stored message dict at the bounces peer."""
    check(d["mail_from"] == "", "DSN MAIL FROM is <%s>, expected the null "
          "reverse-path <>" % d["mail_from"])
    check(d["rcpts"] == [SENDER], "DSN recipients %r, expected [%r]" % (
        d["rcpts"], SENDER))
    msg = email.message_from_bytes(d["data"], policy=email.policy.compat32)
    check(msg.get_content_type() == "multipart/report",
          "DSN Content-Type %s, expected multipart/report" %
          msg.get_content_type())
    check((msg.get_param("report-type") or "").lower() == "delivery-status",
          "DSN report-type %r" % msg.get_param("report-type"))
    parts = msg.get_payload()
    check(isinstance(parts, list) and len(parts) >= 2,
          "DSN has %s parts" % (len(parts) if isinstance(parts, list)
                                else "no"))
    types = [p.get_content_type() for p in parts]
    check("message/delivery-status" in types,
          "DSN parts %r lack message/delivery-status" % types)
    ds = parts[types.index("message/delivery-status")]
    # compat32 parses message/delivery-status as a list of header blocks.
    blocks = ds.get_payload()
    text = "\n".join(b.as_string() for b in blocks) if isinstance(
        blocks, list) else str(blocks)
    check(re.search(r"(?im)^Final-Recipient:\s*rfc822;\s*<?%s>?\s*$" %
                    re.escape(rcpt), text),
          "delivery-status lacks Final-Recipient: rfc822;%s:\n%s" % (
              rcpt, text))
    check(re.search(r"(?im)^Action:\s*failed\s*$", text),
          "delivery-status lacks Action: failed:\n%s" % text)
    if status:
        check(re.search(r"(?im)^Status:\s*%s\s*$" % re.escape(status),
                        text),
              "delivery-status lacks Status: %s:\n%s" % (status, text))
    if reply_text:
        flat = re.sub(r"\s+", " ", text)
        check(reply_text in flat, "delivery-status does not carry the "
              "remote reply %r:\n%s" % (reply_text, text))
    human = parts[0]
    htext = human.get_payload(decode=True) or b""
    htext = htext.decode("utf-8", "replace")
    check(rcpt in htext, "human-readable part does not name %s:\n%s" % (
        rcpt, htext))
    check(re.search(r"\b%s\b" % re.escape(target), htext),
          "human-readable part does not name the target %r:\n%s" % (
              target, htext))
    if reply_text:
        check(reply_text in re.sub(r"\s+", " ", htext),
              "human-readable part lacks the reply %r:\n%s" % (reply_text,
                                                               htext))
    return msg


def test_cloud_down_then_up():
    env = S["env"]
    check(lib.port_refuses(S["late_port"]), "cloud port not closed")
    marker = "late-" + os.urandom(6).hex()
    sent = peers.test_message("late", marker, rcpt="late@example.com")
    t0 = time.monotonic()
    qid = peers.smtp_send(env.port, SENDER, ["late@example.com"], sent)
    acc = peers.accepted_record(env.spool, qid)
    lc = S["legacy"].wait_mailbox("late@example.com", 1, 10,
                                  "legacy copy while the cloud is down")
    t_legacy = time.monotonic() - t0
    d = peers.wait_journal(env.spool, 10, "cloud deferred", kind="deferred",
                           qid=qid, target="cloud")
    f = d[0]["fields"]
    check(f.get("attempt") == "1", "first deferred record attempt=%r" %
          f.get("attempt"))
    check(re.match(r"^\d{9,}$", f.get("next", "")),
          "deferred next=%r is not an epoch" % f.get("next"))
    check(f.get("reply"), "deferred record without a reason")
    check(os.path.exists(os.path.join(lib.queue_dir(env.spool), qid)),
          "message left queue/ while the cloud copy is pending")
    time.sleep(2.5)       # a few retries against the closed port
    S["cloud"] = peers.SmtpPeer("cloud", port=S["late_port"]).start()
    t_up = time.monotonic()
    got = S["cloud"].wait_messages(1, 15, "cloud copy after recovery")
    t_cloud = time.monotonic() - t_up
    peers.check_spooled_copy(got[0]["data"], sent, acc, "cloud copy")
    peers.check_mbox_tail(lc[0], got[0]["data"], "legacy copy")
    peers.wait_queue_gone(env.spool, qid, 10)
    recs = peers.delivery_records(env.spool, None, qid=qid, target="cloud")
    kinds = [r["type"] for r in recs]
    check(kinds and kinds[-1] == "delivered" and "deferred" in kinds and
          kinds.index("deferred") < kinds.index("delivered"),
          "cloud journal sequence %r, expected deferred... delivered" %
          kinds)
    check(peers.delivery_records(env.spool, "delivered", qid=qid,
                                 target="legacy"),
          "no legacy delivered record")
    print("    legacy copy after %.1f s; cloud copy %.1f s after it came up"
          % (t_legacy, t_cloud))


def test_451_then_250():
    env = S["env"]
    marker = "flaky-" + os.urandom(6).hex()
    sent = peers.test_message("flaky", marker, rcpt="flaky@example.com")
    qid = peers.smtp_send(env.port, SENDER, ["flaky@example.com"], sent)
    acc = peers.accepted_record(env.spool, qid)
    got = S["flaky"].wait_messages(1, 20, "after two 451s")
    peers.check_spooled_copy(got[0]["data"], sent, acc, "flaky copy")
    peers.wait_queue_gone(env.spool, qid, 10)
    recs = peers.delivery_records(env.spool, None, qid=qid, target="flaky")
    kinds = [r["type"] for r in recs]
    check(kinds == ["deferred", "deferred", "delivered"],
          "journal sequence %r, expected deferred, deferred, delivered" %
          kinds)
    for r in recs[:2]:
        check("451" in r["fields"].get("reply", ""),
              "deferred reply %r lacks the 451" % r["fields"].get("reply"))
    check([r["fields"].get("attempt") for r in recs[:2]] == ["1", "2"],
          "attempt numbers %r" % [r["fields"].get("attempt")
                                  for r in recs[:2]])
    time.sleep(0.5)
    check(len(S["flaky"].messages()) == 1, "flaky peer stored %d copies" %
          len(S["flaky"].messages()))


def test_550_dsn():
    env = S["env"]
    marker = "rej-" + os.urandom(6).hex()
    sent = peers.test_message("reject", marker, rcpt="ok@example.com",
                              sender=SENDER)
    qid = peers.smtp_send(env.port, SENDER,
                          ["ok@example.com", "x@example.com"], sent)
    peers.wait_queue_gone(env.spool, qid, 20)
    got = [m for m in S["strict"].messages() if marker.encode() in m["data"]]
    check(len(got) == 1 and got[0]["rcpts"] == ["ok@example.com"],
          "strict peer got %r" % [m["rcpts"] for m in got])
    check(peers.delivery_records(env.spool, "delivered", qid=qid,
                                 rcpt="ok@example.com"),
          "ok@example.com not journaled delivered:\n%s" % jdump(qid))
    f = peers.delivery_records(env.spool, "failed", qid=qid,
                               target="strict", rcpt="x@example.com")
    check(f and "550" in f[0]["fields"].get("reply", ""),
          "no failed record with the 550 for x@example.com:\n%s" %
          jdump(qid))
    d = wait_dsn(S["bounces"], "x@example.com", 15, qid)
    check(len(d) == 1, "%d DSNs for the message" % len(d))
    check_dsn(d[0], "x@example.com", "strict",
              "<x@example.com>: recipient unknown (strict)")
    msg = email.message_from_bytes(d[0]["data"],
                                   policy=email.policy.compat32)
    for p in msg.get_payload():
        if p.get_content_type() == "message/delivery-status":
            t = "\n".join(b.as_string() for b in p.get_payload())
            check(not re.search(r"(?im)^Final-Recipient:.*ok@example\.com",
                                t), "the DSN lists the delivered recipient "
                  "ok@example.com:\n%s" % t)
    b = peers.delivery_records(env.spool, "bounced", qid=qid)
    check(b and b[0]["fields"].get("dsn"), "no 'bounced id=%s dsn=' "
          "record:\n%s" % (qid, jdump(qid)))
    S["dsn_count"] = len(S["bounces"].messages())


def test_null_sender():
    env = S["env"]
    marker = "null-" + os.urandom(6).hex()
    sent = peers.test_message("null sender", marker, rcpt="x2@example.com",
                              sender="MAILER-DAEMON@client.test")
    n_before = len(S["bounces"].messages())
    qid = peers.smtp_send(env.port, "", ["x2@example.com"], sent)
    peers.wait_journal(env.spool, 15, "x2 failed", kind="failed", qid=qid,
                       rcpt="x2@example.com")
    peers.wait_queue_gone(env.spool, qid, 10)
    time.sleep(1.5)
    new = S["bounces"].messages()[n_before:]
    check(not new, "a DSN was sent for a null-sender message: %r" % [
        (m["mail_from"], m["rcpts"]) for m in new])
    b = peers.delivery_records(env.spool, "bounced", qid=qid)
    check(not b, "bounced record for a null-sender message: %s" % [
        r["raw"] for r in b])


def test_timeout():
    env = S["env"]
    marker = "slow-" + os.urandom(6).hex()
    sent = peers.test_message("slow", marker, rcpt="slow@example.com")
    qid = peers.smtp_send(env.port, SENDER, ["slow@example.com"], sent)
    d = peers.wait_journal(env.spool, 15, "deferred by timeout",
                           kind="deferred", qid=qid, target="silent")
    reason = d[0]["fields"].get("reply", "")
    check(re.search(r"time[d ]?\s*out|timeout", reason, re.I),
          "deferred reason %r does not say timeout" % reason)
    check(S["silent"].accepted >= 1, "the silent listener saw no connection")
    check(not peers.delivery_records(env.spool, "failed", qid=qid),
          "timeout made the recipient fail (should defer)")


def test_tls_verify_fail():
    env = S["env"]
    marker = "tls-" + os.urandom(6).hex()
    sent = peers.test_message("tls", marker, rcpt="tls@example.com")
    qid = peers.smtp_send(env.port, SENDER, ["tls@example.com"], sent)
    d = peers.wait_journal(env.spool, 15, "deferred by TLS",
                           kind="deferred", qid=qid, target="tlsbad")
    reason = d[0]["fields"].get("reply", "")
    check(re.search(r"certif|verif|self.signed|issuer", reason, re.I),
          "deferred reason %r does not name the certificate problem" %
          reason)
    check(not peers.delivery_records(env.spool, "failed", qid=qid),
          "TLS verification failure made the recipient fail")
    time.sleep(0.5)
    check(not S["tlspeer"].messages(), "the TLS peer got a message despite "
          "the failed verification")
    mails = [e for e in S["tlspeer"].events() if e["kind"] == "mail"]
    check(not mails, "the client went on to MAIL FROM after a failed "
          "verification: %r" % mails)
    ehlos = [e for e in S["tlspeer"].events() if e["kind"] == "ehlo"]
    check(ehlos, "the client never reached the TLS peer (no EHLO); reason "
          "was %r" % reason)


def test_nxdomain():
    env = S["env"]
    marker = "nx-" + os.urandom(6).hex()
    sent = peers.test_message("nx", marker, rcpt="nx@example.com")
    qid = peers.smtp_send(env.port, SENDER, ["nx@example.com"], sent)
    f = peers.wait_journal(env.spool, 20, "NXDOMAIN failed", kind="failed",
                           qid=qid, target="nxmx")
    defs = peers.delivery_records(env.spool, "deferred", qid=qid)
    check(not defs, "NXDOMAIN was deferred first (should fail at once): %s"
          % [r["raw"] for r in defs])
    peers.wait_queue_gone(env.spool, qid, 10)
    d = wait_dsn(S["bounces"], "nx@example.com", 15, qid)
    check_dsn(d[0], "nx@example.com", "nxmx", None, status=None)
    print("    NXDOMAIN reason: %s" % f[0]["fields"].get("reply"))


def test_servfail():
    env = S["env"]
    marker = "sf-" + os.urandom(6).hex()
    sent = peers.test_message("sf", marker, rcpt="sf@example.com")
    qid = peers.smtp_send(env.port, SENDER, ["sf@example.com"], sent)
    d = peers.wait_journal(env.spool, 30, "SERVFAIL deferred",
                           kind="deferred", qid=qid, target="sfmx")
    check(not peers.delivery_records(env.spool, "failed", qid=qid),
          "SERVFAIL made the recipient fail (should defer)")
    check(os.path.exists(os.path.join(lib.queue_dir(env.spool), qid)),
          "SERVFAIL message left the queue")
    check(S["dns"].upstream.queries >= 1,
          "dnsmasq never forwarded a servfail.test query")
    print("    SERVFAIL reason: %s" % d[0]["fields"].get("reply"))


def check_capability_deferral(rcpt, target, peer, options, word):
    env = S["env"]
    marker = "cap-" + os.urandom(6).hex()
    body = ("8-bit body: Grüße, naïve café\r\nmarker %s\r\n" % marker
            ).encode("utf-8")
    sent = peers.test_message("Grüße", marker, body=body, rcpt=rcpt)
    qid = peers.smtp_send(env.port, SENDER, [rcpt], sent,
                          mail_options=options)
    d = peers.wait_journal(env.spool, 15, "deferred for lack of " + word,
                           kind="deferred", qid=qid, target=target)
    reason = d[0]["fields"].get("reply", "")
    check(word.lower() in reason.lower(), "deferred reason %r does not "
          "name %s" % (reason, word))
    check(not peers.delivery_records(env.spool, "failed", qid=qid),
          "missing %s made the recipient fail (should defer)" % word)
    time.sleep(0.3)
    check(not peer.messages(), "the target got the message anyway")
    mails = [e for e in peer.events() if e["kind"] == "mail"]
    check(not mails, "the client sent MAIL FROM to a target lacking %s: %r"
          % (word, mails))
    print("    reason: %s" % reason)


def test_no_8bitmime():
    check_capability_deferral("eight@example.com", "no8", S["no8"],
                              ("BODY=8BITMIME",), "8BITMIME")


def test_no_smtputf8():
    check_capability_deferral("utf@example.com", "noutf8", S["noutf8"],
                              ("BODY=8BITMIME", "SMTPUTF8"), "SMTPUTF8")


def test_stop_while_connecting():
    silent = peers.SilentListener()
    extra = "\n".join([
        peers.queue_conf(),
        "target hang { type smtp; host 127.0.0.1:%d; tls none; "
        "timeout_connect 10s; timeout_command 10s; timeout_data 10s }" %
        silent.port,
        "domain example.com { targets hang }",
    ])
    env = lib.Env("stopconn", domains=[], extra=extra)
    try:
        marker = "hang-" + os.urandom(6).hex()
        sent = peers.test_message("hang", marker, rcpt="hang@example.com")
        qid = peers.smtp_send(env.port, SENDER, ["hang@example.com"], sent)
        lib.wait_for(lambda: silent.accepted >= 1, 10,
                     what="splitmxd to connect to the silent target")
        time.sleep(0.3)
        t0 = time.monotonic()
        env.daemon.stop(timeout=15)
        print("    stopped %.1f s after SIGTERM" % (time.monotonic() - t0))
        check(os.path.exists(os.path.join(lib.queue_dir(env.spool), qid)),
              "message left queue/ at shutdown")
        check(not peers.delivery_records(env.spool, "failed", qid=qid) and
              not peers.delivery_records(env.spool, "delivered", qid=qid),
              "shutdown made the message final:\n%s" % peers.journal_dump(
                  env.spool, qid))
        n = silent.accepted
        env.restart()
        lib.wait_for(lambda: silent.accepted > n, 10,
                     what="the restarted daemon to retry the message")
    finally:
        if env.daemon.alive():
            env.daemon.stop(timeout=15)
        silent.stop()


def test_lifetime():
    bounces = S["bounces"]
    closed = lib.free_port()
    extra = "\n".join([
        peers.queue_conf(lifetime="3s"),
        "target down { type smtp; host 127.0.0.1:%d; tls none }" % closed,
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        bounces.port,
        "default_target bounces",
        "domain example.com { targets down }",
    ])
    env = lib.Env("lifetime", domains=[], extra=extra)
    S["env2"] = env
    try:
        marker = "life-" + os.urandom(6).hex()
        sent = peers.test_message("lifetime", marker,
                                  rcpt="gone@example.com")
        t0 = time.monotonic()
        qid = peers.smtp_send(env.port, SENDER, ["gone@example.com"], sent)
        peers.wait_journal(env.spool, 10, "deferred", kind="deferred",
                           qid=qid, target="down")
        f = peers.wait_journal(env.spool, 20, "failed after lifetime",
                               kind="failed", qid=qid, target="down")
        dt = time.monotonic() - t0
        check(dt >= 2.5, "failed after %.1f s, before the 3 s lifetime" % dt)
        d = [m for m in wait_dsn(bounces, "gone@example.com", 15, qid)]
        check_dsn(d[0], "gone@example.com", "down", None, status=None)
        peers.wait_queue_gone(env.spool, qid, 10)
        print("    expired after %.1f s: %s" % (
            dt, f[0]["fields"].get("reply")))
    finally:
        env.daemon.stop()


def main(runner):
    if not runner.run("setup_peers", setup):
        return
    runner.run("cloud_down_then_up", test_cloud_down_then_up)
    runner.run("451_then_250", test_451_then_250)
    runner.run("550_one_rcpt_dsn", test_550_dsn)
    runner.run("null_sender_no_dsn", test_null_sender)
    runner.run("timeout", test_timeout)
    runner.run("tls_verify_fail", test_tls_verify_fail)
    runner.run("dns_nxdomain", test_nxdomain)
    runner.run("dns_servfail", test_servfail)
    runner.run("no_8bitmime_defers", test_no_8bitmime)
    runner.run("no_smtputf8_defers", test_no_smtputf8)
    runner.run("stop_daemon", S["env"].daemon.stop)
    runner.run("stop_while_connecting", test_stop_while_connecting)
    runner.run("lifetime_expiry", test_lifetime)
    for k in ("cloud", "flaky", "strict", "silent", "tlspeer", "mxpeer",
              "no8", "noutf8", "bounces", "dns", "legacy"):
        if k in S:
            S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
