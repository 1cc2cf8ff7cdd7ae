/*
 * smtp_server.c - inbound SMTP sessions (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, ENHANCEDSTATUSCODES, DSN, SMTPUTF8, CHUNKING and STARTTLS):
 * listeners, the session lifecycle, I/O, TLS and the policy runs.
 *
 * Each session is a bufferevent and a small state machine; commands are
 * in smtp_server_cmd.c, content and the commit in smtp_server_data.c.
 * Sessions are freed only from the libevent entry points (session_finish),
 * never from inside a command handler, so handlers may close a session and
 * simply return. A policy verdict still pending when a session goes is
 * cancelled; nothing here blocks.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "policy.h"
#include "smtp_proto.h"
#include "smtp_server.h"
#include "smtp_server_int.h"
#include "spool.h"
#include "tlsctx.h"
#include "xmalloc.h"

static void session_read_cb(struct bufferevent *, void *);
static void session_write_cb(struct bufferevent *, void *);
static void session_event_cb(struct bufferevent *, short, void *);

/* Per-client-address connection counts. */

static unsigned
iptab_hash(const char *addr)
{
	unsigned h = 5381;

	while (*addr)
		h = h * 33 + (unsigned char)*addr++;
	return h % SMTP_SERVER_IPTAB_SIZE;
}

static struct ipcount **
iptab_find(struct smtp_server *srv, const char *addr)
{
	struct ipcount **pp = &srv->iptab[iptab_hash(addr)];

	while (*pp != NULL && strcmp((*pp)->addr, addr) != 0)
		pp = &(*pp)->next;
	return pp;
}

static unsigned
iptab_incr(struct smtp_server *srv, const char *addr)
{
	struct ipcount **pp = iptab_find(srv, addr);

	if (*pp == NULL) {
		*pp = xcalloc(1, sizeof(**pp));
		(void)snprintf((*pp)->addr, sizeof((*pp)->addr), "%s", addr);
	}
	return ++(*pp)->n;
}

static void
iptab_decr(struct smtp_server *srv, const char *addr)
{
	struct ipcount **pp = iptab_find(srv, addr), *ic = *pp;

	if (ic == NULL)
		log_panic("per-IP count for %s missing", addr);
	if (--ic->n == 0) {
		*pp = ic->next;
		free(ic);
	}
}

/* Replies. */

static void
session_vreply(struct session *s, unsigned code, const char *enh,
    const char *fmt, va_list ap)
{
	struct evbuffer *out;
	char text[1024];

	if (s->bev == NULL)
		return;
	out = bufferevent_get_output(s->bev);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	if (enh != NULL)
		(void)evbuffer_add_printf(out, "%u %s %s\r\n", code, enh, text);
	else
		(void)evbuffer_add_printf(out, "%u %s\r\n", code, text);
}

void
session_reply(struct session *s, unsigned code, const char *enh,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_vreply(s, code, enh, fmt, ap);
	va_end(ap);
}

/*
 * A refused command: reply, count it, and end the session once the client
 * has made too many mistakes (a client looping on errors, or a scanner).
 */
void
session_error(struct session *s, unsigned code, const char *enh,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_vreply(s, code, enh, fmt, ap);
	va_end(ap);
	if (++s->errors >= s->srv->conf->limits.errors) {
		log_info("%s: too many errors from %s[%s]", s->sid, s->name,
		    s->addr);
		session_reply(s, 421, "4.7.0", "%s Error: too many errors",
		    s->srv->hostname);
		session_close(s, true);
	}
}

void
session_status(struct session *s, const struct smtp_proto_status *st)
{
	session_error(s, st->code, st->enhanced, "%s", st->text);
}

/* Escapes peer text for a log line into buf. */
const char *
session_esc(char *buf, size_t size, const char *s)
{
	struct sbuf sb;

	sbuf_init(&sb, size - 1);
	if (sbuf_append_escaped(&sb, s, strlen(s), NULL, false) == -1)
		(void)sbuf_append_str(&sb, "(too long)");
	(void)snprintf(buf, size, "%s", sb.data);
	sbuf_release(&sb);
	return buf;
}

/* Transactions. */

/* The session's spool file is closed (aborted or committed). */
void
session_file_done(struct session *s)
{
	if (!s->holds_file)
		return;
	s->holds_file = false;
	s->srv->nfiles--;
}

void
session_tx_reset(struct session *s)
{
	size_t i;

	if (s->msg != NULL) {
		spool_msg_abort(s->msg);
		s->msg = NULL;
		session_file_done(s);
	}
	for (i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].orcpt);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	s->rcpt_attempts = 0;
	s->has_mail = false;
	s->tx_error = TX_OK;
	sbuf_reset(&s->tx_err);
	s->bdat_active = false;
	s->bdat_left = 0;
	s->bdat_last = false;
	s->ndiscarded = 0;
	s->pctx.msg = NULL;
	session_data_deadline_stop(s);
}

/*
 * The read and write timeouts: a client that sends nothing, or reads none
 * of our replies (its window full), is cut off after this long. Under
 * stress (connections near the limit) they drop to stress_timeout.
 */
