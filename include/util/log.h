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
/* A broken invariant: logs and aborts with a core dump. */
void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
