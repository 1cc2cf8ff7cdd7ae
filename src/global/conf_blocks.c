/*
 * conf_blocks.c - the directive table, and the handlers of the top level
 * and of the listen, domain, limits, log and queue blocks.
 *
 * The table says where each directive may appear, how many arguments it
 * takes and which handler fills its field. The syntax is documented in
 * splitmx.conf(5); keep the two in step. A handler checks one statement;
 * checks that need a whole block or file live in conf_check.c, and the
 * target, wave and route handlers in conf_targets.c.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "conf.h"
#include "conf_int.h"
#include "log.h"
#include "sbuf.h"
#include "xmalloc.h"

static int conf_do_hostname(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_spool_dir(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_user(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_workers(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_tls(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_listen(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_block(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_domain(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_limit(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_bare_newline(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_destination(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_facility(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_level(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_recipients(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_recipients_file(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_resolvers(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_queue(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_verify_opts(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_trusted(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_authserv(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_srs(struct conf_parser *, const struct conf_directive *,
    int);

/* One initializer per line reads better than clang-format's fill. */
/* clang-format off */
#define D_TOP(n, lo, hi, blk, rep, opens, use, fn) \
	{ n, CONF_CTX_TOP, lo, hi, blk, rep, opens, CONF_ARG_NONE, use, fn }
#define D_IN(ctx, n, lo, hi, rep, arg, use, fn) \
	{ n, ctx, lo, hi, CONF_BLOCK_NONE, rep, CONF_CTX_TOP, arg, use, fn }
/* clang-format on */

/*
 * Every directive, by context. Domain entries come before limits ones
 * because "recipients" exists in both and the domain one is what people
 * misplace (see conf_misplaced).
 */
