/*
 * spool_log.c - the spool's write-ahead log (format 2): one device flush
 * makes a whole commit group durable.
 *
 * The committer appends a group's records (the images of the small
 * messages it commits, and every journal line of the group: accepted,
 * delivery, claim and removal records) to the current segment and makes
 * them durable with one fdatasync. Segments are written ahead with zeros
 * and reused, so that fdatasync writes data only: no file size or block
 * map changes, no filesystem journal commit. The queue files and the
 * journal are then written without syncing; a checkpoint every few
 * seconds fsyncs what is still live of them, the journal and (through
 * the hook) the duplicate index, and records where replay must begin.
 *
 * At spool_open, the log after the last checkpoint is replayed: journal
 * lines the journal lost are appended again (it is first cut back to the
 * checkpoint's length), queue files a crash lost or tore are rewritten
 * from their images. Then the log restarts empty. A spool without a
 * checkpoint (format 1, or new) has nothing to replay.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sbuf.h"
#include "spool.h"
#include "spool_codec.h"
#include "spool_logfmt.h"
#include "workers.h"
#include "xmalloc.h"
#include "spool_int.h"

#define CKPT_NAME     "checkpoint"
#define CKPT_TMP_NAME "checkpoint.tmp"

static const unsigned char zeros[64 * 1024];

static int spool_log_flush_stage(struct spool *sp, struct sbuf *why);

void
spool_set_checkpoint_hook(struct spool *sp, spool_checkpoint_hook fn, void *arg)
{
	sp->log.hook = fn;
	sp->log.hook_arg = arg;
}

bool
spool_lost_boot(const struct spool *sp)
{
	return sp->log.lost_boot;
}

void
spool_set_log_segment(struct spool *sp, uint64_t bytes)
{
	if (bytes < ((uint64_t)1 << 20))
		bytes = (uint64_t)1 << 20;
	sp->log.seg_size = bytes;
}

static void
spool_log_read_boot(char out[SPOOL_LOGFMT_BOOT_MAX + 1])
{
	char buf[SPOOL_LOGFMT_BOOT_MAX + 2];
	ssize_t n;
	int fd;

	out[0] = '\0';
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd); /* read-only */
	if (n <= 0)
		return;
	buf[n] = '\0';
	buf[strcspn(buf, " \n")] = '\0';
	if (buf[0] != '\0' && strlen(buf) <= SPOOL_LOGFMT_BOOT_MAX)
		memcpy(out, buf, strlen(buf) + 1);
}

static int spool_log_write_ckpt_at(struct spool *sp, uint64_t redo,
    uint64_t journal_off, bool clean, struct sbuf *why);

/* Writes DIR/checkpoint for the log and journal as they are now. */
int
spool_log_write_ckpt(struct spool *sp, bool clean, struct sbuf *why)
{
	return spool_log_write_ckpt_at(sp, sp->log.lsn, sp->journal_off, clean,
	    why);
}

/* Writes DIR/checkpoint atomically: tmp file, fsync, rename, fsync. */
static int
spool_log_write_ckpt_at(struct spool *sp, uint64_t redo, uint64_t journal_off,
    bool clean, struct sbuf *why)
{
	struct spool_logfmt_ckpt ck;
	struct sbuf text;
	int fd, rc = -1;

	memset(&ck, 0, sizeof(ck));
	ck.redo = redo;
	ck.journal_off = journal_off;
	ck.clean = clean;
	sp->log_ckpt_journal = journal_off;
	memcpy(ck.boot, sp->log.boot, sizeof(ck.boot));
	sbuf_init(&text, SPOOL_LOGFMT_CKPT_MAX);
	if (spool_logfmt_ckpt_format(&ck, &text) == -1) {
		sbuf_seterr(why, "checkpoint too long");
		goto out;
	}
	fd = openat(sp->dirfd, CKPT_TMP_NAME,
	    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd == -1) {
		sbuf_seterr(why, "create %s: %s", CKPT_TMP_NAME,
		    strerror(errno));
		goto out;
	}
	if (spool_write_all(fd, text.data, text.len) == -1 || fsync(fd) == -1) {
		sbuf_seterr(why, "write %s: %s", CKPT_TMP_NAME,
		    strerror(errno));
		(void)close(fd); /* already failed */
		goto out;
	}
	if (close(fd) == -1) {
		sbuf_seterr(why, "close %s: %s", CKPT_TMP_NAME,
		    strerror(errno));
		goto out;
	}
	if (renameat(sp->dirfd, CKPT_TMP_NAME, sp->dirfd, CKPT_NAME) == -1 ||
	    fsync(sp->dirfd) == -1) {
		sbuf_seterr(why, "install %s: %s", CKPT_NAME, strerror(errno));
		goto out;
	}
	sp->log.redo = ck.redo;
	rc = 0;
out:
	sbuf_release(&text);
	return rc;
}

