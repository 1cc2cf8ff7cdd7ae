/*
 * smtp_client.c - outbound SMTP/LMTP sessions on the event loop: the
 * transactions and replies; opening a connection is smtp_client_conn.c.
 *
 * A connection resolves its target through dns_, tries each address in
 * turn (banner, EHLO/HELO or LHLO, STARTTLS per the target's policy) and
 * then runs transactions: MAIL, RCPTs and DATA sent as one group when the
 * peer offers PIPELINING (RFC 2920), else lock-step. Replies are bounded
 * (2048-octet lines, 100 lines) and kept as "CODE text" (all lines joined,
 * printable ASCII).
 *
 * The loop never touches the spool file. When a transaction starts, one
 * job on the reader threads (smtp_client_params.readers: a pool of their
 * own, never behind an fsync) opens it, reads up to SC_AHEAD (128 KiB) in
 * 64 KiB preads and dot-stuffs it into an evbuffer, while MAIL, RCPT and
 * DATA are on the wire; at 354 the loop moves that buffer's chains into
 * the output. A message that fits (most do) is one job, one round trip.
 * A larger one is read ahead, the next job while the output drains, with
 * at most SC_AHEAD content octets read or reading per connection. The
 * stuffing state (line start, last two octets) travels with the jobs.
 *
 * Owns its bufferevent (and through it the SSL), not the SSL_CTX of its
 * target; owns its transaction's file handle and read-ahead. Never blocks.
 * A job still in flight when the client gives the content up (closed,
 * connection lost, transaction over) is orphaned: its completion frees its
 * buffer and has a reader close the file. A file gone, changed or short
 * ends the transaction 451 and drops the connection (DATA may be out
 * already). A client is freed only
 * when none of its libevent entry points is on the stack (depth count), so
 * user callbacks may close it; none runs after smtp_client_close.
 * TLS "may": a failed handshake is retried once, on the same address,
 * without TLS (as Postfix does); encrypt and verify never fall back.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "sbuf.h"
#include "smtp_client.h"
#include "smtp_client_int.h"
#include "smtp_proto.h"
#include "spool_read.h"
#include "tlsctx.h"
#include "workers.h"
#include "xmalloc.h"

#define SC_LINE_MAX  2048        /* reply line, without CRLF */
#define SC_LINES_MAX 100         /* lines in one reply */
#define SC_OUT_LOW   (64 * 1024) /* refill when drained to this */

/*
 * One job on the readers: opens the file first when src is NULL, reads
 * want content octets from off on (as many as the client has room for, so
 * a message up to SC_AHEAD is one job), dot-stuffs them into out, and
 * closes src after the last octet or an error. The job never looks at the
 * client; c is for the completion only, and NULL once the client gave the
 * content up (orphaned: the completion frees the job and has the handle
 * closed).
 */
struct sc_rjob {
	struct smtp_client *c; /* NULL: orphaned */
	struct workers *readers;
	const struct spool_reader *rd;
	char id[SPOOL_ID_LEN + 1];
	uint64_t content_off;
	uint64_t content_size;
	char sha[SPOOL_SHA256_HEX + 1];
	struct spool_content *src; /* in: NULL opens; out: NULL when closed */
	uint64_t off;
	size_t want;
	size_t got;
	bool last;
	struct sc_stuffing st; /* in: before off; out: after got octets */
	struct evbuffer *out;  /* the stuffed octets */
	char err[SMTP_CLIENT_REPLY_MAX / 2]; /* "" when all went well */
};

static void sc_read(struct smtp_client *c);
static void sc_content_begin(struct smtp_client *c);
static bool sc_txn_send_next(struct smtp_client *c);
static void sc_txn_fail(struct smtp_client *c, unsigned code, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

/* ---- small helpers ---- */

unsigned
sc_secs(unsigned v, unsigned dflt)
{
	return v > 0 ? v : dflt;
}

void
sc_arm(struct smtp_client *c, unsigned secs, const char *what)
{
	struct timeval tv = { (time_t)secs, 0 };

	c->timeout_what = what;
	if (evtimer_add(c->timer, &tv) == -1)
		log_panic("smtp_client: evtimer_add failed");
}

void
sc_disarm(struct smtp_client *c)
{
	(void)evtimer_del(c->timer); /* cannot fail on an initialized event */
}

void
sc_defer(struct smtp_client *c, enum sc_defer kind)
{
	static const struct timeval zero = { 0, 0 };

	c->defer_kind = kind;
	if (evtimer_add(c->defer, &zero) == -1)
		log_panic("smtp_client: evtimer_add failed");
}

void
sc_enter(struct smtp_client *c)
{
	c->depth++;
}

void
sc_leave(struct smtp_client *c)
{
	if (--c->depth == 0 && c->freeing)
		sc_free(c);
}

void
sc_printf(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap) < 0)
		log_panic("smtp_client: evbuffer_add_vprintf failed");
	va_end(ap);
}

/* Sets rcpt's outcome: code and a "CODE text" reply. */
static void __attribute__((format(printf, 3, 4)))
sc_rcpt_set(struct smtp_client_rcpt *r, unsigned code, const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	va_start(ap, fmt);
	(void)vsnprintf(r->reply, sizeof(r->reply), fmt, ap);
	va_end(ap);
}

