/*
 * smtp_client_conn.c - opening an outbound SMTP/LMTP connection.
 *
 * Resolves the target through dns_ (host, MX, or an LMTP socket path),
 * connects to each address in turn (from source_address if set), reads
 * the banner, sends EHLO (HELO fallback; LHLO for LMTP) and applies the
 * target's STARTTLS policy, then hands the ready client to the open
 * callback. Owns the list of clients still opening. Never calls back from
 * inside smtp_client_open; TLS contexts and sessions come from tlsctx_.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "sbuf.h"
#include "smtp_client.h"
#include "smtp_client_int.h"
#include "tlsctx.h"
#include "xmalloc.h"

#define SC_ADDRS_MAX 32 /* addresses tried per connection */

/* Clients whose open callback has not run (smtp_client_open_cancel). */
static LIST_HEAD(, smtp_client) sc_opening = LIST_HEAD_INITIALIZER(sc_opening);

/* ---- opening ---- */

void
sc_unopening(struct smtp_client *c)
{
	if (c->opening) {
		LIST_REMOVE(c, opening_entry);
		c->opening = false;
	}
}

static void
sc_set_peer(struct smtp_client *c)
{
	const struct dns_addr *a = &c->addrs[c->cur];

	if (a->sa.ss_family == AF_UNIX)
		(void)snprintf(c->peer, sizeof(c->peer), "%s", a->host);
	else if (a->sa.ss_family == AF_INET6)
		(void)snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", a->host,
		    a->text,
		    (unsigned)ntohs(
		        ((const struct sockaddr_in6 *)(const void *)&a->sa)
		            ->sin6_port));
	else
		(void)snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", a->host,
		    a->text,
		    (unsigned)ntohs(
		        ((const struct sockaddr_in *)(const void *)&a->sa)
		            ->sin_port));
}

static void
sc_open_done(struct smtp_client *c)
{
	smtp_client_open_cb cb = c->open_cb;

	sc_disarm(c);
	c->state = SC_IDLE;
	c->open_cb = NULL;
	sc_unopening(c);
	log_debug("smtp_client: connected to %s%s", c->peer,
	    c->tls_active ? " (TLS)" : "");
	cb(c->open_arg, c, 0, false, NULL);
}

/*
 * All addresses failed: report and free (at the end of this entry). Only
 * a DNS verdict, or 5xx from every address tried, is not worth a retry.
 */
void
sc_open_fail(struct smtp_client *c)
{
	smtp_client_open_cb cb = c->open_cb;
	bool temp = !c->perm_dns && (c->any_temp || !c->last_perm);

	sc_disarm(c);
	sc_drop(c, false);
	c->state = SC_DEAD;
	c->open_cb = NULL;
	c->freeing = true;
	sc_unopening(c);
	if (cb != NULL) /* NULL: abandoned meanwhile */
		cb(c->open_arg, NULL, -1, temp, c->last_err);
}

void
sc_fail_addr(struct smtp_client *c, bool perm, bool quit, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(c->last_err, sizeof(c->last_err), fmt, ap);
	va_end(ap);
	c->last_perm = perm;
	if (!perm)
		c->any_temp = true;
	log_debug("smtp_client: %s", c->last_err);
	sc_disarm(c);
	sc_drop(c, quit);
	c->cur++;
	c->notls = false;
	c->tls_retried = false;
	sc_connect(c);
}

static void
sc_ext_reset(struct smtp_client *c)
{
	c->ext_pipelining = c->ext_size = c->ext_8bitmime = false;
	c->ext_smtputf8 = c->ext_dsn = c->ext_starttls = false;
	c->ext_chunking = false;
	c->size_max = 0;
}

static void
sc_send_ehlo(struct smtp_client *c)
{
	sc_ext_reset(c);
	sc_printf(c, "%s %s\r\n", c->lmtp ? "LHLO" : "EHLO", c->helo);
	c->state = SC_EHLO;
	sc_arm(c, sc_secs(c->target->timeout_command, 300),
	    c->lmtp ? "LHLO" : "EHLO");
}

