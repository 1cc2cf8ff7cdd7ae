#!/usr/bin/python3
"""
bigmsg.py - one 100 MB message through splitmxd: the daemon's memory.

splitmxd (the optimized build, ./splitmxd) runs on 127.0.0.1 with a spool
under /var/tmp and two smtp-only targets, legacy and cloud, both Postfix
smtp-sink processes on loopback that dump what they receive. A small
message goes through first (so the libraries' one-time allocations are in
the baseline); then the bench sends one message of SIZE MB (generated:
76-octet CRLF lines, nothing to dot-stuff) and waits until both targets
have it. A thread samples the daemon's VmRSS every 20 ms throughout.

Reported: baseline RSS (after the small message), peak RSS while
receiving and while delivering, growth (peak - baseline), the times, and
the size each sink received. Target (issue 9): growth < 5 MB.

  --size MB      message size (default 100)
  --targets N    1 or 2 targets (default 2)
  --out FILE     replace the "100 MB message" section of FILE
                 (docs/bench.md) with the table

Everything stays on loopback (resolvers point at a closed loopback port,
so SPF gets its DNS error at once); every process is stopped by PID; the
temporary directory is removed at the end (kept on failure or --keep).
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from c10k import free_port, replace_section, run_facts, HOST  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SPLITMXD = os.environ.get("SPLITMXD") or os.path.join(TOP, "splitmxd")
MB = 1024 * 1024


def rss_kb(pid, key="VmRSS:"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def reset_hwm(pid):
    """VmHWM starts again from VmRSS (proc(5), clear_refs 5)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler(threading.Thread):
    """VmRSS of pid every interval; peak per phase."""

    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.phase = "idle"
        self.peak = {}
        self.last = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                v = rss_kb(self.pid)
            except OSError:
                return
            self.last = v
            if v > self.peak.get(self.phase, 0):
                self.peak[self.phase] = v
            time.sleep(self.interval)