static bool
sc_has_crlf(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/*
 * Sends QUIT (when asked and still talking) without waiting for anything,
 * then frees the bufferevent. The bytes are pushed to the socket at once
 * because the bufferevent goes away with this call.
 */
void
sc_drop(struct smtp_client *c, bool quit)
{
	struct bufferevent *under;
	struct evbuffer *out;
	evutil_socket_t fd;

	if (c->bev == NULL)
		return;
	if (quit) {
		/* With TLS this is SSL_write into the socket bev's output. */
		if (bufferevent_write(c->bev, "QUIT\r\n", 6) == 0) {
			under = bufferevent_get_underlying(c->bev);
			if (under == NULL)
				under = c->bev;
			fd = bufferevent_getfd(under);
			out = bufferevent_get_output(under);
			/* The socket bev keeps its output's front frozen. */
			if (fd >= 0 && evbuffer_unfreeze(out, 1) == 0) {
				/* Best effort: a short or failed write is fine.
				 */
				(void)evbuffer_write(out, fd);
				(void)evbuffer_freeze(out, 1);
			}
		}
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	c->ssl = NULL;
	c->tls_active = false;
	c->rlines = 0; /* a half-read reply dies with its connection */
}

static void
sc_rjob_free(struct sc_rjob *j)
{
	if (j->out != NULL)
		evbuffer_free(j->out);
	free(j);
}

/* On a reader: closes a handle the client is done with; frees the job. */
static void
sc_rjob_close(void *arg)
{
	struct sc_rjob *j = arg;

	spool_content_close(j->src);
	sc_rjob_free(j);
}

/*
 * Gives the content up: a read in flight keeps its output and handle for
 * its completion to free; an open handle is closed on a reader (the last
 * close of an unlinked file frees its blocks: not on the loop).
 */
static void
sc_content_cleanup(struct smtp_client *c)
{
	struct sc_rjob *j;

	if (c->rjob != NULL) {
		c->rjob->c = NULL;
		c->rjob = NULL;
	}
	if (c->src != NULL) {
		j = xcalloc(1, sizeof(*j));
		j->src = c->src;
		c->src = NULL;
		workers_submit(c->readers, sc_rjob_close, NULL, j);
	}
	if (c->ready != NULL &&
	    evbuffer_drain(c->ready, evbuffer_get_length(c->ready)) == -1)
		log_panic("smtp_client: evbuffer_drain failed");
	c->ready_raw = 0;
}

static void
sc_txn_cleanup(struct smtp_client *c)
{
	sc_content_cleanup(c);
	free(c->cmds);
	c->cmds = NULL;
	free(c->accepted);
	c->accepted = NULL;
	free(c->final);
	c->final = NULL;
	c->ncmds = c->nsent = c->nrecv = 0;
}

void
sc_free(struct smtp_client *c)
{
	sc_unopening(c);
	sc_drop(c, false);
	sc_txn_cleanup(c);
	if (c->ready != NULL)
		evbuffer_free(c->ready);
	event_free(c->timer);
	event_free(c->defer);
	free(c->addrs);
	free(c->helo);
	free(c);
}

/* ---- transactions ---- */

static void
sc_done(struct smtp_client *c, int status)
{
	smtp_client_done_cb cb = c->done_cb;

	sc_disarm(c);
	sc_txn_cleanup(c);
	if (c->bev != NULL && c->state != SC_DEAD) {
		c->state = SC_IDLE;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	}
	c->done_cb = NULL;
	c->msg = NULL;
	cb(c->done_arg, c, status);
}

/*
 * The connection failed mid-transaction: every recipient without a final
 * reply gets code (4xx) and the reason; the connection is dropped.
 */
static void
sc_txn_fail(struct smtp_client *c, unsigned code, const char *fmt, ...)
{
	struct smtp_client_msg *m = c->msg;
	char reason[SMTP_CLIENT_REPLY_MAX];
	va_list ap;
	size_t i;

	va_start(ap, fmt);
	(void)vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	log_debug("smtp_client: %s: %s", c->peer, reason);
	for (i = 0; i < m->nrcpts; i++) {
		if (c->final != NULL && c->final[i])
			continue; /* LMTP: already delivered or refused */
		sc_rcpt_set(&m->rcpts[i], code, "%s", reason);
	}
	sc_drop(c, false);
	c->state = SC_DEAD;
	c->broken = true;
	sc_done(c, -1);
}

static const char *
sc_cmd_name(const struct sc_cmd *cmd)
{
	switch (cmd->kind) {
	case SC_CMD_RSET:
		return "RSET";
	case SC_CMD_MAIL:
		return "MAIL";
	case SC_CMD_RCPT:
		return "RCPT";
	case SC_CMD_DATA:
		return "DATA";
	}
	return "?";
}

static void
sc_notify(char *buf, size_t len, unsigned notify)
{
	buf[0] = '\0';
	if (notify & SMTP_PROTO_NOTIFY_NEVER) {
		(void)snprintf(buf, len, "NEVER");
		return;
	}
	if (notify & SMTP_PROTO_NOTIFY_SUCCESS)
		(void)snprintf(buf + strlen(buf), len - strlen(buf), "SUCCESS");
	if (notify & SMTP_PROTO_NOTIFY_FAILURE)
		(void)snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
		    buf[0] != '\0' ? "," : "", "FAILURE");
	if (notify & SMTP_PROTO_NOTIFY_DELAY)
		(void)snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
		    buf[0] != '\0' ? "," : "", "DELAY");
}

