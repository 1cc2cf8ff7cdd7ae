#!/usr/bin/python3
"""
test_spf_results.py - SPF results recorded in Authentication-Results and
Received-SPF, end to end (issue 4).

libspf2 (and splitmxd) do not check loopback clients, so the client speaks
from 192.0.2.10 (TEST-NET-1), an address this test adds to the loopback
interface for its duration (needs root; otherwise it prints SKIP). The
traffic stays on lo. dnsmasq serves the SPF records.

The cloud target is itself a splitmxd (the "verifier", authserv-id
verifier.test) that checks SPF of what the relay sends it; the relay
connects from 192.0.2.20 (target source_address). Two routes to it:
alice through a target without SRS, bob through one with "srs yes".
srs.mx.test publishes "v=spf1 ip4:192.0.2.20 -all".

Asserts, for each of pass / fail / softfail / none (no record):
  the relay's Authentication-Results and Received-SPF name that result;
  the verifier's result for the plain copy is what forwarding does to SPF
  (pass becomes fail: the relay is not the sender's server);
  the verifier's result for the SRS copy is pass (the SRS domain
  authorizes the relay).
With spf_reject (another daemon) an SPF fail gets 550 5.7.23 and nothing
is queued.
"""

import os
import re
import smtplib
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

SRC = "192.0.2.10"
RELAY = "192.0.2.20"
S = {}
CASES = [
    ("pass", "pass.test"),
    ("fail", "fail.test"),
    ("softfail", "soft.test"),
    ("none", "nospf.test"),
]


def add_addr():
    if os.geteuid() != 0:
        return False
    for a in (SRC, RELAY):
        r = subprocess.run(["ip", "addr", "add", a + "/32", "dev", "lo"],
                           capture_output=True)
        if r.returncode != 0 and b"File exists" not in r.stderr:
            return False
        lib.at_cleanup(lambda a=a: subprocess.run(
            ["ip", "addr", "del", a + "/32", "dev", "lo"],
            capture_output=True))
    return True


def setup():
    S["dns"] = peers.Dnsmasq(local=("test",), extra=[
        "--txt-record=pass.test,v=spf1 ip4:%s -all" % SRC,
        "--txt-record=fail.test,v=spf1 -all",
        "--txt-record=soft.test,v=spf1 ~all",
        "--txt-record=nospf.test,not an spf record",
        "--txt-record=srs.mx.test,v=spf1 ip4:%s -all" % RELAY,
    ]).start()
    S["cloud"] = peers.SmtpPeer("cloud").start()
    # The verifier: a second splitmxd in front of the capture peer.
    S["verifier"] = lib.Env("verifier", domains=[], extra="\n".join([
        "resolvers 127.0.0.1:%d" % S["dns"].port,
        "authserv_id verifier.test",
        "target sink { type smtp; host 127.0.0.1:%d; tls none }" %
        S["cloud"].port,
        "domain example.com { targets sink }",
        "duplicates no",
    ]))
    secret = os.path.join(lib.make_tmpdir("srskey"), "secret")
    lib.write_file(secret, "spf-test-secret-0123456789\n")
    S["extra"] = "\n".join([
        peers.queue_conf(),
        "resolvers 127.0.0.1:%d" % S["dns"].port,
        "authserv_id mx.splitmx.test",
        "srs_domain srs.mx.test",
        "srs_secret_file %s" % secret,
        "target plain { type smtp; host 127.0.0.1:%d; tls none; "
        "source_address %s }" % (S["verifier"].port, RELAY),
        "target srs { type smtp; host 127.0.0.1:%d; tls none; "
        "source_address %s; srs yes }" % (S["verifier"].port, RELAY),
        "domain example.com { targets plain }",
        "route bob@example.com srs",
        "duplicates no",
    ])
    S["env"] = lib.Env("spf", domains=[], extra=S["extra"])


def send(port, sender, marker, rcpt="alice@example.com"):
    content = peers.test_message("spf " + marker, marker=marker,
                                 sender=sender, rcpt=rcpt)
    with smtplib.SMTP("127.0.0.1", port, timeout=30,
                      source_address=(SRC, 0)) as s:
        s.ehlo("client.pass.test")
        s.mail(sender)
        code, _ = s.rcpt(rcpt)
        check(code == 250, "RCPT %d" % code)
        code, msg = s.data(content)
        return code, msg.decode()


def results(marker, authserv):
    """(A-R, Received-SPF) of one authserv-id in the captured copy."""
    for m in S["cloud"].messages():
        if marker.encode() in m["data"]:
            head = m["data"].split(b"\r\n\r\n", 1)[0].decode("latin-1")
            head = re.sub(r"\r\n[ \t]+", " ", head)
            ars = re.findall(r"^Authentication-Results: (.*)$", head, re.M)
            rss = re.findall(r"^Received-SPF: (.*)$", head, re.M)
            for i, ar in enumerate(ars):
                if ar.startswith(authserv + ";"):
                    return ar, rss[i] if i < len(rss) else None
            return None, None
    lib.fail("cloud has no message %s" % marker)


def spf_of(ar):
    m = re.search(r"spf=(\w+)", ar or "")
    return m.group(1) if m else None


FORWARDED = {"pass": "fail", "fail": "fail", "softfail": "softfail",
             "none": "none"}


def make_case(result, domain):
    def run():
        plain = "spf-%s-plain" % result
        srs = "spf-%s-srs" % result
        for marker, rcpt in ((plain, "alice@example.com"),
                             (srs, "bob@example.com")):
            code, msg = send(S["env"].port, "someone@" + domain, marker,
                             rcpt)
            check(code == 250, "DATA %d %s" % (code, msg))
        peers.wait_queue_empty(S["env"].spool, 20)
        peers.wait_queue_empty(S["verifier"].spool, 20)
        ar, rs = results(plain, "mx.splitmx.test")
        print("    relay A-R: %s\n    relay Received-SPF: %s" % (ar, rs))
        check(spf_of(ar) == result,
              "relay A-R does not say spf=%s: %r" % (result, ar))
        check(rs is not None and rs.startswith(result),
              "Received-SPF does not start with %s: %r" % (result, rs))
        var, _ = results(plain, "verifier.test")
        vsr, _ = results(srs, "verifier.test")
        print("    target verifier, forwarded as is: spf=%s; with SRS: "
              "spf=%s" % (spf_of(var), spf_of(vsr)))
        check(spf_of(var) == FORWARDED[result],
              "verifier on the plain copy: %r" % var)
        check(spf_of(vsr) == "pass", "verifier on the SRS copy: %r" % vsr)
    return run


def test_reject():
    env = lib.Env("spf-reject", domains=[],
                  extra=S["extra"] + "\nspf_reject yes")
    try:
        code, msg = send(env.port, "someone@fail.test", "spf-rej")
        check(code == 550 and "5.7.23" in msg,
              "SPF fail with spf_reject: %d %s" % (code, msg))
        check(not lib.list_dir(lib.queue_dir(env.spool)),
              "a refused message was queued")
    finally:
        env.daemon.stop()


def main(runner):
    if not add_addr():
        print("SKIP test_spf_results: cannot add %s to lo (needs root)" %
              SRC)
        return
    if not runner.run("setup", setup):
        return
    for result, domain in CASES:
        runner.run("spf_" + result, make_case(result, domain))
    runner.run("spf_reject", test_reject)
    runner.run("stop", S["env"].daemon.stop)
    runner.run("stop_verifier", S["verifier"].daemon.stop)
    for k in ("cloud", "dns"):
        S[k].stop()


if __name__ == "__main__":
    lib.main_guard(main)
