/*
 * check_auth_srs.c - unit tests for SRS rewriting (auth_srs_*).
 *
 * The format is pinned three ways so it cannot drift: literal addresses
 * (computed once outside splitmx), a reference built here from OpenSSL
 * HMAC and our own base32/base64 code (not the module's), and Python's
 * hmac module run through popen. Clocks are injected: "now" is a plain
 * time_t argument.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth_srs.h"

#define DAY    ((time_t)86400)
#define NOW    ((time_t)1700000000) /* day 19675, 19675 % 1024 = 219 "G3" */
#define SECRET "splitmx-test-secret"
#define SRSDOM "srs.relay.test"

#define ERR_MALFORMED "malformed SRS address"
#define ERR_FORGED    "forged SRS address (bad hash)"
#define ERR_EXPIRED   "expired SRS address"

/*
 * The error sbuf (docs/errors.md). ERR_FILL pre-fills it so that a call
 * which must leave it empty ("no reason") is seen to reset it; ERR_EMPTY
 * and ERR_SET are the checks that replace "err is NULL" / "err is not".
 */
#define ERR_CAP     256
#define ERR_FILL(e) ((void)sbuf_seterr((e), "untouched"))
#define ERR_EMPTY(e)                             \
	do {                                     \
		ck_assert_uint_eq((e)->len, 0);  \
		ck_assert_str_eq((e)->data, ""); \
	} while (0)
#define ERR_SET(e)                                              \
	do {                                                    \
		ck_assert_uint_gt((e)->len, 0);                 \
		ck_assert_uint_eq(strlen((e)->data), (e)->len); \
		ck_assert_str_ne((e)->data, "untouched");       \
	} while (0)

static struct auth_srs *
mk_full(const char *secret, const char *domain, unsigned max_age, char sep,
    bool allow_long)
{
	struct auth_srs_params p;
	struct auth_srs *srs;
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	memset(&p, 0, sizeof(p));
	p.secret = secret;
	p.secret_len = strlen(secret);
	p.domain = domain;
	p.max_age_days = max_age;
	p.separator = sep;
	p.allow_long_local = allow_long;
	srs = auth_srs_new(&p, &err);
	ck_assert_msg(srs != NULL, "auth_srs_new: %s",
	    err.len > 0 ? err.data : "?");
	ERR_EMPTY(&err);
	sbuf_release(&err);
	return srs;
}

static struct auth_srs *
mk(const char *secret, const char *domain)
{
	return mk_full(secret, domain, 0, 0, false);
}

/* Forward that must rewrite; returns out for chaining. */
static char *
fwd_ok(const struct auth_srs *srs, const char *sender, time_t now, char *out,
    size_t outsize)
{
	struct sbuf err;
	int rc;

	sbuf_init(&err, ERR_CAP);
	ERR_FILL(&err);
	rc = auth_srs_forward(srs, sender, now, out, outsize, &err);
	ck_assert_msg(rc == 0, "forward %s: rc %d (%s)", sender, rc,
	    err.len > 0 ? err.data : "no error");
	ERR_EMPTY(&err);
	sbuf_release(&err);
	return out;
}

static void
rev_ok(const struct auth_srs *srs, const char *addr, time_t now,
    const char *want)
{
	char out[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	int rc;

	sbuf_init(&err, ERR_CAP);
	ERR_FILL(&err);
	rc = auth_srs_reverse(srs, addr, now, out, sizeof(out), &err);
	ck_assert_msg(rc == 0, "reverse %s: rc %d (%s)", addr, rc,
	    err.len > 0 ? err.data : "no error");
	ERR_EMPTY(&err);
	sbuf_release(&err);
	ck_assert_str_eq(out, want);
}

static void
rev_fail(const struct auth_srs *srs, const char *addr, time_t now,
    const char *want_err)
{
	char out[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	int rc;

	sbuf_init(&err, ERR_CAP);
	memset(out, 'x', sizeof(out));
	rc = auth_srs_reverse(srs, addr, now, out, sizeof(out), &err);
	ck_assert_msg(rc == -1, "reverse %s: rc %d, want -1", addr, rc);
	ERR_SET(&err);
	ck_assert_str_eq(err.data, want_err);
	sbuf_release(&err);
	ck_assert_str_eq(out, "");
}

static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

static void
upper(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)toupper((unsigned char)*s);
}

/*
 * Reference implementation for the known answers: HMAC-SHA1 from OpenSSL,
 * base64 from EVP_EncodeBlock, base32 from the spec's alphabet written out
 * here. Deliberately shares no code with auth_srs.c.
 */
static void
ref_hash(const void *key, size_t keylen, const char *msg, char out[5])
{
	unsigned char md[EVP_MAX_MD_SIZE], b64[64];
	unsigned int mdlen = 0;
	char lc[1024];
	size_t i, len = strlen(msg);

	ck_assert_uint_lt(len, sizeof(lc));
	for (i = 0; i < len; i++)
		lc[i] = (char)tolower((unsigned char)msg[i]);
	ck_assert_ptr_nonnull(HMAC(EVP_sha1(), key, (int)keylen,
	    (const unsigned char *)lc, len, md, &mdlen));
	ck_assert_uint_eq(mdlen, 20);
	ck_assert_int_eq(EVP_EncodeBlock(b64, md, (int)mdlen), 28);
	memcpy(out, b64, 4);
	out[4] = '\0';
}

static void
ref_tt(time_t now, char tt[3])
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	long d = (long)(now / 86400) % 1024;

	tt[0] = a[d / 32];
	tt[1] = a[d % 32];
	tt[2] = '\0';
}

static void
ref_srs0(const char *secret, time_t now, char sep, const char *local,
    const char *domain, const char *srsdom, char *out, size_t outsize)
{
	char tt[3], msg[1024], h[5];

	ref_tt(now, tt);
	ck_assert_int_lt(snprintf(msg, sizeof(msg), "%s%s%s", tt, domain,
	                     local),
	    (int)sizeof(msg));
	ref_hash(secret, strlen(secret), msg, h);
	ck_assert_int_lt(snprintf(out, outsize, "SRS0%c%s=%s=%s=%s@%s", sep, h,
	                     tt, domain, local, srsdom),
	    (int)outsize);
}

/* --- known answers --------------------------------------------------- */

