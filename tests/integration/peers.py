#!/usr/bin/python3
"""
peers.py - real delivery peers for the splitmx delivery tests, all on
127.0.0.1, each started and stopped (by PID) by the test:

  PostfixLegacy  a private Postfix instance (the legacy host: Zimbra's MTA)
                 delivering with virtual(8) into one mbox file per address;
                 mailbox() reads the messages back.
  SmtpPeer       an aiosmtpd server in its own /usr/bin/python3 process (the
                 cloud, a bounce catcher, an LMTP server) that stores the
                 envelope and the exact bytes of each message it accepts;
                 scripted replies per recipient / stage, STARTTLS, SMTPUTF8,
                 8BITMIME on or off, a delay per message.
  Dnsmasq        dnsmasq serving MX and A records, NXDOMAIN for unknown
                 names under local zones, SERVFAIL through a dead upstream.
  SilentListener a TCP port that accepts connections and never says a word.

Run as a script ("peers.py smtpd CONFIG.json") this file is the aiosmtpd
server process itself; the test side never imports aiosmtpd.
"""

import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import time

sys.dont_write_bytecode = True

# ------------------------------------------------------------------ server
# (runs in the peer process; keep it free of lib imports)


def _server_main(cfg_path):
    import asyncio
    import logging
    from aiosmtpd.smtp import SMTP
    from aiosmtpd.lmtp import LMTP

    with open(cfg_path) as f:
        cfg = json.load(f)
    logging.basicConfig(level=logging.INFO if cfg.get("debug") else
                        logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    store = cfg["dir"]
    msgdir = os.path.join(store, "msgs")
    os.makedirs(msgdir, exist_ok=True)
    rules = cfg.get("rules", [])
    for r in rules:
        r["used"] = 0
    events_path = os.path.join(store, "events.jsonl")
    seq = [0]

    def event(**kw):
        kw["t"] = time.time()
        with open(events_path, "a") as f:
            f.write(json.dumps(kw) + "\n")

    def rule_reply(stage, addr):
        """The scripted reply for (stage, addr), or None for the default."""
        a = (addr or "").lower()
        for r in rules:
            if r["stage"] != stage:
                continue
            m = r.get("match", "*").lower()
            if m != "*" and m != a:
                continue
            if r.get("times") is not None and r["used"] >= r["times"]:
                continue
            r["used"] += 1
            return r["reply"]
        return None

    def save(session, envelope, server, accepted):
        seq[0] += 1
        base = os.path.join(msgdir, "%06d" % seq[0])
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        try:
            tls = server._tls_protocol is not None
        except AttributeError:
            tls = False
        meta = {
            "seq": seq[0],
            # aiosmtpd spells the null reverse-path "<>"
            "mail_from": "" if envelope.mail_from == "<>" else
            envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpts": [r for r, _ in envelope.x_rcpts],
            "rcpt_options": [o for _, o in envelope.x_rcpts],
            "accepted": accepted,
            "helo": session.host_name,
            "tls": tls,
            "peer": list(session.peer) if session.peer else None,
            "size": len(envelope.original_content),
            "time": time.time(),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return seq[0]

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname,
                              responses):
            session.host_name = hostname
            event(kind="ehlo", helo=hostname)
            out = []
            for r in responses:
                if not cfg.get("eightbit", True) and "8BITMIME" in r:
                    continue
                out.append(r)
            return out

        async def handle_MAIL(self, server, session, envelope, address,
                              mail_options):
            rep = rule_reply("mail", address)
            if rep and not rep.startswith("2"):
                event(kind="mail", addr=address, reply=rep)
                return rep
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            envelope.x_rcpts = []
            event(kind="mail", addr=address, options=mail_options,
                  reply="250")
            return rep or "250 2.1.0 Ok"

        async def handle_RCPT(self, server, session, envelope, address,
                              rcpt_options):
            rep = rule_reply("rcpt", address)
            event(kind="rcpt", addr=address, options=rcpt_options,
                  reply=rep or "250")
            if rep and not rep.startswith("2"):
                return rep
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            if not hasattr(envelope, "x_rcpts"):
                envelope.x_rcpts = []
            envelope.x_rcpts.append((address, rcpt_options))
            return rep or "250 2.1.5 Ok"

        async def handle_DATA(self, server, session, envelope):
            if cfg.get("delay"):
                await asyncio.sleep(cfg["delay"])
            if not hasattr(envelope, "x_rcpts"):
                envelope.x_rcpts = [(r, []) for r in envelope.rcpt_tos]
            if cfg.get("lmtp"):
                replies, accepted = [], []
                for r in envelope.rcpt_tos:
                    rep = rule_reply("data", r) or "250 2.1.5 Ok"
                    replies.append(rep)
                    if rep.startswith("2"):
                        accepted.append(r)
                n = save(session, envelope, server, accepted) \
                    if accepted else None
                event(kind="data", rcpts=envelope.rcpt_tos, replies=replies,
                      saved=n)
                return "\r\n".join(replies)
            rep = None
            for r in envelope.rcpt_tos:
                rep = rule_reply("data", r)
                if rep:
                    break
            if rep and not rep.startswith("2"):
                event(kind="data", rcpts=envelope.rcpt_tos, reply=rep,
                      saved=None)
                return rep
            n = save(session, envelope, server, list(envelope.rcpt_tos))
            event(kind="data", rcpts=envelope.rcpt_tos, reply="250",
                  saved=n)
            return rep or "250 2.0.0 Ok: stored as %d" % n

    ctx = None
    if cfg.get("tls_cert"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg["tls_cert"], cfg["tls_key"])
    proto = LMTP if cfg.get("lmtp") else SMTP
    handler = Handler()

    def factory():
        return proto(handler, hostname=cfg.get("hostname", "peer.test"),
                     enable_SMTPUTF8=cfg.get("smtputf8", True),
                     decode_data=False, tls_context=ctx,
                     require_starttls=False, data_size_limit=50 * 1024 * 1024)

    async def run():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(factory, "127.0.0.1", cfg["port"],
                                       reuse_address=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        with open(os.path.join(store, "ready"), "w") as f:
            f.write(str(os.getpid()))
        await stop.wait()
        srv.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "smtpd":
        sys.exit(_server_main(sys.argv[2]))
    print("usage: peers.py smtpd CONFIG.json", file=sys.stderr)
    sys.exit(2)

# ------------------------------------------------------------------ test side

import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, fail  # noqa: E402

PYTHON = "/usr/bin/python3"
HOST = lib.HOST
PEERS_PY = os.path.abspath(__file__)


def _popen(argv, log_path, **kw):
    logf = open(log_path, "ab")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=logf, preexec_fn=lib._child_setup, **kw)
    finally:
        logf.close()
    return p


def _stop_pid_proc(proc, timeout=5.0):
    """SIGTERM the Popen'd process by PID, SIGKILL after timeout."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def connect_banner(port, timeout=1.0):
    """Connects, reads the first line; returns it or None."""
    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
    except OSError:
        return None
    try:
        s.settimeout(timeout)
        buf = b""
        while b"\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return buf
    except OSError:
        return None
    finally:
        s.close()


def make_named_cert(directory, cn, names=()):
    """Self-signed cert (also usable as its own CA) with DNS SANs."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    san = ",".join("DNS:" + n for n in ([cn] + list(names)))
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-subj", "/CN=" + cn, "-days", "2",
                        "-addext", "subjectAltName=" + san,
                        "-keyout", key, "-out", cert],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    check(r.returncode == 0, "openssl req failed: %s" % r.stdout.decode(
        "utf-8", "replace"))
    return cert, key


