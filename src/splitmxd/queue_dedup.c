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
 *
 * Loops by trace: each pair is claimed under "t:" + the queue id as well,
 * and a message whose X-Splitmx-Trace names earlier passes (our node's or
 * a known peer's queue ids) first looks its pairs up under theirs: a pair
 * an earlier pass holds is a duplicate (loop=trace), whatever the copy's
 * Message-ID or content now are.
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

/*
 * Claims being collected (q->claim_pending) or written (one at a time).
 * Each pending pair makes two records: the claim under the message key
 * (rcpts[i] set) and, right after it, the same pair under the message's
 * trace key (rcpts[i + 1] NULL). A returning message's pairs are first
 * looked up under the trace keys of its earlier passes (probes): a hit
 * means that pass already claimed the pair, and neither record is made.
 */
struct qclaim_probe {
	struct dedup_key key;
	size_t rec; /* the message-key record of the pair it checks */
};

struct qclaim_job {
	struct queue *q;
	struct dedup_rec *recs;
	struct qrcpt **rcpts; /* recs[i] claims rcpts[i]; NULL: trace key */
	char (*loop_of)[DEDUP_QID_LEN + 1]; /* out: "" or the earlier pass */
	struct qclaim_probe *probes;
	struct qmsg **msgs; /* each claiming message once; holds its busy */
	size_t n, cap, nprobes, probecap, nmsgs, msgcap;
	int status;
	struct sbuf err;
};

/* The message-key record of recs[i]'s pair (a trace-key twin follows it). */
static size_t
qclaim_pair(const struct qclaim_job *j, size_t i)
{
	return j->rcpts[i] != NULL ? i : i - 1;
}

/* Worker: the probes, then one group commit of the pairs still open. */
static void
qclaim_job(void *arg)
{
	struct qclaim_job *j = arg;
	struct dedup_rec *open;
	time_t now = time(NULL);
	size_t i, k, nopen = 0;

	for (i = 0; i < j->nprobes; i++) {
		struct qclaim_probe *p = &j->probes[i];
		struct dedup_entry e;
		int rc;

		if (j->loop_of[p->rec][0] != '\0')
			continue; /* an earlier probe found it */
		rc = dedup_lookup(j->q->dedup, &p->key, now, &e, &j->err);
		if (rc == -1) {
			j->status = -1;
			return;
		}
		if (rc == 1)
			(void)snprintf(j->loop_of[p->rec],
			    sizeof(j->loop_of[p->rec]), "%s", e.qid);
	}
	open = xreallocarray(NULL, j->n, sizeof(*open));
	for (i = 0; i < j->n; i++)
		if (j->loop_of[qclaim_pair(j, i)][0] == '\0')
			open[nopen++] = j->recs[i];
	j->status = nopen == 0 ?
	    0 :
	    dedup_record_many(j->q->dedup, open, nopen, now, &j->err);
	for (i = k = 0; i < j->n && j->status == 0; i++)
		if (j->loop_of[qclaim_pair(j, i)][0] == '\0')
			j->recs[i] = open[k++];
	free(open);
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
			    r->looped ? " loop: its trace names that copy" :
			        m->returning ? " loop: the message came back" :
			                       "");
			queue_jbegin(&w, &lines, "duplicate", m);
			spool_jrec_str(&w, "target", d->qt->t->name);
			spool_jrec_addr(&w, "rcpt", r->orig);
			spool_jrec_token(&w, "first", r->dup_of);
			if (r->looped)
				spool_jrec_token(&w, "loop", "trace");
			else if (m->returning)
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
	free(j->loop_of);
	free(j->probes);
	free(j->msgs);
	sbuf_release(&j->err);
	free(j);
}

/*
 * Journals the claims the job made ("claimed", the trace-key twin
 * implied): the index does not sync its commits, the spool's log makes
 * these durable in the group that carries the deliveries they cover, and
 * after a machine crash the index is rebuilt from them (docs/exactly-once.md).
 */
