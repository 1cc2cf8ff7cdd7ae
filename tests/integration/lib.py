"""
lib.py - shared helpers for the splitmx integration tests.

The tests start splitmxd themselves on 127.0.0.1 (free ports, temporary
spool), talk to it only over the network, and read the spool read-only.
Standard library only (aiosmtpd is used by tests that need a peer).

Every wait is bounded in count and time; every daemon is stopped by PID in
a finally/atexit path. Daemon logs are kept under SPLITMX_TEST_LOGDIR (set
by tests/run.sh) or a temporary directory printed on failure; Daemon.stop()
fails when a sanitizer report appears in the log or when the daemon does
not exit 0 on SIGTERM.
"""

import atexit
import ctypes
import errno
import functools
import hashlib
import os
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SPLITMXD = os.environ.get("SPLITMXD") or os.path.join(REPO, "build", "san",
                                                       "splitmxd")
if not os.path.isabs(SPLITMXD):
    SPLITMXD = os.path.join(REPO, SPLITMXD)

HOST = "127.0.0.1"
CRLF = b"\r\n"
ID_RE = re.compile(r"^[0-9A-Z]{16}$")
QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Z]{16})$")
SANITIZER_PATTERNS = ("AddressSanitizer", "LeakSanitizer",
                      "UndefinedBehaviorSanitizer", "runtime error",
                      "ThreadSanitizer")

DEFAULT_ASAN = "detect_leaks=1:abort_on_error=1"
DEFAULT_UBSAN = "print_stacktrace=1:halt_on_error=1"


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


# ---------------------------------------------------------------- dirs, ports

_CLEANUPS = []          # callables run at exit (LIFO)
_CLEANUP_LOCK = threading.Lock()
_FAILED = False         # any test failed: keep temp dirs for inspection


def at_cleanup(fn):
    with _CLEANUP_LOCK:
        _CLEANUPS.append(fn)


def _run_cleanups():
    while True:
        with _CLEANUP_LOCK:
            if not _CLEANUPS:
                return
            fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # cleanup must go on
            print("cleanup error: %r" % (e,), file=sys.stderr)


atexit.register(_run_cleanups)


def _on_sigterm(signum, frame):
    # timeout(1) sends SIGTERM: unwind so finally blocks and atexit run
    # (daemons killed, tmpfs unmounted).
    raise SystemExit(124)


signal.signal(signal.SIGTERM, _on_sigterm)

_TMP_BASE = None


def tmp_base():
    global _TMP_BASE
    if _TMP_BASE is None:
        _TMP_BASE = tempfile.mkdtemp(prefix="splitmx-it-")

        def rm():
            if _FAILED or os.environ.get("SPLITMX_TEST_KEEP"):
                print("kept test files in %s" % _TMP_BASE)
            else:
                shutil.rmtree(_TMP_BASE, ignore_errors=True)
        at_cleanup(rm)
    return _TMP_BASE


def make_tmpdir(name="t"):
    return tempfile.mkdtemp(prefix=name + "-", dir=tmp_base())


_LOGDIR = None


def log_dir():
    """Directory where daemon logs are kept (never removed by the tests)."""
    global _LOGDIR
    if _LOGDIR is None:
        d = os.environ.get("SPLITMX_TEST_LOGDIR")
        if d:
            os.makedirs(d, exist_ok=True)
            _LOGDIR = os.path.abspath(d)
        else:
            _LOGDIR = os.path.join(tmp_base(), "logs")
            os.makedirs(_LOGDIR, exist_ok=True)
    return _LOGDIR


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---------------------------------------------------------------- certificates

