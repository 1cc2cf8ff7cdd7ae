/*
 * check_auth.c - SPF, DKIM and Authentication-Results against a real
 * dnsmasq on loopback.
 *
 * The unchecked fixture makes an RSA key (openssl), publishes SPF policies
 * and the DKIM key in dnsmasq (authoritative for *.test), starts a UDP
 * responder that answers SERVFAIL for tf.test, and stops both by PID.
 * Messages are signed with python3-dkim (/usr/bin/python3: a pyenv python3
 * earlier in PATH may lack the module). Client addresses are never
 * loopback: libspf2 passes loopback clients without looking at DNS.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <openssl/evp.h>

#include "testpeer.h"
#include "auth_dkim.h"
#include "auth_results.h"
#include "auth_spf.h"
#include "dns_sync.h"
#include "header_fmt.h"
#include "sbuf.h"

#define RECEIVER "mx.splitmx.test"
#define PYTHON   "/usr/bin/python3"

static char tdir[64];
static pid_t dnsmasq_pid = -1, servfail_pid = -1;
static char servers[64];
static char keyfile[128];

/* ---- peers ---- */

static int
free_port(int type)
{
	return testpeer_free_port(type);
}

static pid_t
spawn(const char *const argv[], const char *logfile)
{
	return testpeer_spawn(argv, logfile);
}

/* Runs argv to completion; returns its exit status. */
static int
run(const char *const argv[])
{
	char logf[128];
	pid_t pid;
	int st;

	(void)snprintf(logf, sizeof(logf), "%s/run.log", tdir);
	pid = spawn(argv, logf);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void
stop(pid_t *pid)
{
	testpeer_stop(*pid);
	*pid = -1;
}

/* Answers every query with SERVFAIL (dnsmasq forwards tf.test here). */
static pid_t
start_servfail(int port)
{
	return testpeer_servfail(port);
}

/* Reads a whole file into a NUL-terminated malloc'ed buffer. */
static char *
slurp(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len_out != NULL)
		*len_out = (size_t)n;
	return buf;
}

static void
spit(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

/*
 * "--txt-record=name,v=DKIM1; k=rsa; p=...,..." with the text cut into
 * strings of at most 255 octets (RFC 1035 character-strings). No quotes:
 * without a shell to strip them, dnsmasq would publish them literally.
 */
static char *
dkim_txt_arg(const char *name)
{
	char path[160], *der, *b64, *arg;
	size_t derlen, b64len, i, off;
	struct sbuf txt;
	int n;

	(void)snprintf(path, sizeof(path), "%s/pub.der", tdir);
	der = slurp(path, &derlen);
	b64 = malloc(derlen * 2 + 8);
	ck_assert_ptr_nonnull(b64);
	n = EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)der,
	    (int)derlen);
	ck_assert_int_gt(n, 0);
	b64len = (size_t)n;
	sbuf_init(&txt, 4096);
	ck_assert_int_eq(sbuf_printf(&txt, "v=DKIM1; k=rsa; p=%s", b64), 0);
	ck_assert_uint_gt(txt.len, 255); /* proves the split matters */
	{
		struct sbuf a;

		sbuf_init(&a, 8192);
		ck_assert_int_eq(sbuf_printf(&a, "--txt-record=%s", name), 0);
		for (off = 0; off < txt.len; off += 255) {
			size_t chunk = txt.len - off > 255 ? 255 :
			                                     txt.len - off;

			ck_assert_int_eq(sbuf_append_char(&a, ','), 0);
			for (i = 0; i < chunk; i++)
				ck_assert_int_eq(sbuf_append_char(&a,
				                     txt.data[off + i]),
				    0);
		}
		arg = strdup(a.data);
		sbuf_release(&a);
	}
	(void)b64len;
	sbuf_release(&txt);
	free(b64);
	free(der);
	return arg;
}

static void
wait_dns(void)
{
	struct dns_sync_answer ans;
	struct dns_sync *ds;
	struct sbuf err;
	int i;

	sbuf_init(&err, 256);
	ds = dns_sync_new(servers, 300, &err);
	ck_assert_msg(ds != NULL, "%s", err.data);
	for (i = 0; i < 100; i++) {
		(void)dns_sync_query(ds, "pass.test", ns_t_txt, &ans);
		if (ans.status == DNS_SYNC_OK) {
			dns_sync_answer_release(&ans);
			break;
		}
		dns_sync_answer_release(&ans);
		usleep(50000);
	}
	dns_sync_free(ds);
	sbuf_release(&err);
	ck_assert_msg(i < 100, "dnsmasq does not answer");
}

