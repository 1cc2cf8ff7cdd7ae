/*
 * smtp_server_data.c - a session's message content: DATA and BDAT decoded
 * by smtp_proto and streamed into a spool file (with our Received header
 * in front), the content checks at its end, the DATA-END policy verdict
 * and the commit.
 *
 * Session memory does not grow with message size. The 250 after DATA or
 * the last BDAT is only sent from the spool's commit callback, i.e. once
 * the message is durable (DESIGN rule 1); reading stops until then.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "policy.h"
#include "smtp_proto.h"
#include "smtp_server_int.h"
#include "spool.h"

/* Builds the Received header (RFC 5321 4.4) and writes it to the spool. */
static int
session_write_received(struct session *s, struct sbuf *err)
{
	char date[64], helo[600];
	const char *proto;
	struct sbuf hdr;
	struct tm tm;
	time_t now = time(NULL);
	int rc;

	(void)gmtime_r(&now, &tm);
	(void)strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (s->mail.smtputf8)
		proto = s->tls_active ? "UTF8SMTPS" : "UTF8SMTP";
	else if (s->esmtp)
		proto = s->tls_active ? "ESMTPS" : "ESMTP";
	else
		proto = s->tls_active ? "SMTPS" : "SMTP";
	sbuf_init(&hdr, 4096);
	rc = sbuf_printf(&hdr, "Received: from %s (%s [%s])\r\n",
	    session_esc(helo, sizeof(helo), s->helo), s->name, s->addr);
	if (rc == 0 && s->tls_active)
		rc = sbuf_printf(&hdr, "\t(using %s)\r\n", s->tls_desc);
	if (rc == 0)
		rc = sbuf_printf(&hdr, "\tby %s (splitmx) with %s id %s",
		    s->srv->hostname, proto, spool_msg_id(s->msg));
	if (rc == 0 && s->nrcpts == 1)
		rc = sbuf_printf(&hdr, "\r\n\tfor <%s>; %s\r\n",
		    s->rcpts[0].addr, date);
	else if (rc == 0)
		rc = sbuf_printf(&hdr, ";\r\n\t%s\r\n", date);
	/*
	 * Our own trace: a message that comes back carrying it is returning
	 * mail (a loop through a target), and the queue treats it so.
	 */
	if (rc == 0)
		rc = sbuf_printf(&hdr, "%s: node=%s; id=%s\r\n",
		    SMTP_PROTO_TRACE_HEADER, s->srv->hostname,
		    spool_msg_id(s->msg));
	if (rc == -1) {
		sbuf_release(&hdr);
		return sbuf_seterr(err, "Received header too long");
	}
	rc = spool_msg_append(s->msg, hdr.data, hdr.len, err);
	sbuf_release(&hdr);
	return rc;
}

static void
session_start_decoder(struct session *s)
{
	smtp_proto_data_init(&s->dec,
	    s->state == SESSION_BDAT ? SMTP_PROTO_DATA_RAW :
	                               SMTP_PROTO_DATA_DOT,
	    s->srv->conf->limits.bare_newline == CONF_NEWLINE_NORMALIZE);
	smtp_proto_hdrscan_init(&s->hs);
}

/* One line per failing message would flood when the disk or fds are out:
 * at most 5 lines in 10 s for spool_msg_new, write and commit failures. */
static struct log_limit spool_log = LOG_LIMIT_INIT(10, 5, "spool failures");

/* Opens the spool file for this transaction's content. */
static int
session_start_content(struct session *s)
{
	struct spool_envelope env;
	char proto[16];

	if (s->tx_error == TX_DISCARD) {
		session_start_decoder(s); /* read, kept nowhere */
		return 0;
	}
	memset(&env, 0, sizeof(env));
	env.sender = s->mail.path.mailbox;
	env.envid = s->mail.envid[0] != '\0' ? s->mail.envid : NULL;
	env.ret = (int)s->mail.ret;
	env.body = (int)s->mail.body;
	env.smtputf8 = s->mail.smtputf8;
	env.rcpts = s->rcpts;
	env.nrcpts = s->nrcpts;
	(void)clock_gettime(CLOCK_REALTIME, &env.arrival);
	env.listener = s->local;
	env.client_addr = s->addr;
	env.client_name = s->name;
	env.helo = s->helo;
	(void)snprintf(proto, sizeof(proto), "%s%s",
	    s->esmtp ? "ESMTP" : "SMTP", s->tls_active ? "S" : "");
	env.protocol = proto;
	env.tls = s->tls_active ? s->tls_summary : NULL;

	if (s->srv->file_max != 0 && s->srv->nfiles >= s->srv->file_max) {
		/*
		 * The descriptors left after the sessions' sockets are in
		 * use by other messages: a file now could take one the
		 * workers or the deliveries need (size_fd_limits).
		 */
		(void)sbuf_seterr(&s->tx_err,
		    "%u messages in transfer, the most the descriptors allow",
		    s->srv->nfiles);
		log_warnx_limited(&spool_log,
		    "%s: cannot spool message from %s[%s]: %s", s->sid, s->name,
		    s->addr, s->tx_err.data);
		return -1;
	}
	s->msg = spool_msg_new(s->srv->spool, &env, &s->tx_err);
	if (s->msg != NULL) {
		s->holds_file = true;
		s->srv->nfiles++;
	}
	if (s->msg == NULL || session_write_received(s, &s->tx_err) == -1) {
		log_warnx_limited(&spool_log,
		    "%s: cannot spool message from %s[%s]: %s", s->sid, s->name,
		    s->addr,
		    s->tx_err.len > 0 ? s->tx_err.data : "unknown error");
		if (s->msg != NULL) {
			spool_msg_abort(s->msg);
			s->msg = NULL;
			session_file_done(s);
		}
		return -1;
	}
	session_start_decoder(s);
	return 0;
}

