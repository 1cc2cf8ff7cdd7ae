/*
 * dns.c - c-ares 1.18 on the libevent loop: MX and A/AAAA lookups.
 *
 * One channel per struct dns. The socket-state callback keeps one event
 * per c-ares socket, readiness calls ares_process_fd, and one timer follows
 * ares_timeout. Every request ends in exactly one user callback, always
 * from the loop (never from inside dns_lookup_*): results computed while
 * the call is still on the stack go through a zero-delay timer. Queries
 * never use /etc/hosts or search domains: MX answers and mail domains
 * are fully qualified, and all DNS goes to the configured resolvers.
 * Must not be freed from inside one of its own callbacks.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ares.h>
#include <event2/event.h>

#include "dns.h"
#include "log.h"
#include "sbuf.h"
#include "xmalloc.h"

#define DNS_MX_HOSTS_MAX     16   /* MX hosts considered per domain */
#define DNS_ADDRS_PER_FAMILY 8    /* addresses kept per host and family */
#define DNS_ADDRS_MAX        64   /* addresses handed to the caller */
#define DNS_TIMEOUT_MS       3000 /* first try; c-ares doubles it */
#define DNS_TRIES            3
#define DNS_REASON_MAX       256

struct dns_sock {
	struct dns *dns;
	ares_socket_t fd;
	struct event *ev;
	LIST_ENTRY(dns_sock) entry;
};

struct dns_req;

/* One name whose A and AAAA records are wanted. */
struct dns_host {
	struct dns_req *req;
	char name[256];
	unsigned pref;
	int pending; /* queries still out */
	int st_a;    /* ares status of the A query */
	int st_aaaa;
	struct in_addr a4[DNS_ADDRS_PER_FAMILY];
	struct in6_addr a6[DNS_ADDRS_PER_FAMILY];
	size_t n4, n6;
};

struct dns_req {
	struct dns *dns;
	LIST_ENTRY(dns_req) entry;
	dns_addrs_cb cb;
	void *arg;
	bool mx;       /* an MX lookup */
	bool implicit; /* no MX: the domain itself */
	bool in_call;  /* still inside dns_lookup_* */
	char domain[256];
	uint16_t port;
	struct dns_host *hosts;
	size_t nhosts;
	size_t pending; /* hosts not yet resolved */
	enum dns_status status;
	char reason[DNS_REASON_MAX];
	struct dns_addr *out;
	size_t nout;
	struct event *ev; /* deferred delivery */
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	bool have_ch;
	bool destroying;
	struct event *timer;
	LIST_HEAD(, dns_sock) socks;
	LIST_HEAD(, dns_req) reqs;
};

static void dns_timer_update(struct dns *dns);
static void dns_req_finish(struct dns_req *req);
static void dns_req_reason(struct dns_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- channel on the loop ---- */

static void
dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_sock *s = arg;
	struct dns *dns = s->dns;

	ares_process_fd(dns->ch,
	    (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
	/* s may be gone now: the state callback frees closed sockets. */
	dns_timer_update(dns);
}

static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *dns = data;
	struct dns_sock *s;
	short what;

	LIST_FOREACH(s, &dns->socks, entry) {
		if (s->fd == fd)
			break;
	}
	if (!readable && !writable) {
		if (s != NULL) {
			LIST_REMOVE(s, entry);
			event_free(s->ev);
			free(s);
		}
		return;
	}
	what = EV_PERSIST | (readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0);
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->dns = dns;
		s->fd = fd;
		LIST_INSERT_HEAD(&dns->socks, s, entry);
	} else {
		event_free(s->ev);
	}
	s->ev = event_new(dns->base, fd, what, dns_sock_cb, s);
	if (s->ev == NULL || event_add(s->ev, NULL) == -1)
		log_panic("dns: cannot add an event for fd %d", (int)fd);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	(void)fd;
	(void)what;
	ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_update(dns);
}

static void
dns_timer_update(struct dns *dns)
{
	struct timeval tv, *tvp;

	if (dns->destroying)
		return;
	tvp = ares_timeout(dns->ch, NULL, &tv);
	if (tvp == NULL)
		(void)evtimer_del(dns->timer); /* cannot fail when set up */
	else if (evtimer_add(dns->timer, tvp) == -1)
		log_panic("dns: cannot arm the timer");
}

