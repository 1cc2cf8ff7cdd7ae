/*
 * spool_codec.h - the spool's grammar: message-file headers and journal
 * records, encoded and parsed.
 *
 * Pure: bytes in, structs or bytes out; no files, no logs, no globals, so
 * the daemon, splitmxctl, the unit tests and the fuzzers share one copy.
 * Encoders fail (-1) rather than cut a record at a buffer's cap; parsers
 * return -1 with the reason in err, never a partial result. The format is
 * documented in splitmx-spool(5).
 */
#ifndef SPLITMX_SPOOL_CODEC_H
#define SPLITMX_SPOOL_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sbuf.h"

#define SPOOL_ID_LEN         16 /* queue ids: [0-9A-Z]{16}, time-ordered */
#define SPOOL_FORMAT_VERSION 1
#define SPOOL_TS_LEN         27 /* 2026-11-23T01:20:00.123456Z */
#define SPOOL_SHA256_HEX     64

/* Message files: line 1, then the size/sha256 line patched at commit. */
#define SPOOL_LINE1     "splitmx-queue-file 1\n"
#define SPOOL_LINE1_LEN (sizeof(SPOOL_LINE1) - 1)
#define SPOOL_SUM_LEN   97 /* "size " 20 digits " sha256 " 64 hex */
/*
 * Line 3: trace fields computed after the content arrived (the
 * Authentication-Results of a DKIM check need the whole body), escaped
 * into one token and padded with spaces; patched in at commit.
 */
#define SPOOL_PREPEND_KEY "prepend "
#define SPOOL_PREPEND_MAX 2048 /* escaped octets; A-R + SPF fit */
#define SPOOL_PREPEND_OFF \
	(SPOOL_LINE1_LEN + SPOOL_SUM_LEN + 1 + sizeof(SPOOL_PREPEND_KEY) - 1)
/* Line 4, "id ID", always here: a recycled tmp file names another id. */
#define SPOOL_ID_OFF     (SPOOL_PREPEND_OFF + SPOOL_PREPEND_MAX + 1)
#define SPOOL_HEADER_MAX (4 * 1024 * 1024) /* header octets */
#define SPOOL_JLINE_MAX  (8 * 1024 * 1024) /* one journal record */
#define SPOOL_MSGID_MAX  998               /* RFC 5322 2.1.1 line limit */
/* Escaped in journal values: fields split on ' ', lists on ',', keys on '='. */
#define SPOOL_JOURNAL_EXTRA " ,="

struct spool_rcpt {
	char *addr;      /* mailbox as received, no <>; "postmaster" */
	unsigned notify; /* SMTP_PROTO_NOTIFY_* bits, 0 = none */
	char *orcpt;     /* "rfc822;xtext" or NULL */
};

struct spool_envelope {
	char *sender; /* mailbox, "" for <> */
	char *envid;  /* DSN ENVID xtext, or NULL */
	int ret;      /* enum smtp_proto_ret */
	int body;     /* enum smtp_proto_body */
	bool smtputf8;
	struct spool_rcpt *rcpts;
	size_t nrcpts;
	/* How it arrived. */
	struct timespec arrival;
	char *listener;    /* "127.0.0.1:2525" */
	char *client_addr; /* "192.0.2.1" */
	char *client_name; /* reverse name or "unknown" */
	char *helo;        /* as given, or NULL */
	char *protocol;    /* "SMTP", "ESMTP", "ESMTPS", ... */
	char *tls;         /* "TLSv1.3 TLS_AES_256_GCM_SHA384", NULL */
	/*
	 * Trace fields added after the content arrived (Authentication-
	 * Results, Received-SPF): CRLF lines sent in front of the content.
	 * NULL when there are none.
	 */
	char *prepend;
};

/* Frees the strings and the recipient array, not env itself. */
void spool_envelope_clear(struct spool_envelope *env);

/* Checks that an id has the queue-id shape before it is used in a path. */
bool spool_id_valid(const char *id);
/* The microsecond clock in a valid id's first 11 characters. */
uint64_t spool_id_time(const char *id);

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" into out (SPOOL_TS_LEN + 1 octets). */
void spool_time_format(const struct timespec *ts, char *out, size_t outlen);
/* The reverse; -1 unless s[0..len) is exactly that shape. */
int spool_time_parse(const char *s, size_t len, struct timespec *out);

/* ---- message-file headers ---- */

/*
 * Appends the header of a new message file: line 1, the size/sha256
 * placeholder, the padded prepend line, the envelope and ".\n". -1 when
 * sb's cap is too small (sb may hold part of it then).
 */
int spool_hdr_format(struct sbuf *sb, const char *id,
    const struct spool_envelope *env) __attribute__((warn_unused_result));