def make_cert(directory, cn="localhost"):
    """Self-signed cert + key made by openssl; returns (cert, key) paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-subj", "/CN=" + cn, "-days", "2",
                        "-keyout", key, "-out", cert],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    check(r.returncode == 0, "openssl req failed: %s" % r.stdout.decode(
        "utf-8", "replace"))
    return cert, key


def client_tls_context(cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------- config

DEFAULT_DOMAINS = [
    ("example.com", ["alice", "bob", "postmaster", '"sales-*"']),
    ("example.org", None),
]


def config_text(spool_dir, listeners, hostname="mx.test", workers=4,
                limits=None, domains=None, log_level="info", extra="",
                reverse_lookup=False):
    """
    listeners: list of dicts {port, cert, key} (cert/key optional).
    limits: dict name -> value string, written inside limits { }.
    domains: list of (name, recipients list or None).
    """
    out = []
    out.append("# written by tests/integration/lib.py")
    out.append("hostname %s" % hostname)
    out.append("spool_dir %s" % spool_dir)
    out.append("workers %d" % workers)
    # Client name lookups go to the system resolver unless a test sets
    # resolvers; only the test of the lookup itself turns them on.
    out.append("reverse_lookup %s" % ("yes" if reverse_lookup else "no"))
    for li in listeners:
        if li.get("cert"):
            out.append("listen %s:%d { tls_cert %s; tls_key %s }" % (
                HOST, li["port"], li["cert"], li["key"]))
        else:
            out.append("listen %s:%d" % (HOST, li["port"]))
    if limits:
        out.append("limits {")
        for k, v in limits.items():
            out.append("\t%s %s" % (k, v))
        out.append("}")
    out.append("log { destination stderr; level %s }" % log_level)
    for name, rcpts in (DEFAULT_DOMAINS if domains is None else domains):
        if rcpts is None:
            out.append("domain %s" % name)
        else:
            out.append("domain %s { recipients %s }" % (name, " ".join(rcpts)))
    if extra:
        out.append(extra)
    return "\n".join(out) + "\n"


def write_file(path, text):
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------- daemon

_DAEMON_SEQ = [0]
_DAEMONS = []
_PR_SET_PDEATHSIG = 1


def _child_setup(nofile=None):
    # If the test process dies, take the daemon with it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass
    if nofile is not None:
        # As `prlimit --nofile=N:N splitmxd`: soft and hard limit.
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


def daemon_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", DEFAULT_ASAN)
    env.setdefault("UBSAN_OPTIONS", DEFAULT_UBSAN)
    return env


def run_splitmxd(args, timeout=30):
    """Runs splitmxd with args to completion; returns CompletedProcess."""
    return subprocess.run([SPLITMXD] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=daemon_env())


def sanitizer_hits(text):
    hits = []
    for line in text.splitlines():
        if any(p in line for p in SANITIZER_PATTERNS):
            hits.append(line)
    return hits


def sanitizer_summary(text, max_lines=12):
    """The report's ERROR/SUMMARY lines and the first frames in src/."""
    out = []
    for line in text.splitlines():
        if any(p in line for p in SANITIZER_PATTERNS):
            out.append(line.strip())
        else:
            m = re.match(r"^\s*#\d+ 0x[0-9a-f]+ in (\S+) (src/\S+)", line)
            if m:
                out.append("%s %s" % (m.group(1), m.group(2)))
        if len(out) >= max_lines:
            break
    return " / ".join(out)


def check_no_sanitizer(text, what="splitmxd"):
    if sanitizer_hits(text):
        fail("sanitizer report from %s: %s" % (what, sanitizer_summary(text)))


