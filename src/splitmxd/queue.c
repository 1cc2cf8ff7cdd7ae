/*
 * queue.c - the delivery scheduler.
 *
 * Owns the in-memory index of committed messages: for each message, one
 * delivery per target (struct qdeliv) with that target's recipients. Each
 * target has a ready list, a pool of connections (or maildir jobs) bounded
 * by its concurrency, and an optional start rate. Results are journaled
 * through spool_journal_append before they count; when every recipient of
 * a message is final, failures go back to the sender as one DSN and the
 * file is removed. Runs on the loop thread only; blocking steps (loading
 * and checksumming a file, maildir writes, reading a message for a DSN)
 * go to the workers.
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

#define QUEUE_HASH_SIZE		4093
#define QUEUE_IDLE_SECONDS	5	/* an idle connection is closed after */
#define QUEUE_DSN_RETURN_MAX	(64 * 1024)
#define QUEUE_REPLY_MAX		512
#define QUEUE_JESC		" ,="	/* escaped in journal values */

/* QR_DUPLICATE: this target already had this message for this recipient. */
enum qr_state { QR_PENDING, QR_DELIVERED, QR_FAILED, QR_DUPLICATE };
enum qd_state { QD_WAIT, QD_READY, QD_ACTIVE, QD_DONE };

struct qmsg;
struct qtarget;

struct qrcpt {
	char		*orig;		/* the envelope recipient as received */
	char		*addr;		/* as this target receives it */
	char		*jorig;		/* orig, journal-escaped (restore key) */
	unsigned	 notify;
	char		*orcpt;
	enum qr_state	 state;
	unsigned	 code;
	char		 reply[QUEUE_REPLY_MAX];
	char		 dup_of[SPOOL_ID_LEN + 1];	/* from the dedup job */
};

struct qdeliv {
	TAILQ_ENTRY(qdeliv)	 entry;		/* target's ready list */
	struct qmsg		*msg;
	struct qtarget		*qt;
	struct qrcpt		*rcpts;
	size_t			 nrcpts;
	enum qd_state		 state;
	unsigned		 attempts;
	struct event		*timer;
	char			 domain[SMTP_PROTO_DOMAIN_MAX + 1]; /* mx "*" */
	char			 peer[300];	/* where it went last */
	char			*srs_sender;	/* SRS-rewritten MAIL FROM */
	/* During a transaction. */
	struct smtp_client_rcpt	*crcpts;
	size_t			*cidx;		/* crcpts[i] is rcpts[cidx[i]] */
	size_t			 ncrcpts;
	struct smtp_client_msg	 cmsg;
	struct sbuf		 merr;		/* maildir error */
	int			 mstatus;
};

struct restored {
	struct restored	*next;
	char		*target;	/* journal-escaped target name */
	char		*rcpt;		/* journal-escaped orig rcpt */
	bool		 delivered;
};

struct qmsg {
	struct qmsg		*hnext;
	struct queue		*q;
	char			 id[SPOOL_ID_LEN + 1];
	bool			 expected_only;	/* restore placeholder */
	bool			 loaded;
	bool			 finishing;
	bool			 removed_restored;
	bool			 bounced_restored;
	struct restored		*restored;
	struct spool_envelope	 env;
	char			*path;
	uint64_t		 off;
	uint64_t		 size;
	struct qdeliv		**delivs;
	size_t			 ndelivs;
	unsigned		 busy;		/* jobs and journal writes */
	/* Load job results. */
	struct sbuf		 lerr;
	int			 lstatus;
	bool			 corrupt;
	bool			 warned;	/* delay warning sent */
	struct event		*retry_timer;
	/* Duplicates and loops (from the load job). */
	char			*msgkey;	/* dedup message key, or NULL */
	bool			 returning;	/* carries an earlier trace */
	unsigned		 traces;
	unsigned		 delivered_now;	/* 2xx in this process */
};

struct qconn {
	LIST_ENTRY(qconn)	 entry;
	struct qtarget		*qt;
	struct smtp_client	*c;
	struct qdeliv		*d;		/* transaction in progress */
	struct qdeliv		*bound;		/* mx "*": its only delivery */
	struct event		*idle_timer;
	bool			 ready;
};

