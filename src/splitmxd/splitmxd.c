/*
 * splitmxd.c - the daemon's main(): configuration, privileged startup,
 * spool recovery, then one event loop until SIGTERM.
 *
 * Startup order matters: listeners are bound and TLS keys read as root,
 * the process detaches before any thread exists, the spool is opened and
 * handed to the run-as user, privileges are dropped, and only then are
 * committed messages recovered and connections accepted.
 */
#include <sys/resource.h>
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

#define SPLITMXD_TMP_FILES_AHEAD 512 /* spool_set_precreate, at most */
#define SPLITMXD_VERSION         "0.1.0"
#define SPLITMXD_FD_MAX          (1 << 20) /* RLIMIT_NOFILE wanted at most */

struct splitmxd {
	/* From the command line. */
	const char *conf_path;
	bool foreground;
	bool check_only;

	struct conf *conf;
	uid_t uid; /* run-as user, when set */
	gid_t gid;
	struct auth_srs *srs;
	struct sbuf err;
	char hostname[256];

	struct event_base *base;
	struct smtp_server *server;
	struct workers *workers; /* the spool's */
	struct workers *queue_workers;
	struct workers *auth_workers; /* SPF and DKIM */
	struct spool *spool;
	struct dedup *dedup;
	bool dedup_rebuild; /* filled again from the journal at start-up */
	struct dns *dns;
	struct verify *verify;
	struct queue *queue;
	struct event *sigs[3];
	struct event *drain; /* waits for deliveries */
	struct timespec stop_at;
	bool stopping;
	unsigned file_max;  /* sessions with a spool file (size_fd_limits) */
	unsigned tmp_ahead; /* spool tmp files kept open ahead (ditto) */
	char **recovered;   /* ids found at start-up */
	size_t nrecovered;
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
			         "retried at the next start",
			    queue_busy(d->queue));
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
	         "messages in progress",
	    (int)sig);
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
		(void)sbuf_printf(err,
		    "%s: SRS needs srs_domain and "
		    "srs_secret_file",
		    conf->path);
		return NULL;
	}
	if ((f = fopen(conf->srs_secret_file, "re")) == NULL) {
		(void)sbuf_printf(err, "%s: %s", conf->srs_secret_file,
		    strerror(errno));
		return NULL;
	}
	n = fgets(secret, sizeof(secret), f) != NULL ? strcspn(secret, "\r\n") :
	                                               0;
	(void)fclose(f); /* read-only */
	if (n < 16) {
		(void)sbuf_printf(err,
		    "%s: the SRS secret must be at least 16 "
		    "octets on the first line",
		    conf->srs_secret_file);
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

/* Options; -V and mistakes end the process here. */
static void
parse_args(struct splitmxd *d, int argc, char *argv[])
{
	int ch;

	d->conf_path = "/etc/splitmx/splitmx.conf";
	while ((ch = getopt(argc, argv, "df:nV")) != -1) {
		switch (ch) {
		case 'd':
			d->foreground = true;
			break;
		case 'f':
			d->conf_path = optarg;
			break;
		case 'n':
			d->check_only = true;
			break;
		case 'V':
			(void)printf("splitmxd %s\n", SPLITMXD_VERSION);
			exit(0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
}

/*
 * The config, the run-as user and the SRS secret, checked before anything
 * starts. Returns 0, or an exit code once the reason is on stderr.
 */
static int
load_config(struct splitmxd *d)
{
	d->conf = conf_load(d->conf_path, &d->err);
	if (d->conf == NULL) {
		(void)fprintf(stderr, "splitmxd: %s\n", d->err.data);
		return EX_CONFIG;
	}
	if (d->conf->user != NULL &&
	    priv_lookup(d->conf->user, &d->uid, &d->gid, &d->err) == -1) {
		(void)fprintf(stderr, "splitmxd: %s: %s\n", d->conf_path,
		    d->err.data);
		return EX_CONFIG;
	}
	d->srs = srs_load(d->conf, &d->err);
	if (d->srs == NULL && d->err.len > 0) {
		(void)fprintf(stderr, "splitmxd: %s\n", d->err.data);
		return EX_CONFIG;
	}
	return 0;
}

static void
start_logging(struct splitmxd *d)
{
	log_init("splitmxd", d->foreground || d->conf->log_stderr,
	    d->conf->log_facility);
	log_set_level((enum log_level)d->conf->log_level);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_fatal(EX_OSERR, "signal");
}

/*
 * Descriptors the daemon needs besides its sessions: stdio, the event
 * base, worker eventfds, syslog, the spool's directories and journal,
 * LMDB, the resolver's sockets, recipient probes and the spare
 * descriptors (about 40), one per listener, three per `workers` (three
 * pools of that many threads, each may hold a file being read or
 * fsynced), and two per outbound connection (socket and message file).
 */
#define SPLITMXD_FD_FIXED 40

/*
 * Raise RLIMIT_NOFILE to its hard limit, and size the connection limit to
 * the descriptors there are. A session holds its socket and, while it
 * receives a message, its spool file. When there is room for both for
 * every session, nothing more is needed. Otherwise `connections` is kept
 * (at most nine tenths of the room: an idle session needs its socket
 * only) and the sessions that may hold a file at once are limited to what
 * is left (d->file_max, smtp_server_set_file_max): DATA beyond that gets
 * 452 4.3.1 rather than taking a descriptor the workers or the deliveries
 * need. A warning says so. What is left over still fails softly (EMFILE
 * pauses accept()).
 */
static void
size_fd_limits(struct splitmxd *d)
{
	struct conf_limits *lim = &d->conf->limits;
	struct rlimit rl;
	rlim_t want, reserve, room, most;
	size_t i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	want = rl.rlim_max;
	if (want == RLIM_INFINITY || want > SPLITMXD_FD_MAX)
		want = SPLITMXD_FD_MAX;
	if (want > rl.rlim_cur) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_warn("cannot raise RLIMIT_NOFILE to %llu",
			    (unsigned long long)want);
			rl.rlim_cur = was;
		}
	}
	reserve = SPLITMXD_FD_FIXED + d->conf->nlisteners +
	    3 * (rlim_t)d->conf->workers;
	for (i = 0; i < d->conf->ntargets; i++)
		reserve += 2 * (rlim_t)d->conf->targets[i].connections;
	room = rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 0;
	/* The tmp file pool holds its descriptors: an eighth of what is left. */
	d->tmp_ahead = room / 8 < SPLITMXD_TMP_FILES_AHEAD ?
	    (unsigned)(room / 8) :
	    SPLITMXD_TMP_FILES_AHEAD;
	reserve += d->tmp_ahead;
	room -= d->tmp_ahead;
	most = room - room / 10;
	if (most < 1)
		most = 1;
	log_info("descriptors: RLIMIT_NOFILE %llu, %llu kept for the spool, "
	         "workers and deliveries: room for %llu connections with a "
	         "message each",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)reserve,
	    (unsigned long long)(room / 2));
	if ((rlim_t)lim->connections > most) {
		log_warnx("limits: connections %u needs about %llu "
		          "descriptors, RLIMIT_NOFILE is %llu: using "
		          "connections %llu",
		    lim->connections,
		    (unsigned long long)(reserve +
		        2 * (rlim_t)lim->connections),
		    (unsigned long long)rl.rlim_cur, (unsigned long long)most);
		lim->connections = (unsigned)most;
	}
	d->file_max = 0;
	if (2 * (rlim_t)lim->connections > room) {
		d->file_max = room > lim->connections ?
		    (unsigned)(room - lim->connections) :
		    1;
		log_warnx("limits: RLIMIT_NOFILE %llu leaves room for "
		          "connections %u, but for only %u of them receiving "
		          "a message at once (more get 452 4.3.1); %llu "
		          "descriptors would do for all",
		    (unsigned long long)rl.rlim_cur, lim->connections,
		    d->file_max,
		    (unsigned long long)(reserve +
		        2 * (rlim_t)lim->connections));
	}
}

/* As root: bind the listeners and read their TLS keys. */
static void
open_listeners(struct splitmxd *d)
{
	struct event_config *cfg;

	if (evthread_use_pthreads() == -1)
		log_fatalx(EX_SOFTWARE, "libevent has no pthreads support");
	/*
	 * The changelist folds a loop turn's event adds and deletes into one
	 * epoll_ctl per fd (bufferevents flip EV_WRITE per reply: about 26
	 * epoll_ctl calls a message at one session). Its caveat, fds made
	 * by dup() sharing one epoll entry, does not arise here.
	 */
	if ((cfg = event_config_new()) == NULL ||
	    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) ==
	        -1)
		log_fatalx(EX_SOFTWARE, "cannot configure the event base");
	d->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (d->base == NULL)
		log_fatalx(EX_SOFTWARE, "cannot create the event base");
	d->server = smtp_server_new(d->base, d->conf, &d->err);
	if (d->server == NULL)
		log_fatalx(EX_CONFIG, "%s", d->err.data);
}

