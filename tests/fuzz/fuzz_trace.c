/*
 * fuzz_trace.c - the trace values the header scanner keeps
 * (X-Splitmx-Trace, loops by trace) and their parser,
 * smtp_proto_parse_trace.
 *
 * Input: a seed byte for the chunk split, then the content.
 * Oracle: the kept values are the same for any split; at most
 * SMTP_PROTO_TRACE_KEEP are kept, each NUL-terminated at trace_len,
 * within SMTP_PROTO_TRACE_VALUE_MAX, trimmed, without control octets;
 * a value the parser accepts has a node of domain/address-literal
 * characters and an id of 1 to 32 upper-case letters and digits; the
 * parser never reads past len (it is also fed the raw input).
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_proto.h"

static void
check_parsed(const char *v, size_t len)
{
	struct smtp_proto_trace t;
	size_t i;

	if (smtp_proto_parse_trace(v, len, &t) == -1)
		return;
	FUZZ_ASSERT(
	    t.node[0] != '\0' && strlen(t.node) <= SMTP_PROTO_DOMAIN_MAX);
	FUZZ_ASSERT(t.id[0] != '\0' && strlen(t.id) < sizeof(t.id));
	for (i = 0; t.id[i] != '\0'; i++)
		FUZZ_ASSERT((t.id[i] >= 'A' && t.id[i] <= 'Z') ||
		    (t.id[i] >= '0' && t.id[i] <= '9'));
	for (i = 0; t.node[i] != '\0'; i++)
		FUZZ_ASSERT(t.node[i] > ' ' && t.node[i] != ';' &&
		    t.node[i] != '=' && (unsigned char)t.node[i] < 0x7f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_proto_hdrscan *one, *split;
	const char *in;
	uint32_t seed;
	size_t i, n, len, off, chunk;

	if (size < 1)
		return 0;
	seed = 0x9e3779b9U ^ data[0];
	in = (const char *)data + 1;
	len = size - 1;
	check_parsed(in, len);

	one = malloc(sizeof(*one));
	split = malloc(sizeof(*split));
	FUZZ_ASSERT(one != NULL && split != NULL);
	smtp_proto_hdrscan_init(one);
	smtp_proto_hdrscan_feed(one, in, len);
	smtp_proto_hdrscan_init(split);
	for (off = 0; off < len; off += chunk) {
		chunk = fuzz_chunk(&seed, 24, len - off);
		smtp_proto_hdrscan_feed(split, in + off, chunk);
	}
	FUZZ_ASSERT(one->traces == split->traces);
	n = one->traces < SMTP_PROTO_TRACE_KEEP ? one->traces :
	                                          SMTP_PROTO_TRACE_KEEP;
	for (i = 0; i < n; i++) {
		const char *v = one->trace[i];
		size_t vl = one->trace_len[i], k;

		FUZZ_ASSERT(vl <= SMTP_PROTO_TRACE_VALUE_MAX);
		FUZZ_ASSERT(v[vl] == '\0' && strlen(v) == vl);
		FUZZ_ASSERT(split->trace_len[i] == vl);
		FUZZ_ASSERT(memcmp(v, split->trace[i], vl + 1) == 0);
		if (vl > 0)
			FUZZ_ASSERT(v[0] != ' ' && v[0] != '\t' &&
			    v[vl - 1] != ' ' && v[vl - 1] != '\t');
		for (k = 0; k < vl; k++)
			FUZZ_ASSERT(
			    (unsigned char)v[k] >= 0x20 || v[k] == '\t');
		check_parsed(v, vl);
	}
	free(one);
	free(split);
	return 0;
}
