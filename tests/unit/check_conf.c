/*
 * check_conf.c - unit tests for the splitmx.conf parser (conf_*).
 *
 * Valid configs are checked value by value; invalid ones through a table
 * that pins the "FILE:LINE:" prefix and a key phrase of the one message.
 * Files (conf_load, recipients_file) live in a private mkdtemp directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <sys/stat.h>

#include <check.h>

#include "conf.h"
#include "log.h"
#include "sbuf.h"

#define ERR_CAP 4096

static struct conf *
parse(const char *text, const char *file, struct sbuf *err)
{
	sbuf_init(err, ERR_CAP);
	return conf_parse_buf(text, strlen(text), file, err);
}

static struct conf *
parse_ok(const char *text, const char *file)
{
	struct sbuf err;
	struct conf *conf;

	conf = parse(text, file, &err);
	ck_assert_msg(conf != NULL, "parse failed: %s", err.data);
	ck_assert_uint_eq(err.len, 0);
	sbuf_release(&err);
	return conf;
}

static const struct conf_domain *
domain_named(const struct conf *conf, const char *name)
{
	size_t i;

	for (i = 0; i < conf->ndomains; i++)
		if (strcmp(conf->domains[i].name, name) == 0)
			return &conf->domains[i];
	ck_abort_msg("no domain %s", name);
	return NULL;
}

/* A scratch directory, removed with its files by rmtree_tmp. */
static char tmpdir[64];

static void
mk_tmpdir(void)
{
	(void)snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_conf.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
write_file(const char *name, const char *text, char *path_out, size_t size)
{
	FILE *fp;
	int n;

	n = snprintf(path_out, size, "%s/%s", tmpdir, name);
	ck_assert(n > 0 && (size_t)n < size);
	ck_assert_ptr_nonnull(fp = fopen(path_out, "w"));
	ck_assert_int_eq(fputs(text, fp) >= 0, 1);
	ck_assert_int_eq(fclose(fp), 0);
}

static void
rm_tmpdir(const char *const *names)
{
	char path[256];

	for (; *names != NULL; names++) {
		(void)snprintf(path, sizeof(path), "%s/%s", tmpdir, *names);
		(void)unlink(path);
	}
	ck_assert_int_eq(rmdir(tmpdir), 0);
}

/*
 * Valid configs.
 */

static const char full_conf[] =
    "# every directive\n"
    "hostname mx.example.net\n"
    "spool_dir /var/spool/test\n"
    "user splitmx\n"
    "workers 16\n"
    "listen 127.0.0.1:2525\n"
    "listen [::1]:25 { tls_cert /etc/ssl/v6.pem; tls_key /etc/ssl/v6.key }\n"
    "listen *:0587\n"
    "limits {\n"
    "\tmessage_size 10M\n"
    "\trecipients 100\n"
    "\tconnections 200\n"
    "\tconnections_per_ip 5\n"
    "\terrors 3\n"
    "\tmax_received 30\n"
    "\ttimeout_command 5m\n"
    "\ttimeout_data 2m\n"
    "\ttimeout_tls 30\n"
    "\tshutdown_grace 1h\n"
    "\tbare_newline reject; data_deadline 5m; session_deadline 0\n"
    "\tstress_threshold 90; stress_timeout 5s; stress_deadline 1m }\n"
    "log { destination stderr; facility local3; level debug }\n"
    "domain Example.COM {\n"
    "\trecipients alice bob@example.com \"Sales-*\"\n"
    "\trecipients postmaster\n"
    "}\n"
    "domain example.org\n"
    "domain *.example.net { recipients * }\n"
    "tls_cert /etc/ssl/default.pem   # after the listen lines on purpose\n"
    "tls_key /etc/ssl/default.key\n";

START_TEST(test_full)
{
	struct conf *conf = parse_ok(full_conf, "full.conf");
	const struct conf_domain *d;

	ck_assert_str_eq(conf->path, "full.conf");
	ck_assert_str_eq(conf->hostname, "mx.example.net");
	ck_assert_str_eq(conf->spool_dir, "/var/spool/test");
	ck_assert_str_eq(conf->user, "splitmx");
	ck_assert_uint_eq(conf->workers, 16);

	ck_assert_uint_eq(conf->nlisteners, 3);
	ck_assert_str_eq(conf->listeners[0].host, "127.0.0.1");
	ck_assert_str_eq(conf->listeners[0].port, "2525");
	ck_assert_int_eq(conf->listeners[0].line, 6);
	/* Top-level TLS given after the listen line still applies. */
	ck_assert_str_eq(conf->listeners[0].tls_cert, "/etc/ssl/default.pem");
	ck_assert_str_eq(conf->listeners[0].tls_key, "/etc/ssl/default.key");
	ck_assert_str_eq(conf->listeners[1].host, "::1");
	ck_assert_str_eq(conf->listeners[1].port, "25");
	ck_assert_str_eq(conf->listeners[1].tls_cert, "/etc/ssl/v6.pem");
	ck_assert_str_eq(conf->listeners[1].tls_key, "/etc/ssl/v6.key");
	ck_assert_str_eq(conf->listeners[2].host, "*");
	ck_assert_str_eq(conf->listeners[2].port, "587");

	ck_assert_uint_eq(conf->limits.message_size, 10 * 1024 * 1024);
	ck_assert_uint_eq(conf->limits.recipients, 100);
	ck_assert_uint_eq(conf->limits.connections, 200);
	ck_assert_uint_eq(conf->limits.connections_per_ip, 5);
	ck_assert_uint_eq(conf->limits.errors, 3);
	ck_assert_uint_eq(conf->limits.max_received, 30);
	ck_assert_uint_eq(conf->limits.timeout_command, 300);
	ck_assert_uint_eq(conf->limits.timeout_data, 120);
	ck_assert_uint_eq(conf->limits.timeout_tls, 30);
	ck_assert_uint_eq(conf->limits.shutdown_grace, 3600);
	ck_assert_uint_eq(conf->limits.data_deadline, 300);
	ck_assert_uint_eq(conf->limits.session_deadline, 0); /* off */
	ck_assert_uint_eq(conf->limits.stress_threshold, 90);
	ck_assert_uint_eq(conf->limits.stress_timeout, 5);
	ck_assert_uint_eq(conf->limits.stress_deadline, 60);
	ck_assert_int_eq(conf->limits.bare_newline, CONF_NEWLINE_REJECT);

	ck_assert(conf->log_stderr);
	ck_assert_int_eq(conf->log_facility, LOG_LOCAL3);
	ck_assert_int_eq(conf->log_level, LOG_LEVEL_DEBUG);

	ck_assert_uint_eq(conf->ndomains, 3);
	d = domain_named(conf, "example.com");
	ck_assert_int_eq(d->line, 23);
	ck_assert(d->has_list);
	ck_assert_ptr_null(d->recipients_file);
	ck_assert_uint_eq(d->nrecipients, 4);
	ck_assert_uint_eq(d->nexact, 3);
	/* Exact patterns sorted first, then the wildcard ones. */
	ck_assert_str_eq(d->recipients[0], "alice");
	ck_assert_str_eq(d->recipients[1], "bob");
	ck_assert_str_eq(d->recipients[2], "postmaster");
	ck_assert_str_eq(d->recipients[3], "Sales-*");
	d = domain_named(conf, "example.org");
	ck_assert(!d->has_list);
	ck_assert_uint_eq(d->nrecipients, 0);
	d = domain_named(conf, "*.example.net");
	ck_assert(d->has_list);
	ck_assert_uint_eq(d->nrecipients, 1);
	conf_free(conf);
}
END_TEST

START_TEST(test_defaults)
{
	struct conf *conf = parse_ok("listen *:25\ndomain example.com\n",
	    "/etc/splitmx/splitmx.conf");

	ck_assert_ptr_null(conf->hostname);
	ck_assert_str_eq(conf->spool_dir, "/var/spool/splitmx");
	ck_assert_ptr_null(conf->user);
	ck_assert_uint_eq(conf->workers, 8);
	ck_assert_uint_eq(conf->journal_segment_size, (uint64_t)64 << 20);
	ck_assert_uint_eq(conf->journal_retention, 90 * 24 * 60 * 60);
	ck_assert_ptr_null(conf->listeners[0].tls_cert);
	ck_assert_ptr_null(conf->listeners[0].tls_key);
	ck_assert_uint_eq(conf->limits.message_size, 50 * 1024 * 1024);
	ck_assert_uint_eq(conf->limits.recipients, 1000);
	ck_assert_uint_eq(conf->limits.connections, 1000);
	ck_assert_uint_eq(conf->limits.connections_per_ip, 50);
	ck_assert_uint_eq(conf->limits.errors, 10);
	ck_assert_uint_eq(conf->limits.max_received, 50);
	ck_assert_uint_eq(conf->limits.timeout_command, 300);
	ck_assert_uint_eq(conf->limits.timeout_data, 180);
	ck_assert_uint_eq(conf->limits.timeout_tls, 60);
	ck_assert_uint_eq(conf->limits.shutdown_grace, 30);
	ck_assert_uint_eq(conf->limits.data_deadline, 600);
	ck_assert_uint_eq(conf->limits.session_deadline, 3600);
	ck_assert_uint_eq(conf->limits.stress_threshold, 80);
	ck_assert_uint_eq(conf->limits.stress_timeout, 10);
	ck_assert_uint_eq(conf->limits.stress_deadline, 120);
	ck_assert_int_eq(conf->limits.bare_newline, CONF_NEWLINE_NORMALIZE);
	ck_assert(!conf->log_stderr);
	ck_assert_int_eq(conf->log_facility, LOG_MAIL);
	ck_assert_int_eq(conf->log_level, LOG_LEVEL_INFO);
	ck_assert(!conf->domains[0].has_list);
	conf_free(conf);
}
END_TEST

START_TEST(test_syntax)
{
	/* ';' and newlines, CRLF, comments, quoting, one-line blocks. */
	static const char text[] =
	    ";;  \t\r\n"
	    "hostname \"mx.example.com\"; workers 2 # comment ; workers 3\r\n"
	    "spool_dir \"/var/spool/with space/q\\\"uote\\\\#x\"\n"
	    "listen 0.0.0.0:25;listen [2001:db8::1]:2525\n"
	    "limits { }\n"
	    "limits2_is_a_comment_on_the_next_line_only # x\n";
	struct sbuf err;
	struct conf *conf;

	/* The last line is an unknown directive: stop there, line 6. */
	conf = parse(text, "s.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_str_eq(err.data,
	    "s.conf:6: unknown directive "
	    "'limits2_is_a_comment_on_the_next_line_only'");
	sbuf_release(&err);

	conf =
	    parse_ok(";;  \t\r\n"
	             "hostname \"mx.example.com\"; workers 2 # comment ; workers 3\r\n"
	             "spool_dir \"/var/spool/with space/q\\\"uote\\\\#x\"\n"
	             "listen 0.0.0.0:25;listen [2001:db8::1]:2525\n"
	             "limits { }\n"
	             "log {\n}\n"
	             "domain \"example.com\" {\n"
	             "  recipients \"a b\" x#y\n"
	             "}\n"
	             "domain example.net {recipients c}\n"
	             "domain example.org {\n"
	             "}",
	        "s.conf");
	ck_assert_str_eq(conf->hostname, "mx.example.com");
	ck_assert_uint_eq(conf->workers, 2);
	ck_assert_str_eq(conf->spool_dir, "/var/spool/with space/q\"uote\\#x");
	ck_assert_uint_eq(conf->nlisteners, 2);
	ck_assert_str_eq(conf->listeners[1].host, "2001:db8::1");
	ck_assert_uint_eq(conf->ndomains, 3);
	/* '#' right after a word still starts a comment. */
	ck_assert_uint_eq(conf->domains[0].nrecipients, 2);
	ck_assert(conf_domain_accepts(&conf->domains[0], "a b"));
	ck_assert(conf_domain_accepts(&conf->domains[0], "x"));
	ck_assert(!conf_domain_accepts(&conf->domains[0], "x#y"));
	ck_assert_int_eq(conf->domains[2].line, 12);
	ck_assert(!conf->domains[2].has_list);
	conf_free(conf);
}
END_TEST

START_TEST(test_size_and_duration_units)
{
	static const struct {
		const char *text;
		uint64_t size;
		unsigned timeout;
	} cases[] = {
		{ "message_size 1; timeout_data 1", 1, 1 },
		{ "message_size 1k; timeout_data 1s", 1024, 1 },
		{ "message_size 2K; timeout_data 2m", 2048, 120 },
		{ "message_size 3m; timeout_data 3h", 3 << 20, 3 * 3600 },
		{ "message_size 4G; timeout_data 4d", 4ULL << 30, 4 * 86400 },
		{ "message_size 17179869183G; timeout_data 4294967295",
		    17179869183ULL << 30, 4294967295U },
	};
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf *conf;

		(void)snprintf(text, sizeof(text),
		    "listen *:25\n"
		    "domain example.com\nlimits { %s }\n",
		    cases[i].text);
		conf = parse_ok(text, "u.conf");
		ck_assert_uint_eq(conf->limits.message_size, cases[i].size);
		ck_assert_uint_eq(conf->limits.timeout_data, cases[i].timeout);
		conf_free(conf);
	}
}
END_TEST