/* Computed once with Python's hmac/hashlib/base64, independently. */
START_TEST(test_kat_literal)
{
	static const unsigned char bin[] = "\x00\x01\x02"
	                                   "binary\xff";
	struct auth_srs_params p;
	struct auth_srs *a, *b, *c, *d;
	char out[AUTH_SRS_ADDR_BUFSIZE], out2[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;

	a = mk(SECRET, SRSDOM);
	ck_assert_str_eq(fwd_ok(a, "Alice@Example.COM", NOW, out, sizeof(out)),
	    "SRS0=uQR/=G3=Example.COM=Alice@srs.relay.test");

	b = mk("second-secret", "srs.hop2.test");
	ck_assert_str_eq(fwd_ok(b, "SRS0=abcd=G3=orig.test=bob@hop1.test", NOW,
	                     out, sizeof(out)),
	    "SRS1=Tszd=hop1.test==abcd=G3=orig.test=bob@srs.hop2.test");

	c = mk("third-secret", "srs.hop3.test");
	ck_assert_str_eq(fwd_ok(c, out, NOW, out2, sizeof(out2)),
	    "SRS1=5XsP=hop1.test==abcd=G3=orig.test=bob@srs.hop3.test");

	/* Binary secret, '+' separator, another day (976 = "6Q"). */
	memset(&p, 0, sizeof(p));
	p.secret = bin;
	p.secret_len = sizeof(bin) - 1;
	p.domain = "bounce.example.net";
	p.separator = '+';
	sbuf_init(&err, ERR_CAP);
	d = auth_srs_new(&p, &err);
	ck_assert_ptr_nonnull(d);
	sbuf_release(&err);
	ck_assert_str_eq(fwd_ok(d, "first.last+tag@mail.example.org",
	                     (time_t)1234567890, out, sizeof(out)),
	    "SRS0+wXRj=6Q=mail.example.org=first.last+tag@bounce.example.net");
	rev_ok(d, out, (time_t)1234567890, "first.last+tag@mail.example.org");

	auth_srs_free(a);
	auth_srs_free(b);
	auth_srs_free(c);
	auth_srs_free(d);
}
END_TEST

static const struct {
	const char *secret;
	time_t now;
	char sep;
	const char *local;
	const char *domain;
} kat[] = {
	{ SECRET, NOW, '=', "alice", "example.com" },
	{ SECRET, NOW, '=', "Mixed.Case", "Sub.Example.ORG" },
	{ "k", 0, '=', "x", "y.z" },              /* day 0: "AA" */
	{ "k", 1023 * DAY, '-', "x", "y.z" },     /* day 1023: "77" */
	{ "k", 1024 * DAY + 5, '+', "x", "y.z" }, /* wraps to "AA" */
	{ "another secret", NOW + 37 * DAY, '=', "a+b=c", "d-e.example" },
	{ "s", NOW, '=', "o'neil_{x}", "[192.0.2.1]" },
};

START_TEST(test_kat_reference)
{
	struct auth_srs *srs;
	char out[AUTH_SRS_ADDR_BUFSIZE], want[AUTH_SRS_ADDR_BUFSIZE];
	char sender[AUTH_SRS_ADDR_BUFSIZE];

	srs = mk_full(kat[_i].secret, SRSDOM, 0, kat[_i].sep, false);
	snprintf(sender, sizeof(sender), "%s@%s", kat[_i].local,
	    kat[_i].domain);
	ref_srs0(kat[_i].secret, kat[_i].now, kat[_i].sep, kat[_i].local,
	    kat[_i].domain, SRSDOM, want, sizeof(want));
	ck_assert_str_eq(fwd_ok(srs, sender, kat[_i].now, out, sizeof(out)),
	    want);
	rev_ok(srs, out, kat[_i].now, sender);
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_kat_tt_edges)
{
	char tt[3];

	ref_tt(0, tt);
	ck_assert_str_eq(tt, "AA");
	ref_tt(1023 * DAY, tt);
	ck_assert_str_eq(tt, "77");
	ref_tt(NOW, tt);
	ck_assert_str_eq(tt, "G3");
}
END_TEST

/* The SRS1 hash, recomputed here: HMAC(firsthop || "=HHHH=TT=d=l"). */
START_TEST(test_kat_srs1_reference)
{
	struct auth_srs *srs;
	char out[AUTH_SRS_ADDR_BUFSIZE], want[AUTH_SRS_ADDR_BUFSIZE], h[5];

	srs = mk_full("hop2 key", "srs.hop2.test", 0, '-', false);
	ref_hash("hop2 key", 8,
	    "Hop1.Test"
	    "+AbCd=ZZ=Orig.Test=Bob",
	    h);
	snprintf(want, sizeof(want),
	    "SRS1-%s=Hop1.Test=+AbCd=ZZ=Orig.Test=Bob@srs.hop2.test", h);
	ck_assert_str_eq(fwd_ok(srs, "srs0+AbCd=ZZ=Orig.Test=Bob@Hop1.Test",
	                     NOW, out, sizeof(out)),
	    want);
	rev_ok(srs, out, NOW, "SRS0+AbCd=ZZ=Orig.Test=Bob@Hop1.Test");
	auth_srs_free(srs);
}
END_TEST

/* Python computes the whole SRS0 address, TT included, on its own. */
START_TEST(test_python_crosscheck)
{
	static const char py[] = "/usr/bin/python3";
	struct auth_srs *srs;
	char cmd[1024], line[512], out[AUTH_SRS_ADDR_BUFSIZE];
	FILE *fp;
	size_t len;

	if (access(py, X_OK) != 0) {
		fprintf(stderr,
		    "check_auth_srs: %s missing, cross-check "
		    "skipped\n",
		    py);
		return;
	}
	/* Fixed arguments only: nothing here needs shell quoting. */
	snprintf(cmd, sizeof(cmd),
	    "%s -c '"
	    "import sys, hmac, hashlib, base64\n"
	    "key, now, local, dom, srsdom = sys.argv[1:6]\n"
	    "b32 = \"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567\"\n"
	    "d = (int(now) // 86400) %% 1024\n"
	    "tt = b32[d >> 5] + b32[d & 31]\n"
	    "m = (tt + dom + local).lower().encode()\n"
	    "h = base64.b64encode(hmac.new(key.encode(), m, "
	    "hashlib.sha1).digest()).decode()[:4]\n"
	    "print(\"SRS0=%%s=%%s=%%s=%%s@%%s\" %% (h, tt, dom, local, srsdom))"
	    "' %s %lld %s %s %s",
	    py, "py-cross-secret", (long long)NOW, "John.Doe",
	    "Legacy.Example.COM", SRSDOM);
	fp = popen(cmd, "r");
	ck_assert_ptr_nonnull(fp);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), fp));
	ck_assert_int_eq(pclose(fp), 0);
	len = strcspn(line, "\n");
	line[len] = '\0';

	srs = mk("py-cross-secret", SRSDOM);
	ck_assert_str_eq(fwd_ok(srs, "John.Doe@Legacy.Example.COM", NOW, out,
	                     sizeof(out)),
	    line);
	auth_srs_free(srs);
}
END_TEST

