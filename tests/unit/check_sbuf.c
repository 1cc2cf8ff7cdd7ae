/*
 * check_sbuf.c - the capped string buffer: caps, escaping round trips.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"

START_TEST(test_cap_refuses_and_keeps_content)
{
	struct sbuf sb;

	sbuf_init(&sb, 8);
	ck_assert_int_eq(sbuf_append_str(&sb, "12345"), 0);
	ck_assert_int_eq(sbuf_append_str(&sb, "6789"), -1);
	ck_assert_str_eq(sb.data, "12345");
	ck_assert_int_eq(sbuf_append_str(&sb, "678"), 0);
	ck_assert_uint_eq(sb.len, 8);
	ck_assert_int_eq(sbuf_append_char(&sb, 'x'), -1);
	ck_assert_int_eq(sbuf_printf(&sb, "%d", 1), -1);
	ck_assert_str_eq(sb.data, "12345678");
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_printf_grows)
{
	struct sbuf sb;
	int i;

	sbuf_init(&sb, 100000);
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(sbuf_printf(&sb, "%04d,", i), 0);
	ck_assert_uint_eq(sb.len, 5000);
	ck_assert(strncmp(sb.data + 4995, "0999,", 5) == 0);
	ck_assert_uint_eq(strlen(sb.data), sb.len);
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_binary_safe)
{
	struct sbuf sb;

	sbuf_init(&sb, 16);
	ck_assert_int_eq(sbuf_append(&sb, "a\0b", 3), 0);
	ck_assert_uint_eq(sb.len, 3);
	ck_assert_int_eq(memcmp(sb.data, "a\0b", 4), 0);
	sbuf_truncate(&sb, 1);
	ck_assert_str_eq(sb.data, "a");
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_escape_round_trip)
{
	const char raw[] = "a b\\c\r\n\x7f,=\xc3\xa9";
	struct sbuf esc, back;

	sbuf_init(&esc, 256);
	sbuf_init(&back, 256);
	ck_assert_int_eq(sbuf_append_escaped(&esc, raw, sizeof(raw) - 1,
	                     ",=", false),
	    0);
	ck_assert_str_eq(esc.data,
	    "a\\x20b\\x5cc\\x0d\\x0a\\x7f\\x2c\\x3d\xc3\xa9");
	ck_assert_int_eq(sbuf_append_unescaped(&back, esc.data, esc.len), 0);
	ck_assert_uint_eq(back.len, sizeof(raw) - 1);
	ck_assert_int_eq(memcmp(back.data, raw, back.len), 0);
	sbuf_reset(&esc);
	ck_assert_int_eq(sbuf_append_escaped(&esc, "\xc3\xa9", 2, NULL, true),
	    0);
	ck_assert_str_eq(esc.data, "\\xc3\\xa9");
	sbuf_release(&esc);
	sbuf_release(&back);
}
END_TEST

START_TEST(test_unescape_rejects_malformed)
{
	static const char *const bad[] = { "\\", "\\x", "\\x4", "\\y41",
		"\\x4g", "ab\\" };
	struct sbuf sb;
	size_t i;

	sbuf_init(&sb, 64);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(sbuf_append_unescaped(&sb, bad[i],
		                     strlen(bad[i])),
		    -1);
		ck_assert_uint_eq(sb.len, 0);
	}
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_escape_over_cap_leaves_buffer)
{
	struct sbuf sb;

	sbuf_init(&sb, 6);
	ck_assert_int_eq(sbuf_append_str(&sb, "ab"), 0);
	ck_assert_int_eq(sbuf_append_escaped(&sb, "  ", 2, NULL, false), -1);
	ck_assert_str_eq(sb.data, "ab");
	sbuf_release(&sb);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("sbuf");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_cap_refuses_and_keeps_content);
	tcase_add_test(tc, test_printf_grows);
	tcase_add_test(tc, test_binary_safe);
	tcase_add_test(tc, test_escape_round_trip);
	tcase_add_test(tc, test_unescape_rejects_malformed);
	tcase_add_test(tc, test_escape_over_cap_leaves_buffer);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