static void
peers_start(void)
{
	char portarg[32], sfarg[64], logf[128], pubfile[128];
	char *dkimarg;
	int sfport, dns_port;

	(void)snprintf(tdir, sizeof(tdir), "/tmp/check_auth.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	(void)snprintf(keyfile, sizeof(keyfile), "%s/key.pem", tdir);
	(void)snprintf(pubfile, sizeof(pubfile), "%s/pub.der", tdir);
	{
		const char *const gen[] = { "openssl", "genrsa", "-traditional",
			"-out", keyfile, "2048", NULL };
		const char *const pub[] = { "openssl", "rsa", "-in", keyfile,
			"-pubout", "-outform", "DER", "-out", pubfile, NULL };

		ck_assert_int_eq(run(gen), 0);
		ck_assert_int_eq(run(pub), 0);
	}
	dkimarg = dkim_txt_arg("sel._domainkey.example.test");

	sfport = free_port(SOCK_DGRAM);
	servfail_pid = start_servfail(sfport);
	dns_port = free_port(SOCK_STREAM);
	(void)snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns_port);
	(void)snprintf(portarg, sizeof(portarg), "--port=%d", dns_port);
	(void)snprintf(sfarg, sizeof(sfarg), "--server=/tf.test/127.0.0.1#%d",
	    sfport);
	(void)snprintf(logf, sizeof(logf), "%s/dnsmasq.log", tdir);
	{
		const char *const argv[] = { "/usr/sbin/dnsmasq", "--no-daemon",
			"--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			portarg, "--listen-address=127.0.0.1",
			"--bind-interfaces", "--pid-file=", "--log-facility=-",
			"--local=/test/", sfarg,
			"--txt-record=pass.test,v=spf1 ip4:192.0.2.10 -all",
			"--txt-record=fail.test,v=spf1 -all",
			"--txt-record=soft.test,v=spf1 ~all",
			"--txt-record=neutral.test,v=spf1 ?all",
			"--txt-record=nospf.test,hello world",
			"--txt-record=inc.test,v=spf1 include:inc2.test -all",
			"--txt-record=inc2.test,v=spf1 include:inc3.test -all",
			"--txt-record=inc3.test,v=spf1 ip4:192.0.2.0/24 -all",
			"--txt-record=amx.test,v=spf1 a mx -all",
			"--host-record=amx.test,192.0.2.20",
			"--mx-host=amx.test,mx1.amx.test,10",
			"--host-record=mx1.amx.test,192.0.2.21",
			"--txt-record=v6.test,v=spf1 ip6:2001:db8::/32 -all",
			"--txt-record=split.test,v=spf1 ip4:192.0.2.30, -all",
			"--txt-record=perm.test,v=spf1 ip4:bogus -all",
			"--txt-record=twice.test,v=spf1 -all",
			"--txt-record=twice.test,v=spf1 +all",
			"--txt-record=incnone.test,v=spf1 include:nospf.test -all",
			"--txt-record=inctf.test,v=spf1 include:tf.test -all",
			dkimarg, NULL };
		dnsmasq_pid = spawn(argv, logf);
	}
	free(dkimarg);
	wait_dns();
}

static void
peers_stop(void)
{
	char cmd[128];

	stop(&dnsmasq_pid);
	stop(&servfail_pid);
	if (tdir[0] != '\0' && getenv("CHECK_AUTH_KEEP") == NULL) {
		/* the directory holds only files this fixture wrote */
		(void)snprintf(cmd, sizeof(cmd), "%s/", tdir);
		{
			const char *const argv[] = { "/bin/rm", "-rf", cmd,
				NULL };
			pid_t pid = fork();
			int st;

			if (pid == 0) {
				execv(argv[0], (char *const *)(uintptr_t)argv);
				_exit(127);
			}
			if (pid > 0)
				(void)waitpid(pid, &st, 0);
		}
	}
}

/* ---- dns_sync ---- */

START_TEST(test_dns_sync_statuses)
{
	struct dns_sync_answer ans;
	struct dns_sync *ds;
	struct sbuf err;

	sbuf_init(&err, 256);
	ds = dns_sync_new(servers, 0, &err);
	ck_assert_ptr_nonnull(ds);
	ck_assert_int_eq(dns_sync_query(ds, "pass.test", ns_t_txt, &ans), 0);
	ck_assert_int_eq(ans.status, DNS_SYNC_OK);
	ck_assert_int_eq(ans.rcode, 0);
	ck_assert_ptr_nonnull(ans.pkt);
	ck_assert_uint_gt(ans.len, 12);
	dns_sync_answer_release(&ans);

	(void)dns_sync_query(ds, "nothere.test", ns_t_txt, &ans);
	ck_assert_int_eq(ans.status, DNS_SYNC_NXDOMAIN);
	ck_assert_int_eq(ans.rcode, 3);
	dns_sync_answer_release(&ans);

	(void)dns_sync_query(ds, "amx.test", ns_t_aaaa, &ans);
	ck_assert_int_eq(ans.status, DNS_SYNC_NODATA);
	dns_sync_answer_release(&ans);

	(void)dns_sync_query(ds, "x.tf.test", ns_t_txt, &ans);
	ck_assert_int_eq(ans.status, DNS_SYNC_TEMPFAIL);
	dns_sync_answer_release(&ans);
	dns_sync_free(ds);

	ck_assert_ptr_null(dns_sync_new("not-an-address", 0, &err));
	sbuf_release(&err);
}
END_TEST

