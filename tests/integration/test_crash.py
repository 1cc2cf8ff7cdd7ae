#!/usr/bin/python3
"""
test_crash.py - kill -9 under load, restart on the same spool (DESIGN.md
rule 1: never lose an acknowledged message).

Three rounds: 20 client threads send unique messages without pause; after
a random 0.8-2 s the daemon gets SIGKILL. Then, before and after the
restart: every message that got "250 queued as ID" is in queue/ with the
content that was sent and a matching SHA-256 and size; no file in queue/ is
torn; corrupt/ stays empty (a rename-committed file cannot be torn by a
kill); after the restart tmp/ is empty and each removed tmp file is
journaled as discarded, or was committed in the spool's log (its image
there) and is now in queue/ with an accepted record; the journal has an accepted record for every
acknowledged id; a message whose client saw no 250 may be present only if
complete. The daemon must serve normally after each restart.
"""

import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

THREADS = 20
env = None
acked = {}            # qid -> (content, sender, rcpt)
sent_unacked = {}     # sender -> content (final dot sent, no 250 seen)
lock = threading.Lock()


def loader(t, rnd, stop):
    seq = 0
    while not stop.is_set() and seq < 100000:
        try:
            c = env.client(timeout=10)
            c.start("crash%d.client.test" % t)
        except Exception:
            return          # daemon gone
        try:
            for _ in range(50):
                if stop.is_set():
                    break
                seq += 1
                sender = "r%d-t%d-m%d@client.test" % (rnd, t, seq)
                m = lib.message("crash %d %d %d" % (rnd, t, seq),
                                body=lib.random_body(random.choice(
                                    [600, 4096, 20000, 70000])),
                                sender=sender)
                c.mail_rcpt(sender, ["alice@example.com"])
                c.expect("DATA", 354)
                with lock:
                    sent_unacked[sender] = m
                c.send(lib.dot_stuff(m) + b".\r\n")
                r = c.read_reply(30)
                qid = r.queue_id()
                if qid is None:
                    raise lib.TestFailure("DATA got %s" % r)
                with lock:
                    acked[qid] = (m, sender, "alice@example.com")
                    del sent_unacked[sender]
            c.quit()
        except (lib.ConnectionClosed, OSError, lib.TestFailure):
            c.close()
            return
        except BaseException:
            c.close()
            return


def verify_spool(when):
    q = lib.list_dir(lib.queue_dir(env.spool))
    problems = []
    parsed = {}
    for name in q:
        try:
            qf = lib.QueueFile(os.path.join(lib.queue_dir(env.spool), name))
        except Exception as e:
            problems.append("%s: unparsable: %s" % (name, e))
            continue
        p = qf.intact_problems()
        if p:
            problems.append("%s: torn: %s" % (name, p))
        parsed[name] = qf
    check(not problems, "%s: %d bad queue files: %s" % (when, len(problems),
                                                        problems[:5]))
    missing = [qid for qid in acked if qid not in parsed]
    check(not missing, "%s: %d acknowledged messages missing from queue/: %s"
          % (when, len(missing), missing[:5]))
    for qid, (m, sender, rcpt) in acked.items():
        qf = parsed[qid]
        check(qf.content.endswith(m), "%s: %s holds other content" % (when,
                                                                      qid))
        check(qf.sender == sender and qf.rcpt_addrs() == [rcpt],
              "%s: %s envelope %r %r" % (when, qid, qf.sender,
                                         qf.rcpt_addrs()))
    # Unacknowledged ones present must be complete and be what was sent.
    extra = [n for n in parsed if n not in acked]
    for n in extra:
        qf = parsed[n]
        m = sent_unacked.get(qf.sender)
        check(m is not None and qf.content.endswith(m),
              "%s: %s is neither acknowledged nor a complete copy of a "
              "message whose final dot was sent" % (when, n))
    corrupt = lib.list_dir(os.path.join(env.spool, "corrupt"))
    check(not corrupt, "%s: files in corrupt/: %s" % (when, corrupt[:5]))
    return len(parsed), len(extra)


def one_round(rnd):
    stop = threading.Event()
    threads = [threading.Thread(target=loader, args=(t, rnd, stop),
                                daemon=True) for t in range(THREADS)]
    for th in threads:
        th.start()
    before = len(acked)
    delay = random.uniform(0.8, 2.0)
    time.sleep(delay)
    with lock:
        n_before_kill = len(acked)
    env.daemon.kill9()
    stop.set()
    for th in threads:
        th.join(30)
    check(not any(th.is_alive() for th in threads), "loader threads hung")
    check(n_before_kill > before, "round %d: no message acknowledged in "
          "%.1f s before the kill (daemon too slow?)" % (rnd, delay))
    tmp_before = lib.tmp_files(env.spool)
    n, extra = verify_spool("round %d after kill -9" % rnd)
    print("    round %d: killed after %.2f s, %d acked so far, %d in queue/, "
          "%d unacked-but-complete, %d tmp files" % (
              rnd, delay, len(acked), n, extra, len(tmp_before)))
    env.restart()
    lib.wait_tmp_empty(env.spool, 10)
    verify_spool("round %d after restart" % rnd)
    j = env.journal()
    check(not j.malformed, "malformed journal lines: %r" % j.malformed[:3])
    accepted = set(j.accepted_ids())
    missing = [qid for qid in acked if qid not in accepted]
    check(not missing, "acknowledged ids without an accepted journal "
          "record: %s" % missing[:5])
    discarded = {r["fields"].get("id") for r in j.of("discarded")}
    # A tmp file whose image reached the spool's log before the kill was
    # committed (never acknowledged: the 250 follows the rename): restart
    # puts it into queue/ from the log, and it has its accepted record.
    restored = [n for n in tmp_before if n in accepted]
    for n in restored:
        check(os.path.exists(os.path.join(env.spool, "queue", n)) or
              any(r["fields"].get("id") == n for r in j.of("removed")),
              "tmp/%s committed in the log but not in queue/" % n)
    undoc = [n for n in tmp_before if lib.ID_RE.match(n) and
             n not in discarded and n not in accepted]
    check(not undoc, "tmp files removed at restart without a 'discarded' "
          "or 'accepted' journal record: %s" % undoc[:5])
    # Serves normally.
    c = env.client()
    c.start()
    m = lib.message("after restart %d" % rnd)
    qid = c.send_message("after@client.test", ["bob@example.com"], m)
    c.quit()
    lib.queue_file(env.spool, qid).received_and_body(m)
    acked[qid] = (m, "after@client.test", "bob@example.com")


def main(runner):
    global env
    env = lib.Env("crash", limits={"connections": "500",
                                   "connections_per_ip": "500",
                                   "message_size": "1M"})
    for rnd in range(1, 4):
        if not runner.run("kill9_round_%d" % rnd, one_round, rnd):
            break


if __name__ == "__main__":
    lib.main_guard(main)
