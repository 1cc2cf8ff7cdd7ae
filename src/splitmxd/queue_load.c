/*
 * queue_load.c - bringing a committed message into the queue.
 *
 * One worker job does every blocking or pure step a message needs before
 * it is scheduled, in a straight line: read and verify it through the
 * spool's read side (DESIGN rule 5; damaged content is quarantined) and
 * route each recipient (router, pure). The loop's completion only applies
 * the result: a quarantine record, a removal, or the duplicate claims
 * (queue_dedup.c) that come before any delivery.
 */

#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "auth_srs.h"
#include "conf.h"
#include "dedup.h"
#include "dsn.h"
#include "log.h"
#include "maildir.h"
#include "queue.h"
#include "router.h"
#include "sbuf.h"
#include "smtp_client.h"
#include "smtp_proto.h"
#include "spool.h"
#include "workers.h"
#include "xmalloc.h"
#include "queue_int.h"

static struct qdeliv *qmsg_deliv(struct qmsg *m, struct qtarget *qt,
    const char *domain);
static const struct restored *qmsg_restored(const struct qmsg *m,
    const char *target, const char *rcpt);
static void qmsg_route(struct qmsg *m);
static void qload_feed_cb(void *arg, const void *data, size_t len);
static int qmsg_read(struct qmsg *m);

/* What the checksum pass sees on the way: trace fields, the dedup key. */
struct qload_feed {
	struct smtp_proto_hdrscan hs;
	struct dedup_msgkey *mk;
	struct sbuf *kerr;
};

static struct qdeliv *
qmsg_deliv(struct qmsg *m, struct qtarget *qt, const char *domain)
{
	struct qdeliv *d;
	size_t i;

	for (i = 0; i < m->ndelivs; i++) {
		d = m->delivs[i];
		if (d->qt == qt &&
		    (!qt->per_domain || strcasecmp(d->domain, domain) == 0))
			return d;
	}
	d = xcalloc(1, sizeof(*d));
	d->msg = m;
	d->qt = qt;
	sbuf_init(&d->merr, 512);
	if (qt->per_domain)
		(void)snprintf(d->domain, sizeof(d->domain), "%s", domain);
	m->delivs = xreallocarray(m->delivs, m->ndelivs + 1,
	    sizeof(*m->delivs));
	m->delivs[m->ndelivs++] = d;
	return d;
}

static const struct restored *
qmsg_restored(const struct qmsg *m, const char *target, const char *rcpt)
{
	const struct restored *r;

	for (r = m->restored; r != NULL; r = r->next)
		if (strcmp(r->target, target) == 0 &&
		    strcmp(r->rcpt, rcpt) == 0)
			return r;
	return NULL;
}

static void
qmsg_route(struct qmsg *m)
{
	struct queue *q = m->q;
	struct router_hop hops[ROUTER_MAX_HOPS];
	const struct restored *rs;
	const char *why, *at;
	size_t i, j, n;

	for (i = 0; i < m->env.nrcpts; i++) {
		const struct spool_rcpt *er = &m->env.rcpts[i];

		n = router_route(q->conf, er->addr, hops, ROUTER_MAX_HOPS,
		    &why);
		if (n == 0)
			log_warnx("%s: no target for <%s>: held in the queue",
			    m->id, er->addr);
		for (j = 0; j < n; j++) {
			struct qtarget *qt = &q->targets[hops[j].target];
			struct qdeliv *d;
			struct qrcpt *r;

			at = strrchr(hops[j].rcpt, '@');
			d = qmsg_deliv(m, qt, at != NULL ? at + 1 : "");
			d->rcpts = xreallocarray(d->rcpts, d->nrcpts + 1,
			    sizeof(*d->rcpts));
			r = &d->rcpts[d->nrcpts++];
			memset(r, 0, sizeof(*r));
			r->orig = xstrdup(er->addr);
			r->addr = xstrdup(hops[j].rcpt);
			r->notify = er->notify;
			r->orcpt = er->orcpt != NULL ? xstrdup(er->orcpt) :
			                               NULL;
			rs = qmsg_restored(m, qt->t->name, er->addr);
			if (rs != NULL) {
				r->state = rs->delivered ? QR_DELIVERED :
				                           QR_FAILED;
				r->code = rs->delivered ? 250 : 550;
				(void)snprintf(r->reply, sizeof(r->reply),
				    "%s before restart",
				    rs->delivered ? "2.0.0 delivered" :
				                    "5.0.0 failed");
			}
		}
	}
}