/* A resolver that never answers: the hard deadline must hold. */
START_TEST(test_dns_sync_timeout)
{
	struct dns_sync_answer ans;
	struct dns_sync *ds;
	struct sockaddr_in sin;
	struct timespec t0, t1;
	socklen_t slen = sizeof(sin);
	char srv[64];
	struct sbuf err;
	long ms;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0); /* bound, never read */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	(void)snprintf(srv, sizeof(srv), "127.0.0.1:%d", ntohs(sin.sin_port));
	sbuf_init(&err, 256);
	ds = dns_sync_new(srv, 500, &err);
	ck_assert_ptr_nonnull(ds);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	(void)dns_sync_query(ds, "pass.test", ns_t_txt, &ans);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_int_eq(ans.status, DNS_SYNC_TIMEOUT);
	ck_assert_int_ge(ms, 400);
	ck_assert_int_le(ms, 1500);
	dns_sync_answer_release(&ans);
	dns_sync_free(ds);
	sbuf_release(&err);
	close(fd);
}
END_TEST

/* ---- SPF ---- */

static const struct {
	const char *ip;
	const char *helo;
	const char *from;
	enum auth_spf_res want;
	const char *domain;
	const char *identity;
} spf_cases[] = {
	{ "192.0.2.10", "mail.pass.test", "alice@pass.test", AUTH_SPF_PASS,
	    "pass.test", "mailfrom" },
	{ "198.51.100.7", "mail.pass.test", "alice@pass.test", AUTH_SPF_FAIL,
	    "pass.test", "mailfrom" },
	{ "192.0.2.10", "h.fail.test", "bob@FAIL.test", AUTH_SPF_FAIL,
	    "fail.test", "mailfrom" },
	{ "192.0.2.10", "h", "bob@soft.test", AUTH_SPF_SOFTFAIL, "soft.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@neutral.test", AUTH_SPF_NEUTRAL,
	    "neutral.test", "mailfrom" },
	{ "192.0.2.10", "h", "bob@nospf.test", AUTH_SPF_NONE, "nospf.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@nxdomain.test", AUTH_SPF_NONE,
	    "nxdomain.test", "mailfrom" },
	{ "192.0.2.10", "h", "bob@inc.test", AUTH_SPF_PASS, "inc.test",
	    "mailfrom" },
	{ "203.0.113.5", "h", "bob@inc.test", AUTH_SPF_FAIL, "inc.test",
	    "mailfrom" },
	{ "192.0.2.20", "h", "bob@amx.test", AUTH_SPF_PASS, "amx.test",
	    "mailfrom" },
	{ "192.0.2.21", "h", "bob@amx.test", AUTH_SPF_PASS, "amx.test",
	    "mailfrom" },
	{ "192.0.2.22", "h", "bob@amx.test", AUTH_SPF_FAIL, "amx.test",
	    "mailfrom" },
	{ "2001:db8::1", "h", "bob@v6.test", AUTH_SPF_PASS, "v6.test",
	    "mailfrom" },
	{ "2001:db9::1", "h", "bob@v6.test", AUTH_SPF_FAIL, "v6.test",
	    "mailfrom" },
	{ "::ffff:192.0.2.10", "h", "bob@pass.test", AUTH_SPF_PASS, "pass.test",
	    "mailfrom" },
	{ "192.0.2.30", "h", "bob@split.test", AUTH_SPF_PASS, "split.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@tf.test", AUTH_SPF_TEMPERROR, "tf.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@inctf.test", AUTH_SPF_TEMPERROR, "inctf.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@perm.test", AUTH_SPF_PERMERROR, "perm.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@twice.test", AUTH_SPF_PERMERROR, "twice.test",
	    "mailfrom" },
	{ "192.0.2.10", "h", "bob@incnone.test", AUTH_SPF_PERMERROR,
	    "incnone.test", "mailfrom" },
	/* null sender: the HELO identity (RFC 7208 2.4) */
	{ "192.0.2.10", "pass.test", "", AUTH_SPF_PASS, "pass.test", "helo" },
	{ "192.0.2.10", "fail.test", "", AUTH_SPF_FAIL, "fail.test", "helo" },
	/* no usable domain, loopback client: not evaluated */
	{ "192.0.2.10", "[192.0.2.10]", "", AUTH_SPF_NONE, "", "helo" },
	{ "127.0.0.1", "h", "bob@fail.test", AUTH_SPF_NONE, "fail.test",
	    "mailfrom" },
};

