/* test_oauth.c — unit tests for src/auth/oauth.c and src/auth/bearer.c:
 * JWTs signed here with fresh RSA-2048 and P-256 keys, checked against a
 * JWKS file in a temporary directory (signature, alg confusion, issuer,
 * audience, times, the identity claim, key rotation on disk, threads),
 * then the OAUTHBEARER and XOAUTH2 messages and their error challenges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/bearer.h"
#include "auth/oauth.h"
#include "core/config.h"

#define ISSUER "https://issuer.example"
#define AUDIENCE "pobox"
#define EMAIL "Alice@Example.COM"
#define EMAIL_LC "alice@example.com"

struct fixture {
    char dir[PATH_MAX];
    char jwks[PATH_MAX + 16];       /* the configured JWKS file */
    EVP_PKEY *rsa, *ec, *rsa2;      /* rsa2 is not in the JWKS at first */
    char *rsa_priv, *ec_priv, *rsa2_priv, *rsa_pub;
    struct config *cfg;             /* auth.oauth_jwks = jwks */
    struct config *cfg_user;        /* oauth_claim = preferred_username */
    struct config *cfg_missing;     /* oauth_jwks names no file */
};

static struct fixture *fx;

/* ---- keys and files ----------------------------------------------------- */

static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);

    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(bio);
    return s;
}

static char *pem_private(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
                                              NULL), 1);
    return bio_string(bio);
}

static char *pem_public(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    return bio_string(bio);
}

/* base64url without padding, malloc'd. */
static char *b64url(const unsigned char *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);

    assert_non_null(s);
    int len = EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    while (len > 0 && s[len - 1] == '=')
        len--;
    s[len] = '\0';
    for (char *c = s; *c; c++)
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    return s;
}

/* The big number parameter name of pkey as a base64url JSON string. */
static json_t *bn_b64(EVP_PKEY *pkey, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];

    assert_int_equal(EVP_PKEY_get_bn_param(pkey, name, &bn), 1);
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    BN_free(bn);
    char *s = b64url(buf, (size_t)n);
    json_t *js = json_string(s);
    free(s);
    return js;
}

static json_t *jwk_rsa(EVP_PKEY *pkey, const char *kid)
{
    json_t *k = json_pack("{s:s, s:s}", "kty", "RSA", "kid", kid);
    json_object_set_new(k, "n", bn_b64(pkey, OSSL_PKEY_PARAM_RSA_N, 0));
    json_object_set_new(k, "e", bn_b64(pkey, OSSL_PKEY_PARAM_RSA_E, 0));
    return k;
}

static json_t *jwk_ec(EVP_PKEY *pkey, const char *kid)
{
    json_t *k = json_pack("{s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
                          "kid", kid);
    json_object_set_new(k, "x", bn_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32));
    json_object_set_new(k, "y", bn_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32));
    return k;
}

static void write_file(const char *path, const char *text)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);     /* a new inode each time */
}

/* Writes {"keys": keys} (taking the reference) as the JWKS file. */
static void write_jwks(json_t *keys)
{
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_INDENT(2));
    write_file(fx->jwks, text);
    free(text);
    json_decref(doc);
}

/* The usual JWKS: r1 (RSA, use sig, alg RS256) and e1 (EC). */
static void write_standard_jwks(void)
{
    json_t *r1 = jwk_rsa(fx->rsa, "r1");
    json_object_set_new(r1, "use", json_string("sig"));
    json_object_set_new(r1, "alg", json_string("RS256"));
    write_jwks(json_pack("[o, o]", r1, jwk_ec(fx->ec, "e1")));
}

static struct config *load_config(const char *jwks, const char *claim)
{
    char ov_jwks[PATH_MAX + 64], ov_claim[128];
    struct config_errors errs = {0};
    char *ov[] = {ov_jwks, "auth.oauth_issuer=" ISSUER,
                  "auth.oauth_audience=" AUDIENCE, ov_claim};

    snprintf(ov_jwks, sizeof ov_jwks, "auth.oauth_jwks=%s", jwks);
    snprintf(ov_claim, sizeof ov_claim, "auth.oauth_claim=%s", claim);
    struct config *cfg = config_load(NULL, true, ov, 4, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.lines[i]);
    config_errors_free(&errs);
    assert_non_null(cfg);
    return cfg;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char missing[PATH_MAX + 16];

    fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "%s/pobox-oauth-XXXXXX", base);
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->jwks, sizeof fx->jwks, "%s/jwks.json", fx->dir);
    snprintf(missing, sizeof missing, "%s/missing.json", fx->dir);
    fx->rsa = EVP_RSA_gen(2048);
    fx->rsa2 = EVP_RSA_gen(2048);
    fx->ec = EVP_EC_gen("P-256");
    if (!fx->rsa || !fx->rsa2 || !fx->ec)
        return -1;
    fx->rsa_priv = pem_private(fx->rsa);
    fx->rsa2_priv = pem_private(fx->rsa2);
    fx->ec_priv = pem_private(fx->ec);
    fx->rsa_pub = pem_public(fx->rsa);
    write_standard_jwks();
    fx->cfg = load_config(fx->jwks, "email");
    fx->cfg_user = load_config(fx->jwks, "preferred_username");
    fx->cfg_missing = load_config(missing, "email");
    return 0;
}

static int group_teardown(void **state)
{
    oauth_done();
    config_unref(fx->cfg);
    config_unref(fx->cfg_user);
    config_unref(fx->cfg_missing);
    EVP_PKEY_free(fx->rsa);
    EVP_PKEY_free(fx->rsa2);
    EVP_PKEY_free(fx->ec);
    free(fx->rsa_priv);
    free(fx->rsa2_priv);
    free(fx->ec_priv);
    free(fx->rsa_pub);
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* Tests that rewrite the JWKS put the usual one back. */
static int restore_jwks(void **state)
{
    write_standard_jwks();
    return 0;
}

/* ---- tokens ------------------------------------------------------------- */

/* iss, aud, exp in 10 minutes, iat now, email: a valid claim set. */
static json_t *claims(void)
{
    json_int_t now = (json_int_t)time(NULL);
    return json_pack("{s:s, s:s, s:I, s:I, s:s}", "iss", ISSUER, "aud",
                     AUDIENCE, "exp", now + 600, "iat", now, "email", EMAIL);
}

/* A token over c (taking the reference) signed by libjwt with key (a PEM,
 * or the HMAC secret for HS256; NULL for alg none); kid NULL for none. */
static char *sign(json_t *c, jwt_alg_t alg, const char *key, const char *kid)
{
    jwt_t *jwt = NULL;
    char *text = json_dumps(c, JSON_COMPACT);

    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, text), 0);
    if (kid)
        assert_int_equal(jwt_add_header(jwt, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key,
                                 key ? (int)strlen(key) : 0), 0);
    char *token = jwt_encode_str(jwt);
    assert_non_null(token);
    jwt_free(jwt);
    free(text);
    json_decref(c);
    return token;
}

static char *rs256(json_t *c)
{
    return sign(c, JWT_ALG_RS256, fx->rsa_priv, "r1");
}

/* ES256 signed with OpenSSL alone, the signature turned from DER into the
 * JOSE raw R||S form as identity providers do. */
static char *es256_openssl(json_t *c, const char *kid)
{
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT",
                            "kid", kid);
    char *htext = json_dumps(hdr, JSON_COMPACT);
    char *ctext = json_dumps(c, JSON_COMPACT);
    char *h64 = b64url((unsigned char *)htext, strlen(htext));
    char *c64 = b64url((unsigned char *)ctext, strlen(ctext));
    size_t silen = strlen(h64) + 1 + strlen(c64);
    char *si = malloc(silen + 1);
    unsigned char der[128], raw[64];
    size_t derlen = sizeof der;

    snprintf(si, silen + 1, "%s.%s", h64, c64);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, fx->ec),
                     1);
    assert_int_equal(EVP_DigestSign(md, der, &derlen, (unsigned char *)si,
                                    silen), 1);
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    assert_non_null(sig);
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32);
    ECDSA_SIG_free(sig);
    char *s64 = b64url(raw, sizeof raw);
    char *token = malloc(silen + strlen(s64) + 2);
    sprintf(token, "%s.%s", si, s64);
    free(s64);
    free(si);
    free(h64);
    free(c64);
    free(htext);
    free(ctext);
    json_decref(hdr);
    json_decref(c);
    return token;
}

