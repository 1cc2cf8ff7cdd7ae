/*
 * spool_msg.c - writing one message: queue ids, tmp files, content.
 *
 * The loop thread creates (or takes a pre-created) tmp/ID, writes the
 * header (spool_codec.h) and appends content through a buffer while
 * feeding the SHA-256; commit hands the message to a worker and the
 * committer. Nothing here waits for the disk on the loop except write().
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

static void spool_new_id(struct spool *sp, char id[SPOOL_ID_LEN + 1]);
static int spool_create_tmp(struct spool *sp, char id[SPOOL_ID_LEN + 1]);
static bool spool_pool_take(struct spool *sp, struct spool_msg *msg,
    bool *refill_out);

static const char spool_b32[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

/* Sticky: flushes msg's buffer (loop thread before commit, then worker). */
void
spool_msg_flush(struct spool_msg *msg)
{
	if (msg->failed || msg->buflen == 0)
		return;
	if (spool_write_all(msg->fd, msg->buf, msg->buflen) == -1)
		spool_msg_fail(msg, "write: %s", strerror(errno));
	msg->buflen = 0;
}

void
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

void
spool_pool_lock(struct spool *sp)
{
	spool_check(pthread_mutex_lock(&sp->pool_mtx), "pthread_mutex_lock");
}

void
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
		fd = openat(sp->tmpfd, id,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd != -1 || errno != EEXIST)
			break;
	}
	return fd;
}

/* Worker: tops the pool of empty tmp files up to pool_max. */
void
spool_pool_refill_job(void *arg)
{
	struct spool *sp = arg;
	struct spool_file *f;
	char id[SPOOL_ID_LEN + 1];
	bool more, report;
	int fd, saved;

	for (;;) {
		spool_pool_lock(sp);
		more = sp->pool_n + sp->pool_creating < sp->pool_target;
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
			f->stale = 0;
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
		/*
		 * Made ahead: SPOOL_POOL_FIRST at first, twice as many each
		 * time the pool runs low, up to n. Creating files costs (see
		 * spool_pool_recycle); once the queue stops growing, removed
		 * messages' files come back and none are made.
		 */
		sp->pool_target = n < SPOOL_POOL_FIRST ? n : SPOOL_POOL_FIRST;
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
		msg->stale = f->stale;
		sp->pool_bytes -= f->stale;
		got = true;
	}
	/*
	 * Refill only when a quarter is left: above that, removed messages'
	 * files come back (spool_pool_recycle). A higher mark had the refill
	 * create files whenever the queue grew a little, and the recycled
	 * ones then found the pool full and were unlinked: churn again.
	 * After a failure, only a miss (pool empty) tries again.
	 */
	refill = sp->w != NULL && sp->pool_max > 0 &&
	    sp->pool_jobs < SPOOL_POOL_JOBS &&
	    sp->pool_n < sp->pool_target / 4 + 1 && (!sp->pool_failing || !got);
	if (refill) {
		sp->pool_jobs++;
		if (sp->pool_target < sp->pool_max)
			sp->pool_target = sp->pool_target * 2 < sp->pool_max ?
			    sp->pool_target * 2 :
			    sp->pool_max;
	}
	spool_pool_unlock(sp);
	*refill_out = refill;
	return got;
}

/*
 * Committer: queue/ID is done with (its removal is durable). Its inode
 * goes back to the pool as tmp/NEWID, old content and all (a new message
 * overwrites it from the start and cuts the rest off at commit; recovery
 * tells such a file by its header's id, which is not its name), or is
 * unlinked when the pool is full or the file large.
 */