const struct conf_directive conf_directives[] = {
	D_TOP("hostname", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "NAME",
	    conf_do_hostname),
	D_TOP("spool_dir", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "PATH",
	    conf_do_spool_dir),
	D_TOP("user", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "NAME",
	    conf_do_user),
	D_TOP("workers", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "N",
	    conf_do_workers),
	{ "tls_cert", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    CONF_ARG_TLS_CERT, "PATH", conf_do_tls },
	{ "tls_key", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    CONF_ARG_TLS_KEY, "PATH", conf_do_tls },
	D_TOP("listen", 1, 1, CONF_BLOCK_OPTIONAL, true, CONF_CTX_LISTEN,
	    "ADDR:PORT [{ ... }]", conf_do_listen),
	D_TOP("limits", 0, 0, CONF_BLOCK_REQUIRED, false, CONF_CTX_LIMITS,
	    "{ ... }", conf_do_block),
	D_TOP("log", 0, 0, CONF_BLOCK_REQUIRED, false, CONF_CTX_LOG, "{ ... }",
	    conf_do_block),
	D_TOP("domain", 1, 1, CONF_BLOCK_OPTIONAL, true, CONF_CTX_DOMAIN,
	    "NAME [{ ... }]", conf_do_domain),
	D_TOP("resolvers", 1, -1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "ADDR[:PORT]...", conf_do_resolvers),
	D_TOP("default_target", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "TARGET", conf_do_default_target),
	D_TOP("queue", 0, 0, CONF_BLOCK_REQUIRED, false, CONF_CTX_QUEUE,
	    "{ ... }", conf_do_block),
	D_TOP("target", 1, 1, CONF_BLOCK_REQUIRED, true, CONF_CTX_TARGET,
	    "NAME { ... }", conf_do_target),
	D_TOP("wave", 1, 1, CONF_BLOCK_REQUIRED, true, CONF_CTX_WAVE,
	    "NAME { ... }", conf_do_wave),
	D_TOP("route", 2, -1, CONF_BLOCK_NONE, true, CONF_CTX_TOP,
	    "PATTERN TARGET...", conf_do_route),
	{ "verify_cache", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_V_CACHE, "DURATION", conf_do_verify_opts },
	{ "verify_tempfail", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_V_TEMPFAIL, "yes|no", conf_do_verify_opts },
	{ "auth_checks", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_AUTH_CHECKS, "yes|no", conf_do_verify_opts },
	{ "spf_reject", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_SPF_REJECT, "yes|no", conf_do_verify_opts },
	{ "authserv_id", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_NONE, "NAME", conf_do_authserv },
	{ "reverse_lookup", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_REVERSE_LOOKUP, "yes|no",
	    conf_do_verify_opts },
	{ "duplicates", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_D_ENABLE, "yes|no", conf_do_verify_opts },
	{ "duplicate_window", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_D_WINDOW, "DURATION", conf_do_verify_opts },
	{ "duplicate_max_size", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_D_MAX_SIZE, "SIZE", conf_do_verify_opts },
	{ "journal_segment_size", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_J_SEGMENT, "SIZE", conf_do_verify_opts },
	{ "journal_retention", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_J_RETENTION, "DURATION",
	    conf_do_verify_opts },
	D_TOP("trusted_hosts", 1, -1, CONF_BLOCK_NONE, true, CONF_CTX_TOP,
	    "ADDR...", conf_do_trusted),

	D_IN(CONF_CTX_DOMAIN, "recipients", 1, -1, true, CONF_ARG_NONE,
	    "PATTERN...", conf_do_recipients),
	D_IN(CONF_CTX_DOMAIN, "recipients_file", 1, 1, false, CONF_ARG_NONE,
	    "PATH", conf_do_recipients_file),
	D_IN(CONF_CTX_DOMAIN, "targets", 1, -1, false, CONF_ARG_NONE,
	    "TARGET...", conf_do_set),
	D_IN(CONF_CTX_DOMAIN, "verify_recipients", 1, 1, false, CONF_ARG_NONE,
	    "TARGET", conf_do_verify),

	D_IN(CONF_CTX_LIMITS, "message_size", 1, 1, false,
	    CONF_ARG_MESSAGE_SIZE, "SIZE", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "recipients", 1, 1, false, CONF_ARG_RECIPIENTS,
	    "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "connections", 1, 1, false, CONF_ARG_CONNECTIONS,
	    "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "connections_per_ip", 1, 1, false,
	    CONF_ARG_CONNECTIONS_PER_IP, "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "errors", 1, 1, false, CONF_ARG_ERRORS, "N",
	    conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "max_received", 1, 1, false,
	    CONF_ARG_MAX_RECEIVED, "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "timeout_command", 1, 1, false,
	    CONF_ARG_TIMEOUT_COMMAND, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "timeout_data", 1, 1, false,
	    CONF_ARG_TIMEOUT_DATA, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "timeout_tls", 1, 1, false, CONF_ARG_TIMEOUT_TLS,
	    "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "shutdown_grace", 1, 1, false,
	    CONF_ARG_SHUTDOWN_GRACE, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "data_deadline", 1, 1, false,
	    CONF_ARG_DATA_DEADLINE, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "session_deadline", 1, 1, false,
	    CONF_ARG_SESSION_DEADLINE, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "stress_threshold", 1, 1, false,
	    CONF_ARG_STRESS_THRESHOLD, "PERCENT", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "stress_timeout", 1, 1, false,
	    CONF_ARG_STRESS_TIMEOUT, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "stress_deadline", 1, 1, false,
	    CONF_ARG_STRESS_DEADLINE, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "bare_newline", 1, 1, false, CONF_ARG_NONE,
	    "normalize|reject", conf_do_bare_newline),

	D_IN(CONF_CTX_LISTEN, "tls_cert", 1, 1, false, CONF_ARG_TLS_CERT,
	    "PATH", conf_do_tls),
	D_IN(CONF_CTX_LISTEN, "tls_key", 1, 1, false, CONF_ARG_TLS_KEY, "PATH",
	    conf_do_tls),

	D_IN(CONF_CTX_LOG, "destination", 1, 1, false, CONF_ARG_NONE,
	    "syslog|stderr", conf_do_destination),
	D_IN(CONF_CTX_LOG, "facility", 1, 1, false, CONF_ARG_NONE, "NAME",
	    conf_do_facility),
	D_IN(CONF_CTX_LOG, "level", 1, 1, false, CONF_ARG_NONE,
	    "debug|info|warning|error", conf_do_level),

	D_IN(CONF_CTX_TARGET, "type", 1, 1, false, CONF_ARG_NONE,
	    "smtp|lmtp|maildir", conf_do_type),
	D_IN(CONF_CTX_TARGET, "host", 1, 1, false, CONF_ARG_NONE, "HOST[:PORT]",
	    conf_do_host),
	D_IN(CONF_CTX_TARGET, "mx", 1, 1, false, CONF_ARG_NONE, "DOMAIN|*",
	    conf_do_mx),
	D_IN(CONF_CTX_TARGET, "port", 1, 1, false, CONF_ARG_NONE, "N",
	    conf_do_port),
	D_IN(CONF_CTX_TARGET, "socket", 1, 1, false, CONF_ARG_NONE, "PATH",
	    conf_do_socket),
	D_IN(CONF_CTX_TARGET, "path", 1, 1, false, CONF_ARG_NONE, "PATH",
	    conf_do_maildir),
	D_IN(CONF_CTX_TARGET, "tls", 1, 1, false, CONF_ARG_NONE,
	    "none|may|encrypt|verify", conf_do_target_tls),
	D_IN(CONF_CTX_TARGET, "tls_ca", 1, 1, false, CONF_ARG_TLS_CA, "PATH",
	    conf_do_tls),
	D_IN(CONF_CTX_TARGET, "tls_name", 1, 1, false, CONF_ARG_NONE, "NAME",
	    conf_do_target_name),
	D_IN(CONF_CTX_TARGET, "tls_cert", 1, 1, false, CONF_ARG_TLS_CERT,
	    "PATH", conf_do_tls),
	D_IN(CONF_CTX_TARGET, "tls_key", 1, 1, false, CONF_ARG_TLS_KEY, "PATH",
	    conf_do_tls),
	D_IN(CONF_CTX_TARGET, "connections", 1, 1, false,
	    CONF_ARG_T_CONNECTIONS, "N", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "rate", 1, 1, false, CONF_ARG_T_RATE, "N",
	    conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "messages_per_connection", 1, 1, false,
	    CONF_ARG_T_MESSAGES, "N", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "timeout_connect", 1, 1, false,
	    CONF_ARG_T_TIMEOUT_CONNECT, "DURATION", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "timeout_command", 1, 1, false,
	    CONF_ARG_T_TIMEOUT_COMMAND, "DURATION", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "timeout_data", 1, 1, false,
	    CONF_ARG_T_TIMEOUT_DATA, "DURATION", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "helo", 1, 1, false, CONF_ARG_NONE, "NAME",
	    conf_do_target_name),
	D_IN(CONF_CTX_TARGET, "rewrite", 2, 2, true, CONF_ARG_NONE, "@FROM @TO",
	    conf_do_rewrite),
	D_IN(CONF_CTX_TARGET, "srs", 1, 1, false, CONF_ARG_NONE, "yes|no",
	    conf_do_target_srs),
	D_IN(CONF_CTX_TARGET, "source_address", 1, 1, false, CONF_ARG_NONE,
	    "ADDR", conf_do_target_source),
	D_TOP("srs_domain", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "NAME",
	    conf_do_srs),
	D_TOP("srs_secret_file", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "PATH", conf_do_srs),

	D_IN(CONF_CTX_WAVE, "state", 1, 1, false, CONF_ARG_NONE,
	    "legacy|dual|cloud", conf_do_state),
	D_IN(CONF_CTX_WAVE, "targets", 1, -1, false, CONF_ARG_NONE, "TARGET...",
	    conf_do_set),
	D_IN(CONF_CTX_WAVE, "members", 1, -1, true, CONF_ARG_NONE, "ADDRESS...",
	    conf_do_members),
	D_IN(CONF_CTX_WAVE, "members_file", 1, 1, false, CONF_ARG_NONE, "PATH",
	    conf_do_members_file),

	D_IN(CONF_CTX_QUEUE, "retry_initial", 1, 1, false,
	    CONF_ARG_Q_RETRY_INITIAL, "DURATION", conf_do_queue),
	D_IN(CONF_CTX_QUEUE, "retry_max", 1, 1, false, CONF_ARG_Q_RETRY_MAX,
	    "DURATION", conf_do_queue),
	D_IN(CONF_CTX_QUEUE, "lifetime", 1, 1, false, CONF_ARG_Q_LIFETIME,
	    "DURATION", conf_do_queue),
	D_IN(CONF_CTX_QUEUE, "delay_warning", 1, 1, false,
	    CONF_ARG_Q_DELAY_WARNING, "DURATION", conf_do_queue),
};

