/*
 * auth_results.h - Authentication-Results (RFC 8601) formatting and
 * scanning, plus the header-safe quoting and folding auth_spf shares.
 *
 * Pure: bytes in, bytes out; no I/O, no DNS, no logging.
 */
#ifndef SPLITMX_AUTH_RESULTS_H
#define SPLITMX_AUTH_RESULTS_H

#include <stddef.h>

#include "auth_dkim.h"
#include "auth_spf.h"
#include "sbuf.h"

#define AUTH_RESULTS_LINE_MAX	78	/* RFC 5322 2.1.1 "SHOULD" */
#define AUTH_RESULTS_FIELD_MAX	4096	/* our own A-R field, folded */

/* A byte range in a header section: off..off+len includes the CRLF. */
struct auth_results_range {
	size_t	off;
	size_t	len;
};

/*
 * Formats "Authentication-Results: authserv_id; spf=... ; dkim=..." into
 * out (appended), folded with CRLF TAB at AUTH_RESULTS_LINE_MAX columns
 * where there is a space outside quoted strings, ending in CRLF. spf
 * and dkim may be NULL (method not run); with neither, the result is
 * "none" (RFC 8601 2.2). Values from the peer are quoted or stripped of
 * control and 8-bit octets. Returns 0, or -1 if out's cap was reached.
 */
int auth_results_format(struct sbuf *out, const char *authserv_id,
    const struct auth_spf_result *spf, const struct auth_dkim_result *dkim);

/*
 * Scans a header section (hdr, len; it may continue into the body, the
 * scan stops at the first empty line) for Authentication-Results fields
 * whose authserv-id equals authserv_id (case-insensitively; RFC 8601
 * section 5 says an MTA SHOULD remove or rename those). Stores up to max
 * ranges in out and returns how many such fields exist (may exceed max).
 * It only reports: rewriting would break DKIM signatures covering them.
 */
size_t auth_results_find_ours(const char *hdr, size_t len,
    const char *authserv_id, struct auth_results_range *out, size_t max);

/*
 * Appends s as an RFC 8601 "value": a token as is when every octet is a
 * token character, otherwise a quoted-string with '"' and '\\' escaped.
 * Control, DEL and 8-bit octets are dropped. Returns 0 or -1 (cap).
 */
int auth_results_append_value(struct sbuf *out, const char *s);
/*
 * Appends s for use inside a comment: "()\\" escaped; controls, 8-bit
 * octets and '"' dropped.
 */
int auth_results_append_comment(struct sbuf *out, const char *s);

/*
 * Appends the one-line field (name, colon, value; no CR or LF) to out,
 * folded as auth_results_format does, followed by CRLF.
 */
int auth_results_fold(struct sbuf *out, const char *field, size_t len);

#endif
