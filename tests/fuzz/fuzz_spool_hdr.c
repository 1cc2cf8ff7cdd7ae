/*
 * fuzz_spool_hdr.c - the message-file loader's grammar: spool_hdr_end
 * finds the header in a file's first octets, spool_hdr_parse reads it.
 *
 * Oracle: spool_hdr_end's length ends with "\n.\n" and no earlier
 * "\n.\n" exists; a parse that fails leaves env cleared; a parse that
 * succeeds round-trips: spool_hdr_format (with the size/sha256 line
 * patched in as at commit) writes a header that parses to the same
 * envelope, id, size and digest (the prepend line is patched at commit
 * and not compared).
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "sbuf.h"
#include "spool_codec.h"

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
env_compare(const struct spool_envelope *a, const struct spool_envelope *b)
{
	size_t i;

	FUZZ_ASSERT(str_eq(a->sender, b->sender));
	FUZZ_ASSERT(str_eq(a->envid, b->envid));
	FUZZ_ASSERT(a->ret == b->ret);
	FUZZ_ASSERT(a->body == b->body);
	FUZZ_ASSERT(a->smtputf8 == b->smtputf8);
	FUZZ_ASSERT(a->arrival.tv_sec == b->arrival.tv_sec);
	FUZZ_ASSERT(a->arrival.tv_nsec == b->arrival.tv_nsec);
	FUZZ_ASSERT(str_eq(a->listener, b->listener));
	FUZZ_ASSERT(str_eq(a->client_addr, b->client_addr));
	FUZZ_ASSERT(str_eq(a->client_name, b->client_name));
	FUZZ_ASSERT(str_eq(a->helo, b->helo));
	FUZZ_ASSERT(str_eq(a->protocol, b->protocol));
	FUZZ_ASSERT(str_eq(a->tls, b->tls));
	FUZZ_ASSERT(a->nrcpts == b->nrcpts);
	for (i = 0; i < a->nrcpts; i++) {
		FUZZ_ASSERT(str_eq(a->rcpts[i].addr, b->rcpts[i].addr));
		FUZZ_ASSERT(a->rcpts[i].notify == b->rcpts[i].notify);
		FUZZ_ASSERT(str_eq(a->rcpts[i].orcpt, b->rcpts[i].orcpt));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct spool_envelope env, env2;
	char id[SPOOL_ID_LEN + 1], id2[SPOOL_ID_LEN + 1];
	char sha[SPOOL_SHA256_HEX + 1], sha2[SPOOL_SHA256_HEX + 1];
	char sum[SPOOL_SUM_LEN + 1];
	uint64_t fsize, fsize2;
	struct sbuf err, sb;
	size_t hlen;
	int rc;

	if (spool_hdr_end(buf, size, &hlen) == 0) {
		FUZZ_ASSERT(memmem(buf, size, "\n.\n", 3) == NULL);
		return 0;
	}
	FUZZ_ASSERT(hlen >= 3 && hlen <= size);
	FUZZ_ASSERT(memcmp(buf + hlen - 3, "\n.\n", 3) == 0);
	FUZZ_ASSERT(memmem(buf, hlen - 1, "\n.\n", 3) == NULL);

	sbuf_init(&err, 256);
	rc = spool_hdr_parse(buf, hlen, &env, id, &fsize, sha, &err);
	if (rc == -1) {
		FUZZ_ASSERT(err.len > 0);
		FUZZ_ASSERT(env.nrcpts == 0 && env.rcpts == NULL);
		FUZZ_ASSERT(env.sender == NULL);
		sbuf_release(&err);
		return 0;
	}
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(spool_id_valid(id));
	FUZZ_ASSERT(env.sender != NULL && env.nrcpts > 0);

	sbuf_init(&sb, SPOOL_HEADER_MAX);
	FUZZ_ASSERT(spool_hdr_format(&sb, id, &env) == 0);
	spool_hdr_format_sum(sum, fsize, sha);
	FUZZ_ASSERT(sb.len > SPOOL_LINE1_LEN + SPOOL_SUM_LEN);
	memcpy(sb.data + SPOOL_LINE1_LEN, sum, SPOOL_SUM_LEN);
	rc = spool_hdr_parse(sb.data, sb.len, &env2, id2, &fsize2, sha2, &err);
	if (rc != 0)
		fprintf(stderr, "reparse: %s\n", err.data);
	FUZZ_ASSERT(rc == 0);
	FUZZ_ASSERT(strcmp(id, id2) == 0);
	FUZZ_ASSERT(fsize == fsize2);
	FUZZ_ASSERT(strcmp(sha, sha2) == 0);
	env_compare(&env, &env2);

	spool_envelope_clear(&env);
	spool_envelope_clear(&env2);
	sbuf_release(&sb);
	sbuf_release(&err);
	return 0;
}
