/*
 * spool_read.h - reading a spool: message contents and the journal.
 *
 * The read side of the spool, shared by the daemon (delivery, DSNs,
 * maildir copies, recovery, journal replay) and splitmxctl, which may read
 * a spool while the daemon runs or is stopped: it creates nothing, takes no
 * lock, opens every file O_NOFOLLOW and tolerates a journal whose last
 * record a crash left torn. Blocking file I/O: call it from workers or
 * tools, never from the daemon's event loop.
 */
#ifndef SPLITMX_SPOOL_READ_H
#define SPLITMX_SPOOL_READ_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"
#include "spool_codec.h"

struct spool_reader;
struct spool_content;

/*
 * Opens DIR read-only (its queue/ and journal; nothing is created or
 * locked). NULL with err set when DIR or DIR/queue cannot be opened.
 */
struct spool_reader *spool_reader_open(const char *dir, struct sbuf *err);
/* NULL is ignored. */
void spool_reader_close(struct spool_reader *rd);
/*
 * A second reader on the same directories (its own descriptors, from
 * dup), for threads whose jobs may outlive the first one's owner. NULL
 * with errno set when out of descriptors.
 */
struct spool_reader *spool_reader_dup(const struct spool_reader *rd);

struct spool_scan_stats {
	uint64_t records;   /* complete lines passed to cb */
	uint64_t oversized; /* lines over SPOOL_JLINE_MAX, skipped */
	uint64_t torn_tail; /* octets after the last '\n' (a crash) */
};

typedef void (*spool_line_cb)(void *arg, const char *line, size_t len);
/*
 * Calls cb for every complete journal line (without its '\n'), oldest
 * first. A torn last record is not an error: its length is counted in
 * stats_out (may be NULL). -1 with err set on a read error.
 */
int spool_reader_scan(const struct spool_reader *rd, spool_line_cb cb,
    void *arg, struct spool_scan_stats *stats_out, struct sbuf *err);
/*
 * The whole history: the closed journal segments (journal.TIME, oldest
 * first), then the journal, each record once (the copies of live records
 * a segment starts with, counted by its "carried" record, are skipped).
 * For reports and rebuilding the duplicate index; start-up restores from
 * spool_reader_scan, which the carried records make sufficient.
 */
int spool_reader_scan_history(const struct spool_reader *rd, spool_line_cb cb,
    void *arg, struct spool_scan_stats *stats_out, struct sbuf *err);
/* A closed journal segment's name: journal.YYYYMMDDTHHMMSSZ[.N]. */
bool spool_journal_segment_name(const char *name);

/*
 * Opens the committed message queue/ID and checks its header and size:
 * env_out (may be NULL) gets the envelope, owned by the caller. NULL with
 * err set when the id is malformed or the file is missing, torn or does
 * not describe itself.
 */
struct spool_content *spool_content_open(const struct spool_reader *rd,
    const char *id, struct spool_envelope *env_out, struct sbuf *err);
/*
 * Opens queue/ID again, for a message spool_content_open has checked
 * before (the daemon's queue keeps what it learnt when it loaded the
 * message): reads no header, only checks that the file still has the
 * size it had (an openat and an fstat: the daemon does it on its reader
 * threads, smtp_client.c). NULL with err set.
 */
struct spool_content *spool_content_reopen(const struct spool_reader *rd,
    const char *id, uint64_t content_off, uint64_t content_size,
    const char *sha256_hex, struct sbuf *err);
/* Where the content starts in the file (for spool_content_reopen). */
uint64_t spool_content_offset(const struct spool_content *c);
/* Closes the file (read-only: nothing to lose). NULL is ignored. */
void spool_content_close(struct spool_content *c);

/* Content octets, and the SHA-256 (hex) recorded at commit. */
uint64_t spool_content_size(const struct spool_content *c);
const char *spool_content_sha256(const struct spool_content *c);

/*
 * Reads content octets from off (0 is the first content octet), as pread
 * does: the count read, 0 at the end, -1 with errno set.
 */
ssize_t spool_content_read(struct spool_content *c, uint64_t off, void *buf,
    size_t len);

/* Sees every content octet in order while the checksum is verified. */
typedef void (*spool_content_feed_cb)(void *arg, const void *data, size_t len);
/*
 * Reads the whole content, feeding it to feed (may be NULL), and compares
 * its SHA-256 with the recorded one: 0 when they match; -1 with err set
 * otherwise, and *corrupt_out true when the content is damaged (mismatch
 * or short) rather than unreadable.
 */
int spool_content_verify(struct spool_content *c, spool_content_feed_cb feed,
    void *arg, bool *corrupt_out, struct sbuf *err);

/*
 * The header of an open message file, for code that already holds an fd
 * (the daemon's recovery): as spool_content_open, with the content offset
 * and size and the recorded SHA-256 returned.
 */
int spool_read_header_fd(int fd, struct spool_envelope *env_out,
    char id_out[SPOOL_ID_LEN + 1], uint64_t *content_off_out,
    uint64_t *content_size_out, char sha256_out[SPOOL_SHA256_HEX + 1],
    struct sbuf *err);

#endif
