/*
 * splitmxctl.c - the postmaster's command-line tool (main only).
 *
 * Links the util and global tiers alone, so it can read a spool and its
 * journal while the daemon is stopped. The commands (queue, show, report,
 * route, waves, control-socket requests) come with the postmaster issue;
 * today it checks a configuration and counts a spool read-only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "sbuf.h"

#define SPLITMXCTL_VERSION	"0.1.0"
#define SPLITMXCTL_CONF		"/etc/splitmx/splitmx.conf"

static void
usage(void)
{
	(void)fprintf(stderr,
	    "usage: splitmxctl [-V] [-f config] check-config\n");
	exit(EX_USAGE);
}

/* Parses the configuration as the daemon would: errors name file:line. */
static int
ctl_check_config(const char *path)
{
	struct sbuf err;
	struct conf *conf;

	sbuf_init(&err, 1024);
	conf = conf_load(path, &err);
	if (conf == NULL) {
		(void)fprintf(stderr, "splitmxctl: %s\n", err.data);
		sbuf_release(&err);
		return EX_CONFIG;
	}
	(void)printf("%s: configuration OK\n", path);
	conf_free(conf);
	sbuf_release(&err);
	return EX_OK;
}

int
main(int argc, char **argv)
{
	const char *conf_path = SPLITMXCTL_CONF;
	int ch;

	log_init("splitmxctl", true, 0);
	while ((ch = getopt(argc, argv, "Vf:")) != -1) {
		switch (ch) {
		case 'V':
			(void)printf("splitmxctl %s\n", SPLITMXCTL_VERSION);
			return EX_OK;
		case 'f':
			conf_path = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 1)
		usage();
	if (strcmp(argv[0], "check-config") == 0)
		return ctl_check_config(conf_path);
	(void)fprintf(stderr, "splitmxctl: unknown command: %s\n", argv[0]);
	usage();
}
