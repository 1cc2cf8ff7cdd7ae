/*
 * check_dsn.c - DSN composition: compose, then read the result back with a
 * small MIME reader (boundary, parts, delivery-status fields), plus the
 * status extraction table and one pass through Python's email parser.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsn.h"
#include "sbuf.h"

#define T_NOW     ((time_t)1700000000) /* Tue, 14 Nov 2023 22:13:20 */
#define T_ARRIVAL ((time_t)1699990000)

static const char orig_msg[] = "Received: from client.example.org\r\n"
                               "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: hello\r\n"
                               "\r\n"
                               "Body line one\r\n"
                               "Body line two\r\n";

/* ---- a small MIME reader ---- */

struct t_part {
	const char *hdr; /* header section, without the empty line */
	size_t hdrlen;
	const char *body;
	size_t bodylen;
};

struct t_msg {
	struct t_part top;
	char boundary[128];
	struct t_part parts[8];
	size_t nparts;
};

static void
t_split(const char *s, size_t len, struct t_part *p)
{
	const char *e = memmem(s, len, "\r\n\r\n", 4);

	ck_assert_ptr_nonnull(e);
	p->hdr = s;
	p->hdrlen = (size_t)(e - s) + 2;
	p->body = e + 4;
	p->bodylen = len - (size_t)(p->body - s);
}

/* Unfolded value of the first field called name, or false. */
static bool
t_field(const char *hdr, size_t len, const char *name, char *out,
    size_t outsize)
{
	size_t nlen = strlen(name), i = 0, o = 0;

	while (i < len) {
		const char *eol = memmem(hdr + i, len - i, "\r\n", 2);
		size_t end = eol != NULL ? (size_t)(eol - hdr) : len;

		if (end - i > nlen && hdr[i + nlen] == ':' &&
		    strncasecmp(hdr + i, name, nlen) == 0) {
			size_t j = i + nlen + 1;

			for (;;) {
				for (; j < end && o + 1 < outsize; j++)
					out[o++] = hdr[j];
				/* Continuation lines start with WSP. */
				if (end + 2 < len &&
				    (hdr[end + 2] == ' ' ||
				        hdr[end + 2] == '\t')) {
					j = end + 2;
					eol = memmem(hdr + j, len - j, "\r\n",
					    2);
					end = eol != NULL ?
					    (size_t)(eol - hdr) :
					    len;
				} else
					break;
			}
			out[o] = '\0';
			/* Trim leading white space. */
			for (j = 0; out[j] == ' ' || out[j] == '\t'; j++)
				;
			memmove(out, out + j, o - j + 1);
			return true;
		}
		i = end + 2;
	}
	return false;
}

static void
t_parse(const char *s, size_t len, struct t_msg *m)
{
	char ct[512], delim[140];
	const char *b, *p, *next, *end = s + len;
	size_t dlen, blen;

	memset(m, 0, sizeof(*m));
	t_split(s, len, &m->top);
	ck_assert(
	    t_field(m->top.hdr, m->top.hdrlen, "Content-Type", ct, sizeof(ct)));
	ck_assert_ptr_nonnull(strstr(ct, "multipart/report"));
	ck_assert_ptr_nonnull(strstr(ct, "report-type=delivery-status"));
	b = strstr(ct, "boundary=\"");
	ck_assert_ptr_nonnull(b);
	b += 10;
	blen = strcspn(b, "\"");
	ck_assert_uint_gt(blen, 0);
	ck_assert_uint_le(blen, 70); /* RFC 2046 5.1.1 */
	memcpy(m->boundary, b, blen);
	m->boundary[blen] = '\0';
	(void)snprintf(delim, sizeof(delim), "\r\n--%s", m->boundary);
	dlen = strlen(delim);

	p = memmem(m->top.body, (size_t)(end - m->top.body), delim, dlen);
	ck_assert_ptr_nonnull(p);
	for (;;) {
		p += dlen;
		if (p[0] == '-' && p[1] == '-') {
			ck_assert(p + 4 == end);
			ck_assert_int_eq(memcmp(p, "--\r\n", 4), 0);
			break;
		}
		ck_assert_int_eq(memcmp(p, "\r\n", 2), 0);
		p += 2;
		next = memmem(p, (size_t)(end - p), delim, dlen);
		ck_assert_ptr_nonnull(next);
		ck_assert_uint_lt(m->nparts, 8);
		t_split(p, (size_t)(next - p), &m->parts[m->nparts++]);
		p = next;
	}
}

