/*
 * conf_int.h - what the parts of the conf module share, and no more.
 *
 * The limits, the parser state, the shape of the directive table and
 * the non-static conf_ functions that one src/global/conf_*.c file calls
 * in another. Only those files include it; everything else sees conf.h.
 * Where each part begins: conf_parse.c (driver, messages, names),
 * conf_lex.c (words, values), conf_blocks.c (the table), conf_targets.c,
 * conf_check.c (block and file checks), conf_load.c (files, look-ups).
 */
#ifndef SPLITMX_CONF_INT_H
#define SPLITMX_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "sbuf.h"

#define CONF_FILE_MAX         (4u * 1024 * 1024)  /* splitmx.conf */
#define CONF_RCPT_FILE_MAX    (64u * 1024 * 1024) /* recipients_file */
#define CONF_TOKEN_MAX        4096                /* one word, quoted or not */
#define CONF_PATTERN_MAX      255 /* local-part pattern, in octets */
#define CONF_DOMAIN_MAX       253 /* RFC 1035 2.3.4, no final dot */
#define CONF_LABEL_MAX        63  /* RFC 1035 2.3.4 */
#define CONF_USER_MAX         32
#define CONF_WORKERS_MAX      256
#define CONF_MSG_MAX          512 /* one message, without FILE:LINE */
#define CONF_WHY_MAX          127 /* a value check's predicate */
#define CONF_SHOW_MAX         64  /* bytes of a word shown in a message */
#define CONF_SUGGEST_MAX      32  /* longest word we look for typos in */
#define CONF_NAME_MAX         64  /* target and wave names */
#define CONF_LOCAL_MAX        64  /* RFC 5321 4.5.3.1.1 */
#define CONF_ADDRESS_MAX      254 /* RFC 5321 4.5.3.1.3, without <> */
#define CONF_ROUTE_MAX        512 /* a route pattern, in octets */
#define CONF_RESOLVERS_MAX    16
#define CONF_SUN_PATH_MAX     107 /* sizeof(sun_path) - 1 on Linux */
#define CONF_MEMBERS_FILE_MAX (64u * 1024 * 1024) /* members_file */
#define CONF_REWRITES_MAX     4096                /* per target */

#define CONF_DEFAULT_SPOOL "/var/spool/splitmx"

enum conf_ctx {
	CONF_CTX_TOP,
	CONF_CTX_DOMAIN, /* before limits: see conf_misplaced() */
	CONF_CTX_LIMITS,
	CONF_CTX_LISTEN,
	CONF_CTX_LOG,
	CONF_CTX_TARGET,
	CONF_CTX_WAVE,
	CONF_CTX_QUEUE,
	CONF_CTX_COUNT,
};

enum conf_tok {
	CONF_TOK_WORD,
	CONF_TOK_END,   /* newline or ';' */
	CONF_TOK_OPEN,  /* '{' */
	CONF_TOK_CLOSE, /* '}' */
	CONF_TOK_EOF,
	CONF_TOK_ERROR, /* message already reported */
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
	CONF_ARG_DATA_DEADLINE,
	CONF_ARG_SESSION_DEADLINE,
	CONF_ARG_STRESS_THRESHOLD,
	CONF_ARG_STRESS_TIMEOUT,
	CONF_ARG_STRESS_DEADLINE,
	CONF_ARG_TLS_CERT,
	CONF_ARG_TLS_KEY,
	CONF_ARG_TLS_CA,
	CONF_ARG_T_CONNECTIONS,
	CONF_ARG_T_RATE,
	CONF_ARG_T_MESSAGES,
	CONF_ARG_T_TIMEOUT_CONNECT,
	CONF_ARG_T_TIMEOUT_COMMAND,
	CONF_ARG_T_TIMEOUT_DATA,
	CONF_ARG_Q_RETRY_INITIAL,
	CONF_ARG_Q_RETRY_MAX,
	CONF_ARG_Q_LIFETIME,
	CONF_ARG_Q_DELAY_WARNING,
	CONF_ARG_V_CACHE,
	CONF_ARG_V_TEMPFAIL,
	CONF_ARG_D_ENABLE,
	CONF_ARG_D_WINDOW,
	CONF_ARG_D_MAX_SIZE,
	CONF_ARG_J_SEGMENT,
	CONF_ARG_J_RETENTION,
	CONF_ARG_REVERSE_LOOKUP,
	CONF_ARG_AUTH_CHECKS,
	CONF_ARG_SPF_REJECT,
};

