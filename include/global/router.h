/*
 * router.h - where a recipient's mail goes: a pure function of the
 * recipient and the configuration.
 *
 * Precedence: a per-recipient route, then the first wave that lists the
 * recipient, then the recipient domain's default targets, then the
 * configured default_target (for domains that are not ours: bounces and,
 * later, outbound mail). Each target's recipient rewrites are applied to
 * the address it will receive. Used by the daemon and by splitmxctl route.
 */
#ifndef SPLITMX_ROUTER_H
#define SPLITMX_ROUTER_H

#include <stddef.h>

#include "smtp_proto.h"

struct conf;

#define ROUTER_MAX_HOPS 16

struct router_hop {
	size_t target;                      /* index into conf->targets */
	char rcpt[SMTP_PROTO_PATH_MAX + 1]; /* address at that target */
};

/*
 * Routes mailbox (as received, "local@domain", or bare "postmaster" which
 * is taken as postmaster@ the first configured domain). Fills up to max
 * hops, without duplicate targets, and returns their number: 0 means no
 * target applies (the message is held). *why_out names the rule that
 * decided ("route alice@example.com", "wave w1", "domain example.com",
 * "default_target", "none"); it points into conf or a static string.
 */
size_t router_route(const struct conf *conf, const char *mailbox,
    struct router_hop *out, size_t max, const char **why_out);

/*
 * Applies target t's rewrites to mailbox into out (size outsize). Returns
 * 0, or -1 when the result would not fit (out then holds the original).
 */
int router_rewrite(const struct conf *conf, size_t t, const char *mailbox,
    char *out, size_t outsize);

#endif