void
sc_ehlo_line(struct smtp_client *c, const char *kw, size_t len)
{
	size_t n = 0;

	while (n < len && kw[n] != ' ')
		n++;
#define SC_KW(s) (n == sizeof(s) - 1 && strncasecmp(kw, s, n) == 0)
	if (SC_KW("PIPELINING")) {
		c->ext_pipelining = true;
	} else if (SC_KW("SIZE")) {
		c->ext_size = true;
		c->size_max = 0;
		if (n < len) {
			char num[24];
			size_t m = len - n - 1;
			char *end;
			unsigned long long v;

			if (m > 0 && m < sizeof(num)) {
				memcpy(num, kw + n + 1, m);
				num[m] = '\0';
				errno = 0;
				v = strtoull(num, &end, 10);
				if (errno == 0 && *end == '\0' &&
				    num[0] >= '0' && num[0] <= '9')
					c->size_max = v;
			}
		}
	} else if (SC_KW("8BITMIME")) {
		c->ext_8bitmime = true;
	} else if (SC_KW("SMTPUTF8")) {
		c->ext_smtputf8 = true;
	} else if (SC_KW("DSN")) {
		c->ext_dsn = true;
	} else if (SC_KW("STARTTLS")) {
		c->ext_starttls = true;
	} else if (SC_KW("CHUNKING")) {
		c->ext_chunking = true;
	}
#undef SC_KW
}

/* Greeted: STARTTLS if the policy wants it, else ready. */
static void
sc_after_ehlo(struct smtp_client *c)
{
	enum conf_tls_policy pol = c->target->tls;

	if (c->tls_active || pol == CONF_TLS_NONE || c->notls) {
		sc_open_done(c);
		return;
	}
	if (!c->ext_starttls) {
		if (pol == CONF_TLS_MAY) {
			sc_open_done(c);
			return;
		}
		sc_fail_addr(c, false, true,
		    "TLS required but not offered by %s", c->peer);
		return;
	}
	sc_printf(c, "STARTTLS\r\n");
	c->state = SC_STARTTLS;
	sc_arm(c, sc_secs(c->target->timeout_command, 300), "STARTTLS");
}

/* 220 to STARTTLS: wrap the connection and start the handshake. */
static void
sc_start_tls(struct smtp_client *c)
{
	const struct conf_target *t = c->target;
	struct evbuffer *in;
	struct bufferevent *tbev, *under;
	struct sbuf err;
	const char *name;
	SSL *ssl;

	/*
	 * CVE-2011-0411, client side: whatever followed the 220 was sent in
	 * plaintext and must not be taken as if it came over TLS.
	 */
	in = bufferevent_get_input(c->bev);
	if (evbuffer_drain(in, evbuffer_get_length(in)) == -1)
		log_panic("smtp_client: evbuffer_drain failed");

	/* The name to check: tls_name, else the MX or host name used. */
	name = t->tls_name != NULL ? t->tls_name : c->addrs[c->cur].host;
	sbuf_init(&err, SC_REASON_MAX);
	ssl = tlsctx_client_new(t, name, &err);
	if (ssl == NULL) {
		sc_fail_addr(c, false, true, "%s: %s", c->peer, err.data);
		sbuf_release(&err);
		return;
	}
	sbuf_release(&err);
	under = c->bev;
	tbev = bufferevent_openssl_filter_new(c->base, under, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tbev == NULL) {
		SSL_free(ssl);
		sc_fail_addr(c, false, false, "%s: cannot set up TLS", c->peer);
		return;
	}
	/*
	 * The filter writes into the socket bev only below that bev's write
	 * high-water mark; without one it would swallow all our content.
	 */
	bufferevent_setwatermark(under, EV_WRITE, 0, SC_OUT_HIGH / 2);
	c->bev = tbev;
	c->ssl = ssl;
	bufferevent_setcb(tbev, sc_read_cb, sc_write_cb, sc_event_cb, c);
	if (bufferevent_enable(tbev, EV_READ | EV_WRITE) == -1)
		log_panic("smtp_client: bufferevent_enable failed");
	c->state = SC_HANDSHAKE;
	sc_arm(c, sc_secs(c->target->timeout_command, 300), "TLS handshake");
}