/* Decoded content goes to the header scanner and the spool. */
static void
session_content(struct session *s, const char *buf, size_t len)
{
	if (!s->hs.in_body)
		smtp_proto_hdrscan_feed(&s->hs, buf, len);
	if (s->tx_error != TX_OK || s->msg == NULL)
		return;
	if (s->dec.out_total > s->srv->conf->limits.message_size) {
		s->tx_error = TX_TOO_BIG;
		return;
	}
	if (spool_msg_append(s->msg, buf, len, &s->tx_err) == -1)
		s->tx_error = TX_WRITE;
}

/*
 * Feeds up to limit octets of input through the decoder. Returns the
 * number consumed; *done is set when the DATA terminator was seen.
 */
size_t
session_decode(struct session *s, struct evbuffer *in, uint64_t limit,
    bool *done)
{
	struct evbuffer_iovec vec[8];
	char out[SMTP_SERVER_DECODE_CHUNK];
	size_t total = 0;
	int i, n;

	*done = false;
	n = evbuffer_peek(in, -1, NULL, vec, 8);
	if (n > 8)
		n = 8;
	for (i = 0; i < n && !*done && total < limit; i++) {
		const char *p = vec[i].iov_base;
		size_t left = vec[i].iov_len;

		if (left > limit - total)
			left = (size_t)(limit - total);
		while (left > 0 && !*done) {
			size_t outlen = 0, used = 0;

			if (smtp_proto_data_feed(&s->dec, p, left, out,
			        sizeof(out), &outlen, &used) == 1)
				*done = true;
			if (outlen > 0)
				session_content(s, out, outlen);
			p += used;
			left -= used;
			total += used;
		}
	}
	return total;
}

static void session_data_verdict(struct session *,
    const struct policy_verdict *);

/*
 * End of content: refuse it with a reason, or hand it to the spool and wait
 * (reading stops until the commit callback sends the reply).
 */
void
session_end_content(struct session *s)
{
	const struct conf_limits *lim = &s->srv->conf->limits;

	session_data_deadline_stop(s); /* what follows is ours to do */
	if (s->dec.mode == SMTP_PROTO_DATA_RAW && s->msg != NULL) {
		char tail[4];
		size_t n = 0;

		smtp_proto_data_finish(&s->dec, tail, sizeof(tail), &n);
		if (n > 0)
			session_content(s, tail, n);
	}
	s->state = SESSION_CMD;
	session_set_timeout(s, lim->timeout_command);
	if (s->tx_error == TX_NO_MAIL) {
		session_error(s, 503, "5.5.1", "Error: need MAIL command");
	} else if (s->tx_error == TX_NO_RCPT) {
		session_error(s, 554, "5.5.1", "Error: no valid recipients");
	} else if (s->tx_error == TX_TOO_BIG ||
	    s->dec.out_total > lim->message_size) {
		log_info("%s: reject: message from %s[%s] larger than %" PRIu64
		         " octets",
		    s->sid, s->name, s->addr, lim->message_size);
		session_reply(s, 552, "5.3.4",
		    "Error: message exceeds fixed maximum message size");
	} else if (s->dec.nul) {
		log_info("%s: reject: NUL octet in message from %s[%s]", s->sid,
		    s->name, s->addr);
		session_reply(s, 554, "5.6.0",
		    "Error: message contains NUL characters");
	} else if ((s->dec.bare_lf || s->dec.bare_cr) &&
	    lim->bare_newline == CONF_NEWLINE_REJECT) {
		log_info("%s: reject: bare CR or LF in message from %s[%s]",
		    s->sid, s->name, s->addr);
		session_reply(s, 554, "5.6.0",
		    "Error: message contains bare CR or LF characters");
	} else if (s->hs.received > lim->max_received) {
		log_info("%s: reject: %u Received headers (loop?) from "
		         "%s[%s]",
		    s->sid, s->hs.received, s->name, s->addr);
		session_reply(s, 554, "5.4.6",
		    "Error: too many hops (mail loop?)");
	} else if (s->tx_error == TX_DISCARD) {
		log_info("%s: discard: message from %s[%s] (policy)", s->sid,
		    s->name, s->addr);
		session_reply(s, 250, "2.0.0", "Ok: discarded");
	} else if (s->tx_error == TX_WRITE || s->msg == NULL) {
		log_warnx_limited(&spool_log,
		    "%s: cannot store message from %s[%s]: %s", s->sid, s->name,
		    s->addr, s->tx_err.len > 0 ? s->tx_err.data : "error");
		session_reply(s, 452, "4.3.1",
		    "Error: insufficient system storage");
	} else {
		s->state = SESSION_COMMIT;
		(void)bufferevent_disable(s->bev, EV_READ);
		/*
		 * Waited for like a commit, never cancelled: a stage's
		 * worker may be reading the message (policy_cancel).
		 */
		s->pending++;
		s->pctx.msg = s->msg;
		sbuf_reset(&s->pctx.prepend);
		session_policy_run(s, POLICY_DATA_END, session_data_verdict);
		return;
	}
	session_tx_reset(s);
}

