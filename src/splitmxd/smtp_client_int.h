/*
 * smtp_client_int.h - what smtp_client.c (transactions, replies, the
 * libevent entry points) and smtp_client_conn.c (opening: DNS, connect,
 * greeting, STARTTLS) share. Private to those two files: the public API
 * is smtp_client.h. sc_ is the module's short internal prefix; nothing
 * declared here may be called from another module.
 */
#ifndef SPLITMX_SMTP_CLIENT_INT_H
#define SPLITMX_SMTP_CLIENT_INT_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <openssl/ssl.h>

#include "smtp_client.h"

struct bufferevent;
struct dns_addr;
struct event;
struct evbuffer;
struct sc_rjob;
struct spool_content;
struct workers;

#define SC_OUT_HIGH   (256 * 1024)   /* stop filling above this */
#define SC_CHUNK      (64 * 1024)    /* one read */
#define SC_AHEAD      (2 * SC_CHUNK) /* content read or reading, at most */
#define SC_REASON_MAX 640
#define SC_PEER_MAX   352 /* host[256] + [addr[64]]:port */

enum sc_state {
	SC_RESOLVE,   /* waiting for dns_ */
	SC_CONNECT,   /* TCP/UNIX connect in progress */
	SC_BANNER,    /* waiting for the greeting */
	SC_EHLO,      /* EHLO or LHLO sent */
	SC_HELO,      /* HELO sent (EHLO refused) */
	SC_STARTTLS,  /* STARTTLS sent */
	SC_HANDSHAKE, /* TLS handshake */
	SC_IDLE,      /* ready for a transaction */
	SC_PENDING,   /* transaction answered locally, cb deferred */
	SC_TXN,       /* waiting for RSET/MAIL/RCPT/DATA replies */
	SC_CONTENT,   /* streaming the message */
	SC_DOT,       /* waiting for the reply(ies) to "." */
	SC_DEAD,      /* connection gone; only close remains */
};

enum sc_cmd_kind {
	SC_CMD_RSET,
	SC_CMD_MAIL,
	SC_CMD_RCPT,
	SC_CMD_DATA
};

struct sc_cmd {
	enum sc_cmd_kind kind;
	size_t rcpt; /* SC_CMD_RCPT */
};

enum sc_defer {
	SC_DEFER_NONE,
	SC_DEFER_CONNECT,
	SC_DEFER_OPEN_FAIL,
	SC_DEFER_DONE
};

/* Where dot-stuffing stands: the next octet starts a line; the last two. */
struct sc_stuffing {
	bool bol;
	unsigned char tail[2];
};

struct smtp_client {
	struct event_base *base;
	struct workers *readers; /* content opens and reads */
	struct dns *dns;
	const struct conf_target *target;
	bool lmtp;
	char *helo;
	char peer[SC_PEER_MAX];

	smtp_client_open_cb open_cb;
	void *open_arg;
	LIST_ENTRY(smtp_client) opening_entry; /* until open_cb */
	bool opening;
	bool dns_pending; /* sc_dns_cb will run */
	smtp_client_done_cb done_cb;
	void *done_arg;

	struct dns_addr *addrs;
	size_t naddrs;
	size_t cur;
	bool notls;       /* this attempt: no TLS */
	bool tls_retried; /* cur fell back already */

	struct bufferevent *bev;
	SSL *ssl; /* owned by bev */
	bool tls_active;
	enum sc_state state;
	struct event *timer;
	const char *timeout_what;
	struct event *defer;
	enum sc_defer defer_kind;
	int defer_status;
	unsigned depth; /* entry points on stack */
	bool freeing;

	/* The reply being read. */
	unsigned rcode;
	unsigned rlines;
	char rtext[SMTP_CLIENT_REPLY_MAX];
	size_t rlen;

	/* What EHLO offered. */
	bool ext_pipelining;
	bool ext_size;
	uint64_t size_max; /* 0: no limit */
	bool ext_8bitmime;
	bool ext_smtputf8;
	bool ext_dsn;
	bool ext_starttls;
	bool ext_chunking;

