#!/usr/bin/python3
"""aiosmtpd_capture.py - an SMTP/LMTP peer for the smtp_client unit tests.

Stores every accepted message in --dir as <sender>.<n>.eml (the exact
content bytes, after dot-unstuffing) and <sender>.<n>.env (the envelope as
"key: value" lines), .env written last. Appends one line per connection to
conn.log and per QUIT to quit.log.

Behaviour switches:
  --reply ADDR=TEXT       RCPT reply for ADDR (e.g. "a@x=550 5.1.1 no")
  --mail-reply ADDR=TEXT  MAIL reply for sender ADDR
  --data-reply ADDR=TEXT  after DATA: LMTP reply for ADDR; SMTP: the reply
                          when ADDR is among the recipients
  --stall ADDR            never answer RCPT for ADDR
  --drop ADDR             close the connection at RCPT for ADDR
  --dsn                   offer DSN (NOTIFY/ORCPT/RET/ENVID recorded)
  --smtputf8              offer SMTPUTF8
  --size N                offer SIZE N and enforce it (0: no SIZE)
  --tls-cert/--tls-key    offer STARTTLS with this certificate
  --starttls-broken       answer 220 to STARTTLS, then send plaintext junk
  --lmtp                  speak LMTP; --unix PATH listens on a UNIX socket
The .env notes "pipelined: 1" when commands were already queued behind
MAIL, i.e. the client sent MAIL, RCPT and DATA as one group.
The EHLO/LHLO argument switches per-session behaviour, so one instance
serves many tests: a name containing "noehlo" gets 502 to EHLO, "nopipe"
no PIPELINING, "no8bit" no 8BITMIME.
"""
import argparse
import asyncio
import collections
import os
import re
import signal
import ssl
import sys

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, syntax

DSN_PARAMS = ("NOTIFY=", "ORCPT=", "RET=", "ENVID=")


def parse_map(items):
    out = {}
    for item in items or []:
        addr, _, text = item.partition("=")
        out[addr.lower()] = text
    return out


def strip_dsn(arg):
    """Removes DSN parameters from a MAIL/RCPT argument; returns both."""
    keep, dsn = [], []
    for tok in arg.split(" "):
        if tok.upper().startswith(DSN_PARAMS):
            dsn.append(tok)
        else:
            keep.append(tok)
    return " ".join(keep), dsn


def make_class(base, opts):
    class Capture(base):
        line_length_limit = 1 << 20

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.command_size_limits = collections.defaultdict(lambda: 4096)

        def connection_made(self, transport):
            with open(os.path.join(opts.dir, "conn.log"), "a") as f:
                f.write("connect\n")
            super().connection_made(transport)

        @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
        async def smtp_MAIL(self, arg):
            dsn = []
            if opts.dsn and arg:
                arg, dsn = strip_dsn(arg)
            self.envelope.dsn_mail = dsn
            # Commands already waiting behind MAIL: the client pipelines.
            self.envelope.pipelined = bool(self._reader._buffer)
            await super().smtp_MAIL(arg)

        @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
        async def smtp_RCPT(self, arg):
            dsn = []
            if opts.dsn and arg:
                arg, dsn = strip_dsn(arg)
            if not hasattr(self.envelope, "dsn_rcpt"):
                self.envelope.dsn_rcpt = []
            self.envelope.dsn_rcpt.append(" ".join(dsn))
            await super().smtp_RCPT(arg)

        if opts.starttls_broken:
            @syntax("STARTTLS", when="tls_context")
            async def smtp_STARTTLS(self, arg):
                await self.push("220 Ready to start TLS")
                self.transport.write(b"this is not a TLS record\r\n" * 8)

    return Capture


