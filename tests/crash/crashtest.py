#!/usr/bin/python3
"""
crashtest.py - the crash campaign (issue 8 item 7): splitmxd dual-delivering
to two real targets under load, killed with SIGKILL at chosen moments and
restarted on the same spool, with target faults in between; at the end the
client ledger is compared with what each target received.

  make crashtest CYCLES=N          (or: tests/crash/crashtest.py --cycles N)

Peers, all on 127.0.0.1, started and stopped (by PID) here:
  legacy   a private Postfix (peers.PostfixLegacy), virtual(8) into mboxes
  cloud    an aiosmtpd (peers.SmtpPeer) storing the exact bytes
  proxies  one asyncio fault proxy in front of each target (this process):
           it follows the SMTP dialogue splitmxd holds with the target, logs
           every transaction (Message-ID, recipients, when the final dot went
           through, what became of the target's reply) and, when told,
           misbehaves: "reset" (RST on both sides in the middle of the
           message data) or "blackhole" (passes the data and the final dot
           to the target, then swallows the target's 250 and goes silent,
           so splitmxd's timeout_data fires: the ambiguous case).

Each cycle starts splitmxd (the same spool every time), runs client threads
that record every "250 queued as ID" with the message's unique Message-ID
and recipients, aims a kill -9 at one phase and logs it:
  data      while a client streams message data (slowed to 16 KiB chunks)
  commit    right after a client sent the final dot (group commit)
  dedup     right after a client got its 250 (the queue loads the message
            and writes its duplicate-index claims then)
  delivery  while a target receives a message from splitmxd
  startup   right after a restart (recovery done; the queue loading the
            spooled messages, claiming them, starting deliveries)
with a random delay drawn per phase. Every few cycles one target gets a
fault for a while. After the last cycle splitmxd is started once more, the
queue drains (bounded wait) and the comparison prints one line:

  cycles=N accepted=A lost=L duplicates=D corrupt=C

(per-target detail lines before it). lost = an acknowledged (Message-ID,
recipient) missing at one of its targets; duplicates = extra copies (their
causes are listed: a swallowed reply, a kill between two copies, or
"unexplained"); corrupt = a copy whose bytes differ from what was sent
(after removing the trace fields splitmxd and Postfix prepend), a copy of a
message whose final dot was never sent, a copy nobody sent, or a file in
spool/corrupt/. Exit status 1 when lost or corrupt is not 0 (or the run
itself failed), else 0.
"""

import argparse
import asyncio
import calendar
import os
import random
import re
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
DOMAIN = "example.com"
SENDER = "loader@client.test"
PHASES = ("data", "commit", "dedup", "delivery", "startup")
# Random kill delay (seconds) after each phase's trigger.
PHASE_DELAY = {"data": (0.0, 0.006), "commit": (0.0, 0.004),
               "dedup": (0.0, 0.008), "delivery": (0.0, 0.030),
               "startup": (0.0, 0.300)}
TARGETS = ("legacy", "cloud")
MSGID_RE = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.M | re.I)
TRACE_RE = re.compile(rb"^X-Splitmx-Trace: node=[^;\s]+; id=([0-9A-Z]{16})"
                      rb"\r?$", re.M)
RECEIVED_RE = re.compile(rb"by \S+ \(splitmx\) with \S+ id ([0-9A-Z]{16})")
# Fields a target copy may carry in front of the bytes the client sent:
# splitmxd's (Authentication-Results and Received-SPF from the prepend
# line, then Received and X-Splitmx-Trace, see smtp_server_data.c) and
# those Postfix's virtual(8) and cleanup add.
TRACE_FIELDS = {b"authentication-results", b"received-spf", b"received",
                b"x-splitmx-trace", b"return-path", b"delivered-to",
                b"x-original-to"}


def log(msg):
    print(msg)
    sys.stdout.flush()


# ------------------------------------------------------------ triggers