struct dns *
dns_new(struct event_base *base, const char *servers, struct sbuf *err)
{
	static bool lib_ready;
	struct ares_options opts;
	struct dns *dns;
	int optmask, r;

	if (!lib_ready) {
		r = ares_library_init(ARES_LIB_INIT_ALL);
		if (r != ARES_SUCCESS) {
			(void)sbuf_printf(err, "ares_library_init: %s",
			    ares_strerror(r));
			return NULL;
		}
		lib_ready = true;
	}
	dns = xcalloc(1, sizeof(*dns));
	dns->base = base;
	LIST_INIT(&dns->socks);
	LIST_INIT(&dns->reqs);
	dns->timer = evtimer_new(base, dns_timer_cb, dns);
	if (dns->timer == NULL)
		log_fatalx(70, "dns: evtimer_new failed");

	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = dns_sock_state_cb;
	opts.sock_state_cb_data = dns;
	opts.timeout = DNS_TIMEOUT_MS;
	opts.tries = DNS_TRIES;
	/* DNS only ("b"): no /etc/hosts; no search list (names are FQDNs). */
	opts.lookups = xstrdup("b");
	opts.domains = NULL;
	opts.ndomains = 0;
	optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	    ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS;
	r = ares_init_options(&dns->ch, &opts, optmask);
	free(opts.lookups);
	if (r != ARES_SUCCESS) {
		(void)sbuf_printf(err, "ares_init_options: %s",
		    ares_strerror(r));
		event_free(dns->timer);
		free(dns);
		return NULL;
	}
	dns->have_ch = true;
	if (servers != NULL && *servers != '\0') {
		r = ares_set_servers_ports_csv(dns->ch, servers);
		if (r != ARES_SUCCESS) {
			(void)sbuf_printf(err, "bad resolvers \"%s\": %s",
			    servers, ares_strerror(r));
			dns_free(dns);
			return NULL;
		}
	}
	return dns;
}

void
dns_free(struct dns *dns)
{
	struct dns_req *req;
	struct dns_sock *s;

	if (dns == NULL)
		return;
	dns->destroying = true;
	/*
	 * ares_destroy runs every outstanding query callback with
	 * ARES_EDESTRUCTION; requests whose last query ends there are
	 * delivered (as DNS_CANCELLED) on the spot. What remains are
	 * requests waiting on their deferral timer, including any a user
	 * callback started meanwhile: deliver those too.
	 */
	if (dns->have_ch)
		ares_destroy(dns->ch);
	dns->have_ch = false;
	while ((req = LIST_FIRST(&dns->reqs)) != NULL) {
		req->status = DNS_CANCELLED;
		req->nout = 0;
		dns_req_reason(req, "DNS lookup cancelled");
		req->in_call = false;
		dns_req_finish(req);
	}
	while ((s = LIST_FIRST(&dns->socks)) != NULL) {
		LIST_REMOVE(s, entry);
		event_free(s->ev);
		free(s);
	}
	event_free(dns->timer);
	free(dns);
}

/* ---- requests ---- */

static void
dns_req_free(struct dns_req *req)
{
	if (req->ev != NULL)
		event_free(req->ev);
	free(req->hosts);
	free(req->out);
	free(req);
}

static void
dns_req_deliver(struct dns_req *req)
{
	LIST_REMOVE(req, entry);
	req->cb(req->arg, req->status,
	    req->status == DNS_OK ? NULL : req->reason, req->out, req->nout);
	dns_req_free(req);
}

static void
dns_req_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dns_req_deliver(arg);
}

/*
 * The result is known: hand it over now, unless we are still inside the
 * dns_lookup_* call that made the request (then one loop turn later).
 */
static void
dns_req_finish(struct dns_req *req)
{
	static const struct timeval zero = { 0, 0 };

	if (!req->in_call) {
		dns_req_deliver(req);
		return;
	}
	if (req->ev == NULL) {
		req->ev = evtimer_new(req->dns->base, dns_req_defer_cb, req);
		if (req->ev == NULL)
			log_panic("dns: evtimer_new failed");
	}
	if (evtimer_add(req->ev, &zero) == -1)
		log_panic("dns: evtimer_add failed");
}

