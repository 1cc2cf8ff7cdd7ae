/*
 * dsn.c - composing delivery status notifications.
 *
 * Builds an RFC 6522 multipart/report with three parts: human readable
 * text, an RFC 3464 message/delivery-status, and the original headers or
 * message. Pure: no I/O, no logging, no globals. Everything a peer could
 * have influenced (replies, addresses) is stripped of control characters
 * and folded so that no output line reaches 998 octets (RFC 5322 2.1.1).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dsn.h"
#include "sbuf.h"

#define DSN_LINE_SOFT    78   /* RFC 5322 2.1.1: SHOULD */
#define DSN_LINE_HARD    900  /* well below the 998 MUST, room for indent */
#define DSN_FIELD_MAX    512  /* one address or host name in a field */
#define DSN_DIAG_MAX     4096 /* a diagnostic longer than this is cut */
#define DSN_BOUNDARY_QID 32   /* queue id octets used in the boundary */

struct dsn_ctx {
	struct sbuf *out;
	bool failed; /* the cap was reached */
};

static void
dsn_put(struct dsn_ctx *c, const char *s)
{
	if (!c->failed && sbuf_append_str(c->out, s) == -1)
		c->failed = true;
}

static void dsn_putf(struct dsn_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
dsn_putf(struct dsn_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;
	va_start(ap, fmt);
	if (sbuf_vprintf(c->out, fmt, ap) == -1)
		c->failed = true;
	va_end(ap);
}

static void
dsn_putn(struct dsn_ctx *c, const char *s, size_t len)
{
	if (!c->failed && sbuf_append(c->out, s, len) == -1)
		c->failed = true;
}

/*
 * Appends a short value (address, host, id) on the current line: control
 * characters and 8-bit octets become '?', and the value is cut at
 * DSN_FIELD_MAX so that a hostile value cannot make the line too long or
 * smuggle in a new header line.
 */
static void
dsn_put_value(struct dsn_ctx *c, const char *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; s[i] != '\0' && i < DSN_FIELD_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];
		char put = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;

		if (c->failed)
			return;
		if (sbuf_append_char(c->out, put) == -1)
			c->failed = true;
	}
}

/*
 * Appends peer text (an SMTP reply, possibly multi-line) as folded lines.
 * CR, LF and other controls become spaces, runs of them collapse into one,
 * 8-bit octets become '?', and the text is cut at DSN_DIAG_MAX. col is the
 * column the text starts in; continuation lines start with indent, which
 * must begin with white space so that unfolding restores the text. A line
 * is broken before a space once it passes DSN_LINE_SOFT, or anywhere once
 * it reaches DSN_LINE_HARD (a long run without spaces).
 */
static void
dsn_put_folded(struct dsn_ctx *c, const char *text, size_t col,
    const char *indent)
{
	char clean[DSN_DIAG_MAX + 1];
	size_t n = 0, i, start, len, brk;
	bool space = false;

	for (i = 0; text[i] != '\0' && n < DSN_DIAG_MAX; i++) {
		unsigned char ch = (unsigned char)text[i];

		if (ch < 0x20 || ch == 0x7f || ch == ' ') {
			space = true;
			continue;
		}
		if (space && n > 0)
			clean[n++] = ' ';
		space = false;
		if (n < DSN_DIAG_MAX)
			clean[n++] = ch >= 0x80 ? '?' : (char)ch;
	}
	len = n;
	start = 0;
	while (start < len) {
		size_t room = col < DSN_LINE_SOFT ? DSN_LINE_SOFT - col : 1;
		size_t hard = col < DSN_LINE_HARD ? DSN_LINE_HARD - col : 1;

		if (len - start <= room) {
			dsn_putn(c, clean + start, len - start);
			break;
		}
		/* The last space that keeps the line short, else the next. */
		brk = 0;
		for (i = start + 1; i < len && i - start <= hard; i++) {
			if (clean[i] != ' ')
				continue;
			if (i - start <= room) {
				brk = i;
				continue;
			}
			if (brk == 0)
				brk = i;
			break;
		}
		if (brk == 0)
			brk = start + (len - start < hard ? len - start : hard);
		dsn_putn(c, clean + start, brk - start);
		if (brk >= len)
			break;
		dsn_put(c, "\r\n");
		dsn_put(c, indent);
		col = strlen(indent);
		/* The space at brk now follows the indent; skip it. */
		start = clean[brk] == ' ' ? brk + 1 : brk;
	}
}

