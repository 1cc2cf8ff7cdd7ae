/*
 * sbuf.c - capped, binary-safe string buffer.
 *
 * Growth doubles up to the cap; the cap is what keeps per-session memory
 * bounded whatever a peer sends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "xmalloc.h"

void
sbuf_init(struct sbuf *sb, size_t cap)
{
	sb->size = 64 < cap + 1 ? 64 : cap + 1;
	sb->data = xmalloc(sb->size);
	sb->data[0] = '\0';
	sb->len = 0;
	sb->cap = cap;
}

void
sbuf_release(struct sbuf *sb)
{
	free(sb->data);
	sb->data = NULL;
	sb->len = sb->size = 0;
}

void
sbuf_reset(struct sbuf *sb)
{
	sb->len = 0;
	sb->data[0] = '\0';
}

void
sbuf_truncate(struct sbuf *sb, size_t len)
{
	if (len < sb->len) {
		sb->len = len;
		sb->data[len] = '\0';
	}
}

static int
sbuf_reserve(struct sbuf *sb, size_t extra)
{
	size_t need, nsize;

	if (extra > sb->cap - sb->len)
		return -1;
	need = sb->len + extra + 1;
	if (need <= sb->size)
		return 0;
	nsize = sb->size;
	while (nsize < need)
		nsize *= 2;
	if (nsize > sb->cap + 1)
		nsize = sb->cap + 1;
	sb->data = xrealloc(sb->data, nsize);
	sb->size = nsize;
	return 0;
}

int
sbuf_append(struct sbuf *sb, const void *data, size_t len)
{
	if (sbuf_reserve(sb, len) == -1)
		return -1;
	if (len > 0)
		memcpy(sb->data + sb->len, data, len);
	sb->len += len;
	sb->data[sb->len] = '\0';
	return 0;
}

int
sbuf_append_str(struct sbuf *sb, const char *s)
{
	return sbuf_append(sb, s, strlen(s));
}

int
sbuf_append_char(struct sbuf *sb, char c)
{
	return sbuf_append(sb, &c, 1);
}

int
sbuf_vprintf(struct sbuf *sb, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || sbuf_reserve(sb, (size_t)n) == -1)
		return -1;
	if (vsnprintf(sb->data + sb->len, sb->size - sb->len, fmt, ap) != n)
		return -1;
	sb->len += (size_t)n;
	return 0;
}

int
sbuf_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sbuf_vprintf(sb, fmt, ap);
	va_end(ap);
	return rc;
}

int
sbuf_append_escaped(struct sbuf *sb, const void *data, size_t len,
    const char *extra, bool ascii_only)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = data;
	size_t start = sb->len, i;
	char esc[4] = { '\\', 'x', 0, 0 };

	for (i = 0; i < len; i++) {
		unsigned char c = p[i];
		int rc;

		if (c < 0x21 || c == 0x7f || c == '\\' ||
		    (ascii_only && c >= 0x80) ||
		    (extra != NULL && c != 0 && strchr(extra, c) != NULL)) {
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			rc = sbuf_append(sb, esc, 4);
		} else
			rc = sbuf_append_char(sb, (char)c);
		if (rc == -1) {
			sbuf_truncate(sb, start);
			return -1;
		}
	}
	return 0;
}

static int
sbuf_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
sbuf_append_unescaped(struct sbuf *sb, const char *s, size_t len)
{
	size_t start = sb->len, i;

	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c == '\\') {
			int hi, lo;

			if (len - i < 4)
				goto bad;
			if (s[i + 1] != 'x')
				goto bad;
			hi = sbuf_hexval(s[i + 2]);
			lo = sbuf_hexval(s[i + 3]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = (char)(hi << 4 | lo);
			i += 3;
		}
		if (sbuf_append_char(sb, c) == -1)
			goto bad;
	}
	return 0;
bad:
	sbuf_truncate(sb, start);
	return -1;
}

int
sbuf_vseterr(struct sbuf *err, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	if (err == NULL)
		return -1;
	sbuf_reset(err);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -1;
	/* Reserve what fits under the cap; vsnprintf cuts the rest. */
	if ((size_t)n > err->cap)
		n = (int)err->cap;
	if (sbuf_reserve(err, (size_t)n) == -1)
		return -1;
	(void)vsnprintf(err->data, (size_t)n + 1, fmt, ap); /* cut: fine */
	err->len = (size_t)n;
	return -1;
}

int
sbuf_seterr(struct sbuf *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)sbuf_vseterr(err, fmt, ap);
	va_end(ap);
	return -1;
}
