/*
 * smtp_proto.c - pure SMTP parsing and formatting: command lines, paths,
 * ESMTP parameters, HELO and BDAT arguments, replies (ours formatted, a
 * server's reply lines parsed), the DATA/BDAT content decoder and the
 * header scanner.
 *
 * Everything here is fed peer bytes directly, so every loop is bounded by
 * the input length and every copy by the size of its destination. This
 * file must never do I/O, log, allocate or touch globals. In DATA only
 * CRLF "." CRLF ends the content; a bare CR or LF never ends a line.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "smtp_proto.h"
#include "smtp_proto_int.h"

/* Enhanced codes for path syntax errors (RFC 3463 3.2). */
#define ENH_SENDER "5.1.7"
#define ENH_RCPT   "5.1.3"
#define ENH_ARGS   "5.5.4"

static void
set_status(struct smtp_proto_status *st, unsigned code, const char *enh,
    const char *text)
{
	if (st == NULL)
		return;
	st->code = code;
	st->enhanced = enh;
	st->text = text;
}

static bool
is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static unsigned char
to_lower(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (unsigned char)(c - 'A' + 'a');
	return c;
}

/* ASCII case-insensitive: s[0..len) equals the literal lit. */
bool
smtp_proto_ci_eq(const char *s, size_t len, const char *lit)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (lit[i] == '\0' ||
		    to_lower((unsigned char)s[i]) !=
		        to_lower((unsigned char)lit[i]))
			return false;
	}
	return lit[len] == '\0';
}