/* The Received-SPF field for r, formatted into sb (reset first). */
static const char *
rspf(struct sbuf *sb, const struct auth_spf_result *r)
{
	sbuf_reset(sb);
	ck_assert_int_eq(auth_results_received_spf(sb, r), 0);
	return sb->data;
}

START_TEST(test_spf_table)
{
	struct auth_spf_result r;
	enum auth_spf_res got;
	struct sbuf rs;

	got = auth_spf_check(servers, RECEIVER, spf_cases[_i].ip,
	    spf_cases[_i].helo, spf_cases[_i].from, &r);
	ck_assert_msg(got == spf_cases[_i].want,
	    "case %d (%s from %s): got %s want %s (%s)", _i, spf_cases[_i].from,
	    spf_cases[_i].ip, auth_spf_res_str(got),
	    auth_spf_res_str(spf_cases[_i].want), r.comment);
	ck_assert_int_eq(r.result, got);
	ck_assert_str_eq(r.domain, spf_cases[_i].domain);
	ck_assert_str_eq(r.identity, spf_cases[_i].identity);
	sbuf_init(&rs, 4096);
	ck_assert_msg(strncmp(rspf(&rs, &r), "Received-SPF: ", 14) == 0, "%s",
	    rs.data);
	sbuf_release(&rs);
	ck_assert_int_le(r.dns_queries, 20);
}
END_TEST

/* Every line of a folded field fits and continues with a TAB. */
static void
assert_folded(const char *f)
{
	const char *p = f, *eol;
	bool first = true;

	while (*p != '\0') {
		eol = strstr(p, "\r\n");
		ck_assert_ptr_nonnull(eol);
		ck_assert_msg(eol - p <= HEADER_FMT_LINE_MAX,
		    "line too long: %.*s", (int)(eol - p), p);
		ck_assert_ptr_null(memchr(p, '\n', (size_t)(eol - p)));
		if (!first)
			ck_assert_int_eq(*p, '\t');
		first = false;
		p = eol + 2;
	}
}

START_TEST(test_spf_headers)
{
	struct auth_spf_result r;
	struct sbuf ar, rs;

	sbuf_init(&rs, 4096);
	ck_assert_int_eq(auth_spf_check(servers, RECEIVER, "192.0.2.10",
	                     "mail.pass.test", "alice@pass.test", &r),
	    AUTH_SPF_PASS);
	ck_assert_str_eq(rspf(&rs, &r),
	    "Received-SPF: pass (mx.splitmx.test: domain of alice@pass.test designates\r\n"
	    "\t192.0.2.10 as permitted sender) client-ip=192.0.2.10;\r\n"
	    "\tenvelope-from=\"alice@pass.test\"; helo=mail.pass.test;\r\n"
	    "\treceiver=mx.splitmx.test; identity=mailfrom;\r\n");
	assert_folded(rspf(&rs, &r));
	sbuf_init(&ar, 4096);
	ck_assert_int_eq(auth_results_format(&ar, RECEIVER, &r, NULL), 0);
	ck_assert_str_eq(ar.data,
	    "Authentication-Results: mx.splitmx.test; spf=pass (mx.splitmx.test: domain of\r\n"
	    "\talice@pass.test designates 192.0.2.10 as permitted sender)\r\n"
	    "\tsmtp.mailfrom=pass.test\r\n");
	assert_folded(ar.data);

	/* null sender, fail: helo identity and smtp.helo */
	ck_assert_int_eq(auth_spf_check(servers, RECEIVER, "192.0.2.10",
	                     "fail.test", "", &r),
	    AUTH_SPF_FAIL);
	ck_assert_str_eq(rspf(&rs, &r),
	    "Received-SPF: fail (mx.splitmx.test: domain of postmaster@fail.test does not\r\n"
	    "\tdesignate 192.0.2.10 as permitted sender) client-ip=192.0.2.10;\r\n"
	    "\tenvelope-from=\"<>\"; helo=fail.test; receiver=mx.splitmx.test; identity=helo;\r\n");
	sbuf_reset(&ar);
	ck_assert_int_eq(auth_results_format(&ar, RECEIVER, &r, NULL), 0);
	ck_assert_ptr_nonnull(strstr(ar.data, "smtp.helo=fail.test\r\n"));
	ck_assert_ptr_nonnull(strstr(ar.data, "spf=fail"));

	/* temperror */
	ck_assert_int_eq(auth_spf_check(servers, RECEIVER, "192.0.2.10", "h",
	                     "bob@tf.test", &r),
	    AUTH_SPF_TEMPERROR);
	ck_assert_str_eq(rspf(&rs, &r),
	    "Received-SPF: temperror (mx.splitmx.test: temporary DNS error checking\r\n"
	    "\ttf.test) client-ip=192.0.2.10; envelope-from=\"bob@tf.test\"; helo=h;\r\n"
	    "\treceiver=mx.splitmx.test; identity=mailfrom;\r\n");

	/* hostile sender text is quoted, never raw CR/LF */
	(void)auth_spf_check(servers, RECEIVER, "192.0.2.10", "h\r\nX-Evil: 1",
	    "a\"b\r\n(x)@pass.test", &r);
	ck_assert_ptr_null(strstr(rspf(&rs, &r), "\r\nX-Evil"));
	assert_folded(rspf(&rs, &r));
	sbuf_release(&rs);
	sbuf_release(&ar);
}
END_TEST