void
session_set_timeout(struct session *s, unsigned seconds)
{
	const struct conf_limits *lim = &s->srv->conf->limits;
	struct timeval tv;

	if (s->srv->stressed && seconds > lim->stress_timeout)
		seconds = lim->stress_timeout;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = 0;
	if (s->bev != NULL)
		(void)bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* The configured timeout of the state s is in. */
static unsigned
session_state_timeout(const struct session *s)
{
	const struct conf_limits *lim = &s->srv->conf->limits;

	switch (s->state) {
	case SESSION_DATA:
	case SESSION_BDAT:
		return lim->timeout_data;
	case SESSION_TLS:
		return lim->timeout_tls;
	default:
		return lim->timeout_command;
	}
}

/*
 * Arms timer to fire seconds after since (capped under stress), or sooner
 * than it already would; 0 seconds leaves it off.
 */
static void
session_arm_deadline(struct session *s, struct event **timer,
    const struct timespec *since, unsigned seconds, event_callback_fn cb)
{
	const struct conf_limits *lim = &s->srv->conf->limits;
	struct timespec now;
	struct timeval tv;
	long long left_ms;

	if (s->srv->stressed && seconds > lim->stress_deadline)
		seconds = lim->stress_deadline;
	if (seconds == 0)
		return;
	if (*timer == NULL &&
	    (*timer = evtimer_new(s->srv->base, cb, s)) == NULL)
		return;
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	left_ms = ((long long)since->tv_sec + seconds - now.tv_sec) * 1000 +
	    (since->tv_nsec - now.tv_nsec) / 1000000;
	if (left_ms < 0)
		left_ms = 0;
	if (evtimer_pending(*timer, &tv)) {
		struct timeval cur;

		(void)evutil_gettimeofday(&cur, NULL);
		/* Pending timers only ever move earlier (stress). */
		if (((long long)tv.tv_sec - cur.tv_sec) * 1000 +
		        (tv.tv_usec - cur.tv_usec) / 1000 <=
		    left_ms)
			return;
	}
	tv.tv_sec = (time_t)(left_ms / 1000);
	tv.tv_usec = (suseconds_t)(left_ms % 1000) * 1000;
	(void)evtimer_add(*timer, &tv);
}

/* A deadline passed: 421 and close, unless the content is being committed. */
static void
session_deadline_hit(struct session *s, bool data)
{
	if (s->closing || s->bev == NULL) {
		session_finish(s);
		return;
	}
	if (s->state == SESSION_COMMIT) {
		/* The content is all in: answer it, then close. */
		s->deadline_hit = true;
		return;
	}
	log_info("%s: %s deadline exceeded %s from %s[%s]", s->sid,
	    data ? "data" : "session",
	    s->state == SESSION_DATA || s->state == SESSION_BDAT ?
	        "in DATA" :
	        "between commands",
	    s->name, s->addr);
	if (s->state == SESSION_TLS)
		session_close(s, false); /* no plaintext reply mid-handshake */
	else {
		session_reply(s, 421, "4.4.2", "%s Error: %s deadline exceeded",
		    s->srv->hostname, data ? "data transfer" : "session");
		session_close(s, true);
	}
	session_finish(s);
}

static void
session_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_deadline_hit(arg, false);
}

static void
session_data_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_deadline_hit(arg, true);
}

/* DATA's 354 or the first BDAT: the whole transfer is bounded from now. */
void
session_data_deadline_start(struct session *s)
{
	(void)clock_gettime(CLOCK_MONOTONIC, &s->data_started);
	session_arm_deadline(s, &s->data_timer, &s->data_started,
	    s->srv->conf->limits.data_deadline, session_data_deadline_cb);
}

/* The content has ended (or the transaction was reset). */
void
session_data_deadline_stop(struct session *s)
{
	s->data_started.tv_sec = 0;
	s->data_started.tv_nsec = 0;
	if (s->data_timer != NULL)
		(void)evtimer_del(s->data_timer);
}

/*
 * Stress mode, as Postfix's: above stress_threshold percent of the
 * connection limit, every session's timeouts drop to stress_timeout and
 * its deadlines to stress_deadline, so idle and slow clients make room.
 * It ends below ten points under the threshold (no flapping).
 */
static void
server_update_stress(struct smtp_server *srv)
{
	static struct log_limit stress_log = LOG_LIMIT_INIT(60, 4,
	    "stress mode");
	const struct conf_limits *lim = &srv->conf->limits;
	unsigned long pct_now, enter, leave;
	struct session *s;

	if (lim->stress_threshold == 0)
		return;
	pct_now = (unsigned long)srv->nsessions * 100;
	enter = (unsigned long)lim->stress_threshold * lim->connections;
	leave = lim->stress_threshold > 10 ?
	    (unsigned long)(lim->stress_threshold - 10) * lim->connections :
	    0;
	if (!srv->stressed && pct_now >= enter) {
		srv->stressed = true;
		log_warnx_limited(&stress_log,
		    "stress: %u of %u connections in use: timeouts now %u s, "
		    "deadlines %u s",
		    srv->nsessions, lim->connections, lim->stress_timeout,
		    lim->stress_deadline);
		TAILQ_FOREACH(s, &srv->sessions, entry) {
			if (s->closing || s->bev == NULL)
				continue;
			session_set_timeout(s, session_state_timeout(s));
			session_arm_deadline(s, &s->session_timer, &s->started,
			    lim->session_deadline, session_deadline_cb);
			if (s->data_started.tv_sec != 0)
				session_arm_deadline(s, &s->data_timer,
				    &s->data_started, lim->data_deadline,
				    session_data_deadline_cb);
		}
	} else if (srv->stressed && pct_now < leave) {
		srv->stressed = false;
		log_info_limited(&stress_log,
		    "stress over: %u of %u connections in use", srv->nsessions,
		    lim->connections);
	}
}