/* --- round trips ----------------------------------------------------- */

START_TEST(test_roundtrip_srs0)
{
	static const char *senders[] = {
		"alice@example.com",
		"Bob.Smith@Example.ORG",
		"a=b=c@x.test",
		"plus+tag@sub.domain.example",
		"x@y",
	};
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	size_t i;

	for (i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
		fwd_ok(srs, senders[i], NOW, out, sizeof(out));
		ck_assert_msg(strncmp(out, "SRS0=", 5) == 0, "%s", out);
		ck_assert(auth_srs_is_srs(out));
		rev_ok(srs, out, NOW, senders[i]);
		rev_ok(srs, out, NOW + 3 * DAY, senders[i]);
	}
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_roundtrip_srs1)
{
	struct auth_srs *hop1, *hop2, *hop3;
	char s0[AUTH_SRS_ADDR_BUFSIZE], s1[AUTH_SRS_ADDR_BUFSIZE];
	char s1b[AUTH_SRS_ADDR_BUFSIZE], want[AUTH_SRS_ADDR_BUFSIZE];
	const char *first;

	hop1 = mk("hop one secret", "srs.hop1.test");
	hop2 = mk_full("hop two secret", "fwd.hop2.test", 0, '+', false);
	hop3 = mk("hop three secret", "srs.hop3.test");

	fwd_ok(hop1, "alice@orig.test", NOW, s0, sizeof(s0));
	fwd_ok(hop2, s0, NOW, s1, sizeof(s1));
	/* SRS1+HHHH=srs.hop1.test==HHHH=TT=orig.test=alice@fwd.hop2.test */
	ck_assert_msg(strncmp(s1, "SRS1+", 5) == 0, "%s", s1);
	snprintf(want, sizeof(want), "=srs.hop1.test=%.*s@fwd.hop2.test",
	    (int)(strchr(s0, '@') - s0 - 4), s0 + 4);
	ck_assert_str_eq(s1 + 9, want);

	/* A third forwarder keeps the first hop and only re-signs. */
	fwd_ok(hop3, s1, NOW, s1b, sizeof(s1b));
	ck_assert_msg(strncmp(s1b, "SRS1=", 5) == 0, "%s", s1b);
	first = strchr(s1b + 5, '=');
	ck_assert_ptr_nonnull(first);
	ck_assert_msg(strncmp(first, "=srs.hop1.test==", 16) == 0, "%s", s1b);
	ck_assert_ptr_nonnull(strstr(s1b, "@srs.hop3.test"));

	/* Bounces: each hop sends straight to the first hop's SRS0. */
	rev_ok(hop2, s1, NOW, s0);
	rev_ok(hop3, s1b, NOW, s0);
	rev_ok(hop1, s0, NOW, "alice@orig.test");
	/* SRS1 carries no timestamp of ours: a hash check only. */
	rev_ok(hop2, s1, NOW + 400 * DAY, s0);

	/* Other hops' secrets do not verify. */
	rev_fail(hop2, s1b, NOW, ERR_FORGED);
	rev_fail(hop3, s1, NOW, ERR_FORGED);
	rev_fail(hop2, s0, NOW, ERR_FORGED);

	auth_srs_free(hop1);
	auth_srs_free(hop2);
	auth_srs_free(hop3);
}
END_TEST

/* A local part that only looks like SRS is wrapped as plain SRS0. */
START_TEST(test_pseudo_srs_wrapped)
{
	static const char *senders[] = {
		"SRS1=x@hop.test",        /* no host / rest */
		"SRS1=h=host=X@hop.test", /* rest lacks a separator */
		"SRS0=@hop.test",         /* nothing after the tag */
		"SRS0x@hop.test",
		/*
		 * Found by fuzz_srs: the host field holds an '@'. Forward
		 * used to take the SRS1 shortcut and sign
		 * "SRS1=HHHH=h@f==AbCd=...@srs", which reverse refuses
		 * as malformed: the bounce was lost.
		 */
		"SRS1=S=h@f==AbCd=e.org=al@hop.test",
	};
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	size_t i;

	for (i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
		fwd_ok(srs, senders[i], NOW, out, sizeof(out));
		ck_assert_msg(strncmp(out, "SRS0=", 5) == 0, "%s", out);
		rev_ok(srs, out, NOW, senders[i]);
	}
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_separators)
{
	static const char seps[] = "=+-";
	struct auth_srs *srs;
	char out[AUTH_SRS_ADDR_BUFSIZE];
	size_t i;

	for (i = 0; i < 3; i++) {
		srs = mk_full(SECRET, SRSDOM, 0, seps[i], false);
		fwd_ok(srs, "u@d.test", NOW, out, sizeof(out));
		ck_assert_int_eq(out[4], seps[i]);
		/* Every other separator is '='. */
		ck_assert_int_eq(out[9], '=');
		ck_assert_int_eq(out[12], '=');
		ck_assert_int_eq(out[19], '=');
		rev_ok(srs, out, NOW, "u@d.test");
		auth_srs_free(srs);
	}
}
END_TEST

/* --- case ------------------------------------------------------------ */

