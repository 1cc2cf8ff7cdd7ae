/*
 * conf.h - the splitmx.conf configuration: parse, check, look up.
 *
 * conf_parse_buf is pure (bytes in, struct or "file:line: error" out);
 * conf_load reads the file and the recipient files it names and resolves
 * relative paths against the config file's directory. The syntax is
 * documented in splitmx.conf(5).
 */
#ifndef SPLITMX_CONF_H
#define SPLITMX_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

struct conf_listener {
	char	*host;		/* "127.0.0.1", "::1", or "*" for any */
	char	*port;		/* numeric string */
	char	*tls_cert;	/* PEM paths; NULL: no STARTTLS here */
	char	*tls_key;
	int	 line;		/* where it was declared */
};

struct conf_domain {
	char	*name;		/* lower-cased; "*.example.com" matches subdomains */
	/*
	 * Recipient local-part patterns (fnmatch, case-insensitive), from the
	 * inline "recipients" list and "recipients_file". When has_list is
	 * false every local part is accepted.
	 */
	char	**recipients;
	size_t	  nrecipients;
	/*
	 * recipients[0..nexact) hold the patterns without wildcards, sorted
	 * with strcasecmp so a lookup is a binary search; the rest are
	 * fnmatch patterns tried in turn. Kept by conf_parse_buf and
	 * conf_load_recipients; 0 (everything tried with fnmatch) is always
	 * correct for a hand-built domain.
	 */
	size_t	  nexact;
	bool	  has_list;
	char	 *recipients_file;	/* resolved path, or NULL */
	int	  line;
};

enum conf_newline { CONF_NEWLINE_NORMALIZE, CONF_NEWLINE_REJECT };

struct conf_limits {
	uint64_t	message_size;		/* octets; SIZE advertised */
	unsigned	recipients;		/* per message */
	unsigned	connections;		/* in total */
	unsigned	connections_per_ip;
	unsigned	errors;			/* bad commands before 421 */
	unsigned	max_received;		/* hop limit: Received fields */
	unsigned	timeout_command;	/* seconds, RFC 5321 4.5.3.2 */
	unsigned	timeout_data;		/* seconds between data reads */
	unsigned	timeout_tls;		/* seconds for the handshake */
	unsigned	shutdown_grace;		/* seconds for DATA on SIGTERM */
	enum conf_newline bare_newline;
};

struct conf {
	char			*path;		/* the file this came from */
	char			*hostname;	/* NULL: the system host name */
	char			*spool_dir;	/* resolved */
	char			*user;		/* NULL: do not change user */
	unsigned		 workers;	/* worker threads */
	struct conf_listener	*listeners;
	size_t			 nlisteners;
	struct conf_domain	*domains;
	size_t			 ndomains;
	struct conf_limits	 limits;
	bool			 log_stderr;	/* log destination stderr */
	int			 log_facility;	/* syslog facility */
	int			 log_level;	/* enum log_level */
};

/*
 * Parses a whole config held in memory. filename is used in messages and
 * to resolve relative paths (against its directory). Returns a new conf,
 * or NULL with "FILE:LINE: what is wrong" appended to err. Does not read
 * recipient files.
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

/* Whether a (de-quoted) local part is accepted by the domain's list. */
bool conf_domain_accepts(const struct conf_domain *d, const char *local);

#endif
