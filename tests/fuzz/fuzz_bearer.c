/* fuzz_bearer.c — libFuzzer harness for auth/bearer (and through it
 * auth/oauth): the first input byte picks OAUTHBEARER (even) or XOAUTH2
 * (odd), the rest is the client's first message. A JWKS file holding one
 * P-256 key ("f1") is written to the temporary directory at start, so the
 * seed tokens signed with it (valid until 2100) reach the success path.
 * abort()s when an invariant of bearer.h breaks: the challenge is exactly
 * one of the two JSON errors, identity and authzid are set only on success,
 * the identity is lowercase, and whatever follows the first step fails.
 * Built and run by tools/fuzz.sh. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/bearer.h"
#include "auth/oauth.h"
#include "core/config.h"

#define JWKS "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"f1\"," \
    "\"use\":\"sig\",\"x\":\"iUDc8FoaoSCO5jCo7C8l5SlS0FvFy1242Q2xTPZm3lU\"," \
    "\"y\":\"LG-d0KTTNdRmhgicnKAI097AYljWle5ewatdfODe2SA\"}]}"
#define ERR_OAUTHBEARER "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}"
#define ERR_XOAUTH2 "{\"status\":\"401\",\"schemes\":\"bearer\"}"

static char jwks_path[256];
static struct config cfg;

static void require(bool ok)
{
    if (!ok)
        abort();
}

static void cleanup(void)
{
    oauth_done();
    unlink(jwks_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    snprintf(jwks_path, sizeof jwks_path, "%s/pobox-fuzz-jwks-XXXXXX", tmp);
    int fd = mkstemp(jwks_path);
    require(fd >= 0);
    require(write(fd, JWKS, strlen(JWKS)) == (ssize_t)strlen(JWKS));
    close(fd);
    cfg.oauth_jwks = jwks_path;
    cfg.oauth_issuer = (char *)"https://issuer.example";
    cfg.oauth_audience = (char *)"pobox";
    cfg.oauth_claim = (char *)"email";
    atexit(cleanup);
    return 0;
}

/* A NUL-terminated string in buf[0..size) with no control character. */
static bool clean_string(const char *buf, size_t size)
{
    size_t n = strnlen(buf, size);
    if (n == size)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7F)
            return false;
    return true;
}

static void check_first(enum bearer_kind kind, enum bearer_rc rc,
                        const char *out, size_t outlen, const char *identity,
                        const char *authzid, const uint8_t *msg, size_t len)
{
    require(rc == BEARER_OK || rc == BEARER_CHALLENGE || rc == BEARER_FAIL);
    require((out != NULL) == (rc == BEARER_CHALLENGE));
    if (out) {
        const char *want = kind == BEARER_OAUTHBEARER ? ERR_OAUTHBEARER
                                                      : ERR_XOAUTH2;
        require(outlen == strlen(want) && memcmp(out, want, outlen) == 0);
    }
    if (rc != BEARER_OK) {
        require(identity[0] == '\0' && authzid[0] == '\0');
        return;
    }
    require(len > 0 && !memchr(msg, '\0', len));
    require(identity[0] != '\0' && clean_string(identity, 256));
    require(clean_string(authzid, 256));
    for (const char *p = identity; *p; p++)
        require(!(*p >= 'A' && *p <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char identity[256], authzid[256], *out = NULL;
    size_t outlen = 0;
    const char *reason = NULL;

    if (size == 0)
        return 0;
    enum bearer_kind kind = data[0] & 1 ? BEARER_XOAUTH2 : BEARER_OAUTHBEARER;
    struct bearer_state *st = bearer_new(kind);
    require(st != NULL);
    enum bearer_rc rc = bearer_step(st, &cfg, (const char *)data + 1, size - 1,
                                    &out, &outlen, identity, sizeof identity,
                                    authzid, sizeof authzid, &reason);
    require(reason != NULL);
    check_first(kind, rc, out, outlen, identity, authzid, data + 1, size - 1);
    free(out);
    out = NULL;
    reason = NULL;
    rc = bearer_step(st, &cfg, "\x01", kind == BEARER_OAUTHBEARER, &out,
                     &outlen, identity, sizeof identity, authzid,
                     sizeof authzid, &reason);
    require(rc == BEARER_FAIL && out == NULL && reason != NULL);
    require(identity[0] == '\0' && authzid[0] == '\0');
    bearer_free(st);
    return 0;
}
