/*
 * queue.c - the delivery scheduler: the index of committed messages.
 *
 * Owns the in-memory index (one struct qmsg per committed message, each
 * with one delivery per target), the journal records the queue writes
 * (through spool_journal_append, group-committed), the replay of those
 * records at start-up, and the queue's life cycle. The rest of the module:
 * queue_load.c (loading a message), queue_deliv.c (attempts, results,
 * removal), queue_conn.c (connections and rate per target), queue_dsn.c
 * (bounces and delay warnings), queue_dedup.c (the duplicate index).
 * Loop thread only; blocking steps go to the workers.
 */

#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
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
#include "spool_read.h"
#include "workers.h"
#include "xmalloc.h"
#include "queue_int.h"

static unsigned queue_hash(const char *id);
static struct qmsg **queue_find(struct queue *q, const char *id);
static void qmsg_free(struct qmsg *m);
static void queue_journal_done(void *arg, int status);
static void queue_expire_job(void *arg);
static void queue_expire_done(void *arg);
static void queue_expire_cb(evutil_socket_t fd, short what, void *arg);

static unsigned
queue_hash(const char *id)
{
	unsigned h = 2166136261u;

	while (*id)
		h = (h ^ (unsigned char)*id++) * 16777619u;
	return h % QUEUE_HASH_SIZE;
}

