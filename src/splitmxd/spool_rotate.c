/*
 * spool_rotate.c - journal segments: the journal is closed and a new one
 * started once it passes journal_segment_size, so start-up reads only what
 * is still live plus a bounded tail.
 *
 * At a checkpoint (everything synced), the committer copies the records
 * of every message still in queue/ into journal.new behind a "carried"
 * record that counts them, syncs it, renames the journal to
 * journal.YYYYMMDDTHHMMSSZ (closed, kept for reports for
 * journal_retention) and journal.new to journal. Start-up restores from
 * the journal alone; spool_reader_scan_history reads closed segments and
 * skips the carried copies. A crash between the renames leaves
 * journal.new and no journal: spool_open finishes the rename.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"
#include "spool.h"
#include "spool_codec.h"
#include "spool_read.h"
#include "xmalloc.h"
#include "spool_int.h"

#define JNEW           "journal.new"
#define LIVE_CACHE_LEN 4096 /* ids remembered while carrying */

void
spool_set_journal_rotation(struct spool *sp, uint64_t max_bytes,
    unsigned retention_secs)
{
	sp->journal_max = max_bytes;
	sp->journal_retention = retention_secs;
}

/* A crash between the two renames: journal.new is the journal. */
int
spool_rotate_fixup(struct spool *sp, struct sbuf *err)
{
	struct stat st;

	if (fstatat(sp->dirfd, JNEW, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return 0;
	if (fstatat(sp->dirfd, "journal", &st, AT_SYMLINK_NOFOLLOW) == 0) {
		/* Not renamed yet: the old journal is whole, start again. */
		if (unlinkat(sp->dirfd, JNEW, 0) == -1)
			return sbuf_seterr(err, "remove %s: %s", JNEW,
			    strerror(errno));
		return 0;
	}
	if (renameat(sp->dirfd, JNEW, sp->dirfd, "journal") == -1 ||
	    fsync(sp->dirfd) == -1)
		return sbuf_seterr(err, "finish journal rotation: %s",
		    strerror(errno));
	log_warnx("spool: journal rotation finished after a crash");
	return 0;
}

/* Is queue/ID there? A small direct-mapped cache spares the syscalls. */
struct live_cache {
	char id[LIVE_CACHE_LEN][SPOOL_ID_LEN + 1];
	bool live[LIVE_CACHE_LEN];
};

static bool
spool_is_live(struct spool *sp, struct live_cache *lc, const char *id)
{
	unsigned h = 5381, i;
	struct stat st;

	for (i = 0; i < SPOOL_ID_LEN; i++)
		h = h * 33 + (unsigned char)id[i];
	h %= LIVE_CACHE_LEN;
	if (strcmp(lc->id[h], id) != 0) {
		memcpy(lc->id[h], id, SPOOL_ID_LEN + 1);
		lc->live[h] = fstatat(sp->queuefd, id, &st,
		                  AT_SYMLINK_NOFOLLOW) == 0;
	}
	return lc->live[h];
}

struct carry {
	struct spool *sp;
	struct live_cache *lc;
	struct sbuf *out;
	uint64_t lines;
	bool full;
};

static void
spool_carry_line(void *arg, const char *line, size_t len)
{
	struct carry *c = arg;
	struct spool_jrec rec;

	if (c->full || spool_jrec_parse(line, len, &rec, NULL) == -1 ||
	    spool_jrec_is(&rec, "carried") ||
	    !spool_is_live(c->sp, c->lc, rec.id))
		return;
	if (sbuf_append(c->out, line, len) == -1 ||
	    sbuf_append_char(c->out, '\n') == -1) {
		c->full = true;
		return;
	}
	c->lines++;
}

static void
spool_rotate_expire(struct spool *sp)
{
	struct dirent *de;
	struct stat st;
	time_t cut = time(NULL) - (time_t)sp->journal_retention;
	DIR *d;
	int fd;

	if (sp->journal_retention == 0 || (fd = dup(sp->dirfd)) == -1)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		(void)close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (!spool_journal_segment_name(de->d_name) ||
		    fstatat(sp->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
		        -1 ||
		    st.st_mtime >= cut)
			continue;
		if (unlinkat(sp->dirfd, de->d_name, 0) == -1)
			log_warn("spool: remove %s", de->d_name);
		else
			log_info("spool: %s removed (older than "
			         "journal_retention)",
			    de->d_name);
	}
	(void)closedir(d);
}

/*
 * Committer, right after a checkpoint: the journal is synced and every
 * line of it durable. -1 (why set) leaves the journal as it was.
 */
int
spool_rotate(struct spool *sp, struct sbuf *why)
{
	struct live_cache *lc;
	struct carry c;
	struct sbuf body, head;
	struct spool_jrec_out w;
	char ts[SPOOL_TS_LEN + 1], name[64];
	struct timespec t0, t1;
	struct tm tm;
	time_t now;
	unsigned k;
	int fd = -1, rc = -1;

	if (sp->journal_max == 0 || sp->journal_off < sp->journal_max)
		return 0;
	(void)clock_gettime(CLOCK_MONOTONIC, &t0);
	lc = xcalloc(1, sizeof(*lc));
	sbuf_init(&body, SPOOL_BACKLOG_MAX);
	sbuf_init(&head, 256);
	memset(&c, 0, sizeof(c));
	c.sp = sp;
	c.lc = lc;
	c.out = &body;
	if (spool_reader_scan(sp->rd, spool_carry_line, &c, NULL, why) == -1)
		goto out;
	if (c.full) {
		/* Too much live state to copy: keep one long journal. */
		sbuf_seterr(why, "live records exceed %zu octets",
		    (size_t)SPOOL_BACKLOG_MAX);
		goto out;
	}
	spool_now(ts, sizeof(ts));
	spool_jrec_begin(&w, &head, ts, "carried", "0000000000000000");
	spool_jrec_u64(&w, "lines", c.lines);
	if (spool_jrec_end(&w) == -1)
		goto out;
	fd = openat(sp->dirfd, JNEW,
	    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd == -1 || spool_write_all(fd, head.data, head.len) == -1 ||
	    spool_write_all(fd, body.data, body.len) == -1 || fsync(fd) == -1 ||
	    close(fd) == -1) {
		sbuf_seterr(why, "write %s: %s", JNEW, strerror(errno));
		if (fd != -1)
			(void)close(fd);
		(void)unlinkat(sp->dirfd, JNEW, 0);
		goto out;
	}
	now = time(NULL);
	(void)gmtime_r(&now, &tm);
	(void)strftime(name, sizeof(name), "journal.%Y%m%dT%H%M%SZ", &tm);
	for (k = 1; faccessat(sp->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	     k++) {
		(void)strftime(name, sizeof(name), "journal.%Y%m%dT%H%M%SZ",
		    &tm);
		(void)snprintf(name + strlen(name), sizeof(name) - strlen(name),
		    ".%u", k);
	}
	if (renameat(sp->dirfd, "journal", sp->dirfd, name) == -1) {
		sbuf_seterr(why, "rename journal: %s", strerror(errno));
		(void)unlinkat(sp->dirfd, JNEW, 0);
		goto out;
	}
	if (renameat(sp->dirfd, JNEW, sp->dirfd, "journal") == -1 ||
	    fsync(sp->dirfd) == -1) {
		/* spool_open finishes it; the old fd is no journal any more. */
		sbuf_seterr(why, "install journal: %s", strerror(errno));
		spool_break(sp, why->data);
		goto out;
	}
	fd = openat(sp->dirfd, "journal",
	    O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		sbuf_seterr(why, "open journal: %s", strerror(errno));
		spool_break(sp, why->data);
		goto out;
	}
	if (close(sp->journalfd) == -1)
		log_warn("spool: close closed journal");
	sp->journalfd = fd;
	sp->journal_off = head.len + body.len;
	(void)clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("spool: journal closed as %s; %llu live records carried in "
	         "%ld ms",
	    name, (unsigned long long)c.lines,
	    (long)((t1.tv_sec - t0.tv_sec) * 1000 +
	        (t1.tv_nsec - t0.tv_nsec) / 1000000));
	spool_rotate_expire(sp);
	rc = 0;
out:
	free(lc);
	sbuf_release(&body);
	sbuf_release(&head);
	return rc;
}