/* Validates token with cfg, frees it, and checks the result (and the
 * identity when OK, the reason otherwise when want_reason is set). */
static void expect(const struct config *cfg, char *token,
                   enum oauth_result want, const char *want_text)
{
    char identity[256];
    const char *reason = NULL;

    enum oauth_result rc = oauth_validate(cfg, token, identity,
                                          sizeof identity, &reason);
    free(token);
    assert_non_null(reason);
    if (rc != want)
        fail_msg("got %d (%s), wanted %d", rc, reason, want);
    if (want == OAUTH_OK)
        assert_string_equal(identity, want_text);
    else {
        assert_string_equal(identity, "");
        if (want_text)
            assert_string_equal(reason, want_text);
    }
}

/* ---- oauth_validate ----------------------------------------------------- */

static void test_rs256_ok(void **state)
{
    expect(fx->cfg, rs256(claims()), OAUTH_OK, EMAIL_LC);
}

static void test_es256_ok(void **state)
{
    expect(fx->cfg, sign(claims(), JWT_ALG_ES256, fx->ec_priv, "e1"),
           OAUTH_OK, EMAIL_LC);
}

/* The JOSE R||S signature made without libjwt verifies too. */
static void test_es256_raw_signature_from_openssl(void **state)
{
    expect(fx->cfg, es256_openssl(claims(), "e1"), OAUTH_OK, EMAIL_LC);
}

/* Without a kid every key of the token's type is tried. */
static void test_no_kid_tries_keys(void **state)
{
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa_priv, NULL),
           OAUTH_OK, EMAIL_LC);
    expect(fx->cfg, sign(claims(), JWT_ALG_ES256, fx->ec_priv, NULL),
           OAUTH_OK, EMAIL_LC);
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa2_priv, NULL),
           OAUTH_INVALID, "bad signature");
}

static void test_expired(void **state)
{
    json_t *c = claims();
    json_object_set_new(c, "exp", json_integer(time(NULL) - 120));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "expired");

    c = claims();       /* inside the 60 s leeway */
    json_object_set_new(c, "exp", json_integer(time(NULL) - 30));
    expect(fx->cfg, rs256(c), OAUTH_OK, EMAIL_LC);

    c = claims();       /* NumericDate may have a fraction */
    json_object_set_new(c, "exp", json_real((double)time(NULL) + 600.5));
    expect(fx->cfg, rs256(c), OAUTH_OK, EMAIL_LC);
}

static void test_exp_required(void **state)
{
    json_t *c = claims();
    json_object_del(c, "exp");
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "no exp");

    c = claims();
    json_object_set_new(c, "exp", json_string("tomorrow"));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "bad time claim");
}

static void test_nbf_and_iat_in_future(void **state)
{
    json_t *c = claims();
    json_object_set_new(c, "nbf", json_integer(time(NULL) + 300));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "not yet valid");

    c = claims();
    json_object_set_new(c, "iat", json_integer(time(NULL) + 300));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "issued in the future");

    c = claims();       /* skew inside the leeway */
    json_object_set_new(c, "nbf", json_integer(time(NULL) + 30));
    json_object_set_new(c, "iat", json_integer(time(NULL) + 30));
    expect(fx->cfg, rs256(c), OAUTH_OK, EMAIL_LC);
}

static void test_wrong_issuer(void **state)
{
    json_t *c = claims();
    json_object_set_new(c, "iss", json_string("https://evil.example"));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "wrong issuer");

    c = claims();
    json_object_del(c, "iss");
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "wrong issuer");
}

static void test_audience(void **state)
{
    json_t *c = claims();
    json_object_set_new(c, "aud", json_string("other"));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "wrong audience");

    c = claims();
    json_object_del(c, "aud");
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "wrong audience");

    c = claims();
    json_object_set_new(c, "aud", json_pack("[s, s]", "other", AUDIENCE));
    expect(fx->cfg, rs256(c), OAUTH_OK, EMAIL_LC);

    c = claims();
    json_object_set_new(c, "aud", json_pack("[s, i]", "other", 7));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "wrong audience");
}

