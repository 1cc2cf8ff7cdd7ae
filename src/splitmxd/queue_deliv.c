/*
 * queue_deliv.c - delivery attempts and their outcome.
 *
 * Puts deliveries on their target's ready list, builds the client's view
 * of a transaction, records each recipient's reply in the journal before
 * it counts, retries with backoff until the queue lifetime, delivers to
 * maildir targets on the workers, and removes a message once every
 * recipient is final (after its DSN, when one is due). Loop thread.
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

static unsigned queue_backoff(const struct queue *q, unsigned attempts);
static void qdeliv_ready(struct qdeliv *d);
static void qdeliv_timer_cb(evutil_socket_t fd, short what, void *arg);
static bool qdeliv_pending(const struct qdeliv *d);
static void qdeliv_after_attempt(struct qdeliv *d, const char *reason);
static void qdeliv_record(struct qdeliv *d);
static void qmsg_remove_done(void *arg, int status);

static unsigned
queue_backoff(const struct queue *q, unsigned attempts)
{
	const struct conf_queue *cq = &q->conf->queue;
	uint64_t d = cq->retry_initial ? cq->retry_initial : 1;
	unsigned i;

	for (i = 1; i < attempts && d < cq->retry_max; i++)
		d *= 2;
	if (d > cq->retry_max)
		d = cq->retry_max;
	/* Jitter (+-10%) so a recovering target is not hit all at once. */
	if (d >= 10)
		d = d - d / 10 + (uint64_t)random() % (d / 5 + 1);
	return (unsigned)d;
}

static void
qdeliv_ready(struct qdeliv *d)
{
	d->state = QD_READY;
	TAILQ_INSERT_TAIL(&d->qt->ready, d, entry);
}

static void
qdeliv_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qdeliv *d = arg;

	(void)fd;
	(void)what;
	if (d->state != QD_WAIT || d->msg->q->stopping)
		return;
	qdeliv_ready(d);
	qtarget_pump(d->qt);
}

static bool
qdeliv_pending(const struct qdeliv *d)
{
	size_t i;

	for (i = 0; i < d->nrcpts; i++)
		if (d->rcpts[i].state == QR_PENDING)
			return true;
	return false;
}

/*
 * After an attempt: done, or waiting for the next one. Past the queue
 * lifetime, pending recipients fail with the last reason (RFC 3463 4.4.7).
 */
static void
qdeliv_after_attempt(struct qdeliv *d, const char *reason)
{
	struct queue *q = d->msg->q;
	struct timeval tv = { 0, 0 };
	time_t now = time(NULL);
	struct spool_jrec_out w;
	struct sbuf lines;
	size_t i;

	if (!qdeliv_pending(d)) {
		d->state = QD_DONE;
		return;
	}
	d->attempts++;
	if (now >=
	    d->msg->env.arrival.tv_sec + (time_t)q->conf->queue.lifetime) {
		sbuf_init(&lines, 1 << 20);
		for (i = 0; i < d->nrcpts; i++) {
			struct qrcpt *r = &d->rcpts[i];
			char last[QUEUE_REPLY_MAX];

			if (r->state != QR_PENDING)
				continue;
			(void)snprintf(last, sizeof(last), "%s",
			    r->reply[0] ? r->reply : reason);
			r->state = QR_FAILED;
			r->code = 450;
			(void)snprintf(r->reply, sizeof(r->reply),
			    "4.4.7 "
			    "delivery time expired; last: %.400s",
			    last);
			queue_jbegin(&w, &lines, "failed", d->msg);
			spool_jrec_str(&w, "target", d->qt->t->name);
			spool_jrec_addr(&w, "rcpt", r->orig);
			spool_jrec_str(&w, "reply", r->reply);
			queue_jend(&w, d->msg);
			log_info("%s: to=<%s> target=%s status=expired (%s)",
			    d->msg->id, r->addr, d->qt->t->name, last);
			qdeliv_release(d, r);
		}
		queue_journal(d->msg, &lines, NULL);
		sbuf_release(&lines);
		d->state = QD_DONE;
		return;
	}
	d->state = QD_WAIT;
	qmsg_maybe_warn(d->msg);
	tv.tv_sec = queue_backoff(q, d->attempts);
	if (d->timer == NULL)
		d->timer = evtimer_new(q->base, qdeliv_timer_cb, d);
	if (d->timer == NULL || evtimer_add(d->timer, &tv) == -1)
		log_panic("queue: cannot arm a retry timer");
}

