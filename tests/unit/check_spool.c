/*
 * check_spool.c - unit tests for spool_ and workers_.
 *
 * Each test gets a fresh spool under /tmp, an event_base and a pool of
 * workers, and drives the real commit pipeline through the loop: files,
 * fsyncs and the journal are real. Write failures are provoked by putting
 * /dev/full under a message's fd.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/evp.h>

#include "sbuf.h"
#include "smtp_proto.h"
#include "spool.h"
#include "spool_codec.h"
#include "workers.h"
#include "xmalloc.h"

#define NMANY 200

static char tdir[64];
static char sdir[96];
static struct event_base *base;
static struct workers *w;
static struct spool *sp;

struct result {
	int status;
	bool done;
	char id[SPOOL_ID_LEN + 1];
	char err[256];
};

static unsigned ndone;

/* ---- helpers ---- */

static int
rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* Where the spool's message calls put their reason (docs/errors.md). */
static struct sbuf t_err;

static void
open_spool(void)
{
	struct sbuf err;

	sbuf_init(&err, 256);
	sp = spool_open(sdir, w, &err);
	ck_assert_msg(sp != NULL, "spool_open: %s", err.data);
	sbuf_release(&err);
}

static void
setup(void)
{
	(void)snprintf(tdir, sizeof(tdir), "/tmp/check_spool.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	(void)snprintf(sdir, sizeof(sdir), "%s/spool", tdir);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	w = workers_new(base, 4);
	open_spool();
	sbuf_init(&t_err, 256);
	ndone = 0;
}

static void
teardown(void)
{
	spool_close(sp);
	sp = NULL;
	sbuf_release(&t_err);
	workers_free(w);
	w = NULL;
	event_base_free(base);
	base = NULL;
	(void)nftw(tdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void
pump_until(const unsigned *counter, unsigned target)
{
	while (*counter < target)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
}

static void
commit_cb(void *arg, int status, const char *id, const char *err)
{
	struct result *r = arg;

	ck_assert(!r->done);
	r->done = true;
	r->status = status;
	(void)snprintf(r->id, sizeof(r->id), "%s", id);
	(void)snprintf(r->err, sizeof(r->err), "%s", err != NULL ? err : "");
	ck_assert(status == 0 ? err == NULL : err != NULL);
	ndone++;
}

static void
make_env(struct spool_envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->sender = xstrdup("\"a b\"@example.org");
	env->envid = xstrdup("QQ+2B314");
	env->ret = SMTP_PROTO_RET_FULL;
	env->body = SMTP_PROTO_BODY_8BITMIME;
	env->smtputf8 = true;
	env->nrcpts = 3;
	env->rcpts = xcalloc(3, sizeof(*env->rcpts));
	env->rcpts[0].addr = xstrdup("bob@example.com");
	env->rcpts[0].notify = SMTP_PROTO_NOTIFY_SUCCESS |
	    SMTP_PROTO_NOTIFY_FAILURE;
	env->rcpts[0].orcpt = xstrdup("rfc822;bob@example.com");
	env->rcpts[1].addr = xstrdup("postmaster");
	env->rcpts[2].addr = xstrdup("j\xc3\xbcrgen@b\xc3\xbc"
	                             "cher.example");
	env->rcpts[2].notify = SMTP_PROTO_NOTIFY_NEVER;
	ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &env->arrival), 0);
	env->listener = xstrdup("127.0.0.1:2525");
	env->client_addr = xstrdup("192.0.2.1");
	env->client_name = xstrdup("mail.example.net");
	env->helo = xstrdup("evil\r\nhelo with\\spaces");
	env->protocol = xstrdup("ESMTPS");
	env->tls = xstrdup("TLSv1.3 TLS_AES_256_GCM_SHA384");
}

static void
make_simple_env(struct spool_envelope *env, const char *sender)
{
	memset(env, 0, sizeof(*env));
	env->sender = xstrdup(sender);
	env->nrcpts = 1;
	env->rcpts = xcalloc(1, sizeof(*env->rcpts));
	env->rcpts[0].addr = xstrdup("rcpt@example.com");
	ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &env->arrival), 0);
	env->listener = xstrdup("[::1]:25");
	env->client_addr = xstrdup("::1");
	env->client_name = xstrdup("unknown");
	env->protocol = xstrdup("SMTP");
}

static char *
read_whole(const char *path, size_t *len_out)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd != -1, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fstat(fd, &st), 0);
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	ck_assert_int_eq(n, st.st_size);
	buf[n] = '\0';
	ck_assert_int_eq(close(fd), 0);
	*len_out = (size_t)n;
	return buf;
}

/* Reads DIR/queue/ID through the read side (spool_read.h), as the queue does. */
static int
read_msg(const char *dir, const char *id, struct spool_envelope *env,
    uint64_t *off, uint64_t *size, char sha[65], struct sbuf *err)
{
	struct spool_reader *rd = spool_reader_open(dir, err);
	struct spool_content *c;

	memset(env, 0, sizeof(*env));
	if (rd == NULL)
		return -1;
	c = spool_content_open(rd, id, env, err);
	if (c != NULL) {
		*off = spool_content_offset(c);
		*size = spool_content_size(c);
		(void)snprintf(sha, 65, "%s", spool_content_sha256(c));
		spool_content_close(c);
	}
	spool_reader_close(rd);
	return c != NULL ? 0 : -1;
}

/* The header parser over one open file, whatever its name. */
static int
read_header_file(const char *path, struct spool_envelope *env, uint64_t *off,
    uint64_t *size, char sha[65], struct sbuf *err)
{
	char id[SPOOL_ID_LEN + 1];
	int fd, rc;

	memset(env, 0, sizeof(*env));
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return sbuf_seterr(err, "open: %s", strerror(errno));
	rc = spool_read_header_fd(fd, env, id, off, size, sha, err);
	(void)close(fd);
	return rc;
}

static void
write_whole(const char *path, const void *data, size_t len)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_msg(fd != -1, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(close(fd), 0);
}

static unsigned
count_dir(const char *sub)
{
	char path[256];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	(void)snprintf(path, sizeof(path), "%s/%s", sdir, sub);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	ck_assert_int_eq(closedir(d), 0);
	return n;
}

/*
 * True when tmp/NAME (in dir fd) is a recycled file: it still holds a
 * removed message, whose header names another id.
 */
static bool
tmp_recycled(int dfd, const char *name)
{
	char got[3 + SPOOL_ID_LEN + 1];
	ssize_t n;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	n = pread(fd, got, sizeof(got), (off_t)SPOOL_ID_OFF);
	ck_assert_int_eq(close(fd), 0);
	return n == (ssize_t)sizeof(got) && memcmp(got, "id ", 3) == 0 &&
	    memcmp(got + 3, name, SPOOL_ID_LEN) != 0;
}

/*
 * tmp/ files holding a message (unused pre-created files are empty,
 * recycled ones name another id).
 */
static unsigned
count_tmp_used(void)
{
	char path[256];
	struct dirent *de;
	struct stat st;
	unsigned n = 0;
	DIR *d;

	(void)snprintf(path, sizeof(path), "%s/tmp", sdir);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		ck_assert_int_eq(fstatat(dirfd(d), de->d_name, &st, 0), 0);
		if (st.st_size > 0 && !tmp_recycled(dirfd(d), de->d_name))
			n++;
	}
	ck_assert_int_eq(closedir(d), 0);
	return n;
}