class Daemon:
    """One splitmxd -d -f CONF process with its stderr in a kept log file."""

    def __init__(self, conf_path, ports, name="splitmxd", nofile=None):
        self.conf_path = conf_path
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) of the daemon
        self.ports = list(ports)
        _DAEMON_SEQ[0] += 1
        self.log_path = os.path.join(
            log_dir(), "%s-%d-%s.log" % (os.path.basename(sys.argv[0])
                                         .replace(".py", ""),
                                         _DAEMON_SEQ[0], name))
        self.proc = None
        self.killed = False     # we sent SIGKILL on purpose
        self.term_sent = False  # a test sent SIGTERM itself
        self.stopped = False
        self.rc = None
        _DAEMONS.append(self)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True, ready_timeout=15.0):
        check(os.access(SPLITMXD, os.X_OK),
              "splitmxd binary not found or not executable: %s" % SPLITMXD)
        self.logf = open(self.log_path, "ab")
        self.logf.write(("=== start %s -d -f %s at %s\n" % (
            SPLITMXD, self.conf_path, time.strftime("%H:%M:%S"))).encode())
        self.logf.flush()
        self.proc = subprocess.Popen(
            [SPLITMXD, "-d", "-f", self.conf_path], stdin=subprocess.DEVNULL,
            stdout=self.logf, stderr=self.logf, env=daemon_env(),
            preexec_fn=functools.partial(_child_setup, self.nofile))
        self.stopped = False
        self.killed = False
        self.term_sent = False
        self.rc = None
        at_cleanup(self._emergency_kill)
        if wait:
            self.wait_ready(ready_timeout)
        return self

    def _emergency_kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.kill()
                self.proc.wait(5)
            except Exception:
                pass

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=15.0):
        """Waits until every listener answers with a 220 banner."""
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                if not self.alive():
                    fail("splitmxd exited (rc=%s) before it was ready; log:\n%s"
                         % (self.proc.returncode, self.log_tail()))
                if time.monotonic() > deadline:
                    fail("splitmxd not answering on port %d after %.0f s; "
                         "log:\n%s" % (port, timeout, self.log_tail()))
                try:
                    c = Client(port, timeout=5)
                except OSError:
                    time.sleep(0.05)
                    continue
                try:
                    r = c.read_reply()
                    check(r.code == 220, "readiness probe got %s" % r)
                    c.send(b"QUIT\r\n")
                    c.read_reply()
                    c.wait_closed(5)
                finally:
                    c.close()
                break
        return self

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()
        return "\n".join("    | " + l for l in lines[-n:])

    def kill9(self):
        """SIGKILL by PID (a crash); no sanitizer or exit checks."""
        was_alive = self.alive()
        if was_alive:
            os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                fail("splitmxd pid %d survived SIGKILL" % self.proc.pid)
        self.killed = True
        self.rc = self.proc.returncode
        self.stopped = True
        self._close_log()
        probs = self.sanitizer_problems()
        if not was_alive:
            probs.insert(0, "splitmxd had already exited (rc=%s) before "
                         "kill -9" % self.rc)
        if probs:
            fail("; ".join(probs) + "\nlog (%s):\n%s" % (self.log_path,
                                                        self.log_tail()))

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)
            if sig == signal.SIGTERM:
                self.term_sent = True

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns rc or None on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _close_log(self):
        try:
            self.logf.close()
        except Exception:
            pass

    def stop(self, timeout=15.0, expect_rc=0):
        """
        SIGTERM, then SIGKILL after timeout seconds. Raises TestFailure if the
        daemon had already died, did not exit in time, exited with a status
        other than expect_rc, or its log shows a sanitizer report.
        """
        if self.proc is None or self.stopped:
            return self.rc
        problems = []
        if self.proc.poll() is not None:
            if not self.term_sent:
                problems.append("splitmxd had already exited (rc=%s) before "
                                "stop" % self.proc.returncode)
        else:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append("splitmxd did not exit within %.0f s of "
                                "SIGTERM; killed" % timeout)
                self.proc.kill()
                self.proc.wait(10)
                self.killed = True
        self.rc = self.proc.returncode
        self.stopped = True
        self._close_log()
        if not problems and expect_rc is not None and self.rc != expect_rc:
            problems.append("splitmxd exit status %s after SIGTERM, expected "
                            "%s" % (self.rc, expect_rc))
        problems += self.sanitizer_problems()
        if problems:
            fail("; ".join(problems) + "\nlog (%s):\n%s" % (
                self.log_path, self.log_tail()))
        return self.rc

    def sanitizer_problems(self):
        text = self.log_text()
        if sanitizer_hits(text):
            return ["sanitizer report in %s: %s" % (
                self.log_path, sanitizer_summary(text, 10))]
        return []


