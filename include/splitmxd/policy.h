/*
 * policy.h - the session's policy chain: stages with asynchronous verdicts.
 *
 * A chain is a list of stages, each registered for one or more points of
 * an SMTP session (CONNECT, HELO, MAIL, RCPT, DATA-END). At each point the
 * session runs the chain; the stages for that point answer in order, at
 * once or later (after a worker job or a verification probe), and the first
 * verdict other than ACCEPT ends the run. Loop thread only; stages that
 * block hand their work to workers_. The chain never replies to a client
 * itself: the session turns the verdict into the SMTP reply.
 *
 * A milter client plugs in as one more stage: policy_add() with the points
 * it wants, after the built-in stages (smtp_server_start builds the chain).
 * Its check sends the event to the milter and calls policy_set_cancel();
 * the milter's reply becomes policy_answer() (continue/accept: ACCEPT;
 * reject, tempfail, discard, quarantine alike; a 4xx/5xx "replycode" keeps
 * its code and text), and header additions go into ctx->prepend. A milter
 * connection per session needs a hook at the end of the session, which
 * the chain does not have yet.
 */
#ifndef SPLITMX_POLICY_H
#define SPLITMX_POLICY_H

#include <stdbool.h>

#include "sbuf.h"
#include "smtp_proto.h"

struct auth_srs;
struct conf;
struct spool_msg;
struct verify;
struct workers;
struct policy;
struct policy_req;

enum policy_point {
	POLICY_CONNECT,  /* before the banner */
	POLICY_HELO,     /* HELO/EHLO with a valid argument */
	POLICY_MAIL,     /* MAIL with a valid path and parameters */
	POLICY_RCPT,     /* RCPT with a valid path, within the limits */
	POLICY_DATA_END, /* content complete and sound, before commit */
};
#define POLICY_AT(point) (1u << (point))

enum policy_action {
	POLICY_ACCEPT,     /* go on to the next stage */
	POLICY_REJECT,     /* 5xx with the stage's reply */
	POLICY_TEMPFAIL,   /* 4xx with the stage's reply */
	POLICY_DISCARD,    /* say 250, drop the recipient or message */
	POLICY_QUARANTINE, /* accept but hold (DATA-END) */
};

#define POLICY_TEXT_MAX 1024 /* reply text, as the session's */
#define POLICY_WHY_MAX  4096 /* a log line */

struct policy_verdict {
	enum policy_action action;
	unsigned code;              /* REJECT 5xx, TEMPFAIL 4xx */
	char enh[16];               /* enhanced status, "5.7.1" */
	char text[POLICY_TEXT_MAX]; /* no code, no CRLF */
	/* What the session logs (after "sid: ") when it acts on it; or "". */
	char why[POLICY_WHY_MAX];
	const char *stage; /* NULL: all accepted */
	/* Came after policy_run returned: the callback is an entry point. */
	bool async;
};

/*
 * What the stages see, owned by the session and lent to a run: it must
 * stay valid until the run's callback or policy_cancel. Fields a point
 * does not reach yet are "" or NULL.
 */
struct policy_ctx {
	const char *sid; /* log prefix */
	const char *client_addr;
	const char *client_name;            /* or "unknown" */
	const char *helo;                   /* "" before HELO */
	const struct smtp_proto_mail *mail; /* MAIL and later */
	/* RCPT: the recipient; a stage may rewrite it (SRS reversal). */
	struct smtp_proto_rcpt rcpt;
	/*
	 * An earlier stage vouched for rcpt (a reversed SRS bounce goes to
	 * a sender anywhere): the relay and recipient checks let it pass.
	 */
	bool rcpt_vouched;
	/* DATA-END: the message (tmp file) and what the scan of it found. */
	struct spool_msg *msg;
	const struct smtp_proto_hdrscan *hs;
	/* DATA-END: complete header lines to send in front of the content. */
	struct sbuf prepend;
};

/* A stage's check: answers with policy_answer/policy_accept, now or later. */
typedef void (*policy_check_fn)(struct policy_req *req, struct policy_ctx *ctx,
    void *arg);
/* Withdraws a pending check: its answer must never come. */
typedef void (*policy_cancel_fn)(void *arg);
/* The run's verdict; v is valid during the call only. */
typedef void (*policy_done_cb)(void *arg, const struct policy_verdict *v);

struct policy_stage {
	const char *name; /* for logs */
	unsigned points;  /* POLICY_AT() bits */
	policy_check_fn check;
	void *arg;
	void (*arg_free)(void *arg); /* at policy_free; or NULL */
};

/* An empty chain (everything is accepted). */
struct policy *policy_new(void);
/* Frees the chain and its stages' arguments. No run may be pending. */
void policy_free(struct policy *p);
/* Appends a stage (copied; name must outlive the chain). */
void policy_add(struct policy *p, const struct policy_stage *st);

/*
 * Runs the stages registered for point, in order. done(arg, v) runs once:
 * from inside this call when every stage answered at once (then NULL is
 * returned), else later (the pending run is returned). p may be NULL.
 */
struct policy_req *policy_run(const struct policy *p, enum policy_point point,
    struct policy_ctx *ctx, policy_done_cb done, void *arg);

/*
 * Drops a pending run: the waiting stage's cancel hook runs and done never
 * does. NULL is ignored. A stage that lent ctx data to a worker (the
 * SPF/DKIM stage reads ctx->msg) cannot take it back at once, so a
 * DATA-END run is waited for, not cancelled (the session counts it as a
 * pending callback, like a commit).
 */
void policy_cancel(struct policy_req *req);

/*
 * Stage side. Exactly one answer per check; after it the stage must not
 * touch req or ctx again (the run, even the session, may be gone).
 * REJECT takes a 5xx code, TEMPFAIL a 4xx one; the text is formatted.
 */
void policy_answer(struct policy_req *req, enum policy_action action,
    unsigned code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void policy_accept(struct policy_req *req);
/* The log line for the session, set before answering. */
void policy_set_why(struct policy_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A check that answers later says how to withdraw it (before returning). */
void policy_set_cancel(struct policy_req *req, policy_cancel_fn fn, void *arg);

/*
 * The built-in stages, in the order the session registers them.
 * RCPT: a bounce to one of our SRS addresses is verified and turned into
 * the original sender's address (policy_rcpt.c).
 */
void policy_add_srs(struct policy *p, const struct conf *conf,
    const struct auth_srs *srs);
/* RCPT: only our domains (DESIGN rule 8) and their recipient lists. */
void policy_add_recipients(struct policy *p, const struct conf *conf);
/* RCPT: domains with verify_recipients ask their target by probe. */
void policy_add_verify(struct policy *p, const struct conf *conf,
    struct verify *v);
/*
 * DATA-END: SPF and DKIM on a worker (policy_auth.c); the results go
 * into ctx->prepend, and an SPF fail is refused with spf_reject.
 */
void policy_add_auth(struct policy *p, const struct conf *conf,
    struct workers *w, const char *hostname);

#endif
