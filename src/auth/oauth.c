/* oauth.c — OAuth 2.0 bearer tokens: JWTs checked with libjwt against the
 * keys of the JWKS file named by auth.oauth_jwks.
 *
 * The JWKS file is parsed with jansson and every usable key (kty "RSA" for
 * RS256, kty "EC" on P-256 for ES256) is turned into a PEM public key with
 * OpenSSL, since PEM is what libjwt 1.10 verifies with. One process-wide
 * parsed copy is reloaded when the file's identity (device, inode, size,
 * mtime) changes; it is reference counted so that verifications run outside
 * the mutex.
 *
 * libjwt 1.10.2 facts this file relies on (tests/unit/test_oauth.c checks
 * them): jwt_decode() with a NULL key verifies nothing and jwt_get_alg()
 * then says "none", so that decode is used only to read the header's "alg"
 * and "kid"; with a key it accepts HS256 using the key's bytes as the HMAC
 * secret, so the algorithm must be matched to the key's type here; ES256
 * signatures are the JOSE raw R||S form; "typ" other than "JWT" is refused
 * (RFC 9068 "at+jwt" access tokens do not decode). */
#include "auth/oauth.h"
#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OAUTH_TOKEN_MAX 16384           /* longest token looked at */
#define OAUTH_LEEWAY 60                 /* seconds of clock skew allowed */
#define OAUTH_JWKS_MAX (1024 * 1024)    /* largest JWKS file read */
#define OAUTH_KEYS_MAX 64               /* keys kept from one JWKS */
#define OAUTH_KID_MAX 256               /* longest kid, in octets */
#define OAUTH_B64_MAX 4096              /* longest base64url key member */
#define OAUTH_RSA_MIN_BYTES 256         /* RFC 7518 3.3: 2048 bits or more */
#define OAUTH_RSA_MAX_BYTES 1024        /* 8192 bits */
#define OAUTH_RSA_E_MAX_BYTES 8         /* a public exponent of 64 bits */
#define OAUTH_EC_COORD 32               /* P-256 coordinate octets */

/* One verification key: a JWK turned into what libjwt takes. */
struct oauth_key {
    char *kid;              /* NULL when the JWK has none */
    jwt_alg_t alg;          /* JWT_ALG_RS256 or JWT_ALG_ES256 */
    char *pem;              /* SubjectPublicKeyInfo PEM, NUL-terminated */
    int pem_len;
};

/* A parsed JWKS file. refs and the cache pointer are under oauth_mutex. */
struct oauth_jwks {
    int refs;
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    size_t n;
    struct oauth_key keys[];
};

static pthread_mutex_t oauth_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct oauth_jwks *oauth_cache;

/* ---- base64url ---------------------------------------------------------- */

/* Decodes the JSON string js, base64url (RFC 4648 section 5) with or
 * without padding, into a malloc'd buffer; NULL when js is not such a
 * non-empty string. */
static unsigned char *oauth_b64url(const json_t *js, size_t *outlen)
{
    const char *s = json_string_value(js);
    size_t n = s ? json_string_length(js) : 0;

    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n == 0 || n > OAUTH_B64_MAX || n % 4 == 1)
        return NULL;
    size_t padded = (n + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    if (!std || !out)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9')))
            goto fail;
        std[i] = c;
    }
    memset(std + n, '=', padded - n);
    std[padded] = '\0';
    int len = EVP_DecodeBlock(out, (unsigned char *)std, (int)padded);
    if (len < 0)
        goto fail;
    free(std);
    *outlen = (size_t)len - (padded - n);  /* EVP_DecodeBlock counts pads */
    return out;
fail:
    free(std);
    free(out);
    return NULL;
}

/* ---- JWK to PEM --------------------------------------------------------- */

/* The key described by params, of type name ("RSA" or "EC"), checked. */
static EVP_PKEY *oauth_pkey_from(const char *name, OSSL_PARAM *params)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);

    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    if (!pkey)
        return NULL;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!ctx || EVP_PKEY_public_check(ctx) <= 0) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* An RSA public key from the JWK members n and e. */