static void
qload_feed_cb(void *arg, const void *data, size_t len)
{
	struct qload_feed *f = arg;

	if (!f->hs.in_body)
		smtp_proto_hdrscan_feed(&f->hs, data, len);
	if (f->mk != NULL &&
	    dedup_msgkey_feed(f->mk, data, len, f->kerr) == -1) {
		dedup_msgkey_free(f->mk);
		f->mk = NULL;
	}
}

/*
 * Worker: the header, size and SHA-256 (DESIGN rule 5) before any
 * delivery; damaged content is quarantined. -1 with m->lerr set.
 */
static char *
qmsg_trace_key(const char *id)
{
	size_t n = sizeof(DEDUP_TRACE_PREFIX) + strlen(id);
	char *k = xmalloc(n);

	(void)snprintf(k, n, "%s%s", DEDUP_TRACE_PREFIX, id);
	return k;
}

/*
 * Worker: the trace keys. Its own pairs are claimed under "t:" m->id as
 * well; the earlier passes its trace names (our own node's, or a known
 * peer's, queue ids other than m's) are looked up under theirs.
 */
static void
qmsg_trace_keys(struct qmsg *m, const struct smtp_proto_hdrscan *hs)
{
	size_t i,
	    n = hs->traces < SMTP_PROTO_TRACE_KEEP ? hs->traces :
	                                             SMTP_PROTO_TRACE_KEEP;

	m->tracekey = qmsg_trace_key(m->id);
	for (i = 0; i < n; i++) {
		struct smtp_proto_trace t;
		size_t k;

		if (smtp_proto_parse_trace(hs->trace[i], hs->trace_len[i],
		        &t) == -1 ||
		    !spool_id_valid(t.id) || strcmp(t.id, m->id) == 0 ||
		    !queue_known_node(m->q, t.node))
			continue;
		for (k = 0; k < m->nloopkeys; k++)
			if (strcmp(m->loopkeys[k] + 2, t.id) == 0)
				break;
		if (k < m->nloopkeys)
			continue;
		m->loopkeys[m->nloopkeys++] = qmsg_trace_key(t.id);
	}
}

static int
qmsg_read(struct qmsg *m)
{
	struct spool_content *c;
	struct qload_feed f;
	struct sbuf key, kerr;
	bool corrupt;
	int rc;

	m->lerrno = 0;
	c = spool_content_open(m->q->rd, m->id, &m->env, &m->lerr);
	if (c == NULL) {
		m->lerrno = errno;
		return -1;
	}
	m->off = spool_content_offset(c);
	m->size = spool_content_size(c);
	(void)snprintf(m->sha, sizeof(m->sha), "%s", spool_content_sha256(c));
	sbuf_init(&key, DEDUP_MSGKEY_MAX + 1);
	sbuf_init(&kerr, 256);
	smtp_proto_hdrscan_init(&f.hs);
	f.kerr = &kerr;
	f.mk = m->q->dedup != NULL ? dedup_msgkey_new(&kerr) : NULL;
	rc = spool_content_verify(c, qload_feed_cb, &f, &corrupt, &m->lerr);
	spool_content_close(c);
	if (rc == -1) {
		m->corrupt = corrupt;
		if (corrupt && spool_quarantine(m->q->spool, m->id) == -1)
			log_warn("%s: cannot quarantine", m->id);
	} else {
		m->traces = f.hs.traces;
		qmsg_trace_keys(m, &f.hs);
		if (f.mk != NULL && dedup_msgkey_final(f.mk, &key, &kerr) == 0)
			m->msgkey = xstrdup(key.data);
		if (m->q->dedup != NULL && m->msgkey == NULL)
			log_warnx("%s: no duplicate key: %s", m->id, kerr.data);
	}
	dedup_msgkey_free(f.mk);
	sbuf_release(&key);
	sbuf_release(&kerr);
	return rc;
}

