/*
 * spool_codec.c - the spool's grammar: message-file headers and journal
 * records (splitmx-spool(5)).
 *
 * Pure functions over bytes: the spool writes with them, the spool reader,
 * the queue's journal replay and splitmxctl parse with them. No I/O, no
 * logging, no globals. An encoder that would pass its buffer's cap fails
 * instead of writing part of a record.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sbuf.h"
#include "smtp_proto.h"
#include "spool_codec.h"
#include "xmalloc.h"

#define SPOOL_MAGIC "splitmx-queue-file"
#define SPOOL_SUM_PLACEHOLDER               \
	"size -------------------- sha256 " \
	"----------------------------------------------------------------"

bool
spool_id_valid(const char *id)
{
	size_t i;

	if (id == NULL)
		return false;
	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		        (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return id[SPOOL_ID_LEN] == '\0';
}

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"; out holds SPOOL_TS_LEN + 1 bytes. */
void
spool_time_format(const struct timespec *ts, char *out, size_t outlen)
{
	struct tm tm;
	char day[24];

	if (gmtime_r(&ts->tv_sec, &tm) == NULL ||
	    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    snprintf(out, outlen, "%s.%06ldZ", day,
	        (long)(ts->tv_nsec / 1000)) != SPOOL_TS_LEN)
		(void)snprintf(out, outlen, "0000-00-00T00:00:00.000000Z");
}

static int
spool_digits(const char *s, size_t n, int *out)
{
	size_t i;
	int v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
spool_time_parse(const char *s, size_t len, struct timespec *out)
{
	struct tm tm;
	int year, mon, mday, hour, min, sec, usec;
	time_t t;

	if (len != SPOOL_TS_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':' || s[19] != '.' || s[26] != 'Z')
		return -1;
	if (spool_digits(s, 4, &year) == -1 ||
	    spool_digits(s + 5, 2, &mon) == -1 ||
	    spool_digits(s + 8, 2, &mday) == -1 ||
	    spool_digits(s + 11, 2, &hour) == -1 ||
	    spool_digits(s + 14, 2, &min) == -1 ||
	    spool_digits(s + 17, 2, &sec) == -1 ||
	    spool_digits(s + 20, 6, &usec) == -1)
		return -1;
	if (mon < 1 || mon > 12 || mday < 1 || mday > 31 || hour > 23 ||
	    min > 59 || sec > 59 || year < 1970)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	/*
	 * timegm normalizes: February 31 would become March 3. Only a date
	 * that exists is a timestamp spool_time_format could have written.
	 */
	if (tm.tm_mday != mday || tm.tm_mon != mon - 1 ||
	    tm.tm_year != year - 1900)
		return -1;
	out->tv_sec = t;
	out->tv_nsec = (long)usec * 1000;
	return 0;
}

static int
spool_hdr_kv(struct sbuf *sb, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	if (sbuf_append_str(sb, key) == -1 || sbuf_append_char(sb, ' ') == -1 ||
	    sbuf_append_escaped(sb, value, strlen(value), NULL, false) == -1 ||
	    sbuf_append_char(sb, '\n') == -1)
		return -1;
	return 0;
}

static int
spool_notify_format(struct sbuf *sb, unsigned notify)
{
	static const struct {
		unsigned bit;
		const char *name;
	} map[] = {
		{ SMTP_PROTO_NOTIFY_NEVER, "NEVER" },
		{ SMTP_PROTO_NOTIFY_SUCCESS, "SUCCESS" },
		{ SMTP_PROTO_NOTIFY_FAILURE, "FAILURE" },
		{ SMTP_PROTO_NOTIFY_DELAY, "DELAY" },
	};
	const char *sep = "";
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (notify & map[i].bit) {
			if (sbuf_printf(sb, "%s%s", sep, map[i].name) == -1)
				return -1;
			sep = ",";
		}
	return 0;
}

int
spool_hdr_format(struct sbuf *sb, const char *id,
    const struct spool_envelope *env)
{
	char ts[SPOOL_TS_LEN + 1];
	size_t i;

	spool_time_format(&env->arrival, ts, sizeof(ts));
	if (sbuf_append_str(sb, SPOOL_LINE1) == -1 ||
	    sbuf_append_str(sb, SPOOL_SUM_PLACEHOLDER "\n") == -1 ||
	    sbuf_append_str(sb, SPOOL_PREPEND_KEY) == -1 ||
	    sbuf_printf(sb, "%*s\n", SPOOL_PREPEND_MAX, "") == -1 ||
	    spool_hdr_kv(sb, "id", id) == -1 ||
	    spool_hdr_kv(sb, "arrival", ts) == -1 ||
	    spool_hdr_kv(sb, "listener", env->listener) == -1 ||
	    spool_hdr_kv(sb, "client-addr", env->client_addr) == -1 ||
	    spool_hdr_kv(sb, "client-name", env->client_name) == -1 ||
	    spool_hdr_kv(sb, "helo", env->helo) == -1 ||
	    spool_hdr_kv(sb, "protocol", env->protocol) == -1 ||
	    spool_hdr_kv(sb, "tls", env->tls) == -1 ||
	    spool_hdr_kv(sb, "sender",
	        env->sender != NULL ? env->sender : "") == -1 ||
	    spool_hdr_kv(sb, "envid", env->envid) == -1)
		return -1;
	if (env->ret == SMTP_PROTO_RET_FULL || env->ret == SMTP_PROTO_RET_HDRS)
		if (spool_hdr_kv(sb, "ret",
		        env->ret == SMTP_PROTO_RET_FULL ? "FULL" : "HDRS") ==
		    -1)
			return -1;
	if (env->body == SMTP_PROTO_BODY_7BIT ||
	    env->body == SMTP_PROTO_BODY_8BITMIME)
		if (spool_hdr_kv(sb, "body",
		        env->body == SMTP_PROTO_BODY_7BIT ? "7BIT" :
		                                            "8BITMIME") == -1)
			return -1;
	if (env->smtputf8 && sbuf_append_str(sb, "smtputf8\n") == -1)
		return -1;
	for (i = 0; i < env->nrcpts; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];

		if (sbuf_append_str(sb, "rcpt ") == -1 ||
		    sbuf_append_escaped(sb, r->addr, strlen(r->addr), NULL,
		        false) == -1)
			return -1;
		if (r->notify != 0 &&
		    (sbuf_append_str(sb, " notify=") == -1 ||
		        spool_notify_format(sb, r->notify) == -1))
			return -1;
		if (r->orcpt != NULL &&
		    (sbuf_append_str(sb, " orcpt=") == -1 ||
		        sbuf_append_escaped(sb, r->orcpt, strlen(r->orcpt),
		            NULL, false) == -1))
			return -1;
		if (sbuf_append_char(sb, '\n') == -1)
			return -1;
	}
	return sbuf_append_str(sb, ".\n");
}