/* Records each recipient's reply after a transaction and journals it. */
static void
qdeliv_record(struct qdeliv *d)
{
	struct spool_jrec_out w;
	struct sbuf lines;
	time_t next;
	size_t i;

	sbuf_init(&lines, 1 << 20);
	next = time(NULL) + queue_backoff(d->msg->q, d->attempts + 1);
	for (i = 0; i < d->ncrcpts; i++) {
		struct smtp_client_rcpt *cr = &d->crcpts[i];
		struct qrcpt *r = &d->rcpts[d->cidx[i]];
		const char *verb;

		r->code = cr->code;
		(void)snprintf(r->reply, sizeof(r->reply), "%s", cr->reply);
		if (cr->code >= 200 && cr->code < 300) {
			r->state = QR_DELIVERED;
			d->msg->delivered_now++;
			verb = "delivered";
		} else if (cr->code >= 500 && cr->code < 600) {
			r->state = QR_FAILED;
			verb = "failed";
			qdeliv_release(d, r);
		} else
			verb = "deferred";
		log_info("%s: to=<%s> target=%s relay=%s status=%s (%s)",
		    d->msg->id, r->addr, d->qt->t->name,
		    d->peer[0] ? d->peer : "none", verb, r->reply);
		queue_jbegin(&w, &lines, verb, d->msg);
		spool_jrec_str(&w, "target", d->qt->t->name);
		spool_jrec_addr(&w, "rcpt", r->orig);
		spool_jrec_addr(&w, "to", r->addr);
		if (d->peer[0] != '\0')
			spool_jrec_str(&w, "relay", d->peer);
		if (r->state == QR_PENDING) {
			spool_jrec_u64(&w, "attempt", d->attempts + 1);
			spool_jrec_u64(&w, "next", (uint64_t)next);
		}
		spool_jrec_str(&w, "reply", r->reply);
		queue_jend(&w, d->msg);
	}
	queue_journal(d->msg, &lines, NULL);
	sbuf_release(&lines);
}

/* Builds the client's view of the pending recipients. */
void
qdeliv_prepare(struct qdeliv *d)
{
	struct qmsg *m = d->msg;
	size_t i, n = 0;

	free(d->crcpts);
	free(d->cidx);
	d->crcpts = xcalloc(d->nrcpts, sizeof(*d->crcpts));
	d->cidx = xcalloc(d->nrcpts, sizeof(*d->cidx));
	for (i = 0; i < d->nrcpts; i++) {
		if (d->rcpts[i].state != QR_PENDING)
			continue;
		d->crcpts[n].addr = d->rcpts[i].addr;
		d->crcpts[n].notify = d->rcpts[i].notify;
		d->crcpts[n].orcpt = d->rcpts[i].orcpt;
		d->cidx[n++] = i;
	}
	d->ncrcpts = n;
	memset(&d->cmsg, 0, sizeof(d->cmsg));
	/*
	 * The client's readers open the file again from what the load learnt
	 * (no header read); gone or changed, the transaction gets 451.
	 */
	d->cmsg.rd = m->q->rd;
	d->cmsg.id = m->id;
	d->cmsg.content_off = m->off;
	d->cmsg.sha256 = m->sha;
	d->cmsg.prepend = m->env.prepend;
	d->cmsg.content_size = m->size;
	d->cmsg.sender = m->env.sender;
	/*
	 * SRS toward targets that check SPF: the envelope sender becomes an
	 * address at our SRS domain, so SPF there checks this relay.
	 */
	if (d->qt->t->srs && m->q->srs != NULL && m->env.sender[0] != '\0') {
		char out[AUTH_SRS_ADDR_BUFSIZE];
		struct sbuf err;

		sbuf_init(&err, 256);
		if (d->srs_sender == NULL &&
		    auth_srs_forward(m->q->srs, m->env.sender, time(NULL), out,
		        sizeof(out), &err) == 0)
			d->srs_sender = xstrdup(out);
		else if (d->srs_sender == NULL && err.len > 0)
			log_info("%s: sender not SRS-rewritten: %s", m->id,
			    err.data);
		sbuf_release(&err);
		if (d->srs_sender != NULL)
			d->cmsg.sender = d->srs_sender;
	}
	d->cmsg.envid = m->env.envid;
	d->cmsg.ret = m->env.ret;
	d->cmsg.body = m->env.body;
	d->cmsg.smtputf8 = m->env.smtputf8;
	d->cmsg.rcpts = d->crcpts;
	d->cmsg.nrcpts = n;
}

