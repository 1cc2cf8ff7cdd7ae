/*
 * check_router.c - unit tests for the router (router_*).
 *
 * One migration config, parsed by conf_parse_buf, and a table of
 * recipients with the rule that must decide and the hops (target and
 * address at that target) that must come out, in order. Hand-built
 * configs cover what the parser never produces (repeated targets, no
 * labels, bad indices).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "conf.h"
#include "router.h"
#include "sbuf.h"

static const char router_conf[] =
    "listen *:25\n"
    "domain example.com { targets legacy cloud }\n"
    "domain example.org { targets legacy }\n"
    "domain *.example.com { targets cloud }\n"
    "domain held.example\n"
    "target legacy { type smtp; host 10.0.0.5 }\n"
    "target cloud {\n"
    "\ttype smtp; host example-com.mail.protection.outlook.com\n"
    "\trewrite @example.com @example.mail.onmicrosoft.com\n"
    "\trewrite @sub.example.com @sub.onmicrosoft.example\n"
    "}\n"
    "target archive { type maildir; path /var/archive }\n"
    "target bounces { type smtp; mx * }\n"
    "wave wave1 { state dual; members dave@example.com ceo@example.com }\n"
    "wave wave2 {\n"
    "\tstate cloud\n"
    "\tmembers bob@example.com dave@example.com carol@sub.example.com\n"
    "\tmembers zoe@legacy-only.example.com\n"
    "}\n"
    "wave w3 {\n"
    "\ttargets archive legacy\n"
    "\tmembers bob@example.com \"\\\"q u\\\"@example.com\"\n"
    "\tmembers nobody@elsewhere.test\n"
    "}\n"
    "route \"shared-*@example.com\" archive legacy\n"
    "route ceo@example.com cloud archive\n"
    "route \"*@legacy-only.example.com\" legacy\n"
    "route \"[ab]ob-?@example.org\" archive\n";

static struct conf *conf;

static struct conf *
parse_conf(const char *text)
{
	struct sbuf err;
	struct conf *c;

	sbuf_init(&err, 4096);
	c = conf_parse_buf(text, strlen(text), "r.conf", &err);
	ck_assert_msg(c != NULL, "parse failed: %s", err.data);
	sbuf_release(&err);
	return c;
}

static void
setup(void)
{
	conf = parse_conf(router_conf);
}

static void
teardown(void)
{
	conf_free(conf);
	conf = NULL;
}

struct rcase {
	const char *mailbox;
	const char *why;
	size_t n;
	const char *target[3];
	const char *rcpt[3];
};

static const struct rcase cases[] = {
	/* Domain default sets, with the cloud target's rewrite. */
	{ "alice@example.com", "domain example.com", 2, { "legacy", "cloud" },
	    { "alice@example.com", "alice@example.mail.onmicrosoft.com" } },
	/* Matching ignores case; the address keeps the bytes received. */
	{ "ALICE@EXAMPLE.COM", "domain example.com", 2, { "legacy", "cloud" },
	    { "ALICE@EXAMPLE.COM", "ALICE@example.mail.onmicrosoft.com" } },
	{ "u@example.org", "domain example.org", 1, { "legacy" },
	    { "u@example.org" } },
	{ "U@Example.ORG", "domain example.org", 1, { "legacy" },
	    { "U@Example.ORG" } },
	/* "*.example.com" covers subdomains; rewrites match exactly. */
	{ "x@sub.example.com", "domain *.example.com", 1, { "cloud" },
	    { "x@sub.onmicrosoft.example" } },
	{ "x@Deep.Sub.Example.com", "domain *.example.com", 1, { "cloud" },
	    { "x@Deep.Sub.Example.com" } },
	/* Waves beat domains; the first wave in the file wins. */
	{ "dave@example.com", "wave wave1", 2, { "legacy", "cloud" },
	    { "dave@example.com", "dave@example.mail.onmicrosoft.com" } },
	{ "Dave@EXAMPLE.com", "wave wave1", 2, { "legacy", "cloud" },
	    { "Dave@EXAMPLE.com", "Dave@example.mail.onmicrosoft.com" } },
	{ "bob@example.com", "wave wave2", 1, { "cloud" },
	    { "bob@example.mail.onmicrosoft.com" } },
	{ "carol@sub.example.com", "wave wave2", 1, { "cloud" },
	    { "carol@sub.onmicrosoft.example" } },
	/* A quoted local part is kept as is, quotes and all. */
	{ "\"Q U\"@Example.com", "wave w3", 2, { "archive", "legacy" },
	    { "\"Q U\"@Example.com", "\"Q U\"@Example.com" } },
	{ "\"john doe\"@example.com", "domain example.com", 2,
	    { "legacy", "cloud" },
	    { "\"john doe\"@example.com",
	        "\"john doe\"@example.mail.onmicrosoft.com" } },
	/* The domain starts after the last '@'. */
	{ "\"a@b\"@example.org", "domain example.org", 1, { "legacy" },
	    { "\"a@b\"@example.org" } },
	{ "\"a@example.org\"@example.com", "domain example.com", 2,
	    { "legacy", "cloud" },
	    { "\"a@example.org\"@example.com",
	        "\"a@example.org\"@example.mail.onmicrosoft.com" } },
	/* Routes beat waves and domains; wildcards; first route wins. */
	{ "ceo@example.com", "route ceo@example.com", 2, { "cloud", "archive" },
	    { "ceo@example.mail.onmicrosoft.com", "ceo@example.com" } },
	{ "shared-hr@example.com", "route shared-*@example.com", 2,
	    { "archive", "legacy" },
	    { "shared-hr@example.com", "shared-hr@example.com" } },
	{ "Shared-HR@EXAMPLE.com", "route shared-*@example.com", 2,
	    { "archive", "legacy" },
	    { "Shared-HR@EXAMPLE.com", "Shared-HR@EXAMPLE.com" } },
	{ "shared-@example.com", "route shared-*@example.com", 2,
	    { "archive", "legacy" },
	    { "shared-@example.com", "shared-@example.com" } },
	{ "shared@example.com", "domain example.com", 2, { "legacy", "cloud" },
	    { "shared@example.com", "shared@example.mail.onmicrosoft.com" } },
	{ "zoe@legacy-only.example.com", "route *@legacy-only.example.com", 1,
	    { "legacy" }, { "zoe@legacy-only.example.com" } },
	{ "Bob-1@example.org", "route [ab]ob-?@example.org", 1, { "archive" },
	    { "Bob-1@example.org" } },
	{ "bob-12@example.org", "domain example.org", 1, { "legacy" },
	    { "bob-12@example.org" } },
	/* A wave member whose domain is not ours is still routed. */
	{ "nobody@elsewhere.test", "wave w3", 2, { "archive", "legacy" },
	    { "nobody@elsewhere.test", "nobody@elsewhere.test" } },
	/* Bare postmaster: the first configured domain. */
	{ "postmaster", "domain example.com", 2, { "legacy", "cloud" },
	    { "postmaster@example.com",
	        "postmaster@example.mail.onmicrosoft.com" } },
	{ "PostMaster", "domain example.com", 2, { "legacy", "cloud" },
	    { "PostMaster@example.com",
	        "PostMaster@example.mail.onmicrosoft.com" } },
	/* Our domain without targets: held, and the domain says why. */
	{ "u@held.example", "domain held.example", 0, { NULL }, { NULL } },
	{ "u@HELD.example", "domain held.example", 0, { NULL }, { NULL } },
	/* Not ours, no default_target: nothing. */
	{ "u@other.test", "none", 0, { NULL }, { NULL } },
	{ "u@example.com.evil", "none", 0, { NULL }, { NULL } },
	/* Not addresses. */
	{ "alice", "none", 0, { NULL }, { NULL } },
	{ "postmasters", "none", 0, { NULL }, { NULL } },
	{ "@example.com", "none", 0, { NULL }, { NULL } },
	{ "alice@", "none", 0, { NULL }, { NULL } },
	{ "", "none", 0, { NULL }, { NULL } },
};

