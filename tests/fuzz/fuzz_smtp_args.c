/*
 * fuzz_smtp_args.c - the argument parsers behind a command line: MAIL
 * (path and its ESMTP parameters SIZE, BODY, SMTPUTF8, RET, ENVID), RCPT
 * (path, NOTIFY, ORCPT; with and without SMTPUTF8), HELO/EHLO, BDAT and
 * xtext. The first input byte chooses the parser, the rest is the
 * argument (what follows "MAIL FROM:" etc.).
 *
 * Oracle: results stay within their limits and are NUL-terminated,
 * domain_lc is domain lower-cased, a refusal carries a 5xx, BDAT's size
 * is the decimal number at the start of the argument, and every xtext
 * the parser accepts is valid per RFC 3461 4 (checked independently).
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_proto.h"

static void
check_path(const struct smtp_proto_path *p, bool rcpt)
{
	size_t i, n;

	FUZZ_ASSERT(memchr(p->mailbox, '\0', sizeof(p->mailbox)) != NULL);
	FUZZ_ASSERT(memchr(p->local, '\0', sizeof(p->local)) != NULL);
	FUZZ_ASSERT(strlen(p->mailbox) + 2 <= SMTP_PROTO_PATH_MAX);
	FUZZ_ASSERT(strlen(p->domain) <= SMTP_PROTO_DOMAIN_MAX);
	n = strlen(p->domain);
	FUZZ_ASSERT(strlen(p->domain_lc) == n);
	for (i = 0; i < n; i++) {
		char c = p->domain[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		FUZZ_ASSERT(p->domain_lc[i] == c);
	}
	if (p->is_null) {
		FUZZ_ASSERT(!rcpt);
		FUZZ_ASSERT(p->mailbox[0] == '\0');
	} else if (p->is_postmaster) {
		FUZZ_ASSERT(rcpt);
		FUZZ_ASSERT(p->domain[0] == '\0');
	} else {
		FUZZ_ASSERT(p->local[0] != '\0' || p->quoted_local);
		FUZZ_ASSERT(n > 0);
		/* The mailbox ends with "@" and the domain. */
		FUZZ_ASSERT(strlen(p->mailbox) > n);
		FUZZ_ASSERT(strcmp(p->mailbox + strlen(p->mailbox) - n,
		                p->domain) == 0);
		FUZZ_ASSERT(p->mailbox[strlen(p->mailbox) - n - 1] == '@');
	}
}

/* RFC 3461 4: xtext = *( xchar / hexchar ), written out again. */
static bool
xtext_ref(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			if (i + 2 >= len)
				return false;
			if (!strchr("0123456789ABCDEF", s[i + 1]) ||
			    s[i + 1] == '\0' ||
			    !strchr("0123456789ABCDEF", s[i + 2]) ||
			    s[i + 2] == '\0')
				return false;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=')
			return false;
	}
	return true;
}

static void
check_status(int rc, const struct smtp_proto_status *st)
{
	FUZZ_ASSERT(rc == 0 || rc == -1);
	if (rc == -1) {
		FUZZ_ASSERT(st->code >= 500 && st->code <= 599);
		FUZZ_ASSERT(st->enhanced != NULL && st->text != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_proto_status st;
	struct smtp_proto_mail mail;
	struct smtp_proto_rcpt rcpt;
	const char *arg;
	size_t len, i;
	uint64_t bsize, v;
	bool last;
	int rc;

	if (size == 0)
		return 0;
	arg = (const char *)data + 1;
	len = size - 1;
	memset(&st, 0, sizeof(st));
	switch (data[0] % 6) {
	case 0:
		rc = smtp_proto_parse_mail(arg, len, &mail, &st);
		check_status(rc, &st);
		if (rc == 0) {
			check_path(&mail.path, false);
			FUZZ_ASSERT(strlen(mail.envid) <= SMTP_PROTO_ENVID_MAX);
			FUZZ_ASSERT(xtext_ref(mail.envid, strlen(mail.envid)));
			if (mail.path.has_utf8)
				FUZZ_ASSERT(mail.smtputf8);
		}
		break;
	case 1:
	case 2:
		rc = smtp_proto_parse_rcpt(arg, len, data[0] % 6 == 2, &rcpt,
		    &st);
		check_status(rc, &st);
		if (rc == 0) {
			const char *semi;

			check_path(&rcpt.path, true);
			if (rcpt.path.has_utf8)
				FUZZ_ASSERT(data[0] % 6 == 2);
			FUZZ_ASSERT(strlen(rcpt.orcpt) <= SMTP_PROTO_ORCPT_MAX);
			semi = strchr(rcpt.orcpt, ';');
			FUZZ_ASSERT(rcpt.orcpt[0] == '\0' || semi != NULL);
			if (semi != NULL)
				FUZZ_ASSERT(
				    xtext_ref(semi + 1, strlen(semi + 1)));
			FUZZ_ASSERT((rcpt.notify & ~0x0fU) == 0);
			FUZZ_ASSERT(!(rcpt.notify & SMTP_PROTO_NOTIFY_NEVER) ||
			    rcpt.notify == SMTP_PROTO_NOTIFY_NEVER);
		}
		break;
	case 3:
		rc = smtp_proto_parse_helo(arg, len, &st);
		check_status(rc, &st);
		if (rc == 0)
			FUZZ_ASSERT(memchr(arg, '\0', len) == NULL);
		break;
	case 4:
		rc = smtp_proto_parse_bdat(arg, len, &bsize, &last, &st);
		check_status(rc, &st);
		if (rc == 0) {
			for (i = 0; i < len && arg[i] == ' '; i++)
				;
			for (v = 0; i < len && arg[i] >= '0' && arg[i] <= '9';
			     i++)
				v = v * 10 + (uint64_t)(arg[i] - '0');
			FUZZ_ASSERT(v == bsize);
		}
		break;
	default:
		FUZZ_ASSERT(
		    smtp_proto_xtext_valid(arg, len) == xtext_ref(arg, len));
		break;
	}
	return 0;
}