static struct dns_req *
dns_req_new(struct dns *dns, const char *name, dns_addrs_cb cb, void *arg)
{
	struct dns_req *req;

	req = xcalloc(1, sizeof(*req));
	req->dns = dns;
	req->cb = cb;
	req->arg = arg;
	req->in_call = true;
	req->status = DNS_TEMPFAIL;
	if (name != NULL)
		(void)snprintf(req->domain, sizeof(req->domain), "%s", name);
	LIST_INSERT_HEAD(&dns->reqs, req, entry);
	return req;
}

/* Sets the reason text (truncated to DNS_REASON_MAX). */
static void
dns_req_reason(struct dns_req *req, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(req->reason, sizeof(req->reason), fmt, ap);
	va_end(ap);
}

/* Fails req with status and a printf reason (used before any query). */
static void __attribute__((format(printf, 3, 4)))
dns_req_fail(struct dns_req *req, enum dns_status status, const char *fmt, ...)
{
	va_list ap;

	req->status = status;
	va_start(ap, fmt);
	(void)vsnprintf(req->reason, sizeof(req->reason), fmt, ap);
	va_end(ap);
	dns_req_finish(req);
}

static bool
dns_temp_status(int st)
{
	return st != ARES_SUCCESS && st != ARES_ENODATA && st != ARES_ENOTFOUND;
}

static void
dns_addr_set(struct dns_addr *a, int family, const void *ip, uint16_t port,
    const char *host, unsigned pref)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, ip, sizeof(sin->sin_addr));
		a->salen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, ip, sizeof(sin6->sin6_addr));
		a->salen = sizeof(*sin6);
	}
	if (inet_ntop(family, ip, a->text, sizeof(a->text)) == NULL)
		(void)snprintf(a->text, sizeof(a->text), "?");
	(void)snprintf(a->host, sizeof(a->host), "%s", host);
	a->preference = pref;
}

/*
 * All hosts resolved: build the flat list (hosts in order, IPv4 before
 * IPv6 within a host, since IPv6 reachability is the likelier to be
 * broken) and choose the status.
 */
static void
dns_req_collect(struct dns_req *req)
{
	size_t i, j, nx = 0, ntemp = 0, cap = DNS_ADDRS_MAX;
	const char *temp_host = NULL;
	int temp_st = ARES_SUCCESS;
	struct dns_host *h;

	req->out = xcalloc(cap, sizeof(*req->out));
	for (i = 0; i < req->nhosts; i++) {
		h = &req->hosts[i];
		for (j = 0; j < h->n4 && req->nout < cap; j++)
			dns_addr_set(&req->out[req->nout++], AF_INET, &h->a4[j],
			    req->port, h->name, h->pref);
		for (j = 0; j < h->n6 && req->nout < cap; j++)
			dns_addr_set(&req->out[req->nout++], AF_INET6,
			    &h->a6[j], req->port, h->name, h->pref);
		if (h->n4 + h->n6 > 0)
			continue;
		if (h->st_a == ARES_ENOTFOUND || h->st_aaaa == ARES_ENOTFOUND) {
			if (!dns_temp_status(h->st_a) &&
			    !dns_temp_status(h->st_aaaa)) {
				nx++;
				continue;
			}
		}
		if (dns_temp_status(h->st_a) || dns_temp_status(h->st_aaaa)) {
			ntemp++;
			if (temp_host == NULL) {
				temp_host = h->name;
				temp_st = dns_temp_status(h->st_a) ? h->st_a :
				                                     h->st_aaaa;
			}
		}
	}
	if (req->status == DNS_CANCELLED) {
		dns_req_reason(req, "DNS lookup cancelled");
	} else if (req->nout > 0) {
		req->status = DNS_OK;
	} else if (!req->mx || req->implicit) {
		/* One name: its own verdict. */
		if (ntemp > 0) {
			req->status = DNS_TEMPFAIL;
			dns_req_reason(req, "address lookup for %s failed: %s",
			    temp_host, ares_strerror(temp_st));
		} else if (nx > 0) {
			req->status = DNS_NXDOMAIN;
			dns_req_reason(req, "host or domain name not found: %s",
			    req->hosts[0].name);
		} else {
			req->status = DNS_NODATA;
			dns_req_reason(req,
			    req->implicit ? "no MX and no address records "
			                    "for %s" :
			                    "no address records for %s",
			    req->hosts[0].name);
		}
	} else if (nx == req->nhosts) {
		req->status = DNS_NXDOMAIN;
		dns_req_reason(req, "no MX host of %s exists (first: %s)",
		    req->domain, req->hosts[0].name);
	} else {
		/* Missing or failing MX hosts may come back: try later. */
		req->status = DNS_TEMPFAIL;
		if (temp_host != NULL)
			dns_req_reason(req,
			    "no usable MX host for %s: address lookup for "
			    "%s failed: %s",
			    req->domain, temp_host, ares_strerror(temp_st));
		else
			dns_req_reason(req, "no MX host of %s has an address",
			    req->domain);
	}
	if (req->status != DNS_OK)
		req->nout = 0;
	dns_req_finish(req);
}

