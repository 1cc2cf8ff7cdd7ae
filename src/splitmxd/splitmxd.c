/*
 * splitmxd.c - the daemon's main(): configuration, privileged startup,
 * spool recovery, then one event loop until SIGTERM.
 *
 * Startup order matters: listeners are bound and TLS keys read as root,
 * the process detaches before any thread exists, the spool is opened and
 * handed to the run-as user, privileges are dropped, and only then are
 * committed messages recovered and connections accepted.
 */
#include <sys/stat.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth_srs.h"
#include "conf.h"
#include "dedup.h"
#include "dns.h"
#include "log.h"
#include "priv.h"
#include "queue.h"
#include "sbuf.h"
#include "smtp_client.h"
#include "smtp_server.h"
#include "spool.h"
#include "verify.h"
#include "workers.h"
#include "xmalloc.h"

#define SPLITMXD_VERSION	"0.1.0"

struct splitmxd {
	struct event_base	*base;
	struct smtp_server	*server;
	struct queue		*queue;
	const struct conf	*conf;
	struct event		*drain;		/* waits for deliveries */
	struct timespec		 stop_at;
	bool			 stopping;
	char			**recovered;	/* ids found at start-up */
	size_t			 nrecovered;
};

static void
usage(void)
{
	(void)fprintf(stderr,
	    "usage: splitmxd [-dnV] [-f config]\n"
	    "  -f FILE  configuration file (default /etc/splitmx/splitmx.conf)\n"
	    "  -d       stay in the foreground, log to stderr\n"
	    "  -n       check the configuration and exit\n"
	    "  -V       print the version and exit\n");
	exit(EX_USAGE);
}

/* Deliveries in flight get the rest of the grace period, then we exit. */
static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval poll = { 0, 100000 };
	struct splitmxd *d = arg;
	struct timespec now;

	(void)fd;
	(void)what;
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	if (queue_busy(d->queue) == 0 || now.tv_sec >= d->stop_at.tv_sec) {
		if (queue_busy(d->queue) > 0)
			log_info("leaving %u deliveries unfinished; they are "
			    "retried at the next start", queue_busy(d->queue));
		(void)event_base_loopbreak(d->base);
		return;
	}
	(void)evtimer_add(d->drain, &poll);
}

static void
shutdown_done(void *arg)
{
	struct splitmxd *d = arg;

	queue_shutdown(d->queue);
	(void)clock_gettime(CLOCK_MONOTONIC, &d->stop_at);
	d->stop_at.tv_sec += (time_t)d->conf->limits.shutdown_grace;
	d->drain = evtimer_new(d->base, drain_cb, d);
	if (d->drain == NULL)
		(void)event_base_loopbreak(d->base);
	else
		drain_cb(-1, 0, d);
}

static void
accepted_cb(void *arg, const char *id)
{
	struct splitmxd *d = arg;

	queue_add(d->queue, id);
}

static void
restore_cb(void *arg, const char *line, size_t len)
{
	struct splitmxd *d = arg;

	queue_restore_line(d->queue, line, len);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct splitmxd *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		log_info("SIGHUP: configuration reload is not supported yet; "
		    "restart to apply changes");
		return;
	}
	if (d->stopping) {
		log_info("second stop signal: exiting now");
		(void)event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	log_info("stopping on signal %d: no new connections, finishing "
	    "messages in progress", (int)sig);
	smtp_server_shutdown(d->server, shutdown_done, d);
}

static void
found_cb(void *arg, const char *id, const struct spool_envelope *env,
    uint64_t size)
{
	struct splitmxd *d = arg;

	log_debug("%s: recovered from=<%s> nrcpt=%zu size=%llu", id,
	    env->sender, env->nrcpts, (unsigned long long)size);
	d->recovered = xreallocarray(d->recovered, d->nrecovered + 1,
	    sizeof(*d->recovered));
	d->recovered[d->nrecovered++] = xstrdup(id);
	queue_expect(d->queue, id);
}

/*
 * SRS: the secret comes from a file (first line, at least 16 octets), so
 * it is not in the config that many people read. NULL when not set up.
 */