# ------------------------------------------------------------------ aiosmtpd


class SmtpPeer:
    """
    An aiosmtpd server process. rules: list of dicts
      {"stage": "mail"|"rcpt"|"data", "match": addr or "*",
       "reply": "550 5.1.1 no such user", "times": N or None (always)}
    tried in order; the first unused match gives the reply (for "data" in
    SMTP mode: the first rule matching any recipient; in LMTP mode: one
    reply per recipient). Default replies are 250.
    """

    def __init__(self, name, port=None, rules=None, tls_cert=None,
                 tls_key=None, lmtp=False, smtputf8=True, eightbit=True,
                 delay=0.0, hostname=None):
        self.name = name
        self.port = port or lib.free_port()
        self.dir = lib.make_tmpdir("peer-" + name)
        self.cfg = {"dir": self.dir, "port": self.port, "rules": rules or [],
                    "tls_cert": tls_cert, "tls_key": tls_key, "lmtp": lmtp,
                    "smtputf8": smtputf8, "eightbit": eightbit,
                    "delay": delay, "hostname": hostname or name + ".test"}
        self.proc = None
        self.log_path = os.path.join(lib.log_dir(), "peer-%s-%d.log" % (
            name, self.port))
        lib.at_cleanup(self.stop)

    def start(self, timeout=15.0):
        cfgp = os.path.join(self.dir, "config.json")
        with open(cfgp, "w") as f:
            json.dump(self.cfg, f)
        ready = os.path.join(self.dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.proc = _popen([PYTHON, PEERS_PY, "smtpd", cfgp], self.log_path)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                fail("peer %s exited (rc=%s) at start; log:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            if os.path.exists(ready) and connect_banner(self.port):
                return self
            if time.monotonic() > deadline:
                fail("peer %s not ready on port %d after %.0f s" % (
                    self.name, self.port, timeout))
            time.sleep(0.05)

    def stop(self):
        _stop_pid_proc(self.proc)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + l for l in lines[-n:])

    def messages(self):
        """Stored messages, oldest first: dicts with the meta + 'data'."""
        d = os.path.join(self.dir, "msgs")
        out = []
        for n in sorted(lib.list_dir(d)):
            if not n.endswith(".json"):
                continue
            with open(os.path.join(d, n)) as f:
                meta = json.load(f)
            with open(os.path.join(d, n[:-5] + ".eml"), "rb") as f:
                meta["data"] = f.read()
            out.append(meta)
        return out

    def events(self):
        p = os.path.join(self.dir, "events.jsonl")
        out = []
        try:
            with open(p) as f:
                for line in f:
                    out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out

    def wait_messages(self, n, timeout, what=None):
        deadline = time.monotonic() + timeout
        while True:
            m = self.messages()
            if len(m) >= n:
                return m
            if time.monotonic() > deadline:
                fail("peer %s: %d message(s) after %.0f s, expected %d%s" % (
                    self.name, len(m), timeout, n,
                    (" (" + what + ")") if what else ""))
            time.sleep(0.05)


# ------------------------------------------------------------------ postfix


def mbox_form(content):
    """What the virtual(8) agent writes for content: LF lines, From_ quoted."""
    text = content.replace(b"\r\n", b"\n")
    lines = text.split(b"\n")
    lines = [b">" + l if l.startswith(b"From ") else l for l in lines]
    return b"\n".join(lines)


def parse_mbox(data):
    """Messages in an mbox file (From_ line and separator blank removed)."""
    if not data:
        return []
    msgs = []
    cur = None
    prev_blank = True
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else \
            data.split(b"\n"):
        if line.startswith(b"From ") and prev_blank:
            if cur is not None:
                msgs.append(cur)
            cur = []
        elif cur is not None:
            cur.append(line)
        prev_blank = (line == b"")
    if cur is not None:
        msgs.append(cur)
    out = []
    for m in msgs:
        if m and m[-1] == b"":
            m = m[:-1]          # the blank line virtual(8) adds
        out.append(b"\n".join(m) + b"\n")
    return out


def mbox_headers(msg):
    """The header lines (unfolded) of an mbox message, as bytes."""
    head = msg.split(b"\n\n", 1)[0]
    out = []
    for l in head.split(b"\n"):
        if l[:1] in (b" ", b"\t") and out:
            out[-1] += b" " + l.strip()
        else:
            out.append(l)
    return out


class PostfixLegacy:
    """
    A private Postfix instance: smtpd on 127.0.0.1:port, virtual mailbox
    domains (default example.com and legacy.example.com), one mbox file per
    address under mail/, no DNS, no outbound mail. Lives under /var/tmp
    (postlogd only writes under /var) in a directory the postfix user can
    traverse.
    """

    def __init__(self, users, domains=("example.com", "legacy.example.com"),
                 port=None, hostname="legacy.test"):
        self.port = port or lib.free_port()
        self.users = [u.lower() for u in users]
        self.domains = list(domains)
        self.hostname = hostname
        self.dir = tempfile.mkdtemp(prefix="splitmx-pf-", dir="/var/tmp")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.data = os.path.join(self.dir, "data")
        self.logd = os.path.join(self.dir, "log")
        self.mail = os.path.join(self.dir, "mail")
        self.started = False
        self.master_pid = None
        lib.at_cleanup(self._cleanup)
        self._setup()

    def _setup(self):
        import pwd
        pf = pwd.getpwnam("postfix")
        nobody = pwd.getpwnam("nobody")
        for d in (self.etc, self.spool, self.data, self.logd, self.mail):
            os.makedirs(d)
            os.chmod(d, 0o755)
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        os.chown(self.logd, pf.pw_uid, pf.pw_gid)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        main_cf = """\
# written by tests/integration/peers.py: the legacy host of the splitmx tests
compatibility_level = 3.6
queue_directory = %(spool)s
data_directory = %(data)s
myhostname = %(hostname)s
mydomain = legacy.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
virtual_mailbox_domains = %(domains)s
virtual_mailbox_base = %(mail)s
virtual_mailbox_maps = texthash:%(etc)s/vmailbox
virtual_uid_maps = static:%(uid)d
virtual_gid_maps = static:%(gid)d
virtual_mailbox_lock = fcntl
local_transport = error:5.1.1 local delivery disabled
default_transport = error:5.7.1 outbound mail disabled
relay_transport = error:5.7.1 relay disabled
local_recipient_maps =
alias_maps =
alias_database =
biff = no
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
local_header_rewrite_clients =
always_add_missing_headers = no
smtputf8_enable = yes
maillog_file = %(logd)s/maillog
""" % {"spool": self.spool, "data": self.data, "hostname": self.hostname,
            "domains": " ".join(self.domains), "mail": self.mail,
            "etc": self.etc, "uid": self.uid, "gid": self.gid,
            "logd": self.logd}
        master_cf = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:%d inet n - n - 20 smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""" % self.port
        vmail = "".join("%s %s\n" % (u, u) for u in self.users)
        files = {"main.cf": main_cf, "master.cf": master_cf,
                 "vmailbox": vmail}
        old = time.time() - 120
        for n, t in files.items():
            p = os.path.join(self.etc, n)
            lib.write_file(p, t)
            # Postfix waits for recently changed files to settle: backdate.
            os.utime(p, (old, old))
        r = subprocess.run(["postconf", "-c", self.etc, "-n"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        check(r.returncode == 0, "postconf -c %s failed: %s" % (
            self.etc, r.stdout.decode("utf-8", "replace")))

    def _master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"master" not in f.read():
                    return None
        except OSError:
            return None
        return pid

    def start(self, timeout=30.0):
        r = subprocess.run(["postfix", "-c", self.etc, "start"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        check(r.returncode == 0, "postfix -c %s start failed (%d): %s" % (
            self.etc, r.returncode, out))
        self.started = True
        deadline = time.monotonic() + timeout
        while True:
            self.master_pid = self._master_pid()
            b = connect_banner(self.port)
            if self.master_pid and b and b.startswith(b"220"):
                return self
            if time.monotonic() > deadline:
                fail("postfix legacy not answering on %d after %.0f s; "
                     "maillog:\n%s" % (self.port, timeout, self.log_tail()))
            time.sleep(0.1)

    def stop(self):
        if not self.started:
            return
        pid = self._master_pid() or self.master_pid
        subprocess.run(["postfix", "-c", self.etc, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        if pid:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        break
                    time.sleep(1)
        self.started = False

    def _cleanup(self):
        try:
            self.stop()
        finally:
            if lib._FAILED or os.environ.get("SPLITMX_TEST_KEEP"):
                print("kept postfix instance in %s" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(os.path.join(self.logd, "maillog"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        return "\n".join("    | " + l
                         for l in self.log_text().splitlines()[-n:])

    def mailbox(self, addr):
        """Messages (LF lines, mbox-quoted) delivered to addr, oldest first."""
        p = os.path.join(self.mail, addr.lower())
        try:
            with open(p, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return parse_mbox(data)

    def wait_mailbox(self, addr, n, timeout, what=None):
        deadline = time.monotonic() + timeout
        while True:
            m = self.mailbox(addr)
            if len(m) >= n:
                return m
            if time.monotonic() > deadline:
                fail("legacy mailbox %s: %d message(s) after %.0f s, "
                     "expected %d%s; postfix log:\n%s" % (
                         addr, len(m), timeout, n,
                         (" (" + what + ")") if what else "",
                         self.log_tail(15)))
            time.sleep(0.05)


def check_mbox_tail(msg, content, what):
    """msg (from PostfixLegacy.mailbox) ends with content as delivered."""
    exp = mbox_form(content)
    if msg.endswith(exp):
        return msg[:len(msg) - len(exp)]
    k = 0
    while k < min(len(msg), len(exp)) and msg[-1 - k] == exp[-1 - k]:
        k += 1
    fail("%s: legacy mailbox copy differs from the expected content %d "
         "octets from the end: got ...%r expected ...%r" % (
             what, k, msg[max(0, len(msg) - k - 60):len(msg) - k + 1],
             exp[max(0, len(exp) - k - 60):len(exp) - k + 1]))


# ------------------------------------------------------------------ dnsmasq


def dns_query(port, name, qtype="A", timeout=2.0):
    """One UDP query to 127.0.0.1:port; returns (rcode, ancount) or None."""
    types = {"A": 1, "MX": 15, "AAAA": 28, "TXT": 16}
    qid = int.from_bytes(os.urandom(2), "big")
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        pkt += bytes([len(label)]) + label.encode()
    pkt += b"\0" + struct.pack(">HH", types[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (HOST, port))
        data, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
    if rid != qid:
        return None
    return flags & 0xF, an


class ServfailDns:
    """A UDP DNS server thread that answers SERVFAIL to every query."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.queries = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        lib.at_cleanup(self.stop)

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 12:
                continue
            self.queries += 1
            qid, flags = struct.unpack(">HH", data[:4])
            # QR, opcode and RD copied, RA set, rcode 2; question echoed.
            rflags = 0x8000 | (flags & 0x7900) | 0x0080 | 2
            resp = struct.pack(">HHHHHH", qid, rflags, 1, 0, 0, 0) + \
                data[12:]
            try:
                self.sock.sendto(resp, addr)
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self.thread.join(5)
        try:
            self.sock.close()
        except OSError:
            pass


class Dnsmasq:
    """
    dnsmasq on 127.0.0.1:port (UDP and TCP). mx: list of (domain, host,
    pref); hosts: list of (name, ip); local zones answer NXDOMAIN for
    unknown names; servfail zones are forwarded to a ServfailDns upstream
    (dnsmasq passes its SERVFAIL on).
    """

    def __init__(self, mx=(), hosts=(), local=("test", "example.net"),
                 servfail=("servfail.test",), port=None, extra=()):
        self.port = port or lib.free_port()
        self.dir = lib.make_tmpdir("dnsmasq")
        self.upstream = ServfailDns() if servfail else None
        self.log_path = os.path.join(lib.log_dir(), "dnsmasq-%d.log" %
                                     self.port)
        args = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                "--port=%d" % self.port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--user=root",
                "--pid-file=" + os.path.join(self.dir, "pid"),
                "--log-queries", "--cache-size=0"]
        for d, h, p in mx:
            args.append("--mx-host=%s,%s,%d" % (d, h, p))
        for n, ip in hosts:
            args.append("--host-record=%s,%s" % (n, ip))
        for z in servfail:
            args.append("--server=/%s/127.0.0.1#%d" % (z,
                                                       self.upstream.port))
        for z in local:
            args.append("--local=/%s/" % z)
        args += list(extra)
        self.args = args
        self.proc = None
        lib.at_cleanup(self.stop)

    def start(self, probe=None, timeout=10.0):
        self.proc = _popen(self.args, self.log_path)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                fail("dnsmasq exited (rc=%s) at start; log:\n%s" % (
                    self.proc.returncode, open(self.log_path).read()[-2000:]))
            if dns_query(self.port, probe or "probe.test", "A", 0.3):
                return self
            if time.monotonic() > deadline:
                fail("dnsmasq not answering on port %d" % self.port)
            time.sleep(0.05)

    def stop(self):
        _stop_pid_proc(self.proc)


