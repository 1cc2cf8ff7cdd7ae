#!/usr/bin/python3
"""
test_delivery_dual.py - dual and split delivery to real peers (issue 3).

Peers, all on 127.0.0.1 and started here: a private Postfix instance as
the legacy host (virtual(8) into mbox files), an aiosmtpd "cloud" with
STARTTLS (target tls verify against its own CA, name cloud.test, rewrite
@example.com -> @example.mail.onmicrosoft.com), a maildir archive, an
aiosmtpd reached through MX records served by dnsmasq, an aiosmtpd LMTP
server, and an aiosmtpd "bounces" server for DSNs (default_target).

Asserts:
  dual_delivery      alice@example.com reaches both: the cloud copy is the
                     spooled content byte for byte (our Received + what the
                     client sent; size and sha256 of the accepted record),
                     over TLS, to alice@example.mail.onmicrosoft.com; the
                     legacy mbox copy ends with the same content (LF form)
                     and was delivered to alice@example.com; journal has a
                     delivered record per target with rcpt and to=; queue/
                     file removed.
  wave_cloud_only    a wave member (state cloud) goes to the cloud only.
  route_archive      a per-recipient route goes to the maildir only: one
                     file in arch/new = Return-Path + Delivered-To lines +
                     the exact spooled content.
  split_one_spool    one message, recipients routed differently: one
                     accepted record; legacy gets its 2 recipients in one
                     transaction (same Postfix queue id in both mailboxes),
                     cloud its 3 in one transaction, arch its 1.
  mx_delivery        targets "mx example.net" and "mx *" reach the MX host
                     dnsmasq names (mx1.example.net -> 127.0.0.1).
  eightbit_smtputf8  an 8-bit UTF-8 message sent with BODY=8BITMIME and
                     SMTPUTF8 reaches legacy and cloud byte-exact; the cloud
                     sees both MAIL parameters passed on.
  large_message      a 3 MB message reaches legacy and cloud byte-exact.
  lmtp_per_rcpt      LMTP target: per-recipient DATA replies 250 and 550:
                     delivered + failed in the journal, the LMTP server
                     stored the message for the accepted one only, and a
                     DSN for the refused one reaches the sender.
"""

import email
import email.policy
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check, fail  # noqa: E402

RW = "example.mail.onmicrosoft.com"
S = {}      # shared peers and env


def setup():
    S["legacy"] = peers.PostfixLegacy(
        ["alice@example.com", "bob@example.com", "carol@example.com",
         "dave@example.com", "erin@example.com", "frank@example.com"])
    S["legacy"].start()
    cdir = lib.make_tmpdir("cloudcert")
    cert, key = peers.make_named_cert(cdir, "cloud.test")
    S["cloud"] = peers.SmtpPeer("cloud", tls_cert=cert, tls_key=key).start()
    S["mxpeer"] = peers.SmtpPeer("mxpeer").start()
    S["lmtp"] = peers.SmtpPeer("lmtp", lmtp=True, rules=[
        {"stage": "data", "match": "bad@lmtp.example.org",
         "reply": "550 5.1.1 <bad@lmtp.example.org> mailbox unknown here"}
    ]).start()
    S["bounces"] = peers.SmtpPeer("bounces").start()
    S["dns"] = peers.Dnsmasq(
        mx=[("example.net", "mx1.example.net", 10)],
        hosts=[("mx1.example.net", "127.0.0.1")]).start()
    S["arch"] = os.path.join(lib.make_tmpdir("arch"), "arch")
    extra = "\n".join([
        "resolvers 127.0.0.1:%d" % S["dns"].port,
        peers.queue_conf(),
        "target legacy { type smtp; host 127.0.0.1:%d; tls none; "
        "connections 4 }" % S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls verify; "
        "tls_ca %s; tls_name cloud.test; rewrite @example.com @%s }" % (
            S["cloud"].port, cert, RW),
        "target arch { type maildir; path %s }" % S["arch"],
        "target bymx { type smtp; mx example.net; port %d; tls none }" %
        S["mxpeer"].port,
        "target bystar { type smtp; mx *; port %d; tls none }" %
        S["mxpeer"].port,
        "target lmtp1 { type lmtp; host 127.0.0.1:%d }" % S["lmtp"].port,
        "target bounces { type smtp; host 127.0.0.1:%d; tls none }" %
        S["bounces"].port,
        "default_target bounces",
        "domain example.com { targets legacy cloud }",
        "domain example.org { targets bymx }",
        "domain example.net { targets bystar }",
        "domain lmtp.example.org { targets lmtp1 }",
        "wave w1 { state cloud; members bob@example.com }",
        "route carol@example.com arch",
    ])
    S["env"] = lib.Env("dual", domains=[], extra=extra)


