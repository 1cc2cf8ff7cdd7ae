/*
 * conf_targets.c - the directives that define or name targets: target
 * blocks, waves, routes, domain target sets and default_target.
 *
 * Target names may be used before their block: every reference is queued
 * with its line and resolved by conf_check.c once the whole file is read.
 * A handler checks one statement; the shape of a whole target block (its
 * type, the options that fit it, one next hop) is checked when it closes.
 */
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

/*
 * Target references.
 */

static void
conf_ref_add(struct conf_parser *p, const char *name, int line,
    enum conf_ref_kind kind, size_t owner, size_t pos)
{
	struct conf_ref *r;

	if (p->nrefs == p->refs_cap) {
		p->refs_cap = p->refs_cap ? p->refs_cap * 2 : 16;
		p->refs = xreallocarray(p->refs, p->refs_cap,
		    sizeof(p->refs[0]));
	}
	r = &p->refs[p->nrefs++];
	r->name = xstrdup(name);
	r->line = line;
	r->kind = kind;
	r->owner = owner;
	r->pos = pos;
}

/*
 * Checks the target names p->words[first..] of one set and returns the
 * array for it, each name queued for conf_resolve_refs; NULL after an
 * error. what prefixes messages at the top level ("route: ").
 */
static size_t *
conf_targets_new(struct conf_parser *p, int line, size_t first,
    enum conf_ref_kind kind, size_t owner, const char *what)
{
	size_t n = p->nwords - first, i, j;

	if (n > CONF_TARGET_SET_MAX) {
		conf_errc(p, line, "%sat most %d targets in one set, got %zu",
		    what, CONF_TARGET_SET_MAX, n);
		return NULL;
	}
	for (i = first; i < p->nwords; i++) {
		if (!conf_name_valid(p->words[i])) {
			conf_errc(p, line, "%s'%s' is not a target name", what,
			    conf_show(p, p->words[i]));
			return NULL;
		}
		for (j = first; j < i; j++) {
			if (strcmp(p->words[j], p->words[i]) == 0) {
				conf_errc(p, line,
				    "%starget '%s' is listed "
				    "twice",
				    what, conf_show(p, p->words[i]));
				return NULL;
			}
		}
	}
	for (i = 0; i < n; i++)
		conf_ref_add(p, p->words[first + i], line, kind, owner, i);
	return xcalloc(n, sizeof(size_t));
}

/*
 * Top-level directives for delivery.
 */

int
conf_do_default_target(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	if (!conf_name_valid(p->words[1]))
		return conf_errc(p, line, "%s: '%s' is not a target name",
		    dir->name, conf_show(p, p->words[1]));
	conf_ref_add(p, p->words[1], line, CONF_REF_DEFAULT, 0, 0);
	return 0;
}

int
conf_do_target(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_target *t;
	const char *name = p->words[1];
	long dup;

	(void)dir;
	if (!conf_name_valid(name))
		return conf_errc(p, line,
		    "target: '%s' is not a valid name "
		    "(a letter or digit, then letters, digits, '.', '_', "
		    "'-'; at most %d)",
		    conf_show(p, name), CONF_NAME_MAX);
	if ((dup = conf_set_add(&p->tset, conf, conf_target_name_at,
	         conf->ntargets, name)) != -1)
		return conf_errc(p, line,
		    "target: duplicate target '%s' "
		    "(first at line %d)",
		    conf_show(p, name), conf->targets[dup].line);
	if (conf->ntargets == p->targets_cap) {
		p->targets_cap = p->targets_cap ? p->targets_cap * 2 : 4;
		conf->targets = xreallocarray(conf->targets, p->targets_cap,
		    sizeof(conf->targets[0]));
	}
	t = &conf->targets[conf->ntargets];
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	t->connections = 10;
	t->rate = 0;
	t->messages_per_connection = 100;
	t->timeout_connect = 30;
	t->timeout_command = 300;
	t->timeout_data = 600;
	t->line = line;
	p->cur = conf->ntargets++;
	return 0;
}

