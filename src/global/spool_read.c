/*
 * spool_read.c - the read side of the spool: message contents by queue
 * id, and the journal, line by line.
 *
 * Never writes, creates or locks anything, so splitmxctl can use it beside
 * a running daemon; every file is opened relative to the spool's directory
 * fds with O_NOFOLLOW. A journal that ends in a torn record (a crash in
 * the middle of a write) is read up to its last complete line.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "spool_read.h"
#include "xmalloc.h"

#define SPOOL_READ_CHUNK (64 * 1024)

struct spool_reader {
	int dirfd;
	int queuefd;
};

struct spool_content {
	int fd;
	uint64_t off; /* where the content starts */
	uint64_t size;
	char sha[SPOOL_SHA256_HEX + 1];
};

struct spool_reader *
spool_reader_open(const char *dir, struct sbuf *err)
{
	struct spool_reader *rd = xcalloc(1, sizeof(*rd));

	rd->queuefd = -1;
	rd->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rd->dirfd == -1) {
		sbuf_seterr(err, "open %s: %s", dir, strerror(errno));
		spool_reader_close(rd);
		return NULL;
	}
	rd->queuefd = openat(rd->dirfd, "queue",
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rd->queuefd == -1) {
		sbuf_seterr(err, "open %s/queue: %s", dir, strerror(errno));
		spool_reader_close(rd);
		return NULL;
	}
	return rd;
}

void
spool_reader_close(struct spool_reader *rd)
{
	if (rd == NULL)
		return;
	/* Read-only descriptors: a close error loses nothing. */
	if (rd->queuefd != -1)
		(void)close(rd->queuefd);
	if (rd->dirfd != -1)
		(void)close(rd->dirfd);
	free(rd);
}

struct spool_reader *
spool_reader_dup(const struct spool_reader *rd)
{
	struct spool_reader *d = xcalloc(1, sizeof(*d));

	d->queuefd = -1;
	if ((d->dirfd = fcntl(rd->dirfd, F_DUPFD_CLOEXEC, 0)) == -1 ||
	    (d->queuefd = fcntl(rd->queuefd, F_DUPFD_CLOEXEC, 0)) == -1) {
		spool_reader_close(d);
		return NULL;
	}
	return d;
}

/*
 * One journal file. With history set, a segment's leading "carried"
 * record and the lines it counts (copies of live records from the segment
 * before) are skipped, so nothing is seen twice.
 */
static int
spool_scan_file(const struct spool_reader *rd, const char *name, bool history,
    spool_line_cb cb, void *arg, struct spool_scan_stats *st, struct sbuf *err)
{
	struct spool_jrec rec;
	struct sbuf line, val;
	char *buf;
	uint64_t off = 0, skip = 0, nline = 0;
	ssize_t n, i;
	bool skipping = false;
	int fd, rc = -1;

	fd = openat(rd->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT) /* a spool nothing was written to */
			return 0;
		return sbuf_seterr(err, "open %s: %s", name, strerror(errno));
	}
	buf = xmalloc(SPOOL_READ_CHUNK);
	sbuf_init(&line, SPOOL_JLINE_MAX);
	sbuf_init(&val, 32);
	for (;;) {
		n = pread(fd, buf, SPOOL_READ_CHUNK, (off_t)off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			sbuf_seterr(err, "read %s: %s", name, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += (uint64_t)n;
		for (i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (!skipping &&
				    sbuf_append_char(&line, buf[i]) == -1) {
					/* An absurd record: skip to its end. */
					st->oversized++;
					skipping = true;
					sbuf_reset(&line);
				}
				continue;
			}
			nline++;
			if (history && nline == 1 &&
			    spool_jrec_parse(line.data, line.len, &rec, NULL) ==
			        0 &&
			    spool_jrec_is(&rec, "carried") &&
			    spool_jrec_value(&rec, "lines", false, &val) == 0)
				skip = strtoull(val.data, NULL, 10) + 1;
			if (skip > 0)
				skip--;
			else if (!skipping) {
				cb(arg, line.data, line.len);
				st->records++;
			}
			skipping = false;
			sbuf_reset(&line);
		}
	}
	st->torn_tail = line.len;
	rc = 0;
out:
	free(buf);
	sbuf_release(&line);
	sbuf_release(&val);
	(void)close(fd); /* read-only */
	return rc;
}

int
spool_reader_scan(const struct spool_reader *rd, spool_line_cb cb, void *arg,
    struct spool_scan_stats *stats_out, struct sbuf *err)
{
	struct spool_scan_stats st = { 0, 0, 0 };
	int rc;