const size_t conf_ndirectives = sizeof(conf_directives) /
    sizeof(conf_directives[0]);

/*
 * Directive handlers. p->words[0] is the keyword; the argument count has
 * been checked against the table.
 */

static int
conf_do_hostname(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (!conf_domain_valid(arg, false))
		return conf_errc(p, line,
		    "'%s' needs a valid host name, "
		    "got '%s'",
		    dir->name, conf_show(p, arg));
	free(p->conf->hostname);
	p->conf->hostname = xstrdup(arg);
	return 0;
}

/* Resolves a path argument into *out; empty paths are refused. */
int
conf_path_arg(struct conf_parser *p, const struct conf_directive *dir, int line,
    char **out)
{
	const char *arg = p->words[1];

	if (arg[0] == '\0')
		return conf_errc(p, line,
		    "'%s' needs a path, got an empty "
		    "string",
		    dir->name);
	free(*out);
	*out = conf_resolve(p->basedir, arg);
	return 0;
}

static int
conf_do_spool_dir(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	return conf_path_arg(p, dir, line, &p->conf->spool_dir);
}

static bool
conf_user_valid(const char *s)
{
	size_t i;

	if (s[0] == '\0' || s[0] == '-' || strlen(s) > CONF_USER_MAX)
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' &&
		    s[i] != '-' && s[i] != '.')
			return false;
	return true;
}