/* ---- DKIM ---- */

static const char *const sign_py =
    "import sys, dkim\n"
    "msg = open(sys.argv[1], 'rb').read()\n"
    "key = open(sys.argv[2], 'rb').read()\n"
    "hc, bc = sys.argv[5].encode().split(b'/')\n"
    "sig = dkim.sign(msg, sys.argv[3].encode(), sys.argv[4].encode(), key,\n"
    "    canonicalize=(hc, bc),\n"
    "    include_headers=[b'from', b'to', b'subject', b'date',\n"
    "                     b'message-id'])\n"
    "open(sys.argv[6], 'wb').write(sig + msg)\n";

/* A message with a folded header, an 8-bit body and a 990-octet line. */
static char *
make_message(size_t *len_out)
{
	struct sbuf m;
	char *out;
	int i;

	sbuf_init(&m, 1 << 16);
	ck_assert_int_eq(sbuf_append_str(&m,
	                     "From: Alice <alice@example.test>\r\n"
	                     "To: bob@dest.test\r\n"
	                     "Subject: a folded\r\n"
	                     "  subject line\twith tabs\r\n"
	                     "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	                     "Message-ID: <m1@example.test>\r\n"
	                     "MIME-Version: 1.0\r\n"
	                     "Content-Type: text/plain; charset=utf-8\r\n"
	                     "Content-Transfer-Encoding: 8bit\r\n"
	                     "\r\n"
	                     "Gr\xc3\xbc\xc3\x9f"
	                     "e aus K\xc3\xb6ln  \r\n"
	                     "\r\n"),
	    0);
	for (i = 0; i < 990; i++)
		ck_assert_int_eq(sbuf_append_char(&m, (char)('a' + i % 26)), 0);
	ck_assert_int_eq(sbuf_append_str(&m, "\r\n.leading dot\r\n\r\n"), 0);
	out = malloc(m.len + 1);
	memcpy(out, m.data, m.len + 1);
	*len_out = m.len;
	sbuf_release(&m);
	return out;
}

/* Signs msg with python3-dkim; returns the signed message. */
static char *
sign_message(const char *msg, size_t len, const char *selector,
    const char *domain, const char *canon, size_t *len_out)
{
	char in[160], outp[160];

	(void)snprintf(in, sizeof(in), "%s/msg.in", tdir);
	(void)snprintf(outp, sizeof(outp), "%s/msg.out", tdir);
	spit(in, msg, len);
	{
		const char *const argv[] = { PYTHON, "-c", sign_py, in, keyfile,
			selector, domain, canon, outp, NULL };

		ck_assert_int_eq(run(argv), 0);
	}
	return slurp(outp, len_out);
}

/* The b= tag of the first DKIM-Signature, FWS removed. */
static void
sig_b(const char *msg, char *b, size_t size)
{
	const char *p = strstr(msg, " b=");
	size_t n = 0;

	if (p == NULL)
		p = strstr(msg, ";b=");
	ck_assert_ptr_nonnull(p);
	for (p += 3; *p != '\0' && *p != ';' && n + 1 < size; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			continue;
		b[n++] = *p;
	}
	b[n] = '\0';
}

static const char *const canons[] = { "relaxed/relaxed", "simple/simple",
	"relaxed/simple", "simple/relaxed" };