int
conf_do_wave(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf *conf = p->conf;
	struct conf_wave *w;
	const char *name = p->words[1];
	long dup;

	(void)dir;
	if (!conf_name_valid(name))
		return conf_errc(p, line,
		    "wave: '%s' is not a valid name "
		    "(a letter or digit, then letters, digits, '.', '_', "
		    "'-'; at most %d)",
		    conf_show(p, name), CONF_NAME_MAX);
	if ((dup = conf_set_add(&p->wset, conf, conf_wave_name_at, conf->nwaves,
	         name)) != -1)
		return conf_errc(p, line,
		    "wave: duplicate wave '%s' (first "
		    "at line %d)",
		    conf_show(p, name), conf->waves[dup].line);
	if (conf->nwaves == p->waves_cap) {
		p->waves_cap = p->waves_cap ? p->waves_cap * 2 : 4;
		conf->waves = xreallocarray(conf->waves, p->waves_cap,
		    sizeof(conf->waves[0]));
	}
	w = &conf->waves[conf->nwaves];
	memset(w, 0, sizeof(*w));
	w->name = xstrdup(name);
	w->state = CONF_WAVE_TARGETS;
	w->line = line;
	w->label = conf_label("wave", name);
	p->cur = conf->nwaves++;
	return 0;
}

/* A lower-cased copy of a route pattern; NULL with err (a predicate). */
static char *
conf_route_pattern_new(const char *s, struct sbuf *err)
{
	size_t len = strlen(s), i;
	char *out;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			sbuf_seterr(err, "contains a control character");
			return NULL;
		}
	}
	if (strchr(s, '@') == NULL) {
		sbuf_seterr(err,
		    "is not an address pattern (local@domain, "
		    "as in *@sales.example.com)");
		return NULL;
	}
	if (len > CONF_ROUTE_MAX) {
		sbuf_seterr(err, "is longer than %d bytes", CONF_ROUTE_MAX);
		return NULL;
	}
	for (i = len; i > 0 && s[i - 1] == '\\'; i--)
		continue;
	if ((len - i) % 2 == 1) {
		sbuf_seterr(err, "ends with a lone '\\'");
		return NULL;
	}
	out = xstrdup(s);
	conf_lower(out);
	return out;
}

int
conf_do_route(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf *conf = p->conf;
	struct conf_route *r;
	char *pattern;
	size_t *set;

	(void)dir;
	if ((pattern = conf_route_pattern_new(p->words[1], &p->why)) == NULL)
		return conf_errc(p, line, "route: pattern '%s' %s",
		    conf_show(p, p->words[1]), p->why.data);
	set = conf_targets_new(p, line, 2, CONF_REF_ROUTE, conf->nroutes,
	    "route: ");
	if (set == NULL) {
		free(pattern);
		return -1;
	}
	if (conf->nroutes == p->routes_cap) {
		p->routes_cap = p->routes_cap ? p->routes_cap * 2 : 8;
		conf->routes = xreallocarray(conf->routes, p->routes_cap,
		    sizeof(conf->routes[0]));
	}
	r = &conf->routes[conf->nroutes++];
	memset(r, 0, sizeof(*r));
	r->pattern = pattern;
	r->targets = set;
	r->ntargets = p->nwords - 2;
	r->line = line;
	r->label = conf_label("route", pattern);
	return 0;
}

/*
 * Domain and wave blocks: target sets.
 */

int
conf_do_set(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	size_t *set;
	int other;

	(void)dir;
	if (p->ctx == CONF_CTX_WAVE) {
		struct conf_wave *w = &p->conf->waves[p->cur];

		if ((other = conf_seen_line(p, CONF_CTX_WAVE, "state")) != 0)
			return conf_errc(p, line,
			    "'state' (line %d) and "
			    "'targets' cannot both be given",
			    other);
		if ((set = conf_targets_new(p, line, 1, CONF_REF_WAVE, p->cur,
		         "")) == NULL)
			return -1;
		w->targets = set;
		w->ntargets = p->nwords - 1;
		w->state = CONF_WAVE_TARGETS;
	} else {
		struct conf_domain *d = &p->conf->domains[p->cur];

		if ((set = conf_targets_new(p, line, 1, CONF_REF_DOMAIN, p->cur,
		         "")) == NULL)
			return -1;
		d->targets = set;
		d->ntargets = p->nwords - 1;
	}
	return 0;
}

int
conf_do_verify(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	if (!conf_name_valid(p->words[1]))
		return conf_errc(p, line, "%s: '%s' is not a target name",
		    dir->name, conf_show(p, p->words[1]));
	conf_ref_add(p, p->words[1], line, CONF_REF_VERIFY, p->cur, 0);
	return 0;
}

