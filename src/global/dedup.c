/*
 * dedup.c - message keys and the backend-independent side of the
 * duplicate index.
 *
 * The message key builder is a byte-at-a-time state machine over the
 * content, so the queue can feed it while reading the spooled file and the
 * key never depends on chunk boundaries; it keeps only the first
 * Message-ID (capped) and one SHA-256 context per hashed part. The
 * wrappers check arguments once for every backend. No I/O, no logging.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "dedup.h"
#include "sbuf.h"
#include "xmalloc.h"

#define DEDUP_NAME_MAX  32  /* longer field names are not ours */
#define DEDUP_CANON_BUF 256 /* bytes staged before a digest update */

enum dedup_field {
	DEDUP_F_FROM,
	DEDUP_F_DATE,
	DEDUP_F_SUBJECT,
	DEDUP_F_TO,
	DEDUP_F_NHASHED,
	DEDUP_F_MSGID = DEDUP_F_NHASHED,
	DEDUP_F_OTHER,
};

enum dedup_state {
	DEDUP_S_LINE_START, /* start of a header line */
	DEDUP_S_NAME,       /* in a field name */
	DEDUP_S_VALUE,      /* in a field value */
	DEDUP_S_BODY,
	DEDUP_S_DONE, /* final was called */
};

/* Whitespace collapsing for one hashed field, carried across chunks. */
struct dedup_canon {
	EVP_MD_CTX *ctx;
	bool started; /* a non-space byte was emitted */
	bool space;   /* whitespace pending */
	size_t nbuf;
	unsigned char buf[DEDUP_CANON_BUF];
};

struct dedup_msgkey {
	enum dedup_state state;
	enum dedup_field field; /* the field being read */
	char name[DEDUP_NAME_MAX + 1];
	size_t namelen;
	bool name_long;
	struct dedup_canon canon[DEDUP_F_NHASHED];
	/* The first Message-ID, raw (unfolded: CR and LF dropped). */
	bool msgid_seen;
	bool msgid_bad; /* too long or has a NUL */
	size_t msgidlen;
	char msgid[DEDUP_MSGID_MAX + 1];
	/* Body: LF-normalized, trailing empty lines held back. */
	EVP_MD_CTX *body;
	size_t body_nl; /* newlines not yet hashed */
	bool body_cr;   /* last byte was CR */
	size_t nbody;
	unsigned char bodybuf[DEDUP_CANON_BUF];
};

static const char *const dedup_field_names[] = {
	[DEDUP_F_FROM] = "from",
	[DEDUP_F_DATE] = "date",
	[DEDUP_F_SUBJECT] = "subject",
	[DEDUP_F_TO] = "to",
	[DEDUP_F_MSGID] = "message-id",
};

static void
dedup_seterr(struct sbuf *err, const char *what)
{
	if (err == NULL)
		return;
	sbuf_reset(err);
	(void)sbuf_append_str(err, what); /* a cut message is still one */
}

static int
dedup_digest_update(EVP_MD_CTX *ctx, const void *data, size_t len,
    struct sbuf *err)
{
	if (len == 0)
		return 0;
	if (EVP_DigestUpdate(ctx, data, len) != 1) {
		dedup_seterr(err, "dedup: SHA-256 update failed");
		return -1;
	}
	return 0;
}

static int
dedup_canon_flush(struct dedup_canon *c, struct sbuf *err)
{
	if (dedup_digest_update(c->ctx, c->buf, c->nbuf, err) == -1)
		return -1;
	c->nbuf = 0;
	return 0;
}

static int
dedup_canon_put(struct dedup_canon *c, unsigned char ch, struct sbuf *err)
{
	if (c->nbuf == sizeof(c->buf) && dedup_canon_flush(c, err) == -1)
		return -1;
	c->buf[c->nbuf++] = ch;
	return 0;
}

/* One byte of a hashed field's unfolded value. */
static int
dedup_canon_byte(struct dedup_canon *c, unsigned char ch, bool lower,
    struct sbuf *err)
{
	if (ch == ' ' || ch == '\t') {
		if (c->started)
			c->space = true;
		return 0;
	}
	if (c->space) {
		c->space = false;
		if (dedup_canon_put(c, ' ', err) == -1)
			return -1;
	}
	c->started = true;
	if (lower && ch >= 'A' && ch <= 'Z')
		ch = (unsigned char)(ch - 'A' + 'a');
	return dedup_canon_put(c, ch, err);
}

