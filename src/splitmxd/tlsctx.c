/*
 * tlsctx.c - building, caching and describing OpenSSL contexts.
 *
 * Server contexts are built at startup (files are read there). Client
 * contexts are built on first use per outbound target, on the loop thread
 * (their CA and certificate files are read then, once per target, like
 * startup), and kept until tlsctx_client_shutdown; client sessions get
 * their SNI and name checks here. The describe helpers run on the loop
 * thread after a handshake completed. Nothing here touches a socket.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "log.h"
#include "sbuf.h"
#include "tlsctx.h"
#include "xmalloc.h"

#define TLSCTX_EX_SOFTWARE 70 /* sysexits EX_SOFTWARE */

static void
tlsctx_add_error(struct sbuf *err, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char msg[256];

	ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	(void)sbuf_seterr(err, "%s %s: %s", what, file, e ? msg : "failed");
}

SSL_CTX *
tlsctx_server_new(const char *cert_file, const char *key_file, struct sbuf *err)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tlsctx_add_error(err, "cannot create TLS context for",
		    cert_file);
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		tlsctx_add_error(err, "cannot require TLS 1.2 for", cert_file);
		goto fail;
	}
	/* Renegotiation is a DoS lever and SMTP never needs it. */
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	        SSL_OP_NO_COMPRESSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		tlsctx_add_error(err, "cannot load certificate", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		tlsctx_add_error(err, "cannot load private key", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tlsctx_add_error(err, "private key does not match", cert_file);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void
tlsctx_describe(SSL *ssl, char *buf, size_t bufsize)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int alg = 0, bits = SSL_CIPHER_get_bits(c, &alg);

	(void)snprintf(buf, bufsize, "%s with cipher %s (%d/%d bits)",
	    SSL_get_version(ssl), SSL_CIPHER_get_name(c), bits, alg);
}

void
tlsctx_summary(SSL *ssl, char *buf, size_t bufsize)
{
	(void)snprintf(buf, bufsize, "%s %s", SSL_get_version(ssl),
	    SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

/* ---- per-target client contexts ---- */

struct tlsctx_client {
	const struct conf_target *target;
	enum conf_tls_policy policy;
	char *ca, *cert, *key;
	SSL_CTX *ctx;
	struct tlsctx_client *next;
};

static struct tlsctx_client *tlsctx_clients;

void
tlsctx_strerror(unsigned long e, char *buf, size_t bufsize)
{
	if (e == 0)
		(void)snprintf(buf, bufsize, "unknown error");
	else
		ERR_error_string_n(e, buf, bufsize);
}

static bool
tlsctx_streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static char *
tlsctx_strdup0(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
tlsctx_client_free(struct tlsctx_client *e)
{
	SSL_CTX_free(e->ctx);
	free(e->ca);
	free(e->cert);
	free(e->key);
	free(e);
}

/* The context for target t, made on first use; NULL with err set. */
static SSL_CTX *
tlsctx_client_ctx(const struct conf_target *t, struct sbuf *err)
{
	struct tlsctx_client *e, **pp;
	SSL_CTX *ctx;
	char ebuf[256];

	for (pp = &tlsctx_clients; (e = *pp) != NULL; pp = &e->next) {
		if (e->target != t)
			continue;
		if (e->policy == t->tls && tlsctx_streq(e->ca, t->tls_ca) &&
		    tlsctx_streq(e->cert, t->tls_cert) &&
		    tlsctx_streq(e->key, t->tls_key))
			return e->ctx;
		*pp = e->next;
		tlsctx_client_free(e);
		break;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		tlsctx_strerror(ERR_get_error(), ebuf, sizeof(ebuf));
		(void)sbuf_seterr(err, "SSL_CTX_new: %s", ebuf);
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	/*
	 * Verification is judged after the handshake from
	 * SSL_get_verify_result (policy verify only), so that the reason can
	 * be reported and QUIT sent; SSL_VERIFY_NONE still runs the checks.
	 */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (t->tls == CONF_TLS_VERIFY) {
		if (t->tls_ca != NULL) {
			if (SSL_CTX_load_verify_locations(ctx, t->tls_ca,
			        NULL) != 1) {
				tlsctx_strerror(ERR_peek_last_error(), ebuf,
				    sizeof(ebuf));
				(void)sbuf_seterr(err,
				    "cannot load tls_ca %s: %s", t->tls_ca,
				    ebuf);
				SSL_CTX_free(ctx);
				return NULL;
			}
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			goto fail;
		}
	}
	if (t->tls_cert != NULL) {
		const char *key = t->tls_key != NULL ? t->tls_key : t->tls_cert;

		if (SSL_CTX_use_certificate_chain_file(ctx, t->tls_cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) !=
		        1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			tlsctx_strerror(ERR_peek_last_error(), ebuf,
			    sizeof(ebuf));
			(void)sbuf_seterr(err,
			    "cannot load client certificate %s: %s",
			    t->tls_cert, ebuf);
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	e = xcalloc(1, sizeof(*e));
	e->target = t;
	e->policy = t->tls;
	e->ca = tlsctx_strdup0(t->tls_ca);
	e->cert = tlsctx_strdup0(t->tls_cert);
	e->key = tlsctx_strdup0(t->tls_key);
	e->ctx = ctx;
	e->next = tlsctx_clients;
	tlsctx_clients = e;
	return ctx;
fail:
	tlsctx_strerror(ERR_peek_last_error(), ebuf, sizeof(ebuf));
	(void)sbuf_seterr(err, "TLS setup: %s", ebuf);
	SSL_CTX_free(ctx);
	return NULL;
}

/* Is name an IP literal ("192.0.2.1", "[2001:db8::1]", "[IPv6:...]")? */
static bool
tlsctx_is_ip(const char *name, char *ip, size_t iplen)
{
	unsigned char b[sizeof(struct in6_addr)];
	size_t len = strlen(name);

	if (len >= iplen)
		return false;
	if (name[0] == '[' && len > 2 && name[len - 1] == ']') {
		memcpy(ip, name + 1, len - 2);
		ip[len - 2] = '\0';
		if (strncasecmp(ip, "IPv6:", 5) == 0)
			memmove(ip, ip + 5, strlen(ip + 5) + 1);
	} else {
		memcpy(ip, name, len + 1);
	}
	return inet_pton(AF_INET, ip, b) == 1 ||
	    inet_pton(AF_INET6, ip, b) == 1;
}

SSL *
tlsctx_client_new(const struct conf_target *t, const char *name,
    struct sbuf *err)
{
	char ip[128];
	SSL_CTX *ctx;
	SSL *ssl;

	ctx = tlsctx_client_ctx(t, err);
	if (ctx == NULL)
		return NULL;
	ssl = SSL_new(ctx);
	if (ssl == NULL)
		log_fatalx(TLSCTX_EX_SOFTWARE, "tlsctx: SSL_new failed");
	if (tlsctx_is_ip(name, ip, sizeof(ip))) {
		if (t->tls == CONF_TLS_VERIFY &&
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) != 1)
			goto badname;
	} else {
		char sni[256];

		/* SNI (the macro wants a mutable string). */
		(void)snprintf(sni, sizeof(sni), "%s", name);
		if (SSL_set_tlsext_host_name(ssl, sni) != 1)
			ERR_clear_error(); /* not a usable SNI: go without */
		if (t->tls == CONF_TLS_VERIFY) {
			SSL_set_hostflags(ssl,
			    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set1_host(ssl, name) != 1)
				goto badname;
		}
	}
	return ssl;
badname:
	ERR_clear_error();
	SSL_free(ssl);
	(void)sbuf_seterr(err, "cannot verify TLS name \"%s\"", name);
	return NULL;
}

int
tlsctx_client_check_peer(SSL *ssl, struct sbuf *err)
{
	long vr;

	if (SSL_get0_peer_certificate(ssl) == NULL)
		return sbuf_seterr(err, "no certificate");
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK)
		return sbuf_seterr(err, "%s",
		    X509_verify_cert_error_string(vr));
	return 0;
}

void
tlsctx_client_shutdown(void)
{
	struct tlsctx_client *e;

	while ((e = tlsctx_clients) != NULL) {
		tlsctx_clients = e->next;
		tlsctx_client_free(e);
	}
}
