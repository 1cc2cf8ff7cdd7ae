/*
 * verify.c - RCPT probes toward a target, with a bounded answer cache.
 *
 * One probe connection per target, opened on demand and reused; requests
 * for a target wait in a FIFO and are probed one at a time (a probe is a
 * few round trips on loopback or a LAN). The connection closes after a
 * short idle time. Cancelled requests stay in the FIFO as tombstones so
 * the transaction in flight never points at freed memory.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "smtp_client.h"
#include "verify.h"
#include "xmalloc.h"

#define VERIFY_HASH_SIZE    4093
#define VERIFY_CACHE_MAX    100000 /* entries; the cache is reset beyond */
#define VERIFY_IDLE_SECONDS 30

struct verify_entry {
	struct verify_entry *next;
	size_t target;
	char *rcpt; /* lower-cased */
	enum verify_verdict verdict;
	time_t expires;
};

struct verify_req {
	TAILQ_ENTRY(verify_req) entry;
	struct vtarget *vt;
	char *rcpt;
	verify_cb cb;
	void *arg;
	bool cancelled;
};

struct vtarget {
	struct verify *v;
	size_t idx;
	TAILQ_HEAD(, verify_req) waiting;
	struct smtp_client *c;
	bool opening;
	bool busy; /* a probe in flight */
	struct verify_req *cur;
	struct smtp_client_rcpt crcpt;
	struct smtp_client_msg cmsg;
	struct event *idle;
};

struct verify {
	struct event_base *base;
	const struct conf *conf;
	struct dns *dns;
	char *hostname;
	struct vtarget *targets;
	struct verify_entry *hash[VERIFY_HASH_SIZE];
	size_t nentries;
};

static void vtarget_next(struct vtarget *);

