/*
 * check_spool_logfmt.c - the spool log's grammar: CRC-32C, records and the
 * checkpoint file (spool_logfmt.h).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "spool_logfmt.h"

/* A record at lsn into buf; returns its size. */
static size_t
put_rec(unsigned char *buf, uint32_t type, const char *payload, uint64_t lsn)
{
	size_t len = strlen(payload), total = spool_logfmt_size(len);
	uint32_t crc;

	memset(buf, 0, total);
	crc = spool_logfmt_crc_begin(type, (uint32_t)len, lsn);
	crc = spool_logfmt_crc32c(crc, payload, len);
	spool_logfmt_header(buf, type, (uint32_t)len, lsn, crc);
	memcpy(buf + SPOOL_LOGFMT_HDR_LEN, payload, len);
	return total;
}

START_TEST(test_crc32c_vector)
{
	/* The check value of CRC-32C (RFC 3720 B.4 and every table of CRCs). */
	ck_assert_uint_eq(spool_logfmt_crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(spool_logfmt_crc32c(0, "", 0), 0);
	/* Split input gives the same CRC as whole input. */
	ck_assert_uint_eq(spool_logfmt_crc32c(spool_logfmt_crc32c(0, "1234", 4),
	                      "56789", 5),
	    0xe3069283u);
}
END_TEST

START_TEST(test_record_roundtrip)
{
	unsigned char buf[256];
	struct spool_logfmt_rec rec;
	size_t a, b;

	a = put_rec(buf, SPOOL_LOGFMT_IMAGE, "0123456789ABCDEFhello", 4096);
	ck_assert_uint_eq(a % SPOOL_LOGFMT_ALIGN, 0);
	b = put_rec(buf + a, SPOOL_LOGFMT_RECORDS, "line\n", 4096 + a);
	ck_assert_int_eq(spool_logfmt_decode(buf, sizeof(buf), 4096, &rec), 1);
	ck_assert_uint_eq(rec.type, SPOOL_LOGFMT_IMAGE);
	ck_assert_uint_eq(rec.len, 21);
	ck_assert_uint_eq(rec.total, a);
	ck_assert_mem_eq(rec.payload, "0123456789ABCDEFhello", 21);
	ck_assert_int_eq(spool_logfmt_decode(buf + a, sizeof(buf) - a, 4096 + a,
	                     &rec),
	    1);
	ck_assert_uint_eq(rec.type, SPOOL_LOGFMT_RECORDS);
	ck_assert_uint_eq(rec.total, b);
	/* Zero fill after the last record ends the log. */
	ck_assert_int_eq(spool_logfmt_decode(buf + a + b, sizeof(buf) - a - b,
	                     4096 + a + b, &rec),
	    0);
}
END_TEST

START_TEST(test_record_rejects)
{
	unsigned char buf[128];
	struct spool_logfmt_rec rec;
	size_t a;

	a = put_rec(buf, SPOOL_LOGFMT_RECORDS, "line one\n", 64);
	/* Another position: a stale record of a recycled segment. */
	ck_assert_int_eq(spool_logfmt_decode(buf, sizeof(buf), 72, &rec), 0);
	/* Cut short: a torn write. */
	ck_assert_int_eq(spool_logfmt_decode(buf, a - 1, 64, &rec), 0);
	ck_assert_int_eq(spool_logfmt_decode(buf, 10, 64, &rec), 0);
	/* One payload octet changed. */
	buf[SPOOL_LOGFMT_HDR_LEN + 2] ^= 1;
	ck_assert_int_eq(spool_logfmt_decode(buf, sizeof(buf), 64, &rec), 0);
	buf[SPOOL_LOGFMT_HDR_LEN + 2] ^= 1;
	ck_assert_int_eq(spool_logfmt_decode(buf, sizeof(buf), 64, &rec), 1);
	/* An unknown type, even with a right CRC. */
	put_rec(buf, 7, "x", 64);
	ck_assert_int_eq(spool_logfmt_decode(buf, sizeof(buf), 64, &rec), 0);
	/* An image too short to name its message. */
	put_rec(buf, SPOOL_LOGFMT_IMAGE, "0123", 64);
	ck_assert_int_eq(spool_logfmt_decode(buf, sizeof(buf), 64, &rec), 0);
}
END_TEST

START_TEST(test_segnames)
{
	char name[SPOOL_LOGFMT_NAME_LEN + 1];
	uint64_t v;

	spool_logfmt_segname(name, 0x4000abcULL);
	ck_assert_str_eq(name, "0000000004000ABC");
	ck_assert(spool_logfmt_segno(name, &v));
	ck_assert_uint_eq(v, 0x4000abcULL);
	ck_assert(!spool_logfmt_segno("0000000004000abc", &v));
	ck_assert(!spool_logfmt_segno("0000000004000AB", &v));
	ck_assert(!spool_logfmt_segno("0000000004000ABC.tmp", &v));
}
END_TEST

START_TEST(test_ckpt_roundtrip)
{
	struct spool_logfmt_ckpt ck, back;
	struct sbuf text, err;

	memset(&ck, 0, sizeof(ck));
	ck.redo = 1 << 20;
	ck.journal_off = 12345;
	ck.clean = true;
	strcpy(ck.boot, "6c1f6a36-2b8e-4a7e-9d33-5c9a7f0a0b11");
	sbuf_init(&text, SPOOL_LOGFMT_CKPT_MAX);
	sbuf_init(&err, 256);
	ck_assert_int_eq(spool_logfmt_ckpt_format(&ck, &text), 0);
	ck_assert_ptr_nonnull(strstr(text.data, "splitmx-checkpoint 2\n"));
	ck_assert_int_eq(spool_logfmt_ckpt_parse(text.data, text.len, &back,
	                     &err),
	    0);
	ck_assert_uint_eq(back.redo, ck.redo);
	ck_assert_uint_eq(back.journal_off, ck.journal_off);
	ck_assert(back.clean);
	ck_assert_str_eq(back.boot, ck.boot);
	/* No boot id known: "-". */
	ck.boot[0] = '\0';
	sbuf_reset(&text);
	ck_assert_int_eq(spool_logfmt_ckpt_format(&ck, &text), 0);
	ck_assert_int_eq(spool_logfmt_ckpt_parse(text.data, text.len, &back,
	                     &err),
	    0);
	ck_assert_str_eq(back.boot, "");
	sbuf_release(&text);
	sbuf_release(&err);
}
END_TEST

static const struct {
	const char *text;
	const char *err;
} bad_ckpts[] = {
	{ "", "line 1: missing or torn" },
	{ "splitmx-checkpoint 1\nredo 0\njournal 0\nboot -\nclean 0\n",
	    "line 1: version 1" },
	{ "splitmx-checkpoint 2\nredo 4\njournal 0\nboot -\nclean 0\n",
	    "line 2: redo not aligned" },
	{ "splitmx-checkpoint 2\nredo x\njournal 0\nboot -\nclean 0\n",
	    "line 2: bad number" },
	{ "splitmx-checkpoint 2\nredo 0\njournal 0\nboot -\nclean 2\n",
	    "line 5: clean is 0 or 1" },
	{ "splitmx-checkpoint 2\nredo 0\njournal 0\nboot -\nclean 0",
	    "line 5: missing or torn" },
	{ "splitmx-checkpoint 2\nredo 0\njournal 0\nboot -\nclean 0\nx\n",
	    "line 6: unexpected text" },
	{ "splitmx-checkpoint 2\nredo 0\njournal 0\nboot a\tb\nclean 0\n",
	    "line 4: bad boot id" },
	{ "splitmx-checkpoint 2\nredo 0\nboot -\njournal 0\nclean 0\n",
	    "line 3: expected \"journal\"" },
	{ "splitmx-checkpoint 2\nredo 99999999999999999999\njournal 0\n"
	  "boot -\nclean 0\n",
	    "line 2: bad number" },
};

START_TEST(test_ckpt_errors)
{
	struct spool_logfmt_ckpt ck;
	struct sbuf err;

	sbuf_init(&err, 256);
	ck_assert_int_eq(spool_logfmt_ckpt_parse(bad_ckpts[_i].text,
	                     strlen(bad_ckpts[_i].text), &ck, &err),
	    -1);
	ck_assert_msg(strstr(err.data, bad_ckpts[_i].err) != NULL,
	    "case %d: got \"%s\", want \"%s\"", _i, err.data,
	    bad_ckpts[_i].err);
	sbuf_release(&err);
}
END_TEST

static Suite *
logfmt_suite(void)
{
	Suite *s = suite_create("spool_logfmt");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_crc32c_vector);
	tcase_add_test(tc, test_record_roundtrip);
	tcase_add_test(tc, test_record_rejects);
	tcase_add_test(tc, test_segnames);
	tcase_add_test(tc, test_ckpt_roundtrip);
	tcase_add_loop_test(tc, test_ckpt_errors, 0,
	    (int)(sizeof(bad_ckpts) / sizeof(bad_ckpts[0])));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(logfmt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
