/*
 * fuzz_conf.c - the config parser, conf_parse_buf, on a whole file.
 *
 * conf_parse_buf is pure: it resolves relative paths but reads no file
 * (conf_load reads the recipients and members files afterwards, and is
 * not called here). In case that ever changes, the harness works from an
 * empty directory of its own (made in LLVMFuzzerInitialize, removed at
 * exit), so relative names find nothing, and it never calls anything that
 * writes. Run it with -artifact_prefix set to an absolute path.
 *
 * Oracle: NULL comes with an error in err, a conf comes with err empty,
 * every target index it holds (domains, waves, routes, default and
 * verify targets) is in range, conf_target_index finds each target by
 * its name, and each domain's exact recipient patterns are sorted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"
#include "sbuf.h"

static char fuzz_dir[] = "/tmp/splitmx-fuzz-conf.XXXXXX";

static void
fuzz_conf_cleanup(void)
{
	/* Best effort: the directory is empty unless the parser changed. */
	if (rmdir(fuzz_dir) == -1)
		perror(fuzz_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (mkdtemp(fuzz_dir) == NULL || chdir(fuzz_dir) == -1) {
		perror("fuzz_conf: temporary directory");
		exit(1);
	}
	atexit(fuzz_conf_cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbuf err;
	struct conf *conf;
	size_t i, k;

	sbuf_init(&err, 512);
	conf = conf_parse_buf((const char *)data, size, "fuzz.conf", &err);
	if (conf == NULL) {
		FUZZ_ASSERT(err.len > 0);
		sbuf_release(&err);
		return 0;
	}
	FUZZ_ASSERT(err.len == 0);
	FUZZ_ASSERT(conf->default_target >= -1 &&
	    conf->default_target < (int)conf->ntargets);
	for (i = 0; i < conf->ntargets; i++) {
		FUZZ_ASSERT(conf->targets[i].name != NULL);
		FUZZ_ASSERT(
		    conf_target_index(conf, conf->targets[i].name) >= 0);
	}
	for (i = 0; i < conf->ndomains; i++) {
		const struct conf_domain *d = &conf->domains[i];

		FUZZ_ASSERT(d->name != NULL);
		FUZZ_ASSERT(d->verify_target >= -1 &&
		    d->verify_target < (int)conf->ntargets);
		for (k = 0; k < d->ntargets; k++)
			FUZZ_ASSERT(d->targets[k] < conf->ntargets);
		/* The exact patterns are sorted for the binary search. */
		FUZZ_ASSERT(d->nexact <= d->nrecipients);
		for (k = 1; k < d->nexact; k++)
			FUZZ_ASSERT(strcasecmp(d->recipients[k - 1],
			                d->recipients[k]) <= 0);
	}
	for (i = 0; i < conf->nwaves; i++)
		for (k = 0; k < conf->waves[i].ntargets; k++)
			FUZZ_ASSERT(conf->waves[i].targets[k] < conf->ntargets);
	for (i = 0; i < conf->nroutes; i++)
		for (k = 0; k < conf->routes[i].ntargets; k++)
			FUZZ_ASSERT(
			    conf->routes[i].targets[k] < conf->ntargets);
	conf_free(conf);
	sbuf_release(&err);
	return 0;
}