struct qtarget {
	struct queue			*q;
	size_t				 idx;
	const struct conf_target	*t;
	TAILQ_HEAD(, qdeliv)		 ready;
	LIST_HEAD(, qconn)		 conns;
	unsigned			 nopen;		/* conns or maildir jobs */
	unsigned			 nopening;
	struct timespec			 next_start;	/* rate limit */
	struct event			*rate_timer;
	bool				 per_domain;	/* mx "*" */
};

struct queue {
	struct event_base	*base;
	const struct conf	*conf;
	struct spool		*spool;
	struct workers		*w;
	struct dns		*dns;
	struct dedup		*dedup;		/* NULL: duplicates allowed */
	const struct auth_srs	*srs;		/* NULL: no SRS */
	struct qrecord_job	*rec_pending;	/* collecting */
	bool			 rec_inflight;	/* a batch is being written */
	struct event		*expire_timer;
	char			*hostname;
	struct qtarget		*targets;
	struct qmsg		*hash[QUEUE_HASH_SIZE];
	unsigned		 nmsgs;
	unsigned		 busy;
	bool			 stopping;
};

static void qtarget_pump(struct qtarget *);
static void qmsg_check_done(struct qmsg *);
static void qdeliv_result(struct qdeliv *, int);
static void qmsg_maybe_warn(struct qmsg *);
static void qdeliv_remember(struct qdeliv *);

/* Index. */

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

static char *
queue_jesc(const char *s)
{
	struct sbuf sb;
	char *r;

	sbuf_init(&sb, 4 * SMTP_PROTO_PATH_MAX + 64);
	(void)sbuf_append_escaped(&sb, s, strlen(s), QUEUE_JESC, false);
	r = xstrdup(sb.data);
	sbuf_release(&sb);
	return r;
}

/* Mail from a target's outbound host is returning mail. */
static bool
queue_trusted(const struct queue *q, const char *addr)
{
	size_t i;

	for (i = 0; addr != NULL && i < q->conf->ntrusted_hosts; i++)
		if (strcmp(q->conf->trusted_hosts[i], addr) == 0)
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
			free(d->rcpts[j].jorig);
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
	free(m->delivs);
	free(m->path);
	free(m->msgkey);
	spool_envelope_clear(&m->env);
	sbuf_release(&m->lerr);
	free(m);
}

static void
qmsg_unlink(struct qmsg *m)
{
	struct qmsg **pp = queue_find(m->q, m->id);

	if (*pp == m) {
		*pp = m->hnext;
		m->q->nmsgs--;
	}
	qmsg_free(m);
}

/* Journal. */

static void
queue_jline(struct sbuf *sb, const char *verb, const struct qmsg *m)
{
	char ts[40];

	spool_timestamp(ts, sizeof(ts));
	(void)sbuf_printf(sb, "%s %s id=%s", ts, verb, m->id);
}

static void
queue_jkv(struct sbuf *sb, const char *key, const char *val, bool angle)
{
	(void)sbuf_printf(sb, " %s=%s", key, angle ? "<" : "");
	(void)sbuf_append_escaped(sb, val, strlen(val), QUEUE_JESC, false);
	if (angle)
		(void)sbuf_append_char(sb, '>');
}

static void
queue_journal_done(void *arg, int status)
{
	struct qmsg *m = arg;

	if (status != 0)
		log_warnx("%s: delivery records not journaled; they will be "
		    "repeated after a restart", m->id);
	m->busy--;
	m->q->busy--;
	qmsg_check_done(m);
}

static void
queue_journal(struct qmsg *m, struct sbuf *lines, const char *remove_id)
{
	m->busy++;
	m->q->busy++;
	spool_journal_append(m->q->spool, lines->data, lines->len, remove_id,
	    queue_journal_done, m);
}