/* What a target name appears in, for resolving it after the parse. */
enum conf_ref_kind {
	CONF_REF_DOMAIN,  /* domain ... { targets } */
	CONF_REF_VERIFY,  /* domain ... { verify_recipients } */
	CONF_REF_WAVE,    /* wave ... { targets } */
	CONF_REF_STATE,   /* wave ... { state }: "legacy", "cloud" */
	CONF_REF_ROUTE,   /* route PATTERN TARGET... */
	CONF_REF_DEFAULT, /* default_target */
};

struct conf_ref {
	char *name;
	int line;
	enum conf_ref_kind kind;
	size_t owner; /* domain, wave or route index */
	size_t pos;   /* in its target set */
};

/* Open addressing over one array of named things: index + 1, 0 empty. */
struct conf_set {
	size_t *slot;
	size_t size;
};

typedef const char *(*conf_name_fn)(const struct conf *, size_t);

struct conf_parser;

struct conf_directive {
	const char *name;
	enum conf_ctx ctx; /* where it may appear */
	int min, max;      /* argument counts; max -1: no limit */
	enum conf_block block;
	bool repeat;         /* may appear more than once */
	enum conf_ctx opens; /* the block it opens, if any */
	enum conf_arg arg;   /* which field, for shared handlers */
	const char *usage;   /* arguments, for messages */
	int (*fn)(struct conf_parser *, const struct conf_directive *, int);
};

struct conf_parser {
	const char *buf;
	size_t len;
	size_t pos;
	int line;            /* line the lexer is on */
	int tok_line;        /* line of the last token */
	struct sbuf tok;     /* text of the last word */
	struct sbuf why;     /* what a value check found wrong */
	const char *file;    /* for messages */
	const char *basedir; /* NULL: relative paths stay relative */
	struct sbuf *err;
	bool failed;
	struct conf *conf;
	enum conf_ctx ctx;
	int block_line;
	size_t cur;   /* listener or domain being filled */
	char **words; /* the statement being handled */
	size_t nwords;
	size_t words_size;
	int *seen;            /* line of each directive, 0: not yet */
	size_t listeners_cap; /* allocated conf->listeners */
	size_t domains_cap;   /* allocated conf->domains */
	size_t targets_cap;
	size_t waves_cap;
	size_t routes_cap;
	struct conf_set domset; /* domain names */
	struct conf_set tset;   /* target names */
	struct conf_set wset;   /* wave names */
	struct conf_ref *refs;  /* target names to resolve */
	size_t nrefs;
	size_t refs_cap;
	char *tls_cert; /* top-level defaults, resolved */
	char *tls_key;
	int tls_cert_line;
	int tls_key_line;
	char show[2][CONF_SHOW_MAX * 4 + 8];
	int show_next;
};

struct conf_unit {
	char suffix;
	uint64_t mult;
};

/* conf_parse.c: messages, names, dispatch */
const char *conf_show_into(char *out, size_t outsize, const char *s,
    size_t len);
