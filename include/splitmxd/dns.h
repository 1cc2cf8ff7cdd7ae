/*
 * dns.h - asynchronous DNS on the event loop (c-ares 1.18).
 *
 * One channel, driven by libevent: a socket-state callback adds and
 * removes events, readiness calls ares_process_fd, one timer follows
 * ares_timeout. Queries go to the configured resolvers (DESIGN rule 9).
 * Callbacks run on the loop thread, exactly once per request, also when
 * the channel is destroyed (status DNS_CANCELLED).
 */
#ifndef SPLITMX_DNS_H
#define SPLITMX_DNS_H

#include <sys/socket.h>

#include <stddef.h>

#include "sbuf.h"

struct event_base;
struct dns;

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,  /* the name does not exist (permanent) */
	DNS_NODATA,    /* no usable records (permanent) */
	DNS_NULLMX,    /* RFC 7505: the domain accepts no mail */
	DNS_TEMPFAIL,  /* SERVFAIL, timeout, refused: try later */
	DNS_CANCELLED, /* the channel went away */
};

/* One address to try, in order. */
struct dns_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char host[256];      /* the MX or host name it came from */
	char text[64];       /* printable address */
	unsigned preference; /* MX preference, 0 for hosts */
};

/* addrs is owned by dns and valid only during the callback. */
typedef void (*dns_addrs_cb)(void *arg, enum dns_status status,
    const char *reason, const struct dns_addr *addrs, size_t naddrs);

/*
 * servers: "ip[:port],ip[:port]" or NULL for /etc/resolv.conf. NULL with
 * err set on failure.
 */
struct dns *dns_new(struct event_base *base, const char *servers,
    struct sbuf *err);
/* Cancels outstanding queries (their callbacks run) and frees. */
void dns_free(struct dns *dns);

/*
 * The addresses mail for domain goes to (RFC 5321 5.1): MX hosts in
 * preference order (equal preferences shuffled), each with its A and AAAA
 * addresses; no MX records at all means the domain's own A/AAAA (implicit
 * MX). A single "." MX with preference 0 is a null MX.
 */
void dns_lookup_mx(struct dns *dns, const char *domain, const char *port,
    dns_addrs_cb cb, void *arg);

/* A and AAAA of host (an IP literal is returned as is). */
void dns_lookup_host(struct dns *dns, const char *host, const char *port,
    dns_addrs_cb cb, void *arg);

/* name is valid only during the callback; NULL unless status is DNS_OK. */
typedef void (
    *dns_name_cb)(void *arg, enum dns_status status, const char *name);

/*
 * The PTR name of an address (the client's reverse name). cb runs once;
 * unlike the other lookups it may run before dns_lookup_ptr returns, when
 * c-ares answers at once (e.g. a malformed address).
 */
void dns_lookup_ptr(struct dns *dns, const struct sockaddr *sa, dns_name_cb cb,
    void *arg);

#endif
