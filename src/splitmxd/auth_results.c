/*
 * auth_results.c - Authentication-Results (RFC 8601) and Received-SPF
 * (RFC 7208 9.1) writer, and the Authentication-Results scanner.
 *
 * Turns auth_spf/auth_dkim verdicts into folded header fields and finds
 * existing fields that claim our authserv-id. Pure functions: no I/O, no
 * globals. Peer-controlled strings (domains, selectors, HELO, MAIL FROM)
 * always go through header_fmt_ quoting, so they cannot inject CRLF or
 * break the field's syntax.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "auth_dkim.h"
#include "auth_results.h"
#include "auth_spf.h"
#include "header_fmt.h"
#include "sbuf.h"

#define AUTH_RESULTS_NAME  "Authentication-Results"
#define AUTH_RESULTS_B_MIN 8 /* header.b prefix, RFC 6008 */

static int
ar_add_spf(struct sbuf *f, const struct auth_spf_result *spf)
{
	bool helo = spf->identity != NULL && strcmp(spf->identity, "helo") == 0;

	if (sbuf_printf(f, " spf=%s", auth_spf_res_str(spf->result)) == -1)
		return -1;
	if (spf->comment[0] != '\0') {
		if (sbuf_append_str(f, " (") == -1 ||
		    header_fmt_append_comment(f, spf->comment) == -1 ||
		    sbuf_append_char(f, ')') == -1)
			return -1;
	}
	if (spf->domain[0] == '\0')
		return 0;
	if (sbuf_append_str(f, helo ? " smtp.helo=" : " smtp.mailfrom=") == -1)
		return -1;
	return header_fmt_append_value(f, spf->domain);
}

static int
ar_add_dkim_sig(struct sbuf *f, const struct auth_dkim_sig *sig)
{
	char b[sizeof(sig->b)];
	size_t n;

	if (sbuf_printf(f, " dkim=%s", auth_dkim_res_str(sig->result)) == -1)
		return -1;
	if (sig->comment[0] != '\0') {
		if (sbuf_append_str(f, " (") == -1 ||
		    header_fmt_append_comment(f, sig->comment) == -1 ||
		    sbuf_append_char(f, ')') == -1)
			return -1;
	}
	if (sig->domain[0] != '\0') {
		if (sbuf_append_str(f, " header.d=") == -1 ||
		    header_fmt_append_value(f, sig->domain) == -1)
			return -1;
	}
	if (sig->selector[0] != '\0') {
		if (sbuf_append_str(f, " header.s=") == -1 ||
		    header_fmt_append_value(f, sig->selector) == -1)
			return -1;
	}
	n = strnlen(sig->b, sizeof(sig->b) - 1);
	if (n > 0) {
		if (n > AUTH_RESULTS_B_MIN)
			n = AUTH_RESULTS_B_MIN;
		memcpy(b, sig->b, n);
		b[n] = '\0';
		/* base64 contains '/' and '=', so this may come out quoted */
		if (sbuf_append_str(f, " header.b=") == -1 ||
		    header_fmt_append_value(f, b) == -1)
			return -1;
	}
	return 0;
}

int
auth_results_format(struct sbuf *out, const char *authserv_id,
    const struct auth_spf_result *spf, const struct auth_dkim_result *dkim)
{
	struct sbuf f;
	size_t i;
	bool any = false;
	int r = -1;

	sbuf_init(&f, AUTH_RESULTS_FIELD_MAX);
	if (sbuf_append_str(&f, AUTH_RESULTS_NAME ": ") == -1 ||
	    header_fmt_append_value(&f, authserv_id) == -1 ||
	    sbuf_append_char(&f, ';') == -1)
		goto done;
	if (spf != NULL) {
		if (ar_add_spf(&f, spf) == -1)
			goto done;
		any = true;
	}
	if (dkim != NULL && dkim->nsigs == 0) {
		if ((any && sbuf_append_char(&f, ';') == -1) ||
		    sbuf_printf(&f, " dkim=%s",
		        auth_dkim_res_str(dkim->msg_result)) == -1)
			goto done;
		if (dkim->msg_result != AUTH_DKIM_NONE &&
		    dkim->error[0] != '\0' &&
		    (sbuf_append_str(&f, " (") == -1 ||
		        header_fmt_append_comment(&f, dkim->error) == -1 ||
		        sbuf_append_char(&f, ')') == -1))
			goto done;
		any = true;
	}
	for (i = 0; dkim != NULL && i < dkim->nsigs; i++) {
		if ((any && sbuf_append_char(&f, ';') == -1) ||
		    ar_add_dkim_sig(&f, &dkim->sigs[i]) == -1)
			goto done;
		any = true;
	}
	if (!any && sbuf_append_str(&f, " none") == -1)
		goto done;
	r = header_fmt_fold(out, f.data, f.len);
done:
	sbuf_release(&f);
	return r;
}

