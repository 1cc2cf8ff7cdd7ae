/*
 * queue_conn.c - outbound connections per target.
 *
 * Each target has a pool of smtp_client connections bounded by its
 * concurrency and an optional start rate; a connection takes the next
 * ready delivery, is reused while the target allows, and idles out after
 * QUEUE_IDLE_SECONDS. Maildir targets use the same slots for worker jobs.
 * Loop thread.
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

static void qconn_idle_cb(evutil_socket_t fd, short what, void *arg);
static void qconn_done_cb(void *arg, struct smtp_client *c, int status);
static void qconn_send(struct qconn *qc, struct qdeliv *d);
static void qconn_start(struct qconn *qc, struct qdeliv *d);
static void qconn_next(struct qconn *qc);
static void qconn_open_failed(struct qconn *qc, bool temp, const char *reason);
static void qconn_open_cb(void *arg, struct smtp_client *c, int status,
    bool temp, const char *reason);
static struct qconn *qconn_new(struct qtarget *qt, struct qdeliv *bound);
static void qtarget_rate_cb(evutil_socket_t fd, short what, void *arg);
static bool qtarget_rate_ok(struct qtarget *qt);

void
qconn_free(struct qconn *qc)
{
	LIST_REMOVE(qc, entry);
	qc->qt->nopen--;
	if (qc->idle_timer != NULL)
		event_free(qc->idle_timer);
	if (qc->c != NULL)
		smtp_client_close(qc->c);
	else /* still opening: its callback must never find qc */
		smtp_client_open_cancel(qconn_open_cb, qc);
	free(qc);
}

static void
qconn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qconn *qc = arg;

	(void)fd;
	(void)what;
	if (qc->d == NULL)
		qconn_free(qc);
}

static void
qconn_done_cb(void *arg, struct smtp_client *c, int status)
{
	struct qconn *qc = arg;
	struct qdeliv *d = qc->d;
	struct qtarget *qt = qc->qt;

	(void)c;
	qc->d = NULL;
	qdeliv_result(d, status);
	if (status != 0 || !smtp_client_reusable(qc->c) || qt->per_domain ||
	    qt->q->stopping)
		qconn_free(qc);
	else
		qconn_next(qc);
	qtarget_pump(qt);
}

/* One transaction of d on qc; the client's readers open the content. */
static void
qconn_send(struct qconn *qc, struct qdeliv *d)
{
	qdeliv_prepare(d);
	smtp_client_send(qc->c, &d->cmsg, qconn_done_cb, qc);
}

static void
qconn_start(struct qconn *qc, struct qdeliv *d)
{
	struct qtarget *qt = qc->qt;

	if (d->state == QD_READY)
		TAILQ_REMOVE(&qt->ready, d, entry);
	d->state = QD_ACTIVE;
	qc->d = d;
	if (qc->idle_timer != NULL)
		(void)evtimer_del(qc->idle_timer);
	(void)snprintf(d->peer, sizeof(d->peer), "%s", smtp_client_peer(qc->c));
	qconn_send(qc, d);
}

/* A connection with nothing to do takes the next ready delivery or idles. */
static void
qconn_next(struct qconn *qc)
{
	struct qtarget *qt = qc->qt;
	struct timeval tv = { QUEUE_IDLE_SECONDS, 0 };
	struct qdeliv *d = TAILQ_FIRST(&qt->ready);

	/* Every message start counts against the rate, reused or not. */
	if (d != NULL && !qt->q->stopping && qtarget_rate_ok(qt)) {
		d->msg->busy++;
		qt->q->busy++;
		qconn_start(qc, d);
		return;
	}
	if (qc->idle_timer == NULL)
		qc->idle_timer = evtimer_new(qt->q->base, qconn_idle_cb, qc);
	if (qc->idle_timer != NULL)
		(void)evtimer_add(qc->idle_timer, &tv);
}

/*
 * A connection could not be set up. The target (or, for mx "*", that
 * domain) is unreachable: defer, or fail, what was waiting for it.
 */
static void
qconn_open_failed(struct qconn *qc, bool temp, const char *reason)
{
	struct qtarget *qt = qc->qt;
	char text[QUEUE_REPLY_MAX];
	struct qdeliv *d;
	unsigned code = temp ? 451 : 550;

	(void)snprintf(text, sizeof(text), "%s %.450s",
	    temp ? "4.4.1" : "5.1.2", reason);
	log_info("target %s: %s", qt->t->name, reason);
	if (qc->bound != NULL) {
		d = qc->bound;
		qc->bound = NULL;
		qconn_free(qc);
		d->peer[0] = '\0';
		qdeliv_fail_all(d, code, text);
		return;
	}
	qconn_free(qc);
	/* Fixed next hop down: everything waiting for it waits again. */
	while ((d = TAILQ_FIRST(&qt->ready)) != NULL) {
		TAILQ_REMOVE(&qt->ready, d, entry);
		d->state = QD_ACTIVE;
		d->msg->busy++;
		qt->q->busy++;
		d->peer[0] = '\0';
		qdeliv_fail_all(d, code, text);
	}
}