static void
sc_write_cmd(struct smtp_client *c, const struct sc_cmd *cmd)
{
	struct smtp_client_msg *m = c->msg;
	const struct smtp_client_rcpt *r;
	char notify[40];

	switch (cmd->kind) {
	case SC_CMD_RSET:
		sc_printf(c, "RSET\r\n");
		break;
	case SC_CMD_MAIL:
		sc_printf(c, "MAIL FROM:<%s>", m->sender);
		if (c->ext_size)
			sc_printf(c, " SIZE=%" PRIu64,
			    m->content_size +
			        (m->prepend != NULL ? strlen(m->prepend) : 0));
		if (c->ext_8bitmime && m->body == SMTP_PROTO_BODY_8BITMIME)
			sc_printf(c, " BODY=8BITMIME");
		else if (c->ext_8bitmime && m->body == SMTP_PROTO_BODY_7BIT)
			sc_printf(c, " BODY=7BIT");
		if (m->smtputf8)
			sc_printf(c, " SMTPUTF8");
		if (c->ext_dsn && m->ret == SMTP_PROTO_RET_FULL)
			sc_printf(c, " RET=FULL");
		else if (c->ext_dsn && m->ret == SMTP_PROTO_RET_HDRS)
			sc_printf(c, " RET=HDRS");
		if (c->ext_dsn && m->envid != NULL && m->envid[0] != '\0')
			sc_printf(c, " ENVID=%s", m->envid);
		sc_printf(c, "\r\n");
		break;
	case SC_CMD_RCPT:
		r = &m->rcpts[cmd->rcpt];
		sc_printf(c, "RCPT TO:<%s>", r->addr);
		if (c->ext_dsn && r->notify != 0) {
			sc_notify(notify, sizeof(notify), r->notify);
			sc_printf(c, " NOTIFY=%s", notify);
		}
		if (c->ext_dsn && r->orcpt != NULL && r->orcpt[0] != '\0')
			sc_printf(c, " ORCPT=%s", r->orcpt);
		sc_printf(c, "\r\n");
		break;
	case SC_CMD_DATA:
		sc_printf(c, "DATA\r\n");
		break;
	}
}

