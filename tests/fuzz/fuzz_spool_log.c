/*
 * fuzz_spool_log.c - the spool log's record decoder and the checkpoint
 * parser (spool_logfmt.h), as recovery runs them on whatever a crash or a
 * damaged disk left.
 *
 * Oracle: the decoder never reads past what it is given (ASan), and a
 * record it accepts lies inside the input, carries the position asked for
 * and re-encodes to the same octets. A checkpoint that parses formats
 * back to text that parses to the same values.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sbuf.h"
#include "spool_logfmt.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_logfmt_rec rec;
	struct spool_logfmt_ckpt ck, ck2;
	struct sbuf err, text;
	unsigned char *copy, *again;
	uint64_t lsn = 0;
	size_t off = 0;
	uint32_t crc;

	/* Records from the start of the input, as replay walks a segment. */
	copy = malloc(size > 0 ? size : 1);
	FUZZ_ASSERT(copy != NULL);
	memcpy(copy, data, size);
	while (off < size &&
	    spool_logfmt_decode(copy + off, size - off, lsn, &rec) == 1) {
		FUZZ_ASSERT(rec.total >= SPOOL_LOGFMT_HDR_LEN + rec.len);
		FUZZ_ASSERT(rec.total <= size - off);
		FUZZ_ASSERT(rec.lsn == lsn);
		again = calloc(1, rec.total);
		FUZZ_ASSERT(again != NULL);
		crc = spool_logfmt_crc_begin(rec.type, rec.len, lsn);
		crc = spool_logfmt_crc32c(crc, rec.payload, rec.len);
		spool_logfmt_header(again, rec.type, rec.len, lsn, crc);
		memcpy(again + SPOOL_LOGFMT_HDR_LEN, rec.payload, rec.len);
		FUZZ_ASSERT(memcmp(again, copy + off,
		                SPOOL_LOGFMT_HDR_LEN + rec.len) == 0);
		free(again);
		off += rec.total;
		lsn += rec.total;
	}
	free(copy);

	sbuf_init(&err, 256);
	sbuf_init(&text, SPOOL_LOGFMT_CKPT_MAX);
	if (spool_logfmt_ckpt_parse((const char *)data, size, &ck, &err) == 0) {
		FUZZ_ASSERT(spool_logfmt_ckpt_format(&ck, &text) == 0);
		FUZZ_ASSERT(spool_logfmt_ckpt_parse(text.data, text.len, &ck2,
		                &err) == 0);
		FUZZ_ASSERT(ck.redo == ck2.redo);
		FUZZ_ASSERT(ck.journal_off == ck2.journal_off);
		FUZZ_ASSERT(ck.clean == ck2.clean);
		FUZZ_ASSERT(strcmp(ck.boot, ck2.boot) == 0);
	} else
		FUZZ_ASSERT(err.len > 0);
	sbuf_release(&err);
	sbuf_release(&text);
	return 0;
}
