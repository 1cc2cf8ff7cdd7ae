#!/usr/bin/python3
"""
test_privdrop.py - started as root with "user nobody", splitmxd binds,
opens its spool, then runs as nobody for good (issue 2). The spool lies
in a 0700 directory nobody cannot search, as a private spool might.

Asserts (root only; otherwise SKIP):
  runs_as_user      /proc/PID/status shows real, effective, saved and
                    filesystem uid and gid of nobody, and no supplementary
                    groups but nobody's.
  accepts_mail      a message is accepted (250) and its queue file,
                    the journal and the duplicate index belong to nobody.
  delivers          it is delivered to a maildir target while unprivileged.
"""

import os
import pwd
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

S = {}


def setup():
    nobody = pwd.getpwnam("nobody")
    S["uid"], S["gid"] = nobody.pw_uid, nobody.pw_gid
    # A target's maildir must be reachable by the run-as user; the spool
    # need not be (it stays in lib's private 0700 temp directory: the
    # daemon works inside it through its working directory).
    d = tempfile.mkdtemp(prefix="splitmx-privdrop-", dir="/var/tmp")
    lib.at_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, 0o755)
    S["md"] = os.path.join(d, "maildir")
    os.mkdir(S["md"])
    os.chown(S["md"], S["uid"], S["gid"])
    S["env"] = lib.Env("privdrop", domains=[], extra="\n".join([
        "user nobody",
        "target arch { type maildir; path %s }" % S["md"],
        "domain example.com { targets arch }",
    ]))


def status_ids(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = v.split()
    return out


def test_user():
    ids = status_ids(S["env"].daemon.proc.pid)
    check(ids["Uid"] == [str(S["uid"])] * 4, "Uid %r" % ids["Uid"])
    check(ids["Gid"] == [str(S["gid"])] * 4, "Gid %r" % ids["Gid"])
    check(ids["Groups"] in ([], [str(S["gid"])]), "Groups %r" %
          ids["Groups"])


def test_mail():
    env = S["env"]
    qid = peers.smtp_send(env.port, "s@client.test", ["a@example.com"],
                          peers.test_message("privdrop",
                                             rcpt="a@example.com"))
    for p in (os.path.join(env.spool, "journal"),
              os.path.join(env.spool, "dedup")):
        check(os.stat(p).st_uid == S["uid"], "%s not owned by nobody" % p)
    S["qid"] = qid


def test_delivers():
    peers.wait_queue_gone(S["env"].spool, S["qid"], 20)
    new = os.listdir(os.path.join(S["md"], "new"))
    check(len(new) == 1, "maildir has %d messages" % len(new))
    st = os.stat(os.path.join(S["md"], "new", new[0]))
    check(st.st_uid == S["uid"], "delivered file owned by uid %d" %
          st.st_uid)


def main(runner):
    if os.geteuid() != 0:
        print("SKIP test_privdrop: needs root")
        return
    if not runner.run("setup", setup):
        return
    runner.run("runs_as_user", test_user)
    runner.run("accepts_mail", test_mail)
    runner.run("delivers", test_delivers)
    runner.run("stop", S["env"].daemon.stop)


if __name__ == "__main__":
    lib.main_guard(main)
