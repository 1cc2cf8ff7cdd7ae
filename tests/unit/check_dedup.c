/*
 * check_dedup.c - the duplicate index: message keys (Message-ID vs hash,
 * canonicalization, chunking), first-wins records, window and expiry with
 * an injected clock, group commit, persistence across close and SIGKILL,
 * and a map too small for the data. Each test uses its own temp directory.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dedup.h"
#include "queue.h"
#include "sbuf.h"
#include "spool_read.h"

#define T0   ((time_t)1700000000)
#define WEEK DEDUP_WINDOW_DEFAULT

static char tmpdir[64];
static char dbdir[128];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_dedup.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_int_lt(snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir),
	    (int)sizeof(dbdir));
}

static void
teardown(void)
{
	char p[192];

	snprintf(p, sizeof(p), "%s/data.mdb", dbdir);
	(void)unlink(p); /* may not exist */
	snprintf(p, sizeof(p), "%s/lock.mdb", dbdir);
	(void)unlink(p);
	(void)rmdir(dbdir);
	(void)rmdir(tmpdir);
}

/* The key of content in one piece, as a malloc'd string. */
static char *
key_of(const char *content)
{
	struct sbuf out, err;
	char *k;

	sbuf_init(&out, DEDUP_MSGKEY_MAX);
	sbuf_init(&err, 256);
	ck_assert_msg(dedup_msgkey(content, strlen(content), &out, &err) == 0,
	    "%s", err.data);
	k = strdup(out.data);
	ck_assert_ptr_nonnull(k);
	sbuf_release(&out);
	sbuf_release(&err);
	return k;
}

static void
assert_same_key(const char *a, const char *b)
{
	char *ka = key_of(a), *kb = key_of(b);

	ck_assert_str_eq(ka, kb);
	free(ka);
	free(kb);
}

static void
assert_different_key(const char *a, const char *b)
{
	char *ka = key_of(a), *kb = key_of(b);

	ck_assert_str_ne(ka, kb);
	free(ka);
	free(kb);
}

static struct dedup *
open_db(size_t map_size, time_t window)
{
	struct dedup_conf conf = { dbdir, map_size, window, false };
	struct sbuf err;
	struct dedup *dd;

	sbuf_init(&err, 256);
	dd = dedup_open(&dedup_lmdb_ops, &conf, &err);
	ck_assert_msg(dd != NULL, "open: %s", err.data);
	sbuf_release(&err);
	return dd;
}

/* Queue id number i: 16 chars of [0-9A-Z]. */
static void
qid_of(unsigned i, char out[DEDUP_QID_LEN + 1])
{
	snprintf(out, DEDUP_QID_LEN + 1, "Q%015u", i);
}

static const char msg_a[] = "Received: from x by y\r\n"
                            "From: Alice Example <Alice@Example.COM>\r\n"
                            "To: bob@example.org,\r\n"
                            "\tcarol@example.org\r\n"
                            "Subject: Quarterly   report\r\n"
                            "Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
                            "\r\n"
                            "Hello Bob,\r\n"
                            "the numbers.\r\n";

START_TEST(test_msgkey_message_id)
{
	char *k;

	k = key_of(
	    "From: a@b\r\nMessage-ID: <Abc.123@Example.COM>\r\n\r\nx\r\n");
	ck_assert_str_eq(k, "m:<Abc.123@Example.COM>");
	free(k);
	/* Folded, odd name case, surrounding whitespace trimmed. */
	k = key_of("message-id:\r\n   <Abc.123@Example.COM>  \r\n\r\nbody");
	ck_assert_str_eq(k, "m:<Abc.123@Example.COM>");
	free(k);
	/* Only the first Message-ID counts; LF-only line ends work. */
	k = key_of("Message-Id: <one@x>\nMessage-Id: <two@x>\n\nbody\n");
	ck_assert_str_eq(k, "m:<one@x>");
	free(k);
	/* Headers without a body. */
	k = key_of("Message-ID: <end@x>");
	ck_assert_str_eq(k, "m:<end@x>");
	free(k);
	/* A Message-ID in the body is not a header. */
	k = key_of("From: a@b\r\n\r\nMessage-ID: <body@x>\r\n");
	ck_assert(strncmp(k, "h:", 2) == 0);
	free(k);
	/* Message-ID keys and hash keys live in different prefixes. */
	k = key_of("Message-ID: h:0123\r\n\r\n");
	ck_assert_str_eq(k, "m:h:0123");
	free(k);
}
END_TEST

