#!/usr/bin/python3
"""
test_concurrency.py - 50 concurrent clients x 20 messages of ~4 KiB, each
unique. Every message must get 250 with a distinct queue id, be in queue/
with the right envelope and a matching SHA-256, and have exactly one
"accepted" journal record. Half the clients reuse one connection; the other
half reconnect every 5 messages.
"""

import hashlib
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

THREADS = 50
PER_THREAD = 20
env = None
results = {}          # (t, i) -> (qid, content, rcpt)
errors = []
lock = threading.Lock()
RCPTS = ["alice@example.com", "bob@example.com", "sales-x@example.com",
         "u@example.org"]


def client_thread(t, barrier):
    try:
        barrier.wait(30)
    except threading.BrokenBarrierError:
        pass
    c = None
    try:
        for i in range(PER_THREAD):
            if c is None or (t % 2 == 1 and i % 5 == 0):
                if c is not None:
                    c.quit()
                c = env.client(timeout=60)
                c.start("t%d.client.test" % t)
            rcpt = RCPTS[(t + i) % len(RCPTS)]
            sender = "t%d-m%d@client.test" % (t, i)
            m = lib.message("t%d m%d" % (t, i), body=lib.random_body(4096),
                            sender=sender, rcpt=rcpt)
            qid = c.send_message(sender, [rcpt], m)
            with lock:
                results[(t, i)] = (qid, m, rcpt, sender)
        c.quit()
    except BaseException as e:
        with lock:
            errors.append("thread %d: %s: %s" % (t, type(e).__name__, e))
        if c:
            c.close()


def t_load():
    barrier = threading.Barrier(THREADS)
    threads = [threading.Thread(target=client_thread, args=(t, barrier),
                                daemon=True) for t in range(THREADS)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(1, 240 - (time.monotonic() - t0)))
    dt = time.monotonic() - t0
    alive = [th for th in threads if th.is_alive()]
    check(not alive, "%d client threads still running after %.0f s" % (
        len(alive), dt))
    print("    %d messages in %.1f s (%.0f msg/s)" % (len(results), dt,
                                                      len(results) / dt))
    check(not errors, "%d client errors, first: %s" % (len(errors),
                                                       errors[:3]))
    check(len(results) == THREADS * PER_THREAD,
          "%d of %d messages got 250" % (len(results), THREADS * PER_THREAD))
    ids = [v[0] for v in results.values()]
    check(len(set(ids)) == len(ids), "duplicate queue ids handed out")


def t_queue_contents():
    q = env.queue()
    ids = {v[0] for v in results.values()}
    check(set(q) == ids, "queue/ has %d files, %d acknowledged; extra %s, "
          "missing %s" % (len(q), len(ids), sorted(set(q) - ids)[:5],
                          sorted(ids - set(q))[:5]))
    bad = []
    for (t, i), (qid, m, rcpt, sender) in results.items():
        qf = q[qid]
        p = qf.intact_problems()
        if p:
            bad.append("%s: %s" % (qid, p))
            continue
        if not qf.content.endswith(m):
            bad.append("%s: content is not message t%d m%d" % (qid, t, i))
        if qf.rcpt_addrs() != [rcpt] or qf.sender != sender:
            bad.append("%s: envelope %r %r, expected %r %r" % (
                qid, qf.sender, qf.rcpt_addrs(), sender, [rcpt]))
    check(not bad, "%d bad queue files: %s" % (len(bad), bad[:5]))


def t_journal():
    j = env.journal()
    check(not j.malformed, "malformed journal lines: %r" % j.malformed[:3])
    check(not j.torn_tail, "journal does not end with a newline")
    acc = j.of("accepted")
    ids = [r["fields"].get("id") for r in acc]
    want = {v[0] for v in results.values()}
    check(len(acc) == len(want), "journal has %d accepted lines, expected "
          "%d" % (len(acc), len(want)))
    check(set(ids) == want and len(set(ids)) == len(ids),
          "journal ids differ from the acknowledged ids")
    q = env.queue()
    for r in acc:
        f = r["fields"]
        qf = q.get(f.get("id"))
        if qf is None:
            continue
        check(f.get("sha256", "").lower() == qf.sha256 and
              f.get("size") == str(qf.size),
              "journal record %r does not match queue file" % r["raw"])
        check(hashlib.sha256(qf.content).hexdigest() == qf.sha256, "sha")


def rst_close(c):
    """Closes with RST (SO_LINGER 0) so the server sees a reset."""
    import socket
    import struct
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
    except OSError:
        pass
    c.close()


def abrupt_thread(t, out):
    try:
        for i in range(10):
            c = env.client(timeout=30)
            c.start()
            sender = "abrupt-t%d-m%d@client.test" % (t, i)
            m = lib.message("abrupt", body=lib.random_body(4096),
                            sender=sender)
            c.mail_rcpt(sender, ["alice@example.com"])
            c.expect("DATA", 354)
            # The final dot, then a reset before the 250 can be read: the
            # session goes away while its commit is in flight.
            c.send(lib.dot_stuff(m) + b".\r\n")
            rst_close(c)
            with lock:
                out[sender] = m
    except BaseException as e:
        with lock:
            errors.append("abrupt %d: %s: %s" % (t, type(e).__name__, e))


def t_abrupt_close_during_commit():
    out = {}
    del errors[:]
    threads = [threading.Thread(target=abrupt_thread, args=(t, out),
                                daemon=True) for t in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    check(not errors, "client errors: %s" % errors[:3])
    check(env.daemon.alive(), "daemon died when clients reset during commit")
    lib.wait_tmp_empty(env.spool, 10)
    # Whatever was committed is complete and is the message sent.
    q = env.queue()
    ack = {v[0] for v in results.values()}
    for name, qf in q.items():
        if name in ack:
            continue
        p = qf.intact_problems()
        check(not p, "%s: %s" % (name, p))
        m = out.get(qf.sender)
        check(m is not None and qf.content.endswith(m),
              "%s is not a complete copy of a message sent" % name)
    # And the daemon still serves.
    c = env.client()
    c.start()
    c.send_message("after@client.test", ["bob@example.com"],
                   lib.message("after abrupt"))
    c.quit()


def main(runner):
    global env
    env = lib.Env("concurrency", workers=4,
                  limits={"connections": "500", "connections_per_ip": "500",
                          "message_size": "1M"})
    runner.run("load_50x20", t_load)
    runner.run("queue_contents", t_queue_contents)
    runner.run("journal", t_journal)
    runner.run("tmp_empty", lib.wait_tmp_empty, env.spool)
    runner.run("abrupt_close_during_commit", t_abrupt_close_during_commit)


if __name__ == "__main__":
    lib.main_guard(main)
