/*
 * auth_spf.h - inbound SPF verification (RFC 7208) with libspf2.
 *
 * libspf2 resolves synchronously, so auth_spf_check blocks: call it from
 * workers_ only. Every lookup goes through dns_sync to the configured
 * resolvers (DESIGN rule 9), never through /etc/resolv.conf.
 */
#ifndef SPLITMX_AUTH_SPF_H
#define SPLITMX_AUTH_SPF_H

#include <stdbool.h>

#include "sbuf.h"

enum auth_spf_res {
	AUTH_SPF_NONE = 0,
	AUTH_SPF_NEUTRAL,
	AUTH_SPF_PASS,
	AUTH_SPF_FAIL,
	AUTH_SPF_SOFTFAIL,
	AUTH_SPF_TEMPERROR,
	AUTH_SPF_PERMERROR,
};

#define AUTH_SPF_DOMAIN_MAX	255
#define AUTH_SPF_COMMENT_MAX	256
#define AUTH_SPF_HEADER_MAX	2048	/* the folded Received-SPF field */
#define AUTH_SPF_BUDGET_MS	20000	/* all DNS of one check together */
#define AUTH_SPF_QUERY_MS	3000	/* one lookup */

struct auth_spf_result {
	enum auth_spf_res	 result;
	/* "mailfrom", or "helo" when MAIL FROM was null (RFC 7208 2.4). */
	const char		*identity;
	/* The domain checked, lower-case, header-safe; "" if none. */
	char			 domain[AUTH_SPF_DOMAIN_MAX + 1];
	/* Header-safe explanation, no parentheses; for A-R and logs. */
	char			 comment[AUTH_SPF_COMMENT_MAX];
	/*
	 * "Received-SPF: ..." (RFC 7208 9.1), folded with CRLF TAB at 78
	 * columns and ending in CRLF, ready to prepend. Peer-supplied
	 * values are quoted or dropped, never copied raw.
	 */
	char			 received_spf[AUTH_SPF_HEADER_MAX];
	int			 dns_queries;	/* lookups sent, for logs */
};

/*
 * Evaluates SPF for one SMTP transaction. servers: the configured
 * resolvers ("ip:port,ip:port"). receiver: our host name, used in the
 * Received-SPF comment and receiver= key. client_ip: the peer address
 * (IPv4 or IPv6 text). helo: the HELO/EHLO argument. mail_from: the
 * MAIL FROM address without angle brackets, "" for the null sender, in
 * which case the HELO identity is checked (RFC 7208 2.4).
 *
 * Loopback clients are not evaluated (libspf2 would answer "pass" for
 * them unconditionally): result NONE with a comment saying so.
 * Always fills out and returns its result; never fails: local problems
 * (bad resolver list, out of DNS budget) give TEMPERROR. Blocks for at
 * most about AUTH_SPF_BUDGET_MS plus one lookup.
 */
enum auth_spf_res auth_spf_check(const char *servers, const char *receiver,
    const char *client_ip, const char *helo, const char *mail_from,
    struct auth_spf_result *out);

/* "pass", "fail", ... as used in Authentication-Results and Received-SPF. */
const char *auth_spf_res_str(enum auth_spf_res res);

#endif