static void test_claim(void **state)
{
    json_t *c = claims();
    json_object_del(c, "email");
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "no such claim");

    c = claims();
    json_object_set_new(c, "email", json_integer(42));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "claim not a string");

    c = claims();
    json_object_set_new(c, "email", json_string("alice@example.com\r\nx=y"));
    expect(fx->cfg, rs256(c), OAUTH_INVALID, "bad claim");

    c = claims();       /* libjwt refuses \u0000 in claims outright */
    json_object_set_new(c, "email", json_stringn("a\0b@example.com", 15));
    expect(fx->cfg, es256_openssl(c, "e1"), OAUTH_INVALID, "malformed token");
}

static void test_custom_claim(void **state)
{
    json_t *c = claims();
    json_object_set_new(c, "preferred_username", json_string("Bob.Smith"));
    expect(fx->cfg_user, rs256(c), OAUTH_OK, "bob.smith");
    expect(fx->cfg_user, rs256(claims()), OAUTH_INVALID, "no such claim");
}

static void test_unknown_kid(void **state)
{
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa_priv, "nope"),
           OAUTH_INVALID, "unknown key");
}

/* libjwt itself accepts alg none when given no key. */
static void test_alg_none(void **state)
{
    char *token = sign(claims(), JWT_ALG_NONE, NULL, "r1");
    jwt_t *jwt = NULL;

    assert_int_equal(jwt_decode(&jwt, token, NULL, 0), 0);
    jwt_free(jwt);
    expect(fx->cfg, token, OAUTH_INVALID, "alg not allowed");
    expect(fx->cfg, sign(claims(), JWT_ALG_NONE, NULL, NULL),
           OAUTH_INVALID, "alg not allowed");
}

/* HS256 with the RSA public key's PEM as the HMAC secret: libjwt verifies
 * it with that PEM, so only the algorithm check stops it. */
static void test_hs256_key_confusion(void **state)
{
    char *token = sign(claims(), JWT_ALG_HS256, fx->rsa_pub, "r1");
    jwt_t *jwt = NULL;

    assert_int_equal(jwt_decode(&jwt, token, (const unsigned char *)fx->rsa_pub,
                                (int)strlen(fx->rsa_pub)), 0);
    jwt_free(jwt);
    expect(fx->cfg, token, OAUTH_INVALID, "alg not allowed");
    expect(fx->cfg, sign(claims(), JWT_ALG_HS256, fx->rsa_pub, NULL),
           OAUTH_INVALID, "alg not allowed");
}

static void test_kid_names_other_key_type(void **state)
{
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa_priv, "e1"),
           OAUTH_INVALID, "alg does not match key");
    expect(fx->cfg, sign(claims(), JWT_ALG_ES256, fx->ec_priv, "r1"),
           OAUTH_INVALID, "alg does not match key");
}

static void test_tampered_payload(void **state)
{
    char *good = rs256(claims());
    json_t *c = claims();
    json_object_set_new(c, "email", json_string("mallory@example.com"));
    char *text = json_dumps(c, JSON_COMPACT);
    char *payload = b64url((unsigned char *)text, strlen(text));
    char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
    char *bad = malloc(strlen(good) + strlen(payload) + 1);

    sprintf(bad, "%.*s.%s%s", (int)(dot1 - good), good, payload, dot2);
    expect(fx->cfg, bad, OAUTH_INVALID, "bad signature");
    bad = strdup(good);         /* one flipped signature bit */
    bad[strlen(bad) - 3] ^= 1;
    expect(fx->cfg, bad, OAUTH_INVALID, NULL);
    free(good);
    free(payload);
    free(text);
    json_decref(c);
}

static void test_token_length(void **state)
{
    char pad[17000];

    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    json_t *c = claims();
    json_object_set_new(c, "pad", json_string(pad));
    char *token = rs256(c);
    assert_true(strlen(token) > 16384);
    expect(fx->cfg, token, OAUTH_INVALID, "token too long");

    pad[11000] = '\0';          /* a large token under the limit is fine */
    c = claims();
    json_object_set_new(c, "pad", json_string(pad));
    token = rs256(c);
    assert_true(strlen(token) < 16384);
    expect(fx->cfg, token, OAUTH_OK, EMAIL_LC);
    expect(fx->cfg, strdup(""), OAUTH_INVALID, "empty token");
    expect(fx->cfg, strdup("a.b.c"), OAUTH_INVALID, "malformed token");
}