static EVP_PKEY *oauth_rsa_key(const json_t *jwk)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = oauth_b64url(json_object_get(jwk, "n"), &nlen);
    unsigned char *e = oauth_b64url(json_object_get(jwk, "e"), &elen);
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;

    if (!n || !e)
        goto done;
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    if (!bn_n || !bn_e || BN_num_bytes(bn_n) < OAUTH_RSA_MIN_BYTES ||
        BN_num_bytes(bn_n) > OAUTH_RSA_MAX_BYTES ||
        BN_num_bytes(bn_e) > OAUTH_RSA_E_MAX_BYTES || !BN_is_odd(bn_e) ||
        BN_is_one(bn_e))
        goto done;
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto done;
    pkey = oauth_pkey_from("RSA", params);
done:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return pkey;
}

/* A P-256 public key from the JWK members crv, x and y. */
static EVP_PKEY *oauth_ec_key(const json_t *jwk)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    size_t xlen = 0, ylen = 0;
    unsigned char *x = oauth_b64url(json_object_get(jwk, "x"), &xlen);
    unsigned char *y = oauth_b64url(json_object_get(jwk, "y"), &ylen);
    unsigned char point[1 + 2 * OAUTH_EC_COORD];
    EVP_PKEY *pkey = NULL;

    if (crv && strcmp(crv, "P-256") == 0 && x && y &&
        xlen == OAUTH_EC_COORD && ylen == OAUTH_EC_COORD) {
        point[0] = 0x04;                    /* uncompressed */
        memcpy(point + 1, x, OAUTH_EC_COORD);
        memcpy(point + 1 + OAUTH_EC_COORD, y, OAUTH_EC_COORD);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                             (char *)"P-256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                              point, sizeof point),
            OSSL_PARAM_construct_end(),
        };
        pkey = oauth_pkey_from("EC", params);
    }
    free(x);
    free(y);
    return pkey;
}

/* pkey as a malloc'd, NUL-terminated PEM; NULL on failure. */
static char *oauth_pem(EVP_PKEY *pkey, int *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *pem = NULL;

    if (bio && PEM_write_bio_PUBKEY(bio, pkey) == 1) {
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && n < INT32_MAX && (pem = malloc((size_t)n + 1))) {
            memcpy(pem, data, (size_t)n);
            pem[n] = '\0';
            *len = (int)n;
        }
    }
    BIO_free(bio);
    return pem;
}

/* The algorithm a JWK may verify, JWT_ALG_INVAL when it is not a signing
 * key pobox uses ("use" other than "sig", an "alg" other than its type's). */
static jwt_alg_t oauth_jwk_alg(const json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const json_t *use = json_object_get(jwk, "use");
    const json_t *alg = json_object_get(jwk, "alg");
    jwt_alg_t a;

    if (!kty)
        return JWT_ALG_INVAL;
    if (strcmp(kty, "RSA") == 0)
        a = JWT_ALG_RS256;
    else if (strcmp(kty, "EC") == 0)
        a = JWT_ALG_ES256;
    else
        return JWT_ALG_INVAL;
    if (use && !(json_is_string(use) &&
                 strcmp(json_string_value(use), "sig") == 0))
        return JWT_ALG_INVAL;
    if (alg && !(json_is_string(alg) &&
                 strcmp(json_string_value(alg), jwt_alg_str(a)) == 0))
        return JWT_ALG_INVAL;
    return a;
}

/* Fills key from one JWK; false (key untouched) when it is not usable. */
static bool oauth_key_load(const json_t *jwk, struct oauth_key *key)
{
    const json_t *kid = json_object_get(jwk, "kid");
    jwt_alg_t alg = json_is_object(jwk) ? oauth_jwk_alg(jwk) : JWT_ALG_INVAL;

    if (alg == JWT_ALG_INVAL)
        return false;
    if (kid && (!json_is_string(kid) || json_string_length(kid) == 0 ||
                json_string_length(kid) > OAUTH_KID_MAX ||
                strlen(json_string_value(kid)) != json_string_length(kid)))
        return false;
    EVP_PKEY *pkey = alg == JWT_ALG_RS256 ? oauth_rsa_key(jwk)
                                          : oauth_ec_key(jwk);
    if (!pkey)
        return false;
    key->pem = oauth_pem(pkey, &key->pem_len);
    EVP_PKEY_free(pkey);
    key->kid = kid && key->pem ? strdup(json_string_value(kid)) : NULL;
    if (!key->pem || (kid && !key->kid)) {
        free(key->pem);
        free(key->kid);
        return false;
    }
    key->alg = alg;
    return true;
}