int
auth_results_received_spf(struct sbuf *out, const struct auth_spf_result *spf)
{
	struct sbuf f, folded;
	int r;

	/* Unchecked appends: what passes the cap is cut (auth_results.h). */
	sbuf_init(&f, AUTH_RESULTS_RSPF_MAX);
	sbuf_init(&folded, AUTH_RESULTS_RSPF_MAX - 1);
	(void)sbuf_printf(&f, "Received-SPF: %s",
	    auth_spf_res_str(spf->result));
	if (spf->comment[0] != '\0') {
		(void)sbuf_append_str(&f, " (");
		(void)header_fmt_append_comment(&f, spf->comment);
		(void)sbuf_append_char(&f, ')');
	}
	(void)sbuf_append_str(&f, " client-ip=");
	(void)header_fmt_append_value(&f, spf->client_ip);
	(void)sbuf_append_str(&f, "; envelope-from=");
	/* always quoted: '@' is not a token character anyway */
	(void)header_fmt_append_value(&f,
	    spf->mail_from[0] != '\0' ? spf->mail_from : "<>");
	if (spf->helo[0] != '\0') {
		(void)sbuf_append_str(&f, "; helo=");
		(void)header_fmt_append_value(&f, spf->helo);
	}
	(void)sbuf_append_str(&f, "; receiver=");
	(void)header_fmt_append_value(&f, spf->receiver);
	(void)sbuf_printf(&f, "; identity=%s;", spf->identity);
	if (header_fmt_fold(&folded, f.data, f.len) == 0)
		r = sbuf_append(out, folded.data, folded.len);
	else
		r = sbuf_printf(out, "Received-SPF: %s\r\n",
		    auth_spf_res_str(spf->result));
	sbuf_release(&folded);
	sbuf_release(&f);
	return r;
}

/* ---- scanning ---- */

/* Skips CFWS (RFC 5322 3.2.2, nested comments); returns the new index. */
static size_t
ar_skip_cfws(const char *s, size_t i, size_t end)
{
	int depth = 0;

	while (i < end) {
		char c = s[i];

		if (depth > 0 && c == '\\' && i + 1 < end) {
			i += 2;
			continue;
		}
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' &&
		    c != '\n')
			break;
		i++;
	}
	return i;
}

/* Does the field value s[i..end) start with authserv_id as its id? */
static bool
ar_value_claims(const char *s, size_t i, size_t end, const char *id)
{
	char val[256];
	size_t n = 0;

	i = ar_skip_cfws(s, i, end);
	if (i < end && s[i] == '"') {
		for (i++; i < end && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < end)
				i++;
			if (s[i] == '\r' || s[i] == '\n')
				continue;
			if (n + 1 >= sizeof(val))
				return false;
			val[n++] = s[i];
		}
	} else {
		for (; i < end && header_fmt_is_token_char((unsigned char)s[i]);
		     i++) {
			if (n + 1 >= sizeof(val))
				return false;
			val[n++] = s[i];
		}
	}
	val[n] = '\0';
	return n > 0 && strcasecmp(val, id) == 0;
}

size_t
auth_results_find_ours(const char *hdr, size_t len, const char *authserv_id,
    struct auth_results_range *out, size_t max)
{
	const size_t nlen = sizeof(AUTH_RESULTS_NAME) - 1;
	size_t pos = 0, end, colon, found = 0;

	while (pos < len) {
		/* an empty line ends the header section */
		if (hdr[pos] == '\n' ||
		    (hdr[pos] == '\r' && pos + 1 < len && hdr[pos + 1] == '\n'))
			break;
		/* the field runs to the LF not followed by SP or HT */
		end = pos;
		for (;;) {
			const char *lf = memchr(hdr + end, '\n', len - end);

			if (lf == NULL) {
				end = len;
				break;
			}
			end = (size_t)(lf - hdr) + 1;
			if (end >= len || (hdr[end] != ' ' && hdr[end] != '\t'))
				break;
		}
		colon = pos;
		while (colon < end && hdr[colon] != ':' && hdr[colon] != '\n')
			colon++;
		if (colon < end && hdr[colon] == ':') {
			size_t n = colon;

			while (n > pos &&
			    (hdr[n - 1] == ' ' || hdr[n - 1] == '\t'))
				n--;
			if (n - pos == nlen &&
			    strncasecmp(hdr + pos, AUTH_RESULTS_NAME, nlen) ==
			        0 &&
			    ar_value_claims(hdr, colon + 1, end, authserv_id)) {
				if (found < max) {
					out[found].off = pos;
					out[found].len = end - pos;
				}
				found++;
			}
		}
		pos = end;
	}
	return found;
}
