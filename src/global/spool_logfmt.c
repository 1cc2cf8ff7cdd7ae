/*
 * spool_logfmt.c - the spool log's records and checkpoint file (format 2).
 *
 * Pure functions over memory; the layout is in spool_logfmt.h and
 * splitmx-spool(5). The CRC-32C uses the SSE 4.2 instruction when the CPU
 * has it (about 20 times the table's speed: every committed message's
 * image passes through it on the committer thread) and the table else.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "spool_logfmt.h"

/* clang-format off */
static const uint32_t crc32c_table[256] = {
	0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u,
	0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u, 0xd4ca64ebu,
	0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
	0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u,
	0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu,
	0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
	0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
	0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu,
	0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
	0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u,
	0xaa64d611u, 0x580f5512u, 0x4b5fa6e6u, 0xb93425e5u,
	0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
	0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u,
	0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
	0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
	0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u,
	0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u,
	0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
	0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u,
	0x0c38d26cu, 0xfe53516fu, 0xed03a29bu, 0x1f682198u,
	0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
	0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u,
	0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu, 0xc8ac71e8u,
	0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
	0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u,
	0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u,
	0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
	0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
	0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u,
	0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
	0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u,
	0x3cdb9bddu, 0xceb018deu, 0xdde0eb2au, 0x2f8b6829u,
	0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
	0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u,
	0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
	0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
	0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u,
	0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu,
	0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
	0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u,
	0xa24bb5a6u, 0x502036a5u, 0x4370c551u, 0xb11b4652u,
	0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
	0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du,
	0xef087a76u, 0x1d63f975u, 0x0e330a81u, 0xfc588982u,
	0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
	0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u,
	0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u,
	0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
	0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
	0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu,
	0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
	0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u,
	0xd3d3e1abu, 0x21b862a8u, 0x32e8915cu, 0xc083125fu,
	0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
	0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u,
	0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
	0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
	0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u,
	0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u,
	0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
	0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u,
	0x34f4f86au, 0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu,
	0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
	0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};
/* clang-format on */

static uint32_t
crc32c_soft(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len-- > 0)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc, v;

	while (len >= 8) {
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t
spool_logfmt_crc32c(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc32c_hw(crc, p, len);
#endif
	return ~crc32c_soft(crc, p, len);
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t
get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

size_t
spool_logfmt_size(size_t len)
{
	return (SPOOL_LOGFMT_HDR_LEN + len + SPOOL_LOGFMT_ALIGN - 1) &
	    ~(size_t)(SPOOL_LOGFMT_ALIGN - 1);
}

/* The CRC covers type, len and lsn (header octets 8-23), then the payload. */
uint32_t
spool_logfmt_crc_begin(uint32_t type, uint32_t len, uint64_t lsn)
{
	unsigned char h[16];

	put32(h, type);
	put32(h + 4, len);
	put64(h + 8, lsn);
	return spool_logfmt_crc32c(0, h, sizeof(h));
}

void
spool_logfmt_header(unsigned char *hdr, uint32_t type, uint32_t len,
    uint64_t lsn, uint32_t crc)
{
	put32(hdr, SPOOL_LOGFMT_MAGIC);
	put32(hdr + 4, crc);
	put32(hdr + 8, type);
	put32(hdr + 12, len);
	put64(hdr + 16, lsn);
}

int
spool_logfmt_decode(const unsigned char *buf, size_t avail, uint64_t lsn,
    struct spool_logfmt_rec *out)
{
	uint32_t type, len, crc;
	size_t total;

	if (avail < SPOOL_LOGFMT_HDR_LEN || get32(buf) != SPOOL_LOGFMT_MAGIC)
		return 0;
	type = get32(buf + 8);
	len = get32(buf + 12);
	if (get64(buf + 16) != lsn || len > SPOOL_LOGFMT_REC_MAX ||
	    (type != SPOOL_LOGFMT_IMAGE && type != SPOOL_LOGFMT_RECORDS))
		return 0;
	total = spool_logfmt_size(len);
	if (total > avail)
		return 0;
	crc = spool_logfmt_crc_begin(type, len, lsn);
	crc = spool_logfmt_crc32c(crc, buf + SPOOL_LOGFMT_HDR_LEN, len);
	if (crc != get32(buf + 4))
		return 0;
	/* An image names its message: at least the id. */
	if (type == SPOOL_LOGFMT_IMAGE && len < SPOOL_LOGFMT_ID_LEN)
		return 0;
	out->type = type;
	out->lsn = lsn;
	out->payload = buf + SPOOL_LOGFMT_HDR_LEN;
	out->len = len;
	out->total = total;
	return 1;
}

void
spool_logfmt_segname(char out[SPOOL_LOGFMT_NAME_LEN + 1], uint64_t segno)
{
	(void)snprintf(out, SPOOL_LOGFMT_NAME_LEN + 1, "%016" PRIX64, segno);
}

bool
spool_logfmt_segno(const char *name, uint64_t *segno_out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < SPOOL_LOGFMT_NAME_LEN; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'A' && c <= 'F')
			v = v << 4 | (uint64_t)(c - 'A' + 10);
		else
			return false;
	}
	if (name[i] != '\0')
		return false;
	*segno_out = v;
	return true;
}