/* ---- the JWKS file ------------------------------------------------------ */

static void oauth_jwks_free(struct oauth_jwks *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++) {
        free(j->keys[i].kid);
        free(j->keys[i].pem);
    }
    free(j->path);
    free(j);
}

/* Drops one reference; called with oauth_mutex held. */
static void oauth_jwks_unref_locked(struct oauth_jwks *j)
{
    if (j && --j->refs == 0)
        oauth_jwks_free(j);
}

/* Reads fd (a regular file of at most OAUTH_JWKS_MAX octets) whole into a
 * malloc'd buffer, with its identity in *st; NULL when it cannot, or when
 * the file grows while it is read (the next call will read it again). */
static char *oauth_read_fd(int fd, struct stat *st, size_t *len)
{
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) ||
        st->st_size > OAUTH_JWKS_MAX)
        return NULL;
    size_t cap = (size_t)st->st_size + 1, n = 0;
    char *buf = malloc(cap);
    while (buf && n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            *len = n;
            return buf;
        }
        if (r < 0)
            break;
        n += (size_t)r;
    }
    free(buf);
    return NULL;
}

/* The usable keys of the JWKS document doc ({"keys": [...]}), into a new
 * struct with room for them; NULL when there are none. */
static struct oauth_jwks *oauth_jwks_parse(const json_t *doc)
{
    const json_t *keys = json_object_get(doc, "keys");
    size_t max = json_array_size(keys);

    if (!json_is_array(keys) || max == 0)
        return NULL;
    if (max > OAUTH_KEYS_MAX)
        max = OAUTH_KEYS_MAX;
    struct oauth_jwks *j = calloc(1, sizeof *j + max * sizeof j->keys[0]);
    if (!j)
        return NULL;
    for (size_t i = 0; i < json_array_size(keys) && j->n < max; i++)
        if (oauth_key_load(json_array_get(keys, i), &j->keys[j->n]))
            j->n++;
    if (j->n == 0) {
        oauth_jwks_free(j);
        return NULL;
    }
    return j;
}

/* Loads path; NULL when it cannot be read or holds no usable key. */
static struct oauth_jwks *oauth_jwks_load(const char *path)
{
    /* O_NONBLOCK: a FIFO in its place must not hang a worker */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    struct stat st;
    size_t len = 0;
    char *buf = oauth_read_fd(fd, &st, &len);
    close(fd);
    if (!buf)
        return NULL;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    struct oauth_jwks *j = doc ? oauth_jwks_parse(doc) : NULL;
    json_decref(doc);
    if (j && !(j->path = strdup(path))) {
        oauth_jwks_free(j);
        return NULL;
    }
    if (j) {
        j->dev = st.st_dev;
        j->ino = st.st_ino;
        j->size = st.st_size;
        j->mtim = st.st_mtim;
    }
    return j;
}

