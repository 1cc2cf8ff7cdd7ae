/*
 * auth_srs.h - Sender Rewriting Scheme (SRS0/SRS1, "guarded" variant).
 *
 * Pure: no I/O, no logging, no globals. An auth_srs object is configured
 * once (auth_srs_new, auth_srs_add_secret) and is read-only afterwards, so
 * any number of threads may call auth_srs_forward/auth_srs_reverse on it
 * (each with its own err).
 * There is no RFC; the format is the de-facto one of Shevek's paper "The
 * Sender Rewriting Scheme", Mail::SRS::Guarded and postsrsd, so addresses
 * interoperate with those implementations given the same secret.
 *
 * FORMAT (SEP is the configured separator, '=' by default, or '+' / '-';
 * every other separator is '='):
 *
 *   SRS0 (we are the first forwarder; the sender is local@domain):
 *	SRS0 SEP HHHH = TT = domain = local @ srs-domain
 *	TT   day number, floor(now / 86400) mod 1024, in two base32 digits,
 *	     high digit first, alphabet "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
 *	     (decoded case-insensitively).
 *	HHHH the first 4 characters of the standard base64 (A-Z a-z 0-9 + /)
 *	     encoding of HMAC-SHA1(secret, lc(TT) || lc(domain) || lc(local)),
 *	     lc() being ASCII lower-casing; compared case-insensitively.
 *
 *   SRS1 (the sender is already SRS0 or SRS1 from a first hop):
 *	sender SRS0 X rest @ firsthop  (X any of = + -) becomes
 *	SRS1 SEP HHHH = firsthop = X rest @ srs-domain
 *	(hence the familiar "firsthop==HHHH=TT=..."), and
 *	sender SRS1 X hash = firsthop = X' rest @ hop  becomes
 *	SRS1 SEP HHHH = firsthop = X' rest @ srs-domain,
 *	with HHHH = first 4 of base64(HMAC-SHA1(secret, lc(firsthop) ||
 *	lc(X' rest))): the shortcut of the paper, so a bounce goes straight to
 *	the first hop rather than back through every forwarder. SRS1 carries
 *	no timestamp of ours: only the hash is checked on the way back.
 *
 * Lower-casing before hashing makes the scheme survive MTAs that fold the
 * local part of the bounce address to lower case; the tags, TT and HHHH are
 * matched case-insensitively too.
 *
 * ERRORS (docs/errors.md): each function taking struct sbuf *err replaces
 * err's contents on every call, with the reason when it gives one (cut at
 * err's cap; every reason is shorter than 80 octets), otherwise with
 * nothing: err is left empty (len 0, "no reason"). err may be NULL when the
 * caller does not want the detail.
 */
#ifndef SPLITMX_AUTH_SRS_H
#define SPLITMX_AUTH_SRS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "sbuf.h"

#define AUTH_SRS_LOCAL_MAX 64  /* RFC 5321 4.5.3.1.1 */
#define AUTH_SRS_PATH_MAX  256 /* RFC 5321 4.5.3.1.3, incl. <> */
/* Longest address (path without <>) plus the NUL: enough for every out. */
#define AUTH_SRS_ADDR_BUFSIZE    (AUTH_SRS_PATH_MAX - 2 + 1)
#define AUTH_SRS_HASH_LEN        4   /* base64 characters of HMAC-SHA1 */
#define AUTH_SRS_MAX_AGE_DEFAULT 21  /* days */
#define AUTH_SRS_MAX_AGE_MAX     512 /* days; TT wraps after 1024 */
#define AUTH_SRS_SECRETS_MAX     8   /* signing secret + verify-only ones */

struct auth_srs;

struct auth_srs_params {
	const void *secret;    /* signs new addresses; copied */
	size_t secret_len;     /* > 0 */
	const char *domain;    /* SRS domain, e.g. "srs.example.net" */
	unsigned max_age_days; /* 0: AUTH_SRS_MAX_AGE_DEFAULT */
	char separator;        /* after SRS0/SRS1: '=', '+', '-'; 0: '=' */
	/*
	 * By default a rewrite whose local part would pass 64 octets is not
	 * made (RFC 5321 4.5.3.1.1); true allows it, as most MTAs accept such
	 * addresses. The 256-octet path limit is always enforced.
	 */
	bool allow_long_local;
};

/*
 * Creates an SRS context from p (nothing in p is kept after the call).
 * Returns it with err empty, or NULL with err set on a bad parameter.
 * Free with auth_srs_free, which wipes the secrets.
 */
struct auth_srs *auth_srs_new(const struct auth_srs_params *p, struct sbuf *err)
    __attribute__((warn_unused_result));

/*
 * Adds a secret accepted when reversing but never used to sign (key
 * rotation: keep the old secret here for max_age_days). Returns 0 with err
 * empty, or -1 with err set when it is empty or too long or
 * AUTH_SRS_SECRETS_MAX is reached.
 * Not thread-safe: call before sharing the object.
 */
int auth_srs_add_secret(struct auth_srs *srs, const void *secret, size_t len,
    struct sbuf *err) __attribute__((warn_unused_result));

/* Wipes and frees; NULL is a no-op. */
void auth_srs_free(struct auth_srs *srs);

/*
 * Rewrites the envelope sender (an address "local@domain" without <>)
 * using the day of now. Returns 0 with the SRS address in out and err
 * empty; 1 when the sender is left as it is: the null sender ("" or "<>")
 * or an address at our SRS domain (err empty), or one that cannot be
 * rewritten within the RFC 5321 limits or is quoted (err says why; the
 * de-facto spec says such senders pass unrewritten); -1 with err set on a
 * malformed sender, bad arguments, or when out (outsize bytes; use
 * AUTH_SRS_ADDR_BUFSIZE) is too small. Unless 0 is returned, out is "".
 * out must not overlap sender.
 */
int auth_srs_forward(const struct auth_srs *srs, const char *sender, time_t now,
    char *out, size_t outsize, struct sbuf *err)
    __attribute__((warn_unused_result));

/*
 * Reverses an SRS address "local@domain" received as a recipient (any
 * domain is accepted: the caller routes only its SRS domain here; the hash
 * is what authenticates). SRS0 yields the original sender, SRS1 the SRS0
 * address at the first hop. The hash must match under any accepted secret
 * and, for SRS0, the day must be at most max_age_days old and at most one
 * day in the future. Returns 0 with the address in out and err empty; 1
 * when addr is not SRS at all (err "not an SRS address"); -1 with err one
 * of "malformed SRS address", "forged SRS address (bad hash)", "expired
 * SRS address", "expired SRS address (timestamp in the future)", or an
 * out-of-space, bad-argument or HMAC-failure message. Unless 0 is
 * returned, out is "". out must not overlap addr.
 */
int auth_srs_reverse(const struct auth_srs *srs, const char *addr, time_t now,
    char *out, size_t outsize, struct sbuf *err)
    __attribute__((warn_unused_result));

/*
 * True when s (a local part, or a whole address) starts with "SRS0" or
 * "SRS1", in any case, followed by '=', '+' or '-'.
 */
bool auth_srs_is_srs(const char *s);

#endif