START_TEST(test_table)
{
	const struct rcase *c = &cases[_i];
	struct router_hop out[ROUTER_MAX_HOPS];
	const char *why = NULL;
	size_t n, k;

	memset(out, 0x5a, sizeof(out));
	n = router_route(conf, c->mailbox, out, ROUTER_MAX_HOPS, &why);
	ck_assert_msg(why != NULL, "%s: no why", c->mailbox);
	ck_assert_msg(strcmp(why, c->why) == 0, "%s: why '%s', want '%s'",
	    c->mailbox, why, c->why);
	ck_assert_msg(n == c->n, "%s: %zu hops, want %zu", c->mailbox, n, c->n);
	for (k = 0; k < n; k++) {
		ck_assert_msg(out[k].target < conf->ntargets, "%s: hop %zu",
		    c->mailbox, k);
		ck_assert_msg(strcmp(conf->targets[out[k].target].name,
		                  c->target[k]) == 0,
		    "%s: hop %zu to %s, want %s", c->mailbox, k,
		    conf->targets[out[k].target].name, c->target[k]);
		ck_assert_msg(strcmp(out[k].rcpt, c->rcpt[k]) == 0,
		    "%s: hop %zu rcpt '%s', want '%s'", c->mailbox, k,
		    out[k].rcpt, c->rcpt[k]);
	}
	/* Pure: the same question gets the same answer. */
	ck_assert_uint_eq(router_route(conf, c->mailbox, out, ROUTER_MAX_HOPS,
	                      NULL),
	    c->n);
}
END_TEST