/* Appends an RFC 5322 date-time in UTC; locale independent. */
static void
dsn_put_date(struct dsn_ctx *c, time_t t)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		/* Out of range for struct tm: the epoch is still a date. */
		dsn_put(c, "Thu, 01 Jan 1970 00:00:00 +0000");
		return;
	}
	dsn_putf(c, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
	    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
}

static bool
dsn_status_valid(const char *s)
{
	size_t i, digits;
	int part;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return false;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; s[i] >= '0' && s[i] <= '9'; i++)
			digits++;
		if (digits < 1 || digits > 3)
			return false;
		if (part == 0 && s[i++] != '.')
			return false;
	}
	return s[i] == '\0';
}

static const char *
dsn_action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "failed";
	case DSN_ACTION_DELAYED:
		return "delayed";
	case DSN_ACTION_DELIVERED:
		return "delivered";
	}
	return "failed";
}

static const char *
dsn_action_default_status(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "5.0.0";
	case DSN_ACTION_DELAYED:
		return "4.0.0";
	case DSN_ACTION_DELIVERED:
		return "2.0.0";
	}
	return "5.0.0";
}

static bool
dsn_contains(const char *hay, size_t haylen, const char *needle)
{
	if (hay == NULL)
		return false;
	return memmem(hay, haylen, needle, strlen(needle)) != NULL;
}

/*
 * True when the boundary occurs nowhere in what goes into the body: the
 * original message and every string we copy into the first two parts.
 */
static bool
dsn_boundary_ok(const struct dsn_info *info, const char *b)
{
	size_t i;

	if (dsn_contains(info->orig, info->orig_len, b))
		return false;
	for (i = 0; i < info->nrcpts; i++) {
		const struct dsn_rcpt *r = &info->rcpts[i];
		const char *const fields[] = { r->final_rcpt, r->orcpt,
			r->remote_mta, r->diagnostic, r->target };
		size_t f;

		for (f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
			if (fields[f] != NULL &&
			    dsn_contains(fields[f], strlen(fields[f]), b))
				return false;
	}
	if (info->envid != NULL &&
	    dsn_contains(info->envid, strlen(info->envid), b))
		return false;
	return true;
}

/*
 * Derives a boundary from the queue id and the time. It starts with "=_",
 * which quoted-printable never produces, and ends in a fixed-width counter,
 * so no candidate is a prefix of another: each rejected candidate occurs at
 * a different offset of the original, and the loop ends.
 */
static void
dsn_make_boundary(const struct dsn_info *info, char *b, size_t bsize)
{
	char qid[DSN_BOUNDARY_QID + 1];
	const char *q = info->queue_id != NULL ? info->queue_id : "";
	size_t i, n = 0;
	uint32_t counter;

	for (i = 0; q[i] != '\0' && n < DSN_BOUNDARY_QID; i++) {
		char ch = q[i];

		if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= 'A' && ch <= 'Z'))
			qid[n++] = ch;
	}
	qid[n] = '\0';
	for (counter = 0;; counter++) {
		/* At most 2 + 32 + 1 + 20 + 1 + 8 = 64 octets (RFC 2046: 70). */
		(void)snprintf(b, bsize, "=_%s.%" PRId64 ".%08" PRIx32, qid,
		    (int64_t)info->now, counter);
		if (dsn_boundary_ok(info, b) || counter == UINT32_MAX)
			break;
	}
}

static bool
dsn_has_8bit(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/*
 * Length of the header section: up to and including the first empty line
 * (CRLF or a bare LF), or everything when there is none.
 */
static size_t
dsn_header_len(const char *s, size_t len)
{
	size_t i = 0, eol;
	const char *nl;

	while (i < len) {
		nl = memchr(s + i, '\n', len - i);
		if (nl == NULL)
			return len;
		eol = (size_t)(nl - s) + 1;
		if (eol - i == 1 || (eol - i == 2 && s[i] == '\r'))
			return eol;
		i = eol;
	}
	return len;
}

static void
dsn_put_human(struct dsn_ctx *c, const struct dsn_info *info, bool any_failed,
    bool any_delayed, bool full)
{
	size_t i;

	dsn_put(c, "This is the mail system at host ");
	dsn_put_value(c, info->reporting_mta);
	dsn_put(c, ".\r\n\r\n");
	if (any_failed)
		dsn_put(c,
		    "Your message could not be delivered to one or more "
		    "recipients.\r\n");
	else if (any_delayed)
		dsn_put(c,
		    "Your message has not been delivered to one or more "
		    "recipients yet.\r\nDelivery will be retried; you do not "
		    "need to send it again.\r\n");
	else
		dsn_put(c,
		    "Your message was delivered to the recipients "
		    "listed below.\r\n");
	dsn_put(c,
	    full ? "The message is attached below.\r\n" :
	           "Its headers are attached below.\r\n");
	dsn_put(c, "\r\nQueue ID: ");
	dsn_put_value(c, info->queue_id);
	dsn_put(c, "\r\n");
	for (i = 0; i < info->nrcpts; i++) {
		const struct dsn_rcpt *r = &info->rcpts[i];

		dsn_put(c, "\r\n<");
		dsn_put_value(c, r->final_rcpt);
		dsn_put(c, ">");
		if (r->target != NULL) {
			dsn_put(c, " (target ");
			dsn_put_value(c, r->target);
			dsn_put(c, ")");
		}
		dsn_put(c, ": ");
		dsn_put(c, dsn_action_name(r->action));
		dsn_put(c, "\r\n");
		if (r->remote_mta != NULL) {
			dsn_put(c, "    remote host: ");
			dsn_put_value(c, r->remote_mta);
			dsn_put(c, "\r\n");
		}
		if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
			dsn_put(c, "    said: ");
			dsn_put_folded(c, r->diagnostic, 10, "      ");
			dsn_put(c, "\r\n");
		}
	}
}