/* Detach before any thread exists: fork keeps only the caller. */
static void
detach(struct splitmxd *d)
{
	if (!d->foreground && daemon(0, 0) == -1)
		log_fatal(EX_OSERR, "daemon");
	if (event_reinit(d->base) == -1)
		log_fatalx(EX_SOFTWARE, "event_reinit failed");
}

/* Committer thread, at each spool checkpoint. */
static int
sync_dedup(void *arg)
{
	struct sbuf err;
	int rc;

	sbuf_init(&err, 256);
	rc = dedup_sync(arg, &err);
	if (rc == -1)
		log_warnx("duplicate index: %s", err.data);
	sbuf_release(&err);
	return rc;
}

/*
 * The machine went down under a running daemon: the index, which does not
 * sync its commits, may be torn. It is kept aside for the postmaster and
 * rebuilt from the journal once recovery has completed it.
 */
static void
set_aside_dedup(struct splitmxd *d, const char *path)
{
	char aside[4096];

	(void)snprintf(aside, sizeof(aside), "%s.lost-%lld", path,
	    (long long)time(NULL));
	if (rename(path, aside) == -1 && errno != ENOENT)
		log_fatalx(EX_CANTCREAT, "duplicate index: set aside %s: %s",
		    path, strerror(errno));
	log_warnx("the machine restarted under the last run: duplicate "
	          "index %s set aside as %s, to be rebuilt from the journal",
	    path, aside);
	d->dedup_rebuild = true;
}