class Handler:
    def __init__(self, opts):
        self.opts = opts
        self.replies = parse_map(opts.reply)
        self.mail_replies = parse_map(opts.mail_reply)
        self.data_replies = parse_map(opts.data_reply)
        self.stall = {a.lower() for a in opts.stall or []}
        self.drop = {a.lower() for a in opts.drop or []}
        self.counts = collections.Counter()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if "noehlo" in hostname:
            return ["502 5.5.1 EHLO not implemented here"]
        out = [r for r in responses if not r.endswith("HELP")]
        if "no8bit" in hostname:
            out = [r for r in out if "8BITMIME" not in r]
        if "nopipe" not in hostname:
            out.append("250-PIPELINING")
        if self.opts.dsn:
            out.append("250-DSN")
        out.append("250 HELP")
        return out

    async def handle_MAIL(self, server, session, envelope, address, options):
        text = self.mail_replies.get(address.lower())
        if text:
            return text
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.lower() in self.stall:
            await asyncio.sleep(3600)
        if address.lower() in self.drop:
            server.transport.close()
            await asyncio.sleep(3600)
        text = self.replies.get(address.lower())
        if text:
            return text
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_QUIT(self, server, session, envelope):
        with open(os.path.join(self.opts.dir, "quit.log"), "a") as f:
            f.write("quit\n")
        return "221 2.0.0 Bye"

    async def handle_DATA(self, server, session, envelope):
        sender = envelope.mail_from or "null"
        key = re.sub(r"[^A-Za-z0-9@._-]", "_", sender)
        self.counts[key] += 1
        base = os.path.join(self.opts.dir, "%s.%d" % (key, self.counts[key]))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.replace(base + ".eml.tmp", base + ".eml")
        lines = ["from: %s" % envelope.mail_from]
        lines += ["rcpt: %s" % r for r in envelope.rcpt_tos]
        lines.append("mail_options: %s" % " ".join(envelope.mail_options))
        lines.append("dsn_mail: %s" % " ".join(getattr(envelope, "dsn_mail", [])))
        for d in getattr(envelope, "dsn_rcpt", []):
            lines.append("dsn_rcpt: %s" % d)
        lines.append("pipelined: %d" % (1 if getattr(envelope, "pipelined", False) else 0))
        lines.append("tls: %d" % (1 if server._tls_protocol else 0))
        lines.append("helo: %s" % session.host_name)
        lines.append("smtputf8: %d" % (1 if envelope.smtp_utf8 else 0))
        with open(base + ".env.tmp", "w", encoding="utf-8", errors="replace") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(base + ".env.tmp", base + ".env")
        if self.opts.lmtp:
            out = []
            for r in envelope.rcpt_tos:
                out.append(self.data_replies.get(r.lower(), "250 2.0.0 delivered to %s" % r))
            return "\r\n".join(out)
        for r in envelope.rcpt_tos:
            if r.lower() in self.data_replies:
                return self.data_replies[r.lower()]
        return "250 2.0.0 OK queued as %s.%d" % (key, self.counts[key])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--lmtp", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--starttls-broken", action="store_true")
    ap.add_argument("--dsn", action="store_true")
    ap.add_argument("--smtputf8", action="store_true")
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--reply", action="append")
    ap.add_argument("--mail-reply", action="append")
    ap.add_argument("--data-reply", action="append")
    ap.add_argument("--stall", action="append")
    ap.add_argument("--drop", action="append")
    opts = ap.parse_args()

    tls = None
    if opts.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(opts.tls_cert, opts.tls_key)
    handler = Handler(opts)
    cls = make_class(LMTP if opts.lmtp else SMTP, opts)

    def factory():
        return cls(handler, hostname="capture.test", tls_context=tls,
                   enable_SMTPUTF8=opts.smtputf8, decode_data=False,
                   data_size_limit=opts.size or None, timeout=60)

    async def run():
        loop = asyncio.get_running_loop()
        if opts.unix:
            server = await loop.create_unix_server(factory, opts.unix)
        else:
            server = await loop.create_server(factory, opts.host, opts.port)
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set_result, None)
        await stop
        server.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