static bool
t_part_type(const struct t_part *p, const char *type)
{
	char ct[256];

	if (!t_field(p->hdr, p->hdrlen, "Content-Type", ct, sizeof(ct)))
		return false;
	return strncasecmp(ct, type, strlen(type)) == 0;
}

/* Returns the idx-th blank-line separated block of a delivery-status. */
static bool
t_block(const struct t_part *p, size_t idx, const char **blk, size_t *blklen)
{
	const char *s = p->body, *end = p->body + p->bodylen, *e;
	size_t i;

	for (i = 0;; i++) {
		e = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);
		if (i == idx) {
			/* Keep the CRLF that ends the block's last line. */
			*blk = s;
			*blklen = e != NULL ? (size_t)(e - s) + 2 :
			                      (size_t)(end - s);
			return true;
		}
		if (e == NULL)
			return false;
		s = e + 4;
	}
}

/* Every line ends in CRLF and is shorter than 998 octets. */
static void
t_check_lines(const char *s, size_t len)
{
	size_t i, col = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r') {
			ck_assert_uint_lt(i + 1, len);
			ck_assert_int_eq(s[i + 1], '\n');
			col = 0;
			i++;
			continue;
		}
		ck_assert_int_ne(s[i], '\n');
		col++;
		ck_assert_uint_lt(col, 998);
	}
	ck_assert_uint_eq(col, 0);
}

static void
t_info(struct dsn_info *info, const struct dsn_rcpt *r, size_t n)
{
	memset(info, 0, sizeof(*info));
	info->reporting_mta = "mx.splitmx.test";
	info->queue_id = "4F2A9C0B1D";
	info->arrival = T_ARRIVAL;
	info->now = T_NOW;
	info->orig_sender = "alice@example.org";
	info->rcpts = r;
	info->nrcpts = n;
	info->orig = orig_msg;
	info->orig_len = sizeof(orig_msg) - 1;
	info->return_max = 1 << 20;
}

static void
t_expect(const char *blk, size_t len, const char *name, const char *want)
{
	char v[2048];

	ck_assert_msg(t_field(blk, len, name, v, sizeof(v)), "no %s", name);
	ck_assert_str_eq(v, want);
}

static void
t_absent(const char *blk, size_t len, const char *name)
{
	char v[64];

	ck_assert_msg(!t_field(blk, len, name, v, sizeof(v)), "%s present",
	    name);
}

/* ---- tests ---- */

