/*
 * fuzz_hdrscan.c - the header scanner (smtp_proto_hdrscan_*), fed the
 * decoded content.
 *
 * Input: a seed byte for the chunk split, then the content.
 * Oracle: any split gives the same result as one call (end of headers,
 * Received:, trace and DKIM-Signature counts, the Message-ID); the
 * Message-ID is NUL-terminated at msgid_len, within
 * SMTP_PROTO_MSGID_MAX, without control octets (inner WSP stays) or
 * surrounding WSP; the
 * header section ends exactly when CR LF CR LF (or a leading CR LF) is
 * in the input.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_proto.h"

static void
check_one(const struct smtp_proto_hdrscan *h)
{
	size_t i;

	FUZZ_ASSERT(h->msgid_len <= SMTP_PROTO_MSGID_MAX);
	FUZZ_ASSERT(h->msgid[h->msgid_len] == '\0');
	FUZZ_ASSERT(strlen(h->msgid) == h->msgid_len);
	if (!h->has_msgid)
		FUZZ_ASSERT(h->msgid_len == 0);
	for (i = 0; i < h->msgid_len; i++) {
		unsigned char c = (unsigned char)h->msgid[i];

		FUZZ_ASSERT((c >= 0x20 && c != 0x7f) || c == '\t');
	}
	if (h->msgid_len > 0) {
		FUZZ_ASSERT(h->msgid[0] != ' ' && h->msgid[0] != '\t');
		FUZZ_ASSERT(h->msgid[h->msgid_len - 1] != ' ' &&
		    h->msgid[h->msgid_len - 1] != '\t');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_proto_hdrscan *one, *split;
	const char *in;
	uint32_t seed;
	size_t len, off, chunk;

	if (size < 1)
		return 0;
	seed = 0x2545f491U ^ data[0];
	in = (const char *)data + 1;
	len = size - 1;

	one = malloc(sizeof(*one));
	split = malloc(sizeof(*split));
	FUZZ_ASSERT(one != NULL && split != NULL);
	smtp_proto_hdrscan_init(one);
	smtp_proto_hdrscan_feed(one, in, len);
	smtp_proto_hdrscan_init(split);
	for (off = 0; off < len; off += chunk) {
		chunk = fuzz_chunk(&seed, 16, len - off);
		smtp_proto_hdrscan_feed(split, in + off, chunk);
	}

	check_one(one);
	FUZZ_ASSERT(one->in_body == split->in_body);
	FUZZ_ASSERT(one->received == split->received);
	FUZZ_ASSERT(one->traces == split->traces);
	FUZZ_ASSERT(one->dkim_sigs == split->dkim_sigs);
	FUZZ_ASSERT(one->has_msgid == split->has_msgid);
	FUZZ_ASSERT(one->msgid_len == split->msgid_len);
	FUZZ_ASSERT(memcmp(one->msgid, split->msgid, one->msgid_len + 1) == 0);
	/* An empty line ends the header section, and nothing else does. */
	FUZZ_ASSERT(one->in_body ==
	    ((len >= 2 && memcmp(in, "\r\n", 2) == 0) ||
	        memmem(in, len, "\r\n\r\n", 4) != NULL));
	free(one);
	free(split);
	return 0;
}