void
session_close(struct session *s, bool flush)
{
	if (s->closing) {
		/* A flush that can no longer happen (error, timeout). */
		if (!flush)
			s->flush_on_close = false;
		return;
	}
	s->closing = true;
	s->flush_on_close = flush;
	if (s->state != SESSION_COMMIT)
		session_tx_reset(s);
	if (s->bev != NULL)
		(void)bufferevent_disable(s->bev, EV_READ);
}

static void
session_log_disconnect(struct session *s)
{
	log_info("%s: disconnect from %s[%s] commands=%u accepted=%u "
	         "errors=%u%s%s",
	    s->sid, s->name, s->addr, s->ncommands, s->naccepted, s->errors,
	    s->tls_active ? " tls=" : "", s->tls_active ? s->tls_summary : "");
}

static void
server_maybe_done(struct smtp_server *srv)
{
	if (srv->shutting_down && srv->nstructs == 0 &&
	    srv->shutdown_done != NULL) {
		void (*done)(void *) = srv->shutdown_done;

		srv->shutdown_done = NULL;
		if (srv->grace_timer != NULL)
			(void)evtimer_del(srv->grace_timer);
		done(srv->shutdown_arg);
	}
}

static void
session_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	session_finish(s);
}

/*
 * The TLS filter's output may be empty while the encrypted bytes (a 221 or
 * 421) still wait in the socket bufferevent below it; freeing now would
 * drop them (libevent #616). Poll briefly, bounded, until they are written.
 */
static bool
session_tls_draining(struct session *s)
{
	static const struct timeval poll = { 0, 20000 };
	struct bufferevent *under = bufferevent_get_underlying(s->bev);

	if (under == NULL ||
	    evbuffer_get_length(bufferevent_get_output(under)) == 0 ||
	    s->drain_polls >= 250)
		return false;
	if (s->drain_timer == NULL)
		s->drain_timer = evtimer_new(s->srv->base, session_drain_cb, s);
	if (s->drain_timer == NULL)
		return false;
	s->drain_polls++;
	(void)evtimer_add(s->drain_timer, &poll);
	return true;
}