static void test_jwks_unavailable(void **state)
{
    expect(fx->cfg_missing, rs256(claims()), OAUTH_TEMPFAIL, "jwks unreadable");
    write_file(fx->jwks, "{\"keys\": [ not json");
    expect(fx->cfg, rs256(claims()), OAUTH_TEMPFAIL, "jwks unreadable");
    write_file(fx->jwks, "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2Vj\"}]}");
    expect(fx->cfg, rs256(claims()), OAUTH_TEMPFAIL, "jwks unreadable");
}

/* A key added to the file on disk is used without a restart, and one
 * removed is no longer trusted. */
static void test_jwks_reloaded(void **state)
{
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa2_priv, "r2"),
           OAUTH_INVALID, "unknown key");
    write_jwks(json_pack("[o, o]", jwk_rsa(fx->rsa2, "r2"),
                         jwk_ec(fx->ec, "e1")));
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa2_priv, "r2"),
           OAUTH_OK, EMAIL_LC);
    expect(fx->cfg, rs256(claims()), OAUTH_INVALID, "unknown key");
}

/* Keys for encryption or for another algorithm are not used. */
static void test_jwks_key_filters(void **state)
{
    json_t *enc = jwk_rsa(fx->rsa, "r1");
    json_t *rs512 = jwk_rsa(fx->rsa, "r1b");
    json_object_set_new(enc, "use", json_string("enc"));
    json_object_set_new(rs512, "alg", json_string("RS512"));
    write_jwks(json_pack("[o, o, o]", enc, rs512, jwk_ec(fx->ec, "e1")));
    expect(fx->cfg, rs256(claims()), OAUTH_INVALID, "unknown key");
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa_priv, "r1b"),
           OAUTH_INVALID, "unknown key");
    expect(fx->cfg, sign(claims(), JWT_ALG_RS256, fx->rsa_priv, NULL),
           OAUTH_INVALID, "unknown key");
    expect(fx->cfg, sign(claims(), JWT_ALG_ES256, fx->ec_priv, "e1"),
           OAUTH_OK, EMAIL_LC);
}

/* Validations on several threads while the JWKS file is replaced (with
 * the same keys) under them: every one succeeds, nothing is freed twice. */
struct worker {
    pthread_t thread;
    const char *token;
    int ok;
};

static void *validate_loop(void *arg)
{
    struct worker *w = arg;
    char identity[256];
    const char *reason;

    for (int i = 0; i < 200; i++)
        w->ok += oauth_validate(fx->cfg, w->token, identity, sizeof identity,
                                &reason) == OAUTH_OK;
    return NULL;
}

static void test_threads_and_reload(void **state)
{
    struct worker w[4];
    char *rs = rs256(claims());
    char *es = sign(claims(), JWT_ALG_ES256, fx->ec_priv, NULL);

    for (int i = 0; i < 4; i++) {
        w[i].token = i % 2 ? es : rs;
        w[i].ok = 0;
        assert_int_equal(pthread_create(&w[i].thread, NULL, validate_loop,
                                        &w[i]), 0);
    }
    for (int i = 0; i < 20; i++)
        write_standard_jwks();
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(w[i].thread, NULL), 0);
        assert_int_equal(w[i].ok, 200);
    }
    free(rs);
    free(es);
}

/* ---- bearer_step -------------------------------------------------------- */

struct step {
    enum bearer_rc rc;
    char *out;
    size_t outlen;
    char identity[256];
    char authzid[256];
    const char *reason;
};

static void step(struct bearer_state *st, const struct config *cfg,
                 const char *in, size_t inlen, struct step *s)
{
    free(s->out);
    s->reason = NULL;
    s->rc = bearer_step(st, cfg, in, inlen, &s->out, &s->outlen, s->identity,
                        sizeof s->identity, s->authzid, sizeof s->authzid,
                        &s->reason);
    assert_non_null(s->reason);
}

