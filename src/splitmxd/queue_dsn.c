/*
 * queue_dsn.c - bounces and delay warnings (RFC 3464) from the queue.
 *
 * The recipients a DSN reports are copied on the loop thread; a worker
 * reads the original (bounded, through the spool's read side) and
 * composes it with dsn_compose; the DSN is then spooled as a new message
 * and the original's record ("bounced", "warned") journaled.
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

static bool qrcpt_wants_delay_dsn(const struct qmsg *m, const struct qrcpt *r);
static const char *qdsn_keep(struct qdsn_job *j, const char *s);
static void qdsn_job_free(struct qdsn_job *j);
static void qdsn_commit_cb(void *arg, int status, const char *id,
    const char *err);
static void qdsn_retry_cb(evutil_socket_t fd, short what, void *arg);

/*
 * A DSN in the making. The recipient list is copied on the loop thread, so
 * the worker that reads the original and composes never looks at state the
 * loop may be changing.
 */
struct qdsn_job {
	struct qmsg *m;
	bool delayed; /* a delay warning, not a bounce */
	struct dsn_rcpt *dr;
	size_t n;
	char **strs; /* copies the dr point into */
	size_t nstrs;
	char (*status)[16];
	struct sbuf out;
	int rc;
};

/*
 * The sender-facing outcome is decided per recipient, not per copy: the
 * name of a target of m where r's recipient (as received) was delivered,
 * or is held by the copy that claimed it there; NULL when none.
 */
const char *
qrcpt_reached_at(const struct qmsg *m, const struct qrcpt *r)
{
	size_t i, k;

	for (i = 0; i < m->ndelivs; i++)
		for (k = 0; k < m->delivs[i]->nrcpts; k++) {
			const struct qrcpt *o = &m->delivs[i]->rcpts[k];

			if ((o->state == QR_DELIVERED ||
			        o->state == QR_DUPLICATE) &&
			    strcmp(o->orig, r->orig) == 0)
				return m->delivs[i]->qt->t->name;
		}
	return NULL;
}

/*
 * A failure DSN only when no target delivered the recipient (and none
 * still can: the message is not finished while one is pending).
 */
bool
qrcpt_wants_failure_dsn(const struct qmsg *m, const struct qrcpt *r)
{
	return r->state == QR_FAILED &&
	    (r->notify == 0 || (r->notify & SMTP_PROTO_NOTIFY_FAILURE) != 0) &&
	    qrcpt_reached_at(m, r) == NULL;
}

/*
 * RFC 3461: without NOTIFY the MTA may warn about delays; we do, unless
 * another target already delivered the recipient.
 */
static bool
qrcpt_wants_delay_dsn(const struct qmsg *m, const struct qrcpt *r)
{
	return r->state == QR_PENDING &&
	    (r->notify == 0 || (r->notify & SMTP_PROTO_NOTIFY_DELAY) != 0) &&
	    qrcpt_reached_at(m, r) == NULL;
}

static const char *
qdsn_keep(struct qdsn_job *j, const char *s)
{
	if (s == NULL)
		return NULL;
	j->strs = xreallocarray(j->strs, j->nstrs + 1, sizeof(*j->strs));
	j->strs[j->nstrs] = xstrdup(s);
	return j->strs[j->nstrs++];
}

struct qdsn_job *
qdsn_job_new(struct qmsg *m, bool delayed)
{
	struct qdsn_job *j = xcalloc(1, sizeof(*j));
	size_t i, k, n = 0;

	j->m = m;
	j->delayed = delayed;
	for (i = 0; i < m->ndelivs; i++)
		n += m->delivs[i]->nrcpts;
	j->dr = xcalloc(n ? n : 1, sizeof(*j->dr));
	j->status = xcalloc(n ? n : 1, sizeof(*j->status));
	for (i = 0; i < m->ndelivs; i++) {
		struct qdeliv *d = m->delivs[i];

		for (k = 0; k < d->nrcpts; k++) {
			struct qrcpt *rc = &d->rcpts[k];
			struct dsn_rcpt *dr = &j->dr[j->n];

			if (delayed ? !qrcpt_wants_delay_dsn(m, rc) :
			              !qrcpt_wants_failure_dsn(m, rc))
				continue;
			dsn_status_from_reply(rc->code ? rc->code :
			                                 (delayed ? 451 : 550),
			    rc->reply, j->status[j->n],
			    sizeof(j->status[j->n]));
			dr->final_rcpt = qdsn_keep(j, rc->addr);
			dr->orcpt = qdsn_keep(j, rc->orcpt);
			dr->action = delayed ? DSN_ACTION_DELAYED :
			                       DSN_ACTION_FAILED;
			dr->status = j->status[j->n];
			dr->remote_mta = d->peer[0] ? qdsn_keep(j, d->peer) :
			                              NULL;
			dr->diagnostic = rc->reply[0] ?
			    qdsn_keep(j, rc->reply) :
			    NULL;
			dr->target = qdsn_keep(j, d->qt->t->name);
			j->n++;
		}
	}
	sbuf_init(&j->out, 16 * 1024 * 1024);
	return j;
}

static void
qdsn_job_free(struct qdsn_job *j)
{
	size_t i;

	for (i = 0; i < j->nstrs; i++)
		free(j->strs[i]);
	free(j->strs);
	free(j->dr);
	free(j->status);
	sbuf_release(&j->out);
	free(j);
}

