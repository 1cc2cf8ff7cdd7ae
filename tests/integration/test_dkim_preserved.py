#!/usr/bin/python3
"""
test_dkim_preserved.py - bytes in are bytes out: DKIM signatures made by
the sender still verify at both targets (DESIGN rule 6, issue 4).

Messages are signed with python3-dkim (dkimpy) using a key made here with
openssl, sent to splitmxd with DATA and with BDAT, dual-delivered to two
aiosmtpd targets (legacy, cloud), and each delivered copy is verified with
dkimpy against the same public key. The message shapes: relaxed/relaxed,
simple/simple, relaxed/simple, an 8-bit body (BODY=8BITMIME), a 990-octet
line, folded headers, 40 extra folded headers, lines starting with dots,
and BDAT in two chunks split inside a line. A tampered copy must fail
verification (so the check can fail). The cloud target also rewrites the
recipient: the envelope changes, the signed bytes do not.
"""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dkim  # noqa: E402  (Debian's python3-dkim)
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

S = {}
SENDER = "news@signer.test"


def setup():
    d = lib.make_tmpdir("dkimkey")
    key = os.path.join(d, "key.pem")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", key,
                    "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout",
                          "-outform", "DER"], check=True,
                         capture_output=True).stdout
    import base64
    S["priv"] = open(key, "rb").read()
    S["txt"] = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)
    txt = S["txt"].decode()
    parts = [txt[i:i + 200] for i in range(0, len(txt), 200)]
    S["dns"] = peers.Dnsmasq(local=("test",), extra=[
        "--txt-record=sel._domainkey.signer.test," + ",".join(parts)]
    ).start()
    S["legacy"] = peers.SmtpPeer("legacy").start()
    S["cloud"] = peers.SmtpPeer("cloud").start()
    extra = "\n".join([
        peers.queue_conf(),
        "target legacy { type smtp; host 127.0.0.1:%d; tls none }" %
        S["legacy"].port,
        "target cloud { type smtp; host 127.0.0.1:%d; tls none; "
        "rewrite @example.com @example.mail.onmicrosoft.com }" %
        S["cloud"].port,
        "domain example.com { targets legacy cloud }",
        "duplicates no",
        "resolvers 127.0.0.1:%d" % S["dns"].port,
        "authserv_id mx.splitmx.test",
    ])
    S["env"] = lib.Env("dkim", domains=[], extra=extra)


def dnsfunc(name, timeout=5):
    if name in (b"sel._domainkey.signer.test.",
                b"sel._domainkey.signer.test"):
        return S["txt"]
    return None


def signed(tag, canon, body, extra_headers=b""):
    hdr = (b"From: News <news@signer.test>\r\n"
           b"To: Alice <alice@example.com>\r\n"
           b"Subject: dkim " + tag.encode() + b"\r\n"
           b" folded subject continuation\r\n"
           b"Date: Mon, 23 Nov 2026 01:00:00 +0000\r\n"
           b"Message-ID: <" + tag.encode() + b"@signer.test>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n" + extra_headers)
    msg = hdr + b"\r\n" + body
    sig = dkim.sign(msg, b"sel", b"signer.test", S["priv"],
                    canonicalize=canon,
                    include_headers=[b"from", b"to", b"subject", b"date",
                                     b"message-id", b"content-type"])
    return sig + msg


def delivered(peer, tag):
    out = [m["data"] for m in peer.messages()
           if (b"<" + tag.encode() + b"@signer.test>") in m["data"]]
    return out


def auth_results(data):
    """Our Authentication-Results field at the top, unfolded."""
    first = data.split(b"\r\n\r\n", 1)[0]
    m = re.match(rb"Authentication-Results: ((?:[^\r]|\r\n[ \t])*)\r\n",
                 first)
    check(m is not None, "no Authentication-Results at the top: %r" %
          first[:120])
    return re.sub(rb"\r\n[ \t]+", b" ", m.group(1)).decode()


