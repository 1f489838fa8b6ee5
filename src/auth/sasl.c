/* sasl.c — the SASL service both protocols use: the mechanism table, which
 * mechanisms a connection may use, and the step loop around GNU SASL
 * (sasl_gsasl.c), Kerberos (gssapi.c) and OAuth (bearer.c): base64 in and
 * out, success data, and one verdict per exchange through auth/auth.h. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/bearer.h"
#include "auth/gssapi.h"
#include "auth/oauth.h"
#include "auth/sasl_impl.h"
#include "core/base64.h"
#include "core/config.h"
#include "core/strutil.h"

#define SASL_MAX_STEPS 16   /* no mechanism needs more round trips */

static const struct sasl_mech MECHS[] = {
    {"PLAIN", MECH_PLAINTEXT | MECH_NEEDS_DATA},
    {"LOGIN", MECH_PLAINTEXT},
    {"CRAM-MD5", MECH_SERVER_FIRST | MECH_NEEDS_DATA},
    {"SCRAM-SHA-1", MECH_NEEDS_DATA},
    {"SCRAM-SHA-1-PLUS", MECH_PLUS | MECH_NEEDS_DATA},
    {"SCRAM-SHA-256", MECH_NEEDS_DATA},
    {"SCRAM-SHA-256-PLUS", MECH_PLUS | MECH_NEEDS_DATA},
    {"EXTERNAL", MECH_CERT},
    {"GSSAPI", MECH_KERBEROS},
    {"OAUTHBEARER", MECH_PLAINTEXT | MECH_OAUTH | MECH_BEARER},
    {"XOAUTH2", MECH_PLAINTEXT | MECH_OAUTH | MECH_BEARER},
};
#define NMECHS (sizeof(MECHS) / sizeof(MECHS[0]))

/* The keytab handed to Kerberos at start; GSSAPI is offered only while the
 * configuration still names it (KRB5_KTNAME cannot change in a running,
 * threaded process). */
static char g_keytab[4096];

int sasl_init(const struct config *cfg)
{
    if (*cfg->keytab) {
        snprintf(g_keytab, sizeof g_keytab, "%s", cfg->keytab);
        setenv("KRB5_KTNAME", cfg->keytab, 1);
    }
    if (sasl_gsasl_init() != 0) {
        fprintf(stderr, "pobox: GNU SASL cannot start\n");
        return -1;
    }
    return 0;
}

void sasl_done(void)
{
    sasl_gsasl_done();
    gssapi_done();
    oauth_done();
}

static const struct sasl_mech *find_mech(const char *name)
{
    for (size_t i = 0; i < NMECHS; i++)
        if (strcasecmp(MECHS[i].name, name) == 0)
            return &MECHS[i];
    return NULL;
}

static bool enabled(const struct config *cfg, const struct sasl_mech *m)
{
    for (char **p = cfg->mechanisms; p && *p; p++)
        if (strcmp(*p, m->name) == 0)
            return true;
    return false;
}

/* Usable here, leaving aside the TLS rule for plaintext mechanisms. */
static bool usable(const struct config *cfg, const struct sasl_conn_info *ci,
                   const struct sasl_mech *m)
{
    if (!enabled(cfg, m))
        return false;
    if ((m->flags & MECH_PLUS) && !ci->cb_type)
        return false;
    if ((m->flags & MECH_CERT) && !(ci->cert_identity && *ci->cert_identity))
        return false;
    if ((m->flags & MECH_KERBEROS) &&
        (!*cfg->keytab || strcmp(cfg->keytab, g_keytab) != 0))
        return false;
    if ((m->flags & MECH_OAUTH) && !*cfg->oauth_jwks)
        return false;
    return (m->flags & (MECH_BEARER | MECH_KERBEROS)) || sasl_gsasl_supports(m->name);
}

static bool tls_rule_ok(const struct config *cfg, const struct sasl_conn_info *ci,
                        const struct sasl_mech *m)
{
    return !(m->flags & MECH_PLAINTEXT) || ci->tls || cfg->plaintext_without_tls;
}

void sasl_mechlist(const struct config *cfg, const struct sasl_conn_info *ci,
                   char *out, size_t outsz)
{
    size_t used = 0;
    out[0] = '\0';
    for (char **p = cfg->mechanisms; p && *p; p++) {
        const struct sasl_mech *m = find_mech(*p);
        if (!m || !usable(cfg, ci, m) || !tls_rule_ok(cfg, ci, m))
            continue;
        int n = snprintf(out + used, outsz - used, "%s%s", used ? " " : "", m->name);
        if (n < 0 || (size_t)n >= outsz - used) {
            out[used] = '\0';
            return;
        }
        used += (size_t)n;
    }
}

