/*
 * check_dns.c - unit tests for dns_ against a real dnsmasq on loopback.
 *
 * The unchecked fixture starts dnsmasq (authoritative for *.test from
 * command-line records) and a tiny UDP responder that answers SERVFAIL,
 * which dnsmasq forwards fail.test to; both are stopped by PID. Each test
 * gets its own event_base and channel and runs the loop with a deadline.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "testpeer.h"
#include "dns.h"
#include "sbuf.h"

#define MAXRES 16

static char tdir[64];
static pid_t dnsmasq_pid = -1, servfail_pid = -1;
static int dns_port;
static char servers[64];

static struct event_base *base;
static struct dns *dns;

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

static void
stop(pid_t *pid)
{
	testpeer_stop(*pid);
	*pid = -1;
}

static void
wait_tcp(int port)
{
	testpeer_wait_tcp(port);
}

/* Answers every query with SERVFAIL (dnsmasq forwards fail.test here). */
static pid_t
start_servfail(int port)
{
	return testpeer_servfail(port);
}

static void
peers_start(void)
{
	char portarg[32], sfarg[64], logf[128];
	int sfport;

	(void)snprintf(tdir, sizeof(tdir), "/tmp/check_dns.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	sfport = free_port(SOCK_DGRAM);
	servfail_pid = start_servfail(sfport);
	dns_port = free_port(SOCK_STREAM);
	(void)snprintf(portarg, sizeof(portarg), "--port=%d", dns_port);
	(void)snprintf(sfarg, sizeof(sfarg), "--server=/fail.test/127.0.0.1#%d",
	    sfport);
	(void)snprintf(logf, sizeof(logf), "%s/dnsmasq.log", tdir);
	{
		const char *const argv[] = {
			"dnsmasq",
			"-k",
			"--conf-file=/dev/null",
			"--no-resolv",
			"--no-hosts",
			portarg,
			"--listen-address=127.0.0.1",
			"--bind-interfaces",
			"--pid-file=",
			"--log-facility=-",
			"--local=/test/",
			sfarg,
			"--host-record=mail.mx.test,127.0.0.1",
			"--mx-host=mx.test,mail.mx.test,10",
			"--host-record=a.pref.test,127.0.0.2",
			"--host-record=b.pref.test,127.0.0.3",
			"--host-record=c.pref.test,127.0.0.4",
			"--mx-host=pref.test,c.pref.test,30",
			"--mx-host=pref.test,a.pref.test,10",
			"--mx-host=pref.test,b.pref.test,20",
			"--host-record=e1.eq.test,127.0.1.1",
			"--host-record=e2.eq.test,127.0.1.2",
			"--host-record=e3.eq.test,127.0.1.3",
			"--mx-host=eq.test,e1.eq.test,10",
			"--mx-host=eq.test,e2.eq.test,10",
			"--mx-host=eq.test,e3.eq.test,10",
			"--host-record=implicit.test,127.0.0.5",
			"--host-record=dual.test,127.0.0.6,::1",
			"--mx-host=nullmx.test,.,0",
			"--mx-host=multi.test,gone.multi.test,5",
			"--mx-host=multi.test,mail.mx.test,20",
			"--mx-host=allnx.test,gone1.allnx.test,10",
			"--mx-host=allnx.test,gone2.allnx.test,20",
			"--mx-host=mxfail.test,h.fail.test,10",
			"--txt-record=txtonly.test,hello",
			"--txt-record=noaddr.txtonly.test,hello",
			"--mx-host=noaddr.test,noaddr.txtonly.test,10",
			NULL,
		};
		dnsmasq_pid = spawn(argv, logf);
	}
	wait_tcp(dns_port);
	(void)snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns_port);
}

static void
peers_stop(void)
{
	char cmd[128];

	stop(&dnsmasq_pid);
	stop(&servfail_pid);
	(void)snprintf(cmd, sizeof(cmd), "rm -rf %s", tdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tdir);
}

/* ---- per test ---- */

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
}

static void
teardown(void)
{
	dns_free(dns);
	dns = NULL;
	event_base_free(base);
	base = NULL;
}

struct res {
	int calls;
	bool in_call; /* set while dns_lookup_* runs */
	bool sync;    /* callback ran inside the call */
	enum dns_status status;
	char reason[512];
	struct dns_addr addrs[MAXRES];
	size_t naddrs;
	/* a lookup to start from inside the callback */
	bool chain;
	struct res *chained;
};