/* Answers the transaction locally (nothing sent); cb from the loop. */
static void sc_txn_local(struct smtp_client *c, unsigned code, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static void
sc_txn_local(struct smtp_client *c, unsigned code, const char *fmt, ...)
{
	struct smtp_client_msg *m = c->msg;
	char text[SMTP_CLIENT_REPLY_MAX];
	va_list ap;
	size_t i;

	va_start(ap, fmt);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	for (i = 0; i < m->nrcpts; i++)
		sc_rcpt_set(&m->rcpts[i], code, "%s", text);
	sc_txn_cleanup(c);
	c->defer_status = 0;
	c->state = SC_PENDING;
	sc_defer(c, SC_DEFER_DONE);
}

void
smtp_client_send(struct smtp_client *c, struct smtp_client_msg *m,
    smtp_client_done_cb cb, void *arg)
{
	size_t i, n;

	if (c->msg != NULL || c->state == SC_PENDING ||
	    (c->state != SC_IDLE && c->state != SC_DEAD))
		log_panic("smtp_client_send: %s is busy (state %d)", c->peer,
		    (int)c->state);
	c->msg = m;
	c->done_cb = cb;
	c->done_arg = arg;
	for (i = 0; i < m->nrcpts; i++) {
		m->rcpts[i].code = 0;
		m->rcpts[i].reply[0] = '\0';
	}
	if (c->state == SC_DEAD || c->bev == NULL) {
		for (i = 0; i < m->nrcpts; i++)
			sc_rcpt_set(&m->rcpts[i], 451,
			    "451 4.4.2 connection to %s was lost", c->peer);
		c->defer_status = -1;
		c->broken = true;
		sc_defer(c, SC_DEFER_DONE);
		return;
	}
	if (m->probe)
		goto commands; /* no content: MAIL and RCPT only */
	/* Never change the bytes: refuse what the peer cannot take. */
	if (m->smtputf8 && !c->ext_smtputf8) {
		sc_txn_local(c, 450,
		    "450 4.6.0 target does not offer "
		    "SMTPUTF8");
		return;
	}
	if (m->body == SMTP_PROTO_BODY_8BITMIME && !c->ext_8bitmime) {
		sc_txn_local(c, 450,
		    "450 4.6.0 target does not offer "
		    "8BITMIME");
		return;
	}
	if (c->ext_size && c->size_max > 0 && m->content_size > c->size_max) {
		sc_txn_local(c, 552,
		    "552 5.3.4 message size %" PRIu64
		    " exceeds the limit %" PRIu64 " of %s",
		    m->content_size, c->size_max, c->peer);
		return;
	}
	if (sc_has_crlf(m->sender) || sc_has_crlf(m->envid)) {
		sc_txn_local(c, 554, "554 5.1.7 invalid sender or ENVID");
		return;
	}
	if (m->rd == NULL || m->id == NULL) {
		/* The queue has no file to give. */
		sc_txn_local(c, 451, "451 4.3.0 cannot open queue file");
		return;
	}
	if (c->readers == NULL)
		log_panic("smtp_client_send: %s has no readers for content",
		    c->peer);

commands:
	c->cmds = xcalloc(m->nrcpts + 3, sizeof(*c->cmds));
	c->accepted = xcalloc(m->nrcpts + 1, sizeof(*c->accepted));
	c->final = xcalloc(m->nrcpts + 1, sizeof(*c->final));
	n = 0;
	if (c->need_rset)
		c->cmds[n++].kind = SC_CMD_RSET;
	c->cmds[n++].kind = SC_CMD_MAIL;
	for (i = 0; i < m->nrcpts; i++) {
		if (sc_has_crlf(m->rcpts[i].addr) ||
		    sc_has_crlf(m->rcpts[i].orcpt)) {
			sc_rcpt_set(&m->rcpts[i], 553,
			    "553 5.1.3 invalid recipient address");
			c->final[i] = true;
			continue;
		}
		c->cmds[n].kind = SC_CMD_RCPT;
		c->cmds[n++].rcpt = i;
	}
	if (!m->probe)
		c->cmds[n++].kind = SC_CMD_DATA;
	c->ncmds = n;
	c->nsent = c->nrecv = 0;
	c->naccepted = c->nfinal = 0;
	c->mail_ok = false;
	c->dummy_dot = false;
	c->pipelined = c->ext_pipelining;
	c->ntrans++;
	c->state = SC_TXN;
	if (c->pipelined) {
		/* RFC 2920: RSET, MAIL and RCPT may be grouped; DATA last. */
		while (c->nsent < c->ncmds)
			sc_write_cmd(c, &c->cmds[c->nsent++]);
	} else {
		sc_write_cmd(c, &c->cmds[c->nsent++]);
	}
	sc_arm(c, sc_secs(c->target->timeout_command, 300),
	    sc_cmd_name(&c->cmds[0]));
	if (!m->probe)
		sc_content_begin(c);
}

/*
 * Lock-step: sends the next command, unless the answer is already known.
 * Returns false when the transaction ended (c may be in a new one now).
 */
static bool
sc_txn_send_next(struct smtp_client *c)
{
	const struct sc_cmd *next = &c->cmds[c->nsent];

	if (next->kind == SC_CMD_DATA && c->naccepted == 0) {
		c->need_rset = true;
		sc_done(c, 0);
		return false;
	}
	sc_write_cmd(c, next);
	c->nsent++;
	return true;
}

/* ---- content ---- */

/* Notes where stuffing stands after n more octets of buf. */
static void
sc_stuff_track(struct sc_stuffing *st, const char *buf, size_t n)
{
	if (n == 0)
		return;
	st->bol = buf[n - 1] == '\n' || buf[n - 1] == '\r';
	st->tail[0] = n >= 2 ? (unsigned char)buf[n - 2] : st->tail[1];
	st->tail[1] = (unsigned char)buf[n - 1];
}

/*
 * Dot-stuffs buf into out; a line starts after CR or LF (see below). Any
 * thread: it touches only st and out.
 */
static void
sc_stuff(struct sc_stuffing *st, struct evbuffer *out, const char *buf,
    size_t n)
{
	size_t seg = 0, p = 0, i;
	const char *dot;
	bool at_bol;

	/*
	 * Spool content is CRLF-canonical, so a line start is after CRLF.
	 * Treating a bare CR or LF as a line end too only ever adds a dot
	 * to malformed content, and keeps a lenient receiver from seeing
	 * "LF . CRLF" as the end of data (SMTP smuggling).
	 */
	while (p < n && (dot = memchr(buf + p, '.', n - p)) != NULL) {
		i = (size_t)(dot - buf);
		at_bol = i == 0 ? st->bol :
		                  (buf[i - 1] == '\n' || buf[i - 1] == '\r');
		if (at_bol) {
			if (evbuffer_add(out, buf + seg, i - seg) == -1 ||
			    evbuffer_add(out, ".", 1) == -1)
				log_fatalx(70, "smtp_client: out of memory");
			seg = i; /* the dot itself goes with the rest */
		}
		p = i + 1;
	}
	if (evbuffer_add(out, buf + seg, n - seg) == -1)
		log_fatalx(70, "smtp_client: out of memory");
	sc_stuff_track(st, buf, n);
}

/* On a reader: see struct sc_rjob. */
static void
sc_rjob_run(void *arg)
{
	struct sc_rjob *j = arg;
	char buf[SC_CHUNK], eb[128];
	struct sbuf err;
	size_t n;
	ssize_t r;

	if (j->src == NULL) {
		sbuf_init(&err, sizeof(j->err));
		j->src = spool_content_reopen(j->rd, j->id, j->content_off,
		    j->content_size, j->sha, &err);
		if (j->src == NULL)
			(void)snprintf(j->err, sizeof(j->err),
			    "cannot open queue file: %s", err.data);
		sbuf_release(&err);
		if (j->src == NULL)
			return;
	}
	while (j->got < j->want) {
		n = j->want - j->got < SC_CHUNK ? j->want - j->got : SC_CHUNK;
		r = spool_content_read(j->src, j->off + j->got, buf, n);
		if (r <= 0) {
			(void)snprintf(j->err, sizeof(j->err),
			    "error reading queue file: %s",
			    r == 0 ? "file truncated" :
			             strerror_r(errno, eb, sizeof(eb)));
			break;
		}
		sc_stuff(&j->st, j->out, buf, (size_t)r);
		j->got += (size_t)r;
	}
	if (j->last || j->err[0] != '\0') {
		spool_content_close(j->src);
		j->src = NULL;
	}
}

static void sc_rjob_done(void *arg);

/*
 * Asks the readers for the next octets, as many as there is room for; the
 * first job (open) opens the file too. The handle moves to the job and
 * comes back with it, and so does the stuffing state.
 */
static void
sc_rjob_submit(struct smtp_client *c, bool open)
{
	struct smtp_client_msg *m = c->msg;
	uint64_t rest = m->content_size - c->roff;
	size_t room = SC_AHEAD - c->ready_raw;
	struct sc_rjob *j = xcalloc(1, sizeof(*j));

	j->c = c;
	j->readers = c->readers;
	if (open) {
		j->rd = m->rd;
		(void)snprintf(j->id, sizeof(j->id), "%s", m->id);
		j->content_off = m->content_off;
		j->content_size = m->content_size;
		(void)snprintf(j->sha, sizeof(j->sha), "%s",
		    m->sha256 != NULL ? m->sha256 : "");
	} else {
		j->src = c->src;
		c->src = NULL;
	}
	j->off = c->roff;
	j->want = rest < room ? (size_t)rest : room;
	j->last = j->want == rest;
	j->st = c->rst;
	if ((j->out = evbuffer_new()) == NULL)
		log_fatalx(70, "smtp_client: out of memory");
	c->roff += j->want;
	c->rjob = j;
	workers_submit(c->readers, sc_rjob_run, sc_rjob_done, j);
}

/* Keeps a read in flight while there is more and room for a chunk. */
static void
sc_content_ahead(struct smtp_client *c)
{
	if (c->rjob == NULL && c->ready_raw + SC_CHUNK <= SC_AHEAD &&
	    c->roff < c->msg->content_size)
		sc_rjob_submit(c, false);
}

/* Fills the output up to SC_OUT_HIGH; ends the content when all is sent. */
static void
sc_content_fill(struct smtp_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (c->ready_raw > 0 && evbuffer_get_length(out) < SC_OUT_HIGH) {
		/* Moves the chains: nothing is copied on the loop. */
		if (evbuffer_add_buffer(out, c->ready) == -1)
			log_fatalx(70, "smtp_client: out of memory");
		c->left -= c->ready_raw;
		c->sent += c->ready_raw;
		c->ready_raw = 0;
	}
	sc_content_ahead(c);
	if (c->left > 0 || c->rjob != NULL) {
		/* Progress made: the data timeout counts from now. */
		sc_arm(c, sc_secs(c->target->timeout_data, 600),
		    "message content");
		return;
	}
	if (c->sent > 0 && !(c->rst.tail[0] == '\r' && c->rst.tail[1] == '\n'))
		sc_printf(c, "\r\n");
	sc_printf(c, ".\r\n");
	sc_content_cleanup(c);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	c->state = SC_DOT;
	sc_arm(c, sc_secs(c->target->timeout_data, 600), "END-OF-MESSAGE");
}

/*
 * On the loop: a read came back. Its octets join the ready ones (and the
 * output, in SC_CONTENT); a failed open or read fails the transaction.
 */
static void
sc_rjob_done(void *arg)
{
	struct sc_rjob *j = arg;
	struct smtp_client *c = j->c;

	if (c == NULL) {
		if (j->src != NULL) {
			/* The close, and the free, on a reader. */
			workers_submit(j->readers, sc_rjob_close, NULL, j);
			return;
		}
		sc_rjob_free(j);
		return;
	}
	c->rjob = NULL;
	c->src = j->src;
	sc_enter(c);
	if (j->err[0] != '\0') {
		sc_txn_fail(c, 451, "451 4.3.0 %s", j->err);
		sc_rjob_free(j);
		sc_leave(c);
		return;
	}
	if (evbuffer_add_buffer(c->ready, j->out) == -1)
		log_fatalx(70, "smtp_client: out of memory");
	c->ready_raw += j->got;
	c->rst = j->st;
	sc_rjob_free(j);
	if (c->state == SC_CONTENT)
		sc_content_fill(c);
	else
		sc_content_ahead(c);
	sc_leave(c);
}

/* A transaction with content starts: its first read goes out now. */
static void
sc_content_begin(struct smtp_client *c)
{
	const char *pre = c->msg->prepend;

	c->roff = 0; /* content octets */
	c->left = c->msg->content_size;
	c->sent = 0;
	/* The readers stuff the content as if the prepend went first. */
	c->rst.bol = true;
	c->rst.tail[0] = c->rst.tail[1] = 0;
	if (pre != NULL)
		sc_stuff_track(&c->rst, pre, strlen(pre));
	if (c->ready == NULL && (c->ready = evbuffer_new()) == NULL)
		log_fatalx(70, "smtp_client: out of memory");
	sc_rjob_submit(c, true);
}

/* 354: the octets read so far go out, then the rest as it comes. */
static void
sc_content_start(struct smtp_client *c)
{
	struct smtp_client_msg *m = c->msg;
	struct sc_stuffing st = { true, { 0, 0 } };

	c->state = SC_CONTENT;
	/* Trace fields added after arrival go first, stuffed like the rest. */
	if (m->prepend != NULL && m->prepend[0] != '\0') {
		size_t plen = strlen(m->prepend);

		sc_stuff(&st, bufferevent_get_output(c->bev), m->prepend, plen);
		c->sent += plen;
	}
	/* The write callback runs when the output drains to SC_OUT_LOW. */
	bufferevent_setwatermark(c->bev, EV_WRITE, SC_OUT_LOW, 0);
	sc_content_fill(c);
}

/* ---- replies ---- */

/* A reply to a command of the transaction (state SC_TXN). */
static void
sc_txn_reply(struct smtp_client *c)
{
	struct smtp_client_msg *m = c->msg;
	const struct sc_cmd *cmd = &c->cmds[c->nrecv++];
	unsigned code = c->rcode;
	size_t i;

	if (code == 421) {
		sc_txn_fail(c, 421, "%s", c->rtext);
		return;
	}
	switch (cmd->kind) {
	case SC_CMD_RSET:
		if (code / 100 != 2) {
			sc_txn_fail(c, 451, "451 4.4.2 %s refused RSET: %s",
			    c->peer, c->rtext);
			return;
		}
		c->need_rset = false;
		break;
	case SC_CMD_MAIL:
		if (code / 100 == 2) {
			c->mail_ok = true;
			break;
		}
		/* Everyone gets the MAIL reply; later replies are noise. */
		for (i = 0; i < m->nrcpts; i++) {
			if (!c->final[i]) {
				sc_rcpt_set(&m->rcpts[i], code, "%s", c->rtext);
				c->final[i] = true;
			}
		}
		c->need_rset = true;
		if (!c->pipelined) {
			sc_done(c, 0);
			return;
		}
		break;
	case SC_CMD_RCPT:
		if (!c->mail_ok)
			break;
		sc_rcpt_set(&m->rcpts[cmd->rcpt], code, "%s", c->rtext);
		if (code / 100 == 2) {
			c->accepted[cmd->rcpt] = true;
			c->naccepted++;
		} else {
			c->final[cmd->rcpt] = true;
		}
		break;
	case SC_CMD_DATA:
		c->need_rset = true;
		if (code == 354) {
			if (c->mail_ok && c->naccepted > 0) {
				sc_content_start(c);
				return;
			}
			/* A 354 with nobody to deliver to: end it empty. */
			c->dummy_dot = true;
			sc_printf(c, ".\r\n");
			c->state = SC_DOT;
			sc_arm(c, sc_secs(c->target->timeout_data, 600),
			    "END-OF-MESSAGE");
			return;
		}
		if (c->mail_ok && c->naccepted > 0) {
			for (i = 0; i < m->nrcpts; i++) {
				if (!c->accepted[i])
					continue;
				if (code / 100 == 2 || code / 100 == 3)
					sc_rcpt_set(&m->rcpts[i], 451,
					    "451 4.5.0 unexpected reply to "
					    "DATA: %s",
					    c->rtext);
				else
					sc_rcpt_set(&m->rcpts[i], code, "%s",
					    c->rtext);
				c->final[i] = true;
			}
		}
		sc_done(c, 0);
		return;
	}
	if (m->probe && c->nrecv == c->ncmds) {
		/* A verification probe ends after the last RCPT reply. */
		c->need_rset = true;
		sc_done(c, 0);
		return;
	}
	if (c->nrecv == c->nsent && !c->pipelined && !sc_txn_send_next(c))
		return;
	sc_arm(c, sc_secs(c->target->timeout_command, 300),
	    sc_cmd_name(&c->cmds[c->nrecv]));
}

/* A reply to "." (state SC_DOT): one for SMTP, one per rcpt for LMTP. */
static void
sc_dot_reply(struct smtp_client *c)
{
	struct smtp_client_msg *m = c->msg;
	unsigned code = c->rcode;
	size_t i;

	if (c->dummy_dot) {
		sc_done(c, 0);
		return;
	}
	for (i = 0; i < m->nrcpts; i++) {
		if (!c->accepted[i] || c->final[i])
			continue;
		if (code / 100 == 3) {
			sc_txn_fail(c, 451,
			    "451 4.5.0 unexpected reply to "
			    "end of data: %s",
			    c->rtext);
			return;
		}
		sc_rcpt_set(&m->rcpts[i], code, "%s", c->rtext);
		c->final[i] = true;
		c->nfinal++;
		if (c->lmtp)
			break;
	}
	if (c->lmtp && c->nfinal < c->naccepted) {
		sc_arm(c, sc_secs(c->target->timeout_data, 600),
		    "END-OF-MESSAGE");
		return;
	}
	c->need_rset = false;
	sc_done(c, 0);
}

static void
sc_handle_reply(struct smtp_client *c)
{
	unsigned code = c->rcode;

	switch (c->state) {
	case SC_BANNER:
	case SC_EHLO:
	case SC_HELO:
	case SC_STARTTLS:
		sc_open_reply(c);
		return;
	case SC_TXN:
		sc_txn_reply(c);
		return;
	case SC_CONTENT:
		/* A reply before the end: the peer gave up on the message. */
		if (code / 100 == 4 || code / 100 == 5)
			sc_txn_fail(c, code, "%s", c->rtext);
		else
			sc_txn_fail(c, 451,
			    "451 4.5.0 unexpected reply "
			    "during data: %s",
			    c->rtext);
		return;
	case SC_DOT:
		sc_dot_reply(c);
		return;
	case SC_IDLE:
	case SC_PENDING:
		/* Unsolicited (e.g. a 421 before closing): done with it. */
		log_debug("smtp_client: %s: unexpected reply while idle: %s",
		    c->peer, c->rtext);
		sc_drop(c, false);
		c->state = SC_DEAD;
		c->broken = true;
		return;
	case SC_RESOLVE:
	case SC_CONNECT:
	case SC_HANDSHAKE:
	case SC_DEAD:
		return;
	}
}

/* Appends reply text, keeping printable ASCII and the size bound. */
static void
sc_text_append(struct smtp_client *c, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len && c->rlen + 1 < sizeof(c->rtext); i++) {
		unsigned char ch = (unsigned char)s[i];

		c->rtext[c->rlen++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch :
		                                                  '?';
	}
	c->rtext[c->rlen] = '\0';
}

/*
 * One reply line (without CRLF). Returns 1 when the reply is complete, 0
 * when more lines follow, -1 on a malformed reply.
 */
static int
sc_reply_line(struct smtp_client *c, const char *line, size_t len)
{
	struct smtp_proto_reply_line rl;

	if (smtp_proto_parse_reply_line(line, len, &rl) == -1)
		return -1;
	if (c->rlines == 0) {
		c->rcode = rl.code;
		c->rlen = 0;
		sc_text_append(c, line, 3);
	} else if (rl.code != c->rcode) {
		return -1;
	}
	if (rl.textlen > 0) {
		sc_text_append(c, " ", 1);
		sc_text_append(c, rl.text, rl.textlen);
	}
	if (c->state == SC_EHLO && c->rlines > 0 && rl.code / 100 == 2 &&
	    rl.textlen > 0)
		sc_ehlo_line(c, rl.text, rl.textlen);
	if (++c->rlines > SC_LINES_MAX)
		return -1;
	if (rl.more)
		return 0;
	c->rlines = 0;
	return 1;
}

static void
sc_protocol_error(struct smtp_client *c, const char *what)
{
	switch (c->state) {
	case SC_BANNER:
	case SC_EHLO:
	case SC_HELO:
	case SC_STARTTLS:
		sc_fail_addr(c, false, false, "%s: %s", c->peer, what);
		return;
	case SC_TXN:
	case SC_CONTENT:
	case SC_DOT:
		sc_txn_fail(c, 451, "451 4.5.0 %s: %s", c->peer, what);
		return;
	default:
		sc_drop(c, false);
		c->state = SC_DEAD;
		c->broken = true;
		return;
	}
}

static void
sc_read(struct smtp_client *c)
{
	char line[SC_LINE_MAX + 1];
	struct evbuffer_ptr eol;
	struct evbuffer *in;
	size_t eol_len;
	int r;

	for (;;) {
		if (c->freeing || c->bev == NULL)
			return;
		if (c->state == SC_CONNECT || c->state == SC_HANDSHAKE)
			return;
		in = bufferevent_get_input(c->bev);
		eol = evbuffer_search_eol(in, NULL, &eol_len,
		    EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > SC_LINE_MAX)
				sc_protocol_error(c, "reply line too long");
			return;
		}
		if ((size_t)eol.pos > SC_LINE_MAX) {
			sc_protocol_error(c, "reply line too long");
			return;
		}
		if (evbuffer_remove(in, line, (size_t)eol.pos) !=
		        (int)eol.pos ||
		    evbuffer_drain(in, eol_len) == -1)
			log_panic("smtp_client: evbuffer_remove failed");
		line[eol.pos] = '\0';
		r = sc_reply_line(c, line, (size_t)eol.pos);
		if (r == -1) {
			c->rlines = 0;
			sc_protocol_error(c, "malformed reply");
			return;
		}
		if (r == 1)
			sc_handle_reply(c);
	}
}

