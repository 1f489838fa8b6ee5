/* bearer.c — the server side of SASL OAUTHBEARER (RFC 7628) and XOAUTH2.
 *
 * Both are one client message carrying "auth=Bearer TOKEN" among key=value
 * pairs ended by 0x01, the whole ended by one more 0x01; OAUTHBEARER puts a
 * GS2 header (RFC 5801, without channel binding) in front. A valid token
 * ends the exchange; a refused one gets a JSON error challenge, and the
 * client's answer to it (0x01, or an empty response for XOAUTH2) ends the
 * exchange as a failure. The token is validated by auth/oauth.h, and is
 * never logged, returned or left in memory here. */
#include "auth/bearer.h"
#include "auth/oauth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BEARER_KVSEP '\x01'

/* The error challenges (RFC 7628 section 3.2.2; Google's XOAUTH2). */
#define BEARER_ERR_OAUTHBEARER \
    "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}"
#define BEARER_ERR_XOAUTH2 "{\"status\":\"401\",\"schemes\":\"bearer\"}"

enum bearer_phase {
    BEARER_START,       /* waiting for the client's message */
    BEARER_CHALLENGED,  /* error challenge sent; next response fails */
    BEARER_DONE,        /* finished, successfully or not */
};

struct bearer_state {
    enum bearer_kind kind;
    enum bearer_phase phase;
};

/* The parts of a client message this file uses; views into the input. */
struct bearer_msg {
    const char *token;
    size_t token_len;
    bool has_auth, has_user;
    const char *user;               /* XOAUTH2 "user=" value */
    size_t user_len;
};

struct bearer_state *bearer_new(enum bearer_kind kind)
{
    struct bearer_state *st = calloc(1, sizeof *st);

    if (st)
        st->kind = kind;
    return st;
}

void bearer_free(struct bearer_state *st)
{
    free(st);
}

/* ---- parsing ------------------------------------------------------------ */

/* RFC 7628 value: VCHAR / SP / HTAB / CR / LF (8-bit let through for
 * XOAUTH2's user, checked again by bearer_copy_name). */
static bool bearer_value_ok(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7F)
            return false;
    }
    return true;
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
 * "/" ) *"=". */
static bool bearer_b64token_ok(const char *t, size_t len)
{
    size_t i = 0;

    while (i < len && (strchr("-._~+/", t[i]) ||
                       (t[i] >= 'A' && t[i] <= 'Z') ||
                       (t[i] >= 'a' && t[i] <= 'z') ||
                       (t[i] >= '0' && t[i] <= '9')))
        i++;
    if (i == 0)
        return false;
    while (i < len && t[i] == '=')
        i++;
    return i == len;
}

/* "Bearer" (any case), one space, a b64token: sets the token view. */
static bool bearer_parse_auth(const char *v, size_t len, struct bearer_msg *m)
{
    if (len < 8 || strncasecmp(v, "Bearer ", 7) != 0 ||
        !bearer_b64token_ok(v + 7, len - 7))
        return false;
    m->token = v + 7;
    m->token_len = len - 7;
    m->has_auth = true;
    return true;
}

/* One pair key=value (len octets, without its 0x01). Keys are 1*ALPHA; only
 * "auth" (and "user" when want_user) are kept, each at most once. */
static bool bearer_parse_pair(const char *p, size_t len, bool want_user,
                              struct bearer_msg *m)
{
    const char *eq = memchr(p, '=', len);
    if (!eq || eq == p)
        return false;
    size_t klen = (size_t)(eq - p);
    for (size_t i = 0; i < klen; i++)
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')))
            return false;
    const char *v = eq + 1;
    size_t vlen = len - klen - 1;
    if (!bearer_value_ok(v, vlen))
        return false;
    if (klen == 4 && memcmp(p, "auth", 4) == 0)
        return !m->has_auth && bearer_parse_auth(v, vlen, m);
    if (want_user && klen == 4 && memcmp(p, "user", 4) == 0) {
        if (m->has_user)
            return false;
        m->has_user = true;
        m->user = v;
        m->user_len = vlen;
    }
    return true;                    /* host=, port= and others: ignored */
}

/* *kvpair kvsep: pairs each ended by 0x01, then a lone 0x01 that must be
 * the last octet. */
static bool bearer_parse_pairs(const char *p, size_t len, bool want_user,
                               struct bearer_msg *m)
{
    for (;;) {
        if (len == 0)
            return false;           /* no final 0x01 */
        if (p[0] == BEARER_KVSEP)
            return len == 1;
        const char *sep = memchr(p, BEARER_KVSEP, len);
        if (!sep || !bearer_parse_pair(p, (size_t)(sep - p), want_user, m))
            return false;
        len -= (size_t)(sep - p) + 1;
        p = sep + 1;
    }
}

/* Copies name[0..len) into out (outsz) when it has no control character
 * and fits. */
static bool bearer_copy_name(const char *name, size_t len, char *out,
                             size_t outsz)
{
    if (len >= outsz)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7F)
            return false;
        out[i] = name[i];
    }
    out[len] = '\0';
    return true;
}

/* Decodes a saslname (RFC 5801: "=2C" is ',', "=3D" is '='; not empty)
 * into out (outsz). */
static bool bearer_saslname(const char *s, size_t len, char *out,
                            size_t outsz)
{
    size_t n = 0;

    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '=') {
            if (len - i >= 3 && memcmp(s + i, "=2C", 3) == 0)
                c = ',';
            else if (len - i >= 3 && memcmp(s + i, "=3D", 3) == 0)
                c = '=';
            else
                return false;
            i += 2;
        } else if ((unsigned char)c < 0x20 || c == 0x7F) {
            return false;
        }
        if (n + 1 >= outsz)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