static void
res_cb(void *arg, enum dns_status status, const char *reason,
    const struct dns_addr *addrs, size_t naddrs)
{
	struct res *r = arg;
	size_t i;

	r->calls++;
	if (r->in_call)
		r->sync = true;
	r->status = status;
	(void)snprintf(r->reason, sizeof(r->reason), "%s",
	    reason != NULL ? reason : "");
	r->naddrs = naddrs < MAXRES ? naddrs : MAXRES;
	for (i = 0; i < r->naddrs; i++)
		r->addrs[i] = addrs[i];
	if (r->chain && r->chained != NULL)
		dns_lookup_mx(dns, "mx.test", "25", res_cb, r->chained);
}

static void
run_until(int *calls, int want)
{
	time_t deadline = time(NULL) + 15;

	while (*calls < want) {
		ck_assert_msg(time(NULL) < deadline, "DNS answer overdue");
		event_base_loop(base, EVLOOP_ONCE);
	}
}

static void
lookup_mx(struct res *r, const char *domain, const char *port)
{
	memset(r, 0, sizeof(*r));
	r->in_call = true;
	dns_lookup_mx(dns, domain, port, res_cb, r);
	r->in_call = false;
	run_until(&r->calls, 1);
	ck_assert_int_eq(r->calls, 1);
	ck_assert(!r->sync);
}

static void
lookup_host(struct res *r, const char *host, const char *port)
{
	memset(r, 0, sizeof(*r));
	r->in_call = true;
	dns_lookup_host(dns, host, port, res_cb, r);
	r->in_call = false;
	run_until(&r->calls, 1);
	ck_assert_int_eq(r->calls, 1);
	ck_assert(!r->sync);
}

