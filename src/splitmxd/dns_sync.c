/*
 * dns_sync.c - blocking DNS for worker threads on a private c-ares channel.
 *
 * The socket-state callback keeps a small pollfd table; the wait loop
 * polls it with the timeout ares_timeout() suggests, clipped to a hard
 * per-query deadline, and hands readiness to ares_process_fd (the
 * REFERENCES 5.3 pattern; ares_getsock/ares_fds are not used). When the
 * deadline passes the query is cancelled. No state is shared between
 * objects, so threads with their own dns_sync never contend. Must never
 * run on the event loop thread.
 */
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ares.h>

#include "dns_sync.h"
#include "sbuf.h"
#include "xmalloc.h"

#define DNS_SYNC_NAME_MAX  253  /* RFC 1035 2.3.4, without the dot */
#define DNS_SYNC_EDNS_SIZE 1232 /* no fragmentation (DNS flag day) */

struct dns_sync {
	ares_channel ch;
	unsigned timeout_ms;
	struct pollfd *pfd; /* sockets c-ares wants watched */
	size_t npfd;
	size_t cappfd;
};

/* The state of the one query in flight. */
struct dns_sync_q {
	bool done;
	int ares_status;
	unsigned char *pkt;
	size_t len;
};

static pthread_once_t dns_sync_once = PTHREAD_ONCE_INIT;
static int dns_sync_lib_status = ARES_SUCCESS;

static void
dns_sync_lib_init(void)
{
	dns_sync_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void
dns_sync_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_sync *ds = data;
	size_t i;
	short ev;

	for (i = 0; i < ds->npfd; i++) {
		if (ds->pfd[i].fd == fd)
			break;
	}
	if (!readable && !writable) {
		if (i < ds->npfd) {
			ds->pfd[i] = ds->pfd[ds->npfd - 1];
			ds->npfd--;
		}
		return;
	}
	ev = (short)((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
	if (i == ds->npfd) {
		if (ds->npfd == ds->cappfd) {
			ds->cappfd = ds->cappfd ? ds->cappfd * 2 : 4;
			ds->pfd = xreallocarray(ds->pfd, ds->cappfd,
			    sizeof(*ds->pfd));
		}
		ds->npfd++;
		ds->pfd[i].fd = fd;
	}
	ds->pfd[i].events = ev;
	ds->pfd[i].revents = 0;
}

struct dns_sync *
dns_sync_new(const char *servers, unsigned timeout_ms, struct sbuf *err)
{
	struct ares_options opts;
	struct dns_sync *ds;
	int optmask, r;

	if (pthread_once(&dns_sync_once, dns_sync_lib_init) != 0 ||
	    dns_sync_lib_status != ARES_SUCCESS) {
		(void)sbuf_printf(err, "ares_library_init: %s",
		    ares_strerror(dns_sync_lib_status));
		return NULL;
	}
	ds = xcalloc(1, sizeof(*ds));
	ds->timeout_ms = timeout_ms ? timeout_ms : DNS_SYNC_TIMEOUT_MS;

	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = dns_sync_sock_state_cb;
	opts.sock_state_cb_data = ds;
	/* Two tries, the second twice as long: about the hard deadline. */
	opts.timeout = (int)(ds->timeout_ms / 3 > 100 ? ds->timeout_ms / 3 :
	                                                100);
	opts.tries = 2;
	opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS;
	opts.ednspsz = DNS_SYNC_EDNS_SIZE;
	opts.lookups = xstrdup("b"); /* DNS only, never /etc/hosts */
	optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	    ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_LOOKUPS;
	r = ares_init_options(&ds->ch, &opts, optmask);
	free(opts.lookups);
	if (r != ARES_SUCCESS) {
		(void)sbuf_printf(err, "ares_init_options: %s",
		    ares_strerror(r));
		free(ds);
		return NULL;
	}
	if (servers != NULL && *servers != '\0') {
		r = ares_set_servers_ports_csv(ds->ch, servers);
		if (r != ARES_SUCCESS) {
			(void)sbuf_printf(err, "bad resolvers \"%s\": %s",
			    servers, ares_strerror(r));
			dns_sync_free(ds);
			return NULL;
		}
	}
	return ds;
}

void
dns_sync_free(struct dns_sync *ds)
{
	if (ds == NULL)
		return;
	ares_destroy(ds->ch); /* closes sockets via the state callback */
	free(ds->pfd);
	free(ds);
}

static void
dns_sync_query_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_sync_q *q = arg;

	(void)timeouts;
	q->done = true;
	q->ares_status = status;
	if (abuf != NULL && alen > 0 && q->pkt == NULL) {
		q->len = (size_t)alen;
		if (q->len > DNS_SYNC_PACKET_MAX)
			q->len = DNS_SYNC_PACKET_MAX;
		q->pkt = xmalloc(q->len);
		memcpy(q->pkt, abuf, q->len);
	}
}

static int64_t
dns_sync_now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum dns_sync_status
dns_sync_map(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
		return DNS_SYNC_OK;
	case ARES_ENODATA:
		return DNS_SYNC_NODATA;
	case ARES_ENOTFOUND:
		return DNS_SYNC_NXDOMAIN;
	case ARES_ETIMEOUT:
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION:
		return DNS_SYNC_TIMEOUT;
	case ARES_EBADNAME:
		return DNS_SYNC_BADNAME;
	default:
		/* SERVFAIL, REFUSED, NOTIMP, FORMERR, connection errors */
		return DNS_SYNC_TEMPFAIL;
	}
}