/* The handshake completed: check the peer (verify policy), EHLO again. */
void
sc_tls_up(struct smtp_client *c)
{
	struct sbuf err;
	char tls[128];

	if (c->target->tls == CONF_TLS_VERIFY) {
		sbuf_init(&err, 256);
		if (tlsctx_client_check_peer(c->ssl, &err) == -1) {
			sc_fail_addr(c, false, true,
			    "TLS certificate "
			    "verification failed for %s: %s",
			    c->peer, err.data);
			sbuf_release(&err);
			return;
		}
		sbuf_release(&err);
	}
	c->tls_active = true;
	tlsctx_summary(c->ssl, tls, sizeof(tls));
	log_debug("smtp_client: TLS with %s: %s", c->peer, tls);
	sc_send_ehlo(c); /* RFC 3207 4.2: forget what was said before */
}

void
sc_tls_failed(struct smtp_client *c, const char *why)
{
	if (c->target->tls == CONF_TLS_MAY && !c->tls_retried) {
		/* Opportunistic: try this address again in plaintext. */
		log_debug("smtp_client: TLS handshake with %s failed (%s); "
		          "retrying without TLS",
		    c->peer, why);
		sc_disarm(c);
		sc_drop(c, false);
		c->notls = true;
		c->tls_retried = true;
		sc_connect(c);
		return;
	}
	sc_fail_addr(c, false, false, "TLS handshake with %s failed: %s",
	    c->peer, why);
}

/*
 * With the target's source_address, a socket bound to it (for the
 * address family it fits); otherwise -1 and libevent makes one.
 */
static evutil_socket_t
sc_bound_socket(struct smtp_client *c, const struct dns_addr *a)
{
	const char *src = c->target->source_address;
	struct sockaddr_storage ss;
	socklen_t len;
	evutil_socket_t fd;
	int fam = a->sa.ss_family;

	if (src == NULL || fam == AF_UNIX)
		return -1;
	memset(&ss, 0, sizeof(ss));
	if (fam == AF_INET &&
	    inet_pton(AF_INET, src,
	        &((struct sockaddr_in *)(void *)&ss)->sin_addr) == 1)
		len = sizeof(struct sockaddr_in);
	else if (fam == AF_INET6 &&
	    inet_pton(AF_INET6, src,
	        &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr) == 1)
		len = sizeof(struct sockaddr_in6);
	else
		return -1; /* other family: the kernel chooses */
	ss.ss_family = (sa_family_t)fam;
	fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (bind(fd, (struct sockaddr *)(void *)&ss, len) == -1) {
		log_warn("smtp_client: bind to %s", src);
		(void)close(fd); /* fresh socket: nothing to lose */
		return -1;
	}
	return fd;
}

