/*
 * spool_recover.c - start-up recovery and quarantine.
 *
 * Before the loop serves anyone: half-received tmp/ files are removed and
 * journaled, every queue/ file's header and size are checked through the
 * read side, unreadable ones are moved to corrupt/ (never deleted), and
 * the rest are reported in id order. Blocking: start-up and workers only.
 */

#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"
#include "smtp_proto.h"
#include "spool.h"
#include "spool_codec.h"
#include "spool_read.h"
#include "workers.h"
#include "xmalloc.h"
#include "spool_int.h"

static int spool_cmp_names(const void *a, const void *b);
static int spool_list_dir(int dirfd, const char *what, char ***names_out,
    size_t *n_out, struct sbuf *err);
static void spool_free_names(char **names, size_t n);
static const char *spool_tmp_unused(int tmpfd, const char *name);
static int spool_move_corrupt(struct spool *sp, const char *name,
    struct sbuf *dest);

/*
 * tmp/NAME holds no message: "empty" (a pre-created file), "unused" (a
 * recycled one, still the removed message's header: another id), else
 * NULL (a message whose receipt was cut off).
 */
static const char *
spool_tmp_unused(int tmpfd, const char *name)
{
	char want[3 + SPOOL_ID_LEN + 2], got[sizeof(want)];
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = openat(tmpfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		(void)close(fd); /* read-only */
		return NULL;
	}
	if (st.st_size == 0) {
		(void)close(fd);
		return "empty";
	}
	(void)snprintf(want, sizeof(want), "id %s\n", name);
	n = pread(fd, got, strlen(want), (off_t)SPOOL_ID_OFF);
	(void)close(fd);
	if (n == (ssize_t)strlen(want) && memcmp(got, "id ", 3) == 0 &&
	    memcmp(got, want, (size_t)n) != 0 && strlen(name) == SPOOL_ID_LEN)
		return "unused";
	return NULL;
}

