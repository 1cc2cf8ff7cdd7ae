/*
 * xmalloc.h - allocation that dies rather than fails.
 *
 * Out of memory is not a recoverable condition for splitmxd: acknowledged
 * mail is already durable on disk, so the right reaction is to exit and let
 * the supervisor restart us (Postfix mymalloc, OpenSMTPD xmalloc).
 */
#ifndef SPLITMX_XMALLOC_H
#define SPLITMX_XMALLOC_H

#include <stddef.h>

/* Each aborts the process with a log line when memory is exhausted. */
void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* reallocarray with overflow check. */
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* Copies len bytes and adds a NUL. */
char *xstrndup(const char *s, size_t len);

#endif