/* One whole exchange: kind, the message "<pre>TOKEN<post>" with a valid
 * RS256 token, and the expected result. */
static void exchange(enum bearer_kind kind, const char *pre, const char *post,
                     enum bearer_rc want, const char *want_authzid)
{
    char *token = rs256(claims());
    size_t len = strlen(pre) + strlen(token) + strlen(post);
    char *msg = malloc(len + 1);
    struct bearer_state *st = bearer_new(kind);
    struct step s = {0};

    sprintf(msg, "%s%s%s", pre, token, post);
    step(st, fx->cfg, msg, len, &s);
    if (s.rc != want)
        fail_msg("got %d (%s), wanted %d", s.rc, s.reason, want);
    if (want == BEARER_OK) {
        assert_string_equal(s.identity, EMAIL_LC);
        assert_string_equal(s.authzid, want_authzid);
        step(st, fx->cfg, "\x01", 1, &s);     /* nothing after success */
        assert_int_equal(s.rc, BEARER_FAIL);
    } else {
        assert_string_equal(s.identity, "");
        assert_null(s.out);
    }
    free(s.out);
    bearer_free(st);
    free(msg);
    free(token);
}

static void test_oauthbearer_ok(void **state)
{
    exchange(BEARER_OAUTHBEARER, "n,a=alice@example.com,\x01host=mail.example"
             "\x01port=110\x01" "auth=Bearer ", "\x01\x01", BEARER_OK,
             "alice@example.com");
    exchange(BEARER_OAUTHBEARER, "n,,\x01" "auth=Bearer ", "\x01\x01",
             BEARER_OK, "");
    exchange(BEARER_OAUTHBEARER, "y,,\x01" "auth=bEARER ", "\x01\x01",
             BEARER_OK, "");
    exchange(BEARER_OAUTHBEARER, "n,a=we=2Cird=3Dname,\x01" "auth=Bearer ",
             "\x01\x01", BEARER_OK, "we,ird=name");
}

static void test_oauthbearer_malformed(void **state)
{
    exchange(BEARER_OAUTHBEARER, "p=tls-unique,,\x01" "auth=Bearer ",
             "\x01\x01", BEARER_FAIL, NULL);
    exchange(BEARER_OAUTHBEARER, "n,a=bad=2Xescape,\x01" "auth=Bearer ",
             "\x01\x01", BEARER_FAIL, NULL);
    exchange(BEARER_OAUTHBEARER, "n,a=,\x01" "auth=Bearer ", "\x01\x01",
             BEARER_FAIL, NULL);
    exchange(BEARER_OAUTHBEARER, "n,,\x01host=x\x01" "bearer=", "\x01\x01",
             BEARER_FAIL, NULL);                        /* no auth= */
    exchange(BEARER_OAUTHBEARER, "n,,\x01" "auth=Bearer ", "\x01",
             BEARER_FAIL, NULL);                        /* no final 0x01 */
    exchange(BEARER_OAUTHBEARER, "n,,\x01" "auth=Bearer ", "\x01\x01x",
             BEARER_FAIL, NULL);                        /* trailing bytes */
    exchange(BEARER_OAUTHBEARER, "n,,\x01" "auth=Bearer  ", "\x01\x01",
             BEARER_FAIL, NULL);                        /* two spaces */
    exchange(BEARER_OAUTHBEARER, "n,,\x01" "auth=Basic ", "\x01\x01",
             BEARER_FAIL, NULL);
    exchange(BEARER_OAUTHBEARER, "n,,auth=Bearer ", "\x01\x01",
             BEARER_FAIL, NULL);                        /* no kvsep */

    struct bearer_state *st = bearer_new(BEARER_OAUTHBEARER);
    struct step s = {0};
    step(st, fx->cfg, "", 0, &s);
    assert_int_equal(s.rc, BEARER_FAIL);
    bearer_free(st);
    st = bearer_new(BEARER_OAUTHBEARER);
    const char nul[] = "n,,\x01" "auth=Bearer a\0b\x01\x01";
    step(st, fx->cfg, nul, sizeof nul - 1, &s);
    assert_int_equal(s.rc, BEARER_FAIL);
    bearer_free(st);
}

