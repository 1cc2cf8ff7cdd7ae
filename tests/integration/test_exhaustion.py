#!/usr/bin/python3
"""
test_exhaustion.py - resource exhaustion (issue 8, item 5).

- Out of descriptors: accept() fails with EMFILE; the daemon pauses its
  listeners instead of spinning (CPU stays low), logs a few lines instead
  of millions, an open session still commits a message (the spool's spare
  descriptor), and new clients are served once descriptors are free. Both
  with the limit lowered under a running daemon (prlimit) and with the
  daemon started under RLIMIT_NOFILE 64 (connections sized down at start).
- Descriptors for sockets but not for a file each: with 30 connections
  and room for only 40 descriptors, connections stays 30 and at most 10
  sessions receive a message at once; the next DATA gets 452 4.3.1, and
  works again once a message is in.
- data_deadline: a client trickling DATA (or a BDAT chunk) gets 421 4.4.2
  when the whole transfer takes too long, and nothing is queued.
- session_deadline: a client busy with NOOPs is cut off at the deadline.
- A client that never reads (small receive buffer, thousands of pipelined
  NOOPs) is timed out and its session freed: the daemon's descriptors come
  back to what they were and its RSS stays bounded.
- Stress mode: near the connection limit the idle timeout drops.
"""

import os
import re
import resource
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of the process, in seconds (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def nfds(pid, spool=None):
    """
    The daemon's open descriptors; with spool, less the spool's pool of
    tmp files (pre-created and recycled ones come and go with the load).
    """
    d = "/proc/%d/fd" % pid
    n = 0
    tmp = os.path.join(spool, "tmp") + "/" if spool else None
    for fd in os.listdir(d):
        try:
            if tmp and os.readlink(os.path.join(d, fd)).startswith(tmp):
                continue
        except FileNotFoundError:
            continue
        n += 1
    return n


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_over(pid, seconds):
    """CPU share of one core used by pid over a measuring window."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a synchronization
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def raw_connect(port, n):
    """n connections that never speak (they may sit in the backlog)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((lib.HOST, port))
        socks.append(s)
    return socks


def accept_lines(env):
    return [l for l in env.daemon.log_text().splitlines()
            if "accept on" in l or "similar lines suppressed" in l]


def served(env):
    """A new client gets its 220."""
    try:
        c = env.client(timeout=2)
    except OSError:
        return False
    try:
        return c.read_reply().code == 220
    except Exception:
        return False
    finally:
        c.close()


def queued_ids(env):
    return set(lib.list_dir(lib.queue_dir(env.spool)))


def t_fds_run_out():
    arch = os.path.join(lib.make_tmpdir("fds-arch"), "arch")
    env = lib.Env("fds", limits={"connections": "1000",
                                 "connections_per_ip": "1000",
                                 "timeout_command": "60s"},
                  domains=[],
                  extra="queue { retry_initial 1s; retry_max 2s }\n"
                  "target arch { type maildir; path %s }\n"
                  "domain example.com { targets arch }" % arch)
    pid = env.daemon.pid
    # The session that must still get its message in.
    s = env.client(timeout=20)
    s.start()
    base = nfds(pid)
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (base + 6, hard))
    held = []
    try:
        held = raw_connect(env.port, 60)
        lib.wait_for(lambda: "accept on" in env.daemon.log_text(),
                     10, 0.1, "the daemon to report running out of fds")
        share = cpu_over(pid, 2.0)
        print("    CPU while out of descriptors: %.1f %% of a core" %
              (share * 100))
        check(share < 0.10, "daemon used %.0f %% of a core while out of "
              "descriptors (spinning on accept?)" % (share * 100))
        before = queued_ids(env)
        qid = s.send_message("s@client.test", ["alice@example.com"],
                             lib.message("sent while out of descriptors"))
        check(qid in queued_ids(env) - before,
              "message %s not in queue/ after its 250" % qid)
        lib.queue_file(env.spool, qid)  # parses: complete and committed
        s.quit()
    finally:
        for h in held:
            h.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))

    lib.wait_for(lambda: served(env), 10, 0.2,
                 "a new client served after the clients went away")

    # The message accepted while out of descriptors is delivered once they
    # are back (a failed load is tried again, not forgotten).
    def delivered():
        d = os.path.join(arch, "new")
        return os.path.isdir(d) and any(
            b"sent while out of descriptors" in open(
                os.path.join(d, f), "rb").read() for f in os.listdir(d))
    lib.wait_for(delivered, 20, 0.2, "the message accepted while out of "
                 "descriptors to reach the maildir target")
    lines = accept_lines(env)
    print("    accept log lines: %d" % len(lines))
    check(len(lines) < 50, "%d log lines about accept errors (flood)"
          % len(lines))
    env.daemon.stop()


