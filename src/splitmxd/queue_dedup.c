/*
 * queue_dedup.c - claims in the duplicate index: once per target.
 *
 * Before its first delivery attempt, every pending (recipient, target) of
 * a loaded message is claimed in the index under the message's queue id,
 * atomically (insert-if-absent) and durably; the claims of many messages
 * share one write transaction (one fsync) while the previous batch is
 * written. A pair whose key another queue id holds is journaled
 * "duplicate first=QID" and never sent, whatever that copy's state
 * (pending, deferred, in flight, delivered). After a restart a copy finds
 * its own claims and keeps them. A claim is released when its copy fails
 * for good at that target (5xx, or expiry), so a later copy may take over.
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

static void qclaim_job(void *arg);
static void qclaim_done(void *arg);
static void qclaim_kick(struct queue *q);

/* Claims being collected (q->claim_pending) or written (one at a time). */
struct qclaim_job {
	struct queue *q;
	struct dedup_rec *recs;
	struct qrcpt **rcpts; /* recs[i] claims rcpts[i] */
	struct qmsg **msgs;   /* each claiming message once; holds its busy */
	size_t n, cap, nmsgs, msgcap;
	int status;
	struct sbuf err;
};

static void
qclaim_job(void *arg)
{
	struct qclaim_job *j = arg;

	j->status = dedup_record_many(j->q->dedup, j->recs, j->n, time(NULL),
	    &j->err);
}

/* Loop: journals the pairs another copy holds; the rest go out. */
static void
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
qclaim_free(struct qclaim_job *j)
{
	free(j->recs);
	free(j->rcpts);
	free(j->msgs);
	sbuf_release(&j->err);
	free(j);
}

static void
qclaim_done(void *arg)
{
	struct qclaim_job *j = arg;
	struct queue *q = j->q;
	size_t i;

	if (j->status == -1)
		/* Never lose mail over the index: deliver, unchecked. */
		log_warnx("duplicate index: %zu claims not made (%s); "
		          "delivering without the check",
		    j->n, j->err.data);
	else
		for (i = 0; i < j->n; i++)
			if (j->recs[i].result == 0 &&
			    strcmp(j->recs[i].owner, j->recs[i].qid) != 0)
				(void)snprintf(j->rcpts[i]->dup_of,
				    sizeof(j->rcpts[i]->dup_of), "%s",
				    j->recs[i].owner);
	q->claim_inflight = false;
	for (i = 0; i < j->nmsgs; i++) {
		struct qmsg *m = j->msgs[i];

		m->busy--;
		q->busy--;
		qmsg_dedup_apply(m);
		qmsg_schedule(m);
		qmsg_check_done(m);
	}
	qclaim_free(j);
	qclaim_kick(q);
}

static void
qclaim_kick(struct queue *q)
{
	struct qclaim_job *j = q->claim_pending;

	if (q->claim_inflight || j == NULL)
		return;
	q->claim_pending = NULL;
	q->claim_inflight = true;
	workers_submit(q->w, qclaim_job, qclaim_done, j);
}

/*
 * Loop, after a load: claims m's pending pairs, then schedules it (at once
 * when there is nothing to claim).
 */
void
qmsg_claim(struct qmsg *m)
{
	struct queue *q = m->q;
	struct qclaim_job *j;
	size_t i, k, before;

	if (q->dedup == NULL || m->msgkey == NULL) {
		qmsg_schedule(m);
		qmsg_check_done(m);
		return;
	}
	if ((j = q->claim_pending) == NULL) {
		j = q->claim_pending = xcalloc(1, sizeof(*j));
		j->q = q;
		sbuf_init(&j->err, 256);
	}
	before = j->n;
	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		for (k = 0; k < d->nrcpts; k++) {
			struct dedup_rec *rec;

			if (d->rcpts[k].state != QR_PENDING)
				continue;
			if (j->n == j->cap) {
				j->cap = j->cap ? 2 * j->cap : 64;
				j->recs = xreallocarray(j->recs, j->cap,
				    sizeof(*j->recs));
				j->rcpts = xreallocarray(j->rcpts, j->cap,
				    sizeof(*j->rcpts));
			}
			rec = &j->recs[j->n];
			memset(rec, 0, sizeof(*rec));
			/* m, its rcpts and the config outlive the job. */
			rec->key.msgkey = m->msgkey;
			rec->key.rcpt = d->rcpts[k].orig;
			rec->key.target = d->qt->t->name;
			rec->qid = m->id;
			j->rcpts[j->n++] = &d->rcpts[k];
		}
	}
	if (j->n == before) {
		qmsg_schedule(m);
		qmsg_check_done(m);
		return;
	}
	if (j->nmsgs == j->msgcap) {
		j->msgcap = j->msgcap ? 2 * j->msgcap : 16;
		j->msgs = xreallocarray(j->msgs, j->msgcap, sizeof(*j->msgs));
	}
	j->msgs[j->nmsgs++] = m;
	m->busy++;
	q->busy++;
	qclaim_kick(q);
}

/* A release in flight (rare: a copy failed for good at one target). */
struct qrelease_job {
	struct qmsg *m;
	char *target;
	char *rcpt;
};

static void
qrelease_job(void *arg)
{
	struct qrelease_job *j = arg;
	struct dedup_key k;
	struct sbuf err;

	k.msgkey = j->m->msgkey;
	k.rcpt = j->rcpt;
	k.target = j->target;
	sbuf_init(&err, 256);
	if (dedup_release(j->m->q->dedup, &k, j->m->id, &err) == -1)
		log_warnx("%s: claim for <%s> at %s not released: %s", j->m->id,
		    j->rcpt, j->target, err.data);
	sbuf_release(&err);
}

static void
qrelease_done(void *arg)
{
	struct qrelease_job *j = arg;
	struct qmsg *m = j->m;

	m->busy--;
	m->q->busy--;
	free(j->target);
	free(j->rcpt);
	free(j);
	qmsg_check_done(m);
}

/*
 * Loop: r of d failed for good (5xx, or the queue lifetime): a later copy
 * of the message may be delivered to that target, so the claim goes.
 */
void
qdeliv_release(struct qdeliv *d, const struct qrcpt *r)
{
	struct qmsg *m = d->msg;
	struct qrelease_job *j;

	if (m->q->dedup == NULL || m->msgkey == NULL)
		return;
	j = xcalloc(1, sizeof(*j));
	j->m = m;
	j->target = xstrdup(d->qt->t->name);
	j->rcpt = xstrdup(r->orig);
	m->busy++;
	m->q->busy++;
	workers_submit(m->q->w, qrelease_job, qrelease_done, j);
}

/* At exit: claims not written yet (their messages stay queued). */
void
qclaim_discard(struct queue *q)
{
	if (q->claim_pending != NULL)
		qclaim_free(q->claim_pending);
	q->claim_pending = NULL;
}
