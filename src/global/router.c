/*
 * router.c - where a recipient's mail goes.
 *
 * A pure function of the recipient and the configuration: no I/O, no
 * globals, no allocation, so the daemon, "splitmxctl route" and the tests
 * get the same answer. Rules are matched against a lower-cased copy of
 * the address; each hop carries the address as received, with only the
 * domain rewritten when its target asks for it. why_out points into conf
 * (the labels conf_parse_buf builds) or at a constant string.
 */
#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "router.h"

_Static_assert(ROUTER_MAX_HOPS >= CONF_TARGET_SET_MAX,
    "a whole target set must fit in one answer");

/* Bare "postmaster" (RFC 5321 4.1.1.3) goes to this domain's postmaster. */
static const char *
router_postmaster_domain(const struct conf *conf)
{
	size_t i;

	/* A wildcard block names no single domain: skip those. */
	for (i = 0; i < conf->ndomains; i++) {
		const char *name = conf->domains[i].name;

		if (name != NULL && !(name[0] == '*' && name[1] == '.'))
			return name;
	}
	return NULL;
}

/* Whether target t already has a hop in out[0..n). */
static bool
router_has_hop(const struct router_hop *out, size_t n, size_t t)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (out[i].target == t)
			return true;
	return false;
}

size_t
router_route(const struct conf *conf, const char *mailbox,
    struct router_hop *out, size_t max, const char **why_out)
{
	char full[SMTP_PROTO_PATH_MAX + 1], lc[SMTP_PROTO_PATH_MAX + 1];
	const char *why = "none", *at, *pm;
	const struct conf_domain *d;
	const size_t *set = NULL;
	size_t nset = 0, len, i, n = 0, dflt;

	if (why_out != NULL)
		*why_out = why;
	if (conf == NULL || mailbox == NULL)
		return 0;
	if (out == NULL)
		max = 0;
	if ((at = strrchr(mailbox, '@')) == NULL) {
		int rc;

		if (strcasecmp(mailbox, "postmaster") != 0 ||
		    (pm = router_postmaster_domain(conf)) == NULL)
			return 0;
		rc = snprintf(full, sizeof(full), "%s@%s", mailbox, pm);
		if (rc < 0 || (size_t)rc >= sizeof(full))
			return 0;
		mailbox = full;
		at = strrchr(full, '@');
	}
	len = strlen(mailbox);
	if (at == mailbox || at[1] == '\0' || len > SMTP_PROTO_PATH_MAX)
		return 0;
	for (i = 0; i <= len; i++) /* with the NUL */
		lc[i] = (char)((mailbox[i] >= 'A' && mailbox[i] <= 'Z') ?
		        mailbox[i] - 'A' + 'a' :
		        mailbox[i]);

	/* 1. Per-recipient routes, first match in file order. */
	for (i = 0; i < conf->nroutes && set == NULL; i++) {
		const struct conf_route *r = &conf->routes[i];

		if (r->pattern != NULL &&
		    fnmatch(r->pattern, lc, FNM_CASEFOLD) == 0) {
			set = r->targets;
			nset = r->ntargets;
			why = r->label != NULL ? r->label : "route";
		}
	}
	/* 2. The first wave that lists the address. */
	for (i = 0; i < conf->nwaves && set == NULL; i++) {
		const struct conf_wave *w = &conf->waves[i];

		if (conf_wave_has(w, lc)) {
			set = w->targets;
			nset = w->ntargets;
			why = w->label != NULL ? w->label : "wave";
		}
	}
	/* 3. Our domain's default set (empty: held); 4. default_target. */
	if (set == NULL) {
		d = conf_find_domain(conf, lc + (at - mailbox) + 1);
		if (d != NULL) {
			set = d->targets;
			nset = d->ntargets;
			why = d->label != NULL ? d->label : "domain";
		} else if (conf->default_target >= 0) {
			dflt = (size_t)conf->default_target;
			set = &dflt;
			nset = 1;
			why = "default_target";
		}
	}
	for (i = 0; i < nset && n < max; i++) {
		size_t t = set[i];

		if (t >= conf->ntargets || router_has_hop(out, n, t))
			continue;
		out[n].target = t;
		/* On overflow the hop keeps the address as received. */
		(void)router_rewrite(conf, t, mailbox, out[n].rcpt,
		    sizeof(out[n].rcpt));
		n++;
	}
	if (why_out != NULL)
		*why_out = why;
	return n;
}

int
router_rewrite(const struct conf *conf, size_t t, const char *mailbox,
    char *out, size_t outsize)
{
	const struct conf_target *tg;
	const char *at;
	size_t len, llen, dlen, i;
	int rc = 0;

	if (out == NULL || outsize == 0)
		return -1;
	if (mailbox == NULL) {
		out[0] = '\0';
		return -1;
	}
	at = strrchr(mailbox, '@');
	if (conf != NULL && t < conf->ntargets && at != NULL) {
		tg = &conf->targets[t];
		for (i = 0; i < tg->nrewrites; i++) {
			if (strcasecmp(at + 1, tg->rewrite_from[i]) != 0)
				continue;
			llen = (size_t)(at - mailbox) + 1; /* with '@' */
			dlen = strlen(tg->rewrite_to[i]);
			if (llen + dlen < outsize) {
				memcpy(out, mailbox, llen);
				memcpy(out + llen, tg->rewrite_to[i], dlen + 1);
				return 0;
			}
			rc = -1;
			break;
		}
	}
	len = strlen(mailbox);
	if (len >= outsize) {
		out[0] = '\0';
		return -1;
	}
	memcpy(out, mailbox, len + 1);
	return rc;
}