START_TEST(test_msgkey_unusable_message_id)
{
	char big[DEDUP_MSGID_MAX + 100], *k;
	static const char nul[] = "Message-ID: <a\0b@x>\r\n\r\nbody";
	struct sbuf out, err;

	/* Empty: hash. */
	k = key_of("Message-ID:   \r\nFrom: a@b\r\n\r\nbody");
	ck_assert(strncmp(k, "h:", 2) == 0);
	ck_assert_uint_eq(strlen(k), 2 + 64);
	free(k);
	/* Longer than the cap: hash, not a cut Message-ID. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "Message-ID: <", 13);
	memcpy(big + sizeof(big) - 8, ">\r\n\r\nb", 7);
	big[sizeof(big) - 1] = '\0';
	k = key_of(big);
	ck_assert(strncmp(k, "h:", 2) == 0);
	free(k);
	/* A NUL inside: hash. */
	sbuf_init(&out, DEDUP_MSGKEY_MAX);
	sbuf_init(&err, 256);
	ck_assert_int_eq(dedup_msgkey(nul, sizeof(nul) - 1, &out, &err), 0);
	ck_assert(strncmp(out.data, "h:", 2) == 0);
	/* An output buffer too small fails and leaves it unchanged. */
	sbuf_release(&out);
	sbuf_init(&out, 10);
	ck_assert_int_eq(dedup_msgkey(msg_a, strlen(msg_a), &out, &err), -1);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_uint_gt(err.len, 0);
	sbuf_release(&out);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_msgkey_hash_canonical)
{
	/* Other order, folding, whitespace, From/To case, LF, extra headers. */
	static const char same[] =
	    "Date: Mon, 6 May 2024\n 10:00:00 +0000\n"
	    "To:   BOB@example.org,   carol@EXAMPLE.org  \n"
	    "X-Other: whatever\n"
	    "Subject:Quarterly report\n"
	    "FROM: alice example\n\t<alice@example.com>\n"
	    "Received: from z by w\n"
	    "\n"
	    "Hello Bob,\n"
	    "the numbers.\n"
	    "\n\n";
	static const char other_body[] =
	    "From: Alice Example <Alice@Example.COM>\r\n"
	    "To: bob@example.org, carol@example.org\r\n"
	    "Subject: Quarterly report\r\n"
	    "Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
	    "\r\n"
	    "Hello Bob,\r\n"
	    "other numbers.\r\n";
	static const char subject_case[] =
	    "From: Alice Example <Alice@Example.COM>\r\n"
	    "To: bob@example.org, carol@example.org\r\n"
	    "Subject: QUARTERLY report\r\n"
	    "Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
	    "\r\n"
	    "Hello Bob,\r\n"
	    "the numbers.\r\n";
	static const char two_to[] =
	    "From: Alice Example <Alice@Example.COM>\r\n"
	    "To: bob@example.org,\r\n"
	    "To: carol@example.org\r\n"
	    "Subject: Quarterly report\r\n"
	    "Date: Mon, 6 May 2024 10:00:00 +0000\r\n"
	    "\r\n"
	    "Hello Bob,\r\n"
	    "the numbers.\r\n";
	char *k = key_of(msg_a);

	ck_assert(strncmp(k, "h:", 2) == 0);
	ck_assert_uint_eq(strlen(k), 66);
	ck_assert_uint_eq(strspn(k + 2, "0123456789abcdef"), 64);
	free(k);
	assert_same_key(msg_a, same);
	assert_different_key(msg_a, other_body);
	assert_different_key(msg_a, subject_case);
	assert_different_key(msg_a, two_to);
	/* Whitespace inside a body line is content. */
	assert_different_key("From: a\r\n\r\nx y\r\n",
	    "From: a\r\n\r\nx  y\r\n");
	/* An absent header differs from an empty one. */
	assert_different_key("From: a\r\n\r\nx",
	    "From: a\r\nSubject:\r\n\r\nx");
	/* Empty line inside the body counts, trailing ones do not. */
	assert_different_key("From: a\r\n\r\nx\r\ny",
	    "From: a\r\n\r\nx\r\n\r\ny");
	assert_same_key("From: a\r\n\r\nx\r\n", "From: a\r\n\r\nx\r\n\r\n\r\n");
}
END_TEST

static void
assert_split_invariant(const char *content)
{
	size_t len = strlen(content), cut, i;
	struct sbuf out, err;
	char *whole = key_of(content);

	sbuf_init(&out, DEDUP_MSGKEY_MAX);
	sbuf_init(&err, 256);
	/* Every two-chunk split, then byte by byte. */
	for (cut = 0; cut <= len + 1; cut++) {
		struct dedup_msgkey *mk = dedup_msgkey_new(&err);

		ck_assert_ptr_nonnull(mk);
		if (cut <= len) {
			ck_assert_int_eq(dedup_msgkey_feed(mk, content, cut,
			                     &err),
			    0);
			ck_assert_int_eq(dedup_msgkey_feed(mk, content + cut,
			                     len - cut, &err),
			    0);
		} else {
			for (i = 0; i < len; i++)
				ck_assert_int_eq(dedup_msgkey_feed(mk,
				                     content + i, 1, &err),
				    0);
		}
		sbuf_reset(&out);
		ck_assert_int_eq(dedup_msgkey_final(mk, &out, &err), 0);
		ck_assert_msg(strcmp(out.data, whole) == 0,
		    "split at %zu: %s != %s", cut, out.data, whole);
		/* Final twice is refused. */
		ck_assert_int_eq(dedup_msgkey_final(mk, &out, &err), -1);
		ck_assert_int_eq(dedup_msgkey_feed(mk, "x", 1, &err), -1);
		dedup_msgkey_free(mk);
	}
	free(whole);
	sbuf_release(&out);
	sbuf_release(&err);
}

