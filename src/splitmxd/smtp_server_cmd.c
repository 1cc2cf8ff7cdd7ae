/*
 * smtp_server_cmd.c - the SMTP command handlers of a session: one command
 * line at a time, parsed by smtp_proto, answered in order (PIPELINING).
 *
 * HELO, MAIL and RCPT run the policy chain and continue in their verdict
 * functions, at once or when a stage answers later; commands wait in the
 * input buffer meanwhile. Handlers never free a session: they close it and
 * return (smtp_server.c frees it from a libevent entry point).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conf.h"
#include "log.h"
#include "policy.h"
#include "smtp_proto.h"
#include "smtp_server_int.h"
#include "spool.h"
#include "xmalloc.h"

static void
cmd_helo_verdict(struct session *s, const struct policy_verdict *v)
{
	const struct conf *conf = s->srv->conf;
	struct evbuffer *out;

	s->state = SESSION_CMD;
	if (v->action == POLICY_DISCARD) {
		session_policy_log(s, v);
		s->discard_all = true;
	} else if (v->action != POLICY_ACCEPT) {
		s->helo[0] = '\0';
		s->esmtp = false;
		session_policy_refuse(s, v, true);
		return;
	}
	s->helo_seen = true;
	if (!s->esmtp) {
		session_reply(s, 250, NULL, "%s", s->srv->hostname);
		return;
	}
	out = bufferevent_get_output(s->bev);
	(void)evbuffer_add_printf(out,
	    "250-%s\r\n250-PIPELINING\r\n"
	    "250-SIZE %" PRIu64 "\r\n250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-SMTPUTF8\r\n%s"
	    "250 CHUNKING\r\n",
	    s->srv->hostname, conf->limits.message_size,
	    s->lst->tls != NULL && !s->tls_active ? "250-STARTTLS\r\n" : "");
}

static void
cmd_helo(struct session *s, const struct smtp_proto_command *cmd, bool ehlo)
{
	struct smtp_proto_status st;

	if (smtp_proto_parse_helo(cmd->arg, cmd->arglen, &st) == -1) {
		session_status(s, &st);
		return;
	}
	session_tx_reset(s);
	(void)snprintf(s->helo, sizeof(s->helo), "%.*s", (int)cmd->arglen,
	    cmd->arg);
	s->helo_seen = false;
	s->esmtp = ehlo;
	s->state = SESSION_POLICY;
	session_policy_run(s, POLICY_HELO, cmd_helo_verdict);
}

static void
cmd_mail_verdict(struct session *s, const struct policy_verdict *v)
{
	s->state = SESSION_CMD;
	if (v->action != POLICY_ACCEPT && v->action != POLICY_DISCARD) {
		session_policy_refuse(s, v, true);
		return;
	}
	if (v->action == POLICY_DISCARD)
		session_policy_log(s, v);
	s->has_mail = true;
	if (v->action == POLICY_DISCARD || s->discard_all)
		s->tx_error = TX_DISCARD;
	session_reply(s, 250, "2.1.0", "Ok");
}

static void
cmd_mail(struct session *s, const struct smtp_proto_command *cmd)
{
	struct smtp_proto_status st;
	char esc[1100];

	if (!s->helo_seen) {
		session_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		return;
	}
	if (s->has_mail) {
		session_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (smtp_proto_parse_mail(cmd->arg, cmd->arglen, &s->mail, &st) == -1) {
		session_status(s, &st);
		return;
	}
	if (s->mail.has_size &&
	    s->mail.size > s->srv->conf->limits.message_size) {
		log_info("%s: reject: MAIL from %s[%s]: SIZE=%" PRIu64
		         " too large; from=<%s>",
		    s->sid, s->name, s->addr, s->mail.size,
		    session_esc(esc, sizeof(esc), s->mail.path.mailbox));
		session_error(s, 552, "5.3.4",
		    "Error: message size exceeds fixed limit");
		return;
	}
	s->state = SESSION_POLICY;
	session_policy_run(s, POLICY_MAIL, cmd_mail_verdict);
}

static void
session_rcpt_accept(struct session *s, const struct smtp_proto_rcpt *rcpt)
{
	struct spool_rcpt *r;

	s->rcpts = xreallocarray(s->rcpts, s->nrcpts + 1, sizeof(*s->rcpts));
	r = &s->rcpts[s->nrcpts++];
	r->addr = xstrdup(rcpt->path.mailbox);
	r->notify = rcpt->notify;
	r->orcpt = rcpt->orcpt[0] != '\0' ? xstrdup(rcpt->orcpt) : NULL;
	session_reply(s, 250, "2.1.5", "Ok");
}

/* The chain's verdict on the recipient in s->pctx.rcpt. */
static void
cmd_rcpt_verdict(struct session *s, const struct policy_verdict *v)
{
	s->state = SESSION_CMD;
	switch (v->action) {
	case POLICY_ACCEPT:
		session_rcpt_accept(s, &s->pctx.rcpt);
		break;
	case POLICY_DISCARD:
		session_policy_log(s, v);
		s->ndiscarded++;
		session_reply(s, 250, "2.1.5", "Ok");
		break;
	default:
		session_policy_refuse(s, v, true);
		break;
	}
}

