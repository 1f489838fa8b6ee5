/* test_scram.c — unit tests for src/auth/scram.c: the RFC 5802 and RFC 7677
 * example exchanges recomputed from our stored credentials, the stored
 * form's parser, SASLprep, and a full exchange between GNU SASL's own
 * client and server that uses only what the users file keeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gsasl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scram.h"

/* ---- helpers ------------------------------------------------------------ */

static const EVP_MD *md_of(enum scram_hash h)
{
    return h == SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
}

static size_t len_of(enum scram_hash h)
{
    return h == SCRAM_SHA256 ? 32 : 20;
}

/* Decodes base64 b64 into out (64 octets); the length. */
static size_t unb64(const char *b64, unsigned char *out)
{
    size_t len = strlen(b64);
    unsigned char buf[128];

    assert_true(len > 0 && len % 4 == 0 && len / 4 * 3 <= sizeof buf);
    int n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len);
    assert_true(n > 0);
    n -= (b64[len - 1] == '=') + (b64[len - 2] == '=');
    assert_true(n <= 64);
    memcpy(out, buf, (size_t)n);
    return (size_t)n;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* The credentials of password straight from PBKDF2 without SASLprep, for
 * comparing with what scram_make_salted stored. */
static void raw_creds(enum scram_hash h, const char *password,
                      const unsigned char *salt, size_t salt_len,
                      unsigned iterations, char *out, size_t outsz)
{
    unsigned char salted[32], client[32], stored[32], server[32];
    char s[64], sk[64], vk[64];
    int len = (int)len_of(h);

    assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
                                       (int)salt_len, (int)iterations, md_of(h),
                                       len, salted), 1);
    assert_non_null(HMAC(md_of(h), salted, len,
                         (const unsigned char *)"Client Key", 10, client, NULL));
    assert_int_equal(EVP_Digest(client, (size_t)len, stored, NULL, md_of(h),
                                NULL), 1);
    assert_non_null(HMAC(md_of(h), salted, len,
                         (const unsigned char *)"Server Key", 10, server, NULL));
    b64(salt, salt_len, s);
    b64(stored, (size_t)len, sk);
    b64(server, (size_t)len, vk);
    snprintf(out, outsz, "%u,%s,%s,%s", iterations, s, sk, vk);
}

/* ---- RFC examples ------------------------------------------------------- */

struct vector {
    enum scram_hash h;
    const char *salt;           /* base64, as in s= */
    const char *client_first_bare;
    const char *server_first;
    const char *client_final_without_proof;
    const char *proof;          /* p= */
    const char *verifier;       /* v= */
};

/* Derives the credentials of "pencil", then checks that the StoredKey and
 * ServerKey give the RFC's ClientProof and ServerSignature. */
static void check_vector(const struct vector *v)
{
    unsigned char salt[64], stored[64], server[64], salted[32], client[32],
                  sig[EVP_MAX_MD_SIZE], proof[32];
    char creds[SCRAM_CREDS_MAX], auth[512], out[64];
    struct scram_creds c;
    size_t klen = len_of(v->h);

    size_t salt_len = unb64(v->salt, salt);
    assert_true(scram_make_salted(v->h, "pencil", 4096, salt, salt_len, creds,
                                  sizeof creds));
    assert_true(scram_parse(v->h, creds, &c));
    assert_int_equal(c.iterations, 4096);
    assert_string_equal(c.salt, v->salt);
    assert_int_equal(unb64(c.stored_key, stored), klen);
    assert_int_equal(unb64(c.server_key, server), klen);

    /* the client's side: ClientKey from the password */
    assert_int_equal(PKCS5_PBKDF2_HMAC("pencil", 6, salt, (int)salt_len, 4096,
                                       md_of(v->h), (int)klen, salted), 1);
    assert_non_null(HMAC(md_of(v->h), salted, (int)klen,
                         (const unsigned char *)"Client Key", 10, client, NULL));

    snprintf(auth, sizeof auth, "%s,%s,%s", v->client_first_bare,
             v->server_first, v->client_final_without_proof);
    /* ClientProof := ClientKey XOR HMAC(StoredKey, AuthMessage) */
    assert_non_null(HMAC(md_of(v->h), stored, (int)klen,
                         (const unsigned char *)auth, strlen(auth), sig, NULL));
    for (size_t i = 0; i < klen; i++)
        proof[i] = client[i] ^ sig[i];
    b64(proof, klen, out);
    assert_string_equal(out, v->proof);
    /* ServerSignature := HMAC(ServerKey, AuthMessage) */
    assert_non_null(HMAC(md_of(v->h), server, (int)klen,
                         (const unsigned char *)auth, strlen(auth), sig, NULL));
    b64(sig, klen, out);
    assert_string_equal(out, v->verifier);
}