static void copy_conn_info(struct sasl_session *ss, const struct sasl_conn_info *ci)
{
    snprintf(ss->service, sizeof ss->service, "%s", ci->service ? ci->service : "");
    snprintf(ss->ip, sizeof ss->ip, "%s", ci->ip ? ci->ip : "");
    if (ci->cb_type && ci->cb_len <= sizeof ss->cb_data) {
        snprintf(ss->cb_type, sizeof ss->cb_type, "%s", ci->cb_type);
        memcpy(ss->cb_data, ci->cb_data, ci->cb_len);
        ss->cb_len = ci->cb_len;
    }
    snprintf(ss->cert_identity, sizeof ss->cert_identity, "%s",
             ci->cert_identity ? ci->cert_identity : "");
}

struct sasl_session *sasl_start(const struct config *cfg,
                                const struct sasl_conn_info *ci,
                                const char *mech, bool initial_response,
                                enum sasl_start_rc *rc)
{
    const struct sasl_mech *m = find_mech(mech);
    if (!m || !usable(cfg, ci, m)) {
        *rc = SASL_START_UNSUPPORTED;
        return NULL;
    }
    if (!tls_rule_ok(cfg, ci, m)) {
        *rc = SASL_START_NEEDS_TLS;
        return NULL;
    }
    if (initial_response && (m->flags & MECH_SERVER_FIRST)) {
        *rc = SASL_START_NO_INITIAL;
        return NULL;
    }
    struct sasl_session *ss = calloc(1, sizeof(*ss));
    if (!ss) {
        *rc = SASL_START_TEMPFAIL;
        return NULL;
    }
    ss->cfg = cfg;
    ss->mech = m;
    copy_conn_info(ss, ci);
    bool ok;
    if (m->flags & MECH_BEARER)
        ok = (ss->bearer = bearer_new(strcmp(m->name, "XOAUTH2") == 0
                                          ? BEARER_XOAUTH2
                                          : BEARER_OAUTHBEARER)) != NULL;
    else if (m->flags & MECH_KERBEROS)
        ok = (ss->gssapi = gssapi_new(ss->service, cfg->hostname)) != NULL;
    else
        ok = sasl_gsasl_start(ss);
    if (!ok) {
        sasl_free(ss);
        *rc = SASL_START_TEMPFAIL;
        return NULL;
    }
    *rc = SASL_START_OK;
    return ss;
}

/* ---- verdicts --------------------------------------------------------- */

static enum sasl_step_rc fail(struct sasl_session *ss, const char *reason,
                              struct auth_outcome *out)
{
    ss->phase = PHASE_DONE;
    auth_verdict(ss->cfg, ss->ip, ss->authid, false, reason, out);
    return SASL_FAILURE;
}

static enum sasl_step_rc tempfail(struct sasl_session *ss, const char *reason,
                                  struct auth_outcome *out)
{
    ss->phase = PHASE_DONE;
    memset(out, 0, sizeof *out);
    out->result = AUTH_TEMPFAIL;
    out->reason = reason;
    return SASL_TEMPFAIL;
}

/* The verdict a callback reached, as a step result. */
static enum sasl_step_rc decided(struct sasl_session *ss, struct auth_outcome *out)
{
    *out = ss->outcome;
    if (out->result == AUTH_TEMPFAIL)
        return tempfail(ss, out->reason, out);
    ss->phase = PHASE_DONE;
    return out->result == AUTH_OK ? SASL_SUCCESS : SASL_FAILURE;
}

/* Success, with data for the client first when there is some (SCRAM). */
static enum sasl_step_rc succeed(struct sasl_session *ss, const char *data,
                                 size_t len, char **out_b64,
                                 struct auth_outcome *out)
{
    if (len == 0) {
        ss->phase = PHASE_DONE;
        *out = ss->outcome;
        return SASL_SUCCESS;
    }
    *out_b64 = base64_encode(data, len);
    if (!*out_b64)
        return tempfail(ss, "out of memory", out);
    ss->phase = PHASE_FINAL;
    return SASL_CONTINUE;
}

static enum sasl_step_rc challenge(struct sasl_session *ss, const char *data,
                                   size_t len, char **out_b64,
                                   struct auth_outcome *out)
{
    *out_b64 = base64_encode(data ? data : "", len);
    return *out_b64 ? SASL_CONTINUE : tempfail(ss, "out of memory", out);
}

