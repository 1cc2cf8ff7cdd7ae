/*
 * spool.c - the durable message store and the journal.
 *
 * Owns DIR/{tmp,queue,corrupt}/ and DIR/journal; no other code touches them.
 * The loop thread only creates (or takes a pre-created) tmp file and
 * write()s it. Everything that waits for the disk runs elsewhere: a worker
 * writes the last buffer, pwrite()s the size/sha256 record, fsync()s and
 * closes each file, then one committer thread takes every
 * message that is ready as a batch, writes their "accepted" journal records
 * with one write and one fdatasync, renames them into queue/ and fsyncs
 * queue/ once. Only then is the commit callback posted (rule 1). A failed
 * fsync is never retried on the same fd. Format: splitmx-spool(5).
 */
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
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

#define SPOOL_BUF_SIZE		(64 * 1024)	/* content write buffer */
#define SPOOL_JBATCH_MAX	((size_t)1 << 40) /* bounded by batch size */
#define SPOOL_ERR_LEN		256
/*
 * Creating a file can wait for the filesystem journal (ext4 under commit
 * load: a median of 250 us, tens of ms behind a commit, measured here).
 * With spool_set_precreate, workers create tmp files ahead of need and
 * spool_msg_new only takes one.
 */
#define SPOOL_POOL_MAX		4096
#define SPOOL_POOL_JOBS		2	/* refill jobs at once */
struct spool_file {
	int	fd;
	char	id[SPOOL_ID_LEN + 1];
};

struct spool {
	char			*dir;
	struct workers		*w;
	int			 dirfd;
	int			 tmpfd;
	int			 queuefd;	/* committer, recovery */
	int			 corruptfd;
	int			 journalfd;	/* committer, recovery */
	struct spool_reader	*rd;		/* the read side, any thread */
	EVP_MD			*md;

	/* Loop thread only. */
	char			 new_err[SPOOL_ERR_LEN];

	pthread_mutex_t		 pool_mtx;	/* everything down to started */
	uint64_t		 last_us;	/* id clock, strictly rising */
	uint32_t		 id_seq;	/* id tail, random start */
	struct spool_file	*pool;		/* FIFO ring of pool_max */
	unsigned		 pool_max;	/* 0: no pre-creation */
	unsigned		 pool_low;	/* refill below this */
	unsigned		 pool_head;
	unsigned		 pool_n;
	unsigned		 pool_creating;
	unsigned		 pool_jobs;	/* refill jobs queued */
	bool			 pool_failing;	/* last creation failed */
	bool			 started;	/* tmp/ in use: no recovery */

	pthread_t		 committer;
	bool			 committer_started;
	pthread_mutex_t		 mtx;		/* cq_*, stopping, inflight 0 */
	pthread_cond_t		 cq_cond;	/* committer: work or stop */
	pthread_cond_t		 idle_cond;	/* spool_close: inflight 0 */
	struct spool_msg	*cq_head;
	struct spool_msg	**cq_tail;
	struct spool_jq	*jq_head;	/* delivery records */
	struct spool_jq	**jq_tail;
	bool			 stopping;
	atomic_uint		 inflight;	/* jobs that use sp */
	atomic_uint		 pending;	/* commits not yet decided */

	/* Committer thread (or recovery, before any commit) only. */
	uint64_t		 journal_off;
	struct sbuf		 jbuf;

	/* Set once, never cleared: the spool refuses new mail. */
	atomic_bool		 broken;
	char			 broken_why[SPOOL_ERR_LEN];
};

struct spool_msg {
	struct spool_msg	*next;		/* committer queue */
	struct spool		*sp;		/* not used on completion */
	char			 id[SPOOL_ID_LEN + 1];
	int			 fd;
	uint64_t		 size;		/* content octets */
	uint64_t		 content_off;	/* where the content starts */
	EVP_MD_CTX		*sha;
	char			 sha_hex[65];
	unsigned char		*buf;
	size_t			 buflen;
	bool			 failed;	/* sticky */
	bool			 journaled;	/* accepted record durable */
	bool			 renamed;	/* now queue/ID */
	char			 err[SPOOL_ERR_LEN];
	char			*sender;	/* for the accepted record */
	struct sbuf		 jenv;		/* its envelope fields */
	struct sbuf		 jline;		/* whole record, no timestamp */
	struct sbuf		 prepend;	/* escaped, for line 3 */
	spool_commit_cb		 cb;
	void			*cbarg;
};

/* Journal records from the queue (delivery states), group-committed. */
struct spool_jq {
	struct spool_jq	*next;
	struct spool		*sp;
	char			*data;		/* complete '\n'-ended lines */
	size_t			 len;
	char			 remove_id[SPOOL_ID_LEN + 1];	/* "" none */
	int			 status;
	spool_done_cb		 cb;
	void			*cbarg;
};

static void spool_now(char *, size_t);