static void test_rfc5802_sha1(void **state)
{
    static const struct vector v = {
        SCRAM_SHA1, "QSXCR+Q6sek8bf92",
        "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    };
    check_vector(&v);
}

static void test_rfc7677_sha256(void **state)
{
    static const struct vector v = {
        SCRAM_SHA256, "W22ZaJ0SNY7soEsUEjb6gQ==",
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    };
    check_vector(&v);
}

/* ---- making and parsing ------------------------------------------------- */

static void test_make_parse_round_trip(void **state)
{
    char creds[SCRAM_CREDS_MAX], again[SCRAM_CREDS_MAX];
    unsigned char bin[64];
    struct scram_creds c;

    for (int h = SCRAM_SHA1; h <= SCRAM_SHA256; h++) {
        assert_true(scram_make(h, "correct horse", 4096, creds, sizeof creds));
        assert_true(strncmp(creds, "4096,", 5) == 0);
        assert_true(scram_parse(h, creds, &c));
        assert_int_equal(c.iterations, 4096);
        assert_int_equal(unb64(c.salt, bin), SCRAM_SALT_LEN);
        assert_int_equal(unb64(c.stored_key, bin), len_of(h));
        assert_int_equal(unb64(c.server_key, bin), len_of(h));
        snprintf(again, sizeof again, "%u,%s,%s,%s", c.iterations, c.salt,
                 c.stored_key, c.server_key);
        assert_string_equal(again, creds);
        /* the other hash's key length does not fit */
        assert_false(scram_parse(h == SCRAM_SHA1 ? SCRAM_SHA256 : SCRAM_SHA1,
                                 creds, &c));
    }
    assert_true(scram_make(SCRAM_SHA256, "x", 10000, creds, sizeof creds));
    assert_true(strncmp(creds, "10000,", 6) == 0);
}

static void test_fresh_salts(void **state)
{
    char a[SCRAM_CREDS_MAX], b[SCRAM_CREDS_MAX];
    struct scram_creds ca, cb;

    for (int h = SCRAM_SHA1; h <= SCRAM_SHA256; h++) {
        assert_true(scram_make(h, "same", 4096, a, sizeof a));
        assert_true(scram_make(h, "same", 4096, b, sizeof b));
        assert_true(scram_parse(h, a, &ca));
        assert_true(scram_parse(h, b, &cb));
        assert_string_not_equal(ca.salt, cb.salt);
        assert_string_not_equal(ca.stored_key, cb.stored_key);
        assert_string_not_equal(ca.server_key, cb.server_key);
    }
}

static void test_make_refuses(void **state)
{
    static const unsigned char salt[4] = "salt";
    char out[SCRAM_CREDS_MAX];

    assert_false(scram_make(SCRAM_SHA1, "pw", 0, out, sizeof out));
    assert_string_equal(out, "");
    assert_false(scram_make(SCRAM_SHA1, NULL, 4096, out, sizeof out));
    assert_false(scram_make_salted(SCRAM_SHA1, "pw", 4096, salt, 0, out,
                                   sizeof out));
    assert_false(scram_make_salted(SCRAM_SHA1, "pw", 4096, NULL, 4, out,
                                   sizeof out));
    /* out too small: nothing half-written is left */
    assert_false(scram_make(SCRAM_SHA256, "pw", 4096, out, 40));
    assert_string_equal(out, "");
    assert_true(scram_make_salted(SCRAM_SHA1, "pw", 4096, salt, sizeof salt,
                                  out, sizeof out));
}

static void test_parse_malformed(void **state)
{
    /* valid SHA-1 fields: salt, 20-octet keys */
#define SALT "QSXCR+Q6sek8bf92"
#define K20 "6dlGYMOdZcOPutkcNY8U2g7vK9Y="
#define K32 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    static const char *bad1[] = {
        "", "4096", "4096," SALT, "4096," SALT "," K20,
        "4096," SALT "," K20 "," K20 ",extra",
        "4096," SALT "," K20 "," K20 ",",
        "0," SALT "," K20 "," K20,
        "x," SALT "," K20 "," K20,
        "-1," SALT "," K20 "," K20,
        "+4096," SALT "," K20 "," K20,
        "04096," SALT "," K20 "," K20,
        " 4096," SALT "," K20 "," K20,
        "4096x," SALT "," K20 "," K20,
        "99999999999," SALT "," K20 "," K20,
        "4096,," K20 "," K20,
        "4096," SALT ",," K20,
        "4096," SALT "," K20 ",",
        "4096,QSXCR+Q6sek8bf9," K20 "," K20,        /* length not 4n */
        "4096,QSXCR+Q6sek8bf9!," K20 "," K20,       /* not base64 */
        "4096, QSXCR+Q6sek8bf92," K20 "," K20,      /* whitespace */
        "4096," SALT ",6dlGYMOdZcOPutkcNY8U2g7vK9Z=," K20,  /* unused bits */
        "4096," SALT ",6dlGYMOdZcOPutkcNY8U2g7vK9Y," K20,   /* no padding */
        "4096," SALT ",6dlGYMOdZcOPutkcNY8U2g7vK9==," K20,  /* 19 octets */
        "4096," SALT "," K32 "," K32,                /* SHA-256 lengths */
        "4096," SALT "," K20 "," K32,
        "4096," SALT ";" K20 "," K20,
    };
    struct scram_creds c;

    assert_true(scram_parse(SCRAM_SHA1, "4096," SALT "," K20 "," K20, &c));
    assert_true(scram_parse(SCRAM_SHA256, "4096," SALT "," K32 "," K32, &c));
    assert_true(scram_parse(SCRAM_SHA1, "1," SALT "," K20 "," K20, &c));
    for (size_t i = 0; i < sizeof bad1 / sizeof bad1[0]; i++) {
        memset(&c, 'x', sizeof c);
        if (scram_parse(SCRAM_SHA1, bad1[i], &c))
            fail_msg("accepted: \"%s\"", bad1[i]);
        assert_int_equal(c.iterations, 0);
    }
    assert_false(scram_parse(SCRAM_SHA256, "4096," SALT "," K20 "," K20, &c));
    assert_false(scram_parse(SCRAM_SHA1, NULL, &c));
    assert_false(scram_parse(SCRAM_SHA1, "4096," SALT "," K20 "," K20, NULL));
#undef SALT
#undef K20
#undef K32
}

