/*
 * spool.c - the durable message store: opening, closing, shared helpers.
 *
 * Owns DIR/{tmp,queue,corrupt}/ and DIR/journal; no other code writes
 * them (the read side is spool_read.c, global tier). A message is written
 * by the loop (spool_msg.c), finished and fsynced by a worker, and
 * committed by one committer thread in groups (spool_commit.c): journal
 * record, rename into queue/, one fsync of queue/, then the callback
 * (rule 1). Start-up recovery is spool_recover.c. Format: splitmx-spool(5).
 */

#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "smtp_proto.h"
#include "spool.h"
#include "spool_codec.h"
#include "spool_read.h"
#include "workers.h"
#include "xmalloc.h"
#include "spool_int.h"

static int spool_open_subdir(int dirfd, const char *name, bool *created,
    struct sbuf *err);
static void spool_close_fd(int *fdp, const char *what);
static void spool_release(struct spool *sp);

void
spool_check(int rc, const char *what)
{
	if (rc != 0)
		log_panic("spool: %s: %s", what, strerror(rc));
}

void
spool_lock(struct spool *sp)
{
	spool_check(pthread_mutex_lock(&sp->mtx), "pthread_mutex_lock");
}

void
spool_unlock(struct spool *sp)
{
	spool_check(pthread_mutex_unlock(&sp->mtx), "pthread_mutex_unlock");
}

/* Records the first failure of msg; later ones keep the first reason. */
void
spool_msg_fail(struct spool_msg *msg, const char *fmt, ...)
{
	va_list ap;

	if (msg->failed)
		return;
	msg->failed = true;
	va_start(ap, fmt);
	/* A truncated reason is still a reason. */
	(void)vsnprintf(msg->err, sizeof(msg->err), fmt, ap);
	va_end(ap);
}

void
spool_break(struct spool *sp, const char *why)
{
	if (atomic_load(&sp->broken))
		return;
	(void)snprintf(sp->broken_why, sizeof(sp->broken_why), "%s", why);
	atomic_store(&sp->broken, true);
	log_warnx("spool: refusing new mail until restart: %s", why);
}

void
spool_timestamp(char *out, size_t outlen)
{
	spool_now(out, outlen);
}

void
spool_now(char *out, size_t outlen)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		log_panic("spool: clock_gettime: %s", strerror(errno));
	spool_time_format(&ts, out, outlen);
}