static void session_commit_cb(void *, int, const char *, const char *);

static void
session_commit(struct session *s)
{
	struct spool_msg *msg = s->msg;

	s->stored_size = spool_msg_size(msg);
	s->msg = NULL;
	s->pending++;
	spool_msg_commit(msg, s->hs.has_msgid ? s->hs.msgid : NULL,
	    session_commit_cb, s);
}

/* The DATA-END verdict: commit, or refuse and drop the message. */
static void
session_data_verdict(struct session *s, const struct policy_verdict *v)
{
	s->pending--;
	if (s->closing || s->bev == NULL) {
		/* The client left: the message was never acknowledged. */
		session_tx_reset(s);
		return;
	}
	switch (v->action) {
	case POLICY_ACCEPT:
		if (s->pctx.prepend.len > 0 &&
		    spool_msg_set_prepend(s->msg, s->pctx.prepend.data,
		        s->pctx.prepend.len) == -1)
			log_warnx("%s: authentication results too long to "
			          "keep",
			    spool_msg_id(s->msg));
		session_commit(s);
		return;
	case POLICY_DISCARD:
		session_policy_log(s, v);
		log_info("%s: discard: message from %s[%s] (policy stage %s)",
		    s->sid, s->name, s->addr, v->stage);
		session_reply(s, 250, "2.0.0", "Ok: discarded");
		break;
	default:
		session_policy_refuse(s, v, false);
		break;
	}
	session_tx_reset(s); /* aborts s->msg */
	s->state = SESSION_CMD;
	if (s->deadline_hit) {
		session_reply(s, 421, "4.4.2",
		    "%s Error: session deadline exceeded", s->srv->hostname);
		session_close(s, true);
		return;
	}
	(void)bufferevent_enable(s->bev, EV_READ);
}

static void
session_log_accepted(struct session *s, const char *id)
{
	char from[1100], msgid[1100], helo[600];
	struct sbuf to;
	size_t i;

	sbuf_init(&to, SMTP_SERVER_LOGLIST_MAX);
	for (i = 0; i < s->nrcpts; i++) {
		if ((i > 0 && sbuf_append_char(&to, ',') == -1) ||
		    sbuf_append_char(&to, '<') == -1 ||
		    sbuf_append_escaped(&to, s->rcpts[i].addr,
		        strlen(s->rcpts[i].addr), ",", false) == -1 ||
		    sbuf_append_char(&to, '>') == -1) {
			(void)sbuf_printf(&to, ",...");
			break;
		}
	}
	log_info("%s: accepted from=<%s> size=%" PRIu64 " nrcpt=%zu to=%s "
	         "msgid=%s client=%s[%s] helo=%s listener=%s%s%s",
	    id, session_esc(from, sizeof(from), s->mail.path.mailbox),
	    s->stored_size, s->nrcpts, to.data,
	    s->hs.has_msgid ? session_esc(msgid, sizeof(msgid), s->hs.msgid) :
	                      "none",
	    s->name, s->addr, session_esc(helo, sizeof(helo), s->helo),
	    s->local, s->tls_active ? " tls=" : "",
	    s->tls_active ? s->tls_summary : "");
	sbuf_release(&to);
}

