/*
 * auth_dkim.c - DKIM verification with libopendkim, DNS via dns_sync.
 *
 * Each worker thread keeps one DKIM_LIB (and one dns_sync for the
 * configured resolvers, DESIGN rule 9) for all the messages it verifies,
 * made on its first message and closed when the thread ends (a pthread key
 * destructor); a message only gets a DKIM handle from it. The library's
 * query-service hooks point at the thread's state: the start hook runs the
 * whole query synchronously and the waitreply hook only hands the stored
 * answer back, which is fine because we run on a worker thread. The hooks
 * report SERVFAIL and timeouts as DKIM_DNS_ERROR / DKIM_DNS_EXPIRED:
 * libopendkim reads an answer packet's rcode only for NXDOMAIN and would
 * call a SERVFAIL packet "no key" (a permanent error). The message is
 * read, never modified.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <opendkim/dkim.h>

#include "auth_dkim.h"
#include "dns_sync.h"
#include "log.h"
#include "sbuf.h"
#include "xmalloc.h"

#define AUTH_DKIM_EX_SOFTWARE 70 /* sysexits EX_SOFTWARE */

/*
 * One library handle and resolver per thread (or per message, for the
 * rare message that begins while another one of the same thread holds the
 * thread's handle with other resolvers).
 */
struct auth_dkim_lib {
	DKIM_LIB *lib;
	struct dns_sync *ds;
	char *servers;
	unsigned users;        /* messages using it now */
	struct auth_dkim *cur; /* the message whose call is running */
};

struct auth_dkim {
	struct auth_dkim_lib *al;
	bool own_lib; /* al is this message's alone */
	DKIM *dkim;
	int queries;
	DKIM_STAT feed_status; /* first non-OK status from feeding */
	bool nosig;            /* header complete, no signatures */
};

/* One query: answered at start, collected at waitreply. */
struct auth_dkim_q {
	int status; /* DKIM_DNS_* */
	size_t len;
};

const char *
auth_dkim_res_str(enum auth_dkim_res res)
{
	switch (res) {
	case AUTH_DKIM_NONE:
		return "none";
	case AUTH_DKIM_PASS:
		return "pass";
	case AUTH_DKIM_FAIL:
		return "fail";
	case AUTH_DKIM_NEUTRAL:
		return "neutral";
	case AUTH_DKIM_POLICY:
		return "policy";
	case AUTH_DKIM_TEMPERROR:
		return "temperror";
	case AUTH_DKIM_PERMERROR:
		return "permerror";
	}
	return "none";
}

/* ---- libopendkim DNS hooks ---- */

static int
auth_dkim_dns_start(void *srv, int type, unsigned char *query,
    unsigned char *buf, size_t buflen, void **qh)
{
	struct auth_dkim_lib *al = srv;
	struct dns_sync_answer ans;
	struct auth_dkim_q *q;

	q = xcalloc(1, sizeof(*q));
	if (al->cur != NULL)
		al->cur->queries++;
	(void)dns_sync_query(al->ds, (const char *)query, type, &ans);
	switch (ans.status) {
	case DNS_SYNC_OK:
	case DNS_SYNC_NODATA:
	case DNS_SYNC_NXDOMAIN:
		/* libopendkim parses the packet itself */
		if (ans.pkt != NULL && ans.len <= buflen) {
			memcpy(buf, ans.pkt, ans.len);
			q->len = ans.len;
			q->status = DKIM_DNS_SUCCESS;
		} else {
			q->status = DKIM_DNS_ERROR;
		}
		break;
	case DNS_SYNC_TIMEOUT:
		q->status = DKIM_DNS_EXPIRED;
		break;
	case DNS_SYNC_TEMPFAIL:
	case DNS_SYNC_BADNAME:
		q->status = DKIM_DNS_ERROR;
		break;
	}
	dns_sync_answer_release(&ans);
	*qh = q;
	return DKIM_DNS_SUCCESS;
}

static int
auth_dkim_dns_waitreply(void *srv, void *qh, struct timeval *to, size_t *bytes,
    int *error, int *dnssec)
{
	struct auth_dkim_q *q = qh;

	(void)srv;
	(void)to; /* already answered, within dns_sync's deadline */
	if (bytes != NULL)
		*bytes = q->len;
	if (error != NULL)
		*error = 0;
	if (dnssec != NULL)
		*dnssec = DKIM_DNSSEC_UNKNOWN;
	return q->status;
}

static int
auth_dkim_dns_cancel(void *srv, void *qh)
{
	(void)srv;
	free(qh);
	return DKIM_DNS_SUCCESS;
}