const char *conf_show(struct conf_parser *p, const char *s);
int conf_err(struct conf_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int conf_errc(struct conf_parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *conf_domain_name_at(const struct conf *conf, size_t i);
const char *conf_target_name_at(const struct conf *conf, size_t i);
const char *conf_wave_name_at(const struct conf *conf, size_t i);
long conf_set_find(const struct conf_set *set, const struct conf *conf,
    conf_name_fn name, const char *key);
long conf_set_add(struct conf_set *set, const struct conf *conf,
    conf_name_fn name, size_t n, const char *key);
char *conf_label(const char *kind, const char *name);
int conf_seen_line(const struct conf_parser *p, enum conf_ctx ctx,
    const char *name);
size_t conf_distance(const char *a, const char *b);
struct conf *conf_parse(const char *buf, size_t len, const char *file,
    const char *basedir, struct sbuf *err);

/* conf_lex.c: the lexer and the value parsers */
extern const struct conf_unit conf_units_size[];
extern const struct conf_unit conf_units_duration[];
extern const struct conf_unit conf_units_none[];
enum conf_tok conf_lex(struct conf_parser *p);
void conf_words_clear(struct conf_parser *p);
enum conf_tok conf_statement(struct conf_parser *p, int *line_out);
int conf_last_line(const struct conf_parser *p);
int conf_parse_scaled(const char *s, const struct conf_unit *units,
    uint64_t max, uint64_t *out);
bool conf_domain_valid(const char *s, bool wildcard);
char *conf_dirname(const char *file);
char *conf_resolve(const char *basedir, const char *path);
void conf_lower(char *s);
bool conf_name_valid(const char *s);
bool conf_hostname_valid(const char *s);
char *conf_pattern_new(const struct conf_domain *d, const char *s, size_t len,
    struct sbuf *err);
char *conf_address_new(const char *s, size_t len, struct sbuf *err);
int conf_parse_ip_port(const char *arg, int *af_out, char *addr_out,
    size_t addr_size, unsigned *port_out, struct sbuf *err);

/* conf_blocks.c: the directive table */
extern const struct conf_directive conf_directives[];
extern const size_t conf_ndirectives;
int conf_path_arg(struct conf_parser *p, const struct conf_directive *dir,
    int line, char **out);

/* conf_targets.c: handlers named in the table */
int conf_do_default_target(struct conf_parser *, const struct conf_directive *,
    int);
int conf_do_target(struct conf_parser *, const struct conf_directive *, int);
int conf_do_wave(struct conf_parser *, const struct conf_directive *, int);
int conf_do_route(struct conf_parser *, const struct conf_directive *, int);
int conf_do_set(struct conf_parser *, const struct conf_directive *, int);
int conf_do_verify(struct conf_parser *, const struct conf_directive *, int);
int conf_do_state(struct conf_parser *, const struct conf_directive *, int);
int conf_do_members(struct conf_parser *, const struct conf_directive *, int);
int conf_do_members_file(struct conf_parser *, const struct conf_directive *,
    int);
int conf_do_type(struct conf_parser *, const struct conf_directive *, int);
int conf_do_host(struct conf_parser *, const struct conf_directive *, int);
int conf_do_mx(struct conf_parser *, const struct conf_directive *, int);
int conf_do_port(struct conf_parser *, const struct conf_directive *, int);
int conf_do_socket(struct conf_parser *, const struct conf_directive *, int);
int conf_do_maildir(struct conf_parser *, const struct conf_directive *, int);
int conf_do_target_tls(struct conf_parser *, const struct conf_directive *,
    int);
int conf_do_target_name(struct conf_parser *, const struct conf_directive *,
    int);
int conf_do_target_num(struct conf_parser *, const struct conf_directive *,
    int);
int conf_do_rewrite(struct conf_parser *, const struct conf_directive *, int);
int conf_do_target_srs(struct conf_parser *, const struct conf_directive *,
    int);
int conf_do_target_source(struct conf_parser *, const struct conf_directive *,
    int);

/* conf_check.c */
int conf_close_block(struct conf_parser *p);
int conf_finish(struct conf_parser *p);

/* conf_load.c: the sorted lists behind the look-ups */
void conf_domain_index(struct conf_domain *d);
void conf_wave_index(struct conf_wave *w);

#endif