/* Reads DIR/checkpoint: 1 found, 0 absent, -1 unreadable (err set). */
static int
spool_log_read_ckpt(struct spool *sp, struct spool_logfmt_ckpt *ck,
    struct sbuf *err)
{
	char buf[SPOOL_LOGFMT_CKPT_MAX + 1];
	struct sbuf why;
	ssize_t n;
	int fd, rc;

	fd = openat(sp->dirfd, CKPT_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		return sbuf_seterr(err, "open %s/%s: %s", sp->dir, CKPT_NAME,
		    strerror(errno));
	}
	n = read(fd, buf, sizeof(buf));
	(void)close(fd); /* read-only */
	if (n == -1)
		return sbuf_seterr(err, "read %s/%s: %s", sp->dir, CKPT_NAME,
		    strerror(errno));
	sbuf_init(&why, SPOOL_ERR_LEN);
	rc = spool_logfmt_ckpt_parse(buf, (size_t)n, ck, &why);
	if (rc == -1)
		sbuf_seterr(err, "%s/%s:%s", sp->dir, CKPT_NAME, why.data + 5);
	sbuf_release(&why);
	return rc == -1 ? -1 : 1;
}

static int
spool_log_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The segments in log/, by start LSN, oldest first. */
static int
spool_log_list(struct spool *sp, uint64_t **out, size_t *nout, struct sbuf *err)
{
	uint64_t *v = NULL, lsn;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	if ((fd = dup(sp->log.dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			(void)close(fd);
		return sbuf_seterr(err, "list log: %s", strerror(errno));
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!spool_logfmt_segno(de->d_name, &lsn))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = lsn;
	}
	(void)closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), spool_log_cmp_u64);
	*out = v;
	*nout = n;
	return 0;
}

struct replay_image {
	char id[SPOOL_ID_LEN + 1];
	const unsigned char *data;
	size_t len;
	bool dead;
};

struct replay {
	struct replay_image *img;
	size_t nimg, imgcap;
	char (*ends)[SPOOL_ID_LEN + 1]; /* removed, discarded, quarantined */
	size_t nends, endcap;
	char (*gone)[SPOOL_ID_LEN + 1]; /* removed: no queue/ file wanted */
	size_t ngone, gonecap;
	void **maps;
	size_t *maplen;
	size_t nmaps;
	unsigned restored, unlinked, lines;
};

static void
spool_log_push_id(char (**ids)[SPOOL_ID_LEN + 1], size_t *n, size_t *cap,
    const char *id)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		*ids = xreallocarray(*ids, *cap, sizeof(**ids));
	}
	memcpy((*ids)[(*n)++], id, SPOOL_ID_LEN + 1);
}

/*
 * The ids a removal, discard or quarantine in the replayed lines ends
 * (queue ids are unique, so such a record always follows its image);
 * matched against the images once the scan is done, sorted. Removals
 * are kept apart too: their queue/ files must be gone.
 */
static void
spool_log_replay_lines(struct replay *rp, const unsigned char *p, size_t len)
{
	const unsigned char *end = p + len, *nl;
	struct spool_jrec rec;

	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		rp->lines++;
		if (spool_jrec_parse((const char *)p, (size_t)(nl - p), &rec,
		        NULL) == -1)
			continue;
		if (spool_jrec_is(&rec, "removed"))
			spool_log_push_id(&rp->gone, &rp->ngone, &rp->gonecap,
			    rec.id);
		else if (!spool_jrec_is(&rec, "discarded") &&
		    !spool_jrec_is(&rec, "quarantined"))
			continue;
		spool_log_push_id(&rp->ends, &rp->nends, &rp->endcap, rec.id);
	}
}

static int
spool_log_cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, SPOOL_ID_LEN);
}

/* 1 when queue/ID holds exactly the image. */
static int
spool_log_file_matches(struct spool *sp, const struct replay_image *im)
{
	unsigned char buf[64 * 1024];
	size_t off = 0;
	struct stat st;
	ssize_t n;
	int fd, same = 0;

	fd = openat(sp->queuefd, im->id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size == im->len) {
		same = 1;
		while (same && off < im->len) {
			n = pread(fd, buf, sizeof(buf), (off_t)off);
			if (n <= 0 || (size_t)n > im->len - off ||
			    memcmp(buf, im->data + off, (size_t)n) != 0)
				same = 0;
			else
				off += (size_t)n;
		}
	}
	(void)close(fd); /* read-only */
	return same;
}

/* Writes queue/ID from its image: tmp/ID, fsync, rename over. */
static int
spool_log_restore(struct spool *sp, const struct replay_image *im,
    struct sbuf *err)
{
	int fd;

	fd = openat(sp->tmpfd, im->id,
	    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1)
		return sbuf_seterr(err, "restore %s: %s", im->id,
		    strerror(errno));
	if (spool_write_all(fd, im->data, im->len) == -1 || fsync(fd) == -1) {
		sbuf_seterr(err, "restore %s: %s", im->id, strerror(errno));
		(void)close(fd); /* already failed */
		return -1;
	}
	if (close(fd) == -1 ||
	    renameat(sp->tmpfd, im->id, sp->queuefd, im->id) == -1)
		return sbuf_seterr(err, "restore %s: %s", im->id,
		    strerror(errno));
	log_warnx("spool: queue/%s restored from the log", im->id);
	return 0;
}