/* ---- libevent entry points ---- */

void
sc_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	(void)bev;
	sc_enter(c);
	sc_read(c);
	sc_leave(c);
}

void
sc_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	(void)bev;
	sc_enter(c);
	if (c->state == SC_CONTENT && !c->freeing && c->bev != NULL)
		sc_content_fill(c);
	sc_leave(c);
}

static void
sc_lost(struct smtp_client *c, const char *why)
{
	switch (c->state) {
	case SC_CONNECT:
		sc_fail_addr(c, false, false, "connect to %s: %s", c->peer,
		    why);
		return;
	case SC_BANNER:
		sc_fail_addr(c, false, false,
		    "lost connection with %s while "
		    "receiving the initial server greeting: %s",
		    c->peer, why);
		return;
	case SC_EHLO:
	case SC_HELO:
	case SC_STARTTLS:
		sc_fail_addr(c, false, false,
		    "lost connection with %s after "
		    "%s: %s",
		    c->peer, c->timeout_what, why);
		return;
	case SC_HANDSHAKE:
		sc_tls_failed(c, why);
		return;
	case SC_TXN:
	case SC_CONTENT:
	case SC_DOT:
		sc_txn_fail(c, 451,
		    "451 4.4.2 lost connection with %s after "
		    "%s: %s",
		    c->peer,
		    c->state == SC_CONTENT ? "DATA" :
		        c->state == SC_DOT ? "END-OF-MESSAGE" :
		                             c->timeout_what,
		    why);
		return;
	case SC_IDLE:
	case SC_PENDING:
		sc_drop(c, false);
		c->state = SC_DEAD;
		c->broken = true;
		return;
	case SC_RESOLVE:
	case SC_DEAD:
		return;
	}
}