class Triggers:
    """One armed phase at a time; fire() from any thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.kind = None
        self.ev = threading.Event()
        self.what = None

    def arm(self, kind):
        with self.lock:
            self.kind = kind
            self.what = None
            self.ev.clear()

    def disarm(self):
        with self.lock:
            self.kind = None

    def fire(self, kind, what=""):
        if self.kind != kind:
            return
        with self.lock:
            if self.kind == kind and not self.ev.is_set():
                self.what = what
                self.ev.set()

    def wait(self, timeout):
        return self.ev.wait(timeout)


TRIG = Triggers()


# ------------------------------------------------------------ fault proxy

class Tx:
    """One transaction seen by a proxy."""

    def __init__(self, target, conn, rcpts):
        self.target = target
        self.conn = conn
        self.rcpts = list(rcpts)
        self.msgid = None
        self.t_start = time.time()
        self.t_dot = None
        self.reply = None
        self.t_reply = None
        self.fate = "open"      # forwarded swallowed reset lost aborted
        self.head = bytearray()


class ConnState:
    def __init__(self):
        self.pending = [("BANNER", None)]   # commands awaiting a reply
        self.mode = "cmd"
        self.cbuf = b""
        self.sbuf = b""
        self.rcpts = []         # accepted in this transaction
        self.tx = None
        self.tail = b""
        self.fault = None
        self.black = False
        self.dead = False
        self.txs = []


class FaultProxy:
    """TCP proxy 127.0.0.1:port -> upstream that follows SMTP (see top)."""

    def __init__(self, name, upstream):
        self.name = name
        self.upstream = upstream
        self.port = lib.free_port()
        self.lock = threading.Lock()
        self.txs = []
        self.fault = None       # (kind, until monotonic)
        self.nconn = 0
        self.faulted = {"reset": 0, "blackhole": 0}

    def set_fault(self, kind, duration):
        with self.lock:
            self.fault = (kind, time.monotonic() + duration)

    def clear_fault(self):
        with self.lock:
            self.fault = None

    def current_fault(self):
        with self.lock:
            if self.fault and time.monotonic() < self.fault[1]:
                return self.fault[0]
            return None

    async def serve(self):
        self.server = await asyncio.start_server(self.handle, lib.HOST,
                                                 self.port,
                                                 reuse_address=True)

    @staticmethod
    def _rst(writer):
        try:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        except (OSError, AttributeError):
            pass
        writer.transport.abort()

    async def handle(self, creader, cwriter):
        self.nconn += 1
        conn = self.nconn
        try:
            sreader, swriter = await asyncio.wait_for(
                asyncio.open_connection(lib.HOST, self.upstream), 10)
        except (OSError, asyncio.TimeoutError):
            self._rst(cwriter)
            return
        st = ConnState()
        t1 = asyncio.ensure_future(self.c2s(st, conn, creader, swriter,
                                            cwriter))
        t2 = asyncio.ensure_future(self.s2c(st, conn, sreader, cwriter))
        try:
            await asyncio.wait([t1, t2], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (t1, t2):
                t.cancel()
            if not st.dead:
                for w in (swriter, cwriter):
                    try:
                        w.close()
                    except Exception:
                        pass
            with self.lock:
                for tx in st.txs:
                    if tx.fate == "open":
                        tx.fate = "lost" if tx.t_dot else "aborted"

    async def c2s(self, st, conn, reader, swriter, cwriter):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if st.black:
                continue
            out = bytearray()
            i = 0
            while i < len(data):
                if st.mode == "data":
                    seg = data[i:]
                    buf = st.tail + seg
                    k = buf.find(b"\r\n.\r\n")
                    if k < 0:
                        chunk, end = seg, False
                    else:
                        chunk = seg[:k + 5 - len(st.tail)]
                        end = True
                    tx = st.tx
                    if st.fault == "reset":
                        # Part of the data, never the final dot, then RST.
                        keep = len(chunk) // 2
                        if end:
                            keep = min(keep, max(0, len(chunk) - 5))
                        out += chunk[:keep]
                        swriter.write(bytes(out))
                        try:
                            await asyncio.wait_for(swriter.drain(), 2)
                        except (OSError, asyncio.TimeoutError):
                            pass
                        with self.lock:
                            tx.fate = "reset"
                            self.faulted["reset"] += 1
                        st.dead = True
                        self._rst(swriter)
                        self._rst(cwriter)
                        return
                    if len(tx.head) < 16384:
                        tx.head += chunk[:16384 - len(tx.head)]
                    st.tail = (st.tail + chunk)[-4:]
                    out += chunk
                    i += len(chunk)
                    if end:
                        st.mode = "cmd"
                        st.pending.append(("DATAEND", None))
                        m = MSGID_RE.search(bytes(tx.head))
                        tx.msgid = m.group(1).decode("ascii", "replace") \
                            if m else None
                        tx.t_dot = time.time()
                        TRIG.fire("delivery", "%s dot %s" % (self.name,
                                                             tx.msgid))
                else:
                    j = data.find(b"\n", i)
                    if j < 0:
                        st.cbuf += data[i:]
                        out += data[i:]
                        break
                    line = st.cbuf + data[i:j + 1]
                    st.cbuf = b""
                    out += data[i:j + 1]
                    i = j + 1
                    self._command(st, line)
                    if st.pending and st.pending[-1][0] == "DATA":
                        # Nothing past DATA before its 354 (RFC 2920).
                        pass
            if out:
                swriter.write(bytes(out))
                await swriter.drain()

    def _command(self, st, line):
        t = line.rstrip(b"\r\n")
        u = t.upper()
        if u.startswith(b"MAIL FROM:"):
            st.pending.append(("MAIL", None))
        elif u.startswith(b"RCPT TO:"):
            m = re.match(rb"RCPT TO:\s*<([^>]*)>", t, re.I)
            st.pending.append(("RCPT", m.group(1).decode("utf-8", "replace")
                               .lower() if m else ""))
        elif u == b"DATA":
            st.pending.append(("DATA", None))
        else:
            st.pending.append((u.split(b" ")[0].decode("ascii", "replace"),
                               None))

    async def s2c(self, st, conn, reader, cwriter):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            st.sbuf += data
            out = bytearray()
            while True:
                # One complete reply: lines up to one with "NNN " or "NNN".
                pos = 0
                end = None
                while True:
                    j = st.sbuf.find(b"\n", pos)
                    if j < 0:
                        break
                    line = st.sbuf[pos:j + 1]
                    pos = j + 1
                    if len(line) < 6 or line[3:4] != b"-":
                        end = pos
                        break
                if end is None:
                    break
                reply, st.sbuf = st.sbuf[:end], st.sbuf[end:]
                if st.black:
                    continue
                code = reply[:3].decode("ascii", "replace")
                cmd, arg = st.pending.pop(0) if st.pending else ("?", None)
                forward = True
                if cmd == "MAIL":
                    st.rcpts = []
                elif cmd == "RCPT" and code.startswith("2"):
                    st.rcpts.append(arg)
                elif cmd == "DATA" and code == "354":
                    tx = Tx(self.name, conn, st.rcpts)
                    with self.lock:
                        self.txs.append(tx)
                    st.txs.append(tx)
                    st.tx = tx
                    st.mode = "data"
                    st.tail = b"\r\n"
                    st.fault = self.current_fault()
                    TRIG.fire("delivery", "%s data" % self.name)
                elif cmd == "DATAEND":
                    tx = st.tx
                    tx.reply = reply.decode("utf-8", "replace").strip()
                    tx.t_reply = time.time()
                    if st.fault == "blackhole":
                        forward = False
                        st.black = True
                        with self.lock:
                            tx.fate = "swallowed"
                            self.faulted["blackhole"] += 1
                    else:
                        with self.lock:
                            tx.fate = "forwarded"
                    st.fault = None
                if forward:
                    out += reply
            if out:
                cwriter.write(bytes(out))
                await cwriter.drain()


class ProxyLoop:
    """An asyncio loop in a thread running the fault proxies."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        lib.at_cleanup(self.stop)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def add(self, proxy):
        f = asyncio.run_coroutine_threadsafe(proxy.serve(), self.loop)
        f.result(10)
        return proxy

    def stop(self):
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


