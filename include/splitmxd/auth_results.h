/*
 * auth_results.h - the trace fields of our authentication checks:
 * Authentication-Results (RFC 8601) and Received-SPF (RFC 7208 9.1)
 * formatted from the auth_spf_/auth_dkim_ verdicts, and scanning for
 * Authentication-Results fields that claim our authserv-id.
 *
 * Pure: bytes in, bytes out; no I/O, no DNS, no logging.
 */
#ifndef SPLITMX_AUTH_RESULTS_H
#define SPLITMX_AUTH_RESULTS_H

#include <stddef.h>

#include "auth_dkim.h"
#include "auth_spf.h"
#include "sbuf.h"

#define AUTH_RESULTS_FIELD_MAX 4096 /* our own A-R field, folded */
#define AUTH_RESULTS_RSPF_MAX  2048 /* Received-SPF, unfolded */

/* A byte range in a header section: off..off+len includes the CRLF. */
struct auth_results_range {
	size_t off;
	size_t len;
};

/*
 * Formats "Authentication-Results: authserv_id; spf=... ; dkim=..." into
 * out (appended), folded by header_fmt_fold (CRLF TAB, 78 columns),
 * ending in CRLF. spf and dkim may be NULL (method not run); with
 * neither, the result is "none" (RFC 8601 2.2). Values from the peer are
 * quoted or stripped of control and 8-bit octets. Returns 0, or -1 if
 * out's cap was reached.
 */
int auth_results_format(struct sbuf *out, const char *authserv_id,
    const struct auth_spf_result *spf, const struct auth_dkim_result *dkim);

/*
 * Formats "Received-SPF: result (comment) client-ip=...; envelope-from=
 * ...; helo=...; receiver=...; identity=...;" for the verdict spf into
 * out (appended), folded like auth_results_format and ending in CRLF.
 * The peer's HELO and MAIL FROM are quoted, never copied raw. Bounded by
 * AUTH_RESULTS_RSPF_MAX: a value that does not fit is cut or left out,
 * and a field too long once folded becomes "Received-SPF: result" CRLF.
 * Returns 0, or -1 if out's cap was reached.
 */
int auth_results_received_spf(struct sbuf *out,
    const struct auth_spf_result *spf);

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

#endif
