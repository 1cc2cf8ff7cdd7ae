/*
 * fuzz_command.c - smtp_proto_parse_command on one command line.
 *
 * Oracle: the argument lies inside the line, a success never has a CR,
 * LF or NUL in the line, and a refusal carries a 5xx reply.
 */
#include <string.h>

#include "fuzz.h"
#include "smtp_proto.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_proto_command cmd;
	struct smtp_proto_status st;
	int rc;

	memset(&st, 0, sizeof(st));
	rc = smtp_proto_parse_command(line, size, &cmd, &st);
	FUZZ_ASSERT(rc == 0 || rc == -1);
	FUZZ_ASSERT(cmd.arg >= line && cmd.arg <= line + size);
	FUZZ_ASSERT(cmd.arglen <= (size_t)(line + size - cmd.arg));
	if (rc == -1) {
		FUZZ_ASSERT(st.code >= 500 && st.code <= 599);
		FUZZ_ASSERT(st.text != NULL);
		return 0;
	}
	FUZZ_ASSERT(size <= SMTP_PROTO_CMDLINE_MAX - 2);
	FUZZ_ASSERT(memchr(line, '\0', size) == NULL);
	FUZZ_ASSERT(memchr(line, '\r', size) == NULL);
	FUZZ_ASSERT(memchr(line, '\n', size) == NULL);
	FUZZ_ASSERT(cmd.arg + cmd.arglen == line + size);
	FUZZ_ASSERT(cmd.arglen == 0 || cmd.arg[0] != ' ');
	return 0;
}