/* Releases the connection and, once no callback is in flight, the session. */
void
session_finish(struct session *s)
{
	struct smtp_server *srv = s->srv;

	if (!s->closing)
		return;
	if (s->bev != NULL) {
		if (s->flush_on_close &&
		    evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
			return; /* the write callback comes back */
		if (s->flush_on_close && session_tls_draining(s))
			return; /* the drain timer comes back */
		bufferevent_free(s->bev);
		s->bev = NULL;
		session_log_disconnect(s);
		if (s->counted_ip)
			iptab_decr(srv, s->addr);
		srv->nsessions--;
		server_update_stress(srv);
	}
	if (s->pending > 0)
		return; /* the spool callback comes back */
	if (s->drain_timer != NULL)
		event_free(s->drain_timer);
	if (s->lookup_timer != NULL)
		event_free(s->lookup_timer);
	if (s->session_timer != NULL)
		event_free(s->session_timer);
	s->session_timer = NULL;
	if (s->data_timer != NULL)
		event_free(s->data_timer);
	s->data_timer = NULL;
	if (s->lookup != NULL)
		s->lookup->s = NULL; /* its callback frees it */
	policy_cancel(s->preq);      /* e.g. a recipient probe */
	s->preq = NULL;
	session_tx_reset(s);
	sbuf_release(&s->pctx.prepend);
	sbuf_release(&s->tx_err);
	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nstructs--;
	free(s);
	server_maybe_done(srv);
}

/* Policy runs. */

static void
session_policy_cb(void *arg, const struct policy_verdict *v)
{
	struct session *s = arg;
	session_resume_fn resume = s->presume;

	s->preq = NULL;
	s->presume = NULL;
	resume(s, v);
	if (v->async) {
		/* From a loop entry point (probe, worker): go on reading. */
		session_process(s);
		session_finish(s);
	}
}

/*
 * Runs the chain at point; resume continues the command with the verdict,
 * from inside this call or later. The caller has set the state the
 * session waits in (SESSION_POLICY, or SESSION_COMMIT at DATA-END).
 */
void
session_policy_run(struct session *s, enum policy_point point,
    session_resume_fn resume)
{
	struct policy_req *req;

	s->presume = resume;
	req = policy_run(s->srv->policy, point, &s->pctx, session_policy_cb, s);
	if (req != NULL)
		s->preq = req;
}

/* The stage's log line about a verdict the session acts on. */
void
session_policy_log(struct session *s, const struct policy_verdict *v)
{
	if (v->why[0] != '\0')
		log_info("%s: %s", s->sid, v->why);
}

/* Nothing can hold a message yet: the verdict becomes a temporary failure. */
static void
session_policy_quarantine(struct session *s, const struct policy_verdict *v,
    unsigned code)
{
	/* XXX the queue's held state comes with the milter issue. */
	log_warnx("%s: XXX quarantine asked by policy stage %s from %s[%s]: "
	          "the queue cannot hold messages yet (comes with the milter "
	          "issue); answered %u",
	    s->sid, v->stage, s->name, s->addr, code);
}

/*
 * Answers what the chain refused. A permanent refusal of a command counts
 * toward the error limit like the session's own checks (count); temporary
 * ones and the verdict on a message's content never did.
 */
void
session_policy_refuse(struct session *s, const struct policy_verdict *v,
    bool count)
{
	session_policy_log(s, v);
	if (v->action == POLICY_QUARANTINE) {
		session_policy_quarantine(s, v, 451);
		session_reply(s, 451, "4.3.0",
		    "Error: message cannot be held, try again later");
	} else if (count && v->action == POLICY_REJECT)
		session_error(s, v->code, v->enh, "%s", v->text);
	else
		session_reply(s, v->code, v->enh, "%s", v->text);
}

/* The CONNECT verdict: greet, or refuse the whole session. */
static void
session_connect_verdict(struct session *s, const struct policy_verdict *v)
{
	s->state = SESSION_CMD;
	session_policy_log(s, v);
	switch (v->action) {
	case POLICY_DISCARD:
		s->discard_all = true;
		/* FALLTHROUGH */
	case POLICY_ACCEPT:
		session_reply(s, 220, NULL, "%s ESMTP splitmx",
		    s->srv->hostname);
		break;
	case POLICY_REJECT:
		/* RFC 5321 3.1: then only QUIT, which the client must send. */
		session_reply(s, 554, v->enh, "%s %s", s->srv->hostname,
		    v->text);
		s->no_service = true;
		break;
	case POLICY_TEMPFAIL:
		/* A greeting may be 220, 554 or 421 and nothing else. */
		session_reply(s, 421, v->enh, "%s %s", s->srv->hostname,
		    v->text);
		session_close(s, true);
		break;
	case POLICY_QUARANTINE:
		session_policy_quarantine(s, v, 421);
		session_reply(s, 421, "4.3.0",
		    "%s Error: service not "
		    "available",
		    s->srv->hostname);
		session_close(s, true);
		break;
	}
}

/* The client is known: the CONNECT stages decide about the banner. */
static void
session_greet(struct session *s)
{
	s->state = SESSION_POLICY;
	session_policy_run(s, POLICY_CONNECT, session_connect_verdict);
}

/* Out of memory, each STARTTLS would fail and say so. */
static struct log_limit tls_log = LOG_LIMIT_INIT(10, 3, "cannot start TLS");

void
session_cmd_starttls(struct session *s, const struct smtp_proto_command *cmd)
{
	struct bufferevent *tls;
	struct evbuffer *in;
	SSL *ssl;

	if (s->lst->tls == NULL) {
		session_error(s, 502, "5.5.1", "Error: STARTTLS not available");
		return;
	}
	if (s->tls_active) {
		session_error(s, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	if (cmd->arglen > 0) {
		session_error(s, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	/*
	 * Anything the client sent after STARTTLS was sent in plaintext and
	 * must not be taken as coming over TLS (CVE-2011-0411).
	 */
	in = bufferevent_get_input(s->bev);
	if (evbuffer_get_length(in) > 0) {
		log_info("%s: discarding %zu octets pipelined after STARTTLS "
		         "from %s[%s]",
		    s->sid, evbuffer_get_length(in), s->name, s->addr);
		(void)evbuffer_drain(in, evbuffer_get_length(in));
	}
	session_reply(s, 220, "2.0.0", "Ready to start TLS");
	ssl = SSL_new(s->lst->tls);
	if (ssl == NULL) {
		log_warnx_limited(&tls_log, "%s: SSL_new failed", s->sid);
		session_close(s, true);
		return;
	}
	tls = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		log_warnx_limited(&tls_log, "%s: cannot start TLS", s->sid);
		session_close(s, true);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	s->bev = tls;
	bufferevent_setcb(tls, session_read_cb, session_write_cb,
	    session_event_cb, s);
	(void)bufferevent_setwatermark(tls, EV_READ, 0,
	    SMTP_SERVER_READ_HIGHWAT);
	(void)bufferevent_enable(tls, EV_READ | EV_WRITE);
	/* RFC 3207 4.2: forget everything learned before the handshake. */
	session_tx_reset(s);
	s->helo_seen = false;
	s->esmtp = false;
	s->helo[0] = '\0';
	s->state = SESSION_TLS;
	session_set_timeout(s, s->srv->conf->limits.timeout_tls);
}

/* Runs as many pipelined commands and as much content as is buffered. */
void
session_process(struct session *s)
{
	struct evbuffer *in, *out;
	bool done;
	size_t used;

	while (!s->closing && s->bev != NULL) {
		in = bufferevent_get_input(s->bev);
		out = bufferevent_get_output(s->bev);
		switch (s->state) {
		case SESSION_CMD:
			/*
			 * A client that does not read its replies waits, and
			 * so does its input: nothing more is read until the
			 * replies are out (the write callback), so a client
			 * pipelining without reading cannot grow our memory;
			 * the write timeout ends it if it never reads.
			 */
			if (evbuffer_get_length(out) > SMTP_SERVER_OUTPUT_MAX) {
				s->read_paused = true;
				(void)bufferevent_disable(s->bev, EV_READ);
				return;
			}
			if (s->srv->shutting_down) {
				session_reply(s, 421, "4.3.2",
				    "%s Service shutting down",
				    s->srv->hostname);
				session_close(s, true);
				return;
			}
			if (session_read_command(s, in) == 0)
				return;
			break;
		case SESSION_DATA:
			used = session_decode(s, in, UINT64_MAX, &done);
			(void)evbuffer_drain(in, used);
			if (done)
				session_end_content(s);
			else if (used == 0)
				return;
			break;
		case SESSION_BDAT:
			if (s->bdat_left > 0) {
				used = session_decode(s, in, s->bdat_left,
				    &done);
				(void)evbuffer_drain(in, used);
				s->bdat_left -= used;
			}
			if (s->bdat_left == 0)
				session_bdat_chunk_done(s);
			else
				return;
			break;
		case SESSION_COMMIT:
		case SESSION_TLS:
		case SESSION_POLICY:
		case SESSION_LOOKUP:
			return;
		}
	}
}

/* libevent entry points. */

static void
session_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	session_process(s);
	session_finish(s);
}

static void
session_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->read_paused && !s->closing && s->state == SESSION_CMD) {
		s->read_paused = false;
		(void)bufferevent_enable(s->bev, EV_READ);
	}
	if (!s->closing)
		session_process(s);
	session_finish(s);
}

static void
session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	SSL *ssl;

	if (what & BEV_EVENT_CONNECTED) {
		ssl = bufferevent_openssl_get_ssl(bev);
		s->tls_active = true;
		tlsctx_describe(ssl, s->tls_desc, sizeof(s->tls_desc));
		tlsctx_summary(ssl, s->tls_summary, sizeof(s->tls_summary));
		log_info("%s: TLS established from %s[%s]: %s", s->sid, s->name,
		    s->addr, s->tls_desc);
		s->state = SESSION_CMD;
		session_set_timeout(s, s->srv->conf->limits.timeout_command);
		session_process(s);
	} else if (what & BEV_EVENT_TIMEOUT) {
		log_info("%s: %stimeout after %s from %s[%s]", s->sid,
		    what & BEV_EVENT_WRITING ? "write " : "",
		    s->state == SESSION_DATA || s->state == SESSION_BDAT ?
		        "DATA" :
		        s->state == SESSION_TLS ? "STARTTLS" :
		                                  "command",
		    s->name, s->addr);
		if (s->state != SESSION_TLS && !(what & BEV_EVENT_WRITING) &&
		    !s->closing) {
			session_reply(s, 421, "4.4.2",
			    "%s Error: timeout exceeded", s->srv->hostname);
			session_close(s, true);
		} else
			session_close(s, false); /* a stuck flush ends too */
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->state == SESSION_DATA || s->state == SESSION_BDAT)
			log_info("%s: lost connection after DATA from %s[%s]",
			    s->sid, s->name, s->addr);
		else if (s->state == SESSION_TLS)
			log_info("%s: TLS handshake failed with %s[%s]", s->sid,
			    s->name, s->addr);
		session_close(s, false);
	}
	session_finish(s);
}

