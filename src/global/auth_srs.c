/*
 * auth_srs.c - SRS forward rewriting and reversal (format: auth_srs.h).
 *
 * Owns only copies of its secrets and domain, wiped on free. Never does
 * I/O, logs or keeps state between calls: forward and reverse work in stack
 * buffers bounded by the RFC 5321 path limit and allocate nothing (only a
 * reason written to the caller's err may grow it), so one configured object
 * can serve every thread at once.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth_srs.h"
#include "xmalloc.h"

#define SRS_ADDR_MAX    (AUTH_SRS_PATH_MAX - 2) /* address without <> */
#define SRS_DOMAIN_MAX  255                     /* RFC 5321 4.5.3.1.2 */
#define SRS_DAY_SECONDS 86400
#define SRS_TT_MOD      1024 /* two base32 digits */
#define SRS_SECRET_MAX  4096

#define SRS_ERR_MALFORMED "malformed SRS address"
#define SRS_ERR_FORGED    "forged SRS address (bad hash)"
#define SRS_ERR_EXPIRED   "expired SRS address"
#define SRS_ERR_FUTURE    "expired SRS address (timestamp in the future)"
#define SRS_ERR_NOT_SRS   "not an SRS address"
#define SRS_ERR_OUTSIZE   "SRS output buffer too small"
#define SRS_ERR_ARGS      "SRS: invalid arguments"
#define SRS_ERR_HMAC      "SRS: HMAC-SHA1 failed"

struct srs_secret {
	unsigned char *key;
	size_t len;
};

struct auth_srs {
	struct srs_secret secrets[AUTH_SRS_SECRETS_MAX]; /* [0] signs */
	size_t nsecrets;
	char *domain;
	size_t domainlen;
	unsigned max_age;
	char sep;
	bool allow_long_local;
};

/* A piece of hashed text; pieces are lower-cased and concatenated. */
struct srs_part {
	const char *p;
	size_t len;
};

