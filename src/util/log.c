/*
 * log.c - syslog or stderr logging, one line per event.
 *
 * Called from the loop thread and from workers; syslog(3) and a single
 * fprintf per line to an unbuffered stderr are both line-atomic enough.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static bool log_to_stderr = true;
static enum log_level log_min = LOG_LEVEL_INFO;
static const char *log_ident = "splitmx";

void
log_init(const char *ident, bool to_stderr, int facility)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void
log_set_level(enum log_level min)
{
	log_min = min;
}

int
log_facility_from_name(const char *name)
{
	static const struct {
		const char *name;
		int facility;
	} map[] = {
		{ "mail", LOG_MAIL },
		{ "daemon", LOG_DAEMON },
		{ "user", LOG_USER },
		{ "local0", LOG_LOCAL0 },
		{ "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 },
		{ "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 },
		{ "local7", LOG_LOCAL7 },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasecmp(name, map[i].name) == 0)
			return map[i].facility;
	return -1;
}

static void __attribute__((format(printf, 4, 0)))
log_vemit_sfx(enum log_level level, int saved_errno, const char *suffix,
    const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	static const char *const tag[] = { "debug: ", "",
		"warning: ", "error: " };
	char msg[4096];
	int n;

	if (level < log_min)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (saved_errno != 0 && (size_t)n < sizeof(msg))
		(void)snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s",
		    strerror(saved_errno));
	if (suffix != NULL) {
		size_t used = strlen(msg);

		(void)snprintf(msg + used, sizeof(msg) - used, "%s", suffix);
	}
	if (log_to_stderr) {
		struct timespec ts;
		struct tm tm;
		char when[32];

		(void)clock_gettime(CLOCK_REALTIME, &ts);
		(void)gmtime_r(&ts.tv_sec, &tm);
		(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		/* One call per line; a failed stderr write has nowhere to go. */
		(void)fprintf(stderr, "%s.%03ldZ %s: %s%s\n", when,
		    ts.tv_nsec / 1000000, log_ident, tag[level], msg);
	} else
		syslog(prio[level], "%s%s", tag[level], msg);
}

static void __attribute__((format(printf, 3, 0)))
log_vemit(enum log_level level, int saved_errno, const char *fmt, va_list ap)
{
	log_vemit_sfx(level, saved_errno, NULL, fmt, ap);
}

#define LOG_FN(name, level, with_errno)             \
	void name(const char *fmt, ...)             \
	{                                           \
		int saved = with_errno ? errno : 0; \
		va_list ap;                         \
		va_start(ap, fmt);                  \
		log_vemit(level, saved, fmt, ap);   \
		va_end(ap);                         \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)

/* Rate limiting. */

static long long
log_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec;
}

/* A tiny lock: the sections below are a few comparisons long. */
static void
log_limit_lock(struct log_limit *lim)
{
	while (atomic_exchange_explicit(&lim->lock, 1, memory_order_acquire))
		sched_yield();
}

static void
log_limit_unlock(struct log_limit *lim)
{
	atomic_store_explicit(&lim->lock, 0, memory_order_release);
}

/*
 * Whether a line may go out now; if so, and lines were suppressed in an
 * earlier window, their count and age go into sfx.
 */
static bool
log_limit_pass(struct log_limit *lim, char *sfx, size_t sfxsize)
{
	long long now = log_now();
	bool pass;

	sfx[0] = '\0';
	log_limit_lock(lim);
	if (lim->window == 0 || now - lim->window >= (long long)lim->interval) {
		lim->window = now;
		lim->n = 0;
	}
	pass = lim->n < lim->burst;
	if (pass) {
		lim->n++;
		if (lim->suppressed > 0) {
			(void)snprintf(sfx, sfxsize,
			    " (%lu similar lines suppressed in %lld s)",
			    lim->suppressed, now - lim->suppressed_since);
			lim->suppressed = 0;
		}
	} else if (lim->suppressed++ == 0)
		lim->suppressed_since = now;
	log_limit_unlock(lim);
	return pass;
}

#define LOG_LIMITED_FN(name, level, with_errno)                                \
	void name(struct log_limit *lim, const char *fmt, ...)                 \
	{                                                                      \
		int saved = with_errno ? errno : 0;                            \
		char sfx[96];                                                  \
		va_list ap;                                                    \
		if (level < log_min || !log_limit_pass(lim, sfx, sizeof(sfx))) \
			return;                                                \
		va_start(ap, fmt);                                             \
		log_vemit_sfx(level, saved, sfx, fmt, ap);                     \
		va_end(ap);                                                    \
	}

LOG_LIMITED_FN(log_info_limited, LOG_LEVEL_INFO, 0)
LOG_LIMITED_FN(log_warnx_limited, LOG_LEVEL_WARN, 0)
LOG_LIMITED_FN(log_warn_limited, LOG_LEVEL_WARN, 1)

void
log_limit_flush(struct log_limit *lim)
{
	unsigned long n;
	long long since;

	log_limit_lock(lim);
	n = lim->suppressed;
	since = lim->suppressed_since;
	/* At most one count line per interval: flushes can repeat too. */
	if (n > 0 && lim->flushed != 0 &&
	    log_now() - lim->flushed < (long long)lim->interval)
		n = 0;
	if (n > 0) {
		lim->suppressed = 0;
		lim->flushed = log_now();
	}
	log_limit_unlock(lim);
	if (n > 0)
		log_warnx("%s: %lu similar lines suppressed in %lld s",
		    lim->what, n, log_now() - since);
}

void
log_fatalx(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERR, 0, fmt, ap);
	va_end(ap);
	exit(code);
}

void
log_fatal(int code, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERR, saved, fmt, ap);
	va_end(ap);
	exit(code);
}

void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERR, 0, fmt, ap);
	va_end(ap);
	abort();
}