static void
session_fill_addr(const struct sockaddr *sa, char *addr, size_t addrsize,
    char *port, size_t portsize)
{
	if (getnameinfo(sa,
	        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
	                                    sizeof(struct sockaddr_in),
	        addr, (socklen_t)addrsize, port, (socklen_t)portsize,
	        NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		(void)snprintf(addr, addrsize, "unknown");
		(void)snprintf(port, portsize, "0");
	}
	/* Show v4-mapped clients as plain IPv4. */
	if (strncmp(addr, "::ffff:", 7) == 0 && strchr(addr + 7, '.') != NULL)
		memmove(addr, addr + 7, strlen(addr + 7) + 1);
}

/* The name is known (or given up on): greet, and read what waited. */
static void
session_lookup_done(struct session *s, const char *name)
{
	const char *p;

	if (s->lookup_timer != NULL)
		(void)evtimer_del(s->lookup_timer);
	s->lookup = NULL;
	if (name != NULL) {
		for (p = name; *p != '\0'; p++)
			if (!(*p == '.' || *p == '-' || *p == '_' ||
			        (*p >= '0' && *p <= '9') ||
			        (*p >= 'a' && *p <= 'z') ||
			        (*p >= 'A' && *p <= 'Z')))
				break;
		/* A PTR that names an address is not a name. */
		if (*p == '\0' && p != name &&
		    inet_pton(AF_INET, name, &(struct in_addr){ 0 }) != 1)
			(void)snprintf(s->name, sizeof(s->name), "%s", name);
	}
	log_info("%s: connect from %s[%s] on %s", s->sid, s->name, s->addr,
	    s->local);
	if (s->closing)
		return;
	session_greet(s);
	session_process(s);
}

static void
session_lookup_forward_cb(void *arg, enum dns_status status, const char *reason,
    const struct dns_addr *addrs, size_t naddrs)
{
	struct session_lookup *lk = arg;
	struct session *s = lk->s;
	bool confirmed = false;
	size_t i;

	(void)reason;
	if (s == NULL) {
		free(lk);
		return;
	}
	for (i = 0; status == DNS_OK && i < naddrs; i++)
		if (strcmp(addrs[i].text, s->addr) == 0)
			confirmed = true;
	/* A PTR name whose A/AAAA do not lead back is not the client's. */
	session_lookup_done(s, confirmed ? lk->name : NULL);
	free(lk);
	session_finish(s);
}

static void
session_lookup_ptr_cb(void *arg, enum dns_status status, const char *name)
{
	struct session_lookup *lk = arg;
	struct session *s = lk->s;
	size_t len;

	if (s == NULL) {
		free(lk);
		return;
	}
	if (status != DNS_OK || name == NULL || s->srv->dns == NULL ||
	    (len = strlen(name)) == 0 || len >= sizeof(lk->name)) {
		session_lookup_done(s, NULL);
		free(lk);
		session_finish(s);
		return;
	}
	(void)snprintf(lk->name, sizeof(lk->name), "%s", name);
	if (lk->name[len - 1] == '.')
		lk->name[len - 1] = '\0';
	dns_lookup_host(s->srv->dns, lk->name, "25", session_lookup_forward_cb,
	    lk);
}

static void
session_lookup_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	if (s->lookup != NULL) {
		s->lookup->s = NULL;
		log_info("%s: no client name for [%s] within %d s", s->sid,
		    s->addr, SMTP_SERVER_LOOKUP_SECONDS);
		session_lookup_done(s, NULL);
	}
	session_finish(s);
}