START_TEST(test_case_insensitive)
{
	struct auth_srs *hop1, *hop2;
	char s0[AUTH_SRS_ADDR_BUFSIZE], s1[AUTH_SRS_ADDR_BUFSIZE];
	char tmp[AUTH_SRS_ADDR_BUFSIZE], want[AUTH_SRS_ADDR_BUFSIZE];
	char s1b[AUTH_SRS_ADDR_BUFSIZE];

	hop1 = mk(SECRET, SRSDOM);
	hop2 = mk("other", "srs.hop2.test");
	fwd_ok(hop1, "Alice.Smith@Example.COM", NOW, s0, sizeof(s0));

	memcpy(tmp, s0, sizeof(tmp));
	lower(tmp);
	ck_assert(auth_srs_is_srs(tmp));
	rev_ok(hop1, tmp, NOW, "alice.smith@example.com");
	upper(tmp);
	rev_ok(hop1, tmp, NOW, "ALICE.SMITH@EXAMPLE.COM");

	fwd_ok(hop2, s0, NOW, s1, sizeof(s1));
	memcpy(tmp, s1, sizeof(tmp));
	lower(tmp);
	memcpy(want, s0, sizeof(want));
	lower(want);
	/* The tag comes back as "SRS0"; the rest as it was received. */
	snprintf(s1b, sizeof(s1b), "SRS0%s", want + 4);
	rev_ok(hop2, tmp, NOW, s1b);
	/* ...and the lower-cased SRS0 still reverses at the first hop. */
	rev_ok(hop1, want, NOW, "alice.smith@example.com");

	/* Forwarding a lower-cased SRS0 gives an equivalent SRS1. */
	fwd_ok(hop2, want, NOW, tmp, sizeof(tmp));
	lower(s1);
	lower(tmp);
	ck_assert_str_eq(tmp, s1);

	auth_srs_free(hop1);
	auth_srs_free(hop2);
}
END_TEST

/* --- time ------------------------------------------------------------ */

START_TEST(test_expired)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM), *short_age;
	char out[AUTH_SRS_ADDR_BUFSIZE];

	fwd_ok(srs, "u@d.test", NOW, out, sizeof(out));
	rev_ok(srs, out, NOW + 21 * DAY, "u@d.test");
	/* Ages count in whole days: the last second of day +21 is fine. */
	rev_ok(srs, out, (NOW / DAY + 22) * DAY - 1, "u@d.test");
	rev_fail(srs, out, (NOW / DAY + 22) * DAY, ERR_EXPIRED);
	rev_fail(srs, out, NOW + 22 * DAY, ERR_EXPIRED);
	rev_fail(srs, out, NOW + 300 * DAY, ERR_EXPIRED);

	short_age = mk_full(SECRET, SRSDOM, 5, 0, false);
	rev_ok(short_age, out, NOW + 5 * DAY, "u@d.test");
	rev_fail(short_age, out, NOW + 6 * DAY, ERR_EXPIRED);

	/* TT wraps at 1024 days: day 1023 is still fresh on day 1024+3. */
	fwd_ok(srs, "u@d.test", 1023 * DAY, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, "=77="));
	rev_ok(srs, out, 1027 * DAY, "u@d.test");
	rev_fail(srs, out, (1023 + 22) * DAY, ERR_EXPIRED);

	auth_srs_free(srs);
	auth_srs_free(short_age);
}
END_TEST

START_TEST(test_future)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE], tmp[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	fwd_ok(srs, "u@d.test", NOW, out, sizeof(out));
	/* One day of clock skew between forwarders is tolerated. */
	rev_ok(srs, out, NOW - DAY, "u@d.test");
	rev_fail(srs, out, NOW - 2 * DAY,
	    "expired SRS address (timestamp in the future)");
	rev_fail(srs, out, NOW - 100 * DAY,
	    "expired SRS address (timestamp in the future)");
	/* Hash first: a forged future address says forged. */
	out[5] = out[5] == 'A' || out[5] == 'a' ? 'B' : 'A';
	rev_fail(srs, out, NOW - 2 * DAY, ERR_FORGED);

	ck_assert_int_eq(auth_srs_reverse(srs, out, (time_t)-1, tmp,
	                     sizeof(tmp), &err),
	    -1);
	ck_assert_str_eq(err.data, "SRS: invalid arguments");
	sbuf_release(&err);
	auth_srs_free(srs);
}
END_TEST

/* --- forgery --------------------------------------------------------- */

START_TEST(test_forged)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM), *other;
	char out[AUTH_SRS_ADDR_BUFSIZE], tmp[AUTH_SRS_ADDR_BUFSIZE];
	char *p;

	other = mk("not the secret", SRSDOM);
	fwd_ok(srs, "victim@bank.example", NOW, out, sizeof(out));

	/* Each field is covered: hash, TT, domain, local. */
	memcpy(tmp, out, sizeof(tmp));
	tmp[6] = tmp[6] == '0' ? '1' : '0';
	rev_fail(srs, tmp, NOW, ERR_FORGED);

	memcpy(tmp, out, sizeof(tmp));
	tmp[10] = tmp[10] == 'B' ? 'C' : 'B'; /* TT, still base32 */
	rev_fail(srs, tmp, NOW, ERR_FORGED);

	memcpy(tmp, out, sizeof(tmp));
	p = strstr(tmp, "bank.example");
	ck_assert_ptr_nonnull(p);
	p[0] = 't';
	rev_fail(srs, tmp, NOW, ERR_FORGED);

	memcpy(tmp, out, sizeof(tmp));
	p = strstr(tmp, "victim");
	ck_assert_ptr_nonnull(p);
	p[0] = 'w';
	rev_fail(srs, tmp, NOW, ERR_FORGED);

	/* Appending to the local part is not a free pass either. */
	snprintf(tmp, sizeof(tmp), "%.*sx%s", (int)(strchr(out, '@') - out),
	    out, strchr(out, '@'));
	rev_fail(srs, tmp, NOW, ERR_FORGED);

	rev_fail(other, out, NOW, ERR_FORGED);
	rev_fail(srs, "SRS0=AAAA=G3=bank.example=victim@" SRSDOM, NOW,
	    ERR_FORGED);
	rev_fail(srs, "SRS1=AAAA=hop1.test==abcd=G3=orig.test=bob@" SRSDOM, NOW,
	    ERR_FORGED);

	auth_srs_free(srs);
	auth_srs_free(other);
}
END_TEST

