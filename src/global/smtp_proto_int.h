/*
 * smtp_proto_int.h - what the parts of smtp_proto (smtp_proto.c, the
 * command and address parsers; smtp_proto_hdr.c, the header scanner)
 * share. Never included outside src/global/smtp_proto*.c.
 */
#ifndef SPLITMX_SMTP_PROTO_INT_H
#define SPLITMX_SMTP_PROTO_INT_H

#include <stdbool.h>
#include <stddef.h>

/* ASCII case-insensitive: s[0..len) equals the literal lit. */
bool smtp_proto_ci_eq(const char *s, size_t len, const char *lit);

#endif