/* Scheduling. */

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
	struct sbuf lines;
	size_t i;

	if (!qdeliv_pending(d)) {
		d->state = QD_DONE;
		return;
	}
	d->attempts++;
	if (now >= d->msg->env.arrival.tv_sec + (time_t)q->conf->queue.lifetime) {
		sbuf_init(&lines, 1 << 20);
		for (i = 0; i < d->nrcpts; i++) {
			struct qrcpt *r = &d->rcpts[i];
			char last[QUEUE_REPLY_MAX];

			if (r->state != QR_PENDING)
				continue;
			(void)snprintf(last, sizeof(last), "%s", r->reply[0] ?
			    r->reply : reason);
			r->state = QR_FAILED;
			r->code = 450;
			(void)snprintf(r->reply, sizeof(r->reply), "4.4.7 "
			    "delivery time expired; last: %.400s", last);
			queue_jline(&lines, "failed", d->msg);
			queue_jkv(&lines, "target", d->qt->t->name, false);
			queue_jkv(&lines, "rcpt", r->orig, true);
			queue_jkv(&lines, "reply", r->reply, false);
			(void)sbuf_append_char(&lines, '\n');
			log_info("%s: to=<%s> target=%s status=expired (%s)",
			    d->msg->id, r->addr, d->qt->t->name, last);
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
		} else
			verb = "deferred";
		log_info("%s: to=<%s> target=%s relay=%s status=%s (%s)",
		    d->msg->id, r->addr, d->qt->t->name, d->peer[0] ?
		    d->peer : "none", verb, r->reply);
		queue_jline(&lines, verb, d->msg);
		queue_jkv(&lines, "target", d->qt->t->name, false);
		queue_jkv(&lines, "rcpt", r->orig, true);
		queue_jkv(&lines, "to", r->addr, true);
		if (d->peer[0] != '\0')
			queue_jkv(&lines, "relay", d->peer, false);
		if (r->state == QR_PENDING)
			(void)sbuf_printf(&lines, " attempt=%u next=%lld",
			    d->attempts + 1, (long long)next);
		queue_jkv(&lines, "reply", r->reply, false);
		(void)sbuf_append_char(&lines, '\n');
	}
	queue_journal(d->msg, &lines, NULL);
	sbuf_release(&lines);
}