static char *
journal(void)
{
	char path[256];
	size_t len;

	(void)snprintf(path, sizeof(path), "%s/journal", sdir);
	return read_whole(path, &len);
}

static unsigned
count_substr(const char *hay, const char *needle)
{
	unsigned n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay++;
	}
	return n;
}

/* The journal line holding "needle", copied out (no newline). */
static char *
journal_line(const char *j, const char *needle)
{
	const char *p, *bol, *eol;

	p = strstr(j, needle);
	ck_assert_msg(p != NULL, "journal lacks \"%s\":\n%s", needle, j);
	for (bol = p; bol > j && bol[-1] != '\n'; bol--)
		;
	eol = strchr(p, '\n');
	ck_assert_ptr_nonnull(eol);
	return xstrndup(bol, (size_t)(eol - bol));
}

static void
sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;

	ck_assert_int_eq(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL),
	    1);
	ck_assert_uint_eq(mdlen, 32);
	for (i = 0; i < mdlen; i++)
		(void)snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Puts /dev/full under the fd of tmp/ID (found through /proc). */
static void
break_msg_fd(const char *id)
{
	char link[512], target[512], suffix[64];
	struct dirent *de;
	int full, fd = -1;
	ssize_t n;
	DIR *d;

	(void)snprintf(suffix, sizeof(suffix), "/tmp/%s", id);
	ck_assert_ptr_nonnull(d = opendir("/proc/self/fd"));
	while ((de = readdir(d)) != NULL) {
		(void)snprintf(link, sizeof(link), "/proc/self/fd/%s",
		    de->d_name);
		if ((n = readlink(link, target, sizeof(target) - 1)) <= 0)
			continue;
		target[n] = '\0';
		if ((size_t)n > strlen(suffix) &&
		    strcmp(target + n - strlen(suffix), suffix) == 0 &&
		    strncmp(target, tdir, strlen(tdir)) == 0)
			fd = (int)strtol(de->d_name, NULL, 10);
	}
	ck_assert_int_eq(closedir(d), 0);
	ck_assert_msg(fd != -1, "fd of tmp/%s not found", id);
	ck_assert_int_ne(full = open("/dev/full", O_WRONLY | O_CLOEXEC), -1);
	ck_assert_int_eq(dup2(full, fd), fd);
	ck_assert_int_eq(close(full), 0);
}

static void
wait_idle(void)
{
	int i;

	for (i = 0; spool_pending(sp) > 0 || workers_busy(w) > 0; i++) {
		ck_assert_int_lt(i, 20000);
		(void)event_base_loop(base, EVLOOP_NONBLOCK);
		(void)usleep(1000);
	}
}

/* Commits a one-recipient message with the given content; returns id. */
static void
commit_simple(const char *content, struct result *r)
{
	struct spool_envelope env;
	struct spool_msg *msg;
	unsigned before = ndone;

	make_simple_env(&env, "s@example.org");
	msg = spool_msg_new(sp, &env, &t_err);
	ck_assert_msg(msg != NULL, "spool_msg_new: %s", t_err.data);
	spool_envelope_clear(&env);
	ck_assert_int_eq(spool_msg_append(msg, content, strlen(content),
	                     &t_err),
	    0);
	spool_msg_commit(msg, NULL, commit_cb, r);
	pump_until(&ndone, before + 1);
	ck_assert_msg(r->status == 0, "commit: %s", r->err);
}

/* ---- spool tests ---- */

