/*
 * fuzz_srs.c - SRS reversal (auth_srs_reverse) on any address, and the
 * forward -> reverse round trip for every sender auth_srs_forward
 * rewrites. Fixed secrets (one signing, one verify-only).
 *
 * Input: a byte choosing the separator and allow_long_local, a byte
 * choosing the day (so the two-digit timestamp wraps), then the address
 * (up to the first NUL).
 *
 * Oracle: reverse returns -1, 0 or 1, out is "" unless 0, 1 only for
 * what auth_srs_is_srs does not call SRS; a rewritten sender is an SRS
 * address at the SRS domain within 254 octets, reverses (same day, and
 * max_age_days later) to the sender itself (a well-formed SRS1 sender:
 * to an SRS0 address at its first hop) and, when it is SRS0, is refused
 * as expired a day after max_age_days.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "auth_srs.h"
#include "fuzz.h"
#include "sbuf.h"

#define FUZZ_SRS_DOMAIN "srs.example.net"
#define FUZZ_SRS_NOW    1790000000 /* 2026-09-21 */
#define FUZZ_SRS_AGE    21

static struct auth_srs *fuzz_srs[6];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char seps[3] = { '=', '+', '-' };
	struct auth_srs_params p;
	struct sbuf err;
	size_t i;

	(void)argc;
	(void)argv;
	sbuf_init(&err, 256);
	for (i = 0; i < 6; i++) {
		memset(&p, 0, sizeof(p));
		p.secret = "fuzz secret";
		p.secret_len = strlen("fuzz secret");
		p.domain = FUZZ_SRS_DOMAIN;
		p.max_age_days = FUZZ_SRS_AGE;
		p.separator = seps[i % 3];
		p.allow_long_local = i >= 3;
		fuzz_srs[i] = auth_srs_new(&p, &err);
		FUZZ_ASSERT(fuzz_srs[i] != NULL);
		FUZZ_ASSERT(auth_srs_add_secret(fuzz_srs[i], "old secret", 10,
		                &err) == 0);
	}
	sbuf_release(&err);
	return 0;
}

static bool
ends_with_domain(const char *s)
{
	size_t n = strlen(s), d = strlen("@" FUZZ_SRS_DOMAIN);

	return n > d && strcmp(s + n - d, "@" FUZZ_SRS_DOMAIN) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char addr[1024], out[AUTH_SRS_ADDR_BUFSIZE],
	    back[AUTH_SRS_ADDR_BUFSIZE];
	const struct auth_srs *srs;
	struct sbuf err;
	time_t now;
	size_t n;
	int rc;

	if (size < 2)
		return 0;
	srs = fuzz_srs[data[0] % 6];
	now = (time_t)FUZZ_SRS_NOW + (time_t)data[1] * 5 * 86400;
	n = size - 2 < sizeof(addr) - 1 ? size - 2 : sizeof(addr) - 1;
	memcpy(addr, data + 2, n);
	addr[n] = '\0';

	sbuf_init(&err, 256);
	rc = auth_srs_reverse(srs, addr, now, out, sizeof(out), &err);
	FUZZ_ASSERT(rc == -1 || rc == 0 || rc == 1);
	if (rc != 0)
		FUZZ_ASSERT(out[0] == '\0' && err.len > 0);
	else
		FUZZ_ASSERT(out[0] != '\0' && err.len == 0);
	if (rc == 1)
		FUZZ_ASSERT(!auth_srs_is_srs(addr));

	rc = auth_srs_forward(srs, addr, now, out, sizeof(out), &err);
	FUZZ_ASSERT(rc == -1 || rc == 0 || rc == 1);
	if (rc != 0) {
		FUZZ_ASSERT(out[0] == '\0');
		FUZZ_ASSERT(rc == 1 || err.len > 0);
		sbuf_release(&err);
		return 0;
	}
	FUZZ_ASSERT(err.len == 0);
	FUZZ_ASSERT(strlen(out) <= AUTH_SRS_PATH_MAX - 2);
	FUZZ_ASSERT(auth_srs_is_srs(out));
	FUZZ_ASSERT(ends_with_domain(out));

	rc = auth_srs_reverse(srs, out, now, back, sizeof(back), &err);
	if (rc != 0)
		fprintf(stderr, "reverse(%s): %d %s\n", out, rc, err.data);
	FUZZ_ASSERT(rc == 0);
	/*
	 * A well-formed SRS1 sender comes back as the SRS0 address at its
	 * first hop; everything else (a malformed SRS sender is rewritten
	 * like any other) comes back as it was.
	 */
	FUZZ_ASSERT(strcmp(back, addr) == 0 ||
	    /* the tag of an SRS0 sender comes back upper-cased */
	    (strncasecmp(addr, "SRS0", 4) == 0 &&
	        strncmp(back, "SRS0", 4) == 0 &&
	        strcmp(back + 4, addr + 4) == 0) ||
	    (strncasecmp(addr, "SRS1", 4) == 0 &&
	        strncasecmp(out, "SRS1", 4) == 0 &&
	        strncasecmp(back, "SRS0", 4) == 0));
	rc = auth_srs_reverse(srs, out, now + FUZZ_SRS_AGE * 86400, back,
	    sizeof(back), &err);
	FUZZ_ASSERT(rc == 0);
	/* Only SRS0 carries our timestamp. */
	if (strncasecmp(out, "SRS0", 4) == 0) {
		rc = auth_srs_reverse(srs, out,
		    now + (FUZZ_SRS_AGE + 1) * 86400, back, sizeof(back), &err);
		FUZZ_ASSERT(rc == -1);
	}
	sbuf_release(&err);
	return 0;
}