void
spool_envelope_clear(struct spool_envelope *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->prepend);
	free(env->listener);
	free(env->client_addr);
	free(env->client_name);
	free(env->helo);
	free(env->protocol);
	free(env->tls);
	memset(env, 0, sizeof(*env));
}

/* Unescapes a value into a new string; NULL if malformed or holding NUL. */
static char *
spool_unescape_dup(const char *s, size_t len)
{
	struct sbuf sb;
	char *out = NULL;

	sbuf_init(&sb, len);
	if (sbuf_append_unescaped(&sb, s, len) == 0 &&
	    memchr(sb.data, '\0', sb.len) == NULL)
		out = xstrndup(sb.data, sb.len);
	sbuf_release(&sb);
	return out;
}

static int
spool_set_str(char **field, const char *v, size_t vlen)
{
	if (*field != NULL)
		return -1; /* repeated key */
	return (*field = spool_unescape_dup(v, vlen)) == NULL ? -1 : 0;
}

static int
spool_parse_notify(const char *v, size_t len, unsigned *out)
{
	static const struct {
		const char *name;
		unsigned bit;
	} map[] = {
		{ "NEVER", SMTP_PROTO_NOTIFY_NEVER },
		{ "SUCCESS", SMTP_PROTO_NOTIFY_SUCCESS },
		{ "FAILURE", SMTP_PROTO_NOTIFY_FAILURE },
		{ "DELAY", SMTP_PROTO_NOTIFY_DELAY },
	};
	const char *end = v + len, *comma;
	size_t i, n;

	*out = 0;
	while (v < end) {
		comma = memchr(v, ',', (size_t)(end - v));
		n = (size_t)((comma != NULL ? comma : end) - v);
		for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strlen(map[i].name) == n &&
			    memcmp(map[i].name, v, n) == 0)
				break;
		if (i == sizeof(map) / sizeof(map[0]))
			return -1;
		*out |= map[i].bit;
		v += n + (comma != NULL ? 1 : 0);
	}
	return *out != 0 ? 0 : -1;
}

