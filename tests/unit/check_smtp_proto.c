/*
 * check_smtp_proto.c - unit tests for the pure SMTP parsers: command
 * lines, paths and ESMTP parameters (valid/invalid tables), HELO, BDAT,
 * xtext, reply formatting, reply-line parsing, the DATA/BDAT decoder fed
 * in every 2- and 3-way chunk split (smuggling vectors included) and the
 * header scanner.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "sbuf.h"
#include "smtp_proto.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, so cases may contain NUL octets. */
#define BYTES(s) s, sizeof(s) - 1

/* ------------------------------------------------------------------ */
/* Command lines */

struct cmd_case {
	const char *line;
	size_t len;
	int rc;
	enum smtp_proto_verb verb;
	const char *arg; /* expected arg when rc == 0 */
	unsigned code;   /* expected reply when rc == -1 */
	const char *enh;
	const char *text;
};

static const struct cmd_case cmd_cases[] = {
	{ BYTES("HELO x"), 0, SMTP_PROTO_CMD_HELO, "x", 0, NULL, NULL },
	{ BYTES("ehlo   mx.example.com "), 0, SMTP_PROTO_CMD_EHLO,
	    "mx.example.com ", 0, NULL, NULL },
	{ BYTES("MAIL FROM:<a@b>"), 0, SMTP_PROTO_CMD_MAIL, "<a@b>", 0, NULL,
	    NULL },
	{ BYTES("mail from: <a@b> SIZE=1"), 0, SMTP_PROTO_CMD_MAIL,
	    "<a@b> SIZE=1", 0, NULL, NULL },
	{ BYTES("Mail From:<>"), 0, SMTP_PROTO_CMD_MAIL, "<>", 0, NULL, NULL },
	{ BYTES("MAIL FROM:"), 0, SMTP_PROTO_CMD_MAIL, "", 0, NULL, NULL },
	{ BYTES("MAIL TO:<a@b>"), -1, SMTP_PROTO_CMD_MAIL, NULL, 501, "5.5.4",
	    "Syntax: MAIL FROM:<address>" },
	{ BYTES("MAIL <a@b>"), -1, SMTP_PROTO_CMD_MAIL, NULL, 501, "5.5.4",
	    "Syntax: MAIL FROM:<address>" },
	{ BYTES("MAIL FROM <a@b>"), -1, SMTP_PROTO_CMD_MAIL, NULL, 501, "5.5.4",
	    "Syntax: MAIL FROM:<address>" },
	{ BYTES("MAIL"), -1, SMTP_PROTO_CMD_MAIL, NULL, 501, "5.5.4",
	    "Syntax: MAIL FROM:<address>" },
	{ BYTES("MAIL FRO"), -1, SMTP_PROTO_CMD_MAIL, NULL, 501, "5.5.4",
	    "Syntax: MAIL FROM:<address>" },
	{ BYTES("RCPT TO:<a@b>"), 0, SMTP_PROTO_CMD_RCPT, "<a@b>", 0, NULL,
	    NULL },
	{ BYTES("rcpt to:   <a@b> NOTIFY=NEVER"), 0, SMTP_PROTO_CMD_RCPT,
	    "<a@b> NOTIFY=NEVER", 0, NULL, NULL },
	{ BYTES("RCPT FROM:<a@b>"), -1, SMTP_PROTO_CMD_RCPT, NULL, 501, "5.5.4",
	    "Syntax: RCPT TO:<address>" },
	{ BYTES("RCPT"), -1, SMTP_PROTO_CMD_RCPT, NULL, 501, "5.5.4",
	    "Syntax: RCPT TO:<address>" },
	{ BYTES("DATA"), 0, SMTP_PROTO_CMD_DATA, "", 0, NULL, NULL },
	{ BYTES("data"), 0, SMTP_PROTO_CMD_DATA, "", 0, NULL, NULL },
	{ BYTES("BDAT 100 LAST"), 0, SMTP_PROTO_CMD_BDAT, "100 LAST", 0, NULL,
	    NULL },
	{ BYTES("RSET"), 0, SMTP_PROTO_CMD_RSET, "", 0, NULL, NULL },
	{ BYTES("NOOP hello"), 0, SMTP_PROTO_CMD_NOOP, "hello", 0, NULL, NULL },
	{ BYTES("QuIt"), 0, SMTP_PROTO_CMD_QUIT, "", 0, NULL, NULL },
	{ BYTES("VRFY bob"), 0, SMTP_PROTO_CMD_VRFY, "bob", 0, NULL, NULL },
	{ BYTES("EXPN list"), 0, SMTP_PROTO_CMD_EXPN, "list", 0, NULL, NULL },
	{ BYTES("HELP"), 0, SMTP_PROTO_CMD_HELP, "", 0, NULL, NULL },
	{ BYTES("STARTTLS"), 0, SMTP_PROTO_CMD_STARTTLS, "", 0, NULL, NULL },
	{ BYTES("AUTH PLAIN dGVzdA=="), 0, SMTP_PROTO_CMD_AUTH,
	    "PLAIN dGVzdA==", 0, NULL, NULL },
	{ BYTES("ETRN example.com"), 0, SMTP_PROTO_CMD_ETRN, "example.com", 0,
	    NULL, NULL },
	{ BYTES("TURN"), 0, SMTP_PROTO_CMD_TURN, "", 0, NULL, NULL },
	{ BYTES("GET / HTTP/1.1"), 0, SMTP_PROTO_CMD_HTTP, "/ HTTP/1.1", 0,
	    NULL, NULL },
	{ BYTES("POST /x HTTP/1.0"), 0, SMTP_PROTO_CMD_HTTP, "/x HTTP/1.0", 0,
	    NULL, NULL },
	{ BYTES("HEAD /"), 0, SMTP_PROTO_CMD_HTTP, "/", 0, NULL, NULL },
	{ BYTES("PUT /"), 0, SMTP_PROTO_CMD_HTTP, "/", 0, NULL, NULL },
	{ BYTES("CONNECT mx:25 HTTP/1.1"), 0, SMTP_PROTO_CMD_HTTP,
	    "mx:25 HTTP/1.1", 0, NULL, NULL },
	/* Unknown verbs are not errors; the verb must end at SP or EOL. */
	{ BYTES("FOO bar"), 0, SMTP_PROTO_CMD_UNKNOWN, "bar", 0, NULL, NULL },
	{ BYTES(""), 0, SMTP_PROTO_CMD_UNKNOWN, "", 0, NULL, NULL },
	{ BYTES("HELOX"), 0, SMTP_PROTO_CMD_UNKNOWN, "", 0, NULL, NULL },
	{ BYTES("DATA:"), 0, SMTP_PROTO_CMD_UNKNOWN, "", 0, NULL, NULL },
	{ BYTES("MAILFROM:<a@b>"), 0, SMTP_PROTO_CMD_UNKNOWN, "", 0, NULL,
	    NULL },
	{ BYTES("HELO\tx"), 0, SMTP_PROTO_CMD_UNKNOWN, "", 0, NULL, NULL },
	{ BYTES(" HELO x"), 0, SMTP_PROTO_CMD_UNKNOWN, "HELO x", 0, NULL,
	    NULL },
	/* NUL, CR and LF inside a line. */
	{ BYTES("HELO a\0b"), -1, SMTP_PROTO_CMD_UNKNOWN, NULL, 500, "5.5.2",
	    NULL },
	{ BYTES("\0"), -1, SMTP_PROTO_CMD_UNKNOWN, NULL, 500, "5.5.2", NULL },
	{ BYTES("HELO a\rb"), -1, SMTP_PROTO_CMD_UNKNOWN, NULL, 500, "5.5.2",
	    NULL },
	{ BYTES("DATA\n"), -1, SMTP_PROTO_CMD_UNKNOWN, NULL, 500, "5.5.2",
	    NULL },
	{ BYTES("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>"), -1, SMTP_PROTO_CMD_UNKNOWN,
	    NULL, 500, "5.5.2", NULL },
};

static void
check_status(const struct smtp_proto_status *st, unsigned code, const char *enh,
    const char *text, const char *what)
{
	ck_assert_msg(st->code == code, "%s: code %u, want %u (%s)", what,
	    st->code, code, st->text ? st->text : "");
	if (enh != NULL) {
		ck_assert_ptr_nonnull(st->enhanced);
		ck_assert_msg(strcmp(st->enhanced, enh) == 0,
		    "%s: enhanced %s, want %s", what, st->enhanced, enh);
	}
	ck_assert_ptr_nonnull(st->text);
	if (text != NULL)
		ck_assert_msg(strstr(st->text, text) != NULL,
		    "%s: text '%s' lacks '%s'", what, st->text, text);
}

START_TEST(test_command)
{
	const struct cmd_case *c = &cmd_cases[_i];
	struct smtp_proto_command cmd;
	struct smtp_proto_status st = { 0, NULL, NULL };
	int rc;

	rc = smtp_proto_parse_command(c->line, c->len, &cmd, &st);
	ck_assert_msg(rc == c->rc, "case %d '%s': rc %d", _i, c->line, rc);
	if (rc == 0) {
		ck_assert_msg(cmd.verb == c->verb, "case %d: verb %d", _i,
		    (int)cmd.verb);
		if (c->verb != SMTP_PROTO_CMD_UNKNOWN) {
			ck_assert_uint_eq(cmd.arglen, strlen(c->arg));
			ck_assert(memcmp(cmd.arg, c->arg, cmd.arglen) == 0);
		}
		ck_assert(cmd.arg >= c->line &&
		    cmd.arg + cmd.arglen == c->line + c->len);
	} else {
		check_status(&st, c->code, c->enh, c->text, c->line);
		if (c->verb != SMTP_PROTO_CMD_UNKNOWN)
			ck_assert_int_eq(cmd.verb, c->verb);
	}
}
END_TEST

START_TEST(test_command_length)
{
	char line[SMTP_PROTO_CMDLINE_MAX + 8];
	struct smtp_proto_command cmd;
	struct smtp_proto_status st;

	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	/* The limit includes CRLF, which the caller has already removed. */
	ck_assert_int_eq(smtp_proto_parse_command(line,
	                     SMTP_PROTO_CMDLINE_MAX - 2, &cmd, &st),
	    0);
	ck_assert_int_eq(cmd.verb, SMTP_PROTO_CMD_NOOP);
	ck_assert_int_eq(smtp_proto_parse_command(line,
	                     SMTP_PROTO_CMDLINE_MAX - 1, &cmd, &st),
	    -1);
	check_status(&st, 500, "5.5.2", "too long", "long line");
}
END_TEST

/* ------------------------------------------------------------------ */
/* MAIL FROM: */

#define F_NULL    0x01
#define F_PM      0x02
#define F_QUOTED  0x04
#define F_LITERAL 0x08
#define F_UTF8    0x10

struct mail_ok {
	const char *arg;
	const char *mailbox;
	const char *local;
	const char *domain;
	const char *domain_lc;
	unsigned flags;
	bool has_size;
	uint64_t size;
	enum smtp_proto_body body;
	bool smtputf8;
	enum smtp_proto_ret ret;
	const char *envid;
};