START_TEST(test_tls_inherit)
{
	struct conf *conf;

	conf = parse_ok("listen *:25\n"
	                "listen *:26 { tls_cert own.pem; tls_key own.key }\n"
	                "domain example.com\n"
	                "tls_key tls/k.pem\ntls_cert tls/c.pem\n",
	    "/etc/x/s.conf");
	ck_assert_str_eq(conf->listeners[0].tls_cert, "/etc/x/tls/c.pem");
	ck_assert_str_eq(conf->listeners[0].tls_key, "/etc/x/tls/k.pem");
	ck_assert_str_eq(conf->listeners[1].tls_cert, "/etc/x/own.pem");
	ck_assert_str_eq(conf->listeners[1].tls_key, "/etc/x/own.key");
	conf_free(conf);
}
END_TEST

START_TEST(test_relative_paths)
{
	static const char text[] =
	    "spool_dir ../spool\n"
	    "listen *:25 { tls_cert c.pem; tls_key /abs/k.pem }\n"
	    "domain example.com { recipients_file lists/users.txt }\n";
	static const struct {
		const char *file;
		const char *spool, *cert, *list;
	} cases[] = {
		{ "/etc/splitmx/splitmx.conf", "/etc/splitmx/../spool",
		    "/etc/splitmx/c.pem", "/etc/splitmx/lists/users.txt" },
		{ "etc/splitmx.conf", "etc/../spool", "etc/c.pem",
		    "etc/lists/users.txt" },
		{ "splitmx.conf", "../spool", "c.pem", "lists/users.txt" },
		{ "/s.conf", "/../spool", "/c.pem", "/lists/users.txt" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conf *conf = parse_ok(text, cases[i].file);

		ck_assert_str_eq(conf->spool_dir, cases[i].spool);
		ck_assert_str_eq(conf->listeners[0].tls_cert, cases[i].cert);
		ck_assert_str_eq(conf->listeners[0].tls_key, "/abs/k.pem");
		ck_assert_str_eq(conf->domains[0].recipients_file,
		    cases[i].list);
		/* Parsing alone does not read the file, but marks a list. */
		ck_assert(conf->domains[0].has_list);
		ck_assert_uint_eq(conf->domains[0].nrecipients, 0);
		conf_free(conf);
	}
}
END_TEST

/*
 * Delivery: targets, waves, routes, queue, resolvers.
 */

static const char migration_conf[] =
    "hostname mx2.example.com\n"
    "listen *:25\n"
    "resolvers 127.0.0.1 [::1]:5353 192.0.2.53:53 2001:DB8::53\n"
    "default_target cloud   # used before its block on purpose\n"
    "queue { retry_initial 5m; retry_max 2h; lifetime 3d; "
    "delay_warning 4h }\n"
    "domain Example.com {\n"
    "\ttargets legacy cloud\n"
    "\tverify_recipients legacy\n"
    "\trecipients alice bob carol \"sales-*\" postmaster\n"
    "}\n"
    "domain example.org { targets legacy }\n"
    "domain *.example.net { targets cloud archive }\n"
    "domain held.example\n"
    "target legacy {\n"
    "\ttype smtp\n"
    "\thost 10.0.0.5:25\n"
    "\ttls none\n"
    "\tconnections 20\n"
    "}\n"
    "target cloud {\n"
    "\ttype smtp\n"
    "\thost example-com.mail.protection.outlook.com\n"
    "\ttls verify\n"
    "\ttls_ca /etc/ssl/certs/ca-certificates.crt\n"
    "\ttls_name mail.protection.outlook.com\n"
    "\ttls_cert client.pem; tls_key client.key\n"
    "\trate 600\n"
    "\tmessages_per_connection 50\n"
    "\ttimeout_connect 1m; timeout_command 2m; timeout_data 15m\n"
    "\thelo mx2.example.com\n"
    "\trewrite @Example.COM @example.mail.onmicrosoft.com\n"
    "\trewrite @example.org @example-org.mail.onmicrosoft.com\n"
    "}\n"
    "target archive { type maildir; path ../archive; rate 0 }\n"
    "target mailstore {\n"
    "\ttype lmtp\n"
    "\tsocket run/lmtp.sock\n"
    "}\n"
    "target outbound { type smtp; mx *; port 2525 }\n"
    "target zimbra-lmtp { type lmtp; host [2001:db8::7] }\n"
    "target relay { type smtp; mx Example.NET }\n"
    "wave wave1 {\n"
    "\tstate dual\n"
    "\tmembers Dave@Example.com erin@example.com\n"
    "\tmembers dave@example.com\n"
    "}\n"
    "wave wave2 { state cloud; members alice@example.com "
    "frank@example.org }\n"
    "wave pilots { targets archive cloud; members "
    "\"\\\"Q U\\\"@example.com\" }\n"
    "wave back { state legacy }\n"
    "route \"Shared-*@example.com\" mailstore archive\n"
    "route Info@Example.org cloud\n";

static const struct conf_target *
target_named(const struct conf *conf, const char *name)
{
	int i = conf_target_index(conf, name);

	ck_assert_msg(i >= 0, "no target %s", name);
	return &conf->targets[i];
}

START_TEST(test_migration)
{
	struct conf *conf = parse_ok(migration_conf, "/etc/splitmx/m.conf");
	const struct conf_target *t;
	const struct conf_domain *d;
	const struct conf_wave *w;
	int legacy, cloud, archive, mailstore;

	ck_assert_str_eq(conf->resolvers,
	    "127.0.0.1:53,[::1]:5353,192.0.2.53:53,[2001:db8::53]:53");
	ck_assert_uint_eq(conf->queue.retry_initial, 300);
	ck_assert_uint_eq(conf->queue.retry_max, 7200);
	ck_assert_uint_eq(conf->queue.lifetime, 3 * 86400);
	ck_assert_uint_eq(conf->queue.delay_warning, 4 * 3600);

	ck_assert_uint_eq(conf->ntargets, 7);
	legacy = conf_target_index(conf, "legacy");
	cloud = conf_target_index(conf, "cloud");
	archive = conf_target_index(conf, "archive");
	mailstore = conf_target_index(conf, "mailstore");
	ck_assert_int_eq(legacy, 0);
	ck_assert_int_eq(cloud, 1);
	ck_assert_int_eq(archive, 2);
	ck_assert_int_eq(mailstore, 3);
	ck_assert_int_eq(conf_target_index(conf, "Legacy"), -1);
	ck_assert_int_eq(conf_target_index(conf, "nope"), -1);
	ck_assert_int_eq(conf_target_index(conf, NULL), -1);
	ck_assert_int_eq(conf_target_index(NULL, "legacy"), -1);
	ck_assert_int_eq(conf->default_target, cloud);

	t = target_named(conf, "legacy");
	ck_assert_int_eq(t->line, 14);
	ck_assert_int_eq(t->type, CONF_TARGET_SMTP);
	ck_assert_str_eq(t->host, "10.0.0.5");
	ck_assert_str_eq(t->port, "25");
	ck_assert_ptr_null(t->mx);
	ck_assert_int_eq(t->tls, CONF_TLS_NONE);
	ck_assert_uint_eq(t->connections, 20);
	ck_assert_uint_eq(t->rate, 0);
	ck_assert_uint_eq(t->messages_per_connection, 100);
	ck_assert_uint_eq(t->timeout_connect, 30);
	ck_assert_uint_eq(t->timeout_command, 300);
	ck_assert_uint_eq(t->timeout_data, 600);
	ck_assert_ptr_null(t->helo);
	ck_assert_uint_eq(t->nrewrites, 0);

	t = target_named(conf, "cloud");
	ck_assert_str_eq(t->host, "example-com.mail.protection.outlook.com");
	ck_assert_str_eq(t->port, "25");
	ck_assert_int_eq(t->tls, CONF_TLS_VERIFY);
	ck_assert_str_eq(t->tls_ca, "/etc/ssl/certs/ca-certificates.crt");
	ck_assert_str_eq(t->tls_name, "mail.protection.outlook.com");
	ck_assert_str_eq(t->tls_cert, "/etc/splitmx/client.pem");
	ck_assert_str_eq(t->tls_key, "/etc/splitmx/client.key");
	ck_assert_uint_eq(t->connections, 10);
	ck_assert_uint_eq(t->rate, 600);
	ck_assert_uint_eq(t->messages_per_connection, 50);
	ck_assert_uint_eq(t->timeout_connect, 60);
	ck_assert_uint_eq(t->timeout_command, 120);
	ck_assert_uint_eq(t->timeout_data, 900);
	ck_assert_str_eq(t->helo, "mx2.example.com");
	ck_assert_uint_eq(t->nrewrites, 2);
	ck_assert_str_eq(t->rewrite_from[0], "example.com");
	ck_assert_str_eq(t->rewrite_to[0], "example.mail.onmicrosoft.com");
	ck_assert_str_eq(t->rewrite_from[1], "example.org");
	ck_assert_str_eq(t->rewrite_to[1], "example-org.mail.onmicrosoft.com");

	t = target_named(conf, "archive");
	ck_assert_int_eq(t->type, CONF_TARGET_MAILDIR);
	ck_assert_str_eq(t->path, "/etc/splitmx/../archive");
	ck_assert_int_eq(t->tls, CONF_TLS_NONE);
	ck_assert_ptr_null(t->host);
	ck_assert_ptr_null(t->port);

	t = target_named(conf, "mailstore");
	ck_assert_int_eq(t->type, CONF_TARGET_LMTP);
	ck_assert_str_eq(t->socket, "/etc/splitmx/run/lmtp.sock");
	ck_assert_ptr_null(t->host);
	ck_assert_ptr_null(t->port);
	ck_assert_int_eq(t->tls, CONF_TLS_NONE);

	t = target_named(conf, "outbound");
	ck_assert_str_eq(t->mx, "*");
	ck_assert_str_eq(t->port, "2525");
	ck_assert_int_eq(t->tls, CONF_TLS_MAY);
	t = target_named(conf, "zimbra-lmtp");
	ck_assert_str_eq(t->host, "2001:db8::7");
	ck_assert_str_eq(t->port, "24");
	ck_assert_int_eq(t->tls, CONF_TLS_NONE);
	t = target_named(conf, "relay");
	ck_assert_str_eq(t->mx, "example.net");
	ck_assert_str_eq(t->port, "25");

	d = conf_find_domain(conf, "example.com");
	ck_assert_str_eq(d->label, "domain example.com");
	ck_assert_uint_eq(d->ntargets, 2);
	ck_assert_uint_eq(d->targets[0], (size_t)legacy);
	ck_assert_uint_eq(d->targets[1], (size_t)cloud);
	ck_assert_int_eq(d->verify_target, legacy);
	ck_assert(conf_domain_accepts(d, "sales-emea"));
	d = conf_find_domain(conf, "example.org");
	ck_assert_uint_eq(d->ntargets, 1);
	ck_assert_uint_eq(d->targets[0], (size_t)legacy);
	ck_assert_int_eq(d->verify_target, -1);
	d = conf_find_domain(conf, "a.example.net");
	ck_assert_str_eq(d->label, "domain *.example.net");
	ck_assert_uint_eq(d->ntargets, 2);
	ck_assert_uint_eq(d->targets[1], (size_t)archive);
	d = conf_find_domain(conf, "held.example");
	ck_assert_uint_eq(d->ntargets, 0);
	ck_assert_ptr_null(d->targets);

	ck_assert_uint_eq(conf->nwaves, 4);
	w = &conf->waves[0];
	ck_assert_str_eq(w->name, "wave1");
	ck_assert_str_eq(w->label, "wave wave1");
	ck_assert_int_eq(w->state, CONF_WAVE_DUAL);
	ck_assert_uint_eq(w->ntargets, 2);
	ck_assert_uint_eq(w->targets[0], (size_t)legacy);
	ck_assert_uint_eq(w->targets[1], (size_t)cloud);
	/* Lower-cased, sorted, the repeated dave only once. */
	ck_assert_uint_eq(w->nmembers, 2);
	ck_assert_str_eq(w->members[0], "dave@example.com");
	ck_assert_str_eq(w->members[1], "erin@example.com");
	ck_assert(conf_wave_has(w, "dave@example.com"));
	ck_assert(conf_wave_has(w, "DAVE@Example.COM"));
	ck_assert(!conf_wave_has(w, "alice@example.com"));
	ck_assert(!conf_wave_has(w, NULL));
	ck_assert(!conf_wave_has(NULL, "dave@example.com"));
	w = &conf->waves[1];
	ck_assert_int_eq(w->state, CONF_WAVE_CLOUD);
	ck_assert_uint_eq(w->ntargets, 1);
	ck_assert_uint_eq(w->targets[0], (size_t)cloud);
	ck_assert_str_eq(w->members[0], "alice@example.com");
	ck_assert_str_eq(w->members[1], "frank@example.org");
	w = &conf->waves[2];
	ck_assert_int_eq(w->state, CONF_WAVE_TARGETS);
	ck_assert_uint_eq(w->ntargets, 2);
	ck_assert_uint_eq(w->targets[0], (size_t)archive);
	ck_assert_uint_eq(w->targets[1], (size_t)cloud);
	ck_assert_uint_eq(w->nmembers, 1);
	ck_assert_str_eq(w->members[0], "\"q u\"@example.com");
	w = &conf->waves[3];
	ck_assert_int_eq(w->state, CONF_WAVE_LEGACY);
	ck_assert_uint_eq(w->ntargets, 1);
	ck_assert_uint_eq(w->targets[0], (size_t)legacy);
	ck_assert_uint_eq(w->nmembers, 0);
	ck_assert(!conf_wave_has(w, "x@example.com"));

	ck_assert_uint_eq(conf->nroutes, 2);
	ck_assert_str_eq(conf->routes[0].pattern, "shared-*@example.com");
	ck_assert_str_eq(conf->routes[0].label, "route shared-*@example.com");
	ck_assert_uint_eq(conf->routes[0].ntargets, 2);
	ck_assert_uint_eq(conf->routes[0].targets[0], (size_t)mailstore);
	ck_assert_uint_eq(conf->routes[0].targets[1], (size_t)archive);
	ck_assert_int_eq(conf->routes[0].line, 50);
	ck_assert_str_eq(conf->routes[1].pattern, "info@example.org");
	conf_free(conf);
}
END_TEST

START_TEST(test_delivery_defaults)
{
	struct conf *conf =
	    parse_ok("listen *:25\ndomain example.com\n"
	             "target t { type smtp; host mx.example.com }\n",
	        "d.conf");
	const struct conf_target *t = &conf->targets[0];

	ck_assert_ptr_null(conf->resolvers);
	ck_assert_int_eq(conf->default_target, -1);
	ck_assert_uint_eq(conf->queue.retry_initial, 60);
	ck_assert_uint_eq(conf->queue.retry_max, 3600);
	ck_assert_uint_eq(conf->queue.lifetime, 5 * 86400);
	ck_assert_uint_eq(conf->queue.delay_warning, 0);
	ck_assert_uint_eq(conf->nwaves, 0);
	ck_assert_uint_eq(conf->nroutes, 0);
	ck_assert_uint_eq(conf->domains[0].ntargets, 0);
	ck_assert_int_eq(conf->domains[0].verify_target, -1);
	ck_assert_int_eq(t->tls, CONF_TLS_MAY);
	ck_assert_str_eq(t->port, "25");
	ck_assert_uint_eq(t->connections, 10);
	ck_assert_uint_eq(t->messages_per_connection, 100);
	conf_free(conf);

	/* delay_warning 0 is "off"; retry_initial may equal retry_max. */
	conf =
	    parse_ok("listen *:25\ndomain example.com\n"
	             "queue {\n retry_max 10m\n retry_initial 600\n delay_warning 0\n"
	             "}\n",
	        "d.conf");
	ck_assert_uint_eq(conf->queue.retry_initial, 600);
	ck_assert_uint_eq(conf->queue.delay_warning, 0);
	conf_free(conf);
}
END_TEST

/*
 * Invalid configs: each yields exactly one "t.conf:LINE: ..." message.
 */

#define OK_TAIL "listen *:25\ndomain example.com\n"

static const struct {
	const char *text;
	int line;
	const char *phrase;
} bad[] = {
	{ OK_TAIL "lissten *:26\n", 3,
	    "unknown directive 'lissten' (did you mean 'listen'?)" },
	{ OK_TAIL "frobnicate yes\n", 3, "unknown directive 'frobnicate'" },
	{ OK_TAIL "journal_segment_size 64K\n", 3,
	    "'journal_segment_size' needs a size of at least 1M, got '64K'" },
	{ OK_TAIL "journal_retention 0\n", 3,
	    "'journal_retention' needs a positive duration" },
	{ "listen 127.0.0.1:0\n", 1, "listen: bad port '0'" },
	{ "listen *:65536\n", 1, "bad port '65536'" },
	{ "listen *:smtp\n", 1, "bad port 'smtp'" },
	{ "listen *:\n", 1, "bad port ''" },
	{ "listen 127.0.0.1\n", 1, "expected ADDR:PORT" },
	{ "listen localhost:25\n", 1, "'localhost' is not an IPv4 address" },
	{ "listen 1.2.3:25\n", 1, "not an IPv4 address" },
	{ "\nlisten [::1:25\n", 2, "missing ']'" },
	{ "listen ::1:25\n", 1, "must be in brackets" },
	{ "listen [::g]:25\n", 1, "'::g' is not an IPv6 address" },
	{ "listen [::1]25\n", 1, "expected ':PORT' after ']'" },
	{ "listen *:25\nlisten *:025\ndomain a.b\n", 2,
	    "duplicate address '*:025' (first at line 1)" },
	{ "tls_cert a.pem\n" OK_TAIL, 1, "tls_cert is set but tls_key is not" },
	{ OK_TAIL "\ntls_key a.pem\n", 4, "tls_key is set but tls_cert" },
	{ "domain example.com\nlisten *:25 {\n  tls_key k.pem\n}\n", 2,
	    "listen: tls_key is set but tls_cert is not" },
	{ OK_TAIL "limits {\n message_size 17179869184G\n}\n", 4,
	    "limits: 'message_size' value '17179869184G' is too large" },
	{ OK_TAIL "limits {\n message_size 99999999999999999999\n}\n", 4,
	    "too large" },
	{ OK_TAIL "limits { recipients 4294967296 }\n", 3,
	    "'recipients' value '4294967296' is too large" },
	{ OK_TAIL "limits { timeout_data 49711d }\n", 3, "too large" },
	{ OK_TAIL "limits { recipients 0 }\n", 3,
	    "limits: 'recipients' must be greater than zero, got '0'" },
	{ OK_TAIL "limits { message_size 0K }\n", 3, "greater than zero" },
	{ OK_TAIL "limits { timeout_tls 0s }\n", 3, "greater than zero" },
	{ OK_TAIL "limits { shutdown_grace 00 }\n", 3, "greater than zero" },
	{ OK_TAIL "limits { stress_timeout 0 }\n", 3, "greater than zero" },
	{ OK_TAIL "limits { stress_deadline 0s }\n", 3, "greater than zero" },
	{ OK_TAIL "limits { stress_threshold 101 }\n", 3,
	    "limits: 'stress_threshold' is a percentage (0 to 100), got '101'" },
	{ OK_TAIL "limits { data_deadline 10x }\n", 3, "needs a duration" },
	{ OK_TAIL "limits {\n\n timeout_data 10x\n}\n", 5,
	    "limits: 'timeout_data' needs a duration" },
	{ OK_TAIL "limits { timeout_data 10ss }\n", 3, "needs a duration" },
	{ OK_TAIL "limits { timeout_data -1 }\n", 3, "needs a duration" },
	{ OK_TAIL "limits { message_size 5T }\n", 3, "needs a size" },
	{ OK_TAIL "limits { message_size 5 M }\n", 3,
	    "wrong number of arguments for 'message_size'" },
	{ OK_TAIL "limits {\n recipients x\n}\n", 4,
	    "limits: 'recipients' needs a positive number, got 'x'" },
	{ OK_TAIL "limits { bare_newline strip }\n", 3,
	    "'bare_newline' must be 'normalize' or 'reject'" },
	{ OK_TAIL "limits { errors 1; errors 2 }\n", 3,
	    "limits: duplicate 'errors' (first at line 3)" },
	{ OK_TAIL "limits { mesage_size 5 }\n", 3,
	    "limits: unknown directive 'mesage_size' (did you mean "
	    "'message_size'?)" },
	{ OK_TAIL "limits {}\nlimits {}\n", 4,
	    "duplicate 'limits' (first at line 3)" },
	{ OK_TAIL "log { level loud }\n", 3,
	    "log: 'level' must be debug, info, warning or error" },
	{ OK_TAIL "log { facility kern }\n", 3, "log: unknown facility" },
	{ OK_TAIL "log { destination file }\n", 3,
	    "'destination' must be 'syslog' or 'stderr'" },
	{ "listen *:25\ndomain \"example.com\n", 2,
	    "unterminated quoted string" },
	{ "listen *:25\ndomain \"example.com", 2,
	    "unterminated quoted string" },
	{ "hostname \"a\\nb\"\n", 1, "invalid escape '\\n'" },
	{ "hostname a\"b\"\n", 1, "unexpected '\"' inside a word" },
	{ "hostname \"a\"b\n", 1, "must be followed by a space" },
	{ "listen *:25\ndomain example.com {\n  recipients a\n\n", 4,
	    "missing '}' for block opened at line 2" },
	{ "listen *:25\nlimits {", 2,
	    "missing '}' for block opened at line 2" },
	{ "listen *:25\n}\n", 2, "stray '}'" },
	{ OK_TAIL "limits {\n} listen *:26\n", 4, "unexpected text after '}'" },
	{ OK_TAIL "limits {\n}}\n", 4, "unexpected text after '}'" },
	{ "limits\n{\n}\n", 1, "'limits' needs a '{' on the same line" },
	{ OK_TAIL "domain example.net\n{\n}\n", 4,
	    "'{' must follow a directive on the same line" },
	{ "workers 4 {\n}\n", 1, "'workers' does not take a '{' block" },
	{ "listen *:25\nrecipients alice\n", 2,
	    "directive 'recipients' is not allowed outside a domain or "
	    "limits block" },
	{ "listen *:25\nrecipients_file x\n", 2,
	    "directive 'recipients_file' is not allowed outside a domain "
	    "block" },
	{ "limits {\n listen *:25\n}\n", 2,
	    "directive 'listen' is not allowed in a limits block (missing "
	    "'}' for the block opened at line 1?)" },
	{ "domain a.example {\n tls_cert c.pem\n}\n", 2,
	    "directive 'tls_cert' is not allowed in a domain block" },
	{ "domain a.example {\n limits {\n", 2,
	    "directive 'limits' is not allowed in a domain block" },
	{ "listen *:25 {\n message_size 5\n}\n", 2,
	    "directive 'message_size' is not allowed in a listen block "
	    "(only in a limits block)" },
	{ OK_TAIL "domain EXAMPLE.com\n", 3,
	    "domain: duplicate domain 'example.com' (first at line 2)" },
	{ OK_TAIL "domain example.org { recipients bob@example.net }\n", 3,
	    "domain: pattern 'bob@example.net' is not in domain "
	    "'example.org'" },
	{ OK_TAIL "domain example.org { recipients @example.org }\n", 3,
	    "pattern '@example.org' has an empty local part" },
	{ OK_TAIL "domain example.org { recipients ok \"a\\\\\" }\n", 3,
	    "pattern 'a\\x5c' ends with a lone" },
	{ OK_TAIL "domain example.org {\n recipients\n}\n", 4,
	    "domain: wrong number of arguments for 'recipients'" },
	{ OK_TAIL "domain example.org { recipients_file a; "
	          "recipients_file b }\n",
	    3, "duplicate 'recipients_file'" },
	{ "listen *:25\ndomain exa_mple.com\n", 2,
	    "'exa_mple.com' is not a domain name" },
	{ "listen *:25\ndomain *\n", 2, "'*' is not a domain name" },
	{ "listen *:25\ndomain *.*.example.com\n", 2, "not a domain name" },
	{ "listen *:25\ndomain -a.example\n", 2, "not a domain name" },
	{ "listen *:25\ndomain a..example\n", 2, "not a domain name" },
	{ "listen *:25\ndomain example.com.\n", 2, "not a domain name" },
	{ "domain example.com\n", 1, "no 'listen' directive" },
	{ "domain example.com\n\n# the end\n", 3, "no 'listen' directive" },
	{ "", 1, "no 'listen' directive" },
	{ "listen *:25\n\n# end\n", 3, "no 'domain' directive" },
	{ "workers\n", 1,
	    "wrong number of arguments for 'workers' (usage: workers N)" },
	{ "workers 0\n", 1, "'workers' must be a number from 1 to 256" },
	{ "workers 257\n", 1, "from 1 to 256, got '257'" },
	{ "hostname a.b\nhostname c.d\n", 2,
	    "duplicate 'hostname' (first at line 1)" },
	{ "hostname bad!host\n", 1, "'hostname' needs a valid host name" },
	{ "user -root\n", 1, "'user' needs a user name" },
	{ "spool_dir \"\"\n", 1, "'spool_dir' needs a path" },
	{ "limits { } ; {\n", 1, "'{' must follow a directive" },
	{ "hostname a\x01.b\n", 1, "invalid character 0x01" },
	{ "hostname \"a\x7f\"\n", 1, "invalid character 0x7f in quoted" },

	/* Targets. */
	{ OK_TAIL "target x {\n host a.example\n}\n", 3,
	    "target 'x': missing 'type' (smtp, lmtp or maildir)" },
	{ OK_TAIL "target x {\n type smtp\n host a.example\n"
	          " mx example.com\n}\n",
	    6, "target 'x': 'host' (line 5) and 'mx' cannot both be given" },
	{ OK_TAIL "target x {\n type lmtp\n socket /run/l\n"
	          " host 10.0.0.1\n}\n",
	    6, "'socket' (line 5) and 'host' cannot both be given" },
	{ OK_TAIL "target x {\n type lmtp\n mx example.com\n}\n", 5,
	    "target 'x': 'mx' is only valid for type smtp" },
	{ OK_TAIL "target x {\n type smtp; host h.example\n"
	          " socket /run/l\n}\n",
	    5, "'host' (line 4) and 'socket' cannot both be given" },
	{ OK_TAIL "target x {\n type smtp; mx example.com\n"
	          " path /var/mail\n}\n",
	    5, "target 'x': 'path' is only valid for type maildir" },
	{ OK_TAIL "target x {\n type maildir; path /m\n tls may\n"
	          " helo a.example\n}\n",
	    5, "target 'x': 'tls' is only valid for types smtp and lmtp" },
	{ OK_TAIL "target x {\n path /m\n timeout_data 5m\n"
	          " type maildir\n}\n",
	    5, "'timeout_data' is only valid for types smtp and lmtp" },
	{ OK_TAIL "target x {\n type lmtp; socket /s\n port 24\n}\n", 5,
	    "'port' is only valid for type smtp" },
	{ OK_TAIL "target x {\n type smtp\n}\n", 3,
	    "target 'x': type smtp needs 'host' or 'mx'" },
	{ OK_TAIL "target x {\n type lmtp\n}\n", 3,
	    "type lmtp needs 'host' or 'socket'" },
	{ OK_TAIL "target x { type maildir }\n", 3,
	    "type maildir needs 'path'" },
	{ OK_TAIL "target x {\n type smtp; host h.example\n port 26\n}\n", 5,
	    "'port' goes with 'mx' only (write 'host NAME:PORT')" },
	{ OK_TAIL "target x {\n type smtp; host h.example\n tls maybe\n}\n", 5,
	    "target 'x': 'tls' must be none, may, encrypt or verify, "
	    "got 'maybe'" },
	{ OK_TAIL "target x {\n type smtp; host h.example\n"
	          " tls_cert c.pem\n}\n",
	    5, "target 'x': tls_cert is set but tls_key is not" },
	{ OK_TAIL "target x {\n type smtp; host h.example\n\n"
	          " tls_key c.key\n}\n",
	    6, "tls_key is set but tls_cert is not" },
	{ OK_TAIL "target x {\n type smtpd\n}\n", 4,
	    "'type' must be smtp, lmtp or maildir, got 'smtpd'" },
	{ OK_TAIL "target x { type smtp; host ::1 }\n", 3,
	    "an IPv6 address must be in brackets" },
	{ OK_TAIL "target x { type smtp; host [::1 }\n", 3, "missing the ']'" },
	{ OK_TAIL "target x { type smtp; host [::g]:25 }\n", 3,
	    "'::g' is not an IPv6 address" },
	{ OK_TAIL "target x { type smtp; host 10.0.0.256 }\n", 3,
	    "'10.0.0.256' is not a host name, an IPv4 address" },
	{ OK_TAIL "target x { type smtp; host h_x.example }\n", 3,
	    "is not a host name" },
	{ OK_TAIL "target x { type smtp; host h.example:0 }\n", 3,
	    "bad port '0'" },
	{ OK_TAIL "target x { type smtp; mx *.example.com }\n", 3,
	    "'mx' needs a domain name or '*'" },
	{ OK_TAIL "target x { type smtp; mx * ; port 70000 }\n", 3,
	    "'port' must be a number from 1 to 65535" },
	{ OK_TAIL "target x { type smtp; mx *; connections 0 }\n", 3,
	    "'connections' must be a number from 1 to 10000, got '0'" },
	{ OK_TAIL "target x { type smtp; mx *; rate fast }\n", 3,
	    "'rate' must be a number from 0 to 1000000" },
	{ OK_TAIL "target x { type smtp; mx *; timeout_connect 0 }\n", 3,
	    "'timeout_connect' must be greater than zero" },
	{ OK_TAIL "target x { type smtp; mx *; timeout_data 5y }\n", 3,
	    "'timeout_data' needs a duration" },
	{ OK_TAIL "target x { type smtp; mx *; helo \"not a name\" }\n", 3,
	    "'helo' needs a host name" },
	{ OK_TAIL "target x {\n type smtp; mx *\n"
	          " rewrite example.com @x.example\n}\n",
	    5,
	    "target 'x': 'rewrite' needs '@' and a domain name on both "
	    "sides (rewrite @FROM @TO), got 'example.com'" },
	{ OK_TAIL "target x { type smtp; mx *; rewrite @a.example b }\n", 3,
	    "got 'b'" },
	{ OK_TAIL "target x { type smtp; mx *; rewrite @a.example @ }\n", 3,
	    "got '@'" },
	{ OK_TAIL "target x { type smtp; mx *; rewrite @a.example }\n", 3,
	    "wrong number of arguments for 'rewrite'" },
	{ OK_TAIL
	    "target x {\n type smtp; mx *\n rewrite @A.example @b.example\n"
	    " rewrite @a.example @c.example\n}\n",
	    6, "'rewrite' of '@a.example' is given twice" },
	{ OK_TAIL "target x { type smtp; mx *; socket /x }\n", 3,
	    "'mx' (line 3) and 'socket' cannot both be given" },
	{ OK_TAIL "target x { type smtp; mx *; type lmtp }\n", 3,
	    "duplicate 'type'" },
	{ OK_TAIL "target x { type maildir; path /a }\n\n"
	          "target x { type maildir; path /b }\n",
	    5, "target: duplicate target 'x' (first at line 3)" },
	{ OK_TAIL "target -x { type maildir; path /a }\n", 3,
	    "target: '-x' is not a valid name" },
	{ OK_TAIL "target x\n", 3, "'target' needs a '{' on the same line" },
	{ OK_TAIL "target x { type maildir; path /a; hots b }\n", 3,
	    "target 'x': unknown directive 'hots' (did you mean 'host'?)" },
	{ OK_TAIL "target x { type maildir; path /a; recipients b }\n", 3,
	    "directive 'recipients' is not allowed in a target block" },
	{ OK_TAIL "type smtp\n", 3,
	    "directive 'type' is not allowed outside a target block" },
	{ OK_TAIL "target x {\n type lmtp\n socket /a/very/long/path/that/"
	          "goes/on/and/on/and/on/well/past/the/limit/of/a/unix/socket/"
	          "address/in/linux/sun_path.sock\n}\n",
	    5, "'socket' path is longer than 107 bytes" },

	/* Target references, resolved after the parse. */
	{ "listen *:25\ntarget cloud { type maildir; path /m }\n"
	  "domain example.com {\n targets clowd\n}\n",
	    4, "domain: unknown target 'clowd' (did you mean 'cloud'?)" },
	{ "listen *:25\ndomain example.com {\n\n targets legacy\n}\n", 4,
	    "domain: unknown target 'legacy' (no target blocks are defined)" },
	{ "listen *:25\ndomain example.com\n"
	  "target legacy { type maildir; path /l }\n"
	  "wave w1 {\n targets legacy\n targets x\n}\n",
	    6, "wave 'w1': duplicate 'targets' (first at line 5)" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 {\n targets legacy zzz\n}\n"
	  "target legacy { type maildir; path /l }\n",
	    4, "wave 'w1': unknown target 'zzz'" },
	{ "listen *:25\ndomain example.com\n"
	  "target cloud { type maildir; path /c }\n"
	  "route *@example.com cloud\n"
	  "route bob@example.com cluod\n",
	    5, "route: unknown target 'cluod' (did you mean 'cloud'?)" },
	{ "listen *:25\ndomain example.com\ndefault_target bounce\n", 3,
	    "default_target: unknown target 'bounce'" },
	{ "listen *:25\ndomain example.com {\n verify_recipients l\n}\n", 3,
	    "domain: verify_recipients: unknown target 'l'" },
	{ "listen *:25\ntarget a { type maildir; path /a }\n"
	  "domain example.com {\n verify_recipients a\n}\n",
	    4,
	    "verify_recipients needs an smtp or lmtp target, 'a' is a "
	    "maildir" },
	{ "listen *:25\ndomain example.com\n"
	  "target legacy { type maildir; path /l }\n"
	  "wave w1 {\n state dual\n}\n",
	    5, "wave 'w1': state 'dual' needs a target named 'cloud'" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 { state cloud }\n",
	    3, "wave 'w1': state 'cloud' needs a target named 'cloud'" },
	{ "listen *:25\ndomain example.com\n"
	  "target legacy { type maildir; path /l }\n"
	  "target cloud { type maildir; path /c }\n"
	  "wave w1 {\n state cloud\n targets legacy\n}\n",
	    7,
	    "wave 'w1': 'state' (line 6) and 'targets' cannot both be given" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 {\n targets legacy\n state cloud\n}\n",
	    5, "'targets' (line 4) and 'state' cannot both be given" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 {\n members a@example.com\n}\n",
	    3,
	    "wave 'w1': needs 'state' (legacy, dual or cloud) or 'targets'" },
	{ "listen *:25\ndomain example.com\nwave w1 { state hybrid }\n", 3,
	    "'state' must be legacy, dual or cloud, got 'hybrid'" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 { state cloud; members bob }\n",
	    3, "wave 'w1': member 'bob' is not a full address (local@domain)" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 { state cloud; members @example.com }\n",
	    3, "member '@example.com' has an empty local part" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 { state cloud; members bob@exa_mple.com }\n",
	    3, "has no valid domain after the last '@'" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 { state cloud; members "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "@example.com }\n",
	    3, "local part longer than 64 octets" },
	{ "listen *:25\ndomain example.com\n"
	  "wave w1 { state cloud }\nwave w1 { state cloud }\n",
	    4, "wave: duplicate wave 'w1' (first at line 3)" },
	{ "listen *:25\ndomain example.com\n"
	  "target a { type maildir; path /a }\n"
	  "domain example.org {\n targets a a\n}\n",
	    5, "domain: target 'a' is listed twice" },
	{ "listen *:25\ndomain example.com\n"
	  "route x@example.com a b c d e f g h i j k l m n o p q\n",
	    3, "route: at most 16 targets in one set, got 17" },
	{ "listen *:25\ndomain example.com\nroute x@example.com a a\n", 3,
	    "route: target 'a' is listed twice" },
	{ "listen *:25\ndomain example.com\nroute example.com a\n", 3,
	    "route: pattern 'example.com' is not an address pattern" },
	{ "listen *:25\ndomain example.com\nroute \"a\\\\\" a\n", 3,
	    "route: pattern 'a\\x5c' is not an address pattern" },
	{ "listen *:25\ndomain example.com\nroute \"a@b\\\\\" a\n", 3,
	    "ends with a lone '\\'" },
	{ "listen *:25\ndomain example.com\nroute a@example.com\n", 3,
	    "wrong number of arguments for 'route'" },
	{ "listen *:25\ndomain example.com\nroute a@example.com b! \n", 3,
	    "route: 'b!' is not a target name" },
	{ "listen *:25\ntargets a\n", 2,
	    "directive 'targets' is not allowed outside a domain or wave "
	    "block" },

	/* Queue and resolvers. */
	{ OK_TAIL "queue {\n retry_initial 2h\n}\n", 4,
	    "queue: retry_initial (7200s) is longer than retry_max (3600s)" },
	{ OK_TAIL "queue {\n retry_max 30s\n}\n", 4,
	    "retry_initial (60s) is longer than retry_max (30s)" },
	{ OK_TAIL "queue {\n lifetime 0\n}\n", 4,
	    "queue: 'lifetime' must be greater than zero" },
	{ OK_TAIL "queue {\n retry_initial 0s\n}\n", 4,
	    "'retry_initial' must be greater than zero" },
	{ OK_TAIL "queue {\n delay_warning 6d\n}\n", 4,
	    "delay_warning (518400s) must be shorter than lifetime" },
	{ OK_TAIL "queue { lifetime 1x }\n", 3, "'lifetime' needs a duration" },
	{ OK_TAIL "queue { lifetime 4294967296 }\n", 3, "too large" },
	{ OK_TAIL "resolvers 127.0.0.1:53 dns.example\n", 3,
	    "resolvers: 'dns.example' is not an IPv4 address or an IPv6 "
	    "address in brackets (host names are not allowed)" },
	{ OK_TAIL "trusted_hosts 192.0.2.1 mx_2!.example\n", 3,
	    "trusted_hosts: 'mx_2!.example' is neither an IP address nor a "
	    "host name" },
	{ OK_TAIL "resolvers 127.0.0.1:0\n", 3,
	    "'127.0.0.1:0' has a bad port" },
	{ OK_TAIL "resolvers [::1]53\n", 3,
	    "needs ':PORT' or nothing after the ']'" },
	{ OK_TAIL "resolvers [::1:53\n", 3, "is missing the ']'" },
	{ OK_TAIL "resolvers 1.2.3:53\n", 3, "is not an IPv4 address" },
	{ OK_TAIL "resolvers ::1:53:x\n", 3, "is not an IPv4 address" },
	{ OK_TAIL "resolvers 1.1.1.1\nresolvers 8.8.8.8\n", 4,
	    "duplicate 'resolvers' (first at line 3)" },
	{ OK_TAIL "resolvers 1.1.1.1 1.1.1.2 1.1.1.3 1.1.1.4 1.1.1.5 1.1.1.6 "
	          "1.1.1.7 1.1.1.8 1.1.1.9 1.1.1.10 1.1.1.11 1.1.1.12 1.1.1.13 "
	          "1.1.1.14 1.1.1.15 1.1.1.16 1.1.1.17\n",
	    3, "'resolvers' takes at most 16 addresses" },
	{ OK_TAIL "default_target a\ndefault_target b\n", 4,
	    "duplicate 'default_target'" },
};

START_TEST(test_invalid)
{
	struct sbuf err;
	struct conf *conf;
	char prefix[32];

	conf = parse(bad[_i].text, "t.conf", &err);
	ck_assert_msg(conf == NULL, "case %d parsed: %s", _i, bad[_i].text);
	(void)snprintf(prefix, sizeof(prefix), "t.conf:%d: ", bad[_i].line);
	ck_assert_msg(strncmp(err.data, prefix, strlen(prefix)) == 0,
	    "case %d: want prefix '%s', got '%s'", _i, prefix, err.data);
	ck_assert_msg(strstr(err.data, bad[_i].phrase) != NULL,
	    "case %d: want '%s' in '%s'", _i, bad[_i].phrase, err.data);
	ck_assert_msg(strchr(err.data, '\n') == NULL,
	    "case %d: more than one message: '%s'", _i, err.data);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_invalid_bytes)
{
	static const char text[] = "listen *:25\ndomain exam\0ple.com\n";
	struct sbuf err;
	struct conf *conf;
	const char *text2;
	char big[5000];

	sbuf_init(&err, ERR_CAP);
	conf = conf_parse_buf(text, sizeof(text) - 1, "n.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_str_eq(err.data, "n.conf:2: invalid character 0x00");

	/* Over-long words are refused, and quoted in messages cut short. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "hostname ", 9);
	big[sizeof(big) - 1] = '\0';
	sbuf_reset(&err);
	ck_assert_ptr_null(conf_parse_buf(big, strlen(big), "n.conf", &err));
	ck_assert_str_eq(err.data, "n.conf:1: word longer than 4096 bytes");
	big[9 + 200] = '\0';
	sbuf_reset(&err);
	ck_assert_ptr_null(conf_parse_buf(big, strlen(big), "n.conf", &err));
	ck_assert_ptr_nonnull(strstr(err.data, "aaa...'"));
	ck_assert_uint_lt(err.len, 200);

	/* No file name: messages start with ":LINE:". */
	sbuf_reset(&err);
	text2 = "listen *:25\nlimits {\n recipients x\n}\n";
	ck_assert_ptr_null(conf_parse_buf(text2, strlen(text2), NULL, &err));
	ck_assert_str_eq(err.data,
	    ":3: limits: 'recipients' needs a positive number, got 'x'");

	/* A NULL err is allowed. */
	ck_assert_ptr_null(conf_parse_buf("x", 1, "n.conf", NULL));
	sbuf_release(&err);
}
END_TEST

START_TEST(test_size_cap)
{
	size_t len = 4 * 1024 * 1024 + 1;
	char *text = malloc(len);
	struct sbuf err;

	ck_assert_ptr_nonnull(text);
	memset(text, '\n', len);
	sbuf_init(&err, ERR_CAP);
	ck_assert_ptr_null(conf_parse_buf(text, len, "big.conf", &err));
	ck_assert_str_eq(err.data,
	    "big.conf: file too large (more than 4194304 bytes)");
	sbuf_release(&err);
	free(text);
}
END_TEST

START_TEST(test_many_domains)
{
	struct sbuf text, err;
	struct conf *conf;
	size_t i;

	/* Twenty thousand domains parse fast; a late duplicate is found. */
	sbuf_init(&text, 4 * 1024 * 1024);
	ck_assert_int_eq(sbuf_append_str(&text, "listen *:25\n"), 0);
	for (i = 0; i < 20000; i++)
		ck_assert_int_eq(sbuf_printf(&text, "domain d%zu.example\n", i),
		    0);
	conf = parse_ok(text.data, "many.conf");
	ck_assert_uint_eq(conf->ndomains, 20000);
	ck_assert_ptr_eq(conf_find_domain(conf, "d19999.example"),
	    &conf->domains[19999]);
	conf_free(conf);
	ck_assert_int_eq(sbuf_append_str(&text, "domain D7.example\n"), 0);
	conf = parse(text.data, "many.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_str_eq(err.data,
	    "many.conf:20002: domain: duplicate domain "
	    "'d7.example' (first at line 9)");
	sbuf_release(&err);
	sbuf_release(&text);
}
END_TEST

START_TEST(test_many_targets)
{
	struct sbuf text, err;
	struct conf *conf;
	size_t i;

	/*
	 * Many targets, each named by a route before its block: resolution
	 * is hashed, and an unknown name late in the file is still found.
	 */
	sbuf_init(&text, 4 * 1024 * 1024);
	ck_assert_int_eq(sbuf_append_str(&text,
	                     "listen *:25\ndomain example.com\n"),
	    0);
	for (i = 0; i < 20000; i++)
		ck_assert_int_eq(sbuf_printf(&text,
		                     "route u%zu@example.com t%zu\n", i,
		                     19999 - i),
		    0);
	for (i = 0; i < 20000; i++)
		ck_assert_int_eq(sbuf_printf(&text,
		                     "target t%zu { type maildir; path /m/%zu }\n",
		                     i, i),
		    0);
	conf = parse_ok(text.data, "many.conf");
	ck_assert_uint_eq(conf->ntargets, 20000);
	ck_assert_uint_eq(conf->nroutes, 20000);
	ck_assert_uint_eq(conf->routes[0].targets[0], 19999);
	ck_assert_uint_eq(conf->routes[19999].targets[0], 0);
	ck_assert_int_eq(conf_target_index(conf, "t12345"), 12345);
	conf_free(conf);
	ck_assert_int_eq(sbuf_append_str(&text,
	                     "target t7 { type maildir; path /x }\n"),
	    0);
	conf = parse(text.data, "many.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_str_eq(err.data,
	    "many.conf:40003: target: duplicate "
	    "target 't7' (first at line 20010)");
	sbuf_release(&err);
	sbuf_truncate(&text,
	    text.len - strlen("target t7 { type maildir; path /x }\n"));
	ck_assert_int_eq(sbuf_append_str(&text,
	                     "route late@example.com t20000\n"),
	    0);
	conf = parse(text.data, "many.conf", &err);
	ck_assert_ptr_null(conf);
	ck_assert_str_eq(err.data,
	    "many.conf:40003: route: unknown target "
	    "'t20000' (did you mean 't2000'?)");
	sbuf_release(&err);
	sbuf_release(&text);
}
END_TEST

/*
 * Look-ups.
 */

START_TEST(test_find_domain)
{
	struct conf *conf = parse_ok("listen *:25\n"
	                             "domain example.com\n"
	                             "domain *.example.com\n"
	                             "domain *.eu.example.com\n"
	                             "domain *.org\n"
	                             "domain Legacy.Example.NET\n",
	    "f.conf");
	const struct conf_domain *d;

	d = conf_find_domain(conf, "example.com");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->name, "example.com");
	ck_assert_ptr_eq(conf_find_domain(conf, "EXAMPLE.Com"), d);
	d = conf_find_domain(conf, "legacy.example.net");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->name, "legacy.example.net");
	ck_assert_ptr_null(conf_find_domain(conf, "example.net"));
	ck_assert_ptr_null(conf_find_domain(conf, "x.legacy.example.net"));

	d = conf_find_domain(conf, "mail.example.com");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->name, "*.example.com");
	ck_assert_ptr_eq(conf_find_domain(conf, "a.b.example.com"), d);
	/* The longest matching suffix wins. */
	d = conf_find_domain(conf, "paris.eu.example.com");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->name, "*.eu.example.com");
	/* "*.eu.example.com" does not cover eu.example.com itself. */
	d = conf_find_domain(conf, "eu.example.com");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->name, "*.example.com");
	d = conf_find_domain(conf, "example.org");
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(d->name, "*.org");
	ck_assert_ptr_null(conf_find_domain(conf, "org"));
	ck_assert_ptr_null(conf_find_domain(conf, "xexample.com"));
	ck_assert_ptr_null(conf_find_domain(conf, "example.com.evil"));
	ck_assert_ptr_null(conf_find_domain(conf, ""));
	ck_assert_ptr_null(conf_find_domain(conf, "."));
	ck_assert_ptr_null(conf_find_domain(conf, NULL));
	ck_assert_ptr_null(conf_find_domain(NULL, "example.com"));
	conf_free(conf);
}
END_TEST