static struct qmsg **
queue_find(struct queue *q, const char *id)
{
	struct qmsg **pp = &q->hash[queue_hash(id)];

	while (*pp != NULL && strcmp((*pp)->id, id) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

/* Mail from a target's outbound host is returning mail. */
bool
queue_trusted(const struct queue *q, const char *addr)
{
	size_t i;

	for (i = 0; addr != NULL && i < q->conf->ntrusted_hosts; i++)
		if (strcmp(q->conf->trusted_hosts[i], addr) == 0)
			return true;
	return false;
}

/* A node whose queue ids in a trace are ours to check: us, or a peer. */
bool
queue_known_node(const struct queue *q, const char *node)
{
	size_t i;

	if (strcasecmp(node, q->hostname) == 0)
		return true;
	for (i = 0; i < q->conf->ntrusted_hosts; i++)
		if (strcasecmp(q->conf->trusted_hosts[i], node) == 0)
			return true;
	return false;
}

static void
qmsg_free(struct qmsg *m)
{
	struct restored *r;
	size_t i, j;

	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		for (j = 0; j < d->nrcpts; j++) {
			free(d->rcpts[j].orig);
			free(d->rcpts[j].addr);
			free(d->rcpts[j].orcpt);
		}
		if (d->timer != NULL)
			event_free(d->timer);
		free(d->rcpts);
		free(d->srs_sender);
		free(d->crcpts);
		free(d->cidx);
		sbuf_release(&d->merr);
		free(d);
	}
	while ((r = m->restored) != NULL) {
		m->restored = r->next;
		free(r->target);
		free(r->rcpt);
		free(r);
	}
	if (m->retry_timer != NULL)
		event_free(m->retry_timer);
	if (m->load_timer != NULL)
		event_free(m->load_timer);
	free(m->delivs);
	free(m->msgkey);
	free(m->tracekey);
	for (i = 0; i < m->nloopkeys; i++)
		free(m->loopkeys[i]);
	spool_envelope_clear(&m->env);
	sbuf_release(&m->lerr);
	free(m);
}

void
qmsg_unlink(struct qmsg *m)
{
	struct qmsg **pp = queue_find(m->q, m->id);

	if (*pp == m) {
		*pp = m->hnext;
		m->q->nmsgs--;
	}
	qmsg_free(m);
}

/* Starts a record about m in lines, time-stamped now. */
void
queue_jbegin(struct spool_jrec_out *w, struct sbuf *lines, const char *verb,
    const struct qmsg *m)
{
	char ts[SPOOL_TS_LEN + 1];

	spool_timestamp(ts, sizeof(ts));
	spool_jrec_begin(w, lines, ts, verb, m->id);
}

/* Ends it; one that does not fit is left out, and said so. */
void
queue_jend(struct spool_jrec_out *w, const struct qmsg *m)
{
	if (spool_jrec_end(w) == -1)
		log_warnx("%s: journal record too long: not written", m->id);
}

static void
queue_journal_done(void *arg, int status)
{
	struct qmsg *m = arg;

	if (status != 0)
		log_warnx("%s: delivery records not journaled; they will be "
		          "repeated after a restart",
		    m->id);
	m->busy--;
	m->q->busy--;
	qmsg_check_done(m);
}

void
queue_journal(struct qmsg *m, struct sbuf *lines, const char *remove_id)
{
	m->busy++;
	m->q->busy++;
	spool_journal_append(m->q->spool, lines->data, lines->len, remove_id,
	    queue_journal_done, m);
}

void
queue_add(struct queue *q, const char *id)
{
	struct qmsg **pp = queue_find(q, id), *m;

	if (*pp != NULL && !(*pp)->expected_only)
		return; /* already known */
	if (*pp == NULL) {
		m = xcalloc(1, sizeof(*m));
		m->q = q;
		(void)snprintf(m->id, sizeof(m->id), "%s", id);
		*pp = m;
		q->nmsgs++;
	} else
		m = *pp;
	m->expected_only = false;
	if (!spool_id_valid(id))
		log_panic("queue: bad id %s", id);
	sbuf_init(&m->lerr, 1024);
	m->busy++;
	q->busy++;
	workers_submit(q->w, qmsg_load_job, qmsg_load_done, m);
}

void
queue_expect(struct queue *q, const char *id)
{
	struct qmsg **pp = queue_find(q, id), *m;

	if (*pp != NULL)
		return;
	m = xcalloc(1, sizeof(*m));
	m->q = q;
	m->expected_only = true;
	(void)snprintf(m->id, sizeof(m->id), "%s", id);
	*pp = m;
	q->nmsgs++;
}

void
queue_restore_line(struct queue *q, const char *line, size_t len)
{
	struct spool_jrec rec;
	struct sbuf target, rcpt;
	struct restored *r;
	struct qmsg *m;

	/* Not a record (a torn or foreign line): nothing to restore. */
	if (spool_jrec_parse(line, len, &rec, NULL) == -1)
		return;
	m = *queue_find(q, rec.id);
	if (m == NULL)
		return; /* not in the queue any more */
	if (spool_jrec_is(&rec, "removed"))
		m->removed_restored = true;
	else if (spool_jrec_is(&rec, "bounced"))
		m->bounced_restored = true;
	else if (spool_jrec_is(&rec, "warned"))
		m->warned = true;
	else if (spool_jrec_is(&rec, "delivered") ||
	    spool_jrec_is(&rec, "duplicate") || spool_jrec_is(&rec, "failed")) {
		sbuf_init(&target, SPOOL_JLINE_MAX);
		sbuf_init(&rcpt, SPOOL_JLINE_MAX);
		if (spool_jrec_value(&rec, "target", false, &target) == 0 &&
		    spool_jrec_value(&rec, "rcpt", true, &rcpt) == 0) {
			r = xcalloc(1, sizeof(*r));
			r->target = xstrdup(target.data);
			r->rcpt = xstrdup(rcpt.data);
			/* delivered, duplicate: the recipient has it */
			r->delivered = !spool_jrec_is(&rec, "failed");
			r->next = m->restored;
			m->restored = r;
		}
		sbuf_release(&target);
		sbuf_release(&rcpt);
	}
}

static void
queue_expire_job(void *arg)
{
	struct queue *q = arg;
	struct sbuf err;
	size_t removed = 0;

	sbuf_init(&err, 256);
	if (dedup_expire(q->dedup, time(NULL), &removed, &err) == -1)
		log_warnx("duplicate index expiry: %s", err.data);
	else if (removed > 0)
		log_info("duplicate index: %zu entries expired", removed);
	if (dedup_evicted(q->dedup) > 0)
		log_warnx("duplicate index full: %llu entries evicted before "
		          "their window (raise duplicate_max_size)",
		    dedup_evicted(q->dedup));
	sbuf_release(&err);
}

static void
queue_expire_done(void *arg)
{
	struct queue *q = arg;

	q->busy--;
}

static void
queue_expire_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval hourly = { 3600, 0 };
	struct queue *q = arg;

	(void)fd;
	(void)what;
	if (q->stopping)
		return;
	q->busy++;
	workers_submit(q->w, queue_expire_job, queue_expire_done, q);
	(void)evtimer_add(q->expire_timer, &hourly);
}