/* ---- GNU SASL mechanisms ---------------------------------------------- */

/* LOGIN in GNU SASL ignores an initial response: ask for the user name
 * first, then feed the initial response as the answer to it. */
static int login_skip_prompt(struct sasl_session *ss)
{
    char *o;
    size_t olen;
    int rc = sasl_gsasl_step(ss, NULL, 0, &o, &olen);
    gsasl_free(o);
    return rc;
}

static enum sasl_step_rc step_gsasl(struct sasl_session *ss, const char *in,
                                    size_t inlen, char **out_b64,
                                    struct auth_outcome *out)
{
    char *o = NULL;
    size_t olen = 0;
    if (in && inlen == 0 && (ss->mech->flags & MECH_NEEDS_DATA))
        return fail(ss, "empty response", out);
    if (!ss->started && in && strcmp(ss->mech->name, "LOGIN") == 0 &&
        login_skip_prompt(ss) != GSASL_NEEDS_MORE)
        return fail(ss, "login prompt", out);
    int rc = sasl_gsasl_step(ss, in, inlen, &o, &olen);
    enum sasl_step_rc r;
    if (ss->tempfail)
        r = tempfail(ss, "userdb unavailable", out);
    else if (rc == GSASL_NEEDS_MORE)
        r = challenge(ss, o, olen, out_b64, out);
    else if (ss->decided && (rc != GSASL_OK || ss->outcome.result != AUTH_OK))
        r = decided(ss, out);
    else if (rc == GSASL_OK) {
        if (!ss->decided)
            auth_verdict(ss->cfg, ss->ip, ss->authid, true, "ok", &ss->outcome);
        if (ss->outcome.result == AUTH_OK &&
            !auth_authzid_ok(ss->outcome.user, gsasl_property_fast(ss->gs, GSASL_AUTHZID)))
            r = fail(ss, "authzid is another user", out);
        else
            r = succeed(ss, o, olen, out_b64, out);
    } else
        r = fail(ss, ss->fail_reason ? ss->fail_reason : gsasl_strerror_name(rc), out);
    gsasl_free(o);
    return r;
}

/* ---- pobox's own mechanisms: OAuth and Kerberos ------------------------ */

/* The OAuth error challenge: the exchange fails at the client's answer. */
static enum sasl_step_rc refused(struct sasl_session *ss, const char *json,
                                 size_t len, char **out_b64,
                                 struct auth_outcome *out)
{
    ss->phase = PHASE_REFUSED;
    return challenge(ss, json, len, out_b64, out);
}

/* An identity the mechanism proved: the verdict of the whole exchange. */
static enum sasl_step_rc identity_verdict(struct sasl_session *ss,
                                          const char *identity,
                                          const char *authzid,
                                          struct auth_outcome *out)
{
    snprintf(ss->authid, sizeof ss->authid, "%s", identity);
    auth_check_identity(ss->cfg, ss->ip, identity, authzid, out);
    ss->phase = PHASE_DONE;
    return out->result == AUTH_OK ? SASL_SUCCESS
           : out->result == AUTH_TEMPFAIL ? SASL_TEMPFAIL : SASL_FAILURE;
}

static enum sasl_step_rc step_bearer(struct sasl_session *ss, const char *in,
                                     size_t inlen, char **out_b64,
                                     struct auth_outcome *out)
{
    if (!ss->started && !in)
        return challenge(ss, "", 0, out_b64, out);   /* ask for the token */
    char identity[AUTH_USER_MAX], authzid[AUTH_USER_MAX];
    char *o = NULL;
    size_t olen = 0;
    const char *reason = "malformed";
    enum bearer_rc rc = bearer_step(ss->bearer, ss->cfg, in ? in : "", inlen, &o,
                                    &olen, identity, sizeof identity, authzid,
                                    sizeof authzid, &reason);
    enum sasl_step_rc r;
    if (rc == BEARER_OK) {
        r = identity_verdict(ss, identity, authzid, out);
        if (r == SASL_FAILURE) {
            /* A good token for a user who may not log in: refuse it the
             * RFC 7628 way too; the verdict stands for the next step. */
            ss->outcome = *out;
            ss->decided = true;
            rc = bearer_refuse(ss->bearer, &o, &olen, &reason);
            r = rc == BEARER_CHALLENGE ? refused(ss, o, olen, out_b64, out)
                                       : tempfail(ss, reason, out);
        }
    } else if (rc == BEARER_CHALLENGE) {
        ss->fail_reason = reason;
        r = refused(ss, o, olen, out_b64, out);
    } else if (rc == BEARER_TEMPFAIL) {
        r = tempfail(ss, reason, out);
    } else {
        r = fail(ss, reason, out);
    }
    free(o);
    return r;
}

