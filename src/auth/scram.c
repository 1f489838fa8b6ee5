/* scram.c — SCRAM credentials (RFC 5802, RFC 7677): derives the salted
 * StoredKey and ServerKey that the users file keeps, and parses them back.
 *
 * The password is SASLprep'd (RFC 4013) with GNU SASL's own function and
 * flags, so what a GNU SASL client computes matches; a password SASLprep
 * refuses is used as it is (as PostgreSQL does), which clients that skip
 * SASLprep still match. Every intermediate secret is wiped. */
#include "auth/scram.h"

#include <gsasl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCRAM_KEY_MAX 32            /* octets of the longest hash (SHA-256) */
#define SCRAM_SALT_MAX ((SCRAM_B64_MAX - 1) / 4 * 3)   /* whose base64 fits */

static const EVP_MD *scram_md(enum scram_hash h)
{
    return h == SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
}

static size_t scram_key_len(enum scram_hash h)
{
    return h == SCRAM_SHA256 ? 32 : 20;
}

/* ---- base64 ------------------------------------------------------------- */

/* base64 of n octets into out (outsz); false when it does not fit. */
static bool scram_b64_encode(const unsigned char *in, size_t n, char *out,
                             size_t outsz)
{
    if (n > INT_MAX / 2 || 4 * ((n + 2) / 3) + 1 > outsz)
        return false;
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return true;
}

/* Decodes the canonical base64 s (len octets) into out (outsz); the number of
 * octets, or -1 when s is empty, too long, not base64 or not in canonical
 * form (padding, unused bits, whitespace). */
static int scram_b64_decode(const char *s, size_t len, unsigned char *out,
                            size_t outsz)
{
    unsigned char buf[SCRAM_B64_MAX];
    char again[SCRAM_B64_MAX];

    if (len == 0 || len % 4 != 0 || len >= SCRAM_B64_MAX)
        return -1;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
    if (n < 0)
        return -1;
    n -= (s[len - 1] == '=') + (s[len - 2] == '=');
    if (n <= 0 || (size_t)n > outsz ||
        !scram_b64_encode(buf, (size_t)n, again, sizeof again) ||
        strlen(again) != len || memcmp(again, s, len) != 0) {
        OPENSSL_cleanse(buf, sizeof buf);
        return -1;
    }
    memcpy(out, buf, (size_t)n);
    OPENSSL_cleanse(buf, sizeof buf);
    return n;
}

/* ---- deriving ----------------------------------------------------------- */

/* SaltedPassword := Hi(Normalize(password), salt, i) into salted (the hash's
 * length). */
static bool scram_salted_password(enum scram_hash h, const char *password,
                                  unsigned iterations, const unsigned char *salt,
                                  size_t salt_len, unsigned char *salted)
{
    char *prep = NULL;

    if (gsasl_saslprep(password, GSASL_ALLOW_UNASSIGNED, &prep, NULL) != GSASL_OK)
        prep = NULL;            /* not SASLprep-able: use it as it is */
    const char *pw = prep ? prep : password;
    size_t pwlen = strlen(pw);
    bool ok = pwlen <= INT_MAX &&
              PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, (int)salt_len,
                                (int)iterations, scram_md(h),
                                (int)scram_key_len(h), salted) == 1;
    if (prep) {
        OPENSSL_cleanse(prep, strlen(prep));
        gsasl_free(prep);
    }
    return ok;
}

/* StoredKey := H(HMAC(SaltedPassword, "Client Key")),
 * ServerKey := HMAC(SaltedPassword, "Server Key"). */
static bool scram_keys(enum scram_hash h, const unsigned char *salted,
                       unsigned char *stored, unsigned char *server)
{
    unsigned char client[EVP_MAX_MD_SIZE];
    unsigned int n = 0, m = 0, k = 0;
    int len = (int)scram_key_len(h);

    bool ok = HMAC(scram_md(h), salted, len, (const unsigned char *)"Client Key",
                   10, client, &n) != NULL &&
              EVP_Digest(client, n, stored, &m, scram_md(h), NULL) == 1 &&
              HMAC(scram_md(h), salted, len, (const unsigned char *)"Server Key",
                   10, server, &k) != NULL &&
              (int)n == len && (int)m == len && (int)k == len;
    OPENSSL_cleanse(client, sizeof client);
    return ok;
}