/*
 * Ends one occurrence of a field: trailing space is dropped and a newline
 * separates occurrences, so "absent" (nothing hashed) differs from "empty"
 * ("\n") and two To headers differ from one.
 */
static int
dedup_canon_end(struct dedup_canon *c, struct sbuf *err)
{
	c->space = false;
	c->started = false;
	return dedup_canon_put(c, '\n', err);
}

static enum dedup_field
dedup_field_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(dedup_field_names) / sizeof(*dedup_field_names);
	     i++)
		if (strcasecmp(name, dedup_field_names[i]) == 0)
			return (enum dedup_field)i;
	return DEDUP_F_OTHER;
}

/* The value of the field being read is complete. */
static int
dedup_field_end(struct dedup_msgkey *mk, struct sbuf *err)
{
	enum dedup_field f = mk->field;

	mk->field = DEDUP_F_OTHER;
	if (f < DEDUP_F_NHASHED)
		return dedup_canon_end(&mk->canon[f], err);
	if (f == DEDUP_F_MSGID)
		mk->msgid_seen = true;
	return 0;
}

/* A ':' ended the name: decide which field this is. */
static void
dedup_name_end(struct dedup_msgkey *mk)
{
	/* Obsolete syntax allows WSP before the colon (RFC 5322 4.5.8). */
	while (mk->namelen > 0 &&
	    (mk->name[mk->namelen - 1] == ' ' ||
	        mk->name[mk->namelen - 1] == '\t'))
		mk->namelen--;
	mk->name[mk->namelen] = '\0';
	mk->field = mk->name_long ? DEDUP_F_OTHER :
	                            dedup_field_lookup(mk->name);
	if (mk->field == DEDUP_F_MSGID && mk->msgid_seen)
		mk->field = DEDUP_F_OTHER; /* only the first counts */
}

static int
dedup_value_byte(struct dedup_msgkey *mk, unsigned char ch, struct sbuf *err)
{
	switch (mk->field) {
	case DEDUP_F_FROM:
	case DEDUP_F_TO:
		return dedup_canon_byte(&mk->canon[mk->field], ch, true, err);
	case DEDUP_F_DATE:
	case DEDUP_F_SUBJECT:
		return dedup_canon_byte(&mk->canon[mk->field], ch, false, err);
	case DEDUP_F_MSGID:
		if (ch == '\0')
			mk->msgid_bad = true;
		else if (mk->msgidlen == DEDUP_MSGID_MAX)
			mk->msgid_bad = true;
		else
			mk->msgid[mk->msgidlen++] = (char)ch;
		return 0;
	case DEDUP_F_OTHER:
		return 0;
	}
	return 0;
}

static int
dedup_body_put(struct dedup_msgkey *mk, unsigned char ch, struct sbuf *err)
{
	if (mk->nbody == sizeof(mk->bodybuf)) {
		if (dedup_digest_update(mk->body, mk->bodybuf, mk->nbody,
		        err) == -1)
			return -1;
		mk->nbody = 0;
	}
	mk->bodybuf[mk->nbody++] = ch;
	return 0;
}

/*
 * A CR or LF of the body. CRLF, bare CR and bare LF all count as one line
 * end; line ends are held back until more text follows (dedup_body_run),
 * so trailing empty lines never reach the digest.
 */
static void
dedup_body_eol(struct dedup_msgkey *mk, unsigned char ch)
{
	if (ch == '\n' && mk->body_cr)
		mk->body_cr = false; /* the CR counted already */
	else {
		mk->body_cr = ch == '\r';
		mk->body_nl++;
	}
}

/* A run of body text with no CR or LF in it, after the held line ends. */
static int
dedup_body_run(struct dedup_msgkey *mk, const unsigned char *p, size_t n,
    struct sbuf *err)
{
	size_t k;

	mk->body_cr = false;
	for (; mk->body_nl > 0; mk->body_nl--)
		if (dedup_body_put(mk, '\n', err) == -1)
			return -1;
	while (n > 0) {
		if (mk->nbody == sizeof(mk->bodybuf)) {
			if (dedup_digest_update(mk->body, mk->bodybuf,
			        mk->nbody, err) == -1)
				return -1;
			mk->nbody = 0;
		}
		k = sizeof(mk->bodybuf) - mk->nbody;
		if (k > n)
			k = n;
		memcpy(mk->bodybuf + mk->nbody, p, k);
		mk->nbody += k;
		p += k;
		n -= k;
	}
	return 0;
}

