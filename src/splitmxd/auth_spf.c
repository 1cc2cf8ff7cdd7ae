/*
 * auth_spf.c - SPF (RFC 7208) with libspf2 over our own DNS layer.
 *
 * Each check builds a libspf2 server whose only DNS layer is
 * auth_spf_lookup: it asks dns_sync (the configured resolvers, DESIGN
 * rule 9) and turns the answer into the SPF_dns_rr_t libspf2 expects.
 * A per-check time budget bounds the whole evaluation on top of
 * libspf2's own 10-lookup limit. Blocks: run on workers_ threads only.
 * Returns a verdict and writes no header text: auth_results_ formats the
 * Received-SPF and Authentication-Results fields from it.
 */
#include <sys/types.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ares.h>
#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <spf2/spf_dns_rr.h>

#include "auth_spf.h"
#include "dns_sync.h"
#include "log.h"
#include "sbuf.h"
#include "xmalloc.h"

#define AUTH_SPF_RR_MAX      64   /* records kept per answer */
#define AUTH_SPF_TXT_MAX     4096 /* one TXT record, strings joined */
#define AUTH_SPF_EX_SOFTWARE 70   /* sysexits EX_SOFTWARE */

/* State of one check, reached from the DNS layer's hook. */
struct auth_spf_ctx {
	struct dns_sync *ds;
	int64_t deadline_ms;
	int queries;
	bool dns_trouble; /* a lookup failed temporarily */
};

static pthread_once_t auth_spf_once = PTHREAD_ONCE_INIT;

/* libspf2 logs to stderr by default; route it to our logger. */
static void
auth_spf_log_quiet(const char *file, int line, const char *msg)
{
	struct sbuf sb;

	sbuf_init(&sb, 512);
	(void)sbuf_append_escaped(&sb, msg, strlen(msg), NULL, true);
	log_debug("libspf2 %s:%d: %s", file, line, sb.data);
	sbuf_release(&sb);
}

__attribute__((noreturn)) static void
auth_spf_log_fatal(const char *file, int line, const char *msg)
{
	log_panic("libspf2 %s:%d: %s", file, line, msg);
}

static void
auth_spf_init_once(void)
{
	SPF_error_handler = auth_spf_log_fatal;
	SPF_warning_handler = auth_spf_log_quiet;
	SPF_info_handler = auth_spf_log_quiet;
	SPF_debug_handler = auth_spf_log_quiet;
}

const char *
auth_spf_res_str(enum auth_spf_res res)
{
	switch (res) {
	case AUTH_SPF_NONE:
		return "none";
	case AUTH_SPF_NEUTRAL:
		return "neutral";
	case AUTH_SPF_PASS:
		return "pass";
	case AUTH_SPF_FAIL:
		return "fail";
	case AUTH_SPF_SOFTFAIL:
		return "softfail";
	case AUTH_SPF_TEMPERROR:
		return "temperror";
	case AUTH_SPF_PERMERROR:
		return "permerror";
	}
	return "none";
}

static int64_t
auth_spf_now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the DNS layer ---- */

static SPF_dns_rr_t *
auth_spf_rr(SPF_dns_server_t *layer, const char *domain, ns_type type,
    SPF_dns_stat_t herrno)
{
	SPF_dns_rr_t *rr;

	rr = SPF_dns_rr_new_init(layer, domain, type, 0, herrno);
	if (rr == NULL)
		log_fatalx(AUTH_SPF_EX_SOFTWARE, "libspf2: out of memory");
	return rr;
}

/* Stores len bytes plus a NUL as answer number idx. */
static void
auth_spf_rr_str(SPF_dns_rr_t *rr, int idx, const char *s, size_t len)
{
	if (SPF_dns_rr_buf_realloc(rr, idx, len + 1) != SPF_E_SUCCESS)
		log_fatalx(AUTH_SPF_EX_SOFTWARE, "libspf2: out of memory");
	memcpy(rr->rr[idx]->txt, s, len); /* txt, mx, ptr share storage */
	rr->rr[idx]->txt[len] = '\0';
}