START_TEST(test_commit_one)
{
	struct spool_envelope env, got;
	struct spool_msg *msg;
	struct result r = { 0 };
	struct sbuf err;
	char path[256], sha[65], want[65], id[SPOOL_ID_LEN + 1], *content,
	    *file, *j, *line;
	uint64_t off, size;
	size_t total = 200000, i, n, flen;

	content = xmalloc(total);
	for (i = 0; i < total; i++)
		content[i] = (char)(i % 78 == 76 ? '\r' :
		        i % 78 == 77             ? '\n' :
		                                   'A' + (int)(i % 26));
	make_env(&env);
	msg = spool_msg_new(sp, &env, &t_err);
	ck_assert_msg(msg != NULL, "spool_msg_new: %s", t_err.data);
	(void)snprintf(id, sizeof(id), "%s", spool_msg_id(msg));
	ck_assert(spool_id_valid(id));
	/* Odd chunk sizes cross the 64 KiB buffer in every way. */
	for (i = 0, n = 1; i < total; i += n, n = n * 3 % 70001 + 1) {
		if (n > total - i)
			n = total - i;
		ck_assert_int_eq(spool_msg_append(msg, content + i, n, &t_err),
		    0);
	}
	ck_assert_uint_eq(spool_msg_size(msg), total);
	/* Not in queue/ before the callback. */
	ck_assert_uint_eq(count_dir("queue"), 0);
	spool_msg_commit(msg, "<m1@example.org>", commit_cb, &r);
	ck_assert_uint_eq(spool_pending(sp), 1);
	pump_until(&ndone, 1);
	ck_assert_msg(r.status == 0, "commit failed: %s", r.err);
	ck_assert_str_eq(r.id, id);
	ck_assert_uint_eq(count_dir("queue"), 1);
	ck_assert_uint_eq(count_dir("tmp"), 0);

	(void)snprintf(path, sizeof(path), "%s/queue/%s", sdir, id);
	sbuf_init(&err, 256);
	ck_assert_msg(read_msg(sdir, id, &got, &off, &size, sha, &err) == 0,
	    "read_header: %s", err.data);
	ck_assert_uint_eq(size, total);
	ck_assert_str_eq(got.sender, env.sender);
	ck_assert_str_eq(got.envid, env.envid);
	ck_assert_int_eq(got.ret, SMTP_PROTO_RET_FULL);
	ck_assert_int_eq(got.body, SMTP_PROTO_BODY_8BITMIME);
	ck_assert(got.smtputf8);
	ck_assert_uint_eq(got.nrcpts, 3);
	for (i = 0; i < 3; i++) {
		ck_assert_str_eq(got.rcpts[i].addr, env.rcpts[i].addr);
		ck_assert_uint_eq(got.rcpts[i].notify, env.rcpts[i].notify);
	}
	ck_assert_str_eq(got.rcpts[0].orcpt, "rfc822;bob@example.com");
	ck_assert_ptr_null(got.rcpts[1].orcpt);
	ck_assert_int_eq(got.arrival.tv_sec, env.arrival.tv_sec);
	ck_assert_int_eq(got.arrival.tv_nsec / 1000,
	    env.arrival.tv_nsec / 1000);
	ck_assert_str_eq(got.listener, env.listener);
	ck_assert_str_eq(got.client_addr, env.client_addr);
	ck_assert_str_eq(got.client_name, env.client_name);
	ck_assert_str_eq(got.helo, env.helo);
	ck_assert_str_eq(got.protocol, env.protocol);
	ck_assert_str_eq(got.tls, env.tls);

	/* Content bytes are exactly what was appended; the sum matches. */
	file = read_whole(path, &flen);
	ck_assert_uint_eq(flen, off + total);
	ck_assert(memcmp(file + off, content, total) == 0);
	sha256_hex(content, total, want);
	ck_assert_str_eq(sha, want);
	ck_assert(strncmp(file, "splitmx-queue-file 1\nsize ", 26) == 0);
	/* Peer text cannot forge header lines. */
	ck_assert_ptr_nonnull(
	    strstr(file, "\nhelo evil\\x0d\\x0ahelo\\x20with\\x5cspaces\n"));
	ck_assert_ptr_nonnull(strstr(file,
	    "\nrcpt bob@example.com notify=SUCCESS,FAILURE "
	    "orcpt=rfc822;bob@example.com\n"));

	j = journal();
	line = journal_line(j, "accepted id=");
	ck_assert_msg(strstr(line, id) != NULL, "%s", line);
	ck_assert_ptr_nonnull(strstr(line, " msgid=<m1@example.org> "));
	ck_assert_ptr_nonnull(strstr(line, " from=<\"a\\x20b\"@example.org> "));
	ck_assert_ptr_nonnull(strstr(line, " size=200000 "));
	ck_assert_ptr_nonnull(strstr(line, want));
	ck_assert_ptr_nonnull(strstr(line,
	    " nrcpt=3 to=<bob@example.com>,"
	    "<postmaster>,<j\xc3\xbcrgen@b\xc3\xbc"
	    "cher.example> "));
	ck_assert_ptr_nonnull(strstr(line,
	    " client=mail.example.net[192.0.2.1] listener=127.0.0.1:2525 "));
	ck_assert_ptr_nonnull(strstr(line, " proto=ESMTPS "));
	ck_assert_ptr_nonnull(
	    strstr(line, " tls=TLSv1.3\\x20TLS_AES_256_GCM_SHA384"));
	ck_assert_uint_eq(line[27], ' '); /* timestamp first */
	ck_assert_uint_eq(line[26], 'Z');
	/* The callback may run just before the count drops. */
	wait_idle();
	ck_assert_uint_eq(spool_pending(sp), 0);

	free(line);
	free(j);
	free(file);
	free(content);
	spool_envelope_clear(&got);
	spool_envelope_clear(&env);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_commit_many)
{
	static struct result r[NMANY];
	struct spool_msg *msg[NMANY];
	struct spool_envelope env;
	struct sbuf err, content;
	char sha[65], want[65], *j;
	struct spool_envelope got;
	uint64_t off, size;
	unsigned i, k;

	memset(r, 0, sizeof(r));
	sbuf_init(&content, 1 << 20);
	sbuf_init(&err, 256);
	for (i = 0; i < NMANY; i++) {
		make_simple_env(&env, i % 2 ? "" : "x@example.org");
		msg[i] = spool_msg_new(sp, &env, &t_err);
		ck_assert_msg(msg[i] != NULL, "spool_msg_new: %s", t_err.data);
		spool_envelope_clear(&env);
		for (k = 0; k < i; k++)
			ck_assert_str_ne(spool_msg_id(msg[k]),
			    spool_msg_id(msg[i]));
		sbuf_reset(&content);
		while (content.len < 4096 + i)
			ck_assert_int_eq(sbuf_printf(&content,
			                     "message %u line\r\n", i),
			    0);
		ck_assert_int_eq(spool_msg_append(msg[i], content.data,
		                     content.len, &t_err),
		    0);
	}
	for (i = 0; i < NMANY; i++)
		spool_msg_commit(msg[i], "<many@example.org>", commit_cb,
		    &r[i]);
	pump_until(&ndone, NMANY);
	for (i = 0; i < NMANY; i++)
		ck_assert_msg(r[i].done && r[i].status == 0, "msg %u: %s", i,
		    r[i].err);
	ck_assert_uint_eq(count_dir("queue"), NMANY);
	ck_assert_uint_eq(count_dir("tmp"), 0);
	j = journal();
	ck_assert_uint_eq(count_substr(j, " accepted id="), NMANY);
	ck_assert_uint_eq(count_substr(j, "\n"), NMANY);
	ck_assert_uint_eq(count_substr(j, " from=<> "), NMANY / 2);
	free(j);

	/* Spot-check a file: the null sender reads back as "". */
	ck_assert_msg(read_msg(sdir, r[7].id, &got, &off, &size, sha, &err) ==
	        0,
	    "%s", err.data);
	ck_assert_str_eq(got.sender, "");
	sbuf_reset(&content);
	while (content.len < 4096 + 7)
		ck_assert_int_eq(sbuf_printf(&content, "message 7 line\r\n"),
		    0);
	ck_assert_uint_eq(size, content.len);
	sha256_hex(content.data, content.len, want);
	ck_assert_str_eq(sha, want);
	spool_envelope_clear(&got);
	/* The callback may run just before the count drops. */
	wait_idle();
	ck_assert_uint_eq(spool_pending(sp), 0);
	sbuf_release(&content);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_abort)
{
	struct spool_envelope env;
	struct spool_msg *msg;
	char *j;

	make_simple_env(&env, "a@example.org");
	msg = spool_msg_new(sp, &env, &t_err);
	ck_assert_ptr_nonnull(msg);
	spool_envelope_clear(&env);
	ck_assert_uint_eq(count_dir("tmp"), 1);
	ck_assert_int_eq(spool_msg_append(msg, "hello\r\n", 7, &t_err), 0);
	spool_msg_abort(msg);
	wait_idle();
	ck_assert_uint_eq(count_dir("tmp"), 0);
	ck_assert_uint_eq(count_dir("queue"), 0);
	j = journal();
	ck_assert_uint_eq(count_substr(j, "accepted"), 0);
	free(j);
}
END_TEST

START_TEST(test_write_failure)
{
	struct spool_envelope env;
	struct spool_msg *msg;
	struct result r1 = { 0 }, r2 = { 0 };
	char big[100 * 1024], *j, *line, want[128];

	memset(big, 'x', sizeof(big));
	/* Fails while appending (buffer full): sticky. */
	make_simple_env(&env, "a@example.org");
	msg = spool_msg_new(sp, &env, &t_err);
	ck_assert_ptr_nonnull(msg);
	break_msg_fd(spool_msg_id(msg));
	ck_assert_int_eq(spool_msg_append(msg, big, sizeof(big), &t_err), -1);
	ck_assert_str_eq(t_err.data, "write: No space left on device");
	sbuf_reset(&t_err);
	ck_assert_int_eq(spool_msg_append(msg, "x", 1, &t_err), -1);
	ck_assert_str_eq(t_err.data, "write: No space left on device");
	spool_msg_commit(msg, "<f@x>", commit_cb, &r1);
	pump_until(&ndone, 1);
	ck_assert_int_eq(r1.status, -1);
	ck_assert_str_eq(r1.err, "write: No space left on device");

	/* Fails in the worker's last write. */
	msg = spool_msg_new(sp, &env, &t_err);
	ck_assert_ptr_nonnull(msg);
	spool_envelope_clear(&env);
	break_msg_fd(spool_msg_id(msg));
	ck_assert_int_eq(spool_msg_append(msg, "small\r\n", 7, &t_err), 0);
	spool_msg_commit(msg, NULL, commit_cb, &r2);
	pump_until(&ndone, 2);
	ck_assert_int_eq(r2.status, -1);
	ck_assert_str_eq(r2.err, "write: No space left on device");

	ck_assert_uint_eq(count_dir("tmp"), 0);
	ck_assert_uint_eq(count_dir("queue"), 0);
	j = journal();
	ck_assert_uint_eq(count_substr(j, "accepted"), 0);
	(void)snprintf(want, sizeof(want), "discarded id=%s ", r1.id);
	line = journal_line(j, want);
	ck_assert_ptr_nonnull(strstr(line,
	    " reason=write:\\x20No\\x20space\\x20left\\x20on\\x20device"));
	free(line);
	(void)snprintf(want, sizeof(want), "discarded id=%s ", r2.id);
	free(journal_line(j, want));
	free(j);
}
END_TEST