START_TEST(test_why_points_into_conf)
{
	struct router_hop out[ROUTER_MAX_HOPS];
	const char *why;

	(void)router_route(conf, "alice@example.com", out, ROUTER_MAX_HOPS,
	    &why);
	ck_assert_ptr_eq(why, conf->domains[0].label);
	(void)router_route(conf, "dave@example.com", out, ROUTER_MAX_HOPS,
	    &why);
	ck_assert_ptr_eq(why, conf->waves[0].label);
	(void)router_route(conf, "ceo@example.com", out, ROUTER_MAX_HOPS, &why);
	ck_assert_ptr_eq(why, conf->routes[1].label);
}
END_TEST

START_TEST(test_default_target)
{
	struct router_hop out[ROUTER_MAX_HOPS];
	struct sbuf text;
	struct conf *c;
	const char *why;

	sbuf_init(&text, 8192);
	ck_assert_int_eq(sbuf_append_str(&text, router_conf), 0);
	ck_assert_int_eq(sbuf_append_str(&text, "default_target bounces\n"), 0);
	c = parse_conf(text.data);
	ck_assert_uint_eq(router_route(c, "u@other.test", out, ROUTER_MAX_HOPS,
	                      &why),
	    1);
	ck_assert_str_eq(why, "default_target");
	ck_assert_str_eq(c->targets[out[0].target].name, "bounces");
	ck_assert_str_eq(out[0].rcpt, "u@other.test");
	/* Only for domains that are not ours: held mail stays held. */
	ck_assert_uint_eq(router_route(c, "u@held.example", out,
	                      ROUTER_MAX_HOPS, &why),
	    0);
	ck_assert_str_eq(why, "domain held.example");
	ck_assert_uint_eq(router_route(c, "alice@example.com", out,
	                      ROUTER_MAX_HOPS, &why),
	    2);
	ck_assert_str_eq(why, "domain example.com");
	/* Still nothing for what is not an address. */
	ck_assert_uint_eq(router_route(c, "alice", out, ROUTER_MAX_HOPS, &why),
	    0);
	ck_assert_str_eq(why, "none");
	conf_free(c);
	sbuf_release(&text);
}
END_TEST

START_TEST(test_postmaster_skips_wildcards)
{
	struct router_hop out[ROUTER_MAX_HOPS];
	struct conf *c;
	const char *why;

	c = parse_conf("listen *:25\n"
	               "target a { type maildir; path /a }\n"
	               "target b { type maildir; path /b }\n"
	               "domain *.example.net { targets a }\n"
	               "domain Example.ORG { targets b }\n");
	ck_assert_uint_eq(router_route(c, "postmaster", out, ROUTER_MAX_HOPS,
	                      &why),
	    1);
	ck_assert_str_eq(why, "domain example.org");
	ck_assert_str_eq(out[0].rcpt, "postmaster@example.org");
	conf_free(c);

	/* Only wildcard domains: nowhere to send it. */
	c = parse_conf("listen *:25\n"
	               "target a { type maildir; path /a }\n"
	               "domain *.example.net { targets a }\n");
	ck_assert_uint_eq(router_route(c, "postmaster", out, ROUTER_MAX_HOPS,
	                      &why),
	    0);
	ck_assert_str_eq(why, "none");
	conf_free(c);
}
END_TEST

START_TEST(test_max)
{
	struct router_hop out[ROUTER_MAX_HOPS];
	const char *why;

	memset(out, 0, sizeof(out));
	ck_assert_uint_eq(router_route(conf, "alice@example.com", out, 1, &why),
	    1);
	ck_assert_str_eq(conf->targets[out[0].target].name, "legacy");
	ck_assert_str_eq(why, "domain example.com");
	/* Nothing is written past max. */
	ck_assert_uint_eq(out[1].target, 0);
	ck_assert_str_eq(out[1].rcpt, "");
	ck_assert_uint_eq(router_route(conf, "alice@example.com", out, 0, &why),
	    0);
	ck_assert_str_eq(why, "domain example.com");
	ck_assert_uint_eq(router_route(conf, "alice@example.com", NULL, 5,
	                      &why),
	    0);
}
END_TEST