/* "ADDR [notify=...] [orcpt=...]" */
static int
spool_parse_rcpt(struct spool_envelope *env, size_t *alloc, const char *v,
    size_t len)
{
	struct spool_rcpt r = { NULL, 0, NULL };
	const char *end = v + len, *tok, *sp;
	size_t tlen;
	bool first = true, have_notify = false;

	while (v < end) {
		sp = memchr(v, ' ', (size_t)(end - v));
		tok = v;
		tlen = (size_t)((sp != NULL ? sp : end) - v);
		v += tlen + (sp != NULL ? 1 : 0);
		if (first) {
			/*
			 * No recipient is empty, and "rcpt " alone is refused
			 * below: an empty one before " notify=" must be too.
			 */
			if (tlen == 0 ||
			    (r.addr = spool_unescape_dup(tok, tlen)) == NULL)
				goto bad;
			first = false;
		} else if (tlen > 7 && memcmp(tok, "notify=", 7) == 0 &&
		    !have_notify) {
			if (spool_parse_notify(tok + 7, tlen - 7, &r.notify) ==
			    -1)
				goto bad;
			have_notify = true;
		} else if (tlen > 6 && memcmp(tok, "orcpt=", 6) == 0 &&
		    r.orcpt == NULL) {
			if ((r.orcpt = spool_unescape_dup(tok + 6, tlen - 6)) ==
			    NULL)
				goto bad;
		} else
			goto bad;
	}
	if (r.addr == NULL)
		goto bad;
	if (env->nrcpts == *alloc) {
		*alloc = *alloc == 0 ? 4 : *alloc * 2;
		env->rcpts = xreallocarray(env->rcpts, *alloc,
		    sizeof(*env->rcpts));
	}
	env->rcpts[env->nrcpts++] = r;
	return 0;
bad:
	free(r.addr);
	free(r.orcpt);
	return -1;
}

/*
 * Pure parser of a header (hdr[0..len) ends with the ".\n" line). Fills
 * env, the id, the recorded content size and SHA-256.
 */
int
spool_hdr_parse(const char *hdr, size_t len, struct spool_envelope *env,
    char id_out[SPOOL_ID_LEN + 1], uint64_t *size_out, char sha_out[65],
    struct sbuf *err)
{
	const char *p = hdr, *end = hdr + len, *nl, *v;
	size_t llen, klen = 0, vlen, alloc = 0, i;
	bool have_arrival = false, have_sender = false, have_ret = false;
	bool have_body = false, have_utf8 = false, done = false;
	uint64_t size = 0;

	memset(env, 0, sizeof(*env));
	id_out[0] = '\0';

	nl = memchr(p, '\n', len);
	if (nl == NULL || (size_t)(nl - p) + 1 != SPOOL_LINE1_LEN ||
	    memcmp(p, SPOOL_LINE1, SPOOL_LINE1_LEN) != 0) {
		if (nl != NULL && (size_t)(nl - p) > sizeof(SPOOL_MAGIC) &&
		    memcmp(p, SPOOL_MAGIC " ", sizeof(SPOOL_MAGIC)) == 0)
			sbuf_seterr(err, "unsupported format version");
		else
			sbuf_seterr(err, "not a splitmx queue file");
		return -1;
	}
	p = nl + 1;

