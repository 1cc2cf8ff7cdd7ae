/*
 * conf.c - the splitmx.conf parser, its checks and look-ups.
 *
 * conf_parse_buf is pure: bytes in, a struct conf or one "FILE:LINE: what"
 * message out. It is a flat loop over statements with a one-level context
 * (top level or one block), so no input can recurse or grow memory beyond a
 * multiple of its own size. Only conf_load and conf_load_recipients touch
 * files. The syntax is documented in splitmx.conf(5); keep the two in step.
 * Target names may be used before their block: every reference is kept
 * with its line and resolved once the whole file is read.
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
#define CONF_NAME_MAX		64	/* target and wave names */
#define CONF_LOCAL_MAX		64	/* RFC 5321 4.5.3.1.1 */
#define CONF_ADDRESS_MAX	254	/* RFC 5321 4.5.3.1.3, without <> */
#define CONF_ROUTE_MAX		512	/* a route pattern, in octets */
#define CONF_RESOLVERS_MAX	16
#define CONF_SUN_PATH_MAX	107	/* sizeof(sun_path) - 1 on Linux */
#define CONF_MEMBERS_FILE_MAX	(64u * 1024 * 1024)	/* members_file */
#define CONF_REWRITES_MAX	4096	/* per target */

#define CONF_DEFAULT_SPOOL	"/var/spool/splitmx"

enum conf_ctx {
	CONF_CTX_TOP,
	CONF_CTX_DOMAIN,	/* before limits: see conf_misplaced() */
	CONF_CTX_LIMITS,
	CONF_CTX_LISTEN,
	CONF_CTX_LOG,
	CONF_CTX_TARGET,
	CONF_CTX_WAVE,
	CONF_CTX_QUEUE,
	CONF_CTX_COUNT,
};

static const char *const conf_ctx_names[CONF_CTX_COUNT] = {
	"top level", "domain", "limits", "listen", "log", "target", "wave",
	"queue",
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
	CONF_ARG_REVERSE_LOOKUP,
	CONF_ARG_AUTH_CHECKS,
	CONF_ARG_SPF_REJECT,
};

/* What a target name appears in, for resolving it after the parse. */
enum conf_ref_kind {
	CONF_REF_DOMAIN,	/* domain ... { targets } */
	CONF_REF_VERIFY,	/* domain ... { verify_recipients } */
	CONF_REF_WAVE,		/* wave ... { targets } */
	CONF_REF_STATE,		/* wave ... { state }: "legacy", "cloud" */
	CONF_REF_ROUTE,		/* route PATTERN TARGET... */
	CONF_REF_DEFAULT,	/* default_target */
};

struct conf_ref {
	char			*name;
	int			 line;
	enum conf_ref_kind	 kind;
	size_t			 owner;	/* domain, wave or route index */
	size_t			 pos;	/* in its target set */
};

/* Open addressing over one array of named things: index + 1, 0 empty. */
struct conf_set {
	size_t	*slot;
	size_t	 size;
};