	/* Why the last address failed (for the open callback). */
	char last_err[SC_REASON_MAX];
	bool last_perm; /* it was a 5xx */
	bool any_temp;  /* some address failed 4xx */
	bool perm_dns;

	/* The transaction. */
	struct smtp_client_msg *msg;
	struct sc_cmd *cmds;
	size_t ncmds;
	size_t nsent;
	size_t nrecv;
	bool pipelined;
	bool mail_ok;
	bool *accepted; /* RCPT got 2xx */
	bool *final;    /* has its final reply */
	size_t naccepted;
	size_t nfinal;  /* LMTP replies after "." */
	bool dummy_dot; /* "." sent with no rcpts */
	bool need_rset;
	bool broken; /* no more transactions */
	unsigned ntrans;

	/*
	 * Content streaming. The readers open the file, read it and
	 * dot-stuff it, one job in flight (rjob), at most SC_AHEAD content
	 * octets in flight or done and waiting (ready); the loop moves the
	 * stuffed octets into the output as it drains.
	 */
	uint64_t left;          /* content octets not yet in the output */
	uint64_t roff;          /* content octets asked of the readers */
	uint64_t sent;          /* octets in the output: prepend and content */
	struct sc_stuffing rst; /* after the content read so far */
	struct spool_content *src; /* open between reads; NULL before, after */
	struct sc_rjob *rjob;      /* the read in flight, or NULL */
	struct evbuffer *ready;    /* read and stuffed, not yet sent */
	size_t ready_raw;          /* content octets in ready */
};

/* ---- smtp_client.c: helpers ---- */

/* v seconds, or dflt when the config left it 0. */
unsigned sc_secs(unsigned v, unsigned dflt);
/* (Re)starts the state timeout; what names the step in the message. */
void sc_arm(struct smtp_client *c, unsigned secs, const char *what);
void sc_disarm(struct smtp_client *c);
/* Runs kind from the loop (sc_defer_cb), never from the caller's stack. */
void sc_defer(struct smtp_client *c, enum sc_defer kind);
/* Brackets every entry point; the last sc_leave frees a closed client. */
void sc_enter(struct smtp_client *c);
void sc_leave(struct smtp_client *c);
void sc_free(struct smtp_client *c);
/* Queues a command line on the connection's output. */
void sc_printf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees the bufferevent (and SSL), sending QUIT first when quit is set. */
void sc_drop(struct smtp_client *c, bool quit);

/* ---- smtp_client.c: libevent entry points ---- */

void sc_read_cb(struct bufferevent *bev, void *arg);
void sc_write_cb(struct bufferevent *bev, void *arg);
void sc_event_cb(struct bufferevent *bev, short what, void *arg);
void sc_timer_cb(evutil_socket_t fd, short what, void *arg);
void sc_defer_cb(evutil_socket_t fd, short what, void *arg);

/* ---- smtp_client_conn.c: opening ---- */

/* Takes c off the list of clients still opening (idempotent). */
void sc_unopening(struct smtp_client *c);
/* Connects to addrs[cur] or the next address that works; else fails. */
void sc_connect(struct smtp_client *c);
/* Every address failed: calls the open callback with -1, frees c. */
void sc_open_fail(struct smtp_client *c);
/* This address failed (perm: with a 5xx): note why, try the next. */
void sc_fail_addr(struct smtp_client *c, bool perm, bool quit, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));
/* A complete reply in SC_BANNER, SC_EHLO, SC_HELO or SC_STARTTLS. */
void sc_open_reply(struct smtp_client *c);
/* One EHLO line after the first: note the extension it names. */
void sc_ehlo_line(struct smtp_client *c, const char *kw, size_t len);
/* The handshake completed, or failed (why) or timed out. */
void sc_tls_up(struct smtp_client *c);
void sc_tls_failed(struct smtp_client *c, const char *why);

#endif
