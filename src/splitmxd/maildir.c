/*
 * maildir.c - local delivery into a maildir.
 *
 * Writes dir/tmp/NAME with O_EXCL, copies the spooled content with pread,
 * fsyncs and closes it, renames it into dir/new and fsyncs dir/new: only
 * then does the message exist. On any failure the tmp file is removed and
 * nothing is left in new/. Blocking: call from workers_ only, never from
 * the loop thread.
 */
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "spool_read.h"
#include "sbuf.h"
#include "xmalloc.h"

#define MAILDIR_CHUNK    (64 * 1024)
#define MAILDIR_HOST_MAX 256  /* escaped host part of the name */
#define MAILDIR_QID_MAX  64   /* queue id octets used in the name */
#define MAILDIR_ADDR_MAX 1024 /* one address in a prefix line */

static void maildir_errf(struct sbuf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Replaces err with the reason; a truncated reason is still a reason. */
static void
maildir_errf(struct sbuf *err, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	size_t len;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	if (vsnprintf(line, sizeof(line), fmt, ap) < 0)
		(void)snprintf(line, sizeof(line), "error");
	va_end(ap);
	sbuf_reset(err);
	len = strlen(line);
	if (len > err->cap)
		len = err->cap;
	/* Cannot fail: len is within the cap of an empty buffer. */
	(void)sbuf_append(err, line, len);
}

/*
 * Appends s with '/' and ':' written as "\057" and "\072", the usual
 * maildir convention, so the part cannot act as a path separator or start
 * the ":2," info suffix. Control characters and '.' (our field separator
 * in the queue id) become '_'. keep_dots is for the host name.
 */
static int
maildir_put_safe(struct sbuf *sb, const char *s, size_t max, bool keep_dots)
{
	size_t i;
	int rc = 0;

	for (i = 0; s[i] != '\0' && i < max && rc == 0; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '/')
			rc = sbuf_append_str(sb, "\\057");
		else if (c == ':')
			rc = sbuf_append_str(sb, "\\072");
		else if (c < 0x21 || c >= 0x7f || (c == '.' && !keep_dots))
			rc = sbuf_append_char(sb, '_');
		else
			rc = sbuf_append_char(sb, (char)c);
	}
	return rc;
}

/*
 * TIME.M<usec>P<pid>Q<queue id>R<random>.HOST: the time, pid and 64 random
 * bits make it unique even for two deliveries of one queue id in the same
 * microsecond by two worker threads.
 */
static int
maildir_unique_name(struct sbuf *name, const char *queue_id, struct sbuf *err)
{
	char host[MAILDIR_HOST_MAX + 1];
	struct timespec ts;
	uint64_t rnd;
	ssize_t n;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1) {
		maildir_errf(err, "clock_gettime: %s", strerror(errno));
		return -1;
	}
	do
		n = getrandom(&rnd, sizeof(rnd), 0);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)sizeof(rnd)) {
		maildir_errf(err, "getrandom: %s",
		    n == -1 ? strerror(errno) : "short read");
		return -1;
	}
	if (gethostname(host, sizeof(host) - 1) == -1 || host[0] == '\0')
		(void)snprintf(host, sizeof(host), "localhost");
	/* POSIX leaves the NUL out when the name was truncated. */
	host[sizeof(host) - 1] = '\0';
	if (sbuf_printf(name, "%" PRId64 ".M%06ldP%ldQ", (int64_t)ts.tv_sec,
	        ts.tv_nsec / 1000, (long)getpid()) == -1 ||
	    maildir_put_safe(name, queue_id != NULL ? queue_id : "",
	        MAILDIR_QID_MAX, false) == -1 ||
	    sbuf_printf(name, "R%016" PRIx64 ".", rnd) == -1 ||
	    maildir_put_safe(name, host, MAILDIR_HOST_MAX, true) == -1) {
		maildir_errf(err, "file name: too long");
		return -1;
	}
	return 0;
}

