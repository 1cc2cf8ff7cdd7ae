/*
 * dedup.h - the duplicate-suppression index (issue 4, "Duplicates").
 *
 * Remembers, for each (message key, recipient, target), which queue id was
 * first delivered there and when, so a copy that reaches us again (sender
 * retry, second MX path, the cloud sending a copy back) is not delivered to
 * that target twice within the window (default 7 days). The index sits
 * behind a small vtable, struct dedup_ops: the embedded LMDB backend
 * (dedup_lmdb_ops, src/dedup_lmdb.c) is the default; a shared store (Redis)
 * for several equal-preference MX nodes (DESIGN.md "Scaling out") only has
 * to implement open/lookup/record/release/expire/close. The queue claims
 * each (message key, recipient, target) with record before the first
 * delivery attempt: the first queue id to claim a key owns it until the
 * window ends or it releases the claim (its copy failed for good there). The
 * message key builder (dedup_msgkey_*) is pure and backend-independent.
 *
 * Why LMDB: it is embedded (no server to run or to lose), it is a
 * copy-on-write B-tree whose commit writes the new pages, fsyncs, and then
 * flips a meta page, so a crash at any instruction leaves the last committed
 * state intact with no recovery step; commits are durable when they return;
 * readers never block writers or each other; the map size gives a hard
 * bound on disk use; and Debian ships it (liblmdb-dev, -llmdb).
 *
 * Blocking: every call except dedup_msgkey_* may block on disk (a write
 * commit fsyncs), so the daemon calls them from workers_ threads, never
 * from the loop thread.
 *
 * Thread safety (LMDB backend): one struct dedup per database path per
 * process (LMDB forbids opening the same environment twice in a process),
 * and not across fork(): a child opens its own. After dedup_open returns,
 * lookup, record, record_many and expire may be called concurrently from any
 * threads on the same struct dedup: the environment and its two table
 * handles are shared and read-only after open; the environment is opened
 * with MDB_NOTLS, so a read transaction belongs to the call, not to the
 * thread, and pooled worker threads do not each pin a reader slot; each
 * call begins and ends its own transactions on the calling thread; LMDB lets
 * one write transaction run at a time (a second writer waits on LMDB's
 * writer lock, readers never wait). dedup_close must not overlap any other
 * call. Out-parameters and err belong to the caller and are not shared.
 */
#ifndef SPLITMX_DEDUP_H
#define SPLITMX_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sbuf.h"

#define DEDUP_QID_LEN          16  /* = SPOOL_ID_LEN, [0-9A-Z]{16} */
#define DEDUP_REPLY_MAX        128 /* stored target reply; longer is cut */
#define DEDUP_MSGID_MAX        998 /* RFC 5322 2.1.1 line limit */
#define DEDUP_MSGKEY_MAX       (2 + DEDUP_MSGID_MAX) /* "m:" + Message-ID */
#define DEDUP_WINDOW_DEFAULT   ((time_t)7 * 24 * 60 * 60)
#define DEDUP_MAP_SIZE_DEFAULT ((size_t)1 << 30) /* 1 GiB */
#define DEDUP_EXPIRE_BATCH     1024 /* entries removed per write txn */
#define DEDUP_TRACE_PREFIX     "t:" /* + queue id: claims by trace */

/*
 * Message keys. "m:" followed by the first Message-ID header's value,
 * unfolded and trimmed, angle brackets and case kept as received; or, when
 * there is no usable Message-ID (absent, empty, longer than
 * DEDUP_MSGID_MAX, or containing a NUL), "h:" followed by 64 lower-case hex
 * digits of a SHA-256 over the canonical From, Date, Subject and To values
 * (unfolded, runs of whitespace collapsed to one space, trimmed, From and
 * To lower-cased; every occurrence in order) and the body (line ends
 * normalized to LF, trailing empty lines ignored, as DKIM "simple" does).
 * The two prefixes cannot collide. A third kind, "t:" followed by a queue
 * id, is not built here: the queue claims each pair under it too, so that a
 * copy coming back with that id in its trace is recognised whatever its
 * Message-ID or content (DEDUP_TRACE_PREFIX). The builder streams: feed the
 * content (header section, blank line, body) in chunks of any size; memory
 * stays bounded (one Message-ID buffer and a few SHA-256 contexts), and the key
 * does not depend on how the content was split.
 */
