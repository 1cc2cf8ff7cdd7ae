/*
 * policy_rcpt.c - the RCPT stages: SRS bounce reversal, the relay policy
 * and recipient lists (DESIGN rule 8), and recipient verification by a
 * probe to a target.
 *
 * They read the recipient in the policy context and may rewrite it (SRS);
 * only the probe answers later, and a cancelled probe never answers. No
 * stage here replies to the client or keeps a pointer into the session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth_srs.h"
#include "conf.h"
#include "log.h"
#include "policy.h"
#include "router.h"
#include "sbuf.h"
#include "verify.h"
#include "xmalloc.h"

#define POLICY_ESC_MAX 1100 /* an escaped path in a log line */

struct srs_stage {
	const struct conf *conf;
	const struct auth_srs *srs;
};

struct recipients_stage {
	const struct conf *conf;
};

struct verify_stage {
	const struct conf *conf;
	struct verify *verify;
};

/* A probe in flight. */
struct verify_call {
	struct policy_req *req;
	struct policy_ctx *ctx;
	const struct conf *conf;
	struct verify_req *vreq;
};

/* Escapes peer text for a log line or a reply into buf. */
static const char *
rcpt_esc(char *buf, size_t size, const char *s)
{
	struct sbuf sb;

	sbuf_init(&sb, size - 1);
	if (sbuf_append_escaped(&sb, s, strlen(s), NULL, false) == -1)
		(void)sbuf_append_str(&sb, "(too long)");
	(void)snprintf(buf, size, "%s", sb.data);
	sbuf_release(&sb);
	return buf;
}

/*
 * A bounce to one of our SRS addresses: accepted only when the address is
 * ours and authentic (hash, age), and then addressed to the original
 * sender it stands for, which no later relay check applies to.
 */
static void
srs_check(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	const struct srs_stage *st = arg;
	const struct conf *conf = st->conf;
	struct smtp_proto_rcpt *rcpt = &ctx->rcpt;
	char out[AUTH_SRS_ADDR_BUFSIZE], esc[POLICY_ESC_MAX];
	char from[POLICY_ESC_MAX], oesc[POLICY_ESC_MAX];
	struct sbuf err;

	if (st->srs == NULL || conf->srs_domain == NULL ||
	    rcpt->path.is_postmaster ||
	    strcasecmp(rcpt->path.domain_lc, conf->srs_domain) != 0 ||
	    !auth_srs_is_srs(rcpt->path.local)) {
		policy_accept(req);
		return;
	}
	rcpt_esc(esc, sizeof(esc), rcpt->path.mailbox);
	rcpt_esc(from, sizeof(from), ctx->mail->path.mailbox);
	sbuf_init(&err, 256);
	if (auth_srs_reverse(st->srs, rcpt->path.mailbox, time(NULL), out,
	        sizeof(out), &err) != 0) {
		policy_set_why(req,
		    "reject: RCPT from %s[%s]: %s; from=<%s> "
		    "to=<%s>",
		    ctx->client_name, ctx->client_addr,
		    err.len > 0 ? err.data : "bad SRS", from, esc);
		policy_answer(req, POLICY_REJECT, 550, "5.7.1", "<%s>: %s", esc,
		    err.len > 0 ? err.data : "invalid SRS address");
		sbuf_release(&err);
		return;
	}
	sbuf_release(&err);
	(void)snprintf(rcpt->path.mailbox, sizeof(rcpt->path.mailbox), "%s",
	    out);
	log_info("%s: SRS <%s> is <%s>", ctx->sid, esc,
	    rcpt_esc(oesc, sizeof(oesc), out));
	ctx->rcpt_vouched = true;
	policy_accept(req);
}

/* The relay policy: which recipients this node accepts (DESIGN rule 8). */
static void
recipients_check(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	const struct recipients_stage *st = arg;
	const struct smtp_proto_rcpt *rcpt = &ctx->rcpt;
	const struct conf_domain *dom;
	char esc[POLICY_ESC_MAX], from[POLICY_ESC_MAX];

	if (ctx->rcpt_vouched || rcpt->path.is_postmaster) {
		policy_accept(req);
		return;
	}
	rcpt_esc(esc, sizeof(esc), rcpt->path.mailbox);
	rcpt_esc(from, sizeof(from), ctx->mail->path.mailbox);
	dom = rcpt->path.domain_literal ?
	    NULL :
	    conf_find_domain(st->conf, rcpt->path.domain_lc);
	if (dom == NULL) {
		policy_set_why(req,
		    "reject: RCPT from %s[%s]: relay denied; "
		    "from=<%s> to=<%s>",
		    ctx->client_name, ctx->client_addr, from, esc);
		policy_answer(req, POLICY_REJECT, 554, "5.7.1",
		    "<%s>: Relay access denied", esc);
		return;
	}
	/* %-hack, bang paths and quoted @ route mail elsewhere. */
	if (strpbrk(rcpt->path.local, "%!@") != NULL) {
		policy_set_why(req,
		    "reject: RCPT from %s[%s]: routing "
		    "characters in local part; from=<%s> to=<%s>",
		    ctx->client_name, ctx->client_addr, from, esc);
		policy_answer(req, POLICY_REJECT, 554, "5.7.1",
		    "<%s>: Relay "
		    "access denied (routing characters in local part)",
		    esc);
		return;
	}
	if (strcasecmp(rcpt->path.local, "postmaster") != 0 &&
	    !conf_domain_accepts(dom, rcpt->path.local)) {
		policy_set_why(req,
		    "reject: RCPT from %s[%s]: unknown user; "
		    "from=<%s> to=<%s>",
		    ctx->client_name, ctx->client_addr, from, esc);
		policy_answer(req, POLICY_REJECT, 550, "5.1.1",
		    "<%s>: "
		    "Recipient address rejected: User unknown",
		    esc);
		return;
	}
	policy_accept(req);
}