void
sc_connect(struct smtp_client *c)
{
	const struct dns_addr *a;

	for (; c->cur < c->naddrs;
	     c->cur++, c->notls = false, c->tls_retried = false) {
		a = &c->addrs[c->cur];
		sc_set_peer(c);
		c->bev = bufferevent_socket_new(c->base, sc_bound_socket(c, a),
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (c->bev == NULL)
			log_fatalx(70, "smtp_client: bufferevent_socket_new");
		bufferevent_setcb(c->bev, sc_read_cb, sc_write_cb, sc_event_cb,
		    c);
		if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1)
			log_panic("smtp_client: bufferevent_enable failed");
		if (bufferevent_socket_connect(c->bev,
		        (const struct sockaddr *)(const void *)&a->sa,
		        (int)a->salen) == 0) {
			c->state = SC_CONNECT;
			sc_arm(c, sc_secs(c->target->timeout_connect, 30),
			    "CONNECT");
			return;
		}
		(void)snprintf(c->last_err, sizeof(c->last_err),
		    "connect to %s: %s", c->peer, strerror(errno));
		c->last_perm = false;
		c->any_temp = true;
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	sc_open_fail(c);
}

static void
sc_dns_cb(void *arg, enum dns_status status, const char *reason,
    const struct dns_addr *addrs, size_t naddrs)
{
	struct smtp_client *c = arg;

	sc_enter(c);
	c->dns_pending = false;
	if (c->open_cb == NULL) {
		/* Abandoned while resolving: only this callback was left. */
		c->freeing = true;
	} else if (status == DNS_OK && naddrs > 0) {
		c->naddrs = naddrs < SC_ADDRS_MAX ? naddrs : SC_ADDRS_MAX;
		c->addrs = xcalloc(c->naddrs, sizeof(*c->addrs));
		memcpy(c->addrs, addrs, c->naddrs * sizeof(*c->addrs));
		c->cur = 0;
		sc_connect(c);
	} else {
		/*
		 * What the DNS says about a mail domain is final; a fixed
		 * host that does not resolve is a local problem: retry.
		 */
		c->perm_dns = c->target->mx != NULL &&
		    (status == DNS_NXDOMAIN || status == DNS_NODATA ||
		        status == DNS_NULLMX);
		(void)snprintf(c->last_err, sizeof(c->last_err), "%s",
		    reason != NULL ? reason : "DNS lookup failed");
		sc_open_fail(c);
	}
	sc_leave(c);
}

void
smtp_client_open(const struct smtp_client_params *p, smtp_client_open_cb cb,
    void *arg)
{
	const struct conf_target *t = p->target;
	struct smtp_client *c;
	const char *port;

	c = xcalloc(1, sizeof(*c));
	c->base = p->base;
	c->readers = p->readers;
	c->dns = p->dns;
	c->target = t;
	c->lmtp = t->type == CONF_TARGET_LMTP;
	c->helo = xstrdup(p->helo != NULL ?
	        p->helo :
	        (t->helo != NULL ? t->helo : "localhost"));
	c->open_cb = cb;
	c->open_arg = arg;
	LIST_INSERT_HEAD(&sc_opening, c, opening_entry);
	c->opening = true;
	c->state = SC_RESOLVE;
	c->timer = evtimer_new(c->base, sc_timer_cb, c);
	c->defer = evtimer_new(c->base, sc_defer_cb, c);
	if (c->timer == NULL || c->defer == NULL)
		log_fatalx(70, "smtp_client: evtimer_new failed");
	port = t->port != NULL ? t->port : (c->lmtp ? "24" : "25");

	if (c->lmtp && t->socket != NULL) {
		struct sockaddr_un *sun;

		(void)snprintf(c->peer, sizeof(c->peer), "%s", t->socket);
		if (strlen(t->socket) >= sizeof(sun->sun_path)) {
			(void)snprintf(c->last_err, sizeof(c->last_err),
			    "LMTP socket path too long: %s", t->socket);
			sc_defer(c, SC_DEFER_OPEN_FAIL);
			return;
		}
		c->addrs = xcalloc(1, sizeof(*c->addrs));
		c->naddrs = 1;
		sun = (struct sockaddr_un *)(void *)&c->addrs[0].sa;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, t->socket, strlen(t->socket) + 1);
		c->addrs[0].salen = sizeof(*sun);
		(void)snprintf(c->addrs[0].host, sizeof(c->addrs[0].host), "%s",
		    t->socket);
		(void)snprintf(c->addrs[0].text, sizeof(c->addrs[0].text),
		    "unix");
		/* Connecting can fail at once: never call back from here. */
		sc_defer(c, SC_DEFER_CONNECT);
		return;
	}
	if (t->host != NULL) {
		(void)snprintf(c->peer, sizeof(c->peer), "%s", t->host);
		c->dns_pending = true;
		dns_lookup_host(c->dns, t->host, port, sc_dns_cb, c);
		return;
	}
	if (t->mx != NULL) {
		const char *domain = t->mx;

		if (strcmp(domain, "*") == 0)
			domain = p->rcpt_domain;
		if (domain == NULL || *domain == '\0') {
			(void)snprintf(c->last_err, sizeof(c->last_err),
			    "target %s: no recipient domain for mx *",
			    t->name != NULL ? t->name : "?");
			sc_defer(c, SC_DEFER_OPEN_FAIL);
			return;
		}
		(void)snprintf(c->peer, sizeof(c->peer), "%s", domain);
		c->dns_pending = true;
		dns_lookup_mx(c->dns, domain, port, sc_dns_cb, c);
		return;
	}
	(void)snprintf(c->last_err, sizeof(c->last_err),
	    "target %s has no host, mx or socket",
	    t->name != NULL ? t->name : "?");
	sc_defer(c, SC_DEFER_OPEN_FAIL);
}