/* RFC 5322 3.2.3 atext, ASCII part. */
static bool
is_atext(unsigned char c)
{
	if (is_alnum(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF.
 */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;
	unsigned char lo, hi;

	while (i < len) {
		unsigned char c = s[i];

		lo = 0x80;
		hi = 0xbf;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return false;
		if (len - i - 1 < n)
			return false;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (k = 2; k <= n; k++) {
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		}
		i += n + 1;
	}
	return true;
}

/* Decimal digits only, no sign, no overflow. */
static bool
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		unsigned d;

		if (!is_digit(c))
			return false;
		d = (unsigned)(c - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* ------------------------------------------------------------------ */
/* Command lines */

static const struct {
	const char *name;
	enum smtp_proto_verb verb;
} verbs[] = {
	{ "HELO", SMTP_PROTO_CMD_HELO },
	{ "EHLO", SMTP_PROTO_CMD_EHLO },
	{ "MAIL", SMTP_PROTO_CMD_MAIL },
	{ "RCPT", SMTP_PROTO_CMD_RCPT },
	{ "DATA", SMTP_PROTO_CMD_DATA },
	{ "BDAT", SMTP_PROTO_CMD_BDAT },
	{ "RSET", SMTP_PROTO_CMD_RSET },
	{ "NOOP", SMTP_PROTO_CMD_NOOP },
	{ "QUIT", SMTP_PROTO_CMD_QUIT },
	{ "VRFY", SMTP_PROTO_CMD_VRFY },
	{ "EXPN", SMTP_PROTO_CMD_EXPN },
	{ "HELP", SMTP_PROTO_CMD_HELP },
	{ "STARTTLS", SMTP_PROTO_CMD_STARTTLS },
	{ "AUTH", SMTP_PROTO_CMD_AUTH },
	{ "ETRN", SMTP_PROTO_CMD_ETRN },
	{ "TURN", SMTP_PROTO_CMD_TURN },
	/* An HTTP request sent to port 25 (cross-protocol attacks). */
	{ "GET", SMTP_PROTO_CMD_HTTP },
	{ "POST", SMTP_PROTO_CMD_HTTP },
	{ "HEAD", SMTP_PROTO_CMD_HTTP },
	{ "PUT", SMTP_PROTO_CMD_HTTP },
	{ "CONNECT", SMTP_PROTO_CMD_HTTP },
};

int
smtp_proto_parse_command(const char *line, size_t len,
    struct smtp_proto_command *out, struct smtp_proto_status *st_out)
{
	const char *kw;
	size_t i, vlen, kwlen;

	out->verb = SMTP_PROTO_CMD_UNKNOWN;
	out->arg = line + len;
	out->arglen = 0;

	if (len > SMTP_PROTO_CMDLINE_MAX - 2) {
		set_status(st_out, 500, "5.5.2", "Line too long");
		return -1;
	}
	/* The caller split at CRLF; anything left is a smuggling attempt. */
	for (i = 0; i < len; i++) {
		if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n') {
			set_status(st_out, 500, "5.5.2",
			    "Syntax error: invalid character in command");
			return -1;
		}
	}

	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (smtp_proto_ci_eq(line, vlen, verbs[i].name)) {
			out->verb = verbs[i].verb;
			break;
		}
	}

	i = vlen;
	while (i < len && line[i] == ' ')
		i++;

	if (out->verb == SMTP_PROTO_CMD_MAIL ||
	    out->verb == SMTP_PROTO_CMD_RCPT) {
		kw = out->verb == SMTP_PROTO_CMD_MAIL ? "FROM:" : "TO:";
		kwlen = strlen(kw);
		if (len - i < kwlen || !smtp_proto_ci_eq(line + i, kwlen, kw)) {
			set_status(st_out, 501, ENH_ARGS,
			    out->verb == SMTP_PROTO_CMD_MAIL ?
			        "Syntax: MAIL FROM:<address>" :
			        "Syntax: RCPT TO:<address>");
			return -1;
		}
		i += kwlen;
		while (i < len && line[i] == ' ')
			i++;
	}
	out->arg = line + i;
	out->arglen = len - i;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Paths (RFC 5321 4.1.2, RFC 6531 3.3) */

static int
path_error(struct smtp_proto_status *st, bool rcpt, const char *text)
{
	set_status(st, 501, rcpt ? ENH_RCPT : ENH_SENDER, text);
	return -1;
}

static int
path_syntax(struct smtp_proto_status *st, bool rcpt)
{
	return path_error(st, rcpt,
	    rcpt ? "Syntax error in recipient address" :
	           "Syntax error in sender address");
}

/*
 * Validates an address literal's content (between the brackets): IPv4,
 * or "IPv6:" and an IPv6 address. No other tag is registered with IANA
 * (RFC 5321 4.1.3), so general literals are refused.
 */
static bool
addr_literal_valid(const char *s, size_t len)
{
	char buf[64];
	unsigned char addr[sizeof(struct in6_addr)];
	int af = AF_INET;

	if (len >= 5 && smtp_proto_ci_eq(s, 5, "IPv6:")) {
		af = AF_INET6;
		s += 5;
		len -= 5;
	}
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(af, buf, addr) == 1;
}

/*
 * Scans a Domain (sub-domain *("." sub-domain)) or an address literal at
 * the start of s. Octets >= 0x80 count as letters (U-labels, RFC 6531);
 * the caller has already decided whether they are allowed and valid.
 * Returns the number of octets it forms, 0 if none.
 */
static size_t
scan_domain(const char *s, size_t len, bool *literal_out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, start;

	*literal_out = false;
	if (len > 0 && p[0] == '[') {
		for (i = 1; i < len && p[i] != ']'; i++) {
			if (p[i] < 33 || p[i] > 126 || p[i] == '[' ||
			    p[i] == '\\')
				return 0;
		}
		if (i == len || !addr_literal_valid(s + 1, i - 1))
			return 0;
		*literal_out = true;
		return i + 1;
	}
	for (;;) {
		start = i;
		while (
		    i < len && (is_alnum(p[i]) || p[i] == '-' || p[i] >= 0x80))
			i++;
		/* Let-dig [Ldh-str]: no hyphen at either end. */
		if (i == start || p[start] == '-' || p[i - 1] == '-')
			return 0;
		if (i == len || p[i] != '.')
			return i;
		i++;
	}
}

/*
 * Locates "<...>" at the start of arg (after spaces), honouring quoted
 * strings so that a '>' inside quotes does not end it. On success *open_out
 * is the index of '<' and *end_out the index just past '>'.
 */
static int
path_locate(const char *arg, size_t len, bool rcpt, size_t *open_out,
    size_t *end_out, struct smtp_proto_status *st)
{
	size_t i = 0;
	bool quoted = false;

	while (i < len && arg[i] == ' ')
		i++;
	if (i == len || arg[i] != '<')
		return path_error(st, rcpt,
		    "Syntax error: address must be enclosed in <>");
	*open_out = i;
	for (i++; i < len; i++) {
		if (quoted) {
			if (arg[i] == '\\')
				i++;
			else if (arg[i] == '"')
				quoted = false;
		} else if (arg[i] == '"')
			quoted = true;
		else if (arg[i] == '>')
			break;
	}
	if (i >= len)
		return path_error(st, rcpt,
		    "Syntax error: unterminated address");
	*end_out = i + 1;
	if (*end_out < len && arg[*end_out] != ' ')
		return path_error(st, rcpt, "Syntax error after address");
	return 0;
}

/*
 * Scans the local part at the start of s (Dot-string or Quoted-string),
 * writing the de-quoted form to local (at most SMTP_PROTO_LOCAL_MAX octets
 * are stored; the caller checks the length). Returns the octets consumed,
 * 0 on a syntax error.
 */
static size_t
scan_local(const char *s, size_t len, char *local, bool *quoted_out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i, k = 0;

	*quoted_out = false;
	if (len > 0 && p[0] == '"') {
		*quoted_out = true;
		for (i = 1; i < len; i++) {
			unsigned char c = p[i];

			if (c == '"')
				break;
			if (c == '\\') {
				/* quoted-pairSMTP: backslash %d32-126 */
				if (i + 1 == len || p[i + 1] < 32 ||
				    p[i + 1] > 126)
					return 0;
				c = p[++i];
			} else if (c < 32 || c == 127)
				return 0;
			/* qtextSMTP is everything else printable, plus UTF-8.
			 */
			if (k < SMTP_PROTO_LOCAL_MAX)
				local[k++] = (char)c;
		}
		if (i == len)
			return 0;
		local[k] = '\0';
		return i + 1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c == '.') {
			/* Atom *("." Atom): no empty atoms. */
			if (i == 0 || p[i - 1] == '.')
				return 0;
		} else if (!is_atext(c) && c < 0x80)
			break;
		if (k < SMTP_PROTO_LOCAL_MAX)
			local[k++] = (char)c;
	}
	if (i == 0 || p[i - 1] == '.')
		return 0;
	local[k] = '\0';
	return i;
}

/*
 * Parses the content of a path (between < and >). smtputf8 allows
 * non-ASCII octets, which must then be valid UTF-8.
 */
static int
path_parse(const char *s, size_t len, bool rcpt, bool smtputf8,
    struct smtp_proto_path *out, struct smtp_proto_status *st)
{
	const char *mb;
	size_t i, mblen, llen, dlen;
	bool literal, route = false;

	memset(out, 0, sizeof(*out));
	if (len == 0) {
		if (rcpt)
			return path_error(st, true,
			    "Null recipient address not allowed");
		out->is_null = true;
		return 0;
	}

	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80)
			out->has_utf8 = true;
	}
	if (out->has_utf8) {
		if (!smtputf8) {
			set_status(st, 553, "5.6.7",
			    "Non-ASCII address requires SMTPUTF8");
			return -1;
		}
		if (!utf8_valid((const unsigned char *)s, len))
			return path_error(st, rcpt, "Invalid UTF-8 in address");
	}

	/* A-d-l ":" (source route): syntax-checked, then ignored. */
	i = 0;
	if (s[0] == '@') {
		route = true;
		for (;;) {
			if (i == len || s[i] != '@')
				return path_syntax(st, rcpt);
			i++;
			dlen = scan_domain(s + i, len - i, &literal);
			if (dlen == 0)
				return path_syntax(st, rcpt);
			i += dlen;
			if (i < len && s[i] == ',') {
				i++;
				continue;
			}
			if (i < len && s[i] == ':') {
				i++;
				break;
			}
			return path_syntax(st, rcpt);
		}
	}
	mb = s + i;
	mblen = len - i;

	/* RFC 5321 4.1.1.3: "<Postmaster>" without a domain, RCPT only. */
	if (rcpt && !route && smtp_proto_ci_eq(mb, mblen, "postmaster")) {
		memcpy(out->mailbox, mb, mblen);
		memcpy(out->local, mb, mblen);
		out->is_postmaster = true;
		return 0;
	}

	llen = scan_local(mb, mblen, out->local, &out->quoted_local);
	if (llen == 0 || llen == mblen || mb[llen] != '@')
		return path_syntax(st, rcpt);
	dlen = scan_domain(mb + llen + 1, mblen - llen - 1, &literal);
	/* A second unquoted '@' (user@ours@foreign) stops the scan early. */
	if (dlen == 0 || dlen != mblen - llen - 1)
		return path_syntax(st, rcpt);

	if (llen > SMTP_PROTO_LOCAL_MAX)
		return path_error(st, rcpt, "Local part too long");
	if (dlen > SMTP_PROTO_DOMAIN_MAX)
		return path_error(st, rcpt, "Domain too long");
	if (len + 2 > SMTP_PROTO_PATH_MAX)
		return path_error(st, rcpt, "Path too long");

	memcpy(out->mailbox, mb, mblen);
	memcpy(out->domain, mb + llen + 1, dlen);
	for (i = 0; i < dlen; i++)
		out->domain_lc[i] = (char)to_lower(
		    (unsigned char)out->domain[i]);
	out->domain_literal = literal;
	return 0;
}

