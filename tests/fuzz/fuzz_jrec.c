/*
 * fuzz_jrec.c - the journal's record parser, spool_jrec_parse, and
 * spool_jrec_value on each of the record's fields.
 *
 * Oracle: a parsed record's timestamp formats back to the line's first
 * 27 octets; the verb and every field point inside the line, keys are
 * non-empty and hold no '='; the id is valid and equals the id= field;
 * spool_jrec_get finds the first field of a name; every value that
 * unescapes re-escapes (SPOOL_JOURNAL_EXTRA) to a value that unescapes
 * to the same octets, and a record rebuilt with spool_jrec_begin and
 * spool_jrec_str from the unescaped values parses to the same values.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "sbuf.h"
#include "spool_codec.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct spool_jrec r, r2;
	struct spool_jrec_out w;
	struct sbuf err, val, esc, back, rec;
	char ts[SPOOL_TS_LEN + 1], key[64], verb[64];
	size_t i;

	sbuf_init(&err, 256);
	if (spool_jrec_parse(line, size, &r, &err) == -1) {
		FUZZ_ASSERT(err.len > 0);
		sbuf_release(&err);
		return 0;
	}
	spool_time_format(&r.ts, ts, sizeof(ts));
	FUZZ_ASSERT(memcmp(ts, line, SPOOL_TS_LEN) == 0);
	FUZZ_ASSERT(r.verb > line && r.verb + r.verblen <= line + size);
	FUZZ_ASSERT(r.verblen > 0 && memchr(r.verb, ' ', r.verblen) == NULL);
	FUZZ_ASSERT(spool_id_valid(r.id));
	FUZZ_ASSERT(r.nfields >= 1 && r.nfields <= SPOOL_JREC_FIELDS_MAX);

	sbuf_init(&val, size + 1);
	sbuf_init(&esc, 4 * size + 16);
	sbuf_init(&back, size + 1);
	sbuf_init(&rec, 8 * size + 256);
	if (r.verblen < sizeof(verb) &&
	    memchr(r.verb, '\0', r.verblen) == NULL) {
		memcpy(verb, r.verb, r.verblen);
		verb[r.verblen] = '\0';
	} else
		(void)snprintf(verb, sizeof(verb), "verb");
	spool_jrec_begin(&w, &rec, ts, verb, r.id);
	for (i = 0; i < r.nfields; i++) {
		const struct spool_jfield *f = &r.fields[i];

		FUZZ_ASSERT(f->key > r.verb && f->val + f->vlen <= line + size);
		FUZZ_ASSERT(
		    f->klen > 0 && memchr(f->key, '=', f->klen) == NULL);
		FUZZ_ASSERT(memchr(f->val, ' ', f->vlen) == NULL);
		if (f->klen >= sizeof(key) ||
		    memchr(f->key, '\0', f->klen) != NULL)
			continue;
		memcpy(key, f->key, f->klen);
		key[f->klen] = '\0';
		FUZZ_ASSERT(spool_jrec_get(&r, key) != NULL);
		FUZZ_ASSERT(spool_jrec_get(&r, key) <= f);
		/* Both forms, as the readers use them. */
		(void)!spool_jrec_value(&r, key, true, &val);
		if (spool_jrec_value(&r, key, false, &val) == -1)
			continue;
		if (spool_jrec_get(&r, key) != f)
			continue; /* a repeated key: the first one counts */
		FUZZ_ASSERT(sbuf_append_escaped(&esc, val.data, val.len,
		                SPOOL_JOURNAL_EXTRA, false) == 0);
		FUZZ_ASSERT(
		    sbuf_append_unescaped(&back, esc.data, esc.len) == 0);
		FUZZ_ASSERT(back.len == val.len);
		FUZZ_ASSERT(memcmp(back.data, val.data, val.len) == 0);
		sbuf_reset(&esc);
		sbuf_reset(&back);
		if (strcmp(key, "id") != 0 &&
		    memchr(val.data, '\0', val.len) == NULL)
			spool_jrec_strn(&w, key, val.data, val.len);
	}
	FUZZ_ASSERT(spool_jrec_end(&w) == 0);
	FUZZ_ASSERT(rec.len > 0 && rec.data[rec.len - 1] == '\n');
	FUZZ_ASSERT(spool_jrec_parse(rec.data, rec.len - 1, &r2, &err) == 0);
	FUZZ_ASSERT(strcmp(r2.id, r.id) == 0);
	FUZZ_ASSERT(
	    r2.ts.tv_sec == r.ts.tv_sec && r2.ts.tv_nsec == r.ts.tv_nsec);
	for (i = 0; i < r2.nfields; i++) {
		const struct spool_jfield *f = &r2.fields[i];

		memcpy(key, f->key, f->klen);
		key[f->klen] = '\0';
		if (strcmp(key, "id") == 0)
			continue;
		FUZZ_ASSERT(spool_jrec_value(&r2, key, false, &back) == 0);
		FUZZ_ASSERT(spool_jrec_value(&r, key, false, &val) == 0);
		FUZZ_ASSERT(back.len == val.len);
		FUZZ_ASSERT(memcmp(back.data, val.data, val.len) == 0);
	}
	sbuf_release(&rec);
	sbuf_release(&val);
	sbuf_release(&esc);
	sbuf_release(&back);
	sbuf_release(&err);
	return 0;
}
