/*
 * conf.c - the splitmx.conf parser, its checks and look-ups.
 *
 * conf_parse_buf is pure: bytes in, a struct conf or one "FILE:LINE: what"
 * message out. It is a flat loop over statements with a one-level context
 * (top level or one block), so no input can recurse or grow memory beyond a
 * multiple of its own size. Only conf_load and conf_load_recipients touch
 * files. The syntax is documented in splitmx.conf(5); keep the two in step.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "conf.h"
#include "log.h"
#include "sbuf.h"
#include "xmalloc.h"

#define CONF_FILE_MAX		(4u * 1024 * 1024)	/* splitmx.conf */
#define CONF_RCPT_FILE_MAX	(64u * 1024 * 1024)	/* recipients_file */
#define CONF_TOKEN_MAX		4096	/* one word, quoted or not */
#define CONF_PATTERN_MAX	255	/* local-part pattern, in octets */
#define CONF_DOMAIN_MAX		253	/* RFC 1035 2.3.4, no final dot */
#define CONF_LABEL_MAX		63	/* RFC 1035 2.3.4 */
#define CONF_USER_MAX		32
#define CONF_WORKERS_MAX	256
#define CONF_MSG_MAX		512	/* one message, without FILE:LINE */
#define CONF_SHOW_MAX		64	/* bytes of a word shown in a message */
#define CONF_SUGGEST_MAX	32	/* longest word we look for typos in */

#define CONF_DEFAULT_SPOOL	"/var/spool/splitmx"

enum conf_ctx {
	CONF_CTX_TOP,
	CONF_CTX_DOMAIN,	/* before limits: see conf_misplaced() */
	CONF_CTX_LIMITS,
	CONF_CTX_LISTEN,
	CONF_CTX_LOG,
	CONF_CTX_COUNT,
};

static const char *const conf_ctx_names[CONF_CTX_COUNT] = {
	"top level", "domain", "limits", "listen", "log",
};

enum conf_tok {
	CONF_TOK_WORD,
	CONF_TOK_END,		/* newline or ';' */
	CONF_TOK_OPEN,		/* '{' */
	CONF_TOK_CLOSE,		/* '}' */
	CONF_TOK_EOF,
	CONF_TOK_ERROR,		/* message already reported */
};

enum conf_block {
	CONF_BLOCK_NONE,
	CONF_BLOCK_OPTIONAL,
	CONF_BLOCK_REQUIRED,
};

enum conf_arg {
	CONF_ARG_NONE,
	CONF_ARG_MESSAGE_SIZE,
	CONF_ARG_RECIPIENTS,
	CONF_ARG_CONNECTIONS,
	CONF_ARG_CONNECTIONS_PER_IP,
	CONF_ARG_ERRORS,
	CONF_ARG_MAX_RECEIVED,
	CONF_ARG_TIMEOUT_COMMAND,
	CONF_ARG_TIMEOUT_DATA,
	CONF_ARG_TIMEOUT_TLS,
	CONF_ARG_SHUTDOWN_GRACE,
	CONF_ARG_TLS_CERT,
	CONF_ARG_TLS_KEY,
};

struct conf_parser;

struct conf_directive {
	const char	*name;
	enum conf_ctx	 ctx;		/* where it may appear */
	int		 min, max;	/* argument counts; max -1: no limit */
	enum conf_block	 block;
	bool		 repeat;	/* may appear more than once */
	enum conf_ctx	 opens;		/* the block it opens, if any */
	enum conf_arg	 arg;		/* which field, for shared handlers */
	const char	*usage;		/* arguments, for messages */
	int		(*fn)(struct conf_parser *,
			    const struct conf_directive *, int);
};

struct conf_parser {
	const char	*buf;
	size_t		 len;
	size_t		 pos;
	int		 line;		/* line the lexer is on */
	int		 tok_line;	/* line of the last token */
	struct sbuf	 tok;		/* text of the last word */
	const char	*file;		/* for messages */
	const char	*basedir;	/* NULL: relative paths stay relative */
	struct sbuf	*err;
	bool		 failed;
	struct conf	*conf;
	enum conf_ctx	 ctx;
	int		 block_line;
	size_t		 cur;		/* listener or domain being filled */
	char		**words;	/* the statement being handled */
	size_t		 nwords;
	size_t		 words_size;
	int		*seen;		/* line of each directive, 0: not yet */
	size_t		 listeners_cap;	/* allocated conf->listeners */
	size_t		 domains_cap;	/* allocated conf->domains */
	size_t		*domset;	/* open addressing: domain index + 1 */
	size_t		 domset_size;
	char		*tls_cert;	/* top-level defaults, resolved */
	char		*tls_key;
	int		 tls_cert_line;
	int		 tls_key_line;
	char		 show[2][CONF_SHOW_MAX * 4 + 8];
	int		 show_next;
};