static void
dns_host_done(struct dns_host *h, int status)
{
	struct dns_req *req = h->req;

	if (status == ARES_EDESTRUCTION)
		req->status = DNS_CANCELLED;
	if (--h->pending > 0)
		return;
	if (--req->pending > 0)
		return;
	dns_req_collect(req);
}

static void
dns_host_a_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_host *h = arg;
	struct ares_addrttl ttls[DNS_ADDRS_PER_FAMILY];
	int i, n = DNS_ADDRS_PER_FAMILY;

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		status = ares_parse_a_reply(abuf, alen, NULL, ttls, &n);
		if (status == ARES_SUCCESS) {
			for (i = 0; i < n; i++)
				h->a4[h->n4++] = ttls[i].ipaddr;
		}
		/* A reply with no A records (a CNAME alone) is NODATA. */
		if (status == ARES_SUCCESS && n == 0)
			status = ARES_ENODATA;
	}
	h->st_a = status;
	dns_host_done(h, status);
}

static void
dns_host_aaaa_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_host *h = arg;
	struct ares_addr6ttl ttls[DNS_ADDRS_PER_FAMILY];
	int i, n = DNS_ADDRS_PER_FAMILY;

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		status = ares_parse_aaaa_reply(abuf, alen, NULL, ttls, &n);
		if (status == ARES_SUCCESS) {
			for (i = 0; i < n; i++)
				memcpy(&h->a6[h->n6++], &ttls[i].ip6addr,
				    sizeof(h->a6[0]));
		}
		if (status == ARES_SUCCESS && n == 0)
			status = ARES_ENODATA;
	}
	h->st_aaaa = status;
	dns_host_done(h, status);
}

/* Starts the A and AAAA queries of every host of req. */
static void
dns_req_resolve_hosts(struct dns_req *req)
{
	struct dns *dns = req->dns;
	size_t i, n = req->nhosts;
	bool was_in_call = req->in_call;

	req->pending = n;
	for (i = 0; i < n; i++)
		req->hosts[i].pending = 2;
	/*
	 * A query can fail inside ares_query and so finish req; in_call
	 * makes that delivery wait for the loop, so req stays valid here.
	 */
	req->in_call = true;
	for (i = 0; i < n; i++) {
		struct dns_host *h = &req->hosts[i];

		h->req = req;
		ares_query(dns->ch, h->name, ns_c_in, ns_t_a, dns_host_a_cb, h);
		ares_query(dns->ch, h->name, ns_c_in, ns_t_aaaa,
		    dns_host_aaaa_cb, h);
	}
	req->in_call = was_in_call;
	dns_timer_update(dns);
}