/*
 * Worker: what a committed message needs before it is claimed and
 * scheduled, in one job: read and verify it, and route its recipients
 * (pure). The loop's completion, qmsg_load_done, only applies the result:
 * a quarantine record, a removal, or the claims (queue_dedup.c), which
 * schedule it. Safe off the loop: the loop leaves m alone while the job
 * holds it (busy), and the journal replay that fills m->restored ran
 * before any load.
 */
void
qmsg_load_job(void *arg)
{
	struct qmsg *m = arg;

	m->lstatus = qmsg_read(m);
	if (m->lstatus == -1 || m->removed_restored)
		return;
	qmsg_route(m);
}

static void
qmsg_load_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmsg *m = arg;

	(void)fd;
	(void)what;
	if (m->q->stopping)
		return;
	spool_envelope_clear(&m->env);
	sbuf_reset(&m->lerr);
	m->busy++;
	m->q->busy++;
	workers_submit(m->q->w, qmsg_load_job, qmsg_load_done, m);
}

/*
 * A load that failed for a passing reason (out of descriptors or memory,
 * an I/O error) is tried again later: the file is an acknowledged
 * message, and only a corrupt or vanished one leaves the queue's memory.
 */
static void
qmsg_load_later(struct qmsg *m)
{
	static struct log_limit lim = LOG_LIMIT_INIT(60, 5, "cannot load");
	struct timeval tv = { 0, 0 };
	unsigned shift = m->load_attempts < 10 ? m->load_attempts : 10;
	uint64_t secs = (uint64_t)m->q->conf->queue.retry_initial << shift;

	m->load_attempts++;
	if (secs > m->q->conf->queue.retry_max)
		secs = m->q->conf->queue.retry_max;
	tv.tv_sec = secs;
	log_warnx_limited(&lim,
	    "%s: cannot load: %s; trying again in %" PRIu64 "s", m->id,
	    m->lerr.data, secs);
	if (m->load_timer == NULL)
		m->load_timer = evtimer_new(m->q->base, qmsg_load_retry_cb, m);
	if (m->load_timer == NULL || evtimer_add(m->load_timer, &tv) == -1)
		log_panic("queue: cannot arm a load retry timer");
}

void
qmsg_load_done(void *arg)
{
	struct qmsg *m = arg;
	struct spool_jrec_out w;
	struct sbuf lines;

	m->busy--;
	m->q->busy--;
	if (m->lstatus == -1 && !m->corrupt && m->lerrno != ENOENT &&
	    !m->q->stopping) {
		qmsg_load_later(m);
		return;
	}
	if (m->lstatus == -1) {
		log_warnx("%s: cannot load: %s%s", m->id, m->lerr.data,
		    m->corrupt ? "; moved to corrupt/" : "");
		if (m->corrupt) {
			sbuf_init(&lines, 4096);
			queue_jbegin(&w, &lines, "quarantined", m);
			spool_jrec_str(&w, "reason", m->lerr.data);
			queue_jend(&w, m);
			spool_journal_append(m->q->spool, lines.data, lines.len,
			    NULL, NULL, NULL);
			sbuf_release(&lines);
		}
		qmsg_unlink(m);
		return;
	}
	m->loaded = true;
	m->returning = m->traces >= 2 || m->nloopkeys > 0 ||
	    queue_trusted(m->q, m->env.client_addr);
	if (m->removed_restored) {
		/* Finished before a crash; only the unlink was lost. */
		m->finishing = true;
		qmsg_remove(m, NULL);
		return;
	}
	qmsg_claim(m);
}