# ------------------------------------------------------------ ledger, load

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = {}   # msgid -> (content, rcpts): DATA 354 seen
        self.dotted = {}    # msgid -> t: final dot sent
        self.acked = {}     # msgid -> dict(qid, rcpts, content, cycle, t)
        self.refused = {}   # msgid -> reply (a non-250 after the dot)


LEDGER = Ledger()


def make_message(rnd, msgid, rcpts, size):
    body = (b"first line\r\n"
            b".a line starting with a dot\r\n"
            b".\r\n"
            b"..two dots\r\n"
            b"From the mbox quoting rule\r\n"
            b"trailing spaces   \r\n"
            b"\ttab first\r\n") + \
        lib.random_body(size)
    hdr = ("From: <%s>\r\nTo: %s\r\nSubject: crash %s\r\n"
           "Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n"
           "Message-ID: <%s>\r\n"
           "X-Folded: one\r\n two\r\n" % (
               SENDER, ", ".join("<%s>" % r for r in rcpts), msgid, msgid)
           ).encode()
    return hdr + b"\r\n" + body


def pick_size(rnd, big):
    x = rnd.random()
    if big:
        return rnd.randint(150000, 400000)
    if x < 0.02:
        return rnd.randint(100000, 300000)
    if x < 0.20:
        return rnd.randint(20000, 60000)
    return rnd.randint(500, 4000)