/* The service handle is ours; libopendkim must not init or close it. */
static int
auth_dkim_dns_init(void **srv)
{
	(void)srv;
	return 0;
}

static void
auth_dkim_dns_close(void *srv)
{
	(void)srv;
}

/* ---- verification ---- */

static void
auth_dkim_lib_free(struct auth_dkim_lib *al)
{
	if (al == NULL)
		return;
	if (al->lib != NULL)
		dkim_close(al->lib);
	dns_sync_free(al->ds);
	free(al->servers);
	free(al);
}

static struct auth_dkim_lib *
auth_dkim_lib_new(const char *servers, struct sbuf *err)
{
	struct auth_dkim_lib *al = xcalloc(1, sizeof(*al));
	unsigned int to = AUTH_DKIM_QUERY_MS / 1000;

	al->servers = xstrdup(servers != NULL ? servers : "");
	al->ds = dns_sync_new(servers, AUTH_DKIM_QUERY_MS, err);
	if (al->ds == NULL) {
		auth_dkim_lib_free(al);
		return NULL;
	}
	al->lib = dkim_init(NULL, NULL);
	if (al->lib == NULL) {
		(void)sbuf_append_str(err, "dkim_init failed");
		auth_dkim_lib_free(al);
		return NULL;
	}
	(void)dkim_options(al->lib, DKIM_OP_SETOPT, DKIM_OPTS_TIMEOUT, &to,
	    sizeof(to));
	(void)dkim_dns_set_query_service(al->lib, al);
	dkim_dns_set_init(al->lib, auth_dkim_dns_init);
	dkim_dns_set_close(al->lib, auth_dkim_dns_close);
	dkim_dns_set_query_start(al->lib, auth_dkim_dns_start);
	dkim_dns_set_query_waitreply(al->lib, auth_dkim_dns_waitreply);
	dkim_dns_set_query_cancel(al->lib, auth_dkim_dns_cancel);
	return al;
}

static pthread_key_t auth_dkim_key;
static pthread_once_t auth_dkim_once = PTHREAD_ONCE_INIT;

static void
auth_dkim_key_free(void *arg)
{
	auth_dkim_lib_free(arg);
}

static void
auth_dkim_key_init(void)
{
	if (pthread_key_create(&auth_dkim_key, auth_dkim_key_free) != 0)
		log_panic("auth_dkim: pthread_key_create failed");
}

/* The calling thread's handle for servers, made or remade as needed. */
static struct auth_dkim_lib *
auth_dkim_thread_lib(const char *servers, bool *own_out, struct sbuf *err)
{
	struct auth_dkim_lib *al;

	(void)pthread_once(&auth_dkim_once, auth_dkim_key_init);
	al = pthread_getspecific(auth_dkim_key);
	*own_out = false;
	if (al != NULL &&
	    strcmp(al->servers, servers != NULL ? servers : "") == 0)
		return al;
	if (al != NULL && al->users > 0) {
		*own_out = true; /* in use with other resolvers */
		return auth_dkim_lib_new(servers, err);
	}
	auth_dkim_lib_free(al);
	(void)pthread_setspecific(auth_dkim_key, NULL);
	if ((al = auth_dkim_lib_new(servers, err)) == NULL)
		return NULL;
	if (pthread_setspecific(auth_dkim_key, al) != 0) {
		*own_out = true;
		return al;
	}
	return al;
}

void
auth_dkim_thread_done(void)
{
	(void)pthread_once(&auth_dkim_once, auth_dkim_key_init);
	auth_dkim_lib_free(pthread_getspecific(auth_dkim_key));
	(void)pthread_setspecific(auth_dkim_key, NULL);
}

struct auth_dkim *
auth_dkim_begin(const char *servers, struct sbuf *err)
{
	struct auth_dkim *ad;
	DKIM_STAT st;

	ad = xcalloc(1, sizeof(*ad));
	ad->feed_status = DKIM_STAT_OK;
	ad->al = auth_dkim_thread_lib(servers, &ad->own_lib, err);
	if (ad->al == NULL) {
		free(ad);
		return NULL;
	}
	ad->al->users++;
	ad->al->cur = ad;
	ad->dkim = dkim_verify(ad->al->lib, (const unsigned char *)"splitmx",
	    NULL, &st);
	if (ad->dkim == NULL) {
		(void)sbuf_printf(err, "dkim_verify: %s",
		    dkim_getresultstr(st));
		auth_dkim_free(ad);
		return NULL;
	}
	return ad;
}