# ------------------------------------------------------------------ silent


class SilentListener:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self, port=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port or 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.conns = []
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        lib.at_cleanup(self.stop)

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)

    def stop(self):
        self._stop.set()
        self.thread.join(5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------ journal


def strip_angle(v):
    if v and v.startswith("<") and v.endswith(">"):
        return v[1:-1]
    return v


def delivery_records(spool, kind=None, qid=None, target=None, rcpt=None):
    """Journal records of kind (delivered/deferred/failed/...) filtered."""
    out = []
    for r in lib.read_journal(spool).records:
        f = r["fields"]
        if kind and r["type"] != kind:
            continue
        # The duplicate index's bookkeeping, not a delivery state.
        if not kind and r["type"] in ("claimed", "released"):
            continue
        if qid and f.get("id") != qid:
            continue
        if target and f.get("target") != target:
            continue
        if rcpt and strip_angle(f.get("rcpt", "")).lower() != rcpt.lower():
            continue
        out.append(r)
    return out


def journal_dump(spool, qid=None, n=30):
    lines = []
    for r in lib.read_journal(spool).records:
        if qid and r["fields"].get("id") != qid:
            continue
        lines.append("    j| " + r["raw"].decode("utf-8", "replace")[:300])
    return "\n".join(lines[-n:])


def wait_journal(spool, timeout, what, **filt):
    deadline = time.monotonic() + timeout
    while True:
        recs = delivery_records(spool, **filt)
        if recs:
            return recs
        if time.monotonic() > deadline:
            fail("no journal record %s (%s) after %.0f s; journal:\n%s" % (
                filt, what, timeout, journal_dump(spool, filt.get("qid"))))
        time.sleep(0.05)


def wait_queue_gone(spool, qid, timeout):
    p = os.path.join(lib.queue_dir(spool), qid)
    deadline = time.monotonic() + timeout
    while os.path.exists(p):
        if time.monotonic() > deadline:
            fail("queue/%s still present after %.0f s; journal:\n%s" % (
                qid, timeout, journal_dump(spool, qid)))
        time.sleep(0.05)


def wait_queue_empty(spool, timeout):
    deadline = time.monotonic() + timeout
    while True:
        q = lib.list_dir(lib.queue_dir(spool))
        if not q:
            return
        if time.monotonic() > deadline:
            fail("queue/ still holds %d file(s) after %.0f s: %s; journal "
                 "tail:\n%s" % (len(q), timeout, q[:5],
                                journal_dump(spool, None, 15)))
        time.sleep(0.1)


def accepted_record(spool, qid):
    for r in lib.read_journal(spool).of("accepted"):
        if r["fields"].get("id") == qid:
            return r["fields"]
    fail("no accepted journal record for %s" % qid)


def strip_auth_fields(data, what):
    """
    Removes the Authentication-Results and Received-SPF fields splitmxd
    sends in front of the spooled content (computed after arrival, kept
    beside the content) and checks they are there and well-formed.
    """
    fields = []
    rest = data
    while rest.startswith((b"Authentication-Results:", b"Received-SPF:")):
        end = 0
        while True:
            nl = rest.index(b"\r\n", end)
            end = nl + 2
            if not rest[end:end + 1] in (b" ", b"\t"):
                break
        fields.append(rest[:end])
        rest = rest[end:]
    names = [f.split(b":", 1)[0] for f in fields]
    check(names == [b"Authentication-Results", b"Received-SPF"],
          "%s: expected Authentication-Results then Received-SPF in front "
          "of the content, got %r" % (what, [f[:60] for f in fields]))
    check(re.match(rb"Authentication-Results: [A-Za-z0-9.-]+;", fields[0]),
          "%s: malformed Authentication-Results: %r" % (what, fields[0]))
    return rest


def check_spooled_copy(data, sent, acc, what):
    """
    data (delivered bytes) == spooled content: our Received header + sent,
    and the size/sha256 of the journal's accepted record.
    """
    import hashlib
    data = strip_auth_fields(data, what)
    if not data.endswith(sent):
        k = 0
        while k < min(len(data), len(sent)) and data[-1 - k] == sent[-1 - k]:
            k += 1
        fail("%s: delivered bytes do not end with the bytes the client sent;"
             " differ %d octets from the end: got ...%r sent ...%r" % (
                 what, k, data[max(0, len(data) - k - 60):len(data) - k + 1],
                 sent[max(0, len(sent) - k - 60):len(sent) - k + 1]))
    pre = data[:len(data) - len(sent)]
    check(pre.startswith(b"Received: "), "%s: delivered copy does not start "
          "with our Received header: %r" % (what, pre[:100]))
    check(str(len(data)) == acc.get("size"), "%s: delivered %d octets, "
          "accepted record says size=%s" % (what, len(data), acc.get("size")))
    h = hashlib.sha256(data).hexdigest()
    check(h == (acc.get("sha256") or "").lower(), "%s: sha256 of delivered "
          "copy %s != accepted sha256 %s" % (what, h, acc.get("sha256")))
    return pre


# ------------------------------------------------------------------ sending


def smtp_send(port, sender, rcpts, content, mail_options=(), timeout=30):
    """
    One transaction through smtplib (which dot-stuffs); checks every reply
    and returns the queue id from "250 2.0.0 Ok: queued as ID".
    """
    import smtplib
    with smtplib.SMTP(HOST, port, timeout=timeout) as s:
        code, msg = s.ehlo("client.test")
        check(code == 250, "EHLO: %d %r" % (code, msg))
        code, msg = s.mail(sender, list(mail_options))
        check(code == 250, "MAIL FROM:<%s>: %d %r" % (sender, code, msg))
        for r in rcpts:
            code, msg = s.rcpt(r)
            check(code == 250, "RCPT TO:<%s>: %d %r" % (r, code, msg))
        code, msg = s.data(content)
        m = lib.QUEUED_RE.match(msg.decode("utf-8", "replace"))
        check(code == 250 and m, "DATA: expected 250 queued as ID, got %d "
              "%r" % (code, msg))
    return m.group(1)


def queue_conf(retry_initial="1s", retry_max="2s", lifetime="30s"):
    return "queue { retry_initial %s; retry_max %s; lifetime %s; " \
        "delay_warning 0 }" % (retry_initial, retry_max, lifetime)


def test_message(subject, marker=None, body=None, sender="sender@client.test",
                 rcpt="alice@example.com"):
    """
    A message whose body exercises transparency: lines that start with a
    dot, a line that is a lone dot, a From_ line, trailing spaces, a tab.
    """
    marker = marker or os.urandom(8).hex()
    if body is None:
        body = (b"first line\r\n"
                b".a line starting with a dot\r\n"
                b".\r\n"
                b"..two dots\r\n"
                b"From the legacy quoting rule\r\n"
                b"trailing spaces   \r\n"
                b"\ttab first\r\n"
                b"marker " + marker.encode() + b"\r\n") + \
            lib.random_body(6000)
    hdr = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
           "Date: Mon, 23 Nov 2026 01:00:00 +0000\r\n"
           "Message-ID: <%s@client.test>\r\n"
           "X-Folded: one\r\n two\r\n" % (sender, rcpt, subject, marker)
           ).encode()
    return hdr + b"\r\n" + body