	/* size %020llu sha256 %64s */
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL || nl - p != SPOOL_SUM_LEN ||
	    memcmp(p, "size ", 5) != 0 || memcmp(p + 25, " sha256 ", 8) != 0)
		goto badsum;
	for (i = 5; i < 25; i++) {
		if (p[i] < '0' || p[i] > '9')
			goto badsum;
		if (size > (UINT64_MAX - 9) / 10)
			goto badsum;
		size = size * 10 + (uint64_t)(p[i] - '0');
	}
	for (i = 33; i < SPOOL_SUM_LEN; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		        (p[i] >= 'a' && p[i] <= 'f')))
			goto badsum;
	memcpy(sha_out, p + 33, 64);
	sha_out[64] = '\0';
	*size_out = size;
	p = nl + 1;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		llen = (size_t)(nl - p);
		if (llen == 1 && p[0] == '.') {
			done = true;
			p = nl + 1;
			break;
		}
		v = memchr(p, ' ', llen);
		klen = v != NULL ? (size_t)(v - p) : llen;
		v = v != NULL ? v + 1 : nl;
		vlen = (size_t)(nl - v);
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(p, k, klen) == 0)
		if (KEY("id")) {
			if (id_out[0] != '\0' || vlen != SPOOL_ID_LEN)
				goto bad;
			memcpy(id_out, v, SPOOL_ID_LEN);
			id_out[SPOOL_ID_LEN] = '\0';
			if (!spool_id_valid(id_out))
				goto bad;
		} else if (KEY("arrival")) {
			if (have_arrival ||
			    spool_time_parse(v, vlen, &env->arrival) == -1)
				goto bad;
			have_arrival = true;
		} else if (KEY("listener")) {
			if (spool_set_str(&env->listener, v, vlen) == -1)
				goto bad;
		} else if (KEY("client-addr")) {
			if (spool_set_str(&env->client_addr, v, vlen) == -1)
				goto bad;
		} else if (KEY("client-name")) {
			if (spool_set_str(&env->client_name, v, vlen) == -1)
				goto bad;
		} else if (KEY("helo")) {
			if (spool_set_str(&env->helo, v, vlen) == -1)
				goto bad;
		} else if (KEY("protocol")) {
			if (spool_set_str(&env->protocol, v, vlen) == -1)
				goto bad;
		} else if (KEY("tls")) {
			if (spool_set_str(&env->tls, v, vlen) == -1)
				goto bad;
		} else if (KEY("sender")) {
			if (have_sender ||
			    spool_set_str(&env->sender, v, vlen) == -1)
				goto bad;
			have_sender = true;
		} else if (KEY("prepend")) {
			while (vlen > 0 && v[vlen - 1] == ' ')
				vlen--; /* the padding */
			if (vlen > 0 &&
			    spool_set_str(&env->prepend, v, vlen) == -1)
				goto bad;
		} else if (KEY("envid")) {
			if (spool_set_str(&env->envid, v, vlen) == -1)
				goto bad;
		} else if (KEY("ret")) {
			if (have_ret)
				goto bad;
			if (vlen == 4 && memcmp(v, "FULL", 4) == 0)
				env->ret = SMTP_PROTO_RET_FULL;
			else if (vlen == 4 && memcmp(v, "HDRS", 4) == 0)
				env->ret = SMTP_PROTO_RET_HDRS;
			else
				goto bad;
			have_ret = true;
		} else if (KEY("body")) {
			if (have_body)
				goto bad;
			if (vlen == 4 && memcmp(v, "7BIT", 4) == 0)
				env->body = SMTP_PROTO_BODY_7BIT;
			else if (vlen == 8 && memcmp(v, "8BITMIME", 8) == 0)
				env->body = SMTP_PROTO_BODY_8BITMIME;
			else
				goto bad;
			have_body = true;
		} else if (KEY("smtputf8")) {
			if (have_utf8 || vlen != 0)
				goto bad;
			env->smtputf8 = have_utf8 = true;
		} else if (KEY("rcpt")) {
			if (spool_parse_rcpt(env, &alloc, v, vlen) == -1)
				goto bad;
		}
		/* Other keys: later additions a version-1 reader may skip. */
#undef KEY
		p = nl + 1;
	}
	if (!done || p != end) {
		sbuf_seterr(err, "header not terminated");
		goto fail;
	}
	if (id_out[0] == '\0' || !have_arrival || !have_sender ||
	    env->nrcpts == 0) {
		sbuf_seterr(err, "header lacks id, arrival, sender or rcpt");
		goto fail;
	}
	return 0;
badsum:
	sbuf_seterr(err, "no size/sha256 record (uncommitted or damaged)");
	return -1;
