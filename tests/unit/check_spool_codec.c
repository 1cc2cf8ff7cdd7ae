/*
 * check_spool_codec.c - the spool's grammar (spool_codec.h): message-file
 * headers and journal records, encoded, parsed back and refused when
 * malformed; encoders that hit a buffer's cap write nothing.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "sbuf.h"
#include "smtp_proto.h"
#include "spool_codec.h"

#define T_ID "1J0SULLHSCJF7O8C"

static char t_sender[] = "alice@example.net";
static char t_rcpt1[] = "bob@example.com";
static char t_rcpt2[] = "odd, user=x y@example.com";
static char t_orcpt[] = "rfc822;bob@example.com";
static char t_listener[] = "127.0.0.1:2525";
static char t_addr[] = "192.0.2.1";
static char t_name[] = "mail.example.net";
static char t_helo[] = "helo with space";
static char t_proto[] = "ESMTPS";
static char t_tls[] = "TLSv1.3 TLS_AES_256_GCM_SHA384";
static char t_empty[] = "";

static void
t_env(struct spool_envelope *env, struct spool_rcpt rcpts[2])
{
	memset(env, 0, sizeof(*env));
	rcpts[0].addr = t_rcpt1;
	rcpts[0].notify = SMTP_PROTO_NOTIFY_SUCCESS | SMTP_PROTO_NOTIFY_DELAY;
	rcpts[0].orcpt = t_orcpt;
	rcpts[1].addr = t_rcpt2;
	rcpts[1].notify = 0;
	rcpts[1].orcpt = NULL;
	env->sender = t_sender;
	env->ret = SMTP_PROTO_RET_HDRS;
	env->body = SMTP_PROTO_BODY_8BITMIME;
	env->smtputf8 = true;
	env->rcpts = rcpts;
	env->nrcpts = 2;
	env->arrival.tv_sec = 1795396800;
	env->arrival.tv_nsec = 123456000;
	env->listener = t_listener;
	env->client_addr = t_addr;
	env->client_name = t_name;
	env->helo = t_helo;
	env->protocol = t_proto;
	env->tls = t_tls;
}

START_TEST(test_header_round_trip)
{
	static const char sha[] = "0c5e0000000000000000000000000000"
	                          "0000000000000000000000000000e41a";
	struct spool_envelope env, got;
	struct spool_rcpt rcpts[2];
	char sum[SPOOL_SUM_LEN + 1], id[SPOOL_ID_LEN + 1], gsha[65];
	struct sbuf hdr, err;
	uint64_t size = 0;
	size_t hlen = 0;

	t_env(&env, rcpts);
	sbuf_init(&hdr, SPOOL_HEADER_MAX);
	sbuf_init(&err, 256);
	ck_assert_int_eq(spool_hdr_format(&hdr, T_ID, &env), 0);
	/* Uncommitted: the placeholder is no size/sha256 record. */
	ck_assert_int_eq(spool_hdr_parse(hdr.data, hdr.len, &got, id, &size,
	                     gsha, &err),
	    -1);
	ck_assert_ptr_nonnull(strstr(err.data, "no size/sha256"));
	spool_hdr_format_sum(sum, 4711, sha);
	ck_assert_uint_eq(strlen(sum), SPOOL_SUM_LEN);
	memcpy(hdr.data + SPOOL_LINE1_LEN, sum, SPOOL_SUM_LEN);
	ck_assert_int_eq(spool_hdr_end(hdr.data, hdr.len, &hlen), 1);
	ck_assert_uint_eq(hlen, hdr.len);
	ck_assert_int_eq(spool_hdr_end(hdr.data, hdr.len - 1, &hlen), 0);
	ck_assert_msg(spool_hdr_parse(hdr.data, hdr.len, &got, id, &size, gsha,
	                  &err) == 0,
	    "%s", err.data);
	ck_assert_str_eq(id, T_ID);
	ck_assert_uint_eq(size, 4711);
	ck_assert_str_eq(gsha, sha);
	ck_assert_str_eq(got.sender, t_sender);
	ck_assert_int_eq(got.ret, SMTP_PROTO_RET_HDRS);
	ck_assert_int_eq(got.body, SMTP_PROTO_BODY_8BITMIME);
	ck_assert(got.smtputf8);
	ck_assert_uint_eq(got.nrcpts, 2);
	ck_assert_str_eq(got.rcpts[0].addr, t_rcpt1);
	ck_assert_uint_eq(got.rcpts[0].notify, rcpts[0].notify);
	ck_assert_str_eq(got.rcpts[0].orcpt, t_orcpt);
	ck_assert_str_eq(got.rcpts[1].addr, t_rcpt2);
	ck_assert_ptr_null(got.rcpts[1].orcpt);
	ck_assert_int_eq(got.arrival.tv_sec, env.arrival.tv_sec);
	ck_assert_int_eq(got.arrival.tv_nsec, env.arrival.tv_nsec);
	ck_assert_str_eq(got.helo, t_helo);
	ck_assert_str_eq(got.tls, t_tls);
	ck_assert_ptr_null(got.envid);
	ck_assert_ptr_null(got.prepend); /* only padding */
	spool_envelope_clear(&got);

	/*
	 * Found by fuzz_spool_hdr: "rcpt  notify=NEVER" (an empty address)
	 * was read, but the header written back from it ("rcpt \n" without
	 * the notify) was not. An empty recipient is malformed.
	 */
	sbuf_reset(&hdr);
	rcpts[0].addr = t_empty;
	rcpts[0].orcpt = NULL;
	ck_assert_int_eq(spool_hdr_format(&hdr, T_ID, &env), 0);
	memcpy(hdr.data + SPOOL_LINE1_LEN, sum, SPOOL_SUM_LEN);
	ck_assert_ptr_nonnull(strstr(hdr.data, "\nrcpt  notify="));
	ck_assert_int_eq(spool_hdr_parse(hdr.data, hdr.len, &got, id, &size,
	                     gsha, &err),
	    -1);
	ck_assert_ptr_nonnull(strstr(err.data, "malformed header line"));
	ck_assert_uint_eq(got.nrcpts, 0);

	/* A cap too small for the header fails instead of cutting it. */
	sbuf_release(&hdr);
	sbuf_init(&hdr, 200);
	ck_assert_int_eq(spool_hdr_format(&hdr, T_ID, &env), -1);
	sbuf_release(&hdr);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_record_format)
{
	struct spool_envelope env;
	struct spool_rcpt rcpts[2];
	struct spool_jrec_out w;
	struct sbuf sb;

	t_env(&env, rcpts);
	sbuf_init(&sb, 4096);
	spool_jrec_begin(&w, &sb, "2026-11-23T01:20:00.481516Z", "delivered",
	    T_ID);
	spool_jrec_str(&w, "target", "cloud");
	spool_jrec_addr(&w, "rcpt", t_rcpt2);
	spool_jrec_u64(&w, "attempt", 3);
	spool_jrec_str(&w, "reply", "250 2.0.0 ok, queued=1");
	spool_jrec_str(&w, "empty", NULL);
	ck_assert_int_eq(spool_jrec_end(&w), 0);
	ck_assert_str_eq(sb.data,
	    "2026-11-23T01:20:00.481516Z delivered "
	    "id=" T_ID " target=cloud rcpt=<odd\\x2c\\x20user\\x3dx\\x20y"
	    "@example.com> attempt=3 reply=250\\x202.0.0\\x20ok\\x2c\\x20"
	    "queued\\x3d1 empty=\n");

	/* The accepted record's envelope part, built ahead as a fragment. */
	{
		struct sbuf frag;

		sbuf_init(&frag, 4096);
		sbuf_reset(&sb);
		spool_jrec_fragment_begin(&w, &frag);
		spool_jrec_envelope(&w, &env);
		ck_assert_int_eq(spool_jrec_fragment_end(&w), 0);
		spool_jrec_begin(&w, &sb, NULL, "accepted", T_ID);
		spool_jrec_strn(&w, "msgid", "<m1@example.net>trailing", 16);
		spool_jrec_addr(&w, "from", t_sender);
		spool_jrec_u64(&w, "size", 467);
		spool_jrec_fragment(&w, &frag);
		ck_assert_int_eq(spool_jrec_end(&w), 0);
		ck_assert_str_eq(sb.data,
		    "accepted id=" T_ID
		    " msgid=<m1@example.net> from=<alice@example.net> "
		    "size=467 nrcpt=2 to=<bob@example.com>,<odd\\x2c\\x20"
		    "user\\x3dx\\x20y@example.com> client=mail.example.net"
		    "[192.0.2.1] listener=127.0.0.1:2525 helo=helo\\x20with"
		    "\\x20space proto=ESMTPS tls=TLSv1.3\\x20TLS_AES_256_"
		    "GCM_SHA384\n");
		sbuf_release(&frag);
	}
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_record_cap)
{
	struct spool_jrec_out w;
	struct sbuf sb;
	char big[200];

	/* A record that does not fit leaves the buffer as it was. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	sbuf_init(&sb, 120);
	ck_assert_int_eq(sbuf_append_str(&sb, "kept\n"), 0);
	spool_jrec_begin(&w, &sb, NULL, "failed", T_ID);
	spool_jrec_str(&w, "reply", big);
	spool_jrec_str(&w, "target", "legacy");
	ck_assert_int_eq(spool_jrec_end(&w), -1);
	ck_assert_str_eq(sb.data, "kept\n");
	ck_assert_uint_eq(sb.len, 5);
	sbuf_release(&sb);
}
END_TEST

START_TEST(test_record_parse_round_trip)
{
	static const char hostile[] = "a b,c=d\\e\r\n\x01<>";
	struct spool_jrec_out w;
	struct spool_jrec rec;
	struct sbuf sb, v, err;

	sbuf_init(&sb, 4096);
	sbuf_init(&v, 4096);
	sbuf_init(&err, 256);
	spool_jrec_begin(&w, &sb, "2026-11-23T01:20:00.000001Z", "failed",
	    T_ID);
	spool_jrec_str(&w, "target", hostile);
	spool_jrec_addr(&w, "rcpt", hostile);
	ck_assert_int_eq(spool_jrec_end(&w), 0);
	ck_assert_msg(spool_jrec_parse(sb.data, sb.len - 1, &rec, &err) == 0,
	    "%s", err.data);
	ck_assert(spool_jrec_is(&rec, "failed"));
	ck_assert(!spool_jrec_is(&rec, "fail"));
	ck_assert_str_eq(rec.id, T_ID);
	ck_assert_int_eq(rec.ts.tv_nsec, 1000);
	ck_assert_int_eq(spool_jrec_value(&rec, "target", false, &v), 0);
	ck_assert_str_eq(v.data, hostile);
	ck_assert_int_eq(spool_jrec_value(&rec, "rcpt", true, &v), 0);
	ck_assert_str_eq(v.data, hostile);
	/* target has no <>: asked for as an address it is malformed. */
	ck_assert_int_eq(spool_jrec_value(&rec, "target", true, &v), -1);
	ck_assert_int_eq(spool_jrec_value(&rec, "absent", false, &v), -1);
	ck_assert_ptr_null(spool_jrec_get(&rec, "absent"));
	sbuf_release(&sb);
	sbuf_release(&v);
	sbuf_release(&err);
}
END_TEST