START_TEST(test_msgkey_chunk_invariance)
{
	char big[4096];
	size_t i;

	assert_split_invariant(msg_a);
	assert_split_invariant("Message-ID:\r\n <fold@x>\r\n\r\nbody\r\n\r\n");
	assert_split_invariant("From: a\r\n\r\nl1\rl2\nl3\r\n\r\n\r\n");
	/* A body longer than the staging buffers. */
	i = (size_t)snprintf(big, sizeof(big), "From: a\r\n\r\n");
	for (; i < sizeof(big) - 1; i++)
		big[i] = (char)('a' + i % 26);
	big[sizeof(big) - 1] = '\0';
	assert_split_invariant(big);
	dedup_msgkey_free(NULL);
}
END_TEST

/* No-sync commits, made durable by dedup_sync; seen after a reopen. */
START_TEST(test_nosync_sync)
{
	struct dedup_conf conf = { dbdir, 0, 0, true };
	struct dedup_key key = { "m:<ns@x>", "bob@example.org", "legacy" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd;
	char q1[17];

	sbuf_init(&err, 256);
	qid_of(7, q1);
	dd = dedup_open(&dedup_lmdb_ops, &conf, &err);
	ck_assert_msg(dd != NULL, "open: %s", err.data);
	ck_assert_int_eq(dedup_record(dd, &key, q1, NULL, T0, &err), 1);
	ck_assert_int_eq(dedup_sync(dd, &err), 0);
	/* Writers still work after a sync (the writer lock was let go). */
	key.target = "cloud";
	ck_assert_int_eq(dedup_record(dd, &key, q1, NULL, T0, &err), 1);
	ck_assert_int_eq(dedup_sync(dd, &err), 0);
	dedup_close(dd);
	dd = open_db(0, 0);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 1, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q1);
	key.target = "legacy";
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 1, &ent, &err), 1);
	/* Without nosync, sync is a flush like any other: still fine. */
	ck_assert_int_eq(dedup_sync(dd, &err), 0);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

/*
 * After a machine crash the index is rebuilt from the journal history
 * (closed segments too): a claim comes back under both keys, a release
 * takes both away, a carried copy is not counted twice.
 */
