#!/usr/bin/python3
"""
startup.py - splitmxd's start-up time with a long history (issue 9).

Builds a spool with LIVE messages still queued (sent through the daemon
to a target that refuses connections, so they stay deferred) and HISTORY
finished messages in the journal's past (accepted, claimed twice,
delivered twice, removed: the records a real two-target message leaves),
then times `splitmxd` from exec to its "started" log line, REPS times:

  segments   the history in a closed journal segment (journal.TIME) and
             the journal holding the live records only, as journal
             rotation leaves it (journal_segment_size);
  one file   the same history at the head of the one journal, as a spool
             that never rotates (the format 1 daemon) has it.

  --history N (default 1000000)  --live N (default 10000)  --reps N (3)
  --out FILE  replace the "Start-up" section of FILE (docs/bench.md)

Everything stays on loopback and under a temporary directory (removed at
the end unless --keep); every process is stopped by PID.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from c10k import replace_section  # noqa: E402  (docs/bench.md sections)

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
DAEMON = os.path.join(TOP, "splitmxd")


# Rotation is what is being measured, so the daemon never rotates by
# itself here: the history's place is set up by the script.
def write_conf(work, port):
    conf = os.path.join(work, "splitmx.conf")
    with open(conf, "w") as f:
        f.write("""hostname startup.splitmx.test
reverse_lookup no
spool_dir %s/spool
listen 127.0.0.1:%d
limits { connections 5000; connections_per_ip 5000 }
log { destination stderr; level info }
target legacy { type smtp; host 127.0.0.1:9; tls none }
target cloud { type smtp; host 127.0.0.1:9; tls none }
domain example.test { targets legacy cloud }
journal_segment_size 1000G
""" % (work, port))
    return conf


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(conf, logpath, timeout=600):
    """Starts the daemon; returns (proc, seconds to its "started" line)."""
    log = open(logpath, "wb")
    t0 = time.monotonic()
    p = subprocess.Popen([DAEMON, "-d", "-f", conf], stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        with open(logpath, "rb") as f:
            if b" started" in f.read():
                return p, time.monotonic() - t0
        if p.poll() is not None:
            sys.exit("splitmxd exited: see %s" % logpath)
        time.sleep(0.01)
    p.kill()
    sys.exit("splitmxd did not start within %d s" % timeout)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def timed_starts(conf, work, tag, reps, procs):
    """reps starts and stops; the seconds each took to say "started"."""
    times = []
    for r in range(reps):
        p, t = start(conf, os.path.join(work, "%s%d.log" % (tag, r)))
        procs.append(p)
        stop(p)
        procs.remove(p)
        times.append(t)
    return times


def count(path, needle):
    with open(path, "rb") as f:
        return f.read().count(needle)


def history_lines(n):
    """Records of n finished two-target messages, in journal syntax."""
    base = 1764547200  # 2025-12-01
    alpha = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
    out = []
    for i in range(n):
        t = base + i // 100
        ts = datetime.datetime.fromtimestamp(t, datetime.timezone.utc) \
            .strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        v, qid = i, ""
        for _ in range(16):
            qid = alpha[v % 32] + qid
            v //= 32
        qid = "0" + qid[1:]
        rcpt = "<user%d@example.test>" % (i % 3000)
        key = "m:<hist%d@client.test>" % i
        out.append(
            "%s accepted id=%s msgid=<hist%d@client.test> "
            "from=<s@client.test> size=4107 sha256=%s nrcpt=1 to=%s "
            "client=unknown[127.0.0.1] listener=127.0.0.1:25 "
            "helo=client.test proto=ESMTP tls=\n" % (ts, qid, i, "0" * 64,
                                                     rcpt))
        for tg in ("legacy", "cloud"):
            out.append("%s claimed id=%s target=%s rcpt=%s key=%s\n" % (
                ts, qid, tg, rcpt, key))
        for tg in ("legacy", "cloud"):
            out.append(
                "%s delivered id=%s target=%s rcpt=%s to=%s "
                "relay=127.0.0.1[127.0.0.1]:25 reply=250\\x202.0.0\\x20Ok\n"
                % (ts, qid, tg, rcpt, rcpt))
        out.append("%s removed id=%s\n" % (ts, qid))
        if len(out) >= 60000:
            yield "".join(out)
            out = []
    if out:
        yield "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=1000000)
    ap.add_argument("--live", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if not os.access(DAEMON, os.X_OK):
        sys.exit("build ./splitmxd first (make)")
    work = tempfile.mkdtemp(prefix="splitmx-startup-", dir="/var/tmp")
    procs = []
    try:
        port = free_port()
        conf = write_conf(work, port)
        spool = os.path.join(work, "spool")
        p, _ = start(conf, os.path.join(work, "fill.log"))
        procs.append(p)
        src = subprocess.run(
            ["/usr/sbin/smtp-source", "-s", "20", "-m", str(a.live), "-l",
             "2048", "-f", "s@client.test", "-t", "u@example.test",
             "127.0.0.1:%d" % port], timeout=600)
        if src.returncode != 0:
            sys.exit("smtp-source failed")
        stop(p)
        procs.remove(p)
        live = len(os.listdir(os.path.join(spool, "queue")))
        if live != a.live:
            sys.exit("expected %d queued messages, found %d" % (a.live,
                                                                 live))
        journal = os.path.join(spool, "journal")
        hist = os.path.join(work, "history")
        with open(hist, "w") as f:
            for chunk in history_lines(a.history):
                f.write(chunk)
        hist_mb = os.path.getsize(hist) / 1048576
        live_mb = os.path.getsize(journal) / 1048576

        results = {}
        # Segments: the history closed, the journal as rotation leaves it.
        seg = os.path.join(spool, "journal.20251201T000000Z")
        shutil.copyfile(hist, seg)
        results["segments"] = timed_starts(conf, work, "seg", a.reps, procs)
        os.unlink(seg)
        # One file: the history at the head of the journal. The
        # checkpoint names the journal's length: it grows by the history.
        ck = os.path.join(spool, "checkpoint")
        with open(ck) as f:
            ckt = f.read()
        m = re.search(r"\njournal (\d+)\n", ckt)
        one = os.path.join(work, "one")
        with open(one, "wb") as o:
            with open(hist, "rb") as f:
                shutil.copyfileobj(f, o, 1 << 20)
            with open(journal, "rb") as f:
                shutil.copyfileobj(f, o, 1 << 20)
        os.replace(one, journal)
        with open(ck, "w") as f:
            f.write(ckt.replace(m.group(0), "\njournal %d\n" % (
                int(m.group(1)) + os.path.getsize(hist))))
        results["one file"] = timed_starts(conf, work, "one", a.reps,
                                           procs)
        requeued = count(os.path.join(work, "one0.log"),
                         b"messages queued")
        day = datetime.date.today().isoformat()
        rows = ["| journal layout | start-up s (median of %d) | min | max |"
                % a.reps, "| --- | --- | --- | --- |"]
        for k in ("segments", "one file"):
            v = results[k]
            rows.append("| %s | %.2f | %.2f | %.2f |" % (
                k, statistics.median(v), min(v), max(v)))
        body = ("%s, 2 cores: %d finished messages in the history (%.0f MB "
                "of journal records), %d live messages (queue files, "
                "%.1f MB of live journal). From exec to the \"started\" "
                "line (recovery reads every queue file's header and the "
                "journal).\n\n" % (day, a.history, hist_mb, a.live,
                                   live_mb) + "\n".join(rows) + "\n")
        print(body)
        if requeued == 0:
            sys.exit("no recovery line in the log")
        if a.out:
            replace_section(a.out, "Start-up", body)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
