/*
 * auth_dkim.h - inbound DKIM verification (RFC 6376) with libopendkim.
 *
 * Key lookups happen inside libopendkim's dkim_eom() (or dkim_chunk() at
 * the end of the header), answered synchronously through dns_sync by
 * the library's query hooks, so every call here may block: workers_ only.
 * All DNS goes to the configured resolvers (DESIGN rule 9). The message
 * bytes are only read, never changed (DESIGN rule 6).
 */
#ifndef SPLITMX_AUTH_DKIM_H
#define SPLITMX_AUTH_DKIM_H

#include <stdbool.h>
#include <stddef.h>

#include "sbuf.h"

struct auth_dkim;

#define AUTH_DKIM_SIGS_MAX 8    /* signatures reported per message */
#define AUTH_DKIM_QUERY_MS 3000 /* one key lookup */

enum auth_dkim_res {
	AUTH_DKIM_NONE = 0, /* not signed */
	AUTH_DKIM_PASS,
	AUTH_DKIM_FAIL,      /* bad signature or body hash */
	AUTH_DKIM_NEUTRAL,   /* signature syntax errors, not processed */
	AUTH_DKIM_POLICY,    /* expired, key too small, "must be signed" */
	AUTH_DKIM_TEMPERROR, /* key lookup failed: SERVFAIL, timeout */
	AUTH_DKIM_PERMERROR, /* no key, bad key record */
};

/* One DKIM-Signature field. Strings are NUL-terminated, possibly cut. */
struct auth_dkim_sig {
	enum auth_dkim_res result;
	char domain[256];  /* d= */
	char selector[64]; /* s= */
	char b[16];        /* b= prefix (RFC 6008) */
	char comment[96];  /* why not pass; "" on pass */
	bool testkey;      /* key has t=y */
};

/*
 * nsigs: signatures in sigs (at most AUTH_DKIM_SIGS_MAX); nfound: all
 * signatures libopendkim saw. nsigs == 0 means dkim=none.
 */
struct auth_dkim_result {
	size_t nsigs;
	size_t nfound;
	struct auth_dkim_sig sigs[AUTH_DKIM_SIGS_MAX];
	int dns_queries;
	/*
	 * Used when nsigs == 0: NONE (unsigned), TEMPERROR (verifier could
	 * not start) or PERMERROR (libopendkim refused the message), the
	 * latter two with error set.
	 */
	enum auth_dkim_res msg_result;
	char error[128];
};

/*
 * Starts verifying one message. servers: the configured resolvers.
 * NULL with err set when the library or the resolver cannot start.
 */
struct auth_dkim *auth_dkim_begin(const char *servers, struct sbuf *err);
/*
 * Feeds the next bytes of the message exactly as spooled (CRLF line ends,
 * header then body); chunk boundaries are arbitrary. Returns 0, or -1
 * when libopendkim refuses the data (the failure is reported by end).
 */
int auth_dkim_feed(struct auth_dkim *ad, const void *data, size_t len);
/* Finishes, looks up keys, fills out. Returns out->nsigs. */
size_t auth_dkim_end(struct auth_dkim *ad, struct auth_dkim_result *out);
/* Releases everything; NULL is a no-op. */
void auth_dkim_free(struct auth_dkim *ad);

/*
 * Each thread keeps one library handle and resolver for the messages it
 * verifies; they are released when the thread exits, or by this call
 * (for a thread that does not exit before the process does, such as a
 * test's main thread). No message of the thread may be in progress.
 */
void auth_dkim_thread_done(void);

/* begin + feed + end + free for a message held in memory. */
size_t auth_dkim_verify(const char *servers, const void *content, size_t len,
    struct auth_dkim_result *out);

/* "pass", "fail", ... as used in Authentication-Results. */
const char *auth_dkim_res_str(enum auth_dkim_res res);

#endif
