/*
 * conf_parse.c - the splitmx.conf parser's driver and its messages.
 *
 * conf_parse_buf is pure: bytes in, a struct conf or one "FILE:LINE: what"
 * message out; only conf_load.c touches files. It is a flat loop over
 * statements with a one-level context (top level or one block), so no
 * input can recurse or grow memory beyond a multiple of its own size.
 * Owns the parser state, the error messages, the name sets and the
 * dispatch of each statement to its handler in the directive table.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "conf.h"
#include "conf_int.h"
#include "log.h"
#include "sbuf.h"
#include "xmalloc.h"

static const char *const conf_ctx_names[CONF_CTX_COUNT] = {
	"top level",
	"domain",
	"limits",
	"listen",
	"log",
	"target",
	"wave",
	"queue",
};

/*
 * Messages.
 */

/* Writes s as printable ASCII (\xHH for the rest), cut at CONF_SHOW_MAX. */
const char *
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
const char *
conf_show(struct conf_parser *p, const char *s)
{
	char *out = p->show[p->show_next];

	p->show_next ^= 1;
	return conf_show_into(out, sizeof(p->show[0]), s, strlen(s));
}

static void conf_verr(struct conf_parser *p, int line, const char *prefix,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void
conf_verr(struct conf_parser *p, int line, const char *prefix, const char *fmt,
    va_list ap)
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
	if (line > 0)
		sbuf_seterr(p->err, "%s:%d: %s", p->file, line, msg);
	else
		sbuf_seterr(p->err, "%s: %s", p->file, msg);
}

