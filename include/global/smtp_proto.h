/*
 * smtp_proto.h - pure parsing and formatting for SMTP (RFC 5321 and the
 * ESMTP extensions splitmx speaks).
 *
 * Nothing here does I/O, logs, or touches globals: every function takes
 * bytes and a length and returns a result or a reply to send. The DATA
 * decoder is incremental so it can be fed any chunk split.
 */
#ifndef SPLITMX_SMTP_PROTO_H
#define SPLITMX_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

/*
 * RFC 5321 4.5.3.1.4 allows 512 octets for a command line; SMTP extensions
 * (DSN's ORCPT and ENVID, SIZE, SMTPUTF8) may raise it. We accept up to
 * this many octets including CRLF and refuse longer lines (500 5.5.2).
 */
#define SMTP_PROTO_CMDLINE_MAX 2048
#define SMTP_PROTO_LOCAL_MAX   64  /* RFC 5321 4.5.3.1.1 */
#define SMTP_PROTO_DOMAIN_MAX  255 /* RFC 5321 4.5.3.1.2 */
#define SMTP_PROTO_PATH_MAX    256 /* RFC 5321 4.5.3.1.3, incl. <> */
#define SMTP_PROTO_ENVID_MAX   100 /* RFC 3461 4.4 */
#define SMTP_PROTO_ORCPT_MAX   500 /* RFC 3461 4.2 */
#define SMTP_PROTO_HELO_MAX    255

/* A reply chosen by a parser: code, RFC 3463 enhanced status, text. */
struct smtp_proto_status {
	unsigned code;
	const char *enhanced;
	const char *text;
};

enum smtp_proto_verb {
	SMTP_PROTO_CMD_UNKNOWN = 0,
	SMTP_PROTO_CMD_HELO,
	SMTP_PROTO_CMD_EHLO,
	SMTP_PROTO_CMD_MAIL, /* "MAIL FROM:"; arg starts after the colon */
	SMTP_PROTO_CMD_RCPT, /* "RCPT TO:"; arg starts after the colon */
	SMTP_PROTO_CMD_DATA,
	SMTP_PROTO_CMD_BDAT,
	SMTP_PROTO_CMD_RSET,
	SMTP_PROTO_CMD_NOOP,
	SMTP_PROTO_CMD_QUIT,
	SMTP_PROTO_CMD_VRFY,
	SMTP_PROTO_CMD_EXPN,
	SMTP_PROTO_CMD_HELP,
	SMTP_PROTO_CMD_STARTTLS,
	SMTP_PROTO_CMD_AUTH,
	SMTP_PROTO_CMD_ETRN,
	SMTP_PROTO_CMD_TURN,
	SMTP_PROTO_CMD_HTTP, /* GET/POST/HEAD/PUT/CONNECT: not a mail client */
};

struct smtp_proto_command {
	enum smtp_proto_verb verb;
	const char *arg; /* points into the line; not NUL-terminated */
	size_t arglen;   /* leading spaces skipped, trailing kept */
};

/*
 * Splits one command line (without its CRLF). Verbs are case-insensitive.
 * For MAIL and RCPT the "FROM:"/"TO:" keyword is required (spaces after the
 * colon are tolerated). Returns 0, or -1 with *st_out set (e.g. NUL byte,
 * MAIL without FROM:). An unknown verb is not an error: verb UNKNOWN.
 */
int smtp_proto_parse_command(const char *line, size_t len,
    struct smtp_proto_command *out, struct smtp_proto_status *st_out);

/* A reverse- or forward-path. Strings are NUL-terminated copies. */
struct smtp_proto_path {
	/* Mailbox exactly as received, without <> and source route; "" for <>. */
	char mailbox[SMTP_PROTO_PATH_MAX + 1];
	/* Local part with quotes and quoted-pairs removed (for matching). */
	char local[SMTP_PROTO_LOCAL_MAX + 1];
	/* Domain as received ("" for <> and bare postmaster). */
	char domain[SMTP_PROTO_DOMAIN_MAX + 1];
	/* Domain lower-cased (ASCII only) for matching. */
	char domain_lc[SMTP_PROTO_DOMAIN_MAX + 1];
	bool is_null;        /* <> */
	bool is_postmaster;  /* <postmaster> without a domain (RCPT only) */
	bool quoted_local;   /* local part was a quoted-string */
	bool domain_literal; /* [1.2.3.4] or [IPv6:...] */
	bool has_utf8;       /* non-ASCII octets present */
};