static int conf_do_hostname(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_spool_dir(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_user(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_workers(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_tls(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_listen(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_block(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_domain(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_limit(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_bare_newline(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_destination(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_facility(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_level(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_recipients(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_recipients_file(struct conf_parser *,
    const struct conf_directive *, int);

#define D_TOP(n, lo, hi, blk, rep, opens, use, fn) \
	{ n, CONF_CTX_TOP, lo, hi, blk, rep, opens, CONF_ARG_NONE, use, fn }
#define D_IN(ctx, n, lo, hi, rep, arg, use, fn) \
	{ n, ctx, lo, hi, CONF_BLOCK_NONE, rep, CONF_CTX_TOP, arg, use, fn }

/*
 * Every directive, by context. Domain entries come before limits ones
 * because "recipients" exists in both and the domain one is what people
 * misplace (see conf_misplaced).
 */
static const struct conf_directive conf_directives[] = {
	D_TOP("hostname", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "NAME",
	    conf_do_hostname),
	D_TOP("spool_dir", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "PATH",
	    conf_do_spool_dir),
	D_TOP("user", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "NAME",
	    conf_do_user),
	D_TOP("workers", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP, "N",
	    conf_do_workers),
	{ "tls_cert", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    CONF_ARG_TLS_CERT, "PATH", conf_do_tls },
	{ "tls_key", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    CONF_ARG_TLS_KEY, "PATH", conf_do_tls },
	D_TOP("listen", 1, 1, CONF_BLOCK_OPTIONAL, true, CONF_CTX_LISTEN,
	    "ADDR:PORT [{ ... }]", conf_do_listen),
	D_TOP("limits", 0, 0, CONF_BLOCK_REQUIRED, false, CONF_CTX_LIMITS,
	    "{ ... }", conf_do_block),
	D_TOP("log", 0, 0, CONF_BLOCK_REQUIRED, false, CONF_CTX_LOG,
	    "{ ... }", conf_do_block),
	D_TOP("domain", 1, 1, CONF_BLOCK_OPTIONAL, true, CONF_CTX_DOMAIN,
	    "NAME [{ ... }]", conf_do_domain),

	D_IN(CONF_CTX_DOMAIN, "recipients", 1, -1, true, CONF_ARG_NONE,
	    "PATTERN...", conf_do_recipients),
	D_IN(CONF_CTX_DOMAIN, "recipients_file", 1, 1, false, CONF_ARG_NONE,
	    "PATH", conf_do_recipients_file),

	D_IN(CONF_CTX_LIMITS, "message_size", 1, 1, false,
	    CONF_ARG_MESSAGE_SIZE, "SIZE", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "recipients", 1, 1, false, CONF_ARG_RECIPIENTS,
	    "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "connections", 1, 1, false,
	    CONF_ARG_CONNECTIONS, "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "connections_per_ip", 1, 1, false,
	    CONF_ARG_CONNECTIONS_PER_IP, "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "errors", 1, 1, false, CONF_ARG_ERRORS, "N",
	    conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "max_received", 1, 1, false,
	    CONF_ARG_MAX_RECEIVED, "N", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "timeout_command", 1, 1, false,
	    CONF_ARG_TIMEOUT_COMMAND, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "timeout_data", 1, 1, false,
	    CONF_ARG_TIMEOUT_DATA, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "timeout_tls", 1, 1, false,
	    CONF_ARG_TIMEOUT_TLS, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "shutdown_grace", 1, 1, false,
	    CONF_ARG_SHUTDOWN_GRACE, "DURATION", conf_do_limit),
	D_IN(CONF_CTX_LIMITS, "bare_newline", 1, 1, false, CONF_ARG_NONE,
	    "normalize|reject", conf_do_bare_newline),

	D_IN(CONF_CTX_LISTEN, "tls_cert", 1, 1, false, CONF_ARG_TLS_CERT,
	    "PATH", conf_do_tls),
	D_IN(CONF_CTX_LISTEN, "tls_key", 1, 1, false, CONF_ARG_TLS_KEY, "PATH",
	    conf_do_tls),

	D_IN(CONF_CTX_LOG, "destination", 1, 1, false, CONF_ARG_NONE,
	    "syslog|stderr", conf_do_destination),
	D_IN(CONF_CTX_LOG, "facility", 1, 1, false, CONF_ARG_NONE, "NAME",
	    conf_do_facility),
	D_IN(CONF_CTX_LOG, "level", 1, 1, false, CONF_ARG_NONE,
	    "debug|info|warning|error", conf_do_level),
};

#define CONF_NDIRECTIVES (sizeof(conf_directives) / sizeof(conf_directives[0]))

/*
 * Messages.
 */

static void
conf_report(struct sbuf *err, const char *file, int line, const char *msg)
{
	int rc;

	if (err == NULL)
		return;
	if (line > 0)
		rc = sbuf_printf(err, "%s:%d: %s", file, line, msg);
	else
		rc = sbuf_printf(err, "%s: %s", file, msg);
	if (rc == -1) {
		/* The caller's buffer is full; nothing better to do. */
	}
}

/* Writes s as printable ASCII (\xHH for the rest), cut at CONF_SHOW_MAX. */
static const char *
conf_show_into(char *out, size_t outsize, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < len && i < CONF_SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 5 > outsize)
			break;
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (i < len && o + 4 <= outsize) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* A token fit for a message; two may be live at a time. */
static const char *
conf_show(struct conf_parser *p, const char *s)
{
	char *out = p->show[p->show_next];

	p->show_next ^= 1;
	return conf_show_into(out, sizeof(p->show[0]), s, strlen(s));
}

static void
conf_verr(struct conf_parser *p, int line, const char *prefix,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void
conf_verr(struct conf_parser *p, int line, const char *prefix,
    const char *fmt, va_list ap)
{
	char msg[CONF_MSG_MAX];
	size_t n;

	/* Only the first error is reported: later ones tend to be echoes. */
	if (p->failed)
		return;
	p->failed = true;
	n = strlen(prefix);
	if (n >= sizeof(msg))
		n = 0;
	memcpy(msg, prefix, n);
	/* Truncation is harmless: tokens are already cut by conf_show. */
	(void)vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	conf_report(p->err, p->file, line, msg);
}

static int
conf_err(struct conf_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports a structural error; always returns -1. */
static int
conf_err(struct conf_parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_verr(p, line, "", fmt, ap);
	va_end(ap);
	return -1;
}

static int
conf_errc(struct conf_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports an error in a directive, naming the block it is in; -1. */
static int
conf_errc(struct conf_parser *p, int line, const char *fmt, ...)
{
	char prefix[32];
	va_list ap;

	if (p->ctx == CONF_CTX_TOP)
		prefix[0] = '\0';
	else
		(void)snprintf(prefix, sizeof(prefix), "%s: ",
		    conf_ctx_names[p->ctx]);
	va_start(ap, fmt);
	conf_verr(p, line, prefix, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Values.
 */

struct conf_unit {
	char		suffix;
	uint64_t	mult;
};

static const struct conf_unit conf_units_size[] = {
	{ 'K', 1024 }, { 'k', 1024 },
	{ 'M', 1024 * 1024 }, { 'm', 1024 * 1024 },
	{ 'G', 1024 * 1024 * 1024 }, { 'g', 1024 * 1024 * 1024 },
	{ '\0', 0 },
};

static const struct conf_unit conf_units_duration[] = {
	{ 's', 1 }, { 'm', 60 }, { 'h', 60 * 60 }, { 'd', 24 * 60 * 60 },
	{ '\0', 0 },
};

static const struct conf_unit conf_units_none[] = {
	{ '\0', 0 },
};

/*
 * Parses decimal digits and an optional one-letter unit. Returns 0, -1
 * when s is not of that form, -2 when the value is above max.
 */
static int
conf_parse_scaled(const char *s, const struct conf_unit *units, uint64_t max,
    uint64_t *out)
{
	const struct conf_unit *u;
	uint64_t v = 0, mult = 1;
	bool big = false;
	size_t i;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	for (i = 0; isdigit((unsigned char)s[i]); i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			big = true;
		else
			v = v * 10 + d;
	}
	if (s[i] != '\0') {
		for (u = units; u->suffix != '\0'; u++)
			if (u->suffix == s[i])
				break;
		if (u->suffix == '\0' || s[i + 1] != '\0')
			return -1;
		mult = u->mult;
	}
	if (big || v > max / mult)
		return -2;
	*out = v * mult;
	return 0;
}

/* RFC 1035 host name syntax; "*." in front when wildcard is allowed. */
static bool
conf_domain_valid(const char *s, bool wildcard)
{
	size_t len = strlen(s), label = 0, i;

	if (wildcard && s[0] == '*' && s[1] == '.') {
		s += 2;
		len -= 2;
	}
	if (len == 0 || len > CONF_DOMAIN_MAX)
		return false;
	for (i = 0; i <= len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > CONF_LABEL_MAX ||
			    s[i - 1] == '-')
				return false;
			label = 0;
		} else if (isalnum(c) || c == '-') {
			if (label == 0 && c == '-')
				return false;
			label++;
		} else
			return false;
	}
	return true;
}

static bool
conf_user_valid(const char *s)
{
	size_t i;

	if (s[0] == '\0' || s[0] == '-' || strlen(s) > CONF_USER_MAX)
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' &&
		    s[i] != '-' && s[i] != '.')
			return false;
	return true;
}

/* The directory part of a file name; NULL when it has none. */
static char *
conf_dirname(const char *file)
{
	const char *slash = strrchr(file, '/');

	if (slash == NULL)
		return NULL;
	if (slash == file)
		return xstrdup("/");
	return xstrndup(file, (size_t)(slash - file));
}

/* path as is when absolute (or no base directory), else basedir/path. */
static char *
conf_resolve(const char *basedir, const char *path)
{
	size_t blen, plen;
	bool slash;
	char *out;

	if (path[0] == '/' || basedir == NULL || basedir[0] == '\0')
		return xstrdup(path);
	blen = strlen(basedir);
	plen = strlen(path);
	slash = basedir[blen - 1] != '/';
	out = xmalloc(blen + slash + plen + 1);
	memcpy(out, basedir, blen);
	if (slash)
		out[blen] = '/';
	memcpy(out + blen + slash, path, plen + 1);
	return out;
}

/*
 * Recipient patterns.
 */

static bool
conf_pattern_wild(const char *s)
{
	return strpbrk(s, "*?[\\") != NULL;
}

/*
 * Checks s[0..len) as "local" or "local@DOMAIN" for d and returns the
 * local part. On error returns NULL with why (a predicate) filled in.
 */
static char *
conf_pattern_new(const struct conf_domain *d, const char *s, size_t len,
    char *why, size_t whysize)
{
	const char *at = NULL;
	size_t i, llen;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			(void)snprintf(why, whysize,
			    "contains a control character");
			return NULL;
		}
		if (c == '@')
			at = s + i;
	}
	llen = at != NULL ? (size_t)(at - s) : len;
	if (at != NULL) {
		size_t dlen = len - llen - 1;

		if (dlen != strlen(d->name) ||
		    strncasecmp(at + 1, d->name, dlen) != 0) {
			(void)snprintf(why, whysize,
			    "is not in domain '%s'", d->name);
			return NULL;
		}
	}
	if (llen == 0) {
		(void)snprintf(why, whysize, "has an empty local part");
		return NULL;
	}
	if (llen > CONF_PATTERN_MAX) {
		(void)snprintf(why, whysize, "is longer than %d bytes",
		    CONF_PATTERN_MAX);
		return NULL;
	}
	/* fnmatch never matches a pattern ending in an unpaired '\'. */
	for (i = llen; i > 0 && s[i - 1] == '\\'; i--)
		continue;
	if ((llen - i) % 2 == 1) {
		(void)snprintf(why, whysize, "ends with a lone '\\'");
		return NULL;
	}
	return xstrndup(s, llen);
}

static int
conf_casecmp_p(const void *a, const void *b)
{
	const char *const *sa = a, *const *sb = b;

	return strcasecmp(*sa, *sb);
}

/* Puts exact patterns first, sorted, for conf_domain_accepts. */
static void
conf_domain_index(struct conf_domain *d)
{
	char **tmp;
	size_t i, k = 0;

	d->nexact = 0;
	if (d->nrecipients == 0)
		return;
	tmp = xreallocarray(NULL, d->nrecipients, sizeof(tmp[0]));
	for (i = 0; i < d->nrecipients; i++)
		if (!conf_pattern_wild(d->recipients[i]))
			tmp[k++] = d->recipients[i];
	d->nexact = k;
	for (i = 0; i < d->nrecipients; i++)
		if (conf_pattern_wild(d->recipients[i]))
			tmp[k++] = d->recipients[i];
	memcpy(d->recipients, tmp, d->nrecipients * sizeof(tmp[0]));
	free(tmp);
	qsort(d->recipients, d->nexact, sizeof(d->recipients[0]),
	    conf_casecmp_p);
}

/*
 * Lexer: words, ';' or newline, '{', '}'. Comments and blanks vanish here.
 */

static bool
conf_is_delim(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' ||
	    c == '{' || c == '}' || c == '#';
}

static enum conf_tok
conf_lex_quoted(struct conf_parser *p)
{
	int start = p->line;

	p->pos++;		/* the opening quote */
	for (;;) {
		unsigned char c;

		if (p->pos >= p->len || p->buf[p->pos] == '\n') {
			conf_err(p, start, "unterminated quoted string");
			return CONF_TOK_ERROR;
		}
		c = (unsigned char)p->buf[p->pos++];
		if (c == '"')
			break;
		if (c == '\\') {
			if (p->pos >= p->len || p->buf[p->pos] == '\n') {
				conf_err(p, start,
				    "unterminated quoted string");
				return CONF_TOK_ERROR;
			}
			c = (unsigned char)p->buf[p->pos++];
			if (c != '"' && c != '\\') {
				char s[2] = { (char)c, '\0' };

				conf_err(p, start, "invalid escape '\\%s' in "
				    "quoted string (only \\\" and \\\\ are "
				    "allowed)", conf_show(p, s));
				return CONF_TOK_ERROR;
			}
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			conf_err(p, start,
			    "invalid character 0x%02x in quoted string", c);
			return CONF_TOK_ERROR;
		}
		if (sbuf_append_char(&p->tok, (char)c) == -1) {
			conf_err(p, start, "word longer than %d bytes",
			    CONF_TOKEN_MAX);
			return CONF_TOK_ERROR;
		}
	}
	if (p->pos < p->len && !conf_is_delim(p->buf[p->pos])) {
		conf_err(p, start, "a quoted string must be followed by a "
		    "space or the end of the statement");
		return CONF_TOK_ERROR;
	}
	return CONF_TOK_WORD;
}

static enum conf_tok
conf_lex_word(struct conf_parser *p)
{
	while (p->pos < p->len && !conf_is_delim(p->buf[p->pos])) {
		unsigned char c = (unsigned char)p->buf[p->pos];

		if (c == '"') {
			conf_err(p, p->line, "unexpected '\"' inside a word "
			    "(quote the whole word)");
			return CONF_TOK_ERROR;
		}
		if (c < 0x20 || c == 0x7f) {
			conf_err(p, p->line, "invalid character 0x%02x", c);
			return CONF_TOK_ERROR;
		}
		if (sbuf_append_char(&p->tok, (char)c) == -1) {
			conf_err(p, p->line, "word longer than %d bytes",
			    CONF_TOKEN_MAX);
			return CONF_TOK_ERROR;
		}
		p->pos++;
	}
	return CONF_TOK_WORD;
}

static enum conf_tok
conf_lex(struct conf_parser *p)
{
	sbuf_reset(&p->tok);
	for (;;) {
		char c;

		p->tok_line = p->line;
		if (p->pos >= p->len)
			return CONF_TOK_EOF;
		c = p->buf[p->pos];
		switch (c) {
		case ' ':
		case '\t':
		case '\r':
			p->pos++;
			continue;
		case '#':
			while (p->pos < p->len && p->buf[p->pos] != '\n')
				p->pos++;
			continue;
		case '\n':
			p->pos++;
			if (p->line < INT_MAX)
				p->line++;
			return CONF_TOK_END;
		case ';':
			p->pos++;
			return CONF_TOK_END;
		case '{':
			p->pos++;
			return CONF_TOK_OPEN;
		case '}':
			p->pos++;
			return CONF_TOK_CLOSE;
		case '"':
			return conf_lex_quoted(p);
		default:
			return conf_lex_word(p);
		}
	}
}

static void
conf_words_clear(struct conf_parser *p)
{
	size_t i;

	for (i = 0; i < p->nwords; i++)
		free(p->words[i]);
	p->nwords = 0;
}

/*
 * Reads the words of one statement and returns what ended it. *line_out
 * is the line of its first word, or of the terminator when there is none.
 */
static enum conf_tok
conf_statement(struct conf_parser *p, int *line_out)
{
	enum conf_tok t;

	conf_words_clear(p);
	*line_out = p->line;
	for (;;) {
		t = conf_lex(p);
		if (p->nwords == 0)
			*line_out = p->tok_line;
		if (t != CONF_TOK_WORD)
			return t;
		if (p->nwords == p->words_size) {
			p->words_size = p->words_size ? p->words_size * 2 : 8;
			p->words = xreallocarray(p->words, p->words_size,
			    sizeof(p->words[0]));
		}
		p->words[p->nwords++] = xstrndup(p->tok.data, p->tok.len);
	}
}

/* The line of the last line in the buffer, for errors found at its end. */
static int
conf_last_line(const struct conf_parser *p)
{
	if (p->len > 0 && p->buf[p->len - 1] == '\n' && p->line > 1)
		return p->line - 1;
	return p->line;
}

/*
 * Directive handlers. p->words[0] is the keyword; the argument count has
 * been checked against the table.
 */

static int
conf_do_hostname(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (!conf_domain_valid(arg, false))
		return conf_errc(p, line, "'%s' needs a valid host name, "
		    "got '%s'", dir->name, conf_show(p, arg));
	free(p->conf->hostname);
	p->conf->hostname = xstrdup(arg);
	return 0;
}

/* Resolves a path argument into *out; empty paths are refused. */
static int
conf_path_arg(struct conf_parser *p, const struct conf_directive *dir,
    int line, char **out)
{
	const char *arg = p->words[1];

	if (arg[0] == '\0')
		return conf_errc(p, line, "'%s' needs a path, got an empty "
		    "string", dir->name);
	free(*out);
	*out = conf_resolve(p->basedir, arg);
	return 0;
}

static int
conf_do_spool_dir(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	return conf_path_arg(p, dir, line, &p->conf->spool_dir);
}

static int
conf_do_user(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (!conf_user_valid(arg))
		return conf_errc(p, line, "'%s' needs a user name (letters, "
		    "digits, '.', '_', '-'; at most %d), got '%s'", dir->name,
		    CONF_USER_MAX, conf_show(p, arg));
	free(p->conf->user);
	p->conf->user = xstrdup(arg);
	return 0;
}

static int
conf_do_workers(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	uint64_t v;

	if (conf_parse_scaled(arg, conf_units_none, CONF_WORKERS_MAX, &v) !=
	    0 || v < 1)
		return conf_errc(p, line, "'%s' must be a number from 1 to "
		    "%d, got '%s'", dir->name, CONF_WORKERS_MAX,
		    conf_show(p, arg));
	p->conf->workers = (unsigned)v;
	return 0;
}

static int
conf_do_tls(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_listener *l;
	bool cert = dir->arg == CONF_ARG_TLS_CERT;

	if (p->ctx == CONF_CTX_TOP) {
		if (cert)
			p->tls_cert_line = line;
		else
			p->tls_key_line = line;
		return conf_path_arg(p, dir, line,
		    cert ? &p->tls_cert : &p->tls_key);
	}
	l = &p->conf->listeners[p->cur];
	return conf_path_arg(p, dir, line, cert ? &l->tls_cert : &l->tls_key);
}

/* Splits "ADDR:PORT" into a host ("*", IPv4, or IPv6 without brackets). */
static int
conf_do_listen(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_listener *l;
	const char *arg = p->words[1], *colon, *port;
	char *host, addr[sizeof(struct in6_addr)];
	char portbuf[8];
	uint64_t v;
	size_t i;

	(void)dir;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL)
			return conf_errc(p, line, "listen: missing ']' after "
			    "the IPv6 address in '%s'", conf_show(p, arg));
		if (close[1] != ':')
			return conf_errc(p, line, "listen: expected ':PORT' "
			    "after ']' in '%s'", conf_show(p, arg));
		host = xstrndup(arg + 1, (size_t)(close - arg - 1));
		port = close + 2;
		if (inet_pton(AF_INET6, host, addr) != 1) {
			conf_errc(p, line, "listen: '%s' is not an IPv6 "
			    "address", conf_show(p, host));
			free(host);
			return -1;
		}
	} else {
		colon = strrchr(arg, ':');
		if (colon == NULL)
			return conf_errc(p, line, "listen: expected ADDR:PORT, "
			    "got '%s'", conf_show(p, arg));
		host = xstrndup(arg, (size_t)(colon - arg));
		port = colon + 1;
		if (strchr(host, ':') != NULL) {
			conf_errc(p, line, "listen: an IPv6 address must be "
			    "in brackets, as in [::1]:25, got '%s'",
			    conf_show(p, arg));
			free(host);
			return -1;
		}
		if (strcmp(host, "*") != 0 &&
		    inet_pton(AF_INET, host, addr) != 1) {
			conf_errc(p, line, "listen: '%s' is not an IPv4 "
			    "address, [IPv6] address or '*'",
			    conf_show(p, host));
			free(host);
			return -1;
		}
	}
	if (conf_parse_scaled(port, conf_units_none, 65535, &v) != 0 ||
	    v == 0) {
		conf_errc(p, line, "listen: bad port '%s' in '%s' (expected "
		    "1-65535)", conf_show(p, port), conf_show(p, arg));
		free(host);
		return -1;
	}
	(void)snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)v);
	for (i = 0; i < conf->nlisteners; i++) {
		l = &conf->listeners[i];
		if (strcmp(l->host, host) == 0 && strcmp(l->port, portbuf) ==
		    0) {
			conf_errc(p, line, "listen: duplicate address '%s' "
			    "(first at line %d)", conf_show(p, arg), l->line);
			free(host);
			return -1;
		}
	}
	if (conf->nlisteners == p->listeners_cap) {
		p->listeners_cap = p->listeners_cap ? p->listeners_cap * 2 : 4;
		conf->listeners = xreallocarray(conf->listeners,
		    p->listeners_cap, sizeof(conf->listeners[0]));
	}
	l = &conf->listeners[conf->nlisteners];
	memset(l, 0, sizeof(*l));
	l->host = host;
	l->port = xstrdup(portbuf);
	l->line = line;
	p->cur = conf->nlisteners++;
	return 0;
}

static int
conf_do_block(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	(void)p;
	(void)dir;
	(void)line;
	return 0;
}

/* FNV-1a: the duplicate check must not be quadratic in the domain count. */
static size_t
conf_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return (size_t)h;
}

/* Index of a domain named name, or -1; inserts index idx when absent. */
static long
conf_domset_add(struct conf_parser *p, const char *name, size_t idx)
{
	const struct conf *conf = p->conf;
	size_t i, mask;

	if (p->domset_size < 2 * (conf->ndomains + 1)) {
		size_t n = p->domset_size ? p->domset_size * 2 : 64, j;

		free(p->domset);
		p->domset = xcalloc(n, sizeof(p->domset[0]));
		p->domset_size = n;
		for (j = 0; j < conf->ndomains; j++) {
			i = conf_hash(conf->domains[j].name) & (n - 1);
			while (p->domset[i] != 0)
				i = (i + 1) & (n - 1);
			p->domset[i] = j + 1;
		}
	}
	mask = p->domset_size - 1;
	for (i = conf_hash(name) & mask; p->domset[i] != 0;
	    i = (i + 1) & mask)
		if (strcmp(conf->domains[p->domset[i] - 1].name, name) == 0)
			return (long)(p->domset[i] - 1);
	p->domset[i] = idx + 1;
	return -1;
}

static int
conf_do_domain(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_domain *d;
	char *name;
	long dup;
	size_t i;

	(void)dir;
	name = xstrdup(p->words[1]);
	for (i = 0; name[i] != '\0'; i++)
		name[i] = (char)tolower((unsigned char)name[i]);
	if (!conf_domain_valid(name, true)) {
		conf_errc(p, line, "domain: '%s' is not a domain name or "
		    "'*.' followed by one", conf_show(p, p->words[1]));
		free(name);
		return -1;
	}
	if ((dup = conf_domset_add(p, name, conf->ndomains)) != -1) {
		conf_errc(p, line, "domain: duplicate domain '%s' (first at "
		    "line %d)", conf_show(p, name), conf->domains[dup].line);
		free(name);
		return -1;
	}
	if (conf->ndomains == p->domains_cap) {
		p->domains_cap = p->domains_cap ? p->domains_cap * 2 : 8;
		conf->domains = xreallocarray(conf->domains, p->domains_cap,
		    sizeof(conf->domains[0]));
	}
	d = &conf->domains[conf->ndomains];
	memset(d, 0, sizeof(*d));
	d->name = name;
	d->line = line;
	p->cur = conf->ndomains++;
	return 0;
}

static unsigned *
conf_limit_field(struct conf_limits *lim, enum conf_arg arg)
{
	switch (arg) {
	case CONF_ARG_RECIPIENTS:
		return &lim->recipients;
	case CONF_ARG_CONNECTIONS:
		return &lim->connections;
	case CONF_ARG_CONNECTIONS_PER_IP:
		return &lim->connections_per_ip;
	case CONF_ARG_ERRORS:
		return &lim->errors;
	case CONF_ARG_MAX_RECEIVED:
		return &lim->max_received;
	case CONF_ARG_TIMEOUT_COMMAND:
		return &lim->timeout_command;
	case CONF_ARG_TIMEOUT_DATA:
		return &lim->timeout_data;
	case CONF_ARG_TIMEOUT_TLS:
		return &lim->timeout_tls;
	case CONF_ARG_SHUTDOWN_GRACE:
		return &lim->shutdown_grace;
	default:
		log_panic("conf_limit_field: no field for %d", (int)arg);
	}
}

static int
conf_do_limit(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	const struct conf_unit *units;
	const char *what;
	uint64_t v, max;
	int rc;

	switch (dir->arg) {
	case CONF_ARG_MESSAGE_SIZE:
		units = conf_units_size;
		max = UINT64_MAX;
		what = "a size (a number with an optional K, M or G suffix)";
		break;
	case CONF_ARG_TIMEOUT_COMMAND:
	case CONF_ARG_TIMEOUT_DATA:
	case CONF_ARG_TIMEOUT_TLS:
	case CONF_ARG_SHUTDOWN_GRACE:
		units = conf_units_duration;
		max = UINT_MAX;
		what = "a duration (a number with an optional s, m, h or d "
		    "suffix)";
		break;
	default:
		units = conf_units_none;
		max = UINT_MAX;
		what = "a positive number";
		break;
	}
	rc = conf_parse_scaled(arg, units, max, &v);
	if (rc == -1)
		return conf_errc(p, line, "'%s' needs %s, got '%s'",
		    dir->name, what, conf_show(p, arg));
	if (rc == -2)
		return conf_errc(p, line, "'%s' value '%s' is too large",
		    dir->name, conf_show(p, arg));
	if (v == 0)
		return conf_errc(p, line, "'%s' must be greater than zero, "
		    "got '%s'", dir->name, conf_show(p, arg));
	if (dir->arg == CONF_ARG_MESSAGE_SIZE)
		p->conf->limits.message_size = v;
	else
		*conf_limit_field(&p->conf->limits, dir->arg) = (unsigned)v;
	return 0;
}

static int
conf_do_bare_newline(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (strcmp(arg, "normalize") == 0)
		p->conf->limits.bare_newline = CONF_NEWLINE_NORMALIZE;
	else if (strcmp(arg, "reject") == 0)
		p->conf->limits.bare_newline = CONF_NEWLINE_REJECT;
	else
		return conf_errc(p, line, "'%s' must be 'normalize' or "
		    "'reject', got '%s'", dir->name, conf_show(p, arg));
	return 0;
}

static int
conf_do_destination(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];

	if (strcmp(arg, "syslog") == 0)
		p->conf->log_stderr = false;
	else if (strcmp(arg, "stderr") == 0)
		p->conf->log_stderr = true;
	else
		return conf_errc(p, line, "'%s' must be 'syslog' or "
		    "'stderr', got '%s'", dir->name, conf_show(p, arg));
	return 0;
}

static int
conf_do_facility(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	int f;

	if ((f = log_facility_from_name(arg)) == -1)
		return conf_errc(p, line, "unknown %s '%s' (mail, daemon, "
		    "user, local0 to local7)", dir->name, conf_show(p, arg));
	p->conf->log_facility = f;
	return 0;
}

static int
conf_do_level(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	static const struct {
		const char	*name;
		enum log_level	 level;
	} levels[] = {
		{ "debug", LOG_LEVEL_DEBUG }, { "info", LOG_LEVEL_INFO },
		{ "warning", LOG_LEVEL_WARN }, { "error", LOG_LEVEL_ERR },
	};
	const char *arg = p->words[1];
	size_t i;

	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(arg, levels[i].name) == 0) {
			p->conf->log_level = (int)levels[i].level;
			return 0;
		}
	}
	return conf_errc(p, line, "'%s' must be debug, info, warning or "
	    "error, got '%s'", dir->name, conf_show(p, arg));
}

static int
conf_do_recipients(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_domain *d = &p->conf->domains[p->cur];
	char why[128], *local;
	size_t i;

	(void)dir;
	/* One realloc per statement: lists can be long. */
	d->recipients = xreallocarray(d->recipients,
	    d->nrecipients + p->nwords - 1, sizeof(d->recipients[0]));
	for (i = 1; i < p->nwords; i++) {
		const char *pat = p->words[i];

		local = conf_pattern_new(d, pat, strlen(pat), why,
		    sizeof(why));
		if (local == NULL)
			return conf_errc(p, line, "pattern '%s' %s",
			    conf_show(p, pat), why);
		d->recipients[d->nrecipients++] = local;
	}
	d->has_list = true;
	return 0;
}

static int
conf_do_recipients_file(struct conf_parser *p,
    const struct conf_directive *dir, int line)
{
	struct conf_domain *d = &p->conf->domains[p->cur];

	if (conf_path_arg(p, dir, line, &d->recipients_file) == -1)
		return -1;
	d->has_list = true;
	return 0;
}

/*
 * Dispatch.
 */

static const struct conf_directive *
conf_directive_find(enum conf_ctx ctx, const char *name)
{
	size_t i;

	for (i = 0; i < CONF_NDIRECTIVES; i++)
		if (conf_directives[i].ctx == ctx &&
		    strcmp(conf_directives[i].name, name) == 0)
			return &conf_directives[i];
	return NULL;
}

/* Levenshtein distance of two short strings, for "did you mean". */
static size_t
conf_distance(const char *a, const char *b)
{
	size_t row[CONF_SUGGEST_MAX + 1], la = strlen(a), lb = strlen(b);
	size_t i, j;

	if (la > CONF_SUGGEST_MAX || lb > CONF_SUGGEST_MAX)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j], best;

			best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

/* A known directive of ctx close to kw, or NULL. */
static const char *
conf_suggest(enum conf_ctx ctx, const char *kw)
{
	const char *best = NULL;
	size_t i, bestd = 3;

	if (strlen(kw) < 3)
		return NULL;
	for (i = 0; i < CONF_NDIRECTIVES; i++) {
		size_t dist;

		if (conf_directives[i].ctx != ctx)
			continue;
		dist = conf_distance(kw, conf_directives[i].name);
		if (dist < bestd) {
			bestd = dist;
			best = conf_directives[i].name;
		}
	}
	return best;
}

/* Reports a keyword that is unknown here: misplaced, or unknown at all. */
static int
conf_misplaced(struct conf_parser *p, int line, const char *kw)
{
	char where[64] = "";
	const char *hint;
	size_t i, n = 0;
	bool seen[CONF_CTX_COUNT] = { false };

	for (i = 0; i < CONF_NDIRECTIVES; i++) {
		enum conf_ctx c = conf_directives[i].ctx;

		if (strcmp(conf_directives[i].name, kw) != 0 || seen[c])
			continue;
		seen[c] = true;
		/* Every name fits: they are a few short words. */
		(void)snprintf(where + strlen(where),
		    sizeof(where) - strlen(where), "%s%s",
		    n++ > 0 ? " or " : "", conf_ctx_names[c]);
	}
	if (n > 0 && p->ctx == CONF_CTX_TOP)
		return conf_err(p, line, "directive '%s' is not allowed "
		    "outside a %s block", conf_show(p, kw), where);
	if (n > 0 && !seen[CONF_CTX_TOP])
		return conf_err(p, line, "directive '%s' is not allowed in a "
		    "%s block (only in a %s block)", conf_show(p, kw),
		    conf_ctx_names[p->ctx], where);
	/* A top-level keyword inside a block usually means a lost '}'. */
	if (n > 0)
		return conf_err(p, line, "directive '%s' is not allowed in a "
		    "%s block (missing '}' for the block opened at line %d?)",
		    conf_show(p, kw), conf_ctx_names[p->ctx], p->block_line);
	if ((hint = conf_suggest(p->ctx, kw)) != NULL)
		return conf_errc(p, line, "unknown directive '%s' (did you "
		    "mean '%s'?)", conf_show(p, kw), hint);
	return conf_errc(p, line, "unknown directive '%s'", conf_show(p, kw));
}

static int
conf_dispatch(struct conf_parser *p, int line, bool block)
{
	const struct conf_directive *dir;
	const char *kw = p->words[0];
	size_t nargs = p->nwords - 1, idx, i;

	if ((dir = conf_directive_find(p->ctx, kw)) == NULL)
		return conf_misplaced(p, line, kw);
	idx = (size_t)(dir - conf_directives);
	if (nargs < (size_t)dir->min ||
	    (dir->max >= 0 && nargs > (size_t)dir->max))
		return conf_errc(p, line, "wrong number of arguments for '%s' "
		    "(usage: %s %s)", dir->name, dir->name, dir->usage);
	if (block && dir->block == CONF_BLOCK_NONE)
		return conf_errc(p, line, "'%s' does not take a '{' block",
		    dir->name);
	if (!block && dir->block == CONF_BLOCK_REQUIRED)
		return conf_errc(p, line, "'%s' needs a '{' on the same line",
		    dir->name);
	if (!dir->repeat && p->seen[idx] != 0)
		return conf_errc(p, line, "duplicate '%s' (first at line %d)",
		    dir->name, p->seen[idx]);
	p->seen[idx] = line;
	if (dir->fn(p, dir, line) == -1)
		return -1;
	if (block) {
		p->ctx = dir->opens;
		p->block_line = line;
		/* Per-block directives may appear once in each block. */
		for (i = 0; i < CONF_NDIRECTIVES; i++)
			if (conf_directives[i].ctx == p->ctx)
				p->seen[i] = 0;
	}
	return 0;
}

/*
 * Checks made once the whole file is read: TLS pairs, inheritance of the
 * top-level certificate, and the directives that must be present.
 */
static int
conf_finish(struct conf_parser *p)
{
	struct conf *conf = p->conf;
	size_t i;

	if (p->tls_cert != NULL && p->tls_key == NULL)
		return conf_err(p, p->tls_cert_line, "tls_cert is set but "
		    "tls_key is not");
	if (p->tls_key != NULL && p->tls_cert == NULL)
		return conf_err(p, p->tls_key_line, "tls_key is set but "
		    "tls_cert is not");
	for (i = 0; i < conf->nlisteners; i++) {
		struct conf_listener *l = &conf->listeners[i];

		if (l->tls_cert != NULL && l->tls_key == NULL)
			return conf_err(p, l->line, "listen: tls_cert is set "
			    "but tls_key is not");
		if (l->tls_key != NULL && l->tls_cert == NULL)
			return conf_err(p, l->line, "listen: tls_key is set "
			    "but tls_cert is not");
		if (l->tls_cert == NULL && p->tls_cert != NULL) {
			l->tls_cert = xstrdup(p->tls_cert);
			l->tls_key = xstrdup(p->tls_key);
		}
	}
	if (conf->nlisteners == 0)
		return conf_err(p, conf_last_line(p), "no 'listen' directive");
	if (conf->ndomains == 0)
		return conf_err(p, conf_last_line(p), "no 'domain' directive");
	for (i = 0; i < conf->ndomains; i++)
		conf_domain_index(&conf->domains[i]);
	return 0;
}

static int
conf_run(struct conf_parser *p)
{
	enum conf_tok t;
	int line;

	for (;;) {
		t = conf_statement(p, &line);
		if (t == CONF_TOK_ERROR)
			return -1;
		if (p->nwords > 0) {
			if (conf_dispatch(p, line, t == CONF_TOK_OPEN) == -1)
				return -1;
		} else if (t == CONF_TOK_OPEN)
			return conf_err(p, line, "'{' must follow a directive "
			    "on the same line");
		if (t == CONF_TOK_EOF)
			break;
		if (t != CONF_TOK_CLOSE)
			continue;
		if (p->ctx == CONF_CTX_TOP)
			return conf_err(p, p->tok_line, "stray '}' (no block "
			    "is open)");
		p->ctx = CONF_CTX_TOP;
		t = conf_lex(p);
		if (t == CONF_TOK_ERROR)
			return -1;
		if (t == CONF_TOK_EOF)
			break;
		if (t != CONF_TOK_END)
			return conf_err(p, p->tok_line, "unexpected text after "
			    "'}' (end the line or use ';')");
	}
	if (p->ctx != CONF_CTX_TOP)
		return conf_err(p, conf_last_line(p), "missing '}' for block "
		    "opened at line %d", p->block_line);
	return conf_finish(p);
}

static void
conf_defaults(struct conf *conf)
{
	conf->spool_dir = xstrdup(CONF_DEFAULT_SPOOL);
	conf->workers = 8;
	conf->limits.message_size = 50 * 1024 * 1024;
	conf->limits.recipients = 1000;
	conf->limits.connections = 1000;
	conf->limits.connections_per_ip = 50;
	conf->limits.errors = 10;
	conf->limits.max_received = 50;
	conf->limits.timeout_command = 300;
	conf->limits.timeout_data = 180;
	conf->limits.timeout_tls = 60;
	conf->limits.shutdown_grace = 30;
	conf->limits.bare_newline = CONF_NEWLINE_NORMALIZE;
	conf->log_stderr = false;
	conf->log_facility = LOG_MAIL;
	conf->log_level = (int)LOG_LEVEL_INFO;
}

/* conf_parse_buf with the base directory for relative paths given apart. */
static struct conf *
conf_parse(const char *buf, size_t len, const char *file, const char *basedir,
    struct sbuf *err)
{
	struct conf_parser p;
	struct conf *conf;

	memset(&p, 0, sizeof(p));
	p.file = file;
	p.err = err;
	if (len > CONF_FILE_MAX) {
		conf_err(&p, 0, "file too large (more than %u bytes)",
		    CONF_FILE_MAX);
		return NULL;
	}
	p.buf = buf != NULL ? buf : "";
	p.len = buf != NULL ? len : 0;
	p.line = 1;
	p.basedir = basedir;
	sbuf_init(&p.tok, CONF_TOKEN_MAX);
	p.seen = xcalloc(CONF_NDIRECTIVES, sizeof(p.seen[0]));
	conf = xcalloc(1, sizeof(*conf));
	conf->path = xstrdup(file);
	conf_defaults(conf);
	p.conf = conf;

	if (conf_run(&p) == -1) {
		conf_free(conf);
		conf = NULL;
	}

	conf_words_clear(&p);
	free(p.words);
	free(p.seen);
	free(p.domset);
	free(p.tls_cert);
	free(p.tls_key);
	sbuf_release(&p.tok);
	return conf;
}

/*
 * Public interface.
 */

struct conf *
conf_parse_buf(const char *buf, size_t len, const char *filename,
    struct sbuf *err)
{
	struct conf *conf;
	char *basedir;

	if (filename == NULL)
		filename = "";
	basedir = conf_dirname(filename);
	conf = conf_parse(buf, len, filename, basedir, err);
	free(basedir);
	return conf;
}

/* Reads at most max bytes of path into a new NUL-terminated buffer. */
static int
conf_read_file(const char *path, size_t max, char **buf_out, size_t *len_out,
    struct sbuf *err)
{
	char msg[CONF_MSG_MAX];
	size_t len = 0, size = 8192;
	char *buf;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		(void)snprintf(msg, sizeof(msg), "cannot open: %s",
		    strerror(errno));
		conf_report(err, path, 0, msg);
		return -1;
	}
	buf = xmalloc(size);
	for (;;) {
		ssize_t n;

		if (len == size - 1) {
			/* Room for max + 1 bytes tells "too large" apart. */
			if (len > max) {
				(void)snprintf(msg, sizeof(msg),
				    "file too large (more than %zu bytes)",
				    max);
				goto fail;
			}
			size = size > (max + 2) / 2 ? max + 2 : size * 2;
			buf = xrealloc(buf, size);
		}
		n = read(fd, buf + len, size - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			(void)snprintf(msg, sizeof(msg), "cannot read: %s",
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		(void)snprintf(msg, sizeof(msg),
		    "file too large (more than %zu bytes)", max);
		goto fail;
	}
	/* Read-only descriptor: a failing close loses nothing. */
	(void)close(fd);
	buf[len] = '\0';
	*buf_out = buf;
	*len_out = len;
	return 0;
fail:
	(void)close(fd);
	free(buf);
	conf_report(err, path, 0, msg);
	return -1;
}

/*
 * The directory relative paths are resolved against: the config file's
 * own, made absolute so that a later chdir (daemon start) cannot change
 * what the paths mean.
 */
static char *
conf_basedir(const char *path)
{
	char *dir = conf_dirname(path), *cwd, *abs;

	if (dir != NULL && dir[0] == '/')
		return dir;
	if ((cwd = getcwd(NULL, 0)) == NULL)
		return dir;	/* relative, but still right for now */
	if (dir == NULL)
		return cwd;
	abs = conf_resolve(cwd, dir);
	free(cwd);
	free(dir);
	return abs;
}

struct conf *
conf_load(const char *path, struct sbuf *err)
{
	struct conf *conf;
	char *buf, *basedir;
	size_t len, i;

	if (conf_read_file(path, CONF_FILE_MAX, &buf, &len, err) == -1)
		return NULL;
	basedir = conf_basedir(path);
	conf = conf_parse(buf, len, path, basedir, err);
	free(basedir);
	free(buf);
	if (conf == NULL)
		return NULL;
	for (i = 0; i < conf->ndomains; i++) {
		struct conf_domain *d = &conf->domains[i];

		if (d->recipients_file != NULL &&
		    conf_load_recipients(d, d->recipients_file, err) == -1) {
			conf_free(conf);
			return NULL;
		}
	}
	return conf;
}

/*
 * Parses a recipient file held in memory: one pattern per line; a '#' at
 * the start of a line or after a blank starts a comment ('#' is legal in a
 * local part, so "a#b" stays a pattern). Appends to d only on success.
 */
static int
conf_recipients_parse(struct conf_domain *d, const char *buf, size_t len,
    const char *path, struct sbuf *err)
{
	char msg[CONF_MSG_MAX], why[128], show[CONF_SHOW_MAX * 4 + 8];
	char **v = NULL, *local;
	size_t pos = 0, start, end, i, nv = 0, cap = 0;
	int line = 0;

	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);

		start = pos;
		end = nl != NULL ? (size_t)(nl - buf) : len;
		pos = nl != NULL ? end + 1 : len;
		if (line < INT_MAX)
			line++;
		for (i = start; i < end; i++) {
			if (buf[i] == '#' && (i == start || buf[i - 1] == ' ' ||
			    buf[i - 1] == '\t')) {
				end = i;
				break;
			}
		}
		while (start < end && (buf[start] == ' ' ||
		    buf[start] == '\t'))
			start++;
		while (end > start && (buf[end - 1] == ' ' ||
		    buf[end - 1] == '\t' || buf[end - 1] == '\r'))
			end--;
		if (start == end)
			continue;
		(void)conf_show_into(show, sizeof(show), buf + start,
		    end - start);
		if (memchr(buf + start, ' ', end - start) != NULL ||
		    memchr(buf + start, '\t', end - start) != NULL) {
			(void)snprintf(msg, sizeof(msg), "expected one "
			    "pattern per line, got '%s'", show);
			goto fail;
		}
		local = conf_pattern_new(d, buf + start, end - start, why,
		    sizeof(why));
		if (local == NULL) {
			(void)snprintf(msg, sizeof(msg), "pattern '%s' %s",
			    show, why);
			goto fail;
		}
		if (nv == cap) {
			cap = cap ? cap * 2 : 64;
			v = xreallocarray(v, cap, sizeof(v[0]));
		}
		v[nv++] = local;
	}
	d->recipients = xreallocarray(d->recipients, d->nrecipients + nv,
	    sizeof(d->recipients[0]));
	if (nv > 0)
		memcpy(d->recipients + d->nrecipients, v, nv * sizeof(v[0]));
	d->nrecipients += nv;
	free(v);
	return 0;
fail:
	conf_report(err, path, line, msg);
	for (i = 0; i < nv; i++)
		free(v[i]);
	free(v);
	return -1;
}

int
conf_load_recipients(struct conf_domain *d, const char *path,
    struct sbuf *err)
{
	size_t len;
	char *buf;
	int rc;

	if (conf_read_file(path, CONF_RCPT_FILE_MAX, &buf, &len, err) == -1)
		return -1;
	rc = conf_recipients_parse(d, buf, len, path, err);
	free(buf);
	if (rc == -1)
		return -1;
	d->has_list = true;
	conf_domain_index(d);
	return 0;
}

void
conf_free(struct conf *conf)
{
	size_t i, j;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->nlisteners; i++) {
		free(conf->listeners[i].host);
		free(conf->listeners[i].port);
		free(conf->listeners[i].tls_cert);
		free(conf->listeners[i].tls_key);
	}
	free(conf->listeners);
	for (i = 0; i < conf->ndomains; i++) {
		struct conf_domain *d = &conf->domains[i];

		for (j = 0; j < d->nrecipients; j++)
			free(d->recipients[j]);
		free(d->recipients);
		free(d->recipients_file);
		free(d->name);
	}
	free(conf->domains);
	free(conf->path);
	free(conf->hostname);
	free(conf->spool_dir);
	free(conf->user);
	free(conf);
}

const struct conf_domain *
conf_find_domain(const struct conf *conf, const char *domain_lc)
{
	const char *suffix;
	size_t i;

	if (conf == NULL || domain_lc == NULL || domain_lc[0] == '\0')
		return NULL;
	for (i = 0; i < conf->ndomains; i++)
		if (strcasecmp(conf->domains[i].name, domain_lc) == 0)
			return &conf->domains[i];
	/*
	 * "*.example.com" covers a.example.com and a.b.example.com but not
	 * example.com: try the suffixes after each dot, longest first.
	 */
	for (suffix = strchr(domain_lc, '.'); suffix != NULL;
	    suffix = strchr(suffix + 1, '.')) {
		for (i = 0; i < conf->ndomains; i++) {
			const char *name = conf->domains[i].name;

			if (name[0] == '*' && name[1] == '.' &&
			    strcasecmp(name + 2, suffix + 1) == 0)
				return &conf->domains[i];
		}
	}
	return NULL;
}

bool
conf_domain_accepts(const struct conf_domain *d, const char *local)
{
	size_t i, nexact;

	if (d == NULL || local == NULL)
		return false;
	if (!d->has_list)
		return true;
	nexact = d->nexact <= d->nrecipients ? d->nexact : 0;
	if (nexact > 0 && bsearch(&local, d->recipients, nexact,
	    sizeof(d->recipients[0]), conf_casecmp_p) != NULL)
		return true;
	for (i = nexact; i < d->nrecipients; i++)
		if (fnmatch(d->recipients[i], local, FNM_CASEFOLD) == 0)
			return true;
	return false;
}
