/* gssapi.h — the server side of the SASL GSSAPI mechanism (RFC 4752) over
 * MIT Kerberos: establish the security context with the client's tokens,
 * offer "no security layer", read the client's choice and authorization
 * identity, and name the client principal. The keytab comes from
 * KRB5_KTNAME (auth/sasl.c sets it from auth.keytab). */
#ifndef POBOX_GSSAPI_H
#define POBOX_GSSAPI_H

#include <stddef.h>

enum gssapi_rc {
    GSSAPI_CONTINUE,    /* send *out (may be empty) and wait for the next */
    GSSAPI_OK,          /* principal and authzid are set */
    GSSAPI_FAIL,        /* *reason says why, for the log */
};

struct gssapi_state;

/* Acceptor for the host-based service SERVICE@HOSTNAME (principal
 * SERVICE/HOSTNAME@REALM). NULL when out of memory. */
struct gssapi_state *gssapi_new(const char *service, const char *hostname);
void gssapi_free(struct gssapi_state *st);
/* Releases the process's acceptor credentials (at exit). */
void gssapi_done(void);

/* One step with the client's decoded token in[0..inlen). *out is malloc'd
 * (or NULL with *outlen 0). Blocking: Kerberos reads the keytab and the
 * replay cache. */
enum gssapi_rc gssapi_step(struct gssapi_state *st, const void *in, size_t inlen,
                           char **out, size_t *outlen, char *principal,
                           size_t psz, char *authzid, size_t azsz,
                           const char **reason);

#endif