START_TEST(test_failed_two_rcpts)
{
	struct dsn_rcpt r[2] = {
		{ "bob@example.net", "rfc822;bob+2Bx@example.net",
		    DSN_ACTION_FAILED, "5.1.1", "mx1.example.net",
		    "550 5.1.1 <bob@example.net>: user unknown", "corp" },
		{ "carol@example.net", NULL, DSN_ACTION_FAILED, NULL, NULL,
		    NULL, "archive" },
	};
	struct dsn_info info;
	struct sbuf out;
	struct t_msg m;
	const char *blk;
	size_t blen;
	char v[512];

	t_info(&info, r, 2);
	info.envid = "QQ+2B1234";
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_check_lines(out.data, out.len);
	t_parse(out.data, out.len, &m);

	t_expect(m.top.hdr, m.top.hdrlen, "From",
	    "\"Mail Delivery System\" <MAILER-DAEMON@mx.splitmx.test>");
	t_expect(m.top.hdr, m.top.hdrlen, "To", "<alice@example.org>");
	t_expect(m.top.hdr, m.top.hdrlen, "Subject",
	    "Undelivered Mail Returned to Sender");
	t_expect(m.top.hdr, m.top.hdrlen, "Date",
	    "Tue, 14 Nov 2023 22:13:20 +0000");
	t_expect(m.top.hdr, m.top.hdrlen, "Message-ID",
	    "<4F2A9C0B1D.dsn.1700000000@mx.splitmx.test>");
	t_expect(m.top.hdr, m.top.hdrlen, "Auto-Submitted", "auto-replied");
	t_expect(m.top.hdr, m.top.hdrlen, "MIME-Version", "1.0");

	ck_assert_uint_eq(m.nparts, 3);
	ck_assert(t_part_type(&m.parts[0], "text/plain"));
	ck_assert(t_field(m.parts[0].hdr, m.parts[0].hdrlen, "Content-Type", v,
	    sizeof(v)));
	ck_assert_ptr_nonnull(strstr(v, "charset=us-ascii"));
	ck_assert(t_part_type(&m.parts[1], "message/delivery-status"));
	ck_assert(t_part_type(&m.parts[2], "text/rfc822-headers"));

	/* Human part names each recipient, target, action, diagnostic. */
	ck_assert_ptr_nonnull(memmem(m.parts[0].body, m.parts[0].bodylen,
	    "<bob@example.net> (target corp): failed", 39));
	ck_assert_ptr_nonnull(memmem(m.parts[0].body, m.parts[0].bodylen,
	    "<carol@example.net> (target archive): failed", 44));
	ck_assert_ptr_nonnull(
	    memmem(m.parts[0].body, m.parts[0].bodylen, "user unknown", 12));

	/* Per-message block. */
	ck_assert(t_block(&m.parts[1], 0, &blk, &blen));
	t_expect(blk, blen, "Reporting-MTA", "dns; mx.splitmx.test");
	t_expect(blk, blen, "Original-Envelope-Id", "QQ+2B1234");
	t_expect(blk, blen, "Arrival-Date", "Tue, 14 Nov 2023 19:26:40 +0000");

	ck_assert(t_block(&m.parts[1], 1, &blk, &blen));
	t_expect(blk, blen, "Original-Recipient", "rfc822;bob+2Bx@example.net");
	t_expect(blk, blen, "Final-Recipient", "rfc822; bob@example.net");
	t_expect(blk, blen, "Action", "failed");
	t_expect(blk, blen, "Status", "5.1.1");
	t_expect(blk, blen, "Remote-MTA", "dns; mx1.example.net");
	t_expect(blk, blen, "Diagnostic-Code",
	    "smtp; 550 5.1.1 <bob@example.net>: user unknown");
	t_expect(blk, blen, "Last-Attempt-Date",
	    "Tue, 14 Nov 2023 22:13:20 +0000");

	ck_assert(t_block(&m.parts[1], 2, &blk, &blen));
	t_absent(blk, blen, "Original-Recipient");
	t_expect(blk, blen, "Final-Recipient", "rfc822; carol@example.net");
	t_expect(blk, blen, "Status", "5.0.0");
	t_absent(blk, blen, "Remote-MTA");
	t_absent(blk, blen, "Diagnostic-Code");
	ck_assert(!t_block(&m.parts[1], 3, &blk, &blen));

	/* Headers only: up to and including the empty line, no body. */
	ck_assert_uint_eq(m.parts[2].bodylen,
	    strstr(orig_msg, "\r\n\r\n") - orig_msg + 4);
	ck_assert_int_eq(memcmp(m.parts[2].body, orig_msg, m.parts[2].bodylen),
	    0);
	sbuf_release(&out);
}
END_TEST