def by_marker(msgs, marker):
    return [m for m in msgs if marker.encode() in m["data"]]


def cloud_copy(marker, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        got = by_marker(S["cloud"].messages(), marker)
        if got:
            return got
        if time.monotonic() > deadline:
            fail("cloud did not receive the message with marker %s in %.0f "
                 "s; journal:\n%s" % (marker, timeout, peers.journal_dump(
                     S["env"].spool)))
        time.sleep(0.05)


def legacy_copy(addr, marker, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        got = [m for m in S["legacy"].mailbox(addr) if marker.encode() in m]
        if got:
            return got
        if time.monotonic() > deadline:
            fail("legacy mailbox %s did not get marker %s in %.0f s; "
                 "journal:\n%s\npostfix log:\n%s" % (
                     addr, marker, timeout,
                     peers.journal_dump(S["env"].spool),
                     S["legacy"].log_tail(10)))
        time.sleep(0.05)


def check_delivered(qid, target, rcpt, to):
    recs = peers.delivery_records(S["env"].spool, "delivered", qid=qid,
                                  target=target, rcpt=rcpt)
    check(recs, "no 'delivered id=%s target=%s rcpt=<%s>' journal record;"
          " journal:\n%s" % (qid, target, rcpt,
                             peers.journal_dump(S["env"].spool, qid)))
    r = recs[0]["fields"]
    check(peers.strip_angle(r.get("to", "")).lower() == to.lower(),
          "delivered record for %s at %s has to=%r, expected <%s>" % (
              rcpt, target, r.get("to"), to))
    check(r.get("reply", "").startswith("2"),
          "delivered record reply=%r does not start with 2" % r.get("reply"))
    return recs


def test_dual():
    env = S["env"]
    marker = "dual-" + os.urandom(6).hex()
    sent = peers.test_message("dual", marker)
    qid = peers.smtp_send(env.port, "sender@client.test",
                          ["alice@example.com"], sent)
    acc = peers.accepted_record(env.spool, qid)
    c = cloud_copy(marker)
    check(len(c) == 1, "cloud got %d copies" % len(c))
    c = c[0]
    peers.check_spooled_copy(c["data"], sent, acc, "cloud copy")
    check(c["rcpts"] == ["alice@" + RW], "cloud envelope recipients %r, "
          "expected the rewritten ['alice@%s']" % (c["rcpts"], RW))
    check(c["mail_from"] == "sender@client.test",
          "cloud envelope sender %r" % c["mail_from"])
    check(c["tls"], "cloud copy was not sent over STARTTLS (tls verify)")
    lc = legacy_copy("alice@example.com", marker)
    check(len(lc) == 1, "legacy got %d copies" % len(lc))
    pre = peers.check_mbox_tail(lc[0], c["data"], "legacy copy")
    hdrs = peers.mbox_headers(pre + b"\n")
    check(b"Delivered-To: alice@example.com" in hdrs,
          "legacy copy not delivered to alice@example.com: %r" % hdrs)
    check(b"Return-Path: <sender@client.test>" in hdrs,
          "legacy envelope sender: %r" % hdrs)
    peers.wait_queue_gone(env.spool, qid, 15)
    check_delivered(qid, "legacy", "alice@example.com", "alice@example.com")
    check_delivered(qid, "cloud", "alice@example.com", "alice@" + RW)
    fails = peers.delivery_records(env.spool, "failed", qid=qid)
    check(not fails, "failed records for a clean delivery: %s" % fails)


def test_wave():
    env = S["env"]
    marker = "wave-" + os.urandom(6).hex()
    sent = peers.test_message("wave", marker, rcpt="bob@example.com")
    qid = peers.smtp_send(env.port, "sender@client.test",
                          ["bob@example.com"], sent)
    acc = peers.accepted_record(env.spool, qid)
    c = cloud_copy(marker)
    check(len(c) == 1, "cloud got %d copies" % len(c))
    peers.check_spooled_copy(c[0]["data"], sent, acc, "cloud copy")
    check(c[0]["rcpts"] == ["bob@" + RW], "cloud recipients %r" %
          c[0]["rcpts"])
    peers.wait_queue_gone(env.spool, qid, 15)
    check_delivered(qid, "cloud", "bob@example.com", "bob@" + RW)
    leg = peers.delivery_records(env.spool, None, qid=qid, target="legacy")
    check(not leg, "wave member (state cloud) has legacy journal records: "
          "%s" % [r["raw"] for r in leg])
    time.sleep(0.5)
    check(not S["legacy"].mailbox("bob@example.com"),
          "wave member (state cloud) got a legacy copy")


def arch_files():
    d = os.path.join(S["arch"], "new")
    return [os.path.join(d, n) for n in lib.list_dir(d)]


def split_maildir(data, what):
    """(prefix lines, rest) of a maildir file: Return-Path, Delivered-To."""
    lines = []
    pos = 0
    for _ in range(50):
        nl = data.find(b"\n", pos)
        check(nl > 0, "%s: maildir file too short: %r" % (what, data[:200]))
        line = data[pos:nl]
        if not (line.startswith(b"Return-Path:") or
                line.startswith(b"Delivered-To:")):
            break
        lines.append(line.rstrip(b"\r"))
        pos = nl + 1
    return lines, data[pos:]


def test_route():
    env = S["env"]
    before = set(arch_files())
    marker = "route-" + os.urandom(6).hex()
    sent = peers.test_message("route", marker, rcpt="carol@example.com")
    qid = peers.smtp_send(env.port, "sender@client.test",
                          ["carol@example.com"], sent)
    acc = peers.accepted_record(env.spool, qid)
    peers.wait_queue_gone(env.spool, qid, 15)
    new = [p for p in arch_files() if p not in before]
    check(len(new) == 1, "expected 1 new file in arch/new, found %d" %
          len(new))
    with open(new[0], "rb") as f:
        data = f.read()
    lines, rest = split_maildir(data, "arch")
    check(lines and lines[0] == b"Return-Path: <sender@client.test>",
          "maildir file does not start with Return-Path: <sender@client."
          "test>: %r" % data[:200])
    check(b"Delivered-To: carol@example.com" in lines,
          "maildir file lacks Delivered-To: carol@example.com: %r" % lines)
    peers.check_spooled_copy(rest, sent, acc, "archive copy")
    check_delivered(qid, "arch", "carol@example.com", "carol@example.com")
    others = [r for r in peers.delivery_records(env.spool, None, qid=qid)
              if r["fields"].get("target") not in (None, "arch")]
    check(not others, "routed recipient has records for other targets: %s"
          % [r["raw"] for r in others])
    check(not by_marker(S["cloud"].messages(), marker),
          "routed recipient reached the cloud")
    check(not S["legacy"].mailbox("carol@example.com"),
          "routed recipient reached the legacy host")


def received_id(msg):
    """Postfix queue id from the first Received header of an mbox copy."""
    import re
    for h in peers.mbox_headers(msg):
        if h.startswith(b"Received:"):
            m = re.search(rb"with E?SMTPS? id ([0-9A-Za-z]+)", h)
            return (m.group(1) if m else None), h
    return None, None


def test_split():
    env = S["env"]
    before_arch = set(arch_files())
    marker = "split-" + os.urandom(6).hex()
    rcpts = ["dave@example.com", "bob@example.com", "carol@example.com",
             "erin@example.com"]
    sent = peers.test_message("split", marker, rcpt="dave@example.com")
    qid = peers.smtp_send(env.port, "sender@client.test", rcpts, sent)
    acc = peers.accepted_record(env.spool, qid)
    check(acc.get("nrcpt") == "4", "accepted record nrcpt=%s, expected 4"
          % acc.get("nrcpt"))
    peers.wait_queue_gone(env.spool, qid, 20)
    # Spooled once.
    accs = [r for r in env.journal().of("accepted")
            if marker in r["fields"].get("msgid", "")]
    check(len(accs) == 1, "%d accepted records for the message" % len(accs))
    # Cloud: dave, bob (wave), erin in one transaction.
    c = by_marker(S["cloud"].messages(), marker)
    check(len(c) == 1, "cloud got %d transactions for the message, "
          "expected 1: %s" % (len(c), [x["rcpts"] for x in c]))
    want = sorted(["dave@" + RW, "bob@" + RW, "erin@" + RW])
    check(sorted(c[0]["rcpts"]) == want, "cloud recipients %r, expected %r"
          % (c[0]["rcpts"], want))
    peers.check_spooled_copy(c[0]["data"], sent, acc, "cloud copy")
    # Legacy: dave and erin, in one transaction.
    ld = legacy_copy("dave@example.com", marker)
    le = legacy_copy("erin@example.com", marker)
    check(len(ld) == 1 and len(le) == 1, "legacy copies dave %d erin %d" %
          (len(ld), len(le)))
    peers.check_mbox_tail(ld[0], c[0]["data"], "legacy copy (dave)")
    peers.check_mbox_tail(le[0], c[0]["data"], "legacy copy (erin)")
    id1, h1 = received_id(ld[0])
    id2, h2 = received_id(le[0])
    check(id1 and id1 == id2, "legacy copies for dave and erin came in "
          "different transactions (Postfix ids %r / %r): %r | %r" % (
              id1, id2, h1, h2))
    for a in ("bob@example.com", "carol@example.com"):
        check(not [m for m in S["legacy"].mailbox(a) if marker.encode() in m],
              "%s reached the legacy host" % a)
    # Arch: carol only.
    new = [p for p in arch_files() if p not in before_arch]
    check(len(new) == 1, "arch got %d files for the message" % len(new))
    with open(new[0], "rb") as f:
        lines, rest = split_maildir(f.read(), "arch")
    dt = [l for l in lines if l.startswith(b"Delivered-To:")]
    check(dt == [b"Delivered-To: carol@example.com"],
          "arch Delivered-To lines %r" % dt)
    peers.check_spooled_copy(rest, sent, acc, "archive copy")
    for t, r, to in (("legacy", "dave@example.com", "dave@example.com"),
                     ("legacy", "erin@example.com", "erin@example.com"),
                     ("cloud", "dave@example.com", "dave@" + RW),
                     ("cloud", "bob@example.com", "bob@" + RW),
                     ("cloud", "erin@example.com", "erin@" + RW),
                     ("arch", "carol@example.com", "carol@example.com")):
        check_delivered(qid, t, r, to)
    n = len(peers.delivery_records(env.spool, "delivered", qid=qid))
    check(n == 6, "%d delivered records, expected 6:\n%s" % (
        n, peers.journal_dump(env.spool, qid)))


def test_mx():
    env = S["env"]
    marker = "mx-" + os.urandom(6).hex()
    sent = peers.test_message("mx", marker, rcpt="frank@example.org")
    q1 = peers.smtp_send(env.port, "sender@client.test",
                         ["frank@example.org"], sent)
    marker2 = "mxstar-" + os.urandom(6).hex()
    sent2 = peers.test_message("mx star", marker2, rcpt="gina@example.net")
    q2 = peers.smtp_send(env.port, "sender@client.test",
                         ["gina@example.net"], sent2)
    peers.wait_queue_gone(env.spool, q1, 20)
    peers.wait_queue_gone(env.spool, q2, 20)
    for q, mk, s, rc, tgt in ((q1, marker, sent, "frank@example.org",
                               "bymx"),
                              (q2, marker2, sent2, "gina@example.net",
                               "bystar")):
        got = by_marker(S["mxpeer"].messages(), mk)
        check(len(got) == 1, "MX host got %d copies via %s" % (len(got),
                                                              tgt))
        check(got[0]["rcpts"] == [rc], "MX host recipients %r" %
              got[0]["rcpts"])
        peers.check_spooled_copy(got[0]["data"], s,
                                 peers.accepted_record(env.spool, q),
                                 "copy via %s" % tgt)
        check_delivered(q, tgt, rc, rc)


def dual_roundtrip(subject, sent, mail_options=(), timeout=30):
    env = S["env"]
    marker = sent.split(b"Message-ID: <", 1)[1].split(b"@", 1)[0].decode()
    qid = peers.smtp_send(env.port, "sender@client.test",
                          ["alice@example.com"], sent,
                          mail_options=mail_options, timeout=60)
    acc = peers.accepted_record(env.spool, qid)
    c = cloud_copy(marker, timeout)
    check(len(c) == 1, "cloud got %d copies" % len(c))
    peers.check_spooled_copy(c[0]["data"], sent, acc, "cloud copy")
    lc = legacy_copy("alice@example.com", marker, timeout)
    check(len(lc) == 1, "legacy got %d copies" % len(lc))
    peers.check_mbox_tail(lc[0], c[0]["data"], "legacy copy")
    peers.wait_queue_gone(env.spool, qid, 15)
    check_delivered(qid, "legacy", "alice@example.com", "alice@example.com")
    check_delivered(qid, "cloud", "alice@example.com", "alice@" + RW)
    return c[0]


def test_8bit():
    marker = "8bit-" + os.urandom(6).hex()
    body = ("Grüße aus Köln — naïve café, 日本語のテキスト\r\n"
            ".Zeile mit Punkt: ÄÖÜ\r\n"
            "marker %s\r\n" % marker).encode("utf-8") + \
        bytes(range(0x80, 0x100)).replace(b"\r", b"").replace(b"\n", b"") + \
        b"\r\n"
    sent = peers.test_message("Grüße ✓", marker, body=body)
    check("Subject: Grüße ✓".encode() in sent, "test message not UTF-8")
    c = dual_roundtrip("8bit", sent, mail_options=("BODY=8BITMIME",
                                                   "SMTPUTF8"))
    opts = [o.upper() for o in c["mail_options"]]
    check("BODY=8BITMIME" in opts, "cloud MAIL parameters %r lack "
          "BODY=8BITMIME" % c["mail_options"])
    check("SMTPUTF8" in opts, "cloud MAIL parameters %r lack SMTPUTF8" %
          c["mail_options"])


def test_large():
    marker = "large-" + os.urandom(6).hex()
    body = (b"marker " + marker.encode() + b"\r\n" +
            lib.random_body(3 * 1024 * 1024) + b".\r\n..\r\nend\r\n")
    sent = peers.test_message("large", marker, body=body)
    dual_roundtrip("large", sent, timeout=60)


def parse_dsn(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def test_lmtp():
    env = S["env"]
    marker = "lmtp-" + os.urandom(6).hex()
    sent = peers.test_message("lmtp", marker, rcpt="ok@lmtp.example.org",
                              sender="sender@sender.test")
    qid = peers.smtp_send(env.port, "sender@sender.test",
                          ["ok@lmtp.example.org", "bad@lmtp.example.org"],
                          sent)
    acc = peers.accepted_record(env.spool, qid)
    peers.wait_queue_gone(env.spool, qid, 20)
    got = by_marker(S["lmtp"].messages(), marker)
    check(len(got) == 1, "LMTP server stored %d copies" % len(got))
    check(sorted(got[0]["rcpts"]) == ["bad@lmtp.example.org",
                                      "ok@lmtp.example.org"],
          "LMTP transaction recipients %r (expected both in one "
          "transaction)" % got[0]["rcpts"])
    check(got[0]["accepted"] == ["ok@lmtp.example.org"],
          "LMTP accepted %r" % got[0]["accepted"])
    peers.check_spooled_copy(got[0]["data"], sent, acc, "LMTP copy")
    check_delivered(qid, "lmtp1", "ok@lmtp.example.org",
                    "ok@lmtp.example.org")
    f = peers.delivery_records(env.spool, "failed", qid=qid, target="lmtp1",
                               rcpt="bad@lmtp.example.org")
    check(f, "no failed record for bad@lmtp.example.org; journal:\n%s" %
          peers.journal_dump(env.spool, qid))
    check("550" in f[0]["fields"].get("reply", ""),
          "failed record reply %r lacks the 550" % f[0]["fields"].get("reply"))
    bad_ok = peers.delivery_records(env.spool, "delivered", qid=qid,
                                    rcpt="bad@lmtp.example.org")
    check(not bad_ok, "refused LMTP recipient recorded delivered")
    # DSN to the sender via default_target.
    deadline = time.monotonic() + 15
    while True:
        d = [m for m in S["bounces"].messages()
             if b"bad@lmtp.example.org" in m["data"]]
        if d:
            break
        if time.monotonic() > deadline:
            fail("no DSN for bad@lmtp.example.org at the sender's target; "
                 "journal:\n%s" % peers.journal_dump(env.spool, qid))
        time.sleep(0.1)
    check(d[0]["rcpts"] == ["sender@sender.test"], "DSN recipients %r" %
          d[0]["rcpts"])
    msg = parse_dsn(d[0]["data"])
    check(msg.get_content_type() == "multipart/report",
          "DSN content type %s" % msg.get_content_type())
    b = peers.delivery_records(env.spool, "bounced", qid=qid)
    check(b, "no bounced record for %s" % qid)


def main(runner):
    if not runner.run("setup_peers", setup):
        return
    runner.run("dual_delivery", test_dual)
    runner.run("wave_cloud_only", test_wave)
    runner.run("route_archive", test_route)
    runner.run("split_one_spool", test_split)
    runner.run("mx_delivery", test_mx)
    runner.run("eightbit_smtputf8", test_8bit)
    runner.run("large_message", test_large)
    runner.run("lmtp_per_rcpt", test_lmtp)
    runner.run("stop_daemon", S["env"].daemon.stop)
    for k in ("cloud", "mxpeer", "lmtp", "bounces", "dns", "legacy"):
        if k in S:
            S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