START_TEST(test_dkim_pass)
{
	struct auth_dkim_result r;
	struct auth_dkim *ad;
	struct sbuf err;
	char *msg, *signed_msg, b[1024];
	size_t len, slen, off;

	msg = make_message(&len);
	signed_msg = sign_message(msg, len, "sel", "example.test", canons[_i],
	    &slen);
	sig_b(signed_msg, b, sizeof(b));

	/* whole message */
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &r), 1);
	ck_assert_msg(r.sigs[0].result == AUTH_DKIM_PASS, "%s: %s %s",
	    canons[_i], auth_dkim_res_str(r.sigs[0].result), r.sigs[0].comment);
	ck_assert_str_eq(r.sigs[0].domain, "example.test");
	ck_assert_str_eq(r.sigs[0].selector, "sel");
	ck_assert_uint_ge(strlen(r.sigs[0].b), 8);
	ck_assert_int_eq(strncmp(r.sigs[0].b, b, strlen(r.sigs[0].b)), 0);
	ck_assert_int_eq(r.dns_queries, 1);

	/* incremental, 7-octet chunks: boundaries inside CRLF and headers */
	sbuf_init(&err, 256);
	ad = auth_dkim_begin(servers, &err);
	ck_assert_ptr_nonnull(ad);
	for (off = 0; off < slen; off += 7)
		ck_assert_int_eq(auth_dkim_feed(ad, signed_msg + off,
		                     slen - off < 7 ? slen - off : 7),
		    0);
	ck_assert_uint_eq(auth_dkim_end(ad, &r), 1);
	ck_assert_int_eq(r.sigs[0].result, AUTH_DKIM_PASS);
	auth_dkim_free(ad);
	sbuf_release(&err);
	free(signed_msg);
	free(msg);
}
END_TEST

/*
 * One library handle per thread: messages in a row reuse it, each counts
 * its own key lookups; a message that begins with other resolvers while
 * the thread's handle is in use gets one of its own; a worker thread's
 * handle goes when the thread ends.
 */
static void *
dkim_thread_main(void *arg)
{
	struct auth_dkim_result *r = arg;
	char *msg, *signed_msg;
	size_t len, slen;

	msg = make_message(&len);
	signed_msg = sign_message(msg, len, "sel", "example.test",
	    "relaxed/relaxed", &slen);
	(void)auth_dkim_verify(servers, signed_msg, slen, &r[0]);
	(void)auth_dkim_verify(servers, signed_msg, slen, &r[1]);
	free(signed_msg);
	free(msg);
	return NULL; /* the key's destructor closes the handle */
}

START_TEST(test_dkim_thread_handle)
{
	struct auth_dkim_result r[2], ra, rb;
	struct auth_dkim *a, *b;
	struct sbuf err;
	char *msg, *signed_msg;
	size_t len, slen, i;
	pthread_t t;

	msg = make_message(&len);
	signed_msg = sign_message(msg, len, "sel", "example.test",
	    "relaxed/relaxed", &slen);
	for (i = 0; i < 3; i++) {
		ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen,
		                      &r[0]),
		    1);
		ck_assert_int_eq(r[0].sigs[0].result, AUTH_DKIM_PASS);
		ck_assert_int_eq(r[0].dns_queries, 1);
	}

	/* Interleaved, the second with resolvers that do not answer. */
	sbuf_init(&err, 256);
	a = auth_dkim_begin(servers, &err);
	b = auth_dkim_begin("127.0.0.1:9", &err);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(auth_dkim_feed(b, signed_msg, slen), 0);
	ck_assert_int_eq(auth_dkim_feed(a, signed_msg, slen), 0);
	ck_assert_uint_eq(auth_dkim_end(a, &ra), 1);
	ck_assert_uint_eq(auth_dkim_end(b, &rb), 1);
	ck_assert_int_eq(ra.sigs[0].result, AUTH_DKIM_PASS);
	ck_assert_int_eq(ra.dns_queries, 1);
	ck_assert_int_eq(rb.sigs[0].result, AUTH_DKIM_TEMPERROR);
	ck_assert_int_eq(rb.dns_queries, 1);
	auth_dkim_free(b);
	auth_dkim_free(a);
	sbuf_release(&err);

	/* The thread's handle still verifies after that. */
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &ra), 1);
	ck_assert_int_eq(ra.sigs[0].result, AUTH_DKIM_PASS);

	ck_assert_int_eq(pthread_create(&t, NULL, dkim_thread_main, r), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(r[0].sigs[0].result, AUTH_DKIM_PASS);
	ck_assert_int_eq(r[1].sigs[0].result, AUTH_DKIM_PASS);
	ck_assert_int_eq(r[1].dns_queries, 1);
	auth_dkim_thread_done();
	free(signed_msg);
	free(msg);
}
END_TEST