/*
 * As root: the spool and everything under it (the duplicate index too):
 * the run-as user may not be able to reach the spool by its path, only
 * through descriptors opened now.
 */
static void
open_spool(struct splitmxd *d)
{
	const struct conf *conf = d->conf;
	struct dedup_conf dconf;
	struct sbuf dpath;

	d->workers = workers_new(d->base, conf->workers);
	d->spool = spool_open(conf->spool_dir, d->workers, &d->err);
	if (d->spool == NULL)
		log_fatalx(EX_CANTCREAT, "spool %s: %s", conf->spool_dir,
		    d->err.data);
	spool_set_journal_rotation(d->spool, conf->journal_segment_size,
	    conf->journal_retention);
	/*
	 * tmp files made ahead on workers, and removed messages' files
	 * reused: no file creation on the loop, no inode churn.
	 */
	spool_set_precreate(d->spool, d->tmp_ahead);
	if (conf->duplicates) {
		sbuf_init(&dpath, 4096);
		(void)sbuf_printf(&dpath, "%s/dedup", conf->spool_dir);
		memset(&dconf, 0, sizeof(dconf));
		dconf.path = dpath.data;
		dconf.map_size = (size_t)conf->duplicate_max_size;
		dconf.window = (time_t)conf->duplicate_window;
		/* The spool's log carries the claims: one flush per group. */
		dconf.nosync = true;
		if (spool_lost_boot(d->spool))
			set_aside_dedup(d, dpath.data);
		d->dedup = dedup_open(&dedup_lmdb_ops, &dconf, &d->err);
		sbuf_release(&dpath);
		if (d->dedup == NULL)
			log_fatalx(EX_CANTCREAT, "duplicate index: %s",
			    d->err.data);
	}
	if (d->dedup != NULL)
		spool_set_checkpoint_hook(d->spool, sync_dedup, d->dedup);
	if (spool_chdir(d->spool, &d->err) == -1)
		log_fatalx(EX_CANTCREAT, "%s", d->err.data);
}

static void
drop_privileges(struct splitmxd *d)
{
	const struct conf *conf = d->conf;

	if (conf->user == NULL || getuid() != 0)
		return;
	if (priv_chown_spool(conf->spool_dir, d->uid, d->gid, &d->err) == -1 ||
	    priv_drop(d->uid, d->gid, &d->err) == -1)
		log_fatalx(EX_NOPERM, "cannot become %s: %s", conf->user,
		    d->err.data);
	log_info("running as %s", conf->user);
}

/* The resolver and the queue, which recovery fills. */
static void
start_queue(struct splitmxd *d)
{
	const struct conf *conf = d->conf;

	d->dns = dns_new(d->base, conf->resolvers, &d->err);
	if (d->dns == NULL)
		log_fatalx(EX_CONFIG, "resolvers: %s", d->err.data);
	if (conf->hostname != NULL)
		(void)snprintf(d->hostname, sizeof(d->hostname), "%s",
		    conf->hostname);
	else if (gethostname(d->hostname, sizeof(d->hostname) - 1) == -1)
		(void)snprintf(d->hostname, sizeof(d->hostname), "localhost");
	/* The spool's fsyncs decide how fast we say 250: they get a pool. */
	d->queue_workers = workers_new(d->base, conf->workers);
	d->queue = queue_new(d->base, conf, d->spool, d->queue_workers, d->dns,
	    d->dedup, d->hostname);
	queue_set_srs(d->queue, d->srs);
}