static int
conf_do_user(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	const char *arg = p->words[1];

	if (!conf_user_valid(arg))
		return conf_errc(p, line,
		    "'%s' needs a user name (letters, "
		    "digits, '.', '_', '-'; at most %d), got '%s'",
		    dir->name, CONF_USER_MAX, conf_show(p, arg));
	free(p->conf->user);
	p->conf->user = xstrdup(arg);
	return 0;
}

static int
conf_do_workers(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	uint64_t v;

	if (conf_parse_scaled(arg, conf_units_none, CONF_WORKERS_MAX, &v) !=
	        0 ||
	    v < 1)
		return conf_errc(p, line,
		    "'%s' must be a number from 1 to "
		    "%d, got '%s'",
		    dir->name, CONF_WORKERS_MAX, conf_show(p, arg));
	p->conf->workers = (unsigned)v;
	return 0;
}

static int
conf_do_tls(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_listener *l;
	bool cert = dir->arg == CONF_ARG_TLS_CERT;

	if (p->ctx == CONF_CTX_TOP) {
		if (cert)
			p->tls_cert_line = line;
		else
			p->tls_key_line = line;
		return conf_path_arg(p, dir, line,
		    cert ? &p->tls_cert : &p->tls_key);
	}
	if (p->ctx == CONF_CTX_TARGET) {
		struct conf_target *t = &p->conf->targets[p->cur];

		if (dir->arg == CONF_ARG_TLS_CA)
			return conf_path_arg(p, dir, line, &t->tls_ca);
		return conf_path_arg(p, dir, line,
		    cert ? &t->tls_cert : &t->tls_key);
	}
	l = &p->conf->listeners[p->cur];
	return conf_path_arg(p, dir, line, cert ? &l->tls_cert : &l->tls_key);
}