/* Worker: reads the original (bounded) and composes the DSN. */
void
qdsn_compose_job(void *arg)
{
	struct qdsn_job *j = arg;
	struct qmsg *m = j->m;
	struct spool_content *c;
	struct dsn_info info;
	size_t cap, got = 0;
	char *orig;
	ssize_t r;

	cap = m->size < QUEUE_DSN_RETURN_MAX ? (size_t)m->size :
	                                       QUEUE_DSN_RETURN_MAX;
	orig = xmalloc(cap + 1);
	/* Unreadable now: the DSN goes out without the original. */
	c = spool_content_reopen(m->q->rd, m->id, m->off, m->size, m->sha,
	    NULL);
	while (c != NULL && got < cap) {
		r = spool_content_read(c, got, orig + got, cap - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	spool_content_close(c);
	memset(&info, 0, sizeof(info));
	info.reporting_mta = m->q->hostname;
	info.queue_id = m->id;
	info.envid = m->env.envid;
	info.arrival = m->env.arrival.tv_sec;
	info.now = time(NULL);
	info.orig_sender = m->env.sender;
	info.rcpts = j->dr;
	info.nrcpts = j->n;
	info.orig = orig;
	info.orig_len = got;
	info.return_full = !j->delayed && m->env.ret == SMTP_PROTO_RET_FULL;
	info.return_max = QUEUE_DSN_RETURN_MAX;
	j->rc = dsn_compose(&j->out, &info);
	free(orig);
}

static void
qdsn_commit_cb(void *arg, int status, const char *id, const char *err)
{
	struct qdsn_job *j = arg;
	struct qmsg *m = j->m;
	bool delayed = j->delayed;
	struct spool_jrec_out w;
	struct sbuf lines;

	qdsn_job_free(j);
	m->busy--;
	m->q->busy--;
	if (status != 0) {
		log_warnx("%s: cannot queue the %s: %s%s", m->id,
		    delayed ? "delay warning" : "DSN",
		    err != NULL ? err : "error", delayed ? "" : "; will retry");
		if (!delayed)
			m->finishing = false;
		qmsg_check_done(m);
		return;
	}
	queue_add(m->q, id);
	if (delayed) {
		log_info("%s: sender delay notification: %s", m->id, id);
		sbuf_init(&lines, 4096);
		queue_jbegin(&w, &lines, "warned", m);
		spool_jrec_token(&w, "dsn", id);
		queue_jend(&w, m);
		queue_journal(m, &lines, NULL);
		sbuf_release(&lines);
		qmsg_check_done(m);
		return;
	}
	log_info("%s: sender non-delivery notification: %s", m->id, id);
	qmsg_remove(m, id);
}

static void
qdsn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmsg *m = arg;

	(void)fd;
	(void)what;
	m->finishing = false;
	qmsg_check_done(m);
}

void
qdsn_composed(void *arg)
{
	struct qdsn_job *j = arg;
	struct qmsg *m = j->m;
	struct spool_envelope env;
	struct spool_rcpt rcpt;
	struct spool_msg *sm;
	struct sbuf err;
	struct timeval tv = { 0, 0 };
	char empty[1] = "", listener[] = "local", caddr[] = "127.0.0.1";
	char cname[] = "localhost", proto[] = "DSN";

	m->busy--;
	m->q->busy--;
	memset(&env, 0, sizeof(env));
	memset(&rcpt, 0, sizeof(rcpt));
	rcpt.addr = m->env.sender;
	env.sender = empty;
	env.rcpts = &rcpt;
	env.nrcpts = 1;
	(void)clock_gettime(CLOCK_REALTIME, &env.arrival);
	env.listener = listener;
	env.client_addr = caddr;
	env.client_name = cname;
	env.helo = m->q->hostname;
	env.protocol = proto;
	sbuf_init(&err, 256);
	sm = j->rc == 0 && !m->q->stopping ?
	    spool_msg_new(m->q->spool, &env, &err) :
	    NULL;
	if (sm == NULL ||
	    spool_msg_append(sm, j->out.data, j->out.len, &err) == -1) {
		bool delayed = j->delayed;

		if (sm != NULL)
			spool_msg_abort(sm);
		log_warnx("%s: cannot create the %s: %s", m->id,
		    delayed ? "delay warning" : "DSN",
		    err.len > 0        ? err.data :
		        m->q->stopping ? "stopping" :
		                         "compose failed");
		sbuf_release(&err);
		qdsn_job_free(j);
		if (delayed || m->q->stopping) {
			qmsg_check_done(m);
			return;
		}
		tv.tv_sec = m->q->conf->queue.retry_initial;
		if (m->retry_timer == NULL)
			m->retry_timer = evtimer_new(m->q->base, qdsn_retry_cb,
			    m);
		if (m->retry_timer != NULL)
			(void)evtimer_add(m->retry_timer, &tv);
		return;
	}
	sbuf_release(&err);
	m->busy++;
	m->q->busy++;
	spool_msg_commit(sm, NULL, qdsn_commit_cb, j);
}

/*
 * Delay warning (optional): once per message, after delay_warning, to a
 * real sender, naming the recipients still waiting.
 */
void
qmsg_maybe_warn(struct qmsg *m)
{
	struct queue *q = m->q;
	bool any = false;
	size_t i, k;

	if (q->conf->queue.delay_warning == 0 || m->warned || m->finishing ||
	    q->stopping || m->env.sender[0] == '\0' ||
	    time(NULL) <
	        m->env.arrival.tv_sec + (time_t)q->conf->queue.delay_warning)
		return;
	for (i = 0; i < m->ndelivs && !any; i++)
		for (k = 0; k < m->delivs[i]->nrcpts; k++)
			if (qrcpt_wants_delay_dsn(m, &m->delivs[i]->rcpts[k]))
				any = true;
	if (!any)
		return;
	m->warned = true;
	m->busy++;
	q->busy++;
	workers_submit(q->w, qdsn_compose_job, qdsn_composed,
	    qdsn_job_new(m, true));
}
