/*
 * smtp_server.c - inbound SMTP sessions (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, ENHANCEDSTATUSCODES, DSN, SMTPUTF8, CHUNKING and STARTTLS).
 *
 * Each session is a bufferevent and a small state machine. Command lines
 * are bounded before their CRLF arrives; DATA and BDAT content is decoded
 * by smtp_proto and streamed to the spool, so session memory does not grow
 * with message size. The 250 after DATA is only sent from the spool's
 * commit callback, i.e. once the message is durable. Sessions are freed
 * only from the libevent entry points (session_finish), never from inside
 * a command handler, so handlers may close a session and simply return.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "auth_dkim.h"
#include "auth_results.h"
#include "auth_srs.h"
#include "auth_spf.h"
#include "conf.h"
#include "dns.h"
#include "log.h"
#include "smtp_proto.h"
#include "smtp_server.h"
#include "spool.h"
#include "router.h"
#include "tlsctx.h"
#include "verify.h"
#include "workers.h"
#include "xmalloc.h"

#define SMTP_SERVER_READ_HIGHWAT	(256 * 1024)
#define SMTP_SERVER_OUTPUT_MAX		(64 * 1024)	/* stop reading above */
#define SMTP_SERVER_DECODE_CHUNK	(16 * 1024)
#define SMTP_SERVER_IPTAB_SIZE		1021
#define SMTP_SERVER_LOGLIST_MAX		1024	/* recipients in a log line */

enum session_state {
	SESSION_CMD,		/* reading command lines */
	SESSION_DATA,		/* reading DATA content */
	SESSION_BDAT,		/* reading a BDAT chunk */
	SESSION_COMMIT,		/* waiting for the spool; not reading */
	SESSION_TLS,		/* STARTTLS handshake */
	SESSION_VERIFY,		/* RCPT waits for a recipient probe */
	SESSION_LOOKUP,		/* before the banner: client name lookup */
};

#define SMTP_SERVER_LOOKUP_SECONDS	5	/* then the name is "unknown" */

/* A reverse lookup in flight; outlives its session if need be. */
struct session_lookup {
	struct session	*s;		/* NULL once the session let go */
	char		 name[256];	/* the PTR name, being confirmed */
};

/* Why a transaction's content cannot be accepted (decided at its end). */
enum session_tx_error {
	TX_OK,
	TX_TOO_BIG,
	TX_WRITE,
	TX_NO_RCPT,	/* BDAT without valid recipients: read and refuse */
	TX_NO_MAIL,	/* BDAT without MAIL */
};

struct listener {
	struct smtp_server	*srv;
	struct evconnlistener	*evl;
	SSL_CTX			*tls;
	char			 desc[100];
};

struct ipcount {
	char		 addr[INET6_ADDRSTRLEN];
	unsigned	 n;
	struct ipcount	*next;
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct smtp_server	*srv;
	struct listener		*lst;
	uint64_t		 serial;
	char			 sid[24];	/* log prefix */
	struct bufferevent	*bev;
	enum session_state	 state;
	char			 addr[INET6_ADDRSTRLEN];
	char			 name[256];	/* confirmed reverse name or "unknown" */
	struct session_lookup	*lookup;
	struct event		*lookup_timer;
	char			 local[128];	/* listener address:port */
	char			 helo[SMTP_PROTO_HELO_MAX + 1];
	bool			 helo_seen;
	bool			 esmtp;
	bool			 tls_active;
	char			 tls_desc[160];
	char			 tls_summary[96];
	unsigned		 errors;
	unsigned		 ncommands;
	unsigned		 naccepted;
	bool			 counted_ip;	/* holds a per-IP slot */

	/* The transaction. */
	bool			 has_mail;
	struct smtp_proto_mail	 mail;
	struct spool_rcpt	*rcpts;
	size_t			 nrcpts;
	unsigned		 rcpt_attempts;
	struct spool_msg	*msg;
	struct smtp_proto_data	 dec;
	struct smtp_proto_hdrscan hs;
	enum session_tx_error	 tx_error;
	const char		*tx_errtext;
	uint64_t		 bdat_left;
	bool			 bdat_last;
	bool			 bdat_active;	/* BDAT seen in this transaction */
	uint64_t		 bdat_chunk;
	uint64_t		 stored_size;	/* with our Received header */

	/* Recipient verification in flight. */
	struct verify_req	*vreq;
	struct smtp_proto_rcpt	 vrcpt;

	/* Teardown. */
	struct event		*drain_timer;	/* TLS: waits for the socket */
	unsigned		 drain_polls;
	bool			 closing;
	bool			 flush_on_close;
	unsigned		 pending;	/* spool callbacks in flight */
};

TAILQ_HEAD(session_list, session);