static const struct mail_ok mail_ok_cases[] = {
	{ "<>", "", "", "", "", F_NULL, false, 0, SMTP_PROTO_BODY_NONE, false,
	    SMTP_PROTO_RET_NONE, "" },
	{ "<a@b.c>", "a@b.c", "a", "b.c", "b.c", 0, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "  <Joe.User@Mail.Example.COM>  ", "Joe.User@Mail.Example.COM",
	    "Joe.User", "Mail.Example.COM", "mail.example.com", 0, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	/* Source route: parsed, then ignored. */
	{ "<@r1.example,@r2.example:u@d.example>", "u@d.example", "u",
	    "d.example", "d.example", 0, false, 0, SMTP_PROTO_BODY_NONE, false,
	    SMTP_PROTO_RET_NONE, "" },
	{ "<@[10.0.0.1]:u@d>", "u@d", "u", "d", "d", 0, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	/* Quoted local parts, including a quoted '@' and quoted-pairs. */
	{ "<\"john doe\"@x.example>", "\"john doe\"@x.example", "john doe",
	    "x.example", "x.example", F_QUOTED, false, 0, SMTP_PROTO_BODY_NONE,
	    false, SMTP_PROTO_RET_NONE, "" },
	{ "<\"a@b\"@x>", "\"a@b\"@x", "a@b", "x", "x", F_QUOTED, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<\"a\\\"b\\\\c\"@x>", "\"a\\\"b\\\\c\"@x", "a\"b\\c", "x", "x",
	    F_QUOTED, false, 0, SMTP_PROTO_BODY_NONE, false,
	    SMTP_PROTO_RET_NONE, "" },
	{ "<\"a>b\"@x> SIZE=5", "\"a>b\"@x", "a>b", "x", "x", F_QUOTED, true, 5,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<\"\"@x>", "\"\"@x", "", "x", "x", F_QUOTED, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	/* Percent hack is valid syntax; policy refuses it elsewhere. */
	{ "<user%foreign.example@ours.example>",
	    "user%foreign.example@ours.example", "user%foreign.example",
	    "ours.example", "ours.example", 0, false, 0, SMTP_PROTO_BODY_NONE,
	    false, SMTP_PROTO_RET_NONE, "" },
	{ "<!#$%&'*+-/=?^_`{|}~@x>", "!#$%&'*+-/=?^_`{|}~@x",
	    "!#$%&'*+-/=?^_`{|}~", "x", "x", 0, false, 0, SMTP_PROTO_BODY_NONE,
	    false, SMTP_PROTO_RET_NONE, "" },
	{ "<a.b.c@d-e.f9>", "a.b.c@d-e.f9", "a.b.c", "d-e.f9", "d-e.f9", 0,
	    false, 0, SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<x@localhost>", "x@localhost", "x", "localhost", "localhost", 0,
	    false, 0, SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	/* Address literals. */
	{ "<u@[192.0.2.1]>", "u@[192.0.2.1]", "u", "[192.0.2.1]", "[192.0.2.1]",
	    F_LITERAL, false, 0, SMTP_PROTO_BODY_NONE, false,
	    SMTP_PROTO_RET_NONE, "" },
	{ "<u@[IPv6:2001:DB8::1]>", "u@[IPv6:2001:DB8::1]", "u",
	    "[IPv6:2001:DB8::1]", "[ipv6:2001:db8::1]", F_LITERAL, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<u@[ipv6:::1]>", "u@[ipv6:::1]", "u", "[ipv6:::1]", "[ipv6:::1]",
	    F_LITERAL, false, 0, SMTP_PROTO_BODY_NONE, false,
	    SMTP_PROTO_RET_NONE, "" },
	/* Parameters. */
	{ "<a@b> SIZE=100", "a@b", "a", "b", "b", 0, true, 100,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	/* 20 digits past 2^64: valid syntax, saturated (policy says 552). */
	{ "<a@b> SIZE=99999999999999999999", "a@b", "a", "b", "b", 0, true,
	    UINT64_MAX, SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<a@b> SIZE=0", "a@b", "a", "b", "b", 0, true, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<a@b> size=18446744073709551615", "a@b", "a", "b", "b", 0, true,
	    UINT64_MAX, SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_NONE, "" },
	{ "<a@b> BODY=8BITMIME", "a@b", "a", "b", "b", 0, false, 0,
	    SMTP_PROTO_BODY_8BITMIME, false, SMTP_PROTO_RET_NONE, "" },
	{ "<a@b> body=7bit", "a@b", "a", "b", "b", 0, false, 0,
	    SMTP_PROTO_BODY_7BIT, false, SMTP_PROTO_RET_NONE, "" },
	{ "<a@b> RET=HDRS ENVID=abc+2Bdef", "a@b", "a", "b", "b", 0, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_HDRS, "abc+2Bdef" },
	{ "<a@b> ret=full", "a@b", "a", "b", "b", 0, false, 0,
	    SMTP_PROTO_BODY_NONE, false, SMTP_PROTO_RET_FULL, "" },
	{ "<a@b>   SIZE=1   BODY=7BIT  SMTPUTF8  ", "a@b", "a", "b", "b", 0,
	    true, 1, SMTP_PROTO_BODY_7BIT, true, SMTP_PROTO_RET_NONE, "" },
	{ "<> SIZE=1 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=QQ314159", "", "",
	    "", "", F_NULL, true, 1, SMTP_PROTO_BODY_8BITMIME, true,
	    SMTP_PROTO_RET_FULL, "QQ314159" },
	/* UTF-8 with SMTPUTF8 on the same line (parameters parsed first). */
	{ "<p\xc3\xb6st@ex\xc3\xa4mple.de> SMTPUTF8",
	    "p\xc3\xb6st@ex\xc3\xa4mple.de", "p\xc3\xb6st", "ex\xc3\xa4mple.de",
	    "ex\xc3\xa4mple.de", F_UTF8, false, 0, SMTP_PROTO_BODY_NONE, true,
	    SMTP_PROTO_RET_NONE, "" },
	{ "<\"\xe4\xbd\xa0 \xe5\xa5\xbd\"@X.Example> smtputf8",
	    "\"\xe4\xbd\xa0 \xe5\xa5\xbd\"@X.Example",
	    "\xe4\xbd\xa0 \xe5\xa5\xbd", "X.Example", "x.example",
	    F_UTF8 | F_QUOTED, false, 0, SMTP_PROTO_BODY_NONE, true,
	    SMTP_PROTO_RET_NONE, "" },
	{ "<\xf0\x9f\x98\x80@x> SMTPUTF8", "\xf0\x9f\x98\x80@x",
	    "\xf0\x9f\x98\x80", "x", "x", F_UTF8, false, 0,
	    SMTP_PROTO_BODY_NONE, true, SMTP_PROTO_RET_NONE, "" },
};

static void
check_path(const struct smtp_proto_path *p, const char *mailbox,
    const char *local, const char *domain, const char *domain_lc,
    unsigned flags, const char *what)
{
	ck_assert_msg(strcmp(p->mailbox, mailbox) == 0,
	    "%s: mailbox '%s', want '%s'", what, p->mailbox, mailbox);
	ck_assert_msg(strcmp(p->local, local) == 0, "%s: local '%s', want '%s'",
	    what, p->local, local);
	ck_assert_msg(strcmp(p->domain, domain) == 0,
	    "%s: domain '%s', want '%s'", what, p->domain, domain);
	ck_assert_msg(strcmp(p->domain_lc, domain_lc) == 0,
	    "%s: domain_lc '%s', want '%s'", what, p->domain_lc, domain_lc);
	ck_assert_msg(p->is_null == !!(flags & F_NULL), "%s: is_null", what);
	ck_assert_msg(p->is_postmaster == !!(flags & F_PM), "%s: postmaster",
	    what);
	ck_assert_msg(p->quoted_local == !!(flags & F_QUOTED), "%s: quoted",
	    what);
	ck_assert_msg(p->domain_literal == !!(flags & F_LITERAL), "%s: literal",
	    what);
	ck_assert_msg(p->has_utf8 == !!(flags & F_UTF8), "%s: utf8", what);
}

START_TEST(test_mail_ok)
{
	const struct mail_ok *c = &mail_ok_cases[_i];
	struct smtp_proto_mail m;
	struct smtp_proto_status st = { 0, NULL, NULL };
	int rc;

	rc = smtp_proto_parse_mail(c->arg, strlen(c->arg), &m, &st);
	ck_assert_msg(rc == 0, "case %d '%s': rc %d (%u %s %s)", _i, c->arg, rc,
	    st.code, st.enhanced ? st.enhanced : "", st.text ? st.text : "");
	check_path(&m.path, c->mailbox, c->local, c->domain, c->domain_lc,
	    c->flags, c->arg);
	ck_assert(m.has_size == c->has_size);
	ck_assert(m.size == c->size);
	ck_assert_int_eq(m.body, c->body);
	ck_assert(m.smtputf8 == c->smtputf8);
	ck_assert_int_eq(m.ret, c->ret);
	ck_assert_str_eq(m.envid, c->envid);
}
END_TEST

struct bad_case {
	const char *arg;
	size_t len;
	unsigned code;
	const char *enh;
	const char *text; /* substring of the reply text, or NULL */
};

static const struct bad_case mail_bad_cases[] = {
	{ BYTES(""), 501, "5.1.7", "<>" },
	{ BYTES("   "), 501, "5.1.7", "<>" },
	{ BYTES("<"), 501, "5.1.7", "unterminated" },
	{ BYTES("<a@b"), 501, "5.1.7", "unterminated" },
	{ BYTES("a@b"), 501, "5.1.7", "<>" },
	{ BYTES("a@b SIZE=1"), 501, "5.1.7", "<>" },
	{ BYTES("\"<a@b>\""), 501, "5.1.7", "<>" },
	{ BYTES("<\"abc@x>"), 501, "5.1.7", "unterminated" },
	{ BYTES("<\"abc\\\"@x>"), 501, "5.1.7", "unterminated" },
	{ BYTES("<a@b>x"), 501, "5.1.7", "after address" },
	{ BYTES("<a@b>SIZE=1"), 501, "5.1.7", "after address" },
	{ BYTES("<a@b><c@d>"), 501, "5.1.7", "after address" },
	/* Mailbox syntax. */
	{ BYTES("<postmaster>"), 501, "5.1.7", "sender" },
	{ BYTES("<user>"), 501, "5.1.7", "sender" },
	{ BYTES("<user@ourdomain@foreign>"), 501, "5.1.7", "sender" },
	{ BYTES("<@foreign:user@ourdomain@x>"), 501, "5.1.7", "sender" },
	{ BYTES("<a@b.>"), 501, "5.1.7", NULL },
	{ BYTES("<a@.b>"), 501, "5.1.7", NULL },
	{ BYTES("<a@b..c>"), 501, "5.1.7", NULL },
	{ BYTES("<a@-b.c>"), 501, "5.1.7", NULL },
	{ BYTES("<a@b-.c>"), 501, "5.1.7", NULL },
	{ BYTES("<a@b_c.d>"), 501, "5.1.7", NULL },
	{ BYTES("<a..b@c>"), 501, "5.1.7", NULL },
	{ BYTES("<.a@c>"), 501, "5.1.7", NULL },
	{ BYTES("<a.@c>"), 501, "5.1.7", NULL },
	{ BYTES("<@a>"), 501, "5.1.7", NULL },
	{ BYTES("<a@>"), 501, "5.1.7", NULL },
	{ BYTES("<@>"), 501, "5.1.7", NULL },
	{ BYTES("<@b.c>"), 501, "5.1.7", NULL },
	{ BYTES("<a b@c>"), 501, "5.1.7", NULL },
	{ BYTES("<a@b c>"), 501, "5.1.7", NULL },
	{ BYTES("< a@b>"), 501, "5.1.7", NULL },
	{ BYTES("<a@b >"), 501, "5.1.7", NULL },
	{ BYTES("<a(c)@b>"), 501, "5.1.7", NULL },
	{ BYTES("<a\x01z@c>"), 501, "5.1.7", NULL },
	{ BYTES("<\"a\x01\"@c>"), 501, "5.1.7", NULL },
	{ BYTES("<\"a\"b@c>"), 501, "5.1.7", NULL },
	{ BYTES("<a\"b\"@c>"), 501, "5.1.7", NULL },
	{ BYTES("<a@b\0c>"), 501, "5.1.7", NULL },
	/* Address literals. */
	{ BYTES("<a@[1.2.3]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[300.1.1.1]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[1.2.3.4.5]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[IPv6:zz::1]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[IPv6:1.2.3.4]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[::1]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[x-tag:foo]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[]>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[1.2.3.4>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[1.2.3.4]x>"), 501, "5.1.7", NULL },
	{ BYTES("<a@[1.2.3.4].com>"), 501, "5.1.7", NULL },
	/* Source routes. */
	{ BYTES("<@:a@b>"), 501, "5.1.7", NULL },
	{ BYTES("<@r1,a@b>"), 501, "5.1.7", NULL },
	{ BYTES("<@r1:>"), 501, "5.1.7", NULL },
	{ BYTES("<@r1 :a@b>"), 501, "5.1.7", NULL },
	{ BYTES("<@r1,:a@b>"), 501, "5.1.7", NULL },
	{ BYTES("<@r1,r2:a@b>"), 501, "5.1.7", NULL },
	/* Non-ASCII without SMTPUTF8, and invalid UTF-8 with it. */
	{ BYTES("<p\xc3\xb6st@x>"), 553, "5.6.7", "SMTPUTF8" },
	{ BYTES("<a@ex\xc3\xa4mple.de>"), 553, "5.6.7", "SMTPUTF8" },
	{ BYTES("<\"\xc3\xb6\"@x> SIZE=1"), 553, "5.6.7", "SMTPUTF8" },
	{ BYTES("<\xff@x> SMTPUTF8"), 501, "5.1.7", "UTF-8" },
	{ BYTES("<\xc0\xaf@x> SMTPUTF8"), 501, "5.1.7", "UTF-8" },
	{ BYTES("<\xed\xa0\x80@x> SMTPUTF8"), 501, "5.1.7", "UTF-8" },
	{ BYTES("<\xf4\x90\x80\x80@x> SMTPUTF8"), 501, "5.1.7", "UTF-8" },
	{ BYTES("<a\xc3@x> SMTPUTF8"), 501, "5.1.7", "UTF-8" },
	{ BYTES("<a@x\xe2\x82> SMTPUTF8"), 501, "5.1.7", "UTF-8" },
	{ BYTES("<\"a\\\xc3\xa9\"@c> SMTPUTF8"), 501, "5.1.7", NULL },
	{ BYTES("<a@[1.2.3.\xc3\xa9]> SMTPUTF8"), 501, "5.1.7", NULL },
	/* Parameters. */
	{ BYTES("<a@b> SIZE="), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SIZE"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SIZE=99999999999999999999999"), 501, "5.5.4", "SIZE" },
	{ BYTES("<a@b> SIZE=000000000000000000001"), 501, "5.5.4", "SIZE" },
	{ BYTES("<a@b> SIZE=-1"), 501, "5.5.4", "SIZE" },
	{ BYTES("<a@b> SIZE=+1"), 501, "5.5.4", "SIZE" },
	{ BYTES("<a@b> SIZE=1x"), 501, "5.5.4", "SIZE" },
	{ BYTES("<a@b> SIZE=1=2"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SIZE=1 SIZE=2"), 501, "5.5.4", "Duplicate" },
	{ BYTES("<a@b> size=1 BODY=7BIT Size=1"), 501, "5.5.4", "Duplicate" },
	{ BYTES("<a@b> SMTPUTF8 smtputf8"), 501, "5.5.4", "Duplicate" },
	{ BYTES("<a@b> BODY=BINARYMIME"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> BODY=9BIT"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> BODY="), 501, "5.5.4", NULL },
	{ BYTES("<a@b> BODY"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SMTPUTF8=yes"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> RET=ALL"), 501, "5.5.4", "RET" },
	{ BYTES("<a@b> RET"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> ENVID=a+zz"), 501, "5.5.4", "ENVID" },
	{ BYTES("<a@b> ENVID=a+2b"), 501, "5.5.4", "ENVID" },
	{ BYTES("<a@b> ENVID=a+2"), 501, "5.5.4", "ENVID" },
	{ BYTES("<a@b> ENVID=\xc3\xa9"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> FOO=bar"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> FOO"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> AUTH=<>"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> NOTIFY=NEVER"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> ORCPT=rfc822;a@b"), 555, "5.5.4", NULL },
	{ BYTES("<a@b> =x"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> -X=1"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SI_ZE=1"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SIZE=1\tBODY=7BIT"), 501, "5.5.4", NULL },
	{ BYTES("<a@b> SIZE=1\x01"), 501, "5.5.4", NULL },
};

START_TEST(test_mail_bad)
{
	const struct bad_case *c = &mail_bad_cases[_i];
	struct smtp_proto_mail m;
	struct smtp_proto_status st = { 0, NULL, NULL };
	char what[64];

	(void)snprintf(what, sizeof(what), "mail bad case %d", _i);
	ck_assert_msg(smtp_proto_parse_mail(c->arg, c->len, &m, &st) == -1,
	    "%s accepted", what);
	check_status(&st, c->code, c->enh, c->text, what);
}
END_TEST

/* ------------------------------------------------------------------ */
/* RCPT TO: */

struct rcpt_ok {
	const char *arg;
	bool smtputf8;
	const char *mailbox;
	const char *local;
	const char *domain;
	const char *domain_lc;
	unsigned flags;
	unsigned notify;
	const char *orcpt;
};

static const struct rcpt_ok rcpt_ok_cases[] = {
	{ "<a@b>", false, "a@b", "a", "b", "b", 0, 0, "" },
	{ "<postmaster>", false, "postmaster", "postmaster", "", "", F_PM, 0,
	    "" },
	{ "<PostMaster> ", false, "PostMaster", "PostMaster", "", "", F_PM, 0,
	    "" },
	{ "<postmaster@Example.org>", false, "postmaster@Example.org",
	    "postmaster", "Example.org", "example.org", 0, 0, "" },
	{ "<@relay.example:x@y>", false, "x@y", "x", "y", "y", 0, 0, "" },
	{ "<a@b> NOTIFY=NEVER", false, "a@b", "a", "b", "b", 0,
	    SMTP_PROTO_NOTIFY_NEVER, "" },
	{ "<a@b> NOTIFY=SUCCESS,FAILURE,DELAY", false, "a@b", "a", "b", "b", 0,
	    SMTP_PROTO_NOTIFY_SUCCESS | SMTP_PROTO_NOTIFY_FAILURE |
	        SMTP_PROTO_NOTIFY_DELAY,
	    "" },
	{ "<a@b> notify=delay,Failure", false, "a@b", "a", "b", "b", 0,
	    SMTP_PROTO_NOTIFY_FAILURE | SMTP_PROTO_NOTIFY_DELAY, "" },
	{ "<a@b> ORCPT=rfc822;a+40b", false, "a@b", "a", "b", "b", 0, 0,
	    "rfc822;a+40b" },
	{ "<a@b>  NOTIFY=FAILURE   orcpt=RFC822;x@y.example ", false, "a@b",
	    "a", "b", "b", 0, SMTP_PROTO_NOTIFY_FAILURE, "RFC822;x@y.example" },
	{ "<a@b> ORCPT=utf-8;\\x{00E9}t\\x{00E9}@x", false, "a@b", "a", "b",
	    "b", 0, 0, "utf-8;\\x{00E9}t\\x{00E9}@x" },
	{ "<\xc3\xa9t\xc3\xa9@b\xc3\xbc\x63her.example>", true,
	    "\xc3\xa9t\xc3\xa9@b\xc3\xbc\x63her.example", "\xc3\xa9t\xc3\xa9",
	    "b\xc3\xbc\x63her.example", "b\xc3\xbc\x63her.example", F_UTF8, 0,
	    "" },
	{ "<\"john doe\"@x>", false, "\"john doe\"@x", "john doe", "x", "x",
	    F_QUOTED, 0, "" },
	{ "<u@[IPv6:::ffff:192.0.2.1]>", false, "u@[IPv6:::ffff:192.0.2.1]",
	    "u", "[IPv6:::ffff:192.0.2.1]", "[ipv6:::ffff:192.0.2.1]",
	    F_LITERAL, 0, "" },
};

START_TEST(test_rcpt_ok)
{
	const struct rcpt_ok *c = &rcpt_ok_cases[_i];
	struct smtp_proto_rcpt r;
	struct smtp_proto_status st = { 0, NULL, NULL };
	int rc;

	rc = smtp_proto_parse_rcpt(c->arg, strlen(c->arg), c->smtputf8, &r,
	    &st);
	ck_assert_msg(rc == 0, "case %d '%s': rc %d (%u %s)", _i, c->arg, rc,
	    st.code, st.text ? st.text : "");
	check_path(&r.path, c->mailbox, c->local, c->domain, c->domain_lc,
	    c->flags, c->arg);
	ck_assert_uint_eq(r.notify, c->notify);
	ck_assert_str_eq(r.orcpt, c->orcpt);
}
END_TEST

struct rcpt_bad {
	const char *arg;
	size_t len;
	bool smtputf8;
	unsigned code;
	const char *enh;
	const char *text;
};

static const struct rcpt_bad rcpt_bad_cases[] = {
	{ BYTES("<>"), false, 501, "5.1.3", NULL },
	{ BYTES("<> NOTIFY=NEVER"), false, 501, "5.1.3", NULL },
	{ BYTES(""), false, 501, "5.1.3", "<>" },
	{ BYTES("<"), false, 501, "5.1.3", "unterminated" },
	{ BYTES("a@b"), false, 501, "5.1.3", "<>" },
	{ BYTES("postmaster"), false, 501, "5.1.3", "<>" },
	{ BYTES("<\"a@b>"), false, 501, "5.1.3", "unterminated" },
	{ BYTES("<user@ourdomain@foreign>"), false, 501, "5.1.3", "recipient" },
	{ BYTES("<user>"), false, 501, "5.1.3", "recipient" },
	{ BYTES("<@r:postmaster>"), false, 501, "5.1.3", NULL },
	{ BYTES("<postmaster@>"), false, 501, "5.1.3", NULL },
	{ BYTES("<post master>"), false, 501, "5.1.3", NULL },
	{ BYTES("<a@b>x"), false, 501, "5.1.3", NULL },
	{ BYTES("<\xc3\xa9@x>"), false, 553, "5.6.7", "SMTPUTF8" },
	{ BYTES("<a@\xc3\xa9.x>"), false, 553, "5.6.7", "SMTPUTF8" },
	{ BYTES("<\xc3\xa9@x> SMTPUTF8"), false, 553, "5.6.7", NULL },
	{ BYTES("<\xfe@x>"), true, 501, "5.1.3", "UTF-8" },
	{ BYTES("<a@b> NOTIFY=NEVER,SUCCESS"), false, 501, "5.5.4", "NOTIFY" },
	{ BYTES("<a@b> NOTIFY=DELAY,NEVER"), false, 501, "5.5.4", "NOTIFY" },
	{ BYTES("<a@b> NOTIFY="), false, 501, "5.5.4", NULL },
	{ BYTES("<a@b> NOTIFY"), false, 501, "5.5.4", NULL },
	{ BYTES("<a@b> NOTIFY=SUCCESS,,DELAY"), false, 501, "5.5.4", "NOTIFY" },
	{ BYTES("<a@b> NOTIFY=SUCCESS,"), false, 501, "5.5.4", "NOTIFY" },
	{ BYTES("<a@b> NOTIFY=,SUCCESS"), false, 501, "5.5.4", "NOTIFY" },
	{ BYTES("<a@b> NOTIFY=SOMETIMES"), false, 501, "5.5.4", "NOTIFY" },
	{ BYTES("<a@b> NOTIFY=NEVER NOTIFY=NEVER"), false, 501, "5.5.4",
	    "Duplicate" },
	{ BYTES("<a@b> ORCPT=rfc822"), false, 501, "5.5.4", "ORCPT" },
	{ BYTES("<a@b> ORCPT=;a@b"), false, 501, "5.5.4", "ORCPT" },
	{ BYTES("<a@b> ORCPT=rfc822;"), false, 501, "5.5.4", "ORCPT" },
	{ BYTES("<a@b> ORCPT=rfc822;a+zz"), false, 501, "5.5.4", "ORCPT" },
	{ BYTES("<a@b> ORCPT=rfc(822);a"), false, 501, "5.5.4", "ORCPT" },
	{ BYTES("<a@b> ORCPT=rfc822;a ORCPT=rfc822;b"), false, 501, "5.5.4",
	    "Duplicate" },
	{ BYTES("<a@b> SIZE=1"), false, 555, "5.5.4", NULL },
	{ BYTES("<a@b> RET=FULL"), false, 555, "5.5.4", NULL },
	{ BYTES("<a@b> XFOO"), false, 555, "5.5.4", NULL },
};

START_TEST(test_rcpt_bad)
{
	const struct rcpt_bad *c = &rcpt_bad_cases[_i];
	struct smtp_proto_rcpt r;
	struct smtp_proto_status st = { 0, NULL, NULL };
	char what[64];

	(void)snprintf(what, sizeof(what), "rcpt bad case %d", _i);
	ck_assert_msg(smtp_proto_parse_rcpt(c->arg, c->len, c->smtputf8, &r,
	                  &st) == -1,
	    "%s accepted", what);
	check_status(&st, c->code, c->enh, c->text, what);
}
END_TEST

/* Builds "<" + local + "@" + domain + ">" + tail into buf. */
static size_t
make_path(char *buf, size_t size, size_t llen, size_t dlen, const char *tail)
{
	size_t n = 0, i;

	ck_assert(llen + dlen + strlen(tail) + 4 < size);
	buf[n++] = '<';
	for (i = 0; i < llen; i++)
		buf[n++] = 'l';
	buf[n++] = '@';
	/* Labels of up to 9 letters separated by dots, never ending in '.'. */
	for (i = 0; i < dlen; i++)
		buf[n++] = (i % 10 == 9 && i + 1 < dlen) ? '.' : 'd';
	buf[n++] = '>';
	memcpy(buf + n, tail, strlen(tail));
	n += strlen(tail);
	buf[n] = '\0';
	return n;
}

START_TEST(test_path_lengths)
{
	char buf[1024];
	struct smtp_proto_mail m;
	struct smtp_proto_rcpt r;
	struct smtp_proto_status st;
	size_t n;

	/* Local part: 64 fits, 65 does not. */
	n = make_path(buf, sizeof(buf), 64, 10, "");
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), 0);
	ck_assert_uint_eq(strlen(m.path.local), 64);
	n = make_path(buf, sizeof(buf), 65, 10, " SIZE=1");
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), -1);
	check_status(&st, 501, "5.1.7", "Local part too long", "local 65");
	ck_assert_int_eq(smtp_proto_parse_rcpt(buf, n, false, &r, &st), -1);
	/* The RCPT error is the length, not the SIZE parameter. */
	check_status(&st, 501, "5.1.3", "Local part too long", "rcpt 65");

	/* Quoted local parts are measured as received, quotes included. */
	memcpy(buf, "<\"", 2);
	memset(buf + 2, 'q', 63);
	memcpy(buf + 65, "\"@x>", 4);
	ck_assert_int_eq(smtp_proto_parse_mail(buf, 69, &m, &st), -1);
	check_status(&st, 501, "5.1.7", "Local part too long", "quoted 65");
	memcpy(buf + 64, "\"@x>", 4);
	ck_assert_int_eq(smtp_proto_parse_mail(buf, 68, &m, &st), 0);
	ck_assert_uint_eq(strlen(m.path.local), 62);

	/* Domain: 255 is the limit, checked before the path. */
	n = make_path(buf, sizeof(buf), 1, 256, "");
	ck_assert_int_eq(smtp_proto_parse_rcpt(buf, n, false, &r, &st), -1);
	check_status(&st, 501, "5.1.3", "Domain too long", "domain 256");
	n = make_path(buf, sizeof(buf), 1, 600, "");
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), -1);
	check_status(&st, 501, "5.1.7", "Domain too long", "domain 600");

	/* Whole path incl. <>: 256 fits, 257 does not. */
	n = make_path(buf, sizeof(buf), 64, 189, "");
	ck_assert_uint_eq(n, 256);
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), 0);
	ck_assert_uint_eq(strlen(m.path.mailbox), 254);
	n = make_path(buf, sizeof(buf), 64, 190, "");
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), -1);
	check_status(&st, 501, "5.1.7", "Path too long", "path 257");
	n = make_path(buf, sizeof(buf), 10, 250, "");
	ck_assert_int_eq(smtp_proto_parse_rcpt(buf, n, false, &r, &st), -1);
	check_status(&st, 501, "5.1.3", "Path too long", "rcpt path");

	/* A source route counts toward the path. */
	memcpy(buf, "<@", 2);
	memset(buf + 2, 'r', 240);
	memcpy(buf + 242, ":aaaaaa@bbbbbb>", 15);
	ck_assert_int_eq(smtp_proto_parse_mail(buf, 257, &m, &st), -1);
	check_status(&st, 501, "5.1.7", "Path too long", "route");
}
END_TEST

START_TEST(test_param_lengths)
{
	char buf[1024];
	struct smtp_proto_mail m;
	struct smtp_proto_rcpt r;
	struct smtp_proto_status st;
	size_t n;

	n = (size_t)snprintf(buf, sizeof(buf), "<a@b> ENVID=");
	memset(buf + n, 'e', SMTP_PROTO_ENVID_MAX);
	n += SMTP_PROTO_ENVID_MAX;
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), 0);
	ck_assert_uint_eq(strlen(m.envid), SMTP_PROTO_ENVID_MAX);
	buf[n++] = 'e';
	ck_assert_int_eq(smtp_proto_parse_mail(buf, n, &m, &st), -1);
	check_status(&st, 501, "5.5.4", "ENVID", "envid 101");

	n = (size_t)snprintf(buf, sizeof(buf), "<a@b> ORCPT=rfc822;");
	memset(buf + n, 'o', SMTP_PROTO_ORCPT_MAX - 7);
	n += SMTP_PROTO_ORCPT_MAX - 7;
	ck_assert_int_eq(smtp_proto_parse_rcpt(buf, n, false, &r, &st), 0);
	ck_assert_uint_eq(strlen(r.orcpt), SMTP_PROTO_ORCPT_MAX);
	buf[n++] = 'o';
	ck_assert_int_eq(smtp_proto_parse_rcpt(buf, n, false, &r, &st), -1);
	check_status(&st, 501, "5.5.4", "ORCPT", "orcpt 501");
}
END_TEST