/* Kerberos: principal alice@EXAMPLE.ORG is user alice@example.org;
 * principals with an instance (alice/admin@...) are not mail users. */
static enum sasl_step_rc step_gssapi(struct sasl_session *ss, const char *in,
                                     size_t inlen, char **out_b64,
                                     struct auth_outcome *out)
{
    if (!ss->started && !in)
        return challenge(ss, "", 0, out_b64, out);   /* ask for the token */
    char principal[AUTH_USER_MAX], authzid[AUTH_USER_MAX];
    char *o = NULL;
    size_t olen = 0;
    const char *reason = "gssapi";
    enum gssapi_rc rc = gssapi_step(ss->gssapi, in ? in : "", inlen, &o, &olen,
                                    principal, sizeof principal, authzid,
                                    sizeof authzid, &reason);
    enum sasl_step_rc r;
    if (rc == GSSAPI_CONTINUE) {
        r = challenge(ss, o, olen, out_b64, out);
    } else if (rc == GSSAPI_FAIL) {
        r = fail(ss, reason, out);
    } else {
        str_lower(principal);
        if (strchr(principal, '/')) {
            snprintf(ss->authid, sizeof ss->authid, "%s", principal);
            r = fail(ss, "principal is not a user", out);
        } else {
            r = identity_verdict(ss, principal, authzid, out);
        }
    }
    free(o);
    return r;
}

/* ---- the step loop ---------------------------------------------------- */

/* After success data: only an empty answer completes the login. */
static enum sasl_step_rc step_final(struct sasl_session *ss, size_t inlen,
                                    struct auth_outcome *out)
{
    if (inlen != 0)
        return fail(ss, "data after success", out);
    ss->phase = PHASE_DONE;
    *out = ss->outcome;
    return SASL_SUCCESS;
}

enum sasl_step_rc sasl_step(struct sasl_session *ss, const char *in_b64,
                            char **out_b64, struct auth_outcome *outcome)
{
    unsigned char *in = NULL;
    size_t inlen = 0;
    *out_b64 = NULL;
    memset(outcome, 0, sizeof *outcome);
    if (ss->phase == PHASE_DONE) {
        outcome->result = AUTH_FAIL;
        outcome->reason = "exchange over";
        return SASL_FAILURE;
    }
    if (++ss->steps > SASL_MAX_STEPS)
        return fail(ss, "too many steps", outcome);
    if (in_b64 && strcmp(in_b64, "=") != 0 &&
        !base64_decode(in_b64, strlen(in_b64), &in, &inlen)) {
        fail(ss, "malformed base64", outcome);
        return SASL_MALFORMED;
    }
    const char *data = in ? (const char *)in : (in_b64 ? "" : NULL);
    enum sasl_step_rc r;
    if (ss->phase == PHASE_FINAL)
        r = step_final(ss, inlen, outcome);
    else if (ss->phase == PHASE_REFUSED && ss->decided)
        r = decided(ss, outcome);
    else if (ss->phase == PHASE_REFUSED)
        r = fail(ss, ss->fail_reason ? ss->fail_reason : "token refused", outcome);
    else if (ss->mech->flags & MECH_BEARER)
        r = step_bearer(ss, data, inlen, out_b64, outcome);
    else if (ss->mech->flags & MECH_KERBEROS)
        r = step_gssapi(ss, data, inlen, out_b64, outcome);
    else
        r = step_gsasl(ss, data, inlen, out_b64, outcome);
    ss->started = true;
    if (in) {
        OPENSSL_cleanse(in, inlen);
        free(in);
    }
    return r;
}

const char *sasl_mech(const struct sasl_session *ss)
{
    return ss->mech->name;
}

const char *sasl_authid(const struct sasl_session *ss)
{
    return ss->authid;
}

void sasl_free(struct sasl_session *ss)
{
    if (!ss)
        return;
    sasl_gsasl_finish(ss);
    if (ss->bearer)
        bearer_free(ss->bearer);
    gssapi_free(ss->gssapi);
    OPENSSL_cleanse(&ss->scram, sizeof ss->scram);
    free(ss);
}