/* Runs the channel until q is done or the deadline passes. */
static int
dns_sync_wait(struct dns_sync *ds, struct dns_sync_q *q, int64_t deadline)
{
	struct pollfd ready[16];
	struct timeval maxtv, tv, *tvp;
	int64_t left;
	size_t i, nready;
	int n, ms;

	while (!q->done) {
		left = deadline - dns_sync_now_ms();
		if (left <= 0) {
			ares_cancel(ds->ch); /* runs the callback */
			q->ares_status = ARES_ETIMEOUT;
			return 0;
		}
		maxtv.tv_sec = (time_t)(left / 1000);
		maxtv.tv_usec = (suseconds_t)((left % 1000) * 1000);
		tvp = ares_timeout(ds->ch, &maxtv, &tv);
		ms = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
		n = poll(ds->pfd, (nfds_t)ds->npfd, ms);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			ares_cancel(ds->ch);
			q->ares_status = ARES_ECONNREFUSED;
			return -1;
		}
		if (n == 0) {
			ares_process_fd(ds->ch, ARES_SOCKET_BAD,
			    ARES_SOCKET_BAD);
			continue;
		}
		/* Copy first: processing may close sockets and shrink pfd. */
		nready = 0;
		for (i = 0; i < ds->npfd && nready < 16; i++) {
			if (ds->pfd[i].revents != 0)
				ready[nready++] = ds->pfd[i];
		}
		for (i = 0; i < nready; i++) {
			ares_process_fd(ds->ch,
			    (ready[i].revents & (POLLIN | POLLERR | POLLHUP)) ?
			        ready[i].fd :
			        ARES_SOCKET_BAD,
			    (ready[i].revents & POLLOUT) ? ready[i].fd :
			                                   ARES_SOCKET_BAD);
		}
	}
	return 0;
}

int
dns_sync_query(struct dns_sync *ds, const char *name, int type,
    struct dns_sync_answer *out)
{
	struct dns_sync_q q;
	size_t nlen;
	int r;

	memset(out, 0, sizeof(*out));
	out->rcode = -1;
	nlen = strlen(name);
	if (nlen > 0 && name[nlen - 1] == '.')
		nlen--;
	if (nlen == 0 || nlen > DNS_SYNC_NAME_MAX) {
		out->status = DNS_SYNC_BADNAME;
		return 0;
	}
	memset(&q, 0, sizeof(q));
	ares_query(ds->ch, name, ns_c_in, type, dns_sync_query_cb, &q);
	r = dns_sync_wait(ds, &q, dns_sync_now_ms() + ds->timeout_ms);
	out->status = dns_sync_map(q.ares_status);
	out->pkt = q.pkt;
	out->len = q.len;
	if (out->pkt != NULL && out->len >= 12)
		out->rcode = out->pkt[3] & 0x0f;
	if (r == -1)
		out->status = DNS_SYNC_TEMPFAIL;
	return r;
}

void
dns_sync_answer_release(struct dns_sync_answer *ans)
{
	free(ans->pkt);
	memset(ans, 0, sizeof(*ans));
	ans->rcode = -1;
}

const char *
dns_sync_status_str(enum dns_sync_status st)
{
	switch (st) {
	case DNS_SYNC_OK:
		return "ok";
	case DNS_SYNC_NODATA:
		return "nodata";
	case DNS_SYNC_NXDOMAIN:
		return "nxdomain";
	case DNS_SYNC_TEMPFAIL:
		return "tempfail";
	case DNS_SYNC_TIMEOUT:
		return "timeout";
	case DNS_SYNC_BADNAME:
		return "badname";
	}
	return "unknown";
}