/* The SMTPUTF8 argument of RCPT governs, not anything on the RCPT line. */
START_TEST(test_rcpt_utf8_flag)
{
	const char *a = "<\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd@x.example>";
	struct smtp_proto_rcpt r;
	struct smtp_proto_status st;

	ck_assert_int_eq(smtp_proto_parse_rcpt(a, strlen(a), false, &r, &st),
	    -1);
	check_status(&st, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8",
	    "no utf8");
	ck_assert_int_eq(smtp_proto_parse_rcpt(a, strlen(a), true, &r, &st), 0);
	ck_assert(r.path.has_utf8);
	ck_assert_str_eq(r.path.local, "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd");
}
END_TEST

/* ------------------------------------------------------------------ */
/* HELO, BDAT, xtext, replies */

struct helo_case {
	const char *arg;
	size_t len;
	int rc;
};

static const struct helo_case helo_cases[] = {
	{ BYTES("mx.example.com"), 0 },
	{ BYTES("[192.0.2.1]"), 0 },
	{ BYTES("[IPv6:2001:db8::1]"), 0 },
	{ BYTES("192.0.2.1"), 0 },
	{ BYTES("my_host.local"), 0 },
	{ BYTES("x"), 0 },
	{ BYTES("mx.example.com "), 0 },
	{ BYTES("  x  "), 0 },
	{ BYTES("h\xc3\xa9llo.example"), 0 },
	{ BYTES(""), -1 },
	{ BYTES("   "), -1 },
	{ BYTES("a b"), -1 },
	{ BYTES("a\tb"), -1 },
	{ BYTES("a\x01"), -1 },
	{ BYTES("a\x7f"), -1 },
	{ BYTES("a\0b"), -1 },
	{ BYTES("a\r\n"), -1 },
	{ BYTES("\xff\xfe"), -1 },
	{ BYTES("h\xc3"), -1 },
};

