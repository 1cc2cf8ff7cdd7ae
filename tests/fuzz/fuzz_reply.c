/*
 * fuzz_reply.c - smtp_proto_parse_reply_line, the client's reply-line
 * parser.
 *
 * Oracle: the code matches the first three digits, text is the rest of
 * the line after the separator, an enhanced status starts the text and
 * has the class of a reply, and formatting the parsed line with
 * smtp_proto_format_reply gives back the line (CRLF added) whenever the
 * text allows it.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "sbuf.h"
#include "smtp_proto.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_proto_reply_line rl;
	struct sbuf sb;
	char *text;
	size_t i;

	if (smtp_proto_parse_reply_line(line, size, &rl) == -1)
		return 0;
	FUZZ_ASSERT(size >= 3);
	FUZZ_ASSERT(rl.code >= 200 && rl.code <= 599);
	FUZZ_ASSERT(rl.code / 100 == (unsigned)(line[0] - '0'));
	FUZZ_ASSERT(rl.code % 100 ==
	    (unsigned)(line[1] - '0') * 10 + (unsigned)(line[2] - '0'));
	FUZZ_ASSERT(rl.more == (size > 3 && line[3] == '-'));
	FUZZ_ASSERT(size == 3 || line[3] == ' ' || line[3] == '-');
	FUZZ_ASSERT(rl.text + rl.textlen == line + size);
	FUZZ_ASSERT(rl.textlen == (size > 4 ? size - 4 : 0));
	if (rl.enhanced != NULL) {
		FUZZ_ASSERT(rl.enhanced == rl.text);
		FUZZ_ASSERT(rl.enhlen >= 5 && rl.enhlen <= 11);
		FUZZ_ASSERT(rl.enhlen <= rl.textlen);
		FUZZ_ASSERT(
		    rl.enhlen == rl.textlen || rl.text[rl.enhlen] == ' ');
		FUZZ_ASSERT(strchr("245", rl.enhanced[0]) != NULL);
		for (i = 0; i < rl.enhlen; i++)
			FUZZ_ASSERT(
			    (rl.enhanced[i] >= '0' && rl.enhanced[i] <= '9') ||
			    rl.enhanced[i] == '.');
	} else
		FUZZ_ASSERT(rl.enhlen == 0);

	/* Round trip through the formatter: "250" alone needs no text. */
	if (memchr(rl.text, '\0', rl.textlen) != NULL ||
	    memchr(rl.text, '\r', rl.textlen) != NULL ||
	    memchr(rl.text, '\n', rl.textlen) != NULL)
		return 0;
	if (size == 4 && !rl.more)
		return 0; /* "250 " formats as "250" */
	text = malloc(rl.textlen + 1);
	FUZZ_ASSERT(text != NULL);
	memcpy(text, rl.text, rl.textlen);
	text[rl.textlen] = '\0';
	sbuf_init(&sb, size + 16);
	FUZZ_ASSERT(
	    smtp_proto_format_reply(&sb, rl.code, NULL, rl.more, text) == 0);
	FUZZ_ASSERT(sb.len == size + 2);
	FUZZ_ASSERT(memcmp(sb.data, line, size) == 0);
	FUZZ_ASSERT(memcmp(sb.data + size, "\r\n", 2) == 0);
	sbuf_release(&sb);
	free(text);
	return 0;
}
