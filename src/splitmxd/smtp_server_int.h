/*
 * smtp_server_int.h - what the parts of smtp_server share: the session and
 * server structs and the functions one part calls in another.
 *
 * smtp_server.c: session lifecycle, I/O, TLS, listeners, the policy runs;
 * smtp_server_cmd.c: command handlers; smtp_server_data.c: DATA/BDAT into
 * the spool and the commit. Private to these files (no other module
 * defines session_ names); never include it elsewhere.
 */
#ifndef SPLITMX_SMTP_SERVER_INT_H
#define SPLITMX_SMTP_SERVER_INT_H

#include <sys/queue.h>

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/ssl.h>

#include "policy.h"
#include "smtp_proto.h"
#include "spool.h"

#define SMTP_SERVER_READ_HIGHWAT (256 * 1024)
#define SMTP_SERVER_OUTPUT_MAX   (64 * 1024) /* stop reading above */
#define SMTP_SERVER_DECODE_CHUNK (16 * 1024)
#define SMTP_SERVER_IPTAB_SIZE   1021
#define SMTP_SERVER_LOGLIST_MAX  1024  /* recipients in a log line */
#define SMTP_SERVER_PREPEND_MAX  16384 /* trace fields from policy */
#define SMTP_SERVER_ERR_MAX      256   /* why a transaction failed */
/*
 * A command line longer than SMTP_PROTO_CMDLINE_MAX is answered 500 5.5.2
 * and discarded as it arrives (nothing of it is kept); one longer than
 * this still gets the 500 and the connection is closed.
 */
#define SMTP_SERVER_SKIP_MAX     (64 * 1024)
#define SMTP_SERVER_ACCEPT_PAUSE 250 /* ms without accept() after EMFILE */

enum session_state {
	SESSION_CMD,    /* reading command lines */
	SESSION_DATA,   /* reading DATA content */
	SESSION_BDAT,   /* reading a BDAT chunk */
	SESSION_COMMIT, /* waiting for policy and spool; not reading */
	SESSION_TLS,    /* STARTTLS handshake */
	SESSION_POLICY, /* a command waits for a policy verdict */
	SESSION_LOOKUP, /* before the banner: client name lookup */
};

#define SMTP_SERVER_LOOKUP_SECONDS 5 /* then the name is "unknown" */

struct session;

/* A reverse lookup in flight; outlives its session if need be. */
struct session_lookup {
	struct session *s; /* NULL once the session let go */
	char name[256];    /* the PTR name, being confirmed */
};

/* Why a transaction's content cannot be accepted (decided at its end). */
enum session_tx_error {
	TX_OK,
	TX_TOO_BIG,
	TX_WRITE,
	TX_NO_RCPT, /* BDAT without valid recipients: read and refuse */
	TX_NO_MAIL, /* BDAT without MAIL */
	TX_DISCARD, /* policy: read the content, say 250, keep nothing */
};

/* Continues a command once the policy chain has decided. */
typedef void (
    *session_resume_fn)(struct session *, const struct policy_verdict *);

struct listener {
	struct smtp_server *srv;
	struct evconnlistener *evl;
	SSL_CTX *tls;
	char desc[100];
};

struct ipcount {
	char addr[INET6_ADDRSTRLEN];
	unsigned n;
	struct ipcount *next;
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct smtp_server *srv;
	struct listener *lst;
	uint64_t serial;
	char sid[24]; /* log prefix */
	struct bufferevent *bev;
	enum session_state state;
	char addr[INET6_ADDRSTRLEN];
	char name[256]; /* confirmed reverse name or "unknown" */
	struct session_lookup *lookup;
	struct event *lookup_timer;
	char local[128]; /* listener address:port */
	char helo[SMTP_PROTO_HELO_MAX + 1];
	bool helo_seen;
	bool esmtp;
	bool tls_active;
	char tls_desc[160];
	char tls_summary[96];
	unsigned errors;
	unsigned ncommands;
	bool skipping;           /* discarding the rest of an overlong line */
	size_t skipped;          /* octets of it so far */
	bool skip_bdat;          /* it is a BDAT: its chunk cannot be skipped */
	struct timespec started; /* CLOCK_MONOTONIC, at accept */
	struct timespec data_started; /* DATA, or the first BDAT */
	struct event *session_timer;  /* session_deadline */
	struct event *data_timer;     /* data_deadline */
	bool deadline_hit;            /* close once the commit is answered */
	bool read_paused;             /* replies above SMTP_SERVER_OUTPUT_MAX */
	unsigned naccepted;
	bool counted_ip;  /* holds a per-IP slot */
	bool no_service;  /* 554 banner: only QUIT */
	bool discard_all; /* policy: drop every message */