/* Postfix-style: the client's name is found before the banner. */
static void
session_lookup_start(struct session *s, const struct sockaddr *sa)
{
	static const struct timeval bound = { SMTP_SERVER_LOOKUP_SECONDS, 0 };
	struct session_lookup *lk = xcalloc(1, sizeof(*lk));

	lk->s = s;
	s->lookup = lk;
	s->state = SESSION_LOOKUP;
	s->lookup_timer = evtimer_new(s->srv->base, session_lookup_timeout_cb,
	    s);
	if (s->lookup_timer != NULL)
		(void)evtimer_add(s->lookup_timer, &bound);
	dns_lookup_ptr(s->srv->dns, sa, session_lookup_ptr_cb, lk);
}

static struct log_limit session_new_log = LOG_LIMIT_INIT(10, 3,
    "cannot create a session");
/* Accept errors come once per attempt: at most a few lines a minute. */
static struct log_limit accept_log = LOG_LIMIT_INIT(60, 3, "accept");
static struct log_limit recover_log = LOG_LIMIT_INIT(60, 3, "accepting again");
/* Refused connections come as fast as clients can connect. */
static struct log_limit refuse_log = LOG_LIMIT_INIT(10, 20,
    "refused: too many connections");

static void server_fds_back(struct smtp_server *srv);

static void
listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *lst = arg;
	struct smtp_server *srv = lst->srv;
	const struct conf_limits *lim = &srv->conf->limits;
	struct sockaddr_storage local;
	socklen_t locallen = sizeof(local);
	char lport[16], cport[16], laddr[INET6_ADDRSTRLEN];
	struct session *s;
	bool refuse_total, refuse_ip = false;

	(void)evl;
	(void)salen;
	if (srv->starved)
		server_fds_back(srv);
	s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->lst = lst;
	s->serial = ++srv->serial;
	(void)snprintf(s->sid, sizeof(s->sid), "s%06" PRIx64, s->serial);
	(void)snprintf(s->name, sizeof(s->name), "unknown");
	session_fill_addr(sa, s->addr, sizeof(s->addr), cport, sizeof(cport));
	if (getsockname(fd, (struct sockaddr *)&local, &locallen) == 0) {
		session_fill_addr((struct sockaddr *)&local, laddr,
		    sizeof(laddr), lport, sizeof(lport));
		(void)snprintf(s->local, sizeof(s->local), "%s%s%s:%s",
		    strchr(laddr, ':') ? "[" : "", laddr,
		    strchr(laddr, ':') ? "]" : "", lport);
	} else
		(void)snprintf(s->local, sizeof(s->local), "%s", lst->desc);
	s->pctx.sid = s->sid;
	s->pctx.client_addr = s->addr;
	s->pctx.client_name = s->name;
	s->pctx.helo = s->helo;
	s->pctx.mail = &s->mail;
	s->pctx.hs = &s->hs;
	sbuf_init(&s->pctx.prepend, SMTP_SERVER_PREPEND_MAX);
	sbuf_init(&s->tx_err, SMTP_SERVER_ERR_MAX);

	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		log_warnx_limited(&session_new_log,
		    "cannot create a session for %s", s->addr);
		(void)close(fd);
		sbuf_release(&s->pctx.prepend);
		sbuf_release(&s->tx_err);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nstructs++;
	srv->nsessions++;
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
	    session_event_cb, s);
	(void)bufferevent_setwatermark(s->bev, EV_READ, 0,
	    SMTP_SERVER_READ_HIGHWAT);
	(void)clock_gettime(CLOCK_MONOTONIC, &s->started);
	server_update_stress(srv);
	session_set_timeout(s, lim->timeout_command);
	session_arm_deadline(s, &s->session_timer, &s->started,
	    lim->session_deadline, session_deadline_cb);
	(void)bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	refuse_total = srv->nsessions > lim->connections;
	if (!refuse_total) {
		s->counted_ip = true;
		refuse_ip = iptab_incr(srv, s->addr) > lim->connections_per_ip;
	}
	if (refuse_total || refuse_ip) {
		log_info_limited(&refuse_log,
		    "%s: refused %s[%s]:%s on %s: too many connections%s",
		    s->sid, s->name, s->addr, cport, s->local,
		    refuse_ip ? " from this address" : "");
		session_reply(s, 421, "4.7.0",
		    "%s Error: too many connections%s", srv->hostname,
		    refuse_ip ? " from your address" : "");
		session_close(s, true);
		session_finish(s);
		return;
	}
	if (srv->dns != NULL && srv->conf->reverse_lookup) {
		session_lookup_start(s, sa);
		session_finish(s);
		return;
	}
	log_info("%s: connect from %s[%s]:%s on %s", s->sid, s->name, s->addr,
	    cport, s->local);
	session_greet(s);
	session_finish(s);
}

/* The spare descriptor: reopened whenever it was given up. */
static void
server_spare_restore(struct smtp_server *srv)
{
	if (srv->spare_fd == -1)
		srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void
server_set_accepting(struct smtp_server *srv, bool on)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i].evl == NULL)
			continue;
		if (on)
			(void)evconnlistener_enable(srv->listeners[i].evl);
		else
			(void)evconnlistener_disable(srv->listeners[i].evl);
	}
}