START_TEST(test_accepts)
{
	struct conf *conf =
	    parse_ok("listen *:25\n"
	             "domain example.com {\n"
	             "  recipients alice Bob@Example.COM postmaster \"sales-*\"\n"
	             "  recipients \"j?hn\" \"[xy]z\" \"lit\\\\*\"\n"
	             "}\n"
	             "domain example.org\n",
	        "a.conf");
	const struct conf_domain *com = conf_find_domain(conf, "example.com");
	const struct conf_domain *org = conf_find_domain(conf, "example.org");
	struct conf_domain hand;
	char zed[] = "zed", al[] = "al*", hname[] = "h.example";
	char *pats[] = { zed, al };

	ck_assert(conf_domain_accepts(com, "alice"));
	ck_assert(conf_domain_accepts(com, "ALICE"));
	ck_assert(conf_domain_accepts(com, "bob"));
	ck_assert(conf_domain_accepts(com, "postmaster"));
	ck_assert(conf_domain_accepts(com, "sales-"));
	ck_assert(conf_domain_accepts(com, "sales-eu"));
	ck_assert(conf_domain_accepts(com, "SALES-EU"));
	ck_assert(conf_domain_accepts(com, "john"));
	ck_assert(conf_domain_accepts(com, "jOhn"));
	ck_assert(conf_domain_accepts(com, "xz"));
	ck_assert(conf_domain_accepts(com, "lit*"));
	ck_assert(!conf_domain_accepts(com, "litx"));
	ck_assert(!conf_domain_accepts(com, "joohn"));
	ck_assert(!conf_domain_accepts(com, "sales"));
	ck_assert(!conf_domain_accepts(com, "alice2"));
	ck_assert(!conf_domain_accepts(com, "carol"));
	ck_assert(!conf_domain_accepts(com, ""));
	ck_assert(!conf_domain_accepts(com, "bob@example.com"));
	ck_assert(conf_domain_accepts(org, "anyone"));
	ck_assert(conf_domain_accepts(org, ""));
	ck_assert(!conf_domain_accepts(NULL, "alice"));
	ck_assert(!conf_domain_accepts(com, NULL));

	/* A hand-built domain (nexact 0) is matched by fnmatch alone. */
	memset(&hand, 0, sizeof(hand));
	hand.name = hname;
	hand.recipients = pats;
	hand.nrecipients = 2;
	hand.has_list = true;
	ck_assert(conf_domain_accepts(&hand, "ZED"));
	ck_assert(conf_domain_accepts(&hand, "alf"));
	ck_assert(!conf_domain_accepts(&hand, "bob"));
	conf_free(conf);
}
END_TEST