class Env:
    """A temp dir with spool, config, optional TLS cert and a daemon."""

    def __init__(self, name="env", tls=False, plain_listener=False,
                 limits=None, domains=None, hostname="mx.test", workers=4,
                 spool_dir=None, start=True, log_level="info", extra="",
                 nofile=None):
        self.name = name
        self.dir = make_tmpdir(name)
        self.spool = spool_dir or os.path.join(self.dir, "spool")
        self.hostname = hostname
        self.cert = self.key = None
        listeners = []
        if tls:
            self.cert, self.key = make_cert(self.dir)
        self.port = free_port()
        listeners.append({"port": self.port, "cert": self.cert,
                          "key": self.key})
        self.plain_port = None
        if plain_listener:
            self.plain_port = free_port()
            listeners.append({"port": self.plain_port})
        self.limits = dict(limits or {})
        self.conf_path = os.path.join(self.dir, "splitmx.conf")
        write_file(self.conf_path, config_text(
            self.spool, listeners, hostname=hostname, workers=workers,
            limits=self.limits, domains=domains, log_level=log_level,
            extra=extra))
        self.nofile = nofile
        self.daemon = Daemon(self.conf_path, [l["port"] for l in listeners],
                             name=name, nofile=nofile)
        if start:
            self.daemon.start()

    def restart(self):
        self.daemon = Daemon(self.conf_path, self.daemon.ports,
                             name=self.name, nofile=self.nofile)
        self.daemon.start()
        return self.daemon

    def client(self, port=None, **kw):
        return Client(port or self.port, **kw)

    def queue(self):
        return read_queue(self.spool)

    def journal(self):
        return read_journal(self.spool)


# ---------------------------------------------------------------- SMTP client

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines          # text after "NNN-" / "NNN "
        first = lines[0] if lines else ""
        m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)", first)
        self.enh = m.group(1) if m else None

    @property
    def text(self):
        return "\n".join(self.lines)

    def queue_id(self):
        if self.code != 250:
            return None
        m = QUEUED_RE.match(self.lines[-1]) if self.lines else None
        return m.group(1) if m else None

    def __str__(self):
        return " | ".join("%d %s" % (self.code, l) for l in self.lines)

    __repr__ = __str__


class ConnectionClosed(TestFailure):
    pass