/* Every pending recipient of d gets the same temporary or final reply. */
void
qdeliv_fail_all(struct qdeliv *d, unsigned code, const char *reason)
{
	size_t i;

	qdeliv_prepare(d);
	for (i = 0; i < d->ncrcpts; i++) {
		d->crcpts[i].code = code;
		(void)snprintf(d->crcpts[i].reply, sizeof(d->crcpts[i].reply),
		    "%s", reason);
	}
	qdeliv_result(d, 0);
}

/* A transaction (or maildir job) finished: record, then reschedule. */
void
qdeliv_result(struct qdeliv *d, int status)
{
	struct qmsg *m = d->msg;
	const char *reason = d->ncrcpts > 0 ? d->crcpts[0].reply : "error";

	(void)status;
	qdeliv_record(d);
	qdeliv_after_attempt(d, reason);
	m->busy--;
	m->q->busy--;
	qmsg_check_done(m);
}

void
qdeliv_maildir_job(void *arg)
{
	struct qdeliv *d = arg;
	struct spool_content *src;
	const char **rcpts;
	size_t i;

	sbuf_reset(&d->merr);
	src = spool_content_reopen(d->msg->q->rd, d->msg->id, d->msg->off,
	    d->msg->size, d->msg->sha, &d->merr);
	if (src == NULL) {
		d->mstatus = -1;
		return;
	}
	rcpts = xcalloc(d->ncrcpts + 1, sizeof(*rcpts));
	for (i = 0; i < d->ncrcpts; i++)
		rcpts[i] = d->crcpts[i].addr;
	d->mstatus = maildir_deliver(d->qt->t->path, src, d->msg->env.sender,
	    (const char *const *)rcpts, d->ncrcpts, d->msg->id,
	    d->msg->env.prepend, &d->merr);
	free(rcpts);
	spool_content_close(src);
}

void
qdeliv_maildir_done(void *arg)
{
	struct qdeliv *d = arg;
	struct qtarget *qt = d->qt;
	size_t i;

	for (i = 0; i < d->ncrcpts; i++) {
		d->crcpts[i].code = d->mstatus == 0 ? 250 : 451;
		(void)snprintf(d->crcpts[i].reply, sizeof(d->crcpts[i].reply),
		    d->mstatus == 0 ? "2.0.0 delivered to maildir" :
		                      "4.3.0 maildir: %.400s",
		    d->merr.data);
	}
	(void)snprintf(d->peer, sizeof(d->peer), "maildir");
	qt->nopen--;
	qdeliv_result(d, d->mstatus);
	qtarget_pump(qt);
}

/* Puts every delivery with pending recipients on its target's ready list. */
void
qmsg_schedule(struct qmsg *m)
{
	struct queue *q = m->q;
	size_t i;

	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		if (qdeliv_pending(d))
			qdeliv_ready(d);
		else
			d->state = QD_DONE;
	}
	for (i = 0; i < q->conf->ntargets; i++)
		if (!TAILQ_EMPTY(&q->targets[i].ready))
			qtarget_pump(&q->targets[i]);
}