int
spool_logfmt_ckpt_format(const struct spool_logfmt_ckpt *ck, struct sbuf *out)
{
	return sbuf_printf(out,
	    "splitmx-checkpoint %d\nredo %" PRIu64 "\njournal %" PRIu64
	    "\nboot %s\nclean %d\n",
	    SPOOL_LOGFMT_VERSION, ck->redo, ck->journal_off,
	    ck->boot[0] != '\0' ? ck->boot : "-", ck->clean ? 1 : 0);
}

/* A decimal u64 without sign, spaces or leading garbage. */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int
spool_logfmt_ckpt_parse(const char *text, size_t len,
    struct spool_logfmt_ckpt *out, struct sbuf *err)
{
	static const char *const keys[] = { "splitmx-checkpoint", "redo",
		"journal", "boot", "clean" };
	const char *p = text, *end = text + len, *nl, *sp, *val;
	uint64_t v;
	size_t vlen, i;
	unsigned line;

	memset(out, 0, sizeof(*out));
	if (len > SPOOL_LOGFMT_CKPT_MAX)
		return sbuf_seterr(err, "checkpoint longer than %d octets",
		    SPOOL_LOGFMT_CKPT_MAX);
	for (line = 1; line <= 5; line++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return sbuf_seterr(err, "line %u: missing or torn",
			    line);
		sp = memchr(p, ' ', (size_t)(nl - p));
		i = line - 1;
		if (sp == NULL || (size_t)(sp - p) != strlen(keys[i]) ||
		    memcmp(p, keys[i], (size_t)(sp - p)) != 0)
			return sbuf_seterr(err, "line %u: expected \"%s\"",
			    line, keys[i]);
		val = sp + 1;
		vlen = (size_t)(nl - val);
		if (line == 4) {
			if (vlen == 0 || vlen > SPOOL_LOGFMT_BOOT_MAX)
				return sbuf_seterr(err, "line 4: bad boot id");
			/* A uuid: letters, digits and dashes only. */
			for (i = 0; i < vlen; i++)
				if (!((val[i] >= '0' && val[i] <= '9') ||
				        (val[i] >= 'a' && val[i] <= 'z') ||
				        (val[i] >= 'A' && val[i] <= 'Z') ||
				        val[i] == '-'))
					return sbuf_seterr(err,
					    "line 4: bad boot id");
			if (!(vlen == 1 && val[0] == '-')) {
				memcpy(out->boot, val, vlen);
				out->boot[vlen] = '\0';
			}
		} else {
			if (parse_u64(val, vlen, &v) == -1)
				return sbuf_seterr(err, "line %u: bad number",
				    line);
			switch (line) {
			case 1:
				if (v != SPOOL_LOGFMT_VERSION)
					return sbuf_seterr(err,
					    "line 1: version %" PRIu64
					    " (this is %d)",
					    v, SPOOL_LOGFMT_VERSION);
				break;
			case 2:
				out->redo = v;
				break;
			case 3:
				out->journal_off = v;
				break;
			default:
				if (v > 1)
					return sbuf_seterr(err,
					    "line 5: clean is 0 or 1");
				out->clean = v == 1;
				break;
			}
		}
		p = nl + 1;
	}
	if (p != end)
		return sbuf_seterr(err, "line 6: unexpected text");
	if (out->redo % SPOOL_LOGFMT_ALIGN != 0)
		return sbuf_seterr(err, "line 2: redo not aligned");
	return 0;
}