class Loader(threading.Thread):
    """One client: sessions of 1-5 messages until stop (or the kill)."""

    def __init__(self, run, cycle, n, port, stop, seed, slow_data, big):
        super().__init__(daemon=True)
        self.run_id, self.cycle, self.n = run, cycle, n
        self.port, self.stop = port, stop
        self.rnd = random.Random(seed)
        self.slow_data = slow_data      # stream data in paced chunks
        self.big = big                  # always big messages
        self.seq = 0
        self.errors = []

    def run(self):
        for _ in range(1000):
            if self.stop.is_set():
                return
            try:
                c = lib.Client(self.port, timeout=15)
            except OSError:
                return          # daemon gone
            try:
                c.start("loader%d.client.test" % self.n)
                for _ in range(self.rnd.randint(1, 5)):
                    if self.stop.is_set():
                        break
                    self.one(c)
                    # Think time: keeps the rate (and the CPU) modest.
                    time.sleep(self.rnd.uniform(0, 0.02))
                c.quit()
            except (lib.TestFailure, OSError):
                c.close()
                return
            finally:
                c.close()

    def one(self, c):
        self.seq += 1
        msgid = "ct-%s-c%d-t%d-n%d-%s@crash.test" % (
            self.run_id, self.cycle, self.n, self.seq, os.urandom(3).hex())
        rcpts = ["%s@%s" % (u, DOMAIN) for u in
                 self.rnd.sample(USERS, self.rnd.randint(1, 3))]
        content = make_message(self.rnd, msgid, rcpts,
                               pick_size(self.rnd, self.big))
        c.mail_rcpt(SENDER, rcpts)
        c.expect("DATA", 354)
        with LEDGER.lock:
            LEDGER.started[msgid] = (content, rcpts)
        wire = lib.dot_stuff(content) + b".\r\n"
        if self.slow_data and len(wire) > 65536:
            step = 16384
            for off in range(0, len(wire) - 5, step):
                c.send(wire[off:min(off + step, len(wire) - 5)])
                if off > 0:
                    TRIG.fire("data", "%s chunk %d" % (msgid, off // step))
                time.sleep(0.002)   # paced: the kill may land in DATA
            c.send(wire[-5:])
        else:
            c.send(wire)
        with LEDGER.lock:
            LEDGER.dotted[msgid] = time.time()
        TRIG.fire("commit", msgid)
        r = c.read_reply(30)
        qid = r.queue_id()
        if qid is None:
            with LEDGER.lock:
                LEDGER.refused[msgid] = str(r)
            raise lib.TestFailure("DATA got %s" % r)
        with LEDGER.lock:
            LEDGER.acked[msgid] = {"qid": qid, "rcpts": rcpts,
                                   "content": content, "cycle": self.cycle,
                                   "t": time.time()}
        TRIG.fire("dedup", "%s %s" % (msgid, qid))


# ------------------------------------------------------------ the run

class Campaign:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.run_id = "%x" % (args.seed & 0xffffffff)
        self.kills = []         # (time, cycle, phase)
        self.cycle_log = []
        self.problems = []
        self.crash_gaps = []
        self.unexplained = []

    def setup(self):
        t0 = time.monotonic()
        self.legacy = peers.PostfixLegacy(
            ["%s@%s" % (u, DOMAIN) for u in USERS])
        # A run can put more than the default 51 MB into one mbox; a
        # mailbox Postfix cannot write to would look like a loss.
        main_cf = os.path.join(self.legacy.etc, "main.cf")
        with open(main_cf, "a") as f:
            f.write("virtual_mailbox_limit = 0\n"
                    "message_size_limit = 20480000\n")
        old = time.time() - 120
        os.utime(main_cf, (old, old))
        self.legacy.start()
        self.cloud = peers.SmtpPeer("cloud").start()
        self.ploop = ProxyLoop()
        self.proxies = {
            "legacy": self.ploop.add(FaultProxy("legacy", self.legacy.port)),
            "cloud": self.ploop.add(FaultProxy("cloud", self.cloud.port)),
        }
        tgt = ("target %s { type smtp; host 127.0.0.1:%d; tls none; "
               "connections 4; timeout_connect 3s; timeout_command 3s; "
               "timeout_data %ds }")
        extra = "\n".join([
            peers.queue_conf(retry_initial="1s", retry_max="2s",
                             lifetime="600s"),
            tgt % ("legacy", self.proxies["legacy"].port,
                   self.args.data_timeout),
            tgt % ("cloud", self.proxies["cloud"].port,
                   self.args.data_timeout),
            "default_target legacy",
            "domain %s { targets legacy cloud }" % DOMAIN,
        ])
        self.env = lib.Env("crashtest", domains=[], extra=extra, start=False,
                           limits={"connections": "200",
                                   "connections_per_ip": "200",
                                   "message_size": "4M"})
        log("setup: postfix legacy :%d (proxy :%d), aiosmtpd cloud :%d "
            "(proxy :%d), spool %s, %.1fs" % (
                self.legacy.port, self.proxies["legacy"].port,
                self.cloud.port, self.proxies["cloud"].port, self.env.spool,
                time.monotonic() - t0))

    def start_daemon(self, first):
        if first:
            self.env.daemon.start()
        else:
            self.env.restart()

    def cycle(self, i):
        t0 = time.monotonic()
        args = self.args
        phase = PHASES[(i + self.phase0) % len(PHASES)]
        delay = self.rnd.uniform(*PHASE_DELAY[phase])
        fault = None
        if i % 3 == 1:
            fault = "reset"
        elif i % 3 == 2:
            fault = "blackhole"
        ftarget = self.rnd.choice(TARGETS) if fault else None
        nq = len(lib.list_dir(lib.queue_dir(self.env.spool)))
        self.start_daemon(i == 0)
        t_up = time.monotonic() - t0
        acked0 = len(LEDGER.acked)
        stop = threading.Event()
        loaders = []
        for n in range(args.threads):
            loaders.append(Loader(self.run_id, i, n, self.env.port, stop,
                                  self.rnd.getrandbits(32),
                                  slow_data=(phase == "data"),
                                  big=(phase == "data" and n == 0)))
        for th in loaders:
            th.start()
        if fault:
            dur = self.rnd.uniform(1.0, 2.5)
            self.proxies[ftarget].set_fault(fault, dur)
        if phase == "startup":
            # Right after the restart: the queue loads what the spool holds,
            # claims it in the duplicate index and starts delivering.
            what = "ready with %d in queue/" % nq
            time.sleep(delay)   # the point of the campaign
        else:
            # Run a while, then aim. Long enough, in fault cycles, for
            # timeout_data to fire and the retry to run before the kill
            # (sometimes).
            warm = self.rnd.uniform(0.5, 1.5) if not fault else \
                self.rnd.uniform(1.0, args.data_timeout + 3.0)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if len(LEDGER.acked) - acked0 >= 5 and \
                        time.monotonic() - t0 - t_up >= warm:
                    break
                if not self.env.daemon.alive():
                    break
                time.sleep(0.02)
            TRIG.arm(phase)
            hit = TRIG.wait(10)
            if hit:
                time.sleep(delay)   # the point of the campaign
            what = TRIG.what if hit else "phase not reached in 10 s"
            TRIG.disarm()
        # kill9 fails on a sanitizer report or a daemon that already died.
        self.env.daemon.kill9()
        self.kills.append((time.time(), i, phase))
        stop.set()
        for th in loaders:
            th.join(30)
        hung = [th.n for th in loaders if th.is_alive()]
        check(not hung, "cycle %d: loader threads %s hung" % (i, hung))
        if args.inject and i == 0:
            self.inject(args.inject)
        n_acked = len(LEDGER.acked) - acked0
        line = ("cycle %d: phase=%s delay=%.4fs trigger=%s fault=%s%s "
                "acked=%d queue=%d up=%.1fs took=%.1fs" % (
                    i + 1, phase, delay, what, fault or "none",
                    "@" + ftarget if fault else "", n_acked,
                    len(lib.list_dir(lib.queue_dir(self.env.spool))),
                    t_up, time.monotonic() - t0))
        self.cycle_log.append(line)
        log(line)

    def inject(self, what):
        """
        Checks the checker: while the daemon is down, removes (loss) or
        alters (corrupt) one acknowledged message in queue/. The run must
        then end with lost > 0 (loss) or corrupt > 0 (corrupt).
        """
        qdir = lib.queue_dir(self.env.spool)
        done = {r["fields"].get("id") for r in
                self.env.journal().of("delivered")}
        for mid, a in sorted(LEDGER.acked.items()):
            p = os.path.join(qdir, a["qid"])
            if a["qid"] in done or not os.path.exists(p):
                continue        # one no target has yet
            if what == "loss":
                os.unlink(p)
            else:
                with open(p, "r+b") as f:
                    f.seek(-3, os.SEEK_END)
                    b = f.read(1)
                    f.seek(-3, os.SEEK_END)
                    f.write(bytes([b[0] ^ 0x20]))
            log("INJECTED %s: queue/%s (msgid <%s>)" % (what, a["qid"], mid))
            return
        log("INJECTED nothing: no acknowledged message left in queue/")

    def drain(self):
        t0 = time.monotonic()
        for p in self.proxies.values():
            p.clear_fault()
        self.env.restart()
        bound = self.args.drain_timeout
        deadline = time.monotonic() + bound
        while True:
            q = lib.list_dir(lib.queue_dir(self.env.spool))
            pq = self.postfix_queue()
            if not q and not pq:
                break
            if time.monotonic() > deadline:
                self.problems.append(
                    "drain: after %d s queue/ still holds %d file(s) (%s), "
                    "postfix queue %d; journal tail:\n%s" % (
                        bound, len(q), q[:5], len(pq),
                        peers.journal_dump(self.env.spool, None, 15)))
                break
            time.sleep(0.2)
        self.env.daemon.stop()
        log("drain: %.1fs" % (time.monotonic() - t0))

    def postfix_queue(self):
        out = []
        for d in ("maildrop", "incoming", "active", "deferred", "hold"):
            for root, dirs, files in os.walk(os.path.join(self.legacy.spool,
                                                          d)):
                out += files
        return out

    # -------------------------------------------------------- comparison

    def copies(self):
        """{target: {(msgid, rcpt): [(bytes, kind)]}} plus unknown copies."""
        got = {t: {} for t in TARGETS}
        unknown = []
        for m in self.cloud.messages():
            mm = MSGID_RE.search(m["data"])
            if not mm:
                unknown.append(("cloud", m["data"][:200]))
                continue
            mid = mm.group(1).decode("ascii", "replace")
            for r in m["rcpts"]:
                got["cloud"].setdefault((mid, r.lower()), []).append(
                    m["data"])
        for u in USERS:
            addr = "%s@%s" % (u, DOMAIN)
            for m in self.legacy.mailbox(addr):
                mm = MSGID_RE.search(m)
                if not mm:
                    unknown.append(("legacy", m[:200]))
                    continue
                mid = mm.group(1).decode("ascii", "replace")
                got["legacy"].setdefault((mid, addr), []).append(m)
        return got, unknown

    @staticmethod
    def corrupt_reason(target, data, content, qid):
        """None if data is content behind allowed trace fields."""
        if target == "legacy":
            exp = peers.mbox_form(content)
            nl = b"\n"
        else:
            exp = content
            nl = b"\r\n"
        if not data.endswith(exp):
            k = 0
            while k < min(len(data), len(exp)) and \
                    data[-1 - k] == exp[-1 - k]:
                k += 1
            return "bytes differ %d octets from the end: got ...%r sent " \
                "...%r" % (k, data[max(0, len(data) - k - 40):
                                   len(data) - k + 1],
                           exp[max(0, len(exp) - k - 40):len(exp) - k + 1])
        pre = data[:len(data) - len(exp)]
        if pre and not pre.endswith(nl):
            return "prepended text does not end a line: %r" % pre[-80:]
        names = []
        for line in pre.split(nl)[:-1] if pre else []:
            if line[:1] in (b" ", b"\t") and names:
                continue
            name, sep, _ = line.partition(b":")
            if not sep:
                return "prepended line is not a header field: %r" % line
            names.append(name.lower())
        bad = [n for n in names if n not in TRACE_FIELDS]
        if bad:
            return "prepended fields other than trace fields: %r" % bad
        traces = TRACE_RE.findall(pre)
        if len(traces) != 1:
            return "%d X-Splitmx-Trace fields in front of the content" % \
                len(traces)
        if qid and traces[0].decode() != qid:
            return "trace names queue id %s, the client was told %s" % (
                traces[0].decode(), qid)
        if names[-1] != b"x-splitmx-trace":
            return "X-Splitmx-Trace is not the field right before the " \
                "content (fields in front: %r)" % names
        ours = RECEIVED_RE.findall(pre)
        if len(ours) != 1 or ours[0] != traces[0]:
            return "splitmxd's Received fields in front name %r, the " \
                "trace %s" % (ours, traces[0].decode())
        return None

    def explain_duplicate(self, target, mid, rcpt, qid, delivered):
        """
        Why (target, mid, rcpt) arrived more than once, one cause per extra
        copy: "timeout" (the target's reply to the earlier copy was
        swallowed), "crash" (a kill between the start of the earlier copy's
        transaction and the start of the later one, and no delivered record
        journaled before the later one started; the data may still be in
        the socket buffers at the kill) or "unexplained".
        """
        with self.proxies[target].lock:
            txs = sorted([tx for tx in self.proxies[target].txs
                          if tx.msgid == mid and rcpt in tx.rcpts and
                          tx.t_dot is not None], key=lambda t: t.t_dot)
        jts = delivered.get((qid, target, rcpt), [])
        causes = []
        for a, b in zip(txs, txs[1:]):
            if a.fate == "swallowed":
                causes.append("timeout")
            elif any(a.t_start <= k[0] <= b.t_start for k in self.kills) and \
                    not any(t < b.t_start for t in jts):
                causes.append("crash")
                after = [k[0] for k in self.kills if k[0] >= (a.t_reply or 0)
                         and k[0] <= b.t_start]
                if a.fate == "forwarded" and after:
                    # How long splitmxd had the 250 without journaling it.
                    self.crash_gaps.append(min(after) - a.t_reply)
            else:
                causes.append("unexplained")
        if not causes:
            causes = ["unexplained"]
        if "unexplained" in causes and len(self.unexplained) < 10:
            self.unexplained.append((target, mid, rcpt, qid, txs, jts))
        return causes

    def journal_delivered(self, j):
        """{(qid, target, rcpt): [epoch of each delivered record]}."""
        out = {}
        for r in j.of("delivered"):
            f = r["fields"]
            try:
                ts = calendar.timegm(time.strptime(r["ts"][:19],
                                                   "%Y-%m-%dT%H:%M:%S")) + \
                    float("0" + r["ts"][19:].rstrip("Z"))
            except ValueError:
                continue
            key = (f.get("id"), f.get("target"),
                   peers.strip_angle(f.get("rcpt", "")).lower())
            out.setdefault(key, []).append(ts)
        return out

    def compare(self):
        got, unknown = self.copies()
        acked = LEDGER.acked
        j = self.env.journal()
        delivered = self.journal_delivered(j)
        lost = []
        corrupt = []
        dup_causes = {t: {} for t in TARGETS}
        per = {t: {"expected": 0, "copies": 0, "lost": 0, "dups": 0,
                   "corrupt": 0} for t in TARGETS}
        known = {}
        for mid, (content, rcpts) in LEDGER.started.items():
            known[mid] = content
        for t in TARGETS:
            for (mid, rcpt), datas in sorted(got[t].items()):
                per[t]["copies"] += len(datas)
                if mid not in known:
                    corrupt.append((t, mid, rcpt, "a copy nobody sent"))
                    per[t]["corrupt"] += 1
                    continue
                if mid not in LEDGER.dotted:
                    corrupt.append((t, mid, rcpt, "a copy of a message "
                                    "whose final dot was never sent"))
                    per[t]["corrupt"] += 1
                    continue
                if rcpt not in [r.lower() for r in LEDGER.started[mid][1]]:
                    corrupt.append((t, mid, rcpt, "delivered to a recipient "
                                    "the message was not sent to"))
                    per[t]["corrupt"] += 1
                    continue
                qid = acked[mid]["qid"] if mid in acked else None
                for d in datas:
                    why = self.corrupt_reason(t, d, known[mid], qid)
                    if why:
                        corrupt.append((t, mid, rcpt, why))
                        per[t]["corrupt"] += 1
                if len(datas) > 1:
                    per[t]["dups"] += len(datas) - 1
                    for c in self.explain_duplicate(t, mid, rcpt, qid,
                                                    delivered):
                        dup_causes[t][c] = dup_causes[t].get(c, 0) + 1
            for mid, a in acked.items():
                for r in a["rcpts"]:
                    per[t]["expected"] += 1
                    if not got[t].get((mid, r)):
                        lost.append((t, mid, r, a))
                        per[t]["lost"] += 1
        for t, head in unknown:
            corrupt.append((t, None, None, "copy without Message-ID: %r" %
                            head))
            per[t]["corrupt"] += 1
        qdir = os.path.join(self.env.spool, "corrupt")
        quarantined = lib.list_dir(qdir)
        for n in quarantined:
            corrupt.append(("spool", n, None, "file in spool/corrupt/"))
        acc_ids = set(j.accepted_ids())
        no_acc = [a["qid"] for a in acked.values() if a["qid"] not in acc_ids]
        # Detail lines.
        pf = self.legacy.log_text()
        pf_bad = [l for l in pf.splitlines() if "status=" in l and
                  "status=sent" not in l]
        if pf_bad:
            log("legacy host (Postfix) itself failed %d deliveries, e.g. %s" %
                (len(pf_bad), pf_bad[0][:300]))
        for t in TARGETS:
            p = per[t]
            pr = self.proxies[t]
            fates = {}
            with pr.lock:
                for tx in pr.txs:
                    fates[tx.fate] = fates.get(tx.fate, 0) + 1
            log("target=%s expected=%d copies=%d lost=%d duplicates=%d (%s) "
                "corrupt=%d proxy: conns=%d tx=%s" % (
                    t, p["expected"], p["copies"], p["lost"], p["dups"],
                    " ".join("%s=%d" % kv for kv in
                             sorted(dup_causes[t].items())) or "-",
                    p["corrupt"], pr.nconn,
                    ",".join("%s:%d" % kv for kv in sorted(fates.items()))))
        unacked_dotted = [m for m in LEDGER.dotted if m not in acked]
        delivered_unacked = len({m for t in TARGETS for (m, r) in got[t]
                                 if m in unacked_dotted})
        log("ledger: started=%d dotted=%d acked=%d refused=%d "
            "dotted-unacked=%d (of which delivered=%d) journal: records=%d "
            "malformed=%d acked-without-accepted=%d quarantined=%d" % (
                len(LEDGER.started), len(LEDGER.dotted), len(acked),
                len(LEDGER.refused), len(unacked_dotted), delivered_unacked,
                len(j.records), len(j.malformed), len(no_acc),
                len(quarantined)))
        for t, mid, r, a in lost[:20]:
            log("LOST target=%s msgid=<%s> rcpt=%s qid=%s acked in cycle %d "
                "(phase %s)\n%s" % (
                    t, mid, r, a["qid"], a["cycle"] + 1,
                    PHASES[(a["cycle"] + self.phase0) % len(PHASES)],
                    peers.journal_dump(self.env.spool, a["qid"], 20)))
        for t, mid, r, why in corrupt[:20]:
            log("CORRUPT target=%s msgid=<%s> rcpt=%s: %s" % (t, mid, r, why))
        if self.crash_gaps:
            g = sorted(self.crash_gaps)
            log("crash duplicates after a 250 reached splitmxd: %d, the kill "
                "came %.1f ms (median) / %.1f ms (max) after that 250" % (
                    len(g), 1000 * g[len(g) // 2], 1000 * g[-1]))
        unexplained = sum(d.get("unexplained", 0) for d in dup_causes.values())
        for t, mid, rcpt, qid, txs, jts in self.unexplained:
            log("UNEXPLAINED duplicate target=%s msgid=<%s> rcpt=%s qid=%s; "
                "kills at %s; delivered journaled at %s; transactions:\n%s\n"
                "journal:\n%s" % (
                    t, mid, rcpt, qid,
                    ["%.3f" % k[0] for k in self.kills],
                    ["%.3f" % x for x in jts],
                    "\n".join("    tx conn=%d start=%.3f dot=%s reply=%s "
                              "fate=%s rcpts=%s %r" % (
                                  x.conn, x.t_start, "%.3f" % x.t_dot,
                                  "%.3f" % x.t_reply if x.t_reply else "-",
                                  x.fate, x.rcpts, x.reply) for x in txs),
                    peers.journal_dump(self.env.spool, qid, 30)))
        if unexplained:
            log("WARNING: %d duplicate(s) with neither a swallowed reply nor "
                "a kill between the copies" % unexplained)
        if no_acc:
            log("WARNING: acknowledged ids without an accepted journal "
                "record: %s" % no_acc[:5])
        if j.malformed:
            log("WARNING: malformed journal lines: %r" % j.malformed[:3])
        dups = sum(per[t]["dups"] for t in TARGETS)
        return len(acked), len(lost), dups, len(corrupt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--data-timeout", type=int, default=2,
                    help="targets' timeout_data in seconds")
    ap.add_argument("--inject", choices=("loss", "corrupt"),
                    help="after the first kill remove (loss) or alter "
                    "(corrupt) one acknowledged queue file: checks that the "
                    "campaign sees it")
    ap.add_argument("--drain-timeout", type=int, default=None,
                    help="seconds (default 60 + 3 per cycle)")
    args = ap.parse_args()
    if args.drain_timeout is None:
        args.drain_timeout = 60 + 3 * args.cycles
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    if not os.access(lib.SPLITMXD, os.X_OK):
        print("crashtest: %s not built (make test-build)" % lib.SPLITMXD)
        return 2
    log("crashtest: seed=%d cycles=%d threads=%d splitmxd=%s logs=%s" % (
        args.seed, args.cycles, args.threads, lib.SPLITMXD, lib.log_dir()))
    camp = Campaign(args)
    camp.phase0 = camp.rnd.randrange(len(PHASES))
    t0 = time.monotonic()
    failed = None
    done = 0
    try:
        camp.setup()
        for i in range(args.cycles):
            camp.cycle(i)
            done += 1
        camp.drain()
        acc, lost, dups, corrupt = camp.compare()
    except lib.TestFailure as e:
        failed = str(e)
    except Exception as e:
        import traceback
        failed = "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
    if failed:
        lib._FAILED = True
        log("crashtest: run failed (seed %d, cycle %d): %s" % (
            args.seed, done + 1, failed))
        try:
            acc, lost, dups, corrupt = camp.compare()
        except Exception as e:
            log("crashtest: comparison impossible: %r" % e)
            acc, lost, dups, corrupt = len(LEDGER.acked), -1, -1, -1
    for p in camp.problems:
        log("PROBLEM: " + p)
    log("crashtest: %.1fs in all, seed=%d" % (time.monotonic() - t0,
                                              args.seed))
    bad = failed or camp.problems or lost != 0 or corrupt != 0
    if bad:
        lib._FAILED = True      # keep the spool and the peers' files
    # Stop the peers now (by PID, as atexit would), so that what the
    # clean-up prints comes before the summary, which is the last line.
    lib._run_cleanups()
    print("cycles=%d accepted=%d lost=%d duplicates=%d corrupt=%d" % (
        done, acc, lost, dups, corrupt))
    sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