static void
qclaim_journal(struct qclaim_job *j)
{
	struct spool_jrec_out w;
	char ts[SPOOL_TS_LEN + 1];
	struct sbuf lines;
	size_t i;

	spool_timestamp(ts, sizeof(ts));
	sbuf_init(&lines, SPOOL_JLINE_MAX);
	for (i = 0; i < j->n; i++) {
		const struct dedup_rec *rec = &j->recs[i];

		if (j->rcpts[i] == NULL || rec->result != 1)
			continue;
		spool_jrec_begin(&w, &lines, ts, "claimed", rec->qid);
		spool_jrec_str(&w, "target", rec->key.target);
		spool_jrec_addr(&w, "rcpt", rec->key.rcpt);
		spool_jrec_str(&w, "key", rec->key.msgkey);
		if (spool_jrec_end(&w) == -1)
			log_warnx("%s: claim record too long: not journaled",
			    rec->qid);
	}
	if (lines.len > 0)
		spool_journal_append(j->q->spool, lines.data, lines.len, NULL,
		    NULL, NULL);
	sbuf_release(&lines);
}

static void
qclaim_done(void *arg)
{
	struct qclaim_job *j = arg;
	struct queue *q = j->q;
	size_t i;

	if (j->status == 0)
		qclaim_journal(j);

	if (j->status == -1)
		/* Never lose mail over the index: deliver, unchecked. */
		log_warnx("duplicate index: %zu claims not made (%s); "
		          "delivering without the check",
		    j->n, j->err.data);
	else
		for (i = 0; i < j->n; i++) {
			struct qrcpt *r = j->rcpts[i];

			if (r == NULL)
				continue; /* the trace-key twin */
			if (j->loop_of[i][0] != '\0') {
				(void)snprintf(r->dup_of, sizeof(r->dup_of),
				    "%s", j->loop_of[i]);
				r->looped = true;
			} else if (j->recs[i].result == 0 &&
			    strcmp(j->recs[i].owner, j->recs[i].qid) != 0)
				(void)snprintf(r->dup_of, sizeof(r->dup_of),
				    "%s", j->recs[i].owner);
		}
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

static void
qclaim_rec(struct qclaim_job *j, struct qmsg *m, struct qdeliv *d,
    struct qrcpt *r, const char *key)
{
	struct dedup_rec *rec;

	if (j->n == j->cap) {
		j->cap = j->cap ? 2 * j->cap : 64;
		j->recs = xreallocarray(j->recs, j->cap, sizeof(*j->recs));
		j->rcpts = xreallocarray(j->rcpts, j->cap, sizeof(*j->rcpts));
		j->loop_of = xreallocarray(j->loop_of, j->cap,
		    sizeof(*j->loop_of));
	}
	rec = &j->recs[j->n];
	memset(rec, 0, sizeof(*rec));
	/* m, its rcpts and the config outlive the job. */
	rec->key.msgkey = key;
	rec->key.rcpt = r->orig;
	rec->key.target = d->qt->t->name;
	rec->qid = m->id;
	j->rcpts[j->n] = r;
	j->loop_of[j->n][0] = '\0';
	j->n++;
}

/* One pending pair: its probes, its claim, its trace-key twin. */
static void
qclaim_add(struct qclaim_job *j, struct qmsg *m, struct qdeliv *d,
    struct qrcpt *r)
{
	size_t i, rec = j->n;

	for (i = 0; i < m->nloopkeys; i++) {
		struct qclaim_probe *p;

		if (j->nprobes == j->probecap) {
			j->probecap = j->probecap ? 2 * j->probecap : 16;
			j->probes = xreallocarray(j->probes, j->probecap,
			    sizeof(*j->probes));
		}
		p = &j->probes[j->nprobes++];
		p->key.msgkey = m->loopkeys[i];
		p->key.rcpt = r->orig;
		p->key.target = d->qt->t->name;
		p->rec = rec;
	}
	qclaim_rec(j, m, d, r, m->msgkey);
	qclaim_rec(j, m, d, r, m->tracekey);
	j->rcpts[j->n - 1] = NULL;
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
			if (d->rcpts[k].state == QR_PENDING)
				qclaim_add(j, m, d, &d->rcpts[k]);
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
	/* Its trace-key twin: a copy coming back may go there now. */
	k.msgkey = j->m->tracekey;
	sbuf_reset(&err);
	if (k.msgkey != NULL &&
	    dedup_release(j->m->q->dedup, &k, j->m->id, &err) == -1)
		log_warnx("%s: trace claim for <%s> at %s not released: %s",
		    j->m->id, j->rcpt, j->target, err.data);
	sbuf_release(&err);
}

static void
qrelease_done(void *arg)
{
	struct qrelease_job *j = arg;
	struct qmsg *m = j->m;
	struct spool_jrec_out w;
	char ts[SPOOL_TS_LEN + 1];
	struct sbuf line;

	/* For a rebuild of the index: this claim is gone. */
	spool_timestamp(ts, sizeof(ts));
	sbuf_init(&line, SPOOL_JLINE_MAX);
	spool_jrec_begin(&w, &line, ts, "released", m->id);
	spool_jrec_str(&w, "target", j->target);
	spool_jrec_addr(&w, "rcpt", j->rcpt);
	spool_jrec_str(&w, "key", m->msgkey);
	if (spool_jrec_end(&w) == 0)
		spool_journal_append(m->q->spool, line.data, line.len, NULL,
		    NULL, NULL);
	sbuf_release(&line);

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

/* ---- rebuilding the index from the journal (after a machine crash) ---- */

struct qrebuild {
	struct dedup *dd;
	unsigned long claims, releases, bad;
	struct sbuf target, rcpt, key, err;
};

static void
qrebuild_line(void *arg, const char *line, size_t len)
{
	struct qrebuild *rb = arg;
	struct spool_jrec rec;
	struct dedup_rec recs[2];
	char tkey[sizeof(DEDUP_TRACE_PREFIX) + DEDUP_QID_LEN];
	bool claim;

	if (spool_jrec_parse(line, len, &rec, NULL) == -1)
		return;
	claim = spool_jrec_is(&rec, "claimed");
	if (!claim && !spool_jrec_is(&rec, "released"))
		return;
	if (spool_jrec_value(&rec, "target", false, &rb->target) == -1 ||
	    spool_jrec_value(&rec, "rcpt", true, &rb->rcpt) == -1 ||
	    spool_jrec_value(&rec, "key", false, &rb->key) == -1 ||
	    rb->key.len == 0) {
		rb->bad++;
		return;
	}
	(void)snprintf(tkey, sizeof(tkey), "%s%s", DEDUP_TRACE_PREFIX, rec.id);
	memset(recs, 0, sizeof(recs));
	recs[0].key.msgkey = rb->key.data;
	recs[1].key.msgkey = tkey;
	recs[0].key.rcpt = recs[1].key.rcpt = rb->rcpt.data;
	recs[0].key.target = recs[1].key.target = rb->target.data;
	recs[0].qid = recs[1].qid = rec.id;
	sbuf_reset(&rb->err);
	if (claim) {
		if (dedup_record_many(rb->dd, recs, 2, rec.ts.tv_sec,
		        &rb->err) == -1)
			rb->bad++;
		else
			rb->claims++;
		return;
	}
	if (dedup_release(rb->dd, &recs[0].key, rec.id, &rb->err) == -1 ||
	    dedup_release(rb->dd, &recs[1].key, rec.id, &rb->err) == -1)
		rb->bad++;
	else
		rb->releases++;
}

int
queue_dedup_rebuild(struct dedup *dd, const struct spool_reader *rd,
    struct sbuf *err)
{
	struct qrebuild rb;
	int rc;

	memset(&rb, 0, sizeof(rb));
	rb.dd = dd;
	sbuf_init(&rb.target, SPOOL_JLINE_MAX);
	sbuf_init(&rb.rcpt, SPOOL_JLINE_MAX);
	sbuf_init(&rb.key, SPOOL_JLINE_MAX);
	sbuf_init(&rb.err, 256);
	rc = spool_reader_scan_history(rd, qrebuild_line, &rb, NULL, err);
	if (rc == 0)
		log_warnx("duplicate index rebuilt from the journal: %lu "
		          "claims, %lu releases, %lu records not usable",
		    rb.claims, rb.releases, rb.bad);
	sbuf_release(&rb.target);
	sbuf_release(&rb.rcpt);
	sbuf_release(&rb.key);
	sbuf_release(&rb.err);
	return rc;
}