/* Writes the stored form into out; false when it does not fit. */
static bool scram_format(enum scram_hash h, unsigned iterations,
                         const unsigned char *salt, size_t salt_len,
                         const unsigned char *stored,
                         const unsigned char *server, char *out, size_t outsz)
{
    char s[SCRAM_B64_MAX], sk[SCRAM_B64_MAX], vk[SCRAM_B64_MAX];
    size_t len = scram_key_len(h);

    if (!scram_b64_encode(salt, salt_len, s, sizeof s) ||
        !scram_b64_encode(stored, len, sk, sizeof sk) ||
        !scram_b64_encode(server, len, vk, sizeof vk))
        return false;
    int n = snprintf(out, outsz, "%u,%s,%s,%s", iterations, s, sk, vk);
    OPENSSL_cleanse(sk, sizeof sk);
    OPENSSL_cleanse(vk, sizeof vk);
    return n > 0 && (size_t)n < outsz;
}

bool scram_make_salted(enum scram_hash h, const char *password,
                       unsigned iterations, const unsigned char *salt,
                       size_t salt_len, char *out, size_t outsz)
{
    unsigned char salted[SCRAM_KEY_MAX], stored[SCRAM_KEY_MAX],
                  server[SCRAM_KEY_MAX];

    if (!out || outsz == 0)
        return false;
    out[0] = '\0';
    if (!password || !salt || salt_len == 0 || salt_len > SCRAM_SALT_MAX ||
        iterations == 0 || iterations > INT_MAX)
        return false;
    bool ok = scram_salted_password(h, password, iterations, salt, salt_len,
                                    salted) &&
              scram_keys(h, salted, stored, server) &&
              scram_format(h, iterations, salt, salt_len, stored, server, out,
                           outsz);
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(server, sizeof server);
    if (!ok)
        OPENSSL_cleanse(out, outsz);
    return ok;
}

bool scram_make(enum scram_hash h, const char *password, unsigned iterations,
                char *out, size_t outsz)
{
    unsigned char salt[SCRAM_SALT_LEN];

    if (RAND_bytes(salt, sizeof salt) != 1) {
        if (out && outsz)
            out[0] = '\0';
        return false;
    }
    return scram_make_salted(h, password, iterations, salt, sizeof salt, out,
                             outsz);
}

/* ---- parsing ------------------------------------------------------------ */

/* The iteration count at s (len octets): decimal, no sign, no leading zero,
 * 1 to INT_MAX. 0 when malformed. */
static unsigned scram_parse_iterations(const char *s, size_t len)
{
    unsigned long v = 0;

    if (len == 0 || len > 10 || s[0] == '0')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return v <= INT_MAX ? (unsigned)v : 0;
}

/* Checks the base64 field s (len octets) decodes to want octets (any number
 * but 0 when want is 0) and copies it into out (SCRAM_B64_MAX). */
static bool scram_parse_b64(const char *s, size_t len, size_t want, char *out)
{
    unsigned char bin[SCRAM_B64_MAX];
    int n = scram_b64_decode(s, len, bin, sizeof bin);

    OPENSSL_cleanse(bin, sizeof bin);
    if (n < 0 || (want && (size_t)n != want))
        return false;
    memcpy(out, s, len);
    out[len] = '\0';
    return true;
}

bool scram_parse(enum scram_hash h, const char *stored, struct scram_creds *out)
{
    const char *f[4];
    size_t len[4];

    if (!stored || !out)
        return false;
    memset(out, 0, sizeof *out);
    const char *p = stored;
    for (int i = 0; i < 4; i++) {
        const char *comma = strchr(p, ',');
        if ((i < 3) != (comma != NULL))
            return false;               /* too few or too many fields */
        f[i] = p;
        len[i] = comma ? (size_t)(comma - p) : strlen(p);
        if (comma)
            p = comma + 1;
    }
    size_t klen = scram_key_len(h);
    bool ok = (out->iterations = scram_parse_iterations(f[0], len[0])) != 0 &&
              scram_parse_b64(f[1], len[1], 0, out->salt) &&
              scram_parse_b64(f[2], len[2], klen, out->stored_key) &&
              scram_parse_b64(f[3], len[3], klen, out->server_key);
    if (!ok)
        OPENSSL_cleanse(out, sizeof *out);
    return ok;
}
