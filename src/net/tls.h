/* tls.h — the server's OpenSSL context: certificate loading (or generating
 * a self-signed pair into data_dir/tls/ on first start), protocol versions,
 * ciphers, session resumption, and reload on SIGHUP.
 *
 * A reload builds a new SSL_CTX; connections already running keep theirs
 * (SSL objects hold a reference to their context). */
#ifndef POBOX_TLS_H
#define POBOX_TLS_H

#include <stdbool.h>
#include <openssl/ssl.h>

struct config;
struct tls;

/* Builds the context from cfg; on failure logs why and returns NULL. */
struct tls *tls_new(const struct config *cfg);
/* Replaces the context with one built from cfg; keeps the old on failure. */
bool tls_reload(struct tls *t, const struct config *cfg);
/* A new SSL for an accepted connection (server mode), NULL on failure. */
SSL *tls_ssl_new(struct tls *t);
void tls_free(struct tls *t);

/* Short text for the last TLS error of a connection, for the log. */
const char *tls_error_text(unsigned long err, char *buf, size_t len);

#endif
