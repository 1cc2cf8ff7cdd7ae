/*
 * dns_sync.h - blocking DNS queries for worker threads (c-ares 1.18).
 *
 * libspf2 and libopendkim want an answer returned from a function call, so
 * their lookups cannot ride on the loop's channel (dns_). A dns_sync owns a
 * private c-ares channel pointed at the configured resolvers (DESIGN rule
 * 9) and drives it with poll() until the answer arrives or a hard deadline
 * passes. Never call it from the event loop thread.
 */
#ifndef SPLITMX_DNS_SYNC_H
#define SPLITMX_DNS_SYNC_H

#include <stddef.h>

#include "sbuf.h"

struct dns_sync;

#define DNS_SYNC_TIMEOUT_MS 3000  /* default hard limit per query */
#define DNS_SYNC_PACKET_MAX 65535 /* a DNS message over TCP */

enum dns_sync_status {
	DNS_SYNC_OK = 0,   /* NOERROR with at least one answer RR */
	DNS_SYNC_NODATA,   /* NOERROR, no answer of the type asked */
	DNS_SYNC_NXDOMAIN, /* the name does not exist */
	DNS_SYNC_TEMPFAIL, /* SERVFAIL, REFUSED, network error */
	DNS_SYNC_TIMEOUT,  /* no answer within the deadline */
	DNS_SYNC_BADNAME,  /* the name cannot be queried (too long...) */
};

/*
 * One answer. pkt holds the raw DNS message (header, question, answer...)
 * when the server sent one (OK, NODATA, NXDOMAIN; may also be set for
 * TEMPFAIL), else NULL. Owned by the caller: dns_sync_answer_release().
 */
struct dns_sync_answer {
	enum dns_sync_status status;
	int rcode; /* from the header, -1 without pkt */
	unsigned char *pkt;
	size_t len;
};

/*
 * servers: "ip[:port],ip[:port]" (c-ares csv syntax, IPv6 as [addr]:port),
 * or NULL/"" for /etc/resolv.conf (tests and daemon always pass the config
 * value). timeout_ms: hard limit per query, 0 for DNS_SYNC_TIMEOUT_MS.
 * Returns NULL and fills err on failure. The object is not thread-safe:
 * use one per thread or per check; it is cheap to create.
 */
struct dns_sync *dns_sync_new(const char *servers, unsigned timeout_ms,
    struct sbuf *err);
/* Closes the channel; NULL is a no-op. */
void dns_sync_free(struct dns_sync *ds);

/*
 * Sends one query (class IN, no search list, no /etc/hosts) and waits.
 * Always fills out (status, and pkt when available) and returns 0; a
 * return of -1 means a local failure (channel unusable) with out->status
 * DNS_SYNC_TEMPFAIL. Blocks for at most the object's timeout.
 */
int dns_sync_query(struct dns_sync *ds, const char *name, int type,
    struct dns_sync_answer *out);
/* Frees out->pkt and resets the struct. */
void dns_sync_answer_release(struct dns_sync_answer *ans);

/* Short lower-case name of a status ("ok", "nxdomain", "timeout"...). */
const char *dns_sync_status_str(enum dns_sync_status st);

#endif
