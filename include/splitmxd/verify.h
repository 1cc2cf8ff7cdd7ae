/*
 * verify.h - recipient verification by RCPT probe (backup MX hygiene).
 *
 * For a domain without a recipient list, splitmxd can ask a target
 * (usually legacy) whether a recipient exists before it says 250: a
 * "MAIL FROM:<> / RCPT TO:<x> / RSET" probe over one reused connection per
 * target. Answers (exists / unknown) are cached for verify_cache seconds;
 * a probe that cannot be answered is not cached. Loop thread only.
 */
#ifndef SPLITMX_VERIFY_H
#define SPLITMX_VERIFY_H

#include <stddef.h>

struct event_base;
struct conf;
struct dns;
struct verify;
struct verify_req;

enum verify_verdict {
	VERIFY_OK,       /* the target accepts the recipient */
	VERIFY_UNKNOWN,  /* the target refused it with 5xx */
	VERIFY_TEMPFAIL, /* no answer (4xx, connection, timeout) */
};

/* reply is the target's reply (or our reason); valid during the call. */
typedef void (*verify_cb)(void *arg, enum verify_verdict v, const char *reply);

struct verify *verify_new(struct event_base *base, const struct conf *conf,
    struct dns *dns, const char *hostname);
/* Cancels outstanding requests (their callbacks never run). */
void verify_free(struct verify *v);

/*
 * From the cache: returns 1 and sets *v_out when the answer is known,
 * else 0.
 */
int verify_cached(struct verify *v, size_t target, const char *rcpt,
    enum verify_verdict *v_out);

/*
 * Probes target for rcpt; cb runs once, later, on the loop, unless the
 * request is cancelled first.
 */
struct verify_req *verify_probe(struct verify *v, size_t target,
    const char *rcpt, verify_cb cb, void *arg);
void verify_cancel(struct verify_req *req);

#endif
