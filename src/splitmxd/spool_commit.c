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
static void spool_commit_batch(struct spool *sp, struct spool_msg *batch);
static void spool_jq_done(void *arg);
static void spool_jq_batch(struct spool *sp, struct spool_jq *batch);
static void spool_committer_enqueue(struct spool *sp, struct spool_msg *msg);

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
		if (!m->failed &&
		    (sbuf_printf(&sp->jbuf, "%s ", ts) == -1 ||
		        sbuf_append(&sp->jbuf, m->jline.data, m->jline.len) ==
		            -1)) {
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
		if (sp->queuefd == -1 ||
		    spool_rename_noreplace(sp->tmpfd, m->id, sp->queuefd,
		        m->id) == -1) {
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

void *
spool_committer_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_msg *batch;
	struct spool_jq *jbatch;

	spool_lock(sp);
	for (;;) {
		while (
		    sp->cq_head == NULL && sp->jq_head == NULL && !sp->stopping)
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
void
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