static char *
verify_lower(const char *s)
{
	char *r = xstrdup(s), *p;

	for (p = r; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

static unsigned
verify_hash(size_t target, const char *rcpt)
{
	unsigned h = 2166136261u ^ (unsigned)target;

	while (*rcpt)
		h = (h ^ (unsigned char)*rcpt++) * 16777619u;
	return h % VERIFY_HASH_SIZE;
}

static void
verify_cache_clear(struct verify *v)
{
	struct verify_entry *e;
	size_t i;

	for (i = 0; i < VERIFY_HASH_SIZE; i++)
		while ((e = v->hash[i]) != NULL) {
			v->hash[i] = e->next;
			free(e->rcpt);
			free(e);
		}
	v->nentries = 0;
}

int
verify_cached(struct verify *v, size_t target, const char *rcpt,
    enum verify_verdict *v_out)
{
	char *key = verify_lower(rcpt);
	struct verify_entry **pp = &v->hash[verify_hash(target, key)], *e;
	time_t now = time(NULL);

	while ((e = *pp) != NULL) {
		if (e->expires <= now) {
			*pp = e->next; /* expired: drop while walking */
			free(e->rcpt);
			free(e);
			v->nentries--;
			continue;
		}
		if (e->target == target && strcmp(e->rcpt, key) == 0) {
			*v_out = e->verdict;
			free(key);
			return 1;
		}
		pp = &e->next;
	}
	free(key);
	return 0;
}

static void
verify_remember(struct verify *v, size_t target, const char *rcpt,
    enum verify_verdict verdict)
{
	struct verify_entry *e;
	enum verify_verdict old;
	unsigned h;

	if (verify_cached(v, target, rcpt, &old))
		return;
	if (v->nentries >= VERIFY_CACHE_MAX)
		verify_cache_clear(v);
	e = xcalloc(1, sizeof(*e));
	e->target = target;
	e->rcpt = verify_lower(rcpt);
	e->verdict = verdict;
	e->expires = time(NULL) + (time_t)v->conf->verify_cache;
	h = verify_hash(target, e->rcpt);
	e->next = v->hash[h];
	v->hash[h] = e;
	v->nentries++;
}

static void
verify_req_free(struct verify_req *r)
{
	free(r->rcpt);
	free(r);
}

/* Answers the request in flight (unless cancelled) and moves on. */
static void
vtarget_answer(struct vtarget *vt, enum verify_verdict verdict,
    const char *reply)
{
	struct verify_req *r = vt->cur;

	vt->cur = NULL;
	vt->busy = false;
	if (verdict != VERIFY_TEMPFAIL)
		verify_remember(vt->v, vt->idx, r->rcpt, verdict);
	if (!r->cancelled)
		r->cb(r->arg, verdict, reply);
	verify_req_free(r);
}

/* Every waiting request gets the same temporary failure. */
static void
vtarget_fail_all(struct vtarget *vt, const char *reason)
{
	struct verify_req *r;

	while ((r = TAILQ_FIRST(&vt->waiting)) != NULL) {
		TAILQ_REMOVE(&vt->waiting, r, entry);
		if (!r->cancelled)
			r->cb(r->arg, VERIFY_TEMPFAIL, reason);
		verify_req_free(r);
	}
}

static void
vtarget_done_cb(void *arg, struct smtp_client *c, int status)
{
	struct vtarget *vt = arg;
	unsigned code = vt->crcpt.code;
	enum verify_verdict verdict;
	char reply[SMTP_CLIENT_REPLY_MAX];

	verdict = code >= 200 && code < 300 ? VERIFY_OK :
	    code >= 500 && code < 600       ? VERIFY_UNKNOWN :
	                                      VERIFY_TEMPFAIL;
	(void)snprintf(reply, sizeof(reply), "%s", vt->crcpt.reply);
	/*
	 * Decide about the connection before answering: the answer may
	 * start the next probe on it at once.
	 */
	if (status != 0 || !smtp_client_reusable(c)) {
		smtp_client_close(c);
		vt->c = NULL;
	}
	vtarget_answer(vt, verdict, reply);
	vtarget_next(vt);
}

static void
vtarget_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vtarget *vt = arg;

	(void)fd;
	(void)what;
	if (!vt->busy && vt->c != NULL) {
		smtp_client_close(vt->c);
		vt->c = NULL;
	}
}

static void
vtarget_open_cb(void *arg, struct smtp_client *c, int status, bool temp,
    const char *reason)
{
	struct vtarget *vt = arg;
	char text[SMTP_CLIENT_REPLY_MAX];

	(void)temp;
	vt->opening = false;
	if (status != 0) {
		(void)snprintf(text, sizeof(text), "451 4.4.1 %.400s",
		    reason != NULL ? reason : "connection failed");
		log_info("verify: target %s: %s",
		    vt->v->conf->targets[vt->idx].name, text);
		vtarget_fail_all(vt, text);
		return;
	}
	vt->c = c;
	vtarget_next(vt);
}

/* Starts the next probe, opening the connection first when needed. */
static void
vtarget_next(struct vtarget *vt)
{
	struct timeval tv = { VERIFY_IDLE_SECONDS, 0 };
	struct smtp_client_params p;
	struct verify_req *r;

	if (vt->busy || vt->opening)
		return;
	/* Drop tombstones at the head. */
	while ((r = TAILQ_FIRST(&vt->waiting)) != NULL && r->cancelled) {
		TAILQ_REMOVE(&vt->waiting, r, entry);
		verify_req_free(r);
	}
	if (r == NULL) {
		if (vt->c != NULL) {
			if (vt->idle == NULL)
				vt->idle = evtimer_new(vt->v->base,
				    vtarget_idle_cb, vt);
			if (vt->idle != NULL)
				(void)evtimer_add(vt->idle, &tv);
		}
		return;
	}
	if (vt->c == NULL) {
		memset(&p, 0, sizeof(p));
		p.base = vt->v->base;
		p.dns = vt->v->dns;
		p.target = &vt->v->conf->targets[vt->idx];
		p.helo = p.target->helo != NULL ? p.target->helo :
		                                  vt->v->hostname;
		p.rcpt_domain = strrchr(r->rcpt, '@') != NULL ?
		    strrchr(r->rcpt, '@') + 1 :
		    NULL;
		vt->opening = true;
		smtp_client_open(&p, vtarget_open_cb, vt);
		return;
	}
	if (vt->idle != NULL)
		(void)evtimer_del(vt->idle);
	TAILQ_REMOVE(&vt->waiting, r, entry);
	vt->cur = r;
	vt->busy = true;
	memset(&vt->crcpt, 0, sizeof(vt->crcpt));
	vt->crcpt.addr = r->rcpt;
	memset(&vt->cmsg, 0, sizeof(vt->cmsg));
	vt->cmsg.sender = "";
	vt->cmsg.probe = true;
	vt->cmsg.rcpts = &vt->crcpt;
	vt->cmsg.nrcpts = 1;
	smtp_client_send(vt->c, &vt->cmsg, vtarget_done_cb, vt);
}

struct verify_req *
verify_probe(struct verify *v, size_t target, const char *rcpt, verify_cb cb,
    void *arg)
{
	struct vtarget *vt = &v->targets[target];
	struct verify_req *r = xcalloc(1, sizeof(*r));

	r->vt = vt;
	r->rcpt = xstrdup(rcpt);
	r->cb = cb;
	r->arg = arg;
	TAILQ_INSERT_TAIL(&vt->waiting, r, entry);
	vtarget_next(vt);
	return r;
}

void
verify_cancel(struct verify_req *r)
{
	if (r != NULL)
		r->cancelled = true; /* freed when its turn comes */
}

struct verify *
verify_new(struct event_base *base, const struct conf *conf, struct dns *dns,
    const char *hostname)
{
	struct verify *v = xcalloc(1, sizeof(*v));
	size_t i;

	v->base = base;
	v->conf = conf;
	v->dns = dns;
	v->hostname = xstrdup(hostname);
	v->targets = xcalloc(conf->ntargets ? conf->ntargets : 1,
	    sizeof(*v->targets));
	for (i = 0; i < conf->ntargets; i++) {
		v->targets[i].v = v;
		v->targets[i].idx = i;
		TAILQ_INIT(&v->targets[i].waiting);
	}
	return v;
}

void
verify_free(struct verify *v)
{
	struct verify_req *r;
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->conf->ntargets; i++) {
		struct vtarget *vt = &v->targets[i];

		while ((r = TAILQ_FIRST(&vt->waiting)) != NULL) {
			TAILQ_REMOVE(&vt->waiting, r, entry);
			verify_req_free(r);
		}
		if (vt->cur != NULL)
			verify_req_free(vt->cur);
		if (vt->c != NULL)
			smtp_client_close(vt->c);
		else if (vt->opening)
			smtp_client_open_cancel(vtarget_open_cb, vt);
		if (vt->idle != NULL)
			event_free(vt->idle);
	}
	verify_cache_clear(v);
	free(v->targets);
	free(v->hostname);
	free(v);
}
