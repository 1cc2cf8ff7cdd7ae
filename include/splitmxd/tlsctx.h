/*
 * tlsctx.h - OpenSSL contexts and sessions for splitmx.
 *
 * Server contexts (startup only) enforce TLS 1.2 or newer and load a PEM
 * certificate chain and key; a bad file is a startup error naming the
 * file. Client contexts, one per outbound target, are made on first use
 * and cached; client sessions come with SNI and the name to verify.
 * Everything except tlsctx_server_new runs on the loop thread only.
 */
#ifndef SPLITMX_TLSCTX_H
#define SPLITMX_TLSCTX_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "sbuf.h"

struct conf_target;

/* Returns a new SSL_CTX, or NULL with the reason in err. */
SSL_CTX *tlsctx_server_new(const char *cert_file, const char *key_file,
    struct sbuf *err);

/*
 * A new client SSL for one connection to target t, from t's cached
 * context (made on first use, reading tls_ca, tls_cert and tls_key then;
 * keyed by t, its policy and file names, so a reloaded config gets its
 * own). name is the peer's name: sent as SNI unless it is an IP literal
 * (bracketed or not), and under policy verify the name, or the address,
 * that the certificate must match. The caller owns the SSL. Returns NULL
 * with the reason in err.
 */
SSL *tlsctx_client_new(const struct conf_target *t, const char *name,
    struct sbuf *err);

/*
 * After a handshake under policy verify: 0 if the peer presented a
 * certificate that verified, else -1 with the reason in err.
 */
int tlsctx_client_check_peer(SSL *ssl, struct sbuf *err);

/* Frees the cached client contexts (at exit). */
void tlsctx_client_shutdown(void);

/* OpenSSL's text for error code e ("unknown error" for 0) into buf. */
void tlsctx_strerror(unsigned long e, char *buf, size_t bufsize);

/* Writes "TLSv1.3 with cipher NAME (BITS/BITS bits)" for an established
 * connection into buf (always NUL-terminated). */
void tlsctx_describe(SSL *ssl, char *buf, size_t bufsize);
/* Writes "TLSv1.3 NAME" (two tokens, for the spool and journal). */
void tlsctx_summary(SSL *ssl, char *buf, size_t bufsize);

#endif