static void
server_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;

	(void)fd;
	(void)what;
	server_spare_restore(srv);
	if (srv->shutting_down)
		return;
	/* Still failing: the error callback pauses again. */
	server_set_accepting(srv, true);
}

/* The first accept() that works after a shortage says it is over. */
static void
server_fds_back(struct smtp_server *srv)
{
	struct timespec now;

	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	log_limit_flush(&accept_log);
	log_warnx_limited(&recover_log,
	    "accepting connections again after %lld s out of "
	    "descriptors; %lu clients were turned away with 421",
	    (long long)(now.tv_sec - srv->starved_since.tv_sec),
	    srv->shed - srv->shed_before);
	srv->starved = false;
}

/*
 * Out of descriptors, the waiting connection cannot be taken, and the
 * listener stays readable: libevent would call accept() again at once,
 * forever (issue 8: one core at 100 %, a flood of log lines). Instead,
 * give up the spare descriptor to take one waiting client and tell it
 * 421 (it retries later rather than waiting in the backlog), then stop
 * accepting for SMTP_SERVER_ACCEPT_PAUSE ms. Open sessions go on.
 */
static void
server_out_of_fds(struct smtp_server *srv, struct listener *lst)
{
	static const struct timeval pause = { 0,
		SMTP_SERVER_ACCEPT_PAUSE * 1000 };
	char msg[320];
	int fd, n;

	if (srv->spare_fd != -1 && lst->evl != NULL) {
		(void)close(srv->spare_fd); /* /dev/null, read-only */
		srv->spare_fd = -1;
		fd = accept4(evconnlistener_get_fd(lst->evl), NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd != -1) {
			n = snprintf(msg, sizeof(msg),
			    "421 4.3.2 %s Error: too busy, try again later\r\n",
			    srv->hostname);
			/* Best effort: the socket buffer is empty. */
			if (n > 0 && (size_t)n < sizeof(msg))
				(void)send(fd, msg, (size_t)n,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)close(fd);
			srv->shed++;
		}
		server_spare_restore(srv);
	}
	if (!srv->starved) {
		srv->starved = true;
		srv->shed_before = srv->shed;
		(void)clock_gettime(CLOCK_MONOTONIC, &srv->starved_since);
	}
	server_set_accepting(srv, false);
	if (srv->accept_timer == NULL)
		srv->accept_timer = evtimer_new(srv->base,
		    server_accept_resume_cb, srv);
	if (srv->accept_timer != NULL)
		(void)evtimer_add(srv->accept_timer, &pause);
	else
		server_set_accepting(srv, true); /* better than deaf */
}

static void
listener_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *lst = arg;
	struct smtp_server *srv = lst->srv;
	int e = EVUTIL_SOCKET_ERROR();

	(void)evl;
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		errno = e;
		log_warn_limited(&accept_log,
		    "accept on %s: pausing for %d ms, %u sessions open, "
		    "%lu clients turned away so far",
		    lst->desc, SMTP_SERVER_ACCEPT_PAUSE, srv->nsessions,
		    srv->shed);
		server_out_of_fds(srv, lst);
		return;
	}
	/* ECONNABORTED and friends: that client is gone, go on. */
	errno = e;
	log_warn_limited(&accept_log, "accept on %s", lst->desc);
}

struct smtp_server *
smtp_server_new(struct event_base *base, const struct conf *conf,
    struct sbuf *err)
{
	struct smtp_server *srv;
	size_t i;

	srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->conf = conf;
	srv->spare_fd = -1;
	TAILQ_INIT(&srv->sessions);
	if (conf->hostname != NULL)
		(void)snprintf(srv->hostname, sizeof(srv->hostname), "%s",
		    conf->hostname);
	else if (gethostname(srv->hostname, sizeof(srv->hostname) - 1) == -1)
		(void)snprintf(srv->hostname, sizeof(srv->hostname),
		    "localhost");
	srv->listeners = xcalloc(conf->nlisteners, sizeof(*srv->listeners));
	for (i = 0; i < conf->nlisteners; i++) {
		const struct conf_listener *cl = &conf->listeners[i];
		struct listener *lst = &srv->listeners[srv->nlisteners];
		struct addrinfo hints, *res = NULL;
		int rc;

		lst->srv = srv;
		(void)snprintf(lst->desc, sizeof(lst->desc), "%s%s%s:%s",
		    strchr(cl->host, ':') ? "[" : "", cl->host,
		    strchr(cl->host, ':') ? "]" : "", cl->port);
		if (cl->tls_cert != NULL) {
			lst->tls = tlsctx_server_new(cl->tls_cert, cl->tls_key,
			    err);
			if (lst->tls == NULL)
				goto fail;
		}
		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
		hints.ai_socktype = SOCK_STREAM;
		rc = getaddrinfo(strcmp(cl->host, "*") == 0 ? NULL : cl->host,
		    cl->port, &hints, &res);
		if (rc != 0) {
			(void)sbuf_printf(err, "listen %s: %s", lst->desc,
			    gai_strerror(rc));
			goto fail;
		}
		lst->evl = evconnlistener_new_bind(base, listener_accept_cb,
		    lst,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		        LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
		    511, res->ai_addr, (int)res->ai_addrlen);
		freeaddrinfo(res);
		if (lst->evl == NULL) {
			(void)sbuf_printf(err, "cannot listen on %s: %s",
			    lst->desc,
			    evutil_socket_error_to_string(
			        EVUTIL_SOCKET_ERROR()));
			goto fail;
		}
		evconnlistener_set_error_cb(lst->evl, listener_error_cb);
		srv->nlisteners++;
	}
	return srv;
fail:
	if (srv->listeners[srv->nlisteners].tls != NULL)
		SSL_CTX_free(srv->listeners[srv->nlisteners].tls);
	smtp_server_free(srv);
	return NULL;
}