/* write() all of it; -1 with errno set. */
int
spool_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
spool_pwrite_all(int fd, const void *data, size_t len, off_t off)
{
	const char *p = data;
	ssize_t n;

	while (len > 0) {
		if ((n = pwrite(fd, p, len, off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Removes tmp/ID of a failed message (committer or worker). */
void
spool_unlink_tmp(struct spool *sp, const char *id)
{
	if (unlinkat(sp->tmpfd, id, 0) == -1 && errno != ENOENT)
		log_warn("spool: unlink tmp/%s", id);
}

/* Never lets a new file replace a queued one (same id after a clock step). */
int
spool_rename_noreplace(int fromfd, const char *from, int tofd, const char *to)
{
	struct stat st;

	if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* Filesystems without RENAME_NOREPLACE: check, then rename. */
	if (fstatat(tofd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	return renameat(fromfd, from, tofd, to);
}

void
spool_inflight_done(struct spool *sp, unsigned n)
{
	spool_lock(sp);
	if (atomic_fetch_sub(&sp->inflight, n) == n)
		spool_check(pthread_cond_broadcast(&sp->idle_cond),
		    "pthread_cond_broadcast");
	spool_unlock(sp);
}

int
spool_chdir(struct spool *sp, struct sbuf *err)
{
	if (fchdir(sp->dirfd) == -1) {
		sbuf_seterr(err, "chdir %s: %s", sp->dir, strerror(errno));
		return -1;
	}
	return 0;
}

static int
spool_open_subdir(int dirfd, const char *name, bool *created, struct sbuf *err)
{
	int fd;

	if (mkdirat(dirfd, name, 0750) == 0)
		*created = true;
	else if (errno != EEXIST) {
		sbuf_seterr(err, "mkdir %s: %s", name, strerror(errno));
		return -1;
	}
	fd = openat(dirfd, name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		sbuf_seterr(err, "open %s: %s", name, strerror(errno));
	return fd;
}

static void
spool_close_fd(int *fdp, const char *what)
{
	if (*fdp != -1 && close(*fdp) == -1)
		log_warn("spool: close %s", what);
	*fdp = -1;
}

static void
spool_release(struct spool *sp)
{
	spool_close_fd(&sp->tmpfd, "tmp/");
	spool_close_fd(&sp->queuefd, "queue/");
	spool_close_fd(&sp->corruptfd, "corrupt/");
	spool_log_close(sp);
	spool_close_fd(&sp->journalfd, "journal");
	spool_close_fd(&sp->sparefd, "/dev/null");
	spool_close_fd(&sp->dirfd, sp->dir);
	spool_reader_close(sp->rd);
	EVP_MD_free(sp->md);
	sbuf_release(&sp->jbuf);
	sbuf_release(&sp->jbacklog);
	spool_check(pthread_cond_destroy(&sp->cq_cond), "pthread_cond_destroy");
	spool_check(pthread_cond_destroy(&sp->idle_cond),
	    "pthread_cond_destroy");
	spool_check(pthread_mutex_destroy(&sp->mtx), "pthread_mutex_destroy");
	spool_check(pthread_mutex_destroy(&sp->pool_mtx),
	    "pthread_mutex_destroy");
	free(sp->pool);
	free(sp->dir);
	free(sp);
}

struct spool *
spool_open(const char *dir, struct workers *w, struct sbuf *err)
{
	struct spool *sp;
	struct stat tst, qst;
	pthread_condattr_t cattr;
	bool created = false;
	char last;
	int rc;

	sp = xcalloc(1, sizeof(*sp));
	sp->dir = xstrdup(dir);
	sp->w = w;
	sp->dirfd = sp->tmpfd = sp->queuefd = sp->corruptfd = -1;
	sp->journalfd = -1;
	sp->log.dirfd = sp->log.fd = -1;
	/* Given up when the descriptors run out, so a message still fits. */
	sp->sparefd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sp->cq_tail = &sp->cq_head;
	sp->jq_tail = &sp->jq_head;
	atomic_init(&sp->inflight, 0);
	atomic_init(&sp->pending, 0);
	atomic_init(&sp->receiving, 0);
	atomic_init(&sp->broken, false);
	sbuf_init(&sp->jbuf, SPOOL_JBATCH_MAX);
	sbuf_init(&sp->jbacklog, SPOOL_BACKLOG_MAX);
	sp->journal_max = (uint64_t)64 << 20;
	sp->journal_retention = 90 * 24 * 60 * 60;
	spool_check(pthread_mutex_init(&sp->mtx, NULL), "pthread_mutex_init");
	spool_check(pthread_mutex_init(&sp->pool_mtx, NULL),
	    "pthread_mutex_init");
	/* The committer's timed waits run on the monotonic clock. */
	spool_check(pthread_condattr_init(&cattr), "pthread_condattr_init");
	spool_check(pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC),
	    "pthread_condattr_setclock");
	spool_check(pthread_cond_init(&sp->cq_cond, &cattr),
	    "pthread_cond_init");
	spool_check(pthread_condattr_destroy(&cattr),
	    "pthread_condattr_destroy");
	spool_check(pthread_cond_init(&sp->idle_cond, NULL),
	    "pthread_cond_init");

	if (mkdir(dir, 0750) == 0)
		created = true;
	else if (errno != EEXIST) {
		sbuf_seterr(err, "mkdir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		sbuf_seterr(err, "open %s: %s", dir, strerror(errno));
		goto fail;
	}
	/* One daemon per spool: the lock dies with the process. */
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) == -1) {
		sbuf_seterr(err, "%s: %s", dir,
		    errno == EWOULDBLOCK ? "in use by another process" :
		                           strerror(errno));
		goto fail;
	}
	if ((sp->tmpfd = spool_open_subdir(sp->dirfd, "tmp", &created, err)) ==
	        -1 ||
	    (sp->queuefd = spool_open_subdir(sp->dirfd, "queue", &created,
	         err)) == -1 ||
	    (sp->corruptfd = spool_open_subdir(sp->dirfd, "corrupt", &created,
	         err)) == -1)
		goto fail;
	if (fstat(sp->tmpfd, &tst) == -1 || fstat(sp->queuefd, &qst) == -1) {
		sbuf_seterr(err, "fstat: %s", strerror(errno));
		goto fail;
	}
	if (tst.st_dev != qst.st_dev) {
		sbuf_seterr(err, "%s: tmp and queue on different filesystems",
		    dir);
		goto fail;
	}

	if (spool_rotate_fixup(sp, err) == -1)
		goto fail;
	sp->journalfd = openat(sp->dirfd, "journal",
	    O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (sp->journalfd == -1) {
		sbuf_seterr(err, "open journal: %s", strerror(errno));
		goto fail;
	}
	if (fstat(sp->journalfd, &tst) == -1) {
		sbuf_seterr(err, "fstat journal: %s", strerror(errno));
		goto fail;
	}
	sp->journal_off = (uint64_t)tst.st_size;

	/* A record torn by a crash must not swallow the next one. */
	if (tst.st_size > 0) {
		if (pread(sp->journalfd, &last, 1, tst.st_size - 1) != 1) {
			sbuf_seterr(err, "read journal: %s", strerror(errno));
			goto fail;
		}
		if (last != '\n') {
			if (spool_write_all(sp->journalfd, "\n", 1) == -1 ||
			    fdatasync(sp->journalfd) == -1) {
				sbuf_seterr(err, "repair journal: %s",
				    strerror(errno));
				goto fail;
			}
			sp->journal_off++;
			log_warnx("spool: journal ended in a torn record");
		}
	} else
		created = true;
	if (created && (fsync(sp->journalfd) == -1 || fsync(sp->dirfd) == -1)) {
		sbuf_seterr(err, "fsync %s: %s", dir, strerror(errno));
		goto fail;
	}
	/* Format 2: what the log holds past the checkpoint comes back. */
	if (spool_log_open(sp, err) == -1)
		goto fail;
	if (fstat(sp->journalfd, &tst) == -1) {
		sbuf_seterr(err, "fstat journal: %s", strerror(errno));
		goto fail;
	}
	sp->journal_off = (uint64_t)tst.st_size;

	if ((sp->rd = spool_reader_open(dir, err)) == NULL)
		goto fail;
	if ((sp->md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
		sbuf_seterr(err, "SHA-256 not available");
		goto fail;
	}
	if (getrandom(&sp->id_seq, sizeof(sp->id_seq), 0) !=
	    (ssize_t)sizeof(sp->id_seq)) {
		sbuf_seterr(err, "getrandom: %s", strerror(errno));
		goto fail;
	}
	if ((rc = pthread_create(&sp->committer, NULL, spool_committer_main,
	         sp)) != 0) {
		sbuf_seterr(err, "pthread_create: %s", strerror(rc));
		goto fail;
	}
	sp->committer_started = true;
	return sp;
fail:
	spool_release(sp);
	return NULL;
}

void
spool_close(struct spool *sp)
{
	struct spool_file *f;

	if (sp == NULL)
		return;
	spool_lock(sp);
	/* Workers must still run: they hand each message to the committer. */
	while (atomic_load(&sp->inflight) > 0)
		spool_check(pthread_cond_wait(&sp->idle_cond, &sp->mtx),
		    "pthread_cond_wait");
	sp->stopping = true;
	spool_check(pthread_cond_signal(&sp->cq_cond), "pthread_cond_signal");
	spool_unlock(sp);
	if (sp->committer_started)
		spool_check(pthread_join(sp->committer, NULL), "pthread_join");
	/* A thread that queued the last work may not have signalled yet. */
	while (atomic_load(&sp->signalling) > 0)
		(void)sched_yield();
	/* Unused pre-created files would look like lost messages later. */
	for (; sp->pool_n > 0; sp->pool_n--) {
		f = &sp->pool[sp->pool_head];
		sp->pool_head = (sp->pool_head + 1) % sp->pool_max;
		spool_close_fd(&f->fd, "tmp file");
		spool_unlink_tmp(sp, f->id);
	}
	spool_release(sp);
}

const struct spool_reader *
spool_reader(const struct spool *sp)
{
	return sp->rd;
}

unsigned
spool_pending(const struct spool *sp)
{
	return atomic_load(&sp->pending);
}
