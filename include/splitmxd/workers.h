/*
 * workers.h - the thread pool for work that may block.
 *
 * Jobs run on worker threads; their completion callbacks run back on the
 * event-loop thread, delivered through an eventfd the loop watches. This is
 * how fsync, rename, unlink (and later SPF, DKIM) stay off the loop.
 */
#ifndef SPLITMX_WORKERS_H
#define SPLITMX_WORKERS_H

struct event_base;
struct workers;

typedef void (*workers_job_fn)(void *arg);  /* on a worker thread */
typedef void (*workers_done_cb)(void *arg); /* on the loop thread */

/* Starts nthreads threads; done callbacks are dispatched on base. */
struct workers *workers_new(struct event_base *base, unsigned nthreads);

/* Queues job(arg) on a worker, then done(arg) on the loop. done may be NULL. */
void workers_submit(struct workers *w, workers_job_fn job, workers_done_cb done,
    void *arg);

/* From any thread: run done(arg) on the loop thread soon. */
void workers_post(struct workers *w, workers_done_cb done, void *arg);

/* Jobs queued or running plus completions not yet delivered. */
unsigned workers_busy(struct workers *w);

/*
 * Finishes queued jobs, joins the threads and runs outstanding done
 * callbacks (and any work they queue) on the calling thread. Call after
 * the loop stopped, after spool_close (the spool's committer posts to w),
 * and before event_base_free. NULL is ignored.
 */
void workers_free(struct workers *w);

#endif