/* Committed messages go back to the queue, with their per-target states. */
static void
recover_spool(struct splitmxd *d)
{
	struct spool_recovery rec;
	size_t k;

	if (spool_recover(d->spool, found_cb, d, &rec, &d->err) == -1)
		log_fatalx(EX_IOERR, "spool recovery: %s", d->err.data);
	if (d->dedup_rebuild &&
	    queue_dedup_rebuild(d->dedup, spool_reader(d->spool), &d->err) ==
	        -1)
		log_fatalx(EX_IOERR, "duplicate index rebuild: %s",
		    d->err.data);
	/* Per-target states of the recovered messages, oldest first. */
	if (spool_reader_scan(spool_reader(d->spool), restore_cb, d, NULL,
	        &d->err) == -1)
		log_fatalx(EX_IOERR, "journal: %s", d->err.data);
	for (k = 0; k < d->nrecovered; k++) {
		queue_add(d->queue, d->recovered[k]);
		free(d->recovered[k]);
	}
	free(d->recovered);
	d->recovered = NULL;
	log_info("spool %s: %u messages queued, %u incomplete removed, "
	         "%u quarantined",
	    d->conf->spool_dir, rec.queued, rec.removed_tmp, rec.quarantined);
}

/* Signals, the session's helpers, and then connections are accepted. */
static void
start_serving(struct splitmxd *d)
{
	static const int signos[3] = { SIGTERM, SIGINT, SIGHUP };
	int i;

	for (i = 0; i < 3; i++) {
		d->sigs[i] = evsignal_new(d->base, signos[i], signal_cb, d);
		if (d->sigs[i] == NULL || evsignal_add(d->sigs[i], NULL) == -1)
			log_fatalx(EX_OSERR, "cannot watch signal %d",
			    signos[i]);
	}
	d->verify = verify_new(d->base, d->conf, d->dns, d->hostname);
	smtp_server_set_verify(d->server, d->verify);
	smtp_server_set_dns(d->server, d->dns);
	smtp_server_set_srs(d->server, d->srs);
	/*
	 * SPF and DKIM get threads of their own: behind fsync jobs they would
	 * add a disk flush of latency to every message.
	 */
	d->auth_workers = workers_new(d->base, d->conf->workers);
	smtp_server_set_workers(d->server, d->auth_workers);
	smtp_server_set_file_max(d->server, d->file_max);
	smtp_server_start(d->server, d->spool, accepted_cb, d);
	log_info("splitmxd %s started", SPLITMXD_VERSION);
}

static void
run_loop(struct splitmxd *d)
{
	if (event_base_dispatch(d->base) == -1)
		log_warnx("event loop failed");
}

static void
shut_down(struct splitmxd *d)
{
	int i;

	/*
	 * Commits in flight finish first; their callbacks run inside
	 * workers_free while the sessions they name still exist.
	 */
	queue_shutdown(d->queue);
	spool_close(d->spool);
	workers_free(d->auth_workers);
	workers_free(d->queue_workers);
	workers_free(d->workers);
	queue_free(d->queue);
	dedup_close(d->dedup);
	/* Sessions cancel their pending probes, which verify_free frees. */
	smtp_server_free(d->server);
	auth_srs_free(d->srs);
	d->srs = NULL;
	verify_free(d->verify);
	dns_free(d->dns);
	smtp_client_shutdown();
	if (d->drain != NULL)
		event_free(d->drain);
	for (i = 0; i < 3; i++)
		event_free(d->sigs[i]);
	/* Let libevent finish freeing bufferevents whose release it deferred. */
	(void)event_base_loop(d->base, EVLOOP_NONBLOCK);
	event_base_free(d->base);
	log_info("splitmxd stopped");
}

/* What the config check leaves behind: also the exit from -n and errors. */
static int
release_config(struct splitmxd *d, int code)
{
	auth_srs_free(d->srs);
	conf_free(d->conf);
	sbuf_release(&d->err);
	return code;
}

int
main(int argc, char *argv[])
{
	struct splitmxd d;
	int rc;

	memset(&d, 0, sizeof(d));
	parse_args(&d, argc, argv);
	sbuf_init(&d.err, 8192);
	if ((rc = load_config(&d)) != 0)
		return release_config(&d, rc);
	if (d.check_only) {
		(void)printf("splitmxd: %s: configuration OK\n", d.conf_path);
		return release_config(&d, 0);
	}
	start_logging(&d);
	size_fd_limits(&d);
	open_listeners(&d);
	detach(&d);
	open_spool(&d);
	drop_privileges(&d);
	start_queue(&d);
	recover_spool(&d);
	start_serving(&d);
	run_loop(&d);
	shut_down(&d);
	return release_config(&d, 0);
}