static const char spool_b32[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

static void
spool_check(int rc, const char *what)
{
	if (rc != 0)
		log_panic("spool: %s: %s", what, strerror(rc));
}

static void
spool_lock(struct spool *sp)
{
	spool_check(pthread_mutex_lock(&sp->mtx), "pthread_mutex_lock");
}

static void
spool_unlock(struct spool *sp)
{
	spool_check(pthread_mutex_unlock(&sp->mtx), "pthread_mutex_unlock");
}

static void
spool_msg_fail(struct spool_msg *msg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the first failure of msg; later ones keep the first reason. */
static void
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

static void
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

static void
spool_now(char *out, size_t outlen)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		log_panic("spool: clock_gettime: %s", strerror(errno));
	spool_time_format(&ts, out, outlen);
}

/* write() all of it; -1 with errno set. */
static int
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

static int
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

/* Sticky: flushes msg's buffer (loop thread before commit, then worker). */
static void
spool_msg_flush(struct spool_msg *msg)
{
	if (msg->failed || msg->buflen == 0)
		return;
	if (spool_write_all(msg->fd, msg->buf, msg->buflen) == -1)
		spool_msg_fail(msg, "write: %s", strerror(errno));
	msg->buflen = 0;
}

static void
spool_msg_free(struct spool_msg *msg)
{
	EVP_MD_CTX_free(msg->sha);
	sbuf_release(&msg->prepend);
	free(msg->buf);
	free(msg->sender);
	sbuf_release(&msg->jenv);
	sbuf_release(&msg->jline);
	free(msg);
}

/* "TS verb id=ID reason=..." into sb; dropped (and logged) past the cap. */
static void
spool_journal_discard(struct sbuf *sb, const char *ts, const char *verb,
    const char *id, const char *reason)
{
	struct spool_jrec_out w;

	spool_jrec_begin(&w, sb, ts, verb, id);
	spool_jrec_str(&w, "reason", reason);
	if (spool_jrec_end(&w) == -1)
		log_warnx("spool: journal record for %s dropped (too long)",
		    id);
}

/*
 * Appends sb to the journal and makes it durable. On a write error the
 * partial record is cut off again; a failed fdatasync closes the journal
 * for good (the kernel may have dropped the dirty pages: retrying would
 * report success for data that is gone) and breaks the spool.
 */
static int
spool_journal_write(struct spool *sp, const struct sbuf *sb,
    struct sbuf *why)
{
	if (sb->len == 0)
		return 0;
	if (atomic_load(&sp->broken) || sp->journalfd == -1)
		return sbuf_seterr(why, "%s", sp->broken_why);
	if (spool_write_all(sp->journalfd, sb->data, sb->len) == -1) {
		sbuf_seterr(why, "journal write: %s", strerror(errno));
		log_warnx("spool: %s", why->data);
		if (ftruncate(sp->journalfd, (off_t)sp->journal_off) == -1) {
			log_warn("spool: journal truncate");
			spool_break(sp, why->data);
		}
		return -1;
	}
	if (fdatasync(sp->journalfd) == -1) {
		sbuf_seterr(why, "journal fdatasync: %s", strerror(errno));
		spool_break(sp, why->data);
		if (close(sp->journalfd) == -1)
			log_warn("spool: journal close");
		sp->journalfd = -1;
		return -1;
	}
	sp->journal_off += sb->len;
	return 0;
}

/* Removes tmp/ID of a failed message (committer or worker). */
static void
spool_unlink_tmp(struct spool *sp, const char *id)
{
	if (unlinkat(sp->tmpfd, id, 0) == -1 && errno != ENOENT)
		log_warn("spool: unlink tmp/%s", id);
}

/* Never lets a new file replace a queued one (same id after a clock step). */
static int
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

static void
spool_inflight_done(struct spool *sp, unsigned n)
{
	spool_lock(sp);
	if (atomic_fetch_sub(&sp->inflight, n) == n)
		spool_check(pthread_cond_broadcast(&sp->idle_cond),
		    "pthread_cond_broadcast");
	spool_unlock(sp);
}

/* Loop thread: tells the SMTP layer, then forgets the message. */
static void
spool_commit_done(void *arg)
{
	struct spool_msg *msg = arg;

	msg->cb(msg->cbarg, msg->failed ? -1 : 0, msg->id,
	    msg->failed ? msg->err : NULL);
	spool_msg_free(msg);
}

static void
spool_reopen_queue(struct spool *sp)
{
	/* Never fsync this fd again: its error state is not to be trusted. */
	if (close(sp->queuefd) == -1)
		log_warn("spool: close queue/");
	sp->queuefd = openat(sp->dirfd, "queue",
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sp->queuefd == -1) {
		log_warn("spool: reopen queue/");
		spool_break(sp, "cannot reopen queue directory");
	}
}

/*
 * One group commit: journal every ready message with one write and one
 * fdatasync, rename each into queue/, fsync queue/ once, then post every
 * callback. The order matters: the "accepted" record is durable before the
 * file can be seen in queue/, and queue/ is durable before any 250.
 */
static void
spool_commit_batch(struct spool *sp, struct spool_msg *batch)
{
	struct spool_msg *m, *next;
	char ts[SPOOL_TS_LEN + 1];
	struct sbuf why;
	bool renamed = false, late = false;
	unsigned n = 0;
	size_t start;

	sbuf_init(&why, SPOOL_ERR_LEN);
	spool_now(ts, sizeof(ts));
	sbuf_reset(&sp->jbuf);
	for (m = batch; m != NULL; m = m->next) {
		n++;
		if (!m->failed && atomic_load(&sp->broken))
			spool_msg_fail(m, "%s", sp->broken_why);
		start = sp->jbuf.len;
		/* jline is the whole record but its time stamp. */
		if (!m->failed && (sbuf_printf(&sp->jbuf, "%s ", ts) == -1 ||
		    sbuf_append(&sp->jbuf, m->jline.data, m->jline.len) == -1)) {
			sbuf_truncate(&sp->jbuf, start);
			spool_msg_fail(m, "journal batch too large");
		}
		if (m->failed) {
			spool_unlink_tmp(sp, m->id);
			spool_journal_discard(&sp->jbuf, ts, "discarded", m->id,
			    m->err);
		}
	}
	if (spool_journal_write(sp, &sp->jbuf, &why) == -1) {
		for (m = batch; m != NULL; m = m->next)
			if (!m->failed) {
				spool_msg_fail(m, "%s", why.data);
				spool_unlink_tmp(sp, m->id);
			}
	} else
		for (m = batch; m != NULL; m = m->next)
			if (!m->failed)
				m->journaled = true;

	for (m = batch; m != NULL; m = m->next) {
		if (m->failed)
			continue;
		if (sp->queuefd == -1 || spool_rename_noreplace(sp->tmpfd,
		    m->id, sp->queuefd, m->id) == -1) {
			spool_msg_fail(m, "rename into queue: %s",
			    sp->queuefd == -1 ? "no queue directory" :
			    strerror(errno));
			spool_unlink_tmp(sp, m->id);
			continue;
		}
		m->renamed = true;
		renamed = true;
	}
	if (renamed && fsync(sp->queuefd) == -1) {
		/* Not durable: undo, so nothing here is ever acknowledged. */
		sbuf_seterr(&why, "fsync queue directory: %s", strerror(errno));
		log_warnx("spool: %s", why.data);
		for (m = batch; m != NULL; m = m->next) {
			if (!m->renamed)
				continue;
			if (unlinkat(sp->queuefd, m->id, 0) == -1)
				log_warn("spool: unlink queue/%s", m->id);
			m->renamed = false;
			spool_msg_fail(m, "%s", why.data);
		}
		spool_reopen_queue(sp);
	}

	/* Cancel "accepted" records whose message did not make it. */
	sbuf_reset(&sp->jbuf);
	for (m = batch; m != NULL; m = m->next)
		if (m->failed && m->journaled) {
			spool_journal_discard(&sp->jbuf, ts, "discarded", m->id,
			    m->err);
			late = true;
		}
	if (late && spool_journal_write(sp, &sp->jbuf, &why) == -1)
		log_warnx("spool: discarded records not journaled: %s",
		    why.data);
	sbuf_release(&why);

	/* Post before pending drops, so pending + busy never read 0 early. */
	for (m = batch; m != NULL; m = next) {
		next = m->next;
		workers_post(sp->w, spool_commit_done, m);
	}
	atomic_fetch_sub(&sp->pending, n);
	spool_inflight_done(sp, n);
}

static void
spool_jq_done(void *arg)
{
	struct spool_jq *r = arg;

	if (r->cb != NULL)
		r->cb(r->cbarg, r->status);
	free(r->data);
	free(r);
}

/*
 * Delivery records: one write and one fdatasync for the batch, then the
 * removals it allows. A removal need not be durable: should it be lost,
 * recovery finds every target final in the journal and removes again.
 */
static void
spool_jq_batch(struct spool *sp, struct spool_jq *batch)
{
	struct spool_jq *r, *next;
	struct sbuf why;
	unsigned n = 0;
	int status;

	sbuf_init(&why, SPOOL_ERR_LEN);
	sbuf_reset(&sp->jbuf);
	for (r = batch; r != NULL; r = r->next) {
		n++;
		/* A record that does not fit is not written: it says so. */
		r->status = sbuf_append(&sp->jbuf, r->data, r->len);
		if (r->status == -1)
			log_warnx("spool: journal batch too large");
	}
	status = spool_journal_write(sp, &sp->jbuf, &why);
	if (status == -1)
		log_warnx("spool: delivery records not journaled: %s",
		    why.data);
	sbuf_release(&why);
	for (r = batch; r != NULL; r = next) {
		next = r->next;
		if (status == -1)
			r->status = -1;
		if (r->status == 0 && r->remove_id[0] != '\0' &&
		    unlinkat(sp->queuefd, r->remove_id, 0) == -1 &&
		    errno != ENOENT)
			log_warn("spool: unlink queue/%s", r->remove_id);
		workers_post(sp->w, spool_jq_done, r);
	}
	spool_inflight_done(sp, n);
}

static void *
spool_committer_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_msg *batch;
	struct spool_jq *jbatch;

	spool_lock(sp);
	for (;;) {
		while (sp->cq_head == NULL && sp->jq_head == NULL &&
		    !sp->stopping)
			spool_check(pthread_cond_wait(&sp->cq_cond, &sp->mtx),
			    "pthread_cond_wait");
		if (sp->cq_head == NULL && sp->jq_head == NULL)
			break;
		batch = sp->cq_head;
		sp->cq_head = NULL;
		sp->cq_tail = &sp->cq_head;
		jbatch = sp->jq_head;
		sp->jq_head = NULL;
		sp->jq_tail = &sp->jq_head;
		spool_unlock(sp);
		if (batch != NULL)
			spool_commit_batch(sp, batch);
		if (jbatch != NULL)
			spool_jq_batch(sp, jbatch);
		spool_lock(sp);
	}
	spool_unlock(sp);
	return NULL;
}

