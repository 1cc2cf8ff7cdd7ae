/*
 * conf_check.c - the consistency checks made when a block or the file ends.
 *
 * When a block closes: a target's type, the options that fit it and its
 * one next hop; a wave's target set; the queue's timings. When the file
 * ends: TLS pairs and the certificate listeners inherit, every target
 * reference resolved to an index ("did you mean"), and the directives
 * that must be present. Messages name the line of the directive at fault.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_int.h"
#include "xmalloc.h"

/*
 * When a block closes.
 */

/* Target types as bits, for the options each type takes. */
#define CONF_T_SMTP    (1u << CONF_TARGET_SMTP)
#define CONF_T_LMTP    (1u << CONF_TARGET_LMTP)
#define CONF_T_MAILDIR (1u << CONF_TARGET_MAILDIR)
#define CONF_T_ALL     (CONF_T_SMTP | CONF_T_LMTP | CONF_T_MAILDIR)

static const struct {
	const char *name;
	unsigned types;
} conf_target_types[] = {
	{ "host", CONF_T_SMTP | CONF_T_LMTP },
	{ "mx", CONF_T_SMTP },
	{ "port", CONF_T_SMTP },
	{ "socket", CONF_T_LMTP },
	{ "path", CONF_T_MAILDIR },
	{ "tls", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_ca", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_name", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_cert", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_key", CONF_T_SMTP | CONF_T_LMTP },
	{ "messages_per_connection", CONF_T_SMTP | CONF_T_LMTP },
	{ "timeout_connect", CONF_T_SMTP | CONF_T_LMTP },
	{ "timeout_command", CONF_T_SMTP | CONF_T_LMTP },
	{ "timeout_data", CONF_T_SMTP | CONF_T_LMTP },
	{ "helo", CONF_T_SMTP | CONF_T_LMTP },
	{ "srs", CONF_T_SMTP | CONF_T_LMTP },
	{ "source_address", CONF_T_SMTP | CONF_T_LMTP },
};

static unsigned
conf_target_mask(const char *name)
{
	size_t i;

	for (i = 0;
	     i < sizeof(conf_target_types) / sizeof(conf_target_types[0]); i++)
		if (strcmp(conf_target_types[i].name, name) == 0)
			return conf_target_types[i].types;
	return CONF_T_ALL;
}

static const char *
conf_target_mask_name(unsigned types)
{
	switch (types) {
	case CONF_T_SMTP:
		return "type smtp";
	case CONF_T_LMTP:
		return "type lmtp";
	case CONF_T_MAILDIR:
		return "type maildir";
	default:
		return "types smtp and lmtp";
	}
}

/*
 * Checks a target block once it is closed: its type, the options that
 * fit the type, one next hop, and the defaults that depend on the type.
 */
static int
conf_close_target(struct conf_parser *p)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *bad = NULL;
	unsigned bit;
	int badline = 0, l, cert, key, port;
	size_t i;

	if (conf_seen_line(p, CONF_CTX_TARGET, "type") == 0)
		return conf_errc(p, t->line,
		    "missing 'type' (smtp, lmtp or "
		    "maildir)");
	bit = 1u << t->type;
	for (i = 0; i < conf_ndirectives; i++) {
		const struct conf_directive *dir = &conf_directives[i];

		if (dir->ctx != CONF_CTX_TARGET || (l = p->seen[i]) == 0 ||
		    (conf_target_mask(dir->name) & bit) != 0)
			continue;
		if (bad == NULL || l < badline) {
			bad = dir->name;
			badline = l;
		}
	}
	if (bad != NULL)
		return conf_errc(p, badline, "'%s' is only valid for %s", bad,
		    conf_target_mask_name(conf_target_mask(bad)));
	switch (t->type) {
	case CONF_TARGET_SMTP:
		if (t->host == NULL && t->mx == NULL)
			return conf_errc(p, t->line,
			    "type smtp needs 'host' "
			    "or 'mx'");
		port = conf_seen_line(p, CONF_CTX_TARGET, "port");
		if (port != 0 && t->mx == NULL)
			return conf_errc(p, port,
			    "'port' goes with 'mx' only "
			    "(write 'host NAME:PORT')");
		break;
	case CONF_TARGET_LMTP:
		if (t->host == NULL && t->socket == NULL)
			return conf_errc(p, t->line,
			    "type lmtp needs 'host' "
			    "or 'socket'");
		break;
	case CONF_TARGET_MAILDIR:
		if (t->path == NULL)
			return conf_errc(p, t->line,
			    "type maildir needs "
			    "'path'");
		break;
	}
	cert = conf_seen_line(p, CONF_CTX_TARGET, "tls_cert");
	key = conf_seen_line(p, CONF_CTX_TARGET, "tls_key");
	if (cert != 0 && key == 0)
		return conf_errc(p, cert, "tls_cert is set but tls_key is not");
	if (key != 0 && cert == 0)
		return conf_errc(p, key, "tls_key is set but tls_cert is not");
	if (t->port == NULL && (t->host != NULL || t->mx != NULL))
		t->port = xstrdup(t->type == CONF_TARGET_LMTP ? "24" : "25");
	if (conf_seen_line(p, CONF_CTX_TARGET, "tls") == 0)
		t->tls = t->type == CONF_TARGET_SMTP ? CONF_TLS_MAY :
		                                       CONF_TLS_NONE;
	return 0;
}

