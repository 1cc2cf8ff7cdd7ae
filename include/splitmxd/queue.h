/*
 * queue.h - the delivery scheduler: every committed message, per target.
 *
 * For each message the router names its targets; each (message, target)
 * pair carries its own recipients and state (pending, delivered with the
 * remote reply, deferred with the next attempt, failed). States are
 * journaled through the spool (group commit) and rebuilt from the journal
 * at start-up. A target that is down only delays its own copies. When
 * every recipient at every target is final, failures are reported to the
 * sender in one DSN, and the message file is removed.
 *
 * At least once, per target: a recipient is recorded delivered only after
 * the target's 2xx; if the daemon stops between that reply and the
 * durable record, the target gets the message again after restart.
 */
#ifndef SPLITMX_QUEUE_H
#define SPLITMX_QUEUE_H

#include <stddef.h>

struct event_base;
struct conf;
struct spool;
struct workers;
struct dns;
struct dedup;
struct auth_srs;
struct queue;

/*
 * dedup (may be NULL) is the duplicate index: a (message, recipient,
 * target) already delivered, within the window, is not delivered again
 * but journaled as a duplicate; a message carrying an earlier splitmx
 * trace (or from a trusted host) that every target already had is a loop,
 * journaled and dropped, never bounced.
 */
struct queue *queue_new(struct event_base *base, const struct conf *conf,
    struct spool *sp, struct workers *w, struct dns *dns, struct dedup *dedup,
    const char *hostname);

/*
 * Start-up, before queue_add: the ids recovery found, then every journal
 * line (spool_reader_scan) so finished recipients are not sent again.
 */
void queue_expect(struct queue *q, const char *id);
void queue_restore_line(struct queue *q, const char *line, size_t len);

/*
 * After a machine crash with the index in no-sync mode (spool_lost_boot):
 * a new, empty index is filled again from the journal's "claimed" and
 * "released" records. Blocks; start-up only. 0, or -1 with err set.
 */
struct spool_reader;
int queue_dedup_rebuild(struct dedup *dd, const struct spool_reader *rd,
    struct sbuf *err);

/* Targets with "srs yes" get the sender SRS-rewritten (srs may be NULL). */
void queue_set_srs(struct queue *q, const struct auth_srs *srs);

/* A committed message: loaded and checked on a worker, then scheduled. */
void queue_add(struct queue *q, const char *id);

/* Starts no new delivery; idle connections are closed. */
void queue_shutdown(struct queue *q);

/* Deliveries and loads in flight. */
unsigned queue_busy(const struct queue *q);

void queue_free(struct queue *q);

#endif