/* Which recipients this node accepts is the policy chain's to say. */
static void
cmd_rcpt(struct session *s, const struct smtp_proto_command *cmd)
{
	struct smtp_proto_status st;
	struct smtp_proto_rcpt *rcpt = &s->pctx.rcpt;

	if (!s->has_mail) {
		session_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	s->rcpt_attempts++;
	if (s->nrcpts >= s->srv->conf->limits.recipients) {
		session_reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	if (smtp_proto_parse_rcpt(cmd->arg, cmd->arglen, s->mail.smtputf8, rcpt,
	        &st) == -1) {
		session_status(s, &st);
		return;
	}
	s->pctx.rcpt_vouched = false;
	s->state = SESSION_POLICY;
	session_policy_run(s, POLICY_RCPT, cmd_rcpt_verdict);
}

static void
session_command(struct session *s, const char *line, size_t len)
{
	struct smtp_proto_command cmd;
	struct smtp_proto_status st;

	s->ncommands++;
	if (smtp_proto_parse_command(line, len, &cmd, &st) == -1) {
		session_status(s, &st);
		return;
	}
	if (s->no_service && cmd.verb != SMTP_PROTO_CMD_QUIT) {
		session_error(s, 503, "5.5.1", "Error: no SMTP service here");
		return;
	}
	switch (cmd.verb) {
	case SMTP_PROTO_CMD_EHLO:
		cmd_helo(s, &cmd, true);
		break;
	case SMTP_PROTO_CMD_HELO:
		cmd_helo(s, &cmd, false);
		break;
	case SMTP_PROTO_CMD_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_PROTO_CMD_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_PROTO_CMD_DATA:
		session_cmd_data(s, &cmd);
		break;
	case SMTP_PROTO_CMD_BDAT:
		session_cmd_bdat(s, &cmd);
		break;
	case SMTP_PROTO_CMD_RSET:
		session_tx_reset(s);
		session_reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_PROTO_CMD_NOOP:
		session_reply(s, 250, "2.0.0", "Ok");
		break;
	case SMTP_PROTO_CMD_QUIT:
		session_reply(s, 221, "2.0.0", "Bye");
		session_close(s, true);
		break;
	case SMTP_PROTO_CMD_VRFY:
		if (cmd.arglen == 0)
			session_error(s, 501, "5.5.4", "Syntax: VRFY address");
		else
			session_reply(s, 252, "2.0.0",
			    "Cannot VRFY user, but "
			    "will accept message and attempt delivery");
		break;
	case SMTP_PROTO_CMD_HELP:
		session_reply(s, 214, "2.0.0",
		    "Commands: EHLO HELO MAIL RCPT "
		    "DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS");
		break;
	case SMTP_PROTO_CMD_STARTTLS:
		session_cmd_starttls(s, &cmd);
		break;
	case SMTP_PROTO_CMD_EXPN:
	case SMTP_PROTO_CMD_AUTH:
	case SMTP_PROTO_CMD_ETRN:
	case SMTP_PROTO_CMD_TURN:
		session_error(s, 502, "5.5.1",
		    "Error: command not implemented");
		break;
	case SMTP_PROTO_CMD_HTTP:
		log_info("%s: HTTP request from %s[%s]: dropped", s->sid,
		    s->name, s->addr);
		session_close(s, true); /* the banner may still be queued */
		break;
	case SMTP_PROTO_CMD_UNKNOWN:
	default:
		session_error(s, 500, "5.5.1", "Error: command not recognized");
		break;
	}
}

/*
 * The line is over SMTP_PROTO_CMDLINE_MAX: refuse it once its end has
 * come, as Postfix does, and go on with the next command.
 */
static void
session_line_too_long(struct session *s)
{
	log_info("%s: command line too long (%zu octets) from %s[%s]%s", s->sid,
	    s->skipped, s->name, s->addr,
	    s->skip_bdat ? ": BDAT, closing" : "");
	s->ncommands++;
	if (s->skip_bdat) {
		/* Its chunk follows, of a length we cannot know: as for a
		 * BDAT syntax error, the session cannot go on. */
		session_reply(s, 500, "5.5.2", "Error: line too long");
		session_close(s, true);
		return;
	}
	session_error(s, 500, "5.5.2", "Error: line too long");
}

/* Whether the line at the start of in is a BDAT command. */
static bool
session_line_is_bdat(struct evbuffer *in)
{
	char verb[5];

	return evbuffer_copyout(in, verb, sizeof(verb)) == sizeof(verb) &&
	    strncasecmp(verb, "BDAT ", sizeof(verb)) == 0;
}

/*
 * Discards an overlong line as it arrives, up to its LF: nothing of it is
 * kept, so memory stays bounded by the read watermark. A line longer than
 * SMTP_SERVER_SKIP_MAX is not worth waiting for: 500 and close.
 */
static int
session_skip_line(struct session *s, struct evbuffer *in)
{
	struct evbuffer_ptr eol;
	size_t eol_len = 0, n;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos >= 0) {
		n = (size_t)eol.pos + 1;
		(void)evbuffer_drain(in, n);
		s->skipped += n;
		s->skipping = false;
		session_line_too_long(s);
		return 1;
	}
	n = evbuffer_get_length(in);
	if (n == 0)
		return 0;
	(void)evbuffer_drain(in, n);
	s->skipped += n;
	if (s->skipped <= SMTP_SERVER_SKIP_MAX)
		return 0;
	log_info("%s: command line over %d octets from %s[%s]: closing", s->sid,
	    SMTP_SERVER_SKIP_MAX, s->name, s->addr);
	session_reply(s, 500, "5.5.2", "Error: line too long");
	session_close(s, true);
	return 1;
}

/* Reads one command line; 1 when one was handled, 0 when more is needed. */
int
session_read_command(struct session *s, struct evbuffer *in)
{
	char line[SMTP_PROTO_CMDLINE_MAX + 1];
	struct evbuffer_ptr eol;
	size_t eol_len = 0, len;

	if (s->skipping)
		return session_skip_line(s, in);
	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) < SMTP_PROTO_CMDLINE_MAX)
			return 0;
		/* Too long already: drop it as it comes. */
		s->skipping = true;
		s->skipped = 0;
		s->skip_bdat = session_line_is_bdat(in);
		return session_skip_line(s, in);
	}
	len = (size_t)eol.pos + 1;
	if (len > SMTP_PROTO_CMDLINE_MAX) {
		s->skip_bdat = session_line_is_bdat(in);
		(void)evbuffer_drain(in, len);
		s->skipped = len;
		session_line_too_long(s);
		return 1;
	}
	if (evbuffer_remove(in, line, len) != (int)len)
		log_panic("%s: evbuffer_remove short read", s->sid);
	line[len] = '\0';
	if (len < 2 || line[len - 2] != '\r') {
		/* A bare LF is not a line end (Postfix forbids it too). */
		session_error(s, 500, "5.5.2", "Error: bare <LF> received");
		return 1;
	}
	session_command(s, line, len - 2);
	return 1;
}