START_TEST(test_dkim_fail_tampered)
{
	struct auth_dkim_result r;
	char *msg, *signed_msg, *p;
	size_t len, slen;

	msg = make_message(&len);
	signed_msg = sign_message(msg, len, "sel", "example.test",
	    "relaxed/relaxed", &slen);
	p = strstr(signed_msg, "aus K");
	ck_assert_ptr_nonnull(p);
	p[0] = 'A'; /* one body byte */
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &r), 1);
	ck_assert_int_eq(r.sigs[0].result, AUTH_DKIM_FAIL);
	ck_assert_str_eq(r.sigs[0].comment, "body hash did not verify");

	/* a signed header changed: the signature itself fails */
	free(signed_msg);
	signed_msg = sign_message(msg, len, "sel", "example.test",
	    "simple/simple", &slen);
	p = strstr(signed_msg, "To: bob@");
	ck_assert_ptr_nonnull(p);
	p[4] = 'r';
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &r), 1);
	ck_assert_int_eq(r.sigs[0].result, AUTH_DKIM_FAIL);
	free(signed_msg);
	free(msg);
}
END_TEST

START_TEST(test_dkim_nokey_servfail_unsigned)
{
	struct auth_dkim_result r;
	char *msg, *signed_msg, *twice;
	size_t len, slen, tlen;

	msg = make_message(&len);
	/* unknown selector: NXDOMAIN for the key -> permerror (no key) */
	signed_msg = sign_message(msg, len, "nosuch", "example.test",
	    "relaxed/relaxed", &slen);
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &r), 1);
	ck_assert_msg(r.sigs[0].result == AUTH_DKIM_PERMERROR, "%s %s",
	    auth_dkim_res_str(r.sigs[0].result), r.sigs[0].comment);
	ck_assert_str_eq(r.sigs[0].selector, "nosuch");

	/* two signatures: the unknown one and a good one, both reported */
	twice = sign_message(signed_msg, slen, "sel", "example.test",
	    "relaxed/relaxed", &tlen);
	ck_assert_uint_eq(auth_dkim_verify(servers, twice, tlen, &r), 2);
	ck_assert_int_eq(r.nfound, 2);
	ck_assert_int_eq(r.sigs[0].result + r.sigs[1].result,
	    AUTH_DKIM_PASS + AUTH_DKIM_PERMERROR);
	free(twice);
	free(signed_msg);

	/* key lookup SERVFAILs -> temperror */
	signed_msg = sign_message(msg, len, "sel", "tf.test", "relaxed/relaxed",
	    &slen);
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &r), 1);
	ck_assert_msg(r.sigs[0].result == AUTH_DKIM_TEMPERROR, "%s %s",
	    auth_dkim_res_str(r.sigs[0].result), r.sigs[0].comment);
	free(signed_msg);

	/* unsigned -> no signatures, dkim=none */
	ck_assert_uint_eq(auth_dkim_verify(servers, msg, len, &r), 0);
	ck_assert_int_eq(r.msg_result, AUTH_DKIM_NONE);
	ck_assert_str_eq(r.error, "");
	free(msg);
}
END_TEST

START_TEST(test_dkim_auth_results)
{
	struct auth_spf_result spf;
	struct auth_dkim_result r;
	struct sbuf ar, want;
	char *msg, *signed_msg;
	size_t len, slen;

	msg = make_message(&len);
	signed_msg = sign_message(msg, len, "sel", "example.test",
	    "relaxed/relaxed", &slen);
	ck_assert_uint_eq(auth_dkim_verify(servers, signed_msg, slen, &r), 1);
	ck_assert_int_eq(auth_spf_check(servers, RECEIVER, "192.0.2.10",
	                     "mail.pass.test", "alice@pass.test", &spf),
	    AUTH_SPF_PASS);
	spf.comment[0] = '\0'; /* keep the expected line short */
	sbuf_init(&ar, 4096);
	sbuf_init(&want, 4096);
	ck_assert_int_eq(auth_results_format(&ar, RECEIVER, &spf, &r), 0);
	r.sigs[0].b[8] = '\0';
	/* RFC 2045 token: '/' and '=' need quotes, '+' does not. */
	(void)sbuf_printf(&want,
	    "Authentication-Results: mx.splitmx.test; spf=pass smtp.mailfrom=pass.test;\r\n"
	    "\tdkim=pass header.d=example.test header.s=sel header.b=%s%s%s\r\n",
	    strpbrk(r.sigs[0].b, "/=") ? "\"" : "", r.sigs[0].b,
	    strpbrk(r.sigs[0].b, "/=") ? "\"" : "");
	ck_assert_str_eq(ar.data, want.data);
	assert_folded(ar.data);

	/* nothing ran */
	sbuf_reset(&ar);
	ck_assert_int_eq(auth_results_format(&ar, RECEIVER, NULL, NULL), 0);
	ck_assert_str_eq(ar.data,
	    "Authentication-Results: mx.splitmx.test; none\r\n");

	/* unsigned message: dkim=none */
	ck_assert_uint_eq(auth_dkim_verify(servers, msg, len, &r), 0);
	sbuf_reset(&ar);
	ck_assert_int_eq(auth_results_format(&ar, RECEIVER, &spf, &r), 0);
	ck_assert_str_eq(ar.data,
	    "Authentication-Results: mx.splitmx.test; spf=pass smtp.mailfrom=pass.test;\r\n"
	    "\tdkim=none\r\n");
	sbuf_release(&want);
	sbuf_release(&ar);
	free(signed_msg);
	free(msg);
}
END_TEST