class Client:
    """Raw SMTP over a socket: exact bytes out, strictly parsed replies in."""

    MAX_LINE = 4096

    def __init__(self, port, host=HOST, timeout=10.0, source=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source)
        self.buf = b""
        self.tls = False
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by server%s" % (
                " (unparsed: %r)" % self.buf if self.buf else ""))
        self.buf += data

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = self.buf[:i + 1]
                self.buf = self.buf[i + 1:]
                if not line.endswith(b"\r\n"):
                    fail("reply line not terminated by CRLF: %r" % line)
                return line[:-2]
            if len(self.buf) > self.MAX_LINE:
                fail("reply line longer than %d octets" % self.MAX_LINE)
            try:
                self._fill(deadline)
            except socket.timeout:
                fail("timed out after %.1f s waiting for a reply line%s" % (
                    timeout or self.timeout,
                    " (partial: %r)" % self.buf if self.buf else ""))

    def read_reply(self, timeout=None):
        """Reads one complete (possibly multiline) reply."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        lines = []
        code = None
        for _ in range(1000):
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            m = re.match(rb"^([2-5][0-9][0-9])([ -]|$)(.*)$", line, re.S)
            if not m:
                fail("malformed reply line %r" % line)
            c = int(m.group(1))
            if code is not None and c != code:
                fail("reply code changed within a multiline reply: %r" % line)
            code = c
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return Reply(code, lines)
        fail("reply with more than 1000 lines")

    def cmd(self, line, timeout=None):
        """Sends line + CRLF, returns the reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + CRLF)
        return self.read_reply(timeout)

    def expect(self, line, code, enh=None, what=None, timeout=None):
        r = self.cmd(line, timeout) if line is not None else \
            self.read_reply(timeout)
        expect_reply(r, code, enh, what or (line if isinstance(line, str)
                                             else repr(line)))
        return r

    def banner(self):
        return self.read_reply()

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name)
        expect_reply(r, 250, None, "EHLO")
        return r

    def start(self, ehlo="client.test"):
        """Reads the banner and says EHLO; returns the EHLO reply."""
        expect_reply(self.read_reply(), 220, None, "banner")
        return self.ehlo(ehlo)

    def starttls(self, ctx=None, server_hostname="localhost"):
        r = self.cmd("STARTTLS")
        expect_reply(r, 220, "2.0.0", "STARTTLS")
        self.wrap_tls(ctx, server_hostname)
        return r

    def wrap_tls(self, ctx=None, server_hostname="localhost"):
        check(self.buf == b"", "server sent data after its STARTTLS 220 "
              "before the TLS handshake: %r" % self.buf)
        ctx = ctx or client_tls_context()
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.tls = True

    def pending_data(self, wait=0.3):
        """Returns bytes that arrive within wait seconds (without blocking)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.tls and self.sock.pending():
                pass
            else:
                r, _, _ = select.select([self.sock], [], [],
                                        max(0, deadline - time.monotonic()))
                if not r:
                    break
            try:
                self._fill(time.monotonic() + 1)
            except (ConnectionClosed, socket.timeout, ssl.SSLError):
                break
        return self.buf

    def wait_closed(self, timeout=5.0):
        """
        Reads until the server closes. Returns the bytes received meanwhile.
        Fails if still open after timeout.
        """
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            try:
                self._fill(deadline)
            except ConnectionClosed:
                rest, self.buf = self.buf, b""
                return rest
            except socket.timeout:
                fail("connection still open %.1f s after it should have "
                     "been closed (got %r)" % (timeout, self.buf[:200]))
            except (ssl.SSLError, OSError):
                rest, self.buf = self.buf, b""
                return rest
        fail("too much data before close")

    def read_all_replies(self, timeout=5.0, max_replies=100):
        """Reads replies until the server closes or timeout; returns list."""
        out = []
        deadline = time.monotonic() + timeout
        for _ in range(max_replies):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.read_reply(left))
            except ConnectionClosed:
                break
            except TestFailure as e:
                if "timed out" in str(e):
                    break
                raise
        return out

    # -- whole transactions

    def mail_rcpt(self, sender, rcpts, mail_params=""):
        self.expect("MAIL FROM:<%s>%s" % (sender, mail_params), 250, "2.1.0")
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250, "2.1.5")

    def data(self, content, timeout=30.0):
        """
        DATA with content (bytes, CRLF lines, not yet dot-stuffed; must end
        in CRLF). Returns the final reply.
        """
        self.expect("DATA", 354)
        self.send(dot_stuff(content) + b".\r\n")
        return self.read_reply(timeout)

    def send_message(self, sender, rcpts, content, mail_params=""):
        """MAIL, RCPTs, DATA; checks for 250 queued; returns the queue id."""
        self.mail_rcpt(sender, rcpts, mail_params)
        r = self.data(content)
        qid = r.queue_id()
        check(qid is not None,
              "expected '250 2.0.0 Ok: queued as ID' after DATA, got %s" % r)
        return qid

    def quit(self):
        try:
            r = self.cmd("QUIT")
            expect_reply(r, 221, None, "QUIT")
            self.wait_closed(5)
        finally:
            self.close()


def expect_reply(r, code, enh=None, what=""):
    ok = r.code == code and (enh is None or r.enh == enh)
    if not ok:
        fail("%s: expected %s%s, got '%s'" % (
            what, code, " " + enh if enh else "", r))
    return r


def dot_stuff(content):
    if content.startswith(b"."):
        content = b"." + content
    return content.replace(b"\r\n.", b"\r\n..")


def message(subject="test", body=b"hello\r\n", sender="sender@client.test",
            rcpt="alice@example.com", extra_headers=b""):
    if isinstance(body, str):
        body = body.encode()
    hdr = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
           "Message-ID: <%s@client.test>\r\n" % (
               sender, rcpt, subject, os.urandom(8).hex())).encode()
    return hdr + extra_headers + b"\r\n" + body


def random_body(size):
    """Printable random body of about size octets in CRLF lines."""
    raw = os.urandom(size * 3 // 4 + 3)
    import base64
    b = base64.b64encode(raw)[:size]
    lines = [b[i:i + 76] for i in range(0, len(b), 76)]
    return b"\r\n".join(lines) + b"\r\n"


# ---------------------------------------------------------------- spool readers

def unescape(v):
    """Undoes the spool's \\xHH escaping."""
    out = bytearray()
    i = 0
    while i < len(v):
        if v[i:i + 1] == b"\\":
            m = re.match(rb"\\x([0-9a-fA-F]{2})", v[i:i + 4])
            if not m:
                raise ValueError("bad escape in %r" % v)
            out.append(int(m.group(1), 16))
            i += 4
        else:
            out += v[i:i + 1]
            i += 1
    return bytes(out)


