/*
 * spool.h - the durable message store and the journal.
 *
 * The only module that touches spool files. A message file holds the
 * envelope, how the message arrived, and the content with its SHA-256; it
 * is written under tmp/, and committed by fsync, an "accepted" journal
 * record made durable, a rename into queue/ and an fsync of queue/. The
 * committing steps run on worker threads and are grouped (one directory
 * fsync and one journal fdatasync serve every message committed together).
 * The file format is documented in splitmx-spool(5).
 */
#ifndef SPLITMX_SPOOL_H
#define SPLITMX_SPOOL_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sbuf.h"
#include "spool_codec.h"
#include "spool_read.h"

struct workers;
struct spool;
struct spool_msg;

/*
 * Opens (creating when missing) DIR/{tmp,queue,corrupt} and DIR/journal,
 * holding directory fds, and takes an exclusive lock on the journal (a
 * second process on the same spool fails). Startup only (may block). The
 * directories must belong to the user the daemon runs as. w may be NULL
 * for recovery-only use; commits need it. NULL with err set.
 */
struct spool *spool_open(const char *dir, struct workers *w, struct sbuf *err);
/*
 * Waits for commits, aborts and file pre-creation in flight, stops the
 * committer and closes everything. Call it after the loop stopped and
 * BEFORE workers_free(w): the workers must still run to finish the
 * commits, and the commit callbacks they leave queued are then run by
 * workers_free on its caller. NULL is ignored.
 */
void spool_close(struct spool *sp);

struct spool_recovery {
	unsigned queued;      /* committed messages indexed */
	unsigned removed_tmp; /* half-received files removed */
	unsigned quarantined; /* unreadable files moved to corrupt/ */
};

/* Called for each committed message found at startup. */
typedef void (*spool_found_cb)(void *arg, const char *id,
    const struct spool_envelope *env, uint64_t content_size);

/*
 * Keeps up to n (at most 4096) empty tmp files created ahead of need by
 * the workers, so spool_msg_new does not wait for the filesystem: creating
 * a file may wait for a journal commit (ext4 under commit load: ~250 us
 * median, tens of ms at worst), while the loop thread is blocked. They show
 * as empty files in tmp/ and hold n fds: 64 at first, twice as many each
 * time the pool runs low, up to n; removed messages' files (128 KiB at
 * most) come back into the pool. 0, the default, creates each file inside
 * spool_msg_new and unlinks it at removal. Call after spool_open, before
 * spool_recover.
 */
void spool_set_precreate(struct spool *sp, unsigned n);

/*
 * Startup recovery, before the loop serves anyone (blocks): removes and
 * journals every tmp/ file, checks every queue/ file's header and size,
 * moves unreadable ones to corrupt/ with a log line, and reports the rest
 * in id order. Call once, before the first spool_msg_new (after that it
 * returns -1: it would remove files in use). With spool_set_precreate,
 * it then starts filling the pool of tmp files.
 */
int spool_recover(struct spool *sp, spool_found_cb found, void *arg,
    struct spool_recovery *stats_out, struct sbuf *err);

/*
 * Starts a message: creates tmp/ID (or takes a pre-created one, see
 * spool_set_precreate), which gives its queue id, and writes the
 * envelope. env needs a sender and at least one recipient; it is copied,
 * not kept. Loop thread only (write only). NULL with err set.
 */
struct spool_msg *spool_msg_new(struct spool *sp,
    const struct spool_envelope *env, struct sbuf *err);

const char *spool_msg_id(const struct spool_msg *msg);
/* Content octets appended so far. */
uint64_t spool_msg_size(const struct spool_msg *msg);

/*
 * Appends content (buffered; written when the buffer fills) and feeds the
 * SHA-256. Returns 0, or -1 with err set (e.g. "write: No space left on
 * device") once any write has failed; the failure is sticky. err may be
 * NULL. Loop thread.
 */
int spool_msg_append(struct spool_msg *msg, const void *data, size_t len,
    struct sbuf *err) __attribute__((warn_unused_result));

/*
 * status 0: durable in queue/ and journaled; the id may be acknowledged
 * (err is NULL). status -1: nothing committed (file removed, a "discarded"
 * record journaled), err says why. Runs on the loop thread; id and err are
 * valid only during the call.
 */