static int
dns_mx_cmp(const void *a, const void *b)
{
	const struct dns_host *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* Shuffles each run of equal preferences (RFC 5321 5.1). */
static void
dns_mx_shuffle(struct dns_host *hosts, size_t n)
{
	size_t start = 0, end, i, j;
	struct dns_host tmp;

	while (start < n) {
		end = start + 1;
		while (end < n && hosts[end].pref == hosts[start].pref)
			end++;
		for (i = end - 1; i > start; i--) {
			j = start +
			    arc4random_uniform((uint32_t)(i - start + 1));
			if (j != i) {
				tmp = hosts[i];
				hosts[i] = hosts[j];
				hosts[j] = tmp;
			}
		}
		start = end;
	}
}

static void
dns_mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *req = arg;
	struct ares_mx_reply *mx = NULL, *m;
	size_t n = 0, nnull = 0, nall = 0, i;

	(void)timeouts;
	if (status == ARES_SUCCESS) {
		status = ares_parse_mx_reply(abuf, alen, &mx);
		if (status == ARES_SUCCESS && mx == NULL)
			status = ARES_ENODATA;
	}
	switch (status) {
	case ARES_SUCCESS:
		break;
	case ARES_ENODATA:
		/* RFC 5321 5.1: no MX at all, the domain is its own MX. */
		req->implicit = true;
		req->hosts = xcalloc(1, sizeof(*req->hosts));
		(void)snprintf(req->hosts[0].name, sizeof(req->hosts[0].name),
		    "%s", req->domain);
		req->nhosts = 1;
		dns_req_resolve_hosts(req);
		return;
	case ARES_ENOTFOUND:
		dns_req_fail(req, DNS_NXDOMAIN, "domain not found: %s",
		    req->domain);
		return;
	case ARES_EDESTRUCTION:
		dns_req_fail(req, DNS_CANCELLED, "DNS lookup cancelled");
		return;
	default:
		dns_req_fail(req, DNS_TEMPFAIL, "MX lookup for %s failed: %s",
		    req->domain, ares_strerror(status));
		return;
	}

	for (m = mx; m != NULL; m = m->next) {
		nall++;
		if (m->host[0] == '\0' || strcmp(m->host, ".") == 0)
			nnull++;
	}
	/* RFC 7505: a single "." MX (preference 0) means no mail at all. */
	if (nnull > 0 && nall == nnull) {
		ares_free_data(mx);
		dns_req_fail(req, DNS_NULLMX,
		    "domain %s does not accept mail (null MX, RFC 7505)",
		    req->domain);
		return;
	}
	req->hosts = xcalloc(nall < DNS_MX_HOSTS_MAX ? nall : DNS_MX_HOSTS_MAX,
	    sizeof(*req->hosts));
	for (m = mx; m != NULL && n < DNS_MX_HOSTS_MAX; m = m->next) {
		size_t len = strlen(m->host);

		if (len == 0 || strcmp(m->host, ".") == 0 ||
		    len >= sizeof(req->hosts[0].name))
			continue; /* a "." among real MXs is ignored */
		if (m->host[len - 1] == '.')
			len--;
		for (i = 0; i < n; i++) {
			if (strlen(req->hosts[i].name) == len &&
			    strncasecmp(req->hosts[i].name, m->host, len) == 0)
				break;
		}
		if (i < n) {
			/* Listed twice: keep the better preference. */
			if (m->priority < req->hosts[i].pref)
				req->hosts[i].pref = m->priority;
			continue;
		}
		memcpy(req->hosts[n].name, m->host, len);
		req->hosts[n].name[len] = '\0';
		req->hosts[n].pref = m->priority;
		n++;
	}
	ares_free_data(mx);
	if (n == 0) {
		dns_req_fail(req, DNS_TEMPFAIL, "no usable MX host for %s",
		    req->domain);
		return;
	}
	req->nhosts = n;
	qsort(req->hosts, n, sizeof(*req->hosts), dns_mx_cmp);
	dns_mx_shuffle(req->hosts, n);
	dns_req_resolve_hosts(req);
}

/* ---- public lookups ---- */