/* ---- SASLprep ----------------------------------------------------------- */

static void test_saslprep(void **state)
{
    static const unsigned char salt[16] = "0123456789abcdef";
    char a[SCRAM_CREDS_MAX], b[SCRAM_CREDS_MAX];

    for (int h = SCRAM_SHA1; h <= SCRAM_SHA256; h++) {
        /* RFC 4013 section 3: SOFT HYPHEN maps to nothing, U+00AA to "a" */
        assert_true(scram_make_salted(h, "I\xc2\xadX", 4096, salt, sizeof salt,
                                      a, sizeof a));
        raw_creds(h, "IX", salt, sizeof salt, 4096, b, sizeof b);
        assert_string_equal(a, b);
        assert_true(scram_make_salted(h, "\xc2\xaa", 4096, salt, sizeof salt,
                                      a, sizeof a));
        raw_creds(h, "a", salt, sizeof salt, 4096, b, sizeof b);
        assert_string_equal(a, b);
        /* a prohibited character (U+0007): the password as it is */
        assert_true(scram_make_salted(h, "bell\x07", 4096, salt, sizeof salt,
                                      a, sizeof a));
        raw_creds(h, "bell\x07", salt, sizeof salt, 4096, b, sizeof b);
        assert_string_equal(a, b);
        /* not UTF-8 at all: as it is too */
        assert_true(scram_make_salted(h, "caf\xe9", 4096, salt, sizeof salt,
                                      a, sizeof a));
        raw_creds(h, "caf\xe9", salt, sizeof salt, 4096, b, sizeof b);
        assert_string_equal(a, b);
    }
}

/* ---- GNU SASL's client against GNU SASL's server ------------------------ */

/* What the callback hands out for one session (NULL: nothing). */
struct side {
    const char *authid, *password;              /* client */
    const char *iter, *salt, *stored, *server;  /* server */
};

static int gsasl_cb(Gsasl *ctx, Gsasl_session *s, Gsasl_property prop)
{
    const struct side *d = s ? gsasl_session_hook_get(s) : NULL;
    const char *v = NULL;

    if (!d)
        return GSASL_NO_CALLBACK;
    switch (prop) {
    case GSASL_AUTHID:          v = d->authid; break;
    case GSASL_PASSWORD:        v = d->password; break;
    case GSASL_SCRAM_ITER:      v = d->iter; break;
    case GSASL_SCRAM_SALT:      v = d->salt; break;
    case GSASL_SCRAM_STOREDKEY: v = d->stored; break;
    case GSASL_SCRAM_SERVERKEY: v = d->server; break;
    default:                    break;
    }
    return v ? gsasl_property_set(s, prop, v) : GSASL_NO_CALLBACK;
}

/* One step of s on *buf, which becomes the output. */
static int step(Gsasl_session *s, char **buf, size_t *len)
{
    char *out = NULL;
    size_t outlen = 0;
    int rc = gsasl_step(s, *buf, *len, &out, &outlen);

    gsasl_free(*buf);
    *buf = out;
    *len = outlen;
    return rc;
}