/* Drops c, still opening, without calling back. */
static void
sc_abandon(struct smtp_client *c)
{
	sc_unopening(c);
	c->open_cb = NULL;
	if (c->dns_pending)
		return; /* dns_ owes us a callback: free c there */
	sc_disarm(c);
	(void)evtimer_del(c->defer);
	sc_drop(c, false);
	c->state = SC_DEAD;
	c->freeing = true;
	if (c->depth == 0)
		sc_free(c);
}

void
smtp_client_open_cancel(smtp_client_open_cb cb, void *arg)
{
	struct smtp_client *c, *next;

	for (c = LIST_FIRST(&sc_opening); c != NULL; c = next) {
		next = LIST_NEXT(c, opening_entry);
		if (c->open_cb == cb && c->open_arg == arg)
			sc_abandon(c);
	}
}

/* Abandons whatever is still opening, frees the TLS contexts (at exit). */
void
smtp_client_shutdown(void)
{
	while (!LIST_EMPTY(&sc_opening))
		sc_abandon(LIST_FIRST(&sc_opening));
	tlsctx_client_shutdown();
}

/* ---- replies while opening ---- */

/* A complete reply while opening: banner, EHLO/LHLO, HELO, STARTTLS. */
void
sc_open_reply(struct smtp_client *c)
{
	unsigned code = c->rcode;

	switch (c->state) {
	case SC_BANNER:
		if (code / 100 == 2) {
			sc_send_ehlo(c);
			return;
		}
		sc_fail_addr(c, code / 100 == 5, true,
		    "%s refused to talk to me: %s", c->peer, c->rtext);
		return;
	case SC_EHLO:
		if (code / 100 == 2) {
			sc_after_ehlo(c);
			return;
		}
		if (code / 100 == 5 && !c->lmtp && !c->tls_active) {
			sc_ext_reset(c);
			sc_printf(c, "HELO %s\r\n", c->helo);
			c->state = SC_HELO;
			sc_arm(c, sc_secs(c->target->timeout_command, 300),
			    "HELO");
			return;
		}
		sc_fail_addr(c, code / 100 == 5, true, "%s refused %s: %s",
		    c->peer, c->lmtp ? "LHLO" : "EHLO", c->rtext);
		return;
	case SC_HELO:
		if (code / 100 == 2) {
			sc_after_ehlo(c);
			return;
		}
		sc_fail_addr(c, code / 100 == 5, true, "%s refused HELO: %s",
		    c->peer, c->rtext);
		return;
	case SC_STARTTLS:
		if (code == 220) {
			sc_start_tls(c);
			return;
		}
		if (c->target->tls == CONF_TLS_MAY) {
			sc_open_done(c);
			return;
		}
		sc_fail_addr(c, false, true, "%s refused STARTTLS: %s", c->peer,
		    c->rtext);
		return;
	default:
		log_panic("smtp_client: %s: opening reply in state %d", c->peer,
		    (int)c->state);
	}
}
