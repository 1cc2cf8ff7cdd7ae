/*
 * tlsctx.h - OpenSSL contexts for splitmx (startup only).
 *
 * Server contexts enforce TLS 1.2 or newer and load a PEM certificate
 * chain and key; a bad file is a startup error naming the file.
 */
#ifndef SPLITMX_TLSCTX_H
#define SPLITMX_TLSCTX_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "sbuf.h"

/* Returns a new SSL_CTX, or NULL with the reason appended to err. */
SSL_CTX *tlsctx_server_new(const char *cert_file, const char *key_file,
    struct sbuf *err);

/* Writes "TLSv1.3 with cipher NAME (BITS/BITS bits)" for an established
 * connection into buf (always NUL-terminated). */
void tlsctx_describe(SSL *ssl, char *buf, size_t bufsize);
/* Writes "TLSv1.3 NAME" (two tokens, for the spool and journal). */
void tlsctx_summary(SSL *ssl, char *buf, size_t bufsize);

#endif