static void
qconn_open_cb(void *arg, struct smtp_client *c, int status, bool temp,
    const char *reason)
{
	struct qconn *qc = arg;
	struct qtarget *qt = qc->qt;

	qt->nopening--;
	if (status != 0) {
		qc->c = NULL;
		qconn_open_failed(qc, temp,
		    reason != NULL ? reason : "connection failed");
		qtarget_pump(qt);
		return;
	}
	qc->c = c;
	qc->ready = true;
	if (qt->q->stopping) {
		if (qc->bound != NULL) {
			struct qdeliv *d = qc->bound;

			/* Not attempted: it waits for the next start. */
			d->state = QD_WAIT;
			d->msg->busy--;
			qt->q->busy--;
		}
		qconn_free(qc);
		return;
	}
	if (qc->bound != NULL) {
		struct qdeliv *d = qc->bound;

		qc->bound = NULL;
		qc->d = d;
		(void)snprintf(d->peer, sizeof(d->peer), "%s",
		    smtp_client_peer(c));
		qconn_send(qc, d);
		return;
	}
	qconn_next(qc);
	qtarget_pump(qt);
}

static struct qconn *
qconn_new(struct qtarget *qt, struct qdeliv *bound)
{
	struct smtp_client_params p;
	struct qconn *qc = xcalloc(1, sizeof(*qc));

	qc->qt = qt;
	qc->bound = bound;
	LIST_INSERT_HEAD(&qt->conns, qc, entry);
	qt->nopen++;
	qt->nopening++;
	memset(&p, 0, sizeof(p));
	p.base = qt->q->base;
	p.dns = qt->q->dns;
	p.target = qt->t;
	p.helo = qt->t->helo != NULL ? qt->t->helo : qt->q->hostname;
	p.rcpt_domain = bound != NULL ? bound->domain : NULL;
	p.readers = qt->q->readers;
	smtp_client_open(&p, qconn_open_cb, qc);
	return qc;
}

static void
qtarget_rate_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	qtarget_pump(arg);
}

/* True when the rate limit lets one more message start now. */
static bool
qtarget_rate_ok(struct qtarget *qt)
{
	struct timespec now;
	struct timeval tv;
	int64_t wait_us;

	if (qt->t->rate == 0)
		return true;
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	wait_us = (qt->next_start.tv_sec - now.tv_sec) * 1000000 +
	    (qt->next_start.tv_nsec - now.tv_nsec) / 1000;
	if (wait_us <= 0) {
		int64_t step = 60000000 / qt->t->rate;

		qt->next_start = now;
		qt->next_start.tv_sec += step / 1000000;
		qt->next_start.tv_nsec += (step % 1000000) * 1000;
		if (qt->next_start.tv_nsec >= 1000000000) {
			qt->next_start.tv_sec++;
			qt->next_start.tv_nsec -= 1000000000;
		}
		return true;
	}
	if (qt->rate_timer == NULL)
		qt->rate_timer = evtimer_new(qt->q->base, qtarget_rate_cb, qt);
	tv.tv_sec = wait_us / 1000000;
	tv.tv_usec = wait_us % 1000000;
	if (qt->rate_timer != NULL && !evtimer_pending(qt->rate_timer, NULL))
		(void)evtimer_add(qt->rate_timer, &tv);
	return false;
}

/* Starts what the target's concurrency and rate allow. */
void
qtarget_pump(struct qtarget *qt)
{
	const struct conf_target *t = qt->t;
	struct qdeliv *d;
	struct qconn *qc;
	unsigned nready = 0;

	if (qt->q->stopping)
		return;
	while ((d = TAILQ_FIRST(&qt->ready)) != NULL) {
		if (t->type == CONF_TARGET_MAILDIR) {
			if (qt->nopen >= t->connections || !qtarget_rate_ok(qt))
				return;
			TAILQ_REMOVE(&qt->ready, d, entry);
			d->state = QD_ACTIVE;
			d->msg->busy++;
			qt->q->busy++;
			qt->nopen++;
			qdeliv_prepare(d);
			workers_submit(qt->q->w, qdeliv_maildir_job,
			    qdeliv_maildir_done, d);
			continue;
		}
		/* An idle pooled connection first. */
		LIST_FOREACH(qc, &qt->conns, entry)
			if (qc->ready && qc->d == NULL && qc->bound == NULL)
				break;
		if (qc != NULL && !qt->per_domain) {
			if (!qtarget_rate_ok(qt))
				return;
			d->msg->busy++;
			qt->q->busy++;
			qconn_start(qc, d);
			continue;
		}
		if (qt->nopen >= t->connections)
			return;
		if (qt->per_domain) {
			if (!qtarget_rate_ok(qt))
				return;
			TAILQ_REMOVE(&qt->ready, d, entry);
			d->state = QD_ACTIVE;
			d->msg->busy++;
			qt->q->busy++;
			(void)qconn_new(qt, d);
			continue;
		}
		/* Open no more connections than there is waiting work. */
		TAILQ_FOREACH(d, &qt->ready, entry)
			if (++nready > qt->nopening)
				break;
		if (nready <= qt->nopening)
			return;
		(void)qconn_new(qt, NULL);
		nready = 0;
	}
}
