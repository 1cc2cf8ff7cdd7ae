#!/usr/bin/python3
"""
test_config.py - splitmxd -n (check the config), -V, and refusal to start
on a bad config. Errors must read "FILE:LINE: message" with the line of the
mistake.
"""

import os
import re
import socket
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import check  # noqa: E402

d = None


def good_config(spool, port):
    return """# a good config with every feature of the syntax
hostname mx.test; workers 2   # two statements and a trailing comment
spool_dir %s

listen 127.0.0.1:%d
limits {
	message_size 1M; recipients 5
	connections 100
	connections_per_ip 60
	errors 5
	max_received 50
	timeout_command 300s
	timeout_data 180s
	timeout_tls 60s
	shutdown_grace 10s
	bare_newline normalize
}
log { destination stderr; level info }
domain example.com { recipients alice bob postmaster "sales-*" }
domain example.org
domain example.net {
	# a comment inside a block
	recipients carol "dave"
}
""" % (spool, port)


# (name, text with @SPOOL@/@PORT@, line of the error, alternative lines)
BAD = [
    ("unknown_directive", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
frobnicate yes
domain example.com
""", 4, ()),
    ("bad_number", """# comment line 1
# comment line 2

hostname mx.test
workers abc
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
domain example.com
""", 5, ()),
    ("bad_port", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:99999
domain example.com
""", 3, ()),
    ("bad_port_text", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:smtpx
domain example.com
""", 3, ()),
    ("unknown_limit", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
limits {
	message_size 1M
	recipients 5
	frobnicate 3
	errors 5
}
domain example.com
""", 7, ()),
    ("bad_size_unit", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
limits { recipients 5
	message_size 10Q }
domain example.com
""", 5, ()),
    ("bad_bare_newline", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
limits {
	bare_newline sometimes
}
domain example.com
""", 5, ()),
    ("bad_timeout", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
limits { timeout_command soon }
domain example.com
""", 4, ()),
    ("bad_log_level", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
log { destination stderr; level chatty }
domain example.com
""", 4, ()),
    ("missing_argument", """spool_dir @SPOOL@
listen 127.0.0.1:@PORT@

hostname
domain example.com
""", 4, ()),
    ("second_statement_on_line", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
workers 2; workers x
domain example.com
""", 4, ()),
    ("stray_close_brace", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
}
domain example.com
""", 4, ()),
    ("unterminated_quote", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
domain example.com { recipients "alice }
domain example.org
""", 4, (5, 6)),
    ("unclosed_block", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
limits {
	recipients 5
domain example.com
""", 4, (6, 7)),
    ("domain_without_name", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
domain
""", 4, ()),
    ("unknown_in_domain_block", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@
domain example.com {
	recipients alice
	aliases bob
}
""", 6, ()),
    ("unknown_in_listen_block", """hostname mx.test
spool_dir @SPOOL@
listen 127.0.0.1:@PORT@ {
	tls_cipher ALL
}
domain example.com
""", 4, ()),
]


def render(text, port):
    return text.replace("@SPOOL@", os.path.join(d, "spool")).replace(
        "@PORT@", str(port))


def t_good_config_n():
    port = lib.free_port()
    path = lib.write_file(os.path.join(d, "good.conf"),
                          good_config(os.path.join(d, "spool-good"), port))
    r = lib.run_splitmxd(["-n", "-f", path])
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == 0, "-n on a good config exited %d: %s" % (
        r.returncode, err))
    lib.check_no_sanitizer(err)
    check(lib.port_refuses(port), "-n must not start listening")


def t_example_config_n():
    path = os.path.join(lib.REPO, "etc", "splitmx.conf")
    if not os.path.exists(path):
        print("    (no etc/splitmx.conf yet)")
        return
    r = lib.run_splitmxd(["-n", "-f", path])
    check(r.returncode == 0, "-n on etc/splitmx.conf exited %d: %s" % (
        r.returncode, r.stderr.decode("utf-8", "replace")))


def t_version():
    r = lib.run_splitmxd(["-V"])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode == 0, "-V exited %d: %s" % (r.returncode, out))
    check("splitmx" in out and re.search(r"\d+\.\d+", out),
          "-V output should name splitmx and a version: %r" % out)


def t_missing_file():
    path = os.path.join(d, "does-not-exist.conf")
    r = lib.run_splitmxd(["-n", "-f", path])
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode != 0, "-n on a missing file exited 0")
    check(path in err, "error does not name the file: %r" % err)
    lib.check_no_sanitizer(err)


def t_bad_flag():
    r = lib.run_splitmxd(["-Z"])
    check(r.returncode != 0, "unknown flag -Z exited 0")