/*
 * Header bytes. CR is dropped and LF ends a line, so CRLF and LF agree; a
 * line starting with WSP continues the field (RFC 5322 2.2.3 unfolding
 * removes only the line break); an empty line ends the header section.
 * A line without a colon is skipped.
 */
static int
dedup_header_byte(struct dedup_msgkey *mk, unsigned char ch, struct sbuf *err)
{
	if (ch == '\r')
		return 0;
	switch (mk->state) {
	case DEDUP_S_LINE_START:
		if (ch == ' ' || ch == '\t') {
			mk->state = DEDUP_S_VALUE;
			return dedup_value_byte(mk, ch, err);
		}
		if (dedup_field_end(mk, err) == -1)
			return -1;
		if (ch == '\n') {
			mk->state = DEDUP_S_BODY;
			return 0;
		}
		mk->namelen = 0;
		mk->name_long = false;
		mk->state = DEDUP_S_NAME;
		__attribute__((fallthrough));
	case DEDUP_S_NAME:
		if (ch == ':') {
			dedup_name_end(mk);
			mk->state = DEDUP_S_VALUE;
		} else if (ch == '\n') {
			mk->field = DEDUP_F_OTHER; /* no colon: junk */
			mk->state = DEDUP_S_LINE_START;
		} else if (mk->namelen == DEDUP_NAME_MAX) {
			mk->name_long = true;
		} else {
			mk->name[mk->namelen++] = (char)ch;
		}
		return 0;
	case DEDUP_S_VALUE:
		if (ch == '\n') {
			mk->state = DEDUP_S_LINE_START;
			return 0;
		}
		return dedup_value_byte(mk, ch, err);
	case DEDUP_S_BODY:
	case DEDUP_S_DONE:
		break;
	}
	return 0;
}

struct dedup_msgkey *
dedup_msgkey_new(struct sbuf *err)
{
	struct dedup_msgkey *mk;
	size_t i;

	mk = xcalloc(1, sizeof(*mk));
	mk->state = DEDUP_S_LINE_START;
	mk->field = DEDUP_F_OTHER;
	for (i = 0; i < DEDUP_F_NHASHED; i++) {
		mk->canon[i].ctx = EVP_MD_CTX_new();
		if (mk->canon[i].ctx == NULL ||
		    EVP_DigestInit_ex(mk->canon[i].ctx, EVP_sha256(), NULL) !=
		        1)
			goto fail;
	}
	mk->body = EVP_MD_CTX_new();
	if (mk->body == NULL ||
	    EVP_DigestInit_ex(mk->body, EVP_sha256(), NULL) != 1)
		goto fail;
	return mk;
fail:
	dedup_seterr(err, "dedup: cannot set up SHA-256");
	dedup_msgkey_free(mk);
	return NULL;
}

void
dedup_msgkey_free(struct dedup_msgkey *mk)
{
	size_t i;

	if (mk == NULL)
		return;
	for (i = 0; i < DEDUP_F_NHASHED; i++)
		EVP_MD_CTX_free(mk->canon[i].ctx);
	EVP_MD_CTX_free(mk->body);
	free(mk);
}

int
dedup_msgkey_feed(struct dedup_msgkey *mk, const void *data, size_t len,
    struct sbuf *err)
{
	const unsigned char *p = data;
	size_t i;

	if (mk->state == DEDUP_S_DONE) {
		dedup_seterr(err, "dedup: message key already final");
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (mk->state == DEDUP_S_BODY) {
			size_t n = 0;

			while (
			    i + n < len && p[i + n] != '\r' && p[i + n] != '\n')
				n++;
			if (n == 0)
				dedup_body_eol(mk, p[i]);
			else if (dedup_body_run(mk, p + i, n, err) == -1)
				return -1;
			else
				i += n - 1;
		} else if (dedup_header_byte(mk, p[i], err) == -1)
			return -1;
	}
	return 0;
}

/* The trimmed first Message-ID, or NULL when there is none usable. */
static const char *
dedup_msgid_trimmed(struct dedup_msgkey *mk, size_t *len_out)
{
	size_t start = 0, end = mk->msgidlen;

	if (!mk->msgid_seen || mk->msgid_bad)
		return NULL;
	while (start < end &&
	    (mk->msgid[start] == ' ' || mk->msgid[start] == '\t'))
		start++;
	while (end > start &&
	    (mk->msgid[end - 1] == ' ' || mk->msgid[end - 1] == '\t'))
		end--;
	if (start == end)
		return NULL;
	*len_out = end - start;
	return mk->msgid + start;
}