def t_started_with_64_fds():
    # As in the issue: prlimit --nofile=64:64 splitmxd, 60 clients held.
    env = lib.Env("fds64", nofile=64,
                  limits={"connections": "1000",
                          "connections_per_ip": "1000"})
    pid = env.daemon.pid
    log = env.daemon.log_text()
    check("RLIMIT_NOFILE is 64: using connections" in log,
          "no warning about connections 1000 with 64 descriptors:\n%s"
          % env.daemon.log_tail(10))
    s = env.client(timeout=20)
    s.start()
    held = []
    try:
        held = raw_connect(env.port, 60)
        share = cpu_over(pid, 2.0)
        print("    CPU with 60 clients on 64 descriptors: %.1f %% of a core"
              % (share * 100))
        check(share < 0.10, "daemon used %.0f %% of a core with 60 clients "
              "and 64 descriptors" % (share * 100))
        s.send_message("s@client.test", ["alice@example.com"],
                       lib.message("sent with 64 descriptors"))
        s.quit()
    finally:
        for h in held:
            h.close()

    lib.wait_for(lambda: served(env), 10, 0.2,
                 "a new client served after the 60 left")
    n = len(env.daemon.log_text().splitlines())
    check(n < 1000, "%d log lines for 60 clients" % n)
    env.daemon.stop()


def t_files_limited():
    # Descriptors after the reserve (40 + 1 listener + 3 x 4 workers):
    # 40, so 30 sockets fit, but not 30 sockets and 30 spool files.
    env = lib.Env("fdfiles", nofile=53 + 40,
                  limits={"connections": "30", "connections_per_ip": "30"})
    log = env.daemon.log_text()
    m = re.search(r"leaves room for connections (\d+), but for only (\d+) "
                  r"of them receiving a message", log)
    check(m is not None, "no warning about the spool files:\n%s"
          % env.daemon.log_tail(10))
    conns, files = int(m.group(1)), int(m.group(2))
    print("    connections %d, files %d" % (conns, files))
    check(conns == 30, "connections lowered to %d with room for 40 "
          "descriptors" % conns)
    check(1 <= files < conns, "%d files for %d connections" % (files, conns))
    held = []
    try:
        for i in range(files):
            c = env.client(timeout=15)
            c.start()
            c.mail_rcpt("s@client.test", ["alice@example.com"])
            c.expect("DATA", 354, what="DATA %d of %d" % (i + 1, files))
            held.append(c)
        extra = env.client(timeout=15)
        held.append(extra)
        extra.start()
        extra.mail_rcpt("s@client.test", ["alice@example.com"])
        extra.expect("DATA", 452, "4.3.1", what="DATA beyond the files")
        # One message in: its descriptor is free again.
        held[0].send(lib.dot_stuff(lib.message("file limit")) + b".\r\n")
        expect_reply(held[0].read_reply(15), 250, "2.0.0", "message in")
        extra.expect("DATA", 354, what="DATA after a message was in")
        extra.send(lib.dot_stuff(lib.message("file limit 2")) + b".\r\n")
        expect_reply(extra.read_reply(15), 250, "2.0.0", "second message")
    finally:
        for c in held:
            c.close()
    check("messages in transfer, the most the descriptors allow"
          in env.daemon.log_text(), "the refused DATA was not logged")
    env.daemon.stop()


denv = None


