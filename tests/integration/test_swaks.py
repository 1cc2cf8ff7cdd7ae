#!/usr/bin/python3
"""
test_swaks.py - swaks (a real, independent SMTP client) against splitmxd:
plain, STARTTLS (--tls), PIPELINING (--pipeline), BDAT is not in swaks.
Each message must be queued as swaks reports and hold swaks' exact body.
"""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

env = None


def swaks(*args, timeout=60):
    cmd = ["swaks", "--server", "%s:%d" % (lib.HOST, env.port),
           "--helo", "swaks.client.test", "--timeout", "20"] + list(args)
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    out = r.stdout.decode("utf-8", "replace")
    return r.returncode, out


def queued_ids(out):
    return re.findall(r"<[-~]\s+250 2\.0\.0 Ok: queued as ([0-9A-Z]{16})", out)


def sent_data(out):
    """The DATA content swaks sent (transcript ' -> '/' ~> '), unstuffed."""
    lines = out.splitlines()
    start = None
    for i, l in enumerate(lines):
        if l.startswith(("<-  354", "<~  354")):
            start = i
            break
    check(start is not None, "no 354 in swaks output")
    data = []
    for l in lines[start + 1:]:
        if not l.startswith((" -> ", " ~> ")):
            continue
        t = l[4:]
        if t == ".":
            break
        if t.startswith("."):
            t = t[1:]
        data.append(t.encode() + b"\r\n")
    else:
        lib.fail("no end of data in swaks output")
    return b"".join(data)


def run_and_check(args, rcpts, tls=False, tag=""):
    body = "swaks body %s line 1\n.leading dot\nlast line %s" % (
        tag, os.urandom(6).hex())
    rc, out = swaks("--to", ",".join(rcpts), "--from", "swaks@client.test",
                    "--header", "Subject: swaks %s" % tag,
                    "--body", body, *args)
    check(rc == 0, "swaks %s exited %d; transcript ends:\n%s" % (
        " ".join(args), rc, "\n".join(out.splitlines()[-6:])))
    ids = queued_ids(out)
    check(len(ids) == 1, "expected one 'queued as' in swaks output:\n%s" % out)
    if tls:
        check(re.search(r"<-\s+220 2\.0\.0 Ready to start TLS", out),
              "no STARTTLS 220 in swaks output:\n%s" % out)
        check("TLS started" in out, "swaks did not start TLS:\n%s" % out)
    qf = lib.queue_file(env.spool, ids[0])
    check(qf.rcpt_addrs() == rcpts, "rcpts %r, expected %r" % (
        qf.rcpt_addrs(), rcpts))
    check(qf.sender == "swaks@client.test", "sender %r" % qf.sender)
    check(qf.get("helo") == b"swaks.client.test", "helo %r" % qf.get("helo"))
    # What swaks sent, rebuilt from its transcript, is stored byte-exact.
    qf.received_and_body(sent_data(out))
    check(body.replace("\n", "\r\n").encode() in qf.content,
          "swaks body not in the content")
    check(b"Subject: swaks %s\r\n" % tag.encode() in qf.content,
          "subject missing")
    if tls:
        check(qf.get("tls") is not None, "no tls line for a TLS session")
    else:
        check(qf.get("tls") is None, "tls line for a plain session")
    return qf, out


def t_plain():
    run_and_check([], ["alice@example.com"], tag="plain")


def t_tls():
    run_and_check(["--tls"], ["alice@example.com", "bob@example.com"],
                  tls=True, tag="tls")


def t_pipeline():
    qf, out = run_and_check(["--pipeline"], ["bob@example.com",
                                             "x@example.org"],
                            tag="pipeline")
    check("PIPELINING" in out, "PIPELINING not seen by swaks:\n%s" % out)


def t_tls_pipeline():
    run_and_check(["--tls", "--pipeline"], ["alice@example.com"], tls=True,
                  tag="tlspipe")


def t_refused_rcpt():
    rc, out = swaks("--to", "user@foreign.example", "--from",
                    "swaks@client.test")
    check(rc != 0, "swaks to a foreign domain succeeded:\n%s" % out)
    check(re.search(r"<\*\* 554 5\.7\.1", out), "expected 554 5.7.1 in:\n%s"
          % out)


def main(runner):
    global env
    env = lib.Env("swaks", tls=True)
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)
    runner.run("tmp_empty", lib.wait_tmp_empty, env.spool)


if __name__ == "__main__":
    lib.main_guard(main)
