/*
 * smtp_client.h - outbound SMTP and LMTP sessions on the event loop.
 *
 * A connection is opened to a target (fixed host, MX hosts, or an LMTP
 * socket; every address tried in turn), greets with EHLO (HELO fallback;
 * LHLO for LMTP), applies the target's STARTTLS policy, and then carries
 * any number of transactions (RSET between them) until closed. Content is
 * streamed from the spool file with dot-stuffing, in bounded chunks that
 * reader threads open and read (never the loop). Nothing blocks; every
 * result arrives through a callback on the loop.
 */
#ifndef SPLITMX_SMTP_CLIENT_H
#define SPLITMX_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct dns;
struct conf_target;
struct smtp_client;
struct spool_reader;
struct workers;

#define SMTP_CLIENT_REPLY_MAX 512

/* One recipient of a transaction; the client fills code and reply. */
struct smtp_client_rcpt {
	const char *addr;  /* as the target should see it */
	unsigned notify;   /* SMTP_PROTO_NOTIFY_* bits, 0 = none */
	const char *orcpt; /* "rfc822;xtext" or NULL */
	unsigned code;     /* out: final reply code for it */
	char reply[SMTP_CLIENT_REPLY_MAX]; /* out: the reply text */
};

struct smtp_client_msg {
	/*
	 * The content: committed message id of the spool rd reads, opened
	 * again with spool_content_reopen (content_off, content_size and
	 * sha256 as the queue learnt them at load) on the connection's reader
	 * threads. id and sha256 are copied; rd must outlive the readers (a
	 * read left in flight by a closed client still opens through it).
	 * rd or id NULL: the transaction is answered 451 locally.
	 */
	const struct spool_reader *rd;
	const char *id;
	uint64_t content_off;
	const char *sha256;
	const char *prepend; /* CRLF lines sent first, or NULL */
	uint64_t content_size;
	const char *sender; /* "" for <> */
	const char *envid;  /* DSN ENVID or NULL */
	int ret;            /* enum smtp_proto_ret */
	int body;           /* enum smtp_proto_body */
	bool smtputf8;
	/*
	 * A recipient verification probe: MAIL and RCPT only, no content
	 * (content may be NULL); the next transaction starts with RSET.
	 */
	bool probe;
	struct smtp_client_rcpt *rcpts;
	size_t nrcpts;
};

/*
 * Connection setup done. status 0: ready for smtp_client_send. status -1:
 * no connection (c is already freed); temp tells whether it is worth
 * retrying (false e.g. for a null MX or NXDOMAIN), reason says why.
 */
typedef void (*smtp_client_open_cb)(void *arg, struct smtp_client *c,
    int status, bool temp, const char *reason);

/*
 * Transaction done. status 0: each rcpt has its code and reply (2xx
 * delivered, 4xx deferred, 5xx failed; for SMTP the DATA reply is copied
 * to every recipient its RCPT accepted; LMTP gives one reply per
 * recipient). status -1: the connection failed mid-way; every rcpt got
 * code 4xx and the reason, and c must be closed.
 */
typedef void (
    *smtp_client_done_cb)(void *arg, struct smtp_client *c, int status);

struct smtp_client_params {
	struct event_base *base;
	struct dns *dns;
	const struct conf_target *target;
	const char *helo;        /* our name */
	const char *rcpt_domain; /* for mx "*": MX of this */
	/*
	 * Threads that open and read the content (workers_new; threads that
	 * never fsync, so a read never waits behind a commit). Needed by
	 * every transaction with content; a probe-only client may pass NULL.
	 * Must outlive the client's reads: free it (workers_free) after the
	 * clients are closed, and it runs what they left.
	 */
	struct workers *readers;
};

/* Starts connecting; cb runs exactly once (never from inside this call). */
void smtp_client_open(const struct smtp_client_params *p,
    smtp_client_open_cb cb, void *arg);

/*
 * Abandons a connection still being set up by smtp_client_open with this
 * cb and arg (its open callback has not run yet): it is dropped and cb
 * never runs. No-op when there is none. Call it before freeing arg;
 * smtp_client_shutdown abandons whatever is still opening.
 */
void smtp_client_open_cancel(smtp_client_open_cb cb, void *arg);

/*
 * Runs one transaction on a ready connection. m and its rcpts must stay
 * valid until cb. One transaction at a time per connection.
 */
void smtp_client_send(struct smtp_client *c, struct smtp_client_msg *m,
    smtp_client_done_cb cb, void *arg);

/* Sends QUIT (best effort) and frees the connection. NULL is ignored. */
void smtp_client_close(struct smtp_client *c);

/* Printable peer, e.g. "mx1.example.com[192.0.2.1]:25". */
const char *smtp_client_peer(const struct smtp_client *c);

/* Whether the connection can take another transaction. */
bool smtp_client_reusable(const struct smtp_client *c);

/* Releases the client TLS contexts kept per target (at exit). */
void smtp_client_shutdown(void);

#endif
