#!/usr/bin/python3
"""
test_client_name.py - the client's name, looked up before the banner
(issue 2: each message records the client address and name).

dnsmasq serves the reverse zone for 127.0.0.1. reverse_lookup yes.
Asserts:
  confirmed_name     PTR 127.0.0.1 -> client.test and client.test A
                     127.0.0.1: the queue file says client-name
                     client.test, the Received field says
                     "(client.test [127.0.0.1])", the log's connect line
                     names it.
  unconfirmed_name   (second daemon) PTR -> liar.test whose A is another
                     address: the name is not believed, "unknown".
  no_dns_answer      (third daemon) resolvers point at a port nobody
                     answers: the banner still comes, within the 5 s
                     bound, and the name is "unknown".
"""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import peers  # noqa: E402
from lib import check  # noqa: E402

S = {}


def env_with(dns_port, name):
    conf = lib.make_tmpdir(name)
    spool = os.path.join(conf, "spool")
    port = lib.free_port()
    path = os.path.join(conf, "splitmx.conf")
    lib.write_file(path, lib.config_text(
        spool, [{"port": port}], domains=[("example.com", None)],
        reverse_lookup=True, extra="resolvers 127.0.0.1:%d" % dns_port))
    d = lib.Daemon(path, [port], name=name)
    d.start()
    return d, port, spool


def one_message(port, spool):
    c = lib.Client(port)
    c.start("helo.client.test")
    qid = c.send_message("s@client.test", ["a@example.com"],
                         lib.message("name"))
    c.quit()
    return lib.queue_file(spool, qid)


def test_confirmed():
    dns = peers.Dnsmasq(hosts=[("client.test", "127.0.0.1")],
                        local=("test",)).start()
    try:
        d, port, spool = env_with(dns.port, "name-ok")
        q = one_message(port, spool)
        check(q.get("client-name") == b"client.test",
              "client-name %r" % q.get("client-name"))
        check(b"(client.test [127.0.0.1])" in q.content,
              "Received does not name the client: %r" % q.content[:200])
        d.stop()
        log = open(d.log_path).read()
        check("connect from client.test[127.0.0.1]" in log,
              "connect line without the name")
    finally:
        dns.stop()


def test_unconfirmed():
    dns = peers.Dnsmasq(local=("test",), extra=[
        "--ptr-record=1.0.0.127.in-addr.arpa,liar.test",
        "--address=/liar.test/127.0.0.9"]).start()
    try:
        d, port, spool = env_with(dns.port, "name-liar")
        q = one_message(port, spool)
        check(q.get("client-name") == b"unknown",
              "an unconfirmed PTR name was believed: %r" %
              q.get("client-name"))
        d.stop()
    finally:
        dns.stop()


def test_no_answer():
    silent = lib.free_port()     # nothing listens there (UDP)
    d, port, spool = env_with(silent, "name-none")
    t0 = time.monotonic()
    c = lib.Client(port, timeout=10)
    r = c.read_reply()
    dt = time.monotonic() - t0
    lib.expect_reply(r, 220, None, "banner")
    check(dt < 7.0, "banner took %.1f s" % dt)
    c.close()
    q = one_message(port, spool)
    check(q.get("client-name") == b"unknown", "client-name %r" %
          q.get("client-name"))
    d.stop()


def main(runner):
    runner.run("confirmed_name", test_confirmed)
    runner.run("unconfirmed_name", test_unconfirmed)
    runner.run("no_dns_answer", test_no_answer)


if __name__ == "__main__":
    lib.main_guard(main)