static int
maildir_mkdir(const char *path, struct sbuf *err)
{
	char *parent, *slash;

	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	/* Like mkdir -p: a missing parent (e.g. spool/maildir) is made too. */
	if (errno == ENOENT && (parent = strdup(path)) != NULL) {
		slash = strrchr(parent, '/');
		if (slash != NULL && slash != parent) {
			*slash = '\0';
			if (maildir_mkdir(parent, err) == -1) {
				free(parent);
				return -1;
			}
		}
		free(parent);
	}
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		maildir_errf(err, "mkdir %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Creates dir and dir/{tmp,new,cur} as needed; opens tmp/ and new/. */
static int
maildir_open_dirs(const char *dir, int *tmpfd_out, int *newfd_out,
    struct sbuf *err)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	struct sbuf path;
	size_t i;
	int rc = -1, *fdp;

	*tmpfd_out = *newfd_out = -1;
	sbuf_init(&path, 4096);
	if (maildir_mkdir(dir, err) == -1)
		goto out;
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		sbuf_reset(&path);
		if (sbuf_printf(&path, "%s/%s", dir, subs[i]) == -1) {
			maildir_errf(err, "mkdir: path too long");
			goto out;
		}
		if (maildir_mkdir(path.data, err) == -1)
			goto out;
		if (i == 2)
			break;
		fdp = i == 0 ? tmpfd_out : newfd_out;
		*fdp = open(path.data,
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (*fdp == -1) {
			maildir_errf(err, "open %s: %s", path.data,
			    strerror(errno));
			goto out;
		}
	}
	rc = 0;
out:
	sbuf_release(&path);
	return rc;
}

static int
maildir_write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Copies the content of src to dstfd. A source that ends early is an
 * error: the spool said the content is that long.
 */
static int
maildir_copy(struct spool_content *src, int dstfd, struct sbuf *err)
{
	uint64_t size = spool_content_size(src);
	char *chunk;
	uint64_t done = 0;
	size_t want;
	ssize_t n;
	int rc = -1;

	/* On the heap: worker threads may run on small stacks. */
	chunk = xmalloc(MAILDIR_CHUNK);
	while (done < size) {
		want = size - done < MAILDIR_CHUNK ? (size_t)(size - done) :
		                                     MAILDIR_CHUNK;
		n = spool_content_read(src, done, chunk, want);
		if (n == -1) {
			maildir_errf(err, "read spool: %s", strerror(errno));
			goto out;
		}
		if (n == 0) {
			maildir_errf(err,
			    "read spool: file ends at %" PRIu64 " of %" PRIu64
			    " content octets",
			    done, size);
			goto out;
		}
		if (maildir_write_all(dstfd, chunk, (size_t)n) == -1) {
			maildir_errf(err, "write: %s", strerror(errno));
			goto out;
		}
		done += (uint64_t)n;
	}
	rc = 0;
out:
	free(chunk);
	return rc;
}

/*
 * Appends an envelope address with control characters replaced, so that
 * it cannot end the prefix line and start a header of its own.
 */
static int
maildir_put_addr(struct sbuf *sb, const char *addr)
{
	size_t i;

	for (i = 0; addr[i] != '\0' && i < MAILDIR_ADDR_MAX; i++) {
		unsigned char c = (unsigned char)addr[i];

		if (sbuf_append_char(sb,
		        c < 0x20 || c == 0x7f ? '?' : (char)c) == -1)
			return -1;
	}
	return 0;
}

static int
maildir_prefix(struct sbuf *pfx, const char *sender, const char *const *rcpts,
    size_t nrcpts, const char *prepend)
{
	size_t i;

	if (sbuf_append_str(pfx, "Return-Path: <") == -1 ||
	    maildir_put_addr(pfx, sender != NULL ? sender : "") == -1 ||
	    sbuf_append_str(pfx, ">\r\n") == -1)
		return -1;
	for (i = 0; i < nrcpts; i++)
		if (sbuf_append_str(pfx, "Delivered-To: ") == -1 ||
		    maildir_put_addr(pfx, rcpts[i]) == -1 ||
		    sbuf_append_str(pfx, "\r\n") == -1)
			return -1;
	if (prepend != NULL && sbuf_append_str(pfx, prepend) == -1)
		return -1;
	return 0;
}

int
maildir_deliver(const char *dir, struct spool_content *src, const char *sender,
    const char *const *rcpts, size_t nrcpts, const char *queue_id,
    const char *prepend, struct sbuf *err)
{
	struct sbuf name, pfx;
	int tmpdfd = -1, newdfd = -1, fd = -1, rc = -1;
	bool created = false, renamed = false;

	sbuf_init(&name, 1024);
	sbuf_init(&pfx,
	    64 + (nrcpts + 1) * (MAILDIR_ADDR_MAX + 32) +
	        (prepend != NULL ? strlen(prepend) : 0));
	if (maildir_open_dirs(dir, &tmpdfd, &newdfd, err) == -1)
		goto out;
	if (maildir_unique_name(&name, queue_id, err) == -1)
		goto out;
	fd = openat(tmpdfd, name.data,
	    O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		maildir_errf(err, "create tmp/%s: %s", name.data,
		    strerror(errno));
		goto out;
	}
	created = true;
	if (maildir_prefix(&pfx, sender, rcpts, nrcpts, prepend) == -1) {
		maildir_errf(err, "prefix: too long");
		goto out;
	}
	if (maildir_write_all(fd, pfx.data, pfx.len) == -1) {
		maildir_errf(err, "write: %s", strerror(errno));
		goto out;
	}
	if (maildir_copy(src, fd, err) == -1)
		goto out;
	if (fsync(fd) == -1) {
		maildir_errf(err, "fsync: %s", strerror(errno));
		goto out;
	}
	/* close can report a deferred write error (NFS); the fd is gone. */
	if (close(fd) == -1) {
		fd = -1;
		maildir_errf(err, "close: %s", strerror(errno));
		goto out;
	}
	fd = -1;
	if (renameat(tmpdfd, name.data, newdfd, name.data) == -1) {
		maildir_errf(err, "rename into new: %s", strerror(errno));
		goto out;
	}
	renamed = true;
	if (fsync(newdfd) == -1) {
		maildir_errf(err, "fsync new: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd != -1)
		(void)close(fd); /* already failing; the file goes */
	if (rc == -1 && renamed) {
		/*
		 * Not known to be durable, and the caller will retry: take it
		 * back out of new/ rather than risk a duplicate.
		 */
		if (unlinkat(newdfd, name.data, 0) == -1 && err != NULL)
			(void)sbuf_printf(err, "; unlink new: %s",
			    strerror(errno));
	} else if (rc == -1 && created) {
		if (unlinkat(tmpdfd, name.data, 0) == -1 && err != NULL)
			(void)sbuf_printf(err, "; unlink tmp: %s",
			    strerror(errno));
	}
	if (tmpdfd != -1)
		(void)close(tmpdfd);
	if (newdfd != -1)
		(void)close(newdfd);
	sbuf_release(&name);
	sbuf_release(&pfx);
	return rc;
}