/* DSN NOTIFY bits (RFC 3461 4.1); 0 means not given. */
#define SMTP_PROTO_NOTIFY_NEVER   0x01
#define SMTP_PROTO_NOTIFY_SUCCESS 0x02
#define SMTP_PROTO_NOTIFY_FAILURE 0x04
#define SMTP_PROTO_NOTIFY_DELAY   0x08

enum smtp_proto_body {
	SMTP_PROTO_BODY_NONE,
	SMTP_PROTO_BODY_7BIT,
	SMTP_PROTO_BODY_8BITMIME
};
enum smtp_proto_ret {
	SMTP_PROTO_RET_NONE,
	SMTP_PROTO_RET_FULL,
	SMTP_PROTO_RET_HDRS
};

struct smtp_proto_mail {
	struct smtp_proto_path path;
	bool has_size;
	uint64_t size;
	enum smtp_proto_body body;
	bool smtputf8;
	enum smtp_proto_ret ret;
	char envid[SMTP_PROTO_ENVID_MAX + 1]; /* xtext; "" if none */
};

struct smtp_proto_rcpt {
	struct smtp_proto_path path;
	unsigned notify; /* SMTP_PROTO_NOTIFY_* bits */
	/* "addr-type;xtext" exactly as received; "" if none. */
	char orcpt[SMTP_PROTO_ORCPT_MAX + 1];
};

/*
 * Parse the argument of MAIL FROM: / RCPT TO: (what follows the colon):
 * the path, then ESMTP parameters. Returns 0, or -1 with *st_out set to the
 * reply to send: 501 5.1.7 (bad sender syntax), 501 5.1.3 (bad recipient
 * syntax), 501 5.5.4 (malformed or repeated parameter), 555 5.5.4 (unknown
 * parameter), 553 5.6.7 (non-ASCII address without SMTPUTF8); over-long
 * local part, domain or path get 501 5.1.7 / 5.1.3 with a text saying
 * which. smtputf8 for RCPT: whether the
 * transaction's MAIL carried SMTPUTF8. The parser does not apply policy
 * (SIZE against the limit, domain acceptance): the caller does.
 */
int smtp_proto_parse_mail(const char *arg, size_t len,
    struct smtp_proto_mail *out, struct smtp_proto_status *st_out);
int smtp_proto_parse_rcpt(const char *arg, size_t len, bool smtputf8,
    struct smtp_proto_rcpt *out, struct smtp_proto_status *st_out);

/* Validates an EHLO/HELO argument (a domain or address literal). */
int smtp_proto_parse_helo(const char *arg, size_t len,
    struct smtp_proto_status *st_out);

/* BDAT argument: "size" or "size LAST". */
int smtp_proto_parse_bdat(const char *arg, size_t len, uint64_t *size_out,
    bool *last_out, struct smtp_proto_status *st_out);

/* RFC 3461 4 xtext: returns true when s[0..len) is valid xtext. */
bool smtp_proto_xtext_valid(const char *s, size_t len);

/*
 * Appends "CODE ENH TEXT\r\n" (or "CODE-ENH TEXT\r\n" when more is set).
 * enhanced may be NULL. Returns sbuf_append's result.
 */
int smtp_proto_format_reply(struct sbuf *out, unsigned code,
    const char *enhanced, bool more, const char *text)
    __attribute__((warn_unused_result));

/*
 * One line of a server's reply (RFC 5321 4.2), without its CRLF: a code
 * 200-599, then nothing, or ' ' (last line) or '-' (more follow) and the
 * text. The pointers borrow line. text is everything after the separator,
 * the enhanced status included; enhanced points at an RFC 3463 status
 * ("class.subject.detail", class 2, 4 or 5, 1-3 digits each, followed by
 * a space or the end) at the start of the text, else NULL. Checking that
 * the lines of one reply share a code is the caller's job.
 */
struct smtp_proto_reply_line {
	unsigned code;
	bool more;            /* "CODE-": more lines follow */
	const char *enhanced; /* NULL when absent */
	size_t enhlen;
	const char *text; /* after "CODE " or "CODE-"; "" at the line's end */
	size_t textlen;
};

/* Returns 0, or -1 when line[0..len) is not a reply line. */
int smtp_proto_parse_reply_line(const char *line, size_t len,
    struct smtp_proto_reply_line *out);

/*
 * DATA / BDAT content decoder.
 *
 * DOT mode (DATA): input is the raw byte stream after "354". Lines are
 * delimited by CRLF only. A line that starts with "." has the dot removed
 * (RFC 5321 4.5.2); the line "." alone, i.e. the exact sequence
 * CRLF "." CRLF (the 354 counts as a preceding CRLF), ends the data. A bare
 * LF or bare CR is never a line end: "\n.\n", "\r.\r", "\n.\r\n",
 * "\r\n.\n" and "\r.\r\n" do not end DATA (SMTP smuggling). With normalize
 * set, each bare LF or bare CR is written as CRLF; otherwise it is written
 * as is and flagged, and the caller refuses the message at its end.
 *
 * RAW mode (BDAT): no dot handling and no terminator; the same bare CR/LF
 * and NUL rules. Call smtp_proto_data_finish after the last chunk.
 */
