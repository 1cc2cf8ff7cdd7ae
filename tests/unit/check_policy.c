/*
 * check_policy.c - unit tests for the policy chain (policy_*).
 *
 * Synthetic stages that answer at once or later prove the order, that the
 * first verdict other than ACCEPT wins, asynchronous completion, cancel
 * and the misuse panics. The built-in RCPT stages (SRS, recipient lists)
 * run against a parsed config: their replies and log lines are the ones
 * clients and postmasters have always seen. No network, no event loop.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>

#include "auth_srs.h"
#include "conf.h"
#include "policy.h"
#include "sbuf.h"
#include "smtp_proto.h"

enum tmode {
	T_NOW,   /* answers inside its check */
	T_LATER, /* keeps req; the test answers it */
};

struct tstage {
	const char *name;
	enum tmode mode;
	enum policy_action action;
	unsigned code;
	const char *enh;
	struct policy_req *req; /* T_LATER: pending */
	int cancelled;
};

static char calls[256]; /* stage names in call order */
static int ndone;
static struct policy_verdict last;

static void
tcheck(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	struct tstage *t = arg;
	size_t n = strlen(calls);

	(void)ctx;
	(void)snprintf(calls + n, sizeof(calls) - n, "%s", t->name);
	if (t->mode == T_LATER) {
		t->req = req;
		return;
	}
	if (t->action == POLICY_ACCEPT) {
		policy_accept(req);
		return;
	}
	policy_set_why(req, "why %s", t->name);
	policy_answer(req, t->action, t->code, t->enh, "text %s", t->name);
}

static void
tcancel(void *arg)
{
	struct tstage *t = arg;

	t->cancelled++;
	t->req = NULL;
}

static void
tcheck_later(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	tcheck(req, ctx, arg);
	policy_set_cancel(req, tcancel, arg);
}

static void
done_cb(void *arg, const struct policy_verdict *v)
{
	(void)arg;
	ndone++;
	last = *v;
}

static void
add(struct policy *p, struct tstage *t, unsigned points)
{
	struct policy_stage ps = { t->name, points,
		t->mode == T_LATER ? tcheck_later : tcheck, t, NULL };

	policy_add(p, &ps);
}

static void
reset(void)
{
	calls[0] = '\0';
	ndone = 0;
	memset(&last, 0, sizeof(last));
}

START_TEST(test_empty)
{
	struct policy *p = policy_new();
	struct policy_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	reset();
	ck_assert_ptr_null(policy_run(p, POLICY_RCPT, &ctx, done_cb, NULL));
	ck_assert_int_eq(ndone, 1);
	ck_assert_int_eq(last.action, POLICY_ACCEPT);
	ck_assert(!last.async);
	ck_assert_ptr_null(last.stage);
	/* No chain at all is an empty one. */
	ck_assert_ptr_null(
	    policy_run(NULL, POLICY_CONNECT, &ctx, done_cb, NULL));
	ck_assert_int_eq(ndone, 2);
	policy_free(p);
	policy_free(NULL);
	policy_cancel(NULL);
}
END_TEST

