/*
 * dsn.h - composing delivery status notifications (RFC 3464 inside an
 * RFC 6522 multipart/report). Pure: bytes in, bytes out.
 */
#ifndef SPLITMX_DSN_H
#define SPLITMX_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "sbuf.h"

enum dsn_action {
	DSN_ACTION_FAILED,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED
};

struct dsn_rcpt {
	const char *final_rcpt; /* address as the target saw it */
	const char *orcpt;      /* ORCPT "rfc822;xtext" or NULL */
	enum dsn_action action;
	const char *status;     /* RFC 3463 "5.1.1"; from the reply or ours */
	const char *remote_mta; /* "mx.example.com" or NULL */
	const char *diagnostic; /* the remote reply "550 5.1.1 ..." or NULL */
	const char *target;     /* our target name, for the human part */
};

struct dsn_info {
	const char *reporting_mta; /* our hostname */
	const char *queue_id;      /* of the original message */
	const char *envid;         /* ENVID xtext or NULL */
	time_t arrival;
	time_t now;
	const char *orig_sender; /* the DSN goes to this address */
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
	/* The original message (content as spooled) and what to return. */
	const char *orig;
	size_t orig_len;
	bool return_full;  /* RET=FULL; else headers only */
	size_t return_max; /* cap for the returned content */
};

/*
 * Appends a complete message (headers and body, CRLF lines) to out:
 * From: MAILER-DAEMON@reporting_mta, To: orig_sender, Subject naming the
 * failure or delay, Auto-Submitted: auto-replied (RFC 3834), a human
 * readable part naming each recipient, target and the last reply, a
 * message/delivery-status part, and the original headers (or the whole
 * message when return_full and it fits return_max) as text/rfc822-headers
 * or message/rfc822. Returns 0, or -1 if out's cap was reached.
 */
int dsn_compose(struct sbuf *out, const struct dsn_info *info);

/*
 * Extracts "X.Y.Z" from a reply text like "550 5.1.1 no such user" into
 * buf (size >= 16); when absent, derives "5.0.0"/"4.0.0" from the code.
 */
void dsn_status_from_reply(unsigned code, const char *reply, char *buf,
    size_t bufsize);

#endif
