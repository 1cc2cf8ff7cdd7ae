/*
 * header_fmt.h - quoting and folding for the header fields we write.
 *
 * Pure: appends to an sbuf; no I/O, no logging, no globals. The output
 * never contains a CR or LF except the CRLF (TAB) that header_fmt_fold
 * writes itself, so peer text cannot start a header field of its own.
 */
#ifndef SPLITMX_HEADER_FMT_H
#define SPLITMX_HEADER_FMT_H

#include <stdbool.h>
#include <stddef.h>

#include "sbuf.h"

#define HEADER_FMT_LINE_MAX 78 /* RFC 5322 2.1.1 "SHOULD" */

/* RFC 2045 token octet: printable US-ASCII except SPACE and tspecials. */
bool header_fmt_is_token_char(unsigned char c);

/*
 * Appends s as a value (RFC 8601, RFC 7208 9.1): as is when it is a
 * non-empty token, otherwise as an RFC 5322 quoted-string with '"' and
 * '\\' escaped. Control, DEL and 8-bit octets are dropped. Returns 0, or
 * -1 when out's cap was reached (out then holds part of the value).
 */
int header_fmt_append_value(struct sbuf *out, const char *s);

/*
 * Appends s for use inside an RFC 5322 comment (the parentheses are the
 * caller's): '(', ')' and '\\' escaped; control, DEL, 8-bit octets and
 * '"' dropped ('"' would open a quoted-string for header_fmt_fold).
 * Returns 0 or -1 (cap, as above).
 */
int header_fmt_append_comment(struct sbuf *out, const char *s);

/*
 * Appends the one-line field (name, colon, value; len octets, no CR or
 * LF) to out, folded with CRLF TAB where a space outside a quoted-string
 * lets the line stay within HEADER_FMT_LINE_MAX columns, then CRLF. A
 * word longer than the limit stays whole on a line of its own. Returns 0
 * or -1 (cap, as above).
 */
int header_fmt_fold(struct sbuf *out, const char *field, size_t len);

#endif