START_TEST(test_delayed_and_delivered)
{
	struct dsn_rcpt r = { "bob@example.net", NULL, DSN_ACTION_DELAYED,
		"4.4.1", "mx1.example.net", "421 4.4.1 try later", "corp" };
	struct dsn_info info;
	struct sbuf out;
	struct t_msg m;
	const char *blk;
	size_t blen;

	t_info(&info, &r, 1);
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_check_lines(out.data, out.len);
	t_parse(out.data, out.len, &m);
	ck_assert_uint_eq(m.nparts, 3);
	t_expect(m.top.hdr, m.top.hdrlen, "Subject",
	    "Delayed Mail (still being retried)");
	ck_assert(t_block(&m.parts[1], 0, &blk, &blen));
	t_absent(blk, blen, "Original-Envelope-Id");
	ck_assert(t_block(&m.parts[1], 1, &blk, &blen));
	t_expect(blk, blen, "Action", "delayed");
	t_expect(blk, blen, "Status", "4.4.1");
	ck_assert_ptr_nonnull(
	    memmem(m.parts[0].body, m.parts[0].bodylen, "delayed", 7));

	r.action = DSN_ACTION_DELIVERED;
	r.status = "2.0.0";
	r.diagnostic = "250 2.0.0 Ok: queued as ABC";
	sbuf_reset(&out);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_check_lines(out.data, out.len);
	t_parse(out.data, out.len, &m);
	ck_assert_uint_eq(m.nparts, 3);
	t_expect(m.top.hdr, m.top.hdrlen, "Subject",
	    "Successful Mail Delivery Report");
	ck_assert(t_block(&m.parts[1], 1, &blk, &blen));
	t_expect(blk, blen, "Action", "delivered");
	t_expect(blk, blen, "Status", "2.0.0");
	t_expect(blk, blen, "Diagnostic-Code",
	    "smtp; 250 2.0.0 Ok: queued as ABC");

	/* A malformed status falls back to the action's default. */
	r.status = "2.x";
	sbuf_reset(&out);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_parse(out.data, out.len, &m);
	ck_assert(t_block(&m.parts[1], 1, &blk, &blen));
	t_expect(blk, blen, "Status", "2.0.0");
	sbuf_release(&out);
}
END_TEST

START_TEST(test_return_full_and_over_cap)
{
	struct dsn_rcpt r = { "bob@example.net", NULL, DSN_ACTION_FAILED,
		"5.7.1", NULL, "554 5.7.1 rejected", "corp" };
	struct dsn_info info;
	struct sbuf out;
	struct t_msg m;

	t_info(&info, &r, 1);
	info.return_full = true;
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_check_lines(out.data, out.len);
	t_parse(out.data, out.len, &m);
	ck_assert_uint_eq(m.nparts, 3);
	ck_assert(t_part_type(&m.parts[2], "message/rfc822"));
	ck_assert_uint_eq(m.parts[2].bodylen, sizeof(orig_msg) - 1);
	ck_assert_int_eq(memcmp(m.parts[2].body, orig_msg,
	                     sizeof(orig_msg) - 1),
	    0);

	/* Too big for return_max: headers only after all. */
	info.return_max = 40;
	sbuf_reset(&out);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_check_lines(out.data, out.len);
	t_parse(out.data, out.len, &m);
	ck_assert(t_part_type(&m.parts[2], "text/rfc822-headers"));
	/* ...and the header section itself cut at a line end within 40. */
	ck_assert_uint_eq(m.parts[2].bodylen,
	    strlen("Received: from client.example.org\r\n"));
	ck_assert_int_eq(memcmp(m.parts[2].body, orig_msg, m.parts[2].bodylen),
	    0);
	sbuf_release(&out);
}
END_TEST

START_TEST(test_boundary_collision)
{
	struct dsn_rcpt r = { "bob@example.net", NULL, DSN_ACTION_FAILED,
		"5.1.1", NULL, "550 5.1.1 no", "corp" };
	struct dsn_info info;
	struct sbuf out, evil;
	struct t_msg m;
	char first[128];

	t_info(&info, &r, 1);
	info.return_full = true;
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_parse(out.data, out.len, &m);
	memcpy(first, m.boundary, sizeof(first));

	/* An original that contains the boundary we would pick. */
	sbuf_init(&evil, 4096);
	ck_assert_int_eq(sbuf_printf(&evil,
	                     "Subject: trap\r\n\r\n--%s\r\n"
	                     "Content-Type: text/plain\r\n\r\nfake\r\n--%s--\r\n",
	                     first, first),
	    0);
	info.orig = evil.data;
	info.orig_len = evil.len;
	sbuf_reset(&out);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_parse(out.data, out.len, &m);
	ck_assert_str_ne(m.boundary, first);
	ck_assert_ptr_null(
	    memmem(evil.data, evil.len, m.boundary, strlen(m.boundary)));
	ck_assert_uint_eq(m.nparts, 3);
	ck_assert(t_part_type(&m.parts[2], "message/rfc822"));
	ck_assert_uint_eq(m.parts[2].bodylen, evil.len);
	ck_assert_int_eq(memcmp(m.parts[2].body, evil.data, evil.len), 0);
	sbuf_release(&evil);
	sbuf_release(&out);
}
END_TEST