def check_bad(name, text, line, alt):
    port = lib.free_port()
    path = lib.write_file(os.path.join(d, "bad-%s.conf" % name),
                          render(text, port))
    r = lib.run_splitmxd(["-n", "-f", path])
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode != 0, "-n exited 0 on a bad config (%s); stderr %r"
          % (name, err))
    m = re.search(re.escape(path) + r":(\d+): (\S.*)", err)
    check(m, "expected '%s:LINE: message' on stderr, got %r" % (path, err))
    got = int(m.group(1))
    check(got == line or got in alt,
          "error names line %d, expected %d%s: %r" % (
              got, line, " (or %s)" % list(alt) if alt else "",
              m.group(0)))
    lib.check_no_sanitizer(err, "splitmxd -n (%s)" % m.group(0))


def check_refuses_start(name, text, line, alt):
    port = lib.free_port()
    path = lib.write_file(os.path.join(d, "start-%s.conf" % name),
                          render(text, port))
    p = subprocess.Popen([lib.SPLITMXD, "-d", "-f", path],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=lib.daemon_env(),
                         preexec_fn=lib._child_setup)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        lib.fail("splitmxd -d kept running on a bad config (%s)" % name)
    err = err.decode("utf-8", "replace")
    check(p.returncode != 0, "splitmxd -d exited 0 on a bad config")
    check(re.search(re.escape(path) + r":\d+: ", err),
          "no FILE:LINE: error on stderr: %r" % err)
    lib.check_no_sanitizer(err)
    check(lib.port_refuses(port), "something listens on the port")


def t_refuses_missing_cert():
    port = lib.free_port()
    path = lib.write_file(os.path.join(d, "nocert.conf"), """hostname mx.test
spool_dir %s
listen 127.0.0.1:%d { tls_cert %s/none.pem; tls_key %s/none.key }
domain example.com
""" % (os.path.join(d, "spool-nc"), port, d, d))
    p = subprocess.Popen([lib.SPLITMXD, "-d", "-f", path],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=lib.daemon_env(),
                         preexec_fn=lib._child_setup)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        lib.fail("splitmxd started with a missing TLS certificate")
    err = err.decode("utf-8", "replace")
    check(p.returncode != 0, "exited 0 with a missing TLS certificate")
    check("none.pem" in err, "error does not name the certificate: %r" % err)
    lib.check_no_sanitizer(err)


def t_refuses_port_in_use():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((lib.HOST, 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        path = lib.write_file(os.path.join(d, "inuse.conf"),
                              good_config(os.path.join(d, "spool-iu"), port))
        p = subprocess.Popen([lib.SPLITMXD, "-d", "-f", path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=lib.daemon_env(),
                             preexec_fn=lib._child_setup)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate(timeout=10)
            lib.fail("splitmxd kept running although its port is taken")
        err = err.decode("utf-8", "replace")
        check(p.returncode != 0, "exited 0 although its port is taken")
        check(str(port) in err, "error does not name the port: %r" % err)
        lib.check_no_sanitizer(err)
    finally:
        s.close()


def t_daemon_runs_on_good_config():
    port = lib.free_port()
    path = lib.write_file(os.path.join(d, "run.conf"),
                          good_config(os.path.join(d, "spool-run"), port))
    dm = lib.Daemon(path, [port], name="goodconf")
    dm.start()
    c = lib.Client(port)
    r = c.start()
    check("SIZE 1048576" in r.lines[1:], "message_size 1M: %s" % r)
    c.expect("MAIL FROM:<s@client.test>", 250, "2.1.0")
    c.expect("RCPT TO:<carol@example.net>", 250, "2.1.5")
    c.expect("RCPT TO:<dave@example.net>", 250, "2.1.5")
    c.expect("RCPT TO:<erin@example.net>", 550, "5.1.1")
    c.quit()
    dm.stop()
    for sub in ("queue", "tmp", "corrupt"):
        check(os.path.isdir(os.path.join(d, "spool-run", sub)),
              "spool_dir lacks %s/ after start" % sub)


def main(runner):
    global d
    d = lib.make_tmpdir("config")
    for name, fn in sorted((n[2:], f) for n, f in globals().items()
                           if n.startswith("t_")):
        runner.run(name, fn)
    for name, text, line, alt in BAD:
        runner.run("bad_" + name, check_bad, name, text, line, alt)
    for name, text, line, alt in BAD[:3]:
        runner.run("refuses_start_" + name, check_refuses_start, name, text,
                   line, alt)


if __name__ == "__main__":
    lib.main_guard(main)