typedef void (
    *spool_commit_cb)(void *arg, int status, const char *id, const char *err);

/*
 * Finishes and commits msg asynchronously and takes ownership of it; cb
 * always runs exactly once, later (never from inside this call). Loop
 * thread. message_id (may be NULL) goes into the journal's accepted record.
 */
void spool_msg_commit(struct spool_msg *msg, const char *message_id,
    spool_commit_cb cb, void *arg);

/*
 * Sets the trace fields to send in front of the content (complete CRLF
 * lines); written into the file's header at commit. -1 when longer than
 * the reserved space (8 KiB escaped): then nothing is prepended.
 */
int spool_msg_set_prepend(struct spool_msg *msg, const char *text, size_t len);

/* Loop thread: writes buffered content out, so a worker can read it. */
int spool_msg_sync_content(struct spool_msg *msg, struct sbuf *err);

/*
 * Worker (while the loop leaves msg alone): reads content octets from off,
 * as pread does. For checks that need the whole message (DKIM).
 */
ssize_t spool_msg_read(struct spool_msg *msg, uint64_t off, void *buf,
    size_t len);

/* Discards msg (its tmp file is removed on a worker). Takes ownership. */
void spool_msg_abort(struct spool_msg *msg);

/*
 * Commits whose outcome is not decided yet. A decided commit's callback is
 * queued in the workers before this count drops, so a graceful shutdown
 * waits until spool_pending() and workers_busy() are both 0.
 */
unsigned spool_pending(const struct spool *sp);

/* Runs on the loop thread once the records are durable (status 0) or not. */
typedef void (*spool_done_cb)(void *arg, int status);

/*
 * Appends complete '\n'-ended journal lines (delivery states, written by
 * the queue) through the committer: grouped, one fdatasync per batch.
 * When remove_id is set, queue/remove_id is unlinked once the lines are
 * durable (the message is final for every target). cb may be NULL.
 */
void spool_journal_append(struct spool *sp, const char *data, size_t len,
    const char *remove_id, spool_done_cb cb, void *arg);

/*
 * Called on the committer thread at each checkpoint, before the log is
 * let go up to it: what is kept outside the spool but journaled through it
 * (the duplicate index, when it does not sync its own commits) must be
 * made durable here. -1: the checkpoint is not taken (tried again later).
 */
typedef int (*spool_checkpoint_hook)(void *arg);
void spool_set_checkpoint_hook(struct spool *sp, spool_checkpoint_hook fn,
    void *arg);

/*
 * True when the daemon that last wrote this spool stopped without a
 * clean shutdown and the machine has rebooted since (boot id): whatever
 * it kept without syncing (a duplicate index in no-sync mode) may be
 * torn and must be rebuilt from the journal. Known after spool_open.
 */
bool spool_lost_boot(const struct spool *sp);

/*
 * Segment size of the log (default 64 MiB, at least 1 MiB), for the
 * segments started from now on.
 */
void spool_set_log_segment(struct spool *sp, uint64_t bytes);

/*
 * Journal segments: past max_bytes (0: never) the journal is closed as
 * journal.TIME at a checkpoint and a new one starts with the live
 * records; closed segments older than retention_secs (0: forever) are
 * removed. Defaults 64 MiB and 90 days. Any time after spool_open.
 */
void spool_set_journal_rotation(struct spool *sp, uint64_t max_bytes,
    unsigned retention_secs);

/* "2026-11-23T01:20:00.123456Z", the journal's timestamp format. */
void spool_timestamp(char *out, size_t outlen);

/*
 * The read side (message contents, the journal; spool_read.h), valid until
 * spool_close. Any thread.
 */
const struct spool_reader *spool_reader(const struct spool *sp);

/*
 * Makes the spool directory the process's working directory, so that
 * message paths are relative ("queue/ID") and stay reachable after the
 * privilege drop even when the user cannot search the spool's parents
 * (Postfix does the same with its queue_directory). Startup only.
 */
int spool_chdir(struct spool *sp, struct sbuf *err);

/* Worker: moves queue/ID to corrupt/ID (content failed its checksum). */
int spool_quarantine(struct spool *sp, const char *id);

#endif
