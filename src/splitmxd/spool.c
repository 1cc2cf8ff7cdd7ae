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
#include "workers.h"
#include "xmalloc.h"

#define SPOOL_MAGIC		"splitmx-queue-file"
#define SPOOL_LINE1		"splitmx-queue-file 1\n"
#define SPOOL_LINE1_LEN		(sizeof(SPOOL_LINE1) - 1)
/* "size " 20 digits " sha256 " 64 hex: patched in place at commit. */
#define SPOOL_SUM_LEN		97
#define SPOOL_SUM_PLACEHOLDER	"size -------------------- sha256 " \
	"----------------------------------------------------------------"
#define SPOOL_BUF_SIZE		(64 * 1024)	/* content write buffer */
/*
 * Line 3: trace fields computed after the content arrived (the
 * Authentication-Results of a DKIM check need the whole body) are patched
 * in here at commit, escaped into one token and padded with spaces; they
 * go out in front of the content. The content and its SHA-256 never change.
 */
#define SPOOL_PREPEND_KEY	"prepend "
#define SPOOL_PREPEND_MAX	2048	/* escaped octets; A-R + SPF fit */
#define SPOOL_PREPEND_OFF	(SPOOL_LINE1_LEN + SPOOL_SUM_LEN + 1 + \
				    sizeof(SPOOL_PREPEND_KEY) - 1)
#define SPOOL_HEADER_MAX	(4 * 1024 * 1024) /* header bytes, read/write */
#define SPOOL_JLINE_MAX		(8 * 1024 * 1024) /* one journal record */
#define SPOOL_JBATCH_MAX	((size_t)1 << 40) /* bounded by batch size */
#define SPOOL_MSGID_MAX		998	/* RFC 5322 2.1.1 line limit */
#define SPOOL_ERR_LEN		256
#define SPOOL_TS_LEN		27	/* 2026-11-23T01:20:00.123456Z */
/*
 * Creating a file can wait for the filesystem journal (ext4 under commit
 * load: a median of 250 us, tens of ms behind a commit, measured here).
 * With spool_set_precreate, workers create tmp files ahead of need and
 * spool_msg_new only takes one.
 */
#define SPOOL_POOL_MAX		4096
#define SPOOL_POOL_JOBS		2	/* refill jobs at once */
/* Escaped in journal values: fields split on ' ', lists on ',', keys on '='. */
#define SPOOL_JOURNAL_EXTRA	" ,="

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
	bool			 in_dir;	/* cwd is dir: relative paths */
	int			 journalfd;	/* committer, recovery */
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
	struct spool_jrec	*jq_head;	/* delivery records */
	struct spool_jrec	**jq_tail;
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
	struct sbuf		 jfrom;		/* escaped sender */
	struct sbuf		 jrest;		/* "nrcpt=... tls=..." */
	struct sbuf		 jline;		/* whole record, no timestamp */
	struct sbuf		 prepend;	/* escaped, for line 3 */
	spool_commit_cb		 cb;
	void			*cbarg;
};