void
spool_journal_append(struct spool *sp, const char *data, size_t len,
    const char *remove_id, spool_done_cb cb, void *arg)
{
	struct spool_jq *r = xcalloc(1, sizeof(*r));

	r->sp = sp;
	r->data = xmalloc(len + 1);
	memcpy(r->data, data, len);
	r->len = len;
	if (remove_id != NULL) {
		if (!spool_id_valid(remove_id))
			log_panic("spool: bad id to remove");
		memcpy(r->remove_id, remove_id, SPOOL_ID_LEN + 1);
	}
	r->cb = cb;
	r->cbarg = arg;
	atomic_fetch_add(&sp->inflight, 1);
	spool_lock(sp);
	*sp->jq_tail = r;
	sp->jq_tail = &r->next;
	spool_check(pthread_cond_signal(&sp->cq_cond), "pthread_cond_signal");
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

static int spool_move_corrupt(struct spool *, const char *, struct sbuf *);

int
spool_quarantine(struct spool *sp, const char *id)
{
	struct sbuf dest;
	int rc;

	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	sbuf_init(&dest, 64);
	rc = spool_move_corrupt(sp, id, &dest);
	sbuf_release(&dest);
	return rc;
}

static void
spool_committer_enqueue(struct spool *sp, struct spool_msg *msg)
{
	msg->next = NULL;
	spool_lock(sp);
	*sp->cq_tail = msg;
	sp->cq_tail = &msg->next;
	spool_check(pthread_cond_signal(&sp->cq_cond), "pthread_cond_signal");
	spool_unlock(sp);
}

/*
 * Worker: finishes the file (last buffer, size/sha256 record), fsyncs and
 * closes it, and hands it to the committer whatever happened.
 */
static void
spool_sync_job(void *arg)
{
	struct spool_msg *msg = arg;
	char sum[SPOOL_SUM_LEN + 1];

	spool_msg_flush(msg);
	if (!msg->failed) {
		spool_hdr_format_sum(sum, msg->size, msg->sha_hex);
		if (spool_pwrite_all(msg->fd, sum, SPOOL_SUM_LEN,
		    (off_t)SPOOL_LINE1_LEN) == -1)
			spool_msg_fail(msg, "write: %s", strerror(errno));
	}
	if (!msg->failed && msg->prepend.len > 0 &&
	    spool_pwrite_all(msg->fd, msg->prepend.data, msg->prepend.len,
	    (off_t)SPOOL_PREPEND_OFF) == -1)
		spool_msg_fail(msg, "write: %s", strerror(errno));
	if (!msg->failed && fsync(msg->fd) == -1)
		spool_msg_fail(msg, "fsync: %s", strerror(errno));
	/* After fsync, close may still report a deferred write error. */
	if (close(msg->fd) == -1)
		spool_msg_fail(msg, "close: %s", strerror(errno));
	msg->fd = -1;
	free(msg->buf);
	msg->buf = NULL;
	spool_committer_enqueue(msg->sp, msg);
}

static void
spool_abort_job(void *arg)
{
	struct spool_msg *msg = arg;
	struct spool *sp = msg->sp;

	/* Nothing of it is kept: a close error does not matter. */
	if (msg->fd != -1 && close(msg->fd) == -1)
		log_warn("spool: close tmp/%s", msg->id);
	spool_unlink_tmp(sp, msg->id);
	spool_msg_free(msg);
	spool_inflight_done(sp, 1);
}

/* ---- opening and closing ---- */

static int
spool_open_subdir(int dirfd, const char *name, bool *created,
    struct sbuf *err)
{
	int fd;

	if (mkdirat(dirfd, name, 0750) == 0)
		*created = true;
	else if (errno != EEXIST) {
		sbuf_seterr(err, "mkdir %s: %s", name, strerror(errno));
		return -1;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
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
	spool_close_fd(&sp->journalfd, "journal");
	spool_close_fd(&sp->dirfd, sp->dir);
	spool_reader_close(sp->rd);
	EVP_MD_free(sp->md);
	sbuf_release(&sp->jbuf);
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
	bool created = false;
	char last;
	int rc;

	sp = xcalloc(1, sizeof(*sp));
	sp->dir = xstrdup(dir);
	sp->w = w;
	sp->dirfd = sp->tmpfd = sp->queuefd = sp->corruptfd = -1;
	sp->journalfd = -1;
	sp->cq_tail = &sp->cq_head;
	sp->jq_tail = &sp->jq_head;
	atomic_init(&sp->inflight, 0);
	atomic_init(&sp->pending, 0);
	atomic_init(&sp->broken, false);
	sbuf_init(&sp->jbuf, SPOOL_JBATCH_MAX);
	spool_check(pthread_mutex_init(&sp->mtx, NULL), "pthread_mutex_init");
	spool_check(pthread_mutex_init(&sp->pool_mtx, NULL),
	    "pthread_mutex_init");
	spool_check(pthread_cond_init(&sp->cq_cond, NULL), "pthread_cond_init");
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
	if ((sp->tmpfd = spool_open_subdir(sp->dirfd, "tmp", &created,
	    err)) == -1 ||
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

	sp->journalfd = openat(sp->dirfd, "journal", O_RDWR | O_APPEND |
	    O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (sp->journalfd == -1) {
		sbuf_seterr(err, "open journal: %s", strerror(errno));
		goto fail;
	}
	/* One daemon per spool: the lock dies with the process. */
	if (flock(sp->journalfd, LOCK_EX | LOCK_NB) == -1) {
		sbuf_seterr(err, "%s: %s", dir, errno == EWOULDBLOCK ?
		    "in use by another process" : strerror(errno));
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
	if (created && (fsync(sp->journalfd) == -1 ||
	    fsync(sp->dirfd) == -1)) {
		sbuf_seterr(err, "fsync %s: %s", dir, strerror(errno));
		goto fail;
	}

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

/* ---- writing a message ---- */

/* Loop thread: a fresh, strictly rising id (see splitmx-spool(5)). */
static void
spool_new_id(struct spool *sp, char id[SPOOL_ID_LEN + 1])
{
	struct timespec ts;
	uint64_t us;
	uint32_t tail;
	int i;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		log_panic("spool: clock_gettime: %s", strerror(errno));
	us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	if (us <= sp->last_us)
		us = sp->last_us + 1;
	sp->last_us = us;
	for (i = 10; i >= 0; i--) {
		id[i] = spool_b32[us & 31];
		us >>= 5;
	}
	tail = sp->id_seq++;
	for (i = 15; i >= 11; i--) {
		id[i] = spool_b32[tail & 31];
		tail >>= 5;
	}
	id[SPOOL_ID_LEN] = '\0';
}

static void
spool_pool_lock(struct spool *sp)
{
	spool_check(pthread_mutex_lock(&sp->pool_mtx), "pthread_mutex_lock");
}

static void
spool_pool_unlock(struct spool *sp)
{
	spool_check(pthread_mutex_unlock(&sp->pool_mtx),
	    "pthread_mutex_unlock");
}

/* Creates tmp/ID under a fresh id; any thread. -1 with errno set. */
static int
spool_create_tmp(struct spool *sp, char id[SPOOL_ID_LEN + 1])
{
	int fd = -1, tries;

	for (tries = 0; tries < 4; tries++) {
		spool_pool_lock(sp);
		spool_new_id(sp, id);
		spool_pool_unlock(sp);
		fd = openat(sp->tmpfd, id, O_RDWR | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd != -1 || errno != EEXIST)
			break;
	}
	return fd;
}

/* Worker: tops the pool of empty tmp files up to pool_max. */
static void
spool_pool_refill_job(void *arg)
{
	struct spool *sp = arg;
	struct spool_file *f;
	char id[SPOOL_ID_LEN + 1];
	bool more, report;
	int fd, saved;

	for (;;) {
		spool_pool_lock(sp);
		more = sp->pool_n + sp->pool_creating < sp->pool_max;
		if (more)
			sp->pool_creating++;
		else
			sp->pool_jobs--;
		spool_pool_unlock(sp);
		if (!more)
			break;

		fd = spool_create_tmp(sp, id);
		saved = errno;

		spool_pool_lock(sp);
		report = fd == -1 && !sp->pool_failing;
		sp->pool_creating--;
		if (fd != -1) {
			f = &sp->pool[(sp->pool_head + sp->pool_n) %
			    sp->pool_max];
			f->fd = fd;
			memcpy(f->id, id, sizeof(f->id));
			sp->pool_n++;
			sp->pool_failing = false;
		} else {
			/* spool_msg_new retries itself and reports it. */
			sp->pool_failing = true;
			sp->pool_jobs--;
		}
		spool_pool_unlock(sp);
		if (report)
			log_warnx("spool: cannot create tmp files: %s",
			    strerror(saved));
		if (fd == -1)
			break;
	}
	spool_inflight_done(sp, 1);
}

void
spool_set_precreate(struct spool *sp, unsigned n)
{
	if (n > SPOOL_POOL_MAX)
		n = SPOOL_POOL_MAX;
	spool_pool_lock(sp);
	if (sp->started || sp->pool_max > 0)
		log_panic("spool_set_precreate: after the spool was started");
	if (n > 0) {
		sp->pool = xcalloc(n, sizeof(*sp->pool));
		sp->pool_max = n;
		/* Refill early enough that a burst rarely finds it empty. */
		sp->pool_low = n - n / 4;
	}
	spool_pool_unlock(sp);
}

/*
 * Loop thread: takes a pre-created file into msg (false if none); sets
 * *refill_out when the pool runs low and a refill job should be started.
 */
static bool
spool_pool_take(struct spool *sp, struct spool_msg *msg, bool *refill_out)
{
	struct spool_file *f;
	bool got = false, refill;

	spool_pool_lock(sp);
	sp->started = true;
	if (sp->pool_n > 0) {
		f = &sp->pool[sp->pool_head];
		sp->pool_head = (sp->pool_head + 1) % sp->pool_max;
		sp->pool_n--;
		msg->fd = f->fd;
		memcpy(msg->id, f->id, sizeof(msg->id));
		got = true;
	}
	/* After a failure, only a miss (pool empty) tries again. */
	refill = sp->w != NULL && sp->pool_max > 0 &&
	    sp->pool_jobs < SPOOL_POOL_JOBS && sp->pool_n < sp->pool_low &&
	    (!sp->pool_failing || !got);
	if (refill)
		sp->pool_jobs++;
	spool_pool_unlock(sp);
	*refill_out = refill;
	return got;
}

struct spool_msg *
spool_msg_new(struct spool *sp, const struct spool_envelope *env,
    const char **err_out)
{
	struct spool_jrec_out w;
	struct spool_msg *msg;
	struct sbuf hdr;
	bool refill;

	if (atomic_load(&sp->broken)) {
		(void)snprintf(sp->new_err, sizeof(sp->new_err), "%s",
		    sp->broken_why);
		*err_out = sp->new_err;
		return NULL;
	}
	if (env->nrcpts == 0 || env->sender == NULL) {
		*err_out = "envelope without sender or recipients";
		return NULL;
	}

	msg = xcalloc(1, sizeof(*msg));
	msg->sp = sp;
	msg->fd = -1;
	msg->sender = xstrdup(env->sender);
	sbuf_init(&msg->jenv, SPOOL_JLINE_MAX);
	sbuf_init(&msg->jline, SPOOL_JLINE_MAX);
	spool_jrec_fragment_begin(&w, &msg->jenv);
	spool_jrec_envelope(&w, env);
	if (spool_jrec_fragment_end(&w) == -1) {
		*err_out = "envelope too large";
		spool_msg_free(msg);
		return NULL;
	}
	if ((msg->sha = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(msg->sha, sp->md, NULL) != 1) {
		*err_out = "SHA-256 initialization failed";
		spool_msg_free(msg);
		return NULL;
	}

	/* The pool ran dry: create here rather than refuse the message. */
	if (!spool_pool_take(sp, msg, &refill))
		msg->fd = spool_create_tmp(sp, msg->id);
	if (refill) {
		atomic_fetch_add(&sp->inflight, 1);
		workers_submit(sp->w, spool_pool_refill_job, NULL, sp);
	}
	if (msg->fd == -1) {
		(void)snprintf(sp->new_err, sizeof(sp->new_err),
		    "create tmp file: %s", strerror(errno));
		*err_out = sp->new_err;
		spool_msg_free(msg);
		return NULL;
	}

	sbuf_init(&hdr, SPOOL_HEADER_MAX);
	if (spool_hdr_format(&hdr, msg->id, env) == -1) {
		(void)snprintf(sp->new_err, sizeof(sp->new_err),
		    "envelope too large");
		goto abort;
	}
	/* Written now: a full disk shows before the client sends the body. */
	if (spool_write_all(msg->fd, hdr.data, hdr.len) == -1) {
		(void)snprintf(sp->new_err, sizeof(sp->new_err), "write: %s",
		    strerror(errno));
		goto abort;
	}
	msg->content_off = hdr.len;
	sbuf_release(&hdr);
	msg->buf = xmalloc(SPOOL_BUF_SIZE);
	return msg;
abort:
	sbuf_release(&hdr);
	*err_out = sp->new_err;
	spool_msg_abort(msg);
	return NULL;
}

const char *
spool_msg_id(const struct spool_msg *msg)
{
	return msg->id;
}

uint64_t
spool_msg_size(const struct spool_msg *msg)
{
	return msg->size;
}

int
spool_msg_append(struct spool_msg *msg, const void *data, size_t len,
    const char **err_out)
{
	const unsigned char *p = data;
	size_t n;

	if (!msg->failed && len > 0 &&
	    EVP_DigestUpdate(msg->sha, data, len) != 1)
		spool_msg_fail(msg, "SHA-256 update failed");
	if (msg->failed) {
		if (err_out != NULL)
			*err_out = msg->err;
		return -1;
	}
	msg->size += len;
	while (len > 0) {
		if (msg->buflen == 0 && len >= SPOOL_BUF_SIZE) {
			/* Large chunks skip the copy. */
			if (spool_write_all(msg->fd, p, len) == -1)
				spool_msg_fail(msg, "write: %s",
				    strerror(errno));
			break;
		}
		n = SPOOL_BUF_SIZE - msg->buflen;
		if (n > len)
			n = len;
		memcpy(msg->buf + msg->buflen, p, n);
		msg->buflen += n;
		p += n;
		len -= n;
		if (msg->buflen == SPOOL_BUF_SIZE)
			spool_msg_flush(msg);
		if (msg->failed)
			break;
	}
	if (msg->failed) {
		if (err_out != NULL)
			*err_out = msg->err;
		return -1;
	}
	return 0;
}

void
spool_msg_commit(struct spool_msg *msg, const char *message_id,
    spool_commit_cb cb, void *arg)
{
	static const char hex[] = "0123456789abcdef";
	struct spool *sp = msg->sp;
	unsigned char md[EVP_MAX_MD_SIZE];
	struct spool_jrec_out w;
	unsigned int mdlen = 0, i;

	if (sp->w == NULL)
		log_panic("spool: commit without workers");
	msg->cb = cb;
	msg->cbarg = arg;
	if (!msg->failed && (EVP_DigestFinal_ex(msg->sha, md, &mdlen) != 1 ||
	    mdlen != 32))
		spool_msg_fail(msg, "SHA-256 finalization failed");
	if (!msg->failed) {
		for (i = 0; i < mdlen; i++) {
			msg->sha_hex[2 * i] = hex[md[i] >> 4];
			msg->sha_hex[2 * i + 1] = hex[md[i] & 15];
		}
		msg->sha_hex[64] = '\0';
		/* The committer stamps it; the rest is known now. */
		spool_jrec_begin(&w, &msg->jline, NULL, "accepted", msg->id);
		spool_jrec_strn(&w, "msgid", message_id, SPOOL_MSGID_MAX);
		spool_jrec_addr(&w, "from", msg->sender);
		spool_jrec_u64(&w, "size", msg->size);
		spool_jrec_token(&w, "sha256", msg->sha_hex);
		spool_jrec_fragment(&w, &msg->jenv);
		if (spool_jrec_end(&w) == -1)
			spool_msg_fail(msg, "journal record too long");
	}
	free(msg->sender);
	msg->sender = NULL;
	sbuf_release(&msg->jenv);
	atomic_fetch_add(&sp->pending, 1);
	atomic_fetch_add(&sp->inflight, 1);
	/* The last write, fsync and close happen off the loop. */
	workers_submit(sp->w, spool_sync_job, NULL, msg);
}

int
spool_msg_set_prepend(struct spool_msg *msg, const char *text, size_t len)
{
	if (msg->prepend.data == NULL)
		sbuf_init(&msg->prepend, SPOOL_PREPEND_MAX);
	sbuf_reset(&msg->prepend);
	return sbuf_append_escaped(&msg->prepend, text, len, NULL, false);
}

int
spool_msg_sync_content(struct spool_msg *msg, const char **err_out)
{
	spool_msg_flush(msg);
	if (msg->failed) {
		*err_out = msg->err;
		return -1;
	}
	return 0;
}

ssize_t
spool_msg_read(struct spool_msg *msg, uint64_t off, void *buf, size_t len)
{
	if (off >= msg->size)
		return 0;
	if (len > msg->size - off)
		len = (size_t)(msg->size - off);
	return pread(msg->fd, buf, len, (off_t)(msg->content_off + off));
}

void
spool_msg_abort(struct spool_msg *msg)
{
	struct spool *sp = msg->sp;

	if (sp->w == NULL)
		log_panic("spool: abort without workers");
	atomic_fetch_add(&sp->inflight, 1);
	workers_submit(sp->w, spool_abort_job, NULL, msg);
}

/* ---- reading a message header ---- */

/* ---- recovery ---- */

static int
spool_cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of dirfd, without "." and "..". */
static int
spool_list_dir(int dirfd, const char *what, char ***names_out, size_t *n_out,
    struct sbuf *err)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, alloc = 0;
	int fd;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1 || (d = fdopendir(fd)) == NULL) {
		sbuf_seterr(err, "open %s: %s", what, strerror(errno));
		if (fd != -1)
			(void)close(fd);	/* read-only */
		return -1;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (n == alloc) {
			alloc = alloc == 0 ? 64 : alloc * 2;
			names = xreallocarray(names, alloc, sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	if (errno != 0) {
		sbuf_seterr(err, "read %s: %s", what, strerror(errno));
		while (n > 0)
			free(names[--n]);
		free(names);
		(void)closedir(d);	/* read-only */
		return -1;
	}
	if (closedir(d) == -1)
		log_warn("spool: closedir %s", what);
	if (n > 0)
		qsort(names, n, sizeof(*names), spool_cmp_names);
	*names_out = names;
	*n_out = n;
	return 0;
}

static void
spool_free_names(char **names, size_t n)
{
	while (n > 0)
		free(names[--n]);
	free(names);
}

/* Moves queue/NAME into corrupt/ under a name not in use yet. */
static int
spool_move_corrupt(struct spool *sp, const char *name, struct sbuf *dest)
{
	int i;

	for (i = 0; i < 1000; i++) {
		sbuf_reset(dest);
		if ((i == 0 ? sbuf_append_str(dest, name) :
		    sbuf_printf(dest, "%s.%d", name, i)) == -1)
			return -1;
		if (spool_rename_noreplace(sp->queuefd, name, sp->corruptfd,
		    dest->data) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

int
spool_recover(struct spool *sp, spool_found_cb found, void *arg,
    struct spool_recovery *stats_out, struct sbuf *err)
{
	struct spool_recovery st = { 0, 0, 0 };
	struct spool_envelope env;
	struct sbuf jb, ename, dest, why;
	char ts[SPOOL_TS_LEN + 1], id[SPOOL_ID_LEN + 1], sha[65];
	char **names = NULL;
	size_t n = 0, i;
	uint64_t off, size, us;
	struct stat fst;
	int fd, rc = -1;
	bool qchanged = false, bad, started, empty;

	spool_pool_lock(sp);
	started = sp->started;
	spool_pool_unlock(sp);
	if (started) {
		/* It would remove the tmp files of messages in progress. */
		sbuf_seterr(err, "recovery after messages were started");
		if (stats_out != NULL)
			*stats_out = st;
		return -1;
	}

	sbuf_init(&jb, SPOOL_JBATCH_MAX);
	sbuf_init(&ename, 1024);
	sbuf_init(&dest, 1024);
	sbuf_init(&why, SPOOL_ERR_LEN);
	spool_now(ts, sizeof(ts));

	/* Half-received messages: never acknowledged, so removed. */
	if (spool_list_dir(sp->tmpfd, "tmp", &names, &n, err) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		sbuf_reset(&ename);
		if (sbuf_append_escaped(&ename, names[i], strlen(names[i]),
		    NULL, true) == -1)
			sbuf_reset(&ename);
		empty = fstatat(sp->tmpfd, names[i], &fst,
		    AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(fst.st_mode) &&
		    fst.st_size == 0;
		if (unlinkat(sp->tmpfd, names[i], 0) == -1) {
			log_warn("spool: cannot remove tmp/%s", ename.data);
			continue;
		}
		/* Every removal is journaled, even of a file never written. */
		if (empty)
			log_info("removed empty tmp file %s", ename.data);
		else
			log_warnx("removed incomplete message %s", ename.data);
		spool_journal_discard(&jb, ts, "discarded", names[i],
		    empty ? "empty" : "incomplete");
		st.removed_tmp++;
	}
	spool_free_names(names, n);
	names = NULL;
	if (st.removed_tmp > 0 && fsync(sp->tmpfd) == -1) {
		sbuf_seterr(err, "fsync tmp: %s", strerror(errno));
		goto out;
	}

	if (spool_list_dir(sp->queuefd, "queue", &names, &n, err) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		bad = true;
		sbuf_reset(&ename);
		if (sbuf_append_escaped(&ename, names[i], strlen(names[i]),
		    NULL, true) == -1)
			sbuf_reset(&ename);
		memset(&env, 0, sizeof(env));
		if (!spool_id_valid(names[i]))
			sbuf_seterr(&why, "not a queue id");
		else if ((fd = openat(sp->queuefd, names[i], O_RDONLY |
		    O_NOFOLLOW | O_CLOEXEC)) == -1)
			sbuf_seterr(&why, "open: %s", strerror(errno));
		else {
			if (spool_read_header_fd(fd, &env, id, &off, &size,
			    sha, &why) == 0) {
				if (strcmp(id, names[i]) == 0)
					bad = false;
				else {
					sbuf_seterr(&why, "header id %s", id);
					spool_envelope_clear(&env);
				}
			}
			(void)close(fd);	/* read-only */
		}
		if (!bad) {
			/* Keep new ids above every queued one (clock steps). */
			us = spool_id_time(names[i]);
			spool_pool_lock(sp);
			if (us > sp->last_us)
				sp->last_us = us;
			spool_pool_unlock(sp);
			if (found != NULL)
				found(arg, names[i], &env, size);
			spool_envelope_clear(&env);
			st.queued++;
			continue;
		}
		/* Unreadable: kept for the postmaster, never deleted. */
		if (spool_move_corrupt(sp, names[i], &dest) == -1) {
			log_warn("spool: cannot quarantine queue/%s (%s)",
			    ename.data, why.data);
			continue;
		}
		qchanged = true;
		log_warnx("spool: queue/%s moved to corrupt/: %s", ename.data,
		    why.data);
		spool_journal_discard(&jb, ts, "quarantined", names[i],
		    why.data);
		st.quarantined++;
	}
	if (qchanged && (fsync(sp->corruptfd) == -1 ||
	    fsync(sp->queuefd) == -1)) {
		sbuf_seterr(err, "fsync corrupt/queue: %s", strerror(errno));
		goto out;
	}
	if (spool_journal_write(sp, &jb, err) == -1)
		goto out;
	/* Have files ready before the first client arrives. */
	if (sp->w != NULL && sp->pool_max > 0) {
		spool_pool_lock(sp);
		sp->pool_jobs++;
		sp->started = true;
		spool_pool_unlock(sp);
		atomic_fetch_add(&sp->inflight, 1);
		workers_submit(sp->w, spool_pool_refill_job, NULL, sp);
	}
	rc = 0;
out:
	spool_free_names(names, names != NULL ? n : 0);
	sbuf_release(&jb);
	sbuf_release(&ename);
	sbuf_release(&dest);
	sbuf_release(&why);
	if (stats_out != NULL)
		*stats_out = st;
	return rc;
}