class QueueFormatError(Exception):
    pass


class QueueFile:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        with open(path, "rb") as f:
            self.raw = f.read()
        self._parse()

    def _parse(self):
        raw = self.raw
        pos = 0
        lines = []
        content_off = None
        for n in range(100000):
            i = raw.find(b"\n", pos)
            if i < 0:
                raise QueueFormatError("%s: header not terminated by a '.' "
                                       "line (torn?)" % self.path)
            line = raw[pos:i]
            pos = i + 1
            if line == b".":
                content_off = pos
                break
            lines.append(line)
        else:
            raise QueueFormatError("%s: header too long" % self.path)
        if len(lines) < 2:
            raise QueueFormatError("%s: header too short" % self.path)
        if lines[0] != b"splitmx-queue-file 1":
            raise QueueFormatError("%s: bad first line %r" % (self.path,
                                                             lines[0]))
        m = re.match(rb"^size ([0-9]{20}) sha256 ([0-9a-fA-F]{64})$", lines[1])
        if not m:
            raise QueueFormatError("%s: bad size/sha256 line %r" % (
                self.path, lines[1]))
        self.size = int(m.group(1))
        self.sha256 = m.group(2).decode().lower()
        self.fields = []
        for l in lines[2:]:
            k, sep, v = l.partition(b" ")
            if not k or not re.match(rb"^[a-z0-9_-]+$", k):
                raise QueueFormatError("%s: bad header line %r" % (self.path,
                                                                  l))
            self.fields.append((k.decode(), v))
        self.content = raw[content_off:]
        self.rcpts = []
        for k, v in self.fields:
            if k == "rcpt":
                toks = v.split(b" ")
                rc = {"addr": unescape(toks[0]), "params": {}}
                for t in toks[1:]:
                    pk, _, pv = t.partition(b"=")
                    rc["params"][pk.decode().lower()] = unescape(pv)
                self.rcpts.append(rc)

    def get(self, key, default=None):
        for k, v in self.fields:
            if k == key:
                return unescape(v)
        return default

    def get_all(self, key):
        return [unescape(v) for k, v in self.fields if k == key]

    @property
    def id(self):
        v = self.get("id")
        return v.decode() if v is not None else None

    @property
    def sender(self):
        v = self.get("sender")
        return v.decode("utf-8", "replace") if v is not None else None

    def rcpt_addrs(self):
        return [r["addr"].decode("utf-8", "replace") for r in self.rcpts]

    def intact_problems(self):
        p = []
        if len(self.content) != self.size:
            p.append("content is %d octets, header says %d" % (
                len(self.content), self.size))
        h = hashlib.sha256(self.content).hexdigest()
        if h != self.sha256:
            p.append("sha256 of content %s != recorded %s" % (h, self.sha256))
        if self.id != self.name:
            p.append("id field %r != file name %r" % (self.id, self.name))
        return p

    def received_and_body(self, sent):
        """
        Checks content == prepended Received header + sent; returns the
        Received header bytes. Raises TestFailure with detail otherwise.
        """
        if not self.content.endswith(sent):
            # Find where they diverge, from the end.
            a, b = self.content, sent
            k = 0
            while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
                k += 1
            fail("%s: content does not end with the sent bytes; they differ "
                 "%d octets from the end: stored ...%r vs sent ...%r" % (
                     self.name, k, a[max(0, len(a) - k - 40):len(a) - k + 1],
                     b[max(0, len(b) - k - 40):len(b) - k + 1]))
        pre = self.content[:len(self.content) - len(sent)]
        check(pre.startswith(b"Received: "),
              "%s: content does not start with our Received header: %r" % (
                  self.name, pre[:80]))
        check(pre.endswith(b"\r\n"),
              "%s: prepended header not CRLF-terminated: %r" % (self.name,
                                                               pre[-80:]))
        # Then our trace field, exactly one line naming node and queue id.
        lines = pre[:-2].split(b"\r\n")
        trace = lines.pop() if lines else b""
        qid = self.name
        m = re.match(rb"^X-Splitmx-Trace: node=[^;\s]+; id=([0-9A-Z]{16})$",
                     trace)
        check(m is not None, "%s: prepended text does not end with our "
              "X-Splitmx-Trace field: %r" % (self.name, pre))
        check(not qid or m.group(1).decode() == qid,
              "%s: trace names queue id %s, file is %s" % (
                  self.name, m.group(1).decode(), qid))
        # One Received field: continuation lines start with whitespace.
        for l in lines[1:]:
            check(l[:1] in (b" ", b"\t"),
                  "%s: prepended text is more than one Received field: %r" % (
                      self.name, pre))
        check(b"\n" not in pre.replace(b"\r\n", b""),
              "%s: bare LF in Received header" % self.name)
        return b"\r\n".join(lines) + b"\r\n"