/* TXT: the strings of one record are joined without spaces (3.3). */
static void
auth_spf_fill_txt(SPF_dns_rr_t *rr, const unsigned char *pkt, size_t len)
{
	struct ares_txt_ext *txt = NULL, *t;
	struct sbuf rec;
	bool bad = false;
	int n = 0;

	if (ares_parse_txt_reply_ext(pkt, (int)len, &txt) != ARES_SUCCESS)
		return;
	sbuf_init(&rec, AUTH_SPF_TXT_MAX);
	for (t = txt; t != NULL && n < AUTH_SPF_RR_MAX; t = t->next) {
		if (t->record_start && t != txt) {
			if (!bad)
				auth_spf_rr_str(rr, n++, rec.data, rec.len);
			sbuf_reset(&rec);
			bad = false;
		}
		/* A NUL would cut the record short inside libspf2: skip it. */
		if (memchr(t->txt, '\0', t->length) != NULL ||
		    sbuf_append(&rec, t->txt, t->length) == -1)
			bad = true;
	}
	if (txt != NULL && !bad && n < AUTH_SPF_RR_MAX)
		auth_spf_rr_str(rr, n++, rec.data, rec.len);
	rr->num_rr = n;
	sbuf_release(&rec);
	ares_free_data(txt);
}

static void
auth_spf_fill_a(SPF_dns_rr_t *rr, const unsigned char *pkt, size_t len)
{
	struct ares_addrttl a4[AUTH_SPF_RR_MAX];
	struct ares_addr6ttl a6[AUTH_SPF_RR_MAX];
	int i, n = AUTH_SPF_RR_MAX;

	if (rr->rr_type == ns_t_a) {
		if (ares_parse_a_reply(pkt, (int)len, NULL, a4, &n) !=
		    ARES_SUCCESS)
			return;
		for (i = 0; i < n; i++) {
			if (SPF_dns_rr_buf_realloc(rr, i,
			        sizeof(struct in_addr)) != SPF_E_SUCCESS)
				log_fatalx(AUTH_SPF_EX_SOFTWARE, "spf: oom");
			rr->rr[i]->a = a4[i].ipaddr;
		}
	} else {
		if (ares_parse_aaaa_reply(pkt, (int)len, NULL, a6, &n) !=
		    ARES_SUCCESS)
			return;
		for (i = 0; i < n; i++) {
			if (SPF_dns_rr_buf_realloc(rr, i,
			        sizeof(struct in6_addr)) != SPF_E_SUCCESS)
				log_fatalx(AUTH_SPF_EX_SOFTWARE, "spf: oom");
			memcpy(&rr->rr[i]->aaaa, &a6[i].ip6addr,
			    sizeof(struct in6_addr));
		}
	}
	rr->num_rr = n;
}

static void
auth_spf_fill_mx(SPF_dns_rr_t *rr, const unsigned char *pkt, size_t len)
{
	struct ares_mx_reply *mx = NULL, *m;
	int n = 0;

	if (ares_parse_mx_reply(pkt, (int)len, &mx) != ARES_SUCCESS)
		return;
	for (m = mx; m != NULL && n < AUTH_SPF_RR_MAX; m = m->next)
		auth_spf_rr_str(rr, n++, m->host, strlen(m->host));
	rr->num_rr = n;
	ares_free_data(mx);
}

static void
auth_spf_fill_ptr(SPF_dns_rr_t *rr, const unsigned char *pkt, size_t len)
{
	/* c-ares copies addr into the hostent; any 4 bytes do */
	static const unsigned char dummy[4];
	struct hostent *he = NULL;
	int i, n = 0;

	if (ares_parse_ptr_reply(pkt, (int)len, dummy, sizeof(dummy), AF_INET,
	        &he) != ARES_SUCCESS)
		return;
	if (he->h_name != NULL)
		auth_spf_rr_str(rr, n++, he->h_name, strlen(he->h_name));
	for (i = 0; he->h_aliases != NULL && he->h_aliases[i] != NULL &&
	     n < AUTH_SPF_RR_MAX;
	     i++) {
		if (he->h_name != NULL &&
		    strcmp(he->h_aliases[i], he->h_name) == 0)
			continue;
		auth_spf_rr_str(rr, n++, he->h_aliases[i],
		    strlen(he->h_aliases[i]));
	}
	rr->num_rr = n;
	ares_free_hostent(he);
}