static void
dsn_put_status(struct dsn_ctx *c, const struct dsn_info *info)
{
	size_t i;

	dsn_put(c, "Reporting-MTA: dns; ");
	dsn_put_value(c, info->reporting_mta);
	dsn_put(c, "\r\n");
	if (info->envid != NULL) {
		dsn_put(c, "Original-Envelope-Id: ");
		dsn_put_value(c, info->envid);
		dsn_put(c, "\r\n");
	}
	dsn_put(c, "Arrival-Date: ");
	dsn_put_date(c, info->arrival);
	dsn_put(c, "\r\n");
	for (i = 0; i < info->nrcpts; i++) {
		const struct dsn_rcpt *r = &info->rcpts[i];
		const char *st = dsn_status_valid(r->status) ?
		    r->status :
		    dsn_action_default_status(r->action);

		dsn_put(c, "\r\n");
		if (r->orcpt != NULL) {
			/* RFC 3461 4.2: passed on as received. */
			dsn_put(c, "Original-Recipient: ");
			dsn_put_value(c, r->orcpt);
			dsn_put(c, "\r\n");
		}
		dsn_put(c, "Final-Recipient: rfc822; ");
		dsn_put_value(c, r->final_rcpt);
		dsn_put(c, "\r\nAction: ");
		dsn_put(c, dsn_action_name(r->action));
		dsn_put(c, "\r\nStatus: ");
		dsn_put(c, st);
		dsn_put(c, "\r\n");
		if (r->remote_mta != NULL) {
			dsn_put(c, "Remote-MTA: dns; ");
			dsn_put_value(c, r->remote_mta);
			dsn_put(c, "\r\n");
		}
		if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
			dsn_put(c, "Diagnostic-Code: smtp; ");
			dsn_put_folded(c, r->diagnostic, 23, "    ");
			dsn_put(c, "\r\n");
		}
		dsn_put(c, "Last-Attempt-Date: ");
		dsn_put_date(c, info->now);
		dsn_put(c, "\r\n");
	}
}

/*
 * How much of the original goes into the third part: all of it for
 * RET=FULL when it fits return_max, else the header section, cut at the
 * last line end within return_max so that no header is half there.
 */
static size_t
dsn_return_len(const struct dsn_info *info, bool *full_out)
{
	size_t len;
	const char *nl;

	*full_out = false;
	if (info->orig == NULL)
		return 0;
	if (info->return_full && info->orig_len <= info->return_max) {
		*full_out = true;
		return info->orig_len;
	}
	len = dsn_header_len(info->orig, info->orig_len);
	if (len > info->return_max) {
		len = info->return_max;
		nl = len > 0 ? memrchr(info->orig, '\n', len) : NULL;
		len = nl != NULL ? (size_t)(nl - info->orig) + 1 : 0;
	}
	return len;
}

static void
dsn_put_original(struct dsn_ctx *c, const struct dsn_info *info, size_t len,
    bool full, bool eightbit)
{
	if (full)
		dsn_put(c, "Content-Type: message/rfc822\r\n");
	else
		dsn_put(c, "Content-Type: text/rfc822-headers\r\n");
	/* RFC 2046 5.2.1: message/rfc822 is 7bit, 8bit or binary only. */
	if (eightbit)
		dsn_put(c, "Content-Transfer-Encoding: 8bit\r\n");
	dsn_put(c, "Content-Description: ");
	dsn_put(c, full ? "Original message" : "Original message headers");
	dsn_put(c, "\r\n\r\n");
	if (len > 0)
		dsn_putn(c, info->orig, len);
}