static unsigned
addr_port(const struct dns_addr *a)
{
	if (a->sa.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
}

/* ---- tests ---- */

START_TEST(test_mx_basic)
{
	struct res r;

	lookup_mx(&r, "mx.test", "2525");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_uint_eq(r.naddrs, 1);
	ck_assert_str_eq(r.addrs[0].text, "127.0.0.1");
	ck_assert_str_eq(r.addrs[0].host, "mail.mx.test");
	ck_assert_uint_eq(r.addrs[0].preference, 10);
	ck_assert_uint_eq(addr_port(&r.addrs[0]), 2525);
	ck_assert_int_eq(r.addrs[0].sa.ss_family, AF_INET);
	ck_assert_uint_eq(r.addrs[0].salen, sizeof(struct sockaddr_in));
	/* A trailing dot is the same name. */
	lookup_mx(&r, "mx.test.", "25");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_str_eq(r.addrs[0].host, "mail.mx.test");
}
END_TEST

START_TEST(test_mx_order)
{
	struct res r;

	lookup_mx(&r, "pref.test", "25");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_uint_eq(r.naddrs, 3);
	ck_assert_str_eq(r.addrs[0].host, "a.pref.test");
	ck_assert_str_eq(r.addrs[0].text, "127.0.0.2");
	ck_assert_str_eq(r.addrs[1].host, "b.pref.test");
	ck_assert_str_eq(r.addrs[2].host, "c.pref.test");
	ck_assert_uint_eq(r.addrs[2].preference, 30);
}
END_TEST

START_TEST(test_mx_shuffle)
{
	struct res r;
	bool seen[3] = { false, false, false };
	int i;

	for (i = 0; i < 60; i++) {
		lookup_mx(&r, "eq.test", "25");
		ck_assert_int_eq(r.status, DNS_OK);
		ck_assert_uint_eq(r.naddrs, 3);
		ck_assert(strncmp(r.addrs[0].host, "e", 1) == 0);
		seen[r.addrs[0].host[1] - '1'] = true;
	}
	/* Each of three hosts comes first about 20 times in 60. */
	ck_assert(seen[0] && seen[1] && seen[2]);
}
END_TEST

START_TEST(test_mx_implicit)
{
	struct res r;

	lookup_mx(&r, "implicit.test", "25");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_uint_eq(r.naddrs, 1);
	ck_assert_str_eq(r.addrs[0].text, "127.0.0.5");
	ck_assert_str_eq(r.addrs[0].host, "implicit.test");
	ck_assert_uint_eq(r.addrs[0].preference, 0);
}
END_TEST

START_TEST(test_mx_implicit_nodata)
{
	struct res r;

	lookup_mx(&r, "txtonly.test", "25");
	ck_assert_int_eq(r.status, DNS_NODATA);
	ck_assert_uint_eq(r.naddrs, 0);
	ck_assert_ptr_nonnull(strstr(r.reason, "txtonly.test"));
}
END_TEST

START_TEST(test_mx_nxdomain)
{
	struct res r;

	lookup_mx(&r, "nx.test", "25");
	ck_assert_int_eq(r.status, DNS_NXDOMAIN);
	ck_assert_ptr_nonnull(strstr(r.reason, "nx.test"));
}
END_TEST

START_TEST(test_mx_nullmx)
{
	struct res r;

	lookup_mx(&r, "nullmx.test", "25");
	ck_assert_int_eq(r.status, DNS_NULLMX);
	ck_assert_ptr_nonnull(strstr(r.reason, "null MX"));
}
END_TEST

START_TEST(test_mx_servfail)
{
	struct res r;

	lookup_mx(&r, "fail.test", "25");
	ck_assert_int_eq(r.status, DNS_TEMPFAIL);
	ck_assert_msg(strstr(r.reason, "fail.test") != NULL, "%s", r.reason);
}
END_TEST

START_TEST(test_mx_refused)
{
	struct res r;

	/* Outside *.test dnsmasq has no upstream and answers REFUSED. */
	lookup_mx(&r, "example.org", "25");
	ck_assert_int_eq(r.status, DNS_TEMPFAIL);
}
END_TEST

START_TEST(test_mx_skip_bad_host)
{
	struct res r;

	lookup_mx(&r, "multi.test", "25");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_uint_eq(r.naddrs, 1);
	ck_assert_str_eq(r.addrs[0].host, "mail.mx.test");
	ck_assert_uint_eq(r.addrs[0].preference, 20);
}
END_TEST

START_TEST(test_mx_all_nxdomain)
{
	struct res r;

	lookup_mx(&r, "allnx.test", "25");
	ck_assert_int_eq(r.status, DNS_NXDOMAIN);
}
END_TEST

START_TEST(test_mx_host_tempfail)
{
	struct res r;

	lookup_mx(&r, "mxfail.test", "25");
	ck_assert_int_eq(r.status, DNS_TEMPFAIL);
	ck_assert_msg(strstr(r.reason, "h.fail.test") != NULL, "%s", r.reason);
}
END_TEST

START_TEST(test_mx_host_noaddr)
{
	struct res r;

	/* The MX host exists but has no address: may be fixed, retry. */
	lookup_mx(&r, "noaddr.test", "25");
	ck_assert_int_eq(r.status, DNS_TEMPFAIL);
}
END_TEST

START_TEST(test_host_dual)
{
	struct res r;

	lookup_host(&r, "dual.test", "587");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_uint_eq(r.naddrs, 2);
	ck_assert_int_eq(r.addrs[0].sa.ss_family, AF_INET);
	ck_assert_str_eq(r.addrs[0].text, "127.0.0.6");
	ck_assert_int_eq(r.addrs[1].sa.ss_family, AF_INET6);
	ck_assert_str_eq(r.addrs[1].text, "::1");
	ck_assert_uint_eq(addr_port(&r.addrs[1]), 587);
	ck_assert_uint_eq(r.addrs[1].salen, sizeof(struct sockaddr_in6));
	ck_assert_str_eq(r.addrs[1].host, "dual.test");
}
END_TEST

START_TEST(test_host_errors)
{
	struct res r;

	lookup_host(&r, "nx.test", "25");
	ck_assert_int_eq(r.status, DNS_NXDOMAIN);
	lookup_host(&r, "txtonly.test", "25");
	ck_assert_int_eq(r.status, DNS_NODATA);
	lookup_host(&r, "h.fail.test", "25");
	ck_assert_int_eq(r.status, DNS_TEMPFAIL);
	lookup_host(&r, "mail.mx.test", "99999");
	ck_assert_int_eq(r.status, DNS_TEMPFAIL);
	ck_assert_ptr_nonnull(strstr(r.reason, "port"));
	lookup_host(&r, "", "25");
	ck_assert_int_ne(r.status, DNS_OK);
	lookup_host(&r, "[not-an-ip]", "25");
	ck_assert_int_eq(r.status, DNS_NXDOMAIN);
}
END_TEST

static const struct {
	const char *in;
	int family;
	const char *text;
} literals[] = {
	{ "127.0.0.1", AF_INET, "127.0.0.1" },
	{ "[192.0.2.7]", AF_INET, "192.0.2.7" },
	{ "::1", AF_INET6, "::1" },
	{ "[::1]", AF_INET6, "::1" },
	{ "[IPv6:2001:db8::5]", AF_INET6, "2001:db8::5" },
};

START_TEST(test_host_literal)
{
	struct res r;

	lookup_host(&r, literals[_i].in, "25");
	ck_assert_int_eq(r.status, DNS_OK);
	ck_assert_uint_eq(r.naddrs, 1);
	ck_assert_int_eq(r.addrs[0].sa.ss_family, literals[_i].family);
	ck_assert_str_eq(r.addrs[0].text, literals[_i].text);
	ck_assert_uint_eq(addr_port(&r.addrs[0]), 25);
	/* The same through the MX path: an address literal domain. */
	if (literals[_i].in[0] == '[') {
		lookup_mx(&r, literals[_i].in, "26");
		ck_assert_int_eq(r.status, DNS_OK);
		ck_assert_str_eq(r.addrs[0].text, literals[_i].text);
		ck_assert_uint_eq(addr_port(&r.addrs[0]), 26);
	}
}
END_TEST

START_TEST(test_cancel)
{
	struct res r[4];
	int i, total = 0;

	memset(r, 0, sizeof(r));
	dns_lookup_mx(dns, "mx.test", "25", res_cb, &r[0]);
	dns_lookup_host(dns, "dual.test", "25", res_cb, &r[1]);
	dns_lookup_host(dns, "127.0.0.1", "25", res_cb, &r[2]); /* deferred */
	dns_lookup_mx(dns, "pref.test", "25", res_cb, &r[3]);
	dns_free(dns);
	dns = NULL;
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].status, DNS_CANCELLED);
		total += r[i].calls;
	}
	/* Nothing is left to run afterwards. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(r[i].calls, 1);
	ck_assert_int_eq(total, 4);
}
END_TEST

START_TEST(test_cancel_chained)
{
	struct res a, b;

	/* A callback that starts a new lookup while the channel dies. */
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.chain = true;
	a.chained = &b;
	dns_lookup_mx(dns, "mx.test", "25", res_cb, &a);
	dns_free(dns);
	dns = NULL;
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(a.status, DNS_CANCELLED);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_int_eq(b.status, DNS_CANCELLED);
}
END_TEST