/* ------------------------------------------------------------------ */
/* ESMTP parameters (RFC 5321 4.1.2 Mail-parameters / Rcpt-parameters) */

enum param_id {
	PARAM_SIZE,
	PARAM_BODY,
	PARAM_SMTPUTF8,
	PARAM_RET,
	PARAM_ENVID,
	PARAM_NOTIFY,
	PARAM_ORCPT,
};

static const struct {
	const char *name;
	enum param_id id;
	bool rcpt; /* RCPT parameter, else MAIL */
} params[] = {
	{ "SIZE", PARAM_SIZE, false },         /* RFC 1870 */
	{ "BODY", PARAM_BODY, false },         /* RFC 6152 */
	{ "SMTPUTF8", PARAM_SMTPUTF8, false }, /* RFC 6531 */
	{ "RET", PARAM_RET, false },           /* RFC 3461 */
	{ "ENVID", PARAM_ENVID, false },       /* RFC 3461 */
	{ "NOTIFY", PARAM_NOTIFY, true },      /* RFC 3461 */
	{ "ORCPT", PARAM_ORCPT, true },        /* RFC 3461 */
};

struct param {
	enum param_id id;
	const char *val;
	size_t vallen;
	bool has_val;
};

static int
param_error(struct smtp_proto_status *st, unsigned code, const char *text)
{
	set_status(st, code, ENH_ARGS, text);
	return -1;
}