static bool oauth_jwks_fresh(const struct oauth_jwks *j, const char *path,
                             const struct stat *st)
{
    return j && strcmp(j->path, path) == 0 && j->dev == st->st_dev &&
           j->ino == st->st_ino && j->size == st->st_size &&
           j->mtim.tv_sec == st->st_mtim.tv_sec &&
           j->mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* A reference to the current keys of path (release with oauth_jwks_put),
 * NULL when the file cannot be read or parsed. */
static struct oauth_jwks *oauth_jwks_get(const char *path)
{
    struct stat st;
    struct oauth_jwks *j = NULL;

    pthread_mutex_lock(&oauth_mutex);
    if (stat(path, &st) == 0 && oauth_jwks_fresh(oauth_cache, path, &st)) {
        j = oauth_cache;
    } else {
        oauth_jwks_unref_locked(oauth_cache);
        oauth_cache = oauth_jwks_load(path);
        if (oauth_cache)
            oauth_cache->refs = 1;
        j = oauth_cache;
    }
    if (j)
        j->refs++;
    pthread_mutex_unlock(&oauth_mutex);
    return j;
}

static void oauth_jwks_put(struct oauth_jwks *j)
{
    pthread_mutex_lock(&oauth_mutex);
    oauth_jwks_unref_locked(j);
    pthread_mutex_unlock(&oauth_mutex);
}

void oauth_done(void)
{
    pthread_mutex_lock(&oauth_mutex);
    oauth_jwks_unref_locked(oauth_cache);
    oauth_cache = NULL;
    pthread_mutex_unlock(&oauth_mutex);
}

/* ---- the token ---------------------------------------------------------- */

/* What the unverified header says: alg and kid (kid "" when absent).
 * Nothing else of an unverified decode is ever used. */
struct oauth_header {
    jwt_alg_t alg;
    char kid[OAUTH_KID_MAX + 2];    /* a longer kid is cut, matches none */
};

static bool oauth_read_header(const char *token, struct oauth_header *h)
{
    jwt_t *jwt = NULL;

    if (jwt_decode(&jwt, token, NULL, 0) != 0 || !jwt)
        return false;
    const char *alg = jwt_get_header(jwt, "alg");
    const char *kid = jwt_get_header(jwt, "kid");
    char *crit = jwt_get_headers_json(jwt, "crit");
    h->alg = alg ? jwt_str_alg(alg) : JWT_ALG_INVAL;
    h->kid[0] = '\0';
    if (kid) {
        strncpy(h->kid, kid, sizeof h->kid - 1);
        h->kid[sizeof h->kid - 1] = '\0';
    }
    jwt_free(jwt);
    if (crit) {                     /* RFC 7515 4.1.11: none understood */
        free(crit);
        return false;
    }
    return true;
}

/* The token verified with one of the keys (chosen by kid, or each key of
 * the algorithm's type in turn), or NULL with *reason set. */
static jwt_t *oauth_verify(const struct oauth_jwks *j, const char *token,
                           const struct oauth_header *h, const char **reason)
{
    bool tried = false, kid_other_alg = false;

    for (size_t i = 0; i < j->n; i++) {
        const struct oauth_key *k = &j->keys[i];
        bool kid_match = k->kid && strcmp(k->kid, h->kid) == 0;
        if (h->kid[0] && !kid_match)
            continue;
        if (k->alg != h->alg) {
            kid_other_alg |= kid_match;
            continue;
        }
        tried = true;
        jwt_t *jwt = NULL;
        if (jwt_decode(&jwt, token, (const unsigned char *)k->pem,
                       k->pem_len) == 0 && jwt && jwt_get_alg(jwt) == k->alg)
            return jwt;
        jwt_free(jwt);
    }
    *reason = tried ? "bad signature"
            : kid_other_alg ? "alg does not match key" : "unknown key";
    return NULL;
}

/* A NumericDate claim as seconds; false when present but not a number. */
static bool oauth_time_claim(const json_t *claims, const char *name,
                             bool *present, double *t)
{
    const json_t *v = json_object_get(claims, name);

    *present = v != NULL;
    if (!v)
        return true;
    if (!json_is_number(v))
        return false;
    *t = json_number_value(v);
    return true;
}

/* Checks exp (required), nbf and iat against now with the leeway. */
static bool oauth_check_times(const json_t *claims, const char **reason)
{
    double now = (double)time(NULL), exp = 0, nbf = 0, iat = 0;
    bool has_exp, has_nbf, has_iat;

    if (!oauth_time_claim(claims, "exp", &has_exp, &exp) ||
        !oauth_time_claim(claims, "nbf", &has_nbf, &nbf) ||
        !oauth_time_claim(claims, "iat", &has_iat, &iat)) {
        *reason = "bad time claim";
        return false;
    }
    if (!has_exp) {
        *reason = "no exp";
        return false;
    }
    if (!(now < exp + OAUTH_LEEWAY)) {
        *reason = "expired";
        return false;
    }
    if (has_nbf && nbf > now + OAUTH_LEEWAY) {
        *reason = "not yet valid";
        return false;
    }
    if (has_iat && iat > now + OAUTH_LEEWAY) {
        *reason = "issued in the future";
        return false;
    }
    return true;
}

/* True when v is a JSON string equal to s (no embedded NUL tricks). */
static bool oauth_json_streq(const json_t *v, const char *s)
{
    return json_is_string(v) && json_string_length(v) == strlen(s) &&
           memcmp(json_string_value(v), s, strlen(s)) == 0;
}

/* "aud" is our audience, or an array holding it. */
static bool oauth_check_aud(const json_t *aud, const char *want)
{
    size_t i;
    const json_t *v;

    if (json_is_array(aud)) {
        json_array_foreach(aud, i, v)
            if (oauth_json_streq(v, want))
                return true;
        return false;
    }
    return oauth_json_streq(aud, want);
}

/* Copies the identity claim, lowercased, into identity. */
static bool oauth_identity(const json_t *claims, const char *name,
                           char *identity, size_t idsz, const char **reason)
{
    const json_t *v = json_object_get(claims, name);

    if (!v) {
        *reason = "no such claim";
        return false;
    }
    if (!json_is_string(v)) {
        *reason = "claim not a string";
        return false;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len >= idsz) {
        *reason = len ? "claim too long" : "empty claim";
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {        /* NUL, CR, LF ...: never */
            *reason = "bad claim";
            return false;
        }
        identity[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    identity[len] = '\0';
    return true;
}

/* Checks the verified token's claims and extracts the identity. */
static enum oauth_result oauth_check_claims(const struct config *cfg,
                                            jwt_t *jwt, char *identity,
                                            size_t idsz, const char **reason)
{
    char *text = jwt_get_grants_json(jwt, NULL);
    json_t *claims = text ? json_loads(text, 0, NULL) : NULL;
    enum oauth_result rc = OAUTH_INVALID;

    free(text);
    if (!json_is_object(claims))
        *reason = "malformed claims";
    else if (!oauth_json_streq(json_object_get(claims, "iss"),
                               cfg->oauth_issuer))
        *reason = "wrong issuer";
    else if (!oauth_check_aud(json_object_get(claims, "aud"),
                              cfg->oauth_audience))
        *reason = "wrong audience";
    else if (oauth_check_times(claims, reason) &&
             oauth_identity(claims, cfg->oauth_claim, identity, idsz, reason))
        rc = OAUTH_OK;
    json_decref(claims);
    return rc;
}

enum oauth_result oauth_validate(const struct config *cfg, const char *token,
                                 char *identity, size_t idsz,
                                 const char **reason)
{
    struct oauth_header h;

    if (identity && idsz)
        identity[0] = '\0';
    *reason = "invalid token";
    if (!identity || !idsz)
        return OAUTH_INVALID;
    if (!cfg || !cfg->oauth_jwks || !*cfg->oauth_jwks || !cfg->oauth_issuer ||
        !*cfg->oauth_issuer || !cfg->oauth_audience ||
        !*cfg->oauth_audience || !cfg->oauth_claim) {
        *reason = "oauth not configured";
        return OAUTH_INVALID;
    }
    if (!token || !*token ||
        strnlen(token, OAUTH_TOKEN_MAX + 1) > OAUTH_TOKEN_MAX) {
        *reason = token && *token ? "token too long" : "empty token";
        return OAUTH_INVALID;
    }
    if (!oauth_read_header(token, &h)) {
        *reason = "malformed token";
        return OAUTH_INVALID;
    }
    if (h.alg != JWT_ALG_RS256 && h.alg != JWT_ALG_ES256) {
        *reason = "alg not allowed";
        return OAUTH_INVALID;
    }
    struct oauth_jwks *j = oauth_jwks_get(cfg->oauth_jwks);
    if (!j) {
        *reason = "jwks unreadable";
        return OAUTH_TEMPFAIL;
    }
    jwt_t *jwt = oauth_verify(j, token, &h, reason);
    oauth_jwks_put(j);
    if (!jwt)
        return OAUTH_INVALID;
    enum oauth_result rc = oauth_check_claims(cfg, jwt, identity, idsz, reason);
    jwt_free(jwt);
    if (rc == OAUTH_OK)
        *reason = "ok";
    else
        identity[0] = '\0';
    return rc;
}