struct dedup_msgkey;

/* NULL with err set when OpenSSL cannot set up SHA-256. */
struct dedup_msgkey *dedup_msgkey_new(struct sbuf *err);
/* Feeds the next content bytes; -1 with err set on an OpenSSL failure. */
int dedup_msgkey_feed(struct dedup_msgkey *mk, const void *data, size_t len,
    struct sbuf *err) __attribute__((warn_unused_result));
/*
 * Appends the key (at most DEDUP_MSGKEY_MAX bytes, no NUL inside) to out;
 * -1 with err set on an OpenSSL failure or when out's cap is too small.
 * The builder cannot be fed again afterwards; free it.
 */
int dedup_msgkey_final(struct dedup_msgkey *mk, struct sbuf *out,
    struct sbuf *err) __attribute__((warn_unused_result));
/* NULL is ignored. */
void dedup_msgkey_free(struct dedup_msgkey *mk);
/* One call for content already in memory; same result as the stream. */
int dedup_msgkey(const void *content, size_t len, struct sbuf *out,
    struct sbuf *err) __attribute__((warn_unused_result));

/* What an entry is about. Strings are borrowed for the call. */
struct dedup_key {
	const char *msgkey; /* from dedup_msgkey_final, or "t:" QID */
	const char *rcpt;   /* mailbox as received; lower-cased */
	const char *target; /* target name from the config */
};

/* What lookup reports about the first delivery. */
struct dedup_entry {
	char qid[DEDUP_QID_LEN + 1];     /* first queue id */
	time_t first_seen;               /* seconds since the epoch */
	char reply[DEDUP_REPLY_MAX + 1]; /* target reply, "" if none */
};

/*
 * One record_many item: a claim. result is written: 1 inserted (qid now
 * holds the key), 0 a live entry was there (or an earlier item of the same
 * batch took it): owner names the queue id that holds it.
 */
struct dedup_rec {
	struct dedup_key key;
	const char *qid;               /* DEDUP_QID_LEN chars */
	const char *reply;             /* NULL or short text */
	int result;                    /* out */
	char owner[DEDUP_QID_LEN + 1]; /* out: who holds the key */
};

struct dedup_conf {
	const char *path; /* LMDB: a directory, created 0700 */
	size_t map_size;  /* bytes; 0 = DEDUP_MAP_SIZE_DEFAULT */
	                  /* LMDB: at least 48 pages (192 KiB) */
	time_t window;    /* seconds; 0 = DEDUP_WINDOW_DEFAULT */
	/*
	 * Commits do not sync (LMDB: MDB_NOSYNC); dedup_sync makes them
	 * durable. Safe against a process crash (the page cache has every
	 * commit); after a machine crash the index may be torn and must be
	 * rebuilt: the daemon journals every claim for that.
	 */
	bool nosync;
};

struct dedup;

/*
 * The backend interface. A backend's open allocates its own struct that
 * begins with a struct dedup, fills ops and window, and returns it. The
 * wrappers below check arguments before calling in, so backends get valid
 * keys (non-empty C strings, msgkey starting "m:", "h:" or "t:"), well-formed
 * queue ids and n >= 1; a backend keeps at most DEDUP_REPLY_MAX bytes of a
 * reply. Return conventions are the
 * wrappers'. Entries whose first_seen is window seconds or more before now
 * count as absent for lookup and record.
 */
struct dedup_ops {
	const char *name;
	struct dedup *(*open)(const struct dedup_conf *conf, struct sbuf *err);
	int (*lookup)(struct dedup *dd, const struct dedup_key *key, time_t now,
	    struct dedup_entry *out, struct sbuf *err);
	int (*record)(struct dedup *dd, struct dedup_rec *recs, size_t n,
	    time_t now, struct sbuf *err);
	int (*expire)(struct dedup *dd, time_t now, size_t *removed_out,
	    struct sbuf *err);
	int (*release)(struct dedup *dd, const struct dedup_key *key,
	    const char *qid, struct sbuf *err);
	int (*sync)(struct dedup *dd, struct sbuf *err);
	void (*close)(struct dedup *dd);
};

/* The common head of every backend's handle; callers treat it as opaque. */
struct dedup {
	const struct dedup_ops *ops;
	time_t window;
	_Atomic unsigned long long evicted; /* see dedup_evicted */
};

