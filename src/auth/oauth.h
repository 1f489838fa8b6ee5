/* oauth.h — OAuth 2.0 bearer tokens as JWTs (RFC 7519), validated against
 * the keys of a JWKS file (RFC 7517): auth.oauth_jwks, auth.oauth_issuer,
 * auth.oauth_audience, auth.oauth_claim.
 *
 * Only RS256 and ES256 signatures count; the key is chosen by the token's
 * "kid" (or tried in turn when the token has none), and its type must match
 * the algorithm. exp is required, nbf and iat honoured, with 60 s of clock
 * leeway. The JWKS file is re-read when it changes. Thread safe. */
#ifndef POBOX_OAUTH_H
#define POBOX_OAUTH_H

#include <stddef.h>

struct config;

enum oauth_result {
    OAUTH_OK,
    OAUTH_INVALID,      /* bad signature, expired, wrong issuer/audience ... */
    OAUTH_TEMPFAIL,     /* the JWKS file cannot be read or parsed */
};

/* Validates token; on OAUTH_OK writes the configured claim's value
 * (lowercased) into identity. *reason is a static string for the log. */
enum oauth_result oauth_validate(const struct config *cfg, const char *token,
                                 char *identity, size_t idsz,
                                 const char **reason);

/* Frees the cached JWKS (at exit, for leak checkers). */
void oauth_done(void);

#endif