START_TEST(test_accepts_many)
{
	struct sbuf text;
	struct conf *conf;
	const struct conf_domain *d;
	char local[32];
	size_t i;

	sbuf_init(&text, 1024 * 1024);
	ck_assert_int_eq(sbuf_append_str(&text,
	                     "listen *:25\ndomain example.com {\n recipients"),
	    0);
	for (i = 0; i < 5000; i++)
		ck_assert_int_eq(sbuf_printf(&text, " user%zu", i * 7 % 5000),
		    0);
	ck_assert_int_eq(sbuf_append_str(&text, " \"ops-*\"\n}\n"), 0);
	conf = parse_ok(text.data, "m.conf");
	d = &conf->domains[0];
	ck_assert_uint_eq(d->nexact, 5000);
	for (i = 0; i < 5000; i++) {
		(void)snprintf(local, sizeof(local), "User%zu", i);
		ck_assert_msg(conf_domain_accepts(d, local), "%s", local);
	}
	ck_assert(!conf_domain_accepts(d, "user5000"));
	ck_assert(conf_domain_accepts(d, "ops-1"));
	conf_free(conf);
	sbuf_release(&text);
}
END_TEST

/*
 * Files.
 */

START_TEST(test_load)
{
	static const char *const names[] = { "splitmx.conf", "users.txt",
		"bad.txt", "two.txt", NULL };
	char conf_path[128], path[128], want[256];
	struct conf *conf;
	const struct conf_domain *d;
	struct sbuf err;

	mk_tmpdir();
	write_file("users.txt",
	    "# users moving in wave 1\n"
	    "\n"
	    "carol\n"
	    "  Dave@example.com   \r\n"
	    "ops-*\t# the operations team\n"
	    "a#b\n"
	    "#commented-out\n"
	    "last-line-without-newline",
	    path, sizeof(path));
	write_file("splitmx.conf",
	    "spool_dir q\n"
	    "listen 127.0.0.1:2525\n"
	    "domain example.com {\n"
	    "  recipients alice\n"
	    "  recipients_file users.txt\n"
	    "}\n",
	    conf_path, sizeof(conf_path));
	sbuf_init(&err, ERR_CAP);
	conf = conf_load(conf_path, &err);
	ck_assert_msg(conf != NULL, "%s", err.data);
	ck_assert_str_eq(conf->path, conf_path);
	(void)snprintf(want, sizeof(want), "%s/q", tmpdir);
	ck_assert_str_eq(conf->spool_dir, want);
	d = conf_find_domain(conf, "example.com");
	ck_assert_str_eq(d->recipients_file, path);
	ck_assert_uint_eq(d->nrecipients, 6);
	ck_assert(conf_domain_accepts(d, "alice"));
	ck_assert(conf_domain_accepts(d, "carol"));
	ck_assert(conf_domain_accepts(d, "dave"));
	ck_assert(conf_domain_accepts(d, "ops-db"));
	ck_assert(conf_domain_accepts(d, "a#b"));
	ck_assert(conf_domain_accepts(d, "last-line-without-newline"));
	ck_assert(!conf_domain_accepts(d, "commented-out"));
	ck_assert(!conf_domain_accepts(d, "eve"));
	conf_free(conf);
	ck_assert_str_eq(err.data, "");

	/* Dave@example.com is not in example.org: the load fails there. */
	write_file("splitmx.conf",
	    "listen 127.0.0.1:2525\n"
	    "domain example.com { recipients_file users.txt }\n"
	    "domain example.org { recipients_file users.txt }\n",
	    conf_path, sizeof(conf_path));
	(void)snprintf(want, sizeof(want),
	    "%s:4: pattern 'Dave@example.com' is not in domain "
	    "'example.org'",
	    path);
	conf = conf_load(conf_path, &err);
	ck_assert_ptr_null(conf);
	ck_assert_str_eq(err.data, want);

	/* A bad line: the domain is left as it was. */
	write_file("bad.txt", "x\ny\n\n# c\nz w\n", path, sizeof(path));
	conf = parse_ok("listen *:25\ndomain example.net { recipients q }\n",
	    "l.conf");
	sbuf_reset(&err);
	ck_assert_int_eq(conf_load_recipients(&conf->domains[0], path, &err),
	    -1);
	(void)snprintf(want, sizeof(want),
	    "%s:5: expected one pattern per line, got 'z w'", path);
	ck_assert_str_eq(err.data, want);
	ck_assert_uint_eq(conf->domains[0].nrecipients, 1);
	ck_assert(conf_domain_accepts(&conf->domains[0], "q"));
	ck_assert(!conf_domain_accepts(&conf->domains[0], "x"));
	write_file("two.txt", "x\n@example.net\n", path, sizeof(path));
	sbuf_reset(&err);
	ck_assert_int_eq(conf_load_recipients(&conf->domains[0], path, &err),
	    -1);
	(void)snprintf(want, sizeof(want),
	    "%s:2: pattern '@example.net' has an empty local part", path);
	ck_assert_str_eq(err.data, want);
	/* An empty file makes an empty list: nobody is accepted. */
	write_file("two.txt", "# nobody yet\n", path, sizeof(path));
	sbuf_reset(&err);
	ck_assert_int_eq(conf_load_recipients(&conf->domains[0], path, &err),
	    0);
	ck_assert_uint_eq(conf->domains[0].nrecipients, 1);
	conf_free(conf);
	conf = parse_ok("listen *:25\ndomain example.net\n", "l.conf");
	ck_assert_int_eq(conf_load_recipients(&conf->domains[0], path, &err),
	    0);
	ck_assert(conf->domains[0].has_list);
	ck_assert(!conf_domain_accepts(&conf->domains[0], "x"));
	conf_free(conf);

	sbuf_release(&err);
	rm_tmpdir(names);
}
END_TEST