/*
 * Takes the next space-separated esmtp-param from s[*pos..len) and checks
 * its syntax, that it is known for this command, and that it is not
 * repeated (*seen). Returns 1 with *p filled, 0 at the end, -1 on error.
 */
static int
param_next(const char *s, size_t len, size_t *pos, bool rcpt, unsigned *seen,
    struct param *p, struct smtp_proto_status *st)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = *pos, start, kwend, k;

	while (i < len && s[i] == ' ')
		i++;
	if (i == len) {
		*pos = i;
		return 0;
	}
	start = i;
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	while (i < len && (is_alnum(u[i]) || (i > start && u[i] == '-')))
		i++;
	kwend = i;
	if (kwend == start || (i < len && s[i] != '=' && s[i] != ' '))
		return param_error(st, 501, "Syntax error in parameters");
	p->has_val = i < len && s[i] == '=';
	p->val = s + i + (p->has_val ? 1 : 0);
	if (p->has_val) {
		/* esmtp-value = 1*(%d33-60 / %d62-126) */
		for (i++; i < len && s[i] != ' '; i++) {
			if (u[i] < 33 || u[i] > 126 || u[i] == '=')
				return param_error(st, 501,
				    "Syntax error in parameters");
		}
	}
	p->vallen = (size_t)(s + i - p->val);
	*pos = i;

	for (k = 0; k < sizeof(params) / sizeof(params[0]); k++) {
		if (params[k].rcpt == rcpt &&
		    smtp_proto_ci_eq(s + start, kwend - start, params[k].name))
			break;
	}
	if (k == sizeof(params) / sizeof(params[0]))
		return param_error(st, 555, "Unsupported parameter");
	p->id = params[k].id;
	if (*seen & (1U << p->id))
		return param_error(st, 501, "Duplicate parameter");
	*seen |= 1U << p->id;
	if (p->has_val && p->vallen == 0)
		return param_error(st, 501, "Syntax error in parameters");
	if (!p->has_val && p->id != PARAM_SMTPUTF8)
		return param_error(st, 501, "Parameter requires a value");
	return 1;
}