/* Runs mech between a client knowing password and a server knowing only
 * the stored form; GSASL_OK when both sides finish successfully, else the
 * first unexpected return code. hex: hand the keys over hex-encoded. */
static int exchange(const char *mech, enum scram_hash h, const char *stored,
                    const char *password, bool hex)
{
    static const struct { bool client; int want; } plan[] = {
        { true, GSASL_NEEDS_MORE }, { false, GSASL_NEEDS_MORE },
        { true, GSASL_NEEDS_MORE }, { false, GSASL_OK }, { true, GSASL_OK },
    };
    struct scram_creds c;
    char iter[16], sk[80], vk[80];
    Gsasl *ctx;
    Gsasl_session *cli, *srv;

    assert_true(scram_parse(h, stored, &c));
    snprintf(iter, sizeof iter, "%u", c.iterations);
    strcpy(sk, c.stored_key);
    strcpy(vk, c.server_key);
    if (hex) {
        unsigned char bin[64];
        size_t n = unb64(c.stored_key, bin);
        for (size_t i = 0; i < n; i++)
            sprintf(sk + 2 * i, "%02x", bin[i]);
        n = unb64(c.server_key, bin);
        for (size_t i = 0; i < n; i++)
            sprintf(vk + 2 * i, "%02x", bin[i]);
    }
    struct side client = { .authid = "user", .password = password };
    struct side server = { .iter = iter, .salt = c.salt, .stored = sk,
                           .server = vk };

    assert_int_equal(gsasl_init(&ctx), GSASL_OK);
    gsasl_callback_set(ctx, gsasl_cb);
    assert_int_equal(gsasl_client_start(ctx, mech, &cli), GSASL_OK);
    assert_int_equal(gsasl_server_start(ctx, mech, &srv), GSASL_OK);
    gsasl_session_hook_set(cli, &client);
    gsasl_session_hook_set(srv, &server);

    char *buf = NULL;
    size_t len = 0;
    int rc = GSASL_OK;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        rc = step(plan[i].client ? cli : srv, &buf, &len);
        if (rc != plan[i].want)
            break;
    }
    gsasl_free(buf);
    gsasl_finish(cli);
    gsasl_finish(srv);
    gsasl_done(ctx);
    return rc;
}

static void check_gsasl(const char *mech, enum scram_hash h)
{
    static const char *passwords[] = {
        "pencil", "p\xc3\xa4ss w\xc3\xb6rd", "I\xc2\xadX \xe2\x85\xa8",
    };
    char creds[SCRAM_CREDS_MAX];

    for (size_t i = 0; i < sizeof passwords / sizeof passwords[0]; i++) {
        assert_true(scram_make(h, passwords[i], 4096, creds, sizeof creds));
        assert_int_equal(exchange(mech, h, creds, passwords[i], false), GSASL_OK);
    }
    assert_true(scram_make(h, "pencil", 4096, creds, sizeof creds));
    assert_int_equal(exchange(mech, h, creds, "pencil2", false),
                     GSASL_AUTHENTICATION_ERROR);
    assert_int_equal(exchange(mech, h, creds, "Pencil", false),
                     GSASL_AUTHENTICATION_ERROR);
    /* SASLprep on both sides: the client's "I<SOFT HYPHEN>X" is "IX" */
    assert_true(scram_make(h, "IX", 4096, creds, sizeof creds));
    assert_int_equal(exchange(mech, h, creds, "I\xc2\xadX", false), GSASL_OK);
    /* another iteration count travels in i= */
    assert_true(scram_make(h, "pencil", 8192, creds, sizeof creds));
    assert_int_equal(exchange(mech, h, creds, "pencil", false), GSASL_OK);
    /* libgsasl 2.2 base64-decodes GSASL_SCRAM_STOREDKEY/SERVERKEY, although
     * gsasl.h calls them hex-encoded: hex keys never authenticate */
    assert_int_not_equal(exchange(mech, h, creds, "pencil", true), GSASL_OK);
}

static void test_gsasl_scram_sha1(void **state)
{
    check_gsasl("SCRAM-SHA-1", SCRAM_SHA1);
}

static void test_gsasl_scram_sha256(void **state)
{
    check_gsasl("SCRAM-SHA-256", SCRAM_SHA256);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5802_sha1),
        cmocka_unit_test(test_rfc7677_sha256),
        cmocka_unit_test(test_make_parse_round_trip),
        cmocka_unit_test(test_fresh_salts),
        cmocka_unit_test(test_make_refuses),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_saslprep),
        cmocka_unit_test(test_gsasl_scram_sha1),
        cmocka_unit_test(test_gsasl_scram_sha256),
    };
    return cmocka_run_group_tests_name("scram", tests, NULL, NULL);
}