struct smtp_server {
	struct event_base	*base;
	const struct conf	*conf;
	struct spool		*spool;
	struct verify		*verify;
	struct dns		*dns;		/* client name lookups */
	struct workers		*workers;	/* SPF and DKIM checks */
	const struct auth_srs	*srs;		/* bounces to SRS addresses */
	void			(*accepted)(void *, const char *);
	void			*accepted_arg;
	struct listener		*listeners;
	size_t			 nlisteners;
	struct session_list	 sessions;
	unsigned		 nsessions;	/* with a live connection */
	unsigned		 nstructs;	/* allocated sessions */
	uint64_t		 serial;
	struct ipcount		*iptab[SMTP_SERVER_IPTAB_SIZE];
	char			 hostname[256];
	bool			 shutting_down;
	struct event		*grace_timer;
	void			(*shutdown_done)(void *);
	void			*shutdown_arg;
};

static void session_read_cb(struct bufferevent *, void *);
static void session_write_cb(struct bufferevent *, void *);
static void session_event_cb(struct bufferevent *, short, void *);
static void session_process(struct session *);
static void session_finish(struct session *);

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

static void session_close(struct session *s, bool flush);

static void __attribute__((format(printf, 4, 5)))
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
static void __attribute__((format(printf, 4, 5)))
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

static void
session_status(struct session *s, const struct smtp_proto_status *st)
{
	session_error(s, st->code, st->enhanced, "%s", st->text);
}

/* Escapes peer text for a log line into buf. */
static const char *
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

static void
session_tx_reset(struct session *s)
{
	size_t i;

	if (s->msg != NULL) {
		spool_msg_abort(s->msg);
		s->msg = NULL;
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
	s->tx_errtext = NULL;
	s->bdat_active = false;
	s->bdat_left = 0;
	s->bdat_last = false;
}

static void
session_set_timeout(struct session *s, unsigned seconds)
{
	struct timeval tv = { (time_t)seconds, 0 };

	if (s->bev != NULL)
		(void)bufferevent_set_timeouts(s->bev, &tv, &tv);
}

static void
session_close(struct session *s, bool flush)
{
	if (s->closing)
		return;
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
	    "errors=%u%s%s", s->sid, s->name, s->addr, s->ncommands,
	    s->naccepted, s->errors, s->tls_active ? " tls=" : "",
	    s->tls_active ? s->tls_summary : "");
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
static void
session_finish(struct session *s)
{
	struct smtp_server *srv = s->srv;

	if (!s->closing)
		return;
	if (s->bev != NULL) {
		if (s->flush_on_close &&
		    evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
			return;		/* the write callback comes back */
		if (s->flush_on_close && session_tls_draining(s))
			return;		/* the drain timer comes back */
		bufferevent_free(s->bev);
		s->bev = NULL;
		session_log_disconnect(s);
		if (s->counted_ip)
			iptab_decr(srv, s->addr);
		srv->nsessions--;
	}
	if (s->pending > 0)
		return;			/* the spool callback comes back */
	if (s->drain_timer != NULL)
		event_free(s->drain_timer);
	if (s->lookup_timer != NULL)
		event_free(s->lookup_timer);
	if (s->lookup != NULL)
		s->lookup->s = NULL;	/* its callback frees it */
	verify_cancel(s->vreq);
	session_tx_reset(s);
	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nstructs--;
	free(s);
	server_maybe_done(srv);
}

/* Builds the Received header (RFC 5321 4.4) and writes it to the spool. */
static int
session_write_received(struct session *s, const char **err_out)
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
		*err_out = "Received header too long";
		return -1;
	}
	rc = spool_msg_append(s->msg, hdr.data, hdr.len, err_out);
	sbuf_release(&hdr);
	return rc;
}

/* Opens the spool file for this transaction's content. */
static int
session_start_content(struct session *s)
{
	struct spool_envelope env;
	const char *err = NULL;
	char proto[16];

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
	(void)snprintf(proto, sizeof(proto), "%s%s", s->esmtp ? "ESMTP" :
	    "SMTP", s->tls_active ? "S" : "");
	env.protocol = proto;
	env.tls = s->tls_active ? s->tls_summary : NULL;

	s->msg = spool_msg_new(s->srv->spool, &env, &err);
	if (s->msg == NULL || session_write_received(s, &err) == -1) {
		log_warnx("%s: cannot spool message from %s[%s]: %s", s->sid,
		    s->name, s->addr, err != NULL ? err : "unknown error");
		if (s->msg != NULL) {
			spool_msg_abort(s->msg);
			s->msg = NULL;
		}
		return -1;
	}
	smtp_proto_data_init(&s->dec, s->state == SESSION_BDAT ?
	    SMTP_PROTO_DATA_RAW : SMTP_PROTO_DATA_DOT,
	    s->srv->conf->limits.bare_newline == CONF_NEWLINE_NORMALIZE);
	smtp_proto_hdrscan_init(&s->hs);
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
	if (spool_msg_append(s->msg, buf, len, &s->tx_errtext) == -1)
		s->tx_error = TX_WRITE;
}