static SPF_dns_rr_t *
auth_spf_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int should_cache)
{
	struct auth_spf_ctx *ctx = layer->hook;
	struct dns_sync_answer ans;
	SPF_dns_rr_t *rr;

	(void)should_cache;
	/*
	 * RR type 99 is obsolete (RFC 7208 3.1, 14.1); libspf2 still asks
	 * for it first. Answering "no data" here saves a lookup and keeps
	 * a broken type-99 server from turning into a temperror.
	 */
	if (type != ns_t_txt && type != ns_t_a && type != ns_t_aaaa &&
	    type != ns_t_mx && type != ns_t_ptr)
		return auth_spf_rr(layer, domain, type, NO_DATA);
	if (auth_spf_now_ms() >= ctx->deadline_ms) {
		ctx->dns_trouble = true;
		return auth_spf_rr(layer, domain, type, TRY_AGAIN);
	}
	ctx->queries++;
	(void)dns_sync_query(ctx->ds, domain, (int)type, &ans);
	switch (ans.status) {
	case DNS_SYNC_OK:
		break;
	case DNS_SYNC_NODATA:
		dns_sync_answer_release(&ans);
		return auth_spf_rr(layer, domain, type, NO_DATA);
	case DNS_SYNC_NXDOMAIN:
	case DNS_SYNC_BADNAME:
		dns_sync_answer_release(&ans);
		return auth_spf_rr(layer, domain, type, HOST_NOT_FOUND);
	case DNS_SYNC_TEMPFAIL:
	case DNS_SYNC_TIMEOUT:
		ctx->dns_trouble = true;
		dns_sync_answer_release(&ans);
		return auth_spf_rr(layer, domain, type, TRY_AGAIN);
	}
	rr = auth_spf_rr(layer, domain, type, NETDB_SUCCESS);
	if (ans.pkt != NULL) {
		switch (type) {
		case ns_t_txt:
			auth_spf_fill_txt(rr, ans.pkt, ans.len);
			break;
		case ns_t_a:
		case ns_t_aaaa:
			auth_spf_fill_a(rr, ans.pkt, ans.len);
			break;
		case ns_t_mx:
			auth_spf_fill_mx(rr, ans.pkt, ans.len);
			break;
		default:
			auth_spf_fill_ptr(rr, ans.pkt, ans.len);
			break;
		}
	}
	dns_sync_answer_release(&ans);
	if (rr->num_rr == 0)
		rr->herrno = NO_DATA; /* e.g. only a CNAME came back */
	return rr;
}

/* ---- the check ---- */