START_TEST(test_null_args)
{
	struct router_hop out[ROUTER_MAX_HOPS];
	const char *why = NULL;

	ck_assert_uint_eq(router_route(NULL, "alice@example.com", out,
	                      ROUTER_MAX_HOPS, &why),
	    0);
	ck_assert_str_eq(why, "none");
	why = NULL;
	ck_assert_uint_eq(router_route(conf, NULL, out, ROUTER_MAX_HOPS, &why),
	    0);
	ck_assert_str_eq(why, "none");
	ck_assert_uint_eq(router_route(conf, "alice@example.com", out,
	                      ROUTER_MAX_HOPS, NULL),
	    2);
}
END_TEST

START_TEST(test_long_addresses)
{
	struct router_hop out[ROUTER_MAX_HOPS];
	char mailbox[SMTP_PROTO_PATH_MAX + 64], want[SMTP_PROTO_PATH_MAX + 1];
	const char *why;
	size_t n;

	/*
	 * 64 + 1 + 189 = 254 octets: routed, but the cloud rewrite would
	 * make it 271, so that hop keeps the address as received.
	 */
	memset(mailbox, 'a', 64);
	mailbox[64] = '@';
	memset(mailbox + 65, 'b', 189);
	mailbox[65 + 189] = '\0';
	memcpy(mailbox + 65 + 189 - 16, ".sub.example.com", 16);
	ck_assert_uint_eq(strlen(mailbox), 254);
	n = router_route(conf, mailbox, out, ROUTER_MAX_HOPS, &why);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(why, "domain *.example.com");
	ck_assert_str_eq(out[0].rcpt, mailbox);

	/* Exactly SMTP_PROTO_PATH_MAX octets is allowed; one more is not. */
	memset(mailbox, 'c', sizeof(mailbox));
	memcpy(mailbox + SMTP_PROTO_PATH_MAX - 16, "@sub.example.com", 17);
	ck_assert_uint_eq(strlen(mailbox), SMTP_PROTO_PATH_MAX);
	ck_assert_uint_eq(router_route(conf, mailbox, out, ROUTER_MAX_HOPS,
	                      &why),
	    1);
	memcpy(want, mailbox, sizeof(want));
	ck_assert_str_eq(out[0].rcpt, want);
	memset(mailbox, 'c', sizeof(mailbox));
	memcpy(mailbox + SMTP_PROTO_PATH_MAX - 15, "@sub.example.com", 17);
	ck_assert_uint_eq(router_route(conf, mailbox, out, ROUTER_MAX_HOPS,
	                      &why),
	    0);
	ck_assert_str_eq(why, "none");
}
END_TEST

START_TEST(test_rewrite)
{
	int cloud = conf_target_index(conf, "cloud");
	int legacy = conf_target_index(conf, "legacy");
	char out[64];

	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud, "a@Example.COM",
	                     out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "a@example.mail.onmicrosoft.com");
	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud,
	                     "a@sub.example.com", out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "a@sub.onmicrosoft.example");
	/* Not a rewritten domain, or a target without rewrites. */
	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud,
	                     "a@x.sub.example.com", out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "a@x.sub.example.com");
	ck_assert_int_eq(router_rewrite(conf, (size_t)legacy, "a@example.com",
	                     out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "a@example.com");
	/* No '@', or an index that names no target: unchanged. */
	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud, "postmaster", out,
	                     sizeof(out)),
	    0);
	ck_assert_str_eq(out, "postmaster");
	ck_assert_int_eq(router_rewrite(conf, 99, "a@example.com", out,
	                     sizeof(out)),
	    0);
	ck_assert_str_eq(out, "a@example.com");
	ck_assert_int_eq(router_rewrite(NULL, 0, "a@example.com", out,
	                     sizeof(out)),
	    0);
	ck_assert_str_eq(out, "a@example.com");
	/* The rewrite does not fit, the original does: -1, original. */
	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud, "a@example.com",
	                     out, 20),
	    -1);
	ck_assert_str_eq(out, "a@example.com");
	/* The exact fit: 30 octets and the NUL. */
	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud, "a@example.com",
	                     out, 31),
	    0);
	ck_assert_str_eq(out, "a@example.mail.onmicrosoft.com");
	ck_assert_int_eq(router_rewrite(conf, (size_t)cloud, "a@example.com",
	                     out, 30),
	    -1);
	ck_assert_str_eq(out, "a@example.com");
	/* Nothing fits. */
	ck_assert_int_eq(router_rewrite(conf, (size_t)legacy, "a@example.com",
	                     out, 5),
	    -1);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(router_rewrite(conf, (size_t)legacy, "a@example.com",
	                     NULL, 5),
	    -1);
	ck_assert_int_eq(router_rewrite(conf, (size_t)legacy, "a@example.com",
	                     out, 0),
	    -1);
	ck_assert_int_eq(router_rewrite(conf, (size_t)legacy, NULL, out,
	                     sizeof(out)),
	    -1);
	ck_assert_str_eq(out, "");
}
END_TEST