/*
 * Feeds up to limit octets of input through the decoder. Returns the
 * number consumed; *done is set when the DATA terminator was seen.
 */
static size_t
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

static void session_commit_cb(void *, int, const char *, const char *);
static void session_commit(struct session *);
static void session_auth_start(struct session *);
static bool session_verify_start(struct session *,
    const struct conf_domain *, const struct smtp_proto_rcpt *);
static void session_rcpt_accept(struct session *,
    const struct smtp_proto_rcpt *);
static bool session_rcpt_srs(struct session *,
    const struct smtp_proto_rcpt *, const char *, const char *);

/*
 * End of content: refuse it with a reason, or hand it to the spool and wait
 * (reading stops until the commit callback sends the reply).
 */
static void
session_end_content(struct session *s)
{
	const struct conf_limits *lim = &s->srv->conf->limits;

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
		    " octets", s->sid, s->name, s->addr, lim->message_size);
		session_reply(s, 552, "5.3.4",
		    "Error: message exceeds fixed maximum message size");
	} else if (s->dec.nul) {
		log_info("%s: reject: NUL octet in message from %s[%s]",
		    s->sid, s->name, s->addr);
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
		    "%s[%s]", s->sid, s->hs.received, s->name, s->addr);
		session_reply(s, 554, "5.4.6",
		    "Error: too many hops (mail loop?)");
	} else if (s->tx_error == TX_WRITE || s->msg == NULL) {
		log_warnx("%s: cannot store message from %s[%s]: %s", s->sid,
		    s->name, s->addr, s->tx_errtext ? s->tx_errtext : "error");
		session_reply(s, 452, "4.3.1",
		    "Error: insufficient system storage");
	} else {
		s->state = SESSION_COMMIT;
		(void)bufferevent_disable(s->bev, EV_READ);
		if (s->srv->conf->auth_checks && s->srv->workers != NULL)
			session_auth_start(s);
		else
			session_commit(s);
		return;
	}
	session_tx_reset(s);
}

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

/*
 * SPF and DKIM, on a worker between the end of the content and the
 * commit: they block on DNS, and DKIM needs the whole message, read back
 * from the tmp file. Their header fields are kept beside the content and
 * sent in front of it (spool_msg_set_prepend); the content is unchanged.
 */
struct session_auth {
	struct session		*s;
	struct spool_msg	*msg;
	char			*resolvers;
	char			*receiver;
	char			*authserv;
	char			 ip[INET6_ADDRSTRLEN];
	char			*helo;
	char			*sender;
	struct auth_spf_result	 spf;
	struct auth_dkim_result	 dkim;
	bool			 signed_msg;	/* has a DKIM-Signature field */
	struct sbuf		 fields;
};

static void
session_auth_job(void *arg)
{
	struct session_auth *a = arg;
	struct auth_dkim *ad;
	struct sbuf err;
	char buf[65536];
	uint64_t off = 0;
	ssize_t n = 0;

	(void)auth_spf_check(a->resolvers, a->receiver, a->ip, a->helo,
	    a->sender, &a->spf);
	sbuf_init(&err, 256);
	memset(&a->dkim, 0, sizeof(a->dkim));
	/* Unsigned mail (most of it) needs no verifier at all. */
	ad = a->signed_msg ? auth_dkim_begin(a->resolvers, &err) : NULL;
	while (ad != NULL &&
	    (n = spool_msg_read(a->msg, off, buf, sizeof(buf))) > 0) {
		if (auth_dkim_feed(ad, buf, (size_t)n) == -1)
			break;
		off += (uint64_t)n;
	}
	if (ad != NULL && n < 0) {
		/* The tmp file (opened read-write) could not be read back. */
		auth_dkim_free(ad);
		ad = NULL;
		a->dkim.msg_result = AUTH_DKIM_TEMPERROR;
		(void)snprintf(a->dkim.error, sizeof(a->dkim.error),
		    "cannot read the message back");
	} else if (ad != NULL) {
		(void)auth_dkim_end(ad, &a->dkim);
		auth_dkim_free(ad);
	} else if (!a->signed_msg) {
		a->dkim.msg_result = AUTH_DKIM_NONE;
	} else {
		a->dkim.msg_result = AUTH_DKIM_TEMPERROR;
		(void)snprintf(a->dkim.error, sizeof(a->dkim.error), "%s",
		    err.data);
	}
	sbuf_release(&err);
	(void)auth_results_format(&a->fields, a->authserv, &a->spf,
	    &a->dkim);
	(void)auth_results_received_spf(&a->fields, &a->spf);
}

