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
#include <unistd.h>

#include "maildir.h"
#include "sbuf.h"

#define T_JUNK	"SPOOLHDR v1 junk that is not part of the message\n"

static char t_base[] = "/tmp/check_maildir_XXXXXX";
static char t_md[256];
static char t_src[256];

static void
t_path(char *buf, size_t size, const char *a, const char *b)
{
	int n = snprintf(buf, size, "%s/%s", a, b);

	ck_assert(n > 0 && (size_t)n < size);
}

/* Writes junk, then content, to the source; returns the content offset. */
static size_t
t_write_src(const char *content, size_t len)
{
	int fd;

	fd = open(t_src, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, T_JUNK, strlen(T_JUNK)),
	    (ssize_t)strlen(T_JUNK));
	ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	/* Trailing junk that must not be copied. */
	ck_assert_int_eq(write(fd, "TRAILER\n", 8), 8);
	ck_assert_int_eq(close(fd), 0);
	return strlen(T_JUNK);
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
	t_path(t_src, sizeof(t_src), t_base, "spoolfile");
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
	size_t off, len;
	char *got;

	off = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, t_src, off, strlen(content),
	    "alice@example.org", rcpts, 2, "4F2A9C0B1D", NULL, &err), 0);
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
	sbuf_release(&err);
}
END_TEST

START_TEST(test_deliver_large_content)
{
	static const char *const rcpts[] = { "bob@example.net" };
	const char *pfx = "Return-Path: <>\r\nDelivered-To: bob@example.net\r\n";
	size_t size = 3 * 64 * 1024 + 12345, off, len, i;
	char name[256], path[512], sub[300];
	struct sbuf err;
	char *content, *got;

	content = malloc(size);
	ck_assert_ptr_nonnull(content);
	for (i = 0; i < size; i++)
		content[i] = (char)('a' + (i * 7 + i / 1000) % 26);
	off = t_write_src(content, size);
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, t_src, off, size, "", rcpts, 1,
	    "Q1", NULL, &err), 0);
	ck_assert_int_eq(t_count("new", name, sizeof(name)), 1);
	(void)snprintf(sub, sizeof(sub), "new/%s", name);
	t_path(path, sizeof(path), t_md, sub);
	got = t_slurp(path, &len);
	ck_assert_uint_eq(len, strlen(pfx) + size);
	ck_assert_int_eq(memcmp(got, pfx, strlen(pfx)), 0);
	ck_assert_int_eq(memcmp(got + strlen(pfx), content, size), 0);
	free(got);
	free(content);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_missing_source)
{
	static const char *const rcpts[] = { "bob@example.net" };
	struct sbuf err;
	char missing[512];

	t_path(missing, sizeof(missing), t_base, "no-such-file");
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, missing, 0, 10, "a@b", rcpts,
	    1, "Q1", NULL, &err), -1);
	ck_assert_uint_gt(err.len, 0);
	ck_assert_ptr_nonnull(strstr(err.data, "No such file"));
	ck_assert_int_le(t_count("new", NULL, 0), 0);
	ck_assert_int_le(t_count("tmp", NULL, 0), 0);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_short_source)
{
	static const char *const rcpts[] = { "bob@example.net" };
	const char *content = "Subject: short\r\n\r\nbody\r\n";
	struct sbuf err;
	size_t off;

	off = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	/* Claims more than the file holds, even counting the trailer. */
	ck_assert_int_eq(maildir_deliver(t_md, t_src, off,
	    strlen(content) + 1000, "a@b", rcpts, 1, "Q1", NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.data, "read spool"));
	ck_assert_int_eq(t_count("new", NULL, 0), 0);
	ck_assert_int_eq(t_count("tmp", NULL, 0), 0);
	/* An offset past the end is short too. */
	ck_assert_int_eq(maildir_deliver(t_md, t_src, 1 << 20, 1, "a@b",
	    rcpts, 1, "Q1", NULL, &err), -1);
	ck_assert_int_eq(t_count("new", NULL, 0), 0);
	ck_assert_int_eq(t_count("tmp", NULL, 0), 0);
	sbuf_release(&err);
}
END_TEST

START_TEST(test_distinct_names)
{
	static const char *const rcpts[] = { "bob@example.net" };
	const char *content = "Subject: twice\r\n\r\nbody\r\n";
	char first[256], path[512], second[256];
	struct dirent *de;
	struct sbuf err;
	size_t off;
	DIR *d;
	int n = 0;

	off = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, t_src, off, strlen(content),
	    "a@b", rcpts, 1, "SAME", NULL, &err), 0);
	ck_assert_int_eq(maildir_deliver(t_md, t_src, off, strlen(content),
	    "a@b", rcpts, 1, "SAME", NULL, &err), 0);
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
	sbuf_release(&err);
}
END_TEST

START_TEST(test_hostile_names)
{
	static const char *const rcpts[] = { "bob@example.net\r\nX-Evil: 1" };
	const char *content = "Subject: s\r\n\r\nb\r\n";
	char name[256], path[512], sub[300];
	struct sbuf err;
	size_t off, len;
	char *got;

	off = t_write_src(content, strlen(content));
	sbuf_init(&err, 256);
	ck_assert_int_eq(maildir_deliver(t_md, t_src, off, strlen(content),
	    "a@b", rcpts, 1, "../x:2,S", NULL, &err), 0);
	ck_assert_int_eq(t_count("new", name, sizeof(name)), 1);
	ck_assert_ptr_null(strchr(name, ':'));
	ck_assert_ptr_null(strchr(name, '/'));
	(void)snprintf(sub, sizeof(sub), "new/%s", name);
	t_path(path, sizeof(path), t_md, sub);
	got = t_slurp(path, &len);
	ck_assert_ptr_null(strstr(got, "\r\nX-Evil"));
	free(got);
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