static const char srs_b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char srs_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ASCII only: the locale must not change what a hash covers. */
static int
srs_lc(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool
srs_is_sep(int c)
{
	return c == '=' || c == '+' || c == '-';
}

static bool
srs_is_b64(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Base32 digit value, case-insensitive; -1 when c is not one. */
static int
srs_b32_val(int c)
{
	c = srs_lc(c);
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

/* "SRS0" or "SRS1" (digit) in any case, then a separator. */
static bool
srs_has_tag(const char *s, size_t len, char digit)
{
	return len >= 5 && srs_lc(s[0]) == 's' && srs_lc(s[1]) == 'r' &&
	    srs_lc(s[2]) == 's' && s[3] == digit && srs_is_sep(s[4]);
}

static bool
srs_domain_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i;

	if (alen > 0 && a[alen - 1] == '.')
		alen--;
	if (alen != blen)
		return false;
	for (i = 0; i < alen; i++)
		if (srs_lc((unsigned char)a[i]) != srs_lc((unsigned char)b[i]))
			return false;
	return true;
}

/* Bytes no address may carry unquoted: controls, space, DEL. */
static bool
srs_has_bad_byte(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
			return true;
	return false;
}

static uint32_t
srs_day(time_t now)
{
	return (uint32_t)(((uint64_t)now / SRS_DAY_SECONDS) % SRS_TT_MOD);
}

/*
 * hash_out = first AUTH_SRS_HASH_LEN base64 characters of
 * HMAC-SHA1(key, lc(part[0]) || ... || lc(part[n-1])). Returns 0 or -1.
 */
static int
srs_hash(const struct srs_secret *sec, const struct srs_part *parts, size_t n,
    char hash_out[AUTH_SRS_HASH_LEN])
{
	unsigned char msg[2 * AUTH_SRS_PATH_MAX];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t i, j, len = 0;

	for (i = 0; i < n; i++) {
		if (parts[i].len > sizeof(msg) - len)
			return -1;
		for (j = 0; j < parts[i].len; j++)
			msg[len++] = (unsigned char)srs_lc(
			    (unsigned char)parts[i].p[j]);
	}
	if (HMAC(EVP_sha1(), sec->key, (int)sec->len, msg, len, md, &mdlen) ==
	    NULL)
		return -1;
	if (mdlen < 3)
		return -1;
	/* Four base64 characters are exactly the first three bytes. */
	hash_out[0] = srs_b64[md[0] >> 2];
	hash_out[1] = srs_b64[((md[0] & 0x03) << 4) | (md[1] >> 4)];
	hash_out[2] = srs_b64[((md[1] & 0x0f) << 2) | (md[2] >> 6)];
	hash_out[3] = srs_b64[md[2] & 0x3f];
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

/*
 * Checks hash against every accepted secret: 0 on a match, -1 on none,
 * -2 when HMAC itself failed. Case-insensitive (see auth_srs.h) and
 * without early exit on the characters.
 *
 * XXX: folding case leaves roughly 4 * 5.4 bits of the 24 the hash
 * carries; that is the de-facto scheme's price for surviving MTAs that
 * lower-case local parts, and the timestamp bounds a forgery's use.
 */
static int
srs_verify(const struct auth_srs *srs, const struct srs_part *parts, size_t n,
    const char *hash)
{
	char want[AUTH_SRS_HASH_LEN];
	size_t i, k;
	int diff;

	for (i = 0; i < srs->nsecrets; i++) {
		if (srs_hash(&srs->secrets[i], parts, n, want) == -1)
			return -2;
		diff = 0;
		for (k = 0; k < AUTH_SRS_HASH_LEN; k++)
			diff |= srs_lc((unsigned char)want[k]) ^
			    srs_lc((unsigned char)hash[k]);
		if (diff == 0)
			return 0;
	}
	return -1;
}

/*
 * Splits an SRS1 local part "SRS1<sep>hash=host=<sep>rest" (tag already
 * checked). Returns true with the three fields when all are present and
 * host is a host (no '@'). Forward and reverse share this test: an SRS1
 * sender forward takes apart must give an address reverse takes apart.
 */
static bool
srs_split_srs1(const char *local, size_t llen, struct srs_part *hash,
    struct srs_part *host, struct srs_part *rest)
{
	const char *p = local + 5, *end = local + llen, *e1, *e2;

	if (p >= end || (e1 = memchr(p, '=', (size_t)(end - p))) == NULL)
		return false;
	e2 = memchr(e1 + 1, '=', (size_t)(end - e1 - 1));
	if (e2 == NULL)
		return false;
	hash->p = p;
	hash->len = (size_t)(e1 - p);
	host->p = e1 + 1;
	host->len = (size_t)(e2 - e1 - 1);
	rest->p = e2 + 1;
	rest->len = (size_t)(end - e2 - 1);
	/* rest is the first hop's SRS0 local part minus "SRS0". */
	return hash->len > 0 && host->len > 0 && rest->len >= 2 &&
	    srs_is_sep((unsigned char)rest->p[0]) &&
	    memchr(host->p, '@', host->len) == NULL;
}

static bool
srs_is_our_hash(const struct srs_part *h)
{
	size_t i;

	if (h->len != AUTH_SRS_HASH_LEN)
		return false;
	for (i = 0; i < h->len; i++)
		if (!srs_is_b64((unsigned char)h->p[i]))
			return false;
	return true;
}

/* "No reason": err (may be NULL) is left empty. */
static void
srs_noerr(struct sbuf *err)
{
	if (err != NULL)
		sbuf_reset(err);
}

struct auth_srs *
auth_srs_new(const struct auth_srs_params *p, struct sbuf *err)
{
	struct auth_srs *srs;
	const char *why;
	size_t i, dlen;
	unsigned char c;

	if (p == NULL) {
		why = SRS_ERR_ARGS;
		goto fail;
	}
	if (p->secret == NULL || p->secret_len == 0) {
		why = "SRS secret is empty";
		goto fail;
	}
	if (p->secret_len > SRS_SECRET_MAX) {
		why = "SRS secret is too long";
		goto fail;
	}
	if (p->domain == NULL || (dlen = strlen(p->domain)) == 0) {
		why = "SRS domain is empty";
		goto fail;
	}
	if (dlen > SRS_DOMAIN_MAX) {
		why = "SRS domain is too long";
		goto fail;
	}
	for (i = 0; i < dlen; i++) {
		c = (unsigned char)p->domain[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		        c == '_')) {
			why = "SRS domain has an invalid character";
			goto fail;
		}
	}
	if (p->max_age_days > AUTH_SRS_MAX_AGE_MAX) {
		why = "SRS max age is over 512 days";
		goto fail;
	}
	if (p->separator != '\0' && !srs_is_sep((unsigned char)p->separator)) {
		why = "SRS separator must be '=', '+' or '-'";
		goto fail;
	}

	srs = xcalloc(1, sizeof(*srs));
	srs->domain = xstrndup(p->domain, dlen);
	srs->domainlen = dlen;
	srs->max_age = p->max_age_days == 0 ? AUTH_SRS_MAX_AGE_DEFAULT :
	                                      p->max_age_days;
	srs->sep = p->separator == '\0' ? '=' : p->separator;
	srs->allow_long_local = p->allow_long_local;
	srs->secrets[0].key = xmalloc(p->secret_len);
	memcpy(srs->secrets[0].key, p->secret, p->secret_len);
	srs->secrets[0].len = p->secret_len;
	srs->nsecrets = 1;
	srs_noerr(err);
	return srs;

fail:
	(void)sbuf_seterr(err, "%s", why);
	return NULL;
}

int
auth_srs_add_secret(struct auth_srs *srs, const void *secret, size_t len,
    struct sbuf *err)
{
	struct srs_secret *s;

	if (srs == NULL || secret == NULL || len == 0)
		return sbuf_seterr(err, "SRS secret is empty");
	if (len > SRS_SECRET_MAX)
		return sbuf_seterr(err, "SRS secret is too long");
	if (srs->nsecrets >= AUTH_SRS_SECRETS_MAX)
		return sbuf_seterr(err, "too many SRS secrets");
	srs_noerr(err);
	s = &srs->secrets[srs->nsecrets];
	s->key = xmalloc(len);
	memcpy(s->key, secret, len);
	s->len = len;
	srs->nsecrets++;
	return 0;
}

void
auth_srs_free(struct auth_srs *srs)
{
	size_t i;

	if (srs == NULL)
		return;
	for (i = 0; i < srs->nsecrets; i++) {
		OPENSSL_cleanse(srs->secrets[i].key, srs->secrets[i].len);
		free(srs->secrets[i].key);
	}
	free(srs->domain);
	OPENSSL_cleanse(srs, sizeof(*srs));
	free(srs);
}

bool
auth_srs_is_srs(const char *s)
{
	size_t len;

	if (s == NULL)
		return false;
	len = strnlen(s, 5);
	return srs_has_tag(s, len, '0') || srs_has_tag(s, len, '1');
}

int
auth_srs_forward(const struct auth_srs *srs, const char *sender, time_t now,
    char *out, size_t outsize, struct sbuf *err)
{
	char buf[2 * AUTH_SRS_PATH_MAX];
	char hash[AUTH_SRS_HASH_LEN];
	struct srs_part parts[3], h, host, rest;
	const char *at, *local, *domain;
	size_t len, llen, dlen, rlocal;
	uint32_t day;
	int n;

	srs_noerr(err);
	if (out != NULL && outsize > 0)
		out[0] = '\0';
	if (srs == NULL || sender == NULL || out == NULL || outsize == 0 ||
	    now < 0)
		return sbuf_seterr(err, SRS_ERR_ARGS);

	len = strnlen(sender, SRS_ADDR_MAX + 1);
	if (len == 0 || strcmp(sender, "<>") == 0)
		return 1; /* the null sender: nothing to bounce to */
	if (len > SRS_ADDR_MAX) {
		(void)sbuf_seterr(err,
		    "sender exceeds the RFC 5321 path "
		    "limit; not rewritten");
		return 1;
	}
	if ((at = strrchr(sender, '@')) == NULL || at == sender ||
	    at[1] == '\0')
		return sbuf_seterr(err, "malformed sender address");
	local = sender;
	llen = (size_t)(at - sender);
	domain = at + 1;
	dlen = len - llen - 1;
	if (srs_domain_eq(domain, dlen, srs->domain, srs->domainlen))
		return 1;
	/* A quoted local part may hold anything; an SRS field may not. */
	if (local[0] == '"') {
		(void)sbuf_seterr(err, "quoted local part; not rewritten");
		return 1;
	}
	/* The SRS fields are '='-separated: a domain never holds one. */
	if (srs_has_bad_byte(sender, len) || memchr(domain, '=', dlen) != NULL)
		return sbuf_seterr(err, "malformed sender address");

	day = srs_day(now);
	if (srs_has_tag(local, llen, '1') &&
	    srs_split_srs1(local, llen, &h, &host, &rest)) {
		/* Shortcut: keep the first hop, re-sign it with our secret. */
		parts[0] = host;
		parts[1] = rest;
		if (srs_hash(&srs->secrets[0], parts, 2, hash) == -1)
			goto hmac_fail;
		n = snprintf(buf, sizeof(buf), "SRS1%c%.*s=%.*s=%.*s@%s",
		    srs->sep, AUTH_SRS_HASH_LEN, hash, (int)host.len, host.p,
		    (int)rest.len, rest.p, srs->domain);
	} else if (srs_has_tag(local, llen, '0') && llen >= 6) {
		/* rest keeps the first hop's separator: "host==HHHH=TT=..". */
		rest.p = local + 4;
		rest.len = llen - 4;
		parts[0].p = domain;
		parts[0].len = dlen;
		parts[1] = rest;
		if (srs_hash(&srs->secrets[0], parts, 2, hash) == -1)
			goto hmac_fail;
		n = snprintf(buf, sizeof(buf), "SRS1%c%.*s=%.*s=%.*s@%s",
		    srs->sep, AUTH_SRS_HASH_LEN, hash, (int)dlen, domain,
		    (int)rest.len, rest.p, srs->domain);
	} else {
		char tt[2];

		tt[0] = srs_b32[(day >> 5) & 0x1f];
		tt[1] = srs_b32[day & 0x1f];
		parts[0].p = tt;
		parts[0].len = 2;
		parts[1].p = domain;
		parts[1].len = dlen;
		parts[2].p = local;
		parts[2].len = llen;
		if (srs_hash(&srs->secrets[0], parts, 3, hash) == -1)
			goto hmac_fail;
		n = snprintf(buf, sizeof(buf), "SRS0%c%.*s=%c%c=%.*s=%.*s@%s",
		    srs->sep, AUTH_SRS_HASH_LEN, hash, tt[0], tt[1], (int)dlen,
		    domain, (int)llen, local, srs->domain);
	}
	if (n < 0 || (size_t)n >= sizeof(buf) || (size_t)n > SRS_ADDR_MAX) {
		(void)sbuf_seterr(err,
		    "SRS address would exceed the RFC 5321 "
		    "path limit; not rewritten");
		return 1;
	}
	rlocal = (size_t)n - 1 - srs->domainlen;
	if (!srs->allow_long_local && rlocal > AUTH_SRS_LOCAL_MAX) {
		(void)sbuf_seterr(err,
		    "SRS local part would exceed 64 octets "
		    "(RFC 5321); not rewritten");
		return 1;
	}
	if ((size_t)n >= outsize)
		return sbuf_seterr(err, SRS_ERR_OUTSIZE);
	memcpy(out, buf, (size_t)n + 1);
	return 0;

hmac_fail:
	return sbuf_seterr(err, SRS_ERR_HMAC);
}

int
auth_srs_reverse(const struct auth_srs *srs, const char *addr, time_t now,
    char *out, size_t outsize, struct sbuf *err)
{
	struct srs_part parts[3], h, host, rest;
	const char *at, *p, *end, *e;
	uint32_t then, today, delta;
	size_t len, llen;
	int hi, lo, n, v;

	srs_noerr(err);
	if (out != NULL && outsize > 0)
		out[0] = '\0';
	if (srs == NULL || addr == NULL || out == NULL || outsize == 0 ||
	    now < 0)
		return sbuf_seterr(err, SRS_ERR_ARGS);
	if (!auth_srs_is_srs(addr)) {
		(void)sbuf_seterr(err, SRS_ERR_NOT_SRS);
		return 1;
	}
	len = strnlen(addr, SRS_ADDR_MAX + 1);
	if (len > SRS_ADDR_MAX || (at = strrchr(addr, '@')) == NULL ||
	    at[1] == '\0' || srs_has_bad_byte(addr, len))
		return sbuf_seterr(err, SRS_ERR_MALFORMED);
	llen = (size_t)(at - addr);
	end = at;

	if (addr[3] == '1') {
		if (!srs_split_srs1(addr, llen, &h, &host, &rest) ||
		    !srs_is_our_hash(&h))
			return sbuf_seterr(err, SRS_ERR_MALFORMED);
		parts[0] = host;
		parts[1] = rest;
		if ((v = srs_verify(srs, parts, 2, h.p)) != 0)
			return sbuf_seterr(err, "%s",
			    v == -2 ? SRS_ERR_HMAC : SRS_ERR_FORGED);
		/* SRS1 has no timestamp of ours; the first hop checks its. */
		n = snprintf(out, outsize, "SRS0%.*s@%.*s", (int)rest.len,
		    rest.p, (int)host.len, host.p);
		goto done;
	}

	/* SRS0<sep>HHHH=TT=domain=local */
	p = addr + 5;
	if ((e = memchr(p, '=', (size_t)(end - p))) == NULL)
		goto malformed;
	h.p = p;
	h.len = (size_t)(e - p);
	p = e + 1;
	if (!srs_is_our_hash(&h) || end - p < 3 || p[2] != '=' ||
	    (hi = srs_b32_val((unsigned char)p[0])) < 0 ||
	    (lo = srs_b32_val((unsigned char)p[1])) < 0)
		goto malformed;
	parts[0].p = p;
	parts[0].len = 2;
	p += 3;
	if ((e = memchr(p, '=', (size_t)(end - p))) == NULL || e == p ||
	    e + 1 == end || memchr(p, '@', (size_t)(e - p)) != NULL)
		goto malformed;
	parts[1].p = p;
	parts[1].len = (size_t)(e - p);
	parts[2].p = e + 1;
	parts[2].len = (size_t)(end - e - 1);

	if ((v = srs_verify(srs, parts, 3, h.p)) != 0)
		return sbuf_seterr(err, "%s",
		    v == -2 ? SRS_ERR_HMAC : SRS_ERR_FORGED);
	/*
	 * TT is a day mod 1024, so "how old" is only known mod 1024: within
	 * max_age is valid, one day ahead is clock skew between forwarders,
	 * anything else is refused (more than half the cycle ahead reads as
	 * a future date rather than as an age).
	 */
	then = (uint32_t)(hi << 5 | lo);
	today = srs_day(now);
	delta = (today + SRS_TT_MOD - then) % SRS_TT_MOD;
	if (delta > srs->max_age && delta != SRS_TT_MOD - 1)
		return sbuf_seterr(err, "%s",
		    delta >= SRS_TT_MOD / 2 ? SRS_ERR_FUTURE : SRS_ERR_EXPIRED);
	n = snprintf(out, outsize, "%.*s@%.*s", (int)parts[2].len, parts[2].p,
	    (int)parts[1].len, parts[1].p);

done:
	if (n < 0 || (size_t)n >= outsize) {
		out[0] = '\0';
		return sbuf_seterr(err, SRS_ERR_OUTSIZE);
	}
	return 0;

malformed:
	return sbuf_seterr(err, SRS_ERR_MALFORMED);
}
