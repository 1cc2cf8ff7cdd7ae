/*
 * spool_int.h - what the parts of the spool module share.
 *
 * The structs behind struct spool and struct spool_msg, and the helpers
 * one part calls in another. Never included outside src/splitmxd/spool*.c.
 */
#ifndef SPLITMX_SPOOL_INT_H
#define SPLITMX_SPOOL_INT_H

#include <sys/types.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

#include "spool.h"
#include "spool_logfmt.h"

#define SPOOL_BUF_SIZE   (64 * 1024)       /* content write buffer */
#define SPOOL_JBATCH_MAX ((size_t)1 << 40) /* bounded by batch size */
#define SPOOL_ERR_LEN    256
/* Records with no message to share a flush with wait this long (us). */
#define SPOOL_RECORD_DELAY 20000L
#define SPOOL_RECORD_EAGER 1024 /* or until this many are queued */
/*
 * A group waits up to this long (us) while other messages are being
 * received or finished, so that one flush serves them too; and no longer
 * once it holds SPOOL_GROUP_FULL messages.
 */
#define SPOOL_SIBLING_WAIT 1000L
#define SPOOL_GROUP_FULL   32
#define SPOOL_BACKLOG_MAX  ((size_t)64 << 20) /* journal lines held back */
/*
 * Creating a file can wait for the filesystem journal (ext4 under commit
 * load: a median of 250 us, tens of ms behind a commit, measured here).
 * With spool_set_precreate, workers create tmp files ahead of need and
 * spool_msg_new only takes one.
 */
#define SPOOL_POOL_MAX   4096
#define SPOOL_POOL_JOBS  2  /* refill jobs at once */
#define SPOOL_POOL_FIRST 64 /* files made ahead at first */
/*
 * A removed message's file goes back to the pool (spool_pool_recycle)
 * rather than being unlinked: on ext4 without a journal, every inode
 * allocation skips the inodes freed in the last 30 s, one inode table
 * lookup each, so create-and-unlink churn costs more CPU than the rest
 * of a message (docs/engineering-notes.md). Kept: files up to
 * SPOOL_RECYCLE_MAX, SPOOL_POOL_BYTES of stale content in all.
 */
#define SPOOL_RECYCLE_MAX ((uint64_t)128 << 10)
#define SPOOL_POOL_BYTES  ((uint64_t)32 << 20)
struct spool_file {
	int fd;
	char id[SPOOL_ID_LEN + 1];
	uint64_t stale; /* octets of a removed message still in it */
};

/*
 * The log (spool_log.c, spool format 2): committer thread only, or
 * spool_open before the committer starts.
 */
#define SPOOL_LOG_SEG_DEFAULT ((uint64_t)64 << 20)  /* segment size */
#define SPOOL_LOG_INIT_MIN    ((uint64_t)128 << 10) /* zero fill ahead: */
#define SPOOL_LOG_INIT_MAX    ((uint64_t)8 << 20)   /* doubles up to this */
#define SPOOL_LOG_IMAGE_MAX   ((size_t)1 << 20)     /* larger: own fsync */
#define SPOOL_LOG_STAGE       ((size_t)4 << 20)     /* write buffer */
#define SPOOL_LOG_SPARES      2                     /* recycled segments */
#define SPOOL_LOG_CKPT_SECS   2                     /* checkpoint interval */
struct spool_log {
	int dirfd;          /* log/ */
	int fd;             /* current segment */
	uint64_t seg_start; /* its first LSN (its name) */
	uint64_t seg_init;  /* its octets written so far, zero fill included */
	uint64_t init_step; /* the next zero fill */
	uint64_t seg_size;  /* switch to a new segment past this */
	uint64_t lsn;       /* where the next record goes */
	uint64_t spare[SPOOL_LOG_SPARES]; /* old segments to reuse, by name */
	unsigned nspare;
	uint64_t *old; /* segments before the current one, by name */
	size_t nold, oldcap;
	unsigned char *stage; /* records not yet written */
	size_t stage_len;
	uint64_t stage_lsn;
	char (*ids)[SPOOL_ID_LEN + 1]; /* images since the checkpoint */
	size_t nids, idcap;
	uint64_t redo; /* of the last checkpoint */
	struct timespec ckpt_at;
	bool dirty; /* records since the last checkpoint */
	char boot[SPOOL_LOGFMT_BOOT_MAX + 1];
	bool lost_boot; /* the last run ended with its boot, uncleanly */
	spool_checkpoint_hook hook;
	void *hook_arg;
	/*
	 * A checkpoint whose file fsyncs run on a worker (one flush per
	 * file: thousands when a target is down), so commits go on.
	 */
	bool ck_busy;                     /* committer */
	atomic_bool ck_done;              /* set by the worker */
	atomic_int ck_status;             /* 0, or -1: files not synced */
	uint64_t ck_redo, ck_journal;     /* what it will name */
	char (*ck_ids)[SPOOL_ID_LEN + 1]; /* the worker's, while busy */
	size_t ck_nids, ck_idcap;
	uint64_t *ck_old; /* segments free once it is written */
	size_t ck_nold, ck_oldcap;
};

struct spool {
	char *dir;
	struct workers *w;
	int dirfd;
	int tmpfd;
	int queuefd; /* committer, recovery */
	int corruptfd;
	int journalfd; /* committer, recovery */
	int sparefd;   /* /dev/null held back for a tmp file (loop thread) */
	struct spool_reader *rd; /* the read side, any thread */
	EVP_MD *md;