static int
mail_params(const char *s, size_t len, struct smtp_proto_mail *out,
    struct smtp_proto_status *st)
{
	struct param p;
	size_t pos = 0;
	unsigned seen = 0;
	int rc;

	while ((rc = param_next(s, len, &pos, false, &seen, &p, st)) == 1) {
		switch (p.id) {
		case PARAM_SIZE:
			/* RFC 1870: size-value ::= 1*20DIGIT */
			if (p.vallen > 20)
				return param_error(st, 501,
				    "Invalid SIZE value");
			if (!parse_u64(p.val, p.vallen, &out->size)) {
				size_t k;

				/*
				 * 20 digits can pass 2^64: that is simply too
				 * big, which policy answers with 552.
				 */
				for (k = 0; k < p.vallen; k++)
					if (!is_digit((unsigned char)p.val[k]))
						return param_error(st, 501,
						    "Invalid SIZE value");
				out->size = UINT64_MAX;
			}
			out->has_size = true;
			break;
		case PARAM_BODY:
			if (smtp_proto_ci_eq(p.val, p.vallen, "7BIT"))
				out->body = SMTP_PROTO_BODY_7BIT;
			else if (smtp_proto_ci_eq(p.val, p.vallen, "8BITMIME"))
				out->body = SMTP_PROTO_BODY_8BITMIME;
			else /* BINARYMIME needs CHUNKING+BINARYMIME: not
			        offered */
				return param_error(st, 555,
				    "Unsupported BODY type");
			break;
		case PARAM_SMTPUTF8:
			if (p.has_val)
				return param_error(st, 501,
				    "SMTPUTF8 takes no value");
			out->smtputf8 = true;
			break;
		case PARAM_RET:
			if (smtp_proto_ci_eq(p.val, p.vallen, "FULL"))
				out->ret = SMTP_PROTO_RET_FULL;
			else if (smtp_proto_ci_eq(p.val, p.vallen, "HDRS"))
				out->ret = SMTP_PROTO_RET_HDRS;
			else
				return param_error(st, 501,
				    "Invalid RET value");
			break;
		case PARAM_ENVID:
			if (p.vallen > SMTP_PROTO_ENVID_MAX ||
			    !smtp_proto_xtext_valid(p.val, p.vallen))
				return param_error(st, 501,
				    "Invalid ENVID value");
			memcpy(out->envid, p.val, p.vallen);
			out->envid[p.vallen] = '\0';
			break;
		default:
			/* param_next only returns MAIL parameters here. */
			assert(0);
			return param_error(st, 555, "Unsupported parameter");
		}
	}
	return rc;
}

/* RFC 3461 4.1: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY. */
static bool
parse_notify(const char *s, size_t len, unsigned *out)
{
	size_t i = 0, start;
	unsigned bits = 0;

	for (;;) {
		start = i;
		while (i < len && s[i] != ',')
			i++;
		if (smtp_proto_ci_eq(s + start, i - start, "NEVER"))
			bits |= SMTP_PROTO_NOTIFY_NEVER;
		else if (smtp_proto_ci_eq(s + start, i - start, "SUCCESS"))
			bits |= SMTP_PROTO_NOTIFY_SUCCESS;
		else if (smtp_proto_ci_eq(s + start, i - start, "FAILURE"))
			bits |= SMTP_PROTO_NOTIFY_FAILURE;
		else if (smtp_proto_ci_eq(s + start, i - start, "DELAY"))
			bits |= SMTP_PROTO_NOTIFY_DELAY;
		else
			return false; /* includes empty elements */
		if (i == len)
			break;
		i++;
	}
	if ((bits & SMTP_PROTO_NOTIFY_NEVER) && bits != SMTP_PROTO_NOTIFY_NEVER)
		return false;
	*out = bits;
	return true;
}

/* RFC 3461 4.2: addr-type ";" xtext, addr-type an RFC 5322 atom. */
static bool
orcpt_valid(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len && s[i] != ';'; i++) {
		if (!is_atext((unsigned char)s[i]))
			return false;
	}
	if (i == 0 || i == len || i + 1 == len)
		return false;
	return smtp_proto_xtext_valid(s + i + 1, len - i - 1);
}