/* gs2-header kvsep *kvpair kvsep, with no channel binding. */
static bool bearer_parse_oauthbearer(const char *in, size_t len,
                                     struct bearer_msg *m, char *authzid,
                                     size_t azsz, const char **reason)
{
    *reason = "malformed message";
    if (len >= 1 && in[0] == 'p') {
        *reason = "channel binding not supported";
        return false;
    }
    if (len < 3 || (in[0] != 'n' && in[0] != 'y') || in[1] != ',')
        return false;
    const char *p = in + 2, *end = in + len;
    const char *comma = memchr(p, ',', (size_t)(end - p));
    if (!comma)
        return false;
    if (comma > p) {
        if (comma - p < 2 || p[0] != 'a' || p[1] != '=' ||
            !bearer_saslname(p + 2, (size_t)(comma - p - 2), authzid, azsz)) {
            *reason = "bad authzid";
            return false;
        }
    }
    p = comma + 1;
    if (p == end || *p != BEARER_KVSEP)
        return false;
    p++;
    if (!bearer_parse_pairs(p, (size_t)(end - p), false, m))
        return false;
    if (!m->has_auth)
        *reason = "no auth";
    return m->has_auth;
}

/* user=USER 0x01 auth=Bearer TOKEN 0x01 0x01. */
static bool bearer_parse_xoauth2(const char *in, size_t len,
                                 struct bearer_msg *m, char *authzid,
                                 size_t azsz, const char **reason)
{
    *reason = "malformed message";
    if (!bearer_parse_pairs(in, len, true, m))
        return false;
    if (!m->has_auth || !m->has_user) {
        *reason = m->has_auth ? "no user" : "no auth";
        return false;
    }
    if (!bearer_copy_name(m->user, m->user_len, authzid, azsz)) {
        *reason = "bad user";
        return false;
    }
    return true;
}

/* ---- the exchange ------------------------------------------------------- */

/* Validates the token view (copied to a NUL-terminated string that is
 * wiped afterwards). */
static enum oauth_result bearer_validate(const struct config *cfg,
                                         const struct bearer_msg *m,
                                         char *identity, size_t idsz,
                                         const char **reason)
{
    char *token = malloc(m->token_len + 1);

    if (!token) {
        *reason = "out of memory";
        return OAUTH_TEMPFAIL;
    }
    memcpy(token, m->token, m->token_len);
    token[m->token_len] = '\0';
    enum oauth_result rc = oauth_validate(cfg, token, identity, idsz, reason);
    explicit_bzero(token, m->token_len + 1);
    free(token);
    return rc;
}

/* The error challenge for kind, malloc'd into *out. */
static enum bearer_rc bearer_challenge(enum bearer_kind kind, char **out,
                                       size_t *outlen, const char **reason)
{
    const char *json = kind == BEARER_OAUTHBEARER ? BEARER_ERR_OAUTHBEARER
                                                  : BEARER_ERR_XOAUTH2;

    *out = strdup(json);
    if (!*out) {
        *reason = "out of memory";
        return BEARER_TEMPFAIL;
    }
    *outlen = strlen(json);
    return BEARER_CHALLENGE;
}

/* The client's first (and only meaningful) message. */
static enum bearer_rc bearer_first(struct bearer_state *st,
                                   const struct config *cfg, const char *in,
                                   size_t inlen, char **out, size_t *outlen,
                                   char *identity, size_t idsz,
                                   char *authzid, size_t azsz,
                                   const char **reason)
{
    struct bearer_msg m = {0};
    bool ok;

    if (inlen == 0 || memchr(in, '\0', inlen)) {
        *reason = inlen ? "NUL in message" : "empty message";
        return BEARER_FAIL;
    }
    if (st->kind == BEARER_OAUTHBEARER)
        ok = bearer_parse_oauthbearer(in, inlen, &m, authzid, azsz, reason);
    else
        ok = bearer_parse_xoauth2(in, inlen, &m, authzid, azsz, reason);
    if (!ok)
        return BEARER_FAIL;
    switch (bearer_validate(cfg, &m, identity, idsz, reason)) {
    case OAUTH_OK:
        return BEARER_OK;
    case OAUTH_INVALID:
        st->phase = BEARER_CHALLENGED;
        return bearer_challenge(st->kind, out, outlen, reason);
    case OAUTH_TEMPFAIL:
        break;
    }
    return BEARER_TEMPFAIL;
}

enum bearer_rc bearer_step(struct bearer_state *st, const struct config *cfg,
                           const char *in, size_t inlen, char **out,
                           size_t *outlen, char *identity, size_t idsz,
                           char *authzid, size_t azsz, const char **reason)
{
    enum bearer_rc rc = BEARER_FAIL;

    *out = NULL;
    *outlen = 0;
    if (idsz)
        identity[0] = '\0';
    if (azsz)
        authzid[0] = '\0';
    if (!st || (!in && inlen)) {
        *reason = "bad call";
        return BEARER_FAIL;
    }
    if (st->phase == BEARER_START) {
        st->phase = BEARER_DONE;
        rc = bearer_first(st, cfg, in, inlen, out, outlen, identity, idsz,
                          authzid, azsz, reason);
    } else {
        *reason = st->phase == BEARER_CHALLENGED ? "token refused"
                                                 : "exchange finished";
        st->phase = BEARER_DONE;
    }
    if (rc != BEARER_OK) {
        if (idsz)
            identity[0] = '\0';
        if (azsz)
            authzid[0] = '\0';
    }
    return rc;
}

enum bearer_rc bearer_refuse(struct bearer_state *st, char **out, size_t *outlen,
                             const char **reason)
{
    *out = NULL;
    *outlen = 0;
    st->phase = BEARER_CHALLENGED;
    return bearer_challenge(st->kind, out, outlen, reason);
}