/* Reports a structural error; always returns -1. */
int
conf_err(struct conf_parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_verr(p, line, "", fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Reports an error in a directive, naming the block it is in (and the
 * target or wave by name: there are usually several); -1.
 */
int
conf_errc(struct conf_parser *p, int line, const char *fmt, ...)
{
	char prefix[CONF_NAME_MAX * 4 + 32], name[CONF_NAME_MAX * 4 + 8];
	const char *n = NULL;
	va_list ap;

	if (p->ctx == CONF_CTX_TARGET)
		n = p->conf->targets[p->cur].name;
	else if (p->ctx == CONF_CTX_WAVE)
		n = p->conf->waves[p->cur].name;
	if (p->ctx == CONF_CTX_TOP)
		prefix[0] = '\0';
	else if (n != NULL)
		(void)snprintf(prefix, sizeof(prefix),
		    "%s '%s': ", conf_ctx_names[p->ctx],
		    conf_show_into(name, sizeof(name), n, strlen(n)));
	else
		(void)snprintf(prefix, sizeof(prefix),
		    "%s: ", conf_ctx_names[p->ctx]);
	va_start(ap, fmt);
	conf_verr(p, line, prefix, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Names: the duplicate checks and the labels.
 */

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

const char *
conf_domain_name_at(const struct conf *conf, size_t i)
{
	return conf->domains[i].name;
}

const char *
conf_target_name_at(const struct conf *conf, size_t i)
{
	return conf->targets[i].name;
}

const char *
conf_wave_name_at(const struct conf *conf, size_t i)
{
	return conf->waves[i].name;
}

/* Index of the entry named key, or -1. */
long
conf_set_find(const struct conf_set *set, const struct conf *conf,
    conf_name_fn name, const char *key)
{
	size_t i, mask;

	if (set->size == 0)
		return -1;
	mask = set->size - 1;
	for (i = conf_hash(key) & mask; set->slot[i] != 0; i = (i + 1) & mask)
		if (strcmp(name(conf, set->slot[i] - 1), key) == 0)
			return (long)(set->slot[i] - 1);
	return -1;
}

/*
 * Index of the entry named key, or -1 after adding key as index n. Entries
 * 0..n-1 are all in the set already; the caller creates entry n at once.
 */
long
conf_set_add(struct conf_set *set, const struct conf *conf, conf_name_fn name,
    size_t n, const char *key)
{
	size_t i, mask;
	long found;

	if (set->size < 2 * (n + 1)) {
		size_t size = set->size ? set->size * 2 : 64, j;

		free(set->slot);
		set->slot = xcalloc(size, sizeof(set->slot[0]));
		set->size = size;
		for (j = 0; j < n; j++) {
			i = conf_hash(name(conf, j)) & (size - 1);
			while (set->slot[i] != 0)
				i = (i + 1) & (size - 1);
			set->slot[i] = j + 1;
		}
	}
	if ((found = conf_set_find(set, conf, name, key)) != -1)
		return found;
	mask = set->size - 1;
	for (i = conf_hash(key) & mask; set->slot[i] != 0; i = (i + 1) & mask)
		continue;
	set->slot[i] = n + 1;
	return -1;
}

/* "kind name", for the router's why_out. */
char *
conf_label(const char *kind, const char *name)
{
	size_t klen = strlen(kind), nlen = strlen(name);
	char *out = xmalloc(klen + 1 + nlen + 1);

	memcpy(out, kind, klen);
	out[klen] = ' ';
	memcpy(out + klen + 1, name, nlen + 1);
	return out;
}

/*
 * Dispatch.
 */

static const struct conf_directive *
conf_directive_find(enum conf_ctx ctx, const char *name)
{
	size_t i;

	for (i = 0; i < conf_ndirectives; i++)
		if (conf_directives[i].ctx == ctx &&
		    strcmp(conf_directives[i].name, name) == 0)
			return &conf_directives[i];
	return NULL;
}

/* The line where directive name was seen in the current block, or 0. */
int
conf_seen_line(const struct conf_parser *p, enum conf_ctx ctx, const char *name)
{
	const struct conf_directive *dir = conf_directive_find(ctx, name);

	if (dir == NULL)
		log_panic("conf_seen_line: no directive %s", name);
	return p->seen[dir - conf_directives];
}

/* Levenshtein distance of two short strings, for "did you mean". */
size_t
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
	for (i = 0; i < conf_ndirectives; i++) {
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

	for (i = 0; i < conf_ndirectives; i++) {
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
		return conf_err(p, line,
		    "directive '%s' is not allowed "
		    "outside a %s block",
		    conf_show(p, kw), where);
	if (n > 0 && !seen[CONF_CTX_TOP])
		return conf_err(p, line,
		    "directive '%s' is not allowed in a "
		    "%s block (only in a %s block)",
		    conf_show(p, kw), conf_ctx_names[p->ctx], where);
	/* A top-level keyword inside a block usually means a lost '}'. */
	if (n > 0)
		return conf_err(p, line,
		    "directive '%s' is not allowed in a "
		    "%s block (missing '}' for the block opened at line %d?)",
		    conf_show(p, kw), conf_ctx_names[p->ctx], p->block_line);
	if ((hint = conf_suggest(p->ctx, kw)) != NULL)
		return conf_errc(p, line,
		    "unknown directive '%s' (did you "
		    "mean '%s'?)",
		    conf_show(p, kw), hint);
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
		return conf_errc(p, line,
		    "wrong number of arguments for '%s' "
		    "(usage: %s %s)",
		    dir->name, dir->name, dir->usage);
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
		for (i = 0; i < conf_ndirectives; i++)
			if (conf_directives[i].ctx == p->ctx)
				p->seen[i] = 0;
	}
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
			return conf_err(p, line,
			    "'{' must follow a directive "
			    "on the same line");
		if (t == CONF_TOK_EOF)
			break;
		if (t != CONF_TOK_CLOSE)
			continue;
		if (p->ctx == CONF_CTX_TOP)
			return conf_err(p, p->tok_line,
			    "stray '}' (no block "
			    "is open)");
		if (conf_close_block(p) == -1)
			return -1;
		p->ctx = CONF_CTX_TOP;
		t = conf_lex(p);
		if (t == CONF_TOK_ERROR)
			return -1;
		if (t == CONF_TOK_EOF)
			break;
		if (t != CONF_TOK_END)
			return conf_err(p, p->tok_line,
			    "unexpected text after "
			    "'}' (end the line or use ';')");
	}
	if (p->ctx != CONF_CTX_TOP)
		return conf_err(p, conf_last_line(p),
		    "missing '}' for block "
		    "opened at line %d",
		    p->block_line);
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
	conf->limits.data_deadline = 10 * 60;
	conf->limits.session_deadline = 60 * 60;
	conf->limits.stress_threshold = 80;
	conf->limits.stress_timeout = 10;
	conf->limits.stress_deadline = 2 * 60;
	conf->limits.bare_newline = CONF_NEWLINE_NORMALIZE;
	conf->log_stderr = false;
	conf->log_facility = LOG_MAIL;
	conf->log_level = (int)LOG_LEVEL_INFO;
	conf->default_target = -1;
	conf->queue.retry_initial = 60;
	conf->queue.retry_max = 60 * 60;
	conf->queue.lifetime = 5 * 24 * 60 * 60;
	conf->queue.delay_warning = 0;
	conf->verify_cache = 60 * 60;
	conf->duplicates = true;
	conf->reverse_lookup = true;
	conf->auth_checks = true;
	conf->duplicate_window = 7 * 24 * 60 * 60;
	conf->duplicate_max_size = (uint64_t)1 << 30;
	conf->journal_segment_size = (uint64_t)64 << 20;
	conf->journal_retention = 90 * 24 * 60 * 60;
	conf->verify_tempfail = false;
}

/* conf_parse_buf with the base directory for relative paths given apart. */
struct conf *
conf_parse(const char *buf, size_t len, const char *file, const char *basedir,
    struct sbuf *err)
{
	struct conf_parser p;
	struct conf *conf;
	size_t i;

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
	sbuf_init(&p.why, CONF_WHY_MAX);
	p.seen = xcalloc(conf_ndirectives, sizeof(p.seen[0]));
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
	free(p.domset.slot);
	free(p.tset.slot);
	free(p.wset.slot);
	for (i = 0; i < p.nrefs; i++)
		free(p.refs[i].name);
	free(p.refs);
	free(p.tls_cert);
	free(p.tls_key);
	sbuf_release(&p.tok);
	sbuf_release(&p.why);
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
