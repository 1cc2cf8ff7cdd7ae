/*
 * smtp_proto_hdr.c - the header scanner (Received, trace, DKIM-Signature
 * counts, the Message-ID and our X-Splitmx-Trace values, in any chunk
 * split) and the parser of our trace field. Pure: no I/O.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "smtp_proto.h"
#include "smtp_proto_int.h"

/* ------------------------------------------------------------------ */
/* Header scanner */

enum {
	HS_LINESTART = 0, /* after CRLF, or at the start */
	HS_NAME,          /* in a field name */
	HS_NAMEWSP,       /* WSP after a field name, before ':' */
	HS_VALUE,         /* in a value being captured */
	HS_SKIP,          /* in any other line */
	HS_CR,            /* CR inside a line */
	HS_EMPTYCR,       /* CR at a line start */
};

/* The buffer the value being captured goes to. */
static char *
hdr_value_buf(struct smtp_proto_hdrscan *h, size_t **len_out, size_t *max_out)
{
	if (h->capture == 1) {
		*len_out = &h->msgid_len;
		*max_out = SMTP_PROTO_MSGID_MAX;
		return h->msgid;
	}
	*len_out = &h->trace_len[h->capture - 2];
	*max_out = SMTP_PROTO_TRACE_VALUE_MAX;
	return h->trace[h->capture - 2];
}

/*
 * Appends one octet of the value being captured. The value is kept trimmed
 * and NUL-terminated at all times: a run of WSP is parked just past the
 * NUL (its length in name_len, which is free while capturing) and only
 * moved in when a non-WSP octet follows. Control octets are dropped.
 */
static void
hdr_value_add(struct smtp_proto_hdrscan *h, unsigned char c)
{
	size_t pend = h->name_len, max, *lenp;
	char *buf = hdr_value_buf(h, &lenp, &max);

	if (c == ' ' || c == '\t') {
		if (*lenp == 0)
			return;
		if (*lenp + 1 + pend <= max) {
			buf[*lenp + 1 + pend] = (char)c;
			h->name_len++;
		}
		return;
	}
	if (c < 0x20 || c == 0x7f)
		return;
	if (*lenp + pend + 1 > max)
		return; /* truncated */
	if (pend > 0)
		memmove(buf + *lenp, buf + *lenp + 1, pend);
	*lenp += pend;
	h->name_len = 0;
	buf[(*lenp)++] = (char)c;
	buf[*lenp] = '\0';
}

static void
hdr_capture(struct smtp_proto_hdrscan *h, unsigned which)
{
	size_t *lenp, max;
	char *buf;

	h->capture = which;
	buf = hdr_value_buf(h, &lenp, &max);
	*lenp = 0;
	buf[0] = '\0';
	h->name_len = 0;
	h->state = HS_VALUE;
}

static void
hdr_name_end(struct smtp_proto_hdrscan *h)
{
	h->state = HS_SKIP;
	if (h->name_len == 8 && smtp_proto_ci_eq(h->name, 8, "Received"))
		h->received++;
	else if (h->name_len == sizeof(SMTP_PROTO_TRACE_HEADER) - 1 &&
	    smtp_proto_ci_eq(h->name, h->name_len, SMTP_PROTO_TRACE_HEADER)) {
		if (h->traces++ < SMTP_PROTO_TRACE_KEEP)
			hdr_capture(h, 2 + h->traces - 1);
	} else if (h->name_len == 14 &&
	    smtp_proto_ci_eq(h->name, 14, "DKIM-Signature"))
		h->dkim_sigs++;
	else if (h->name_len == 10 &&
	    smtp_proto_ci_eq(h->name, 10, "Message-ID") && !h->has_msgid) {
		h->has_msgid = true;
		hdr_capture(h, 1);
	}
}

static void
hdr_name_char(struct smtp_proto_hdrscan *h, unsigned char c)
{
	if (c == ':')
		hdr_name_end(h);
	else if (c == '\r')
		h->state = HS_CR;
	else if (c == ' ' || c == '\t')
		h->state = HS_NAMEWSP;
	else if (c < 33 || c > 126)
		h->state = HS_SKIP; /* not a field name (RFC 5322 ftext) */
	else {
		if (h->name_len < sizeof(h->name))
			h->name[h->name_len] = (char)c;
		/* Stop counting past the buffer: such a name matches nothing.
		 */
		if (h->name_len <= sizeof(h->name))
			h->name_len++;
	}
}