/*
 * Replays the log from ck->redo: journal lines after the checkpoint's
 * journal length are written again, queue files of live images restored.
 * Leaves sp->log.lsn at the end of what was valid.
 */
static int
spool_log_replay(struct spool *sp, const struct spool_logfmt_ckpt *ck,
    struct sbuf *err)
{
	struct replay rp;
	struct spool_logfmt_rec rec;
	uint64_t *segs = NULL, lsn = ck->redo;
	size_t nsegs = 0, i, k, off;
	struct stat st;
	bool qchanged = false;
	void *map;
	int fd, rc = -1;
	char name[SPOOL_LOGFMT_NAME_LEN + 1];

	memset(&rp, 0, sizeof(rp));
	if (spool_log_list(sp, &segs, &nsegs, err) == -1)
		return -1;
	/* The journal as of the checkpoint; what came after is replayed. */
	if (sp->journal_off > ck->journal_off) {
		if (ftruncate(sp->journalfd, (off_t)ck->journal_off) == -1) {
			sbuf_seterr(err, "truncate journal: %s",
			    strerror(errno));
			goto out;
		}
		sp->journal_off = ck->journal_off;
	} else if (sp->journal_off < ck->journal_off)
		log_warnx("spool: journal shorter (%" PRIu64
		          ") than at the checkpoint (%" PRIu64 ")",
		    sp->journal_off, ck->journal_off);
	rp.maps = xcalloc(nsegs + 1, sizeof(*rp.maps));
	rp.maplen = xcalloc(nsegs + 1, sizeof(*rp.maplen));

	/* The segment holding redo, then each one named where the last ended. */
	for (k = nsegs; k > 0 && segs[k - 1] > lsn; k--)
		;
	if (k == 0)
		goto done;
	k--;
	for (; k < nsegs; k++) {
		if (segs[k] != lsn && rp.nmaps > 0)
			break; /* no segment starts where the log ended */
		spool_logfmt_segname(name, segs[k]);
		fd = openat(sp->log.dirfd, name,
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1 || fstat(fd, &st) == -1) {
			sbuf_seterr(err, "open log/%s: %s", name,
			    strerror(errno));
			if (fd != -1)
				(void)close(fd);
			goto out;
		}
		if (st.st_size == 0 || lsn - segs[k] >= (uint64_t)st.st_size) {
			(void)close(fd);
			break;
		}
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd,
		    0);
		(void)close(fd); /* the mapping keeps the file */
		if (map == MAP_FAILED) {
			sbuf_seterr(err, "mmap log/%s: %s", name,
			    strerror(errno));
			goto out;
		}
		rp.maps[rp.nmaps] = map;
		rp.maplen[rp.nmaps++] = (size_t)st.st_size;
		off = (size_t)(lsn - segs[k]);
		while (spool_logfmt_decode((unsigned char *)map + off,
		           (size_t)st.st_size - off, lsn, &rec) == 1) {
			if (rec.type == SPOOL_LOGFMT_IMAGE) {
				struct replay_image *im;

				if (rp.nimg == rp.imgcap) {
					rp.imgcap = rp.imgcap ? rp.imgcap * 2 :
					                        64;
					rp.img = xreallocarray(rp.img,
					    rp.imgcap, sizeof(*rp.img));
				}
				im = &rp.img[rp.nimg];
				memcpy(im->id, rec.payload, SPOOL_ID_LEN);
				im->id[SPOOL_ID_LEN] = '\0';
				im->data = rec.payload + SPOOL_ID_LEN;
				im->len = rec.len - SPOOL_ID_LEN;
				if (spool_id_valid(im->id))
					rp.nimg++;
			} else {
				if (spool_write_all(sp->journalfd, rec.payload,
				        rec.len) == -1) {
					sbuf_seterr(err, "journal write: %s",
					    strerror(errno));
					goto out;
				}
				sp->journal_off += rec.len;
				spool_log_replay_lines(&rp, rec.payload,
				    rec.len);
			}
			off += rec.total;
			lsn += rec.total;
		}
	}