static int
rcpt_params(const char *s, size_t len, struct smtp_proto_rcpt *out,
    struct smtp_proto_status *st)
{
	struct param p;
	size_t pos = 0;
	unsigned seen = 0;
	int rc;

	while ((rc = param_next(s, len, &pos, true, &seen, &p, st)) == 1) {
		switch (p.id) {
		case PARAM_NOTIFY:
			if (!parse_notify(p.val, p.vallen, &out->notify))
				return param_error(st, 501,
				    "Invalid NOTIFY value");
			break;
		case PARAM_ORCPT:
			if (p.vallen > SMTP_PROTO_ORCPT_MAX ||
			    !orcpt_valid(p.val, p.vallen))
				return param_error(st, 501,
				    "Invalid ORCPT value");
			memcpy(out->orcpt, p.val, p.vallen);
			out->orcpt[p.vallen] = '\0';
			break;
		default:
			/* param_next only returns RCPT parameters here. */
			assert(0);
			return param_error(st, 555, "Unsupported parameter");
		}
	}
	return rc;
}

int
smtp_proto_parse_mail(const char *arg, size_t len, struct smtp_proto_mail *out,
    struct smtp_proto_status *st_out)
{
	size_t open, end;

	memset(out, 0, sizeof(*out));
	if (path_locate(arg, len, false, &open, &end, st_out) == -1)
		return -1;
	/* Parameters first: SMTPUTF8 decides whether the path may be UTF-8. */
	if (mail_params(arg + end, len - end, out, st_out) == -1)
		return -1;
	return path_parse(arg + open + 1, end - open - 2, false, out->smtputf8,
	    &out->path, st_out);
}

int
smtp_proto_parse_rcpt(const char *arg, size_t len, bool smtputf8,
    struct smtp_proto_rcpt *out, struct smtp_proto_status *st_out)
{
	size_t open, end;

	memset(out, 0, sizeof(*out));
	if (path_locate(arg, len, true, &open, &end, st_out) == -1)
		return -1;
	if (path_parse(arg + open + 1, end - open - 2, true, smtputf8,
	        &out->path, st_out) == -1)
		return -1;
	return rcpt_params(arg + end, len - end, out, st_out);
}

bool
smtp_proto_xtext_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == '+') {
			/* hexchar: "+" and two upper-case hex digits */
			if (len - i < 3 ||
			    !(is_digit(p[i + 1]) ||
			        (p[i + 1] >= 'A' && p[i + 1] <= 'F')) ||
			    !(is_digit(p[i + 2]) ||
			        (p[i + 2] >= 'A' && p[i + 2] <= 'F')))
				return false;
			i += 2;
		} else if (p[i] < 33 || p[i] > 126 || p[i] == '=')
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* HELO/EHLO and BDAT arguments */

int
smtp_proto_parse_helo(const char *arg, size_t len,
    struct smtp_proto_status *st_out)
{
	const unsigned char *p = (const unsigned char *)arg;
	size_t i;
	bool eight = false;

	/*
	 * Lenient on purpose: real clients send bare IPs, underscores and
	 * other non-hostnames. Refuse only what cannot be a name at all.
	 */
	while (len > 0 && p[0] == ' ') {
		p++;
		len--;
	}
	while (len > 0 && p[len - 1] == ' ')
		len--;
	if (len == 0 || len > SMTP_PROTO_HELO_MAX)
		goto bad;
	for (i = 0; i < len; i++) {
		if (p[i] <= ' ' || p[i] == 0x7f)
			goto bad;
		if (p[i] >= 0x80)
			eight = true;
	}
	if (eight && !utf8_valid(p, len))
		goto bad;
	return 0;
bad:
	set_status(st_out, 501, ENH_ARGS, "Syntax: EHLO hostname");
	return -1;
}