def queue_dir(spool):
    return os.path.join(spool, "queue")


def list_dir(path):
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except FileNotFoundError:
        return []


def read_queue(spool):
    """Parses every file in SPOOL/queue; returns {name: QueueFile}."""
    out = {}
    for n in list_dir(queue_dir(spool)):
        out[n] = QueueFile(os.path.join(queue_dir(spool), n))
    return out


def queue_file(spool, qid):
    p = os.path.join(queue_dir(spool), qid)
    check(os.path.exists(p), "queue file %s missing (queue/ has %d files)" % (
        p, len(list_dir(queue_dir(spool)))))
    qf = QueueFile(p)
    probs = qf.intact_problems()
    check(not probs, "queue file %s not intact: %s" % (qid, "; ".join(probs)))
    return qf


# Where a queue file's "id ID" line begins (spool_codec.h SPOOL_ID_OFF).
SPOOL_ID_OFF = len("splitmx-queue-file 1\n") + 97 + 1 + len("prepend ") + \
    2048 + 1


def tmp_recycled(path, name):
    """
    True for a recycled tmp file (spool_pool_recycle): a removed message's
    file handed back to the pool, its header still naming the removed id.
    """
    with open(path, "rb") as f:
        f.seek(SPOOL_ID_OFF)
        got = f.read(3 + 16)
    return got.startswith(b"id ") and got[3:] != name.encode()


def tmp_files(spool, include_empty=False):
    """
    Files in SPOOL/tmp holding a message. Left out by default: the pool's
    empty pre-created files (spool_set_precreate) and its recycled ones
    (a removed message's file, which names another id): neither holds a
    message. What is left is a (half-)received message.
    """
    d = os.path.join(spool, "tmp")
    out = []
    for n in list_dir(d):
        p = os.path.join(d, n)
        try:
            if include_empty or (os.stat(p).st_size > 0 and
                                 not tmp_recycled(p, n)):
                out.append(n)
        except FileNotFoundError:
            pass
    return out