/*
 * A hand-built config: no labels, a set with a repeated target and one
 * index past the end. The output has each target once, bad ones dropped.
 */
START_TEST(test_hand_built)
{
	char n0[] = "one", n1[] = "two", dname[] = "example.com";
	char pat[] = "*@example.com", wname[] = "w", member[] = "m@example.com";
	char *members[] = { member };
	size_t dset[] = { 1, 0, 1, 7, 0 }, rset[] = { 0, 0 }, wset[] = { 1 };
	struct conf_target targets[2];
	struct conf_domain domain;
	struct conf_route route;
	struct conf_wave wave;
	struct conf c;
	struct router_hop out[ROUTER_MAX_HOPS];
	const char *why;

	memset(&c, 0, sizeof(c));
	memset(targets, 0, sizeof(targets));
	memset(&domain, 0, sizeof(domain));
	memset(&route, 0, sizeof(route));
	memset(&wave, 0, sizeof(wave));
	targets[0].name = n0;
	targets[1].name = n1;
	domain.name = dname;
	domain.targets = dset;
	domain.ntargets = sizeof(dset) / sizeof(dset[0]);
	c.targets = targets;
	c.ntargets = 2;
	c.domains = &domain;
	c.ndomains = 1;
	c.default_target = -1;

	ck_assert_uint_eq(router_route(&c, "a@example.com", out,
	                      ROUTER_MAX_HOPS, &why),
	    2);
	ck_assert_str_eq(why, "domain");
	ck_assert_uint_eq(out[0].target, 1);
	ck_assert_uint_eq(out[1].target, 0);
	ck_assert_str_eq(out[0].rcpt, "a@example.com");

	wave.name = wname;
	wave.targets = wset;
	wave.ntargets = 1;
	wave.members = members;
	wave.nmembers = 1;
	c.waves = &wave;
	c.nwaves = 1;
	ck_assert_uint_eq(router_route(&c, "M@example.com", out,
	                      ROUTER_MAX_HOPS, &why),
	    1);
	ck_assert_str_eq(why, "wave");
	ck_assert_uint_eq(out[0].target, 1);

	route.pattern = pat;
	route.targets = rset;
	route.ntargets = 2;
	c.routes = &route;
	c.nroutes = 1;
	ck_assert_uint_eq(router_route(&c, "M@example.com", out,
	                      ROUTER_MAX_HOPS, &why),
	    1);
	ck_assert_str_eq(why, "route");
	ck_assert_uint_eq(out[0].target, 0);

	/* A default_target past the end gives no hop. */
	c.default_target = 5;
	ck_assert_uint_eq(router_route(&c, "a@example.net", out,
	                      ROUTER_MAX_HOPS, &why),
	    0);
	ck_assert_str_eq(why, "default_target");
}
END_TEST

static Suite *
router_suite(void)
{
	Suite *s = suite_create("router");
	TCase *tc;

	tc = tcase_create("route");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_table, 0,
	    sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, test_why_points_into_conf);
	tcase_add_test(tc, test_default_target);
	tcase_add_test(tc, test_postmaster_skips_wildcards);
	tcase_add_test(tc, test_max);
	tcase_add_test(tc, test_null_args);
	tcase_add_test(tc, test_long_addresses);
	suite_add_tcase(s, tc);

	tc = tcase_create("rewrite");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_rewrite);
	suite_add_tcase(s, tc);

	tc = tcase_create("hand_built");
	tcase_add_test(tc, test_hand_built);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(router_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