static void
session_auth_done(void *arg)
{
	struct session_auth *a = arg;
	struct session *s = a->s;

	s->pending--;
	if (spool_msg_set_prepend(a->msg, a->fields.data, a->fields.len) == -1)
		log_warnx("%s: authentication results too long to keep",
		    spool_msg_id(a->msg));
	log_info("%s: spf=%s (%s) dkim=%s%s%s", spool_msg_id(a->msg),
	    auth_spf_res_str(a->spf.result), a->spf.domain,
	    auth_dkim_res_str(a->dkim.nsigs > 0 ? a->dkim.sigs[0].result :
	    a->dkim.msg_result), a->dkim.nsigs > 0 ? " d=" : "",
	    a->dkim.nsigs > 0 ? a->dkim.sigs[0].domain : "");
	if (a->spf.result == AUTH_SPF_FAIL && s->srv->conf->spf_reject &&
	    !s->closing && s->bev != NULL) {
		log_info("%s: reject: SPF fail for %s from %s[%s]", s->sid,
		    a->spf.domain, s->name, s->addr);
		session_reply(s, 550, "5.7.23", "SPF validation failed for %s",
		    a->spf.domain);
		session_tx_reset(s);		/* aborts s->msg */
		s->state = SESSION_CMD;
		(void)bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	} else if (s->closing || s->bev == NULL) {
		/* The client left: the message was never acknowledged. */
		session_tx_reset(s);
	} else
		session_commit(s);
	free(a->resolvers);
	free(a->receiver);
	free(a->authserv);
	free(a->helo);
	free(a->sender);
	sbuf_release(&a->fields);
	free(a);
	session_finish(s);
}

static void
session_auth_start(struct session *s)
{
	const struct conf *conf = s->srv->conf;
	struct session_auth *a;
	const char *err = NULL;

	if (spool_msg_sync_content(s->msg, &err) == -1) {
		log_warnx("%s: cannot store message from %s[%s]: %s", s->sid,
		    s->name, s->addr, err);
		session_reply(s, 452, "4.3.1",
		    "Error: insufficient system storage");
		session_tx_reset(s);
		s->state = SESSION_CMD;
		(void)bufferevent_enable(s->bev, EV_READ);
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->s = s;
	a->msg = s->msg;
	a->resolvers = conf->resolvers != NULL ? xstrdup(conf->resolvers) :
	    NULL;
	a->receiver = xstrdup(s->srv->hostname);
	a->authserv = xstrdup(conf->authserv_id != NULL ? conf->authserv_id :
	    s->srv->hostname);
	(void)snprintf(a->ip, sizeof(a->ip), "%s", s->addr);
	a->helo = xstrdup(s->helo);
	a->sender = xstrdup(s->mail.path.mailbox);
	a->signed_msg = s->hs.dkim_sigs > 0;
	sbuf_init(&a->fields, 16384);
	s->pending++;
	workers_submit(s->srv->workers, session_auth_job, session_auth_done,
	    a);
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
	    "msgid=%s client=%s[%s] helo=%s listener=%s%s%s", id,
	    session_esc(from, sizeof(from), s->mail.path.mailbox),
	    s->stored_size, s->nrcpts, to.data,
	    s->hs.has_msgid ? session_esc(msgid, sizeof(msgid), s->hs.msgid) :
	    "none", s->name, s->addr, session_esc(helo, sizeof(helo), s->helo),
	    s->local, s->tls_active ? " tls=" : "",
	    s->tls_active ? s->tls_summary : "");
	sbuf_release(&to);
}

static void
session_commit_cb(void *arg, int status, const char *id, const char *err)
{
	struct session *s = arg;

	s->pending--;
	if (status == 0) {
		session_log_accepted(s, id);
		s->naccepted++;
		if (s->srv->accepted != NULL)
			s->srv->accepted(s->srv->accepted_arg, id);
	} else
		log_warnx("%s: commit failed for %s[%s]: %s", id, s->name,
		    s->addr, err != NULL ? err : "error");
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
	} else {
		(void)bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
	session_finish(s);
}

/* Command handlers. */

static void
cmd_helo(struct session *s, const struct smtp_proto_command *cmd, bool ehlo)
{
	struct smtp_proto_status st;
	const struct conf *conf = s->srv->conf;
	struct evbuffer *out;

	if (smtp_proto_parse_helo(cmd->arg, cmd->arglen, &st) == -1) {
		session_status(s, &st);
		return;
	}
	session_tx_reset(s);
	(void)snprintf(s->helo, sizeof(s->helo), "%.*s", (int)cmd->arglen,
	    cmd->arg);
	s->helo_seen = true;
	s->esmtp = ehlo;
	if (!ehlo) {
		session_reply(s, 250, NULL, "%s", s->srv->hostname);
		return;
	}
	out = bufferevent_get_output(s->bev);
	(void)evbuffer_add_printf(out, "250-%s\r\n250-PIPELINING\r\n"
	    "250-SIZE %" PRIu64 "\r\n250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-SMTPUTF8\r\n%s"
	    "250 CHUNKING\r\n", s->srv->hostname, conf->limits.message_size,
	    s->lst->tls != NULL && !s->tls_active ? "250-STARTTLS\r\n" : "");
}

