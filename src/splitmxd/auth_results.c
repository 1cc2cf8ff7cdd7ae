/*
 * auth_results.c - Authentication-Results (RFC 8601) writer and scanner.
 *
 * Turns auth_spf/auth_dkim results into one folded header field and finds
 * existing fields that claim our authserv-id. Pure functions: no I/O, no
 * globals. Peer-controlled strings (domains, selectors) are always quoted
 * or stripped so they cannot inject CRLF or break the field's syntax.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "auth_dkim.h"
#include "auth_results.h"
#include "auth_spf.h"
#include "sbuf.h"

#define AUTH_RESULTS_NAME	"Authentication-Results"
#define AUTH_RESULTS_B_MIN	8	/* header.b prefix, RFC 6008 */

/* RFC 2045 token: printable US-ASCII except SPACE and tspecials. */
static bool
ar_is_token_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

int
auth_results_append_value(struct sbuf *out, const char *s)
{
	const unsigned char *p;
	bool token = *s != '\0';

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (!ar_is_token_char(*p))
			token = false;
	}
	if (token)
		return sbuf_append_str(out, s);
	if (sbuf_append_char(out, '"') == -1)
		return -1;
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p >= 0x7f)
			continue;
		if ((*p == '"' || *p == '\\') &&
		    sbuf_append_char(out, '\\') == -1)
			return -1;
		if (sbuf_append_char(out, (char)*p) == -1)
			return -1;
	}
	return sbuf_append_char(out, '"');
}

int
auth_results_append_comment(struct sbuf *out, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		/* '"' is dropped: the folder would take it for a quote */
		if (*p < 0x20 || *p >= 0x7f || *p == '"')
			continue;
		if ((*p == '(' || *p == ')' || *p == '\\') &&
		    sbuf_append_char(out, '\\') == -1)
			return -1;
		if (sbuf_append_char(out, (char)*p) == -1)
			return -1;
	}
	return 0;
}

/*
 * Greedy folding: a space outside a quoted-string becomes CRLF TAB when
 * the next word would pass the column limit. Unfolding (RFC 5322 2.2.3)
 * restores a WSP, so the meaning is unchanged. A word longer than the
 * limit stays on its own line.
 */
int
auth_results_fold(struct sbuf *out, const char *field, size_t len)
{
	size_t i, start, col = 0, wlen;
	bool quoted = false, esc = false, first = true;

	start = 0;
	for (i = 0; i <= len; i++) {
		if (i < len) {
			char c = field[i];

			if (esc) {
				esc = false;
				continue;
			}
			if (quoted && c == '\\') {
				esc = true;
				continue;
			}
			if (c == '"')
				quoted = !quoted;
			if (c != ' ' || quoted)
				continue;
		}
		/* field[start..i) is one word */
		wlen = i - start;
		if (first) {
			if (sbuf_append(out, field + start, wlen) == -1)
				return -1;
			col = wlen;
			first = false;
		} else if (col + 1 + wlen <= AUTH_RESULTS_LINE_MAX) {
			if (sbuf_append_char(out, ' ') == -1 ||
			    sbuf_append(out, field + start, wlen) == -1)
				return -1;
			col += 1 + wlen;
		} else {
			if (sbuf_append(out, "\r\n\t", 3) == -1 ||
			    sbuf_append(out, field + start, wlen) == -1)
				return -1;
			col = 1 + wlen;
		}
		start = i + 1;
	}
	return sbuf_append(out, "\r\n", 2);
}

static int
ar_add_spf(struct sbuf *f, const struct auth_spf_result *spf)
{
	bool helo = spf->identity != NULL && strcmp(spf->identity, "helo") == 0;

	if (sbuf_printf(f, " spf=%s", auth_spf_res_str(spf->result)) == -1)
		return -1;
	if (spf->comment[0] != '\0') {
		if (sbuf_append_str(f, " (") == -1 ||
		    auth_results_append_comment(f, spf->comment) == -1 ||
		    sbuf_append_char(f, ')') == -1)
			return -1;
	}
	if (spf->domain[0] == '\0')
		return 0;
	if (sbuf_append_str(f, helo ? " smtp.helo=" : " smtp.mailfrom=") == -1)
		return -1;
	return auth_results_append_value(f, spf->domain);
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
		    auth_results_append_comment(f, sig->comment) == -1 ||
		    sbuf_append_char(f, ')') == -1)
			return -1;
	}
	if (sig->domain[0] != '\0') {
		if (sbuf_append_str(f, " header.d=") == -1 ||
		    auth_results_append_value(f, sig->domain) == -1)
			return -1;
	}
	if (sig->selector[0] != '\0') {
		if (sbuf_append_str(f, " header.s=") == -1 ||
		    auth_results_append_value(f, sig->selector) == -1)
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
		    auth_results_append_value(f, b) == -1)
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
	    auth_results_append_value(&f, authserv_id) == -1 ||
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
			auth_results_append_comment(&f, dkim->error) == -1 ||
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
	r = auth_results_fold(out, f.data, f.len);
done:
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
		for (; i < end && ar_is_token_char((unsigned char)s[i]); i++) {
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