/* Splits "ADDR:PORT" into a host ("*", IPv4, or IPv6 without brackets). */
static int
conf_do_listen(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_listener *l;
	const char *arg = p->words[1], *colon, *port;
	char *host, addr[sizeof(struct in6_addr)];
	char portbuf[8];
	uint64_t v;
	size_t i;

	(void)dir;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL)
			return conf_errc(p, line,
			    "listen: missing ']' after "
			    "the IPv6 address in '%s'",
			    conf_show(p, arg));
		if (close[1] != ':')
			return conf_errc(p, line,
			    "listen: expected ':PORT' "
			    "after ']' in '%s'",
			    conf_show(p, arg));
		host = xstrndup(arg + 1, (size_t)(close - arg - 1));
		port = close + 2;
		if (inet_pton(AF_INET6, host, addr) != 1) {
			conf_errc(p, line,
			    "listen: '%s' is not an IPv6 "
			    "address",
			    conf_show(p, host));
			free(host);
			return -1;
		}
	} else {
		colon = strrchr(arg, ':');
		if (colon == NULL)
			return conf_errc(p, line,
			    "listen: expected ADDR:PORT, "
			    "got '%s'",
			    conf_show(p, arg));
		host = xstrndup(arg, (size_t)(colon - arg));
		port = colon + 1;
		if (strchr(host, ':') != NULL) {
			conf_errc(p, line,
			    "listen: an IPv6 address must be "
			    "in brackets, as in [::1]:25, got '%s'",
			    conf_show(p, arg));
			free(host);
			return -1;
		}
		if (strcmp(host, "*") != 0 &&
		    inet_pton(AF_INET, host, addr) != 1) {
			conf_errc(p, line,
			    "listen: '%s' is not an IPv4 "
			    "address, [IPv6] address or '*'",
			    conf_show(p, host));
			free(host);
			return -1;
		}
	}
	if (conf_parse_scaled(port, conf_units_none, 65535, &v) != 0 ||
	    v == 0) {
		conf_errc(p, line,
		    "listen: bad port '%s' in '%s' (expected "
		    "1-65535)",
		    conf_show(p, port), conf_show(p, arg));
		free(host);
		return -1;
	}
	(void)snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)v);
	for (i = 0; i < conf->nlisteners; i++) {
		l = &conf->listeners[i];
		if (strcmp(l->host, host) == 0 &&
		    strcmp(l->port, portbuf) == 0) {
			conf_errc(p, line,
			    "listen: duplicate address '%s' "
			    "(first at line %d)",
			    conf_show(p, arg), l->line);
			free(host);
			return -1;
		}
	}
	if (conf->nlisteners == p->listeners_cap) {
		p->listeners_cap = p->listeners_cap ? p->listeners_cap * 2 : 4;
		conf->listeners = xreallocarray(conf->listeners,
		    p->listeners_cap, sizeof(conf->listeners[0]));
	}
	l = &conf->listeners[conf->nlisteners];
	memset(l, 0, sizeof(*l));
	l->host = host;
	l->port = xstrdup(portbuf);
	l->line = line;
	p->cur = conf->nlisteners++;
	return 0;
}

static int
conf_do_block(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	(void)p;
	(void)dir;
	(void)line;
	return 0;
}