	rc = spool_scan_file(rd, "journal", false, cb, arg, &st, err);
	if (stats_out != NULL)
		*stats_out = st;
	return rc;
}

static int
spool_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
spool_reader_scan_history(const struct spool_reader *rd, spool_line_cb cb,
    void *arg, struct spool_scan_stats *stats_out, struct sbuf *err)
{
	struct spool_scan_stats st = { 0, 0, 0 };
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	DIR *d;
	int fd, rc = -1;

	if ((fd = dup(rd->dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			(void)close(fd);
		return sbuf_seterr(err, "list spool: %s", strerror(errno));
	}
	while ((de = readdir(d)) != NULL) {
		if (!spool_journal_segment_name(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	(void)closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), spool_cmp_str);
	for (i = 0; i < n; i++)
		if (spool_scan_file(rd, names[i], true, cb, arg, &st, err) ==
		    -1)
			goto out;
	rc = spool_scan_file(rd, "journal", true, cb, arg, &st, err);
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (stats_out != NULL)
		*stats_out = st;
	return rc;
}

/* "journal.YYYYMMDDTHHMMSSZ" with an optional ".N": a closed segment. */
bool
spool_journal_segment_name(const char *name)
{
	static const char shape[] = "journal.DDDDDDDDTDDDDDDZ";
	size_t i;

	for (i = 0; shape[i] != '\0'; i++) {
		if (shape[i] == 'D' ? !(name[i] >= '0' && name[i] <= '9') :
		                      name[i] != shape[i])
			return false;
	}
	if (name[i] == '\0')
		return true;
	if (name[i] != '.' || name[i + 1] == '\0')
		return false;
	for (i++; name[i] != '\0'; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	return true;
}

int
spool_read_header_fd(int fd, struct spool_envelope *env_out,
    char id_out[SPOOL_ID_LEN + 1], uint64_t *content_off_out,
    uint64_t *content_size_out, char sha256_out[SPOOL_SHA256_HEX + 1],
    struct sbuf *err)
{
	char chunk[16 * 1024];
	struct stat st;
	struct sbuf hdr;
	uint64_t size = 0;
	size_t want, hlen = 0, from;
	ssize_t n;
	int rc = -1;

	memset(env_out, 0, sizeof(*env_out));
	if (fstat(fd, &st) == -1)
		return sbuf_seterr(err, "fstat: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return sbuf_seterr(err, "not a regular file");
	sbuf_init(&hdr, SPOOL_HEADER_MAX);
	/* Read until the "\n.\n" that ends the header, within the cap. */
	for (;;) {
		want = sizeof(chunk);
		if (want > hdr.cap - hdr.len)
			want = hdr.cap - hdr.len;
		if (want == 0) {
			sbuf_seterr(err, "header longer than %d octets",
			    SPOOL_HEADER_MAX);
			goto out;
		}
		n = pread(fd, chunk, want, (off_t)hdr.len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			sbuf_seterr(err, "read: %s", strerror(errno));
			goto out;
		}
		if (n == 0) {
			sbuf_seterr(err, "truncated header");
			goto out;
		}
		from = hdr.len >= 2 ? hdr.len - 2 : 0;
		if (sbuf_append(&hdr, chunk, (size_t)n) == -1) {
			sbuf_seterr(err, "header buffer"); /* want fits */
			goto out;
		}
		if (spool_hdr_end(hdr.data + from, hdr.len - from, &hlen) ==
		    1) {
			hlen += from;
			break;
		}
	}
	if (spool_hdr_parse(hdr.data, hlen, env_out, id_out, &size, sha256_out,
	        err) == -1)
		goto out;
	if ((uint64_t)st.st_size < hlen ||
	    (uint64_t)st.st_size - hlen != size) {
		sbuf_seterr(err,
		    "torn file: content is %" PRIu64
		    " octets, header says %" PRIu64,
		    (uint64_t)st.st_size >= hlen ? (uint64_t)st.st_size - hlen :
		                                   0,
		    size);
		spool_envelope_clear(env_out);
		goto out;
	}
	*content_off_out = hlen;
	*content_size_out = size;
	rc = 0;
out:
	sbuf_release(&hdr);
	return rc;
}

/* queue/ID, opened read-only and never through a link. */
static struct spool_content *
spool_content_openat(const struct spool_reader *rd, const char *id,
    struct sbuf *err)
{
	struct spool_content *c;

	if (!spool_id_valid(id)) {
		sbuf_seterr(err, "malformed queue id");
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->fd = openat(rd->queuefd, id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (c->fd == -1) {
		sbuf_seterr(err, "cannot open queue/%s: %s", id,
		    strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

struct spool_content *
spool_content_open(const struct spool_reader *rd, const char *id,
    struct spool_envelope *env_out, struct sbuf *err)
{
	struct spool_envelope env;
	struct spool_content *c;
	char hid[SPOOL_ID_LEN + 1];

	if (env_out != NULL)
		memset(env_out, 0, sizeof(*env_out));
	if ((c = spool_content_openat(rd, id, err)) == NULL)
		return NULL;
	if (spool_read_header_fd(c->fd, &env, hid, &c->off, &c->size, c->sha,
	        err) == -1) {
		spool_content_close(c);
		return NULL;
	}
	if (strcmp(hid, id) != 0) {
		sbuf_seterr(err, "file name does not match id %s", hid);
		spool_envelope_clear(&env);
		spool_content_close(c);
		return NULL;
	}
	if (env_out != NULL)
		*env_out = env;
	else
		spool_envelope_clear(&env);
	return c;
}

struct spool_content *
spool_content_reopen(const struct spool_reader *rd, const char *id,
    uint64_t content_off, uint64_t content_size, const char *sha256_hex,
    struct sbuf *err)
{
	struct spool_content *c;
	struct stat st;

	if ((c = spool_content_openat(rd, id, err)) == NULL)
		return NULL;
	if (fstat(c->fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != content_off + content_size) {
		sbuf_seterr(err, "queue file changed since it was loaded");
		spool_content_close(c);
		return NULL;
	}
	c->off = content_off;
	c->size = content_size;
	(void)snprintf(c->sha, sizeof(c->sha), "%s", sha256_hex);
	return c;
}

uint64_t
spool_content_offset(const struct spool_content *c)
{
	return c->off;
}

void
spool_content_close(struct spool_content *c)
{
	if (c == NULL)
		return;
	(void)close(c->fd); /* read-only: nothing to lose */
	free(c);
}

uint64_t
spool_content_size(const struct spool_content *c)
{
	return c->size;
}

const char *
spool_content_sha256(const struct spool_content *c)
{
	return c->sha;
}

ssize_t
spool_content_read(struct spool_content *c, uint64_t off, void *buf, size_t len)
{
	ssize_t r;

	if (off >= c->size)
		return 0;
	if (len > c->size - off)
		len = (size_t)(c->size - off);
	do
		r = pread(c->fd, buf, len, (off_t)(c->off + off));
	while (r == -1 && errno == EINTR);
	return r;
}

int
spool_content_verify(struct spool_content *c, spool_content_feed_cb feed,
    void *arg, bool *corrupt_out, struct sbuf *err)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char got[SPOOL_SHA256_HEX + 1];
	unsigned int mdlen = 0, i;
	EVP_MD_CTX *ctx;
	uint64_t done = 0;
	char *buf;
	ssize_t r;
	int rc = -1;

	*corrupt_out = false;
	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return sbuf_seterr(err, "SHA-256 not available");
	}
	buf = xmalloc(SPOOL_READ_CHUNK);
	while (done < c->size) {
		r = spool_content_read(c, done, buf, SPOOL_READ_CHUNK);
		if (r == -1) {
			sbuf_seterr(err, "read: %s", strerror(errno));
			goto out;
		}
		if (r == 0) {
			sbuf_seterr(err, "short content");
			*corrupt_out = true;
			goto out;
		}
		if (EVP_DigestUpdate(ctx, buf, (size_t)r) != 1) {
			sbuf_seterr(err, "SHA-256 failed");
			goto out;
		}
		if (feed != NULL)
			feed(arg, buf, (size_t)r);
		done += (uint64_t)r;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
		sbuf_seterr(err, "SHA-256 failed");
		goto out;
	}
	for (i = 0; i < mdlen; i++) {
		got[2 * i] = hex[md[i] >> 4];
		got[2 * i + 1] = hex[md[i] & 15];
	}
	got[SPOOL_SHA256_HEX] = '\0';
	if (strcmp(got, c->sha) != 0) {
		sbuf_seterr(err, "SHA-256 mismatch (file %s, recorded %s)", got,
		    c->sha);
		*corrupt_out = true;
		goto out;
	}
	rc = 0;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return rc;
}
