/*
 * maildir.h - delivering a spooled message into a local maildir.
 *
 * Blocking (open, write, fsync, rename): call from workers only.
 */
#ifndef SPLITMX_MAILDIR_H
#define SPLITMX_MAILDIR_H

#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

struct spool_content;

/*
 * Copies the spooled content src (spool_read.h) into a new file in dir/tmp,
 * prefixed with "Return-Path: <sender>" and one "Delivered-To: rcpt" line per
 * recipient and prepend (trace fields, CRLF lines, or NULL), fsyncs it, renames
 * it into dir/new and fsyncs dir/new. Creates dir/{tmp,new,cur} when missing.
 * Returns 0, or -1 with the reason in err (nothing left in new/).
 */
int maildir_deliver(const char *dir, struct spool_content *src,
    const char *sender, const char *const *rcpts, size_t nrcpts,
    const char *queue_id, const char *prepend, struct sbuf *err);

#endif