START_TEST(test_rebuild_from_journal)
{
	static const char seg[] =
	    "2026-12-01T00:00:00.000000Z claimed id=Q000000000000001 "
	    "target=legacy rcpt=<bob@example.org> key=m:<r1@x>\n"
	    "2026-12-01T00:00:00.000000Z claimed id=Q000000000000002 "
	    "target=cloud rcpt=<bob@example.org> key=m:<r2@x>\n";
	static const char cur[] =
	    "2026-12-02T00:00:00.000000Z carried id=0000000000000000 "
	    "lines=0\n"
	    "2026-12-02T00:00:01.000000Z released id=Q000000000000002 "
	    "target=cloud rcpt=<bob@example.org> key=m:<r2@x>\n";
	struct dedup_key k1 = { "m:<r1@x>", "bob@example.org", "legacy" };
	struct dedup_key t1 = { "t:Q000000000000001", "bob@example.org",
		"legacy" };
	struct dedup_key k2 = { "m:<r2@x>", "bob@example.org", "cloud" };
	struct spool_reader *rd;
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd;
	char p[256];
	FILE *f;
	time_t now = 1796169600 + 60; /* 2026-12-02, just after the records */

	sbuf_init(&err, 256);
	snprintf(p, sizeof(p), "%s/queue", tmpdir);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/journal.20261201T000000Z", tmpdir);
	ck_assert_ptr_nonnull(f = fopen(p, "w"));
	ck_assert_int_ge(fputs(seg, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	snprintf(p, sizeof(p), "%s/journal", tmpdir);
	ck_assert_ptr_nonnull(f = fopen(p, "w"));
	ck_assert_int_ge(fputs(cur, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	rd = spool_reader_open(tmpdir, &err);
	ck_assert_msg(rd != NULL, "%s", err.data);
	dd = open_db(0, 0);
	ck_assert_int_eq(queue_dedup_rebuild(dd, rd, &err), 0);
	ck_assert_int_eq(dedup_lookup(dd, &k1, now, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, "Q000000000000001");
	ck_assert_int_eq(dedup_lookup(dd, &t1, now, &ent, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &k2, now, &ent, &err), 0);
	dedup_close(dd);
	spool_reader_close(rd);
	snprintf(p, sizeof(p), "%s/journal", tmpdir);
	(void)unlink(p);
	snprintf(p, sizeof(p), "%s/journal.20261201T000000Z", tmpdir);
	(void)unlink(p);
	snprintf(p, sizeof(p), "%s/queue", tmpdir);
	(void)rmdir(p);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_record_lookup_first_wins)
{
	struct dedup_key key = { "m:<1@x>", "Bob@Example.ORG", "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char q1[17], q2[17];

	sbuf_init(&err, 256);
	qid_of(1, q1);
	qid_of(2, q2);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0, &ent, &err), 0);
	ck_assert_int_eq(dedup_record(dd, &key, q1, "250 2.0.0 Ok: queued", T0,
	                     &err),
	    1);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 5, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q1);
	ck_assert_int_eq((long long)ent.first_seen, (long long)T0);
	ck_assert_str_eq(ent.reply, "250 2.0.0 Ok: queued");
	/* A second delivery does not replace the first. */
	ck_assert_int_eq(dedup_record(dd, &key, q2, NULL, T0 + 10, &err), 0);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 20, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q1);
	ck_assert_int_eq((long long)ent.first_seen, (long long)T0);
	/* out may be NULL. */
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 20, NULL, &err), 1);
	/* Bad arguments are errors, not crashes. */
	ck_assert_int_eq(dedup_record(dd, &key, "short", NULL, T0, &err), -1);
	ck_assert_int_eq(dedup_record(dd, &key, "q000000000000001", NULL, T0,
	                     &err),
	    -1);
	ck_assert_int_eq(dedup_record(dd, NULL, q1, NULL, T0, &err), -1);
	key.msgkey = "x:<1@x>";
	ck_assert_int_eq(dedup_lookup(dd, &key, T0, &ent, &err), -1);
	ck_assert_uint_gt(err.len, 0);
	key.msgkey = "m:<1@x>";
	key.target = "";
	ck_assert_int_eq(dedup_lookup(dd, &key, T0, &ent, &err), -1);
	dedup_close(dd);
	dedup_close(NULL);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_reply_is_cut)
{
	struct dedup_key key = { "m:<r@x>", "bob@example.org", "cloud" };
	struct dedup_entry ent;
	char reply[DEDUP_REPLY_MAX + 50], q[17];
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);

	sbuf_init(&err, 256);
	memset(reply, 'r', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	qid_of(7, q);
	ck_assert_int_eq(dedup_record(dd, &key, q, reply, T0, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0, &ent, &err), 1);
	ck_assert_uint_eq(strlen(ent.reply), DEDUP_REPLY_MAX);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_rcpt_and_target_independent)
{
	struct dedup_key base = { "m:<2@x>", "bob@example.org", "cloud" };
	struct dedup_key k;
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char q1[17], q2[17], q3[17];

	sbuf_init(&err, 256);
	qid_of(1, q1);
	qid_of(2, q2);
	qid_of(3, q3);
	ck_assert_int_eq(dedup_record(dd, &base, q1, NULL, T0, &err), 1);
	/* Recipient case does not matter... */
	k = base;
	k.rcpt = "BOB@Example.Org";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 1);
	ck_assert_int_eq(dedup_record(dd, &k, q2, NULL, T0, &err), 0);
	/* ...another recipient, target or message does. */
	k.rcpt = "carol@example.org";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	ck_assert_int_eq(dedup_record(dd, &k, q2, NULL, T0, &err), 1);
	k = base;
	k.target = "onprem";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	ck_assert_int_eq(dedup_record(dd, &k, q3, NULL, T0, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q3);
	k = base;
	k.msgkey = "m:<3@x>";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	/* Field boundaries are not ambiguous. */
	k.msgkey = "m:<2@x>";
	k.rcpt = "bob@example.orgc";
	k.target = "loud";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	ck_assert_int_eq(dedup_lookup(dd, &base, T0, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q1);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_long_key_hashed)
{
	char msgkey[DEDUP_MSGKEY_MAX + 1], rcpt[300], q[17];
	struct dedup_key k = { msgkey, rcpt, "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);

	sbuf_init(&err, 256);
	memset(msgkey, 'a', sizeof(msgkey) - 1);
	memcpy(msgkey, "m:<", 3);
	msgkey[sizeof(msgkey) - 1] = '\0';
	memset(rcpt, 'r', sizeof(rcpt) - 1);
	rcpt[sizeof(rcpt) - 1] = '\0';
	qid_of(9, q);
	ck_assert_int_eq(dedup_record(dd, &k, q, NULL, T0, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q);
	msgkey[100] = 'b';
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	/* Expiry walks hashed keys too. */
	msgkey[100] = 'a';
	{
		size_t removed = 0;

		ck_assert_int_eq(dedup_expire(dd, T0 + WEEK, &removed, &err),
		    0);
		ck_assert_uint_eq(removed, 1);
	}
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_window)
{
	struct dedup_key key = { "m:<w@x>", "bob@example.org", "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char q1[17], q2[17];

	sbuf_init(&err, 256);
	qid_of(1, q1);
	qid_of(2, q2);
	ck_assert_int_eq(dedup_record(dd, &key, q1, NULL, T0, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + WEEK - 1, &ent, &err), 1);
	/* Exactly one window later it counts as absent... */
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + WEEK, &ent, &err), 0);
	/* ...and a new delivery becomes the first one. */
	ck_assert_int_eq(dedup_record(dd, &key, q2, NULL, T0 + WEEK, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + WEEK, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q2);
	ck_assert_int_eq((long long)ent.first_seen, (long long)(T0 + WEEK));
	/* The replaced entry left no stale time entry: expire finds one. */
	{
		size_t removed = 0;

		ck_assert_int_eq(dedup_expire(dd, T0 + 2 * WEEK, &removed,
		                     &err),
		    0);
		ck_assert_uint_eq(removed, 1);
	}
	dedup_close(dd);
	/* A configured window. */
	dd = open_db(0, 60);
	ck_assert_int_eq(dedup_record(dd, &key, q1, NULL, T0, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 59, &ent, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 60, &ent, &err), 0);
	/* A clock that went backwards does not expire anything. */
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 - 1000, &ent, &err), 1);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_expire_removes)
{
	struct dedup_key k = { "m:<e@x>", NULL, "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 1000);
	char rcpt[64], q[17];
	size_t removed;
	unsigned i;

	sbuf_init(&err, 256);
	/* 3000 entries, one per second: more than one expire batch. */
	for (i = 0; i < 3000; i++) {
		struct dedup_rec r;

		snprintf(rcpt, sizeof(rcpt), "user%u@example.org", i);
		qid_of(i, q);
		r.key = k;
		r.key.rcpt = rcpt;
		r.qid = q;
		r.reply = NULL;
		ck_assert_int_eq(dedup_record_many(dd, &r, 1, T0 + i, &err), 0);
		ck_assert_int_eq(r.result, 1);
	}
	ck_assert_int_eq(dedup_expire(dd, T0 + 999, &removed, &err), 0);
	ck_assert_uint_eq(removed, 0);
	/* At T0+2500, entries seen before T0+1501 are past the window. */
	ck_assert_int_eq(dedup_expire(dd, T0 + 2500, &removed, &err), 0);
	ck_assert_uint_eq(removed, 1501);
	ck_assert_int_eq(dedup_expire(dd, T0 + 2500, &removed, &err), 0);
	ck_assert_uint_eq(removed, 0);
	/* Gone even for a lookup with an earlier clock; the rest stay. */
	k.rcpt = "user1500@example.org";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	k.rcpt = "user1501@example.org";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 2500, &ent, &err), 1);
	k.rcpt = "user2999@example.org";
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 2500, &ent, &err), 1);
	ck_assert_int_eq(dedup_expire(dd, T0 + 10000, NULL, &err), 0);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 2500, &ent, &err), 0);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_record_many)
{
	struct dedup_rec recs[101];
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char rcpt[100][32], q[101][17];
	unsigned i;

	sbuf_init(&err, 256);
	for (i = 0; i < 100; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "u%u@example.org", i);
		qid_of(i, q[i]);
		recs[i].key.msgkey = "m:<batch@x>";
		recs[i].key.rcpt = rcpt[i];
		recs[i].key.target = "cloud";
		recs[i].qid = q[i];
		recs[i].reply = "250 ok";
	}
	/* The same key again in the batch: the first item wins. */
	recs[100] = recs[5];
	qid_of(100, q[100]);
	recs[100].qid = q[100];
	ck_assert_int_eq(dedup_record_many(dd, recs, 101, T0, &err), 0);
	for (i = 0; i < 100; i++)
		ck_assert_int_eq(recs[i].result, 1);
	ck_assert_int_eq(recs[100].result, 0);
	ck_assert_int_eq(dedup_lookup(dd, &recs[5].key, T0, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q[5]);
	/* A second batch overlapping the first. */
	ck_assert_int_eq(dedup_record_many(dd, recs + 50, 51, T0 + 1, &err), 0);
	for (i = 50; i < 101; i++)
		ck_assert_int_eq(recs[i].result, 0);
	ck_assert_int_eq(dedup_record_many(dd, recs, 0, T0, &err), 0);
	/* One bad item refuses the whole batch. */
	recs[3].qid = "bad";
	recs[3].key.rcpt = "new@example.org";
	ck_assert_int_eq(dedup_record_many(dd, recs, 5, T0, &err), -1);
	ck_assert_int_eq(dedup_lookup(dd, &recs[3].key, T0, &ent, &err), 0);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

/* Claims: the holder is named, and only the holder releases. */
START_TEST(test_claim_owner_release)
{
	struct dedup_rec recs[3];
	struct dedup_key k = { "m:<claim@x>", "bob@example.org", "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char q1[17], q2[17], q3[17];

	sbuf_init(&err, 256);
	qid_of(1, q1);
	qid_of(2, q2);
	qid_of(3, q3);
	memset(recs, 0, sizeof(recs));
	recs[0].key = k;
	recs[0].qid = q1;
	recs[1].key = k; /* a second copy in the same batch */
	recs[1].qid = q2;
	ck_assert_int_eq(dedup_record_many(dd, recs, 2, T0, &err), 0);
	ck_assert_int_eq(recs[0].result, 1);
	ck_assert_str_eq(recs[0].owner, q1);
	ck_assert_int_eq(recs[1].result, 0);
	ck_assert_str_eq(recs[1].owner, q1);
	/* A later batch learns the holder too. */
	memset(&recs[2], 0, sizeof(recs[2]));
	recs[2].key = k;
	recs[2].qid = q3;
	ck_assert_int_eq(dedup_record_many(dd, &recs[2], 1, T0 + 5, &err), 0);
	ck_assert_int_eq(recs[2].result, 0);
	ck_assert_str_eq(recs[2].owner, q1);
	/* Not the holder: nothing released. */
	ck_assert_int_eq(dedup_release(dd, &k, q2, &err), 0);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 1);
	ck_assert_int_eq(dedup_release(dd, &k, "bad", &err), -1);
	/* The holder releases; the next copy takes over. */
	ck_assert_int_eq(dedup_release(dd, &k, q1, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 0);
	ck_assert_int_eq(dedup_release(dd, &k, q1, &err), 0);
	ck_assert_int_eq(dedup_record_many(dd, &recs[2], 1, T0 + 6, &err), 0);
	ck_assert_int_eq(recs[2].result, 1);
	ck_assert_str_eq(recs[2].owner, q3);
	/* The released entry's time index went with it: expiry is clean. */
	ck_assert_int_eq(dedup_expire(dd, T0 + WEEK + 10, NULL, &err), 0);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 7, &ent, &err), 0);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_reopen_persists)
{
	struct dedup_key key = { "h:0123456789abcdef", "bob@example.org",
		"cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char q[17];

	sbuf_init(&err, 256);
	qid_of(42, q);
	ck_assert_int_eq(dedup_record(dd, &key, q, "250 queued as X", T0, &err),
	    1);
	dedup_close(dd); /* no expire, no explicit sync */
	dd = open_db(0, 0);
	ck_assert_int_eq(dedup_lookup(dd, &key, T0 + 3600, &ent, &err), 1);
	ck_assert_str_eq(ent.qid, q);
	ck_assert_str_eq(ent.reply, "250 queued as X");
	ck_assert_int_eq((long long)ent.first_seen, (long long)T0);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

/*
 * Child: records entry after entry and, after each record call returns,
 * writes the entry number to the pipe. The parent kills it with SIGKILL
 * mid-run; every number it received must be in the index.
 */
static void
sigkill_child(int wfd)
{
	struct dedup_conf conf = { dbdir, 0, 0, false };
	struct dedup_key k = { "m:<kill@x>", NULL, "cloud" };
	struct sbuf err;
	struct dedup *dd;
	char rcpt[64], q[17];
	unsigned i;

	sbuf_init(&err, 256);
	if ((dd = dedup_open(&dedup_lmdb_ops, &conf, &err)) == NULL)
		_exit(2);
	for (i = 0;; i++) {
		snprintf(rcpt, sizeof(rcpt), "user%u@example.org", i);
		qid_of(i, q);
		k.rcpt = rcpt;
		if (dedup_record(dd, &k, q, NULL, T0 + i, &err) != 1)
			_exit(3);
		if (write(wfd, &i, sizeof(i)) != (ssize_t)sizeof(i))
			_exit(4);
	}
}

START_TEST(test_sigkill_durability)
{
	struct dedup_key k = { "m:<kill@x>", NULL, "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd;
	char rcpt[64], q[17];
	unsigned i, n = 0, got;
	int fds[2], status;
	pid_t pid;
	ssize_t r;

	sbuf_init(&err, 256);
	ck_assert_int_eq(pipe(fds), 0);
	/* Fork before this process opens the environment (LMDB rule). */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		(void)close(fds[0]);
		sigkill_child(fds[1]);
	}
	ck_assert_int_eq(close(fds[1]), 0);
	/* Let it commit a few hundred records, then kill it mid-run. */
	while (n < 300) {
		r = read(fds[0], &got, sizeof(got));
		ck_assert_int_eq(r, (ssize_t)sizeof(got));
		ck_assert_uint_eq(got, n);
		n++;
	}
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Acknowledgements already in the pipe count too. */
	while ((r = read(fds[0], &got, sizeof(got))) == (ssize_t)sizeof(got)) {
		ck_assert_uint_eq(got, n);
		n++;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(close(fds[0]), 0);

	dd = open_db(0, 0);
	for (i = 0; i < n; i++) {
		snprintf(rcpt, sizeof(rcpt), "user%u@example.org", i);
		k.rcpt = rcpt;
		ck_assert_msg(dedup_lookup(dd, &k, T0 + n, &ent, &err) == 1,
		    "record %u of %u lost", i, n);
		qid_of(i, q);
		ck_assert_str_eq(ent.qid, q);
	}
	/* The index still takes writes after the crash. */
	k.rcpt = "after@example.org";
	ck_assert_int_eq(dedup_record(dd, &k, q, NULL, T0 + n, &err), 1);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_map_full)
{
	const size_t map = 256 * 1024;
	struct dedup_key k = { "m:<full@x>", NULL, "cloud" };
	struct dedup_rec *big;
	struct dedup_entry ent;
	struct sbuf err;
	struct dedup *dd = open_db(map, 0);
	char rcpt[300], q[17], path[192];
	struct stat st;
	unsigned i;

	sbuf_init(&err, 256);
	ck_assert_uint_eq(dedup_evicted(dd), 0);
	/* Far more live entries (~300 bytes each) than 256 KiB holds. */
	memset(rcpt, 'x', sizeof(rcpt) - 1);
	rcpt[sizeof(rcpt) - 1] = '\0';
	k.rcpt = rcpt;
	for (i = 0; i < 5000; i++) {
		snprintf(rcpt, 16, "%015u", i);
		rcpt[15] = 'x';
		qid_of(i, q);
		ck_assert_msg(dedup_record(dd, &k, q, NULL, T0 + i, &err) == 1,
		    "record %u: %s", i, err.data);
	}
	ck_assert_uint_gt(dedup_evicted(dd), 0);
	/* The newest are there, the oldest were evicted to make room. */
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 5000, &ent, &err), 1);
	qid_of(4999, q);
	ck_assert_str_eq(ent.qid, q);
	snprintf(rcpt, 16, "%015u", 0);
	rcpt[15] = 'x';
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 5000, &ent, &err), 0);
	snprintf(path, sizeof(path), "%s/data.mdb", dbdir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_le((long long)st.st_size, (long long)map);

	/* A batch that can never fit fails cleanly, writing nothing. */
	big = calloc(5000, sizeof(*big));
	ck_assert_ptr_nonnull(big);
	{
		static char rcpts[5000][300];

		for (i = 0; i < 5000; i++) {
			memset(rcpts[i], 'y', sizeof(rcpts[i]) - 1);
			snprintf(rcpts[i], 16, "%015u", i);
			rcpts[i][15] = 'y';
			rcpts[i][sizeof(rcpts[i]) - 1] = '\0';
			big[i].key = k;
			big[i].key.rcpt = rcpts[i];
			big[i].qid = q;
		}
		unsigned long long before = dedup_evicted(dd);

		ck_assert_int_eq(dedup_record_many(dd, big, 5000, T0 + 6000,
		                     &err),
		    -1);
		ck_assert_uint_gt(err.len, 0);
		/* Hopeless: nothing was evicted for it either. */
		ck_assert_uint_eq(dedup_evicted(dd), before);
		ck_assert_int_eq(big[0].result, -1);
		ck_assert_int_eq(dedup_lookup(dd, &big[0].key, T0 + 6000, &ent,
		                     &err),
		    0);
	}
	free(big);
	/* And the index still works. */
	k.rcpt = "after@example.org";
	ck_assert_int_eq(dedup_record(dd, &k, q, NULL, T0 + 7000, &err), 1);
	ck_assert_int_eq(dedup_lookup(dd, &k, T0 + 7000, &ent, &err), 1);
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

#define THREADS    8
#define PER_THREAD 200

struct thread_arg {
	struct dedup *dd;
	unsigned id;
	int failures;
};

/*
 * Every thread records the same shared keys (one must win each) and its
 * own keys, looking each up right after; pooled workers do this.
 */
static void *
thread_main(void *p)
{
	struct thread_arg *ta = p;
	struct dedup_key k = { "m:<threads@x>", NULL, "cloud" };
	struct dedup_entry ent;
	struct sbuf err;
	char rcpt[64], q[17];
	unsigned i;
	int rc;

	sbuf_init(&err, 256);
	qid_of(ta->id, q);
	for (i = 0; i < PER_THREAD; i++) {
		snprintf(rcpt, sizeof(rcpt), "shared%u@x", i);
		k.rcpt = rcpt;
		if (dedup_record(ta->dd, &k, q, NULL, T0, &err) == -1)
			ta->failures++;
		snprintf(rcpt, sizeof(rcpt), "own%u.%u@x", ta->id, i);
		if (dedup_record(ta->dd, &k, q, NULL, T0, &err) != 1)
			ta->failures++;
		rc = dedup_lookup(ta->dd, &k, T0, &ent, &err);
		if (rc != 1 || strcmp(ent.qid, q) != 0)
			ta->failures++;
	}
	sbuf_release(&err);
	return NULL;
}

START_TEST(test_threads)
{
	struct dedup_key k = { "m:<threads@x>", NULL, "cloud" };
	struct thread_arg ta[THREADS];
	pthread_t tid[THREADS];
	struct dedup_entry ent;
	struct dedup_rec r;
	struct sbuf err;
	struct dedup *dd = open_db(0, 0);
	char rcpt[64], q[17];
	unsigned i, wins[THREADS] = { 0 };

	sbuf_init(&err, 256);
	for (i = 0; i < THREADS; i++) {
		ta[i].dd = dd;
		ta[i].id = i;
		ta[i].failures = 0;
		ck_assert_int_eq(pthread_create(&tid[i], NULL, thread_main,
		                     &ta[i]),
		    0);
	}
	for (i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
		ck_assert_int_eq(ta[i].failures, 0);
	}
	/* Exactly one first delivery per shared key; re-recording agrees. */
	for (i = 0; i < PER_THREAD; i++) {
		unsigned w;

		snprintf(rcpt, sizeof(rcpt), "shared%u@x", i);
		k.rcpt = rcpt;
		ck_assert_int_eq(dedup_lookup(dd, &k, T0, &ent, &err), 1);
		w = (unsigned)strtoul(ent.qid + 1, NULL, 10);
		ck_assert_uint_lt(w, THREADS);
		wins[w]++;
		r.key = k;
		qid_of(THREADS, q);
		r.qid = q;
		r.reply = NULL;
		ck_assert_int_eq(dedup_record_many(dd, &r, 1, T0, &err), 0);
		ck_assert_int_eq(r.result, 0);
	}
	dedup_close(dd);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_open_errors)
{
	struct dedup_conf conf = { "/nonexistent/dir/db", 0, 0, false };
	struct sbuf err;

	sbuf_init(&err, 256);
	ck_assert_ptr_null(dedup_open(&dedup_lmdb_ops, &conf, &err));
	ck_assert_uint_gt(err.len, 0);
	/* A map too small to keep a reserve is refused. */
	conf.path = dbdir;
	conf.map_size = 64 * 1024;
	sbuf_reset(&err);
	ck_assert_ptr_null(dedup_open(&dedup_lmdb_ops, &conf, &err));
	ck_assert_ptr_nonnull(strstr(err.data, "too small"));
	conf.path = NULL;
	ck_assert_ptr_null(dedup_open(&dedup_lmdb_ops, &conf, &err));
	ck_assert_ptr_null(dedup_open(NULL, &conf, &err));
	sbuf_release(&err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dedup");
	TCase *key = tcase_create("msgkey");
	TCase *db = tcase_create("lmdb");
	SRunner *sr;
	int failed;

	tcase_add_test(key, test_msgkey_message_id);
	tcase_add_test(key, test_msgkey_unusable_message_id);
	tcase_add_test(key, test_msgkey_hash_canonical);
	tcase_add_test(key, test_msgkey_chunk_invariance);
	suite_add_tcase(s, key);

	tcase_add_checked_fixture(db, setup, teardown);
	tcase_set_timeout(db, 60);
	tcase_add_test(db, test_record_lookup_first_wins);
	tcase_add_test(db, test_nosync_sync);
	tcase_add_test(db, test_rebuild_from_journal);
	tcase_add_test(db, test_reply_is_cut);
	tcase_add_test(db, test_rcpt_and_target_independent);
	tcase_add_test(db, test_long_key_hashed);
	tcase_add_test(db, test_window);
	tcase_add_test(db, test_expire_removes);
	tcase_add_test(db, test_record_many);
	tcase_add_test(db, test_claim_owner_release);
	tcase_add_test(db, test_reopen_persists);
	tcase_add_test(db, test_sigkill_durability);
	tcase_add_test(db, test_map_full);
	tcase_add_test(db, test_threads);
	tcase_add_test(db, test_open_errors);
	suite_add_tcase(s, db);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
