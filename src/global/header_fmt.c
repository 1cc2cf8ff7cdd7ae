/*
 * header_fmt.c - quoting and folding for the header fields we write.
 *
 * Used by the Authentication-Results and Received-SPF formatters
 * (auth_results_). Owns no state and does no I/O. The quoting functions
 * never let a control or 8-bit octet through, so peer text put in a
 * field through them cannot inject CRLF or break the field's syntax; the
 * folder adds CRLF TAB only at spaces outside quoted-strings.
 */
#include <stdbool.h>
#include <string.h>

#include "header_fmt.h"
#include "sbuf.h"

bool
header_fmt_is_token_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

int
header_fmt_append_value(struct sbuf *out, const char *s)
{
	const unsigned char *p;
	bool token = *s != '\0';

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (!header_fmt_is_token_char(*p))
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
header_fmt_append_comment(struct sbuf *out, const char *s)
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
 * restores a WSP, so the meaning is unchanged.
 */
int
header_fmt_fold(struct sbuf *out, const char *field, size_t len)
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
		} else if (col + 1 + wlen <= HEADER_FMT_LINE_MAX) {
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
