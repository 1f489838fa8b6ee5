/* sasl_impl.h — the inside of a SASL session, shared by sasl.c (mechanism
 * table, availability, the step loop, pobox's own mechanisms) and
 * sasl_gsasl.c (GNU SASL and its callbacks). Not a public interface. */
#ifndef POBOX_SASL_IMPL_H
#define POBOX_SASL_IMPL_H

#include <gsasl.h>
#include <stdbool.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "auth/scram.h"

enum sasl_flag {
    MECH_PLAINTEXT = 1 << 0,    /* sends a reusable secret: TLS unless allowed */
    MECH_PLUS = 1 << 1,         /* needs channel binding */
    MECH_CERT = 1 << 2,         /* needs a verified client certificate */
    MECH_KERBEROS = 1 << 3,     /* needs auth.keytab; auth/gssapi.h */
    MECH_OAUTH = 1 << 4,        /* needs auth.oauth_jwks */
    MECH_SERVER_FIRST = 1 << 5, /* no initial response (CRAM-MD5) */
    MECH_BEARER = 1 << 6,       /* auth/bearer.h */
    MECH_NEEDS_DATA = 1 << 7,   /* an empty client message is malformed */
};

struct sasl_mech {
    const char *name;
    unsigned flags;
};

enum sasl_phase {
    PHASE_RUNNING,
    PHASE_FINAL,    /* success data sent; waiting for the empty answer */
    PHASE_REFUSED,  /* OAuth error challenge sent; the exchange fails next */
    PHASE_DONE,
};

struct sasl_session {
    const struct config *cfg;
    const struct sasl_mech *mech;
    char service[16];
    char ip[64];
    char cb_type[16];               /* "" = no channel binding */
    unsigned char cb_data[SASL_CB_MAX];
    size_t cb_len;
    char cert_identity[AUTH_USER_MAX];
    char authid[AUTH_USER_MAX];     /* for the log */
    enum sasl_phase phase;
    unsigned steps;
    bool started;                   /* the first step ran */

    Gsasl_session *gs;
    struct bearer_state *bearer;
    struct gssapi_state *gssapi;

    /* Set by a callback that reached a verdict inside gsasl_step. */
    bool decided;
    struct auth_outcome outcome;
    const char *fail_reason;        /* a reason found before the verdict */
    bool tempfail;

    /* SCRAM secrets, loaded once per exchange by the callbacks. */
    bool scram_loaded, scram_ok;
    struct scram_creds scram;
};

/* sasl_gsasl.c */
int sasl_gsasl_init(void);
void sasl_gsasl_done(void);
bool sasl_gsasl_supports(const char *mech);
bool sasl_gsasl_start(struct sasl_session *ss);
/* One GNU SASL step on decoded input (NULL = none); returns the gsasl code
 * and the raw output in *out and *outlen (free with gsasl_free). */
int sasl_gsasl_step(struct sasl_session *ss, const char *in, size_t inlen,
                    char **out, size_t *outlen);
void sasl_gsasl_finish(struct sasl_session *ss);

#endif
