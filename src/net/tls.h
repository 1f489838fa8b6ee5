/* tls.h — the server's OpenSSL context: certificate loading (or generating
 * a self-signed pair into data_dir/tls/ on first start), protocol versions,
 * ciphers, session resumption, client certificates (tls.client_ca), and
 * reload on SIGHUP.
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

/* Per-connection facts for SASL (tls_peer.c). */

#define TLS_CB_MAX 64
/* RFC 9266 tls-exporter on TLS 1.3, RFC 5929 tls-unique on TLS 1.2 (only
 * with the extended master secret, which tls-unique needs to be safe).
 * Writes the type name ("tls-exporter"/"tls-unique") and the data; false
 * when the connection offers no channel binding. */
bool tls_channel_binding(SSL *ssl, const char **type, unsigned char *out,
                         size_t *outlen);
/* The identity of a client certificate that verified against tls.client_ca:
 * its first rfc822Name subjectAltName, else the subject's emailAddress, else
 * its CN, lowercased. false when there is no verified certificate. */
bool tls_client_identity(SSL *ssl, char *out, size_t outsz);

/* Short text for the last TLS error of a connection, for the log. */
const char *tls_error_text(unsigned long err, char *buf, size_t len);

#endif
