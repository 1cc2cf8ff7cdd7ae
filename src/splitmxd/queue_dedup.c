/*
 * queue_dedup.c - the queue's use of the duplicate index.
 *
 * At load (on the worker) it asks which (recipient, target) pairs already
 * had a message with the same key; on the loop it applies and journals
 * the answer. After deliveries it records what went out, many deliveries
 * per write transaction (one fsync) while the previous batch is written.
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

static void qrecord_job(void *arg);
static void qrecord_done(void *arg);
static void qrecord_kick(struct queue *q);

/*
 * Remembers what was delivered, so a later copy is not sent again.
 * Records from many deliveries share one write transaction (one fsync):
 * while a batch is being written the next one collects.
 */
struct qrecord_job {
	struct queue *q;
	struct dedup_rec *recs;
	char **strs;        /* 2 per record */
	struct qmsg **msgs; /* whose busy each record holds */
	size_t n;
	size_t cap;
};

/*
 * Worker: which (recipient, target) pairs already had this message, in an
 * earlier message with the same key (a sender's retry, a second MX path,
 * a copy returning through a target).
 */
void
qmsg_dedup_lookup(struct qmsg *m)
{
	struct dedup_entry e;
	struct dedup_key k;
	struct sbuf err;
	time_t now = time(NULL);
	size_t i, j;

	sbuf_init(&err, 256);
	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		for (j = 0; j < d->nrcpts; j++) {
			struct qrcpt *r = &d->rcpts[j];

			if (r->state != QR_PENDING)
				continue;
			k.msgkey = m->msgkey;
			k.rcpt = r->orig;
			k.target = d->qt->t->name;
			sbuf_reset(&err);
			if (dedup_lookup(m->q->dedup, &k, now, &e, &err) == 1)
				(void)snprintf(r->dup_of, sizeof(r->dup_of),
				    "%s", e.qid);
			else if (err.len > 0)
				log_warnx("%s: duplicate lookup: %s", m->id,
				    err.data);
		}
	}
	sbuf_release(&err);
}

/* Loop: applies (and journals) what the lookup found. */
void
qmsg_dedup_apply(struct qmsg *m)
{
	struct spool_jrec_out w;
	struct sbuf lines;
	size_t i, j;
	unsigned dups = 0;

	sbuf_init(&lines, 1 << 20);
	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		for (j = 0; j < d->nrcpts; j++) {
			struct qrcpt *r = &d->rcpts[j];

			if (r->state != QR_PENDING || r->dup_of[0] == '\0')
				continue;
			if (strcmp(r->dup_of, m->id) == 0) {
				/*
				 * Our own record: delivered before a crash
				 * lost the journal line. Journal it now.
				 */
				r->state = QR_DELIVERED;
				r->code = 250;
				(void)snprintf(r->reply, sizeof(r->reply),
				    "2.0.0 delivered before restart (duplicate "
				    "index)");
				queue_jbegin(&w, &lines, "delivered", m);
				spool_jrec_str(&w, "target", d->qt->t->name);
				spool_jrec_addr(&w, "rcpt", r->orig);
				spool_jrec_addr(&w, "to", r->addr);
				spool_jrec_str(&w, "reply", r->reply);
				queue_jend(&w, m);
				dups++;
				continue;
			}
			r->state = QR_DUPLICATE;
			r->code = 250;
			(void)snprintf(r->reply, sizeof(r->reply),
			    "2.0.0 duplicate of %s", r->dup_of);
			dups++;
			log_info("%s: to=<%s> target=%s status=duplicate "
			         "(first delivered as %s)%s",
			    m->id, r->addr, d->qt->t->name, r->dup_of,
			    m->returning ? " loop: the message came back" : "");
			queue_jbegin(&w, &lines, "duplicate", m);
			spool_jrec_str(&w, "target", d->qt->t->name);
			spool_jrec_addr(&w, "rcpt", r->orig);
			spool_jrec_token(&w, "first", r->dup_of);
			if (m->returning)
				spool_jrec_token(&w, "loop", "yes");
			queue_jend(&w, m);
		}
	}
	if (dups > 0)
		queue_journal(m, &lines, NULL);
	sbuf_release(&lines);
}

static void
qrecord_job(void *arg)
{
	struct qrecord_job *j = arg;
	struct sbuf err;

	sbuf_init(&err, 256);
	if (dedup_record_many(j->q->dedup, j->recs, j->n, time(NULL), &err) ==
	    -1)
		log_warnx("duplicate index not updated for %zu deliveries: %s",
		    j->n, err.data);
	sbuf_release(&err);
}

static void
qrecord_done(void *arg)
{
	struct qrecord_job *j = arg;
	struct queue *q = j->q;
	size_t i;

	for (i = 0; i < 2 * j->n; i++)
		free(j->strs[i]);
	for (i = 0; i < j->n; i++) {
		j->msgs[i]->busy--;
		q->busy--;
	}
	q->rec_inflight = false;
	/* Messages may finish now; check each once. */
	for (i = 0; i < j->n; i++)
		if (i == 0 || j->msgs[i] != j->msgs[i - 1])
			qmsg_check_done(j->msgs[i]);
	free(j->strs);
	free(j->msgs);
	free(j->recs);
	free(j);
	qrecord_kick(q);
}

static void
qrecord_kick(struct queue *q)
{
	struct qrecord_job *j = q->rec_pending;

	if (q->rec_inflight || j == NULL)
		return;
	q->rec_pending = NULL;
	q->rec_inflight = true;
	workers_submit(q->w, qrecord_job, qrecord_done, j);
}

void
qdeliv_remember(struct qdeliv *d)
{
	struct qmsg *m = d->msg;
	struct queue *q = m->q;
	struct qrecord_job *j;
	size_t i;

	if (q->dedup == NULL || m->msgkey == NULL)
		return;
	for (i = 0; i < d->ncrcpts; i++) {
		struct dedup_rec *rec;

		if (d->crcpts[i].code < 200 || d->crcpts[i].code >= 300)
			continue;
		if ((j = q->rec_pending) == NULL) {
			j = q->rec_pending = xcalloc(1, sizeof(*j));
			j->q = q;
		}
		if (j->n == j->cap) {
			j->cap = j->cap ? 2 * j->cap : 16;
			j->recs = xreallocarray(j->recs, j->cap,
			    sizeof(*j->recs));
			j->strs = xreallocarray(j->strs, 2 * j->cap,
			    sizeof(*j->strs));
			j->msgs = xreallocarray(j->msgs, j->cap,
			    sizeof(*j->msgs));
		}
		rec = &j->recs[j->n];
		memset(rec, 0, sizeof(*rec));
		j->strs[2 * j->n] = xstrdup(d->rcpts[d->cidx[i]].orig);
		j->strs[2 * j->n + 1] = xstrdup(d->crcpts[i].reply);
		rec->key.msgkey = m->msgkey; /* m lives until done */
		rec->key.rcpt = j->strs[2 * j->n];
		rec->key.target = d->qt->t->name;
		rec->qid = m->id;
		rec->reply = j->strs[2 * j->n + 1];
		j->msgs[j->n++] = m;
		m->busy++;
		q->busy++;
	}
	qrecord_kick(q);
}

/* At exit: records not written yet. At worst a later copy goes out again. */
void
qrecord_discard(struct queue *q)
{
	struct qrecord_job *j = q->rec_pending;
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < 2 * j->n; i++)
		free(j->strs[i]);
	free(j->strs);
	free(j->msgs);
	free(j->recs);
	free(j);
	q->rec_pending = NULL;
}
