/*
 * queue_int.h - what the parts of the queue module share.
 *
 * The structs behind struct queue and the functions one part of the queue
 * calls in another. Never included outside src/splitmxd/queue*.c.
 */
#ifndef SPLITMX_QUEUE_INT_H
#define SPLITMX_QUEUE_INT_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

#include "conf.h"
#include "smtp_client.h"
#include "smtp_proto.h"
#include "spool.h"

struct auth_srs;
struct dedup;
struct dns;
struct workers;

#define QUEUE_HASH_SIZE      4093
#define QUEUE_IDLE_SECONDS   5 /* an idle connection is closed after */
#define QUEUE_DSN_RETURN_MAX (64 * 1024)
#define QUEUE_REPLY_MAX      512
#define QUEUE_READERS        2 /* threads opening and reading content */

/* QR_DUPLICATE: this target already had this message for this recipient. */
enum qr_state {
	QR_PENDING,
	QR_DELIVERED,
	QR_FAILED,
	QR_DUPLICATE
};
enum qd_state {
	QD_WAIT,
	QD_READY,
	QD_ACTIVE,
	QD_DONE
};

struct qmsg;
struct qtarget;

struct qrcpt {
	char *orig; /* the envelope recipient as received */
	char *addr; /* as this target receives it */
	unsigned notify;
	char *orcpt;
	enum qr_state state;
	unsigned code;
	char reply[QUEUE_REPLY_MAX];
	char dup_of[SPOOL_ID_LEN + 1]; /* from the dedup job */
	bool looped;                   /* dup_of is a pass in the trace */
};

struct qdeliv {
	TAILQ_ENTRY(qdeliv) entry; /* target's ready list */
	struct qmsg *msg;
	struct qtarget *qt;
	struct qrcpt *rcpts;
	size_t nrcpts;
	enum qd_state state;
	unsigned attempts;
	struct event *timer;
	char domain[SMTP_PROTO_DOMAIN_MAX + 1]; /* mx "*" */
	char peer[300];                         /* where it went last */
	char *srs_sender;                       /* SRS-rewritten MAIL FROM */
	/* During a transaction. */
	struct smtp_client_rcpt *crcpts;
	size_t *cidx; /* crcpts[i] is rcpts[cidx[i]] */
	size_t ncrcpts;
	struct smtp_client_msg cmsg;
	struct sbuf merr; /* maildir error */
	int mstatus;
};

struct restored {
	struct restored *next;
	char *target; /* target name */
	char *rcpt;   /* the envelope recipient */
	bool delivered;
};

struct qmsg {
	struct qmsg *hnext;
	struct queue *q;
	char id[SPOOL_ID_LEN + 1];
	bool expected_only; /* restore placeholder */
	bool loaded;
	bool finishing;
	bool removed_restored;
	bool bounced_restored;
	struct restored *restored;
	struct spool_envelope env;
	uint64_t off; /* where the content starts */
	uint64_t size;
	char sha[SPOOL_SHA256_HEX + 1];
	struct qdeliv **delivs;
	size_t ndelivs;
	unsigned busy; /* jobs and journal writes */
	/* Load job results. */
	struct sbuf lerr;
	int lstatus;
	int lerrno;               /* of a failed open; ENOENT: gone */
	unsigned load_attempts;   /* loads that failed for a passing reason */
	struct event *load_timer; /* the next load attempt */
	bool corrupt;
	bool warned; /* delay warning sent */
	struct event *retry_timer;
	/* Duplicates and loops (from the load job). */
	char *msgkey;   /* dedup message key, or NULL */
	char *tracekey; /* "t:" id: its pairs are claimed under it too */
	/* "t:" QID of each earlier pass in the trace (this or a known node). */
	char *loopkeys[SMTP_PROTO_TRACE_KEEP];
	size_t nloopkeys;
	bool returning; /* carries an earlier trace */
	unsigned traces;
	unsigned delivered_now; /* 2xx in this process */
};

struct qconn {
	LIST_ENTRY(qconn) entry;
	struct qtarget *qt;
	struct smtp_client *c;
	struct qdeliv *d;     /* transaction in progress */
	struct qdeliv *bound; /* mx "*": its only delivery */
	struct event *idle_timer;
	bool ready;
};

struct qtarget {
	struct queue *q;
	size_t idx;
	const struct conf_target *t;
	TAILQ_HEAD(, qdeliv) ready;
	LIST_HEAD(, qconn) conns;
	unsigned nopen; /* conns or maildir jobs */
	unsigned nopening;
	struct timespec next_start; /* rate limit */
	struct event *rate_timer;
	bool per_domain; /* mx "*" */
};

struct queue {
	struct event_base *base;
	const struct conf *conf;
	struct spool *spool;
	struct workers *w;
	/*
	 * The clients' content reads: threads of their own (never behind an
	 * fsync), through a reader of their own that outlives the spool's.
	 */
	struct workers *readers;
	struct spool_reader *rd;
	struct dns *dns;
	struct dedup *dedup;              /* NULL: duplicates allowed */
	const struct auth_srs *srs;       /* NULL: no SRS */
	struct qclaim_job *claim_pending; /* collecting */
	bool claim_inflight;              /* a batch is being written */
	struct event *expire_timer;
	char *hostname;
	struct qtarget *targets;
	struct qmsg *hash[QUEUE_HASH_SIZE];
	unsigned nmsgs;
	unsigned busy;
	/* Failed at a target while another delivered it: not bounced. */
	unsigned long long partial_failures;
	bool stopping;
};

/* queue.c */
bool queue_trusted(const struct queue *q, const char *addr);
bool queue_known_node(const struct queue *q, const char *node);
void qmsg_unlink(struct qmsg *m);
void queue_jbegin(struct spool_jrec_out *w, struct sbuf *lines,
    const char *verb, const struct qmsg *m);
void queue_jend(struct spool_jrec_out *w, const struct qmsg *m);
void queue_journal(struct qmsg *m, struct sbuf *lines, const char *remove_id);

/* queue_load.c */
void qmsg_load_job(void *arg);
void qmsg_load_done(void *arg);

/* queue_deliv.c */
void qdeliv_prepare(struct qdeliv *d);
void qdeliv_fail_all(struct qdeliv *d, unsigned code, const char *reason);
void qdeliv_result(struct qdeliv *d, int status);
void qdeliv_maildir_job(void *arg);
void qdeliv_maildir_done(void *arg);
void qmsg_remove(struct qmsg *m, const char *dsn_id);
void qmsg_check_done(struct qmsg *m);
void qmsg_schedule(struct qmsg *m);

/* queue_conn.c */
void qconn_free(struct qconn *qc);
void qtarget_pump(struct qtarget *qt);

/* queue_dsn.c */
const char *qrcpt_reached_at(const struct qmsg *m, const struct qrcpt *r);
bool qrcpt_wants_failure_dsn(const struct qmsg *m, const struct qrcpt *r);
struct qdsn_job *qdsn_job_new(struct qmsg *m, bool delayed);
void qdsn_compose_job(void *arg);
void qdsn_composed(void *arg);
void qmsg_maybe_warn(struct qmsg *m);

/* queue_dedup.c */
void qmsg_claim(struct qmsg *m);
void qdeliv_release(struct qdeliv *d, const struct qrcpt *r);
void qclaim_discard(struct queue *q);

#endif