START_TEST(test_long_diagnostic_folded)
{
	struct dsn_rcpt r = { "bob@example.net", NULL, DSN_ACTION_FAILED,
		"5.0.0", "mx1.example.net", NULL, "corp" };
	struct dsn_info info;
	struct sbuf out, diag;
	struct t_msg m;
	const char *blk;
	const char *want = "smtp; 550-5.0.0 first 550 5.0.0 evil X-Injected: "
	                   "yes word word";
	size_t blen, i, j;
	char v[8192];

	sbuf_init(&diag, 8192);
	ck_assert_int_eq(sbuf_append_str(&diag,
	                     "550-5.0.0 first\r\n550 5.0.0 "
	                     "evil\r\nX-Injected: yes\x01\x7f "),
	    0);
	for (i = 0; i < 200; i++)
		ck_assert_int_eq(sbuf_append_str(&diag, "word "), 0);
	/* A 2000-octet run with no space to fold at. */
	for (i = 0; i < 2000; i++)
		ck_assert_int_eq(sbuf_append_char(&diag, 'z'), 0);
	r.diagnostic = diag.data;
	t_info(&info, &r, 1);
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	t_check_lines(out.data, out.len);
	t_parse(out.data, out.len, &m);
	ck_assert_uint_eq(m.nparts, 3);
	ck_assert(t_block(&m.parts[1], 1, &blk, &blen));
	ck_assert(t_field(blk, blen, "Diagnostic-Code", v, sizeof(v)));
	/* Folding may widen white space; compare with runs collapsed. */
	for (i = j = 0; v[i] != '\0'; i++)
		if (v[i] != ' ' || j == 0 || v[j - 1] != ' ')
			v[j++] = v[i];
	v[j] = '\0';
	ck_assert(strncmp(v, want, strlen(want)) == 0);
	ck_assert_ptr_nonnull(strstr(v, "word zzzz"));
	for (i = 0; v[i] != '\0'; i++)
		ck_assert(
		    (unsigned char)v[i] >= 0x20 && (unsigned char)v[i] < 0x7f);
	/* No header line was smuggled in. */
	ck_assert_ptr_null(memmem(out.data, out.len, "\r\nX-Injected", 12));
	t_expect(blk, blen, "Action", "failed");
	t_expect(blk, blen, "Last-Attempt-Date",
	    "Tue, 14 Nov 2023 22:13:20 +0000");
	sbuf_release(&diag);
	sbuf_release(&out);
}
END_TEST

START_TEST(test_cap_reached)
{
	struct dsn_rcpt r = { "bob@example.net", NULL, DSN_ACTION_FAILED,
		"5.1.1", NULL, "550 5.1.1 no", "corp" };
	struct dsn_info info;
	struct sbuf out;
	size_t full;

	t_info(&info, &r, 1);
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	full = out.len;
	sbuf_release(&out);

	sbuf_init(&out, full - 1);
	ck_assert_int_eq(sbuf_append_str(&out, "keep"), 0);
	ck_assert_int_eq(dsn_compose(&out, &info), -1);
	ck_assert_str_eq(out.data, "keep");
	sbuf_release(&out);

	sbuf_init(&out, full);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	ck_assert_uint_eq(out.len, full);
	sbuf_release(&out);
}
END_TEST