/* A plausible domain: LDH labels plus '_', no literal, no empty label. */
static bool
auth_spf_domain_ok(const char *d)
{
	size_t len = strlen(d), i, label = 0;

	if (len == 0 || len > AUTH_SPF_DOMAIN_MAX - 1 || d[0] == '.')
		return false;
	for (i = 0; i < len; i++) {
		char c = d[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return strchr(d, '.') != NULL;
}

static void
auth_spf_lower_copy(char *dst, size_t size, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < size && src[i] != '\0'; i++)
		dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ?
		    (char)(src[i] + 32) :
		    src[i];
	dst[i] = '\0';
}

static enum auth_spf_res
auth_spf_map(SPF_response_t *resp, SPF_errcode_t err, bool dns_trouble)
{
	int i;

	switch (SPF_response_result(resp)) {
	case SPF_RESULT_PASS:
		return AUTH_SPF_PASS;
	case SPF_RESULT_FAIL:
		return AUTH_SPF_FAIL;
	case SPF_RESULT_SOFTFAIL:
		return AUTH_SPF_SOFTFAIL;
	case SPF_RESULT_NEUTRAL:
		return AUTH_SPF_NEUTRAL;
	case SPF_RESULT_TEMPERROR:
		return AUTH_SPF_TEMPERROR;
	case SPF_RESULT_PERMERROR:
		return AUTH_SPF_PERMERROR;
	case SPF_RESULT_NONE:
		if (err != SPF_E_DNS_ERROR)
			return AUTH_SPF_NONE;
		break;
	case SPF_RESULT_INVALID:
		break;
	}
	/*
	 * libspf2 leaves the result unset when the top-level record cannot
	 * be fetched (TRY_AGAIN) or compiled; its compile errors are in the
	 * response's message list, while the returned code is only
	 * SPF_E_NOT_SPF ("Failed to compile").
	 */
	if (err == SPF_E_DNS_ERROR || dns_trouble)
		return AUTH_SPF_TEMPERROR;
	for (i = 0; i < SPF_response_messages(resp); i++) {
		SPF_error_t *e = SPF_response_message(resp, i);

		if (SPF_error_errorp(e) && SPF_error_code(e) != SPF_E_NOT_SPF &&
		    SPF_error_code(e) != SPF_E_DNS_ERROR)
			return AUTH_SPF_PERMERROR;
	}
	return AUTH_SPF_NONE;
}

/* Sets the comment; a long one is cut, which is harmless. */
__attribute__((format(printf, 2, 3))) static void
auth_spf_setc(struct auth_spf_result *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(out->comment, sizeof(out->comment), fmt, ap);
	va_end(ap);
}

static void
auth_spf_comment(struct auth_spf_result *out, const char *receiver,
    const char *sender, const char *ip)
{
	const char *what;

	switch (out->result) {
	case AUTH_SPF_PASS:
		what = "designates";
		break;
	case AUTH_SPF_FAIL:
		what = "does not designate";
		break;
	case AUTH_SPF_SOFTFAIL:
		what = "does not designate (softfail)";
		break;
	case AUTH_SPF_NEUTRAL:
		what = "neither permits nor denies";
		break;
	default:
		what = NULL;
		break;
	}
	if (what != NULL)
		auth_spf_setc(out, "%s: domain of %s %s %s as permitted sender",
		    receiver, sender, what, ip);
	else if (out->result == AUTH_SPF_TEMPERROR)
		auth_spf_setc(out, "%s: temporary DNS error checking %s",
		    receiver, out->domain);
	else if (out->result == AUTH_SPF_PERMERROR)
		auth_spf_setc(out, "%s: invalid SPF record for %s", receiver,
		    out->domain);
	/* NONE comments are set by the caller */
}

/* Keeps what was checked for the header formatters. */
static void
auth_spf_keep(struct auth_spf_result *out, const char *receiver,
    const char *client_ip, const char *helo, const char *mail_from)
{
	(void)snprintf(out->receiver, sizeof(out->receiver), "%s", receiver);
	(void)snprintf(out->client_ip, sizeof(out->client_ip), "%s", client_ip);
	(void)snprintf(out->helo, sizeof(out->helo), "%s", helo);
	(void)snprintf(out->mail_from, sizeof(out->mail_from), "%s", mail_from);
}

/* Peer text reaches the comment: keep it printable and comment-safe. */
static void
auth_spf_clean(char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7f || c == '(' || c == ')' ||
		    c == '\\' || c == '"')
			*s = '?';
	}
}