int
conf_do_state(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_wave *w = &p->conf->waves[p->cur];
	const char *arg = p->words[1];
	const char *names[2];
	size_t n, i;
	int other;

	if ((other = conf_seen_line(p, CONF_CTX_WAVE, "targets")) != 0)
		return conf_errc(p, line,
		    "'targets' (line %d) and 'state' "
		    "cannot both be given",
		    other);
	if (strcmp(arg, "legacy") == 0) {
		w->state = CONF_WAVE_LEGACY;
		names[0] = "legacy";
		n = 1;
	} else if (strcmp(arg, "dual") == 0) {
		w->state = CONF_WAVE_DUAL;
		names[0] = "legacy";
		names[1] = "cloud";
		n = 2;
	} else if (strcmp(arg, "cloud") == 0) {
		w->state = CONF_WAVE_CLOUD;
		names[0] = "cloud";
		n = 1;
	} else
		return conf_errc(p, line,
		    "'%s' must be legacy, dual or "
		    "cloud, got '%s'",
		    dir->name, conf_show(p, arg));
	for (i = 0; i < n; i++)
		conf_ref_add(p, names[i], line, CONF_REF_STATE, p->cur, i);
	w->targets = xcalloc(n, sizeof(w->targets[0]));
	w->ntargets = n;
	return 0;
}

int
conf_do_members(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_wave *w = &p->conf->waves[p->cur];
	char *addr;
	size_t i;

	(void)dir;
	w->members = xreallocarray(w->members, w->nmembers + p->nwords - 1,
	    sizeof(w->members[0]));
	for (i = 1; i < p->nwords; i++) {
		const char *a = p->words[i];

		if ((addr = conf_address_new(a, strlen(a), &p->why)) == NULL)
			return conf_errc(p, line, "member '%s' %s",
			    conf_show(p, a), p->why.data);
		w->members[w->nmembers++] = addr;
	}
	return 0;
}

int
conf_do_members_file(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	return conf_path_arg(p, dir, line,
	    &p->conf->waves[p->cur].members_file);
}

/*
 * Target blocks.
 */

/* host, mx and socket exclude each other: one next hop per target. */
static int
conf_hop_conflict(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	static const char *const hops[] = { "host", "mx", "socket" };
	size_t i;
	int other;

	for (i = 0; i < sizeof(hops) / sizeof(hops[0]); i++) {
		if (strcmp(hops[i], dir->name) == 0)
			continue;
		if ((other = conf_seen_line(p, CONF_CTX_TARGET, hops[i])) != 0)
			return conf_errc(p, line,
			    "'%s' (line %d) and '%s' "
			    "cannot both be given",
			    hops[i], other, dir->name);
	}
	return 0;
}

int
conf_do_type(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *arg = p->words[1];

	if (strcmp(arg, "smtp") == 0)
		t->type = CONF_TARGET_SMTP;
	else if (strcmp(arg, "lmtp") == 0)
		t->type = CONF_TARGET_LMTP;
	else if (strcmp(arg, "maildir") == 0)
		t->type = CONF_TARGET_MAILDIR;
	else
		return conf_errc(p, line,
		    "'%s' must be smtp, lmtp or "
		    "maildir, got '%s'",
		    dir->name, conf_show(p, arg));
	return 0;
}

/* "1".."65535" into a new normalized string; NULL if not a port. */
static char *
conf_port_new(const char *s)
{
	char buf[8];
	uint64_t v;

	if (conf_parse_scaled(s, conf_units_none, 65535, &v) != 0 || v == 0)
		return NULL;
	(void)snprintf(buf, sizeof(buf), "%u", (unsigned)v);
	return xstrdup(buf);
}

