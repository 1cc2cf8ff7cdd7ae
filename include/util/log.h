/*
 * log.h - the one logger.
 *
 * Lines go to syslog (facility from the config) or, under splitmxd -d, to
 * stderr with a timestamp. Session lines start with the queue or session id;
 * peer-supplied text must be escaped (sbuf_append_escaped) before it gets here.
 * log_warn appends strerror(errno); log_warnx does not (OpenSMTPD habit).
 */
#ifndef SPLITMX_LOG_H
#define SPLITMX_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERR,
};

/* to_stderr: log to stderr instead of syslog. facility: a syslog facility. */
void log_init(const char *ident, bool to_stderr, int facility);
void log_set_level(enum log_level min);
/* Maps "mail", "daemon", "local0".."local7"; -1 when unknown. */
int log_facility_from_name(const char *name);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs and exits with a sysexits.h code: cannot start or cannot go on. */
void log_fatalx(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void log_fatal(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/*
 * Rate limiting for lines that one event can repeat without bound (accept
 * errors, a failing open, per-connection warnings under load). One
 * struct log_limit per call site (the key), static and shared by every
 * thread: at most burst lines per interval seconds get through; the rest
 * are counted, and the next line that gets through after the window
 * says how many were suppressed ("(N similar lines suppressed in S s)").
 * log_limit_flush writes that count as a line of its own when nothing
 * else will (e.g. once the condition is over), at most once an interval;
 * a count it holds back goes out with the next line or flush.
 */
struct log_limit {
	unsigned interval; /* seconds */
	unsigned burst;    /* lines per interval */
	const char *what;  /* names the lines in the flush line */
	/* State, guarded by lock. */
	_Atomic int lock;
	long long window; /* start of the window, CLOCK_MONOTONIC s */
	unsigned n;       /* lines let through in the window */
	unsigned long suppressed;
	long long suppressed_since;
	long long flushed; /* the last log_limit_flush line */
};
#define LOG_LIMIT_INIT(interval, burst, what)                 \
	{                                                     \
		(interval), (burst), (what), 0, 0, 0, 0, 0, 0 \
	}

void log_warn_limited(struct log_limit *lim, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_warnx_limited(struct log_limit *lim, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_info_limited(struct log_limit *lim, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Logs the suppressed count, if any, at warning level, and resets it. */
void log_limit_flush(struct log_limit *lim);

/* A broken invariant: logs and aborts with a core dump. */
void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