struct found {
	unsigned n;
	char ids[8][SPOOL_ID_LEN + 1];
	uint64_t sizes[8];
};

static void
found_cb(void *arg, const char *id, const struct spool_envelope *env,
    uint64_t size)
{
	struct found *f = arg;

	ck_assert_uint_lt(f->n, 8);
	ck_assert_str_eq(env->sender, "s@example.org");
	ck_assert_str_eq(env->rcpts[0].addr, "rcpt@example.com");
	(void)snprintf(f->ids[f->n], sizeof(f->ids[0]), "%s", id);
	f->sizes[f->n++] = size;
}

START_TEST(test_recover)
{
	struct result r[3] = { { 0 } };
	struct spool_recovery st;
	struct found f = { 0 };
	struct sbuf err;
	char path[256], *file, *j;
	size_t len;
	unsigned i, k;

	commit_simple("one\r\n", &r[0]);
	commit_simple("two two\r\n", &r[1]);
	commit_simple("three three three\r\n", &r[2]);
	spool_close(sp);
	sp = NULL;

	/* Half-received files. */
	(void)snprintf(path, sizeof(path), "%s/tmp/0000000000000ABC", sdir);
	write_whole(path, "splitmx-queue-file 1\n", 21);
	(void)snprintf(path, sizeof(path), "%s/tmp/junk name", sdir);
	write_whole(path, "x", 1);
	/* An empty file (pre-created, or killed before the header). */
	(void)snprintf(path, sizeof(path), "%s/tmp/00000000000EMPTY", sdir);
	write_whole(path, "", 0);
	/* A torn queue file: content cut short. */
	(void)snprintf(path, sizeof(path), "%s/queue/%s", sdir, r[2].id);
	file = read_whole(path, &len);
	write_whole(path, file, len - 5);
	free(file);
	/* Garbage under a valid id, a stray name, an uncommitted header. */
	(void)snprintf(path, sizeof(path), "%s/queue/0000000000000XYZ", sdir);
	write_whole(path, "garbage\n\n.\n", 11);
	(void)snprintf(path, sizeof(path), "%s/queue/notanid.txt", sdir);
	write_whole(path, "x", 1);
	(void)snprintf(path, sizeof(path), "%s/queue/0000000000000UNC", sdir);
	file = NULL;
	{
		const char *unc =
		    "splitmx-queue-file 1\n"
		    "size -------------------- sha256 "
		    "------------------------------------------------"
		    "----------------\n"
		    "id 0000000000000UNC\n"
		    "arrival 2026-11-23T01:20:00.000000Z\n"
		    "sender \nrcpt a@b\n.\nbody";

		write_whole(path, unc, strlen(unc));
	}

	open_spool();
	sbuf_init(&err, 256);
	ck_assert_msg(spool_recover(sp, found_cb, &f, &st, &err) == 0, "%s",
	    err.data);
	ck_assert_uint_eq(st.queued, 2);
	ck_assert_uint_eq(st.removed_tmp, 3);
	ck_assert_uint_eq(st.quarantined, 4);
	ck_assert_uint_eq(f.n, 2);
	ck_assert(strcmp(f.ids[0], f.ids[1]) < 0); /* sorted */
	for (i = 0; i < 2; i++) {
		k = strcmp(f.ids[i], r[0].id) == 0 ? 0 : 1;
		ck_assert_str_eq(f.ids[i], r[k].id);
		ck_assert_uint_eq(f.sizes[i], k == 0 ? 5 : 9);
	}
	ck_assert_uint_eq(count_dir("tmp"), 0);
	ck_assert_uint_eq(count_dir("queue"), 2);
	ck_assert_uint_eq(count_dir("corrupt"), 4);
	(void)snprintf(path, sizeof(path), "%s/corrupt/%s", sdir, r[2].id);
	ck_assert_int_eq(access(path, F_OK), 0);

	j = journal();
	ck_assert_uint_eq(count_substr(j, " accepted id="), 3);
	free(journal_line(j,
	    " discarded id=0000000000000ABC reason=incomplete"));
	free(journal_line(j, " discarded id=junk\\x20name reason=incomplete"));
	ck_assert_uint_eq(count_substr(j, " quarantined id="), 4);
	free(journal_line(j, " quarantined id=notanid.txt reason="));

	/* New ids sort after everything recovered. */
	{
		struct result r4 = { 0 };

		commit_simple("four\r\n", &r4);
		for (i = 0; i < 2; i++)
			ck_assert(strcmp(r4.id, f.ids[i]) > 0);
	}
	free(j);
	j = journal();
	free(journal_line(j, " discarded id=00000000000EMPTY reason=empty"));
	/* Recovery would now remove files in use: refused. */
	ck_assert_int_eq(spool_recover(sp, found_cb, &f, &st, &err), -1);
	/* After a clean close, a second recovery finds a clean spool. */
	spool_close(sp);
	sp = NULL;
	ck_assert_uint_eq(count_dir("tmp"), 0);
	open_spool();
	memset(&f, 0, sizeof(f));
	ck_assert_int_eq(spool_recover(sp, found_cb, &f, &st, &err), 0);
	ck_assert_uint_eq(st.queued, 3);
	ck_assert_uint_eq(st.removed_tmp + st.quarantined, 0);
	free(j);
	sbuf_release(&err);
}
END_TEST

static const struct {
	const char *text;
	const char *err;
} bad_headers[] = {
	{ "splitmx-queue-file 2\nwhatever\n.\n", "unsupported format version" },
	{ "From someone\n.\n", "not a splitmx queue file" },
	{ "splitmx-queue-file 1\nsize ----\n.\n", "uncommitted" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000009 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender \nrcpt a@b\n.\n",
	    "torn file" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000000 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender \nrcpt a@b notify=BOGUS\n.\n",
	    "malformed header line" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000000 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender \n.\n",
	    "lacks" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000000 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender a\\x0\nrcpt a@b\n.\n",
	    "malformed header line" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000000 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender a\\x00\nrcpt a@b\n.\n",
	    "malformed header line" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000000 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender \nsender \nrcpt a@b\n.\n",
	    "malformed header line" },
	{ "splitmx-queue-file 1\n"
	  "size 00000000000000000000 sha256 "
	  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	  "id 0000000000000001\narrival 2026-11-23T01:20:00.000000Z\n"
	  "sender \nrcpt a@b\n",
	    "truncated header" },
};

