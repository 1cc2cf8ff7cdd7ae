/*
 * sbuf.h - the one string buffer type.
 *
 * Binary safe, always NUL-terminated, with a hard cap fixed at creation:
 * an append that would pass the cap fails with -1 and leaves the buffer
 * unchanged, so peer input can never make a buffer grow without bound.
 */
#ifndef SPLITMX_SBUF_H
#define SPLITMX_SBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data;  /* always NUL-terminated */
	size_t len;  /* bytes in use, excluding the NUL */
	size_t size; /* bytes allocated */
	size_t cap;  /* maximum len */
};

/* Initializes an empty buffer that may hold up to cap bytes. */
void sbuf_init(struct sbuf *sb, size_t cap);
/* Releases the storage; the buffer may be re-initialized afterwards. */
void sbuf_release(struct sbuf *sb);
void sbuf_reset(struct sbuf *sb);
/* Truncates to len (no-op when len >= current length). */
void sbuf_truncate(struct sbuf *sb, size_t len);

/*
 * Appends; returns 0, or -1 when the cap would be passed (buffer unchanged).
 * Callers check the result wherever truncation would matter; composing an
 * error message may ignore it (a truncated message is still a message).
 */
int sbuf_append(struct sbuf *sb, const void *data, size_t len);
int sbuf_append_str(struct sbuf *sb, const char *s);
int sbuf_append_char(struct sbuf *sb, char c);
int sbuf_printf(struct sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int sbuf_vprintf(struct sbuf *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/*
 * Appends data with every byte below 0x21, 0x7f, '\\' and any byte in
 * extra written as \xHH, so peer text is safe in logs and records.
 * Bytes >= 0x80 (UTF-8) pass unchanged unless ascii_only is set.
 */
int sbuf_append_escaped(struct sbuf *sb, const void *data, size_t len,
    const char *extra, bool ascii_only);

/* Reverses sbuf_append_escaped; -1 on a malformed escape or the cap. */
int sbuf_append_unescaped(struct sbuf *sb, const char *s, size_t len);

/*
 * The error convention (docs/errors.md): a function that can fail at run
 * time returns -1 (or NULL) and describes the failure in the caller's
 * struct sbuf *err. sbuf_seterr replaces err's contents with the formatted
 * reason, cut at err's cap (a truncated reason is still a reason), and
 * returns -1 so that "return sbuf_seterr(err, ...);" reads as the failure.
 * err may be NULL (the caller does not want the detail).
 */
int sbuf_seterr(struct sbuf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int sbuf_vseterr(struct sbuf *err, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#endif
