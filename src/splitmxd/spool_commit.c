/*
 * spool_commit.c - the committer: group commit of messages and records.
 *
 * One thread takes every message that is ready and every queued journal
 * record as a batch: the "accepted" records with one write and one
 * fdatasync, the renames into queue/, one fsync of queue/, and only then
 * the callbacks. A failed fdatasync breaks the spool for good (the kernel
 * may have dropped the pages: a retry could lie). Never on the loop.
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
#include "spool_int.h"

static void spool_commit_done(void *arg);
static void spool_reopen_queue(struct spool *sp);
static void spool_jq_done(void *arg);
static void spool_wake_committer(struct spool *sp);
static void spool_committer_enqueue(struct spool *sp, struct spool_msg *msg);
static void spool_msg_finish_image(struct spool_msg *msg);

/* "TS verb id=ID reason=..." into sb; dropped (and logged) past the cap. */
void
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
int
spool_journal_write(struct spool *sp, const struct sbuf *sb, struct sbuf *why)
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
 * Appends sb to the journal without syncing it: the log already holds the
 * lines, and replay writes them again should these be lost. When the
 * write fails (a full disk) the lines wait in a backlog, written first next
 * time, and no checkpoint is taken meanwhile (it would claim lines the
 * journal lacks); past SPOOL_BACKLOG_MAX the spool breaks, and the next
 * start replays them from the log.
 */
static void
spool_journal_put(struct spool *sp, const struct sbuf *sb)
{
	char why[SPOOL_ERR_LEN];

	if (sb->len == 0 || sp->journalfd == -1)
		return;
	if (sp->jbacklog.len > 0) {
		if (spool_write_all(sp->journalfd, sp->jbacklog.data,
		        sp->jbacklog.len) == -1)
			goto fail;
		sp->journal_off += sp->jbacklog.len;
		sbuf_reset(&sp->jbacklog);
		log_info("spool: journal caught up");
	}
	if (spool_write_all(sp->journalfd, sb->data, sb->len) == -1)
		goto fail;
	sp->journal_off += sb->len;
	return;
fail:
	(void)snprintf(why, sizeof(why), "journal write: %s", strerror(errno));
	/* A partial line must not stay: the backlog has it whole. */
	if (ftruncate(sp->journalfd, (off_t)sp->journal_off) == -1 ||
	    sbuf_append(&sp->jbacklog, sb->data, sb->len) == -1) {
		spool_break(sp, why);
		return;
	}
	log_warnx("spool: %s: %zu octets held back", why, sp->jbacklog.len);
}

/* Records (and the journal) for lines that came after the group's sync. */
static void
spool_group_late(struct spool *sp, const struct sbuf *lines)
{
	uint64_t lsn0 = sp->log.lsn;
	struct sbuf why;

	if (lines->len == 0)
		return;
	sbuf_init(&why, SPOOL_ERR_LEN);
	if (spool_log_add_lines(sp, lines, &why) == -1 ||
	    spool_log_sync(sp, &why) == -1) {
		spool_log_rollback(sp, lsn0);
		log_warnx("spool: discarded records not journaled: %s",
		    why.data);
	} else
		spool_journal_put(sp, lines);
	sbuf_release(&why);
}

/*
 * One commit group, one device flush: the images of the small messages
 * and every journal line of the group (accepted and discarded records,
 * the queue's delivery, claim and removal records) go to the log and one
 * fdatasync makes them durable. Then the journal is appended (not synced),
 * each message renamed into queue/ (queue/ fsynced only for a large
 * message, whose file was fsynced itself), removals done, callbacks
 * posted. Nothing is acknowledged before the sync returns.
 */
