/*
 * conf.h - the splitmx.conf configuration: parse, check, look up.
 *
 * conf_parse_buf is pure (bytes in, struct or "file:line: error" out);
 * conf_load reads the file and the recipient and wave members files it
 * names and resolves relative paths against the config file's directory.
 * Target names used by domains, waves, routes and default_target are
 * resolved into indices into conf->targets before conf_parse_buf returns.
 * The syntax is documented in splitmx.conf(5).
 */
#ifndef SPLITMX_CONF_H
#define SPLITMX_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

struct conf_listener {
	char *host;     /* "127.0.0.1", "::1", or "*" for any */
	char *port;     /* numeric string */
	char *tls_cert; /* PEM paths; NULL: no STARTTLS here */
	char *tls_key;
	int line; /* where it was declared */
};

struct conf_domain {
	char *name; /* lower-cased; "*.example.com" matches subdomains */
	/*
	 * Recipient local-part patterns (fnmatch, case-insensitive), from the
	 * inline "recipients" list and "recipients_file". When has_list is
	 * false every local part is accepted.
	 */
	char **recipients;
	size_t nrecipients;
	/*
	 * recipients[0..nexact) hold the patterns without wildcards, sorted
	 * with strcasecmp so a lookup is a binary search; the rest are
	 * fnmatch patterns tried in turn. Kept by conf_parse_buf and
	 * conf_load_recipients; 0 (everything tried with fnmatch) is always
	 * correct for a hand-built domain.
	 */
	size_t nexact;
	bool has_list;
	char *recipients_file; /* resolved path, or NULL */
	size_t *targets;       /* default target set (indices) */
	size_t ntargets;       /* 0: mail is held, not delivered */
	int verify_target;     /* RCPT probe target index, -1 none */
	int line;
	char *label; /* "domain NAME", for router why_out */
};

/* The most targets in one set (domain, wave, route): one hop each. */
#define CONF_TARGET_SET_MAX 16

enum conf_newline {
	CONF_NEWLINE_NORMALIZE,
	CONF_NEWLINE_REJECT
};

enum conf_target_type {
	CONF_TARGET_SMTP,    /* SMTP to a host, or to a domain's MX hosts */
	CONF_TARGET_LMTP,    /* LMTP over TCP or a UNIX socket */
	CONF_TARGET_MAILDIR, /* a local maildir (archive, demo) */
};

enum conf_tls_policy {
	CONF_TLS_NONE,    /* never STARTTLS */
	CONF_TLS_MAY,     /* STARTTLS when offered, no verification */
	CONF_TLS_ENCRYPT, /* STARTTLS required, no verification */
	CONF_TLS_VERIFY,  /* STARTTLS required, chain and name verified */
};

/* A next hop that messages are delivered to. */
struct conf_target {
	char *name;
	enum conf_target_type type;
	/*
	 * SMTP/LMTP: exactly one of host (fixed next hop, a name or an IP
	 * literal), mx (deliver to the MX hosts of that domain; "*" means the
	 * MX hosts of each recipient's own domain) or socket (LMTP only).
	 */
	char *host;
	char *port; /* default 25 (smtp), 24 (lmtp) */
	char *mx;
	char *socket;
	char *path;               /* MAILDIR: the maildir */
	enum conf_tls_policy tls; /* default may (smtp), none (lmtp) */
	char *tls_ca;             /* CA file for verify */
	char *tls_name;           /* expected name; default the host */
	char *tls_cert;           /* client certificate, optional */
	char *tls_key;
	unsigned connections;             /* concurrent, default 10 */
	unsigned rate;                    /* messages/minute, 0 = no limit */
	unsigned messages_per_connection; /* default 100 */
	unsigned timeout_connect;         /* seconds, default 30 */
	unsigned timeout_command;         /* default 300 */
	unsigned timeout_data;            /* default 600 */
	char *helo;                       /* NULL: the hostname */
	char *source_address;             /* bind outbound to it, or NULL */
	/*
	 * Recipient domain rewrites, tried in order: a recipient whose domain
	 * equals rewrite_from[i] (without the '@', lower-cased) gets domain
	 * rewrite_to[i] at this target. "@example.com @x.onmicrosoft.com".
	 */
	bool srs; /* rewrite senders with SRS */
	char **rewrite_from;
	char **rewrite_to;
	size_t nrewrites;
	int line;
};

/* How a wave's target set was given. */
enum conf_wave_state {
	CONF_WAVE_TARGETS, /* an explicit "targets" list */
	CONF_WAVE_LEGACY,  /* state legacy: [legacy] */
	CONF_WAVE_DUAL,    /* state dual: [legacy, cloud] */
	CONF_WAVE_CLOUD,   /* state cloud: [cloud] */
};

/* A named cohort of recipients that moves between target sets. */
struct conf_wave {
	char *name;
	enum conf_wave_state state;
	size_t *targets; /* indices into conf->targets */
	size_t ntargets;
	char **members; /* lower-cased full addresses, sorted */
	size_t nmembers;
	char *members_file; /* resolved path, or NULL */
	int line;
	char *label; /* "wave NAME", for router why_out */
};