void
sc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	char why[256];
	unsigned long e, first = 0;
	int err;

	sc_enter(c);
	if (c->freeing || bev != c->bev)
		goto out;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == SC_CONNECT) {
			c->state = SC_BANNER;
			sc_arm(c, sc_secs(c->target->timeout_command, 300),
			    "CONNECT");
			sc_read(c); /* the banner may be in already */
		} else if (c->state == SC_HANDSHAKE) {
			sc_tls_up(c);
			if (!c->freeing && c->bev != NULL)
				sc_read(c);
		}
		goto out;
	}
	err = EVUTIL_SOCKET_ERROR();
	if (c->ssl != NULL) {
		while ((e = bufferevent_get_openssl_error(bev)) != 0) {
			if (first == 0)
				first = e;
		}
	}
	if (first != 0)
		tlsctx_strerror(first, why, sizeof(why));
	else if (what & BEV_EVENT_EOF)
		(void)snprintf(why, sizeof(why), "connection closed");
	else if (err != 0)
		(void)snprintf(why, sizeof(why), "%s",
		    evutil_socket_error_to_string(err));
	else
		(void)snprintf(why, sizeof(why), "connection error");
	sc_lost(c, why);
out:
	sc_leave(c);
}

void
sc_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	smtp_client_done_cb cb;

	(void)fd;
	(void)what;
	sc_enter(c);
	switch (c->defer_kind) {
	case SC_DEFER_CONNECT:
		sc_connect(c);
		break;
	case SC_DEFER_OPEN_FAIL:
		sc_open_fail(c);
		break;
	case SC_DEFER_DONE:
		cb = c->done_cb;
		c->done_cb = NULL;
		c->msg = NULL;
		if (c->state == SC_PENDING)
			c->state = SC_IDLE;
		cb(c->done_arg, c, c->defer_status);
		break;
	case SC_DEFER_NONE:
		break;
	}
	sc_leave(c);
}