/* The size/sha256 line (SPOOL_SUM_LEN octets + NUL) patched in at commit. */
void spool_hdr_format_sum(char out[SPOOL_SUM_LEN + 1], uint64_t size,
    const char *sha256_hex);
/*
 * Finds the ".\n" line that ends a header in buf[0..len): 1 with its
 * length in *hlen_out, 0 when more octets are needed.
 */
int spool_hdr_end(const char *buf, size_t len, size_t *hlen_out);
/*
 * Parses hdr[0..len), which ends with the ".\n" line: fills env (cleared
 * on error), the id, the recorded content size and SHA-256 (hex). -1 with
 * err set on any malformed, repeated or missing field.
 */
int spool_hdr_parse(const char *hdr, size_t len, struct spool_envelope *env,
    char id_out[SPOOL_ID_LEN + 1], uint64_t *size_out,
    char sha_out[SPOOL_SHA256_HEX + 1], struct sbuf *err)
    __attribute__((warn_unused_result));

/* ---- journal records: "TS verb id=ID key=value ...\n" ---- */

/*
 * A record under construction in sb. Each field call is a no-op once one
 * has failed; spool_jrec_end reports the failure and takes the partial
 * record out of sb again, so a record is written whole or not at all.
 */
struct spool_jrec_out {
	struct sbuf *sb;
	size_t start;
	bool failed;
};

/* "TS verb id=ID"; ts may be NULL (the committer stamps the record). */
void spool_jrec_begin(struct spool_jrec_out *w, struct sbuf *sb, const char *ts,
    const char *verb, const char *id);
/* " key=value", the value escaped (SPOOL_JOURNAL_EXTRA); NULL as "". */
void spool_jrec_str(struct spool_jrec_out *w, const char *key, const char *val);
/* Like spool_jrec_str with at most len octets of val. */
void spool_jrec_strn(struct spool_jrec_out *w, const char *key, const char *val,
    size_t len);
/* " key=<value>", for mailboxes. */
void spool_jrec_addr(struct spool_jrec_out *w, const char *key,
    const char *val);
void spool_jrec_u64(struct spool_jrec_out *w, const char *key, uint64_t v);
/* " key=value" with a value the caller knows needs no escaping. */
void spool_jrec_token(struct spool_jrec_out *w, const char *key,
    const char *token);
/*
 * The envelope's part of an "accepted" record: nrcpt, to (a list of
 * <addr>), client=NAME[ADDR], listener, helo, proto, tls.
 */
void spool_jrec_envelope(struct spool_jrec_out *w,
    const struct spool_envelope *env);
/* Appends '\n'; -1 (sb back as before begin) if any step hit the cap. */
int spool_jrec_end(struct spool_jrec_out *w)
    __attribute__((warn_unused_result));
/*
 * Fields built ahead of their record (the spool prepares the envelope's
 * part of "accepted" when a message starts, to refuse an envelope too
 * large for the journal before the body comes): begin a fragment in sb,
 * add fields, finish with spool_jrec_fragment_end (-1: did not fit), and
 * later add it to the record with spool_jrec_fragment.
 */
void spool_jrec_fragment_begin(struct spool_jrec_out *w, struct sbuf *sb);
int spool_jrec_fragment_end(struct spool_jrec_out *w)
    __attribute__((warn_unused_result));
void spool_jrec_fragment(struct spool_jrec_out *w, const struct sbuf *frag);

#define SPOOL_JREC_FIELDS_MAX 32

struct spool_jfield {
	const char *key; /* points into the parsed line */
	size_t klen;
	const char *val; /* still escaped */
	size_t vlen;
};

/* A parsed record; its pointers borrow the line it was parsed from. */
struct spool_jrec {
	struct timespec ts;
	const char *verb;
	size_t verblen;
	char id[SPOOL_ID_LEN + 1];
	struct spool_jfield fields[SPOOL_JREC_FIELDS_MAX]; /* id too */
	size_t nfields;
};

/*
 * Parses one record (line[0..len), without its '\n'): timestamp, verb, a
 * valid id= field and up to SPOOL_JREC_FIELDS_MAX key=value fields.
 * -1 with err set on anything else (a torn or foreign line).
 */
int spool_jrec_parse(const char *line, size_t len, struct spool_jrec *out,
    struct sbuf *err) __attribute__((warn_unused_result));
/* True when the record's verb is verb. */
bool spool_jrec_is(const struct spool_jrec *r, const char *verb);
/* The first field named key, or NULL. */
const struct spool_jfield *spool_jrec_get(const struct spool_jrec *r,
    const char *key);
/*
 * Unescapes field key into out, without the <> of an address when angle
 * is set. -1 when absent or malformed.
 */
int spool_jrec_value(const struct spool_jrec *r, const char *key, bool angle,
    struct sbuf *out) __attribute__((warn_unused_result));

#endif