START_TEST(test_srs1_forged_host)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	char *p;

	fwd_ok(srs, "SRS0=abcd=G3=orig.test=bob@hop1.test", NOW, out,
	    sizeof(out));
	p = strstr(out, "hop1.test");
	ck_assert_ptr_nonnull(p);
	p[3] = '9'; /* redirect the bounce to hop9.test */
	rev_fail(srs, out, NOW, ERR_FORGED);
	auth_srs_free(srs);
}
END_TEST

/* --- malformed input ------------------------------------------------- */

static const char *malformed[] = {
	"SRS0=@" SRSDOM,
	"SRS0=uQR/@" SRSDOM,
	"SRS0=uQR/=G3@" SRSDOM,
	"SRS0=uQR/=G3=Example.COM@" SRSDOM,         /* no local part */
	"SRS0=uQR/=G3=Example.COM=@" SRSDOM,        /* empty local */
	"SRS0=uQR/=G3==Alice@" SRSDOM,              /* empty domain */
	"SRS0=uQR=G3=Example.COM=Alice@" SRSDOM,    /* 3-char hash */
	"SRS0=uQR/x=G3=Example.COM=Alice@" SRSDOM,  /* 5-char hash */
	"SRS0=uQ!/=G3=Example.COM=Alice@" SRSDOM,   /* not base64 */
	"SRS0=uQR/=G=Example.COM=Alice@" SRSDOM,    /* 1-char TT */
	"SRS0=uQR/=G3X=Example.COM=Alice@" SRSDOM,  /* 3-char TT */
	"SRS0=uQR/=G1=Example.COM=Alice@" SRSDOM,   /* '1' not base32 */
	"SRS0=uQR/=G3=Example.COM=Alice",           /* no domain part */
	"SRS0=uQR/=G3=Example.COM=Alice@",          /* empty domain part */
	"SRS0=uQR/=G3=Exa mple.COM=Alice@" SRSDOM,  /* space */
	"SRS0=uQR/=G3=Example.COM=Al\tice@" SRSDOM, /* control */
	"SRS0=uQR/=G3=a@b=Alice@" SRSDOM,           /* '@' in domain */
	"SRS1=@" SRSDOM,
	"SRS1=Tszd@" SRSDOM,
	"SRS1=Tszd=hop1.test@" SRSDOM,
	"SRS1=Tszd=hop1.test=@" SRSDOM,
	"SRS1=Tszd=hop1.test==@" SRSDOM,             /* rest is just "=" */
	"SRS1=Tszd=hop1.test=Xabcd=G3=o=b@" SRSDOM,  /* rest w/o sep */
	"SRS1=Tszd==hop1.test==abcd=G3=o=b@" SRSDOM, /* empty host */
	"SRS1==hop1.test==abcd=G3=o=b@" SRSDOM,      /* empty hash */
	"SRS1=Tsz=hop1.test==abcd=G3=o=b@" SRSDOM,   /* short hash */
	"SRS1=Tszd=hop1.test==abcd=G3=o=b",          /* no domain part */
	"SRS0=",
	"SRS1-",
};

START_TEST(test_malformed)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);

	rev_fail(srs, malformed[_i], NOW, ERR_MALFORMED);
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_malformed_too_long)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char addr[400];

	memset(addr, 'a', sizeof(addr) - 1);
	addr[sizeof(addr) - 1] = '\0';
	memcpy(addr, "SRS0=uQR/=G3=Example.COM=", 25);
	memcpy(addr + 300, "@x.test", 8);
	rev_fail(srs, addr, NOW, ERR_MALFORMED);
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_not_srs)
{
	static const char *addrs[] = {
		"alice@example.com",
		"SRS2=x@y",
		"SRS0@y",
		"SRS",
		"",
		"srs0",
		"xSRS0=uQR/=G3=Example.COM=Alice@srs.relay.test",
	};
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	size_t i;

	sbuf_init(&err, ERR_CAP);
	for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		sbuf_reset(&err);
		out[0] = 'x';
		ck_assert_int_eq(auth_srs_reverse(srs, addrs[i], NOW, out,
		                     sizeof(out), &err),
		    1);
		ck_assert_str_eq(err.data, "not an SRS address");
		ck_assert_str_eq(out, "");
	}
	sbuf_release(&err);
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_forward_malformed_sender)
{
	static const char *senders[] = {
		"noat",
		"@d.test",
		"l@",
		"a b@c.test",
		"l@d=x.test",
		"l\r\n@d.test",
		"l@d.test\x7f",
	};
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	size_t i;

	sbuf_init(&err, ERR_CAP);
	for (i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
		sbuf_reset(&err);
		ck_assert_int_eq(auth_srs_forward(srs, senders[i], NOW, out,
		                     sizeof(out), &err),
		    -1);
		ck_assert_str_eq(err.data, "malformed sender address");
		ck_assert_str_eq(out, "");
	}
	/* Quoted local parts pass unrewritten, with a reason. */
	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_forward(srs, "\"a@b c\"@d.test", NOW, out,
	                     sizeof(out), &err),
	    1);
	ERR_SET(&err);
	ck_assert_str_eq(out, "");
	sbuf_release(&err);
	auth_srs_free(srs);
}
END_TEST

/* --- untouched senders ----------------------------------------------- */

START_TEST(test_null_sender)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	ERR_FILL(&err);
	out[0] = 'x';
	ck_assert_int_eq(auth_srs_forward(srs, "", NOW, out, sizeof(out), &err),
	    1);
	ERR_EMPTY(&err);
	ck_assert_str_eq(out, "");
	ERR_FILL(&err);
	ck_assert_int_eq(auth_srs_forward(srs, "<>", NOW, out, sizeof(out),
	                     &err),
	    1);
	ERR_EMPTY(&err);
	sbuf_release(&err);
	auth_srs_free(srs);
}
END_TEST

START_TEST(test_own_domain)
{
	static const char *senders[] = {
		"postmaster@srs.relay.test",
		"x@SRS.Relay.TEST",
		"x@srs.relay.test.",
		"SRS0=uQR/=G3=Example.COM=Alice@srs.relay.test",
		"SRS1=Tszd=hop1.test==abcd=G3=orig.test=bob@srs.relay.test",
	};
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	size_t i;

	sbuf_init(&err, ERR_CAP);
	for (i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
		ERR_FILL(&err);
		ck_assert_int_eq(auth_srs_forward(srs, senders[i], NOW, out,
		                     sizeof(out), &err),
		    1);
		ERR_EMPTY(&err);
		ck_assert_str_eq(out, "");
	}
	sbuf_release(&err);
	/* A sub- or look-alike domain is someone else's. */
	fwd_ok(srs, "x@a.srs.relay.test", NOW, out, sizeof(out));
	fwd_ok(srs, "x@srs.relay.testx", NOW, out, sizeof(out));
	auth_srs_free(srs);
}
END_TEST