/* The embedded default. */
extern const struct dedup_ops dedup_lmdb_ops;

/*
 * Opens (creating when missing) the index. LMDB: conf->path is a directory
 * holding data.mdb and lock.mdb; stale reader slots left by a killed
 * process are cleared. A map size below what the file already uses is
 * raised to that. Startup only. NULL with err set.
 */
struct dedup *dedup_open(const struct dedup_ops *ops,
    const struct dedup_conf *conf, struct sbuf *err);

/*
 * 1 when key has an entry younger than the window (out filled when not
 * NULL), 0 when not, -1 with err set on an error.
 */
int dedup_lookup(struct dedup *dd, const struct dedup_key *key, time_t now,
    struct dedup_entry *out, struct sbuf *err)
    __attribute__((warn_unused_result));

/*
 * Inserts (key -> qid, now, reply) unless a live entry exists, which is
 * kept (first delivery wins). Returns 1 inserted, 0 already there, -1 with
 * err set (nothing written). Durable when it returns 0 or 1. reply may be
 * NULL; longer than DEDUP_REPLY_MAX it is cut.
 */
int dedup_record(struct dedup *dd, const struct dedup_key *key, const char *qid,
    const char *reply, time_t now, struct sbuf *err)
    __attribute__((warn_unused_result));

/*
 * Group commit: records n items in one write transaction (one fsync); a
 * key repeated within the batch keeps its first item. Sets each
 * recs[i].result. All or nothing: 0, or -1 with err set and nothing
 * written. LMDB: deleting needs free pages too (copy-on-write), so records
 * treat the map as full at a soft limit, the map less a reserve of 1/16
 * (at least 32 pages) kept for expiry and eviction; at that limit, or on
 * MDB_MAP_FULL itself, entries past the window and then the oldest live
 * ones are removed until the batch fits with 1/16 to spare (counted in
 * dedup_evicted), and the batch is retried once. A batch larger than the
 * whole limit fails without evicting anything.
 */
int dedup_record_many(struct dedup *dd, struct dedup_rec *recs, size_t n,
    time_t now, struct sbuf *err) __attribute__((warn_unused_result));

/*
 * Releases a claim: removes key's entry when qid holds it (so the next copy
 * of the message may claim it); an entry held by another queue id is left
 * alone. Returns 1 removed, 0 not there or not qid's, -1 with err set.
 * Durable when it returns. (A shared store: a compare-and-delete.)
 */
int dedup_release(struct dedup *dd, const struct dedup_key *key,
    const char *qid, struct sbuf *err) __attribute__((warn_unused_result));

/*
 * Removes every entry at least window seconds old at now. LMDB: walks a
 * secondary table ordered by first-seen time from the oldest end, in write
 * transactions of at most DEDUP_EXPIRE_BATCH entries so other writers wait
 * briefly. removed_out may be NULL. 0, or -1 with err set (batches already
 * committed stay removed).
 */
int dedup_expire(struct dedup *dd, time_t now, size_t *removed_out,
    struct sbuf *err) __attribute__((warn_unused_result));

/*
 * How many live entries (younger than the window) were removed since open
 * to make room in a full index; any thread. The module does not log: when
 * this grows, the caller warns that the map size is too small.
 */
unsigned long long dedup_evicted(struct dedup *dd);

/*
 * Makes every commit so far durable (with nosync; else a no-op): other
 * writers wait meanwhile. 0, or -1 with err set.
 */
int dedup_sync(struct dedup *dd, struct sbuf *err)
    __attribute__((warn_unused_result));

/* Closes the index; no other call may be in flight. NULL is ignored. */
void dedup_close(struct dedup *dd);

/*
 * For backends: appends "MSGKEY\0rcpt\0TARGET" with rcpt lower-cased
 * (ASCII) to out, or, when that is longer than max_len, "#" followed by
 * the 32-byte SHA-256 of it (raw keys start with 'm', 'h' or 't', so the forms
 * cannot collide). -1 with err set on an OpenSSL failure or out's cap.
 */
int dedup_key_encode(const struct dedup_key *key, size_t max_len,
    struct sbuf *out, struct sbuf *err) __attribute__((warn_unused_result));

#endif