static int
conf_do_domain(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_domain *d;
	char *name;
	long dup;
	size_t i;

	(void)dir;
	name = xstrdup(p->words[1]);
	for (i = 0; name[i] != '\0'; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	if (!conf_domain_valid(name, true)) {
		conf_errc(p, line,
		    "domain: '%s' is not a domain name or "
		    "'*.' followed by one",
		    conf_show(p, p->words[1]));
		free(name);
		return -1;
	}
	if ((dup = conf_set_add(&p->domset, conf, conf_domain_name_at,
	         conf->ndomains, name)) != -1) {
		conf_errc(p, line,
		    "domain: duplicate domain '%s' (first at "
		    "line %d)",
		    conf_show(p, name), conf->domains[dup].line);
		free(name);
		return -1;
	}
	if (conf->ndomains == p->domains_cap) {
		p->domains_cap = p->domains_cap ? p->domains_cap * 2 : 8;
		conf->domains = xreallocarray(conf->domains, p->domains_cap,
		    sizeof(conf->domains[0]));
	}
	d = &conf->domains[conf->ndomains];
	memset(d, 0, sizeof(*d));
	d->name = name;
	d->line = line;
	d->verify_target = -1;
	d->label = conf_label("domain", name);
	p->cur = conf->ndomains++;
	return 0;
}

static unsigned *
conf_limit_field(struct conf_limits *lim, enum conf_arg arg)
{
	switch (arg) {
	case CONF_ARG_RECIPIENTS:
		return &lim->recipients;
	case CONF_ARG_CONNECTIONS:
		return &lim->connections;
	case CONF_ARG_CONNECTIONS_PER_IP:
		return &lim->connections_per_ip;
	case CONF_ARG_ERRORS:
		return &lim->errors;
	case CONF_ARG_MAX_RECEIVED:
		return &lim->max_received;
	case CONF_ARG_TIMEOUT_COMMAND:
		return &lim->timeout_command;
	case CONF_ARG_TIMEOUT_DATA:
		return &lim->timeout_data;
	case CONF_ARG_TIMEOUT_TLS:
		return &lim->timeout_tls;
	case CONF_ARG_SHUTDOWN_GRACE:
		return &lim->shutdown_grace;
	case CONF_ARG_DATA_DEADLINE:
		return &lim->data_deadline;
	case CONF_ARG_SESSION_DEADLINE:
		return &lim->session_deadline;
	case CONF_ARG_STRESS_THRESHOLD:
		return &lim->stress_threshold;
	case CONF_ARG_STRESS_TIMEOUT:
		return &lim->stress_timeout;
	case CONF_ARG_STRESS_DEADLINE:
		return &lim->stress_deadline;
	default:
		log_panic("conf_limit_field: no field for %d", (int)arg);
	}
}

static int
conf_do_limit(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	const char *arg = p->words[1];
	const struct conf_unit *units;
	const char *what;
	uint64_t v, max;
	int rc;

	switch (dir->arg) {
	case CONF_ARG_MESSAGE_SIZE:
		units = conf_units_size;
		max = UINT64_MAX;
		what = "a size (a number with an optional K, M or G suffix)";
		break;
	case CONF_ARG_TIMEOUT_COMMAND:
	case CONF_ARG_TIMEOUT_DATA:
	case CONF_ARG_TIMEOUT_TLS:
	case CONF_ARG_SHUTDOWN_GRACE:
	case CONF_ARG_DATA_DEADLINE:
	case CONF_ARG_SESSION_DEADLINE:
	case CONF_ARG_STRESS_TIMEOUT:
	case CONF_ARG_STRESS_DEADLINE:
		units = conf_units_duration;
		max = UINT_MAX;
		what = "a duration (a number with an optional s, m, h or d "
		       "suffix)";
		break;
	default:
		units = conf_units_none;
		max = UINT_MAX;
		what = "a positive number";
		break;
	}
	rc = conf_parse_scaled(arg, units, max, &v);
	if (rc == -1)
		return conf_errc(p, line, "'%s' needs %s, got '%s'", dir->name,
		    what, conf_show(p, arg));
	if (rc == -2)
		return conf_errc(p, line, "'%s' value '%s' is too large",
		    dir->name, conf_show(p, arg));
	/* A deadline or the stress threshold of 0 turns it off. */
	if (v == 0 && dir->arg != CONF_ARG_DATA_DEADLINE &&
	    dir->arg != CONF_ARG_SESSION_DEADLINE &&
	    dir->arg != CONF_ARG_STRESS_THRESHOLD)
		return conf_errc(p, line,
		    "'%s' must be greater than zero, "
		    "got '%s'",
		    dir->name, conf_show(p, arg));
	if (dir->arg == CONF_ARG_STRESS_THRESHOLD && v > 100)
		return conf_errc(p, line,
		    "'%s' is a percentage (0 to 100), got '%s'", dir->name,
		    conf_show(p, arg));
	if (dir->arg == CONF_ARG_MESSAGE_SIZE)
		p->conf->limits.message_size = v;
	else
		*conf_limit_field(&p->conf->limits, dir->arg) = (unsigned)v;
	return 0;
}

static int
conf_do_bare_newline(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (strcmp(arg, "normalize") == 0)
		p->conf->limits.bare_newline = CONF_NEWLINE_NORMALIZE;
	else if (strcmp(arg, "reject") == 0)
		p->conf->limits.bare_newline = CONF_NEWLINE_REJECT;
	else
		return conf_errc(p, line,
		    "'%s' must be 'normalize' or "
		    "'reject', got '%s'",
		    dir->name, conf_show(p, arg));
	return 0;
}

static int
conf_do_destination(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (strcmp(arg, "syslog") == 0)
		p->conf->log_stderr = false;
	else if (strcmp(arg, "stderr") == 0)
		p->conf->log_stderr = true;
	else
		return conf_errc(p, line,
		    "'%s' must be 'syslog' or "
		    "'stderr', got '%s'",
		    dir->name, conf_show(p, arg));
	return 0;
}

static int
conf_do_facility(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	int f;

	if ((f = log_facility_from_name(arg)) == -1)
		return conf_errc(p, line,
		    "unknown %s '%s' (mail, daemon, "
		    "user, local0 to local7)",
		    dir->name, conf_show(p, arg));
	p->conf->log_facility = f;
	return 0;
}

static int
conf_do_level(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = {
		{ "debug", LOG_LEVEL_DEBUG },
		{ "info", LOG_LEVEL_INFO },
		{ "warning", LOG_LEVEL_WARN },
		{ "error", LOG_LEVEL_ERR },
	};
	const char *arg = p->words[1];
	size_t i;

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(arg, levels[i].name) == 0) {
			p->conf->log_level = (int)levels[i].level;
			return 0;
		}
	}
	return conf_errc(p, line,
	    "'%s' must be debug, info, warning or "
	    "error, got '%s'",
	    dir->name, conf_show(p, arg));
}

