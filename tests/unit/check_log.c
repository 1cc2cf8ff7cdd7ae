/*
 * check_log.c - the rate-limited log lines: a burst gets through, the rest
 * is counted, and the count comes out (log_limit_flush) exactly once.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs fn with stderr in a temp file; returns what was written. */
static char *
capture(void (*fn)(void))
{
	static char out[8192];
	char path[] = "/tmp/check_log.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	FILE *f;
	size_t n;

	ck_assert_int_ne(fd, -1);
	ck_assert_int_ne(saved, -1);
	(void)fflush(stderr);
	ck_assert_int_ne(dup2(fd, 2), -1);
	fn();
	(void)fflush(stderr);
	ck_assert_int_ne(dup2(saved, 2), -1);
	(void)close(saved);
	f = fdopen(fd, "r");
	ck_assert_ptr_nonnull(f);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	(void)fclose(f);
	(void)unlink(path);
	return out;
}

static unsigned
count(const char *hay, const char *needle)
{
	unsigned n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

static struct log_limit lim = LOG_LIMIT_INIT(3600, 3, "flood");

static void
burst(void)
{
	int i;

	log_init("check_log", true, 0);
	for (i = 0; i < 10; i++)
		log_warnx_limited(&lim, "same line %d", i);
	log_limit_flush(&lim);
	log_limit_flush(&lim); /* nothing left: no line */
}

START_TEST(test_burst_then_count)
{
	const char *out = capture(burst);

	ck_assert_uint_eq(count(out, "same line"), 3);
	ck_assert_ptr_nonnull(strstr(out, "same line 2"));
	ck_assert_ptr_null(strstr(out, "same line 3"));
	ck_assert_uint_eq(count(out, "flood: 7 similar lines suppressed"), 1);
	ck_assert_uint_eq(count(out, "\n"), 4);
}
END_TEST

static struct log_limit lim_errno = LOG_LIMIT_INIT(3600, 1, "errno");

static void
with_errno(void)
{
	log_init("check_log", true, 0);
	errno = EMFILE;
	log_warn_limited(&lim_errno, "accept");
	log_warn_limited(&lim_errno, "accept");
}

START_TEST(test_errno_appended)
{
	const char *out = capture(with_errno);

	ck_assert_ptr_nonnull(strstr(out,
	    "warning: accept: Too many open "
	    "files\n"));
	ck_assert_uint_eq(count(out, "\n"), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_burst_then_count);
	tcase_add_test(tc, test_errno_appended);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