enum smtp_proto_data_mode {
	SMTP_PROTO_DATA_DOT,
	SMTP_PROTO_DATA_RAW
};

struct smtp_proto_data {
	enum smtp_proto_data_mode mode;
	bool normalize;
	int state;          /* private */
	uint64_t out_total; /* decoded octets so far */
	uint64_t cur_line;  /* length of current line */
	uint64_t max_line;  /* longest line seen, w/o CRLF */
	bool bare_cr;       /* seen a bare CR */
	bool bare_lf;       /* seen a bare LF */
	bool nul;           /* seen a NUL octet */
	bool done;          /* terminator seen (DOT) */
};

/* At most this many output octets per consumed input octet (plus pending). */
#define SMTP_PROTO_DATA_EXPANSION 4

void smtp_proto_data_init(struct smtp_proto_data *d,
    enum smtp_proto_data_mode mode, bool normalize);

/*
 * Decodes from in[0..inlen) into out[*outlen_io..outcap). Consumes input
 * while at least SMTP_PROTO_DATA_EXPANSION octets of room remain; sets
 * *consumed_out. Returns 1 once the terminator has been consumed (DOT mode;
 * bytes after it are not consumed), else 0.
 */
int smtp_proto_data_feed(struct smtp_proto_data *d, const char *in,
    size_t inlen, char *out, size_t outcap, size_t *outlen_io,
    size_t *consumed_out);

/* RAW mode: flush a pending CR at end of content. Needs 2 octets of room. */
void smtp_proto_data_finish(struct smtp_proto_data *d, char *out, size_t outcap,
    size_t *outlen_io);

/*
 * Header scanner, fed the decoded content: finds the end of the header
 * section, counts Received: fields (loop detection) and captures the
 * Message-ID field value (unfolded, trimmed, at most
 * SMTP_PROTO_MSGID_MAX octets; longer values are truncated).
 */
#define SMTP_PROTO_MSGID_MAX 998
/*
 * The trace field splitmx prepends ("X-Splitmx-Trace: node=HOST;
 * id=QID"): counted by the scanner, and the values of the first
 * SMTP_PROTO_TRACE_KEEP (the newest, as they are prepended) kept like the
 * Message-ID, at most SMTP_PROTO_TRACE_VALUE_MAX octets each (loops).
 */
#define SMTP_PROTO_TRACE_HEADER    "X-Splitmx-Trace"
#define SMTP_PROTO_TRACE_KEEP      8
#define SMTP_PROTO_TRACE_VALUE_MAX 320

struct smtp_proto_hdrscan {
	int state;          /* private */
	bool in_body;       /* the empty line has been seen */
	unsigned received;  /* Received: fields seen */
	unsigned traces;    /* X-Splitmx-Trace: fields seen */
	unsigned dkim_sigs; /* DKIM-Signature: fields seen */
	bool has_msgid;
	char msgid[SMTP_PROTO_MSGID_MAX + 1];
	size_t msgid_len;
	/* trace[i] for i < min(traces, SMTP_PROTO_TRACE_KEEP), in order. */
	char trace[SMTP_PROTO_TRACE_KEEP][SMTP_PROTO_TRACE_VALUE_MAX + 1];
	size_t trace_len[SMTP_PROTO_TRACE_KEEP];
	char name[32];    /* private: current field name prefix */
	size_t name_len;  /* private */
	unsigned capture; /* private: 0 none, 1 Message-ID, 2 + i trace[i] */
};

void smtp_proto_hdrscan_init(struct smtp_proto_hdrscan *h);
void smtp_proto_hdrscan_feed(struct smtp_proto_hdrscan *h, const char *data,
    size_t len);

/* One X-Splitmx-Trace value, parsed. */
struct smtp_proto_trace {
	char node[SMTP_PROTO_DOMAIN_MAX + 1];
	char id[33];
};

/*
 * Parses "node=HOST; id=QID" (parameters in any order, separated by ';'
 * with optional WSP; unknown ones ignored; node a domain or an address
 * literal of at most SMTP_PROTO_DOMAIN_MAX octets, id 1 to 32 upper-case
 * letters and digits). 0, or -1 when either is missing or malformed.
 */
int smtp_proto_parse_trace(const char *value, size_t len,
    struct smtp_proto_trace *out);

#endif