START_TEST(test_read_header_bad)
{
	struct spool_envelope env;
	struct sbuf err;
	char path[256], sha[65];
	uint64_t off, size;

	(void)snprintf(path, sizeof(path), "%s/bad", tdir);
	write_whole(path, bad_headers[_i].text, strlen(bad_headers[_i].text));
	sbuf_init(&err, 256);
	ck_assert_int_eq(read_header_file(path, &env, &off, &size, sha, &err),
	    -1);
	ck_assert_msg(strstr(err.data, bad_headers[_i].err) != NULL,
	    "case %d: got \"%s\"", _i, err.data);
	ck_assert_ptr_null(env.sender);
	ck_assert_ptr_null(env.rcpts);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_read_header_good)
{
	static const char text[] =
	    "splitmx-queue-file 1\n"
	    "size 00000000000000000003 sha256 "
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	    "id 0000000000000001\narrival 2026-11-23T01:20:00.000042Z\n"
	    "future-key some\\x20value\n"
	    "sender \nrcpt a@b notify=DELAY\nrcpt c@d\n.\nabc";
	struct spool_envelope env;
	struct sbuf err;
	char path[256], sha[65];
	uint64_t off, size;

	(void)snprintf(path, sizeof(path), "%s/queue", tdir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	(void)snprintf(path, sizeof(path), "%s/queue/0000000000000001", tdir);
	write_whole(path, text, strlen(text));
	sbuf_init(&err, 256);
	ck_assert_msg(read_msg(tdir, "0000000000000001", &env, &off, &size, sha,
	                  &err) == 0,
	    "%s", err.data);
	ck_assert_uint_eq(size, 3);
	ck_assert_uint_eq(off, strlen(text) - 3);
	ck_assert_str_eq(env.sender, "");
	ck_assert_uint_eq(env.nrcpts, 2);
	ck_assert_uint_eq(env.rcpts[0].notify, SMTP_PROTO_NOTIFY_DELAY);
	ck_assert_int_eq(env.arrival.tv_sec, 1795396800);
	ck_assert_int_eq(env.arrival.tv_nsec, 42000);
	ck_assert_ptr_null(env.helo);
	spool_envelope_clear(&env);

	/* The file name must match the id when it is one. */
	(void)snprintf(path, sizeof(path), "%s/queue/0000000000000002", tdir);
	write_whole(path, text, strlen(text));
	ck_assert_int_eq(read_msg(tdir, "0000000000000002", &env, &off, &size,
	                     sha, &err),
	    -1);
	ck_assert_ptr_nonnull(strstr(err.data, "does not match"));
	sbuf_release(&err);
}
END_TEST

static const struct {
	const char *id;
	bool ok;
} ids[] = {
	{ "0123456789ABCDEF", true },
	{ "ZZZZZZZZZZZZZZZZ", true },
	{ "0123456789ABCDE", false },
	{ "0123456789ABCDEF0", false },
	{ "0123456789abcdef", false },
	{ "../../etc/passwd", false },
	{ "0123456789ABCDE/", false },
	{ "", false },
	{ "0123456789ABCD\nF", false },
};

START_TEST(test_id_valid)
{
	ck_assert_msg(spool_id_valid(ids[_i].id) == ids[_i].ok, "\"%s\"",
	    ids[_i].id);
}
END_TEST

START_TEST(test_id_null)
{
	ck_assert(!spool_id_valid(NULL));
}
END_TEST

START_TEST(test_locked)
{
	struct sbuf err;

	sbuf_init(&err, 256);
	ck_assert_ptr_null(spool_open(sdir, w, &err));
	ck_assert_ptr_nonnull(strstr(err.data, "in use"));
	sbuf_release(&err);
}
END_TEST

/* Format 1 (no checkpoint): a torn last line is ended, never joined. */
START_TEST(test_torn_journal_repaired)
{
	char path[256], *j;
	int fd;
	struct result r = { 0 };

	spool_close(sp);
	sp = NULL;
	(void)snprintf(path, sizeof(path), "%s/checkpoint", sdir);
	ck_assert_int_eq(unlink(path), 0);
	(void)snprintf(path, sizeof(path), "%s/journal", sdir);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, "2026-11-23T01:20:00.000000Z acc", 31), 31);
	ck_assert_int_eq(close(fd), 0);
	open_spool();
	commit_simple("x\r\n", &r);
	j = journal();
	ck_assert_ptr_nonnull(strstr(j, " acc\n"));
	ck_assert_uint_eq(count_substr(j, "\n"), 2);
	free(j);
}
END_TEST

/* Format 2: journal octets past the checkpoint are the log's to replay. */
START_TEST(test_journal_past_checkpoint_cut)
{
	char path[256], *j;
	int fd;
	struct result r = { 0 };

	spool_close(sp);
	sp = NULL;
	(void)snprintf(path, sizeof(path), "%s/journal", sdir);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, "2026-11-23T01:20:00.000000Z acc", 31), 31);
	ck_assert_int_eq(close(fd), 0);
	open_spool();
	commit_simple("x\r\n", &r);
	j = journal();
	ck_assert_ptr_null(strstr(j, "Z acc2"));
	ck_assert_ptr_null(strstr(j, "00.000000Z"));
	ck_assert_uint_eq(count_substr(j, "\n"), 1);
	ck_assert_ptr_nonnull(strstr(j, " accepted id="));
	free(j);
}
END_TEST

/* ---- format 2: the log ---- */

/*
 * A copy of the open spool as a machine crash could leave it: what the
 * log made durable is there, while the unsynced queue file and journal
 * lines since the checkpoint may be lost. Returns the copy's directory.
 */
static void
crash_copy(char *out, size_t outlen)
{
	char cmd[512];

	(void)snprintf(out, outlen, "%s/crashed", tdir);
	(void)snprintf(cmd, sizeof(cmd), "cp -a %s %s", sdir, out);
	ck_assert_int_eq(system(cmd), 0);
}

/* The journal offset the copy's checkpoint covers. */
static unsigned long long
ckpt_journal(const char *dir)
{
	char path[256], *text, *p;
	size_t len;
	unsigned long long v;

	(void)snprintf(path, sizeof(path), "%s/checkpoint", dir);
	text = read_whole(path, &len);
	p = strstr(text, "\njournal ");
	ck_assert_ptr_nonnull(p);
	v = strtoull(p + 9, NULL, 10);
	free(text);
	return v;
}

static void
lose_unsynced(const char *dir, const char *id)
{
	char path[256];

	(void)snprintf(path, sizeof(path), "%s/queue/%s", dir, id);
	ck_assert_int_eq(unlink(path), 0);
	(void)snprintf(path, sizeof(path), "%s/journal", dir);
	ck_assert_int_eq(truncate(path, (off_t)ckpt_journal(dir)), 0);
}

static struct spool *
open_dir(const char *dir)
{
	struct spool *s2;
	struct sbuf err;

	sbuf_init(&err, 256);
	s2 = spool_open(dir, w, &err);
	ck_assert_msg(s2 != NULL, "spool_open: %s", err.data);
	sbuf_release(&err);
	return s2;
}

START_TEST(test_log_restores_lost_file)
{
	struct result r = { 0 };
	char dir[256], path[512], *orig, *back, *j;
	size_t olen, blen;
	struct spool *s2;

	commit_simple("Subject: kept\r\n\r\nbody\r\n", &r);
	(void)snprintf(path, sizeof(path), "%s/queue/%s", sdir, r.id);
	orig = read_whole(path, &olen);
	crash_copy(dir, sizeof(dir));
	lose_unsynced(dir, r.id);
	s2 = open_dir(dir);
	(void)snprintf(path, sizeof(path), "%s/queue/%s", dir, r.id);
	back = read_whole(path, &blen);
	ck_assert_uint_eq(blen, olen);
	ck_assert_mem_eq(back, orig, olen);
	(void)snprintf(path, sizeof(path), "%s/journal", dir);
	j = read_whole(path, &blen);
	ck_assert_ptr_nonnull(strstr(j, r.id));
	ck_assert_ptr_nonnull(strstr(j, " accepted id="));
	spool_close(s2);
	free(orig);
	free(back);
	free(j);
}
END_TEST

