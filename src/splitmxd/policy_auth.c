/*
 * policy_auth.c - the DATA-END stage for SPF and DKIM, run on a worker
 * between the end of the content and the commit: they block on DNS, and
 * DKIM needs the whole message, read back from the tmp file.
 *
 * The results become header fields handed back in ctx->prepend (the
 * session sends them in front of the content, which stays unchanged); an
 * SPF fail is refused when spf_reject is set. The loop never waits here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "auth_dkim.h"
#include "auth_results.h"
#include "auth_spf.h"
#include "conf.h"
#include "log.h"
#include "policy.h"
#include "spool.h"
#include "workers.h"
#include "xmalloc.h"

struct auth_stage {
	const struct conf *conf;
	struct workers *workers;
	char *hostname;
};

/* One check in flight; the worker sees only its own copies. */
struct auth_job {
	struct policy_req *req; /* NULL once cancelled */
	struct policy_ctx *ctx;
	bool spf_reject;
	struct spool_msg *msg;
	char *resolvers;
	char *receiver;
	char *authserv;
	char ip[INET6_ADDRSTRLEN];
	char *helo;
	char *sender;
	struct auth_spf_result spf;
	struct auth_dkim_result dkim;
	bool signed_msg; /* has a DKIM-Signature field */
	struct sbuf fields;
};

static void
auth_job_free(struct auth_job *a)
{
	free(a->resolvers);
	free(a->receiver);
	free(a->authserv);
	free(a->helo);
	free(a->sender);
	sbuf_release(&a->fields);
	free(a);
}

/* On a worker: the checks, and their results as header fields. */
static void
auth_job_run(void *arg)
{
	struct auth_job *a = arg;
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
	(void)auth_results_format(&a->fields, a->authserv, &a->spf, &a->dkim);
	(void)auth_results_received_spf(&a->fields, &a->spf);
}

/* Back on the loop: hand the fields back and answer. */
static void
auth_job_done(void *arg)
{
	struct auth_job *a = arg;
	struct policy_req *req = a->req;
	struct policy_ctx *ctx = a->ctx;

	if (req == NULL) {
		auth_job_free(a); /* cancelled: nobody waits */
		return;
	}
	log_info("%s: spf=%s (%s) dkim=%s%s%s", spool_msg_id(a->msg),
	    auth_spf_res_str(a->spf.result), a->spf.domain,
	    auth_dkim_res_str(a->dkim.nsigs > 0 ? a->dkim.sigs[0].result :
	                                          a->dkim.msg_result),
	    a->dkim.nsigs > 0 ? " d=" : "",
	    a->dkim.nsigs > 0 ? a->dkim.sigs[0].domain : "");
	(void)sbuf_append(&ctx->prepend, a->fields.data, a->fields.len);
	if (a->spf.result == AUTH_SPF_FAIL && a->spf_reject) {
		policy_set_why(req, "reject: SPF fail for %s from %s[%s]",
		    a->spf.domain, ctx->client_name, ctx->client_addr);
		policy_answer(req, POLICY_REJECT, 550, "5.7.23",
		    "SPF validation failed for %s", a->spf.domain);
	} else
		policy_accept(req);
	auth_job_free(a);
}

static void
auth_job_cancel(void *arg)
{
	struct auth_job *a = arg;

	a->req = NULL; /* the worker cannot be stopped */
}

static void
auth_check(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	const struct auth_stage *st = arg;
	const struct conf *conf = st->conf;
	struct auth_job *a;
	struct sbuf err;

	sbuf_init(&err, 256);
	if (spool_msg_sync_content(ctx->msg, &err) == -1) {
		log_warnx("%s: cannot store message from %s[%s]: %s", ctx->sid,
		    ctx->client_name, ctx->client_addr, err.data);
		sbuf_release(&err);
		policy_answer(req, POLICY_TEMPFAIL, 452, "4.3.1",
		    "Error: insufficient system storage");
		return;
	}
	sbuf_release(&err);
	a = xcalloc(1, sizeof(*a));
	a->req = req;
	a->ctx = ctx;
	a->spf_reject = conf->spf_reject;
	a->msg = ctx->msg;
	a->resolvers = conf->resolvers != NULL ? xstrdup(conf->resolvers) :
	                                         NULL;
	a->receiver = xstrdup(st->hostname);
	a->authserv = xstrdup(
	    conf->authserv_id != NULL ? conf->authserv_id : st->hostname);
	(void)snprintf(a->ip, sizeof(a->ip), "%s", ctx->client_addr);
	a->helo = xstrdup(ctx->helo);
	a->sender = xstrdup(ctx->mail->path.mailbox);
	a->signed_msg = ctx->hs->dkim_sigs > 0;
	sbuf_init(&a->fields, 16384);
	policy_set_cancel(req, auth_job_cancel, a);
	workers_submit(st->workers, auth_job_run, auth_job_done, a);
}

static void
auth_stage_free(void *arg)
{
	struct auth_stage *st = arg;

	free(st->hostname);
	free(st);
}

void
policy_add_auth(struct policy *p, const struct conf *conf, struct workers *w,
    const char *hostname)
{
	struct auth_stage *st = xcalloc(1, sizeof(*st));
	struct policy_stage ps = { "spf-dkim", POLICY_AT(POLICY_DATA_END),
		auth_check, st, auth_stage_free };

	st->conf = conf;
	st->workers = w;
	st->hostname = xstrdup(hostname);
	policy_add(p, &ps);
}