static bool
auth_spf_is_loopback(const struct in_addr *a4, const struct in6_addr *a6,
    int family)
{
	if (family == AF_INET)
		return (ntohl(a4->s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(a6);
}

enum auth_spf_res
auth_spf_check(const char *servers, const char *receiver, const char *client_ip,
    const char *helo, const char *mail_from, struct auth_spf_result *out)
{
	struct auth_spf_ctx ctx;
	SPF_dns_server_t *layer = NULL;
	SPF_server_t *spf = NULL;
	SPF_request_t *req = NULL;
	SPF_response_t *resp = NULL;
	SPF_errcode_t err;
	struct in_addr a4;
	struct in6_addr a6;
	struct sbuf serr, from;
	const char *at, *domain, *safe_ip, *safe_sender;
	int family;

	(void)pthread_once(&auth_spf_once, auth_spf_init_once);
	memset(out, 0, sizeof(*out));
	memset(&ctx, 0, sizeof(ctx));
	sbuf_init(&serr, 256);
	sbuf_init(&from, 512);
	if (helo == NULL)
		helo = "";
	if (mail_from == NULL)
		mail_from = "";

	/* Which identity: MAIL FROM, or HELO for the null sender (2.4). */
	if (*mail_from != '\0') {
		out->identity = "mailfrom";
		at = strrchr(mail_from, '@');
		domain = at != NULL ? at + 1 : mail_from;
		(void)sbuf_append_str(&from, mail_from);
	} else {
		out->identity = "helo";
		domain = helo;
		(void)sbuf_printf(&from, "postmaster@%s", helo);
	}
	safe_sender = auth_spf_domain_ok(domain) ? from.data : domain;

	if (inet_pton(AF_INET, client_ip, &a4) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, client_ip, &a6) == 1) {
		family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			family = AF_INET;
			memcpy(&a4, &a6.s6_addr[12], 4);
		}
	} else {
		out->result = AUTH_SPF_TEMPERROR;
		auth_spf_setc(out, "%s: client address unusable", receiver);
		safe_ip = "";
		goto done;
	}
	safe_ip = client_ip;

	if (!auth_spf_domain_ok(domain)) {
		/* RFC 7208 4.3: a malformed domain gives "none" */
		out->result = AUTH_SPF_NONE;
		auth_spf_setc(out, "%s: no valid domain to check", receiver);
		goto done;
	}
	auth_spf_lower_copy(out->domain, sizeof(out->domain), domain);
	if (auth_spf_is_loopback(&a4, &a6, family)) {
		out->result = AUTH_SPF_NONE;
		auth_spf_setc(out, "%s: loopback client not checked", receiver);
		goto done;
	}

	ctx.ds = dns_sync_new(servers, AUTH_SPF_QUERY_MS, &serr);
	if (ctx.ds == NULL) {
		log_warnx("spf: %s", serr.data);
		out->result = AUTH_SPF_TEMPERROR;
		auth_spf_comment(out, receiver, safe_sender, safe_ip);
		goto done;
	}
	ctx.deadline_ms = auth_spf_now_ms() + AUTH_SPF_BUDGET_MS;

	/* destroy stays NULL: libspf2 then leaves freeing the layer to us */
	layer = xcalloc(1, sizeof(*layer));
	layer->lookup = auth_spf_lookup;
	layer->name = "splitmx";
	layer->hook = &ctx;
	spf = SPF_server_new_dns(layer, 0);
	if (spf == NULL)
		log_fatalx(AUTH_SPF_EX_SOFTWARE, "libspf2: out of memory");
	if (SPF_server_set_rec_dom(spf, receiver) != SPF_E_SUCCESS)
		log_fatalx(AUTH_SPF_EX_SOFTWARE, "libspf2: out of memory");
	req = SPF_request_new(spf);
	if (req == NULL)
		log_fatalx(AUTH_SPF_EX_SOFTWARE, "libspf2: out of memory");
	if (family == AF_INET)
		err = SPF_request_set_ipv4(req, a4);
	else
		err = SPF_request_set_ipv6(req, a6);
	if (err == SPF_E_SUCCESS && *helo != '\0')
		err = SPF_request_set_helo_dom(req, helo);
	if (err == SPF_E_SUCCESS &&
	    SPF_request_set_env_from(req, from.data) != 0)
		err = SPF_E_INVALID_CHAR;
	if (err != SPF_E_SUCCESS) {
		out->result = AUTH_SPF_NONE;
		auth_spf_setc(out, "%s: sender not usable for SPF", receiver);
		goto done;
	}
	err = SPF_request_query_mailfrom(req, &resp);
	if (resp == NULL)
		log_fatalx(AUTH_SPF_EX_SOFTWARE, "libspf2: out of memory");
	out->result = auth_spf_map(resp, err, ctx.dns_trouble);
	if (out->result == AUTH_SPF_NONE)
		auth_spf_setc(out, "%s: no SPF record for %s", receiver,
		    out->domain);
	else
		auth_spf_comment(out, receiver, safe_sender, safe_ip);
done:
	auth_spf_clean(out->comment);
	out->dns_queries = ctx.queries;
	auth_spf_keep(out, receiver, safe_ip, helo, mail_from);
	if (resp != NULL)
		SPF_response_free(resp);
	if (req != NULL)
		SPF_request_free(req);
	if (spf != NULL)
		SPF_server_free(spf);
	free(layer);
	dns_sync_free(ctx.ds);
	sbuf_release(&from);
	sbuf_release(&serr);
	return out->result;
}
