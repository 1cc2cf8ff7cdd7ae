/*
 * policy.c - the policy chain: runs the stages of one point in order and
 * hands the first verdict other than ACCEPT (or ACCEPT once every stage
 * agreed) to the caller's callback.
 *
 * A run owns nothing but itself; the context is the caller's. Stages may
 * answer inside their check or later; a pending run can be cancelled, and
 * the run is freed before its callback, so the callback may free the
 * caller. Never blocks; loop thread only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "policy.h"
#include "xmalloc.h"

struct policy {
	struct policy_stage *stages;
	size_t nstages;
	unsigned points; /* any stage's */
};

struct policy_req {
	const struct policy *pol;
	enum policy_point point;
	struct policy_ctx *ctx;
	policy_done_cb done;
	void *arg;
	size_t next;   /* stage to run next */
	bool in_run;   /* in policy_run */
	bool in_check; /* in a check */
	bool answered; /* the current stage */
	policy_cancel_fn cancel;
	void *cancel_arg;
	struct policy_verdict v;
};

struct policy *
policy_new(void)
{
	return xcalloc(1, sizeof(struct policy));
}

void
policy_free(struct policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->nstages; i++)
		if (p->stages[i].arg_free != NULL)
			p->stages[i].arg_free(p->stages[i].arg);
	free(p->stages);
	free(p);
}

void
policy_add(struct policy *p, const struct policy_stage *st)
{
	if (st->check == NULL || st->name == NULL)
		log_panic("policy stage without a name or check");
	p->stages = xreallocarray(p->stages, p->nstages + 1,
	    sizeof(*p->stages));
	p->stages[p->nstages++] = *st;
	p->points |= st->points;
}

static void
policy_verdict_clear(struct policy_verdict *v, const char *stage)
{
	v->action = POLICY_ACCEPT;
	v->code = 0;
	v->enh[0] = '\0';
	v->text[0] = '\0';
	v->why[0] = '\0';
	v->stage = stage;
	v->async = false;
}

/* The run is over: free it first, so that done may free its caller. */
static void
policy_finish(struct policy_req *req)
{
	struct policy_verdict v = req->v;
	policy_done_cb done = req->done;
	void *arg = req->arg;

	v.async = !req->in_run;
	free(req);
	done(arg, &v);
}

/*
 * Runs stages until one answers later or the run is decided. Returns true
 * when it is decided (req is gone), false while a stage is pending.
 */
static bool
policy_advance(struct policy_req *req)
{
	const struct policy_stage *st;

	while (req->next < req->pol->nstages) {
		st = &req->pol->stages[req->next++];
		if ((st->points & POLICY_AT(req->point)) == 0)
			continue;
		policy_verdict_clear(&req->v, st->name);
		req->answered = false;
		req->cancel = NULL;
		req->cancel_arg = NULL;
		req->in_check = true;
		st->check(req, req->ctx, st->arg);
		req->in_check = false;
		if (!req->answered)
			return false; /* policy_answer goes on */
		if (req->v.action != POLICY_ACCEPT) {
			policy_finish(req);
			return true;
		}
	}
	policy_verdict_clear(&req->v, NULL);
	policy_finish(req);
	return true;
}

struct policy_req *
policy_run(const struct policy *p, enum policy_point point,
    struct policy_ctx *ctx, policy_done_cb done, void *arg)
{
	struct policy_req *req;
	struct policy_verdict v;

	if (p == NULL || (p->points & POLICY_AT(point)) == 0) {
		/* Most points have no stage: no run to allocate. */
		policy_verdict_clear(&v, NULL);
		done(arg, &v);
		return NULL;
	}
	req = xcalloc(1, sizeof(*req));
	req->pol = p;
	req->point = point;
	req->ctx = ctx;
	req->done = done;
	req->arg = arg;
	req->in_run = true;
	if (policy_advance(req))
		return NULL;
	req->in_run = false;
	return req;
}

void
policy_cancel(struct policy_req *req)
{
	if (req == NULL)
		return;
	if (req->in_check)
		log_panic("policy run cancelled from inside a check");
	if (req->cancel != NULL)
		req->cancel(req->cancel_arg);
	free(req);
}

static void
policy_check_answer(const struct policy_req *req, const char *what)
{
	if (req->answered)
		log_panic("policy stage %s: %s after it answered",
		    req->v.stage != NULL ? req->v.stage : "?", what);
}

void
policy_answer(struct policy_req *req, enum policy_action action, unsigned code,
    const char *enh, const char *fmt, ...)
{
	struct policy_verdict *v = &req->v;
	va_list ap;

	policy_check_answer(req, "an answer");
	if ((action == POLICY_REJECT && (code < 500 || code > 599)) ||
	    (action == POLICY_TEMPFAIL && (code < 400 || code > 499)))
		log_panic("policy stage %s: reply code %u for verdict %d",
		    v->stage, code, (int)action);
	v->action = action;
	v->code = code;
	(void)snprintf(v->enh, sizeof(v->enh), "%s", enh != NULL ? enh : "");
	va_start(ap, fmt);
	(void)vsnprintf(v->text, sizeof(v->text), fmt, ap);
	va_end(ap);
	req->answered = true;
	req->cancel = NULL;
	if (req->in_check)
		return; /* policy_advance goes on */
	if (action != POLICY_ACCEPT)
		policy_finish(req);
	else
		(void)policy_advance(req);
}

void
policy_accept(struct policy_req *req)
{
	policy_answer(req, POLICY_ACCEPT, 0, NULL, "%s", "");
}

void
policy_set_why(struct policy_req *req, const char *fmt, ...)
{
	va_list ap;

	policy_check_answer(req, "a log line");
	va_start(ap, fmt);
	(void)vsnprintf(req->v.why, sizeof(req->v.why), fmt, ap);
	va_end(ap);
}

void
policy_set_cancel(struct policy_req *req, policy_cancel_fn fn, void *arg)
{
	policy_check_answer(req, "a cancel hook");
	req->cancel = fn;
	req->cancel_arg = arg;
}