def verify_both(tag, dkim_result="pass"):
    for name in ("legacy", "cloud"):
        copies = delivered(S[name], tag)
        check(len(copies) == 1, "%s: %d copies of %s" % (name, len(copies),
                                                        tag))
        ar = auth_results(copies[0])
        check(ar.startswith("mx.splitmx.test;"), "authserv-id: %s" % ar)
        check(("dkim=%s" % dkim_result) in ar and
              "header.d=signer.test" in ar,
              "%s: A-R does not say dkim=%s for signer.test: %s" % (
                  name, dkim_result, ar))
        check("spf=" in ar, "no spf result in %s" % ar)
        if dkim_result != "pass":
            # The target's verifier agrees: the signature is broken.
            check(not dkim.verify(copies[0], dnsfunc=dnsfunc),
                  "%s: a message changed after signing verified" % name)
            continue
        check(dkim.verify(copies[0], dnsfunc=dnsfunc),
              "%s: DKIM signature does not verify on the delivered copy "
              "of %s" % (name, tag))
    if dkim_result != "pass":
        return
    # The check itself can fail: one changed body octet breaks it.
    c = delivered(S["cloud"], tag)[0]
    i = c.rindex(b"\r\n\r\n")
    tampered = c[:i + 4] + b"X" + c[i + 5:] if len(c) > i + 5 else c + b"X"
    check(not dkim.verify(tampered, dnsfunc=dnsfunc),
          "a tampered copy still verified: the check proves nothing")


def body_plain():
    return (b"Hello,\r\n.leading dot line\r\n..two\r\n.\r\n"
            b"trailing space   \r\n\ttab\r\n" + b"x" * 990 + b"\r\n"
            b"last line\r\n")


CASES = [
    ("rr", (b"relaxed", b"relaxed"), body_plain(), b"", ""),
    ("ss", (b"simple", b"simple"), body_plain(), b"", ""),
    ("rs", (b"relaxed", b"simple"), body_plain(), b"", ""),
    ("8bit", (b"relaxed", b"relaxed"),
     "Grüße aus Köln — ünïcödé\r\n".encode() * 20, b"",
     "BODY=8BITMIME"),
    ("manyhdr", (b"simple", b"simple"), body_plain(),
     b"".join(b"X-Extra-%d: value %d\r\n  folded %d\r\n" % (i, i, i)
              for i in range(40)), ""),
]


def send_data(tag, canon, body, hdrs, params):
    m = signed(tag, canon, body, hdrs)
    opts = [params] if params else []
    qid = peers.smtp_send(S["env"].port, SENDER, ["alice@example.com"], m,
                          mail_options=opts)
    peers.wait_queue_gone(S["env"].spool, qid, 20)


def make_case(case):
    tag, canon, body, hdrs, params = case

    def run():
        send_data("data-" + tag, canon, body, hdrs, params)
        verify_both("data-" + tag)
    return run


def test_bdat():
    tag = "bdat-ss"
    m = signed(tag, (b"simple", b"simple"), body_plain())
    c = lib.Client(S["env"].port)
    c.start("client.test")
    lib.expect_reply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
    lib.expect_reply(c.cmd("RCPT TO:<alice@example.com>"), 250)
    half = len(m) // 2 + 1          # split inside a line
    c.send(b"BDAT %d\r\n" % half + m[:half])
    lib.expect_reply(c.read_reply(), 250, "2.0.0", "BDAT chunk")
    rest = m[half:]
    c.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
    r = c.read_reply()
    lib.expect_reply(r, 250, "2.0.0", "BDAT LAST")
    c.close()
    peers.wait_queue_gone(S["env"].spool, r.queue_id(), 20)
    verify_both(tag)


def test_broken_signature():
    """Changed after signing: recorded as dkim=fail, delivered anyway."""
    tag = "broken"
    m = signed(tag, (b"relaxed", b"relaxed"), body_plain())
    m = m.replace(b"Hello,", b"Hullo,")
    qid = peers.smtp_send(S["env"].port, SENDER, ["alice@example.com"], m)
    peers.wait_queue_gone(S["env"].spool, qid, 20)
    verify_both(tag, dkim_result="fail")


def main(runner):
    if not runner.run("setup", setup):
        return
    for case in CASES:
        runner.run("data_" + case[0], make_case(case))
    runner.run("bdat_simple", test_bdat)
    runner.run("broken_signature_recorded", test_broken_signature)
    runner.run("stop", S["env"].daemon.stop)
    for k in ("legacy", "cloud", "dns"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