START_TEST(test_load_errors)
{
	static const char *const names[] = { "a.conf", NULL };
	char conf_path[128], want[256];
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	ck_assert_ptr_null(conf_load("/nonexistent/splitmx.conf", &err));
	ck_assert_str_eq(err.data,
	    "/nonexistent/splitmx.conf: cannot open: "
	    "No such file or directory");

	mk_tmpdir();
	sbuf_reset(&err);
	ck_assert_ptr_null(conf_load(tmpdir, &err));
	(void)snprintf(want, sizeof(want), "%s: cannot read: Is a directory",
	    tmpdir);
	ck_assert_str_eq(err.data, want);

	/* Parse errors name the path as given; missing recipient files. */
	write_file("a.conf",
	    "listen *:25\n\ndomain example.com {\n"
	    "  recipients_file nope.txt\n}\nlimits { errors x }\n",
	    conf_path, sizeof(conf_path));
	sbuf_reset(&err);
	ck_assert_ptr_null(conf_load(conf_path, &err));
	(void)snprintf(want, sizeof(want),
	    "%s:6: limits: 'errors' needs a "
	    "positive number, got 'x'",
	    conf_path);
	ck_assert_str_eq(err.data, want);
	write_file("a.conf",
	    "listen *:25\n\ndomain example.com {\n"
	    "  recipients_file nope.txt\n}\n",
	    conf_path, sizeof(conf_path));
	sbuf_reset(&err);
	ck_assert_ptr_null(conf_load(conf_path, &err));
	(void)snprintf(want, sizeof(want),
	    "%s/nope.txt: cannot open: No such "
	    "file or directory",
	    tmpdir);
	ck_assert_str_eq(err.data, want);

	sbuf_release(&err);
	rm_tmpdir(names);
}
END_TEST