START_TEST(test_order_and_points)
{
	struct tstage a = { "a", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage b = { "b", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage c = { "c", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct policy *p = policy_new();
	struct policy_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	add(p, &a, POLICY_AT(POLICY_RCPT));
	add(p, &b, POLICY_AT(POLICY_MAIL));
	add(p, &c, POLICY_AT(POLICY_RCPT) | POLICY_AT(POLICY_DATA_END));
	reset();
	ck_assert_ptr_null(policy_run(p, POLICY_RCPT, &ctx, done_cb, NULL));
	ck_assert_str_eq(calls, "ac");
	ck_assert_int_eq(ndone, 1);
	ck_assert_int_eq(last.action, POLICY_ACCEPT);
	reset();
	(void)policy_run(p, POLICY_MAIL, &ctx, done_cb, NULL);
	ck_assert_str_eq(calls, "b");
	reset();
	(void)policy_run(p, POLICY_DATA_END, &ctx, done_cb, NULL);
	ck_assert_str_eq(calls, "c");
	reset();
	(void)policy_run(p, POLICY_HELO, &ctx, done_cb, NULL);
	ck_assert_str_eq(calls, "");
	ck_assert_int_eq(ndone, 1);
	policy_free(p);
}
END_TEST

/* Each verdict other than ACCEPT ends the run with its reply. */
static const struct {
	enum policy_action action;
	unsigned code;
	const char *enh;
} firsts[] = {
	{ POLICY_REJECT, 550, "5.7.1" },
	{ POLICY_TEMPFAIL, 451, "4.3.0" },
	{ POLICY_DISCARD, 0, NULL },
	{ POLICY_QUARANTINE, 0, NULL },
};

START_TEST(test_first_refusal_wins)
{
	struct tstage a = { "a", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage b = { "b", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage c = { "c", T_NOW, POLICY_REJECT, 554, "5.7.1", NULL, 0 };
	struct policy *p = policy_new();
	struct policy_ctx ctx;

	b.action = firsts[_i].action;
	b.code = firsts[_i].code;
	b.enh = firsts[_i].enh;
	memset(&ctx, 0, sizeof(ctx));
	add(p, &a, POLICY_AT(POLICY_RCPT));
	add(p, &b, POLICY_AT(POLICY_RCPT));
	add(p, &c, POLICY_AT(POLICY_RCPT));
	reset();
	ck_assert_ptr_null(policy_run(p, POLICY_RCPT, &ctx, done_cb, NULL));
	ck_assert_str_eq(calls, "ab");
	ck_assert_int_eq(ndone, 1);
	ck_assert_int_eq(last.action, firsts[_i].action);
	ck_assert_uint_eq(last.code, firsts[_i].code);
	ck_assert_str_eq(last.enh,
	    firsts[_i].enh != NULL ? firsts[_i].enh : "");
	ck_assert_str_eq(last.text, "text b");
	ck_assert_str_eq(last.why, "why b");
	ck_assert_str_eq(last.stage, "b");
	ck_assert(!last.async);
	policy_free(p);
}
END_TEST

START_TEST(test_async)
{
	struct tstage a = { "a", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage b = { "b", T_LATER, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage c = { "c", T_LATER, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage d = { "d", T_NOW, POLICY_TEMPFAIL, 450, "4.1.1", NULL,
		0 };
	struct policy *p = policy_new();
	struct policy_ctx ctx;
	struct policy_req *req;

	memset(&ctx, 0, sizeof(ctx));
	add(p, &a, POLICY_AT(POLICY_RCPT));
	add(p, &b, POLICY_AT(POLICY_RCPT));
	add(p, &c, POLICY_AT(POLICY_RCPT));
	add(p, &d, POLICY_AT(POLICY_RCPT));
	reset();
	req = policy_run(p, POLICY_RCPT, &ctx, done_cb, NULL);
	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_eq(b.req, req);
	ck_assert_str_eq(calls, "ab");
	ck_assert_int_eq(ndone, 0);
	/* b accepts later: c runs at once and waits in turn. */
	policy_accept(b.req);
	ck_assert_str_eq(calls, "abc");
	ck_assert_int_eq(ndone, 0);
	ck_assert_ptr_eq(c.req, req);
	/* c accepts: d refuses from inside, and that ends the run. */
	policy_accept(c.req);
	ck_assert_str_eq(calls, "abcd");
	ck_assert_int_eq(ndone, 1);
	ck_assert_int_eq(last.action, POLICY_TEMPFAIL);
	ck_assert_uint_eq(last.code, 450);
	ck_assert_str_eq(last.stage, "d");
	ck_assert(last.async);
	ck_assert_int_eq(b.cancelled + c.cancelled, 0);
	policy_free(p);
}
END_TEST

START_TEST(test_async_refusal)
{
	struct tstage a = { "a", T_LATER, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage b = { "b", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct policy *p = policy_new();
	struct policy_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	add(p, &a, POLICY_AT(POLICY_DATA_END));
	add(p, &b, POLICY_AT(POLICY_DATA_END));
	reset();
	ck_assert_ptr_nonnull(
	    policy_run(p, POLICY_DATA_END, &ctx, done_cb, NULL));
	policy_set_why(a.req, "reject: %s", "later");
	policy_answer(a.req, POLICY_REJECT, 550, "5.7.23", "SPF %s", "no");
	ck_assert_str_eq(calls, "a");
	ck_assert_int_eq(ndone, 1);
	ck_assert_int_eq(last.action, POLICY_REJECT);
	ck_assert_str_eq(last.text, "SPF no");
	ck_assert_str_eq(last.why, "reject: later");
	ck_assert(last.async);
	policy_free(p);
}
END_TEST

START_TEST(test_cancel)
{
	struct tstage a = { "a", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage b = { "b", T_LATER, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct tstage c = { "c", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct policy *p = policy_new();
	struct policy_ctx ctx;
	struct policy_req *req;

	memset(&ctx, 0, sizeof(ctx));
	add(p, &a, POLICY_AT(POLICY_RCPT));
	add(p, &b, POLICY_AT(POLICY_RCPT));
	add(p, &c, POLICY_AT(POLICY_RCPT));
	reset();
	req = policy_run(p, POLICY_RCPT, &ctx, done_cb, NULL);
	ck_assert_ptr_nonnull(req);
	policy_cancel(req);
	ck_assert_int_eq(b.cancelled, 1);
	ck_assert_ptr_null(b.req);
	ck_assert_str_eq(calls, "ab");
	ck_assert_int_eq(ndone, 0);
	policy_free(p);
}
END_TEST

/* The run is gone before its callback: the callback may start another. */
static struct policy *again_pol;
static int again_left;

static void
again_cb(void *arg, const struct policy_verdict *v)
{
	struct policy_ctx *ctx = arg;

	(void)v;
	ndone++;
	if (again_left-- > 0)
		ck_assert_ptr_null(
		    policy_run(again_pol, POLICY_MAIL, ctx, again_cb, ctx));
}

START_TEST(test_reentry)
{
	struct tstage a = { "a", T_NOW, POLICY_ACCEPT, 0, NULL, NULL, 0 };
	struct policy_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	again_pol = policy_new();
	add(again_pol, &a, POLICY_AT(POLICY_MAIL));
	again_left = 3;
	reset();
	ck_assert_ptr_null(
	    policy_run(again_pol, POLICY_MAIL, &ctx, again_cb, &ctx));
	ck_assert_int_eq(ndone, 4);
	ck_assert_str_eq(calls, "aaaa");
	policy_free(again_pol);
}
END_TEST

static struct policy *panic_pol;

static void
panic_setup(void)
{
	panic_pol = policy_new();
}

static void
panic_teardown(void)
{
	policy_free(panic_pol);
}

/* A REJECT needs a 5xx code: a 4xx one is a stage bug. */
START_TEST(test_panic_bad_code)
{
	struct tstage a = { "a", T_NOW, POLICY_REJECT, 450, "4.7.1", NULL, 0 };
	struct policy_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	add(panic_pol, &a, POLICY_AT(POLICY_RCPT));
	(void)policy_run(panic_pol, POLICY_RCPT, &ctx, done_cb, NULL);
}
END_TEST

static void
twice_check(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	policy_accept(req);
	policy_accept(req);
}

START_TEST(test_panic_twice)
{
	struct policy_stage ps = { "twice", POLICY_AT(POLICY_RCPT), twice_check,
		NULL, NULL };
	struct policy_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	policy_add(panic_pol, &ps);
	(void)policy_run(panic_pol, POLICY_RCPT, &ctx, done_cb, NULL);
}
END_TEST

/* The built-in RCPT stages against a parsed config. */

static const char rcpt_conf[] =
    "listen *:25\n"
    "srs_domain srs.mx.test\n"
    "domain example.com { targets legacy; recipients alice \"sales-*\" }\n"
    "domain example.org { targets legacy }\n"
    "target legacy { type smtp; host 10.0.0.5 }\n";

static struct conf *conf;
static struct auth_srs *srs;
static struct policy *pol;

static void
rcpt_setup(void)
{
	struct auth_srs_params sp;
	struct sbuf err;

	sbuf_init(&err, 4096);
	conf = conf_parse_buf(rcpt_conf, strlen(rcpt_conf), "p.conf", &err);
	ck_assert_msg(conf != NULL, "parse failed: %s", err.data);
	memset(&sp, 0, sizeof(sp));
	sp.secret = "0123456789abcdef0123";
	sp.secret_len = 20;
	sp.domain = "srs.mx.test";
	srs = auth_srs_new(&sp, &err);
	ck_assert_msg(srs != NULL, "auth_srs_new: %s", err.data);
	sbuf_release(&err);
	pol = policy_new();
	policy_add_srs(pol, conf, srs);
	policy_add_recipients(pol, conf);
	/* No domain here verifies: the stage never touches the prober. */
	policy_add_verify(pol, conf, NULL);
}

static void
rcpt_teardown(void)
{
	policy_free(pol);
	auth_srs_free(srs);
	conf_free(conf);
}

/* Runs the RCPT chain for rcpt_arg (what follows "RCPT TO:"). */
static void
run_rcpt(const char *rcpt_arg, struct policy_ctx *ctx,
    struct smtp_proto_mail *mail)
{
	struct smtp_proto_status st;
	static const char from[] = "<s@client.test>";

	memset(ctx, 0, sizeof(*ctx));
	ctx->sid = "s000001";
	ctx->client_addr = "192.0.2.1";
	ctx->client_name = "client.test";
	ctx->helo = "client.test";
	ck_assert_int_eq(smtp_proto_parse_mail(from, strlen(from), mail, &st),
	    0);
	ctx->mail = mail;
	ck_assert_int_eq(smtp_proto_parse_rcpt(rcpt_arg, strlen(rcpt_arg),
	                     false, &ctx->rcpt, &st),
	    0);
	reset();
	ck_assert_ptr_null(policy_run(pol, POLICY_RCPT, ctx, done_cb, NULL));
	ck_assert_int_eq(ndone, 1);
}

static const struct {
	const char *rcpt;
	enum policy_action action;
	unsigned code;
	const char *enh;
	const char *text;
	const char *why;
} rcases[] = {
	{ "<alice@example.com>", POLICY_ACCEPT, 0, "", "", "" },
	{ "<Sales-EU@example.com>", POLICY_ACCEPT, 0, "", "", "" },
	{ "<anyone@example.org>", POLICY_ACCEPT, 0, "", "", "" },
	{ "<postmaster>", POLICY_ACCEPT, 0, "", "", "" },
	{ "<PostMaster@example.com>", POLICY_ACCEPT, 0, "", "", "" },
	{ "<nobody@example.com>", POLICY_REJECT, 550, "5.1.1",
	    "<nobody@example.com>: Recipient address rejected: User unknown",
	    "reject: RCPT from client.test[192.0.2.1]: unknown user; "
	    "from=<s@client.test> to=<nobody@example.com>" },
	{ "<user@foreign.example>", POLICY_REJECT, 554, "5.7.1",
	    "<user@foreign.example>: Relay access denied",
	    "reject: RCPT from client.test[192.0.2.1]: relay denied; "
	    "from=<s@client.test> to=<user@foreign.example>" },
	{ "<user@[127.0.0.1]>", POLICY_REJECT, 554, "5.7.1",
	    "<user@[127.0.0.1]>: Relay access denied",
	    "reject: RCPT from client.test[192.0.2.1]: relay denied; "
	    "from=<s@client.test> to=<user@[127.0.0.1]>" },
	{ "<alice%foreign.example@example.com>", POLICY_REJECT, 554, "5.7.1",
	    "<alice%foreign.example@example.com>: Relay access denied "
	    "(routing characters in local part)",
	    "reject: RCPT from client.test[192.0.2.1]: routing characters in "
	    "local part; from=<s@client.test> "
	    "to=<alice%foreign.example@example.com>" },
	{ "<SRS0=AKeP=JW=sender.test=sender@srs.mx.test>", POLICY_REJECT, 550,
	    "5.7.1", NULL, NULL },
};

START_TEST(test_rcpt_table)
{
	struct smtp_proto_mail mail;
	struct policy_ctx ctx;

	run_rcpt(rcases[_i].rcpt, &ctx, &mail);
	ck_assert_int_eq(last.action, rcases[_i].action);
	ck_assert_uint_eq(last.code, rcases[_i].code);
	ck_assert_str_eq(last.enh, rcases[_i].enh);
	if (rcases[_i].text != NULL)
		ck_assert_str_eq(last.text, rcases[_i].text);
	if (rcases[_i].why != NULL)
		ck_assert_str_eq(last.why, rcases[_i].why);
	if (rcases[_i].action != POLICY_ACCEPT)
		ck_assert_ptr_nonnull(last.stage);
}
END_TEST

/* A genuine SRS bounce: reversed, and no relay check applies to it. */
START_TEST(test_rcpt_srs)
{
	struct smtp_proto_mail mail;
	struct policy_ctx ctx;
	char addr[AUTH_SRS_ADDR_BUFSIZE], arg[AUTH_SRS_ADDR_BUFSIZE + 2];

	ck_assert_int_eq(auth_srs_forward(srs, "someone@elsewhere.test",
	                     time(NULL), addr, sizeof(addr), NULL),
	    0);
	(void)snprintf(arg, sizeof(arg), "<%s>", addr);
	run_rcpt(arg, &ctx, &mail);
	ck_assert_int_eq(last.action, POLICY_ACCEPT);
	ck_assert_str_eq(ctx.rcpt.path.mailbox, "someone@elsewhere.test");
	ck_assert(ctx.rcpt_vouched);
}
END_TEST

static Suite *
policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc;

	tc = tcase_create("chain");
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_order_and_points);
	tcase_add_loop_test(tc, test_first_refusal_wins, 0,
	    sizeof(firsts) / sizeof(firsts[0]));
	tcase_add_test(tc, test_async);
	tcase_add_test(tc, test_async_refusal);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_reentry);
	suite_add_tcase(s, tc);

	tc = tcase_create("misuse");
	tcase_add_checked_fixture(tc, panic_setup, panic_teardown);
	tcase_add_test_raise_signal(tc, test_panic_bad_code, SIGABRT);
	tcase_add_test_raise_signal(tc, test_panic_twice, SIGABRT);
	suite_add_tcase(s, tc);

	tc = tcase_create("rcpt_stages");
	tcase_add_checked_fixture(tc, rcpt_setup, rcpt_teardown);
	tcase_add_loop_test(tc, test_rcpt_table, 0,
	    sizeof(rcases) / sizeof(rcases[0]));
	tcase_add_test(tc, test_rcpt_srs);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(policy_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