void
smtp_proto_hdrscan_init(struct smtp_proto_hdrscan *h)
{
	memset(h, 0, sizeof(*h));
	h->state = HS_LINESTART;
}

void
smtp_proto_hdrscan_feed(struct smtp_proto_hdrscan *h, const char *data,
    size_t len)
{
	const unsigned char *p = (const unsigned char *)data;
	size_t i;

	for (i = 0; i < len && !h->in_body; i++) {
		unsigned char c = p[i];

		switch (h->state) {
		case HS_LINESTART:
			if (c == '\r') {
				h->capture = 0;
				h->state = HS_EMPTYCR;
			} else if (c == ' ' || c == '\t') {
				/* Folded continuation of the previous field. */
				h->state = h->capture ? HS_VALUE : HS_SKIP;
				if (h->capture)
					hdr_value_add(h, c);
			} else {
				h->capture = 0;
				h->name_len = 0;
				h->state = HS_NAME;
				hdr_name_char(h, c);
			}
			break;
		case HS_NAME:
			hdr_name_char(h, c);
			break;
		case HS_NAMEWSP:
			if (c == ':')
				hdr_name_end(h);
			else if (c == '\r')
				h->state = HS_CR;
			else if (c != ' ' && c != '\t')
				h->state = HS_SKIP;
			break;
		case HS_VALUE:
			if (c == '\r')
				h->state = HS_CR;
			else
				hdr_value_add(h, c);
			break;
		case HS_CR:
			if (c == '\n')
				h->state = HS_LINESTART;
			else if (c != '\r') {
				/* The CR was bare: still the same line. */
				h->state = h->capture ? HS_VALUE : HS_SKIP;
				if (h->capture)
					hdr_value_add(h, c);
			}
			break;
		case HS_EMPTYCR:
			if (c == '\n')
				h->in_body = true;
			else
				h->state = c == '\r' ? HS_CR : HS_SKIP;
			break;
		default: /* HS_SKIP */
			if (c == '\r')
				h->state = HS_CR;
			break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Our trace field */

static bool
trace_node_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '[' || c == ']' || c == ':';
}

int
smtp_proto_parse_trace(const char *value, size_t len,
    struct smtp_proto_trace *out)
{
	size_t i = 0;

	out->node[0] = out->id[0] = '\0';
	while (i < len) {
		size_t k, klen, v, vlen;

		while (i < len && (value[i] == ' ' || value[i] == '\t'))
			i++;
		for (k = i; i < len && value[i] != '=' && value[i] != ';'; i++)
			;
		klen = i - k;
		while (klen > 0 &&
		    (value[k + klen - 1] == ' ' || value[k + klen - 1] == '\t'))
			klen--;
		v = i;
		if (i < len && value[i] == '=') {
			for (v = ++i; i < len && value[i] != ';'; i++)
				;
		}
		vlen = i - v;
		while (vlen > 0 && (value[v] == ' ' || value[v] == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 &&
		    (value[v + vlen - 1] == ' ' || value[v + vlen - 1] == '\t'))
			vlen--;
		if (i < len)
			i++; /* ';' */
		if (klen == 4 && smtp_proto_ci_eq(value + k, 4, "node")) {
			size_t j;

			if (vlen == 0 || vlen > SMTP_PROTO_DOMAIN_MAX)
				return -1;
			for (j = 0; j < vlen; j++)
				if (!trace_node_char(
				        (unsigned char)value[v + j]))
					return -1;
			memcpy(out->node, value + v, vlen);
			out->node[vlen] = '\0';
		} else if (klen == 2 && smtp_proto_ci_eq(value + k, 2, "id")) {
			size_t j;

			if (vlen == 0 || vlen >= sizeof(out->id))
				return -1;
			for (j = 0; j < vlen; j++) {
				unsigned char c = (unsigned char)value[v + j];

				if (!((c >= 'A' && c <= 'Z') ||
				        (c >= '0' && c <= '9')))
					return -1;
			}
			memcpy(out->id, value + v, vlen);
			out->id[vlen] = '\0';
		}
	}
	return out->node[0] != '\0' && out->id[0] != '\0' ? 0 : -1;
}