int
smtp_proto_parse_bdat(const char *arg, size_t len, uint64_t *size_out,
    bool *last_out, struct smtp_proto_status *st_out)
{
	size_t i = 0, start;

	while (i < len && arg[i] == ' ')
		i++;
	start = i;
	while (i < len && is_digit((unsigned char)arg[i]))
		i++;
	if (!parse_u64(arg + start, i - start, size_out))
		goto bad;
	while (len > i && arg[len - 1] == ' ')
		len--;
	*last_out = false;
	if (i == len)
		return 0;
	if (arg[i] != ' ')
		goto bad;
	while (i < len && arg[i] == ' ')
		i++;
	if (!smtp_proto_ci_eq(arg + i, len - i, "LAST"))
		goto bad;
	*last_out = true;
	return 0;
bad:
	set_status(st_out, 501, ENH_ARGS, "Syntax: BDAT size [LAST]");
	return -1;
}

/* ------------------------------------------------------------------ */
/* Replies */

int
smtp_proto_format_reply(struct sbuf *out, unsigned code, const char *enhanced,
    bool more, const char *text)
{
	size_t start = out->len;
	char head[5];

	assert(code >= 200 && code <= 599);
	if (text == NULL)
		text = "";
	/* A CR or LF would let the text forge extra reply lines. */
	if (strpbrk(text, "\r\n") != NULL ||
	    (enhanced != NULL && strpbrk(enhanced, "\r\n ") != NULL))
		return -1;
	head[0] = (char)('0' + code / 100);
	head[1] = (char)('0' + code / 10 % 10);
	head[2] = (char)('0' + code % 10);
	head[3] = more ? '-' : ' ';
	/* "250\r\n" is a valid reply-line; no trailing space then. */
	if (sbuf_append(out, head,
	        (enhanced != NULL || *text != '\0' || more) ? 4 : 3) == -1)
		goto fail;
	if (enhanced != NULL && sbuf_append_str(out, enhanced) == -1)
		goto fail;
	if (enhanced != NULL && *text != '\0' &&
	    sbuf_append_char(out, ' ') == -1)
		goto fail;
	if (sbuf_append_str(out, text) == -1 ||
	    sbuf_append(out, "\r\n", 2) == -1)
		goto fail;
	return 0;
fail:
	sbuf_truncate(out, start);
	return -1;
}

/* 1-3 digits at s[*i..len); advances *i. */
static bool
enh_number(const char *s, size_t len, size_t *i)
{
	size_t start = *i;

	while (*i < len && *i - start < 3 && is_digit((unsigned char)s[*i]))
		(*i)++;
	return *i > start;
}

int
smtp_proto_parse_reply_line(const char *line, size_t len,
    struct smtp_proto_reply_line *out)
{
	const char *t;
	size_t i, tlen;

	memset(out, 0, sizeof(*out));
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    !is_digit((unsigned char)line[1]) ||
	    !is_digit((unsigned char)line[2]))
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	out->code = (unsigned)(line[0] - '0') * 100 +
	    (unsigned)(line[1] - '0') * 10 + (unsigned)(line[2] - '0');
	out->more = len > 3 && line[3] == '-';
	out->text = line + (len > 4 ? 4 : len);
	out->textlen = len > 4 ? len - 4 : 0;

	/* status-code = class "." subject "." detail (RFC 3463 2) */
	t = out->text;
	tlen = out->textlen;
	i = 0;
	if (tlen < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') ||
	    t[1] != '.')
		return 0;
	i = 2;
	if (!enh_number(t, tlen, &i) || i == tlen || t[i] != '.')
		return 0;
	i++;
	if (!enh_number(t, tlen, &i) || (i < tlen && t[i] != ' '))
		return 0;
	out->enhanced = t;
	out->enhlen = i;
	return 0;
}

/* ------------------------------------------------------------------ */
/* DATA / BDAT content decoder */

enum {
	DS_LINESTART = 0, /* after CRLF, or at the start of the data */
	DS_DOT,           /* "." at a line start */
	DS_DOTCR,         /* "." CR at a line start */
	DS_MID,           /* inside a line */
	DS_CR,            /* CR inside a line; LF decides */
};

static void
data_put(struct smtp_proto_data *d, char *out, size_t *o, char c)
{
	out[(*o)++] = c;
	d->out_total++;
	if (++d->cur_line > d->max_line)
		d->max_line = d->cur_line;
}

static void
data_eol(struct smtp_proto_data *d, char *out, size_t *o)
{
	out[(*o)++] = '\r';
	out[(*o)++] = '\n';
	d->out_total += 2;
	d->cur_line = 0;
}