int
spool_quarantine(struct spool *sp, const char *id)
{
	struct sbuf dest;
	int rc;

	if (!spool_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	sbuf_init(&dest, 64);
	rc = spool_move_corrupt(sp, id, &dest);
	sbuf_release(&dest);
	return rc;
}

static int
spool_cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted entry names of dirfd, without "." and "..". */
static int
spool_list_dir(int dirfd, const char *what, char ***names_out, size_t *n_out,
    struct sbuf *err)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, alloc = 0;
	int fd;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	        -1 ||
	    (d = fdopendir(fd)) == NULL) {
		sbuf_seterr(err, "open %s: %s", what, strerror(errno));
		if (fd != -1)
			(void)close(fd); /* read-only */
		return -1;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (n == alloc) {
			alloc = alloc == 0 ? 64 : alloc * 2;
			names = xreallocarray(names, alloc, sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	if (errno != 0) {
		sbuf_seterr(err, "read %s: %s", what, strerror(errno));
		while (n > 0)
			free(names[--n]);
		free(names);
		(void)closedir(d); /* read-only */
		return -1;
	}
	if (closedir(d) == -1)
		log_warn("spool: closedir %s", what);
	if (n > 0)
		qsort(names, n, sizeof(*names), spool_cmp_names);
	*names_out = names;
	*n_out = n;
	return 0;
}

static void
spool_free_names(char **names, size_t n)
{
	while (n > 0)
		free(names[--n]);
	free(names);
}

/* Moves queue/NAME into corrupt/ under a name not in use yet. */
static int
spool_move_corrupt(struct spool *sp, const char *name, struct sbuf *dest)
{
	int i;

	for (i = 0; i < 1000; i++) {
		sbuf_reset(dest);
		if ((i == 0 ? sbuf_append_str(dest, name) :
		              sbuf_printf(dest, "%s.%d", name, i)) == -1)
			return -1;
		if (spool_rename_noreplace(sp->queuefd, name, sp->corruptfd,
		        dest->data) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

int
spool_recover(struct spool *sp, spool_found_cb found, void *arg,
    struct spool_recovery *stats_out, struct sbuf *err)
{
	struct spool_recovery st = { 0, 0, 0 };
	struct spool_envelope env;
	struct sbuf jb, ename, dest, why;
	char ts[SPOOL_TS_LEN + 1], id[SPOOL_ID_LEN + 1], sha[65];
	char **names = NULL;
	size_t n = 0, i;
	uint64_t off, size, us;
	int fd, rc = -1;
	const char *unused;
	bool qchanged = false, bad, started;

	spool_pool_lock(sp);
	started = sp->started;
	spool_pool_unlock(sp);
	if (started) {
		/* It would remove the tmp files of messages in progress. */
		sbuf_seterr(err, "recovery after messages were started");
		if (stats_out != NULL)
			*stats_out = st;
		return -1;
	}

	sbuf_init(&jb, SPOOL_JBATCH_MAX);
	sbuf_init(&ename, 1024);
	sbuf_init(&dest, 1024);
	sbuf_init(&why, SPOOL_ERR_LEN);
	spool_now(ts, sizeof(ts));

	/* Half-received messages: never acknowledged, so removed. */
	if (spool_list_dir(sp->tmpfd, "tmp", &names, &n, err) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		sbuf_reset(&ename);
		if (sbuf_append_escaped(&ename, names[i], strlen(names[i]),
		        NULL, true) == -1)
			sbuf_reset(&ename);
		unused = spool_tmp_unused(sp->tmpfd, names[i]);
		if (unlinkat(sp->tmpfd, names[i], 0) == -1) {
			log_warn("spool: cannot remove tmp/%s", ename.data);
			continue;
		}
		/* Every removal is journaled, even of a file never written. */
		if (unused != NULL)
			log_info("removed %s tmp file %s", unused, ename.data);
		else
			log_warnx("removed incomplete message %s", ename.data);
		spool_journal_discard(&jb, ts, "discarded", names[i],
		    unused != NULL ? unused : "incomplete");
		st.removed_tmp++;
	}
	spool_free_names(names, n);
	names = NULL;
	if (st.removed_tmp > 0 && fsync(sp->tmpfd) == -1) {
		sbuf_seterr(err, "fsync tmp: %s", strerror(errno));
		goto out;
	}

	if (spool_list_dir(sp->queuefd, "queue", &names, &n, err) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		bad = true;
		sbuf_reset(&ename);
		if (sbuf_append_escaped(&ename, names[i], strlen(names[i]),
		        NULL, true) == -1)
			sbuf_reset(&ename);
		memset(&env, 0, sizeof(env));
		if (!spool_id_valid(names[i]))
			sbuf_seterr(&why, "not a queue id");
		else if ((fd = openat(sp->queuefd, names[i],
		              O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
			sbuf_seterr(&why, "open: %s", strerror(errno));
		else {
			if (spool_read_header_fd(fd, &env, id, &off, &size, sha,
			        &why) == 0) {
				if (strcmp(id, names[i]) == 0)
					bad = false;
				else {
					sbuf_seterr(&why, "header id %s", id);
					spool_envelope_clear(&env);
				}
			}
			(void)close(fd); /* read-only */
		}
		if (!bad) {
			/* Keep new ids above every queued one (clock steps). */
			us = spool_id_time(names[i]);
			spool_pool_lock(sp);
			if (us > sp->last_us)
				sp->last_us = us;
			spool_pool_unlock(sp);
			if (found != NULL)
				found(arg, names[i], &env, size);
			spool_envelope_clear(&env);
			st.queued++;
			continue;
		}
		/* Unreadable: kept for the postmaster, never deleted. */
		if (spool_move_corrupt(sp, names[i], &dest) == -1) {
			log_warn("spool: cannot quarantine queue/%s (%s)",
			    ename.data, why.data);
			continue;
		}
		qchanged = true;
		log_warnx("spool: queue/%s moved to corrupt/: %s", ename.data,
		    why.data);
		spool_journal_discard(&jb, ts, "quarantined", names[i],
		    why.data);
		st.quarantined++;
	}
	if (qchanged &&
	    (fsync(sp->corruptfd) == -1 || fsync(sp->queuefd) == -1)) {
		sbuf_seterr(err, "fsync corrupt/queue: %s", strerror(errno));
		goto out;
	}
	if (spool_journal_write(sp, &jb, err) == -1)
		goto out;
	/* The records just written precede the log: the checkpoint says so. */
	if (spool_log_write_ckpt(sp, false, err) == -1)
		goto out;
	/* Have files ready before the first client arrives. */
	if (sp->w != NULL && sp->pool_max > 0) {
		spool_pool_lock(sp);
		sp->pool_jobs++;
		sp->started = true;
		spool_pool_unlock(sp);
		atomic_fetch_add(&sp->inflight, 1);
		workers_submit(sp->w, spool_pool_refill_job, NULL, sp);
	}
	rc = 0;
out:
	spool_free_names(names, names != NULL ? n : 0);
	sbuf_release(&jb);
	sbuf_release(&ename);
	sbuf_release(&dest);
	sbuf_release(&why);
	if (stats_out != NULL)
		*stats_out = st;
	return rc;
}