START_TEST(test_log_rewrites_torn_file)
{
	struct result r = { 0 };
	char dir[256], path[512], *orig, *back;
	size_t olen, blen;
	struct spool *s2;

	commit_simple("Subject: torn\r\n\r\nbody body body\r\n", &r);
	(void)snprintf(path, sizeof(path), "%s/queue/%s", sdir, r.id);
	orig = read_whole(path, &olen);
	crash_copy(dir, sizeof(dir));
	(void)snprintf(path, sizeof(path), "%s/queue/%s", dir, r.id);
	ck_assert_int_eq(truncate(path, (off_t)(olen - 5)), 0);
	s2 = open_dir(dir);
	back = read_whole(path, &blen);
	ck_assert_uint_eq(blen, olen);
	ck_assert_mem_eq(back, orig, olen);
	spool_close(s2);
	free(orig);
	free(back);
}
END_TEST

/* A damaged record ends replay: nothing from it or after it is used. */
START_TEST(test_log_damaged_record_unused)
{
	struct result r = { 0 };
	char dir[256], path[1024], name[300] = "", *j;
	unsigned char b;
	size_t jlen;
	struct dirent *de;
	struct spool *s2;
	DIR *d;
	int fd;

	commit_simple("Subject: damaged\r\n\r\nbody\r\n", &r);
	crash_copy(dir, sizeof(dir));
	lose_unsynced(dir, r.id);
	/* The only segment with records: flip an octet of the image. */
	(void)snprintf(path, sizeof(path), "%s/log", dir);
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (strlen(de->d_name) == 16)
			(void)snprintf(name, sizeof(name), "%s", de->d_name);
	(void)closedir(d);
	ck_assert_str_ne(name, "");
	(void)snprintf(path, sizeof(path), "%s/log/%s", dir, name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(pread(fd, &b, 1, 24 + 16 + 3), 1);
	b ^= 0x20;
	ck_assert_int_eq(pwrite(fd, &b, 1, 24 + 16 + 3), 1);
	ck_assert_int_eq(close(fd), 0);
	s2 = open_dir(dir);
	(void)snprintf(path, sizeof(path), "%s/queue/%s", dir, r.id);
	ck_assert_int_eq(access(path, F_OK), -1);
	(void)snprintf(path, sizeof(path), "%s/journal", dir);
	j = read_whole(path, &jlen);
	ck_assert_ptr_null(strstr(j, r.id));
	spool_close(s2);
	free(j);
}
END_TEST

static void
write_ckpt(const char *dir, const char *boot, int clean)
{
	char path[256], text[512];

	(void)snprintf(path, sizeof(path), "%s/checkpoint", dir);
	(void)snprintf(text, sizeof(text),
	    "splitmx-checkpoint 2\nredo 0\njournal 0\nboot %s\nclean %d\n",
	    boot, clean);
	write_whole(path, text, strlen(text));
}

START_TEST(test_log_lost_boot)
{
	ck_assert(!spool_lost_boot(sp));
	spool_close(sp);
	sp = NULL;
	/* Another boot, not stopped cleanly: the machine went down. */
	write_ckpt(sdir, "00000000-1111-2222-3333-444444444444", 0);
	open_spool();
	ck_assert(spool_lost_boot(sp));
	spool_close(sp);
	sp = NULL;
	/* Another boot but a clean stop: nothing was left unsynced. */
	write_ckpt(sdir, "00000000-1111-2222-3333-444444444444", 1);
	open_spool();
	ck_assert(!spool_lost_boot(sp));
	spool_close(sp);
	sp = NULL;
	/* A damaged checkpoint refuses the spool with file:line. */
	{
		char path[256];
		struct sbuf err;

		(void)snprintf(path, sizeof(path), "%s/checkpoint", sdir);
		write_whole(path, "splitmx-checkpoint 2\nredo x\n", 28);
		sbuf_init(&err, 256);
		ck_assert_ptr_null(spool_open(sdir, w, &err));
		ck_assert_msg(strstr(err.data, "checkpoint:2: bad number") !=
		        NULL,
		    "%s", err.data);
		sbuf_release(&err);
		write_ckpt(sdir, "-", 1);
	}
	open_spool();
}
END_TEST

static void
count_line_cb(void *arg, const char *line, size_t len)
{
	struct sbuf *all = arg;

	ck_assert_int_eq(sbuf_append(all, line, len), 0);
	ck_assert_int_eq(sbuf_append_char(all, '\n'), 0);
}

static unsigned
count_segments(void)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(sdir);

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (spool_journal_segment_name(de->d_name))
			n++;
	(void)closedir(d);
	return n;
}

static void
done_cb(void *arg, int status)
{
	int *st = arg;

	*st = status;
	ndone++;
}

/* Journals the removal of queue/ID, as the queue does, and waits for it. */
static void
journal_removed(const char *id)
{
	char rec[128];
	unsigned before = ndone;
	int st = 1;

	(void)snprintf(rec, sizeof(rec),
	    "2026-12-03T00:00:00.000000Z removed id=%s\n", id);
	spool_journal_append(sp, rec, strlen(rec), id, done_cb, &st);
	pump_until(&ndone, before + 1);
	ck_assert_int_eq(st, 0);
}

/* Rotation: live records carried, the rest only in the closed segment. */
START_TEST(test_journal_rotation)
{
	struct result a = { 0 }, b = { 0 };
	struct spool_reader *rd;
	struct sbuf all, err;
	char *j, *p;

	commit_simple("Subject: a\r\n\r\nlive\r\n", &a);
	commit_simple("Subject: b\r\n\r\ngone\r\n", &b);
	journal_removed(b.id);
	spool_set_journal_rotation(sp, 1, 0);
	spool_close(sp); /* the clean checkpoint rotates */
	sp = NULL;
	ck_assert_uint_eq(count_segments(), 1);
	j = journal();
	ck_assert_msg(strncmp(j + 28, "carried id=0000000000000000 lines=1\n",
	                  36) == 0,
	    "journal starts: %.80s", j);
	ck_assert_ptr_nonnull(strstr(j, a.id));
	ck_assert_ptr_null(strstr(j, b.id));
	free(j);

	/* History: every record once, carried copies skipped. */
	sbuf_init(&err, 256);
	sbuf_init(&all, 1 << 20);
	rd = spool_reader_open(sdir, &err);
	ck_assert_ptr_nonnull(rd);
	ck_assert_int_eq(spool_reader_scan_history(rd, count_line_cb, &all,
	                     NULL, &err),
	    0);
	p = strstr(all.data, a.id);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(strstr(p + 1, a.id));
	ck_assert_ptr_nonnull(strstr(all.data, b.id));
	ck_assert_ptr_null(strstr(all.data, "carried"));
	spool_reader_close(rd);
	sbuf_release(&all);
	sbuf_release(&err);

	/* Reopened: the journal is kept as it is (the checkpoint names it). */
	open_spool();
	j = journal();
	ck_assert_ptr_nonnull(strstr(j, a.id));
	free(j);
}
END_TEST