static void
cmd_mail(struct session *s, const struct smtp_proto_command *cmd)
{
	struct smtp_proto_status st;
	char esc[1100];

	if (!s->helo_seen) {
		session_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		return;
	}
	if (s->has_mail) {
		session_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (smtp_proto_parse_mail(cmd->arg, cmd->arglen, &s->mail, &st) == -1) {
		session_status(s, &st);
		return;
	}
	if (s->mail.has_size &&
	    s->mail.size > s->srv->conf->limits.message_size) {
		log_info("%s: reject: MAIL from %s[%s]: SIZE=%" PRIu64
		    " too large; from=<%s>", s->sid, s->name, s->addr,
		    s->mail.size, session_esc(esc, sizeof(esc),
		    s->mail.path.mailbox));
		session_error(s, 552, "5.3.4",
		    "Error: message size exceeds fixed limit");
		return;
	}
	s->has_mail = true;
	session_reply(s, 250, "2.1.0", "Ok");
}

static void
session_rcpt_accept(struct session *s, const struct smtp_proto_rcpt *rcpt)
{
	struct spool_rcpt *r;

	s->rcpts = xreallocarray(s->rcpts, s->nrcpts + 1, sizeof(*s->rcpts));
	r = &s->rcpts[s->nrcpts++];
	r->addr = xstrdup(rcpt->path.mailbox);
	r->notify = rcpt->notify;
	r->orcpt = rcpt->orcpt[0] != '\0' ? xstrdup(rcpt->orcpt) : NULL;
	session_reply(s, 250, "2.1.5", "Ok");
}

/* A probe answer (or a cached one) decides the pending RCPT. */
static void
session_verify_verdict(struct session *s, enum verify_verdict v,
    const char *reply)
{
	char esc[1100];

	session_esc(esc, sizeof(esc), s->vrcpt.path.mailbox);
	switch (v) {
	case VERIFY_OK:
		session_rcpt_accept(s, &s->vrcpt);
		break;
	case VERIFY_UNKNOWN:
		log_info("%s: reject: RCPT from %s[%s]: unknown at the target "
		    "(%s); to=<%s>", s->sid, s->name, s->addr, reply, esc);
		session_error(s, 550, "5.1.1", "<%s>: Recipient address "
		    "rejected: User unknown", esc);
		break;
	case VERIFY_TEMPFAIL:
		if (s->srv->conf->verify_tempfail) {
			log_info("%s: defer: RCPT from %s[%s]: verification "
			    "failed (%s); to=<%s>", s->sid, s->name, s->addr,
			    reply, esc);
			session_reply(s, 450, "4.1.1", "<%s>: Recipient address "
			    "verification failed, try again later", esc);
		} else
			session_rcpt_accept(s, &s->vrcpt);
		break;
	}
}

static void
session_verify_cb(void *arg, enum verify_verdict v, const char *reply)
{
	struct session *s = arg;

	s->vreq = NULL;
	s->state = SESSION_CMD;
	session_verify_verdict(s, v, reply != NULL ? reply : "");
	session_process(s);
	session_finish(s);
}

/*
 * Domains without a recipient list may ask a target whether the user
 * exists, so this backup path never accepts mail that bounces later.
 * Returns true when the RCPT is answered here or later by the probe.
 */
static bool
session_verify_start(struct session *s, const struct conf_domain *dom,
    const struct smtp_proto_rcpt *rcpt)
{
	char addr[SMTP_PROTO_PATH_MAX + 1];
	enum verify_verdict v;
	size_t t = (size_t)dom->verify_target;

	if (router_rewrite(s->srv->conf, t, rcpt->path.mailbox, addr,
	    sizeof(addr)) == -1)
		return false;
	s->vrcpt = *rcpt;
	if (verify_cached(s->srv->verify, t, addr, &v)) {
		session_verify_verdict(s, v, "cached");
		return true;
	}
	s->state = SESSION_VERIFY;
	s->vreq = verify_probe(s->srv->verify, t, addr, session_verify_cb, s);
	return true;
}

/*
 * A bounce to one of our SRS addresses: accepted only when the address is
 * ours and authentic (hash, age), and then addressed to the original
 * sender it stands for. Returns true when the RCPT was answered here.
 */
static bool
session_rcpt_srs(struct session *s, const struct smtp_proto_rcpt *rcpt,
    const char *esc, const char *from)
{
	const struct conf *conf = s->srv->conf;
	struct smtp_proto_rcpt rev;
	char out[AUTH_SRS_ADDR_BUFSIZE], oesc[1100];
	struct sbuf err;

	if (s->srv->srs == NULL || conf->srs_domain == NULL ||
	    rcpt->path.is_postmaster ||
	    strcasecmp(rcpt->path.domain_lc, conf->srs_domain) != 0 ||
	    !auth_srs_is_srs(rcpt->path.local))
		return false;
	sbuf_init(&err, 256);
	if (auth_srs_reverse(s->srv->srs, rcpt->path.mailbox, time(NULL), out,
	    sizeof(out), &err) != 0) {
		log_info("%s: reject: RCPT from %s[%s]: %s; from=<%s> to=<%s>",
		    s->sid, s->name, s->addr,
		    err.len > 0 ? err.data : "bad SRS", from, esc);
		session_error(s, 550, "5.7.1", "<%s>: %s", esc,
		    err.len > 0 ? err.data : "invalid SRS address");
		sbuf_release(&err);
		return true;
	}
	sbuf_release(&err);
	rev = *rcpt;
	(void)snprintf(rev.path.mailbox, sizeof(rev.path.mailbox), "%s", out);
	log_info("%s: SRS <%s> is <%s>", s->sid, esc,
	    session_esc(oesc, sizeof(oesc), out));
	session_rcpt_accept(s, &rev);
	return true;
}

/* The relay policy: which recipients this node accepts (DESIGN rule 8). */
static void
cmd_rcpt(struct session *s, const struct smtp_proto_command *cmd)
{
	const struct conf_domain *dom;
	struct smtp_proto_status st;
	struct smtp_proto_rcpt rcpt;
	char esc[1100], from[1100];

	if (!s->has_mail) {
		session_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	s->rcpt_attempts++;
	if (s->nrcpts >= s->srv->conf->limits.recipients) {
		session_reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	if (smtp_proto_parse_rcpt(cmd->arg, cmd->arglen, s->mail.smtputf8,
	    &rcpt, &st) == -1) {
		session_status(s, &st);
		return;
	}
	session_esc(esc, sizeof(esc), rcpt.path.mailbox);
	session_esc(from, sizeof(from), s->mail.path.mailbox);
	if (session_rcpt_srs(s, &rcpt, esc, from))
		return;
	if (!rcpt.path.is_postmaster) {
		dom = rcpt.path.domain_literal ? NULL :
		    conf_find_domain(s->srv->conf, rcpt.path.domain_lc);
		if (dom == NULL) {
			log_info("%s: reject: RCPT from %s[%s]: relay denied; "
			    "from=<%s> to=<%s>", s->sid, s->name, s->addr,
			    from, esc);
			session_error(s, 554, "5.7.1",
			    "<%s>: Relay access denied", esc);
			return;
		}
		/* %-hack, bang paths and quoted @ route mail elsewhere. */
		if (strpbrk(rcpt.path.local, "%!@") != NULL) {
			log_info("%s: reject: RCPT from %s[%s]: routing "
			    "characters in local part; from=<%s> to=<%s>",
			    s->sid, s->name, s->addr, from, esc);
			session_error(s, 554, "5.7.1", "<%s>: Relay access "
			    "denied (routing characters in local part)", esc);
			return;
		}
		if (strcasecmp(rcpt.path.local, "postmaster") != 0 &&
		    !conf_domain_accepts(dom, rcpt.path.local)) {
			log_info("%s: reject: RCPT from %s[%s]: unknown user; "
			    "from=<%s> to=<%s>", s->sid, s->name, s->addr,
			    from, esc);
			session_error(s, 550, "5.1.1", "<%s>: Recipient address "
			    "rejected: User unknown", esc);
			return;
		}
		if (dom->verify_target >= 0 && !dom->has_list &&
		    s->srv->verify != NULL &&
		    strcasecmp(rcpt.path.local, "postmaster") != 0 &&
		    session_verify_start(s, dom, &rcpt))
			return;
	}
	session_rcpt_accept(s, &rcpt);
}

static void
cmd_data(struct session *s, const struct smtp_proto_command *cmd)
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
	if (s->nrcpts == 0) {
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
	session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

static void
cmd_bdat(struct session *s, const struct smtp_proto_command *cmd)
{
	struct smtp_proto_status st;
	uint64_t size;
	bool last;

	if (smtp_proto_parse_bdat(cmd->arg, cmd->arglen, &size, &last,
	    &st) == -1) {
		/* The chunk length is unknown, so its octets cannot be skipped. */
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
		return;			/* next chunk of the same message */
	s->bdat_active = true;
	if (!s->has_mail)
		s->tx_error = TX_NO_MAIL;
	else if (s->nrcpts == 0)
		s->tx_error = TX_NO_RCPT;
	else if (session_start_content(s) == -1)
		s->tx_error = TX_WRITE;
	if (s->tx_error != TX_OK) {
		/* Discard the chunk with a decoder that writes nowhere. */
		smtp_proto_data_init(&s->dec, SMTP_PROTO_DATA_RAW, true);
		smtp_proto_hdrscan_init(&s->hs);
	}
}

/* A BDAT chunk has been read completely. */
static void
session_bdat_chunk_done(struct session *s)
{
	if (s->bdat_last || s->tx_error == TX_NO_MAIL ||
	    s->tx_error == TX_NO_RCPT) {
		session_end_content(s);
		return;
	}
	if (s->dec.out_total > s->srv->conf->limits.message_size)
		s->tx_error = TX_TOO_BIG;
	if (s->tx_error != TX_OK) {
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

static void
cmd_starttls(struct session *s, const struct smtp_proto_command *cmd)
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
		    "from %s[%s]", s->sid, evbuffer_get_length(in), s->name,
		    s->addr);
		(void)evbuffer_drain(in, evbuffer_get_length(in));
	}
	session_reply(s, 220, "2.0.0", "Ready to start TLS");
	ssl = SSL_new(s->lst->tls);
	if (ssl == NULL) {
		log_warnx("%s: SSL_new failed", s->sid);
		session_close(s, true);
		return;
	}
	tls = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		log_warnx("%s: cannot start TLS", s->sid);
		session_close(s, true);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	s->bev = tls;
	bufferevent_setcb(tls, session_read_cb, session_write_cb,
	    session_event_cb, s);
	(void)bufferevent_setwatermark(tls, EV_READ, 0, SMTP_SERVER_READ_HIGHWAT);
	(void)bufferevent_enable(tls, EV_READ | EV_WRITE);
	/* RFC 3207 4.2: forget everything learned before the handshake. */
	session_tx_reset(s);
	s->helo_seen = false;
	s->esmtp = false;
	s->helo[0] = '\0';
	s->state = SESSION_TLS;
	session_set_timeout(s, s->srv->conf->limits.timeout_tls);
}

static void
session_command(struct session *s, const char *line, size_t len)
{
	struct smtp_proto_command cmd;
	struct smtp_proto_status st;

	s->ncommands++;
	if (smtp_proto_parse_command(line, len, &cmd, &st) == -1) {
		session_status(s, &st);
		return;
	}
	switch (cmd.verb) {
	case SMTP_PROTO_CMD_EHLO:
		cmd_helo(s, &cmd, true);
		break;
	case SMTP_PROTO_CMD_HELO:
		cmd_helo(s, &cmd, false);
		break;
	case SMTP_PROTO_CMD_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_PROTO_CMD_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_PROTO_CMD_DATA:
		cmd_data(s, &cmd);
		break;
	case SMTP_PROTO_CMD_BDAT:
		cmd_bdat(s, &cmd);
		break;
	case SMTP_PROTO_CMD_RSET:
		session_tx_reset(s);
		session_reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_PROTO_CMD_NOOP:
		session_reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_PROTO_CMD_QUIT:
		session_reply(s, 221, "2.0.0", "Bye");
		session_close(s, true);
		break;
	case SMTP_PROTO_CMD_VRFY:
		if (cmd.arglen == 0)
			session_error(s, 501, "5.5.4", "Syntax: VRFY address");
		else
			session_reply(s, 252, "2.0.0", "Cannot VRFY user, but "
			    "will accept message and attempt delivery");
		break;
	case SMTP_PROTO_CMD_HELP:
		session_reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT "
		    "DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS");
		break;
	case SMTP_PROTO_CMD_STARTTLS:
		cmd_starttls(s, &cmd);
		break;
	case SMTP_PROTO_CMD_EXPN:
	case SMTP_PROTO_CMD_AUTH:
	case SMTP_PROTO_CMD_ETRN:
	case SMTP_PROTO_CMD_TURN:
		session_error(s, 502, "5.5.1", "Error: command not implemented");
		break;
	case SMTP_PROTO_CMD_HTTP:
		log_info("%s: HTTP request from %s[%s]: dropped", s->sid,
		    s->name, s->addr);
		session_close(s, true);	/* the banner may still be queued */
		break;
	case SMTP_PROTO_CMD_UNKNOWN:
	default:
		session_error(s, 500, "5.5.1", "Error: command not recognized");
		break;
	}
}

/* Reads one command line; 1 when one was handled, 0 when more is needed. */
static int
session_read_command(struct session *s, struct evbuffer *in)
{
	char line[SMTP_PROTO_CMDLINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t eol_len = 0, len;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) >= SMTP_PROTO_CMDLINE_MAX)
			goto too_long;
		return 0;
	}
	len = (size_t)eol.pos + 1;
	if (len > SMTP_PROTO_CMDLINE_MAX)
		goto too_long;
	if (evbuffer_remove(in, line, len) != (int)len)
		log_panic("%s: evbuffer_remove short read", s->sid);
	line[len] = '\0';
	if (len < 2 || line[len - 2] != '\r') {
		/* A bare LF is not a line end (Postfix forbids it too). */
		session_error(s, 500, "5.5.2", "Error: bare <LF> received");
		return 1;
	}
	session_command(s, line, len - 2);
	return 1;
too_long:
	log_info("%s: command line too long from %s[%s]", s->sid, s->name,
	    s->addr);
	session_reply(s, 500, "5.5.2", "Error: line too long");
	session_close(s, true);
	return 1;
}

/* Runs as many pipelined commands and as much content as is buffered. */
static void
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
			/* A client that does not read its replies waits. */
			if (evbuffer_get_length(out) > SMTP_SERVER_OUTPUT_MAX)
				return;
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
		case SESSION_VERIFY:
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
		log_info("%s: TLS established from %s[%s]: %s", s->sid,
		    s->name, s->addr, s->tls_desc);
		s->state = SESSION_CMD;
		session_set_timeout(s, s->srv->conf->limits.timeout_command);
		session_process(s);
	} else if (what & BEV_EVENT_TIMEOUT) {
		log_info("%s: timeout after %s from %s[%s]", s->sid,
		    s->state == SESSION_DATA || s->state == SESSION_BDAT ?
		    "DATA" : s->state == SESSION_TLS ? "STARTTLS" : "command",
		    s->name, s->addr);
		if (s->state != SESSION_TLS && !(what & BEV_EVENT_WRITING)) {
			session_reply(s, 421, "4.4.2",
			    "%s Error: timeout exceeded", s->srv->hostname);
			session_close(s, true);
		} else
			session_close(s, false);	/* a stuck flush ends too */
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->state == SESSION_DATA || s->state == SESSION_BDAT)
			log_info("%s: lost connection after DATA from %s[%s]",
			    s->sid, s->name, s->addr);
		else if (s->state == SESSION_TLS)
			log_info("%s: TLS handshake failed with %s[%s]",
			    s->sid, s->name, s->addr);
		session_close(s, false);
	}
	session_finish(s);
}