/* --- secrets --------------------------------------------------------- */

START_TEST(test_rotation)
{
	struct auth_srs *old, *cur, *cur_only;
	char s_old[AUTH_SRS_ADDR_BUFSIZE], s_cur[AUTH_SRS_ADDR_BUFSIZE];
	char want[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	int i;

	sbuf_init(&err, ERR_CAP);
	old = mk("old secret", SRSDOM);
	cur = mk("new secret", SRSDOM);
	cur_only = mk("new secret", SRSDOM);
	ck_assert_int_eq(auth_srs_add_secret(cur, "old secret", 10, &err), 0);
	ERR_EMPTY(&err);

	fwd_ok(old, "u@d.test", NOW, s_old, sizeof(s_old));
	fwd_ok(old, "SRS0=abcd=G3=o.test=u@hop1.test", NOW, s_cur,
	    sizeof(s_cur));
	rev_ok(cur, s_old, NOW + DAY, "u@d.test");
	rev_ok(cur, s_cur, NOW + DAY, "SRS0=abcd=G3=o.test=u@hop1.test");
	rev_fail(cur_only, s_old, NOW + DAY, ERR_FORGED);
	rev_fail(cur_only, s_cur, NOW + DAY, ERR_FORGED);

	/* New addresses are signed with the first secret only. */
	fwd_ok(cur, "u@d.test", NOW, s_cur, sizeof(s_cur));
	ref_srs0("new secret", NOW, '=', "u", "d.test", SRSDOM, want,
	    sizeof(want));
	ck_assert_str_eq(s_cur, want);
	rev_fail(old, s_cur, NOW, ERR_FORGED);

	/* Up to AUTH_SRS_SECRETS_MAX in all. */
	for (i = 2; i < AUTH_SRS_SECRETS_MAX; i++)
		ck_assert_int_eq(auth_srs_add_secret(cur, "k", 1, &err), 0);
	ck_assert_int_eq(auth_srs_add_secret(cur, "k", 1, &err), -1);
	ck_assert_str_eq(err.data, "too many SRS secrets");
	ck_assert_int_eq(auth_srs_add_secret(cur_only, "", 0, &err), -1);
	ck_assert_int_eq(auth_srs_add_secret(cur_only, NULL, 3, &err), -1);
	/* The rotated secret still verifies with the list full. */
	rev_ok(cur, s_old, NOW, "u@d.test");
	sbuf_release(&err);

	auth_srs_free(old);
	auth_srs_free(cur);
	auth_srs_free(cur_only);
}
END_TEST

/* --- limits ---------------------------------------------------------- */

static void
build(char *buf, size_t llen, const char *domain)
{
	memset(buf, 'l', llen);
	buf[llen] = '@';
	memcpy(buf + llen + 1, domain, strlen(domain) + 1);
}

START_TEST(test_limits)
{
	struct auth_srs *strict = mk(SECRET, SRSDOM);
	struct auth_srs *lax = mk_full(SECRET, SRSDOM, 0, 0, true);
	char sender[600], out[AUTH_SRS_ADDR_BUFSIZE], dom[300];
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	/* 13 + 23 + 1 + 27 = 64-octet local part: just fits. */
	build(sender, 27, "abcdefghij.example.test");
	fwd_ok(strict, sender, NOW, out, sizeof(out));
	ck_assert_uint_eq((size_t)(strchr(out, '@') - out), 64);
	rev_ok(strict, out, NOW, sender);
	/* One more octet: left alone under the default. */
	build(sender, 28, "abcdefghij.example.test");
	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_forward(strict, sender, NOW, out, sizeof(out),
	                     &err),
	    1);
	ERR_SET(&err);
	ck_assert_ptr_nonnull(strstr(err.data, "64"));
	ck_assert_str_eq(out, "");
	fwd_ok(lax, sender, NOW, out, sizeof(out));
	rev_ok(lax, out, NOW, sender);

	/* Path: 254 octets is the most an address may be (256 with <>). */
	memset(dom, 'd', sizeof(dom));
	memcpy(dom + 200, ".test", 6); /* 205-octet domain */
	build(sender, 21, dom);        /* 13+205+1+21+1+14 = 255 */
	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_forward(lax, sender, NOW, out, sizeof(out),
	                     &err),
	    1);
	ERR_SET(&err);
	ck_assert_ptr_nonnull(strstr(err.data, "path limit"));
	build(sender, 20, dom); /* exactly 254 */
	fwd_ok(lax, sender, NOW, out, sizeof(out));
	ck_assert_uint_eq(strlen(out), 254);
	rev_ok(lax, out, NOW, sender);

	/* An over-long sender is passed through, not rewritten. */
	build(sender, 64, dom);
	memset(sender + 64 + 1, 'e', 300);
	memcpy(sender + 64 + 1 + 300, ".test", 6);
	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_forward(lax, sender, NOW, out, sizeof(out),
	                     &err),
	    1);
	ERR_SET(&err);

	/* SRS1 is bound by the same limits. */
	build(sender, 40, "abcdefghij.example.test"); /* SRS1: 70 */
	memcpy(sender, "SRS0=abcd=G3=", 13);
	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_forward(strict, sender, NOW, out, sizeof(out),
	                     &err),
	    1);
	ERR_SET(&err);

	sbuf_release(&err);
	auth_srs_free(strict);
	auth_srs_free(lax);
}
END_TEST