static int
dns_parse_port(const char *port, uint16_t *out)
{
	char *end;
	unsigned long v;

	if (port == NULL) {
		*out = 0;
		return 0;
	}
	errno = 0;
	v = strtoul(port, &end, 10);
	if (errno != 0 || end == port || *end != '\0' || v > 65535 ||
	    port[0] == '-' || port[0] == '+' || port[0] == ' ')
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/*
 * An IP literal: "192.0.2.1", "::1", "[192.0.2.1]", "[::1]" or the SMTP
 * address-literal form "[IPv6:2001:db8::1]". Fills a and returns true.
 */
static bool
dns_literal(const char *s, uint16_t port, struct dns_addr *a)
{
	char buf[128];
	size_t len = strlen(s);
	unsigned char ip[sizeof(struct in6_addr)];

	if (len >= sizeof(buf))
		return false;
	if (s[0] == '[') {
		if (len < 3 || s[len - 1] != ']')
			return false;
		memcpy(buf, s + 1, len - 2);
		buf[len - 2] = '\0';
		if (strncasecmp(buf, "IPv6:", 5) == 0)
			memmove(buf, buf + 5, strlen(buf + 5) + 1);
	} else {
		memcpy(buf, s, len + 1);
	}
	if (inet_pton(AF_INET, buf, ip) == 1) {
		dns_addr_set(a, AF_INET, ip, port, s, 0);
		return true;
	}
	if (inet_pton(AF_INET6, buf, ip) == 1) {
		dns_addr_set(a, AF_INET6, ip, port, s, 0);
		return true;
	}
	return false;
}

/* Common start: checks arguments, answers literals. true: handled. */
static bool
dns_lookup_start(struct dns_req *req, const char *name, const char *port)
{
	struct dns_addr lit;

	if (req->dns->destroying) {
		dns_req_fail(req, DNS_CANCELLED, "DNS lookup cancelled");
		return true;
	}
	if (dns_parse_port(port, &req->port) == -1) {
		dns_req_fail(req, DNS_TEMPFAIL, "bad port \"%s\"", port);
		return true;
	}
	if (name == NULL || name[0] == '\0' || strlen(name) > 253) {
		dns_req_fail(req, DNS_NXDOMAIN, "bad domain name");
		return true;
	}
	if (dns_literal(name, req->port, &lit)) {
		req->out = xmalloc(sizeof(*req->out));
		req->out[0] = lit;
		req->nout = 1;
		req->status = DNS_OK;
		dns_req_finish(req);
		return true;
	}
	if (name[0] == '[') {
		dns_req_fail(req, DNS_NXDOMAIN, "bad address literal %s", name);
		return true;
	}
	return false;
}

void
dns_lookup_mx(struct dns *dns, const char *domain, const char *port,
    dns_addrs_cb cb, void *arg)
{
	struct dns_req *req;

	req = dns_req_new(dns, domain, cb, arg);
	req->mx = true;
	if (!dns_lookup_start(req, domain, port)) {
		size_t len = strlen(req->domain);

		if (len > 1 && req->domain[len - 1] == '.')
			req->domain[len - 1] = '\0';
		ares_query(dns->ch, req->domain, ns_c_in, ns_t_mx, dns_mx_cb,
		    req);
		dns_timer_update(dns);
	}
	/* Only now may a finished req be delivered (from the loop). */
	req->in_call = false;
}

void
dns_lookup_host(struct dns *dns, const char *host, const char *port,
    dns_addrs_cb cb, void *arg)
{
	struct dns_req *req;

	req = dns_req_new(dns, host, cb, arg);
	if (!dns_lookup_start(req, host, port)) {
		size_t len = strlen(req->domain);

		if (len > 1 && req->domain[len - 1] == '.')
			req->domain[len - 1] = '\0';
		req->hosts = xcalloc(1, sizeof(*req->hosts));
		(void)snprintf(req->hosts[0].name, sizeof(req->hosts[0].name),
		    "%s", req->domain);
		req->nhosts = 1;
		dns_req_resolve_hosts(req);
	}
	req->in_call = false;
}

/* ---- reverse lookups ---- */

struct dns_ptr_req {
	struct dns *dns;
	dns_name_cb cb;
	void *arg;
};

static void
dns_ptr_ares_cb(void *arg, int status, int timeouts, struct hostent *h)
{
	struct dns_ptr_req *pr = arg;
	enum dns_status st;

	(void)timeouts;
	if (status == ARES_SUCCESS && h != NULL && h->h_name != NULL)
		st = DNS_OK;
	else if (status == ARES_ENOTFOUND)
		st = DNS_NXDOMAIN;
	else if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
		st = DNS_CANCELLED;
	else
		st = DNS_TEMPFAIL;
	pr->cb(pr->arg, st, st == DNS_OK ? h->h_name : NULL);
	free(pr);
}

void
dns_lookup_ptr(struct dns *dns, const struct sockaddr *sa, dns_name_cb cb,
    void *arg)
{
	struct dns_ptr_req *pr = xcalloc(1, sizeof(*pr));

	pr->dns = dns;
	pr->cb = cb;
	pr->arg = arg;
	if (sa->sa_family == AF_INET6)
		ares_gethostbyaddr(dns->ch,
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    sizeof(struct in6_addr), AF_INET6, dns_ptr_ares_cb, pr);
	else
		ares_gethostbyaddr(dns->ch,
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    sizeof(struct in_addr), AF_INET, dns_ptr_ares_cb, pr);
	dns_timer_update(dns);
}