START_TEST(test_load_members)
{
	static const char *const names[] = { "splitmx.conf", "wave1.txt",
		"bad.txt", NULL };
	char conf_path[128], path[128], want[256];
	const struct conf_wave *w;
	struct conf *conf;
	struct sbuf err;

	mk_tmpdir();
	write_file("wave1.txt",
	    "# wave 1: the finance team\n"
	    "\n"
	    "  Carol@Example.com  \r\n"
	    "dave@example.com\t# moved on Monday\n"
	    "a#b@example.com\n"
	    "bob@example.com\n"
	    "#eve@example.com\n"
	    "last@example.org",
	    path, sizeof(path));
	write_file("splitmx.conf",
	    "listen 127.0.0.1:2525\n"
	    "domain example.com\n"
	    "target cloud { type maildir; path cloud }\n"
	    "wave wave1 {\n"
	    "  state cloud\n"
	    "  members bob@example.com zed@example.com\n"
	    "  members_file wave1.txt\n"
	    "}\n",
	    conf_path, sizeof(conf_path));
	sbuf_init(&err, ERR_CAP);
	conf = conf_load(conf_path, &err);
	ck_assert_msg(conf != NULL, "%s", err.data);
	w = &conf->waves[0];
	ck_assert_str_eq(w->members_file, path);
	/* Inline and file members merged, sorted, bob only once. */
	ck_assert_uint_eq(w->nmembers, 6);
	ck_assert_str_eq(w->members[0], "a#b@example.com");
	ck_assert_str_eq(w->members[1], "bob@example.com");
	ck_assert_str_eq(w->members[2], "carol@example.com");
	ck_assert_str_eq(w->members[3], "dave@example.com");
	ck_assert_str_eq(w->members[4], "last@example.org");
	ck_assert_str_eq(w->members[5], "zed@example.com");
	ck_assert(conf_wave_has(w, "CAROL@example.com"));
	ck_assert(!conf_wave_has(w, "eve@example.com"));
	(void)snprintf(want, sizeof(want), "%s/cloud", tmpdir);
	ck_assert_str_eq(conf->targets[0].path, want);
	conf_free(conf);

	/* Errors name the members file and its line. */
	write_file("bad.txt", "ok@example.com\n\n# c\nbob\n", path,
	    sizeof(path));
	write_file("splitmx.conf",
	    "listen 127.0.0.1:2525\n"
	    "domain example.com\n"
	    "target cloud { type maildir; path cloud }\n"
	    "wave wave1 { state cloud; members_file bad.txt }\n",
	    conf_path, sizeof(conf_path));
	conf = conf_load(conf_path, &err);
	ck_assert_ptr_null(conf);
	(void)snprintf(want, sizeof(want),
	    "%s:4: address 'bob' is not a "
	    "full address (local@domain)",
	    path);
	ck_assert_str_eq(err.data, want);

	/* A bad file leaves the wave as it was. */
	write_file("bad.txt", "x@example.com\ny@example.com z@example.com\n",
	    path, sizeof(path));
	conf = parse_ok("listen *:25\ndomain example.com\n"
	                "target cloud { type maildir; path /c }\n"
	                "wave w { state cloud; members q@example.com }\n",
	    "l.conf");
	sbuf_reset(&err);
	ck_assert_int_eq(conf_load_members(&conf->waves[0], path, &err), -1);
	(void)snprintf(want, sizeof(want),
	    "%s:2: expected one address per "
	    "line, got 'y@example.com z@example.com'",
	    path);
	ck_assert_str_eq(err.data, want);
	ck_assert_uint_eq(conf->waves[0].nmembers, 1);
	ck_assert(!conf_wave_has(&conf->waves[0], "x@example.com"));
	sbuf_reset(&err);
	ck_assert_int_eq(conf_load_members(&conf->waves[0],
	                     "/nonexistent/members.txt", &err),
	    -1);
	ck_assert_str_eq(err.data,
	    "/nonexistent/members.txt: cannot open: "
	    "No such file or directory");
	conf_free(conf);

	/* A missing members_file stops conf_load. */
	write_file("splitmx.conf",
	    "listen 127.0.0.1:2525\n"
	    "domain example.com\n"
	    "target cloud { type maildir; path cloud }\n"
	    "wave wave1 { state cloud; members_file nope.txt }\n",
	    conf_path, sizeof(conf_path));
	sbuf_reset(&err);
	ck_assert_ptr_null(conf_load(conf_path, &err));
	(void)snprintf(want, sizeof(want),
	    "%s/nope.txt: cannot open: No such "
	    "file or directory",
	    tmpdir);
	ck_assert_str_eq(err.data, want);

	sbuf_release(&err);
	rm_tmpdir(names);
}
END_TEST