static void test_oauthbearer_invalid_token(void **state)
{
    const char *want = "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}";
    const char msg[] = "n,,\x01" "auth=Bearer a.b.c\x01\x01";
    struct bearer_state *st = bearer_new(BEARER_OAUTHBEARER);
    struct step s = {0};

    step(st, fx->cfg, msg, sizeof msg - 1, &s);
    assert_int_equal(s.rc, BEARER_CHALLENGE);
    assert_int_equal(s.outlen, strlen(want));
    assert_memory_equal(s.out, want, s.outlen);
    assert_null(strstr(s.out, "a.b.c"));
    step(st, fx->cfg, "\x01", 1, &s);
    assert_int_equal(s.rc, BEARER_FAIL);
    assert_null(s.out);
    step(st, fx->cfg, msg, sizeof msg - 1, &s);     /* and stays failed */
    assert_int_equal(s.rc, BEARER_FAIL);
    bearer_free(st);
}

static void test_bearer_tempfail(void **state)
{
    char *token = rs256(claims());
    char msg[4096];
    struct bearer_state *st = bearer_new(BEARER_OAUTHBEARER);
    struct step s = {0};

    int n = snprintf(msg, sizeof msg, "n,,\x01" "auth=Bearer %s\x01\x01",
                     token);
    step(st, fx->cfg_missing, msg, (size_t)n, &s);
    assert_int_equal(s.rc, BEARER_TEMPFAIL);
    assert_null(s.out);
    bearer_free(st);
    free(token);
}

static void test_xoauth2(void **state)
{
    exchange(BEARER_XOAUTH2, "user=alice@example.com\x01" "auth=Bearer ",
             "\x01\x01", BEARER_OK, "alice@example.com");
    exchange(BEARER_XOAUTH2, "auth=Bearer ", "\x01\x01", BEARER_FAIL, NULL);
    exchange(BEARER_XOAUTH2, "user=a\x01" "auth=Bearer ", "\x01",
             BEARER_FAIL, NULL);

    const char *want = "{\"status\":\"401\",\"schemes\":\"bearer\"}";
    char *token = sign(claims(), JWT_ALG_RS256, fx->rsa2_priv, "r1");
    char msg[4096];
    struct bearer_state *st = bearer_new(BEARER_XOAUTH2);
    struct step s = {0};
    int n = snprintf(msg, sizeof msg, "user=alice@example.com\x01"
                     "auth=Bearer %s\x01\x01", token);
    step(st, fx->cfg, msg, (size_t)n, &s);
    assert_int_equal(s.rc, BEARER_CHALLENGE);
    assert_int_equal(s.outlen, strlen(want));
    assert_memory_equal(s.out, want, s.outlen);
    assert_string_equal(s.reason, "bad signature");
    assert_string_equal(s.authzid, "");
    step(st, fx->cfg, "", 0, &s);
    assert_int_equal(s.rc, BEARER_FAIL);
    bearer_free(st);
    free(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rs256_ok),
        cmocka_unit_test(test_es256_ok),
        cmocka_unit_test(test_es256_raw_signature_from_openssl),
        cmocka_unit_test(test_no_kid_tries_keys),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_exp_required),
        cmocka_unit_test(test_nbf_and_iat_in_future),
        cmocka_unit_test(test_wrong_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_claim),
        cmocka_unit_test(test_custom_claim),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_hs256_key_confusion),
        cmocka_unit_test(test_kid_names_other_key_type),
        cmocka_unit_test(test_tampered_payload),
        cmocka_unit_test(test_token_length),
        cmocka_unit_test_teardown(test_jwks_unavailable, restore_jwks),
        cmocka_unit_test_teardown(test_jwks_reloaded, restore_jwks),
        cmocka_unit_test_teardown(test_jwks_key_filters, restore_jwks),
        cmocka_unit_test(test_threads_and_reload),
        cmocka_unit_test(test_oauthbearer_ok),
        cmocka_unit_test(test_oauthbearer_malformed),
        cmocka_unit_test(test_oauthbearer_invalid_token),
        cmocka_unit_test(test_bearer_tempfail),
        cmocka_unit_test(test_xoauth2),
    };
    return cmocka_run_group_tests_name("oauth", tests, group_setup,
                                       group_teardown);
}