/* Journal records from the queue (delivery states), group-committed. */
struct spool_jrec {
	struct spool_jrec	*next;
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
spool_errf(struct sbuf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
spool_errf(struct sbuf *err, const char *fmt, ...)
{
	char line[SPOOL_ERR_LEN];
	va_list ap;
	size_t len;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	/* A truncated reason is still a reason. */
	if (vsnprintf(line, sizeof(line), fmt, ap) < 0)
		(void)snprintf(line, sizeof(line), "error");
	va_end(ap);
	sbuf_reset(err);
	len = strlen(line);
	if (len > err->cap)
		len = err->cap;
	if (sbuf_append(err, line, len) == -1)
		log_panic("spool: error buffer");
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

bool
spool_id_valid(const char *id)
{
	size_t i;

	if (id == NULL)
		return false;
	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return id[SPOOL_ID_LEN] == '\0';
}

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"; out holds SPOOL_TS_LEN + 1 bytes. */
static void
spool_format_time(const struct timespec *ts, char *out, size_t outlen)
{
	struct tm tm;
	char day[24];

	if (gmtime_r(&ts->tv_sec, &tm) == NULL ||
	    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    snprintf(out, outlen, "%s.%06ldZ", day,
	    (long)(ts->tv_nsec / 1000)) != SPOOL_TS_LEN)
		(void)snprintf(out, outlen, "0000-00-00T00:00:00.000000Z");
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
	spool_format_time(&ts, out, outlen);
}

static int
spool_digits(const char *s, size_t n, int *out)
{
	size_t i;
	int v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int
spool_parse_time(const char *s, size_t len, struct timespec *out)
{
	struct tm tm;
	int year, mon, mday, hour, min, sec, usec;
	time_t t;

	if (len != SPOOL_TS_LEN || s[4] != '-' || s[7] != '-' ||
	    s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' ||
	    s[26] != 'Z')
		return -1;
	if (spool_digits(s, 4, &year) == -1 ||
	    spool_digits(s + 5, 2, &mon) == -1 ||
	    spool_digits(s + 8, 2, &mday) == -1 ||
	    spool_digits(s + 11, 2, &hour) == -1 ||
	    spool_digits(s + 14, 2, &min) == -1 ||
	    spool_digits(s + 17, 2, &sec) == -1 ||
	    spool_digits(s + 20, 6, &usec) == -1)
		return -1;
	if (mon < 1 || mon > 12 || mday < 1 || mday > 31 || hour > 23 ||
	    min > 59 || sec > 60 || year < 1970)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	out->tv_sec = t;
	out->tv_nsec = (long)usec * 1000;
	return 0;
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
	sbuf_release(&msg->jfrom);
	sbuf_release(&msg->jrest);
	sbuf_release(&msg->jline);
	free(msg);
}

/* "TS discarded id=ID reason=..." into sb; best effort (cap only). */
static void
spool_journal_discard(struct sbuf *sb, const char *ts, const char *verb,
    const char *id, const char *reason)
{
	size_t start = sb->len;

	if (sbuf_printf(sb, "%s %s id=", ts, verb) == -1 ||
	    sbuf_append_escaped(sb, id, strlen(id), SPOOL_JOURNAL_EXTRA,
	    false) == -1 ||
	    sbuf_append_str(sb, " reason=") == -1 ||
	    sbuf_append_escaped(sb, reason, strlen(reason),
	    SPOOL_JOURNAL_EXTRA, false) == -1 ||
	    sbuf_append_char(sb, '\n') == -1) {
		sbuf_truncate(sb, start);
		log_warnx("spool: journal record for %s dropped (too long)",
		    id);
	}
}

/*
 * Appends sb to the journal and makes it durable. On a write error the
 * partial record is cut off again; a failed fdatasync closes the journal
 * for good (the kernel may have dropped the dirty pages: retrying would
 * report success for data that is gone) and breaks the spool.
 */
static int
spool_journal_write(struct spool *sp, const struct sbuf *sb, char *why,
    size_t whylen)
{
	if (sb->len == 0)
		return 0;
	if (atomic_load(&sp->broken) || sp->journalfd == -1) {
		(void)snprintf(why, whylen, "%s", sp->broken_why);
		return -1;
	}
	if (spool_write_all(sp->journalfd, sb->data, sb->len) == -1) {
		(void)snprintf(why, whylen, "journal write: %s",
		    strerror(errno));
		log_warnx("spool: %s", why);
		if (ftruncate(sp->journalfd, (off_t)sp->journal_off) == -1) {
			log_warn("spool: journal truncate");
			spool_break(sp, why);
		}
		return -1;
	}
	if (fdatasync(sp->journalfd) == -1) {
		(void)snprintf(why, whylen, "journal fdatasync: %s",
		    strerror(errno));
		spool_break(sp, why);
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
	char ts[SPOOL_TS_LEN + 1], why[SPOOL_ERR_LEN];
	bool renamed = false, late = false;
	unsigned n = 0;
	size_t start;

	spool_now(ts, sizeof(ts));
	sbuf_reset(&sp->jbuf);
	for (m = batch; m != NULL; m = m->next) {
		n++;
		if (!m->failed && atomic_load(&sp->broken))
			spool_msg_fail(m, "%s", sp->broken_why);
		start = sp->jbuf.len;
		if (!m->failed && (sbuf_printf(&sp->jbuf, "%s ", ts) == -1 ||
		    sbuf_append(&sp->jbuf, m->jline.data, m->jline.len) == -1 ||
		    sbuf_append_char(&sp->jbuf, '\n') == -1)) {
			sbuf_truncate(&sp->jbuf, start);
			spool_msg_fail(m, "journal batch too large");
		}
		if (m->failed) {
			spool_unlink_tmp(sp, m->id);
			spool_journal_discard(&sp->jbuf, ts, "discarded", m->id,
			    m->err);
		}
	}
	if (spool_journal_write(sp, &sp->jbuf, why, sizeof(why)) == -1) {
		for (m = batch; m != NULL; m = m->next)
			if (!m->failed) {
				spool_msg_fail(m, "%s", why);
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
		(void)snprintf(why, sizeof(why), "fsync queue directory: %s",
		    strerror(errno));
		log_warnx("spool: %s", why);
		for (m = batch; m != NULL; m = m->next) {
			if (!m->renamed)
				continue;
			if (unlinkat(sp->queuefd, m->id, 0) == -1)
				log_warn("spool: unlink queue/%s", m->id);
			m->renamed = false;
			spool_msg_fail(m, "%s", why);
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
	if (late && spool_journal_write(sp, &sp->jbuf, why, sizeof(why)) == -1)
		log_warnx("spool: discarded records not journaled: %s", why);

	/* Post before pending drops, so pending + busy never read 0 early. */
	for (m = batch; m != NULL; m = next) {
		next = m->next;
		workers_post(sp->w, spool_commit_done, m);
	}
	atomic_fetch_sub(&sp->pending, n);
	spool_inflight_done(sp, n);
}

static void
spool_jrec_done(void *arg)
{
	struct spool_jrec *r = arg;

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
spool_jrec_batch(struct spool *sp, struct spool_jrec *batch)
{
	struct spool_jrec *r, *next;
	char why[SPOOL_ERR_LEN];
	unsigned n = 0;
	int status;

	sbuf_reset(&sp->jbuf);
	for (r = batch; r != NULL; r = r->next) {
		n++;
		if (sbuf_append(&sp->jbuf, r->data, r->len) == -1)
			log_warnx("spool: journal batch too large");
	}
	status = spool_journal_write(sp, &sp->jbuf, why, sizeof(why));
	if (status == -1)
		log_warnx("spool: delivery records not journaled: %s", why);
	for (r = batch; r != NULL; r = next) {
		next = r->next;
		r->status = status;
		if (status == 0 && r->remove_id[0] != '\0' &&
		    unlinkat(sp->queuefd, r->remove_id, 0) == -1 &&
		    errno != ENOENT)
			log_warn("spool: unlink queue/%s", r->remove_id);
		workers_post(sp->w, spool_jrec_done, r);
	}
	spool_inflight_done(sp, n);
}

static void *
spool_committer_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_msg *batch;
	struct spool_jrec *jbatch;

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
			spool_jrec_batch(sp, jbatch);
		spool_lock(sp);
	}
	spool_unlock(sp);
	return NULL;
}

void
spool_journal_append(struct spool *sp, const char *data, size_t len,
    const char *remove_id, spool_done_cb cb, void *arg)
{
	struct spool_jrec *r = xcalloc(1, sizeof(*r));

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
spool_journal_scan(struct spool *sp, spool_line_cb cb, void *arg,
    struct sbuf *err)
{
	char buf[65536];
	struct sbuf line;
	uint64_t off = 0;
	ssize_t n, i;

	sbuf_init(&line, SPOOL_JLINE_MAX);
	for (;;) {
		n = pread(sp->journalfd, buf, sizeof(buf), (off_t)off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			spool_errf(err, "read journal: %s", strerror(errno));
			sbuf_release(&line);
			return -1;
		}
		if (n == 0)
			break;
		off += (uint64_t)n;
		for (i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				cb(arg, line.data, line.len);
				sbuf_reset(&line);
			} else if (sbuf_append_char(&line, buf[i]) == -1) {
				/* An absurd record: skip to its end. */
				sbuf_reset(&line);
			}
		}
	}
	sbuf_release(&line);
	return 0;
}

int
spool_queue_path(const struct spool *sp, const char *id, struct sbuf *out)
{
	if (!spool_id_valid(id))
		return -1;
	if (sp->in_dir)
		return sbuf_printf(out, "queue/%s", id);
	return sbuf_printf(out, "%s/queue/%s", sp->dir, id);
}

int
spool_chdir(struct spool *sp, struct sbuf *err)
{
	if (fchdir(sp->dirfd) == -1) {
		spool_errf(err, "chdir %s: %s", sp->dir, strerror(errno));
		return -1;
	}
	sp->in_dir = true;
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
		if (snprintf(sum, sizeof(sum), "size %020" PRIu64 " sha256 %s",
		    msg->size, msg->sha_hex) != SPOOL_SUM_LEN)
			log_panic("spool: bad size/sha256 record");
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
		spool_errf(err, "mkdir %s: %s", name, strerror(errno));
		return -1;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1)
		spool_errf(err, "open %s: %s", name, strerror(errno));
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
		spool_errf(err, "mkdir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		spool_errf(err, "open %s: %s", dir, strerror(errno));
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
		spool_errf(err, "fstat: %s", strerror(errno));
		goto fail;
	}
	if (tst.st_dev != qst.st_dev) {
		spool_errf(err, "%s: tmp and queue on different filesystems",
		    dir);
		goto fail;
	}

	sp->journalfd = openat(sp->dirfd, "journal", O_RDWR | O_APPEND |
	    O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (sp->journalfd == -1) {
		spool_errf(err, "open journal: %s", strerror(errno));
		goto fail;
	}
	/* One daemon per spool: the lock dies with the process. */
	if (flock(sp->journalfd, LOCK_EX | LOCK_NB) == -1) {
		spool_errf(err, "%s: %s", dir, errno == EWOULDBLOCK ?
		    "in use by another process" : strerror(errno));
		goto fail;
	}
	if (fstat(sp->journalfd, &tst) == -1) {
		spool_errf(err, "fstat journal: %s", strerror(errno));
		goto fail;
	}
	sp->journal_off = (uint64_t)tst.st_size;
	/* A record torn by a crash must not swallow the next one. */
	if (tst.st_size > 0) {
		if (pread(sp->journalfd, &last, 1, tst.st_size - 1) != 1) {
			spool_errf(err, "read journal: %s", strerror(errno));
			goto fail;
		}
		if (last != '\n') {
			if (spool_write_all(sp->journalfd, "\n", 1) == -1 ||
			    fdatasync(sp->journalfd) == -1) {
				spool_errf(err, "repair journal: %s",
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
		spool_errf(err, "fsync %s: %s", dir, strerror(errno));
		goto fail;
	}

	if ((sp->md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
		spool_errf(err, "SHA-256 not available");
		goto fail;
	}
	if (getrandom(&sp->id_seq, sizeof(sp->id_seq), 0) !=
	    (ssize_t)sizeof(sp->id_seq)) {
		spool_errf(err, "getrandom: %s", strerror(errno));
		goto fail;
	}
	if ((rc = pthread_create(&sp->committer, NULL, spool_committer_main,
	    sp)) != 0) {
		spool_errf(err, "pthread_create: %s", strerror(rc));
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

unsigned
spool_pending(const struct spool *sp)
{
	return atomic_load(&sp->pending);
}

/* ---- writing a message ---- */

static int
spool_hdr_kv(struct sbuf *sb, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	if (sbuf_append_str(sb, key) == -1 || sbuf_append_char(sb, ' ') == -1 ||
	    sbuf_append_escaped(sb, value, strlen(value), NULL, false) == -1 ||
	    sbuf_append_char(sb, '\n') == -1)
		return -1;
	return 0;
}

static int
spool_notify_format(struct sbuf *sb, unsigned notify)
{
	static const struct {
		unsigned	 bit;
		const char	*name;
	} map[] = {
		{ SMTP_PROTO_NOTIFY_NEVER, "NEVER" },
		{ SMTP_PROTO_NOTIFY_SUCCESS, "SUCCESS" },
		{ SMTP_PROTO_NOTIFY_FAILURE, "FAILURE" },
		{ SMTP_PROTO_NOTIFY_DELAY, "DELAY" },
	};
	const char *sep = "";
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (notify & map[i].bit) {
			if (sbuf_printf(sb, "%s%s", sep, map[i].name) == -1)
				return -1;
			sep = ",";
		}
	return 0;
}

static int
spool_header_format(struct sbuf *sb, const char *id,
    const struct spool_envelope *env)
{
	char ts[SPOOL_TS_LEN + 1];
	size_t i;

	spool_format_time(&env->arrival, ts, sizeof(ts));
	if (sbuf_append_str(sb, SPOOL_LINE1) == -1 ||
	    sbuf_append_str(sb, SPOOL_SUM_PLACEHOLDER "\n") == -1 ||
	    sbuf_append_str(sb, SPOOL_PREPEND_KEY) == -1 ||
	    sbuf_printf(sb, "%*s\n", SPOOL_PREPEND_MAX, "") == -1 ||
	    spool_hdr_kv(sb, "id", id) == -1 ||
	    spool_hdr_kv(sb, "arrival", ts) == -1 ||
	    spool_hdr_kv(sb, "listener", env->listener) == -1 ||
	    spool_hdr_kv(sb, "client-addr", env->client_addr) == -1 ||
	    spool_hdr_kv(sb, "client-name", env->client_name) == -1 ||
	    spool_hdr_kv(sb, "helo", env->helo) == -1 ||
	    spool_hdr_kv(sb, "protocol", env->protocol) == -1 ||
	    spool_hdr_kv(sb, "tls", env->tls) == -1 ||
	    spool_hdr_kv(sb, "sender",
	    env->sender != NULL ? env->sender : "") == -1 ||
	    spool_hdr_kv(sb, "envid", env->envid) == -1)
		return -1;
	if (env->ret == SMTP_PROTO_RET_FULL || env->ret == SMTP_PROTO_RET_HDRS)
		if (spool_hdr_kv(sb, "ret", env->ret == SMTP_PROTO_RET_FULL ?
		    "FULL" : "HDRS") == -1)
			return -1;
	if (env->body == SMTP_PROTO_BODY_7BIT ||
	    env->body == SMTP_PROTO_BODY_8BITMIME)
		if (spool_hdr_kv(sb, "body", env->body ==
		    SMTP_PROTO_BODY_7BIT ? "7BIT" : "8BITMIME") == -1)
			return -1;
	if (env->smtputf8 && sbuf_append_str(sb, "smtputf8\n") == -1)
		return -1;
	for (i = 0; i < env->nrcpts; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];

		if (sbuf_append_str(sb, "rcpt ") == -1 ||
		    sbuf_append_escaped(sb, r->addr, strlen(r->addr), NULL,
		    false) == -1)
			return -1;
		if (r->notify != 0 && (sbuf_append_str(sb, " notify=") == -1 ||
		    spool_notify_format(sb, r->notify) == -1))
			return -1;
		if (r->orcpt != NULL && (sbuf_append_str(sb, " orcpt=") == -1 ||
		    sbuf_append_escaped(sb, r->orcpt, strlen(r->orcpt), NULL,
		    false) == -1))
			return -1;
		if (sbuf_append_char(sb, '\n') == -1)
			return -1;
	}
	return sbuf_append_str(sb, ".\n");
}

static int
spool_jesc(struct sbuf *sb, const char *s)
{
	if (s == NULL)
		return 0;
	return sbuf_append_escaped(sb, s, strlen(s), SPOOL_JOURNAL_EXTRA,
	    false);
}

/* The parts of the "accepted" record known when the message starts. */
static int
spool_journal_prepare(struct spool_msg *msg, const struct spool_envelope *env)
{
	struct sbuf *sb = &msg->jrest;
	size_t i;

	if (spool_jesc(&msg->jfrom, env->sender) == -1)
		return -1;
	if (sbuf_printf(sb, "nrcpt=%zu to=", env->nrcpts) == -1)
		return -1;
	for (i = 0; i < env->nrcpts; i++)
		if (sbuf_append_str(sb, i > 0 ? ",<" : "<") == -1 ||
		    spool_jesc(sb, env->rcpts[i].addr) == -1 ||
		    sbuf_append_char(sb, '>') == -1)
			return -1;
	if (sbuf_append_str(sb, " client=") == -1 ||
	    spool_jesc(sb, env->client_name) == -1 ||
	    sbuf_append_char(sb, '[') == -1 ||
	    spool_jesc(sb, env->client_addr) == -1 ||
	    sbuf_append_str(sb, "] listener=") == -1 ||
	    spool_jesc(sb, env->listener) == -1 ||
	    sbuf_append_str(sb, " helo=") == -1 ||
	    spool_jesc(sb, env->helo) == -1 ||
	    sbuf_append_str(sb, " proto=") == -1 ||
	    spool_jesc(sb, env->protocol) == -1 ||
	    sbuf_append_str(sb, " tls=") == -1 ||
	    spool_jesc(sb, env->tls) == -1)
		return -1;
	return 0;
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
	sbuf_init(&msg->jfrom, SPOOL_JLINE_MAX);
	sbuf_init(&msg->jrest, SPOOL_JLINE_MAX);
	sbuf_init(&msg->jline, SPOOL_JLINE_MAX);
	if (spool_journal_prepare(msg, env) == -1) {
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
	if (spool_header_format(&hdr, msg->id, env) == -1) {
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
	unsigned int mdlen = 0, i;
	size_t idlen;

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
		idlen = message_id != NULL ? strlen(message_id) : 0;
		if (idlen > SPOOL_MSGID_MAX)
			idlen = SPOOL_MSGID_MAX;
		if (sbuf_printf(&msg->jline, "accepted id=%s msgid=",
		    msg->id) == -1 ||
		    (idlen > 0 && sbuf_append_escaped(&msg->jline, message_id,
		    idlen, SPOOL_JOURNAL_EXTRA, false) == -1) ||
		    sbuf_append_str(&msg->jline, " from=<") == -1 ||
		    sbuf_append(&msg->jline, msg->jfrom.data,
		    msg->jfrom.len) == -1 ||
		    sbuf_printf(&msg->jline, "> size=%" PRIu64 " sha256=%s ",
		    msg->size, msg->sha_hex) == -1 ||
		    sbuf_append(&msg->jline, msg->jrest.data,
		    msg->jrest.len) == -1)
			spool_msg_fail(msg, "journal record too long");
	}
	sbuf_release(&msg->jfrom);
	sbuf_release(&msg->jrest);
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

void
spool_envelope_clear(struct spool_envelope *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->prepend);
	free(env->listener);
	free(env->client_addr);
	free(env->client_name);
	free(env->helo);
	free(env->protocol);
	free(env->tls);
	memset(env, 0, sizeof(*env));
}

/* Unescapes a value into a new string; NULL if malformed or holding NUL. */
static char *
spool_unescape_dup(const char *s, size_t len)
{
	struct sbuf sb;
	char *out = NULL;

	sbuf_init(&sb, len);
	if (sbuf_append_unescaped(&sb, s, len) == 0 &&
	    memchr(sb.data, '\0', sb.len) == NULL)
		out = xstrndup(sb.data, sb.len);
	sbuf_release(&sb);
	return out;
}

static int
spool_set_str(char **field, const char *v, size_t vlen)
{
	if (*field != NULL)
		return -1;		/* repeated key */
	return (*field = spool_unescape_dup(v, vlen)) == NULL ? -1 : 0;
}

static int
spool_parse_notify(const char *v, size_t len, unsigned *out)
{
	static const struct {
		const char	*name;
		unsigned	 bit;
	} map[] = {
		{ "NEVER", SMTP_PROTO_NOTIFY_NEVER },
		{ "SUCCESS", SMTP_PROTO_NOTIFY_SUCCESS },
		{ "FAILURE", SMTP_PROTO_NOTIFY_FAILURE },
		{ "DELAY", SMTP_PROTO_NOTIFY_DELAY },
	};
	const char *end = v + len, *comma;
	size_t i, n;

	*out = 0;
	while (v < end) {
		comma = memchr(v, ',', (size_t)(end - v));
		n = (size_t)((comma != NULL ? comma : end) - v);
		for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strlen(map[i].name) == n &&
			    memcmp(map[i].name, v, n) == 0)
				break;
		if (i == sizeof(map) / sizeof(map[0]))
			return -1;
		*out |= map[i].bit;
		v += n + (comma != NULL ? 1 : 0);
	}
	return *out != 0 ? 0 : -1;
}

/* "ADDR [notify=...] [orcpt=...]" */
static int
spool_parse_rcpt(struct spool_envelope *env, size_t *alloc, const char *v,
    size_t len)
{
	struct spool_rcpt r = { NULL, 0, NULL };
	const char *end = v + len, *tok, *sp;
	size_t tlen;
	bool first = true, have_notify = false;

	while (v < end) {
		sp = memchr(v, ' ', (size_t)(end - v));
		tok = v;
		tlen = (size_t)((sp != NULL ? sp : end) - v);
		v += tlen + (sp != NULL ? 1 : 0);
		if (first) {
			if ((r.addr = spool_unescape_dup(tok, tlen)) == NULL)
				goto bad;
			first = false;
		} else if (tlen > 7 && memcmp(tok, "notify=", 7) == 0 &&
		    !have_notify) {
			if (spool_parse_notify(tok + 7, tlen - 7,
			    &r.notify) == -1)
				goto bad;
			have_notify = true;
		} else if (tlen > 6 && memcmp(tok, "orcpt=", 6) == 0 &&
		    r.orcpt == NULL) {
			if ((r.orcpt = spool_unescape_dup(tok + 6,
			    tlen - 6)) == NULL)
				goto bad;
		} else
			goto bad;
	}
	if (r.addr == NULL)
		goto bad;
	if (env->nrcpts == *alloc) {
		*alloc = *alloc == 0 ? 4 : *alloc * 2;
		env->rcpts = xreallocarray(env->rcpts, *alloc,
		    sizeof(*env->rcpts));
	}
	env->rcpts[env->nrcpts++] = r;
	return 0;
bad:
	free(r.addr);
	free(r.orcpt);
	return -1;
}

/*
 * Pure parser of a header (hdr[0..len) ends with the ".\n" line). Fills
 * env, the id, the recorded content size and SHA-256.
 */
static int
spool_header_parse(const char *hdr, size_t len, struct spool_envelope *env,
    char id_out[SPOOL_ID_LEN + 1], uint64_t *size_out, char sha_out[65],
    struct sbuf *err)
{
	const char *p = hdr, *end = hdr + len, *nl, *v;
	size_t llen, klen = 0, vlen, alloc = 0, i;
	bool have_arrival = false, have_sender = false, have_ret = false;
	bool have_body = false, have_utf8 = false, done = false;
	uint64_t size = 0;

	memset(env, 0, sizeof(*env));
	id_out[0] = '\0';

	nl = memchr(p, '\n', len);
	if (nl == NULL || (size_t)(nl - p) + 1 != SPOOL_LINE1_LEN ||
	    memcmp(p, SPOOL_LINE1, SPOOL_LINE1_LEN) != 0) {
		if (nl != NULL && (size_t)(nl - p) > sizeof(SPOOL_MAGIC) &&
		    memcmp(p, SPOOL_MAGIC " ", sizeof(SPOOL_MAGIC)) == 0)
			spool_errf(err, "unsupported format version");
		else
			spool_errf(err, "not a splitmx queue file");
		return -1;
	}
	p = nl + 1;

	/* size %020llu sha256 %64s */
	nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL || nl - p != SPOOL_SUM_LEN ||
	    memcmp(p, "size ", 5) != 0 ||
	    memcmp(p + 25, " sha256 ", 8) != 0)
		goto badsum;
	for (i = 5; i < 25; i++) {
		if (p[i] < '0' || p[i] > '9')
			goto badsum;
		if (size > (UINT64_MAX - 9) / 10)
			goto badsum;
		size = size * 10 + (uint64_t)(p[i] - '0');
	}
	for (i = 33; i < SPOOL_SUM_LEN; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f')))
			goto badsum;
	memcpy(sha_out, p + 33, 64);
	sha_out[64] = '\0';
	*size_out = size;
	p = nl + 1;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		llen = (size_t)(nl - p);
		if (llen == 1 && p[0] == '.') {
			done = true;
			p = nl + 1;
			break;
		}
		v = memchr(p, ' ', llen);
		klen = v != NULL ? (size_t)(v - p) : llen;
		v = v != NULL ? v + 1 : nl;
		vlen = (size_t)(nl - v);
#define KEY(k)	(klen == sizeof(k) - 1 && memcmp(p, k, klen) == 0)
		if (KEY("id")) {
			if (id_out[0] != '\0' || vlen != SPOOL_ID_LEN)
				goto bad;
			memcpy(id_out, v, SPOOL_ID_LEN);
			id_out[SPOOL_ID_LEN] = '\0';
			if (!spool_id_valid(id_out))
				goto bad;
		} else if (KEY("arrival")) {
			if (have_arrival ||
			    spool_parse_time(v, vlen, &env->arrival) == -1)
				goto bad;
			have_arrival = true;
		} else if (KEY("listener")) {
			if (spool_set_str(&env->listener, v, vlen) == -1)
				goto bad;
		} else if (KEY("client-addr")) {
			if (spool_set_str(&env->client_addr, v, vlen) == -1)
				goto bad;
		} else if (KEY("client-name")) {
			if (spool_set_str(&env->client_name, v, vlen) == -1)
				goto bad;
		} else if (KEY("helo")) {
			if (spool_set_str(&env->helo, v, vlen) == -1)
				goto bad;
		} else if (KEY("protocol")) {
			if (spool_set_str(&env->protocol, v, vlen) == -1)
				goto bad;
		} else if (KEY("tls")) {
			if (spool_set_str(&env->tls, v, vlen) == -1)
				goto bad;
		} else if (KEY("sender")) {
			if (have_sender ||
			    spool_set_str(&env->sender, v, vlen) == -1)
				goto bad;
			have_sender = true;
		} else if (KEY("prepend")) {
			while (vlen > 0 && v[vlen - 1] == ' ')
				vlen--;		/* the padding */
			if (vlen > 0 &&
			    spool_set_str(&env->prepend, v, vlen) == -1)
				goto bad;
		} else if (KEY("envid")) {
			if (spool_set_str(&env->envid, v, vlen) == -1)
				goto bad;
		} else if (KEY("ret")) {
			if (have_ret)
				goto bad;
			if (vlen == 4 && memcmp(v, "FULL", 4) == 0)
				env->ret = SMTP_PROTO_RET_FULL;
			else if (vlen == 4 && memcmp(v, "HDRS", 4) == 0)
				env->ret = SMTP_PROTO_RET_HDRS;
			else
				goto bad;
			have_ret = true;
		} else if (KEY("body")) {
			if (have_body)
				goto bad;
			if (vlen == 4 && memcmp(v, "7BIT", 4) == 0)
				env->body = SMTP_PROTO_BODY_7BIT;
			else if (vlen == 8 && memcmp(v, "8BITMIME", 8) == 0)
				env->body = SMTP_PROTO_BODY_8BITMIME;
			else
				goto bad;
			have_body = true;
		} else if (KEY("smtputf8")) {
			if (have_utf8 || vlen != 0)
				goto bad;
			env->smtputf8 = have_utf8 = true;
		} else if (KEY("rcpt")) {
			if (spool_parse_rcpt(env, &alloc, v, vlen) == -1)
				goto bad;
		}
		/* Other keys: later additions a version-1 reader may skip. */
#undef KEY
		p = nl + 1;
	}
	if (!done || p != end) {
		spool_errf(err, "header not terminated");
		goto fail;
	}
	if (id_out[0] == '\0' || !have_arrival || !have_sender ||
	    env->nrcpts == 0) {
		spool_errf(err, "header lacks id, arrival, sender or rcpt");
		goto fail;
	}
	return 0;
badsum:
	spool_errf(err, "no size/sha256 record (uncommitted or damaged)");
	return -1;
bad:
	{
		struct sbuf key;

		sbuf_init(&key, 64);
		if (sbuf_append_escaped(&key, p, klen > 32 ? 32 : klen, NULL,
		    true) == -1)
			sbuf_reset(&key);
		spool_errf(err, "malformed header line \"%s\"", key.data);
		sbuf_release(&key);
	}
fail:
	spool_envelope_clear(env);
	return -1;
}

static int
spool_read_header_fd(int fd, struct spool_envelope *env_out,
    char id_out[SPOOL_ID_LEN + 1], uint64_t *content_off_out,
    uint64_t *content_size_out, char sha256_out[65], struct sbuf *err)
{
	char chunk[16 * 1024];
	struct stat st;
	struct sbuf hdr;
	const char *endp;
	uint64_t size = 0;
	size_t want, hlen = 0, from;
	ssize_t n;
	int rc = -1;

	memset(env_out, 0, sizeof(*env_out));
	if (fstat(fd, &st) == -1) {
		spool_errf(err, "fstat: %s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		spool_errf(err, "not a regular file");
		return -1;
	}
	sbuf_init(&hdr, SPOOL_HEADER_MAX);
	/* Read until the "\n.\n" that ends the header, within the cap. */
	for (;;) {
		want = sizeof(chunk);
		if (want > hdr.cap - hdr.len)
			want = hdr.cap - hdr.len;
		if (want == 0) {
			spool_errf(err, "header longer than %d octets",
			    SPOOL_HEADER_MAX);
			goto out;
		}
		n = pread(fd, chunk, want, (off_t)hdr.len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			spool_errf(err, "read: %s", strerror(errno));
			goto out;
		}
		if (n == 0) {
			spool_errf(err, "truncated header");
			goto out;
		}
		from = hdr.len >= 2 ? hdr.len - 2 : 0;
		if (sbuf_append(&hdr, chunk, (size_t)n) == -1)
			log_panic("spool: header buffer");
		endp = memmem(hdr.data + from, hdr.len - from, "\n.\n", 3);
		if (endp != NULL) {
			hlen = (size_t)(endp - hdr.data) + 3;
			break;
		}
	}
	if (spool_header_parse(hdr.data, hlen, env_out, id_out, &size,
	    sha256_out, err) == -1)
		goto out;
	if ((uint64_t)st.st_size < hlen ||
	    (uint64_t)st.st_size - hlen != size) {
		spool_errf(err, "torn file: content is %" PRIu64
		    " octets, header says %" PRIu64,
		    (uint64_t)st.st_size >= hlen ?
		    (uint64_t)st.st_size - hlen : 0, size);
		spool_envelope_clear(env_out);
		goto out;
	}
	*content_off_out = hlen;
	*content_size_out = size;
	rc = 0;
out:
	sbuf_release(&hdr);
	return rc;
}

int
spool_read_header(const char *path, struct spool_envelope *env_out,
    uint64_t *content_off_out, uint64_t *content_size_out,
    char sha256_out[65], struct sbuf *err)
{
	char id[SPOOL_ID_LEN + 1];
	const char *base;
	int fd, rc;

	memset(env_out, 0, sizeof(*env_out));
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		spool_errf(err, "open: %s", strerror(errno));
		return -1;
	}
	rc = spool_read_header_fd(fd, env_out, id, content_off_out,
	    content_size_out, sha256_out, err);
	/* Read-only: a close error loses nothing. */
	(void)close(fd);
	if (rc == 0) {
		base = strrchr(path, '/');
		base = base != NULL ? base + 1 : path;
		if (spool_id_valid(base) && strcmp(base, id) != 0) {
			spool_errf(err, "file name does not match id %s", id);
			spool_envelope_clear(env_out);
			rc = -1;
		}
	}
	return rc;
}

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
		spool_errf(err, "open %s: %s", what, strerror(errno));
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
		spool_errf(err, "read %s: %s", what, strerror(errno));
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

/* The microsecond clock in a valid id's first 11 characters. */
static uint64_t
spool_id_time(const char *id)
{
	uint64_t us = 0;
	int i;

	for (i = 0; i < 11; i++)
		us = us << 5 | (uint64_t)(id[i] <= '9' ? id[i] - '0' :
		    id[i] - 'A' + 10);
	return us;
}

int
spool_recover(struct spool *sp, spool_found_cb found, void *arg,
    struct spool_recovery *stats_out, struct sbuf *err)
{
	struct spool_recovery st = { 0, 0, 0 };
	struct spool_envelope env;
	struct sbuf jb, ename, dest, why;
	char ts[SPOOL_TS_LEN + 1], id[SPOOL_ID_LEN + 1], sha[65];
	char werr[SPOOL_ERR_LEN];
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
		spool_errf(err, "recovery after messages were started");
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
		spool_errf(err, "fsync tmp: %s", strerror(errno));
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
			spool_errf(&why, "not a queue id");
		else if ((fd = openat(sp->queuefd, names[i], O_RDONLY |
		    O_NOFOLLOW | O_CLOEXEC)) == -1)
			spool_errf(&why, "open: %s", strerror(errno));
		else {
			if (spool_read_header_fd(fd, &env, id, &off, &size,
			    sha, &why) == 0) {
				if (strcmp(id, names[i]) == 0)
					bad = false;
				else {
					spool_errf(&why, "header id %s", id);
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
		spool_errf(err, "fsync corrupt/queue: %s", strerror(errno));
		goto out;
	}
	if (spool_journal_write(sp, &jb, werr, sizeof(werr)) == -1) {
		spool_errf(err, "%s", werr);
		goto out;
	}
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