START_TEST(test_helo)
{
	const struct helo_case *c = &helo_cases[_i];
	struct smtp_proto_status st = { 0, NULL, NULL };

	ck_assert_msg(smtp_proto_parse_helo(c->arg, c->len, &st) == c->rc,
	    "helo case %d", _i);
	if (c->rc == -1)
		check_status(&st, 501, "5.5.4", "Syntax: EHLO hostname",
		    "helo");
}
END_TEST

START_TEST(test_helo_length)
{
	char buf[SMTP_PROTO_HELO_MAX + 2];
	struct smtp_proto_status st;

	memset(buf, 'h', sizeof(buf));
	ck_assert_int_eq(smtp_proto_parse_helo(buf, SMTP_PROTO_HELO_MAX, &st),
	    0);
	ck_assert_int_eq(smtp_proto_parse_helo(buf, SMTP_PROTO_HELO_MAX + 1,
	                     &st),
	    -1);
	check_status(&st, 501, "5.5.4", "EHLO", "helo 256");
}
END_TEST

struct bdat_case {
	const char *arg;
	int rc;
	uint64_t size;
	bool last;
};

static const struct bdat_case bdat_cases[] = {
	{ "0", 0, 0, false },
	{ "10", 0, 10, false },
	{ "10 LAST", 0, 10, true },
	{ "10 last", 0, 10, true },
	{ "0 LAST", 0, 0, true },
	{ "  10   LaSt  ", 0, 10, true },
	{ "18446744073709551615 LAST", 0, UINT64_MAX, true },
	{ "", -1, 0, false },
	{ " ", -1, 0, false },
	{ "LAST", -1, 0, false },
	{ "10LAST", -1, 0, false },
	{ "10 LASTX", -1, 0, false },
	{ "10 LAS", -1, 0, false },
	{ "10 FIRST", -1, 0, false },
	{ "10 LAST LAST", -1, 0, false },
	{ "-1", -1, 0, false },
	{ "+1", -1, 0, false },
	{ "0x10", -1, 0, false },
	{ "1 0", -1, 0, false },
	{ "18446744073709551616", -1, 0, false },
	{ "99999999999999999999999 LAST", -1, 0, false },
	{ "10\tLAST", -1, 0, false },
};