void
sc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;

	(void)fd;
	(void)what;
	sc_enter(c);
	switch (c->state) {
	case SC_CONNECT:
		sc_fail_addr(c, false, false, "timeout connecting to %s",
		    c->peer);
		break;
	case SC_BANNER:
		sc_fail_addr(c, false, false,
		    "timeout after CONNECT to %s "
		    "(no greeting)",
		    c->peer);
		break;
	case SC_EHLO:
	case SC_HELO:
	case SC_STARTTLS:
		sc_fail_addr(c, false, false, "timeout after %s to %s",
		    c->timeout_what, c->peer);
		break;
	case SC_HANDSHAKE:
		sc_tls_failed(c, "timeout");
		break;
	case SC_TXN:
	case SC_CONTENT:
	case SC_DOT:
		sc_txn_fail(c, 451, "451 4.4.2 timeout after %s to %s",
		    c->state == SC_CONTENT ? "DATA (sending content)" :
		                             c->timeout_what,
		    c->peer);
		break;
	default:
		break;
	}
	sc_leave(c);
}

/* ---- the rest of the API ---- */

void
smtp_client_close(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->freeing)
		return;
	sc_drop(c, c->state == SC_IDLE); /* QUIT only between transactions */
	sc_content_cleanup(c);           /* a read in flight is orphaned */
	c->state = SC_DEAD;
	c->open_cb = NULL;
	c->done_cb = NULL;
	sc_disarm(c);
	(void)evtimer_del(c->defer); /* no callback after close */
	c->freeing = true;
	if (c->depth == 0)
		sc_free(c);
}

const char *
smtp_client_peer(const struct smtp_client *c)
{
	return c->peer;
}

bool
smtp_client_reusable(const struct smtp_client *c)
{
	unsigned max = c->target->messages_per_connection;

	return c->state == SC_IDLE && !c->broken && c->bev != NULL &&
	    (max == 0 || c->ntrans < max);
}