START_TEST(test_python_email_parser)
{
	struct dsn_rcpt r = { "bob@example.net", "rfc822;bob@example.net",
		DSN_ACTION_FAILED, "5.1.1", "mx1.example.net",
		"550 5.1.1 user unknown", "corp" };
	struct dsn_info info;
	struct sbuf out, cmd;
	char path[] = "/tmp/check_dsn_XXXXXX",
	     opath[] = "/tmp/check_dsn_oXXXXXX";
	char res[64];
	FILE *fp;
	int fd, ofd, st;

	t_info(&info, &r, 1);
	info.return_full = true;
	sbuf_init(&out, 1 << 20);
	ck_assert_int_eq(dsn_compose(&out, &info), 0);
	fd = mkstemp(path);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, out.data, out.len), (ssize_t)out.len);
	ck_assert_int_eq(close(fd), 0);
	ofd = mkstemp(opath);
	ck_assert_int_ne(ofd, -1);
	ck_assert_int_eq(close(ofd), 0);

	sbuf_init(&cmd, 4096);
	ck_assert_int_eq(sbuf_printf(&cmd,
	                     "/usr/bin/python3 -c \"import "
	                     "email,sys; m=email.message_from_binary_file(open(sys.argv[1],"
	                     "'rb')); assert m.get_content_type()=='multipart/report'; "
	                     "parts=m.get_payload(); assert parts[1].get_content_type()=="
	                     "'message/delivery-status'; print('ok')\" %s >%s 2>&1",
	                     path, opath),
	    0);
	st = system(cmd.data);
	fp = fopen(opath, "r");
	ck_assert_ptr_nonnull(fp);
	memset(res, 0, sizeof(res));
	(void)fread(res, 1, sizeof(res) - 1, fp);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(unlink(opath), 0);
	ck_assert_msg(st == 0, "python exited with %d: %s", st, res);
	ck_assert_str_eq(res, "ok\n");
	sbuf_release(&cmd);
	sbuf_release(&out);
}
END_TEST

static const struct {
	unsigned code;
	const char *reply;
	const char *want;
} status_table[] = {
	{ 550, "550 5.1.1 user unknown", "5.1.1" },
	{ 550, "550-5.7.1 policy\r\n550 5.7.1 more", "5.7.1" },
	{ 451, "451 4.3.0 try again", "4.3.0" },
	{ 250, "250 2.0.0 Ok", "2.0.0" },
	{ 552, "552 5.3.4", "5.3.4" },
	{ 550, "550 5.123.456 long", "5.123.456" },
	{ 550, "550 user unknown", "5.0.0" },
	{ 450, "450 mailbox busy", "4.0.0" },
	{ 250, "250 ok", "2.0.0" },
	{ 550, "550 4.1.1 class mismatch", "5.0.0" },
	{ 451, "451 5.1.1 class mismatch", "4.0.0" },
	{ 550, "550 5.1234.1 too many digits", "5.0.0" },
	{ 550, "550 5.1.1234 too many digits", "5.0.0" },
	{ 550, "550 5.1.1x glued", "5.0.0" },
	{ 550, "550 5..1 empty", "5.0.0" },
	{ 550, "550 3.1.1 bad class", "5.0.0" },
	{ 550, "550 see 5.1.1 later", "5.0.0" },
	{ 550, "", "5.0.0" },
	{ 550, NULL, "5.0.0" },
	{ 421, "421", "4.0.0" },
	{ 554, "5.7.1 no code", "5.7.1" },
	{ 0, "garbage", "5.0.0" },
};

START_TEST(test_status_from_reply)
{
	char buf[16];

	memset(buf, 'x', sizeof(buf));
	dsn_status_from_reply(status_table[_i].code, status_table[_i].reply,
	    buf, sizeof(buf));
	ck_assert_str_eq(buf, status_table[_i].want);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dsn");
	TCase *tc = tcase_create("compose");
	TCase *ts = tcase_create("status");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_failed_two_rcpts);
	tcase_add_test(tc, test_delayed_and_delivered);
	tcase_add_test(tc, test_return_full_and_over_cap);
	tcase_add_test(tc, test_boundary_collision);
	tcase_add_test(tc, test_long_diagnostic_folded);
	tcase_add_test(tc, test_cap_reached);
	tcase_add_test(tc, test_python_email_parser);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(ts, test_status_from_reply, 0,
	    (int)(sizeof(status_table) / sizeof(status_table[0])));
	suite_add_tcase(s, ts);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