static int
conf_do_recipients(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_domain *d = &p->conf->domains[p->cur];
	char *local;
	size_t i;

	(void)dir;
	/* One realloc per statement: lists can be long. */
	d->recipients = xreallocarray(d->recipients,
	    d->nrecipients + p->nwords - 1, sizeof(d->recipients[0]));
	for (i = 1; i < p->nwords; i++) {
		const char *pat = p->words[i];

		local = conf_pattern_new(d, pat, strlen(pat), &p->why);
		if (local == NULL)
			return conf_errc(p, line, "pattern '%s' %s",
			    conf_show(p, pat), p->why.data);
		d->recipients[d->nrecipients++] = local;
	}
	d->has_list = true;
	return 0;
}

static int
conf_do_recipients_file(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_domain *d = &p->conf->domains[p->cur];

	if (conf_path_arg(p, dir, line, &d->recipients_file) == -1)
		return -1;
	d->has_list = true;
	return 0;
}

static int
conf_do_resolvers(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	char addr[INET6_ADDRSTRLEN];
	struct sbuf csv;
	unsigned port;
	size_t i;
	int af;

	if (p->nwords - 1 > CONF_RESOLVERS_MAX)
		return conf_errc(p, line, "'%s' takes at most %d addresses",
		    dir->name, CONF_RESOLVERS_MAX);
	/* The form ares_set_servers_ports_csv takes: [v6]:port, v4:port. */
	sbuf_init(&csv, CONF_RESOLVERS_MAX * (INET6_ADDRSTRLEN + 10));
	for (i = 1; i < p->nwords; i++) {
		if (conf_parse_ip_port(p->words[i], &af, addr, sizeof(addr),
		        &port, &p->why) == -1) {
			sbuf_release(&csv);
			return conf_errc(p, line, "%s: '%s' %s", dir->name,
			    conf_show(p, p->words[i]), p->why.data);
		}
		/* Fits: the cap allows the longest address for each. */
		(void)sbuf_printf(&csv, "%s%s%s%s:%u", i > 1 ? "," : "",
		    af == AF_INET6 ? "[" : "", addr, af == AF_INET6 ? "]" : "",
		    port != 0 ? port : 53);
	}
	free(p->conf->resolvers);
	p->conf->resolvers = xstrndup(csv.data, csv.len);
	sbuf_release(&csv);
	return 0;
}

/*
 * Queue block.
 */

static int
conf_do_queue(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_queue *q = &p->conf->queue;
	const char *arg = p->words[1];
	uint64_t v;
	int rc;

	rc = conf_parse_scaled(arg, conf_units_duration, UINT_MAX, &v);
	if (rc == -1)
		return conf_errc(p, line,
		    "'%s' needs a duration (a number "
		    "with an optional s, m, h or d suffix), got '%s'",
		    dir->name, conf_show(p, arg));
	if (rc == -2)
		return conf_errc(p, line, "'%s' value '%s' is too large",
		    dir->name, conf_show(p, arg));
	if (v == 0 && dir->arg != CONF_ARG_Q_DELAY_WARNING)
		return conf_errc(p, line,
		    "'%s' must be greater than zero, "
		    "got '%s'",
		    dir->name, conf_show(p, arg));
	switch (dir->arg) {
	case CONF_ARG_Q_RETRY_INITIAL:
		q->retry_initial = (unsigned)v;
		break;
	case CONF_ARG_Q_RETRY_MAX:
		q->retry_max = (unsigned)v;
		break;
	case CONF_ARG_Q_LIFETIME:
		q->lifetime = (unsigned)v;
		break;
	case CONF_ARG_Q_DELAY_WARNING:
		q->delay_warning = (unsigned)v;
		break;
	default:
		log_panic("conf_do_queue: no field for %d", (int)dir->arg);
	}
	return 0;
}

/*
 * Top-level options: verification, duplicates, checks on arrival, SRS.
 */