/* HOST[:PORT]: a host name, an IPv4 address or an [IPv6] address. */
int
conf_do_host(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *arg = p->words[1], *port = NULL, *colon;
	char *host, *portstr = NULL;

	if (conf_hop_conflict(p, dir, line) == -1)
		return -1;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL)
			return conf_errc(p, line,
			    "'host' is missing the ']' "
			    "after the IPv6 address in '%s'",
			    conf_show(p, arg));
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return conf_errc(p, line,
			    "'host' needs ':PORT' or "
			    "nothing after ']' in '%s'",
			    conf_show(p, arg));
		host = xstrndup(arg + 1, (size_t)(close - arg - 1));
		if (inet_pton(AF_INET6, host, bin) != 1) {
			conf_errc(p, line,
			    "'host': '%s' is not an IPv6 "
			    "address",
			    conf_show(p, host));
			free(host);
			return -1;
		}
	} else {
		colon = strchr(arg, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return conf_errc(p, line,
			    "'host': an IPv6 address "
			    "must be in brackets, as in [2001:db8::25]:25, got "
			    "'%s'",
			    conf_show(p, arg));
		host = colon != NULL ? xstrndup(arg, (size_t)(colon - arg)) :
		                       xstrdup(arg);
		port = colon != NULL ? colon + 1 : NULL;
		if (inet_pton(AF_INET, host, bin) != 1 &&
		    !conf_hostname_valid(host)) {
			conf_errc(p, line,
			    "'host': '%s' is not a host name, "
			    "an IPv4 address or an [IPv6] address",
			    conf_show(p, host));
			free(host);
			return -1;
		}
	}
	if (port != NULL && (portstr = conf_port_new(port)) == NULL) {
		conf_errc(p, line,
		    "'host': bad port '%s' in '%s' (expected "
		    "1-65535)",
		    conf_show(p, port), conf_show(p, arg));
		free(host);
		return -1;
	}
	free(t->host);
	t->host = host;
	if (portstr != NULL) {
		free(t->port);
		t->port = portstr;
	}
	return 0;
}

int
conf_do_mx(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *arg = p->words[1];

	if (conf_hop_conflict(p, dir, line) == -1)
		return -1;
	if (strcmp(arg, "*") != 0 && !conf_hostname_valid(arg))
		return conf_errc(p, line,
		    "'mx' needs a domain name or '*', "
		    "got '%s'",
		    conf_show(p, arg));
	free(t->mx);
	t->mx = xstrdup(arg);
	conf_lower(t->mx);
	return 0;
}

int
conf_do_port(struct conf_parser *p, const struct conf_directive *dir, int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	char *port;

	if ((port = conf_port_new(p->words[1])) == NULL)
		return conf_errc(p, line,
		    "'%s' must be a number from 1 to "
		    "65535, got '%s'",
		    dir->name, conf_show(p, p->words[1]));
	free(t->port);
	t->port = port;
	return 0;
}

int
conf_do_socket(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];

	if (conf_hop_conflict(p, dir, line) == -1 ||
	    conf_path_arg(p, dir, line, &t->socket) == -1)
		return -1;
	if (strlen(t->socket) > CONF_SUN_PATH_MAX)
		return conf_errc(p, line,
		    "'%s' path is longer than %d bytes "
		    "once resolved: '%s'",
		    dir->name, CONF_SUN_PATH_MAX, conf_show(p, t->socket));
	return 0;
}

int
conf_do_maildir(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	return conf_path_arg(p, dir, line, &p->conf->targets[p->cur].path);
}

int
conf_do_target_tls(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	static const char *const names[] = { "none", "may", "encrypt",
		"verify" };
	static const enum conf_tls_policy policies[] = { CONF_TLS_NONE,
		CONF_TLS_MAY, CONF_TLS_ENCRYPT, CONF_TLS_VERIFY };
	const char *arg = p->words[1];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(arg, names[i]) == 0) {
			p->conf->targets[p->cur].tls = policies[i];
			return 0;
		}
	}
	return conf_errc(p, line,
	    "'%s' must be none, may, encrypt or verify, "
	    "got '%s'",
	    dir->name, conf_show(p, arg));
}

/* tls_name and helo: host names. */
int
conf_do_target_name(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	char **field = strcmp(dir->name, "helo") == 0 ? &t->helo : &t->tls_name;

	if (!conf_hostname_valid(p->words[1]))
		return conf_errc(p, line, "'%s' needs a host name, got '%s'",
		    dir->name, conf_show(p, p->words[1]));
	free(*field);
	*field = xstrdup(p->words[1]);
	return 0;
}

