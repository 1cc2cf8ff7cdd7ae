/*
 * conf_lex.c - words and values: the tokenizer and the one-word checks.
 *
 * The lexer cuts the buffer into words, ';' or newline, '{' and '}';
 * comments and blanks vanish here, and a bad byte or quote is reported
 * with its line. The value parsers (sizes, durations, host and target
 * names, addresses, patterns, IP:port) look at one word and never at
 * the block being filled; those that can fail say why in an sbuf.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "conf.h"
#include "conf_int.h"
#include "sbuf.h"
#include "xmalloc.h"

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

	p->pos++; /* the opening quote */
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

				conf_err(p, start,
				    "invalid escape '\\%s' in "
				    "quoted string (only \\\" and \\\\ are "
				    "allowed)",
				    conf_show(p, s));
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
		conf_err(p, start,
		    "a quoted string must be followed by a "
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
			conf_err(p, p->line,
			    "unexpected '\"' inside a word "
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

enum conf_tok
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

void
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
enum conf_tok
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
int
conf_last_line(const struct conf_parser *p)
{
	if (p->len > 0 && p->buf[p->len - 1] == '\n' && p->line > 1)
		return p->line - 1;
	return p->line;
}

/*
 * Values.
 */

const struct conf_unit conf_units_size[] = {
	{ 'K', 1024 },
	{ 'k', 1024 },
	{ 'M', 1024 * 1024 },
	{ 'm', 1024 * 1024 },
	{ 'G', 1024 * 1024 * 1024 },
	{ 'g', 1024 * 1024 * 1024 },
	{ '\0', 0 },
};

const struct conf_unit conf_units_duration[] = {
	{ 's', 1 },
	{ 'm', 60 },
	{ 'h', 60 * 60 },
	{ 'd', 24 * 60 * 60 },
	{ '\0', 0 },
};

const struct conf_unit conf_units_none[] = {
	{ '\0', 0 },
};

/*
 * Parses decimal digits and an optional one-letter unit. Returns 0, -1
 * when s is not of that form, -2 when the value is above max.
 */
int
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
bool
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

/* The directory part of a file name; NULL when it has none. */
char *
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
char *
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
 * Names, addresses and patterns.
 */

void
conf_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Target and wave names: a letter or digit, then those, '.', '_', '-'. */
bool
conf_name_valid(const char *s)
{
	size_t i;

	if (!isalnum((unsigned char)s[0]) || strlen(s) > CONF_NAME_MAX)
		return false;
	for (i = 1; s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/* A host name whose last label is all digits can only be a bad IPv4. */
bool
conf_hostname_valid(const char *s)
{
	const char *last = strrchr(s, '.');
	size_t i;

	if (!conf_domain_valid(s, false))
		return false;
	last = last != NULL ? last + 1 : s;
	for (i = 0; last[i] != '\0'; i++)
		if (!isdigit((unsigned char)last[i]))
			return true;
	return false;
}

/*
 * Checks s[0..len) as "local" or "local@DOMAIN" for d and returns the
 * local part. On error returns NULL with err set to a predicate ("has an
 * empty local part") that the caller puts after the pattern.
 */
char *
conf_pattern_new(const struct conf_domain *d, const char *s, size_t len,
    struct sbuf *err)
{
	const char *at = NULL;
	size_t i, llen;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			sbuf_seterr(err, "contains a control character");
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
			sbuf_seterr(err, "is not in domain '%s'", d->name);
			return NULL;
		}
	}
	if (llen == 0) {
		sbuf_seterr(err, "has an empty local part");
		return NULL;
	}
	if (llen > CONF_PATTERN_MAX) {
		sbuf_seterr(err, "is longer than %d bytes", CONF_PATTERN_MAX);
		return NULL;
	}
	/* fnmatch never matches a pattern ending in an unpaired '\'. */
	for (i = llen; i > 0 && s[i - 1] == '\\'; i--)
		continue;
	if ((llen - i) % 2 == 1) {
		sbuf_seterr(err, "ends with a lone '\\'");
		return NULL;
	}
	return xstrndup(s, llen);
}

/*
 * Checks s[0..len) as a full address "local@domain" and returns it
 * lower-cased; NULL with err set to a predicate otherwise. The local
 * part, which may be quoted, ends at the last '@'.
 */
char *
conf_address_new(const char *s, size_t len, struct sbuf *err)
{
	const char *at = NULL;
	char *out;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			sbuf_seterr(err, "contains a control character");
			return NULL;
		}
		if (c == '@')
			at = s + i;
	}
	if (at == NULL) {
		sbuf_seterr(err, "is not a full address (local@domain)");
		return NULL;
	}
	if (at == s) {
		sbuf_seterr(err, "has an empty local part");
		return NULL;
	}
	if ((size_t)(at - s) > CONF_LOCAL_MAX) {
		sbuf_seterr(err, "has a local part longer than %d octets",
		    CONF_LOCAL_MAX);
		return NULL;
	}
	if (len > CONF_ADDRESS_MAX) {
		sbuf_seterr(err, "is longer than %d octets", CONF_ADDRESS_MAX);
		return NULL;
	}
	out = xstrndup(s, len);
	conf_lower(out);
	if (!conf_domain_valid(out + (at - s) + 1, false)) {
		free(out);
		sbuf_seterr(err, "has no valid domain after the last '@'");
		return NULL;
	}
	return out;
}

/*
 * Parses an IP address with an optional port: 192.0.2.1, 192.0.2.1:53,
 * [2001:db8::1]:53, [2001:db8::1] or 2001:db8::1. Writes the address in
 * canonical form; -1 with err set to a predicate on error.
 */
int
conf_parse_ip_port(const char *arg, int *af_out, char *addr_out,
    size_t addr_size, unsigned *port_out, struct sbuf *err)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *colon;
	size_t hlen;
	uint64_t v;
	int af;

	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL)
			return sbuf_seterr(err, "is missing the ']'");
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return sbuf_seterr(err,
			    "needs ':PORT' or nothing after the ']'");
		af = AF_INET6;
		arg++;
		hlen = (size_t)(close - arg);
	} else if ((colon = strchr(arg, ':')) == NULL) {
		af = AF_INET;
		hlen = strlen(arg);
	} else if (strchr(colon + 1, ':') == NULL) {
		af = AF_INET;
		hlen = (size_t)(colon - arg);
		port = colon + 1;
	} else {
		af = AF_INET6; /* bare IPv6, no port */
		hlen = strlen(arg);
	}
	if (hlen >= sizeof(host))
		return sbuf_seterr(err, "is not an IP address");
	memcpy(host, arg, hlen);
	host[hlen] = '\0';
	if (inet_pton(af, host, bin) != 1)
		return sbuf_seterr(err,
		    "is not an IPv4 address or an IPv6 "
		    "address in brackets (host names are not allowed)");
	*port_out = 0;
	if (port != NULL) {
		if (conf_parse_scaled(port, conf_units_none, 65535, &v) != 0 ||
		    v == 0)
			return sbuf_seterr(err,
			    "has a bad port (expected 1-65535)");
		*port_out = (unsigned)v;
	}
	if (inet_ntop(af, bin, addr_out, (socklen_t)addr_size) == NULL)
		return sbuf_seterr(err, "is not an IP address");
	*af_out = af;
	return 0;
}