/* The shipped example must always load; tests run from the top or below. */
START_TEST(test_example_config)
{
	static const char *const where[] = { "etc/splitmx.conf",
		"../etc/splitmx.conf", "../../etc/splitmx.conf" };
	const struct conf_domain *d;
	struct conf *conf = NULL;
	struct sbuf err;
	int legacy, cloud;
	size_t i;

	sbuf_init(&err, ERR_CAP);
	for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		if (access(where[i], R_OK) != 0)
			continue;
		conf = conf_load(where[i], &err);
		ck_assert_msg(conf != NULL, "%s", err.data);
		break;
	}
	ck_assert_msg(conf != NULL, "etc/splitmx.conf not found");
	ck_assert_str_eq(conf->hostname, "splitmx.localhost");
	ck_assert_uint_eq(conf->nlisteners, 1);
	ck_assert_str_eq(conf->listeners[0].host, "127.0.0.1");
	ck_assert_str_eq(conf->listeners[0].port, "2525");
	ck_assert_ptr_null(conf->listeners[0].tls_cert);
	ck_assert(conf->log_stderr);
	ck_assert_ptr_null(conf->user);
	ck_assert_ptr_nonnull(strstr(conf->spool_dir, "etc/../spool"));
	ck_assert_int_eq(conf->spool_dir[0], '/');
	d = conf_find_domain(conf, "example.com");
	ck_assert_ptr_nonnull(d);
	ck_assert(conf_domain_accepts(d, "alice"));
	ck_assert(conf_domain_accepts(d, "Bob"));
	ck_assert(conf_domain_accepts(d, "postmaster"));
	ck_assert(conf_domain_accepts(d, "sales-emea"));
	ck_assert(!conf_domain_accepts(d, "mallory"));
	d = conf_find_domain(conf, "example.org");
	ck_assert_ptr_nonnull(d);
	ck_assert(!d->has_list);
	/* The demo delivers: two maildirs under the spool. */
	legacy = conf_target_index(conf, "legacy");
	cloud = conf_target_index(conf, "cloud");
	ck_assert_int_ge(legacy, 0);
	ck_assert_int_ge(cloud, 0);
	ck_assert_int_eq(conf->targets[legacy].type, CONF_TARGET_MAILDIR);
	ck_assert_int_eq(conf->targets[cloud].type, CONF_TARGET_MAILDIR);
	ck_assert_ptr_nonnull(
	    strstr(conf->targets[legacy].path, "etc/../spool/maildir/legacy"));
	ck_assert_ptr_nonnull(
	    strstr(conf->targets[cloud].path, "etc/../spool/maildir/cloud"));
	ck_assert_uint_eq(d->ntargets, 1);
	ck_assert_uint_eq(d->targets[0], (size_t)legacy);
	d = conf_find_domain(conf, "example.com");
	ck_assert_uint_eq(d->ntargets, 2);
	ck_assert_uint_eq(d->targets[0], (size_t)legacy);
	ck_assert_uint_eq(d->targets[1], (size_t)cloud);
	ck_assert_uint_eq(conf->nwaves, 1);
	ck_assert_str_eq(conf->waves[0].name, "wave1");
	ck_assert_int_eq(conf->waves[0].state, CONF_WAVE_CLOUD);
	ck_assert(conf_wave_has(&conf->waves[0], "bob@example.com"));
	ck_assert_uint_eq(conf->limits.message_size, 50 * 1024 * 1024);
	ck_assert_uint_eq(conf->limits.timeout_command, 300);
	conf_free(conf);
	sbuf_release(&err);
}
END_TEST