static int
conf_close_wave(struct conf_parser *p)
{
	struct conf_wave *w = &p->conf->waves[p->cur];

	if (w->ntargets == 0)
		return conf_errc(p, w->line,
		    "needs 'state' (legacy, dual or "
		    "cloud) or 'targets'");
	conf_wave_index(w);
	return 0;
}

static int
conf_close_queue(struct conf_parser *p)
{
	const struct conf_queue *q = &p->conf->queue;
	int initial = conf_seen_line(p, CONF_CTX_QUEUE, "retry_initial");
	int max = conf_seen_line(p, CONF_CTX_QUEUE, "retry_max");
	int warn = conf_seen_line(p, CONF_CTX_QUEUE, "delay_warning");
	int life = conf_seen_line(p, CONF_CTX_QUEUE, "lifetime");

	if (q->retry_initial > q->retry_max)
		return conf_errc(p, initial != 0 ? initial : max,
		    "retry_initial (%us) is longer than retry_max (%us)",
		    q->retry_initial, q->retry_max);
	if (q->delay_warning != 0 && q->delay_warning >= q->lifetime)
		return conf_errc(p, warn != 0 ? warn : life,
		    "delay_warning "
		    "(%us) must be shorter than lifetime (%us)",
		    q->delay_warning, q->lifetime);
	return 0;
}

/* Checks made when a block closes, while its directives' lines are known. */
int
conf_close_block(struct conf_parser *p)
{
	switch (p->ctx) {
	case CONF_CTX_TARGET:
		return conf_close_target(p);
	case CONF_CTX_WAVE:
		return conf_close_wave(p);
	case CONF_CTX_QUEUE:
		return conf_close_queue(p);
	default:
		return 0;
	}
}

/*
 * When the file ends.
 */

/* Closest target name to name, for "did you mean"; NULL if none. */
static const char *
conf_suggest_target(const struct conf *conf, const char *name)
{
	const char *best = NULL;
	size_t i, bestd = 3;

	if (strlen(name) < 3)
		return NULL;
	for (i = 0; i < conf->ntargets; i++) {
		size_t dist = conf_distance(name, conf->targets[i].name);

		if (dist < bestd) {
			bestd = dist;
			best = conf->targets[i].name;
		}
	}
	return best;
}