struct queue *
queue_new(struct event_base *base, const struct conf *conf, struct spool *sp,
    struct workers *w, struct dns *dns, struct dedup *dedup,
    const char *hostname)
{
	static const struct timeval soon = { 60, 0 };
	struct queue *q = xcalloc(1, sizeof(*q));
	size_t i;

	q->base = base;
	q->conf = conf;
	q->spool = sp;
	q->w = w;
	q->readers = workers_new(base, QUEUE_READERS);
	if ((q->rd = spool_reader_dup(spool_reader(sp))) == NULL)
		log_fatal(EX_OSERR, "queue: cannot duplicate the spool reader");
	q->dns = dns;
	q->dedup = dedup;
	if (dedup != NULL) {
		q->expire_timer = evtimer_new(base, queue_expire_cb, q);
		if (q->expire_timer != NULL)
			(void)evtimer_add(q->expire_timer, &soon);
	}
	q->hostname = xstrdup(hostname);
	q->targets = xcalloc(conf->ntargets ? conf->ntargets : 1,
	    sizeof(*q->targets));
	for (i = 0; i < conf->ntargets; i++) {
		struct qtarget *qt = &q->targets[i];

		qt->q = q;
		qt->idx = i;
		qt->t = &conf->targets[i];
		qt->per_domain = qt->t->mx != NULL &&
		    strcmp(qt->t->mx, "*") == 0;
		TAILQ_INIT(&qt->ready);
		LIST_INIT(&qt->conns);
	}
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	return q;
}

void
queue_shutdown(struct queue *q)
{
	struct qconn *qc, *next;
	size_t i;

	q->stopping = true;
	for (i = 0; i < q->conf->ntargets; i++)
		for (qc = LIST_FIRST(&q->targets[i].conns); qc != NULL;
		     qc = next) {
			next = LIST_NEXT(qc, entry);
			if (qc->ready && qc->d == NULL && qc->bound == NULL)
				qconn_free(qc);
		}
}

void
queue_set_srs(struct queue *q, const struct auth_srs *srs)
{
	q->srs = srs;
}

unsigned
queue_busy(const struct queue *q)
{
	return q->busy;
}

void
queue_free(struct queue *q)
{
	struct qmsg *m;
	struct qconn *qc;
	size_t i;

	if (q == NULL)
		return;
	qclaim_discard(q);
	for (i = 0; i < q->conf->ntargets; i++) {
		while ((qc = LIST_FIRST(&q->targets[i].conns)) != NULL)
			qconn_free(qc);
		if (q->targets[i].rate_timer != NULL)
			event_free(q->targets[i].rate_timer);
	}
	for (i = 0; i < QUEUE_HASH_SIZE; i++)
		while ((m = q->hash[i]) != NULL) {
			q->hash[i] = m->hnext;
			qmsg_free(m);
		}
	/* The clients are gone: what their reads left runs to the end here. */
	workers_free(q->readers);
	spool_reader_close(q->rd);
	if (q->expire_timer != NULL)
		event_free(q->expire_timer);
	free(q->targets);
	free(q->hostname);
	free(q);
}
