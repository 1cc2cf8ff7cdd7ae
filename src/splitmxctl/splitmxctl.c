/*
 * splitmxctl.c - the postmaster's command-line tool (main only).
 *
 * Links the util and global tiers alone, so it can read a spool and its
 * journal while the daemon is stopped. The commands (queue, show, report,
 * route, waves, control-socket requests) come with the postmaster issue;
 * today it checks a configuration and reads a spool's journal
 * read-only (no lock: the daemon may be running).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "sbuf.h"
#include "spool_codec.h"
#include "spool_read.h"

#define SPLITMXCTL_VERSION "0.1.0"
#define SPLITMXCTL_CONF    "/etc/splitmx/splitmx.conf"

static void
usage(void)
{
	(void)fprintf(stderr,
	    "usage: splitmxctl [-V] [-f config] check-config | journal-check\n");
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

/* Counts of a journal's records, by verb. */
struct ctl_jcount {
	uint64_t records;
	uint64_t unparsed; /* not a record (foreign or damaged) */
	uint64_t accepted;
	uint64_t removed;
	uint64_t delivered;
	uint64_t other;
};

static void
ctl_jcount_cb(void *arg, const char *line, size_t len)
{
	struct ctl_jcount *n = arg;
	struct spool_jrec rec;

	n->records++;
	if (spool_jrec_parse(line, len, &rec, NULL) == -1)
		n->unparsed++;
	else if (spool_jrec_is(&rec, "accepted"))
		n->accepted++;
	else if (spool_jrec_is(&rec, "removed"))
		n->removed++;
	else if (spool_jrec_is(&rec, "delivered"))
		n->delivered++;
	else
		n->other++;
}

/*
 * Reads the configured spool's journal through the read side, as a
 * stopped or running daemon left it: a torn last record is reported, not
 * an error. Exit 0 when every complete line is a record, EX_DATAERR when
 * some are not, EX_IOERR when the spool cannot be read.
 */
static int
ctl_journal_check(const char *path)
{
	struct ctl_jcount n = { 0, 0, 0, 0, 0, 0 };
	struct spool_scan_stats st;
	struct spool_reader *rd;
	struct conf *conf;
	struct sbuf err;
	int rc;

	sbuf_init(&err, 1024);
	if ((conf = conf_load(path, &err)) == NULL) {
		(void)fprintf(stderr, "splitmxctl: %s\n", err.data);
		sbuf_release(&err);
		return EX_CONFIG;
	}
	rd = spool_reader_open(conf->spool_dir, &err);
	if (rd == NULL ||
	    spool_reader_scan_history(rd, ctl_jcount_cb, &n, &st, &err) == -1) {
		(void)fprintf(stderr, "splitmxctl: %s\n", err.data);
		rc = EX_IOERR;
		goto out;
	}
	(void)printf("%s/journal*: %" PRIu64 " records: %" PRIu64
	             " accepted, %" PRIu64 " delivered, %" PRIu64
	             " removed, %" PRIu64 " other, %" PRIu64 " not records\n",
	    conf->spool_dir, n.records, n.accepted, n.delivered, n.removed,
	    n.other, n.unparsed);
	if (st.torn_tail > 0)
		(void)printf("torn last record: %" PRIu64 " octets (a crash "
		             "during a write; the daemon repairs it at start)\n",
		    st.torn_tail);
	if (st.oversized > 0)
		(void)printf("oversized lines skipped: %" PRIu64 "\n",
		    st.oversized);
	rc = n.unparsed > 0 || st.oversized > 0 ? EX_DATAERR : EX_OK;
out:
	spool_reader_close(rd);
	conf_free(conf);
	sbuf_release(&err);
	return rc;
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
	if (strcmp(argv[0], "journal-check") == 0)
		return ctl_journal_check(conf_path);
	(void)fprintf(stderr, "splitmxctl: unknown command: %s\n", argv[0]);
	usage();
}
