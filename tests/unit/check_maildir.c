/*
 * check_maildir.c - maildir delivery from a spool-like file in a temp dir:
 * prefix lines and exact content, tmp/ left empty, failures leave nothing
 * in new/, names are unique.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "maildir.h"
#include "spool_codec.h"
#include "spool_read.h"
#include "sbuf.h"

#define T_ID "0000000000000001"

static char t_base[] = "/tmp/check_maildir_XXXXXX";
static char t_md[256];
static char t_src[256];
static char t_spool[256];
static size_t t_hdrlen;

static void
t_path(char *buf, size_t size, const char *a, const char *b)
{
	int n = snprintf(buf, size, "%s/%s", a, b);

	ck_assert(n > 0 && (size_t)n < size);
}

/*
 * Writes content as the committed spool message queue/ID (a real header,
 * spool_codec.h) and opens it through the read side, as the queue does;
 * then appends junk that must never be copied.
 */
static struct spool_content *
t_write_src(const char *content, size_t len)
{
	char addr[] = "bob@example.net", sender[] = "a@b";
	struct spool_envelope env;
	struct spool_rcpt rcpt = { addr, 0, NULL };
	struct spool_reader *rd;
	struct spool_content *c;
	char sum[SPOOL_SUM_LEN + 1], hex[65];
	unsigned char md[32];
	struct sbuf hdr, err;
	unsigned i;
	int fd;

	memset(&env, 0, sizeof(env));
	env.sender = sender;
	env.rcpts = &rcpt;
	env.nrcpts = 1;
	ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &env.arrival), 0);
	sbuf_init(&hdr, SPOOL_HEADER_MAX);
	ck_assert_int_eq(spool_hdr_format(&hdr, T_ID, &env), 0);
	ck_assert_ptr_nonnull(SHA256((const unsigned char *)content, len, md));
	for (i = 0; i < 32; i++)
		(void)snprintf(hex + 2 * i, 3, "%02x", md[i]);
	spool_hdr_format_sum(sum, len, hex);
	memcpy(hdr.data + SPOOL_LINE1_LEN, sum, SPOOL_SUM_LEN);
	fd = open(t_src, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, hdr.data, hdr.len), (ssize_t)hdr.len);
	ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	sbuf_init(&err, 256);
	rd = spool_reader_open(t_spool, &err);
	ck_assert_msg(rd != NULL, "%s", err.data);
	c = spool_content_open(rd, T_ID, NULL, &err);
	ck_assert_msg(c != NULL, "%s", err.data);
	spool_reader_close(rd);
	/* Trailing junk (after the open checked the size): never copied. */
	ck_assert_int_eq(write(fd, "TRAILER\n", 8), 8);
	ck_assert_int_eq(close(fd), 0);
	t_hdrlen = hdr.len;
	sbuf_release(&hdr);
	sbuf_release(&err);
	return c;
}

/* Number of entries in md/sub; the last name goes to name_out. */
static int
t_count(const char *sub, char *name_out, size_t size)
{
	char path[512];
	struct dirent *de;
	DIR *d;
	int n = 0;

	t_path(path, sizeof(path), t_md, sub);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (name_out != NULL)
			(void)snprintf(name_out, size, "%s", de->d_name);
		n++;
	}
	ck_assert_int_eq(closedir(d), 0);
	return n;
}

static char *
t_slurp(const char *path, size_t *len_out)
{
	struct stat st;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	buf = malloc((size_t)st.st_size + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(read(fd, buf, (size_t)st.st_size),
	    (ssize_t)st.st_size);
	buf[st.st_size] = '\0';
	ck_assert_int_eq(close(fd), 0);
	*len_out = (size_t)st.st_size;
	return buf;
}

static void
t_rm_dir(const char *path)
{
	char p[512];
	struct dirent *de;
	DIR *d = opendir(path);

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		t_path(p, sizeof(p), path, de->d_name);
		if (unlink(p) == -1)
			t_rm_dir(p);
	}
	(void)closedir(d);
	(void)rmdir(path);
}