/* Builds the client's view of the pending recipients. */
static void
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
	d->cmsg.path = m->path;
	d->cmsg.prepend = m->env.prepend;
	d->cmsg.content_off = m->off;
	d->cmsg.content_size = m->size;
	d->cmsg.sender = m->env.sender;
	/*
	 * SRS toward targets that check SPF: the envelope sender becomes an
	 * address at our SRS domain, so SPF there checks this relay.
	 */
	if (d->qt->t->srs && m->q->srs != NULL && m->env.sender[0] != '\0') {
		char out[AUTH_SRS_ADDR_BUFSIZE];
		const char *err = NULL;

		if (d->srs_sender == NULL && auth_srs_forward(m->q->srs,
		    m->env.sender, time(NULL), out, sizeof(out), &err) == 0)
			d->srs_sender = xstrdup(out);
		else if (d->srs_sender == NULL && err != NULL)
			log_info("%s: sender not SRS-rewritten: %s", m->id, err);
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
static void
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
static void
qdeliv_result(struct qdeliv *d, int status)
{
	struct qmsg *m = d->msg;
	const char *reason = d->ncrcpts > 0 ? d->crcpts[0].reply : "error";

	(void)status;
	qdeliv_record(d);
	qdeliv_remember(d);
	qdeliv_after_attempt(d, reason);
	m->busy--;
	m->q->busy--;
	qmsg_check_done(m);
}

/* Maildir targets. */

static void
qdeliv_maildir_job(void *arg)
{
	struct qdeliv *d = arg;
	const char **rcpts;
	size_t i;

	rcpts = xcalloc(d->ncrcpts + 1, sizeof(*rcpts));
	for (i = 0; i < d->ncrcpts; i++)
		rcpts[i] = d->crcpts[i].addr;
	sbuf_reset(&d->merr);
	d->mstatus = maildir_deliver(d->qt->t->path, d->msg->path,
	    d->msg->off, d->msg->size, d->msg->env.sender,
	    (const char *const *)rcpts, d->ncrcpts, d->msg->id,
	    d->msg->env.prepend, &d->merr);
	free(rcpts);
}

static void
qdeliv_maildir_done(void *arg)
{
	struct qdeliv *d = arg;
	struct qtarget *qt = d->qt;
	size_t i;

	for (i = 0; i < d->ncrcpts; i++) {
		d->crcpts[i].code = d->mstatus == 0 ? 250 : 451;
		(void)snprintf(d->crcpts[i].reply, sizeof(d->crcpts[i].reply),
		    d->mstatus == 0 ? "2.0.0 delivered to maildir" :
		    "4.3.0 maildir: %.400s", d->merr.data);
	}
	(void)snprintf(d->peer, sizeof(d->peer), "maildir");
	qt->nopen--;
	qdeliv_result(d, d->mstatus);
	qtarget_pump(qt);
}

/* SMTP/LMTP targets. */

static void qconn_open_cb(void *, struct smtp_client *, int, bool,
    const char *);

static void
qconn_free(struct qconn *qc)
{
	LIST_REMOVE(qc, entry);
	qc->qt->nopen--;
	if (qc->idle_timer != NULL)
		event_free(qc->idle_timer);
	if (qc->c != NULL)
		smtp_client_close(qc->c);
	else	/* still opening: its callback must never find qc */
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

static void qconn_next(struct qconn *);
static bool qtarget_rate_ok(struct qtarget *);

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
	qdeliv_prepare(d);
	smtp_client_send(qc->c, &d->cmsg, qconn_done_cb, qc);
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

	(void)snprintf(text, sizeof(text), "%s %.450s", temp ? "4.4.1" :
	    "5.1.2", reason);
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
		qconn_open_failed(qc, temp, reason != NULL ? reason :
		    "connection failed");
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
		qdeliv_prepare(d);
		smtp_client_send(c, &d->cmsg, qconn_done_cb, qc);
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
static void
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

/* DSNs. */

/*
 * A DSN in the making. The recipient list is copied on the loop thread, so
 * the worker that reads the original and composes never looks at state the
 * loop may be changing.
 */
struct qdsn_job {
	struct qmsg		*m;
	bool			 delayed;	/* a delay warning, not a bounce */
	struct dsn_rcpt		*dr;
	size_t			 n;
	char			**strs;		/* copies the dr point into */
	size_t			 nstrs;
	char			(*status)[16];
	struct sbuf		 out;
	int			 rc;
};

static bool
qrcpt_wants_failure_dsn(const struct qrcpt *r)
{
	return r->state == QR_FAILED && (r->notify == 0 ||
	    (r->notify & SMTP_PROTO_NOTIFY_FAILURE) != 0);
}

/* RFC 3461: without NOTIFY the MTA may warn about delays; we do. */
static bool
qrcpt_wants_delay_dsn(const struct qrcpt *r)
{
	return r->state == QR_PENDING && (r->notify == 0 ||
	    (r->notify & SMTP_PROTO_NOTIFY_DELAY) != 0);
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

static struct qdsn_job *
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

			if (delayed ? !qrcpt_wants_delay_dsn(rc) :
			    !qrcpt_wants_failure_dsn(rc))
				continue;
			dsn_status_from_reply(rc->code ? rc->code :
			    (delayed ? 451 : 550), rc->reply, j->status[j->n],
			    sizeof(j->status[j->n]));
			dr->final_rcpt = qdsn_keep(j, rc->addr);
			dr->orcpt = qdsn_keep(j, rc->orcpt);
			dr->action = delayed ? DSN_ACTION_DELAYED :
			    DSN_ACTION_FAILED;
			dr->status = j->status[j->n];
			dr->remote_mta = d->peer[0] ? qdsn_keep(j, d->peer) :
			    NULL;
			dr->diagnostic = rc->reply[0] ? qdsn_keep(j, rc->reply) :
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
static void
qdsn_compose_job(void *arg)
{
	struct qdsn_job *j = arg;
	struct qmsg *m = j->m;
	struct dsn_info info;
	size_t cap, got = 0;
	char *orig;
	ssize_t r;
	int fd;

	cap = m->size < QUEUE_DSN_RETURN_MAX ? (size_t)m->size :
	    QUEUE_DSN_RETURN_MAX;
	orig = xmalloc(cap + 1);
	fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	while (fd != -1 && got < cap) {
		r = pread(fd, orig + got, cap - got, (off_t)(m->off + got));
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (fd != -1)
		(void)close(fd);	/* read-only: nothing to lose */
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

static void qmsg_remove(struct qmsg *, const char *);

static void
qdsn_commit_cb(void *arg, int status, const char *id, const char *err)
{
	struct qdsn_job *j = arg;
	struct qmsg *m = j->m;
	bool delayed = j->delayed;
	struct sbuf lines;

	qdsn_job_free(j);
	m->busy--;
	m->q->busy--;
	if (status != 0) {
		log_warnx("%s: cannot queue the %s: %s%s", m->id, delayed ?
		    "delay warning" : "DSN", err != NULL ? err : "error",
		    delayed ? "" : "; will retry");
		if (!delayed)
			m->finishing = false;
		qmsg_check_done(m);
		return;
	}
	queue_add(m->q, id);
	if (delayed) {
		log_info("%s: sender delay notification: %s", m->id, id);
		sbuf_init(&lines, 4096);
		queue_jline(&lines, "warned", m);
		(void)sbuf_printf(&lines, " dsn=%s\n", id);
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

static void
qdsn_composed(void *arg)
{
	struct qdsn_job *j = arg;
	struct qmsg *m = j->m;
	struct spool_envelope env;
	struct spool_rcpt rcpt;
	struct spool_msg *sm;
	const char *err = NULL;
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
	sm = j->rc == 0 && !m->q->stopping ?
	    spool_msg_new(m->q->spool, &env, &err) : NULL;
	if (sm == NULL || spool_msg_append(sm, j->out.data, j->out.len,
	    &err) == -1) {
		bool delayed = j->delayed;

		if (sm != NULL)
			spool_msg_abort(sm);
		log_warnx("%s: cannot create the %s: %s", m->id, delayed ?
		    "delay warning" : "DSN", err != NULL ? err :
		    m->q->stopping ? "stopping" : "compose failed");
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
	m->busy++;
	m->q->busy++;
	spool_msg_commit(sm, NULL, qdsn_commit_cb, j);
}

/*
 * Delay warning (optional): once per message, after delay_warning, to a
 * real sender, naming the recipients still waiting.
 */
static void
qmsg_maybe_warn(struct qmsg *m)
{
	struct queue *q = m->q;
	bool any = false;
	size_t i, k;

	if (q->conf->queue.delay_warning == 0 || m->warned || m->finishing ||
	    q->stopping || m->env.sender[0] == '\0' ||
	    time(NULL) < m->env.arrival.tv_sec +
	    (time_t)q->conf->queue.delay_warning)
		return;
	for (i = 0; i < m->ndelivs && !any; i++)
		for (k = 0; k < m->delivs[i]->nrcpts; k++)
			if (qrcpt_wants_delay_dsn(&m->delivs[i]->rcpts[k]))
				any = true;
	if (!any)
		return;
	m->warned = true;
	m->busy++;
	q->busy++;
	workers_submit(q->w, qdsn_compose_job, qdsn_composed,
	    qdsn_job_new(m, true));
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

static void
qmsg_remove(struct qmsg *m, const char *dsn_id)
{
	struct sbuf lines;

	sbuf_init(&lines, 4096);
	if (dsn_id != NULL) {
		queue_jline(&lines, "bounced", m);
		(void)sbuf_printf(&lines, " dsn=%s\n", dsn_id);
	}
	if (m->returning && m->delivered_now == 0 && m->ndelivs > 0) {
		/* Every target had it: accepted and dropped, never bounced. */
		log_info("%s: loop: every target already had this message; "
		    "dropped", m->id);
		queue_jline(&lines, "looped", m);
		(void)sbuf_append_char(&lines, '\n');
	}
	queue_jline(&lines, "removed", m);
	(void)sbuf_append_char(&lines, '\n');
	m->q->busy++;
	spool_journal_append(m->q->spool, lines.data, lines.len, m->id,
	    qmsg_remove_done, m);
	sbuf_release(&lines);
}

/* When nothing is in flight and every delivery is final, finish. */
static void
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
			if (qrcpt_wants_failure_dsn(&m->delivs[i]->rcpts[j]))
				dsn = true;
		}
	}
	if (m->ndelivs == 0)
		return;		/* held: no target applies */
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

/* Loading. */

static struct qdeliv *
qmsg_deliv(struct qmsg *m, struct qtarget *qt, const char *domain)
{
	struct qdeliv *d;
	size_t i;

	for (i = 0; i < m->ndelivs; i++) {
		d = m->delivs[i];
		if (d->qt == qt && (!qt->per_domain ||
		    strcasecmp(d->domain, domain) == 0))
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
qmsg_restored(const struct qmsg *m, const char *jtarget, const char *jrcpt)
{
	const struct restored *r;

	for (r = m->restored; r != NULL; r = r->next)
		if (strcmp(r->target, jtarget) == 0 &&
		    strcmp(r->rcpt, jrcpt) == 0)
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

		n = router_route(q->conf, er->addr, hops, ROUTER_MAX_HOPS, &why);
		if (n == 0)
			log_warnx("%s: no target for <%s>: held in the queue",
			    m->id, er->addr);
		for (j = 0; j < n; j++) {
			struct qtarget *qt = &q->targets[hops[j].target];
			struct qdeliv *d;
			struct qrcpt *r;
			char *jt;

			at = strrchr(hops[j].rcpt, '@');
			d = qmsg_deliv(m, qt, at != NULL ? at + 1 : "");
			d->rcpts = xreallocarray(d->rcpts, d->nrcpts + 1,
			    sizeof(*d->rcpts));
			r = &d->rcpts[d->nrcpts++];
			memset(r, 0, sizeof(*r));
			r->orig = xstrdup(er->addr);
			r->addr = xstrdup(hops[j].rcpt);
			r->jorig = queue_jesc(er->addr);
			r->notify = er->notify;
			r->orcpt = er->orcpt != NULL ? xstrdup(er->orcpt) : NULL;
			jt = queue_jesc(qt->t->name);
			rs = qmsg_restored(m, jt, r->jorig);
			free(jt);
			if (rs != NULL) {
				r->state = rs->delivered ? QR_DELIVERED :
				    QR_FAILED;
				r->code = rs->delivered ? 250 : 550;
				(void)snprintf(r->reply, sizeof(r->reply),
				    "%s before restart", rs->delivered ?
				    "2.0.0 delivered" : "5.0.0 failed");
			}
		}
	}
}

/* Puts every delivery with pending recipients on its target's ready list. */
static void
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

/*
 * Worker: which (recipient, target) pairs already had this message, in an
 * earlier message with the same key (a sender's retry, a second MX path,
 * a copy returning through a target).
 */
static void
qmsg_dedup_job(void *arg)
{
	struct qmsg *m = arg;
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

static void
qmsg_dedup_done(void *arg)
{
	struct qmsg *m = arg;
	struct sbuf lines;
	size_t i, j;
	unsigned dups = 0;

	m->busy--;
	m->q->busy--;
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
				queue_jline(&lines, "delivered", m);
				queue_jkv(&lines, "target", d->qt->t->name,
				    false);
				queue_jkv(&lines, "rcpt", r->orig, true);
				queue_jkv(&lines, "to", r->addr, true);
				queue_jkv(&lines, "reply", r->reply, false);
				(void)sbuf_append_char(&lines, '\n');
				dups++;
				continue;
			}
			r->state = QR_DUPLICATE;
			r->code = 250;
			(void)snprintf(r->reply, sizeof(r->reply),
			    "2.0.0 duplicate of %s", r->dup_of);
			dups++;
			log_info("%s: to=<%s> target=%s status=duplicate "
			    "(first delivered as %s)%s", m->id, r->addr,
			    d->qt->t->name, r->dup_of, m->returning ?
			    " loop: the message came back" : "");
			queue_jline(&lines, "duplicate", m);
			queue_jkv(&lines, "target", d->qt->t->name, false);
			queue_jkv(&lines, "rcpt", r->orig, true);
			(void)sbuf_printf(&lines, " first=%s%s\n", r->dup_of,
			    m->returning ? " loop=yes" : "");
		}
	}
	if (dups > 0)
		queue_journal(m, &lines, NULL);
	sbuf_release(&lines);
	qmsg_schedule(m);
	qmsg_check_done(m);
}

/* After routing: weed out duplicates (on a worker), then schedule. */
static void
qmsg_start(struct qmsg *m)
{
	if (m->q->dedup == NULL || m->msgkey == NULL) {
		qmsg_schedule(m);
		return;
	}
	m->busy++;
	m->q->busy++;
	workers_submit(m->q->w, qmsg_dedup_job, qmsg_dedup_done, m);
}

/*
 * Remembers what was delivered, so a later copy is not sent again.
 * Records from many deliveries share one write transaction (one fsync):
 * while a batch is being written the next one collects.
 */
struct qrecord_job {
	struct queue		*q;
	struct dedup_rec	*recs;
	char			**strs;		/* 2 per record */
	struct qmsg		**msgs;		/* whose busy each record holds */
	size_t			 n;
	size_t			 cap;
};

static void qrecord_kick(struct queue *);

static void
qrecord_job(void *arg)
{
	struct qrecord_job *j = arg;
	struct sbuf err;

	sbuf_init(&err, 256);
	if (dedup_record_many(j->q->dedup, j->recs, j->n, time(NULL),
	    &err) == -1)
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

static void
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
		rec->key.msgkey = m->msgkey;	/* m lives until done */
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

/* Worker: header, size and SHA-256 (DESIGN rule 5) before any delivery. */
static void
qmsg_load_job(void *arg)
{
	struct qmsg *m = arg;
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	char sha[65], hex[65];
	struct smtp_proto_hdrscan hs;
	struct dedup_msgkey *mk = NULL;
	struct sbuf key, kerr;
	EVP_MD_CTX *ctx;
	uint64_t left;
	unsigned int mdlen = 0, i;
	ssize_t r;
	int fd;

	smtp_proto_hdrscan_init(&hs);
	sbuf_init(&key, DEDUP_MSGKEY_MAX + 1);
	sbuf_init(&kerr, 256);

	m->lstatus = spool_read_header(m->path, &m->env, &m->off, &m->size,
	    sha, &m->lerr);
	if (m->lstatus == -1)
		goto out_keys;
	if (m->q->dedup != NULL)
		mk = dedup_msgkey_new(&kerr);
	fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ctx = EVP_MD_CTX_new();
	if (fd == -1 || ctx == NULL ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		(void)sbuf_printf(&m->lerr, "open: %s", strerror(errno));
		m->lstatus = -1;
		goto out;
	}
	for (left = m->size; left > 0; left -= (uint64_t)r) {
		r = pread(fd, buf, left < sizeof(buf) ? left : sizeof(buf),
		    (off_t)(m->off + (m->size - left)));
		if (r <= 0) {
			(void)sbuf_printf(&m->lerr, "short content");
			m->corrupt = true;
			m->lstatus = -1;
			goto out;
		}
		(void)EVP_DigestUpdate(ctx, buf, (size_t)r);
		if (!hs.in_body)
			smtp_proto_hdrscan_feed(&hs, (const char *)buf,
			    (size_t)r);
		if (mk != NULL && dedup_msgkey_feed(mk, buf, (size_t)r,
		    &kerr) == -1) {
			dedup_msgkey_free(mk);
			mk = NULL;
		}
	}
	m->traces = hs.traces;
	if (mk != NULL && dedup_msgkey_final(mk, &key, &kerr) == 0)
		m->msgkey = xstrdup(key.data);
	if (m->q->dedup != NULL && m->msgkey == NULL)
		log_warnx("%s: no duplicate key: %s", m->id, kerr.data);
	(void)EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (i = 0; i < mdlen && i < 32; i++)
		(void)snprintf(hex + 2 * i, 3, "%02x", md[i]);
	hex[64] = '\0';
	if (strcmp(hex, sha) != 0) {
		(void)sbuf_printf(&m->lerr, "SHA-256 mismatch (file %s, "
		    "recorded %s)", hex, sha);
		m->corrupt = true;
		m->lstatus = -1;
		if (spool_quarantine(m->q->spool, m->id) == -1)
			log_warn("%s: cannot quarantine", m->id);
	}
out:
	EVP_MD_CTX_free(ctx);
	if (fd != -1)
		(void)close(fd);	/* read-only */
out_keys:
	dedup_msgkey_free(mk);
	sbuf_release(&key);
	sbuf_release(&kerr);
}

static void
qmsg_load_done(void *arg)
{
	struct qmsg *m = arg;
	struct sbuf lines;

	m->busy--;
	m->q->busy--;
	if (m->lstatus == -1) {
		log_warnx("%s: cannot load: %s%s", m->id, m->lerr.data,
		    m->corrupt ? "; moved to corrupt/" : "");
		if (m->corrupt) {
			sbuf_init(&lines, 4096);
			queue_jline(&lines, "quarantined", m);
			queue_jkv(&lines, "reason", m->lerr.data, false);
			(void)sbuf_append_char(&lines, '\n');
			spool_journal_append(m->q->spool, lines.data,
			    lines.len, NULL, NULL, NULL);
			sbuf_release(&lines);
		}
		qmsg_unlink(m);
		return;
	}
	m->loaded = true;
	m->returning = m->traces >= 2 || queue_trusted(m->q,
	    m->env.client_addr);
	if (m->removed_restored) {
		/* Finished before a crash; only the unlink was lost. */
		m->finishing = true;
		qmsg_remove(m, NULL);
		return;
	}
	qmsg_route(m);
	qmsg_start(m);
	qmsg_check_done(m);
}

void
queue_add(struct queue *q, const char *id)
{
	struct qmsg **pp = queue_find(q, id), *m;
	struct sbuf path;

	if (*pp != NULL && !(*pp)->expected_only)
		return;		/* already known */
	if (*pp == NULL) {
		m = xcalloc(1, sizeof(*m));
		m->q = q;
		(void)snprintf(m->id, sizeof(m->id), "%s", id);
		*pp = m;
		q->nmsgs++;
	} else
		m = *pp;
	m->expected_only = false;
	sbuf_init(&path, 4096);
	if (spool_queue_path(q->spool, id, &path) == -1)
		log_panic("queue: bad id %s", id);
	m->path = xstrdup(path.data);
	sbuf_release(&path);
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

/* Finds " key=" in a journal line and returns the value's extent. */
static bool
queue_jget(const char *line, size_t len, const char *key, const char **v,
    size_t *vlen)
{
	size_t klen = strlen(key), i;

	for (i = 0; i + klen + 2 <= len; i++) {
		if (line[i] == ' ' && memcmp(line + i + 1, key, klen) == 0 &&
		    line[i + 1 + klen] == '=') {
			const char *p = line + i + klen + 2, *e;

			e = memchr(p, ' ', len - (size_t)(p - line));
			*v = p;
			*vlen = e != NULL ? (size_t)(e - p) : len -
			    (size_t)(p - line);
			return true;
		}
	}
	return false;
}

void
queue_restore_line(struct queue *q, const char *line, size_t len)
{
	const char *sp, *verb, *v, *tv, *rv;
	size_t vl, tl, rl, verblen;
	struct restored *r;
	struct qmsg *m;
	char id[SPOOL_ID_LEN + 1];

	/* "TS verb id=ID ..." */
	sp = memchr(line, ' ', len);
	if (sp == NULL)
		return;
	verb = sp + 1;
	sp = memchr(verb, ' ', len - (size_t)(verb - line));
	if (sp == NULL)
		return;
	verblen = (size_t)(sp - verb);
	if (!queue_jget(line, len, "id", &v, &vl) || vl != SPOOL_ID_LEN)
		return;
	memcpy(id, v, vl);
	id[vl] = '\0';
	m = *queue_find(q, id);
	if (m == NULL)
		return;		/* not in the queue any more */
	if (verblen == 7 && memcmp(verb, "removed", 7) == 0)
		m->removed_restored = true;
	else if (verblen == 7 && memcmp(verb, "bounced", 7) == 0)
		m->bounced_restored = true;
	else if (verblen == 6 && memcmp(verb, "warned", 6) == 0)
		m->warned = true;
	else if ((verblen == 9 && memcmp(verb, "delivered", 9) == 0) ||
	    (verblen == 9 && memcmp(verb, "duplicate", 9) == 0) ||
	    (verblen == 6 && memcmp(verb, "failed", 6) == 0)) {
		if (!queue_jget(line, len, "target", &tv, &tl) ||
		    !queue_jget(line, len, "rcpt", &rv, &rl) || rl < 2)
			return;
		r = xcalloc(1, sizeof(*r));
		r->target = xstrndup(tv, tl);
		r->rcpt = xstrndup(rv + 1, rl - 2);	/* strip <> */
		r->delivered = verb[0] == 'd';	/* delivered, duplicate */
		r->next = m->restored;
		m->restored = r;
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
	if (q->rec_pending != NULL) {
		/* Not written: at worst a later copy is delivered again. */
		struct qrecord_job *j = q->rec_pending;

		for (i = 0; i < 2 * j->n; i++)
			free(j->strs[i]);
		free(j->strs);
		free(j->msgs);
		free(j->recs);
		free(j);
	}
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
	if (q->expire_timer != NULL)
		event_free(q->expire_timer);
	free(q->targets);
	free(q->hostname);
	free(q);
}