START_TEST(test_chain_from_callback)
{
	struct res a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.chain = true;
	a.chained = &b;
	dns_lookup_host(dns, "dual.test", "25", res_cb, &a);
	run_until(&b.calls, 1);
	ck_assert_int_eq(a.status, DNS_OK);
	ck_assert_int_eq(b.status, DNS_OK);
	ck_assert_str_eq(b.addrs[0].host, "mail.mx.test");
}
END_TEST

START_TEST(test_many_parallel)
{
	struct res r[40];
	int i, calls = 0;

	memset(r, 0, sizeof(r));
	for (i = 0; i < 40; i++)
		dns_lookup_mx(dns, i % 2 ? "pref.test" : "mx.test", "25",
		    res_cb, &r[i]);
	for (;;) {
		calls = 0;
		for (i = 0; i < 40; i++)
			calls += r[i].calls;
		if (calls == 40)
			break;
		event_base_loop(base, EVLOOP_ONCE);
	}
	for (i = 0; i < 40; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].status, DNS_OK);
		ck_assert_uint_eq(r[i].naddrs, i % 2 ? 3 : 1);
	}
}
END_TEST

START_TEST(test_bad_servers)
{
	struct sbuf err;
	struct dns *d;

	sbuf_init(&err, 256);
	d = dns_new(base, "not an address", &err);
	ck_assert_ptr_null(d);
	ck_assert_uint_gt(err.len, 0);
	sbuf_release(&err);
}
END_TEST

static Suite *
dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = tcase_create("dnsmasq");

	tcase_add_unchecked_fixture(tc, peers_start, peers_stop);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_mx_basic);
	tcase_add_test(tc, test_mx_order);
	tcase_add_test(tc, test_mx_shuffle);
	tcase_add_test(tc, test_mx_implicit);
	tcase_add_test(tc, test_mx_implicit_nodata);
	tcase_add_test(tc, test_mx_nxdomain);
	tcase_add_test(tc, test_mx_nullmx);
	tcase_add_test(tc, test_mx_servfail);
	tcase_add_test(tc, test_mx_refused);
	tcase_add_test(tc, test_mx_skip_bad_host);
	tcase_add_test(tc, test_mx_all_nxdomain);
	tcase_add_test(tc, test_mx_host_tempfail);
	tcase_add_test(tc, test_mx_host_noaddr);
	tcase_add_test(tc, test_host_dual);
	tcase_add_test(tc, test_host_errors);
	tcase_add_loop_test(tc, test_host_literal, 0,
	    (int)(sizeof(literals) / sizeof(literals[0])));
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_cancel_chained);
	tcase_add_test(tc, test_chain_from_callback);
	tcase_add_test(tc, test_many_parallel);
	tcase_add_test(tc, test_bad_servers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dns_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