def wait_tmp_empty(spool, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not tmp_files(spool):
            return
        time.sleep(0.05)
    fail("tmp/ still holds %d non-empty files after %.0f s: %s" % (
        len(tmp_files(spool)), timeout, tmp_files(spool)[:10]))


class Journal:
    def __init__(self, records, malformed, torn_tail):
        self.records = records
        self.malformed = malformed
        self.torn_tail = torn_tail

    def of(self, kind):
        return [r for r in self.records if r["type"] == kind]

    def accepted_ids(self):
        return [r["fields"].get("id") for r in self.of("accepted")]


JOURNAL_SEGMENT_RE = re.compile(r"^journal\.\d{8}T\d{6}Z(\.\d+)?$")


def journal_lines(spool):
    """
    Every journal line of the spool's history once, oldest first: closed
    segments (journal.TIME, splitmx-spool(5)) then the journal; a
    segment's leading "carried" record and the copies it counts are
    skipped. Returns (lines, torn): torn when the journal's last line is
    partial.
    """
    names = sorted(n for n in os.listdir(spool)
                   if JOURNAL_SEGMENT_RE.match(n)) if os.path.isdir(
                       spool) else []
    out, torn = [], False
    for name in names + ["journal"]:
        try:
            with open(os.path.join(spool, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        if name == "journal":
            torn = bool(data) and not data.endswith(b"\n")
        lines = data.split(b"\n")
        if lines and b" carried id=" in lines[0]:
            m = re.search(rb" lines=(\d+)", lines[0])
            lines = lines[1 + (int(m.group(1)) if m else 0):]
        out.extend(lines)
    return out, torn


def read_journal(spool):
    lines, torn = journal_lines(spool)
    records, bad = [], []
    for line in lines:
        if not line:
            continue
        toks = line.split(b" ")
        if len(toks) < 2 or not re.match(rb"^[a-z_-]+$", toks[1]):
            bad.append(line)
            continue
        fields = {}
        for t in toks[2:]:
            k, sep, v = t.partition(b"=")
            if not sep:
                continue
            try:
                fields[k.decode()] = unescape(v).decode("utf-8", "replace")
            except ValueError:
                bad.append(line)
        records.append({"ts": toks[0].decode("utf-8", "replace"),
                        "type": toks[1].decode(), "fields": fields,
                        "raw": line})
    return Journal(records, bad, torn)


# ---------------------------------------------------------------- runner

class Runner:
    """Runs named test functions, prints PASS/FAIL lines, exits 0/1."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.current_daemons = None

    def run(self, name, fn, *args, **kw):
        global _FAILED
        t0 = time.monotonic()
        n_daemons = len(_DAEMONS)
        try:
            fn(*args, **kw)
        except SystemExit:
            raise
        except BaseException as e:
            _FAILED = True
            self.failed += 1
            msg = str(e) if isinstance(e, TestFailure) else \
                "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())
            print("FAIL %s: %s" % (name, msg))
            # Log excerpts of daemons started by this test or still running.
            for d in _DAEMONS:
                if d.proc is None:
                    continue
                if d in _DAEMONS[n_daemons:] or d.alive():
                    if d.log_path not in msg:
                        print("    daemon log %s (last lines):\n%s" % (
                            d.log_path, d.log_tail(25)))
            sys.stdout.flush()
            return False
        self.passed += 1
        print("PASS %s (%.1fs)" % (name, time.monotonic() - t0))
        sys.stdout.flush()
        return True

    def finish(self):
        """Stops daemons still running (with checks) and exits."""
        global _FAILED
        for d in _DAEMONS:
            if d.proc is not None and not d.stopped:
                name = "stop %s" % os.path.basename(d.log_path)
                self.run(name, d.stop)
        total = self.passed + self.failed
        if self.failed:
            _FAILED = True
        print("%s: %d/%d passed" % (os.path.basename(sys.argv[0]),
                                    self.passed, total))
        sys.stdout.flush()
        sys.exit(1 if self.failed else 0)


def main_guard(body):
    """Runs body(runner) and then runner.finish(), whatever happens."""
    r = Runner()
    if not os.access(SPLITMXD, os.X_OK):
        print("FAIL setup: splitmxd not built (%s); run make test-build"
              % SPLITMXD)
        sys.exit(1)
    try:
        body(r)
    except SystemExit:
        raise
    except BaseException as e:
        r.failed += 1
        print("FAIL setup: %s: %s\n%s" % (type(e).__name__, e,
                                         traceback.format_exc()))
    r.finish()


def wait_for(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_refuses(port, timeout=0.5):
    """True if a connect to port is refused (nothing listening)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((HOST, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()