bad : {
	struct sbuf key;

	sbuf_init(&key, 64);
	if (sbuf_append_escaped(&key, p, klen > 32 ? 32 : klen, NULL, true) ==
	    -1)
		sbuf_reset(&key);
	sbuf_seterr(err, "malformed header line \"%s\"", key.data);
	sbuf_release(&key);
}
fail:
	spool_envelope_clear(env);
	return -1;
}

/* The microsecond clock in a valid id's first 11 characters. */
uint64_t
spool_id_time(const char *id)
{
	uint64_t us = 0;
	int i;

	for (i = 0; i < 11; i++)
		us = us << 5 |
		    (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'A' + 10);
	return us;
}

void
spool_hdr_format_sum(char out[SPOOL_SUM_LEN + 1], uint64_t size,
    const char *sha256_hex)
{
	(void)snprintf(out, SPOOL_SUM_LEN + 1,
	    "size %020" PRIu64 " sha256 %.64s", size,
	    sha256_hex); /* fixed width: exactly SPOOL_SUM_LEN */
}

int
spool_hdr_end(const char *buf, size_t len, size_t *hlen_out)
{
	const char *endp = memmem(buf, len, "\n.\n", 3);

	if (endp == NULL)
		return 0;
	*hlen_out = (size_t)(endp - buf) + 3;
	return 1;
}

/* ---- journal records ---- */

static void
spool_jrec_esc(struct spool_jrec_out *w, const char *s, size_t len)
{
	if (!w->failed &&
	    sbuf_append_escaped(w->sb, s, len, SPOOL_JOURNAL_EXTRA, false) ==
	        -1)
		w->failed = true;
}

static void
spool_jrec_raw(struct spool_jrec_out *w, const char *s)
{
	if (!w->failed && sbuf_append_str(w->sb, s) == -1)
		w->failed = true;
}

static void
spool_jrec_key(struct spool_jrec_out *w, const char *key)
{
	spool_jrec_raw(w, " ");
	spool_jrec_raw(w, key);
	spool_jrec_raw(w, "=");
}

void
spool_jrec_begin(struct spool_jrec_out *w, struct sbuf *sb, const char *ts,
    const char *verb, const char *id)
{
	w->sb = sb;
	w->start = sb->len;
	w->failed = false;
	if (ts != NULL) {
		spool_jrec_raw(w, ts);
		spool_jrec_raw(w, " ");
	}
	spool_jrec_raw(w, verb);
	spool_jrec_raw(w, " id=");
	spool_jrec_esc(w, id, strlen(id));
}

void
spool_jrec_strn(struct spool_jrec_out *w, const char *key, const char *val,
    size_t len)
{
	spool_jrec_key(w, key);
	if (val != NULL)
		spool_jrec_esc(w, val, strnlen(val, len));
}

void
spool_jrec_str(struct spool_jrec_out *w, const char *key, const char *val)
{
	spool_jrec_strn(w, key, val, SIZE_MAX);
}

void
spool_jrec_addr(struct spool_jrec_out *w, const char *key, const char *val)
{
	spool_jrec_key(w, key);
	spool_jrec_raw(w, "<");
	if (val != NULL)
		spool_jrec_esc(w, val, strlen(val));
	spool_jrec_raw(w, ">");
}

void
spool_jrec_u64(struct spool_jrec_out *w, const char *key, uint64_t v)
{
	char num[24];

	(void)snprintf(num, sizeof(num), "%" PRIu64, v);
	spool_jrec_token(w, key, num);
}

void
spool_jrec_token(struct spool_jrec_out *w, const char *key, const char *token)
{
	spool_jrec_key(w, key);
	spool_jrec_raw(w, token);
}

void
spool_jrec_envelope(struct spool_jrec_out *w, const struct spool_envelope *env)
{
	size_t i;

	spool_jrec_u64(w, "nrcpt", env->nrcpts);
	spool_jrec_key(w, "to");
	for (i = 0; i < env->nrcpts; i++) {
		spool_jrec_raw(w, i > 0 ? ",<" : "<");
		spool_jrec_esc(w, env->rcpts[i].addr,
		    strlen(env->rcpts[i].addr));
		spool_jrec_raw(w, ">");
	}
	spool_jrec_str(w, "client", env->client_name);
	spool_jrec_raw(w, "[");
	if (env->client_addr != NULL)
		spool_jrec_esc(w, env->client_addr, strlen(env->client_addr));
	spool_jrec_raw(w, "]");
	spool_jrec_str(w, "listener", env->listener);
	spool_jrec_str(w, "helo", env->helo);
	spool_jrec_str(w, "proto", env->protocol);
	spool_jrec_str(w, "tls", env->tls);
}

