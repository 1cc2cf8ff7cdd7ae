/*
 * fuzz_data.c - the DATA/BDAT content decoder (smtp_proto_data_*).
 *
 * Input: a flags byte (bit 0: RAW mode, bit 1: normalize), a seed byte
 * for the chunk split and the output room, then the stream.
 *
 * Oracle, for any split of the stream into chunks and any output room:
 * - the output, the octets consumed and the flags (bare CR/LF, NUL,
 *   longest line, done) equal those of one call with all of it;
 * - DOT mode ends exactly after the first CR LF "." CR LF (a "." CR LF
 *   at the very start counts, the 354 being the CRLF before it) and
 *   nowhere else; RAW mode never ends;
 * - with normalize, the output has no bare CR or LF;
 * - out_total is the output length.
 * A mismatch aborts.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_proto.h"

struct result {
	char *out;
	size_t outlen;
	size_t consumed;
	struct smtp_proto_data d;
};

/* xorshift32: a split that depends only on the seed. */
static uint32_t
next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
decode(const char *in, size_t len, enum smtp_proto_data_mode mode,
    bool normalize, uint32_t seed, struct result *r)
{
	size_t cap = len * SMTP_PROTO_DATA_EXPANSION + 16;
	size_t off = 0, chunk, room, used, got;
	int done = 0;

	r->out = malloc(cap);
	FUZZ_ASSERT(r->out != NULL);
	r->outlen = 0;
	smtp_proto_data_init(&r->d, mode, normalize);
	while (off < len && !done) {
		chunk = len - off;
		if (seed != 0)
			chunk = 1 +
			    next_rand(&seed) % (chunk < 64 ? chunk : 64);
		/* Feed the chunk, with little room sometimes. */
		while (chunk > 0) {
			room = cap - r->outlen;
			if (seed != 0 && next_rand(&seed) % 4 == 0)
				room = SMTP_PROTO_DATA_EXPANSION +
				    next_rand(&seed) % 8;
			if (room > cap - r->outlen)
				room = cap - r->outlen;
			used = r->outlen;
			done = smtp_proto_data_feed(&r->d, in + off, chunk,
			    r->out, r->outlen + room, &used, &got);
			FUZZ_ASSERT(used >= r->outlen);
			FUZZ_ASSERT(used <= r->outlen + room);
			FUZZ_ASSERT(got <= chunk);
			/* Room for 4 octets means progress. */
			FUZZ_ASSERT(done || got > 0);
			r->outlen = used;
			off += got;
			chunk -= got;
			if (done)
				break;
		}
	}
	r->consumed = off;
	if (mode == SMTP_PROTO_DATA_RAW)
		smtp_proto_data_finish(&r->d, r->out, cap, &r->outlen);
}

/* Where DOT mode must end: just past the first terminator, or 0. */
static size_t
expected_end(const char *in, size_t len)
{
	size_t i;

	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
		return 3;
	for (i = 0; i + 5 <= len; i++)
		if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
			return i + 5;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum smtp_proto_data_mode mode;
	struct result one, split;
	const char *in;
	bool normalize;
	uint32_t seed;
	size_t len, end, i;

	if (size < 2)
		return 0;
	mode = data[0] & 1 ? SMTP_PROTO_DATA_RAW : SMTP_PROTO_DATA_DOT;
	normalize = (data[0] & 2) != 0;
	seed = 0x9e3779b9U ^ data[1];
	in = (const char *)data + 2;
	len = size - 2;

	decode(in, len, mode, normalize, 0, &one);
	decode(in, len, mode, normalize, seed, &split);

	FUZZ_ASSERT(one.outlen == split.outlen);
	FUZZ_ASSERT(memcmp(one.out, split.out, one.outlen) == 0);
	FUZZ_ASSERT(one.consumed == split.consumed);
	FUZZ_ASSERT(one.d.done == split.d.done);
	FUZZ_ASSERT(one.d.bare_cr == split.d.bare_cr);
	FUZZ_ASSERT(one.d.bare_lf == split.d.bare_lf);
	FUZZ_ASSERT(one.d.nul == split.d.nul);
	FUZZ_ASSERT(one.d.max_line == split.d.max_line);
	FUZZ_ASSERT(one.d.out_total == one.outlen);
	FUZZ_ASSERT(split.d.out_total == split.outlen);

	if (mode == SMTP_PROTO_DATA_RAW) {
		FUZZ_ASSERT(!one.d.done);
		FUZZ_ASSERT(one.consumed == len);
	} else {
		end = expected_end(in, len);
		FUZZ_ASSERT(one.d.done == (end != 0));
		FUZZ_ASSERT(one.consumed == (end != 0 ? end : len));
	}
	if (normalize) {
		for (i = 0; i < one.outlen; i++) {
			if (one.out[i] == '\r')
				FUZZ_ASSERT(i + 1 < one.outlen &&
				    one.out[i + 1] == '\n');
			if (one.out[i] == '\n')
				FUZZ_ASSERT(i > 0 && one.out[i - 1] == '\r');
		}
	}
	if (memchr(in, '\0', one.consumed) == NULL)
		FUZZ_ASSERT(!one.d.nul);
	free(one.out);
	free(split.out);
	return 0;
}
