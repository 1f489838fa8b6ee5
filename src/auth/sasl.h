/* sasl.h — SASL authentication (RFC 4422) for every protocol: which
 * mechanisms a connection may use, and the server side of each exchange.
 * No protocol knowledge lives here: POP3 AUTH (RFC 5034) and SMTP AUTH
 * (RFC 4954) both drive a struct sasl_session the same way.
 *
 * Mechanisms: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1(-PLUS), SCRAM-SHA-256(-PLUS),
 * EXTERNAL and GSSAPI through GNU SASL; OAUTHBEARER and XOAUTH2 through
 * auth/bearer.h. Every verdict ends in auth/auth.h, so SASL failures feed the
 * same throttle and delays as USER/PASS.
 *
 * Threads: sasl_init before any thread; sasl_mechlist and sasl_start on any
 * thread; sasl_step blocks (password hashing, Kerberos, file reads) and runs
 * on the worker pool, one step of a session at a time. */
#ifndef POBOX_SASL_H
#define POBOX_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"

struct config;
struct conn;

/* A response line longer than this (base64, without CRLF) ends the exchange. */
#define SASL_MAX_RESPONSE 32768

/* Channel binding data (RFC 5929 tls-unique, RFC 9266 tls-exporter). */
#define SASL_CB_MAX 64

/* What the protocol knows about its connection when AUTH starts. */
struct sasl_conn_info {
    const char *service;        /* GSSAPI service: "pop" or "smtp" */
    const char *ip;             /* client address, for the throttle */
    bool tls;                   /* the connection is TLS now */
    const char *cb_type;        /* "tls-unique", "tls-exporter" or NULL */
    unsigned char cb_data[SASL_CB_MAX];
    size_t cb_len;
    const char *cert_identity;  /* verified client certificate's identity
                                   (lowercase address), or NULL */
};

/* Fills ci for connection c (service "pop" or "smtp"); cert (certsz
 * octets) holds the client certificate's identity that ci points to. */
void sasl_conn_info_from(struct sasl_conn_info *ci, struct conn *c,
                         const char *service, char *cert, size_t certsz);

/* Process-wide setup: GNU SASL, and the Kerberos keytab (auth.keytab, put
 * into KRB5_KTNAME). 0 ok, -1 with a message on stderr. */
int sasl_init(const struct config *cfg);
void sasl_done(void);

/* The mechanisms usable on this connection, in auth.mechanisms order,
 * separated by single spaces ("" when none). */
void sasl_mechlist(const struct config *cfg, const struct sasl_conn_info *ci,
                   char *out, size_t outsz);

enum sasl_start_rc {
    SASL_START_OK,
    SASL_START_UNSUPPORTED,     /* unknown, disabled or unusable here */
    SASL_START_NEEDS_TLS,       /* a plaintext mechanism before TLS */
    SASL_START_NO_INITIAL,      /* initial response to a server-first mech */
    SASL_START_TEMPFAIL,        /* out of memory, GNU SASL failure */
};

struct sasl_session;

/* Starts mechanism mech (case-insensitive). ci is copied. cfg must outlive
 * the session (the protocol session holds a reference). */
struct sasl_session *sasl_start(const struct config *cfg,
                                const struct sasl_conn_info *ci,
                                const char *mech, bool initial_response,
                                enum sasl_start_rc *rc);

enum sasl_step_rc {
    SASL_CONTINUE,  /* send *out_b64 as a challenge ("" for an empty one) */
    SASL_SUCCESS,   /* authenticated: outcome->user is the canonical user */
    SASL_FAILURE,   /* outcome->reason, outcome->delay_ms are set */
    SASL_MALFORMED, /* a response that is not base64; also a failure */
    SASL_TEMPFAIL,  /* users file unreadable, Kerberos/JWKS unavailable */
};

/* One step. in_b64 is the client's response as sent (base64), or NULL for
 * "no initial response"; the caller has already handled "*" (cancel) and
 * turned the initial response "=" into "". *out_b64 (malloc'd, may be NULL)
 * is for SASL_CONTINUE. Success data that RFC 4422 sends with the outcome
 * (SCRAM's v=) comes back as a SASL_CONTINUE first; the client's empty
 * answer to it then gives SASL_SUCCESS. Blocking: run on the worker pool. */
enum sasl_step_rc sasl_step(struct sasl_session *ss, const char *in_b64,
                            char **out_b64, struct auth_outcome *outcome);

/* The mechanism name, uppercase, for logs. */
const char *sasl_mech(const struct sasl_session *ss);
/* The authentication identity the client gave so far ("" when none), for
 * logs; never a secret. */
const char *sasl_authid(const struct sasl_session *ss);

void sasl_free(struct sasl_session *ss);

#endif