void
smtp_server_set_verify(struct smtp_server *srv, struct verify *v)
{
	srv->verify = v;
}

void
smtp_server_set_dns(struct smtp_server *srv, struct dns *dns)
{
	srv->dns = dns;
}

void
smtp_server_set_srs(struct smtp_server *srv, const struct auth_srs *srs)
{
	srv->srs = srs;
}

void
smtp_server_set_workers(struct smtp_server *srv, struct workers *w)
{
	srv->workers = w;
}

void
smtp_server_set_file_max(struct smtp_server *srv, unsigned n)
{
	srv->file_max = n;
}

/*
 * The policy chain, in the order whose replies clients have always seen:
 * SRS reversal, relay and recipient lists, probes; SPF and DKIM at the
 * end of the content. A milter stage would be added last.
 */
static void
server_policy_build(struct smtp_server *srv)
{
	const struct conf *conf = srv->conf;

	srv->policy = policy_new();
	if (srv->srs != NULL)
		policy_add_srs(srv->policy, conf, srv->srs);
	policy_add_recipients(srv->policy, conf);
	if (srv->verify != NULL)
		policy_add_verify(srv->policy, conf, srv->verify);
	if (conf->auth_checks && srv->workers != NULL)
		policy_add_auth(srv->policy, conf, srv->workers, srv->hostname);
}

void
smtp_server_start(struct smtp_server *srv, struct spool *sp,
    void (*accepted)(void *, const char *), void *arg)
{
	size_t i;

	srv->spool = sp;
	srv->accepted = accepted;
	srv->accepted_arg = arg;
	server_policy_build(srv);
	/* Kept in reserve for the day the descriptors run out. */
	server_spare_restore(srv);
	if (srv->spare_fd == -1)
		log_warn("cannot open /dev/null as a spare descriptor");
	for (i = 0; i < srv->nlisteners; i++) {
		if (evconnlistener_enable(srv->listeners[i].evl) == -1)
			log_warnx("cannot enable listener %s",
			    srv->listeners[i].desc);
		log_info("listening on %s%s", srv->listeners[i].desc,
		    srv->listeners[i].tls ? " (STARTTLS)" : "");
	}
}

static void
server_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *srv = arg;
	struct session *s, *next;

	(void)fd;
	(void)what;
	log_info("shutdown grace expired: closing %u sessions", srv->nsessions);
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		session_close(s, false);
		session_finish(s);
	}
}

void
smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *), void *arg)
{
	struct session *s, *next;
	struct timeval tv = { (time_t)srv->conf->limits.shutdown_grace, 0 };
	size_t i;

	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	if (srv->accept_timer != NULL)
		(void)evtimer_del(srv->accept_timer);
	srv->shutdown_done = done;
	srv->shutdown_arg = arg;
	for (i = 0; i < srv->nlisteners; i++) {
		evconnlistener_free(srv->listeners[i].evl);
		srv->listeners[i].evl = NULL;
	}
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->closing)
			continue;
		if (s->state == SESSION_CMD || s->state == SESSION_TLS ||
		    s->state == SESSION_LOOKUP) {
			session_reply(s, 421, "4.3.2",
			    "%s Service shutting down", srv->hostname);
			session_close(s, true);
		}
		session_finish(s);
	}
	srv->grace_timer = evtimer_new(srv->base, server_grace_cb, srv);
	if (srv->grace_timer != NULL)
		(void)evtimer_add(srv->grace_timer, &tv);
	server_maybe_done(srv);
}

void
smtp_server_free(struct smtp_server *srv)
{
	struct session *s;
	struct ipcount *ic;
	size_t i;

	if (srv == NULL)
		return;
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL) {
		TAILQ_REMOVE(&srv->sessions, s, entry);
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		if (s->drain_timer != NULL)
			event_free(s->drain_timer);
		s->drain_timer = NULL;
		if (s->lookup_timer != NULL)
			event_free(s->lookup_timer);
		s->lookup_timer = NULL;
		if (s->session_timer != NULL)
			event_free(s->session_timer);
		s->session_timer = NULL;
		if (s->data_timer != NULL)
			event_free(s->data_timer);
		s->data_timer = NULL;
		if (s->lookup != NULL)
			s->lookup->s = NULL;
		/* pending commits still own s as their callback argument. */
		if (s->pending == 0) {
			policy_cancel(s->preq);
			session_tx_reset(s);
			sbuf_release(&s->pctx.prepend);
			sbuf_release(&s->tx_err);
			free(s);
		}
	}
	for (i = 0; i < SMTP_SERVER_IPTAB_SIZE; i++)
		while ((ic = srv->iptab[i]) != NULL) {
			srv->iptab[i] = ic->next;
			free(ic);
		}
	for (i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i].evl != NULL)
			evconnlistener_free(srv->listeners[i].evl);
		if (srv->listeners[i].tls != NULL)
			SSL_CTX_free(srv->listeners[i].tls);
	}
	if (srv->grace_timer != NULL)
		event_free(srv->grace_timer);
	if (srv->accept_timer != NULL)
		event_free(srv->accept_timer);
	if (srv->spare_fd != -1)
		(void)close(srv->spare_fd); /* /dev/null */
	policy_free(srv->policy);
	free(srv->listeners);
	free(srv);
}