static int
dedup_hash_final(struct dedup_msgkey *mk, struct sbuf *out, struct sbuf *err)
{
	static const char tag[] = "splitmx-dedup-v1";
	unsigned char md[EVP_MAX_MD_SIZE], sum[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	EVP_MD_CTX *all;
	size_t i;
	int rc = -1;

	all = EVP_MD_CTX_new();
	if (all == NULL || EVP_DigestInit_ex(all, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(all, tag, sizeof(tag)) != 1)
		goto done;
	/* Each part's own digest, in a fixed order, then the body's. */
	for (i = 0; i < DEDUP_F_NHASHED; i++) {
		if (dedup_canon_flush(&mk->canon[i], err) == -1)
			goto done;
		if (EVP_DigestFinal_ex(mk->canon[i].ctx, md, &mdlen) != 1 ||
		    EVP_DigestUpdate(all, md, mdlen) != 1)
			goto done;
	}
	if (dedup_digest_update(mk->body, mk->bodybuf, mk->nbody, err) == -1)
		goto done;
	mk->nbody = 0;
	if (EVP_DigestFinal_ex(mk->body, md, &mdlen) != 1 ||
	    EVP_DigestUpdate(all, md, mdlen) != 1 ||
	    EVP_DigestFinal_ex(all, sum, &mdlen) != 1)
		goto done;
	if (sbuf_append_str(out, "h:") == -1)
		goto toolong;
	for (i = 0; i < mdlen; i++)
		if (sbuf_printf(out, "%02x", sum[i]) == -1)
			goto toolong;
	rc = 0;
	goto done;
toolong:
	dedup_seterr(err, "dedup: message key buffer too small");
	EVP_MD_CTX_free(all);
	return -1;
done:
	if (rc == -1 && (err == NULL || err->len == 0))
		dedup_seterr(err, "dedup: SHA-256 failed");
	EVP_MD_CTX_free(all);
	return rc;
}

int
dedup_msgkey_final(struct dedup_msgkey *mk, struct sbuf *out, struct sbuf *err)
{
	const char *id;
	size_t idlen = 0, oldlen = out->len;

	if (mk->state == DEDUP_S_DONE) {
		dedup_seterr(err, "dedup: message key already final");
		return -1;
	}
	if (err != NULL)
		sbuf_reset(err);
	/* Content that ends inside the header section ends its last field. */
	if (mk->state != DEDUP_S_BODY && dedup_field_end(mk, err) == -1)
		return -1;
	mk->state = DEDUP_S_DONE;
	id = dedup_msgid_trimmed(mk, &idlen);
	if (id != NULL) {
		if (sbuf_append_str(out, "m:") == -1 ||
		    sbuf_append(out, id, idlen) == -1) {
			sbuf_truncate(out, oldlen);
			dedup_seterr(err,
			    "dedup: message key buffer too small");
			return -1;
		}
		return 0;
	}
	if (dedup_hash_final(mk, out, err) == -1) {
		sbuf_truncate(out, oldlen);
		return -1;
	}
	return 0;
}

int
dedup_msgkey(const void *content, size_t len, struct sbuf *out,
    struct sbuf *err)
{
	struct dedup_msgkey *mk;
	int rc;

	if ((mk = dedup_msgkey_new(err)) == NULL)
		return -1;
	rc = dedup_msgkey_feed(mk, content, len, err);
	if (rc == 0)
		rc = dedup_msgkey_final(mk, out, err);
	dedup_msgkey_free(mk);
	return rc;
}

int
dedup_key_encode(const struct dedup_key *key, size_t max_len, struct sbuf *out,
    struct sbuf *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	size_t start = out->len, i;
	const char *p;

	if (sbuf_append(out, key->msgkey, strlen(key->msgkey) + 1) == -1)
		goto toolong;
	for (p = key->rcpt; *p != '\0'; p++) {
		char c = *p;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (sbuf_append_char(out, c) == -1)
			goto toolong;
	}
	if (sbuf_append_char(out, '\0') == -1 ||
	    sbuf_append_str(out, key->target) == -1)
		goto toolong;
	if (out->len - start <= max_len)
		return 0;
	if (EVP_Digest(out->data + start, out->len - start, md, &mdlen,
	        EVP_sha256(), NULL) != 1) {
		sbuf_truncate(out, start);
		dedup_seterr(err, "dedup: SHA-256 failed");
		return -1;
	}
	sbuf_truncate(out, start);
	if (sbuf_append_char(out, '#') == -1)
		goto toolong;
	for (i = 0; i < mdlen; i++)
		if (sbuf_append_char(out, (char)md[i]) == -1)
			goto toolong;
	return 0;
toolong:
	sbuf_truncate(out, start);
	dedup_seterr(err, "dedup: key buffer too small");
	return -1;
}

static bool
dedup_key_ok(const struct dedup_key *key, struct sbuf *err)
{
	if (key == NULL || key->msgkey == NULL || key->rcpt == NULL ||
	    key->target == NULL) {
		dedup_seterr(err, "dedup: incomplete key");
		return false;
	}
	if ((strncmp(key->msgkey, "m:", 2) != 0 &&
	        strncmp(key->msgkey, "h:", 2) != 0 &&
	        strncmp(key->msgkey, "t:", 2) != 0) ||
	    key->msgkey[2] == '\0' || strlen(key->msgkey) > DEDUP_MSGKEY_MAX) {
		dedup_seterr(err, "dedup: malformed message key");
		return false;
	}
	if (key->rcpt[0] == '\0' || key->target[0] == '\0') {
		dedup_seterr(err, "dedup: empty recipient or target");
		return false;
	}
	return true;
}

static bool
dedup_qid_ok(const char *qid)
{
	size_t i;

	if (qid == NULL)
		return false;
	for (i = 0; i < DEDUP_QID_LEN; i++)
		if (!((qid[i] >= '0' && qid[i] <= '9') ||
		        (qid[i] >= 'A' && qid[i] <= 'Z')))
			return false;
	return qid[DEDUP_QID_LEN] == '\0';
}

struct dedup *
dedup_open(const struct dedup_ops *ops, const struct dedup_conf *conf,
    struct sbuf *err)
{
	if (ops == NULL || conf == NULL || conf->window < 0) {
		dedup_seterr(err, "dedup: bad open arguments");
		return NULL;
	}
	return ops->open(conf, err);
}

int
dedup_lookup(struct dedup *dd, const struct dedup_key *key, time_t now,
    struct dedup_entry *out, struct sbuf *err)
{
	struct dedup_entry scratch;

	if (!dedup_key_ok(key, err))
		return -1;
	return dd->ops->lookup(dd, key, now, out != NULL ? out : &scratch, err);
}

int
dedup_record_many(struct dedup *dd, struct dedup_rec *recs, size_t n,
    time_t now, struct sbuf *err)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		if (!dedup_key_ok(&recs[i].key, err))
			return -1;
		if (!dedup_qid_ok(recs[i].qid)) {
			dedup_seterr(err, "dedup: malformed queue id");
			return -1;
		}
		recs[i].result = -1;
		recs[i].owner[0] = '\0';
	}
	return dd->ops->record(dd, recs, n, now, err);
}