	/* The transaction. */
	bool has_mail;
	struct smtp_proto_mail mail;
	struct spool_rcpt *rcpts;
	size_t nrcpts;
	unsigned rcpt_attempts;
	unsigned ndiscarded; /* recipients policy dropped */
	struct spool_msg *msg;
	struct smtp_proto_data dec;
	struct smtp_proto_hdrscan hs;
	enum session_tx_error tx_error;
	struct sbuf tx_err; /* why the content failed */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_active; /* BDAT seen in this transaction */
	uint64_t bdat_chunk;
	uint64_t stored_size; /* with our Received header */

	/* The policy run in flight, and what it sees. */
	struct policy_req *preq;
	session_resume_fn presume;
	struct policy_ctx pctx;

	/* Teardown. */
	struct event *drain_timer; /* TLS: waits for the socket */
	unsigned drain_polls;
	bool closing;
	bool flush_on_close;
	unsigned pending; /* spool and policy callbacks */
	bool holds_file;  /* a spool file open: counted in srv->nfiles */
};

TAILQ_HEAD(session_list, session);

struct smtp_server {
	struct event_base *base;
	const struct conf *conf;
	struct spool *spool;
	struct verify *verify;
	struct dns *dns;            /* client name lookups */
	struct workers *workers;    /* SPF and DKIM checks */
	const struct auth_srs *srs; /* bounces to SRS addresses */
	struct policy *policy;      /* built by smtp_server_start */
	void (*accepted)(void *, const char *);
	void *accepted_arg;
	struct listener *listeners;
	size_t nlisteners;
	struct session_list sessions;
	unsigned nsessions; /* with a live connection */
	unsigned nstructs;  /* allocated sessions */
	unsigned nfiles;    /* sessions holding a spool file */
	unsigned file_max;  /* at most that many (0: no limit) */
	uint64_t serial;
	struct ipcount *iptab[SMTP_SERVER_IPTAB_SIZE];
	char hostname[256];
	bool shutting_down;
	bool stressed;              /* near the connection limit */
	struct event *accept_timer; /* listeners paused after EMFILE */
	int spare_fd;               /* /dev/null, given up to shed a client */
	unsigned long shed;         /* clients closed at once (no fds) */
	bool starved;               /* accept() failed for want of fds */
	struct timespec starved_since;
	unsigned long shed_before; /* shed when the shortage began */
	struct event *grace_timer;
	void (*shutdown_done)(void *);
	void *shutdown_arg;
};

/* smtp_server.c: replies, transactions, lifecycle, policy runs. */
void session_reply(struct session *s, unsigned code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void session_error(struct session *s, unsigned code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void session_status(struct session *s, const struct smtp_proto_status *st);
const char *session_esc(char *buf, size_t size, const char *str);
void session_tx_reset(struct session *s);
void session_file_done(struct session *s);
void session_set_timeout(struct session *s, unsigned seconds);
void session_data_deadline_start(struct session *s);
void session_data_deadline_stop(struct session *s);
void session_close(struct session *s, bool flush);
void session_process(struct session *s);
void session_finish(struct session *s);
void session_cmd_starttls(struct session *s,
    const struct smtp_proto_command *cmd);
void session_policy_run(struct session *s, enum policy_point point,
    session_resume_fn resume);
void session_policy_log(struct session *s, const struct policy_verdict *v);
void session_policy_refuse(struct session *s, const struct policy_verdict *v,
    bool count);

/* smtp_server_cmd.c: one command line at a time. */
int session_read_command(struct session *s, struct evbuffer *in);

/* smtp_server_data.c: content, the DATA-END verdict and the commit. */
void session_cmd_data(struct session *s, const struct smtp_proto_command *cmd);
void session_cmd_bdat(struct session *s, const struct smtp_proto_command *cmd);
size_t session_decode(struct session *s, struct evbuffer *in, uint64_t limit,
    bool *done);
void session_end_content(struct session *s);
void session_bdat_chunk_done(struct session *s);

#endif