def trickle(c, until_s, step=0.2):
    """One octet per step until a reply arrives or until_s passes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < until_s:
        if c.pending_data(wait=step):
            return time.monotonic() - t0
        try:
            c.send(b"x")
        except OSError:
            return time.monotonic() - t0
    return None


def t_data_deadline():
    before = queued_ids(denv)
    c = denv.client(timeout=15)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.expect("DATA", 354)
    c.send(b"Subject: trickle\r\n\r\n")
    dt = trickle(c, 10)
    check(dt is not None, "no reply to a trickling DATA within 10 s "
          "(data_deadline 2s)")
    r = c.read_reply(5)
    expect_reply(r, 421, "4.4.2", "trickling DATA")
    check(1.5 <= dt <= 6, "421 after %.1f s of DATA, expected about 2 s"
          % dt)
    c.wait_closed(5)
    c.close()
    lib.wait_tmp_empty(denv.spool)
    check(queued_ids(denv) == before, "a message cut by the deadline was "
          "queued")


def t_data_deadline_bdat():
    before = queued_ids(denv)
    c = denv.client(timeout=15)
    c.start()
    c.mail_rcpt("s@client.test", ["alice@example.com"])
    c.send(b"BDAT 100000 LAST\r\nSubject: trickle\r\n\r\n")
    dt = trickle(c, 10)
    check(dt is not None, "no reply to a trickling BDAT within 10 s")
    expect_reply(c.read_reply(5), 421, "4.4.2", "trickling BDAT chunk")
    check(1.5 <= dt <= 6, "421 after %.1f s of BDAT, expected about 2 s"
          % dt)
    c.wait_closed(5)
    c.close()
    lib.wait_tmp_empty(denv.spool)
    check(queued_ids(denv) == before, "a BDAT message cut by the deadline "
          "was queued")


def t_data_in_time():
    # The deadline bounds the transfer, not the session: a prompt message
    # after a slow start is fine, and so is the next one.
    c = denv.client(timeout=15)
    c.start()
    for i in range(2):
        c.send_message("s@client.test", ["alice@example.com"],
                       lib.message("in time %d" % i))
    c.quit()


def t_session_deadline():
    c = senv.client(timeout=15)
    c.start()
    t0 = time.monotonic()
    r = None
    while time.monotonic() - t0 < 15:
        r = c.cmd("NOOP")
        if r.code != 250:
            break
        time.sleep(0.3)  # a client pacing its commands
    dt = time.monotonic() - t0
    expect_reply(r, 421, "4.4.2", "NOOPs past session_deadline 3s")
    check(2.0 <= dt <= 8, "421 after %.1f s, expected about 3 s" % dt)
    c.wait_closed(5)
    c.close()


def t_blocked_reader():
    env = lib.Env("blocked", limits={"timeout_command": "2s"})
    pid = env.daemon.pid
    base = nfds(pid, env.spool)
    rss0 = rss_kib(pid)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((lib.HOST, env.port))
    s.setblocking(False)
    chunk = b"NOOP\r\n" * 10000
    sent = 0
    stuck_since = None
    t0 = time.monotonic()
    # Pipeline NOOPs, never read a reply, until the daemon stops taking
    # them (its input watermark) for a second, or 64 MB at most.
    while sent < 64 << 20 and time.monotonic() - t0 < 30:
        try:
            sent += s.send(chunk)
            stuck_since = None
        except BlockingIOError:
            if stuck_since is None:
                stuck_since = time.monotonic()
            elif time.monotonic() - stuck_since > 1.0:
                break
            time.sleep(0.01)
        except OSError:
            break  # closed on us already
    peak = rss_kib(pid)
    print("    sent %d octets of NOOPs unread; daemon RSS %d -> %d KiB"
          % (sent, rss0, peak))
    # Meanwhile others are served.
    c = env.client()
    c.start()
    c.quit()
    lib.wait_for(lambda: nfds(pid, env.spool) <= base, 20, 0.1,
                 "the blocked client's session freed (fds back to %d)" % base)
    check("write timeout" in env.daemon.log_text(),
          "no write timeout logged for the blocked client")
    check(peak - rss0 < 64 * 1024, "daemon RSS grew by %d KiB for one "
          "client that does not read" % (peak - rss0))
    s.close()
    env.daemon.stop()


def t_stress_mode():
    env = lib.Env("stress", limits={"connections": "5",
                                    "stress_threshold": "60",
                                    "stress_timeout": "1s",
                                    "timeout_command": "60s"})
    held = []
    try:
        for _ in range(3):  # 60 % of 5
            c = env.client(timeout=15)
            expect_reply(c.read_reply(), 220, None, "banner")
            held.append(c)
        t0 = time.monotonic()
        for c in held:
            expect_reply(c.read_reply(10), 421, "4.4.2",
                         "idle session under stress")
        dt = time.monotonic() - t0
        check(dt < 6, "stress timeout of 1 s took %.1f s" % dt)
    finally:
        for c in held:
            c.close()
    check("stress:" in env.daemon.log_text(), "stress mode not logged")
    env.daemon.stop()


senv = None


def main(runner):
    global denv, senv
    runner.run("fds_run_out", t_fds_run_out)
    runner.run("started_with_64_fds", t_started_with_64_fds)
    runner.run("files_limited", t_files_limited)
    denv = lib.Env("deadline", limits={"data_deadline": "2s",
                                       "timeout_data": "30s"})
    for name in ("data_deadline", "data_deadline_bdat", "data_in_time"):
        runner.run(name, globals()["t_" + name])
    denv.daemon.stop()
    senv = lib.Env("sdeadline", limits={"session_deadline": "3s",
                                        "timeout_command": "30s"})
    runner.run("session_deadline", t_session_deadline)
    senv.daemon.stop()
    runner.run("blocked_reader", t_blocked_reader)
    runner.run("stress_mode", t_stress_mode)


if __name__ == "__main__":
    lib.main_guard(main)