START_TEST(test_small_output)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char out[AUTH_SRS_ADDR_BUFSIZE], small[48];
	struct sbuf err;
	size_t n;

	sbuf_init(&err, ERR_CAP);
	fwd_ok(srs, "Alice@Example.COM", NOW, out, sizeof(out));
	n = strlen(out); /* 45 */
	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_forward(srs, "Alice@Example.COM", NOW, small,
	                     n, &err),
	    -1);
	ERR_SET(&err);
	ck_assert_str_eq(small, "");
	ck_assert_int_eq(auth_srs_forward(srs, "Alice@Example.COM", NOW, small,
	                     n + 1, &err),
	    0);
	ck_assert_str_eq(small, out);

	sbuf_reset(&err);
	ck_assert_int_eq(auth_srs_reverse(srs, out, NOW, small, 17, &err), -1);
	ERR_SET(&err);
	ck_assert_str_eq(small, "");
	ck_assert_int_eq(auth_srs_reverse(srs, out, NOW, small, 18, &err), 0);
	ck_assert_str_eq(small, "Alice@Example.COM");

	ck_assert_int_eq(auth_srs_forward(srs, "a@b", NOW, small, 0, &err), -1);
	ck_assert_int_eq(auth_srs_forward(srs, NULL, NOW, out, sizeof(out),
	                     &err),
	    -1);
	ck_assert_int_eq(auth_srs_forward(srs, "a@b", NOW, NULL, 10, NULL), -1);
	ck_assert_int_eq(auth_srs_forward(NULL, "a@b", NOW, out, sizeof(out),
	                     NULL),
	    -1);
	ck_assert_int_eq(auth_srs_reverse(srs, NULL, NOW, out, sizeof(out),
	                     &err),
	    -1);
	sbuf_release(&err);
	auth_srs_free(srs);
}
END_TEST

/* --- construction and helpers ---------------------------------------- */

START_TEST(test_new_params)
{
	struct auth_srs_params p;
	struct auth_srs *srs;
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	memset(&p, 0, sizeof(p));
	sbuf_reset(&err);
	ck_assert_ptr_null(auth_srs_new(NULL, &err));
	ERR_SET(&err);

	p.domain = SRSDOM;
	sbuf_reset(&err);
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	ck_assert_str_eq(err.data, "SRS secret is empty");
	p.secret = "s";
	p.secret_len = 1;
	p.domain = NULL;
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	ck_assert_str_eq(err.data, "SRS domain is empty");
	p.domain = "";
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	p.domain = "srs=bad.test";
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	p.domain = "srs@bad.test";
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	p.domain = SRSDOM;
	p.separator = '/';
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	p.separator = 0;
	p.max_age_days = AUTH_SRS_MAX_AGE_MAX + 1;
	ck_assert_ptr_null(auth_srs_new(&p, &err));
	ck_assert_ptr_null(auth_srs_new(&p, NULL));

	/* Defaults: '=' and 21 days. */
	p.max_age_days = 0;
	srs = auth_srs_new(&p, &err);
	ck_assert_ptr_nonnull(srs);
	ERR_EMPTY(&err);
	auth_srs_free(srs);

	sbuf_release(&err);
	auth_srs_free(NULL);
}
END_TEST

static const struct {
	const char *s;
	bool srs;
} is_srs_tab[] = {
	{ "SRS0=x", true },
	{ "SRS1=x", true },
	{ "srs0+x", true },
	{ "sRs1-", true },
	{ "SRS0", false },
	{ "SRS2=x", false },
	{ "SRS0x", false },
	{ "SRS", false },
	{ "", false },
	{ " SRS0=x", false },
	{ "SRS0@x", false },
	{ "SRS0=uQR/=G3=Example.COM=Alice@srs.relay.test", true },
};

START_TEST(test_is_srs)
{
	ck_assert_msg(auth_srs_is_srs(is_srs_tab[_i].s) == is_srs_tab[_i].srs,
	    "\"%s\"", is_srs_tab[_i].s);
	ck_assert(!auth_srs_is_srs(NULL));
}
END_TEST

/* The object is const after setup: errors leave nothing behind. */
START_TEST(test_stateless)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	char a[AUTH_SRS_ADDR_BUFSIZE], b[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;

	sbuf_init(&err, ERR_CAP);
	fwd_ok(srs, "u@d.test", NOW, a, sizeof(a));
	rev_fail(srs, "SRS0=AAAA=G3=d.test=u@x", NOW, ERR_FORGED);
	ck_assert_int_eq(auth_srs_forward(srs, "bad", NOW, b, sizeof(b), &err),
	    -1);
	fwd_ok(srs, "u@d.test", NOW, b, sizeof(b));
	ck_assert_str_eq(a, b);
	sbuf_release(&err);
	auth_srs_free(srs);
}
END_TEST

/*
 * The error sbuf: every call replaces what err held (a reason, or nothing),
 * a reason is cut at err's cap, and err may be NULL.
 */
