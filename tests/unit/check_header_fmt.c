/*
 * check_header_fmt.c - header-field quoting and folding: token and
 * quoted-string values, comment text, folding at 78 columns, the cap.
 *
 * Pure functions: no fixture, no peer.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "header_fmt.h"
#include "sbuf.h"

/* ---- token characters ---- */

START_TEST(test_token_chars)
{
	const char *yes = "azAZ09-.+!#$%&'*^_`{|}~";
	const char *no = "()<>@,;:\\\"/[]?= \t";
	const char *p;

	for (p = yes; *p != '\0'; p++)
		ck_assert_msg(header_fmt_is_token_char((unsigned char)*p),
		    "'%c' should be a token char", *p);
	for (p = no; *p != '\0'; p++)
		ck_assert_msg(!header_fmt_is_token_char((unsigned char)*p),
		    "'%c' should not be a token char", *p);
	ck_assert(!header_fmt_is_token_char(0x00));
	ck_assert(!header_fmt_is_token_char(0x1f));
	ck_assert(!header_fmt_is_token_char(0x7f));
	ck_assert(!header_fmt_is_token_char(0x80));
	ck_assert(!header_fmt_is_token_char(0xff));
}
END_TEST

/* ---- values ---- */

static const struct {
	const char *in;
	const char *want;
} values[] = {
	{ "example.test", "example.test" },
	{ "a+b_c-1", "a+b_c-1" },
	{ "", "\"\"" },
	{ "a b", "\"a b\"" },
	{ "alice@pass.test", "\"alice@pass.test\"" },
	{ "<>", "\"<>\"" },
	{ "x\"y", "\"x\\\"y\"" },
	{ "x\\y", "\"x\\\\y\"" },
	{ "base/64=", "\"base/64=\"" },
	/* controls, DEL and 8-bit octets are dropped, never copied */
	{ "h\r\nX-Evil: 1", "\"hX-Evil: 1\"" },
	{ "tab\there", "\"tabhere\"" },
	{ "del\x7f", "\"del\"" },
	{ "caf\xc3\xa9", "\"caf\"" },
	{ "\x80\xff", "\"\"" },
};

START_TEST(test_value)
{
	struct sbuf sb;

	sbuf_init(&sb, 256);
	ck_assert_int_eq(header_fmt_append_value(&sb, values[_i].in), 0);
	ck_assert_str_eq(sb.data, values[_i].want);
	sbuf_release(&sb);
}
END_TEST

/* ---- comments ---- */

static const struct {
	const char *in;
	const char *want;
} comments[] = {
	{ "", "" },
	{ "mx.test: domain of a@b.test designates 192.0.2.1",
	    "mx.test: domain of a@b.test designates 192.0.2.1" },
	{ "x(y)\\z", "x\\(y\\)\\\\z" },
	{ "say \"hi\"", "say hi" },
	{ "a\r\nb\tc\x7f\x80\xff", "abc" },
	{ "((", "\\(\\(" },
};

START_TEST(test_comment)
{
	struct sbuf sb;

	sbuf_init(&sb, 256);
	ck_assert_int_eq(header_fmt_append_comment(&sb, comments[_i].in), 0);
	ck_assert_str_eq(sb.data, comments[_i].want);
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_appends)
{
	struct sbuf sb;

	sbuf_init(&sb, 256);
	ck_assert_int_eq(sbuf_append_str(&sb, "k="), 0);
	ck_assert_int_eq(header_fmt_append_value(&sb, "v w"), 0);
	ck_assert_int_eq(sbuf_append_str(&sb, " ("), 0);
	ck_assert_int_eq(header_fmt_append_comment(&sb, "(c)"), 0);
	ck_assert_int_eq(sbuf_append_char(&sb, ')'), 0);
	ck_assert_str_eq(sb.data, "k=\"v w\" (\\(c\\))");
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_cap)
{
	struct sbuf sb;
	char line[100];

	sbuf_init(&sb, 4);
	/* a token is appended whole or not at all */
	ck_assert_int_eq(header_fmt_append_value(&sb, "abcde"), -1);
	ck_assert_str_eq(sb.data, "");
	ck_assert_int_eq(header_fmt_append_value(&sb, "a b c"), -1);
	ck_assert_uint_le(sb.len, 4);
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_append_value(&sb, "\"\""), -1);
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_append_comment(&sb, "abcde"), -1);
	ck_assert_uint_le(sb.len, 4);
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_append_comment(&sb, "(())"), -1);
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_fold(&sb, "ab", 2), 0);
	ck_assert_str_eq(sb.data, "ab\r\n");
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_fold(&sb, "abc", 3), -1);
	sbuf_release(&sb);

	/* the cap is hit at a fold */
	memset(line, 'x', sizeof(line));
	line[2] = ' ';
	sbuf_init(&sb, 83);
	ck_assert_int_eq(header_fmt_fold(&sb, line, sizeof(line)), -1);
	sbuf_release(&sb);
}
END_TEST

/* ---- folding ---- */

