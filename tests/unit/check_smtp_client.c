/*
 * check_smtp_client.c - smtp_client_ (and dns_) against real peers.
 *
 * The unchecked fixture starts, on loopback: dnsmasq (MX and A records
 * for *.test, fail.test forwarded to a SERVFAIL responder), four
 * aiosmtpd instances running tests/unit/data/aiosmtpd_capture.py (plain
 * with DSN/SMTPUTF8/SIZE and scripted replies; STARTTLS with a fresh
 * self-signed certificate; STARTTLS that answers 220 and then junk; LMTP
 * on a UNIX socket), Postfix's smtp-sink, and a listener that accepts and
 * never speaks. All are stopped by PID. Captured messages are compared
 * byte for byte. Each test runs its own loop with a deadline.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "testpeer.h"
#include "conf.h"
#include "dns.h"
#include "sbuf.h"
#include "smtp_client.h"
#include "spool_read.h"
#include "smtp_proto.h"
#include "workers.h"
#include "xmalloc.h"

#define CAPTURE_PY "tests/unit/data/aiosmtpd_capture.py"
#define MAXRCPT    8
#define DEADLINE   25

static char tdir[64];
static char cert[128], key[128], lmtp_sock[96], sink_out[128];
static int dns_port, p_plain, p_tls, p_broken, p_sink, p_silent, p_closed,
    p_rude;
static pid_t pids[16];
static int npids;
static char servers[64];

static struct event_base *base;
static struct dns *dns;
/*
 * The clients' content readers: one thread, so jobs run in the order they
 * were queued (the tests that hold or truncate files count on it).
 */
static struct workers *readers;
static struct spool_reader *spool_rd; /* tdir/spool, opened on first use */

/* ---- process helpers ---- */

static int
free_port(int type)
{
	return testpeer_free_port(type);
}

static pid_t
spawn(const char *const argv[], const char *logfile)
{
	pid_t pid = testpeer_spawn(argv, logfile);

	pids[npids++] = pid;
	return pid;
}

static void
stop(pid_t pid)
{
	testpeer_stop(pid);
}

static int
run_wait(const char *const argv[])
{
	char logf[160];
	pid_t pid;
	int st;

	(void)snprintf(logf, sizeof(logf), "%s/cmd.log", tdir);
	pid = spawn(argv, logf);
	npids--;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool
try_connect(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM, 0);
	bool ok = connect(fd, sa, len) == 0;

	close(fd);
	return ok;
}

static void
wait_tcp(int port)
{
	testpeer_wait_tcp(port);
}

static void
wait_unix(const char *path)
{
	struct sockaddr_un sun;
	int i;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	(void)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	for (i = 0; i < 1500; i++) {
		if (try_connect((struct sockaddr *)&sun, sizeof(sun)))
			return;
		usleep(10000);
	}
	ck_abort_msg("nothing listens on %s", path);
}

static int
listen_tcp(int *port_out)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port_out = ntohs(sin.sin_port);
	return fd;
}

/* A child that accepts connections and never says a word. */
static void
start_silent(void)
{
	int fd = listen_tcp(&p_silent);
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid > 0) {
		close(fd);
		pids[npids++] = pid;
		return;
	}
	signal(SIGTERM, SIG_DFL); /* not Check's group-killing handler */
	for (;;)
		(void)accept(fd, NULL, NULL); /* keep them open, silent */
}

/* A child that greets with 554 and waits for the client to leave. */
static void
start_rude(void)
{
	static const char banner[] = "554 5.7.1 no thanks\r\n";
	int fd = listen_tcp(&p_rude), s;
	pid_t pid = fork();
	char buf[512];

	ck_assert_int_ge(pid, 0);
	if (pid > 0) {
		close(fd);
		pids[npids++] = pid;
		return;
	}
	signal(SIGTERM, SIG_DFL);
	for (;;) {
		s = accept(fd, NULL, NULL);
		if (s < 0)
			continue;
		if (write(s, banner, sizeof(banner) - 1) > 0)
			while (read(s, buf, sizeof(buf)) > 0)
				;
		close(s);
	}
}

/* A child answering every DNS query with SERVFAIL. */
static int
start_servfail(void)
{
	int port = free_port(SOCK_DGRAM);

	pids[npids++] = testpeer_servfail(port);
	return port;
}

