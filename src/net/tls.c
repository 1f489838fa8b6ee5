/* tls.c — OpenSSL server context for POP3S/STLS (and SMTP later).
 *
 * Defaults: TLS 1.2 and 1.3 (tls.min_version lowers or raises the floor),
 * ECDHE-only AEAD ciphers for TLS 1.2, server cipher preference, session
 * tickets and a server-side session cache for resumption, released buffers
 * for idle connections (SSL_MODE_RELEASE_BUFFERS). */
#include "net/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

struct tls {
    pthread_mutex_t lock;
    SSL_CTX *ctx;
};

static const unsigned char SID_CTX[] = "pobox";

/* Forward-secret AEAD suites only; the legacy list adds the CBC suites that
 * TLS 1.0/1.1 clients (old Outlook) need, used with tls.min_version < 1.2. */
static const char MODERN_CIPHERS[] =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL";
static const char LEGACY_CIPHERS[] =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:!aNULL";

const char *tls_error_text(unsigned long err, char *buf, size_t len)
{
    if (err == 0)
        return "unexpected eof or reset";
    const char *r = ERR_reason_error_string(err);
    snprintf(buf, len, "%s", r ? r : "unknown");
    for (char *p = buf; *p; p++)
        if (*p == ' ')
            *p = '_';
    return buf;
}

static void log_ssl_errors(const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    log_error("event=tls_config_error what=%s file=\"%s\" reason=%s", what,
              path ? path : "", tls_error_text(e, buf, sizeof(buf)));
    ERR_clear_error();
}

static bool x509_add_ext(X509 *crt, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, crt, crt, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(crt, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A self-signed ECDSA P-256 certificate for hostname, valid 10 years. */
static X509 *make_cert(EVP_PKEY *key, const char *hostname)
{
    X509 *crt = X509_new();
    if (!crt)
        return NULL;
    unsigned char serial[16];
    char san[300];
    snprintf(san, sizeof(san), "DNS:%s", hostname);
    BIGNUM *bn = NULL;
    bool ok = RAND_bytes(serial, sizeof(serial)) == 1 &&
              (serial[0] &= 0x7f, bn = BN_bin2bn(serial, sizeof(serial), NULL)) &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)) &&
              X509_set_version(crt, 2) &&
              X509_gmtime_adj(X509_getm_notBefore(crt), -3600) &&
              X509_gmtime_adj(X509_getm_notAfter(crt), 10L * 365 * 86400) &&
              X509_set_pubkey(crt, key) &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN",
                                         MBSTRING_ASC,
                                         (const unsigned char *)hostname, -1, -1, 0) &&
              X509_set_issuer_name(crt, X509_get_subject_name(crt)) &&
              x509_add_ext(crt, NID_subject_alt_name, san) &&
              x509_add_ext(crt, NID_basic_constraints, "critical,CA:FALSE") &&
              X509_sign(crt, key, EVP_sha256()) > 0;
    BN_free(bn);
    if (!ok) {
        X509_free(crt);
        return NULL;
    }
    return crt;
}

static bool write_pem(const char *path, EVP_PKEY *key, X509 *crt)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return false;
    fchmod(fileno(f), 0600);
    bool ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_X509(f, crt);
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, path) == 0;
}

/* Generates data_dir/tls/{cert,key}.pem once, if they do not exist yet. */
static bool ensure_self_signed(const struct config *cfg, char *cert, char *key,
                               size_t len)
{
    char dir[4000];
    if ((size_t)snprintf(dir, sizeof(dir), "%s/tls", cfg->data_dir) >= sizeof(dir))
        return false;
    snprintf(cert, len, "%s/cert.pem", dir);
    snprintf(key, len, "%s/key.pem", dir);
    if (access(cert, R_OK) == 0 && access(key, R_OK) == 0)
        return true;
    mkdir(cfg->data_dir, 0700);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("event=tls_config_error what=mkdir dir=\"%s\" reason=\"%s\"", dir,
                  strerror(errno));
        return false;
    }
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *crt = pkey ? make_cert(pkey, cfg->hostname) : NULL;
    bool ok = crt && write_pem(key, pkey, NULL) && write_pem(cert, NULL, crt);
    if (ok)
        log_info("event=tls_selfsigned cert=\"%s\" cn=%s", cert, cfg->hostname);
    else
        log_ssl_errors("generate_selfsigned", dir);
    X509_free(crt);
    EVP_PKEY_free(pkey);
    return ok;
}

/* Accepts any client certificate during the handshake: a certificate that
 * does not verify only means EXTERNAL is not offered (tls_client_identity
 * reads the verification result); it never costs the connection. */
static int accept_any_client_cert(int preverify_ok, X509_STORE_CTX *x)
{
    (void)preverify_ok;
    (void)x;
    return 1;
}

/* Asks clients for a certificate issued by tls.client_ca (SASL EXTERNAL). */
static bool setup_client_ca(SSL_CTX *ctx, const char *ca_file)
{
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        log_ssl_errors("client_ca", ca_file);
        return false;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
                       accept_any_client_cert);
    SSL_CTX_set_verify_depth(ctx, 5);
    return true;
}

static SSL_CTX *build_ctx(const struct config *cfg)
{
    char cert[4096], key[4096];
    if (*cfg->tls_cert) {
        snprintf(cert, sizeof(cert), "%s", cfg->tls_cert);
        snprintf(key, sizeof(key), "%s", cfg->tls_key);
    } else if (!ensure_self_signed(cfg, cert, key, sizeof(cert)))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, SID_CTX, sizeof(SID_CTX) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    if (cfg->tls_min_version < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0); /* old clients need SHA-1 suites */
    const char *ciphers = *cfg->tls_ciphers ? cfg->tls_ciphers
                          : cfg->tls_min_version < TLS1_2_VERSION ? LEGACY_CIPHERS
                                                                  : MODERN_CIPHERS;
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        log_ssl_errors("ciphers", NULL);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        log_ssl_errors("certificate", cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_errors("private_key", key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (*cfg->tls_client_ca && !setup_client_ca(ctx, cfg->tls_client_ca)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct tls *tls_new(const struct config *cfg)
{
    SSL_CTX *ctx = build_ctx(cfg);
    if (!ctx)
        return NULL;
    struct tls *t = calloc(1, sizeof(*t));
    if (!t) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->ctx = ctx;
    return t;
}

bool tls_reload(struct tls *t, const struct config *cfg)
{
    SSL_CTX *ctx = build_ctx(cfg);
    if (!ctx)
        return false;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old);
    return true;
}

SSL *tls_ssl_new(struct tls *t)
{
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    return ssl;
}

void tls_free(struct tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