	pthread_mutex_t pool_mtx; /* everything down to started */
	uint64_t last_us;         /* id clock, strictly rising */
	uint32_t id_seq;          /* id tail, random start */
	struct spool_file *pool;  /* FIFO ring of pool_max */
	unsigned pool_max;        /* 0: no pre-creation */
	atomic_uint signalling;   /* spool_wake_committer in progress */
	unsigned pool_target;     /* refills make it this many */
	unsigned pool_head;
	unsigned pool_n;
	unsigned pool_creating;
	unsigned pool_jobs;  /* refill jobs queued */
	uint64_t pool_bytes; /* stale octets in the pool */
	bool pool_failing;   /* last creation failed */
	bool started;        /* tmp/ in use: no recovery */

	pthread_t committer;
	bool committer_started;
	pthread_mutex_t mtx;      /* cq_*, stopping, inflight 0 */
	pthread_cond_t cq_cond;   /* committer: work or stop */
	pthread_cond_t idle_cond; /* spool_close: inflight 0 */
	struct spool_msg *cq_head;
	struct spool_msg **cq_tail;
	struct spool_jq *jq_head; /* delivery records */
	struct spool_jq **jq_tail;
	unsigned jq_n;            /* records queued */
	struct timespec jq_since; /* when the first of them came */
	bool stopping;
	atomic_uint inflight;  /* jobs that use sp */
	atomic_uint pending;   /* commits not yet decided */
	atomic_uint receiving; /* messages started, not committed or aborted */

	/* Committer thread (or recovery, before any commit) only. */
	uint64_t journal_off;
	struct sbuf jbuf;
	struct sbuf jbacklog; /* durable in the log, not yet in the journal */
	uint64_t journal_max; /* rotate past this (0: never) */
	uint64_t log_ckpt_journal;  /* journal_off the checkpoint names */
	unsigned journal_retention; /* seconds closed segments are kept */
	struct spool_log log;

	/* Set once, never cleared: the spool refuses new mail. */
	atomic_bool broken;
	char broken_why[SPOOL_ERR_LEN];
};

struct spool_msg {
	struct spool_msg *next; /* committer queue */
	struct spool *sp;       /* not used on completion */
	char id[SPOOL_ID_LEN + 1];
	int fd;
	uint64_t size;        /* content octets */
	uint64_t content_off; /* where the content starts */
	EVP_MD_CTX *sha;
	char sha_hex[65];
	unsigned char *buf;
	size_t buflen;
	bool failed; /* sticky */
	bool image;  /* small: made durable as a log image, fd kept */
	bool finish_in_committer; /* small: no worker step */
	uint64_t file_size;       /* header and content, for the image */
	uint64_t stale;           /* a recycled file's old length */
	bool journaled;           /* accepted record durable */
	bool renamed;             /* now queue/ID */
	char err[SPOOL_ERR_LEN];
	char *sender;        /* for the accepted record */
	struct sbuf jenv;    /* its envelope fields */
	struct sbuf jline;   /* whole record, no timestamp */
	struct sbuf prepend; /* escaped, for line 3 */
	spool_commit_cb cb;
	void *cbarg;
};

/* Journal records from the queue (delivery states), group-committed. */
struct spool_jq {
	struct spool_jq *next;
	struct spool *sp;
	char *data; /* complete '\n'-ended lines */
	size_t len;
	char remove_id[SPOOL_ID_LEN + 1]; /* "" none */
	int status;
	spool_done_cb cb;
	void *cbarg;
};

/* spool.c */
void spool_check(int rc, const char *what);
void spool_lock(struct spool *sp);
void spool_unlock(struct spool *sp);
void spool_msg_fail(struct spool_msg *msg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void spool_break(struct spool *sp, const char *why);
void spool_now(char *out, size_t outlen);
int spool_write_all(int fd, const void *data, size_t len);
int spool_pwrite_all(int fd, const void *data, size_t len, off_t off);
void spool_unlink_tmp(struct spool *sp, const char *id);
int spool_rename_noreplace(int fromfd, const char *from, int tofd,
    const char *to);
void spool_inflight_done(struct spool *sp, unsigned n);

/* spool_commit.c */
void spool_journal_discard(struct sbuf *sb, const char *ts, const char *verb,
    const char *id, const char *reason);
int spool_journal_write(struct spool *sp, const struct sbuf *sb,
    struct sbuf *why);
void *spool_committer_main(void *arg);
void spool_sync_job(void *arg);
void spool_commit_small(struct spool_msg *msg);
void spool_abort_job(void *arg);

/* spool_log.c */
int spool_log_open(struct spool *sp, struct sbuf *err);
void spool_log_close(struct spool *sp);
/* The journal as it is now is covered (recovery, before any commit). */
int spool_log_write_ckpt(struct spool *sp, bool clean, struct sbuf *why);
int spool_log_add(struct spool *sp, uint32_t type, const void *a, size_t alen,
    const void *b, size_t blen, struct sbuf *why);
int spool_log_add_image(struct spool *sp, const char *id, int fd, uint64_t len,
    struct sbuf *why);
int spool_log_add_lines(struct spool *sp, const struct sbuf *lines,
    struct sbuf *why);
int spool_log_sync(struct spool *sp, struct sbuf *why);
void spool_log_rollback(struct spool *sp, uint64_t lsn);
void spool_log_note_image(struct spool *sp, const char *id);
void spool_log_maybe_checkpoint(struct spool *sp, bool clean);
bool spool_log_ckpt_ready(struct spool *sp);

/* spool_rotate.c */
int spool_rotate_fixup(struct spool *sp, struct sbuf *err);
int spool_rotate(struct spool *sp, struct sbuf *why);

/* spool_msg.c */
void spool_msg_flush(struct spool_msg *msg);
void spool_msg_free(struct spool_msg *msg);
void spool_pool_lock(struct spool *sp);
void spool_pool_unlock(struct spool *sp);
void spool_pool_refill_job(void *arg);
void spool_pool_recycle(struct spool *sp, const char *id);

#endif