static const struct {
	const char *line;
	const char *err;
} bad_records[] = {
	{ "", "no timestamp" },
	{ "2026-11-23T01:20:00.000001Z", "no timestamp" },
	{ "2026-13-23T01:20:00.000001Z removed id=" T_ID, "no timestamp" },
	{ "yesterday removed id=" T_ID, "no timestamp" },
	{ "2026-11-23T01:20:00.000001Z  id=" T_ID, "no verb" },
	{ "2026-11-23T01:20:00.000001Z removed", "no verb" },
	{ "2026-11-23T01:20:00.000001Z removed ", "no queue id" },
	{ "2026-11-23T01:20:00.000001Z removed target=x", "no queue id" },
	{ "2026-11-23T01:20:00.000001Z removed id=1J0SULLHSCJF7O8",
	    "no queue id" },
	{ "2026-11-23T01:20:00.000001Z removed id=1J0SULLHSCJF7o8C",
	    "malformed queue id" },
	{ "2026-11-23T01:20:00.000001Z removed id=" T_ID " junk",
	    "not key=value" },
	{ "2026-11-23T01:20:00.000001Z removed id=" T_ID " =v",
	    "not key=value" },
	{ "2026-11-23T01:20:00.000001Z removed id=" T_ID "  x=1",
	    "not key=value" },
	{ "2026-11-23T01:20:00.000001Z removed id=" T_ID " a=1 a=1 a=1 a=1 a=1 "
	  "a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 "
	  "a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1 a=1",
	    "more than 32 fields" },
};

