/*
 * tlsctx.c - building and describing OpenSSL contexts.
 *
 * Only called at startup (files are read here) and, for the describe
 * helpers, on the loop thread after a handshake completed.
 */
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tlsctx.h"

static void
tlsctx_add_error(struct sbuf *err, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char msg[256];

	ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	(void)sbuf_printf(err, "%s %s: %s", what, file, e ? msg : "failed");
}

SSL_CTX *
tlsctx_server_new(const char *cert_file, const char *key_file,
    struct sbuf *err)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tlsctx_add_error(err, "cannot create TLS context for", cert_file);
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		tlsctx_add_error(err, "cannot require TLS 1.2 for", cert_file);
		goto fail;
	}
	/* Renegotiation is a DoS lever and SMTP never needs it. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
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