int
conf_do_target_num(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *arg = p->words[1];
	unsigned *field, min = 1, max = UINT_MAX;
	bool duration = false;
	uint64_t v;
	int rc;

	switch (dir->arg) {
	case CONF_ARG_T_CONNECTIONS:
		field = &t->connections;
		max = 10000;
		break;
	case CONF_ARG_T_RATE:
		field = &t->rate;
		min = 0;
		max = 1000000;
		break;
	case CONF_ARG_T_MESSAGES:
		field = &t->messages_per_connection;
		max = 1000000;
		break;
	case CONF_ARG_T_TIMEOUT_CONNECT:
		field = &t->timeout_connect;
		duration = true;
		break;
	case CONF_ARG_T_TIMEOUT_COMMAND:
		field = &t->timeout_command;
		duration = true;
		break;
	case CONF_ARG_T_TIMEOUT_DATA:
		field = &t->timeout_data;
		duration = true;
		break;
	default:
		log_panic("conf_do_target_num: no field for %d", (int)dir->arg);
	}
	if (duration) {
		rc = conf_parse_scaled(arg, conf_units_duration, max, &v);
		if (rc == -1)
			return conf_errc(p, line,
			    "'%s' needs a duration (a "
			    "number with an optional s, m, h or d suffix), "
			    "got '%s'",
			    dir->name, conf_show(p, arg));
		if (rc == -2)
			return conf_errc(p, line,
			    "'%s' value '%s' is too "
			    "large",
			    dir->name, conf_show(p, arg));
		if (v == 0)
			return conf_errc(p, line,
			    "'%s' must be greater than "
			    "zero, got '%s'",
			    dir->name, conf_show(p, arg));
	} else if (conf_parse_scaled(arg, conf_units_none, max, &v) != 0 ||
	    v < min)
		return conf_errc(p, line,
		    "'%s' must be a number from %u to "
		    "%u, got '%s'",
		    dir->name, min, max, conf_show(p, arg));
	*field = (unsigned)v;
	return 0;
}

/* "@DOMAIN" into a new lower-cased "domain"; NULL if not of that form. */
static char *
conf_at_domain_new(const char *s)
{
	char *out;

	if (s[0] != '@')
		return NULL;
	out = xstrdup(s + 1);
	conf_lower(out);
	if (!conf_hostname_valid(out)) {
		free(out);
		return NULL;
	}
	return out;
}

int
conf_do_rewrite(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	char *from, *to;
	size_t i;

	if ((from = conf_at_domain_new(p->words[1])) == NULL)
		return conf_errc(p, line,
		    "'%s' needs '@' and a domain name "
		    "on both sides (rewrite @FROM @TO), got '%s'",
		    dir->name, conf_show(p, p->words[1]));
	if ((to = conf_at_domain_new(p->words[2])) == NULL) {
		free(from);
		return conf_errc(p, line,
		    "'%s' needs '@' and a domain name "
		    "on both sides (rewrite @FROM @TO), got '%s'",
		    dir->name, conf_show(p, p->words[2]));
	}
	for (i = 0; i < t->nrewrites; i++) {
		if (strcmp(t->rewrite_from[i], from) == 0) {
			conf_errc(p, line, "'%s' of '@%s' is given twice",
			    dir->name, conf_show(p, from));
			free(from);
			free(to);
			return -1;
		}
	}
	if (t->nrewrites == CONF_REWRITES_MAX) {
		free(from);
		free(to);
		return conf_errc(p, line, "at most %d '%s' lines per target",
		    CONF_REWRITES_MAX, dir->name);
	}
	t->rewrite_from = xreallocarray(t->rewrite_from, t->nrewrites + 1,
	    sizeof(t->rewrite_from[0]));
	t->rewrite_to = xreallocarray(t->rewrite_to, t->nrewrites + 1,
	    sizeof(t->rewrite_to[0]));
	t->rewrite_from[t->nrewrites] = from;
	t->rewrite_to[t->nrewrites] = to;
	t->nrewrites++;
	return 0;
}

/* srs yes|no in a target: rewrite the sender for this target (SRS). */
int
conf_do_target_srs(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];

	if (strcmp(p->words[1], "yes") == 0)
		t->srs = true;
	else if (strcmp(p->words[1], "no") == 0)
		t->srs = false;
	else
		return conf_errc(p, line, "'%s' needs yes or no, got '%s'",
		    dir->name, conf_show(p, p->words[1]));
	return 0;
}

/* source_address ADDR: the local address outbound connections use. */
int
conf_do_target_source(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	unsigned char bin[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, p->words[1], bin) != 1 &&
	    inet_pton(AF_INET6, p->words[1], bin) != 1)
		return conf_errc(p, line, "%s: '%s' is not an IP address",
		    dir->name, conf_show(p, p->words[1]));
	free(t->source_address);
	t->source_address = xstrdup(p->words[1]);
	return 0;
}