/* A probe answer (or a cached one) decides the recipient. */
static void
verify_answer(struct policy_req *req, const struct policy_ctx *ctx,
    const struct conf *conf, enum verify_verdict v, const char *reply)
{
	char esc[POLICY_ESC_MAX];

	rcpt_esc(esc, sizeof(esc), ctx->rcpt.path.mailbox);
	switch (v) {
	case VERIFY_OK:
		policy_accept(req);
		break;
	case VERIFY_UNKNOWN:
		policy_set_why(req,
		    "reject: RCPT from %s[%s]: unknown at the "
		    "target (%s); to=<%s>",
		    ctx->client_name, ctx->client_addr, reply, esc);
		policy_answer(req, POLICY_REJECT, 550, "5.1.1",
		    "<%s>: "
		    "Recipient address rejected: User unknown",
		    esc);
		break;
	case VERIFY_TEMPFAIL:
		if (!conf->verify_tempfail) {
			policy_accept(req);
			break;
		}
		policy_set_why(req,
		    "defer: RCPT from %s[%s]: verification "
		    "failed (%s); to=<%s>",
		    ctx->client_name, ctx->client_addr, reply, esc);
		policy_answer(req, POLICY_TEMPFAIL, 450, "4.1.1",
		    "<%s>: "
		    "Recipient address verification failed, try again later",
		    esc);
		break;
	}
}

static void
verify_call_cb(void *arg, enum verify_verdict v, const char *reply)
{
	struct verify_call *call = arg;
	struct policy_req *req = call->req;
	struct policy_ctx *ctx = call->ctx;
	const struct conf *conf = call->conf;

	free(call);
	verify_answer(req, ctx, conf, v, reply != NULL ? reply : "");
}

static void
verify_call_cancel(void *arg)
{
	struct verify_call *call = arg;

	verify_cancel(call->vreq);
	free(call);
}

/*
 * Domains without a recipient list may ask a target whether the user
 * exists, so this backup path never accepts mail that bounces later.
 */
static void
verify_check(struct policy_req *req, struct policy_ctx *ctx, void *arg)
{
	const struct verify_stage *st = arg;
	const struct smtp_proto_rcpt *rcpt = &ctx->rcpt;
	const struct conf_domain *dom = NULL;
	char addr[SMTP_PROTO_PATH_MAX + 1];
	struct verify_call *call;
	enum verify_verdict v;
	size_t t;

	if (!ctx->rcpt_vouched && !rcpt->path.is_postmaster &&
	    !rcpt->path.domain_literal &&
	    strcasecmp(rcpt->path.local, "postmaster") != 0)
		dom = conf_find_domain(st->conf, rcpt->path.domain_lc);
	if (dom == NULL || dom->verify_target < 0 || dom->has_list) {
		policy_accept(req);
		return;
	}
	t = (size_t)dom->verify_target;
	if (router_rewrite(st->conf, t, rcpt->path.mailbox, addr,
	        sizeof(addr)) == -1) {
		policy_accept(req);
		return;
	}
	if (verify_cached(st->verify, t, addr, &v)) {
		verify_answer(req, ctx, st->conf, v, "cached");
		return;
	}
	call = xcalloc(1, sizeof(*call));
	call->req = req;
	call->ctx = ctx;
	call->conf = st->conf;
	/* verify_probe never calls back from inside (verify.h). */
	call->vreq = verify_probe(st->verify, t, addr, verify_call_cb, call);
	policy_set_cancel(req, verify_call_cancel, call);
}

void
policy_add_srs(struct policy *p, const struct conf *conf,
    const struct auth_srs *srs)
{
	struct srs_stage *st = xcalloc(1, sizeof(*st));
	struct policy_stage ps = { "srs", POLICY_AT(POLICY_RCPT), srs_check, st,
		free };

	st->conf = conf;
	st->srs = srs;
	policy_add(p, &ps);
}

void
policy_add_recipients(struct policy *p, const struct conf *conf)
{
	struct recipients_stage *st = xcalloc(1, sizeof(*st));
	struct policy_stage ps = { "recipients", POLICY_AT(POLICY_RCPT),
		recipients_check, st, free };

	st->conf = conf;
	policy_add(p, &ps);
}

void
policy_add_verify(struct policy *p, const struct conf *conf, struct verify *v)
{
	struct verify_stage *st = xcalloc(1, sizeof(*st));
	struct policy_stage ps = { "verify", POLICY_AT(POLICY_RCPT),
		verify_check, st, free };

	st->conf = conf;
	st->verify = v;
	policy_add(p, &ps);
}