START_TEST(test_bdat)
{
	const struct bdat_case *c = &bdat_cases[_i];
	struct smtp_proto_status st = { 0, NULL, NULL };
	uint64_t size = 12345;
	bool last = false;
	int rc;

	rc = smtp_proto_parse_bdat(c->arg, strlen(c->arg), &size, &last, &st);
	ck_assert_msg(rc == c->rc, "bdat case %d '%s': rc %d", _i, c->arg, rc);
	if (rc == 0) {
		ck_assert(size == c->size);
		ck_assert(last == c->last);
	} else
		check_status(&st, 501, "5.5.4", "BDAT", c->arg);
}
END_TEST

START_TEST(test_xtext)
{
	ck_assert(smtp_proto_xtext_valid("", 0));
	ck_assert(smtp_proto_xtext_valid("abc", 3));
	ck_assert(smtp_proto_xtext_valid("a+2Bb", 5));
	ck_assert(smtp_proto_xtext_valid("+41+0A", 6));
	ck_assert(smtp_proto_xtext_valid("!~<>;@", 6));
	ck_assert(!smtp_proto_xtext_valid("a+2b", 4));
	ck_assert(!smtp_proto_xtext_valid("a+zz", 4));
	ck_assert(!smtp_proto_xtext_valid("a+", 2));
	ck_assert(!smtp_proto_xtext_valid("a+4", 3));
	ck_assert(!smtp_proto_xtext_valid("a=b", 3));
	ck_assert(!smtp_proto_xtext_valid("a b", 3));
	ck_assert(!smtp_proto_xtext_valid("\x7f", 1));
	ck_assert(!smtp_proto_xtext_valid("\xc3\xa9", 2));
	ck_assert(!smtp_proto_xtext_valid("a\0b", 3));
	/* Only the given length counts. */
	ck_assert(smtp_proto_xtext_valid("ab+zz", 2));
	ck_assert(!smtp_proto_xtext_valid("ab+41", 4));
}
END_TEST