static void
session_commit_cb(void *arg, int status, const char *id, const char *err)
{
	struct session *s = arg;

	s->pending--;
	session_file_done(s); /* the commit has closed it */
	if (status == 0) {
		session_log_accepted(s, id);
		s->naccepted++;
		if (s->srv->accepted != NULL)
			s->srv->accepted(s->srv->accepted_arg, id);
	} else
		log_warnx_limited(&spool_log,
		    "%s: commit failed for %s[%s]: %s", id, s->name, s->addr,
		    err != NULL ? err : "error");
	if (s->closing || s->bev == NULL) {
		/* The client left; a committed message is still delivered. */
		session_tx_reset(s);
		session_finish(s);
		return;
	}
	if (status == 0)
		session_reply(s, 250, "2.0.0", "Ok: queued as %s", id);
	else
		session_reply(s, 452, "4.3.1",
		    "Error: insufficient system storage");
	session_tx_reset(s);
	s->state = SESSION_CMD;
	if (s->srv->shutting_down) {
		session_reply(s, 421, "4.3.2", "%s Service shutting down",
		    s->srv->hostname);
		session_close(s, true);
	} else if (s->deadline_hit) {
		/* The deadline passed while the message was committed. */
		log_info("%s: session deadline exceeded from %s[%s]", s->sid,
		    s->name, s->addr);
		session_reply(s, 421, "4.4.2",
		    "%s Error: session deadline exceeded", s->srv->hostname);
		session_close(s, true);
	} else {
		(void)bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
	session_finish(s);
}

void
session_cmd_data(struct session *s, const struct smtp_proto_command *cmd)
{
	if (cmd->arglen > 0) {
		session_error(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (!s->has_mail) {
		session_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (s->bdat_active) {
		session_error(s, 503, "5.5.1", "Error: DATA after BDAT");
		return;
	}
	/* Every recipient dropped by policy: the content goes nowhere. */
	if (s->nrcpts == 0 && s->ndiscarded > 0)
		s->tx_error = TX_DISCARD;
	if (s->nrcpts == 0 && s->tx_error != TX_DISCARD) {
		if (s->rcpt_attempts > 0)
			session_error(s, 554, "5.5.1",
			    "Error: no valid recipients");
		else
			session_error(s, 503, "5.5.1",
			    "Error: need RCPT command");
		return;
	}
	s->state = SESSION_DATA;
	if (session_start_content(s) == -1) {
		s->state = SESSION_CMD;
		session_reply(s, 452, "4.3.1",
		    "Error: insufficient system storage");
		return;
	}
	session_set_timeout(s, s->srv->conf->limits.timeout_data);
	session_data_deadline_start(s);
	session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

void
session_cmd_bdat(struct session *s, const struct smtp_proto_command *cmd)
{
	struct smtp_proto_status st;
	uint64_t size;
	bool last;

	if (smtp_proto_parse_bdat(cmd->arg, cmd->arglen, &size, &last, &st) ==
	    -1) {
		/* The chunk length is unknown, so its octets cannot be skipped.
		 */
		session_reply(s, st.code, st.enhanced, "%s", st.text);
		session_close(s, true);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_chunk = size;
	s->state = SESSION_BDAT;
	session_set_timeout(s, s->srv->conf->limits.timeout_data);
	if (s->bdat_active)
		return; /* next chunk of the same message */
	s->bdat_active = true;
	session_data_deadline_start(s); /* bounds every chunk to the last */
	if (!s->has_mail)
		s->tx_error = TX_NO_MAIL;
	else if (s->nrcpts == 0 && s->ndiscarded > 0)
		s->tx_error = TX_DISCARD;
	else if (s->nrcpts == 0)
		s->tx_error = TX_NO_RCPT;
	else if (s->tx_error != TX_DISCARD && session_start_content(s) == -1)
		s->tx_error = TX_WRITE;
	if (s->tx_error != TX_OK) {
		/* Discard the chunk with a decoder that writes nowhere. */
		smtp_proto_data_init(&s->dec, SMTP_PROTO_DATA_RAW, true);
		smtp_proto_hdrscan_init(&s->hs);
	}
}

/* A BDAT chunk has been read completely. */
void
session_bdat_chunk_done(struct session *s)
{
	if (s->bdat_last || s->tx_error == TX_NO_MAIL ||
	    s->tx_error == TX_NO_RCPT) {
		session_end_content(s);
		return;
	}
	if (s->dec.out_total > s->srv->conf->limits.message_size)
		s->tx_error = TX_TOO_BIG;
	if (s->tx_error != TX_OK && s->tx_error != TX_DISCARD) {
		/* Refuse now; later chunks of this message find no MAIL. */
		s->bdat_last = true;
		session_end_content(s);
		return;
	}
	s->state = SESSION_CMD;
	session_set_timeout(s, s->srv->conf->limits.timeout_command);
	session_reply(s, 250, "2.0.0", "%" PRIu64 " octets received",
	    s->bdat_chunk);
}