START_TEST(test_record_parse_bad)
{
	struct spool_jrec rec;
	struct sbuf err;

	sbuf_init(&err, 256);
	ck_assert_int_eq(spool_jrec_parse(bad_records[_i].line,
	                     strlen(bad_records[_i].line), &rec, &err),
	    -1);
	ck_assert_msg(strstr(err.data, bad_records[_i].err) != NULL,
	    "case %d: got \"%s\"", _i, err.data);
	/* err may be NULL: the caller does not want the detail. */
	ck_assert_int_eq(spool_jrec_parse(bad_records[_i].line,
	                     strlen(bad_records[_i].line), &rec, NULL),
	    -1);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_time_and_ids)
{
	struct timespec ts = { 1795396800, 42000 }, back;
	char out[SPOOL_TS_LEN + 1];

	spool_time_format(&ts, out, sizeof(out));
	ck_assert_str_eq(out, "2026-11-23T01:20:00.000042Z");
	ck_assert_int_eq(spool_time_parse(out, strlen(out), &back), 0);
	ck_assert_int_eq(back.tv_sec, ts.tv_sec);
	ck_assert_int_eq(back.tv_nsec, ts.tv_nsec);
	ck_assert_int_eq(spool_time_parse(out, strlen(out) - 1, &back), -1);
	ck_assert_int_eq(spool_time_parse("2026-11-23T24:20:00.000042Z",
	                     SPOOL_TS_LEN, &back),
	    -1);
	/*
	 * Found by fuzz_jrec: dates that do not exist were normalized by
	 * timegm and accepted (a leap second, February 31).
	 */
	ck_assert_int_eq(spool_time_parse("2026-11-23T01:20:60.481516Z",
	                     SPOOL_TS_LEN, &back),
	    -1);
	ck_assert_int_eq(spool_time_parse("2026-02-31T01:20:00.000000Z",
	                     SPOOL_TS_LEN, &back),
	    -1);
	ck_assert_int_eq(spool_time_parse("2026-04-31T01:20:00.000000Z",
	                     SPOOL_TS_LEN, &back),
	    -1);
	ck_assert_int_eq(spool_time_parse("2028-02-29T23:59:59.999999Z",
	                     SPOOL_TS_LEN, &back),
	    0);
	ck_assert_int_eq(spool_time_parse("2027-02-29T00:00:00.000000Z",
	                     SPOOL_TS_LEN, &back),
	    -1);
	ck_assert(spool_id_valid(T_ID));
	ck_assert(!spool_id_valid("1J0SULLHSCJF7O8C0"));
	ck_assert(!spool_id_valid("../../etc/passwd"));
	ck_assert(!spool_id_valid(NULL));
	ck_assert_uint_lt(spool_id_time("0000000000100000"),
	    spool_id_time("0000000001000000"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("spool_codec");
	TCase *tc = tcase_create("codec");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_header_round_trip);
	tcase_add_test(tc, test_record_format);
	tcase_add_test(tc, test_record_cap);
	tcase_add_test(tc, test_record_parse_round_trip);
	tcase_add_loop_test(tc, test_record_parse_bad, 0,
	    (int)(sizeof(bad_records) / sizeof(bad_records[0])));
	tcase_add_test(tc, test_time_and_ids);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