static struct auth_srs *
srs_load(const struct conf *conf, struct sbuf *err)
{
	struct auth_srs_params p;
	struct auth_srs *srs;
	struct sbuf e;
	char secret[512];
	size_t i, n;
	bool wanted = false;
	FILE *f;

	for (i = 0; i < conf->ntargets; i++)
		wanted |= conf->targets[i].srs;
	if (!wanted && conf->srs_domain == NULL)
		return NULL;
	if (conf->srs_domain == NULL || conf->srs_secret_file == NULL) {
		(void)sbuf_printf(err, "%s: SRS needs srs_domain and "
		    "srs_secret_file", conf->path);
		return NULL;
	}
	if ((f = fopen(conf->srs_secret_file, "re")) == NULL) {
		(void)sbuf_printf(err, "%s: %s", conf->srs_secret_file,
		    strerror(errno));
		return NULL;
	}
	n = fgets(secret, sizeof(secret), f) != NULL ? strcspn(secret, "\r\n") :
	    0;
	(void)fclose(f);	/* read-only */
	if (n < 16) {
		(void)sbuf_printf(err, "%s: the SRS secret must be at least 16 "
		    "octets on the first line", conf->srs_secret_file);
		return NULL;
	}
	memset(&p, 0, sizeof(p));
	p.secret = secret;
	p.secret_len = n;
	p.domain = conf->srs_domain;
	sbuf_init(&e, 256);
	srs = auth_srs_new(&p, &e);
	explicit_bzero(secret, sizeof(secret));
	if (srs == NULL)
		(void)sbuf_printf(err, "SRS: %s", e.len > 0 ? e.data : "error");
	sbuf_release(&e);
	return srs;
}

