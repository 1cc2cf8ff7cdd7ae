/*
 * workers.c - the thread pool for work that may block.
 *
 * Owns nthreads threads serving one FIFO of jobs (mutex + condition), and a
 * second, mutex-protected list of completions. Whoever makes that list
 * non-empty writes to an eventfd; a persistent read event on the loop
 * drains the eventfd and runs every completion on the loop thread. The loop
 * only ever takes the two short-held mutexes: it never waits for a job.
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "workers.h"
#include "xmalloc.h"

struct workers_item {
	struct workers_item *next;
	workers_job_fn job; /* NULL for a posted completion */
	workers_done_cb done;
	void *arg;
};

struct workers_list {
	struct workers_item *head;
	struct workers_item **tail;
	unsigned n;
};

struct workers {
	struct event_base *base;
	struct event *ev;
	int efd;
	pthread_t *threads;
	unsigned nthreads;

	pthread_mutex_t job_mtx; /* jobs, running, stopping */
	pthread_cond_t job_cond;
	struct workers_list jobs;
	unsigned running;
	bool stopping;

	pthread_mutex_t done_mtx; /* done */
	struct workers_list done;
};

static void
workers_check(int rc, const char *what)
{
	if (rc != 0)
		log_panic("workers: %s: %s", what, strerror(rc));
}

static void
workers_lock(pthread_mutex_t *m)
{
	workers_check(pthread_mutex_lock(m), "pthread_mutex_lock");
}

static void
workers_unlock(pthread_mutex_t *m)
{
	workers_check(pthread_mutex_unlock(m), "pthread_mutex_unlock");
}

static void
workers_list_init(struct workers_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
	l->n = 0;
}

static void
workers_list_push(struct workers_list *l, struct workers_item *it)
{
	it->next = NULL;
	*l->tail = it;
	l->tail = &it->next;
	l->n++;
}

static struct workers_item *
workers_list_pop(struct workers_list *l)
{
	struct workers_item *it = l->head;

	if (it == NULL)
		return NULL;
	l->head = it->next;
	if (l->head == NULL)
		l->tail = &l->head;
	l->n--;
	return it;
}

/* Queues a completion and wakes the loop; any thread. */
static void
workers_push_done(struct workers *w, struct workers_item *it)
{
	uint64_t one = 1;
	bool was_empty;

	workers_lock(&w->done_mtx);
	was_empty = w->done.head == NULL;
	workers_list_push(&w->done, it);
	workers_unlock(&w->done_mtx);

	/*
	 * Only the thread that made the list non-empty signals. The loop reads
	 * the eventfd before it takes the list, so a completion pushed after
	 * the take finds the list empty again and signals anew: no wakeup is
	 * lost, at worst one is spurious.
	 */
	if (!was_empty)
		return;
	for (;;) {
		if (write(w->efd, &one, sizeof(one)) == (ssize_t)sizeof(one))
			return;
		if (errno == EINTR)
			continue;
		/* EAGAIN needs 2^64-2 unread signals: a broken invariant. */
		log_panic("workers: eventfd write: %s", strerror(errno));
	}
}

/* Runs every completion queued so far on the calling thread. */
static bool
workers_run_done(struct workers *w)
{
	struct workers_item *it, *next;

	workers_lock(&w->done_mtx);
	it = w->done.head;
	workers_list_init(&w->done);
	workers_unlock(&w->done_mtx);

	if (it == NULL)
		return false;
	for (; it != NULL; it = next) {
		next = it->next;
		it->done(it->arg);
		free(it);
	}
	return true;
}

static void
workers_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct workers *w = arg;
	uint64_t count;

	(void)what;
	if (read(fd, &count, sizeof(count)) == -1 && errno != EAGAIN &&
	    errno != EINTR)
		log_warn("workers: eventfd read");
	(void)workers_run_done(w);
}

static void *
workers_main(void *arg)
{
	struct workers *w = arg;
	struct workers_item *it;

	workers_lock(&w->job_mtx);
	for (;;) {
		while (w->jobs.head == NULL && !w->stopping)
			workers_check(pthread_cond_wait(&w->job_cond,
			                  &w->job_mtx),
			    "pthread_cond_wait");
		/* Stopping threads still finish every queued job first. */
		if ((it = workers_list_pop(&w->jobs)) == NULL)
			break;
		w->running++;
		workers_unlock(&w->job_mtx);

		it->job(it->arg);
		/* Push before running--: workers_busy never dips to 0 early. */
		if (it->done != NULL)
			workers_push_done(w, it);
		else
			free(it);

		workers_lock(&w->job_mtx);
		w->running--;
	}
	workers_unlock(&w->job_mtx);
	return NULL;
}