/* Final: journal the removal; the spool unlinks the file once durable. */
static void
qmsg_remove_done(void *arg, int status)
{
	struct qmsg *m = arg;

	m->q->busy--;
	if (status != 0)
		log_warnx("%s: removal not journaled; the file stays", m->id);
	else
		log_info("%s: removed", m->id);
	qmsg_unlink(m);
}

/*
 * With the removal (one append, so a restart neither loses nor repeats
 * them): each recipient that failed for good at a target while another
 * target delivered it. The sender is not told (the recipient can read
 * the message); the postmaster is, and the continuity report counts it.
 */
static void
qmsg_journal_partial(struct qmsg *m, struct sbuf *lines)
{
	struct spool_jrec_out w;
	size_t i, k;

	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		for (k = 0; k < d->nrcpts; k++) {
			const struct qrcpt *r = &d->rcpts[k];
			const char *at;

			if (r->state != QR_FAILED ||
			    (at = qrcpt_reached_at(m, r)) == NULL)
				continue;
			m->q->partial_failures++;
			log_warnx("%s: to=<%s> target=%s failed (%s) but "
			          "target=%s has it: no bounce to the sender",
			    m->id, r->addr, d->qt->t->name,
			    r->reply[0] ? r->reply : "failed", at);
			queue_jbegin(&w, lines, "partial", m);
			spool_jrec_str(&w, "target", d->qt->t->name);
			spool_jrec_addr(&w, "rcpt", r->orig);
			spool_jrec_str(&w, "delivered", at);
			queue_jend(&w, m);
		}
	}
}

void
qmsg_remove(struct qmsg *m, const char *dsn_id)
{
	struct spool_jrec_out w;
	struct sbuf lines;

	sbuf_init(&lines, 1 << 20);
	if (dsn_id != NULL) {
		queue_jbegin(&w, &lines, "bounced", m);
		spool_jrec_token(&w, "dsn", dsn_id);
		queue_jend(&w, m);
	}
	qmsg_journal_partial(m, &lines);
	if (m->returning && m->delivered_now == 0 && m->ndelivs > 0) {
		/* Every target had it: accepted and dropped, never bounced. */
		log_info("%s: loop: every target already had this message; "
		         "dropped",
		    m->id);
		queue_jbegin(&w, &lines, "looped", m);
		queue_jend(&w, m);
	}
	queue_jbegin(&w, &lines, "removed", m);
	queue_jend(&w, m);
	m->q->busy++;
	spool_journal_append(m->q->spool, lines.data, lines.len, m->id,
	    qmsg_remove_done, m);
	sbuf_release(&lines);
}

/* When nothing is in flight and every delivery is final, finish. */
void
qmsg_check_done(struct qmsg *m)
{
	bool dsn = false;
	size_t i, j;

	if (!m->loaded || m->finishing || m->busy > 0)
		return;
	for (i = 0; i < m->ndelivs; i++) {
		if (m->delivs[i]->state != QD_DONE)
			return;
		for (j = 0; j < m->delivs[i]->nrcpts; j++) {
			if (m->delivs[i]->rcpts[j].state == QR_PENDING)
				return;
			if (qrcpt_wants_failure_dsn(m, &m->delivs[i]->rcpts[j]))
				dsn = true;
		}
	}
	if (m->ndelivs == 0)
		return; /* held: no target applies */
	if (m->q->stopping)
		return;
	m->finishing = true;
	if (dsn && m->env.sender[0] != '\0' && !m->bounced_restored) {
		m->busy++;
		m->q->busy++;
		workers_submit(m->q->w, qdsn_compose_job, qdsn_composed,
		    qdsn_job_new(m, false));
		return;
	}
	qmsg_remove(m, NULL);
}