int
dsn_compose(struct sbuf *out, const struct dsn_info *info)
{
	struct dsn_ctx c = { out, false };
	char boundary[96];
	size_t start = out->len, i, retlen;
	bool any_failed = false, any_delayed = false, full, eightbit;

	for (i = 0; i < info->nrcpts; i++) {
		if (info->rcpts[i].action == DSN_ACTION_FAILED)
			any_failed = true;
		else if (info->rcpts[i].action == DSN_ACTION_DELAYED)
			any_delayed = true;
	}
	dsn_make_boundary(info, boundary, sizeof(boundary));
	retlen = dsn_return_len(info, &full);
	eightbit = retlen > 0 && dsn_has_8bit(info->orig, retlen);

	dsn_put(&c, "From: \"Mail Delivery System\" <MAILER-DAEMON@");
	dsn_put_value(&c, info->reporting_mta);
	dsn_put(&c, ">\r\nTo: <");
	dsn_put_value(&c, info->orig_sender);
	dsn_put(&c, ">\r\nSubject: ");
	if (any_failed)
		dsn_put(&c, "Undelivered Mail Returned to Sender");
	else if (any_delayed)
		dsn_put(&c, "Delayed Mail (still being retried)");
	else
		dsn_put(&c, "Successful Mail Delivery Report");
	dsn_put(&c, "\r\nDate: ");
	dsn_put_date(&c, info->now);
	dsn_put(&c, "\r\nMessage-ID: <");
	dsn_put_value(&c, info->queue_id);
	dsn_putf(&c, ".dsn.%" PRId64 "@", (int64_t)info->now);
	dsn_put_value(&c, info->reporting_mta);
	dsn_put(&c, ">\r\n");
	/* RFC 3834 5: keeps auto-responders from answering the bounce. */
	dsn_put(&c, "Auto-Submitted: auto-replied\r\n");
	dsn_put(&c, "MIME-Version: 1.0\r\n");
	dsn_put(&c,
	    "Content-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"");
	dsn_put(&c, boundary);
	dsn_put(&c, "\"\r\n");
	if (eightbit)
		dsn_put(&c, "Content-Transfer-Encoding: 8bit\r\n");
	dsn_put(&c, "\r\nThis is a MIME-encapsulated message.\r\n");

	dsn_putf(&c, "\r\n--%s\r\n", boundary);
	dsn_put(&c,
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Description: Notification\r\n\r\n");
	dsn_put_human(&c, info, any_failed, any_delayed, full);

	dsn_putf(&c, "\r\n--%s\r\n", boundary);
	dsn_put(&c,
	    "Content-Type: message/delivery-status\r\n"
	    "Content-Description: Delivery report\r\n\r\n");
	dsn_put_status(&c, info);

	dsn_putf(&c, "\r\n--%s\r\n", boundary);
	dsn_put_original(&c, info, retlen, full, eightbit);
	dsn_putf(&c, "\r\n--%s--\r\n", boundary);

	if (c.failed) {
		sbuf_truncate(out, start);
		return -1;
	}
	return 0;
}

void
dsn_status_from_reply(unsigned code, const char *reply, char *buf,
    size_t bufsize)
{
	const char *p = reply != NULL ? reply : "";
	const char *dflt;
	size_t i, n, digits;
	int part;

	if (bufsize == 0)
		return;
	dflt = code / 100 == 2 ? "2.0.0" : code / 100 == 4 ? "4.0.0" : "5.0.0";
	/* Skip the reply code and its separator ("550 " or "550-"). */
	if (p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' &&
	    p[2] >= '0' && p[2] <= '9' &&
	    (p[3] == ' ' || p[3] == '-' || p[3] == '\0'))
		p += p[3] == '\0' ? 3 : 4;
	while (*p == ' ' || *p == '\t')
		p++;
	/* RFC 3463 2: class "." subject "." detail, 1-3 digits each. */
	if (p[0] - '0' != (int)(code / 100) ||
	    (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
		goto fallback;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; p[i] >= '0' && p[i] <= '9'; i++)
			digits++;
		if (digits < 1 || digits > 3)
			goto fallback;
		if (part == 0 && p[i++] != '.')
			goto fallback;
	}
	if (p[i] != '\0' && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' &&
	    p[i] != '\n')
		goto fallback;
	n = i < bufsize - 1 ? i : bufsize - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return;
fallback:
	(void)snprintf(buf, bufsize, "%s", dflt);
}