int
main(int argc, char *argv[])
{
	const char *conf_path = "/etc/splitmx/splitmx.conf";
	struct spool_recovery rec;
	struct event *sigs[3];
	struct splitmxd d;
	struct workers *workers, *auth_workers, *queue_workers;
	struct spool *spool;
	struct dns *dns;
	struct verify *verify;
	struct dedup *dedup = NULL;
	struct auth_srs *srs;
	struct dedup_conf dconf;
	struct sbuf dpath;
	char hostname[256];
	size_t k;
	struct conf *conf;
	struct sbuf err;
	bool foreground = false, check_only = false;
	uid_t uid = 0;
	gid_t gid = 0;
	int ch, i;
	const int signos[3] = { SIGTERM, SIGINT, SIGHUP };

	while ((ch = getopt(argc, argv, "df:nV")) != -1) {
		switch (ch) {
		case 'd':
			foreground = true;
			break;
		case 'f':
			conf_path = optarg;
			break;
		case 'n':
			check_only = true;
			break;
		case 'V':
			(void)printf("splitmxd %s\n", SPLITMXD_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	sbuf_init(&err, 8192);
	conf = conf_load(conf_path, &err);
	if (conf == NULL) {
		(void)fprintf(stderr, "splitmxd: %s\n", err.data);
		sbuf_release(&err);
		return EX_CONFIG;
	}
	if (conf->user != NULL &&
	    priv_lookup(conf->user, &uid, &gid, &err) == -1) {
		(void)fprintf(stderr, "splitmxd: %s: %s\n", conf_path, err.data);
		conf_free(conf);
		sbuf_release(&err);
		return EX_CONFIG;
	}
	srs = srs_load(conf, &err);
	if (srs == NULL && err.len > 0) {
		(void)fprintf(stderr, "splitmxd: %s\n", err.data);
		conf_free(conf);
		sbuf_release(&err);
		return EX_CONFIG;
	}
	if (check_only) {
		auth_srs_free(srs);
		(void)printf("splitmxd: %s: configuration OK\n", conf_path);
		conf_free(conf);
		sbuf_release(&err);
		return 0;
	}

	log_init("splitmxd", foreground || conf->log_stderr, conf->log_facility);
	log_set_level((enum log_level)conf->log_level);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_fatal(EX_OSERR, "signal");

	if (evthread_use_pthreads() == -1)
		log_fatalx(EX_SOFTWARE, "libevent has no pthreads support");
	memset(&d, 0, sizeof(d));
	d.base = event_base_new();
	if (d.base == NULL)
		log_fatalx(EX_SOFTWARE, "cannot create the event base");

	d.server = smtp_server_new(d.base, conf, &err);
	if (d.server == NULL)
		log_fatalx(EX_CONFIG, "%s", err.data);

	/* Detach before any thread exists: fork keeps only the caller. */
	if (!foreground && daemon(0, 0) == -1)
		log_fatal(EX_OSERR, "daemon");
	if (event_reinit(d.base) == -1)
		log_fatalx(EX_SOFTWARE, "event_reinit failed");

	workers = workers_new(d.base, conf->workers);
	spool = spool_open(conf->spool_dir, workers, &err);
	if (spool == NULL)
		log_fatalx(EX_CANTCREAT, "spool %s: %s", conf->spool_dir,
		    err.data);
	/*
	 * Everything under the spool is opened (and created) before the drop,
	 * like the spool itself: the run-as user may not be able to reach
	 * the spool by its path, only through descriptors opened now.
	 */
	if (conf->duplicates) {
		sbuf_init(&dpath, 4096);
		(void)sbuf_printf(&dpath, "%s/dedup", conf->spool_dir);
		memset(&dconf, 0, sizeof(dconf));
		dconf.path = dpath.data;
		dconf.map_size = (size_t)conf->duplicate_max_size;
		dconf.window = (time_t)conf->duplicate_window;
		dedup = dedup_open(&dedup_lmdb_ops, &dconf, &err);
		sbuf_release(&dpath);
		if (dedup == NULL)
			log_fatalx(EX_CANTCREAT, "duplicate index: %s", err.data);
	}
	if (spool_chdir(spool, &err) == -1)
		log_fatalx(EX_CANTCREAT, "%s", err.data);
	if (conf->user != NULL && getuid() == 0) {
		if (priv_chown_spool(conf->spool_dir, uid, gid, &err) == -1 ||
		    priv_drop(uid, gid, &err) == -1)
			log_fatalx(EX_NOPERM, "cannot become %s: %s",
			    conf->user, err.data);
		log_info("running as %s", conf->user);
	}
	dns = dns_new(d.base, conf->resolvers, &err);
	if (dns == NULL)
		log_fatalx(EX_CONFIG, "resolvers: %s", err.data);
	if (conf->hostname != NULL)
		(void)snprintf(hostname, sizeof(hostname), "%s", conf->hostname);
	else if (gethostname(hostname, sizeof(hostname) - 1) == -1)
		(void)snprintf(hostname, sizeof(hostname), "localhost");
	d.conf = conf;
	/* The spool's fsyncs decide how fast we say 250: they get a pool. */
	queue_workers = workers_new(d.base, conf->workers);
	d.queue = queue_new(d.base, conf, spool, queue_workers, dns, dedup,
	    hostname);
	queue_set_srs(d.queue, srs);
	if (spool_recover(spool, found_cb, &d, &rec, &err) == -1)
		log_fatalx(EX_IOERR, "spool recovery: %s", err.data);
	/* Per-target states of the recovered messages, oldest first. */
	if (spool_reader_scan(spool_reader(spool), restore_cb, &d, NULL,
	    &err) == -1)
		log_fatalx(EX_IOERR, "journal: %s", err.data);
	for (k = 0; k < d.nrecovered; k++) {
		queue_add(d.queue, d.recovered[k]);
		free(d.recovered[k]);
	}
	free(d.recovered);
	log_info("spool %s: %u messages queued, %u incomplete removed, "
	    "%u quarantined", conf->spool_dir, rec.queued, rec.removed_tmp,
	    rec.quarantined);

	for (i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(d.base, signos[i], signal_cb, &d);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) == -1)
			log_fatalx(EX_OSERR, "cannot watch signal %d", signos[i]);
	}
	verify = verify_new(d.base, conf, dns, hostname);
	smtp_server_set_verify(d.server, verify);
	smtp_server_set_dns(d.server, dns);
	smtp_server_set_srs(d.server, srs);
	/*
	 * SPF and DKIM get threads of their own: behind fsync jobs they would
	 * add a disk flush of latency to every message.
	 */
	auth_workers = workers_new(d.base, conf->workers);
	smtp_server_set_workers(d.server, auth_workers);
	smtp_server_start(d.server, spool, accepted_cb, &d);
	log_info("splitmxd %s started", SPLITMXD_VERSION);

	if (event_base_dispatch(d.base) == -1)
		log_warnx("event loop failed");

	/*
	 * Commits in flight finish first; their callbacks run inside
	 * workers_free while the sessions they name still exist.
	 */
	queue_shutdown(d.queue);
	spool_close(spool);
	workers_free(auth_workers);
	workers_free(queue_workers);
	workers_free(workers);
	queue_free(d.queue);
	dedup_close(dedup);
	auth_srs_free(srs);
	verify_free(verify);
	dns_free(dns);
	smtp_server_free(d.server);
	smtp_client_shutdown();
	if (d.drain != NULL)
		event_free(d.drain);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	/* Let libevent finish freeing bufferevents whose release it deferred. */
	(void)event_base_loop(d.base, EVLOOP_NONBLOCK);
	event_base_free(d.base);
	log_info("splitmxd stopped");
	conf_free(conf);
	sbuf_release(&err);
	return 0;
}