def wait_port(port, proc, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit("bigmsg: process on port %d exited with %d"
                     % (port, proc.returncode))
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.recv(512)
                s.sendall(b"QUIT\r\n")
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("bigmsg: nothing answers on port %d" % port)


class Smtp:
    """A minimal client: what smtplib does, but the content is streamed."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=300)
        self.f = self.s.makefile("rb")
        self.reply("banner", 220)

    def reply(self, what, want):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                sys.exit("bigmsg: connection closed at %s" % what)
            lines.append(line.decode("latin-1").rstrip("\r\n"))
            if line[3:4] != b"-":
                break
        if not lines[-1].startswith(str(want)):
            sys.exit("bigmsg: %s: %s" % (what, " / ".join(lines)))
        return lines

    def cmd(self, line, want):
        self.s.sendall(line.encode() + b"\r\n")
        return self.reply(line.split()[0], want)

    def send(self, sender, rcpt, header, body_octets, chunk=MB):
        self.cmd("MAIL FROM:<%s> SIZE=%d" % (sender, len(header) +
                                             body_octets), 250)
        self.cmd("RCPT TO:<%s>" % rcpt, 250)
        self.cmd("DATA", 354)
        self.s.sendall(header)
        line = b"".join(b"%c" % (33 + (i * 7) % 90) for i in range(76))
        line = line.replace(b".", b"x") + b"\r\n"
        block = line * (chunk // len(line))
        left = body_octets
        self.sent = len(header)
        self.lines = header.count(b"\r\n")
        while left > 0:
            n = min(left, len(block))
            if n < len(block):
                n -= n % len(line)
                if n == 0:
                    break
            self.s.sendall(block[:n])
            self.sent += n
            self.lines += n // len(line)
            left -= n
        self.s.sendall(b".\r\n")
        return self.reply("end of DATA", 250)

    def close(self):
        try:
            self.cmd("QUIT", 221)
        except (OSError, SystemExit):
            pass
        self.s.close()


def dumped(d):
    """(files, octets) in a sink's dump directory."""
    total, n = 0, 0
    for root, _, files in os.walk(d):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
            n += 1
    return n, total


def content_octets(d, marker):
    """Octets from the first line we sent (marker) to the end, in the dump
    of the message that has marker; None when there is none. smtp-sink
    dumps lines with LF, not CRLF."""
    for f in os.listdir(d):
        path = os.path.join(d, f)
        with open(path, "rb") as fh:
            head = fh.read(65536)
        i = head.find(marker)
        if i >= 0:
            return os.path.getsize(path) - i
    return None


def stop_pid(proc, timeout=30):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=int(os.environ.get(
        "SIZE_MB", 100)))
    ap.add_argument("--targets", type=int, choices=(1, 2), default=2)
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.access(SPLITMXD, os.X_OK):
        sys.exit("bigmsg: %s not built (make)" % SPLITMXD)
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.access(sink, os.X_OK):
        sys.exit("bigmsg: smtp-sink not found (Debian package postfix)")

    work = tempfile.mkdtemp(prefix="splitmx-bigmsg.", dir="/var/tmp")
    os.chmod(work, 0o755)
    names = ["legacy", "cloud"][:args.targets]
    procs, sinks, logs = [], {}, []
    rc = 1
    proc = None
    sampler = None
    try:
        for name in names:
            port = free_port()
            d = os.path.join(work, "sink-" + name)
            os.mkdir(d)
            argv = [sink, "-4", "-d", os.path.join(d, "%H%M%S.")]
            if os.getuid() == 0:
                os.chown(d, 65534, 65534)
                argv += ["-u", "nobody"]
            argv += ["%s:%d" % (HOST, port), "64"]
            log = open(os.path.join(work, name + ".log"), "w")
            logs.append(log)
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p)
            sinks[name] = (port, d)
        dns_port = free_port()      # nothing listens there
        port = free_port()
        conf = os.path.join(work, "splitmx.conf")
        with open(conf, "w") as f:
            f.write("hostname bench.splitmx.test\n"
                    "reverse_lookup no\n"
                    "resolvers %s:%d\n"
                    "spool_dir %s/spool\n"
                    "listen %s:%d\n"
                    "limits { message_size %dM }\n"
                    "log { destination stderr; level warning }\n"
                    % (HOST, dns_port, work, HOST, port, args.size + 10))
            for name in names:
                f.write("target %s { type smtp; host %s:%d; tls none }\n"
                        % (name, HOST, sinks[name][0]))
            f.write("domain example.test { targets %s }\n" % " ".join(names))
        dlog = open(os.path.join(work, "splitmxd.log"), "w")
        logs.append(dlog)
        proc = subprocess.Popen([SPLITMXD, "-d", "-f", conf], stdout=dlog,
                                stderr=subprocess.STDOUT)
        wait_port(port, proc)
        spool = os.path.join(work, "spool")

        def queue_empty():
            return not os.listdir(os.path.join(spool, "queue"))

        def wait_delivered(n_msgs, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if proc.poll() is not None:
                    sys.exit("bigmsg: splitmxd exited with %d"
                             % proc.returncode)
                if queue_empty() and all(dumped(sinks[n][1])[0] >= n_msgs
                                         for n in names):
                    return True
                time.sleep(0.05)
            return False

        # The first line tells the two messages apart in the dumps.
        hdr = (b"Message-ID: <%d@src.test>\r\nFrom: <sender@src.test>\r\n"
               b"To: <user@example.test>\r\nSubject: bigmsg\r\n\r\n")
        c = Smtp(port)
        c.cmd("EHLO src.test", 250)
        c.send("sender@src.test", "user@example.test",
               hdr % 1, 4096)
        if not wait_delivered(1, 60):
            sys.exit("bigmsg: the small message was not delivered")
        time.sleep(0.5)
        sampler = Sampler(proc.pid)
        sampler.start()
        time.sleep(0.5)
        base = rss_kb(proc.pid)
        hwm_ok = reset_hwm(proc.pid)
        sampler.phase = "receive"
        t0 = time.monotonic()
        c.send("sender@src.test", "user@example.test", hdr % 2,
               args.size * MB)
        t1 = time.monotonic()
        sampler.phase = "deliver"
        ok = wait_delivered(2, 600)
        t2 = time.monotonic()
        time.sleep(0.5)
        sampler.phase = "after"
        time.sleep(0.3)
        c.close()
        sampler.stop.set()
        sampler.join()
        after = rss_kb(proc.pid)
        # The sampler can miss a short peak; VmHWM cannot.
        hwm = rss_kb(proc.pid, "VmHWM:") if hwm_ok else 0
        peak = max(max(sampler.peak.values()), hwm)
        growth = peak - base
        sent = c.sent
        # What the sink keeps of it: each CRLF line with LF, then an empty
        # line that ends the dump.
        first = (hdr % 2).split(b"\r\n")[0] + b"\n"
        want = sent - c.lines + 1
        got = {n: content_octets(sinks[n][1], first) for n in names}
        full = all(got[n] == want for n in names)
        good = ok and full and growth < 5 * 1024
        rows = [
            ("message", "%d MB (%d octets of content)" % (args.size, sent),
             ""),
            ("targets", "%d smtp-sink (%s)" % (len(names), ", ".join(names)),
             ""),
            ("daemon VmRSS baseline", "%.1f MB" % (base / 1024), ""),
            ("peak while receiving", "%.1f MB" % (
                sampler.peak.get("receive", 0) / 1024), ""),
            ("peak while delivering", "%.1f MB" % (
                sampler.peak.get("deliver", 0) / 1024), ""),
            ("VmHWM since the baseline", "%.1f MB" % (hwm / 1024)
             if hwm_ok else "not available", ""),
            ("growth (peak - baseline)", "%.1f MB" % (growth / 1024),
             "< 5 MB: %s" % ("ok" if growth < 5 * 1024 else "FAIL")),
            ("VmRSS after delivery", "%.1f MB" % (after / 1024), ""),
            ("receive (DATA to 250)", "%.1f s (%.0f MB/s)" % (
                t1 - t0, args.size / (t1 - t0)), ""),
            ("delivery to %s" % ("both" if len(names) == 2 else "the target"),
             "%.1f s after the 250" % (t2 - t1) if ok else "NOT DONE", ""),
        ]
        for n in names:
            rows.append(("%s received" % n, "%s octets of content (LF "
                         "lines, as smtp-sink dumps)" % got[n],
                         "complete" if got[n] == want else
                         "WRONG, %d expected" % want))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        print("bigmsg: one %d MB message through splitmxd to %d target%s"
              % (args.size, len(names), "s" if len(names) > 1 else ""))
        for r in rows:
            print("  %-*s  %-*s  %s" % (w0, r[0], w1, r[1], r[2]))
        if args.out:
            body = ("`make bench-bigmsg` (tests/bench/bigmsg.py): splitmxd "
                    "(`make`, -O2) receives one %d MB message (76-octet "
                    "CRLF lines) over one session and delivers it to %d "
                    "Postfix smtp-sink target%s on loopback (dumping to "
                    "disk; each dump's length is checked); VmRSS "
                    "sampled every 20 ms and VmHWM reset at the baseline, "
                    "taken after a 4 KiB message went the same way.\n\n"
                    % (args.size, len(names),
                       "s" if len(names) > 1 else ""))
            body += run_facts() + "\n"
            body += "| what | figure | target |\n| --- | --- | --- |\n"
            body += "".join("| %s | %s | %s |\n" % r for r in rows)
            replace_section(args.out, "100 MB message", body)
            print("bigmsg: table written to %s" % args.out)
        rc = 0 if good else 1
    finally:
        if sampler is not None:
            sampler.stop.set()
        stop_pid(proc)
        for p in procs:
            stop_pid(p, 10)
        for log in logs:
            log.close()
        if rc != 0 or args.keep:
            print("bigmsg: logs, spool and dumps kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