int
spool_jrec_end(struct spool_jrec_out *w)
{
	spool_jrec_raw(w, "\n");
	if (w->failed) {
		sbuf_truncate(w->sb, w->start);
		return -1;
	}
	return 0;
}

void
spool_jrec_fragment_begin(struct spool_jrec_out *w, struct sbuf *sb)
{
	w->sb = sb;
	w->start = sb->len;
	w->failed = false;
}

int
spool_jrec_fragment_end(struct spool_jrec_out *w)
{
	if (w->failed) {
		sbuf_truncate(w->sb, w->start);
		return -1;
	}
	return 0;
}

void
spool_jrec_fragment(struct spool_jrec_out *w, const struct sbuf *frag)
{
	if (!w->failed && sbuf_append(w->sb, frag->data, frag->len) == -1)
		w->failed = true;
}

int
spool_jrec_parse(const char *line, size_t len, struct spool_jrec *out,
    struct sbuf *err)
{
	const char *p, *end = line + len, *sp, *eq;
	const struct spool_jfield *idf;
	size_t tlen;

	memset(out, 0, sizeof(*out));
	if (len < SPOOL_TS_LEN + 2 || line[SPOOL_TS_LEN] != ' ' ||
	    spool_time_parse(line, SPOOL_TS_LEN, &out->ts) == -1)
		return sbuf_seterr(err, "no timestamp");
	p = line + SPOOL_TS_LEN + 1;
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL || sp == p)
		return sbuf_seterr(err, "no verb");
	out->verb = p;
	out->verblen = (size_t)(sp - p);
	for (p = sp + 1; p < end; p += tlen + 1) {
		sp = memchr(p, ' ', (size_t)(end - p));
		tlen = (size_t)((sp != NULL ? sp : end) - p);
		eq = memchr(p, '=', tlen);
		if (eq == NULL || eq == p)
			return sbuf_seterr(err, "field %zu is not key=value",
			    out->nfields + 1);
		if (out->nfields == SPOOL_JREC_FIELDS_MAX)
			return sbuf_seterr(err, "more than %d fields",
			    SPOOL_JREC_FIELDS_MAX);
		out->fields[out->nfields].key = p;
		out->fields[out->nfields].klen = (size_t)(eq - p);
		out->fields[out->nfields].val = eq + 1;
		out->fields[out->nfields].vlen = tlen - (size_t)(eq + 1 - p);
		out->nfields++;
	}
	idf = spool_jrec_get(out, "id");
	if (idf == NULL || idf->vlen != SPOOL_ID_LEN)
		return sbuf_seterr(err, "no queue id");
	memcpy(out->id, idf->val, SPOOL_ID_LEN);
	out->id[SPOOL_ID_LEN] = '\0';
	if (!spool_id_valid(out->id))
		return sbuf_seterr(err, "malformed queue id");
	return 0;
}

bool
spool_jrec_is(const struct spool_jrec *r, const char *verb)
{
	return strlen(verb) == r->verblen &&
	    memcmp(r->verb, verb, r->verblen) == 0;
}

const struct spool_jfield *
spool_jrec_get(const struct spool_jrec *r, const char *key)
{
	size_t klen = strlen(key), i;

	for (i = 0; i < r->nfields; i++)
		if (r->fields[i].klen == klen &&
		    memcmp(r->fields[i].key, key, klen) == 0)
			return &r->fields[i];
	return NULL;
}

int
spool_jrec_value(const struct spool_jrec *r, const char *key, bool angle,
    struct sbuf *out)
{
	const struct spool_jfield *f = spool_jrec_get(r, key);
	const char *v;
	size_t vlen;

	sbuf_reset(out);
	if (f == NULL)
		return -1;
	v = f->val;
	vlen = f->vlen;
	if (angle) {
		if (vlen < 2 || v[0] != '<' || v[vlen - 1] != '>')
			return -1;
		v++;
		vlen -= 2;
	}
	return sbuf_append_unescaped(out, v, vlen);
}