int
dedup_record(struct dedup *dd, const struct dedup_key *key, const char *qid,
    const char *reply, time_t now, struct sbuf *err)
{
	struct dedup_rec rec;

	if (key == NULL) {
		dedup_seterr(err, "dedup: incomplete key");
		return -1;
	}
	rec.key = *key;
	rec.qid = qid;
	rec.reply = reply;
	rec.result = -1;
	if (dedup_record_many(dd, &rec, 1, now, err) == -1)
		return -1;
	return rec.result;
}

int
dedup_release(struct dedup *dd, const struct dedup_key *key, const char *qid,
    struct sbuf *err)
{
	if (!dedup_key_ok(key, err))
		return -1;
	if (!dedup_qid_ok(qid)) {
		dedup_seterr(err, "dedup: malformed queue id");
		return -1;
	}
	return dd->ops->release(dd, key, qid, err);
}

int
dedup_expire(struct dedup *dd, time_t now, size_t *removed_out,
    struct sbuf *err)
{
	size_t scratch;

	return dd->ops->expire(dd, now,
	    removed_out != NULL ? removed_out : &scratch, err);
}

int
dedup_sync(struct dedup *dd, struct sbuf *err)
{
	return dd->ops->sync != NULL ? dd->ops->sync(dd, err) : 0;
}

unsigned long long
dedup_evicted(struct dedup *dd)
{
	return atomic_load(&dd->evicted);
}

void
dedup_close(struct dedup *dd)
{
	if (dd == NULL)
		return;
	dd->ops->close(dd);
}