struct workers *
workers_new(struct event_base *base, unsigned nthreads)
{
	struct workers *w;
	sigset_t all, saved;
	unsigned i;
	int rc;

	if (nthreads == 0)
		nthreads = 1;
	w = xcalloc(1, sizeof(*w));
	w->base = base;
	w->nthreads = nthreads;
	workers_list_init(&w->jobs);
	workers_list_init(&w->done);
	workers_check(pthread_mutex_init(&w->job_mtx, NULL),
	    "pthread_mutex_init");
	workers_check(pthread_mutex_init(&w->done_mtx, NULL),
	    "pthread_mutex_init");
	workers_check(pthread_cond_init(&w->job_cond, NULL),
	    "pthread_cond_init");

	if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		log_fatal(EX_OSERR, "workers: eventfd");
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, workers_event_cb,
	    w);
	if (w->ev == NULL || event_add(w->ev, NULL) == -1)
		log_fatalx(EX_SOFTWARE, "workers: cannot watch the eventfd");

	/* Signals belong to the loop thread: workers start with all blocked. */
	if (sigfillset(&all) == -1)
		log_fatal(EX_OSERR, "workers: sigfillset");
	workers_check(pthread_sigmask(SIG_SETMASK, &all, &saved),
	    "pthread_sigmask");
	w->threads = xcalloc(nthreads, sizeof(*w->threads));
	for (i = 0; i < nthreads; i++)
		if ((rc = pthread_create(&w->threads[i], NULL, workers_main,
		         w)) != 0)
			log_fatalx(EX_OSERR, "workers: pthread_create: %s",
			    strerror(rc));
	workers_check(pthread_sigmask(SIG_SETMASK, &saved, NULL),
	    "pthread_sigmask");
	return w;
}

void
workers_submit(struct workers *w, workers_job_fn job, workers_done_cb done,
    void *arg)
{
	struct workers_item *it;

	it = xmalloc(sizeof(*it));
	it->job = job;
	it->done = done;
	it->arg = arg;
	workers_lock(&w->job_mtx);
	workers_list_push(&w->jobs, it);
	workers_unlock(&w->job_mtx);
	/*
	 * After the unlock: a worker woken while the mutex is still held
	 * would block on it at once, and the unlock would wake it again.
	 */
	workers_check(pthread_cond_signal(&w->job_cond), "pthread_cond_signal");
}

void
workers_post(struct workers *w, workers_done_cb done, void *arg)
{
	struct workers_item *it;

	it = xmalloc(sizeof(*it));
	it->job = NULL;
	it->done = done;
	it->arg = arg;
	workers_push_done(w, it);
}

unsigned
workers_busy(struct workers *w)
{
	unsigned n;

	workers_lock(&w->job_mtx);
	n = w->jobs.n + w->running;
	workers_unlock(&w->job_mtx);
	workers_lock(&w->done_mtx);
	n += w->done.n;
	workers_unlock(&w->done_mtx);
	return n;
}

void
workers_free(struct workers *w)
{
	struct workers_item *it;
	unsigned i;

	if (w == NULL)
		return;

	workers_lock(&w->job_mtx);
	w->stopping = true;
	workers_check(pthread_cond_broadcast(&w->job_cond),
	    "pthread_cond_broadcast");
	workers_unlock(&w->job_mtx);
	for (i = 0; i < w->nthreads; i++)
		workers_check(pthread_join(w->threads[i], NULL),
		    "pthread_join");

	/*
	 * The threads are gone. Completions may still submit or post more
	 * work: run all of it here until both lists stay empty.
	 */
	for (;;) {
		if (workers_run_done(w))
			continue;
		workers_lock(&w->job_mtx);
		it = workers_list_pop(&w->jobs);
		workers_unlock(&w->job_mtx);
		if (it == NULL)
			break;
		it->job(it->arg);
		if (it->done != NULL)
			it->done(it->arg);
		free(it);
	}

	event_free(w->ev);
	if (close(w->efd) == -1)
		log_warn("workers: close eventfd");
	workers_check(pthread_cond_destroy(&w->job_cond),
	    "pthread_cond_destroy");
	workers_check(pthread_mutex_destroy(&w->job_mtx),
	    "pthread_mutex_destroy");
	workers_check(pthread_mutex_destroy(&w->done_mtx),
	    "pthread_mutex_destroy");
	free(w->threads);
	free(w);
}