static const struct {
	const char *in;
	const char *want;
} folds[] = {
	{ "", "\r\n" },
	{ "X: a b", "X: a b\r\n" },
	/* empty words keep their spaces */
	{ "X: a  b ", "X: a  b \r\n" },
	/* the fold point is a space outside a quoted-string */
	{ "X-Test: a \"q q q q q q q q q q q q q q q q q q q q q q q q q q "
	  "q q q q q q q q q q q\" b",
	    "X-Test: a\r\n\t\"q q q q q q q q q q q q q q q q q q q q q q q q "
	    "q q q q q q q q q q q q q\" b\r\n" },
	/* an escaped quote does not end the quoted-string */
	{ "X-Test: \"a \\\" b b b b b b b b b b b b b b b b b b b b b b b b b b"
	  " b b b b b b b b b b\" c",
	    "X-Test:\r\n\t\"a \\\" b b b b b b b b b b b b b b b b b b b b b b b "
	    "b b b b b b b b b b b b b\"\r\n\tc\r\n" },
	/* outside quotes a backslash escapes nothing: the space folds */
	{ "X-Test: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaa\\ b",
	    "X-Test: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaa\\\r\n\tb\r\n" },
};

START_TEST(test_fold_table)
{
	struct sbuf sb;

	sbuf_init(&sb, 1024);
	ck_assert_int_eq(header_fmt_fold(&sb, folds[_i].in,
	                     strlen(folds[_i].in)),
	    0);
	ck_assert_str_eq(sb.data, folds[_i].want);
	sbuf_release(&sb);
}
END_TEST

/* "A:" then one word of n 'b's: 78 columns fit, 79 fold. */
START_TEST(test_fold_limit)
{
	struct sbuf sb, want;
	char line[128], bs[81];
	int n;

	memset(bs, 'b', sizeof(bs) - 1);
	bs[sizeof(bs) - 1] = '\0';
	sbuf_init(&sb, 1024);
	sbuf_init(&want, 1024);
	for (n = 70; n <= 80; n++) {
		(void)snprintf(line, sizeof(line), "A: %.*s", n, bs);
		sbuf_reset(&sb);
		sbuf_reset(&want);
		ck_assert_int_eq(header_fmt_fold(&sb, line, strlen(line)), 0);
		if (3 + n <= HEADER_FMT_LINE_MAX)
			(void)sbuf_printf(&want, "%s\r\n", line);
		else
			(void)sbuf_printf(&want, "A:\r\n\t%s\r\n", line + 3);
		ck_assert_str_eq(sb.data, want.data);
	}
	sbuf_release(&want);
	sbuf_release(&sb);
}
END_TEST

/* A word longer than the limit stays whole, on a line of its own. */
START_TEST(test_fold_long_word)
{
	struct sbuf sb, want;
	char word[201];

	memset(word, 'w', sizeof(word) - 1);
	word[sizeof(word) - 1] = '\0';
	sbuf_init(&sb, 1024);
	sbuf_init(&want, 1024);
	(void)sbuf_printf(&want, "X: a %s b", word);
	ck_assert_int_eq(header_fmt_fold(&sb, want.data, want.len), 0);
	sbuf_reset(&want);
	(void)sbuf_printf(&want, "X: a\r\n\t%s\r\n\tb\r\n", word);
	ck_assert_str_eq(sb.data, want.data);

	/* the first word too: nothing to fold before it */
	sbuf_reset(&sb);
	ck_assert_int_eq(header_fmt_fold(&sb, word, strlen(word)), 0);
	ck_assert_uint_eq(sb.len, strlen(word) + 2);
	sbuf_release(&want);
	sbuf_release(&sb);
}
END_TEST

/*
 * Fields of short words: every line fits, continuation lines start with
 * TAB, and unfolding (RFC 5322 2.2.3: CRLF before WSP removed) gives the
 * field back.
 */
START_TEST(test_fold_round_trip)
{
	struct sbuf field, sb, back;
	unsigned seed = 1 + (unsigned)_i;
	const char *p, *eol;
	size_t i;
	int w, n;

	sbuf_init(&field, 4096);
	sbuf_init(&sb, 8192);
	sbuf_init(&back, 4096);
	(void)sbuf_append_str(&field, "Received-SPF:");
	for (w = 0; w < 60; w++) {
		seed = seed * 1103515245u + 12345u;
		n = 1 + (int)((seed >> 16) % 30);
		(void)sbuf_append_char(&field, ' ');
		for (i = 0; i < (size_t)n; i++)
			(void)sbuf_append_char(&field, (char)('a' + w % 26));
	}
	ck_assert_int_eq(header_fmt_fold(&sb, field.data, field.len), 0);
	for (p = sb.data; *p != '\0'; p = eol + 2) {
		eol = strstr(p, "\r\n");
		ck_assert_ptr_nonnull(eol);
		ck_assert_int_le(eol - p, HEADER_FMT_LINE_MAX);
		if (p != sb.data)
			ck_assert_int_eq(*p, '\t');
		if (p != sb.data)
			(void)sbuf_append_char(&back, ' ');
		(void)sbuf_append(&back, p + (p != sb.data),
		    (size_t)(eol - p) - (p != sb.data));
	}
	ck_assert_str_eq(back.data, field.data);
	sbuf_release(&back);
	sbuf_release(&sb);
	sbuf_release(&field);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("header_fmt");
	TCase *tc = tcase_create("pure");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_token_chars);
	tcase_add_loop_test(tc, test_value, 0,
	    (int)(sizeof(values) / sizeof(values[0])));
	tcase_add_loop_test(tc, test_comment, 0,
	    (int)(sizeof(comments) / sizeof(comments[0])));
	tcase_add_test(tc, test_appends);
	tcase_add_test(tc, test_cap);
	tcase_add_loop_test(tc, test_fold_table, 0,
	    (int)(sizeof(folds) / sizeof(folds[0])));
	tcase_add_test(tc, test_fold_limit);
	tcase_add_test(tc, test_fold_long_word);
	tcase_add_loop_test(tc, test_fold_round_trip, 0, 8);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