/* A crash between the renames: journal.new becomes the journal. */
START_TEST(test_journal_rotation_fixup)
{
	char from[256], to[256], *j;

	spool_close(sp);
	sp = NULL;
	(void)snprintf(from, sizeof(from), "%s/journal", sdir);
	(void)snprintf(to, sizeof(to), "%s/journal.new", sdir);
	write_whole(to,
	    "2026-12-03T00:00:00.000000Z carried id=0000000000000000 "
	    "lines=0\n",
	    64);
	ck_assert_int_eq(unlink(from), 0);
	/* The checkpoint named the old, longer journal. */
	(void)snprintf(from, sizeof(from), "%s/checkpoint", sdir);
	write_whole(from,
	    "splitmx-checkpoint 2\nredo 0\njournal 4096\nboot -\nclean 1\n",
	    56);
	open_spool();
	ck_assert_int_eq(access(to, F_OK), -1);
	j = journal();
	ck_assert_ptr_nonnull(strstr(j, " carried "));
	free(j);
}
END_TEST

/* An image whose message was removed after it is not brought back. */
START_TEST(test_log_removed_not_restored)
{
	struct result a = { 0 }, b = { 0 };
	char dir[256], path[512];
	struct spool *s2;

	commit_simple("Subject: gone\r\n\r\nbody\r\n", &a);
	commit_simple("Subject: kept\r\n\r\nbody\r\n", &b);
	journal_removed(a.id);
	crash_copy(dir, sizeof(dir));
	lose_unsynced(dir, b.id);
	s2 = open_dir(dir);
	(void)snprintf(path, sizeof(path), "%s/queue/%s", dir, a.id);
	ck_assert_int_eq(access(path, F_OK), -1);
	(void)snprintf(path, sizeof(path), "%s/queue/%s", dir, b.id);
	ck_assert_int_eq(access(path, F_OK), 0);
	spool_close(s2);
}
END_TEST

START_TEST(test_close_drains)
{
	static struct result r[20];
	struct spool_envelope env;
	struct spool_msg *msg;
	unsigned i;

	memset(r, 0, sizeof(r));
	make_simple_env(&env, "a@example.org");
	for (i = 0; i < 20; i++) {
		msg = spool_msg_new(sp, &env, &t_err);
		ck_assert_ptr_nonnull(msg);
		ck_assert_int_eq(spool_msg_append(msg, "x\r\n", 3, &t_err), 0);
		spool_msg_commit(msg, NULL, commit_cb, &r[i]);
	}
	spool_envelope_clear(&env);
	/* Shutdown order: spool_close, then workers_free, loop not run. */
	spool_close(sp);
	sp = NULL;
	ck_assert_uint_eq(ndone, 0);
	workers_free(w);
	w = NULL;
	ck_assert_uint_eq(ndone, 20);
	for (i = 0; i < 20; i++)
		ck_assert_int_eq(r[i].status, 0);
	ck_assert_uint_eq(count_dir("queue"), 20);
}
END_TEST

START_TEST(test_precreate)
{
	static struct result r[100];
	struct spool_recovery st;
	struct spool_envelope env;
	struct spool_msg *msg;
	struct sbuf err;
	unsigned i;

	memset(r, 0, sizeof(r));
	spool_set_precreate(sp, 32);
	sbuf_init(&err, 256);
	ck_assert_int_eq(spool_recover(sp, NULL, NULL, &st, &err), 0);
	wait_idle();
	ck_assert_uint_eq(count_dir("tmp"), 32);
	ck_assert_uint_eq(count_tmp_used(), 0);
	make_simple_env(&env, "a@example.org");
	for (i = 0; i < 100; i++) {
		msg = spool_msg_new(sp, &env, &t_err);
		ck_assert_ptr_nonnull(msg);
		ck_assert_int_eq(spool_msg_append(msg, "x\r\n", 3, &t_err), 0);
		spool_msg_commit(msg, NULL, commit_cb, &r[i]);
	}
	spool_envelope_clear(&env);
	pump_until(&ndone, 100);
	for (i = 0; i < 100; i++)
		ck_assert_msg(r[i].status == 0, "%u: %s", i, r[i].err);
	wait_idle();
	ck_assert_uint_eq(count_dir("queue"), 100);
	ck_assert_uint_eq(count_tmp_used(), 0);
	/* A clean close leaves no unused file behind. */
	spool_close(sp);
	sp = NULL;
	ck_assert_uint_eq(count_dir("tmp"), 0);
	sbuf_release(&err);
}
END_TEST

/*
 * Where DIR/journal's removal record of ID begins: a checkpoint at or
 * past it would have synced queue/ after the removal.
 */
static unsigned long long
journal_offset_of(const char *dir, const char *id)
{
	char path[512], needle[64], *j, *p;
	size_t len;
	unsigned long long off;

	(void)snprintf(path, sizeof(path), "%s/journal", dir);
	j = read_whole(path, &len);
	(void)snprintf(needle, sizeof(needle), " removed id=%s", id);
	p = strstr(j, needle);
	ck_assert_msg(p != NULL, "no \"%s\" in the journal", needle);
	off = (unsigned long long)(p - j);
	free(j);
	return off;
}

/* The inode of DIR/SUB/NAME. */
static ino_t
inode_of(const char *dir, const char *sub, const char *name)
{
	char path[512];
	struct stat st;

	(void)snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	ck_assert_msg(stat(path, &st) == 0, "stat %s: %s", path,
	    strerror(errno));
	return st.st_ino;
}

/* The name of the tmp/ file with inode ino, into out ("" if none). */
static void
tmp_with_inode(const char *dir, ino_t ino, char *out, size_t outlen)
{
	char path[256];
	struct dirent *de;
	DIR *d;

	out[0] = '\0';
	(void)snprintf(path, sizeof(path), "%s/tmp", dir);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (de->d_ino == ino)
			(void)snprintf(out, outlen, "%s", de->d_name);
	ck_assert_int_eq(closedir(d), 0);
}

/*
 * A removed message's file goes back to the tmp pool (no inode churn):
 * the next message written into it reads back whole, the removed one's
 * longer tail cut off; a crash with it still in tmp/ is recovered as an
 * unused file, not as an incomplete message.
 */