int
auth_dkim_feed(struct auth_dkim *ad, const void *data, size_t len)
{
	DKIM_STAT st;

	if (ad->nosig || ad->feed_status != DKIM_STAT_OK || len == 0)
		return ad->feed_status == DKIM_STAT_OK ? 0 : -1;
	ad->al->cur = ad; /* key lookups may start at the end of the header */
	/* dkim_chunk takes u_char *; it does not write to the buffer */
	st = dkim_chunk(ad->dkim, (u_char *)(uintptr_t)data, len);
	if (st == DKIM_STAT_NOSIG) {
		ad->nosig = true; /* nothing left to verify */
		return 0;
	}
	if (st != DKIM_STAT_OK) {
		ad->feed_status = st;
		return -1;
	}
	return 0;
}

static void
auth_dkim_copy(char *dst, size_t size, const unsigned char *src)
{
	size_t n;

	if (src == NULL) {
		dst[0] = '\0';
		return;
	}
	n = strnlen((const char *)src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* RFC 8601 2.7.1 result for one processed signature. */
static enum auth_dkim_res
auth_dkim_classify(DKIM_SIGINFO *sig)
{
	unsigned int flags = dkim_sig_getflags(sig);

	if ((flags & DKIM_SIGFLAG_PASSED) != 0 &&
	    dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH)
		return AUTH_DKIM_PASS;
	if ((flags & DKIM_SIGFLAG_PASSED) != 0 &&
	    dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH)
		return AUTH_DKIM_FAIL;
	switch (dkim_sig_geterror(sig)) {
	case DKIM_SIGERROR_BADSIG:
		return AUTH_DKIM_FAIL;
	case DKIM_SIGERROR_KEYFAIL:
		return AUTH_DKIM_TEMPERROR;
	case DKIM_SIGERROR_NOKEY:
	case DKIM_SIGERROR_DNSSYNTAX:
	case DKIM_SIGERROR_MULTIREPLY:
	case DKIM_SIGERROR_KEYVERSION:
	case DKIM_SIGERROR_KEYUNKNOWNHASH:
	case DKIM_SIGERROR_KEYHASHMISMATCH:
	case DKIM_SIGERROR_NOTEMAILKEY:
	case DKIM_SIGERROR_KEYTYPEMISSING:
	case DKIM_SIGERROR_KEYTYPEUNKNOWN:
	case DKIM_SIGERROR_KEYREVOKED:
	case DKIM_SIGERROR_KEYDECODE:
		return AUTH_DKIM_PERMERROR;
	case DKIM_SIGERROR_EXPIRED:
	case DKIM_SIGERROR_FUTURE:
	case DKIM_SIGERROR_KEYTOOSMALL:
	case DKIM_SIGERROR_SUBDOMAIN:
	case DKIM_SIGERROR_MBSFAILED:
		return AUTH_DKIM_POLICY;
	case DKIM_SIGERROR_OK:
		/* processed, no error recorded, yet not passed */
		if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH)
			return AUTH_DKIM_FAIL;
		return AUTH_DKIM_NEUTRAL;
	default:
		return AUTH_DKIM_NEUTRAL;
	}
}

static void
auth_dkim_fill_sig(struct auth_dkim *ad, DKIM_SIGINFO *sig,
    struct auth_dkim_sig *out)
{
	char sub[64];
	size_t sublen = sizeof(sub);
	const unsigned char *b;
	size_t i, n;
	int e;

	memset(out, 0, sizeof(*out));
	auth_dkim_copy(out->domain, sizeof(out->domain),
	    dkim_sig_getdomain(sig));
	auth_dkim_copy(out->selector, sizeof(out->selector),
	    dkim_sig_getselector(sig));
	out->testkey = (dkim_sig_getflags(sig) & DKIM_SIGFLAG_TESTKEY) != 0;
	if ((dkim_sig_getflags(sig) & DKIM_SIGFLAG_PROCESSED) == 0) {
		out->result = AUTH_DKIM_NEUTRAL;
		(void)snprintf(out->comment, sizeof(out->comment),
		    "signature not processed");
	} else {
		out->result = auth_dkim_classify(sig);
	}
	if (out->result != AUTH_DKIM_PASS && out->comment[0] == '\0') {
		e = dkim_sig_geterror(sig);
		/* a changed body is reported as BADSIG too; say which */
		if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH)
			(void)snprintf(out->comment, sizeof(out->comment),
			    "body hash did not verify");
		else if (dkim_sig_geterrorstr(e) != NULL)
			(void)snprintf(out->comment, sizeof(out->comment), "%s",
			    dkim_sig_geterrorstr(e));
	}
	/*
	 * header.b (RFC 6008): the minimal unique prefix libopendkim picks,
	 * else the first octets of the b= tag with FWS removed.
	 */
	if (dkim_get_sigsubstring(ad->dkim, sig, sub, &sublen) ==
	        DKIM_STAT_OK &&
	    sublen > 0 && sublen < sizeof(sub)) {
		sub[sublen] = '\0';
		auth_dkim_copy(out->b, sizeof(out->b),
		    (const unsigned char *)sub);
	} else if ((b = dkim_sig_gettagvalue(sig, false,
	                (u_char *)(uintptr_t) "b")) != NULL) {
		for (i = 0, n = 0; b[i] != '\0' && n + 1 < sizeof(out->b);
		     i++) {
			if (b[i] > 0x20 && b[i] < 0x7f)
				out->b[n++] = (char)b[i];
		}
		out->b[n] = '\0';
	}
}

