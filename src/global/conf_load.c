/*
 * conf_load.c - the config, recipient and members files; conf_free and
 * the look-ups made on a loaded conf.
 *
 * The only part of the conf module that touches files: each is read
 * whole, up to a fixed size, and handed to the pure parsers. Relative
 * paths are resolved against the config file's directory, made absolute
 * so that a later chdir cannot change them. A bad list file leaves the
 * domain or wave it was loaded into as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "conf_int.h"
#include "sbuf.h"
#include "xmalloc.h"

/*
 * Lists kept sorted for the look-ups.
 */

static bool
conf_pattern_wild(const char *s)
{
	return strpbrk(s, "*?[\\") != NULL;
}

static int
conf_casecmp_p(const void *a, const void *b)
{
	const char *const *sa = a, *const *sb = b;

	return strcasecmp(*sa, *sb);
}

/* Puts exact patterns first, sorted, for conf_domain_accepts. */
void
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

/* Sorts w's members and drops repeats, for conf_wave_has. */
void
conf_wave_index(struct conf_wave *w)
{
	size_t i, k = 0;

	if (w->nmembers == 0)
		return;
	qsort(w->members, w->nmembers, sizeof(w->members[0]), conf_casecmp_p);
	for (i = 0; i < w->nmembers; i++) {
		if (k > 0 && strcasecmp(w->members[k - 1], w->members[i]) == 0)
			free(w->members[i]);
		else
			w->members[k++] = w->members[i];
	}
	w->nmembers = k;
}

/*
 * Files.
 */

/* Reads at most max bytes of path into a new NUL-terminated buffer. */
static int
conf_read_file(const char *path, size_t max, char **buf_out, size_t *len_out,
    struct sbuf *err)
{
	size_t len = 0, size = 8192;
	char *buf;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return sbuf_seterr(err, "%s: cannot open: %s", path,
		    strerror(errno));
	buf = xmalloc(size);
	for (;;) {
		ssize_t n;

		if (len == size - 1) {
			/* Room for max + 1 bytes tells "too large" apart. */
			if (len > max) {
				sbuf_seterr(err,
				    "%s: file too large (more "
				    "than %zu bytes)",
				    path, max);
				goto fail;
			}
			size = size > (max + 2) / 2 ? max + 2 : size * 2;
			buf = xrealloc(buf, size);
		}
		n = read(fd, buf + len, size - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			sbuf_seterr(err, "%s: cannot read: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		sbuf_seterr(err, "%s: file too large (more than %zu bytes)",
		    path, max);
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
		return dir; /* relative, but still right for now */
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

/* Checks one line of a list file; NULL with err (a predicate) if bad. */
typedef char *(*conf_item_fn)(const void *arg, const char *s, size_t len,
    struct sbuf *err);

static char *
conf_recipient_item(const void *arg, const char *s, size_t len,
    struct sbuf *err)
{
	return conf_pattern_new(arg, s, len, err);
}

static char *
conf_member_item(const void *arg, const char *s, size_t len, struct sbuf *err)
{
	(void)arg;
	return conf_address_new(s, len, err);
}

/*
 * Parses a list file held in memory (recipients_file, members_file): one
 * item per line; a '#' at the start of a line or after a blank starts a
 * comment ('#' is legal in a local part, so "a#b" stays an item). what
 * names an item in messages. Appends to *v_out / *n_out only on success.
 */
static int
conf_list_parse(const char *buf, size_t len, const char *path, const char *what,
    conf_item_fn fn, const void *arg, char ***v_out, size_t *n_out,
    struct sbuf *err)
{
	char show[CONF_SHOW_MAX * 4 + 8];
	char **v = NULL, *item;
	size_t pos = 0, start, end, i, nv = 0, cap = 0;
	struct sbuf why;
	int line = 0;

	sbuf_init(&why, CONF_WHY_MAX);
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);

		start = pos;
		end = nl != NULL ? (size_t)(nl - buf) : len;
		pos = nl != NULL ? end + 1 : len;
		if (line < INT_MAX)
			line++;
		for (i = start; i < end; i++) {
			if (buf[i] == '#' &&
			    (i == start || buf[i - 1] == ' ' ||
			        buf[i - 1] == '\t')) {
				end = i;
				break;
			}
		}
		while (start < end && (buf[start] == ' ' || buf[start] == '\t'))
			start++;
		while (end > start &&
		    (buf[end - 1] == ' ' || buf[end - 1] == '\t' ||
		        buf[end - 1] == '\r'))
			end--;
		if (start == end)
			continue;
		(void)conf_show_into(show, sizeof(show), buf + start,
		    end - start);
		if (memchr(buf + start, ' ', end - start) != NULL ||
		    memchr(buf + start, '\t', end - start) != NULL) {
			sbuf_seterr(err,
			    "%s:%d: expected one %s per line, "
			    "got '%s'",
			    path, line, what, show);
			goto fail;
		}
		item = fn(arg, buf + start, end - start, &why);
		if (item == NULL) {
			sbuf_seterr(err, "%s:%d: %s '%s' %s", path, line, what,
			    show, why.data);
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
	sbuf_release(&why);
	return 0;
fail:
	sbuf_release(&why);
	for (i = 0; i < nv; i++)
		free(v[i]);
	free(v);
	return -1;
}

int
conf_load_recipients(struct conf_domain *d, const char *path, struct sbuf *err)
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
	rc = conf_list_parse(buf, len, path, "address", conf_member_item, NULL,
	    &w->members, &w->nmembers, err);
	free(buf);
	if (rc == -1)
		return -1;
	conf_wave_index(w);
	return 0;
}

/*
 * The loaded configuration.
 */

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
	if (nexact > 0 &&
	    bsearch(&local, d->recipients, nexact, sizeof(d->recipients[0]),
	        conf_casecmp_p) != NULL)
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