/*
 * Robustness: every prefix and many byte mutations of a full config
 * either parse or give exactly one message, never crash (ASan watches).
 */

static void
parse_any(const char *text, size_t len)
{
	struct sbuf err;
	struct conf *conf;

	sbuf_init(&err, ERR_CAP);
	conf = conf_parse_buf(text, len, "r.conf", &err);
	ck_assert((conf == NULL) == (err.len > 0));
	if (conf != NULL) {
		(void)conf_find_domain(conf, "a.example.com");
		(void)conf_domain_accepts(&conf->domains[0], "alice");
		if (conf->nwaves > 0)
			(void)conf_wave_has(&conf->waves[0],
			    "dave@example.com");
		(void)conf_target_index(conf, "cloud");
	} else
		ck_assert_int_eq(strncmp(err.data, "r.conf:", 7), 0);
	conf_free(conf);
	sbuf_release(&err);
}

START_TEST(test_robust)
{
	static const char alphabet[] = "{}\";#\\\n\r\t *:[]@.0aKmx\x01\xff";
	const char *text = _i == 0 ? full_conf : migration_conf;
	size_t len = strlen(text), i, round;
	char *copy = malloc(len);
	unsigned seed = 12345;

	ck_assert_ptr_nonnull(copy);
	for (i = 0; i <= len; i++)
		parse_any(text, i);
	for (round = 0; round < 3000; round++) {
		size_t k;

		memcpy(copy, text, len);
		for (k = 0; k < 1 + round % 4; k++) {
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % len] =
			    alphabet[(seed >> 20) % (sizeof(alphabet) - 1)];
		}
		parse_any(copy, len);
	}
	free(copy);
}
END_TEST

START_TEST(test_free_null)
{
	conf_free(NULL);
}
END_TEST

/* trusted_hosts: client addresses and peer node names. */
START_TEST(test_trusted_hosts)
{
	struct conf *conf = parse_ok(OK_TAIL "trusted_hosts 192.0.2.1 ::1 "
	                                     "mx2.example.com\n",
	    "t.conf");

	ck_assert_uint_eq(conf->ntrusted_hosts, 3);
	ck_assert_str_eq(conf->trusted_hosts[0], "192.0.2.1");
	ck_assert_str_eq(conf->trusted_hosts[2], "mx2.example.com");
	conf_free(conf);
}
END_TEST

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc;

	tc = tcase_create("valid");
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_syntax);
	tcase_add_test(tc, test_size_and_duration_units);
	tcase_add_test(tc, test_tls_inherit);
	tcase_add_test(tc, test_relative_paths);
	tcase_add_test(tc, test_migration);
	tcase_add_test(tc, test_delivery_defaults);
	tcase_add_test(tc, test_free_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("invalid");
	tcase_add_loop_test(tc, test_invalid, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(tc, test_invalid_bytes);
	tcase_add_test(tc, test_size_cap);
	tcase_add_test(tc, test_many_domains);
	tcase_add_test(tc, test_many_targets);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("lookup");
	tcase_add_test(tc, test_find_domain);
	tcase_add_test(tc, test_accepts);
	tcase_add_test(tc, test_accepts_many);
	tcase_add_test(tc, test_trusted_hosts);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, test_load);
	tcase_add_test(tc, test_load_errors);
	tcase_add_test(tc, test_load_members);
	tcase_add_test(tc, test_example_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("robust");
	tcase_add_loop_test(tc, test_robust, 0, 2);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(conf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