static int
conf_unknown_target(struct conf_parser *p, const struct conf_ref *r)
{
	const struct conf *conf = p->conf;
	static const char *const states[] = { "targets", "legacy", "dual",
		"cloud" };
	char prefix[CONF_NAME_MAX * 4 + 32], hint[CONF_NAME_MAX * 4 + 32];
	const char *close;

	switch (r->kind) {
	case CONF_REF_STATE:
		return conf_err(p, r->line,
		    "wave '%s': state '%s' needs a "
		    "target named '%s'",
		    conf_show(p, conf->waves[r->owner].name),
		    states[conf->waves[r->owner].state], r->name);
	case CONF_REF_WAVE:
		(void)snprintf(prefix, sizeof(prefix),
		    "wave '%s': ", conf_show(p, conf->waves[r->owner].name));
		break;
	case CONF_REF_DOMAIN:
		(void)snprintf(prefix, sizeof(prefix), "domain: ");
		break;
	case CONF_REF_VERIFY:
		(void)snprintf(prefix, sizeof(prefix),
		    "domain: "
		    "verify_recipients: ");
		break;
	case CONF_REF_ROUTE:
		(void)snprintf(prefix, sizeof(prefix), "route: ");
		break;
	case CONF_REF_DEFAULT:
		(void)snprintf(prefix, sizeof(prefix), "default_target: ");
		break;
	}
	if (conf->ntargets == 0)
		(void)snprintf(hint, sizeof(hint),
		    " (no target blocks are "
		    "defined)");
	else if ((close = conf_suggest_target(conf, r->name)) != NULL)
		(void)snprintf(hint, sizeof(hint), " (did you mean '%s'?)",
		    close);
	else
		hint[0] = '\0';
	return conf_err(p, r->line, "%sunknown target '%s'%s", prefix,
	    conf_show(p, r->name), hint);
}

/*
 * Gives every target reference its index, in file order so that the
 * first unknown name is the one reported.
 */
static int
conf_resolve_refs(struct conf_parser *p)
{
	struct conf *conf = p->conf;
	size_t i;

	for (i = 0; i < p->nrefs; i++) {
		const struct conf_ref *r = &p->refs[i];
		long t = conf_set_find(&p->tset, conf, conf_target_name_at,
		    r->name);

		if (t == -1)
			return conf_unknown_target(p, r);
		switch (r->kind) {
		case CONF_REF_DOMAIN:
			conf->domains[r->owner].targets[r->pos] = (size_t)t;
			break;
		case CONF_REF_VERIFY:
			/* A maildir cannot answer RCPT TO. */
			if (conf->targets[t].type == CONF_TARGET_MAILDIR)
				return conf_err(p, r->line,
				    "domain: "
				    "verify_recipients needs an smtp or lmtp "
				    "target, '%s' is a maildir",
				    conf_show(p, r->name));
			conf->domains[r->owner].verify_target = (int)t;
			break;
		case CONF_REF_WAVE:
		case CONF_REF_STATE:
			conf->waves[r->owner].targets[r->pos] = (size_t)t;
			break;
		case CONF_REF_ROUTE:
			conf->routes[r->owner].targets[r->pos] = (size_t)t;
			break;
		case CONF_REF_DEFAULT:
			conf->default_target = (int)t;
			break;
		}
	}
	return 0;
}

/*
 * Checks made once the whole file is read: TLS pairs, inheritance of the
 * top-level certificate, target references, and the directives that must
 * be present.
 */
int
conf_finish(struct conf_parser *p)
{
	struct conf *conf = p->conf;
	size_t i;

	if (p->tls_cert != NULL && p->tls_key == NULL)
		return conf_err(p, p->tls_cert_line,
		    "tls_cert is set but "
		    "tls_key is not");
	if (p->tls_key != NULL && p->tls_cert == NULL)
		return conf_err(p, p->tls_key_line,
		    "tls_key is set but "
		    "tls_cert is not");
	for (i = 0; i < conf->nlisteners; i++) {
		struct conf_listener *l = &conf->listeners[i];

		if (l->tls_cert != NULL && l->tls_key == NULL)
			return conf_err(p, l->line,
			    "listen: tls_cert is set "
			    "but tls_key is not");
		if (l->tls_key != NULL && l->tls_cert == NULL)
			return conf_err(p, l->line,
			    "listen: tls_key is set "
			    "but tls_cert is not");
		if (l->tls_cert == NULL && p->tls_cert != NULL) {
			l->tls_cert = xstrdup(p->tls_cert);
			l->tls_key = xstrdup(p->tls_key);
		}
	}
	if (conf_resolve_refs(p) == -1)
		return -1;
	if (conf->nlisteners == 0)
		return conf_err(p, conf_last_line(p), "no 'listen' directive");
	if (conf->ndomains == 0)
		return conf_err(p, conf_last_line(p), "no 'domain' directive");
	for (i = 0; i < conf->ndomains; i++)
		conf_domain_index(&conf->domains[i]);
	return 0;
}
