/* bearer.h — the server side of the OAUTHBEARER (RFC 7628) and XOAUTH2
 * (Google's and Microsoft's) SASL mechanisms, which GNU SASL does not
 * provide: parse the client's message, validate its token with auth/oauth.h,
 * and produce the JSON error challenge when the token is refused. */
#ifndef POBOX_BEARER_H
#define POBOX_BEARER_H

#include <stdbool.h>
#include <stddef.h>

struct config;

enum bearer_kind { BEARER_OAUTHBEARER, BEARER_XOAUTH2 };

enum bearer_rc {
    BEARER_OK,          /* token valid: identity and authzid are set */
    BEARER_CHALLENGE,   /* token refused: send *out as the challenge; the
                           exchange fails at the client's next response */
    BEARER_FAIL,        /* malformed message, or the answer to a challenge */
    BEARER_TEMPFAIL,    /* JWKS unavailable */
};

struct bearer_state;

struct bearer_state *bearer_new(enum bearer_kind kind);
void bearer_free(struct bearer_state *st);

/* One step with the decoded client response in[0..inlen). On BEARER_OK,
 * identity receives the token's claim (lowercase) and authzid the user the
 * client named (OAUTHBEARER "a=", XOAUTH2 "user="; "" when absent). On
 * BEARER_CHALLENGE, *out and *outlen hold the malloc'd JSON. *reason is static,
 * for the log. Blocking only in that the JWKS file may be read. */
enum bearer_rc bearer_step(struct bearer_state *st, const struct config *cfg,
                           const char *in, size_t inlen, char **out,
                           size_t *outlen, char *identity, size_t idsz,
                           char *authzid, size_t azsz, const char **reason);

/* After BEARER_OK, when the token's user may not log in after all (no such
 * user, authzid of someone else): the same error challenge as for a refused
 * token, so the client sees one failure path (RFC 7628 section 3.2.2).
 * BEARER_CHALLENGE, or BEARER_TEMPFAIL when out of memory. */
enum bearer_rc bearer_refuse(struct bearer_state *st, char **out, size_t *outlen,
                             const char **reason);

#endif