/* Recipient verification: how long answers are cached, and 450 or not. */
static int
conf_do_verify_opts(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	uint64_t v;

	if (dir->arg == CONF_ARG_V_TEMPFAIL || dir->arg == CONF_ARG_D_ENABLE ||
	    dir->arg == CONF_ARG_REVERSE_LOOKUP ||
	    dir->arg == CONF_ARG_AUTH_CHECKS ||
	    dir->arg == CONF_ARG_SPF_REJECT) {
		bool yes;

		if (strcmp(arg, "yes") == 0)
			yes = true;
		else if (strcmp(arg, "no") == 0)
			yes = false;
		else
			return conf_errc(p, line,
			    "'%s' needs yes or no, got "
			    "'%s'",
			    dir->name, conf_show(p, arg));
		if (dir->arg == CONF_ARG_V_TEMPFAIL)
			p->conf->verify_tempfail = yes;
		else if (dir->arg == CONF_ARG_REVERSE_LOOKUP)
			p->conf->reverse_lookup = yes;
		else if (dir->arg == CONF_ARG_AUTH_CHECKS)
			p->conf->auth_checks = yes;
		else if (dir->arg == CONF_ARG_SPF_REJECT)
			p->conf->spf_reject = yes;
		else
			p->conf->duplicates = yes;
		return 0;
	}
	if (dir->arg == CONF_ARG_D_MAX_SIZE || dir->arg == CONF_ARG_J_SEGMENT) {
		if (conf_parse_scaled(arg, conf_units_size, UINT64_MAX, &v) !=
		        0 ||
		    v < 1024 * 1024)
			return conf_errc(p, line,
			    "'%s' needs a size of at least "
			    "1M, got '%s'",
			    dir->name, conf_show(p, arg));
		if (dir->arg == CONF_ARG_J_SEGMENT)
			p->conf->journal_segment_size = v;
		else
			p->conf->duplicate_max_size = v;
		return 0;
	}
	if (conf_parse_scaled(arg, conf_units_duration, UINT_MAX, &v) != 0 ||
	    v == 0)
		return conf_errc(p, line,
		    "'%s' needs a positive duration, "
		    "got '%s'",
		    dir->name, conf_show(p, arg));
	if (dir->arg == CONF_ARG_D_WINDOW)
		p->conf->duplicate_window = (unsigned)v;
	else if (dir->arg == CONF_ARG_J_RETENTION)
		p->conf->journal_retention = (unsigned)v;
	else
		p->conf->verify_cache = (unsigned)v;
	return 0;
}

/* srs_domain NAME and srs_secret_file PATH (read by conf_load). */
static int
conf_do_srs(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	const char *v = p->words[1];

	if (strcmp(dir->name, "srs_domain") == 0) {
		if (!conf_hostname_valid(v))
			return conf_errc(p, line, "%s: '%s' is not a domain",
			    dir->name, conf_show(p, v));
		free(p->conf->srs_domain);
		p->conf->srs_domain = xstrdup(v);
		return 0;
	}
	free(p->conf->srs_secret_file);
	p->conf->srs_secret_file = conf_resolve(p->basedir, v);
	return 0;
}

/* Our name in Authentication-Results (RFC 8601 authserv-id). */
static int
conf_do_authserv(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *v = p->words[1], *c;

	for (c = v; *c != '\0'; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		        (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' ||
		        *c == '_'))
			return conf_errc(p, line, "%s: '%s' is not a host name",
			    dir->name, conf_show(p, v));
	free(p->conf->authserv_id);
	p->conf->authserv_id = xstrdup(v);
	return 0;
}

/* Hosts whose mail is returning mail (the targets' outbound addresses). */
static int
conf_do_trusted(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	unsigned char bin[sizeof(struct in6_addr)];
	struct conf *conf = p->conf;
	size_t i;

	for (i = 1; i < p->nwords; i++) {
		const char *a = p->words[i];

		/* An address: a client; a name: a peer node (its trace). */
		if (inet_pton(AF_INET, a, bin) != 1 &&
		    inet_pton(AF_INET6, a, bin) != 1 &&
		    !conf_domain_valid(a, false))
			return conf_errc(p, line,
			    "%s: '%s' is neither an IP address nor a host "
			    "name",
			    dir->name, conf_show(p, a));
		conf->trusted_hosts = xreallocarray(conf->trusted_hosts,
		    conf->ntrusted_hosts + 1, sizeof(*conf->trusted_hosts));
		conf->trusted_hosts[conf->ntrusted_hosts++] = xstrdup(a);
	}
	return 0;
}