START_TEST(test_err_sbuf)
{
	struct auth_srs_params p;
	struct auth_srs *srs = mk(SECRET, SRSDOM), *t;
	char out[AUTH_SRS_ADDR_BUFSIZE], back[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err, small, none;

	sbuf_init(&err, ERR_CAP);
	sbuf_init(&small, 6);
	sbuf_init(&none, 0);

	/* A reason replaces the previous one; success leaves err empty. */
	ERR_FILL(&err);
	ck_assert_int_eq(auth_srs_forward(srs, "bad", NOW, out, sizeof(out),
	                     &err),
	    -1);
	ck_assert_str_eq(err.data, "malformed sender address");
	ck_assert_int_eq(auth_srs_reverse(srs, "u@d.test", NOW, out,
	                     sizeof(out), &err),
	    1);
	ck_assert_str_eq(err.data, "not an SRS address");
	ck_assert_int_eq(auth_srs_forward(srs, "u@d.test", NOW, out,
	                     sizeof(out), &err),
	    0);
	ERR_EMPTY(&err);
	ERR_FILL(&err);
	ck_assert_int_eq(auth_srs_reverse(srs, out, NOW, back, sizeof(back),
	                     &err),
	    0);
	ERR_EMPTY(&err);
	ck_assert_str_eq(back, "u@d.test");
	ERR_FILL(&err);
	ck_assert_int_eq(auth_srs_add_secret(srs, "old", 3, &err), 0);
	ERR_EMPTY(&err);
	ERR_FILL(&err);
	ck_assert_int_eq(auth_srs_add_secret(srs, NULL, 0, &err), -1);
	ck_assert_str_eq(err.data, "SRS secret is empty");
	memset(&p, 0, sizeof(p));
	p.secret = SECRET;
	p.secret_len = strlen(SECRET);
	p.domain = SRSDOM;
	t = auth_srs_new(&p, &err);
	ck_assert_ptr_nonnull(t);
	ERR_EMPTY(&err);
	auth_srs_free(t);

	/* Cut at the cap; the return code still tells the failure. */
	ck_assert_int_eq(auth_srs_reverse(srs, "SRS0=AAAA=G3=d.test=u@x", NOW,
	                     out, sizeof(out), &small),
	    -1);
	ck_assert_str_eq(small.data, "forged");
	ck_assert_uint_eq(small.len, 6);
	ck_assert_int_eq(auth_srs_forward(srs, "\"q\"@d.test", NOW, out,
	                     sizeof(out), &small),
	    1);
	ck_assert_str_eq(small.data, "quoted");
	p.domain = "";
	ck_assert_ptr_null(auth_srs_new(&p, &small));
	ck_assert_str_eq(small.data, "SRS do");
	ck_assert_int_eq(auth_srs_forward(srs, "bad", NOW, out, sizeof(out),
	                     &none),
	    -1);
	ERR_EMPTY(&none);

	/* NULL err: the same answers, no detail. */
	ck_assert_int_eq(auth_srs_forward(srs, "u@d.test", NOW, out,
	                     sizeof(out), NULL),
	    0);
	ck_assert_int_eq(auth_srs_reverse(srs, out, NOW, back, sizeof(back),
	                     NULL),
	    0);
	ck_assert_str_eq(back, "u@d.test");
	ck_assert_int_eq(auth_srs_forward(srs, "", NOW, out, sizeof(out), NULL),
	    1);
	ck_assert_int_eq(auth_srs_forward(srs, "\"q\"@d.test", NOW, out,
	                     sizeof(out), NULL),
	    1);
	ck_assert_int_eq(auth_srs_reverse(srs, "u@d.test", NOW, out,
	                     sizeof(out), NULL),
	    1);
	ck_assert_int_eq(auth_srs_reverse(srs, "SRS0=AAAA=G3=d.test=u@x", NOW,
	                     out, sizeof(out), NULL),
	    -1);
	ck_assert_int_eq(auth_srs_add_secret(srs, "old2", 4, NULL), 0);
	ck_assert_int_eq(auth_srs_add_secret(srs, "", 0, NULL), -1);
	p.domain = SRSDOM;
	t = auth_srs_new(&p, NULL);
	ck_assert_ptr_nonnull(t);
	auth_srs_free(t);

	sbuf_release(&err);
	sbuf_release(&small);
	sbuf_release(&none);
	auth_srs_free(srs);
}
END_TEST

/* One configured object shared by threads: no locks, same answers. */
struct thread_arg {
	const struct auth_srs *srs;
	int id;
	int bad;
};

static void *
thread_main(void *p)
{
	struct thread_arg *a = p;
	char sender[64], out[AUTH_SRS_ADDR_BUFSIZE];
	char back[AUTH_SRS_ADDR_BUFSIZE];
	struct sbuf err;
	int i;

	sbuf_init(&err, ERR_CAP);
	for (i = 0; i < 500; i++) {
		snprintf(sender, sizeof(sender), "t%d.n%d@d%d.test", a->id, i,
		    i % 7);
		if (auth_srs_forward(a->srs, sender, NOW + i * 3600, out,
		        sizeof(out), &err) != 0 ||
		    auth_srs_reverse(a->srs, out, NOW + i * 3600, back,
		        sizeof(back), &err) != 0 ||
		    strcmp(back, sender) != 0)
			a->bad++;
	}
	sbuf_release(&err);
	return NULL;
}

START_TEST(test_threads)
{
	struct auth_srs *srs = mk(SECRET, SRSDOM);
	struct thread_arg args[4];
	pthread_t tid[4];
	int i;

	for (i = 0; i < 4; i++) {
		args[i].srs = srs;
		args[i].id = i;
		args[i].bad = 0;
		ck_assert_int_eq(pthread_create(&tid[i], NULL, thread_main,
		                     &args[i]),
		    0);
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
		ck_assert_int_eq(args[i].bad, 0);
	}
	auth_srs_free(srs);
}
END_TEST

static Suite *
auth_srs_suite(void)
{
	Suite *s = suite_create("auth_srs");
	TCase *tc;

	tc = tcase_create("known_answers");
	tcase_add_test(tc, test_kat_literal);
	tcase_add_loop_test(tc, test_kat_reference, 0,
	    (int)(sizeof(kat) / sizeof(kat[0])));
	tcase_add_test(tc, test_kat_tt_edges);
	tcase_add_test(tc, test_kat_srs1_reference);
	tcase_add_test(tc, test_python_crosscheck);
	suite_add_tcase(s, tc);

	tc = tcase_create("round_trip");
	tcase_add_test(tc, test_roundtrip_srs0);
	tcase_add_test(tc, test_roundtrip_srs1);
	tcase_add_test(tc, test_pseudo_srs_wrapped);
	tcase_add_test(tc, test_separators);
	tcase_add_test(tc, test_case_insensitive);
	suite_add_tcase(s, tc);

	tc = tcase_create("verify");
	tcase_add_test(tc, test_expired);
	tcase_add_test(tc, test_future);
	tcase_add_test(tc, test_forged);
	tcase_add_test(tc, test_srs1_forged_host);
	tcase_add_loop_test(tc, test_malformed, 0,
	    (int)(sizeof(malformed) / sizeof(malformed[0])));
	tcase_add_test(tc, test_malformed_too_long);
	tcase_add_test(tc, test_not_srs);
	tcase_add_test(tc, test_rotation);
	suite_add_tcase(s, tc);

	tc = tcase_create("forward_policy");
	tcase_add_test(tc, test_forward_malformed_sender);
	tcase_add_test(tc, test_null_sender);
	tcase_add_test(tc, test_own_domain);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_small_output);
	suite_add_tcase(s, tc);

	tc = tcase_create("api");
	tcase_add_test(tc, test_new_params);
	tcase_add_loop_test(tc, test_is_srs, 0,
	    (int)(sizeof(is_srs_tab) / sizeof(is_srs_tab[0])));
	tcase_add_test(tc, test_stateless);
	tcase_add_test(tc, test_err_sbuf);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(auth_srs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