void
spool_pool_recycle(struct spool *sp, const char *id)
{
	struct spool_file *f;
	struct stat st;
	char nid[SPOOL_ID_LEN + 1];
	bool room = false;
	int fd = -1;

	if (sp->pool_max > 0 &&
	    fstatat(sp->queuefd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(st.st_mode) && (uint64_t)st.st_size <= SPOOL_RECYCLE_MAX) {
		spool_pool_lock(sp);
		room = sp->pool_n + sp->pool_creating < sp->pool_max &&
		    sp->pool_bytes + (uint64_t)st.st_size <= SPOOL_POOL_BYTES;
		if (room) {
			sp->pool_creating++; /* holds the slot */
			spool_new_id(sp, nid);
		}
		spool_pool_unlock(sp);
	}
	if (room &&
	    renameat2(sp->queuefd, id, sp->tmpfd, nid, RENAME_NOREPLACE) == 0) {
		fd = openat(sp->tmpfd, nid, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1) {
			log_warn("spool: open tmp/%s", nid);
			spool_unlink_tmp(sp, nid);
		}
	} else if (unlinkat(sp->queuefd, id, 0) == -1 && errno != ENOENT)
		log_warn("spool: unlink queue/%s", id);
	if (!room)
		return;
	spool_pool_lock(sp);
	sp->pool_creating--;
	if (fd != -1) {
		f = &sp->pool[(sp->pool_head + sp->pool_n) % sp->pool_max];
		f->fd = fd;
		memcpy(f->id, nid, sizeof(f->id));
		f->stale = (uint64_t)st.st_size;
		sp->pool_bytes += f->stale;
		sp->pool_n++;
	}
	spool_pool_unlock(sp);
}

struct spool_msg *
spool_msg_new(struct spool *sp, const struct spool_envelope *env,
    struct sbuf *err)
{
	struct spool_jrec_out w;
	struct spool_msg *msg;
	struct sbuf hdr;
	bool refill;

	if (atomic_load(&sp->broken)) {
		sbuf_seterr(err, "%s", sp->broken_why);
		return NULL;
	}
	if (env->nrcpts == 0 || env->sender == NULL) {
		sbuf_seterr(err, "envelope without sender or recipients");
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
		sbuf_seterr(err, "envelope too large");
		spool_msg_free(msg);
		return NULL;
	}
	if ((msg->sha = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(msg->sha, sp->md, NULL) != 1) {
		sbuf_seterr(err, "SHA-256 initialization failed");
		spool_msg_free(msg);
		return NULL;
	}

	/* The pool ran dry: create here rather than refuse the message. */
	if (sp->sparefd == -1)
		sp->sparefd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!spool_pool_take(sp, msg, &refill)) {
		msg->fd = spool_create_tmp(sp, msg->id);
		/*
		 * Out of descriptors: the spare makes room for this one
		 * message (a session the client already has open); it is
		 * taken back by a later call once descriptors are free.
		 */
		if (msg->fd == -1 && (errno == EMFILE || errno == ENFILE) &&
		    sp->sparefd != -1) {
			(void)close(sp->sparefd); /* /dev/null, read-only */
			sp->sparefd = -1;
			msg->fd = spool_create_tmp(sp, msg->id);
		}
	}
	if (refill) {
		atomic_fetch_add(&sp->inflight, 1);
		workers_submit(sp->w, spool_pool_refill_job, NULL, sp);
	}
	if (msg->fd == -1) {
		sbuf_seterr(err, "create tmp file: %s", strerror(errno));
		spool_msg_free(msg);
		return NULL;
	}

	sbuf_init(&hdr, SPOOL_HEADER_MAX);
	if (spool_hdr_format(&hdr, msg->id, env) == -1) {
		sbuf_seterr(err, "envelope too large");
		goto abort;
	}
	/* Written now: a full disk shows before the client sends the body. */
	if (spool_write_all(msg->fd, hdr.data, hdr.len) == -1) {
		sbuf_seterr(err, "write: %s", strerror(errno));
		goto abort;
	}
	msg->content_off = hdr.len;
	sbuf_release(&hdr);
	msg->buf = xmalloc(SPOOL_BUF_SIZE);
	atomic_fetch_add(&sp->receiving, 1);
	return msg;
abort:
	sbuf_release(&hdr);
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
    struct sbuf *err)
{
	const unsigned char *p = data;
	size_t n;

	if (!msg->failed && len > 0 &&
	    EVP_DigestUpdate(msg->sha, data, len) != 1)
		spool_msg_fail(msg, "SHA-256 update failed");
	if (msg->failed)
		return sbuf_seterr(err, "%s", msg->err);
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
	if (msg->failed)
		return sbuf_seterr(err, "%s", msg->err);
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
	if (!msg->failed &&
	    (EVP_DigestFinal_ex(msg->sha, md, &mdlen) != 1 || mdlen != 32))
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
	atomic_fetch_sub(&sp->receiving, 1);
	atomic_fetch_add(&sp->pending, 1);
	atomic_fetch_add(&sp->inflight, 1);
	/* Small: the committer finishes it; large: a worker fsyncs it. */
	if (msg->failed || msg->content_off + msg->size <= SPOOL_LOG_IMAGE_MAX)
		spool_commit_small(msg);
	else
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
spool_msg_sync_content(struct spool_msg *msg, struct sbuf *err)
{
	spool_msg_flush(msg);
	if (msg->failed)
		return sbuf_seterr(err, "%s", msg->err);
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
	atomic_fetch_sub(&sp->receiving, 1);
	atomic_fetch_add(&sp->inflight, 1);
	workers_submit(sp->w, spool_abort_job, NULL, msg);
}