done:
	if (rp.nends > 0)
		qsort(rp.ends, rp.nends, sizeof(*rp.ends), spool_log_cmp_id);
	for (i = 0; i < rp.nimg; i++) {
		rp.img[i].dead = rp.nends > 0 &&
		    bsearch(rp.img[i].id, rp.ends, rp.nends, sizeof(*rp.ends),
		        spool_log_cmp_id) != NULL;
		if (rp.img[i].dead || spool_log_file_matches(sp, &rp.img[i]))
			continue;
		if (spool_log_restore(sp, &rp.img[i], err) == -1)
			goto out;
		rp.restored++;
		qchanged = true;
	}
	/*
	 * A removal the log holds may have reached the directory or not: the
	 * file is unlinked, or renamed into tmp/ for reuse and maybe written
	 * into already (spool_pool_recycle). queue/ is synced at every
	 * checkpoint, so only removals after it can have come back.
	 */
	for (i = 0; i < rp.ngone; i++) {
		if (unlinkat(sp->queuefd, rp.gone[i], 0) == 0) {
			rp.unlinked++;
			qchanged = true;
		} else if (errno != ENOENT) {
			sbuf_seterr(err, "unlink queue/%s: %s", rp.gone[i],
			    strerror(errno));
			goto out;
		}
	}
	if (fdatasync(sp->journalfd) == -1 ||
	    (qchanged && fsync(sp->queuefd) == -1)) {
		sbuf_seterr(err, "fsync after replay: %s", strerror(errno));
		goto out;
	}
	if (rp.lines > 0 || rp.nimg > 0)
		log_info("spool: log replayed: %u journal records, %zu "
		         "images, %u files restored, %u removed again",
		    rp.lines, rp.nimg, rp.restored, rp.unlinked);
	sp->log.lsn = lsn;
	rc = 0;
out:
	for (i = 0; i < rp.nmaps; i++)
		(void)munmap(rp.maps[i], rp.maplen[i]);
	free(rp.maps);
	free(rp.maplen);
	free(rp.img);
	free(rp.ends);
	free(rp.gone);
	free(segs);
	return rc;
}

/* Opens (creating) the segment named lsn; recycles a spare if any. */
static int
spool_log_new_segment(struct spool *sp, struct sbuf *why)
{
	struct spool_log *lg = &sp->log;
	char name[SPOOL_LOGFMT_NAME_LEN + 1], old[SPOOL_LOGFMT_NAME_LEN + 1];
	struct stat st;
	int fd;

	spool_logfmt_segname(name, lg->lsn);
	if (lg->nspare > 0) {
		spool_logfmt_segname(old, lg->spare[--lg->nspare]);
		if (renameat(lg->dirfd, old, lg->dirfd, name) == -1) {
			log_warn("spool: recycle log/%s", old);
			(void)unlinkat(lg->dirfd, old, 0);
		}
	}
	fd = openat(lg->dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0640);
	if (fd == -1 || fstat(fd, &st) == -1) {
		sbuf_seterr(why, "open log/%s: %s", name, strerror(errno));
		if (fd != -1)
			(void)close(fd);
		return -1;
	}
	/* Its name must survive a crash before any record in it counts. */
	if (fsync(lg->dirfd) == -1) {
		sbuf_seterr(why, "fsync log: %s", strerror(errno));
		(void)close(fd);
		return -1;
	}
	if (lg->fd != -1) {
		if (close(lg->fd) == -1)
			log_warn("spool: close log segment");
		if (lg->nold == lg->oldcap) {
			lg->oldcap = lg->oldcap ? lg->oldcap * 2 : 8;
			lg->old = xreallocarray(lg->old, lg->oldcap,
			    sizeof(*lg->old));
		}
		lg->old[lg->nold++] = lg->seg_start;
	}
	lg->fd = fd;
	lg->seg_start = lg->lsn;
	lg->seg_init = (uint64_t)st.st_size;
	return 0;
}