START_TEST(test_precreate_recycles)
{
	static struct result r[8];
	struct result big = { 0 }, other = { 0 };
	struct spool_recovery st;
	struct spool_envelope env;
	char body[4096], rec[512], name[256], dir[256], sha[65], *j;
	uint64_t off, size;
	struct sbuf err;
	struct spool *s2;
	size_t len;
	ino_t ino;
	unsigned i, before;
	bool reused = false;

	memset(r, 0, sizeof(r));
	spool_set_precreate(sp, 8);
	sbuf_init(&err, 256);
	ck_assert_int_eq(spool_recover(sp, NULL, NULL, &st, &err), 0);
	wait_idle();
	memset(body, 'x', sizeof(body) - 3);
	memcpy(body + sizeof(body) - 3, "\r\n", 3);
	commit_simple(body, &big);
	ino = inode_of(sdir, "queue", big.id);
	journal_removed(big.id);
	wait_idle();
	tmp_with_inode(sdir, ino, name, sizeof(name));
	ck_assert_msg(name[0] != '\0', "queue/%s's inode not in tmp/", big.id);
	ck_assert_str_ne(name, big.id);
	ck_assert_uint_eq(count_tmp_used(), 0);

	/*
	 * Crash now: recovery drops it as unused, quietly. And were the
	 * rename into tmp/ lost while the file was being reused (another
	 * message's header under the removed name), the logged removal
	 * takes it away; it is not quarantined as corrupt.
	 */
	commit_simple("Subject: other\r\n\r\nbody\r\n", &other);
	crash_copy(dir, sizeof(dir));
	(void)snprintf(rec, sizeof(rec), "%s/queue/%s", dir, other.id);
	j = read_whole(rec, &len);
	(void)snprintf(rec, sizeof(rec), "%s/queue/%s", dir, big.id);
	write_whole(rec, j, len);
	free(j);
	ck_assert_uint_lt(ckpt_journal(dir), journal_offset_of(dir, big.id));
	s2 = open_dir(dir);
	ck_assert_int_eq(access(rec, F_OK), -1);
	ck_assert_int_eq(spool_recover(s2, NULL, NULL, &st, &err), 0);
	ck_assert_uint_eq(st.quarantined, 0);
	ck_assert_uint_eq(st.queued, 1);
	spool_close(s2);
	(void)snprintf(rec, sizeof(rec), "%s/journal", dir);
	j = read_whole(rec, &len);
	(void)snprintf(rec, sizeof(rec), "discarded id=%s reason=unused", name);
	ck_assert_msg(strstr(j, rec) != NULL, "no \"%s\" in:\n%s", rec, j);
	free(j);

	/* The pool hands it out again: 8 takes reach it. */
	make_simple_env(&env, "a@example.org");
	for (i = 0; i < 8; i++) {
		struct spool_msg *msg = spool_msg_new(sp, &env, &t_err);

		ck_assert_ptr_nonnull(msg);
		ck_assert_int_eq(spool_msg_append(msg, "short\r\n", 7, &t_err),
		    0);
		spool_msg_commit(msg, NULL, commit_cb, &r[i]);
	}
	spool_envelope_clear(&env);
	before = ndone;
	pump_until(&ndone, before + 8);
	wait_idle();
	for (i = 0; i < 8; i++) {
		ck_assert_msg(r[i].status == 0, "%u: %s", i, r[i].err);
		if (strcmp(r[i].id, name) != 0)
			continue;
		reused = true;
		ck_assert_uint_eq(inode_of(sdir, "queue", r[i].id), ino);
		ck_assert_int_eq(read_msg(sdir, r[i].id, &env, &off, &size, sha,
		                     &err),
		    0);
		spool_envelope_clear(&env);
		ck_assert_uint_eq(size, 7);
		/* Nothing of the removed message's 4 KiB is left after it. */
		(void)snprintf(rec, sizeof(rec), "%s/queue/%s", sdir, r[i].id);
		j = read_whole(rec, &len);
		ck_assert_uint_eq(len, off + size);
		ck_assert_mem_eq(j + off, "short\r\n", 7);
		free(j);
	}
	ck_assert_msg(reused, "tmp/%s was not handed out", name);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_new_rejects_empty_envelope)
{
	struct spool_envelope env;

	memset(&env, 0, sizeof(env));
	env.sender = xstrdup("");
	ck_assert_ptr_null(spool_msg_new(sp, &env, &t_err));
	ck_assert_uint_gt(t_err.len, 0);
	ck_assert_uint_eq(count_dir("tmp"), 0);
	spool_envelope_clear(&env);
}
END_TEST

/* ---- workers tests ---- */

static atomic_uint jobs_run;
static unsigned dones;
static pthread_t main_thread;

static void
job_inc(void *arg)
{
	(void)arg;
	ck_assert(!pthread_equal(pthread_self(), main_thread));
	atomic_fetch_add(&jobs_run, 1);
}

/* Runs on a worker, or on the caller of workers_free once they are gone. */
static void
job_any(void *arg)
{
	(void)arg;
	atomic_fetch_add(&jobs_run, 1);
}

static void
done_inc(void *arg)
{
	(void)arg;
	ck_assert(pthread_equal(pthread_self(), main_thread));
	dones++;
}

static void
done_chain(void *arg)
{
	struct workers *pool = arg;

	dones++;
	/* A completion may queue more work, even during workers_free. */
	workers_submit(pool, job_any, done_inc, NULL);
}

static void *
poster_main(void *arg)
{
	unsigned i;

	for (i = 0; i < 100; i++)
		workers_post(arg, done_inc, NULL);
	return NULL;
}

START_TEST(test_workers_jobs)
{
	unsigned i;

	main_thread = pthread_self();
	atomic_store(&jobs_run, 0);
	dones = 0;
	for (i = 0; i < 1000; i++)
		workers_submit(w, job_inc, i % 2 ? done_inc : NULL, NULL);
	pump_until(&dones, 500);
	while (workers_busy(w) > 0)
		(void)usleep(1000);
	ck_assert_uint_eq(atomic_load(&jobs_run), 1000);
	ck_assert_uint_eq(dones, 500);
}
END_TEST

START_TEST(test_workers_post)
{
	pthread_t t[3];
	int i;

	main_thread = pthread_self();
	dones = 0;
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, poster_main, w),
		    0);
	pump_until(&dones, 300);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	ck_assert_uint_eq(workers_busy(w), 0);
	ck_assert_uint_eq(dones, 300);
}
END_TEST

START_TEST(test_workers_free_runs_done)
{
	unsigned i;

	main_thread = pthread_self();
	atomic_store(&jobs_run, 0);
	dones = 0;
	spool_close(sp);
	sp = NULL;
	for (i = 0; i < 50; i++)
		workers_submit(w, job_inc, done_inc, NULL);
	workers_submit(w, job_inc, done_chain, w);
	workers_free(w);
	w = NULL;
	ck_assert_uint_eq(atomic_load(&jobs_run), 52);
	ck_assert_uint_eq(dones, 52);
}
END_TEST

static Suite *
spool_suite(void)
{
	Suite *s = suite_create("spool");
	TCase *tc;

	tc = tcase_create("spool");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_commit_one);
	tcase_add_test(tc, test_commit_many);
	tcase_add_test(tc, test_abort);
	tcase_add_test(tc, test_write_failure);
	tcase_add_test(tc, test_recover);
	tcase_add_loop_test(tc, test_read_header_bad, 0,
	    (int)(sizeof(bad_headers) / sizeof(bad_headers[0])));
	tcase_add_test(tc, test_read_header_good);
	tcase_add_test(tc, test_locked);
	tcase_add_test(tc, test_torn_journal_repaired);
	tcase_add_test(tc, test_journal_past_checkpoint_cut);
	tcase_add_test(tc, test_log_restores_lost_file);
	tcase_add_test(tc, test_log_rewrites_torn_file);
	tcase_add_test(tc, test_log_damaged_record_unused);
	tcase_add_test(tc, test_log_lost_boot);
	tcase_add_test(tc, test_journal_rotation);
	tcase_add_test(tc, test_journal_rotation_fixup);
	tcase_add_test(tc, test_log_removed_not_restored);
	tcase_add_test(tc, test_close_drains);
	tcase_add_test(tc, test_new_rejects_empty_envelope);
	tcase_add_test(tc, test_precreate);
	tcase_add_test(tc, test_precreate_recycles);
	suite_add_tcase(s, tc);

	tc = tcase_create("id");
	tcase_add_loop_test(tc, test_id_valid, 0,
	    (int)(sizeof(ids) / sizeof(ids[0])));
	tcase_add_test(tc, test_id_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("workers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_workers_jobs);
	tcase_add_test(tc, test_workers_post);
	tcase_add_test(tc, test_workers_free_runs_done);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	if (evthread_use_pthreads() == -1) {
		(void)fprintf(stderr, "evthread_use_pthreads failed\n");
		return 1;
	}
	sr = srunner_create(spool_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