/*
 * A bare CR or LF: flagged in both modes; written as CRLF (ending the
 * output line) when normalizing, else as is. Either way the decoder stays
 * mid-line, so a following "." is neither unstuffed nor a terminator.
 */
static void
data_bare(struct smtp_proto_data *d, char *out, size_t *o, char c)
{
	if (c == '\r')
		d->bare_cr = true;
	else
		d->bare_lf = true;
	if (d->normalize)
		data_eol(d, out, o);
	else
		data_put(d, out, o, c);
	d->state = DS_MID;
}

/* One octet inside a line. Writes at most 2 octets. */
static void
data_mid(struct smtp_proto_data *d, char *out, size_t *o, char c)
{
	if (c == '\r') {
		d->state = DS_CR;
		return;
	}
	d->state = DS_MID;
	if (c == '\n') {
		data_bare(d, out, o, c);
		return;
	}
	if (c == '\0')
		d->nul = true;
	data_put(d, out, o, c);
}

void
smtp_proto_data_init(struct smtp_proto_data *d, enum smtp_proto_data_mode mode,
    bool normalize)
{
	memset(d, 0, sizeof(*d));
	d->mode = mode;
	d->normalize = normalize;
	d->state = mode == SMTP_PROTO_DATA_DOT ? DS_LINESTART : DS_MID;
}

int
smtp_proto_data_feed(struct smtp_proto_data *d, const char *in, size_t inlen,
    char *out, size_t outcap, size_t *outlen_io, size_t *consumed_out)
{
	size_t i = 0, o = *outlen_io;
	char c;

	assert(o <= outcap);
	*consumed_out = 0;
	if (d->done)
		return 1;
	/* Each input octet writes at most 4 (bare CR as CRLF + bare LF). */
	while (i < inlen && outcap - o >= SMTP_PROTO_DATA_EXPANSION) {
		if (d->state == DS_MID) {
			/* Inside a line: copy the run up to CR, LF or NUL. */
			size_t n = 0, most = inlen - i;

			if (most > outcap - o)
				most = outcap - o;
			while (n < most && in[i + n] != '\r' &&
			    in[i + n] != '\n' && in[i + n] != '\0')
				n++;
			if (n > 0) {
				memcpy(out + o, in + i, n);
				o += n;
				i += n;
				d->out_total += n;
				d->cur_line += n;
				if (d->cur_line > d->max_line)
					d->max_line = d->cur_line;
				continue;
			}
		}
		c = in[i++];
		switch (d->state) {
		case DS_LINESTART:
			if (c == '.' && d->mode == SMTP_PROTO_DATA_DOT)
				d->state = DS_DOT;
			else
				data_mid(d, out, &o, c);
			break;
		case DS_DOT:
			if (c == '\r')
				d->state = DS_DOTCR;
			else /* RFC 5321 4.5.2: drop the stuffing dot */
				data_mid(d, out, &o, c);
			break;
		case DS_DOTCR:
			if (c == '\n') {
				d->done = true;
				d->state = DS_MID;
				*outlen_io = o;
				*consumed_out = i;
				return 1;
			}
			/* "." bare-CR: the dot was stuffing, the CR is bare. */
			data_bare(d, out, &o, '\r');
			data_mid(d, out, &o, c);
			break;
		case DS_CR:
			if (c == '\n') {
				data_eol(d, out, &o);
				d->state = d->mode == SMTP_PROTO_DATA_DOT ?
				    DS_LINESTART :
				    DS_MID;
			} else {
				data_bare(d, out, &o, '\r');
				data_mid(d, out, &o, c);
			}
			break;
		default:
			data_mid(d, out, &o, c);
			break;
		}
	}
	*outlen_io = o;
	*consumed_out = i;
	return 0;
}

void
smtp_proto_data_finish(struct smtp_proto_data *d, char *out, size_t outcap,
    size_t *outlen_io)
{
	size_t o = *outlen_io;

	/* DOT mode ends only at its terminator: nothing to flush. */
	if (d->mode != SMTP_PROTO_DATA_RAW || d->state != DS_CR)
		return;
	assert(o <= outcap && outcap - o >= 2);
	data_bare(d, out, &o, '\r');
	*outlen_io = o;
}