int
spool_log_open(struct spool *sp, struct sbuf *err)
{
	struct spool_log *lg = &sp->log;
	struct spool_logfmt_ckpt ck;
	uint64_t *segs = NULL;
	size_t nsegs = 0, i;
	char name[SPOOL_LOGFMT_NAME_LEN + 1];
	int found;

	if (lg->seg_size == 0)
		lg->seg_size = SPOOL_LOG_SEG_DEFAULT;
	lg->stage = xmalloc(SPOOL_LOG_STAGE);
	spool_log_read_boot(lg->boot);
	if (mkdirat(sp->dirfd, "log", 0750) == -1 && errno != EEXIST)
		return sbuf_seterr(err, "mkdir log: %s", strerror(errno));
	lg->dirfd = openat(sp->dirfd, "log",
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (lg->dirfd == -1)
		return sbuf_seterr(err, "open log: %s", strerror(errno));
	if ((found = spool_log_read_ckpt(sp, &ck, err)) == -1)
		return -1;
	if (found) {
		lg->lost_boot = !ck.clean && ck.boot[0] != '\0' &&
		    lg->boot[0] != '\0' && strcmp(ck.boot, lg->boot) != 0;
		if (spool_log_replay(sp, &ck, err) == -1)
			return -1;
	}
	/* Everything replayed is durable elsewhere now: start afresh. */
	if (spool_log_list(sp, &segs, &nsegs, err) == -1)
		return -1;
	for (i = 0; i < nsegs; i++) {
		spool_logfmt_segname(name, segs[i]);
		if (i + SPOOL_LOG_SPARES >= nsegs && segs[i] < lg->lsn)
			lg->spare[lg->nspare++] = segs[i];
		else if (unlinkat(lg->dirfd, name, 0) == -1)
			log_warn("spool: remove log/%s", name);
	}
	free(segs);
	lg->lsn = (lg->lsn + SPOOL_LOGFMT_ALIGN - 1) &
	    ~(uint64_t)(SPOOL_LOGFMT_ALIGN - 1);
	if (spool_log_new_segment(sp, err) == -1 ||
	    spool_log_write_ckpt(sp, false, err) == -1)
		return -1;
	(void)clock_gettime(CLOCK_MONOTONIC, &lg->ckpt_at);
	return 0;
}

void
spool_log_close(struct spool *sp)
{
	struct spool_log *lg = &sp->log;

	if (lg->fd != -1 && close(lg->fd) == -1)
		log_warn("spool: close log segment");
	if (lg->dirfd != -1 && close(lg->dirfd) == -1)
		log_warn("spool: close log/");
	lg->fd = lg->dirfd = -1;
	free(lg->stage);
	free(lg->old);
	free(lg->ids);
	free(lg->ck_ids);
	free(lg->ck_old);
	lg->ck_ids = NULL;
	lg->ck_old = NULL;
	lg->stage = NULL;
	lg->old = NULL;
	lg->ids = NULL;
}

/* Writes [off, off+len) of the segment, zero-filling ahead first. */
static int
spool_log_pwritev(struct spool *sp, const struct iovec *iov, int niov,
    uint64_t lsn, size_t len, struct sbuf *why)
{
	struct spool_log *lg = &sp->log;
	uint64_t off = lsn - lg->seg_start, end = off + len, target, fill0;
	struct iovec v[4];
	ssize_t n;
	size_t done = 0, skip;
	int i, nv;

	if (end > lg->seg_init) {
		fill0 = lg->seg_init;
		/* Each fill (one filesystem commit) twice the last one. */
		if (lg->init_step < SPOOL_LOG_INIT_MIN)
			lg->init_step = SPOOL_LOG_INIT_MIN;
		target = end + lg->init_step;
		if (lg->init_step < SPOOL_LOG_INIT_MAX)
			lg->init_step *= 2;
		while (lg->seg_init < target) {
			size_t chunk = target - lg->seg_init < sizeof(zeros) ?
			    (size_t)(target - lg->seg_init) :
			    sizeof(zeros);

			if (spool_pwrite_all(lg->fd, zeros, chunk,
			        (off_t)lg->seg_init) == -1) {
				/*
				 * A full disk: hold no space ahead (the journal
				 * and tmp files need it); the write below
				 * extends the file as far as it can.
				 */
				if (errno == ENOSPC &&
				    ftruncate(lg->fd, (off_t)fill0) == 0) {
					lg->seg_init = fill0;
					lg->init_step = SPOOL_LOG_INIT_MIN;
					break;
				}
				return sbuf_seterr(why, "log write: %s",
				    strerror(errno));
			}
			lg->seg_init += chunk;
		}
	}
	while (done < len) {
		/* The iovecs past what was written already. */
		skip = done;
		nv = 0;
		for (i = 0; i < niov; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			v[nv].iov_base = (char *)iov[i].iov_base + skip;
			v[nv++].iov_len = iov[i].iov_len - skip;
			skip = 0;
		}
		n = pwritev(lg->fd, v, nv, (off_t)(off + done));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return sbuf_seterr(why, "log write: %s",
			    n == 0 ? "short write" : strerror(errno));
		done += (size_t)n;
	}
	if (end > lg->seg_init)
		lg->seg_init = end;
	return 0;
}

static int
spool_log_flush_stage(struct spool *sp, struct sbuf *why)
{
	struct spool_log *lg = &sp->log;
	struct iovec v;

	if (lg->stage_len == 0)
		return 0;
	v.iov_base = lg->stage;
	v.iov_len = lg->stage_len;
	if (spool_log_pwritev(sp, &v, 1, lg->stage_lsn, lg->stage_len, why) ==
	    -1)
		return -1;
	lg->stage_len = 0;
	return 0;
}

/*
 * Room for a record of total octets at lsn: a full segment is synced and
 * left for a new one (named by lsn, so positions run on).
 */
static int
spool_log_reserve(struct spool *sp, size_t total, struct sbuf *why)
{
	struct spool_log *lg = &sp->log;

	if (lg->lsn > lg->seg_start &&
	    lg->lsn - lg->seg_start + total > lg->seg_size) {
		if (spool_log_flush_stage(sp, why) == -1)
			return -1;
		if (fdatasync(lg->fd) == -1) {
			sbuf_seterr(why, "log fdatasync: %s", strerror(errno));
			spool_break(sp, why->data);
			return -1;
		}
		if (spool_log_new_segment(sp, why) == -1)
			return -1;
	}
	if (lg->stage_len == 0)
		lg->stage_lsn = lg->lsn;
	else if (lg->stage_len + total > SPOOL_LOG_STAGE &&
	    spool_log_flush_stage(sp, why) == -1)
		return -1;
	if (lg->stage_len == 0)
		lg->stage_lsn = lg->lsn;
	lg->dirty = true;
	return 0;
}

/* One record whose payload is a then b; large ones bypass the stage. */
int
spool_log_add(struct spool *sp, uint32_t type, const void *a, size_t alen,
    const void *b, size_t blen, struct sbuf *why)
{
	struct spool_log *lg = &sp->log;
	size_t len = alen + blen, total = spool_logfmt_size(len);
	unsigned char hdr[SPOOL_LOGFMT_HDR_LEN], *p;
	struct iovec v[4];
	uint32_t crc;

	if (len > SPOOL_LOGFMT_REC_MAX)
		return sbuf_seterr(why, "log record too large");
	if (spool_log_reserve(sp, total, why) == -1)
		return -1;
	crc = spool_logfmt_crc_begin(type, (uint32_t)len, lg->lsn);
	crc = spool_logfmt_crc32c(crc, a, alen);
	crc = spool_logfmt_crc32c(crc, b, blen);
	spool_logfmt_header(hdr, type, (uint32_t)len, lg->lsn, crc);
	if (total <= SPOOL_LOG_STAGE) {
		p = lg->stage + lg->stage_len;
		memcpy(p, hdr, sizeof(hdr));
		if (alen > 0)
			memcpy(p + sizeof(hdr), a, alen);
		if (blen > 0)
			memcpy(p + sizeof(hdr) + alen, b, blen);
		memset(p + sizeof(hdr) + len, 0, total - sizeof(hdr) - len);
		lg->stage_len += total;
	} else {
		if (spool_log_flush_stage(sp, why) == -1)
			return -1;
		v[0].iov_base = hdr;
		v[0].iov_len = sizeof(hdr);
		v[1].iov_base = (void *)(uintptr_t)a;
		v[1].iov_len = alen;
		v[2].iov_base = (void *)(uintptr_t)b;
		v[2].iov_len = blen;
		v[3].iov_base = (void *)(uintptr_t)zeros;
		v[3].iov_len = total - sizeof(hdr) - len;
		if (spool_log_pwritev(sp, v, 4, lg->lsn, total, why) == -1)
			return -1;
	}
	lg->lsn += total;
	return 0;
}

/* The image of a committed file: its id, then its octets as written. */
int
spool_log_add_image(struct spool *sp, const char *id, int fd, uint64_t len,
    struct sbuf *why)
{
	struct spool_log *lg = &sp->log;
	size_t plen = SPOOL_ID_LEN + (size_t)len, total;
	unsigned char *p;
	uint32_t crc;
	ssize_t n;
	size_t got = 0;

	total = spool_logfmt_size(plen);
	if (len > SPOOL_LOG_IMAGE_MAX)
		return sbuf_seterr(why, "image too large");
	if (spool_log_reserve(sp, total, why) == -1)
		return -1;
	p = lg->stage + lg->stage_len;
	memcpy(p + SPOOL_LOGFMT_HDR_LEN, id, SPOOL_ID_LEN);
	while (got < len) {
		n = pread(fd, p + SPOOL_LOGFMT_HDR_LEN + SPOOL_ID_LEN + got,
		    (size_t)len - got, (off_t)got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return sbuf_seterr(why, "read tmp/%s: %s", id,
			    n == 0 ? "truncated" : strerror(errno));
		got += (size_t)n;
	}
	crc = spool_logfmt_crc_begin(SPOOL_LOGFMT_IMAGE, (uint32_t)plen,
	    lg->lsn);
	crc = spool_logfmt_crc32c(crc, p + SPOOL_LOGFMT_HDR_LEN, plen);
	spool_logfmt_header(p, SPOOL_LOGFMT_IMAGE, (uint32_t)plen, lg->lsn,
	    crc);
	memset(p + SPOOL_LOGFMT_HDR_LEN + plen, 0,
	    total - SPOOL_LOGFMT_HDR_LEN - plen);
	lg->stage_len += total;
	lg->lsn += total;
	return 0;
}

/* Journal lines as RECORDS, cut at line ends to fit a segment. */
int
spool_log_add_lines(struct spool *sp, const struct sbuf *lines,
    struct sbuf *why)
{
	size_t max = (size_t)(sp->log.seg_size / 4), off = 0, n;
	const char *nl;

	while (off < lines->len) {
		n = lines->len - off;
		if (n > max) {
			nl = memrchr(lines->data + off, '\n', max);
			n = nl != NULL ?
			    (size_t)(nl - (lines->data + off)) + 1 :
			    n;
		}
		if (spool_log_add(sp, SPOOL_LOGFMT_RECORDS, lines->data + off,
		        n, NULL, 0, why) == -1)
			return -1;
		off += n;
	}
	return 0;
}

/* Everything added is durable when this returns 0: one fdatasync. */
int
spool_log_sync(struct spool *sp, struct sbuf *why)
{
	if (atomic_load(&sp->broken))
		return sbuf_seterr(why, "%s", sp->broken_why);
	if (spool_log_flush_stage(sp, why) == -1)
		return -1;
	if (fdatasync(sp->log.fd) == -1) {
		/* The pages may be gone: a retry could lie. */
		sbuf_seterr(why, "log fdatasync: %s", strerror(errno));
		spool_break(sp, why->data);
		return -1;
	}
	return 0;
}

/*
 * A group that failed before its sync is taken back: the next one writes
 * over it (nothing of it was acknowledged, and replay stops at the first
 * record that does not check). Across a segment switch, the spool breaks.
 */
void
spool_log_rollback(struct spool *sp, uint64_t lsn)
{
	struct spool_log *lg = &sp->log;

	lg->stage_len = 0;
	if (lsn < lg->seg_start) {
		spool_break(sp, "log write failed across segments");
		return;
	}
	lg->lsn = lsn;
}

void
spool_log_note_image(struct spool *sp, const char *id)
{
	struct spool_log *lg = &sp->log;

	if (lg->nids == lg->idcap) {
		lg->idcap = lg->idcap ? lg->idcap * 2 : 256;
		lg->ids = xreallocarray(lg->ids, lg->idcap, sizeof(*lg->ids));
	}
	memcpy(lg->ids[lg->nids++], id, SPOOL_ID_LEN + 1);
}

/* fsync of each file in ids still in queue/, then of queue/. */
static int
spool_log_sync_files(struct spool *sp, char (*ids)[SPOOL_ID_LEN + 1], size_t n,
    struct sbuf *why)
{
	size_t i;
	int fd;

	for (i = 0; i < n; i++) {
		fd = openat(sp->queuefd, ids[i],
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1) {
			if (errno == ENOENT)
				continue; /* delivered and removed */
			return sbuf_seterr(why, "open queue/%s: %s", ids[i],
			    strerror(errno));
		}
		if (fsync(fd) == -1) {
			sbuf_seterr(why, "fsync queue/%s: %s", ids[i],
			    strerror(errno));
			(void)close(fd);
			/* Its pages may be gone; only the log has it now. */
			spool_break(sp, why->data);
			return -1;
		}
		(void)close(fd); /* synced */
	}
	if (fsync(sp->queuefd) == -1) {
		sbuf_seterr(why, "fsync queue: %s", strerror(errno));
		spool_break(sp, why->data);
		return -1;
	}
	return 0;
}

/* Segments before a written checkpoint: a few kept for reuse. */
static void
spool_log_recycle(struct spool *sp, uint64_t *old, size_t n)
{
	struct spool_log *lg = &sp->log;
	char name[SPOOL_LOGFMT_NAME_LEN + 1];
	size_t i;

	for (i = 0; i < n; i++) {
		if (lg->nspare < SPOOL_LOG_SPARES) {
			lg->spare[lg->nspare++] = old[i];
			continue;
		}
		spool_logfmt_segname(name, old[i]);
		if (unlinkat(lg->dirfd, name, 0) == -1)
			log_warn("spool: remove log/%s", name);
	}
}

/* Worker: the files of an asynchronous checkpoint. */
static void
spool_log_ckpt_job(void *arg)
{
	struct spool *sp = arg;
	struct spool_log *lg = &sp->log;
	struct sbuf why;

	sbuf_init(&why, SPOOL_ERR_LEN);
	atomic_store(&lg->ck_status,
	    spool_log_sync_files(sp, lg->ck_ids, lg->ck_nids, &why));
	if (atomic_load(&lg->ck_status) == -1)
		log_warnx("spool: checkpoint: %s", why.data);
	sbuf_release(&why);
	spool_lock(sp);
	atomic_store(&lg->ck_done, true);
	spool_check(pthread_cond_signal(&sp->cq_cond), "pthread_cond_signal");
	spool_unlock(sp);
	spool_inflight_done(sp, 1);
}

/* Committer: the files are synced; the rest, then the checkpoint file. */
static void
spool_log_ckpt_finish(struct spool *sp)
{
	struct spool_log *lg = &sp->log;
	struct sbuf why;

	lg->ck_busy = false;
	sbuf_init(&why, SPOOL_ERR_LEN);
	if (atomic_load(&lg->ck_status) == -1 || atomic_load(&sp->broken))
		sbuf_seterr(&why, "queue files not synced");
	else if (fdatasync(sp->journalfd) == -1) {
		sbuf_seterr(&why, "fdatasync journal: %s", strerror(errno));
		spool_break(sp, why.data);
	} else if (lg->hook != NULL && lg->hook(lg->hook_arg) == -1)
		sbuf_seterr(&why, "duplicate index sync failed");
	else if (spool_log_write_ckpt_at(sp, lg->ck_redo, lg->ck_journal, false,
	             &why) == 0) {
		spool_log_recycle(sp, lg->ck_old, lg->ck_nold);
		lg->ck_nold = 0;
		sbuf_release(&why);
		return;
	}
	/* Replay still starts at the last checkpoint: nothing is lost. */
	log_warnx("spool: checkpoint not taken: %s", why.data);
	lg->dirty = true;
	sbuf_release(&why);
}

/*
 * Takes apart what an asynchronous checkpoint needs: the redo point and
 * journal length now, the image ids since the last one (handed to the
 * worker), a new segment so the older ones come free with it.
 */
static int
spool_log_ckpt_start(struct spool *sp, struct sbuf *why)
{
	struct spool_log *lg = &sp->log;
	char(*ids)[SPOOL_ID_LEN + 1];
	size_t cap, i;

	if (lg->lsn > lg->seg_start && spool_log_new_segment(sp, why) == -1) {
		spool_break(sp, why->data);
		return -1;
	}
	lg->ck_redo = lg->seg_start;
	lg->ck_journal = sp->journal_off;
	ids = lg->ck_ids;
	cap = lg->ck_idcap;
	lg->ck_ids = lg->ids;
	lg->ck_idcap = lg->idcap;
	lg->ck_nids = lg->nids;
	lg->ids = ids;
	lg->idcap = cap;
	lg->nids = 0;
	for (i = 0; i < lg->nold; i++) {
		if (lg->ck_nold == lg->ck_oldcap) {
			lg->ck_oldcap = lg->ck_oldcap ? 2 * lg->ck_oldcap : 8;
			lg->ck_old = xreallocarray(lg->ck_old, lg->ck_oldcap,
			    sizeof(*lg->ck_old));
		}
		lg->ck_old[lg->ck_nold++] = lg->old[i];
	}
	lg->nold = 0;
	lg->ck_busy = true;
	atomic_store(&lg->ck_done, false);
	atomic_store(&lg->ck_status, 0);
	atomic_fetch_add(&sp->inflight, 1);
	workers_submit(sp->w, spool_log_ckpt_job, NULL, sp);
	return 0;
}

/* Committer, idle: an asynchronous checkpoint's files are synced. */
bool
spool_log_ckpt_ready(struct spool *sp)
{
	return sp->log.ck_busy && atomic_load(&sp->log.ck_done);
}

/*
 * The checkpoint, every SPOOL_LOG_CKPT_SECS when the log was written:
 * every image's file still in queue/ is fsynced, then queue/, the journal
 * and (hook) the duplicate index; then the checkpoint file moves redo on
 * and older segments are recycled. The file fsyncs run on a worker while
 * commits go on; a clean stop, or a journal due for rotation, takes it
 * all on the committer (rotation needs a journal wholly covered).
 * Between groups only. Failures leave the last checkpoint in force, so
 * replay still covers everything.
 */
void
spool_log_maybe_checkpoint(struct spool *sp, bool clean)
{
	struct spool_log *lg = &sp->log;
	struct timespec now;
	struct sbuf why;

	if (lg->ck_busy) {
		if (!atomic_load(&lg->ck_done))
			return; /* at a clean stop, inflight waited for it */
		spool_log_ckpt_finish(sp);
	}
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	if (!clean &&
	    (!lg->dirty ||
	        now.tv_sec - lg->ckpt_at.tv_sec < SPOOL_LOG_CKPT_SECS))
		return;
	if (atomic_load(&sp->broken) || lg->fd == -1 || sp->jbacklog.len > 0) {
		lg->ckpt_at = now; /* not again before an interval */
		return;
	}
	sbuf_init(&why, SPOOL_ERR_LEN);
	lg->dirty = false;
	lg->ckpt_at = now;
	if (!clean &&
	    (sp->journal_max == 0 || sp->journal_off < sp->journal_max) &&
	    sp->w != NULL) {
		if (spool_log_ckpt_start(sp, &why) == -1)
			goto fail;
		sbuf_release(&why);
		return;
	}
	if (spool_log_sync_files(sp, lg->ids, lg->nids, &why) == -1)
		goto fail;
	if (fdatasync(sp->journalfd) == -1) {
		sbuf_seterr(&why, "fdatasync journal: %s", strerror(errno));
		spool_break(sp, why.data);
		goto fail;
	}
	if (lg->hook != NULL && lg->hook(lg->hook_arg) == -1) {
		sbuf_seterr(&why, "duplicate index sync failed");
		goto fail;
	}
	/*
	 * A new segment from redo on, so the current one is free at once:
	 * the log needs about a checkpoint interval's worth of disk.
	 */
	if (!clean && lg->lsn > lg->seg_start &&
	    spool_log_new_segment(sp, &why) == -1) {
		spool_break(sp, why.data);
		goto fail;
	}
	if (spool_log_write_ckpt(sp, clean, &why) == -1)
		goto fail;
	/* A long journal is closed; the checkpoint then names the new one. */
	if (spool_rotate(sp, &why) == -1)
		log_warnx("spool: journal not rotated: %s", why.data);
	else if (sp->journal_off != sp->log_ckpt_journal &&
	    spool_log_write_ckpt(sp, clean, &why) == -1)
		goto fail;
	lg->nids = 0;
	spool_log_recycle(sp, lg->old, lg->nold);
	lg->nold = 0;
	sbuf_release(&why);
	return;
fail:
	log_warnx("spool: checkpoint not taken: %s", why.data);
	lg->dirty = true; /* tried again in an interval */
	sbuf_release(&why);
}