START_TEST(test_format_reply)
{
	struct sbuf sb;

	sbuf_init(&sb, 64);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, "2.0.0", false,
	                     "OK"),
	    0);
	ck_assert_str_eq(sb.data, "250 2.0.0 OK\r\n");
	sbuf_reset(&sb);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, "2.0.0", true,
	                     "PIPELINING"),
	    0);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, NULL, false,
	                     "SIZE 100"),
	    0);
	ck_assert_str_eq(sb.data, "250-2.0.0 PIPELINING\r\n250 SIZE 100\r\n");
	sbuf_reset(&sb);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 554, NULL, true, "x"), 0);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 221, "2.0.0", false, ""),
	    0);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, NULL, false, ""), 0);
	ck_assert_str_eq(sb.data, "554-x\r\n221 2.0.0\r\n250\r\n");

	/* Over the cap: -1 and the buffer is unchanged. */
	sbuf_reset(&sb);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, NULL, false,
	                     "0123456789012345678901234567890123456789"),
	    0);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 451, "4.3.0", false,
	                     "0123456789012345678901234567890123456789"),
	    -1);
	ck_assert_uint_eq(sb.len, 46);
	ck_assert_str_eq(sb.data + 40, "6789\r\n");

	/* Reply text can never forge another reply line. */
	sbuf_reset(&sb);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, NULL, false,
	                     "a\r\n250 b"),
	    -1);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, NULL, false, "a\nb"),
	    -1);
	ck_assert_int_eq(smtp_proto_format_reply(&sb, 250, "2.0.0\r\n", false,
	                     "a"),
	    -1);
	ck_assert_uint_eq(sb.len, 0);
	sbuf_release(&sb);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Reply lines (the client's side) */

struct reply_case {
	const char *line;
	size_t len;
	int rc;
	unsigned code;
	bool more;
	const char *enh;  /* expected enhanced status, NULL if none */
	const char *text; /* expected text when rc == 0 */
};

static const struct reply_case reply_cases[] = {
	{ BYTES("250"), 0, 250, false, NULL, "" },
	{ BYTES("250 "), 0, 250, false, NULL, "" },
	{ BYTES("250-"), 0, 250, true, NULL, "" },
	{ BYTES("250 OK"), 0, 250, false, NULL, "OK" },
	{ BYTES("250-mx.example.com Hello"), 0, 250, true, NULL,
	    "mx.example.com Hello" },
	{ BYTES("250 2.1.0 Sender OK"), 0, 250, false, "2.1.0",
	    "2.1.0 Sender OK" },
	{ BYTES("550-5.7.1 no"), 0, 550, true, "5.7.1", "5.7.1 no" },
	{ BYTES("451 4.123.456"), 0, 451, false, "4.123.456", "4.123.456" },
	{ BYTES("250 2.0.0"), 0, 250, false, "2.0.0", "2.0.0" },
	/* Not enhanced status codes: text only. */
	{ BYTES("250 3.1.0 x"), 0, 250, false, NULL, "3.1.0 x" },
	{ BYTES("250 2.1234.0 x"), 0, 250, false, NULL, "2.1234.0 x" },
	{ BYTES("250 2.1.0000 x"), 0, 250, false, NULL, "2.1.0000 x" },
	{ BYTES("250 2.1.0x"), 0, 250, false, NULL, "2.1.0x" },
	{ BYTES("250 2.1."), 0, 250, false, NULL, "2.1." },
	{ BYTES("250 2..0 x"), 0, 250, false, NULL, "2..0 x" },
	{ BYTES("250  2.1.0 x"), 0, 250, false, NULL, " 2.1.0 x" },
	{ BYTES("599 x"), 0, 599, false, NULL, "x" },
	{ BYTES("200\x01\xff"), -1, 0, false, NULL, NULL },
	{ BYTES("220 a\x01\xff"), 0, 220, false, NULL, "a\x01\xff" },
	{ BYTES(""), -1, 0, false, NULL, NULL },
	{ BYTES("25"), -1, 0, false, NULL, NULL },
	{ BYTES("150 x"), -1, 0, false, NULL, NULL },
	{ BYTES("650 x"), -1, 0, false, NULL, NULL },
	{ BYTES("2a0 x"), -1, 0, false, NULL, NULL },
	{ BYTES("25a x"), -1, 0, false, NULL, NULL },
	{ BYTES("250x"), -1, 0, false, NULL, NULL },
	{ BYTES("2500 x"), -1, 0, false, NULL, NULL },
	{ BYTES("250\tOK"), -1, 0, false, NULL, NULL },
	{ BYTES(" 250 OK"), -1, 0, false, NULL, NULL },
};

START_TEST(test_reply_line)
{
	const struct reply_case *c = &reply_cases[_i];
	struct smtp_proto_reply_line rl;
	int rc;

	rc = smtp_proto_parse_reply_line(c->line, c->len, &rl);
	ck_assert_msg(rc == c->rc, "case %d: rc %d", _i, rc);
	if (rc == -1)
		return;
	ck_assert_uint_eq(rl.code, c->code);
	ck_assert(rl.more == c->more);
	ck_assert_uint_eq(rl.textlen, strlen(c->text));
	ck_assert(memcmp(rl.text, c->text, rl.textlen) == 0);
	ck_assert(
	    rl.text >= c->line && rl.text + rl.textlen == c->line + c->len);
	if (c->enh == NULL) {
		ck_assert_msg(rl.enhanced == NULL, "case %d: enhanced", _i);
		ck_assert_uint_eq(rl.enhlen, 0);
	} else {
		ck_assert_msg(rl.enhanced == rl.text, "case %d", _i);
		ck_assert_uint_eq(rl.enhlen, strlen(c->enh));
		ck_assert(memcmp(rl.enhanced, c->enh, rl.enhlen) == 0);
	}
}
END_TEST

/* Every octet value after the code: only ' ' and '-' separate. */
START_TEST(test_reply_line_separators)
{
	struct smtp_proto_reply_line rl;
	char line[5] = { '4', '2', '1', 0, 'x' };
	unsigned v;

	for (v = 0; v < 256; v++) {
		line[3] = (char)v;
		ck_assert_int_eq(smtp_proto_parse_reply_line(line, 5, &rl),
		    v == ' ' || v == '-' ? 0 : -1);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* DATA / BDAT decoder */

#define ALL SIZE_MAX /* consumed: the whole input */

struct data_case {
	const char *name;
	const char *in;
	size_t inlen;
	enum smtp_proto_data_mode mode;
	bool normalize;
	const char *out;
	size_t outlen;
	int ret;
	size_t consumed;
	bool bare_cr;
	bool bare_lf;
	bool nul;
	uint64_t max_line;
};

#define DOT SMTP_PROTO_DATA_DOT
#define RAW SMTP_PROTO_DATA_RAW
/* The smuggling probe: a vector between "Hi" and a fake next command. */
#define SMUG(v) "Hi" v "RCPT TO:<x>\r\n.\r\n"

static const struct data_case data_cases[] = {
	{ "normal", BYTES("Subject: hi\r\n\r\nbody line\r\n.\r\n"), DOT, true,
	    BYTES("Subject: hi\r\n\r\nbody line\r\n"), 1, ALL, false, false,
	    false, 11 },
	{ "normal raw", BYTES("Subject: hi\r\n\r\nbody line\r\n.\r\n"), DOT,
	    false, BYTES("Subject: hi\r\n\r\nbody line\r\n"), 1, ALL, false,
	    false, false, 11 },
	{ "dot-stuffed", BYTES("..a\r\n..\r\n.b\r\n...\r\nx.\r\n.\r\n"), DOT,
	    true, BYTES(".a\r\n.\r\nb\r\n..\r\nx.\r\n"), 1, ALL, false, false,
	    false, 2 },
	{ "empty message", BYTES(".\r\n"), DOT, true, BYTES(""), 1, ALL, false,
	    false, false, 0 },
	{ "empty then more", BYTES(".\r\nMAIL FROM:<a@b>\r\n"), DOT, true,
	    BYTES(""), 1, 3, false, false, false, 0 },
	{ "after terminator", BYTES("a\r\n.\r\nQUIT\r\n"), DOT, true,
	    BYTES("a\r\n"), 1, 6, false, false, false, 1 },
	{ "pipelined terminator twice", BYTES("a\r\n.\r\n.\r\n"), DOT, true,
	    BYTES("a\r\n"), 1, 6, false, false, false, 1 },
	{ "stuffed dot line only", BYTES("..\r\n.\r\n"), DOT, true,
	    BYTES(".\r\n"), 1, ALL, false, false, false, 1 },
	{ "empty lines", BYTES("\r\n\r\n.\r\n"), DOT, true, BYTES("\r\n\r\n"),
	    1, ALL, false, false, false, 0 },
	{ "no terminator", BYTES("abc\r\ndef"), DOT, true, BYTES("abc\r\ndef"),
	    0, ALL, false, false, false, 3 },
	{ "pending dot", BYTES("abc\r\n."), DOT, true, BYTES("abc\r\n"), 0, ALL,
	    false, false, false, 3 },
	{ "pending dot cr", BYTES("abc\r\n.\r"), DOT, true, BYTES("abc\r\n"), 0,
	    ALL, false, false, false, 3 },
	{ "pending cr", BYTES("abc\r"), DOT, true, BYTES("abc"), 0, ALL, false,
	    false, false, 3 },
	{ "dot mid-line", BYTES("a.\r\n.b.\r\n.\r\n"), DOT, true,
	    BYTES("a.\r\nb.\r\n"), 1, ALL, false, false, false, 2 },

	/* Smuggling vectors: none of them ends DATA. */
	{ "smuggle LF.LF", BYTES(SMUG("\n.\n")), DOT, true,
	    BYTES("Hi\r\n.\r\nRCPT TO:<x>\r\n"), 1, ALL, false, true, false,
	    11 },
	{ "smuggle LF.LF raw", BYTES(SMUG("\n.\n")), DOT, false,
	    BYTES("Hi\n.\nRCPT TO:<x>\r\n"), 1, ALL, false, true, false, 16 },
	{ "smuggle CR.CR", BYTES(SMUG("\r.\r")), DOT, true,
	    BYTES("Hi\r\n.\r\nRCPT TO:<x>\r\n"), 1, ALL, true, false, false,
	    11 },
	{ "smuggle CR.CR raw", BYTES(SMUG("\r.\r")), DOT, false,
	    BYTES("Hi\r.\rRCPT TO:<x>\r\n"), 1, ALL, true, false, false, 16 },
	{ "smuggle LF.CRLF", BYTES(SMUG("\n.\r\n")), DOT, true,
	    BYTES("Hi\r\n.\r\nRCPT TO:<x>\r\n"), 1, ALL, false, true, false,
	    11 },
	{ "smuggle LF.CRLF raw", BYTES(SMUG("\n.\r\n")), DOT, false,
	    BYTES("Hi\n.\r\nRCPT TO:<x>\r\n"), 1, ALL, false, true, false, 11 },
	{ "smuggle CRLF.LF", BYTES(SMUG("\r\n.\n")), DOT, true,
	    BYTES("Hi\r\n\r\nRCPT TO:<x>\r\n"), 1, ALL, false, true, false,
	    11 },
	{ "smuggle CRLF.LF raw", BYTES(SMUG("\r\n.\n")), DOT, false,
	    BYTES("Hi\r\n\nRCPT TO:<x>\r\n"), 1, ALL, false, true, false, 12 },
	{ "smuggle CR.CRLF", BYTES(SMUG("\r.\r\n")), DOT, true,
	    BYTES("Hi\r\n.\r\nRCPT TO:<x>\r\n"), 1, ALL, true, false, false,
	    11 },
	{ "smuggle CR.CRLF raw", BYTES(SMUG("\r.\r\n")), DOT, false,
	    BYTES("Hi\r.\r\nRCPT TO:<x>\r\n"), 1, ALL, true, false, false, 11 },
	{ "smuggle after CRLF LF.LF", BYTES("Hi\r\n\n.\nX\r\n.\r\n"), DOT, true,
	    BYTES("Hi\r\n\r\n.\r\nX\r\n"), 1, ALL, false, true, false, 2 },
	{ "smuggle after CRLF CR.CR", BYTES("Hi\r\n\r.\rX\r\n.\r\n"), DOT,
	    false, BYTES("Hi\r\n\r.\rX\r\n"), 1, ALL, true, false, false, 4 },
	{ "smuggle all, no end", BYTES("a\n.\nb\r.\rc\n.\r\nd\r\n.\ne\r.\r\nf"),
	    DOT, true,
	    BYTES("a\r\n.\r\nb\r\n.\r\nc\r\n.\r\nd\r\n\r\ne\r\n.\r\nf"), 0, ALL,
	    true, true, false, 1 },
	{ "dot bare CR", BYTES(".\rX\r\n.\r\n"), DOT, true, BYTES("\r\nX\r\n"),
	    1, ALL, true, false, false, 1 },
	{ "dot bare CR raw", BYTES(".\rX\r\n.\r\n"), DOT, false,
	    BYTES("\rX\r\n"), 1, ALL, true, false, false, 2 },
	{ "dot CR CR LF", BYTES(".\r\r\n.\r\n"), DOT, false, BYTES("\r\r\n"), 1,
	    ALL, true, false, false, 1 },
	{ "dot CR CR LF norm", BYTES(".\r\r\n.\r\n"), DOT, true,
	    BYTES("\r\n\r\n"), 1, ALL, true, false, false, 0 },
	{ "CR CR LF", BYTES("\r\r\n.\r\n"), DOT, true, BYTES("\r\n\r\n"), 1,
	    ALL, true, false, false, 0 },
	{ "bare LF", BYTES("a\nb\r\n.\r\n"), DOT, true, BYTES("a\r\nb\r\n"), 1,
	    ALL, false, true, false, 1 },
	{ "bare LF raw", BYTES("a\nb\r\n.\r\n"), DOT, false, BYTES("a\nb\r\n"),
	    1, ALL, false, true, false, 3 },
	{ "LF CR", BYTES("a\n\rb\r\n.\r\n"), DOT, true, BYTES("a\r\n\r\nb\r\n"),
	    1, ALL, true, true, false, 1 },
	{ "NUL", BYTES("a\0b\r\n\0\r\n.\r\n"), DOT, true,
	    BYTES("a\0b\r\n\0\r\n"), 1, ALL, false, false, true, 3 },
	{ "NUL at dot", BYTES(".\0\r\n.\r\n"), DOT, true, BYTES("\0\r\n"), 1,
	    ALL, false, false, true, 1 },

	/* RAW (BDAT): no dot handling, finish() flushes a pending CR. */
	{ "raw pending CR", BYTES("a\r\nb\r"), RAW, true, BYTES("a\r\nb\r\n"),
	    0, ALL, true, false, false, 1 },
	{ "raw pending CR raw", BYTES("a\r\nb\r"), RAW, false,
	    BYTES("a\r\nb\r"), 0, ALL, true, false, false, 2 },
	{ "raw dots", BYTES(".\r\nx\r\n.\r\n..y\r\n"), RAW, true,
	    BYTES(".\r\nx\r\n.\r\n..y\r\n"), 0, ALL, false, false, false, 3 },
	{ "raw CRLF", BYTES("a\r\nb"), RAW, false, BYTES("a\r\nb"), 0, ALL,
	    false, false, false, 1 },
	{ "raw bare LF", BYTES("a\nb\n"), RAW, true, BYTES("a\r\nb\r\n"), 0,
	    ALL, false, true, false, 1 },
	{ "raw bare CR mid", BYTES("a\rb"), RAW, false, BYTES("a\rb"), 0, ALL,
	    true, false, false, 3 },
	{ "raw CR CR LF", BYTES("\r\r\n"), RAW, true, BYTES("\r\n\r\n"), 0, ALL,
	    true, false, false, 0 },
	{ "raw NUL", BYTES("\0\0\r\n"), RAW, false, BYTES("\0\0\r\n"), 0, ALL,
	    false, false, true, 2 },
	{ "raw empty", BYTES(""), RAW, true, BYTES(""), 0, ALL, false, false,
	    false, 0 },
};

struct data_result {
	struct sbuf out;
	struct smtp_proto_data d;
	int ret;
	size_t consumed;
};

/*
 * Feeds c->in split at cuts[0..ncuts) (ascending), draining an output
 * buffer of exactly outcap octets (heap, so ASan sees any overrun).
 */
static void
data_run(const struct data_case *c, const size_t *cuts, size_t ncuts,
    size_t outcap, struct data_result *r)
{
	char *buf = malloc(outcap);
	size_t k, a, b, off, olen, used;

	ck_assert_ptr_nonnull(buf);
	sbuf_init(&r->out, 1 << 16);
	smtp_proto_data_init(&r->d, c->mode, c->normalize);
	r->ret = 0;
	r->consumed = 0;
	for (k = 0; k <= ncuts && r->ret == 0; k++) {
		a = k == 0 ? 0 : cuts[k - 1];
		b = k == ncuts ? c->inlen : cuts[k];
		off = a;
		do {
			olen = 0;
			r->ret = smtp_proto_data_feed(&r->d, c->in + off,
			    b - off, buf, outcap, &olen, &used);
			ck_assert(olen <= outcap);
			ck_assert(used <= b - off);
			/* Progress whenever there was input and room. */
			ck_assert(used > 0 || r->ret == 1 || off == b);
			ck_assert_int_eq(sbuf_append(&r->out, buf, olen), 0);
			off += used;
		} while (off < b && r->ret == 0);
		r->consumed += off - a;
	}
	olen = 0;
	smtp_proto_data_finish(&r->d, buf, outcap, &olen);
	ck_assert_int_eq(sbuf_append(&r->out, buf, olen), 0);
	free(buf);
}

static void
data_check(const struct data_case *c, struct data_result *r, const char *how)
{
	size_t consumed = c->consumed == ALL ? c->inlen : c->consumed;

	ck_assert_msg(r->ret == c->ret, "%s (%s): ret %d", c->name, how,
	    r->ret);
	ck_assert_msg(r->consumed == consumed,
	    "%s (%s): consumed %zu, want "
	    "%zu",
	    c->name, how, r->consumed, consumed);
	ck_assert_msg(r->out.len == c->outlen &&
	        memcmp(r->out.data, c->out, c->outlen) == 0,
	    "%s (%s): output differs (len %zu, want %zu)", c->name, how,
	    r->out.len, c->outlen);
	ck_assert_msg(r->d.out_total == c->outlen, "%s (%s): out_total",
	    c->name, how);
	ck_assert_msg(r->d.bare_cr == c->bare_cr, "%s (%s): bare_cr", c->name,
	    how);
	ck_assert_msg(r->d.bare_lf == c->bare_lf, "%s (%s): bare_lf", c->name,
	    how);
	ck_assert_msg(r->d.nul == c->nul, "%s (%s): nul", c->name, how);
	ck_assert_msg(r->d.done == (c->ret == 1), "%s (%s): done", c->name,
	    how);
	ck_assert_msg(r->d.max_line == c->max_line,
	    "%s (%s): max_line %llu, want %llu", c->name, how,
	    (unsigned long long)r->d.max_line, (unsigned long long)c->max_line);
	sbuf_release(&r->out);
}

static const size_t data_outcaps[] = { 4096, 5, SMTP_PROTO_DATA_EXPANSION };

START_TEST(test_data_splits)
{
	const struct data_case *c = &data_cases[_i];
	struct data_result r;
	size_t cuts[64], oc, i, j;
	char how[64];

	for (oc = 0; oc < NELEM(data_outcaps); oc++) {
		size_t cap = data_outcaps[oc];

		data_run(c, NULL, 0, cap, &r);
		(void)snprintf(how, sizeof(how), "whole, outcap %zu", cap);
		data_check(c, &r, how);

		/* One octet at a time. */
		ck_assert(c->inlen < NELEM(cuts));
		for (i = 1; i < c->inlen; i++)
			cuts[i - 1] = i;
		data_run(c, cuts, c->inlen > 0 ? c->inlen - 1 : 0, cap, &r);
		(void)snprintf(how, sizeof(how), "bytewise, outcap %zu", cap);
		data_check(c, &r, how);

		/* Every 2-way and 3-way split (empty chunks included). */
		for (i = 0; i <= c->inlen; i++) {
			cuts[0] = i;
			data_run(c, cuts, 1, cap, &r);
			(void)snprintf(how, sizeof(how),
			    "split %zu, outcap %zu", i, cap);
			data_check(c, &r, how);
			for (j = i; j <= c->inlen; j++) {
				cuts[1] = j;
				data_run(c, cuts, 2, cap, &r);
				(void)snprintf(how, sizeof(how),
				    "split %zu/%zu, outcap %zu", i, j, cap);
				data_check(c, &r, how);
			}
		}
	}
}
END_TEST

START_TEST(test_data_room)
{
	struct smtp_proto_data d;
	char out[16];
	size_t olen, used;

	/* Less than SMTP_PROTO_DATA_EXPANSION of room: nothing consumed. */
	smtp_proto_data_init(&d, SMTP_PROTO_DATA_DOT, true);
	olen = 0;
	ck_assert_int_eq(smtp_proto_data_feed(&d, "abc", 3, out,
	                     SMTP_PROTO_DATA_EXPANSION - 1, &olen, &used),
	    0);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(olen, 0);

	/* Output is appended at *outlen_io, never past outcap. */
	olen = 10;
	memset(out, '#', sizeof(out));
	ck_assert_int_eq(smtp_proto_data_feed(&d, "abcdefgh", 8, out, 14, &olen,
	                     &used),
	    0);
	ck_assert_uint_eq(used, 1);
	ck_assert_uint_eq(olen, 11);
	ck_assert_int_eq(out[10], 'a');
	ck_assert_int_eq(out[11], '#');

	/* After the terminator nothing more is consumed. */
	smtp_proto_data_init(&d, SMTP_PROTO_DATA_DOT, false);
	olen = 0;
	ck_assert_int_eq(smtp_proto_data_feed(&d, ".\r\nX", 4, out, sizeof(out),
	                     &olen, &used),
	    1);
	ck_assert_uint_eq(used, 3);
	ck_assert_int_eq(smtp_proto_data_feed(&d, "X", 1, out, sizeof(out),
	                     &olen, &used),
	    1);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(olen, 0);

	/* finish() is a no-op in DOT mode and with nothing pending. */
	smtp_proto_data_init(&d, SMTP_PROTO_DATA_DOT, true);
	ck_assert_int_eq(smtp_proto_data_feed(&d, "a\r", 2, out, sizeof(out),
	                     &olen, &used),
	    0);
	olen = 0;
	smtp_proto_data_finish(&d, out, sizeof(out), &olen);
	ck_assert_uint_eq(olen, 0);
	smtp_proto_data_init(&d, SMTP_PROTO_DATA_RAW, true);
	smtp_proto_data_finish(&d, out, sizeof(out), &olen);
	ck_assert_uint_eq(olen, 0);
	/* RAW finish needs only 2 octets of room. */
	ck_assert_int_eq(smtp_proto_data_feed(&d, "\r", 1, out, 4, &olen,
	                     &used),
	    0);
	ck_assert_uint_eq(olen, 0);
	smtp_proto_data_finish(&d, out, 2, &olen);
	ck_assert_uint_eq(olen, 2);
	ck_assert(memcmp(out, "\r\n", 2) == 0);
	ck_assert(d.bare_cr);
}
END_TEST

START_TEST(test_data_line_length)
{
	static char in[2100];
	static char out[4096];
	struct smtp_proto_data d;
	size_t n = 0, olen = 0, used;

	memset(in, 'x', 998);
	n = 998;
	memcpy(in + n, "\r\n", 2);
	n += 2;
	in[n++] = '.'; /* stuffed: counted without the dot */
	memset(in + n, 'y', 1000);
	n += 1000;
	memcpy(in + n, "\r\nz", 3);
	n += 3;
	smtp_proto_data_init(&d, SMTP_PROTO_DATA_DOT, true);
	ck_assert_int_eq(smtp_proto_data_feed(&d, in, n, out, sizeof(out),
	                     &olen, &used),
	    0);
	ck_assert_uint_eq(used, n);
	ck_assert_uint_eq(olen, n - 1);
	ck_assert(d.max_line == 1000);
	ck_assert(d.cur_line == 1);
	ck_assert(d.out_total == n - 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Header scanner */

struct hdr_case {
	const char *name;
	const char *in;
	size_t inlen;
	unsigned received;
	bool has_msgid;
	const char *msgid;
	bool in_body;
};

static const struct hdr_case hdr_cases[] = {
	{ "basic",
	    BYTES("Received: from a\r\nReceived: from b\r\n"
	          "Message-ID: <x@y>\r\nSubject: s\r\n\r\nReceived: body\r\n"),
	    2, true, "<x@y>", true },
	{ "folded msgid", BYTES("Message-ID:\r\n <abc@def>\r\n\r\n"), 0, true,
	    "<abc@def>", true },
	{ "folded inside",
	    BYTES("Message-Id: <abc\r\n\t@def>  \r\n"
	          "X: y\r\n\r\n"),
	    0, true, "<abc\t@def>", true },
	{ "multi fold",
	    BYTES("message-id:  <a\r\n  b\r\n\t c>\t\r\n \r\n"
	          "Received: x\r\n\r\n"),
	    1, true, "<a  b\t c>", true },
	{ "name case and wsp",
	    BYTES("RECEIVED : x\r\nreceived:y\r\n"
	          "ReCeIvEd\t:\r\n\r\n"),
	    3, false, "", true },
	{ "not received",
	    BYTES("Received-SPF: pass\r\nX-Received: x\r\n"
	          "Receive: x\r\nReceivedX: x\r\nReceived x: y\r\n"
	          "Subject: Received: x\r\n Received: folded\r\n\r\n"),
	    0, false, "", true },
	{ "second msgid ignored",
	    BYTES("Message-ID: <first@x>\r\n"
	          "Message-ID: <second@x>\r\n\r\n"),
	    0, true, "<first@x>", true },
	{ "body starts at once",
	    BYTES("\r\nReceived: x\r\nMessage-ID: <a>\r\n"), 0, false, "",
	    true },
	{ "body headers ignored",
	    BYTES("Subject: a\r\n\r\nReceived: x\r\n"
	          "Message-ID: <b@c>\r\n\r\nReceived: y\r\n"),
	    0, false, "", true },
	{ "no empty line", BYTES("Received: a\r\nMessage-ID: <q@r>\r\n"), 1,
	    true, "<q@r>", false },
	{ "unterminated msgid", BYTES("Message-ID:   <q@r> \t "), 0, true,
	    "<q@r>", false },
	{ "empty msgid", BYTES("Message-ID:\r\nReceived: x\r\n\r\n"), 1, true,
	    "", true },
	{ "bare LF not a line end",
	    BYTES("X: a\nReceived: b\r\n"
	          "Received: c\r\nY: c\n\nReceived: d\r\n\r\n"),
	    1, false, "", true },
	{ "bare CR not a line end",
	    BYTES("X: a\rReceived: b\r\n\r\r\n"
	          "Received: c\r\n\r\n"),
	    1, false, "", true },
	{ "msgid controls dropped",
	    BYTES("Message-ID: <a\rb\x01"
	          "c>\r\n\r\n"),
	    0, true, "<abc>", true },
	{ "long name",
	    BYTES("Received-Received-Received-Received-Received: x"
	          "\r\nReceived: y\r\n\r\n"),
	    1, false, "", true },
	{ "no colon", BYTES("Received\r\nMessage-ID\r\n\r\n"), 0, false, "",
	    true },
	{ "utf8 msgid", BYTES("Message-ID: <\xc3\xa9@x>\r\n\r\n"), 0, true,
	    "<\xc3\xa9@x>", true },
};

static void
hdr_run(const struct hdr_case *c, const size_t *cuts, size_t ncuts,
    const char *how)
{
	struct smtp_proto_hdrscan h;
	size_t k, a, b;

	smtp_proto_hdrscan_init(&h);
	for (k = 0; k <= ncuts; k++) {
		a = k == 0 ? 0 : cuts[k - 1];
		b = k == ncuts ? c->inlen : cuts[k];
		smtp_proto_hdrscan_feed(&h, c->in + a, b - a);
	}
	ck_assert_msg(h.received == c->received, "%s (%s): received %u",
	    c->name, how, h.received);
	ck_assert_msg(h.has_msgid == c->has_msgid, "%s (%s): has_msgid",
	    c->name, how);
	ck_assert_msg(strcmp(h.msgid, c->msgid) == 0 &&
	        h.msgid_len == strlen(c->msgid),
	    "%s (%s): msgid '%s'", c->name, how, h.msgid);
	ck_assert_msg(h.in_body == c->in_body, "%s (%s): in_body", c->name,
	    how);
}

START_TEST(test_hdrscan_splits)
{
	const struct hdr_case *c = &hdr_cases[_i];
	size_t cuts[256], i, j;
	char how[64];

	hdr_run(c, NULL, 0, "whole");
	ck_assert(c->inlen < NELEM(cuts));
	for (i = 1; i < c->inlen; i++)
		cuts[i - 1] = i;
	hdr_run(c, cuts, c->inlen > 0 ? c->inlen - 1 : 0, "bytewise");
	for (i = 0; i <= c->inlen; i++) {
		cuts[0] = i;
		(void)snprintf(how, sizeof(how), "split %zu", i);
		hdr_run(c, cuts, 1, how);
		for (j = i; j <= c->inlen; j++) {
			cuts[1] = j;
			(void)snprintf(how, sizeof(how), "split %zu/%zu", i, j);
			hdr_run(c, cuts, 2, how);
		}
	}
}
END_TEST

START_TEST(test_hdrscan_long_msgid)
{
	static char in[4096];
	struct smtp_proto_hdrscan h;
	size_t n, i;

	/* Value of 1500 octets with folding whitespace in the middle. */
	n = (size_t)snprintf(in, sizeof(in), "Message-ID: <");
	for (i = 0; i < 1500; i++) {
		in[n++] = (char)('a' + i % 26);
		if (i == 500) {
			memcpy(in + n, "\r\n   ", 5);
			n += 5;
		}
	}
	memcpy(in + n, ">\r\nReceived: x\r\n\r\n", 18);
	n += 18;

	smtp_proto_hdrscan_init(&h);
	for (i = 0; i < n; i += 7)
		smtp_proto_hdrscan_feed(&h, in + i, n - i < 7 ? n - i : 7);
	ck_assert(h.has_msgid);
	ck_assert_uint_eq(h.msgid_len, SMTP_PROTO_MSGID_MAX);
	ck_assert_uint_eq(strlen(h.msgid), SMTP_PROTO_MSGID_MAX);
	ck_assert(memcmp(h.msgid, "<abc", 4) == 0);
	ck_assert(memcmp(h.msgid + 502, "   ", 3) == 0);
	ck_assert_uint_eq(h.received, 1);
	ck_assert(h.in_body);

	/* Trailing WSP right at the limit is trimmed, not kept. */
	n = (size_t)snprintf(in, sizeof(in), "Message-ID: ");
	memset(in + n, 'm', SMTP_PROTO_MSGID_MAX - 1);
	n += SMTP_PROTO_MSGID_MAX - 1;
	memcpy(in + n, "    z\r\n\r\n", 9);
	n += 9;
	smtp_proto_hdrscan_init(&h);
	smtp_proto_hdrscan_feed(&h, in, n);
	ck_assert_uint_eq(h.msgid_len, SMTP_PROTO_MSGID_MAX - 1);
	ck_assert_int_eq(h.msgid[h.msgid_len - 1], 'm');
	ck_assert_int_eq(h.msgid[h.msgid_len], '\0');
}
END_TEST

/* Hundreds of Received: fields: memory stays fixed, the count is exact. */
START_TEST(test_hdrscan_many_received)
{
	struct smtp_proto_hdrscan h;
	static const char line[] = "Received: from x by y; now\r\n";
	unsigned i;

	smtp_proto_hdrscan_init(&h);
	for (i = 0; i < 500; i++)
		smtp_proto_hdrscan_feed(&h, line, sizeof(line) - 1);
	smtp_proto_hdrscan_feed(&h, "\r\n", 2);
	smtp_proto_hdrscan_feed(&h, line, sizeof(line) - 1);
	ck_assert_uint_eq(h.received, 500);
	ck_assert(h.in_body);
}
END_TEST

/* Our trace field is counted in the header only, in any case. */
START_TEST(test_hdrscan_traces)
{
	static const char msg[] =
	    "Received: from a\r\n"
	    "x-splitmx-trace: node=mx1; id=0123456789ABCDEF\r\n"
	    "X-Splitmx-Trace: node=mx2;\r\n id=0123456789ABCDEG\r\n"
	    "X-Splitmx-Traces: not ours\r\n"
	    "Subject: hi\r\n"
	    "\r\n"
	    "X-Splitmx-Trace: in the body\r\n";
	struct smtp_proto_hdrscan h;
	size_t i;

	for (i = 1; i < sizeof(msg) - 1; i++) {
		smtp_proto_hdrscan_init(&h);
		smtp_proto_hdrscan_feed(&h, msg, i);
		smtp_proto_hdrscan_feed(&h, msg + i, sizeof(msg) - 1 - i);
		ck_assert_uint_eq(h.traces, 2);
		ck_assert_uint_eq(h.received, 1);
		ck_assert(h.in_body);
		/* Values kept unfolded and trimmed, in order. */
		ck_assert_str_eq(h.trace[0], "node=mx1; id=0123456789ABCDEF");
		ck_assert_str_eq(h.trace[1], "node=mx2; id=0123456789ABCDEG");
		ck_assert_uint_eq(h.trace_len[1], strlen(h.trace[1]));
	}
}
END_TEST

/* Only the first SMTP_PROTO_TRACE_KEEP values are kept; all are counted. */
START_TEST(test_hdrscan_trace_keep)
{
	struct smtp_proto_hdrscan h;
	struct sbuf in;
	unsigned i;

	sbuf_init(&in, 1 << 16);
	for (i = 0; i < SMTP_PROTO_TRACE_KEEP + 3; i++)
		ck_assert_int_eq(sbuf_printf(&in,
		                     "X-Splitmx-Trace: node=n%u; id=ID%u\r\n"
		                     "Message-ID: <m%u@x>\r\n",
		                     i, i, i),
		    0);
	ck_assert_int_eq(sbuf_printf(&in, "X-Splitmx-Trace: %0400d\r\n\r\n", 7),
	    0);
	smtp_proto_hdrscan_init(&h);
	smtp_proto_hdrscan_feed(&h, in.data, in.len);
	ck_assert_uint_eq(h.traces, SMTP_PROTO_TRACE_KEEP + 4);
	ck_assert_str_eq(h.trace[0], "node=n0; id=ID0");
	ck_assert_str_eq(h.trace[SMTP_PROTO_TRACE_KEEP - 1], "node=n7; id=ID7");
	ck_assert_str_eq(h.msgid, "<m0@x>");
	sbuf_release(&in);

	/* A long value is cut at the bound, never past it. */
	sbuf_init(&in, 4096);
	ck_assert_int_eq(sbuf_printf(&in, "X-Splitmx-Trace: %0400d\r\n\r\n", 7),
	    0);
	smtp_proto_hdrscan_init(&h);
	smtp_proto_hdrscan_feed(&h, in.data, in.len);
	ck_assert_uint_eq(h.trace_len[0], SMTP_PROTO_TRACE_VALUE_MAX);
	ck_assert_uint_eq(strlen(h.trace[0]), SMTP_PROTO_TRACE_VALUE_MAX);
	sbuf_release(&in);
}
END_TEST

START_TEST(test_parse_trace)
{
	static const struct {
		const char *in;
		int rc;
		const char *node, *id;
	} cases[] = {
		{ "node=mx.test; id=0123456789ABCDEF", 0, "mx.test",
		    "0123456789ABCDEF" },
		{ "id=ABC;node=[192.0.2.1]", 0, "[192.0.2.1]", "ABC" },
		{ " node = mx1 ; via=x ; id = Q1 ", 0, "mx1", "Q1" },
		{ "NODE=mx1; ID=Q1", 0, "mx1", "Q1" },
		{ "node=mx1", -1, NULL, NULL },
		{ "id=Q1", -1, NULL, NULL },
		{ "node=mx1; id=q1", -1, NULL, NULL },
		{ "node=mx 1; id=Q1", -1, NULL, NULL },
		{ "node=; id=Q1", -1, NULL, NULL },
		{ "node=mx1; id=0123456789ABCDEF0123456789ABCDEF0", -1, NULL,
		    NULL },
		{ "", -1, NULL, NULL },
		{ ";;;=;", -1, NULL, NULL },
	};
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		struct smtp_proto_trace t;
		int rc = smtp_proto_parse_trace(cases[i].in,
		    strlen(cases[i].in), &t);

		ck_assert_msg(rc == cases[i].rc, "case %zu: %s", i,
		    cases[i].in);
		if (rc == 0) {
			ck_assert_str_eq(t.node, cases[i].node);
			ck_assert_str_eq(t.id, cases[i].id);
		}
	}
}
END_TEST

static Suite *
smtp_proto_suite(void)
{
	Suite *s = suite_create("smtp_proto");
	TCase *tc;

	tc = tcase_create("command");
	tcase_add_loop_test(tc, test_command, 0, (int)NELEM(cmd_cases));
	tcase_add_test(tc, test_command_length);
	suite_add_tcase(s, tc);

	tc = tcase_create("mail");
	tcase_add_loop_test(tc, test_mail_ok, 0, (int)NELEM(mail_ok_cases));
	tcase_add_loop_test(tc, test_mail_bad, 0, (int)NELEM(mail_bad_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("rcpt");
	tcase_add_loop_test(tc, test_rcpt_ok, 0, (int)NELEM(rcpt_ok_cases));
	tcase_add_loop_test(tc, test_rcpt_bad, 0, (int)NELEM(rcpt_bad_cases));
	tcase_add_test(tc, test_rcpt_utf8_flag);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_path_lengths);
	tcase_add_test(tc, test_param_lengths);
	suite_add_tcase(s, tc);

	tc = tcase_create("args");
	tcase_add_loop_test(tc, test_helo, 0, (int)NELEM(helo_cases));
	tcase_add_test(tc, test_helo_length);
	tcase_add_loop_test(tc, test_bdat, 0, (int)NELEM(bdat_cases));
	tcase_add_test(tc, test_xtext);
	tcase_add_test(tc, test_format_reply);
	suite_add_tcase(s, tc);

	tc = tcase_create("reply");
	tcase_add_loop_test(tc, test_reply_line, 0, (int)NELEM(reply_cases));
	tcase_add_test(tc, test_reply_line_separators);
	suite_add_tcase(s, tc);

	tc = tcase_create("data");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_data_splits, 0, (int)NELEM(data_cases));
	tcase_add_test(tc, test_data_room);
	tcase_add_test(tc, test_data_line_length);
	suite_add_tcase(s, tc);

	tc = tcase_create("hdrscan");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_hdrscan_splits, 0, (int)NELEM(hdr_cases));
	tcase_add_test(tc, test_hdrscan_long_msgid);
	tcase_add_test(tc, test_hdrscan_many_received);
	tcase_add_test(tc, test_hdrscan_traces);
	tcase_add_test(tc, test_hdrscan_trace_keep);
	tcase_add_test(tc, test_parse_trace);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(smtp_proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