static void
start_capture(const char *name, const char *const extra[])
{
	const char *argv[40];
	char dir[128], logf[160];
	int n = 0, i;

	(void)snprintf(dir, sizeof(dir), "%s/%s", tdir, name);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	(void)snprintf(logf, sizeof(logf), "%s/%s.log", tdir, name);
	argv[n++] = "/usr/bin/python3";
	argv[n++] = CAPTURE_PY;
	argv[n++] = "--dir";
	argv[n++] = dir;
	for (i = 0; extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	spawn(argv, logf);
}

static void
peers_start(void)
{
	char portarg[32], sfarg[64], logf[160], sp[4][16], sinkaddr[64];
	struct passwd *pw;
	int sfport;

	(void)snprintf(tdir, sizeof(tdir), "/tmp/check_smtp_client.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	(void)snprintf(cert, sizeof(cert), "%s/cert.pem", tdir);
	(void)snprintf(key, sizeof(key), "%s/key.pem", tdir);
	(void)snprintf(lmtp_sock, sizeof(lmtp_sock), "%s/lmtp.sock", tdir);
	(void)snprintf(sink_out, sizeof(sink_out), "%s/sink.out", tdir);
	{
		const char *const argv[] = { "openssl", "req", "-x509",
			"-newkey", "rsa:2048", "-nodes", "-subj",
			"/CN=localhost", "-addext",
			"subjectAltName=DNS:localhost", "-days", "2", "-keyout",
			key, "-out", cert, NULL };

		ck_assert_int_eq(run_wait(argv), 0);
	}

	sfport = start_servfail();
	start_silent();
	start_rude();
	p_closed = free_port(SOCK_STREAM);

	dns_port = free_port(SOCK_STREAM);
	(void)snprintf(portarg, sizeof(portarg), "--port=%d", dns_port);
	(void)snprintf(sfarg, sizeof(sfarg), "--server=/fail.test/127.0.0.1#%d",
	    sfport);
	(void)snprintf(logf, sizeof(logf), "%s/dnsmasq.log", tdir);
	{
		const char *const argv[] = { "dnsmasq", "-k",
			"--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			portarg, "--listen-address=127.0.0.1",
			"--bind-interfaces", "--pid-file=", "--log-facility=-",
			"--local=/test/", sfarg,
			"--host-record=mail.mx.test,127.0.0.1",
			"--mx-host=mx.test,mail.mx.test,10",
			"--mx-host=dest.test,mail.mx.test,10",
			"--host-record=h1.mx2.test,127.0.0.2",
			"--host-record=h2.mx2.test,127.0.0.1",
			"--mx-host=mx2.test,h1.mx2.test,10",
			"--mx-host=mx2.test,h2.mx2.test,20",
			"--host-record=localhost,127.0.0.1",
			"--mx-host=tlsmx.test,localhost,10",
			"--mx-host=nullmx.test,.,0", NULL };

		spawn(argv, logf);
	}

	p_plain = free_port(SOCK_STREAM);
	p_tls = free_port(SOCK_STREAM);
	p_broken = free_port(SOCK_STREAM);
	p_sink = free_port(SOCK_STREAM);
	(void)snprintf(sp[0], sizeof(sp[0]), "%d", p_plain);
	(void)snprintf(sp[1], sizeof(sp[1]), "%d", p_tls);
	(void)snprintf(sp[2], sizeof(sp[2]), "%d", p_broken);
	{
		const char *const a[] = { "--port", sp[0], "--dsn",
			"--smtputf8", "--size", "1000000", "--reply",
			"rej@dest.test=550 5.1.1 <rej@dest.test>: no such user",
			"--reply", "later@dest.test=451 4.2.0 try again later",
			"--mail-reply",
			"badsender@src.test=550 5.7.1 sender refused",
			"--data-reply",
			"datafail@dest.test=554 5.6.0 content rejected",
			"--stall", "stall@dest.test", "--drop",
			"drop@dest.test", "--reply",
			"multi@dest.test=550-5.1.1 first line\r\n"
			"550-5.1.1 middle line\r\n550 5.1.1 last line",
			NULL };

		start_capture("plain", a);
	}
	{
		const char *const a[] = { "--port", sp[1], "--tls-cert", cert,
			"--tls-key", key, NULL };

		start_capture("tls", a);
	}
	{
		const char *const a[] = { "--port", sp[2], "--tls-cert", cert,
			"--tls-key", key, "--starttls-broken", NULL };

		start_capture("broken", a);
	}
	{
		const char *const a[] = { "--unix", lmtp_sock, "--lmtp",
			"--reply", "rej@dest.test=550 5.1.1 no such user",
			"--data-reply", "bad@dest.test=552 5.2.2 mailbox full",
			"--data-reply", "tmp@dest.test=452 4.2.2 over quota",
			NULL };

		start_capture("lmtp", a);
	}
	pw = getpwuid(geteuid());
	ck_assert_ptr_nonnull(pw);
	(void)snprintf(sinkaddr, sizeof(sinkaddr), "127.0.0.1:%d", p_sink);
	{
		const char *const argv[] = { "smtp-sink", "-c", "-u",
			pw->pw_name, sinkaddr, "100", NULL };

		spawn(argv, sink_out);
	}
	wait_tcp(dns_port);
	wait_tcp(p_plain);
	wait_tcp(p_tls);
	wait_tcp(p_broken);
	wait_tcp(p_sink);
	wait_tcp(p_silent);
	wait_tcp(p_rude);
	wait_unix(lmtp_sock);
	(void)snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns_port);
}

static void
peers_stop(void)
{
	char cmd[128];
	int i;

	for (i = 0; i < npids; i++)
		stop(pids[i]);
	npids = 0;
	if (getenv("KEEP_TEST_DIR") == NULL) {
		(void)snprintf(cmd, sizeof(cmd), "rm -rf %s", tdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tdir);
	}
}

/* ---- per-test fixture and helpers ---- */

static void
setup(void)
{
	struct sbuf err;

	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	sbuf_init(&err, 256);
	dns = dns_new(base, servers, &err);
	ck_assert_msg(dns != NULL, "dns_new: %s", err.data);
	sbuf_release(&err);
	readers = workers_new(base, 1);
}

static void
teardown(void)
{
	dns_free(dns);
	dns = NULL;
	smtp_client_shutdown();
	/* Runs what reads left by closed clients still hold (ASan checks). */
	workers_free(readers);
	readers = NULL;
	spool_reader_close(spool_rd);
	spool_rd = NULL;
	/* Let libevent finish freeing closed bufferevents (deferred). */
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
	base = NULL;
}

static char *
dup0(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static struct conf_target *
tgt_new(enum conf_target_type type, const char *host, const char *mx, int port)
{
	struct conf_target *t = xcalloc(1, sizeof(*t));
	char p[16];

	(void)snprintf(p, sizeof(p), "%d", port);
	t->name = xstrdup("test");
	t->type = type;
	t->host = dup0(host);
	t->mx = dup0(mx);
	t->port = xstrdup(p);
	t->tls = CONF_TLS_NONE;
	t->connections = 10;
	t->messages_per_connection = 100;
	t->timeout_connect = 5;
	t->timeout_command = 10;
	t->timeout_data = 10;
	t->line = 1;
	return t;
}

static void
tgt_free(struct conf_target *t)
{
	free(t->name);
	free(t->host);
	free(t->port);
	free(t->mx);
	free(t->socket);
	free(t->tls_ca);
	free(t->tls_name);
	free(t->tls_cert);
	free(t->tls_key);
	free(t->helo);
	free(t);
}

static void
run_until(const int *calls, int want)
{
	time_t deadline = time(NULL) + DEADLINE;

	while (*calls < want) {
		ck_assert_msg(time(NULL) < deadline, "callback overdue");
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* Runs the loop for about ms milliseconds. */
static void
run_for(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

struct openres {
	int calls;
	bool in_call;
	bool sync;
	struct smtp_client *c;
	int status;
	bool temp;
	char reason[1024];
};

static void
open_cb(void *arg, struct smtp_client *c, int status, bool temp,
    const char *reason)
{
	struct openres *r = arg;

	r->calls++;
	if (r->in_call)
		r->sync = true;
	r->c = c;
	r->status = status;
	r->temp = temp;
	(void)snprintf(r->reason, sizeof(r->reason), "%s",
	    reason != NULL ? reason : "");
}

static struct smtp_client *
open_target(const struct conf_target *t, const char *helo,
    const char *rcpt_domain, struct openres *r)
{
	struct smtp_client_params p;

	memset(r, 0, sizeof(*r));
	memset(&p, 0, sizeof(p));
	p.base = base;
	p.dns = dns;
	p.target = t;
	p.helo = helo;
	p.rcpt_domain = rcpt_domain;
	p.readers = readers;
	r->in_call = true;
	smtp_client_open(&p, open_cb, r);
	r->in_call = false;
	run_until(&r->calls, 1);
	ck_assert_int_eq(r->calls, 1);
	ck_assert(!r->sync);
	if (r->status == 0)
		ck_assert_ptr_nonnull(r->c);
	else
		ck_assert_ptr_null(r->c);
	return r->c;
}

/*
 * A message: content in a queue file after a junk prefix (where the header
 * would be), opened and read by the client's readers as the queue has it.
 */
struct msg {
	char path[160];
	char id[SPOOL_ID_LEN + 1];
	struct smtp_client_msg m;
	struct smtp_client_rcpt r[MAXRCPT];
};

#define JUNK "JUNK\r\n."

static void
msg_init(struct msg *mb, const char *sender, const void *content, size_t len,
    const char *const rcpts[])
{
	static unsigned seq;
	char dir[96];
	struct sbuf err;
	int fd;
	size_t i;

	memset(mb, 0, sizeof(*mb));
	(void)snprintf(dir, sizeof(dir), "%s/spool", tdir);
	ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
	(void)snprintf(mb->path, sizeof(mb->path), "%s/queue", dir);
	ck_assert(mkdir(mb->path, 0700) == 0 || errno == EEXIST);
	(void)snprintf(mb->id, sizeof(mb->id), "%016u", ++seq);
	(void)snprintf(mb->path, sizeof(mb->path), "%s/queue/%s", dir, mb->id);
	fd = open(mb->path, O_CREAT | O_EXCL | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, JUNK, strlen(JUNK)), (ssize_t)strlen(JUNK));
	if (len > 0)
		ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	close(fd);
	if (spool_rd == NULL) {
		sbuf_init(&err, 256);
		spool_rd = spool_reader_open(dir, &err);
		ck_assert_msg(spool_rd != NULL, "%s", err.data);
		sbuf_release(&err);
	}
	mb->m.rd = spool_rd;
	mb->m.id = mb->id;
	mb->m.content_off = strlen(JUNK);
	mb->m.content_size = len;
	mb->m.sender = sender;
	mb->m.ret = SMTP_PROTO_RET_NONE;
	mb->m.body = SMTP_PROTO_BODY_NONE;
	mb->m.rcpts = mb->r;
	for (i = 0; rcpts[i] != NULL && i < MAXRCPT; i++)
		mb->r[i].addr = rcpts[i];
	mb->m.nrcpts = i;
}

static void
msg_done(struct msg *mb)
{
	(void)unlink(mb->path);
}

struct sendres {
	int calls;
	int status;
	bool close_in_cb;
};

static void
done_cb(void *arg, struct smtp_client *c, int status)
{
	struct sendres *r = arg;

	r->calls++;
	r->status = status;
	if (r->close_in_cb)
		smtp_client_close(c);
}

static int
send_msg(struct smtp_client *c, struct msg *mb)
{
	struct sendres r;

	memset(&r, 0, sizeof(r));
	smtp_client_send(c, &mb->m, done_cb, &r);
	ck_assert_int_eq(r.calls, 0); /* never from inside the call */
	run_until(&r.calls, 1);
	ck_assert_int_eq(r.calls, 1);
	return r.status;
}

/* Reads dir/<name>; NULL if absent. */
static char *
slurp(const char *dir, const char *name, size_t *len_out)
{
	char path[512];
	struct stat st;
	char *buf;
	int fd;
	ssize_t n;

	(void)snprintf(path, sizeof(path), "%s/%s/%s", tdir, dir, name);
	fd = open(path, O_RDONLY);
	if (fd == -1)
		return NULL;
	ck_assert_int_eq(fstat(fd, &st), 0);
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	ck_assert_int_eq(n, st.st_size);
	buf[n] = '\0';
	close(fd);
	if (len_out != NULL)
		*len_out = (size_t)n;
	return buf;
}

static size_t
count_lines(const char *dir, const char *name)
{
	char *s = slurp(dir, name, NULL);
	size_t n = 0;
	const char *p;

	if (s == NULL)
		return 0;
	for (p = s; *p != '\0'; p++)
		if (*p == '\n')
			n++;
	free(s);
	return n;
}

/* Checks dir/<sender>.<n>.eml holds exactly want[0..len). */
static void
check_capture(const char *dir, const char *sender, int n, const void *want,
    size_t len)
{
	char name[256];
	size_t got_len;
	char *got;

	(void)snprintf(name, sizeof(name), "%s.%d.eml", sender, n);
	got = slurp(dir, name, &got_len);
	ck_assert_msg(got != NULL, "no capture %s/%s", dir, name);
	ck_assert_uint_eq(got_len, len);
	ck_assert_msg(memcmp(got, want, len) == 0, "content differs");
	free(got);
}

static char *
env_of(const char *dir, const char *sender, int n)
{
	char name[256];
	char *s;

	(void)snprintf(name, sizeof(name), "%s.%d.env", sender, n);
	s = slurp(dir, name, NULL);
	ck_assert_msg(s != NULL, "no envelope %s/%s", dir, name);
	return s;
}

static bool
captured(const char *dir, const char *sender, int n)
{
	char name[256];
	char *s;

	(void)snprintf(name, sizeof(name), "%s.%d.env", sender, n);
	s = slurp(dir, name, NULL);
	free(s);
	return s != NULL;
}

#define ASSERT_HAS(hay, needle)                                                \
	ck_assert_msg(strstr((hay), (needle)) != NULL, "\"%s\" not in \"%s\"", \
	    (needle), (hay))
#define ASSERT_PREFIX(s, p)                              \
	ck_assert_msg(strncmp((s), (p), strlen(p)) == 0, \
	    "\"%s\" lacks \"%s\"", (s), (p))

static const char simple[] = "Subject: test\r\n\r\nHello.\r\n";

/* ---- delivery and replies ---- */

START_TEST(test_pipelined_rcpt_mix)
{
	static const char *const rc[] = { "a@dest.test", "rej@dest.test",
		"later@dest.test", "b@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char peer[64], *env;

	c = open_target(t, "pipe.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	(void)snprintf(peer, sizeof(peer), "127.0.0.1[127.0.0.1]:%d", p_plain);
	ck_assert_str_eq(smtp_client_peer(c), peer);
	msg_init(&mb, "t1@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	ASSERT_PREFIX(mb.r[0].reply, "250 2.0.0 OK queued as");
	ck_assert_uint_eq(mb.r[1].code, 550);
	ck_assert_str_eq(mb.r[1].reply,
	    "550 5.1.1 <rej@dest.test>: no such user");
	ck_assert_uint_eq(mb.r[2].code, 451);
	ck_assert_str_eq(mb.r[2].reply, "451 4.2.0 try again later");
	ck_assert_uint_eq(mb.r[3].code, 250);
	check_capture("plain", "t1@src.test", 1, simple, strlen(simple));
	env = env_of("plain", "t1@src.test", 1);
	ASSERT_HAS(env, "rcpt: a@dest.test\nrcpt: b@dest.test\n");
	ASSERT_HAS(env, "SIZE=25");
	ASSERT_HAS(env, "pipelined: 1");
	ASSERT_HAS(env, "tls: 0");
	ck_assert_ptr_null(strstr(env, "rej@"));
	free(env);
	ck_assert(smtp_client_reusable(c));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_lockstep_rcpt_mix)
{
	static const char *const rc[] = { "a@dest.test", "rej@dest.test",
		"later@dest.test", "b@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char *env;

	c = open_target(t, "nopipe.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "t2@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	ck_assert_uint_eq(mb.r[1].code, 550);
	ck_assert_uint_eq(mb.r[2].code, 451);
	ck_assert_uint_eq(mb.r[3].code, 250);
	env = env_of("plain", "t2@src.test", 1);
	ASSERT_HAS(env, "pipelined: 0");
	ASSERT_HAS(env, "rcpt: a@dest.test\nrcpt: b@dest.test\n");
	free(env);
	check_capture("plain", "t2@src.test", 1, simple, strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

/* Appends to a growing test buffer. */
struct tbuf {
	char *d;
	size_t len, cap;
};

static void
tb_add(struct tbuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->d = xrealloc(b->d, b->cap);
	}
	memcpy(b->d + b->len, p, n);
	b->len += n;
}

static void
tb_str(struct tbuf *b, const char *s)
{
	tb_add(b, s, strlen(s));
}

/* Pads with "x" lines so that the next line starts at offset at. */
static void
tb_pad_to(struct tbuf *b, size_t at)
{
	while (b->len + 2 < at) {
		size_t n = at - b->len - 2;

		if (n > 900)
			n = 900;
		while (n-- > 0)
			tb_add(b, "x", 1);
		tb_str(b, "\r\n");
	}
	ck_assert_uint_eq(b->len, at);
}

START_TEST(test_dotstuff_exact)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct tbuf b = { NULL, 0, 0 };
	struct msg mb;
	char *env, longline[5001];

	tb_str(&b, ".starts with a dot\r\n");
	tb_str(&b, "..two dots\r\n");
	tb_str(&b, ".\r\n"); /* alone: must not end DATA */
	tb_str(&b, "Subject: dots\r\n\r\n");
	tb_str(&b, "caf\xc3\xa9 \xff\xfe\x80 8-bit\r\n");
	memset(longline, 'L', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	tb_str(&b, longline);
	tb_str(&b, "\r\n\r\n.\r\n\r\n");
	tb_pad_to(&b, 65536);
	tb_str(&b, ".dot at the first chunk boundary\r\n");
	tb_pad_to(&b, 131071);
	tb_str(&b, "\r\n.dot after a CRLF split by the boundary\r\n");
	tb_pad_to(&b, 196608 - 1);
	tb_str(&b, "\r");
	ck_assert_uint_eq(b.len, 196608);
	tb_str(&b, "\n");
	tb_str(&b, "...\r\n");
	tb_pad_to(&b, 400000);
	tb_str(&b, ".\r\n.. \r\n");
	tb_str(&b, "last line without CRLF");

	c = open_target(t, "dots.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "dots@src.test", b.d, b.len, rc);
	mb.m.body = SMTP_PROTO_BODY_8BITMIME;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	/* The content lacked a final CRLF: exactly one is added. */
	tb_str(&b, "\r\n");
	check_capture("plain", "dots@src.test", 1, b.d, b.len);
	env = env_of("plain", "dots@src.test", 1);
	ASSERT_HAS(env, "BODY=8BITMIME");
	free(env);
	ck_assert(smtp_client_reusable(c));

	/* The same connection carries the next message. */
	msg_done(&mb);
	msg_init(&mb, "dots@src.test", ".", 1, rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	check_capture("plain", "dots@src.test", 2, ".\r\n", 3);
	msg_done(&mb);
	msg_init(&mb, "dots@src.test", "", 0, rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	check_capture("plain", "dots@src.test", 3, "", 0);
	msg_done(&mb);
	msg_init(&mb, "dots@src.test", "a\r\n", 3, rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	check_capture("plain", "dots@src.test", 4, "a\r\n", 3);
	ck_assert_uint_eq(count_lines("plain", "conn.log") > 0, 1);
	smtp_client_close(c);
	msg_done(&mb);
	free(b.d);
	tgt_free(t);
}
END_TEST

START_TEST(test_dotstuff_bare_eol)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	static const char in[] = "a\n.b\r\nc\r.d\r\n";
	/*
	 * A bare LF or CR counts as a line end for stuffing, so a lenient
	 * receiver can never see "LF . CRLF" as the end of data. A strict
	 * receiver (this one) keeps the added dot: malformed in, marked out.
	 */
	static const char out[] = "a\n..b\r\nc\r..d\r\n";
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;

	c = open_target(t, "bare.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "bare@src.test", in, strlen(in), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("plain", "bare@src.test", 1, out, strlen(out));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

/* helo "pipe.test" pipelines; "nopipe.test" goes lock-step. */
static const char *const helos[] = { "pipe.test", "nopipe.test" };

START_TEST(test_all_rcpts_rejected)
{
	static const char *const bad[] = { "rej@dest.test", "later@dest.test",
		NULL };
	static const char *const good[] = { "ok@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char sender[64];

	(void)snprintf(sender, sizeof(sender), "allrej%d@src.test", _i);
	c = open_target(t, helos[_i], NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, sender, simple, strlen(simple), bad);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 550);
	ck_assert_uint_eq(mb.r[1].code, 451);
	ck_assert(!captured("plain", sender, 1));
	ck_assert(smtp_client_reusable(c));
	msg_done(&mb);
	/* The next transaction starts clean (RSET) and succeeds. */
	msg_init(&mb, sender, simple, strlen(simple), good);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("plain", sender, 1, simple, strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_mail_rejected)
{
	static const char *const rc[] = { "a@dest.test", "b@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char sender[64];

	c = open_target(t, helos[_i], NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "badsender@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 550);
	ck_assert_str_eq(mb.r[0].reply, "550 5.7.1 sender refused");
	ck_assert_uint_eq(mb.r[1].code, 550);
	ck_assert_str_eq(mb.r[1].reply, "550 5.7.1 sender refused");
	msg_done(&mb);
	(void)snprintf(sender, sizeof(sender), "aftermail%d@src.test", _i);
	msg_init(&mb, sender, simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	ck_assert_uint_eq(mb.r[1].code, 250);
	check_capture("plain", sender, 1, simple, strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_data_rejected)
{
	static const char *const rc[] = { "a@dest.test", "datafail@dest.test",
		"rej@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;

	c = open_target(t, helos[_i], NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "datafail@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	/* SMTP: the one reply to "." goes to every accepted recipient. */
	ck_assert_uint_eq(mb.r[0].code, 554);
	ck_assert_str_eq(mb.r[0].reply, "554 5.6.0 content rejected");
	ck_assert_uint_eq(mb.r[1].code, 554);
	ck_assert_uint_eq(mb.r[2].code, 550);
	ck_assert(smtp_client_reusable(c));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_dsn_params)
{
	static const char *const rc[] = { "a@dest.test", "b@dest.test",
		"c@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char *env;

	c = open_target(t, "dsn.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "dsn@src.test", simple, strlen(simple), rc);
	mb.m.ret = SMTP_PROTO_RET_HDRS;
	mb.m.envid = "QQ+2B123";
	mb.r[0].notify = SMTP_PROTO_NOTIFY_SUCCESS | SMTP_PROTO_NOTIFY_FAILURE;
	mb.r[0].orcpt = "rfc822;orig@dest.test";
	mb.r[1].notify = SMTP_PROTO_NOTIFY_NEVER;
	mb.r[2].notify = SMTP_PROTO_NOTIFY_DELAY | SMTP_PROTO_NOTIFY_FAILURE;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	env = env_of("plain", "dsn@src.test", 1);
	ASSERT_HAS(env, "dsn_mail: RET=HDRS ENVID=QQ+2B123\n");
	ASSERT_HAS(env,
	    "dsn_rcpt: NOTIFY=SUCCESS,FAILURE "
	    "ORCPT=rfc822;orig@dest.test\n");
	ASSERT_HAS(env, "dsn_rcpt: NOTIFY=NEVER\n");
	ASSERT_HAS(env, "dsn_rcpt: NOTIFY=FAILURE,DELAY\n");
	free(env);
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_smtputf8)
{
	static const char *const rc[] = { "j\xc3\xb6rg@dest.test", NULL };
	static const char body[] = "Subject: gr\xc3\xbc\xc3\x9f\x65\r\n\r\n"
	                           "\xc3\xa4\r\n";
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char *env;

	c = open_target(t, "utf8.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "utf8@src.test", body, strlen(body), rc);
	mb.m.smtputf8 = true;
	mb.m.body = SMTP_PROTO_BODY_8BITMIME;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	env = env_of("plain", "utf8@src.test", 1);
	ASSERT_HAS(env, "smtputf8: 1");
	ASSERT_HAS(env, "rcpt: j\xc3\xb6rg@dest.test");
	free(env);
	check_capture("plain", "utf8@src.test", 1, body, strlen(body));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_missing_extensions)
{
	static const char *const rc[] = { "a@dest.test", "b@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;

	/* This session is offered neither 8BITMIME nor PIPELINING. */
	c = open_target(t, "no8bit-nopipe.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "ext@src.test", simple, strlen(simple), rc);
	mb.m.body = SMTP_PROTO_BODY_8BITMIME;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 450);
	ck_assert_str_eq(mb.r[0].reply,
	    "450 4.6.0 target does not offer 8BITMIME");
	ck_assert_uint_eq(mb.r[1].code, 450);
	ck_assert(smtp_client_reusable(c));
	ck_assert(!captured("plain", "ext@src.test", 1));
	smtp_client_close(c);
	msg_done(&mb);

	/* The TLS peer does not offer SMTPUTF8. */
	tgt_free(t);
	t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL, p_tls);
	c = open_target(t, "ext.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "ext@src.test", simple, strlen(simple), rc);
	mb.m.smtputf8 = true;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 450);
	ck_assert_str_eq(mb.r[0].reply,
	    "450 4.6.0 target does not offer SMTPUTF8");
	ck_assert(smtp_client_reusable(c));
	/* The connection is untouched: a plain message goes through. */
	mb.m.smtputf8 = false;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("tls", "ext@src.test", 1, simple, strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_size_and_spool_errors)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char *big;

	c = open_target(t, "size.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	big = xmalloc(1200000);
	memset(big, 'b', 1200000);
	msg_init(&mb, "size@src.test", big, 1200000, rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 552);
	ASSERT_PREFIX(mb.r[0].reply, "552 5.3.4 message size 1200000 exceeds");
	ck_assert(smtp_client_reusable(c));
	msg_done(&mb);

	/* The queue has no file to give: answered here, nothing sent. */
	msg_init(&mb, "size@src.test", simple, strlen(simple), rc);
	mb.m.id = NULL;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 451);
	ASSERT_PREFIX(mb.r[0].reply, "451 4.3.0 cannot open queue file");
	ck_assert(smtp_client_reusable(c));
	msg_done(&mb);

	/*
	 * A spool file of another size than the queue knows: the reader's
	 * open refuses it, and the transaction (MAIL, RCPT and DATA already
	 * out) is abandoned with the connection.
	 */
	msg_init(&mb, "size@src.test", simple, strlen(simple), rc);
	mb.m.content_size = 100000;
	ck_assert_int_eq(send_msg(c, &mb), -1);
	ck_assert_uint_eq(mb.r[0].code, 451);
	ASSERT_PREFIX(mb.r[0].reply,
	    "451 4.3.0 cannot open queue file: queue file changed");
	ck_assert(!smtp_client_reusable(c));
	ck_assert(!captured("plain", "size@src.test", 1));
	smtp_client_close(c);
	msg_done(&mb);
	free(big);
	tgt_free(t);
}
END_TEST

START_TEST(test_helo_fallback)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char *env;

	c = open_target(t, "noehlo.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "helo@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	env = env_of("plain", "helo@src.test", 1);
	ASSERT_HAS(env, "helo: noehlo.test");
	ASSERT_HAS(env, "mail_options: \n"); /* no ESMTP parameters */
	free(env);
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_multiline_reply)
{
	static const char *const rc[] = { "multi@dest.test", "a@dest.test",
		NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;

	c = open_target(t, "multi.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "multi@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 550);
	/* All lines, joined after one code. */
	ck_assert_str_eq(mb.r[0].reply,
	    "550 5.1.1 first line 5.1.1 middle "
	    "line 5.1.1 last line");
	ck_assert_uint_eq(mb.r[1].code, 250);
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_peer_drops)
{
	static const char *const rc[] = { "a@dest.test", "drop@dest.test",
		NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;

	c = open_target(t, helos[_i], NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "drop@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), -1);
	ck_assert_uint_eq(mb.r[0].code, 451);
	ck_assert_uint_eq(mb.r[1].code, 451);
	ASSERT_PREFIX(mb.r[1].reply, "451 4.4.2 lost connection with ");
	ASSERT_HAS(mb.r[1].reply, "after RCPT");
	ck_assert(!smtp_client_reusable(c));
	ck_assert(!captured("plain", "drop@src.test", 1));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_greeting_refused)
{
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_rude);
	struct openres o;

	ck_assert_ptr_null(open_target(t, "rude.test", NULL, &o));
	/* Every address said 5xx: not worth retrying. */
	ck_assert(!o.temp);
	ASSERT_HAS(o.reason, "refused to talk to me: 554 5.7.1 no thanks");
	tgt_free(t);
}
END_TEST

/* ---- resolution and connection failures ---- */

START_TEST(test_mx_delivery)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t;
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char peer[64], sender[64];

	/* 0: explicit MX domain; 1: "*" (the recipient's domain). */
	t = tgt_new(CONF_TARGET_SMTP, NULL, _i == 0 ? "mx.test" : "*", p_plain);
	c = open_target(t, "mx.test", _i == 0 ? NULL : "dest.test", &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	(void)snprintf(peer, sizeof(peer), "mail.mx.test[127.0.0.1]:%d",
	    p_plain);
	ck_assert_str_eq(smtp_client_peer(c), peer);
	(void)snprintf(sender, sizeof(sender), "mx%d@src.test", _i);
	msg_init(&mb, sender, simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("plain", sender, 1, simple, strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_mx_second_host)
{
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, NULL, "mx2.test",
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	char peer[64];

	/* h1 (127.0.0.2) refuses; h2 (127.0.0.1, preference 20) answers. */
	c = open_target(t, "mx2.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	(void)snprintf(peer, sizeof(peer), "h2.mx2.test[127.0.0.1]:%d",
	    p_plain);
	ck_assert_str_eq(smtp_client_peer(c), peer);
	smtp_client_close(c);
	tgt_free(t);
}
END_TEST

static const struct {
	const char *host; /* fixed host, or NULL */
	const char *mx;   /* MX domain, or NULL */
	bool temp;
	const char *reason;
} open_failures[] = {
	{ NULL, "nx.test", false, "nx.test" },
	{ NULL, "nullmx.test", false, "null MX" },
	{ NULL, "fail.test", true, "fail.test" },
	{ "nx.test", NULL, true, "nx.test" },   /* a fixed host: retry */
	{ "127.0.0.1", NULL, true, "refused" }, /* the closed port */
};

START_TEST(test_open_failures)
{
	struct conf_target *t;
	struct openres o;

	t = tgt_new(CONF_TARGET_SMTP, open_failures[_i].host,
	    open_failures[_i].mx, p_closed);
	ck_assert_ptr_null(open_target(t, "fail.test", NULL, &o));
	ck_assert_int_eq(o.status, -1);
	ck_assert_int_eq(o.temp, open_failures[_i].temp);
	ck_assert_msg(strcasestr(o.reason, open_failures[_i].reason) != NULL,
	    "reason \"%s\"", o.reason);
	tgt_free(t);
}
END_TEST

START_TEST(test_silent_peer_timeout)
{
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_silent);
	struct openres o;
	time_t t0 = time(NULL);

	t->timeout_command = 1;
	ck_assert_ptr_null(open_target(t, "silent.test", NULL, &o));
	ck_assert(o.temp);
	ASSERT_HAS(o.reason, "timeout after CONNECT");
	ck_assert_int_le(time(NULL) - t0, 4);
	tgt_free(t);
}
END_TEST

START_TEST(test_txn_timeout)
{
	static const char *const rc[] = { "a@dest.test", "stall@dest.test",
		NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;

	t->timeout_command = 1;
	c = open_target(t, helos[_i], NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "stall@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), -1);
	ck_assert_uint_eq(mb.r[0].code, 451);
	ck_assert_uint_eq(mb.r[1].code, 451);
	ASSERT_HAS(mb.r[1].reply, "timeout after RCPT");
	ASSERT_PREFIX(mb.r[1].reply, "451 4.4.2 ");
	ck_assert(!smtp_client_reusable(c));
	/* A send on the dead connection fails at once (from the loop). */
	ck_assert_int_eq(send_msg(c, &mb), -1);
	ck_assert_uint_eq(mb.r[0].code, 451);
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_close_mid_transaction)
{
	static const char *const rc[] = { "stall@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct sendres r;
	struct msg mb;

	c = open_target(t, "close.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "closemid@src.test", simple, strlen(simple), rc);
	memset(&r, 0, sizeof(r));
	smtp_client_send(c, &mb.m, done_cb, &r);
	run_for(300);
	smtp_client_close(c);
	run_for(300);
	ck_assert_int_eq(r.calls, 0); /* no callback after close */
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_open_async_failure)
{
	struct conf_target *t = tgt_new(CONF_TARGET_LMTP, NULL, NULL, 24);
	struct openres o;
	char path[160];

	(void)snprintf(path, sizeof(path), "%s/no-such.sock", tdir);
	t->socket = xstrdup(path);
	ck_assert_ptr_null(open_target(t, "lmtp.test", NULL, &o));
	ck_assert(o.temp);
	ASSERT_HAS(o.reason, path);
	tgt_free(t);
}
END_TEST

/*
 * Abandoning opens: 0 waiting for a greeting, 1 resolving (dns_free in
 * the teardown ends it), 2 resolving then answered, 3 LMTP socket not
 * yet tried, 4 by smtp_client_shutdown. No callback, no leak (ASan).
 */
START_TEST(test_open_cancel)
{
	struct conf_target *t;
	struct smtp_client_params p;
	struct openres o, other;

	if (_i == 1 || _i == 2)
		t = tgt_new(CONF_TARGET_SMTP, NULL, "mx.test", p_plain);
	else if (_i == 3)
		t = tgt_new(CONF_TARGET_LMTP, NULL, NULL, 24);
	else
		t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL, p_silent);
	if (_i == 3)
		t->socket = xstrdup(lmtp_sock);
	memset(&o, 0, sizeof(o));
	memset(&other, 0, sizeof(other));
	memset(&p, 0, sizeof(p));
	p.base = base;
	p.dns = dns;
	p.target = t;
	p.readers = readers;
	p.helo = "cancel.test";
	smtp_client_open(&p, open_cb, &o);
	if (_i == 0 || _i == 4)
		run_for(200); /* connected, waiting for the banner */
	smtp_client_open_cancel(open_cb, &other); /* not that one */
	if (_i == 4)
		smtp_client_shutdown();
	else
		smtp_client_open_cancel(open_cb, &o);
	if (_i != 1)
		run_for(300);
	ck_assert_int_eq(o.calls, 0);
	tgt_free(t);
}
END_TEST

/* ---- TLS ---- */

static const struct {
	int peer; /* 0 plain, 1 tls, 2 broken */
	enum conf_tls_policy policy;
	int ca;           /* tls_ca: 1 our cert, 2 bad */
	const char *name; /* tls_name */
	const char *mx;   /* deliver via this MX */
	int want_tls;     /* 1/0 delivered, -1 fails */
	const char *reason;
} tls_cases[] = {
	{ 1, CONF_TLS_ENCRYPT, false, NULL, NULL, 1, NULL },
	{ 1, CONF_TLS_MAY, false, NULL, NULL, 1, NULL },
	{ 0, CONF_TLS_MAY, false, NULL, NULL, 0, NULL },
	{ 1, CONF_TLS_NONE, false, NULL, NULL, 0, NULL },
	{ 1, CONF_TLS_VERIFY, true, "localhost", NULL, 1, NULL },
	{ 1, CONF_TLS_VERIFY, true, NULL, "tlsmx.test", 1, NULL },
	{ 1, CONF_TLS_VERIFY, false, "localhost", NULL, -1, "self-signed" },
	{ 1, CONF_TLS_VERIFY, true, "other.test", NULL, -1, "mismatch" },
	{ 1, CONF_TLS_VERIFY, true, NULL, NULL, -1, "mismatch" },
	{ 0, CONF_TLS_ENCRYPT, false, NULL, NULL, -1,
	    "TLS required but not offered" },
	{ 2, CONF_TLS_MAY, false, NULL, NULL, 0, NULL },
	{ 2, CONF_TLS_ENCRYPT, false, NULL, NULL, -1, "TLS handshake" },
	{ 1, CONF_TLS_VERIFY, 2, "localhost", NULL, -1, "cannot load tls_ca" },
};

START_TEST(test_tls)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	static const char *const dirs[] = { "plain", "tls", "broken" };
	int port = tls_cases[_i].peer == 0 ? p_plain :
	    tls_cases[_i].peer == 1        ? p_tls :
	                                     p_broken;
	struct conf_target *t;
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char sender[64], *env;

	t = tgt_new(CONF_TARGET_SMTP, tls_cases[_i].mx ? NULL : "127.0.0.1",
	    tls_cases[_i].mx, port);
	t->tls = tls_cases[_i].policy;
	if (tls_cases[_i].ca == 1) {
		t->tls_ca = xstrdup(cert);
		/* Also present a client certificate (the key file apart). */
		t->tls_cert = xstrdup(cert);
		t->tls_key = xstrdup(key);
	} else if (tls_cases[_i].ca == 2) {
		t->tls_ca = xstrdup(key); /* not a certificate */
	}
	t->tls_name = dup0(tls_cases[_i].name);
	c = open_target(t, "tls.test", NULL, &o);
	if (tls_cases[_i].want_tls == -1) {
		ck_assert_ptr_null(c);
		ck_assert(o.temp);
		ck_assert_msg(strstr(o.reason, tls_cases[_i].reason) != NULL,
		    "reason \"%s\"", o.reason);
		tgt_free(t);
		return;
	}
	ck_assert_msg(c != NULL, "%s", o.reason);
	(void)snprintf(sender, sizeof(sender), "tls%d@src.test", _i);
	msg_init(&mb, sender, simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	env = env_of(dirs[tls_cases[_i].peer], sender, 1);
	ASSERT_HAS(env, tls_cases[_i].want_tls ? "tls: 1" : "tls: 0");
	free(env);
	check_capture(dirs[tls_cases[_i].peer], sender, 1, simple,
	    strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

START_TEST(test_tls_large_content)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_tls);
	struct openres o;
	struct smtp_client *c;
	struct tbuf b = { NULL, 0, 0 }, want = { NULL, 0, 0 };
	struct msg mb;
	char line[200];
	unsigned x = 12345;
	int i, n;

	/* 3 MB of lines, a fifth of them starting with a dot, 8-bit too. */
	for (i = 0; b.len < 3 * 1024 * 1024; i++) {
		x = x * 1103515245u + 12345u;
		n = (int)(x >> 16) % 150;
		(void)snprintf(line, sizeof(line), "%s%.*s\xe9%d\r\n",
		    i % 5 == 0 ? "." : "", n,
		    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv"
		    "wxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefgh"
		    "ijklmnopqrstuvwxyz0123456789",
		    i);
		tb_str(&b, line);
	}
	tb_add(&want, b.d, b.len);
	t->tls = CONF_TLS_ENCRYPT;
	t->timeout_data = 20;
	c = open_target(t, "big.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "bigtls@src.test", b.d, b.len, rc);
	mb.m.body = SMTP_PROTO_BODY_8BITMIME;
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("tls", "bigtls@src.test", 1, want.d, want.len);
	ck_assert(smtp_client_reusable(c));
	smtp_client_close(c);
	msg_done(&mb);
	free(b.d);
	free(want.d);
	tgt_free(t);
}
END_TEST

/* ---- content on the readers ---- */

/* A message of len octets: lines of x, some starting with a dot. */
static char *
big_body(size_t len)
{
	char *b = xmalloc(len);
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = i % 100 == 98 ? '\r' :
		    i % 100 == 99    ? '\n' :
		    i % 700 == 0     ? '.' :
		                       'x';
	b[len - 2] = '\r';
	b[len - 1] = '\n';
	return b;
}

/*
 * Content the readers open and read, from one chunk (one job) to many
 * (read ahead while the last is sent): the same bytes arrive, and the
 * connection stays reusable for the next.
 */
START_TEST(test_content_via_readers)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	static const size_t sizes[] = { 1000, 64 * 1024, 64 * 1024 + 1,
		700 * 1024 };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char sender[64], *b;
	size_t i;

	c = open_target(t, "readers.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		(void)snprintf(sender, sizeof(sender), "readers%zu@src.test",
		    i);
		b = big_body(sizes[i]);
		msg_init(&mb, sender, b, sizes[i], rc);
		ck_assert_int_eq(send_msg(c, &mb), 0);
		ck_assert_uint_eq(mb.r[0].code, 250);
		/* The peer undoes the dot-stuffing. */
		check_capture("plain", sender, 1, b, sizes[i]);
		ck_assert(smtp_client_reusable(c));
		msg_done(&mb);
		free(b);
	}

	/*
	 * Trace fields prepended: the readers stuff the content as if they
	 * had gone first (a dot after their CRLF is at a line start), and an
	 * empty content after them needs no CRLF of its own.
	 */
	msg_init(&mb, "pre1@src.test", ".dot first\r\n", 12, rc);
	mb.m.prepend = "X-Pre: 1\r\n";
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("plain", "pre1@src.test", 1, "X-Pre: 1\r\n.dot first\r\n",
	    22);
	msg_done(&mb);
	msg_init(&mb, "pre2@src.test", "", 0, rc);
	mb.m.prepend = "X-Pre: 2\r\n";
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	check_capture("plain", "pre2@src.test", 1, "X-Pre: 2\r\n", 10);
	msg_done(&mb);
	smtp_client_close(c);
	tgt_free(t);
}
END_TEST

/* Holds the reader thread until a byte arrives on the pipe. */
static void
block_job(void *arg)
{
	int *fds = arg;
	char x;

	while (read(fds[0], &x, 1) == -1 && errno == EINTR)
		;
}

/* Shortens the file behind the reader's back (on the reader thread). */
static char trunc_path[160];
static void
truncate_job(void *arg)
{
	(void)arg;
	ck_assert_int_eq(truncate(trunc_path, (off_t)(strlen(JUNK) + 100000)),
	    0);
}

static unsigned
count_fds(void)
{
	char path[64];
	unsigned n = 0;
	int fd;

	for (fd = 0; fd < 1024; fd++) {
		(void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (access(path, F_OK) == 0)
			n++;
	}
	return n;
}

/*
 * Read errors: the file gone before the reader opens it, and the file cut
 * short after the first chunk was read (the reader has one thread, so the
 * truncation queued behind the first read runs before the second). Both
 * give 451 to every recipient, drop the connection, deliver nothing.
 */
START_TEST(test_content_read_errors)
{
	static const char *const rc[] = { "a@dest.test", "b@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct sendres r;
	struct msg mb;
	char *b;

	c = open_target(t, "rerr.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "gone@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(unlink(mb.path), 0);
	ck_assert_int_eq(send_msg(c, &mb), -1);
	ck_assert_uint_eq(mb.r[0].code, 451);
	ASSERT_PREFIX(mb.r[0].reply, "451 4.3.0 cannot open queue file: ");
	ASSERT_HAS(mb.r[0].reply, "No such file");
	ck_assert_uint_eq(mb.r[1].code, 451);
	ck_assert(!smtp_client_reusable(c));
	smtp_client_close(c);
	run_for(200);
	ck_assert(!captured("plain", "gone@src.test", 1));
	msg_done(&mb);

	c = open_target(t, "rerr.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	b = big_body(300 * 1024);
	msg_init(&mb, "short@src.test", b, 300 * 1024, rc);
	(void)snprintf(trunc_path, sizeof(trunc_path), "%s", mb.path);
	memset(&r, 0, sizeof(r));
	smtp_client_send(c, &mb.m, done_cb, &r);
	workers_submit(readers, truncate_job, NULL, NULL);
	run_until(&r.calls, 1);
	ck_assert_int_eq(r.status, -1);
	ck_assert_uint_eq(mb.r[0].code, 451);
	ASSERT_PREFIX(mb.r[0].reply,
	    "451 4.3.0 error reading queue file: file truncated");
	ck_assert_uint_eq(mb.r[1].code, 451);
	ck_assert(!smtp_client_reusable(c));
	smtp_client_close(c);
	run_for(200);
	ck_assert(!captured("plain", "short@src.test", 1));
	msg_done(&mb);
	free(b);
	tgt_free(t);
}
END_TEST

/*
 * A client closed while a read is in flight: _i 0, the first job (the open)
 * still queued behind a held reader, and the file unlinked before it runs;
 * _i 1, a read-ahead queued while the client holds the open file. The
 * read is orphaned: its completion frees the buffer and has the handle
 * closed (ASan checks the memory, the fd count the handle); no callback
 * reaches the closed client.
 */
START_TEST(test_close_while_reading)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct sendres r;
	struct msg mb;
	unsigned nfds;
	char *b = big_body(1 << 19);
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	msg_init(&mb, "orphan@src.test", b, 1 << 19, rc);
	nfds = count_fds(); /* the connection's socket comes and goes */
	c = open_target(t, "orphan.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	memset(&r, 0, sizeof(r));
	if (_i == 0)
		workers_submit(readers, block_job, NULL, fds);
	smtp_client_send(c, &mb.m, done_cb, &r);
	if (_i == 1) {
		/* The first chunk comes back; the next read waits. */
		workers_submit(readers, block_job, NULL, fds);
		run_for(200);
		ck_assert_uint_eq(count_fds(), nfds + 2); /* and the file */
	}
	ck_assert_uint_ge(workers_busy(readers), 2);
	smtp_client_close(c);
	msg_done(&mb);
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	while (workers_busy(readers) > 0)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_eq(count_fds(), nfds);
	run_for(100);
	ck_assert_int_eq(r.calls, 0);
	(void)close(fds[0]);
	(void)close(fds[1]);
	free(b);
	tgt_free(t);
}
END_TEST

/* ---- LMTP ---- */

START_TEST(test_lmtp_per_rcpt)
{
	static const char *const rc[] = { "ok1@dest.test", "bad@dest.test",
		"rej@dest.test", "tmp@dest.test", "ok2@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_LMTP, NULL, NULL, 24);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	char *env;

	t->socket = xstrdup(lmtp_sock);
	c = open_target(t, "lmtp.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	ck_assert_str_eq(smtp_client_peer(c), lmtp_sock);
	msg_init(&mb, "lmtp@src.test", simple, strlen(simple), rc);
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[0].code, 250);
	ck_assert_str_eq(mb.r[0].reply, "250 2.0.0 delivered to ok1@dest.test");
	ck_assert_uint_eq(mb.r[1].code, 552);
	ck_assert_str_eq(mb.r[1].reply, "552 5.2.2 mailbox full");
	ck_assert_uint_eq(mb.r[2].code, 550);
	ck_assert_uint_eq(mb.r[3].code, 452);
	ck_assert_str_eq(mb.r[3].reply, "452 4.2.2 over quota");
	ck_assert_uint_eq(mb.r[4].code, 250);
	ck_assert_str_eq(mb.r[4].reply, "250 2.0.0 delivered to ok2@dest.test");
	env = env_of("lmtp", "lmtp@src.test", 1);
	ASSERT_HAS(env, "helo: lmtp.test");
	free(env);
	check_capture("lmtp", "lmtp@src.test", 1, simple, strlen(simple));
	/* And again on the same connection. */
	ck_assert(smtp_client_reusable(c));
	ck_assert_int_eq(send_msg(c, &mb), 0);
	ck_assert_uint_eq(mb.r[4].code, 250);
	check_capture("lmtp", "lmtp@src.test", 2, simple, strlen(simple));
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

/* ---- connection reuse, QUIT, throughput ---- */

static bool
wait_lines(const char *dir, const char *name, size_t want)
{
	int i;

	for (i = 0; i < 300; i++) {
		if (count_lines(dir, name) >= want)
			return true;
		usleep(10000);
	}
	return false;
}

START_TEST(test_quit_on_close)
{
	int port = _i == 0 ? p_plain : p_tls;
	const char *dir = _i == 0 ? "plain" : "tls";
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    port);
	struct openres o;
	struct smtp_client *c;
	size_t before = count_lines(dir, "quit.log");

	t->tls = _i == 0 ? CONF_TLS_NONE : CONF_TLS_ENCRYPT;
	c = open_target(t, "quit.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	smtp_client_close(c);
	ck_assert_msg(wait_lines(dir, "quit.log", before + 1),
	    "no QUIT arrived");
	tgt_free(t);
}
END_TEST

START_TEST(test_reuse_same_connection)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct conf_target *t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL,
	    p_plain);
	struct openres o;
	struct smtp_client *c;
	struct msg mb;
	size_t before = count_lines("plain", "conn.log");
	int i;

	t->messages_per_connection = 5;
	c = open_target(t, "reuse.test", NULL, &o);
	ck_assert_msg(c != NULL, "%s", o.reason);
	msg_init(&mb, "reuse@src.test", simple, strlen(simple), rc);
	for (i = 0; i < 5; i++) {
		ck_assert(smtp_client_reusable(c));
		ck_assert_int_eq(send_msg(c, &mb), 0);
		ck_assert_uint_eq(mb.r[0].code, 250);
	}
	ck_assert(!smtp_client_reusable(c)); /* the limit is reached */
	for (i = 1; i <= 5; i++)
		check_capture("plain", "reuse@src.test", i, simple,
		    strlen(simple));
	ck_assert_uint_eq(count_lines("plain", "conn.log"), before + 1);
	smtp_client_close(c);
	msg_done(&mb);
	tgt_free(t);
}
END_TEST

/* Parses the last "sess=N quit=N mesg=N" record smtp-sink -c printed. */
static bool
sink_counts(int *quit, int *mesg)
{
	char *s = slurp(".", "sink.out", NULL), *p, *last = NULL;
	bool ok = false;

	if (s == NULL)
		return false;
	for (p = s; (p = strstr(p, "sess=")) != NULL; p++)
		last = p;
	if (last != NULL &&
	    sscanf(last, "sess=%*d quit=%d mesg=%d", quit, mesg) == 2)
		ok = true;
	free(s);
	return ok;
}

struct sink_run {
	struct conf_target *t;
	struct smtp_client *c;
	struct msg mb;
	int sent, want, opens, errors, done;
	struct openres o;
};

static void sink_next(struct sink_run *sr);

static void
sink_done_cb(void *arg, struct smtp_client *c, int status)
{
	struct sink_run *sr = arg;

	(void)c;
	if (status != 0 || sr->mb.r[0].code != 250)
		sr->errors++;
	sr->sent++;
	sink_next(sr);
}

static void
sink_open_cb(void *arg, struct smtp_client *c, int status, bool temp,
    const char *reason)
{
	struct sink_run *sr = arg;

	(void)temp;
	(void)reason;
	if (status != 0) {
		sr->errors++;
		sr->done = 1;
		return;
	}
	sr->opens++;
	sr->c = c;
	sink_next(sr);
}

/* Sends the next message, reopening when the connection is used up. */
static void
sink_next(struct sink_run *sr)
{
	struct smtp_client_params p;

	if (sr->sent == sr->want) {
		smtp_client_close(sr->c); /* from inside its callback */
		sr->c = NULL;
		sr->done = 1;
		return;
	}
	if (sr->c != NULL && smtp_client_reusable(sr->c)) {
		smtp_client_send(sr->c, &sr->mb.m, sink_done_cb, sr);
		return;
	}
	smtp_client_close(sr->c);
	sr->c = NULL;
	memset(&p, 0, sizeof(p));
	p.base = base;
	p.dns = dns;
	p.target = sr->t;
	p.readers = readers;
	p.helo = "sink.test";
	smtp_client_open(&p, sink_open_cb, sr);
}

START_TEST(test_sink_reuse_throughput)
{
	static const char *const rc[] = { "a@dest.test", NULL };
	struct sink_run sr;
	struct timespec t0, t1;
	struct tbuf b = { NULL, 0, 0 };
	int q0 = 0, m0 = 0, q1 = 0, m1 = 0, i;
	double secs;

	(void)sink_counts(&q0, &m0);
	memset(&sr, 0, sizeof(sr));
	sr.t = tgt_new(CONF_TARGET_SMTP, "127.0.0.1", NULL, p_sink);
	sr.t->messages_per_connection = 100;
	sr.want = 250;
	tb_str(&b, "Subject: sink\r\n\r\n");
	tb_pad_to(&b, 4096);
	msg_init(&sr.mb, "sink@src.test", b.d, b.len, rc);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sink_next(&sr);
	run_until(&sr.done, 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(sr.errors, 0);
	ck_assert_int_eq(sr.sent, 250);
	ck_assert_int_eq(sr.opens, 3); /* 100 + 100 + 50 */
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr,
	    "smtp-sink: 250 x 4 KiB in %.3f s (%.0f msgs/s, "
	    "3 connections, ASan build)\n",
	    secs, 250 / secs);
	for (i = 0; i < 300; i++) {
		if (sink_counts(&q1, &m1) && m1 - m0 >= 250 && q1 - q0 >= 3)
			break;
		usleep(10000);
	}
	ck_assert_int_eq(m1 - m0, 250);
	ck_assert_int_eq(q1 - q0, 3); /* QUIT on each close */
	msg_done(&sr.mb);
	free(b.d);
	tgt_free(sr.t);
}
END_TEST

static Suite *
smtp_client_suite(void)
{
	Suite *s = suite_create("smtp_client");
	TCase *tc = tcase_create("peers");

	tcase_add_unchecked_fixture(tc, peers_start, peers_stop);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 40);
	tcase_add_test(tc, test_pipelined_rcpt_mix);
	tcase_add_test(tc, test_lockstep_rcpt_mix);
	tcase_add_test(tc, test_dotstuff_exact);
	tcase_add_test(tc, test_dotstuff_bare_eol);
	tcase_add_loop_test(tc, test_all_rcpts_rejected, 0, 2);
	tcase_add_loop_test(tc, test_mail_rejected, 0, 2);
	tcase_add_loop_test(tc, test_data_rejected, 0, 2);
	tcase_add_test(tc, test_dsn_params);
	tcase_add_test(tc, test_smtputf8);
	tcase_add_test(tc, test_missing_extensions);
	tcase_add_test(tc, test_size_and_spool_errors);
	tcase_add_test(tc, test_helo_fallback);
	tcase_add_test(tc, test_multiline_reply);
	tcase_add_loop_test(tc, test_peer_drops, 0, 2);
	tcase_add_test(tc, test_greeting_refused);
	tcase_add_loop_test(tc, test_mx_delivery, 0, 2);
	tcase_add_test(tc, test_mx_second_host);
	tcase_add_loop_test(tc, test_open_failures, 0,
	    (int)(sizeof(open_failures) / sizeof(open_failures[0])));
	tcase_add_test(tc, test_silent_peer_timeout);
	tcase_add_loop_test(tc, test_txn_timeout, 0, 2);
	tcase_add_test(tc, test_close_mid_transaction);
	tcase_add_test(tc, test_open_async_failure);
	tcase_add_loop_test(tc, test_open_cancel, 0, 5);
	tcase_add_loop_test(tc, test_tls, 0,
	    (int)(sizeof(tls_cases) / sizeof(tls_cases[0])));
	tcase_add_test(tc, test_tls_large_content);
	tcase_add_test(tc, test_content_via_readers);
	tcase_add_test(tc, test_content_read_errors);
	tcase_add_loop_test(tc, test_close_while_reading, 0, 2);
	tcase_add_test(tc, test_lmtp_per_rcpt);
	tcase_add_loop_test(tc, test_quit_on_close, 0, 2);
	tcase_add_test(tc, test_reuse_same_connection);
	tcase_add_test(tc, test_sink_reuse_throughput);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(smtp_client_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
