/*
 * spool_logfmt.h - the spool log's grammar (spool format 2): records and
 * the checkpoint file. Pure: no I/O, so the writer (spool_log.c), start-up
 * recovery, the unit tests and the fuzzer share one definition.
 *
 * The log is a sequence of segment files under spool/log/, each named by
 * the position (LSN) of its first octet in 16 hex digits, so positions run
 * on without gaps from one segment to the next. Records carry their own
 * LSN and a CRC-32C, so a torn write, a stale record of a recycled segment
 * or zero fill all end the log at recovery.
 * Layout of one record (little-endian), padded to 8 octets:
 *
 *	u32 magic "SMXL"  u32 crc32c(type..payload)  u32 type  u32 len
 *	u64 lsn  payload[len]  zero padding
 *
 * splitmx-spool(5) is the reference.
 */
#ifndef SPLITMX_SPOOL_LOGFMT_H
#define SPLITMX_SPOOL_LOGFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define SPOOL_LOGFMT_VERSION  2
#define SPOOL_LOGFMT_MAGIC    0x4c584d53u /* "SMXL" read little-endian */
#define SPOOL_LOGFMT_HDR_LEN  24
#define SPOOL_LOGFMT_ALIGN    8
#define SPOOL_LOGFMT_ID_LEN   16                  /* = SPOOL_ID_LEN */
#define SPOOL_LOGFMT_REC_MAX  ((uint32_t)1 << 30) /* payload bound */
#define SPOOL_LOGFMT_NAME_LEN 16   /* segment file name: hex digits */
#define SPOOL_LOGFMT_CKPT_MAX 1024 /* checkpoint file bound */
#define SPOOL_LOGFMT_BOOT_MAX 64

enum spool_logfmt_type {
	SPOOL_LOGFMT_IMAGE = 1,   /* queue id + the whole queue file */
	SPOOL_LOGFMT_RECORDS = 2, /* journal lines, each '\n'-ended */
};

struct spool_logfmt_rec {
	uint32_t type;
	uint64_t lsn;
	const unsigned char *payload;
	uint32_t len;
	size_t total; /* octets the record takes, padding included */
};

/* CRC-32C (Castagnoli), as iSCSI and ext4 use; crc 0 to start. */
uint32_t spool_logfmt_crc32c(uint32_t crc, const void *data, size_t len);

/* Octets a record with a payload of len takes in the log. */
size_t spool_logfmt_size(size_t len);

/*
 * Writes the header for a record at lsn whose payload (len octets, crc
 * over it from spool_logfmt_crc_begin/spool_logfmt_crc32c) follows it.
 * hdr has SPOOL_LOGFMT_HDR_LEN octets. The writer copies the payload after
 * the header and zeroes the padding.
 */
uint32_t spool_logfmt_crc_begin(uint32_t type, uint32_t len, uint64_t lsn);
void spool_logfmt_header(unsigned char *hdr, uint32_t type, uint32_t len,
    uint64_t lsn, uint32_t crc);

/*
 * Decodes the record at buf (avail octets readable), which must sit at
 * lsn. 1 with out filled; 0 when there is no valid record there (zero
 * fill, a stale record of another position, a torn or damaged one, a
 * length past avail): the end of the log. Never reads past avail.
 */
int spool_logfmt_decode(const unsigned char *buf, size_t avail, uint64_t lsn,
    struct spool_logfmt_rec *out);

/* Segment file names: the start LSN in SPOOL_LOGFMT_NAME_LEN hex digits. */
void spool_logfmt_segname(char out[SPOOL_LOGFMT_NAME_LEN + 1], uint64_t lsn);
bool spool_logfmt_segno(const char *name, uint64_t *lsn_out);

/*
 * The checkpoint: where recovery starts replaying the log (redo), how
 * long the journal was then, the boot the writing daemon ran in, and
 * whether it stopped cleanly.
 */
struct spool_logfmt_ckpt {
	uint64_t redo;        /* LSN */
	uint64_t journal_off; /* octets of the journal covered */
	char boot[SPOOL_LOGFMT_BOOT_MAX + 1];
	bool clean;
};

/* Text form, "splitmx-checkpoint 2\n..." (splitmx-spool(5)). */
int spool_logfmt_ckpt_format(const struct spool_logfmt_ckpt *ck,
    struct sbuf *out);
/* 0, or -1 with err set ("line 3: ..."). */
int spool_logfmt_ckpt_parse(const char *text, size_t len,
    struct spool_logfmt_ckpt *out, struct sbuf *err);

#endif