/* A per-recipient override: route PATTERN TARGET... */
struct conf_route {
	char *pattern; /* lower-cased address, fnmatch wildcards */
	size_t *targets;
	size_t ntargets;
	int line;
	char *label; /* "route PATTERN", for router why_out */
};

struct conf_queue {
	unsigned retry_initial; /* seconds, default 60 */
	unsigned retry_max;     /* seconds, default 3600 */
	unsigned lifetime;      /* seconds, default 5 days */
	unsigned delay_warning; /* seconds, 0 = no warning (default) */
};

struct conf_limits {
	uint64_t message_size; /* octets; SIZE advertised */
	unsigned recipients;   /* per message */
	unsigned connections;  /* in total */
	unsigned connections_per_ip;
	unsigned errors;           /* bad commands before 421 */
	unsigned max_received;     /* hop limit: Received fields */
	unsigned timeout_command;  /* seconds, RFC 5321 4.5.3.2 */
	unsigned timeout_data;     /* seconds between data reads */
	unsigned timeout_tls;      /* seconds for the handshake */
	unsigned shutdown_grace;   /* seconds for DATA on SIGTERM */
	unsigned data_deadline;    /* seconds for a whole DATA/BDAT; 0 off */
	unsigned session_deadline; /* seconds for a whole session; 0 off */
	unsigned stress_threshold; /* % of connections; 0: no stress mode */
	unsigned stress_timeout;   /* caps the timeouts under stress */
	unsigned stress_deadline;  /* caps the deadlines under stress */
	enum conf_newline bare_newline;
};

struct conf {
	char *path;       /* the file this came from */
	char *hostname;   /* NULL: the system host name */
	char *spool_dir;  /* resolved */
	char *user;       /* NULL: do not change user */
	unsigned workers; /* worker threads */
	struct conf_listener *listeners;
	size_t nlisteners;
	struct conf_domain *domains;
	size_t ndomains;
	struct conf_limits limits;
	struct conf_target *targets;
	size_t ntargets;
	struct conf_wave *waves;
	size_t nwaves;
	struct conf_route *routes;
	size_t nroutes;
	int default_target; /* other domains; -1 none */
	struct conf_queue queue;
	char *resolvers;               /* "ip[:port],..."; NULL: resolv.conf */
	unsigned verify_cache;         /* seconds a probe answer is kept */
	bool verify_tempfail;          /* 450 when a probe fails */
	bool duplicates;               /* duplicate suppression on */
	bool reverse_lookup;           /* client names via DNS */
	bool auth_checks;              /* SPF and DKIM on arrival */
	bool spf_reject;               /* 550 5.7.23 on SPF fail */
	char *authserv_id;             /* NULL: the hostname */
	char *srs_domain;              /* SRS addresses live here */
	char *srs_secret_file;         /* resolved; the HMAC secret */
	unsigned duplicate_window;     /* seconds */
	uint64_t duplicate_max_size;   /* index bytes */
	uint64_t journal_segment_size; /* rotate the journal past this */
	unsigned journal_retention;    /* seconds closed segments are kept */
	char **trusted_hosts;          /* returning-mail sources */
	size_t ntrusted_hosts;
	bool log_stderr;  /* log destination stderr */
	int log_facility; /* syslog facility */
	int log_level;    /* enum log_level */
};

/*
 * Parses a whole config held in memory. filename is used in messages and
 * to resolve relative paths (against its directory). Returns a new conf,
 * or NULL with err set to "FILE:LINE: what is wrong" (sbuf_seterr). Does
 * not read recipient files.
 */
struct conf *conf_parse_buf(const char *buf, size_t len, const char *filename,
    struct sbuf *err);

/* Reads path, parses it and loads recipient files; NULL with err set. */
struct conf *conf_load(const char *path, struct sbuf *err);

/*
 * Reads a recipient file (one address or local-part pattern per line, '#'
 * comments) into d. Errors name the file and line.
 */
int conf_load_recipients(struct conf_domain *d, const char *path,
    struct sbuf *err);

void conf_free(struct conf *conf);

/* Finds the domain block for a lower-cased domain; NULL if not accepted. */
const struct conf_domain *conf_find_domain(const struct conf *conf,
    const char *domain_lc);

/* Index of the target named name, or -1. */
int conf_target_index(const struct conf *conf, const char *name);

/*
 * Reads a wave members file (one full address per line, '#' comments)
 * into w, lower-cased, and keeps the members sorted without duplicates.
 * Errors name the file and line; w is unchanged on error.
 */
int conf_load_members(struct conf_wave *w, const char *path, struct sbuf *err);

/* Whether addr (a full address; case is ignored) is a member of w. */
bool conf_wave_has(const struct conf_wave *w, const char *addr);

/* Whether a (de-quoted) local part is accepted by the domain's list. */
bool conf_domain_accepts(const struct conf_domain *d, const char *local);

#endif