static void
session_fill_addr(const struct sockaddr *sa, char *addr, size_t addrsize,
    char *port, size_t portsize)
{
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
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
			    (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			    (*p >= 'A' && *p <= 'Z')))
				break;
		/* A PTR that names an address is not a name. */
		if (*p == '\0' && p != name && inet_pton(AF_INET, name,
		    &(struct in_addr){ 0 }) != 1)
			(void)snprintf(s->name, sizeof(s->name), "%s", name);
	}
	log_info("%s: connect from %s[%s] on %s", s->sid, s->name, s->addr,
	    s->local);
	if (s->closing)
		return;
	s->state = SESSION_CMD;
	session_reply(s, 220, NULL, "%s ESMTP splitmx", s->srv->hostname);
	session_process(s);
}

static void
session_lookup_forward_cb(void *arg, enum dns_status status,
    const char *reason, const struct dns_addr *addrs, size_t naddrs)
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
	dns_lookup_host(s->srv->dns, lk->name, "25",
	    session_lookup_forward_cb, lk);
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

	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		log_warnx("cannot create a session for %s", s->addr);
		(void)close(fd);
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
	session_set_timeout(s, lim->timeout_command);
	(void)bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	refuse_total = srv->nsessions > lim->connections;
	if (!refuse_total) {
		s->counted_ip = true;
		refuse_ip = iptab_incr(srv, s->addr) > lim->connections_per_ip;
	}
	if (refuse_total || refuse_ip) {
		log_info("%s: connect from %s[%s]:%s on %s", s->sid, s->name,
		    s->addr, cport, s->local);
		log_info("%s: refused %s[%s]: too many connections%s", s->sid,
		    s->name, s->addr, refuse_ip ? " from this address" : "");
		session_reply(s, 421, "4.7.0", "%s Error: too many connections%s",
		    srv->hostname, refuse_ip ? " from your address" : "");
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
	session_reply(s, 220, NULL, "%s ESMTP splitmx", srv->hostname);
}

static void
listener_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *lst = arg;

	(void)evl;
	/* EMFILE and friends: keep serving the sessions we have. */
	log_warn("accept on %s", lst->desc);
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
		    lst, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 511, res->ai_addr,
		    (int)res->ai_addrlen);
		freeaddrinfo(res);
		if (lst->evl == NULL) {
			(void)sbuf_printf(err, "cannot listen on %s: %s",
			    lst->desc, evutil_socket_error_to_string(
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
smtp_server_start(struct smtp_server *srv, struct spool *sp,
    void (*accepted)(void *, const char *), void *arg)
{
	size_t i;

	srv->spool = sp;
	srv->accepted = accepted;
	srv->accepted_arg = arg;
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
	log_info("shutdown grace expired: closing %u sessions",
	    srv->nsessions);
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
		if (s->lookup != NULL)
			s->lookup->s = NULL;
		/* pending commits still own s as their callback argument. */
		if (s->pending == 0) {
			session_tx_reset(s);
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
	free(srv->listeners);
	free(srv);
}
