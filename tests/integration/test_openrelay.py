#!/usr/bin/python3
"""
test_openrelay.py - no open relay (DESIGN.md rule 8).

Domains: example.com (recipients alice bob postmaster "sales-*") and
example.org (any local part). Every relay trick must be refused; nothing
may be queued for a refused address.
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check, expect_reply  # noqa: E402

env = None

# (address as sent inside RCPT TO:<...>, code, enhanced or None for "any")
REFUSED = [
    ("user@foreign.example", 554, "5.7.1"),
    ("user%foreign.example@example.org", 554, "5.7.1"),
    ("alice%foreign.example@example.com", 554, "5.7.1"),
    ("user%foreign.example%example.org@example.org", 554, "5.7.1"),
    ("foreign.example!user@example.org", 554, "5.7.1"),
    ("foreign.example!alice@example.com", 554, "5.7.1"),
    ("@example.org:user@foreign.example", 554, "5.7.1"),
    ("@a.example,@example.org:user@foreign.example", 554, "5.7.1"),
    ('"user@foreign.example"@example.org', 554, "5.7.1"),
    ('"user%foreign.example"@example.org', 554, "5.7.1"),
    ("user@example.org@foreign.example", 501, None),
    ("user@evilexample.org", 554, "5.7.1"),
    ("user@evilexample.com", 554, "5.7.1"),
    ("user@example.org.foreign.example", 554, "5.7.1"),
    ("user@sub.example.org", 554, "5.7.1"),
    ("user@[127.0.0.1]", 554, "5.7.1"),
    ("postmaster@[127.0.0.1]", 554, "5.7.1"),
    ("user@[IPv6:::1]", 554, "5.7.1"),
    ("user@localhost", 554, "5.7.1"),
    ("user@mx.test", 554, "5.7.1"),
    ("nobody@example.com", 550, "5.1.1"),
]

ACCEPTED = [
    "user@EXAMPLE.ORG",
    "user@Example.Org",
    "ALICE@EXAMPLE.COM",
    "sales-emea@example.com",
    "postmaster",
    '"quoted user"@example.org',
]


def t_refused():
    before = set(lib.list_dir(lib.queue_dir(env.spool)))
    for addr, code, enh in REFUSED:
        c = env.client()
        c.start()
        c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
        r = c.cmd("RCPT TO:<%s>" % addr)
        expect_reply(r, code, enh, "RCPT TO:<%s>" % addr)
        c.expect("DATA", 554, "5.5.1", "DATA after RCPT TO:<%s> was refused"
                 % addr)
        c.quit()
    after = set(lib.list_dir(lib.queue_dir(env.spool)))
    check(after == before, "queue files appeared: %s" % (after - before))


def t_refused_then_accepted_only_local():
    # Mixed: the queued message lists only the accepted recipient.
    c = env.client()
    c.start()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    for addr, code, enh in REFUSED[:6]:
        expect_reply(c.cmd("RCPT TO:<%s>" % addr), code, enh,
                     "RCPT TO:<%s>" % addr)
    # errors 50 in this config: these refusals do not end the session.
    c.expect("RCPT TO:<bob@example.com>", 250, "2.1.5")
    m = lib.message("mixed")
    r = c.data(m)
    qid = r.queue_id()
    check(qid, "not queued: %s" % r)
    c.quit()
    qf = lib.queue_file(env.spool, qid)
    check(qf.rcpt_addrs() == ["bob@example.com"], "rcpts %r" %
          qf.rcpt_addrs())


def t_accepted():
    for addr in ACCEPTED:
        c = env.client()
        c.start()
        c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
        c.expect("RCPT TO:<%s>" % addr, 250, "2.1.5", "RCPT TO:<%s>" % addr)
        m = lib.message("accepted " + addr)
        r = c.data(m)
        qid = r.queue_id()
        check(qid, "RCPT TO:<%s>: not queued: %s" % (addr, r))
        c.quit()
        qf = lib.queue_file(env.spool, qid)
        check(qf.rcpts and qf.rcpts[0]["addr"] == addr.encode(),
              "stored rcpt %r, expected %r as received" % (
                  qf.rcpts[0]["addr"] if qf.rcpts else None, addr))


def t_source_route_to_local_accepted():
    # The route is ignored; the mailbox is local, so it is accepted.
    c = env.client()
    c.start()
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<@foreign.example:user@example.org>", 250, "2.1.5",
             "source route to a local mailbox")
    m = lib.message("route")
    qid = c.data(m).queue_id()
    check(qid, "not queued")
    c.quit()
    qf = lib.queue_file(env.spool, qid)
    check(qf.rcpt_addrs() == ["user@example.org"],
          "stored rcpt %r: the route must be dropped" % qf.rcpt_addrs())


def main(runner):
    global env
    env = lib.Env("openrelay", limits={"errors": "50"})
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)


if __name__ == "__main__":
    lib.main_guard(main)