static void
spool_group(struct spool *sp, struct spool_msg *batch, struct spool_jq *jbatch)
{
	struct spool_msg *m, *next;
	struct spool_jq *r, *rnext;
	char ts[SPOOL_TS_LEN + 1];
	struct sbuf why, late;
	bool dirsync = false;
	unsigned n = 0, nj = 0;
	uint64_t lsn0 = sp->log.lsn;
	size_t start;
	int status;

	sbuf_init(&why, SPOOL_ERR_LEN);
	sbuf_init(&late, SPOOL_JBATCH_MAX);
	spool_now(ts, sizeof(ts));
	sbuf_reset(&sp->jbuf);
	for (m = batch; m != NULL; m = m->next) {
		n++;
		if (m->finish_in_committer)
			spool_msg_finish_image(m);
		if (!m->failed && atomic_load(&sp->broken))
			spool_msg_fail(m, "%s", sp->broken_why);
		start = sp->jbuf.len;
		/* jline is the whole record but its time stamp. */
		if (!m->failed &&
		    (sbuf_printf(&sp->jbuf, "%s ", ts) == -1 ||
		        sbuf_append(&sp->jbuf, m->jline.data, m->jline.len) ==
		            -1)) {
			sbuf_truncate(&sp->jbuf, start);
			spool_msg_fail(m, "journal batch too large");
		}
		if (!m->failed && m->image &&
		    spool_log_add_image(sp, m->id, m->fd, m->file_size, &why) ==
		        -1) {
			sbuf_truncate(&sp->jbuf, start);
			spool_msg_fail(m, "%s", why.data);
		}
		if (m->failed) {
			spool_unlink_tmp(sp, m->id);
			spool_journal_discard(&sp->jbuf, ts, "discarded", m->id,
			    m->err);
		}
	}
	for (r = jbatch; r != NULL; r = r->next) {
		nj++;
		/* A record that does not fit is not written: it says so. */
		r->status = sbuf_append(&sp->jbuf, r->data, r->len);
		if (r->status == -1)
			log_warnx("spool: journal batch too large");
	}
	status = spool_log_add_lines(sp, &sp->jbuf, &why);
	if (status == 0)
		status = spool_log_sync(sp, &why);
	if (status == -1) {
		log_warnx("spool: commit group not durable: %s", why.data);
		spool_log_rollback(sp, lsn0);
		for (m = batch; m != NULL; m = m->next)
			if (!m->failed) {
				spool_msg_fail(m, "%s", why.data);
				spool_unlink_tmp(sp, m->id);
			}
	} else
		spool_journal_put(sp, &sp->jbuf);

	for (m = batch; m != NULL; m = m->next) {
		if (m->failed)
			continue;
		if (sp->queuefd == -1 ||
		    spool_rename_noreplace(sp->tmpfd, m->id, sp->queuefd,
		        m->id) == -1) {
			spool_msg_fail(m, "rename into queue: %s",
			    sp->queuefd == -1 ? "no queue directory" :
			                        strerror(errno));
			spool_unlink_tmp(sp, m->id);
			spool_journal_discard(&late, ts, "discarded", m->id,
			    m->err);
			continue;
		}
		m->renamed = true;
		if (m->image)
			spool_log_note_image(sp, m->id);
		else
			dirsync = true;
	}
	/* A large message's name: its file has no image to come back from. */
	if (dirsync && fsync(sp->queuefd) == -1) {
		sbuf_seterr(&why, "fsync queue directory: %s", strerror(errno));
		log_warnx("spool: %s", why.data);
		for (m = batch; m != NULL; m = m->next) {
			if (!m->renamed || m->image)
				continue;
			if (unlinkat(sp->queuefd, m->id, 0) == -1)
				log_warn("spool: unlink queue/%s", m->id);
			m->renamed = false;
			spool_msg_fail(m, "%s", why.data);
			spool_journal_discard(&late, ts, "discarded", m->id,
			    m->err);
		}
		spool_reopen_queue(sp);
	}
	spool_group_late(sp, &late);
	sbuf_release(&late);
	sbuf_release(&why);
	for (m = batch; m != NULL; m = m->next)
		if (m->fd != -1) {
			/* Unsynced: the log has it, a close error is moot. */
			if (close(m->fd) == -1)
				log_warn("spool: close tmp/%s", m->id);
			m->fd = -1;
		}

	for (r = jbatch; r != NULL; r = rnext) {
		rnext = r->next;
		if (status == -1)
			r->status = -1;
		if (r->status == 0 && r->remove_id[0] != '\0')
			spool_pool_recycle(sp, r->remove_id);
		workers_post(sp->w, spool_jq_done, r);
	}
	/* Post before pending drops, so pending + busy never read 0 early. */
	for (m = batch; m != NULL; m = next) {
		next = m->next;
		workers_post(sp->w, spool_commit_done, m);
	}
	atomic_fetch_sub(&sp->pending, n);
	spool_inflight_done(sp, n + nj);
	spool_log_maybe_checkpoint(sp, false);
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

/* Absolute CLOCK_MONOTONIC time usec from now. */
static struct timespec
spool_deadline(const struct timespec *from, long usec)
{
	struct timespec t = *from;

	t.tv_nsec += (usec % 1000000) * 1000;
	t.tv_sec += usec / 1000000 + t.tv_nsec / 1000000000;
	t.tv_nsec %= 1000000000;
	return t;
}

static bool
spool_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec ||
	    (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * Other messages are being received (DATA or BDAT under way) or are
 * finishing their files on the workers: they will want a flush a moment
 * from now. Waiting up to SPOOL_SIBLING_WAIT for them lets one flush serve
 * them all (PostgreSQL's commit_delay with commit_siblings). A single
 * session never waits: nothing else is under way. Lock held.
 */
static void
spool_wait_siblings(struct spool *sp)
{
	struct spool_msg *m;
	struct timespec now, until;
	unsigned queued;
	int rc;

	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	until = spool_deadline(&now, SPOOL_SIBLING_WAIT);
	for (;;) {
		queued = 0;
		for (m = sp->cq_head; m != NULL; m = m->next)
			queued++;
		if (sp->stopping || queued >= SPOOL_GROUP_FULL ||
		    (atomic_load(&sp->pending) <= queued &&
		        atomic_load(&sp->receiving) == 0))
			return;
		rc = pthread_cond_timedwait(&sp->cq_cond, &sp->mtx, &until);
		if (rc == ETIMEDOUT)
			return;
		if (rc != 0)
			spool_check(rc, "pthread_cond_timedwait");
	}
}

/*
 * Messages go at once; records alone wait up to SPOOL_RECORD_DELAY for a
 * message to share their flush (nobody is waiting on them for a reply),
 * and an idle log is checkpointed.
 */
void *
spool_committer_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_msg *batch;
	struct spool_jq *jbatch;
	struct timespec now, until;
	int rc;

	spool_lock(sp);
	for (;;) {
		for (;;) {
			if (sp->stopping || sp->cq_head != NULL)
				break;
			if (spool_log_ckpt_ready(sp)) {
				spool_unlock(sp);
				spool_log_maybe_checkpoint(sp, false);
				spool_lock(sp);
				continue;
			}
			(void)clock_gettime(CLOCK_MONOTONIC, &now);
			if (sp->jq_head != NULL) {
				until = spool_deadline(&sp->jq_since,
				    SPOOL_RECORD_DELAY);
				if (sp->jq_n >= SPOOL_RECORD_EAGER ||
				    !spool_ts_before(&now, &until))
					break;
			} else if (sp->log.dirty && !sp->log.ck_busy)
				until = spool_deadline(&sp->log.ckpt_at,
				    SPOOL_LOG_CKPT_SECS * 1000000L);
			else {
				/* Idle, or a checkpoint's job will signal. */
				spool_check(pthread_cond_wait(&sp->cq_cond,
				                &sp->mtx),
				    "pthread_cond_wait");
				continue;
			}
			rc = pthread_cond_timedwait(&sp->cq_cond, &sp->mtx,
			    &until);
			if (rc == ETIMEDOUT && sp->jq_head == NULL &&
			    sp->cq_head == NULL) {
				spool_unlock(sp);
				spool_log_maybe_checkpoint(sp, false);
				spool_lock(sp);
			} else if (rc != 0 && rc != ETIMEDOUT)
				spool_check(rc, "pthread_cond_timedwait");
		}
		if (sp->cq_head == NULL && sp->jq_head == NULL)
			break;
		spool_wait_siblings(sp);
		batch = sp->cq_head;
		sp->cq_head = NULL;
		sp->cq_tail = &sp->cq_head;
		jbatch = sp->jq_head;
		sp->jq_head = NULL;
		sp->jq_tail = &sp->jq_head;
		sp->jq_n = 0;
		spool_unlock(sp);
		spool_group(sp, batch, jbatch);
		spool_lock(sp);
	}
	spool_unlock(sp);
	/* Stopped cleanly: the next start has nothing to replay. */
	spool_log_maybe_checkpoint(sp, true);
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
	if (sp->jq_head == NULL)
		(void)clock_gettime(CLOCK_MONOTONIC, &sp->jq_since);
	sp->jq_n++;
	*sp->jq_tail = r;
	sp->jq_tail = &r->next;
	spool_wake_committer(sp);
}

/*
 * Unlocks sp (locked by the caller, work queued) and wakes the committer.
 * The signal follows the unlock, else the committer wakes into a held
 * mutex, blocks and is woken again (a third of the futex calls at one
 * session). Until it is sent, sp->signalling keeps spool_close from
 * destroying the condition variable under it.
 */
static void
spool_wake_committer(struct spool *sp)
{
	atomic_fetch_add(&sp->signalling, 1);
	spool_unlock(sp);
	spool_check(pthread_cond_signal(&sp->cq_cond), "pthread_cond_signal");
	atomic_fetch_sub(&sp->signalling, 1);
}

static void
spool_committer_enqueue(struct spool *sp, struct spool_msg *msg)
{
	msg->next = NULL;
	spool_lock(sp);
	*sp->cq_tail = msg;
	sp->cq_tail = &msg->next;
	spool_wake_committer(sp);
}

/* The last buffer, the size/sha256 line and the prepended fields. */
static void
spool_msg_finish(struct spool_msg *msg)
{
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
	msg->file_size = msg->content_off + msg->size;
	/* A recycled file: what is left of the message it held goes. */
	if (!msg->failed && msg->stale > msg->file_size &&
	    ftruncate(msg->fd, (off_t)msg->file_size) == -1)
		spool_msg_fail(msg, "truncate: %s", strerror(errno));
	free(msg->buf);
	msg->buf = NULL;
}

/*
 * Committer: a small message, handed over straight from the loop (no
 * worker round trip: page-cache writes only), is finished here; the log
 * image makes it durable.
 */
static void
spool_msg_finish_image(struct spool_msg *msg)
{
	spool_msg_finish(msg);
	msg->image = !msg->failed;
	if (msg->failed) {
		if (close(msg->fd) == -1)
			log_warn("spool: close tmp/%s", msg->id);
		msg->fd = -1;
	}
}

/*
 * Worker: a large message is finished, fsynced and closed here (its own
 * flush: the log holds no image of it), then handed to the committer
 * whatever happened.
 */
void
spool_sync_job(void *arg)
{
	struct spool_msg *msg = arg;

	spool_msg_finish(msg);
	msg->image = false;
	if (!msg->failed && fsync(msg->fd) == -1)
		spool_msg_fail(msg, "fsync: %s", strerror(errno));
	/* After fsync, close may still report a deferred write error. */
	if (close(msg->fd) == -1)
		spool_msg_fail(msg, "close: %s", strerror(errno));
	msg->fd = -1;
	spool_committer_enqueue(msg->sp, msg);
}

/* Loop: a small message goes to the committer as it is. */
void
spool_commit_small(struct spool_msg *msg)
{
	msg->finish_in_committer = true;
	spool_committer_enqueue(msg->sp, msg);
}

void
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