typedef const char *(*conf_name_fn)(const struct conf *, size_t);

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
	size_t		 targets_cap;
	size_t		 waves_cap;
	size_t		 routes_cap;
	struct conf_set	 domset;	/* domain names */
	struct conf_set	 tset;		/* target names */
	struct conf_set	 wset;		/* wave names */
	struct conf_ref	*refs;		/* target names to resolve */
	size_t		 nrefs;
	size_t		 refs_cap;
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
static int conf_do_resolvers(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_default_target(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_target(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_wave(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_route(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_set(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_verify(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_type(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_host(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_mx(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_port(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_socket(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_maildir(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_target_tls(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_target_name(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_target_num(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_rewrite(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_state(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_members(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_members_file(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_queue(struct conf_parser *, const struct conf_directive *,
    int);
static int conf_do_verify_opts(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_trusted(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_authserv(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_target_srs(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_target_source(struct conf_parser *,
    const struct conf_directive *, int);
static int conf_do_srs(struct conf_parser *, const struct conf_directive *,
    int);
static const struct conf_directive *conf_directive_find(enum conf_ctx,
    const char *);

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
	D_TOP("resolvers", 1, -1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "ADDR[:PORT]...", conf_do_resolvers),
	D_TOP("default_target", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "TARGET", conf_do_default_target),
	D_TOP("queue", 0, 0, CONF_BLOCK_REQUIRED, false, CONF_CTX_QUEUE,
	    "{ ... }", conf_do_block),
	D_TOP("target", 1, 1, CONF_BLOCK_REQUIRED, true, CONF_CTX_TARGET,
	    "NAME { ... }", conf_do_target),
	D_TOP("wave", 1, 1, CONF_BLOCK_REQUIRED, true, CONF_CTX_WAVE,
	    "NAME { ... }", conf_do_wave),
	D_TOP("route", 2, -1, CONF_BLOCK_NONE, true, CONF_CTX_TOP,
	    "PATTERN TARGET...", conf_do_route),
	{ "verify_cache", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_V_CACHE, "DURATION", conf_do_verify_opts },
	{ "verify_tempfail", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_V_TEMPFAIL, "yes|no", conf_do_verify_opts },
	{ "auth_checks", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_AUTH_CHECKS, "yes|no", conf_do_verify_opts },
	{ "spf_reject", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_SPF_REJECT, "yes|no", conf_do_verify_opts },
	{ "authserv_id", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_NONE, "NAME", conf_do_authserv },
	{ "reverse_lookup", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_REVERSE_LOOKUP, "yes|no",
	    conf_do_verify_opts },
	{ "duplicates", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_D_ENABLE, "yes|no", conf_do_verify_opts },
	{ "duplicate_window", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_D_WINDOW, "DURATION", conf_do_verify_opts },
	{ "duplicate_max_size", CONF_CTX_TOP, 1, 1, CONF_BLOCK_NONE, false,
	    CONF_CTX_TOP, CONF_ARG_D_MAX_SIZE, "SIZE", conf_do_verify_opts },
	D_TOP("trusted_hosts", 1, -1, CONF_BLOCK_NONE, true, CONF_CTX_TOP,
	    "ADDR...", conf_do_trusted),

	D_IN(CONF_CTX_DOMAIN, "recipients", 1, -1, true, CONF_ARG_NONE,
	    "PATTERN...", conf_do_recipients),
	D_IN(CONF_CTX_DOMAIN, "recipients_file", 1, 1, false, CONF_ARG_NONE,
	    "PATH", conf_do_recipients_file),
	D_IN(CONF_CTX_DOMAIN, "targets", 1, -1, false, CONF_ARG_NONE,
	    "TARGET...", conf_do_set),
	D_IN(CONF_CTX_DOMAIN, "verify_recipients", 1, 1, false, CONF_ARG_NONE,
	    "TARGET", conf_do_verify),

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

	D_IN(CONF_CTX_TARGET, "type", 1, 1, false, CONF_ARG_NONE,
	    "smtp|lmtp|maildir", conf_do_type),
	D_IN(CONF_CTX_TARGET, "host", 1, 1, false, CONF_ARG_NONE,
	    "HOST[:PORT]", conf_do_host),
	D_IN(CONF_CTX_TARGET, "mx", 1, 1, false, CONF_ARG_NONE, "DOMAIN|*",
	    conf_do_mx),
	D_IN(CONF_CTX_TARGET, "port", 1, 1, false, CONF_ARG_NONE, "N",
	    conf_do_port),
	D_IN(CONF_CTX_TARGET, "socket", 1, 1, false, CONF_ARG_NONE, "PATH",
	    conf_do_socket),
	D_IN(CONF_CTX_TARGET, "path", 1, 1, false, CONF_ARG_NONE, "PATH",
	    conf_do_maildir),
	D_IN(CONF_CTX_TARGET, "tls", 1, 1, false, CONF_ARG_NONE,
	    "none|may|encrypt|verify", conf_do_target_tls),
	D_IN(CONF_CTX_TARGET, "tls_ca", 1, 1, false, CONF_ARG_TLS_CA, "PATH",
	    conf_do_tls),
	D_IN(CONF_CTX_TARGET, "tls_name", 1, 1, false, CONF_ARG_NONE, "NAME",
	    conf_do_target_name),
	D_IN(CONF_CTX_TARGET, "tls_cert", 1, 1, false, CONF_ARG_TLS_CERT,
	    "PATH", conf_do_tls),
	D_IN(CONF_CTX_TARGET, "tls_key", 1, 1, false, CONF_ARG_TLS_KEY, "PATH",
	    conf_do_tls),
	D_IN(CONF_CTX_TARGET, "connections", 1, 1, false,
	    CONF_ARG_T_CONNECTIONS, "N", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "rate", 1, 1, false, CONF_ARG_T_RATE, "N",
	    conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "messages_per_connection", 1, 1, false,
	    CONF_ARG_T_MESSAGES, "N", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "timeout_connect", 1, 1, false,
	    CONF_ARG_T_TIMEOUT_CONNECT, "DURATION", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "timeout_command", 1, 1, false,
	    CONF_ARG_T_TIMEOUT_COMMAND, "DURATION", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "timeout_data", 1, 1, false,
	    CONF_ARG_T_TIMEOUT_DATA, "DURATION", conf_do_target_num),
	D_IN(CONF_CTX_TARGET, "helo", 1, 1, false, CONF_ARG_NONE, "NAME",
	    conf_do_target_name),
	D_IN(CONF_CTX_TARGET, "rewrite", 2, 2, true, CONF_ARG_NONE,
	    "@FROM @TO", conf_do_rewrite),
	D_IN(CONF_CTX_TARGET, "srs", 1, 1, false, CONF_ARG_NONE, "yes|no",
	    conf_do_target_srs),
	D_IN(CONF_CTX_TARGET, "source_address", 1, 1, false, CONF_ARG_NONE,
	    "ADDR", conf_do_target_source),
	D_TOP("srs_domain", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "NAME", conf_do_srs),
	D_TOP("srs_secret_file", 1, 1, CONF_BLOCK_NONE, false, CONF_CTX_TOP,
	    "PATH", conf_do_srs),

	D_IN(CONF_CTX_WAVE, "state", 1, 1, false, CONF_ARG_NONE,
	    "legacy|dual|cloud", conf_do_state),
	D_IN(CONF_CTX_WAVE, "targets", 1, -1, false, CONF_ARG_NONE,
	    "TARGET...", conf_do_set),
	D_IN(CONF_CTX_WAVE, "members", 1, -1, true, CONF_ARG_NONE,
	    "ADDRESS...", conf_do_members),
	D_IN(CONF_CTX_WAVE, "members_file", 1, 1, false, CONF_ARG_NONE,
	    "PATH", conf_do_members_file),

	D_IN(CONF_CTX_QUEUE, "retry_initial", 1, 1, false,
	    CONF_ARG_Q_RETRY_INITIAL, "DURATION", conf_do_queue),
	D_IN(CONF_CTX_QUEUE, "retry_max", 1, 1, false, CONF_ARG_Q_RETRY_MAX,
	    "DURATION", conf_do_queue),
	D_IN(CONF_CTX_QUEUE, "lifetime", 1, 1, false, CONF_ARG_Q_LIFETIME,
	    "DURATION", conf_do_queue),
	D_IN(CONF_CTX_QUEUE, "delay_warning", 1, 1, false,
	    CONF_ARG_Q_DELAY_WARNING, "DURATION", conf_do_queue),
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

/*
 * Reports an error in a directive, naming the block it is in (and the
 * target or wave by name: there are usually several); -1.
 */
static int
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
		(void)snprintf(prefix, sizeof(prefix), "%s '%s': ",
		    conf_ctx_names[p->ctx],
		    conf_show_into(name, sizeof(name), n, strlen(n)));
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
	if (p->ctx == CONF_CTX_TARGET) {
		struct conf_target *t = &p->conf->targets[p->cur];

		if (dir->arg == CONF_ARG_TLS_CA)
			return conf_path_arg(p, dir, line, &t->tls_ca);
		return conf_path_arg(p, dir, line,
		    cert ? &t->tls_cert : &t->tls_key);
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

static const char *
conf_domain_name_at(const struct conf *conf, size_t i)
{
	return conf->domains[i].name;
}

static const char *
conf_target_name_at(const struct conf *conf, size_t i)
{
	return conf->targets[i].name;
}

static const char *
conf_wave_name_at(const struct conf *conf, size_t i)
{
	return conf->waves[i].name;
}

/* Index of the entry named key, or -1. */
static long
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
static long
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
static char *
conf_label(const char *kind, const char *name)
{
	size_t klen = strlen(kind), nlen = strlen(name);
	char *out = xmalloc(klen + 1 + nlen + 1);

	memcpy(out, kind, klen);
	out[klen] = ' ';
	memcpy(out + klen + 1, name, nlen + 1);
	return out;
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
	if ((dup = conf_set_add(&p->domset, conf, conf_domain_name_at,
	    conf->ndomains, name)) != -1) {
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
	d->verify_target = -1;
	d->label = conf_label("domain", name);
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
 * Names, addresses and target sets.
 */

static void
conf_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Target and wave names: a letter or digit, then those, '.', '_', '-'. */
static bool
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
static bool
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
 * Checks s[0..len) as a full address "local@domain" and returns it
 * lower-cased; NULL with why (a predicate) filled in otherwise. The local
 * part, which may be quoted, ends at the last '@'.
 */
static char *
conf_address_new(const char *s, size_t len, char *why, size_t whysize)
{
	const char *at = NULL;
	char *out;
	size_t i;

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
	if (at == NULL) {
		(void)snprintf(why, whysize,
		    "is not a full address (local@domain)");
		return NULL;
	}
	if (at == s) {
		(void)snprintf(why, whysize, "has an empty local part");
		return NULL;
	}
	if ((size_t)(at - s) > CONF_LOCAL_MAX) {
		(void)snprintf(why, whysize, "has a local part longer than %d "
		    "octets", CONF_LOCAL_MAX);
		return NULL;
	}
	if (len > CONF_ADDRESS_MAX) {
		(void)snprintf(why, whysize, "is longer than %d octets",
		    CONF_ADDRESS_MAX);
		return NULL;
	}
	out = xstrndup(s, len);
	conf_lower(out);
	if (!conf_domain_valid(out + (at - s) + 1, false)) {
		free(out);
		(void)snprintf(why, whysize,
		    "has no valid domain after the last '@'");
		return NULL;
	}
	return out;
}

/* Sorts w's members and drops repeats, for conf_wave_has. */
static void
conf_wave_index(struct conf_wave *w)
{
	size_t i, k = 0;

	if (w->nmembers == 0)
		return;
	qsort(w->members, w->nmembers, sizeof(w->members[0]),
	    conf_casecmp_p);
	for (i = 0; i < w->nmembers; i++) {
		if (k > 0 && strcasecmp(w->members[k - 1], w->members[i]) == 0)
			free(w->members[i]);
		else
			w->members[k++] = w->members[i];
	}
	w->nmembers = k;
}

/* The line where directive name was seen in the current block, or 0. */
static int
conf_seen_line(const struct conf_parser *p, enum conf_ctx ctx,
    const char *name)
{
	const struct conf_directive *dir = conf_directive_find(ctx, name);

	if (dir == NULL)
		log_panic("conf_seen_line: no directive %s", name);
	return p->seen[dir - conf_directives];
}

static void
conf_ref_add(struct conf_parser *p, const char *name, int line,
    enum conf_ref_kind kind, size_t owner, size_t pos)
{
	struct conf_ref *r;

	if (p->nrefs == p->refs_cap) {
		p->refs_cap = p->refs_cap ? p->refs_cap * 2 : 16;
		p->refs = xreallocarray(p->refs, p->refs_cap,
		    sizeof(p->refs[0]));
	}
	r = &p->refs[p->nrefs++];
	r->name = xstrdup(name);
	r->line = line;
	r->kind = kind;
	r->owner = owner;
	r->pos = pos;
}

/*
 * Checks the target names p->words[first..] of one set and returns the
 * array for it, each name queued for conf_resolve_refs; NULL after an
 * error. what prefixes messages at the top level ("route: ").
 */
static size_t *
conf_targets_new(struct conf_parser *p, int line, size_t first,
    enum conf_ref_kind kind, size_t owner, const char *what)
{
	size_t n = p->nwords - first, i, j;

	if (n > CONF_TARGET_SET_MAX) {
		conf_errc(p, line, "%sat most %d targets in one set, got %zu",
		    what, CONF_TARGET_SET_MAX, n);
		return NULL;
	}
	for (i = first; i < p->nwords; i++) {
		if (!conf_name_valid(p->words[i])) {
			conf_errc(p, line, "%s'%s' is not a target name", what,
			    conf_show(p, p->words[i]));
			return NULL;
		}
		for (j = first; j < i; j++) {
			if (strcmp(p->words[j], p->words[i]) == 0) {
				conf_errc(p, line, "%starget '%s' is listed "
				    "twice", what, conf_show(p, p->words[i]));
				return NULL;
			}
		}
	}
	for (i = 0; i < n; i++)
		conf_ref_add(p, p->words[first + i], line, kind, owner, i);
	return xcalloc(n, sizeof(size_t));
}

/*
 * Parses an IP address with an optional port: 192.0.2.1, 192.0.2.1:53,
 * [2001:db8::1]:53, [2001:db8::1] or 2001:db8::1. Writes the address in
 * canonical form; -1 with why (a predicate) on error.
 */
static int
conf_parse_ip_port(const char *arg, int *af_out, char *addr_out,
    size_t addr_size, unsigned *port_out, char *why, size_t whysize)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *colon;
	size_t hlen;
	uint64_t v;
	int af;

	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL) {
			(void)snprintf(why, whysize, "is missing the ']'");
			return -1;
		}
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0') {
			(void)snprintf(why, whysize,
			    "needs ':PORT' or nothing after the ']'");
			return -1;
		}
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
		af = AF_INET6;		/* bare IPv6, no port */
		hlen = strlen(arg);
	}
	if (hlen >= sizeof(host)) {
		(void)snprintf(why, whysize, "is not an IP address");
		return -1;
	}
	memcpy(host, arg, hlen);
	host[hlen] = '\0';
	if (inet_pton(af, host, bin) != 1) {
		(void)snprintf(why, whysize, "is not an IPv4 address or an "
		    "IPv6 address in brackets (host names are not allowed)");
		return -1;
	}
	*port_out = 0;
	if (port != NULL) {
		if (conf_parse_scaled(port, conf_units_none, 65535, &v) != 0 ||
		    v == 0) {
			(void)snprintf(why, whysize, "has a bad port "
			    "(expected 1-65535)");
			return -1;
		}
		*port_out = (unsigned)v;
	}
	if (inet_ntop(af, bin, addr_out, (socklen_t)addr_size) == NULL) {
		(void)snprintf(why, whysize, "is not an IP address");
		return -1;
	}
	*af_out = af;
	return 0;
}

/*
 * Top-level directives for delivery.
 */

static int
conf_do_resolvers(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	char addr[INET6_ADDRSTRLEN], why[128];
	struct sbuf csv;
	unsigned port;
	size_t i;
	int af;

	if (p->nwords - 1 > CONF_RESOLVERS_MAX)
		return conf_errc(p, line, "'%s' takes at most %d addresses",
		    dir->name, CONF_RESOLVERS_MAX);
	/* The form ares_set_servers_ports_csv takes: [v6]:port, v4:port. */
	sbuf_init(&csv, CONF_RESOLVERS_MAX * (INET6_ADDRSTRLEN + 10));
	for (i = 1; i < p->nwords; i++) {
		if (conf_parse_ip_port(p->words[i], &af, addr, sizeof(addr),
		    &port, why, sizeof(why)) == -1) {
			sbuf_release(&csv);
			return conf_errc(p, line, "%s: '%s' %s", dir->name,
			    conf_show(p, p->words[i]), why);
		}
		/* Fits: the cap allows the longest address for each. */
		(void)sbuf_printf(&csv, "%s%s%s%s:%u", i > 1 ? "," : "",
		    af == AF_INET6 ? "[" : "", addr, af == AF_INET6 ? "]" : "",
		    port != 0 ? port : 53);
	}
	free(p->conf->resolvers);
	p->conf->resolvers = xstrndup(csv.data, csv.len);
	sbuf_release(&csv);
	return 0;
}

static int
conf_do_default_target(struct conf_parser *p,
    const struct conf_directive *dir, int line)
{
	if (!conf_name_valid(p->words[1]))
		return conf_errc(p, line, "%s: '%s' is not a target name",
		    dir->name, conf_show(p, p->words[1]));
	conf_ref_add(p, p->words[1], line, CONF_REF_DEFAULT, 0, 0);
	return 0;
}

static int
conf_do_target(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_target *t;
	const char *name = p->words[1];
	long dup;

	(void)dir;
	if (!conf_name_valid(name))
		return conf_errc(p, line, "target: '%s' is not a valid name "
		    "(a letter or digit, then letters, digits, '.', '_', "
		    "'-'; at most %d)", conf_show(p, name), CONF_NAME_MAX);
	if ((dup = conf_set_add(&p->tset, conf, conf_target_name_at,
	    conf->ntargets, name)) != -1)
		return conf_errc(p, line, "target: duplicate target '%s' "
		    "(first at line %d)", conf_show(p, name),
		    conf->targets[dup].line);
	if (conf->ntargets == p->targets_cap) {
		p->targets_cap = p->targets_cap ? p->targets_cap * 2 : 4;
		conf->targets = xreallocarray(conf->targets, p->targets_cap,
		    sizeof(conf->targets[0]));
	}
	t = &conf->targets[conf->ntargets];
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	t->connections = 10;
	t->rate = 0;
	t->messages_per_connection = 100;
	t->timeout_connect = 30;
	t->timeout_command = 300;
	t->timeout_data = 600;
	t->line = line;
	p->cur = conf->ntargets++;
	return 0;
}

static int
conf_do_wave(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_wave *w;
	const char *name = p->words[1];
	long dup;

	(void)dir;
	if (!conf_name_valid(name))
		return conf_errc(p, line, "wave: '%s' is not a valid name "
		    "(a letter or digit, then letters, digits, '.', '_', "
		    "'-'; at most %d)", conf_show(p, name), CONF_NAME_MAX);
	if ((dup = conf_set_add(&p->wset, conf, conf_wave_name_at,
	    conf->nwaves, name)) != -1)
		return conf_errc(p, line, "wave: duplicate wave '%s' (first "
		    "at line %d)", conf_show(p, name), conf->waves[dup].line);
	if (conf->nwaves == p->waves_cap) {
		p->waves_cap = p->waves_cap ? p->waves_cap * 2 : 4;
		conf->waves = xreallocarray(conf->waves, p->waves_cap,
		    sizeof(conf->waves[0]));
	}
	w = &conf->waves[conf->nwaves];
	memset(w, 0, sizeof(*w));
	w->name = xstrdup(name);
	w->state = CONF_WAVE_TARGETS;
	w->line = line;
	w->label = conf_label("wave", name);
	p->cur = conf->nwaves++;
	return 0;
}

/* A lower-cased copy of a route pattern; NULL with why on error. */
static char *
conf_route_pattern_new(const char *s, char *why, size_t whysize)
{
	size_t len = strlen(s), i;
	char *out;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			(void)snprintf(why, whysize,
			    "contains a control character");
			return NULL;
		}
	}
	if (strchr(s, '@') == NULL) {
		(void)snprintf(why, whysize, "is not an address pattern "
		    "(local@domain, as in *@sales.example.com)");
		return NULL;
	}
	if (len > CONF_ROUTE_MAX) {
		(void)snprintf(why, whysize, "is longer than %d bytes",
		    CONF_ROUTE_MAX);
		return NULL;
	}
	for (i = len; i > 0 && s[i - 1] == '\\'; i--)
		continue;
	if ((len - i) % 2 == 1) {
		(void)snprintf(why, whysize, "ends with a lone '\\'");
		return NULL;
	}
	out = xstrdup(s);
	conf_lower(out);
	return out;
}

static int
conf_do_route(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf *conf = p->conf;
	struct conf_route *r;
	char why[128], *pattern;
	size_t *set;

	(void)dir;
	if ((pattern = conf_route_pattern_new(p->words[1], why,
	    sizeof(why))) == NULL)
		return conf_errc(p, line, "route: pattern '%s' %s",
		    conf_show(p, p->words[1]), why);
	set = conf_targets_new(p, line, 2, CONF_REF_ROUTE, conf->nroutes,
	    "route: ");
	if (set == NULL) {
		free(pattern);
		return -1;
	}
	if (conf->nroutes == p->routes_cap) {
		p->routes_cap = p->routes_cap ? p->routes_cap * 2 : 8;
		conf->routes = xreallocarray(conf->routes, p->routes_cap,
		    sizeof(conf->routes[0]));
	}
	r = &conf->routes[conf->nroutes++];
	memset(r, 0, sizeof(*r));
	r->pattern = pattern;
	r->targets = set;
	r->ntargets = p->nwords - 2;
	r->line = line;
	r->label = conf_label("route", pattern);
	return 0;
}

/*
 * Domain and wave blocks: target sets.
 */

static int
conf_do_set(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	size_t *set;
	int other;

	(void)dir;
	if (p->ctx == CONF_CTX_WAVE) {
		struct conf_wave *w = &p->conf->waves[p->cur];

		if ((other = conf_seen_line(p, CONF_CTX_WAVE, "state")) != 0)
			return conf_errc(p, line, "'state' (line %d) and "
			    "'targets' cannot both be given", other);
		if ((set = conf_targets_new(p, line, 1, CONF_REF_WAVE, p->cur,
		    "")) == NULL)
			return -1;
		w->targets = set;
		w->ntargets = p->nwords - 1;
		w->state = CONF_WAVE_TARGETS;
	} else {
		struct conf_domain *d = &p->conf->domains[p->cur];

		if ((set = conf_targets_new(p, line, 1, CONF_REF_DOMAIN,
		    p->cur, "")) == NULL)
			return -1;
		d->targets = set;
		d->ntargets = p->nwords - 1;
	}
	return 0;
}

static int
conf_do_verify(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	if (!conf_name_valid(p->words[1]))
		return conf_errc(p, line, "%s: '%s' is not a target name",
		    dir->name, conf_show(p, p->words[1]));
	conf_ref_add(p, p->words[1], line, CONF_REF_VERIFY, p->cur, 0);
	return 0;
}

static int
conf_do_state(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_wave *w = &p->conf->waves[p->cur];
	const char *arg = p->words[1];
	const char *names[2];
	size_t n, i;
	int other;

	if ((other = conf_seen_line(p, CONF_CTX_WAVE, "targets")) != 0)
		return conf_errc(p, line, "'targets' (line %d) and 'state' "
		    "cannot both be given", other);
	if (strcmp(arg, "legacy") == 0) {
		w->state = CONF_WAVE_LEGACY;
		names[0] = "legacy";
		n = 1;
	} else if (strcmp(arg, "dual") == 0) {
		w->state = CONF_WAVE_DUAL;
		names[0] = "legacy";
		names[1] = "cloud";
		n = 2;
	} else if (strcmp(arg, "cloud") == 0) {
		w->state = CONF_WAVE_CLOUD;
		names[0] = "cloud";
		n = 1;
	} else
		return conf_errc(p, line, "'%s' must be legacy, dual or "
		    "cloud, got '%s'", dir->name, conf_show(p, arg));
	for (i = 0; i < n; i++)
		conf_ref_add(p, names[i], line, CONF_REF_STATE, p->cur, i);
	w->targets = xcalloc(n, sizeof(w->targets[0]));
	w->ntargets = n;
	return 0;
}

static int
conf_do_members(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_wave *w = &p->conf->waves[p->cur];
	char why[128], *addr;
	size_t i;

	(void)dir;
	w->members = xreallocarray(w->members, w->nmembers + p->nwords - 1,
	    sizeof(w->members[0]));
	for (i = 1; i < p->nwords; i++) {
		const char *a = p->words[i];

		if ((addr = conf_address_new(a, strlen(a), why,
		    sizeof(why))) == NULL)
			return conf_errc(p, line, "member '%s' %s",
			    conf_show(p, a), why);
		w->members[w->nmembers++] = addr;
	}
	return 0;
}

static int
conf_do_members_file(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	return conf_path_arg(p, dir, line,
	    &p->conf->waves[p->cur].members_file);
}

/*
 * Target blocks.
 */

/* Target types as bits, for the options each type takes. */
#define CONF_T_SMTP	(1u << CONF_TARGET_SMTP)
#define CONF_T_LMTP	(1u << CONF_TARGET_LMTP)
#define CONF_T_MAILDIR	(1u << CONF_TARGET_MAILDIR)
#define CONF_T_ALL	(CONF_T_SMTP | CONF_T_LMTP | CONF_T_MAILDIR)

static const struct {
	const char	*name;
	unsigned	 types;
} conf_target_types[] = {
	{ "host", CONF_T_SMTP | CONF_T_LMTP },
	{ "mx", CONF_T_SMTP },
	{ "port", CONF_T_SMTP },
	{ "socket", CONF_T_LMTP },
	{ "path", CONF_T_MAILDIR },
	{ "tls", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_ca", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_name", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_cert", CONF_T_SMTP | CONF_T_LMTP },
	{ "tls_key", CONF_T_SMTP | CONF_T_LMTP },
	{ "messages_per_connection", CONF_T_SMTP | CONF_T_LMTP },
	{ "timeout_connect", CONF_T_SMTP | CONF_T_LMTP },
	{ "timeout_command", CONF_T_SMTP | CONF_T_LMTP },
	{ "timeout_data", CONF_T_SMTP | CONF_T_LMTP },
	{ "helo", CONF_T_SMTP | CONF_T_LMTP },
	{ "srs", CONF_T_SMTP | CONF_T_LMTP },
	{ "source_address", CONF_T_SMTP | CONF_T_LMTP },
};

static unsigned
conf_target_mask(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(conf_target_types) /
	    sizeof(conf_target_types[0]); i++)
		if (strcmp(conf_target_types[i].name, name) == 0)
			return conf_target_types[i].types;
	return CONF_T_ALL;
}

static const char *
conf_target_mask_name(unsigned types)
{
	switch (types) {
	case CONF_T_SMTP:
		return "type smtp";
	case CONF_T_LMTP:
		return "type lmtp";
	case CONF_T_MAILDIR:
		return "type maildir";
	default:
		return "types smtp and lmtp";
	}
}

/* host, mx and socket exclude each other: one next hop per target. */
static int
conf_hop_conflict(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	static const char *const hops[] = { "host", "mx", "socket" };
	size_t i;
	int other;

	for (i = 0; i < sizeof(hops) / sizeof(hops[0]); i++) {
		if (strcmp(hops[i], dir->name) == 0)
			continue;
		if ((other = conf_seen_line(p, CONF_CTX_TARGET, hops[i])) != 0)
			return conf_errc(p, line, "'%s' (line %d) and '%s' "
			    "cannot both be given", hops[i], other,
			    dir->name);
	}
	return 0;
}

static int
conf_do_type(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *arg = p->words[1];

	if (strcmp(arg, "smtp") == 0)
		t->type = CONF_TARGET_SMTP;
	else if (strcmp(arg, "lmtp") == 0)
		t->type = CONF_TARGET_LMTP;
	else if (strcmp(arg, "maildir") == 0)
		t->type = CONF_TARGET_MAILDIR;
	else
		return conf_errc(p, line, "'%s' must be smtp, lmtp or "
		    "maildir, got '%s'", dir->name, conf_show(p, arg));
	return 0;
}

/* "1".."65535" into a new normalized string; NULL if not a port. */
static char *
conf_port_new(const char *s)
{
	char buf[8];
	uint64_t v;

	if (conf_parse_scaled(s, conf_units_none, 65535, &v) != 0 || v == 0)
		return NULL;
	(void)snprintf(buf, sizeof(buf), "%u", (unsigned)v);
	return xstrdup(buf);
}

/* HOST[:PORT]: a host name, an IPv4 address or an [IPv6] address. */
static int
conf_do_host(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *arg = p->words[1], *port = NULL, *colon;
	char *host, *portstr = NULL;

	if (conf_hop_conflict(p, dir, line) == -1)
		return -1;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL)
			return conf_errc(p, line, "'host' is missing the ']' "
			    "after the IPv6 address in '%s'",
			    conf_show(p, arg));
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return conf_errc(p, line, "'host' needs ':PORT' or "
			    "nothing after ']' in '%s'", conf_show(p, arg));
		host = xstrndup(arg + 1, (size_t)(close - arg - 1));
		if (inet_pton(AF_INET6, host, bin) != 1) {
			conf_errc(p, line, "'host': '%s' is not an IPv6 "
			    "address", conf_show(p, host));
			free(host);
			return -1;
		}
	} else {
		colon = strchr(arg, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return conf_errc(p, line, "'host': an IPv6 address "
			    "must be in brackets, as in [2001:db8::25]:25, got "
			    "'%s'", conf_show(p, arg));
		host = colon != NULL ? xstrndup(arg, (size_t)(colon - arg)) :
		    xstrdup(arg);
		port = colon != NULL ? colon + 1 : NULL;
		if (inet_pton(AF_INET, host, bin) != 1 &&
		    !conf_hostname_valid(host)) {
			conf_errc(p, line, "'host': '%s' is not a host name, "
			    "an IPv4 address or an [IPv6] address",
			    conf_show(p, host));
			free(host);
			return -1;
		}
	}
	if (port != NULL && (portstr = conf_port_new(port)) == NULL) {
		conf_errc(p, line, "'host': bad port '%s' in '%s' (expected "
		    "1-65535)", conf_show(p, port), conf_show(p, arg));
		free(host);
		return -1;
	}
	free(t->host);
	t->host = host;
	if (portstr != NULL) {
		free(t->port);
		t->port = portstr;
	}
	return 0;
}

static int
conf_do_mx(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *arg = p->words[1];

	if (conf_hop_conflict(p, dir, line) == -1)
		return -1;
	if (strcmp(arg, "*") != 0 && !conf_hostname_valid(arg))
		return conf_errc(p, line, "'mx' needs a domain name or '*', "
		    "got '%s'", conf_show(p, arg));
	free(t->mx);
	t->mx = xstrdup(arg);
	conf_lower(t->mx);
	return 0;
}

static int
conf_do_port(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	char *port;

	if ((port = conf_port_new(p->words[1])) == NULL)
		return conf_errc(p, line, "'%s' must be a number from 1 to "
		    "65535, got '%s'", dir->name, conf_show(p, p->words[1]));
	free(t->port);
	t->port = port;
	return 0;
}

static int
conf_do_socket(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];

	if (conf_hop_conflict(p, dir, line) == -1 ||
	    conf_path_arg(p, dir, line, &t->socket) == -1)
		return -1;
	if (strlen(t->socket) > CONF_SUN_PATH_MAX)
		return conf_errc(p, line, "'%s' path is longer than %d bytes "
		    "once resolved: '%s'", dir->name, CONF_SUN_PATH_MAX,
		    conf_show(p, t->socket));
	return 0;
}

static int
conf_do_maildir(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	return conf_path_arg(p, dir, line, &p->conf->targets[p->cur].path);
}

static int
conf_do_target_tls(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	static const char *const names[] = { "none", "may", "encrypt",
	    "verify" };
	static const enum conf_tls_policy policies[] = { CONF_TLS_NONE,
	    CONF_TLS_MAY, CONF_TLS_ENCRYPT, CONF_TLS_VERIFY };
	const char *arg = p->words[1];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(arg, names[i]) == 0) {
			p->conf->targets[p->cur].tls = policies[i];
			return 0;
		}
	}
	return conf_errc(p, line, "'%s' must be none, may, encrypt or verify, "
	    "got '%s'", dir->name, conf_show(p, arg));
}

/* tls_name and helo: host names. */
static int
conf_do_target_name(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	char **field = strcmp(dir->name, "helo") == 0 ? &t->helo :
	    &t->tls_name;

	if (!conf_hostname_valid(p->words[1]))
		return conf_errc(p, line, "'%s' needs a host name, got '%s'",
		    dir->name, conf_show(p, p->words[1]));
	free(*field);
	*field = xstrdup(p->words[1]);
	return 0;
}

static int
conf_do_target_num(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *arg = p->words[1];
	unsigned *field, min = 1, max = UINT_MAX;
	bool duration = false;
	uint64_t v;
	int rc;

	switch (dir->arg) {
	case CONF_ARG_T_CONNECTIONS:
		field = &t->connections;
		max = 10000;
		break;
	case CONF_ARG_T_RATE:
		field = &t->rate;
		min = 0;
		max = 1000000;
		break;
	case CONF_ARG_T_MESSAGES:
		field = &t->messages_per_connection;
		max = 1000000;
		break;
	case CONF_ARG_T_TIMEOUT_CONNECT:
		field = &t->timeout_connect;
		duration = true;
		break;
	case CONF_ARG_T_TIMEOUT_COMMAND:
		field = &t->timeout_command;
		duration = true;
		break;
	case CONF_ARG_T_TIMEOUT_DATA:
		field = &t->timeout_data;
		duration = true;
		break;
	default:
		log_panic("conf_do_target_num: no field for %d",
		    (int)dir->arg);
	}
	if (duration) {
		rc = conf_parse_scaled(arg, conf_units_duration, max, &v);
		if (rc == -1)
			return conf_errc(p, line, "'%s' needs a duration (a "
			    "number with an optional s, m, h or d suffix), "
			    "got '%s'", dir->name, conf_show(p, arg));
		if (rc == -2)
			return conf_errc(p, line, "'%s' value '%s' is too "
			    "large", dir->name, conf_show(p, arg));
		if (v == 0)
			return conf_errc(p, line, "'%s' must be greater than "
			    "zero, got '%s'", dir->name, conf_show(p, arg));
	} else if (conf_parse_scaled(arg, conf_units_none, max, &v) != 0 ||
	    v < min)
		return conf_errc(p, line, "'%s' must be a number from %u to "
		    "%u, got '%s'", dir->name, min, max, conf_show(p, arg));
	*field = (unsigned)v;
	return 0;
}

/* "@DOMAIN" into a new lower-cased "domain"; NULL if not of that form. */
static char *
conf_at_domain_new(const char *s)
{
	char *out;

	if (s[0] != '@')
		return NULL;
	out = xstrdup(s + 1);
	conf_lower(out);
	if (!conf_hostname_valid(out)) {
		free(out);
		return NULL;
	}
	return out;
}

static int
conf_do_rewrite(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	char *from, *to;
	size_t i;

	if ((from = conf_at_domain_new(p->words[1])) == NULL)
		return conf_errc(p, line, "'%s' needs '@' and a domain name "
		    "on both sides (rewrite @FROM @TO), got '%s'", dir->name,
		    conf_show(p, p->words[1]));
	if ((to = conf_at_domain_new(p->words[2])) == NULL) {
		free(from);
		return conf_errc(p, line, "'%s' needs '@' and a domain name "
		    "on both sides (rewrite @FROM @TO), got '%s'", dir->name,
		    conf_show(p, p->words[2]));
	}
	for (i = 0; i < t->nrewrites; i++) {
		if (strcmp(t->rewrite_from[i], from) == 0) {
			conf_errc(p, line, "'%s' of '@%s' is given twice",
			    dir->name, conf_show(p, from));
			free(from);
			free(to);
			return -1;
		}
	}
	if (t->nrewrites == CONF_REWRITES_MAX) {
		free(from);
		free(to);
		return conf_errc(p, line, "at most %d '%s' lines per target",
		    CONF_REWRITES_MAX, dir->name);
	}
	t->rewrite_from = xreallocarray(t->rewrite_from, t->nrewrites + 1,
	    sizeof(t->rewrite_from[0]));
	t->rewrite_to = xreallocarray(t->rewrite_to, t->nrewrites + 1,
	    sizeof(t->rewrite_to[0]));
	t->rewrite_from[t->nrewrites] = from;
	t->rewrite_to[t->nrewrites] = to;
	t->nrewrites++;
	return 0;
}

/*
 * Checks a target block once it is closed: its type, the options that
 * fit the type, one next hop, and the defaults that depend on the type.
 */
static int
conf_close_target(struct conf_parser *p)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	const char *bad = NULL;
	unsigned bit;
	int badline = 0, l, cert, key, port;
	size_t i;

	if (conf_seen_line(p, CONF_CTX_TARGET, "type") == 0)
		return conf_errc(p, t->line, "missing 'type' (smtp, lmtp or "
		    "maildir)");
	bit = 1u << t->type;
	for (i = 0; i < CONF_NDIRECTIVES; i++) {
		const struct conf_directive *dir = &conf_directives[i];

		if (dir->ctx != CONF_CTX_TARGET || (l = p->seen[i]) == 0 ||
		    (conf_target_mask(dir->name) & bit) != 0)
			continue;
		if (bad == NULL || l < badline) {
			bad = dir->name;
			badline = l;
		}
	}
	if (bad != NULL)
		return conf_errc(p, badline, "'%s' is only valid for %s", bad,
		    conf_target_mask_name(conf_target_mask(bad)));
	switch (t->type) {
	case CONF_TARGET_SMTP:
		if (t->host == NULL && t->mx == NULL)
			return conf_errc(p, t->line, "type smtp needs 'host' "
			    "or 'mx'");
		port = conf_seen_line(p, CONF_CTX_TARGET, "port");
		if (port != 0 && t->mx == NULL)
			return conf_errc(p, port, "'port' goes with 'mx' only "
			    "(write 'host NAME:PORT')");
		break;
	case CONF_TARGET_LMTP:
		if (t->host == NULL && t->socket == NULL)
			return conf_errc(p, t->line, "type lmtp needs 'host' "
			    "or 'socket'");
		break;
	case CONF_TARGET_MAILDIR:
		if (t->path == NULL)
			return conf_errc(p, t->line, "type maildir needs "
			    "'path'");
		break;
	}
	cert = conf_seen_line(p, CONF_CTX_TARGET, "tls_cert");
	key = conf_seen_line(p, CONF_CTX_TARGET, "tls_key");
	if (cert != 0 && key == 0)
		return conf_errc(p, cert, "tls_cert is set but tls_key is not");
	if (key != 0 && cert == 0)
		return conf_errc(p, key, "tls_key is set but tls_cert is not");
	if (t->port == NULL && (t->host != NULL || t->mx != NULL))
		t->port = xstrdup(t->type == CONF_TARGET_LMTP ? "24" : "25");
	if (conf_seen_line(p, CONF_CTX_TARGET, "tls") == 0)
		t->tls = t->type == CONF_TARGET_SMTP ? CONF_TLS_MAY :
		    CONF_TLS_NONE;
	return 0;
}

static int
conf_close_wave(struct conf_parser *p)
{
	struct conf_wave *w = &p->conf->waves[p->cur];

	if (w->ntargets == 0)
		return conf_errc(p, w->line, "needs 'state' (legacy, dual or "
		    "cloud) or 'targets'");
	conf_wave_index(w);
	return 0;
}

/*
 * Queue block.
 */

static int
conf_do_queue(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_queue *q = &p->conf->queue;
	const char *arg = p->words[1];
	uint64_t v;
	int rc;

	rc = conf_parse_scaled(arg, conf_units_duration, UINT_MAX, &v);
	if (rc == -1)
		return conf_errc(p, line, "'%s' needs a duration (a number "
		    "with an optional s, m, h or d suffix), got '%s'",
		    dir->name, conf_show(p, arg));
	if (rc == -2)
		return conf_errc(p, line, "'%s' value '%s' is too large",
		    dir->name, conf_show(p, arg));
	if (v == 0 && dir->arg != CONF_ARG_Q_DELAY_WARNING)
		return conf_errc(p, line, "'%s' must be greater than zero, "
		    "got '%s'", dir->name, conf_show(p, arg));
	switch (dir->arg) {
	case CONF_ARG_Q_RETRY_INITIAL:
		q->retry_initial = (unsigned)v;
		break;
	case CONF_ARG_Q_RETRY_MAX:
		q->retry_max = (unsigned)v;
		break;
	case CONF_ARG_Q_LIFETIME:
		q->lifetime = (unsigned)v;
		break;
	case CONF_ARG_Q_DELAY_WARNING:
		q->delay_warning = (unsigned)v;
		break;
	default:
		log_panic("conf_do_queue: no field for %d", (int)dir->arg);
	}
	return 0;
}

/* Recipient verification: how long answers are cached, and 450 or not. */
static int
conf_do_verify_opts(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *arg = p->words[1];
	uint64_t v;

	if (dir->arg == CONF_ARG_V_TEMPFAIL || dir->arg == CONF_ARG_D_ENABLE ||
	    dir->arg == CONF_ARG_REVERSE_LOOKUP ||
	    dir->arg == CONF_ARG_AUTH_CHECKS || dir->arg == CONF_ARG_SPF_REJECT) {
		bool yes;

		if (strcmp(arg, "yes") == 0)
			yes = true;
		else if (strcmp(arg, "no") == 0)
			yes = false;
		else
			return conf_errc(p, line, "'%s' needs yes or no, got "
			    "'%s'", dir->name, conf_show(p, arg));
		if (dir->arg == CONF_ARG_V_TEMPFAIL)
			p->conf->verify_tempfail = yes;
		else if (dir->arg == CONF_ARG_REVERSE_LOOKUP)
			p->conf->reverse_lookup = yes;
		else if (dir->arg == CONF_ARG_AUTH_CHECKS)
			p->conf->auth_checks = yes;
		else if (dir->arg == CONF_ARG_SPF_REJECT)
			p->conf->spf_reject = yes;
		else
			p->conf->duplicates = yes;
		return 0;
	}
	if (dir->arg == CONF_ARG_D_MAX_SIZE) {
		if (conf_parse_scaled(arg, conf_units_size, UINT64_MAX,
		    &v) != 0 || v < 1024 * 1024)
			return conf_errc(p, line, "'%s' needs a size of at least "
			    "1M, got '%s'", dir->name, conf_show(p, arg));
		p->conf->duplicate_max_size = v;
		return 0;
	}
	if (conf_parse_scaled(arg, conf_units_duration, UINT_MAX, &v) != 0 ||
	    v == 0)
		return conf_errc(p, line, "'%s' needs a positive duration, "
		    "got '%s'", dir->name, conf_show(p, arg));
	if (dir->arg == CONF_ARG_D_WINDOW)
		p->conf->duplicate_window = (unsigned)v;
	else
		p->conf->verify_cache = (unsigned)v;
	return 0;
}

/* srs yes|no in a target: rewrite the sender for this target (SRS). */
static int
conf_do_target_srs(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];

	if (strcmp(p->words[1], "yes") == 0)
		t->srs = true;
	else if (strcmp(p->words[1], "no") == 0)
		t->srs = false;
	else
		return conf_errc(p, line, "'%s' needs yes or no, got '%s'",
		    dir->name, conf_show(p, p->words[1]));
	return 0;
}

/* source_address ADDR: the local address outbound connections use. */
static int
conf_do_target_source(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	struct conf_target *t = &p->conf->targets[p->cur];
	unsigned char bin[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, p->words[1], bin) != 1 &&
	    inet_pton(AF_INET6, p->words[1], bin) != 1)
		return conf_errc(p, line, "%s: '%s' is not an IP address",
		    dir->name, conf_show(p, p->words[1]));
	free(t->source_address);
	t->source_address = xstrdup(p->words[1]);
	return 0;
}

/* srs_domain NAME and srs_secret_file PATH (read by conf_load). */
static int
conf_do_srs(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *v = p->words[1];

	if (strcmp(dir->name, "srs_domain") == 0) {
		if (!conf_hostname_valid(v))
			return conf_errc(p, line, "%s: '%s' is not a domain",
			    dir->name, conf_show(p, v));
		free(p->conf->srs_domain);
		p->conf->srs_domain = xstrdup(v);
		return 0;
	}
	free(p->conf->srs_secret_file);
	p->conf->srs_secret_file = conf_resolve(p->basedir, v);
	return 0;
}

/* Our name in Authentication-Results (RFC 8601 authserv-id). */
static int
conf_do_authserv(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	const char *v = p->words[1], *c;

	for (c = v; *c != '\0'; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' ||
		    *c == '_'))
			return conf_errc(p, line, "%s: '%s' is not a host name",
			    dir->name, conf_show(p, v));
	free(p->conf->authserv_id);
	p->conf->authserv_id = xstrdup(v);
	return 0;
}

/* Hosts whose mail is returning mail (the targets' outbound addresses). */
static int
conf_do_trusted(struct conf_parser *p, const struct conf_directive *dir,
    int line)
{
	unsigned char bin[sizeof(struct in6_addr)];
	struct conf *conf = p->conf;
	size_t i;

	for (i = 1; i < p->nwords; i++) {
		const char *a = p->words[i];

		if (inet_pton(AF_INET, a, bin) != 1 &&
		    inet_pton(AF_INET6, a, bin) != 1)
			return conf_errc(p, line, "%s: '%s' is not an IP "
			    "address", dir->name, conf_show(p, a));
		conf->trusted_hosts = xreallocarray(conf->trusted_hosts,
		    conf->ntrusted_hosts + 1, sizeof(*conf->trusted_hosts));
		conf->trusted_hosts[conf->ntrusted_hosts++] = xstrdup(a);
	}
	return 0;
}

static int
conf_close_queue(struct conf_parser *p)
{
	const struct conf_queue *q = &p->conf->queue;
	int initial = conf_seen_line(p, CONF_CTX_QUEUE, "retry_initial");
	int max = conf_seen_line(p, CONF_CTX_QUEUE, "retry_max");
	int warn = conf_seen_line(p, CONF_CTX_QUEUE, "delay_warning");
	int life = conf_seen_line(p, CONF_CTX_QUEUE, "lifetime");

	if (q->retry_initial > q->retry_max)
		return conf_errc(p, initial != 0 ? initial : max,
		    "retry_initial (%us) is longer than retry_max (%us)",
		    q->retry_initial, q->retry_max);
	if (q->delay_warning != 0 && q->delay_warning >= q->lifetime)
		return conf_errc(p, warn != 0 ? warn : life, "delay_warning "
		    "(%us) must be shorter than lifetime (%us)",
		    q->delay_warning, q->lifetime);
	return 0;
}

/* Checks made when a block closes, while its directives' lines are known. */
static int
conf_close_block(struct conf_parser *p)
{
	switch (p->ctx) {
	case CONF_CTX_TARGET:
		return conf_close_target(p);
	case CONF_CTX_WAVE:
		return conf_close_wave(p);
	case CONF_CTX_QUEUE:
		return conf_close_queue(p);
	default:
		return 0;
	}
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

/* Closest target name to name, for "did you mean"; NULL if none. */
static const char *
conf_suggest_target(const struct conf *conf, const char *name)
{
	const char *best = NULL;
	size_t i, bestd = 3;

	if (strlen(name) < 3)
		return NULL;
	for (i = 0; i < conf->ntargets; i++) {
		size_t dist = conf_distance(name, conf->targets[i].name);

		if (dist < bestd) {
			bestd = dist;
			best = conf->targets[i].name;
		}
	}
	return best;
}

static int
conf_unknown_target(struct conf_parser *p, const struct conf_ref *r)
{
	const struct conf *conf = p->conf;
	static const char *const states[] = { "targets", "legacy", "dual",
	    "cloud" };
	char prefix[CONF_NAME_MAX * 4 + 32], hint[CONF_NAME_MAX * 4 + 32];
	const char *close;

	switch (r->kind) {
	case CONF_REF_STATE:
		return conf_err(p, r->line, "wave '%s': state '%s' needs a "
		    "target named '%s'", conf_show(p, conf->waves[r->owner].name),
		    states[conf->waves[r->owner].state], r->name);
	case CONF_REF_WAVE:
		(void)snprintf(prefix, sizeof(prefix), "wave '%s': ",
		    conf_show(p, conf->waves[r->owner].name));
		break;
	case CONF_REF_DOMAIN:
		(void)snprintf(prefix, sizeof(prefix), "domain: ");
		break;
	case CONF_REF_VERIFY:
		(void)snprintf(prefix, sizeof(prefix), "domain: "
		    "verify_recipients: ");
		break;
	case CONF_REF_ROUTE:
		(void)snprintf(prefix, sizeof(prefix), "route: ");
		break;
	case CONF_REF_DEFAULT:
		(void)snprintf(prefix, sizeof(prefix), "default_target: ");
		break;
	}
	if (conf->ntargets == 0)
		(void)snprintf(hint, sizeof(hint), " (no target blocks are "
		    "defined)");
	else if ((close = conf_suggest_target(conf, r->name)) != NULL)
		(void)snprintf(hint, sizeof(hint), " (did you mean '%s'?)",
		    close);
	else
		hint[0] = '\0';
	return conf_err(p, r->line, "%sunknown target '%s'%s", prefix,
	    conf_show(p, r->name), hint);
}

/*
 * Gives every target reference its index, in file order so that the
 * first unknown name is the one reported.
 */
static int
conf_resolve_refs(struct conf_parser *p)
{
	struct conf *conf = p->conf;
	size_t i;

	for (i = 0; i < p->nrefs; i++) {
		const struct conf_ref *r = &p->refs[i];
		long t = conf_set_find(&p->tset, conf, conf_target_name_at,
		    r->name);

		if (t == -1)
			return conf_unknown_target(p, r);
		switch (r->kind) {
		case CONF_REF_DOMAIN:
			conf->domains[r->owner].targets[r->pos] = (size_t)t;
			break;
		case CONF_REF_VERIFY:
			/* A maildir cannot answer RCPT TO. */
			if (conf->targets[t].type == CONF_TARGET_MAILDIR)
				return conf_err(p, r->line, "domain: "
				    "verify_recipients needs an smtp or lmtp "
				    "target, '%s' is a maildir",
				    conf_show(p, r->name));
			conf->domains[r->owner].verify_target = (int)t;
			break;
		case CONF_REF_WAVE:
		case CONF_REF_STATE:
			conf->waves[r->owner].targets[r->pos] = (size_t)t;
			break;
		case CONF_REF_ROUTE:
			conf->routes[r->owner].targets[r->pos] = (size_t)t;
			break;
		case CONF_REF_DEFAULT:
			conf->default_target = (int)t;
			break;
		}
	}
	return 0;
}

/*
 * Checks made once the whole file is read: TLS pairs, inheritance of the
 * top-level certificate, target references, and the directives that must
 * be present.
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
	if (conf_resolve_refs(p) == -1)
		return -1;
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
		if (conf_close_block(p) == -1)
			return -1;
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
	conf->verify_tempfail = false;
}

/* conf_parse_buf with the base directory for relative paths given apart. */
static struct conf *
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
	free(p.domset.slot);
	free(p.tset.slot);
	free(p.wset.slot);
	for (i = 0; i < p.nrefs; i++)
		free(p.refs[i].name);
	free(p.refs);
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
	for (i = 0; i < conf->nwaves; i++) {
		struct conf_wave *w = &conf->waves[i];

		if (w->members_file != NULL &&
		    conf_load_members(w, w->members_file, err) == -1) {
			conf_free(conf);
			return NULL;
		}
	}
	return conf;
}

/* Checks one line of a list file; NULL with why (a predicate) if bad. */
typedef char *(*conf_item_fn)(const void *arg, const char *s, size_t len,
    char *why, size_t whysize);

static char *
conf_recipient_item(const void *arg, const char *s, size_t len, char *why,
    size_t whysize)
{
	return conf_pattern_new(arg, s, len, why, whysize);
}

static char *
conf_member_item(const void *arg, const char *s, size_t len, char *why,
    size_t whysize)
{
	(void)arg;
	return conf_address_new(s, len, why, whysize);
}

/*
 * Parses a list file held in memory (recipients_file, members_file): one
 * item per line; a '#' at the start of a line or after a blank starts a
 * comment ('#' is legal in a local part, so "a#b" stays an item). what
 * names an item in messages. Appends to *v_out / *n_out only on success.
 */
static int
conf_list_parse(const char *buf, size_t len, const char *path,
    const char *what, conf_item_fn fn, const void *arg, char ***v_out,
    size_t *n_out, struct sbuf *err)
{
	char msg[CONF_MSG_MAX], why[128], show[CONF_SHOW_MAX * 4 + 8];
	char **v = NULL, *item;
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
			    "%s per line, got '%s'", what, show);
			goto fail;
		}
		item = fn(arg, buf + start, end - start, why, sizeof(why));
		if (item == NULL) {
			(void)snprintf(msg, sizeof(msg), "%s '%s' %s", what,
			    show, why);
			goto fail;
		}
		if (nv == cap) {
			cap = cap ? cap * 2 : 64;
			v = xreallocarray(v, cap, sizeof(v[0]));
		}
		v[nv++] = item;
	}
	*v_out = xreallocarray(*v_out, *n_out + nv, sizeof(v[0]));
	if (nv > 0)
		memcpy(*v_out + *n_out, v, nv * sizeof(v[0]));
	*n_out += nv;
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
	rc = conf_list_parse(buf, len, path, "pattern", conf_recipient_item, d,
	    &d->recipients, &d->nrecipients, err);
	free(buf);
	if (rc == -1)
		return -1;
	d->has_list = true;
	conf_domain_index(d);
	return 0;
}

int
conf_load_members(struct conf_wave *w, const char *path, struct sbuf *err)
{
	size_t len;
	char *buf;
	int rc;

	if (conf_read_file(path, CONF_MEMBERS_FILE_MAX, &buf, &len, err) == -1)
		return -1;
	rc = conf_list_parse(buf, len, path, "address", conf_member_item,
	    NULL, &w->members, &w->nmembers, err);
	free(buf);
	if (rc == -1)
		return -1;
	conf_wave_index(w);
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
		free(d->targets);
		free(d->label);
	}
	free(conf->domains);
	for (i = 0; i < conf->ntargets; i++) {
		struct conf_target *t = &conf->targets[i];

		free(t->name);
		free(t->host);
		free(t->port);
		free(t->mx);
		free(t->socket);
		free(t->path);
		free(t->tls_ca);
		free(t->tls_name);
		free(t->tls_cert);
		free(t->tls_key);
		free(t->helo);
		free(t->source_address);
		for (j = 0; j < t->nrewrites; j++) {
			free(t->rewrite_from[j]);
			free(t->rewrite_to[j]);
		}
		free(t->rewrite_from);
		free(t->rewrite_to);
	}
	free(conf->targets);
	for (i = 0; i < conf->nwaves; i++) {
		struct conf_wave *w = &conf->waves[i];

		free(w->name);
		free(w->targets);
		for (j = 0; j < w->nmembers; j++)
			free(w->members[j]);
		free(w->members);
		free(w->members_file);
		free(w->label);
	}
	free(conf->waves);
	for (i = 0; i < conf->nroutes; i++) {
		free(conf->routes[i].pattern);
		free(conf->routes[i].targets);
		free(conf->routes[i].label);
	}
	free(conf->routes);
	free(conf->resolvers);
	free(conf->authserv_id);
	free(conf->srs_domain);
	free(conf->srs_secret_file);
	for (i = 0; i < conf->ntrusted_hosts; i++)
		free(conf->trusted_hosts[i]);
	free(conf->trusted_hosts);
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

int
conf_target_index(const struct conf *conf, const char *name)
{
	size_t i;

	if (conf == NULL || name == NULL)
		return -1;
	for (i = 0; i < conf->ntargets; i++)
		if (strcmp(conf->targets[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool
conf_wave_has(const struct conf_wave *w, const char *addr)
{
	/* Members are lower-cased, so strcasecmp keeps their strcmp order. */
	return w != NULL && addr != NULL && w->nmembers > 0 &&
	    bsearch(&addr, w->members, w->nmembers, sizeof(w->members[0]),
	    conf_casecmp_p) != NULL;
}
