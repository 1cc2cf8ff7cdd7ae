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
#include "smtp_proto.h"

enum auth_spf_res {
	AUTH_SPF_NONE = 0,
	AUTH_SPF_NEUTRAL,
	AUTH_SPF_PASS,
	AUTH_SPF_FAIL,
	AUTH_SPF_SOFTFAIL,
	AUTH_SPF_TEMPERROR,
	AUTH_SPF_PERMERROR,
};

#define AUTH_SPF_DOMAIN_MAX  255
#define AUTH_SPF_COMMENT_MAX 256
#define AUTH_SPF_IP_MAX      46    /* INET6_ADDRSTRLEN */
#define AUTH_SPF_BUDGET_MS   20000 /* all DNS of one check together */
#define AUTH_SPF_QUERY_MS    3000  /* one lookup */

/*
 * The verdict: what was checked and the result, no header text (the
 * Received-SPF and Authentication-Results fields are formatted from it by
 * auth_results_). Self-contained, so it can travel between threads.
 */
struct auth_spf_result {
	enum auth_spf_res result;
	/* "mailfrom", or "helo" when MAIL FROM was null (RFC 7208 2.4). */
	const char *identity;
	/* The domain checked, lower-case, header-safe; "" if none. */
	char domain[AUTH_SPF_DOMAIN_MAX + 1];
	/* Header-safe explanation, no parentheses; for A-R and logs. */
	char comment[AUTH_SPF_COMMENT_MAX];
	/*
	 * The inputs, as given (peer text: quote before use), cut to the
	 * SMTP limits smtp_server_ enforces anyway. client_ip is "" when it
	 * was not an address; mail_from is "" for the null sender.
	 */
	char receiver[SMTP_PROTO_DOMAIN_MAX + 1];
	char client_ip[AUTH_SPF_IP_MAX];
	char helo[SMTP_PROTO_HELO_MAX + 1];
	char mail_from[SMTP_PROTO_PATH_MAX + 1];
	int dns_queries; /* lookups sent, for logs */
};

/*
 * Evaluates SPF for one SMTP transaction. servers: the configured
 * resolvers ("ip:port,ip:port"). receiver: our host name, used in the
 * comment and kept for Received-SPF's receiver= key. client_ip: the peer
 * address (IPv4 or IPv6 text). helo: the HELO/EHLO argument. mail_from:
 * the MAIL FROM address without angle brackets, "" for the null sender,
 * in which case the HELO identity is checked (RFC 7208 2.4).
 *
 * Loopback clients are not evaluated (libspf2 would answer "pass" for
 * them unconditionally): result NONE with a comment saying so.
 * Always fills out (verdict and inputs) and returns its result; never
 * fails: local problems (bad resolver list, out of DNS budget) give
 * TEMPERROR. Blocks for at most about AUTH_SPF_BUDGET_MS plus one lookup.
 */
enum auth_spf_res auth_spf_check(const char *servers, const char *receiver,
    const char *client_ip, const char *helo, const char *mail_from,
    struct auth_spf_result *out);

/* "pass", "fail", ... as used in Authentication-Results and Received-SPF. */
const char *auth_spf_res_str(enum auth_spf_res res);

#endif