static void
setup(void)
{
	memcpy(t_base, "/tmp/check_maildir_XXXXXX", sizeof(t_base));
	ck_assert_ptr_nonnull(mkdtemp(t_base));
	t_path(t_md, sizeof(t_md), t_base, "Maildir");
	t_path(t_spool, sizeof(t_spool), t_base, "spool");
	ck_assert_int_eq(mkdir(t_spool, 0700), 0);
	t_path(t_src, sizeof(t_src), t_spool, "queue");
	ck_assert_int_eq(mkdir(t_src, 0700), 0);
	t_path(t_src, sizeof(t_src), t_spool, "queue/" T_ID);
}

static void
teardown(void)
{
	t_rm_dir(t_base);
}

START_TEST(test_deliver_prefix_and_content)
{
	static const char *const rcpts[] = { "bob@example.net",
		"carol@example.net" };
	const char *content = "From: a@example.org\r\nSubject: x\r\n\r\n"
	                      "body\r\n";
	const char *pfx = "Return-Path: <alice@example.org>\r\n"
	                  "Delivered-To: bob@example.net\r\n"
	                  "Delivered-To: carol@example.net\r\n";
	struct sbuf err;
	char name[256], path[512], sub[300];
	struct spool_content *src;
	size_t len;
	char *got;

	src = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, src, "alice@example.org", rcpts,
	                     2, "4F2A9C0B1D", NULL, &err),
	    0);
	ck_assert_int_eq(t_count("new", name, sizeof(name)), 1);
	ck_assert_int_eq(t_count("tmp", NULL, 0), 0);
	ck_assert_int_eq(t_count("cur", NULL, 0), 0);
	ck_assert_ptr_nonnull(strstr(name, "Q4F2A9C0B1DR"));
	ck_assert_ptr_null(strchr(name, '/'));
	ck_assert_ptr_null(strchr(name, ':'));

	(void)snprintf(sub, sizeof(sub), "new/%s", name);
	t_path(path, sizeof(path), t_md, sub);
	got = t_slurp(path, &len);
	ck_assert_uint_eq(len, strlen(pfx) + strlen(content));
	ck_assert_int_eq(memcmp(got, pfx, strlen(pfx)), 0);
	ck_assert_int_eq(memcmp(got + strlen(pfx), content, strlen(content)),
	    0);
	free(got);
	spool_content_close(src);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_deliver_large_content)
{
	static const char *const rcpts[] = { "bob@example.net" };
	const char *pfx = "Return-Path: <>\r\nDelivered-To: bob@example.net\r\n";
	size_t size = 3 * 64 * 1024 + 12345, len, i;
	struct spool_content *src;
	char name[256], path[512], sub[300];
	struct sbuf err;
	char *content, *got;

	content = malloc(size);
	ck_assert_ptr_nonnull(content);
	for (i = 0; i < size; i++)
		content[i] = (char)('a' + (i * 7 + i / 1000) % 26);
	src = t_write_src(content, size);
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, src, "", rcpts, 1, "Q1", NULL,
	                     &err),
	    0);
	ck_assert_int_eq(t_count("new", name, sizeof(name)), 1);
	(void)snprintf(sub, sizeof(sub), "new/%s", name);
	t_path(path, sizeof(path), t_md, sub);
	got = t_slurp(path, &len);
	ck_assert_uint_eq(len, strlen(pfx) + size);
	ck_assert_int_eq(memcmp(got, pfx, strlen(pfx)), 0);
	ck_assert_int_eq(memcmp(got + strlen(pfx), content, size), 0);
	free(got);
	free(content);
	spool_content_close(src);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_missing_source)
{
	struct spool_reader *rd;
	struct sbuf err;

	/* A message that is gone never reaches maildir_deliver. */
	sbuf_init(&err, 256);
	rd = spool_reader_open(t_spool, &err);
	ck_assert_ptr_nonnull(rd);
	ck_assert_ptr_null(
	    spool_content_open(rd, "0000000000000009", NULL, &err));
	ck_assert_uint_gt(err.len, 0);
	ck_assert_ptr_nonnull(strstr(err.data, "No such file"));
	spool_reader_close(rd);
	ck_assert_int_le(t_count("new", NULL, 0), 0);
	ck_assert_int_le(t_count("tmp", NULL, 0), 0);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_short_source)
{
	static const char *const rcpts[] = { "bob@example.net" };
	const char *content = "Subject: short\r\n\r\nbody\r\n";
	struct spool_content *src;
	struct sbuf err;

	/* Cut short after it was opened: the copy fails, nothing is left. */
	src = t_write_src(content, strlen(content));
	ck_assert_int_eq(truncate(t_src, (off_t)(t_hdrlen + 3)), 0);
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, src, "a@b", rcpts, 1, "Q1", NULL,
	                     &err),
	    -1);
	ck_assert_ptr_nonnull(strstr(err.data, "read spool"));
	ck_assert_int_eq(t_count("new", NULL, 0), 0);
	ck_assert_int_eq(t_count("tmp", NULL, 0), 0);
	/* Nothing left of the content at all is short too. */
	ck_assert_int_eq(truncate(t_src, 0), 0);
	ck_assert_int_eq(maildir_deliver(t_md, src, "a@b", rcpts, 1, "Q1", NULL,
	                     &err),
	    -1);
	ck_assert_int_eq(t_count("new", NULL, 0), 0);
	ck_assert_int_eq(t_count("tmp", NULL, 0), 0);
	spool_content_close(src);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_distinct_names)
{
	static const char *const rcpts[] = { "bob@example.net" };
	const char *content = "Subject: twice\r\n\r\nbody\r\n";
	char first[256], path[512], second[256];
	struct spool_content *src;
	struct dirent *de;
	struct sbuf err;
	DIR *d;
	int n = 0;

	src = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, src, "a@b", rcpts, 1, "SAME",
	                     NULL, &err),
	    0);
	ck_assert_int_eq(maildir_deliver(t_md, src, "a@b", rcpts, 1, "SAME",
	                     NULL, &err),
	    0);
	ck_assert_int_eq(t_count("new", NULL, 0), 2);
	t_path(path, sizeof(path), t_md, "new");
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	first[0] = second[0] = '\0';
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		(void)snprintf(n++ == 0 ? first : second, sizeof(first), "%s",
		    de->d_name);
	}
	ck_assert_int_eq(closedir(d), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_str_ne(first, second);
	spool_content_close(src);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_hostile_names)
{
	static const char *const rcpts[] = { "bob@example.net\r\nX-Evil: 1" };
	const char *content = "Subject: s\r\n\r\nb\r\n";
	char name[256], path[512], sub[300];
	struct sbuf err;
	struct spool_content *src;
	size_t len;
	char *got;

	src = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, src, "a@b", rcpts, 1, "../x:2,S",
	                     NULL, &err),
	    0);
	ck_assert_int_eq(t_count("new", name, sizeof(name)), 1);
	ck_assert_ptr_null(strchr(name, ':'));
	ck_assert_ptr_null(strchr(name, '/'));
	(void)snprintf(sub, sizeof(sub), "new/%s", name);
	t_path(path, sizeof(path), t_md, sub);
	got = t_slurp(path, &len);
	ck_assert_ptr_null(strstr(got, "\r\nX-Evil"));
	free(got);
	spool_content_close(src);
	sbuf_release(&err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("maildir");
	TCase *tc = tcase_create("deliver");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_deliver_prefix_and_content);
	tcase_add_test(tc, test_deliver_large_content);
	tcase_add_test(tc, test_missing_source);
	tcase_add_test(tc, test_short_source);
	tcase_add_test(tc, test_distinct_names);
	tcase_add_test(tc, test_hostile_names);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