/* ---- pure helpers ---- */

START_TEST(test_find_ours)
{
	static const char hdr[] =
	    "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "Authentication-Results: mx.splitmx.test; spf=pass\r\n"
	    "\tsmtp.mailfrom=forged.test\r\n"
	    "Authentication-Results: other.test; dkim=pass\r\n"
	    "authentication-results : (c) \"MX.SPLITMX.TEST\" 1; none\r\n"
	    "Authentication-Results-X: mx.splitmx.test; none\r\n"
	    "Subject: Authentication-Results: mx.splitmx.test;\r\n"
	    "\r\n"
	    "Authentication-Results: mx.splitmx.test; in the body\r\n";
	struct auth_results_range rr[4];
	size_t n, off1, off2;

	n = auth_results_find_ours(hdr, sizeof(hdr) - 1, RECEIVER, rr, 4);
	ck_assert_uint_eq(n, 2);
	off1 = (size_t)(strstr(hdr, "Authentication-Results: mx") - hdr);
	off2 = (size_t)(strstr(hdr, "authentication-results :") - hdr);
	ck_assert_uint_eq(rr[0].off, off1);
	ck_assert_uint_eq(rr[0].len,
	    strlen(
	        "Authentication-Results: "
	        "mx.splitmx.test; spf=pass\r\n\tsmtp.mailfrom=forged.test\r\n"));
	ck_assert_uint_eq(rr[1].off, off2);
	ck_assert_uint_eq(rr[1].len,
	    strlen("authentication-results : (c) "
	           "\"MX.SPLITMX.TEST\" 1; none\r\n"));
	/* max smaller than the count: count still complete */
	ck_assert_uint_eq(auth_results_find_ours(hdr, sizeof(hdr) - 1, RECEIVER,
	                      rr, 1),
	    2);
	ck_assert_uint_eq(auth_results_find_ours(hdr, sizeof(hdr) - 1,
	                      "nobody.test", rr, 4),
	    0);
}
END_TEST

START_TEST(test_value_and_fold)
{
	struct sbuf sb;
	char line[200];

	sbuf_init(&sb, 1024);
	ck_assert_int_eq(header_fmt_append_value(&sb, "example.test"), 0);
	ck_assert_str_eq(sb.data, "example.test");
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_append_value(&sb, "a b\"c\\\r\n\x80"), 0);
	ck_assert_str_eq(sb.data, "\"a b\\\"c\\\\\"");
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_append_comment(&sb, "x(y)\\z\"\r\n"), 0);
	ck_assert_str_eq(sb.data, "x\\(y\\)\\\\z");

	/* a quoted string is never split; long words stay whole */
	sbuf_reset(&sb);
	memset(line, 'w', sizeof(line));
	(void)snprintf(line, sizeof(line), "X-Test: a \"%s\" b",
	    "q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q q");
	ck_assert_int_eq(header_fmt_fold(&sb, line, strlen(line)), 0);
	ck_assert_str_eq(sb.data,
	    "X-Test: a\r\n\t\"q q q q q q q q q q q q q q "
	    "q q q q q q q q q q q q q q q q q q q q q q q\" b\r\n");
	sbuf_release(&sb);
}
END_TEST

static Suite *
auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("dnsmasq");
	TCase *tp = tcase_create("pure");

	tcase_add_unchecked_fixture(tc, peers_start, peers_stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_dns_sync_statuses);
	tcase_add_test(tc, test_dns_sync_timeout);
	tcase_add_loop_test(tc, test_spf_table, 0,
	    (int)(sizeof(spf_cases) / sizeof(spf_cases[0])));
	tcase_add_test(tc, test_spf_headers);
	tcase_add_loop_test(tc, test_dkim_pass, 0,
	    (int)(sizeof(canons) / sizeof(canons[0])));
	tcase_add_test(tc, test_dkim_fail_tampered);
	tcase_add_test(tc, test_dkim_thread_handle);
	tcase_add_test(tc, test_dkim_nokey_servfail_unsigned);
	tcase_add_test(tc, test_dkim_auth_results);
	suite_add_tcase(s, tc);
	tcase_add_test(tp, test_find_ours);
	tcase_add_test(tp, test_value_and_fold);
	suite_add_tcase(s, tp);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
