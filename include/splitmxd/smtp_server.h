/*
 * smtp_server.h - inbound SMTP sessions on the event loop.
 *
 * Owns the listeners and every session: the command state machine,
 * STARTTLS, limits and timeouts, and streaming DATA/BDAT into the spool.
 * Nothing here blocks: spool commits complete through callbacks.
 */
#ifndef SPLITMX_SMTP_SERVER_H
#define SPLITMX_SMTP_SERVER_H

#include "sbuf.h"

struct event_base;
struct conf;
struct spool;
struct smtp_server;
struct verify;
struct dns;
struct workers;
struct auth_srs;

/*
 * Binds every listener and loads its TLS context (startup, as root).
 * Accepting starts with smtp_server_start. NULL with err set.
 */
struct smtp_server *smtp_server_new(struct event_base *base,
    const struct conf *conf, struct sbuf *err);

/*
 * Starts accepting connections; messages go to sp, and accepted(arg, id)
 * runs on the loop for every message once it is durable (may be NULL).
 */
void smtp_server_start(struct smtp_server *srv, struct spool *sp,
    void (*accepted)(void *, const char *), void *arg);

/*
 * At most n sessions hold a spool file at once (receiving a message or
 * waiting for its commit); DATA or BDAT beyond that gets 452 4.3.1. For
 * when the descriptors left after `connections` sockets do not give every
 * session a file too (size_fd_limits in splitmxd.c). 0, the default: no
 * limit.
 */
void smtp_server_set_file_max(struct smtp_server *srv, unsigned n);

/* Recipient probes for domains with verify_recipients (may stay unset). */
void smtp_server_set_verify(struct smtp_server *srv, struct verify *v);

/* Client name lookups (PTR, forward-confirmed) when reverse_lookup is on. */
void smtp_server_set_dns(struct smtp_server *srv, struct dns *dns);

/* SRS: bounces to srs_domain addresses are verified and reversed. */
void smtp_server_set_srs(struct smtp_server *srv, const struct auth_srs *srs);

/* Worker threads for the SPF and DKIM checks (auth_checks). */
void smtp_server_set_workers(struct smtp_server *srv, struct workers *w);

/*
 * Graceful stop: closes the listeners at once, says 421 to idle sessions,
 * lets DATA in progress finish for up to the configured grace, then
 * closes the rest. done(arg) runs on the loop once no session is left.
 */
void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *),
    void *arg);

/* Frees everything; sessions still open are dropped. NULL is ignored. */
void smtp_server_free(struct smtp_server *srv);

#endif