size_t
auth_dkim_end(struct auth_dkim *ad, struct auth_dkim_result *out)
{
	DKIM_SIGINFO **sigs = NULL;
	DKIM_STAT st;
	_Bool testkey = false;
	int nsigs = 0, i;

	memset(out, 0, sizeof(*out));
	ad->al->cur = ad;
	if (!ad->nosig && ad->feed_status == DKIM_STAT_OK) {
		/*
		 * dkim_chunk(NULL, 0) flushes its partial line and body;
		 * without it dkim_eom verifies nothing and every signature
		 * stays unprocessed, with no error recorded.
		 */
		st = dkim_chunk(ad->dkim, NULL, 0);
		if (st == DKIM_STAT_NOSIG)
			ad->nosig = true;
		else if (st != DKIM_STAT_OK)
			ad->feed_status = st;
	}
	if (!ad->nosig && ad->feed_status == DKIM_STAT_OK) {
		st = dkim_eom(ad->dkim, &testkey);
		if (st == DKIM_STAT_NOSIG)
			ad->nosig = true;
		else if (st != DKIM_STAT_OK && st != DKIM_STAT_BADSIG &&
		    st != DKIM_STAT_NOKEY && st != DKIM_STAT_CANTVRFY &&
		    st != DKIM_STAT_KEYFAIL && st != DKIM_STAT_REVOKED) {
			out->msg_result = AUTH_DKIM_PERMERROR;
			(void)snprintf(out->error, sizeof(out->error),
			    "dkim_eom: %s", dkim_getresultstr(st));
		}
	} else if (ad->feed_status != DKIM_STAT_OK) {
		out->msg_result = AUTH_DKIM_PERMERROR;
		(void)snprintf(out->error, sizeof(out->error), "dkim_chunk: %s",
		    dkim_getresultstr(ad->feed_status));
	}
	out->dns_queries = ad->queries;
	if (ad->nosig)
		return 0;
	if (dkim_getsiglist(ad->dkim, &sigs, &nsigs) != DKIM_STAT_OK ||
	    nsigs <= 0)
		return 0;
	out->nfound = (size_t)nsigs;
	for (i = 0; i < nsigs && out->nsigs < AUTH_DKIM_SIGS_MAX; i++) {
		if ((dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE) != 0)
			continue;
		auth_dkim_fill_sig(ad, sigs[i], &out->sigs[out->nsigs++]);
	}
	return out->nsigs;
}

void
auth_dkim_free(struct auth_dkim *ad)
{
	if (ad == NULL)
		return;
	if (ad->dkim != NULL)
		(void)dkim_free(ad->dkim);
	if (ad->al != NULL) {
		ad->al->users--;
		if (ad->al->cur == ad)
			ad->al->cur = NULL;
		if (ad->own_lib)
			auth_dkim_lib_free(ad->al);
	}
	free(ad);
}

size_t
auth_dkim_verify(const char *servers, const void *content, size_t len,
    struct auth_dkim_result *out)
{
	struct auth_dkim *ad;
	struct sbuf err;
	size_t n;

	sbuf_init(&err, 256);
	ad = auth_dkim_begin(servers, &err);
	if (ad == NULL) {
		memset(out, 0, sizeof(*out));
		out->msg_result = AUTH_DKIM_TEMPERROR;
		(void)snprintf(out->error, sizeof(out->error), "%s", err.data);
		sbuf_release(&err);
		return 0;
	}
	sbuf_release(&err);
	(void)auth_dkim_feed(ad, content, len); /* end reports failures */
	n = auth_dkim_end(ad, out);
	auth_dkim_free(ad);
	return n;
}
