#!/usr/bin/python3
"""
test_crashtest.py - three cycles of the crash campaign (tests/crash/
crashtest.py, docs/crashtest.md) as part of make check: splitmxd
dual-delivering to Postfix and aiosmtpd under load, killed with SIGKILL in
three of its phases (data, commit, dedup, delivery, startup: the rotation
starts at random) and restarted on the same spool, with a connection reset
mid-DATA and a swallowed 250 at a target.

Asserts: the campaign exits 0 (no acknowledged message missing at any of
its targets, no corrupt copy, nothing in spool/corrupt/, no sanitizer
report, the queue drained) and its last line is the summary
"cycles=3 accepted=A lost=0 duplicates=D corrupt=0" with A > 0.
"""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

CYCLES = 3
SUMMARY_RE = re.compile(r"^cycles=(\d+) accepted=(\d+) lost=(-?\d+) "
                        r"duplicates=(-?\d+) corrupt=(-?\d+)$")


def test_campaign():
    script = os.path.join(lib.REPO, "tests", "crash", "crashtest.py")
    env = dict(os.environ)
    env.setdefault("SPLITMX_TEST_LOGDIR", lib.log_dir())
    p = subprocess.Popen(["/usr/bin/python3", script, "--cycles",
                          str(CYCLES)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, preexec_fn=lib._child_setup)
    lib.at_cleanup(lambda: p.poll() is None and p.kill())
    try:
        out, _ = p.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(timeout=30)
        lib.fail("crashtest did not finish in 200 s:\n%s" % out.decode(
            "utf-8", "replace"))
    text = out.decode("utf-8", "replace")
    for line in text.splitlines():
        print("    " + line)
    lines = [l for l in text.splitlines() if SUMMARY_RE.match(l)]
    check(lines, "no summary line from crashtest")
    m = SUMMARY_RE.match(lines[-1])
    check(p.returncode == 0, "crashtest exited %d: %s" % (p.returncode,
                                                         lines[-1]))
    check(int(m.group(1)) == CYCLES and int(m.group(2)) > 0 and
          m.group(3) == "0" and m.group(5) == "0",
          "crashtest summary: %s" % lines[-1])


def main(runner):
    runner.run("crash_campaign_%d_cycles" % CYCLES, test_campaign)


if __name__ == "__main__":
    lib.main_guard(main)
