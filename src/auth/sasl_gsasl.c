/* sasl_gsasl.c — the mechanisms GNU SASL serves (PLAIN, LOGIN, CRAM-MD5,
 * SCRAM-SHA-1/256 and their -PLUS forms, EXTERNAL) and the callback
 * that feeds them pobox's users, secrets and connection facts. Every
 * verdict a callback reaches goes through auth/auth.h. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "auth/sasl_impl.h"
#include "auth/userdb.h"
#include "core/base64.h"
#include "core/config.h"
#include "core/strutil.h"

static Gsasl *g_ctx;
/* Keys the fake SCRAM salts of unknown users, so that they look stable. */
static unsigned char g_fake_salt_key[32];

/* ---- properties ------------------------------------------------------- */

static const char *prop(Gsasl_session *gs, Gsasl_property p)
{
    const char *v = gsasl_property_fast(gs, p);
    return v ? v : "";
}

static int set_prop(Gsasl_session *gs, Gsasl_property p, const char *v)
{
    return gsasl_property_set(gs, p, v) == GSASL_OK ? GSASL_OK : GSASL_NO_CALLBACK;
}

static void note_authid(struct sasl_session *ss, const char *id)
{
    snprintf(ss->authid, sizeof ss->authid, "%s", id);
}

/* A callback's verdict: GSASL_OK when the outcome is a success. */
static int decide(struct sasl_session *ss)
{
    ss->decided = true;
    return ss->outcome.result == AUTH_OK ? GSASL_OK : GSASL_AUTHENTICATION_ERROR;
}

/* ---- PLAIN and LOGIN -------------------------------------------------- */

static int validate_simple(struct sasl_session *ss, Gsasl_session *gs)
{
    const char *authid = prop(gs, GSASL_AUTHID);
    note_authid(ss, authid);
    auth_check_password(ss->cfg, ss->ip, authid, prop(gs, GSASL_PASSWORD),
                        &ss->outcome);
    if (ss->outcome.result == AUTH_OK &&
        !auth_authzid_ok(ss->outcome.user, prop(gs, GSASL_AUTHZID)))
        auth_verdict(ss->cfg, ss->ip, ss->outcome.user, false,
                     "authzid is another user", &ss->outcome);
    return decide(ss);
}

/* ---- CRAM-MD5: the APOP secret --------------------------------------- */

static int cram_secret(struct sasl_session *ss, Gsasl_session *gs)
{
    char canon[AUTH_USER_MAX];
    struct userdb_entry e;
    const char *authid = prop(gs, GSASL_AUTHID);
    note_authid(ss, authid);
    int rc = auth_lookup_user(ss->cfg, authid, canon, &e);
    if (rc < 0) {
        ss->tempfail = true;
        return GSASL_NO_CALLBACK;
    }
    if (rc == 0) {
        ss->fail_reason = "unknown user";
        return GSASL_NO_CALLBACK;
    }
    int out = GSASL_NO_CALLBACK;
    if (e.apop_secret)
        out = set_prop(gs, GSASL_PASSWORD, e.apop_secret);
    else
        ss->fail_reason = "no apop secret";
    userdb_entry_free(&e);
    return out;
}

/* ---- SCRAM: stored keys, or a convincing fake for unknown users -------- */

static bool scram_sha256(const struct sasl_session *ss)
{
    return strncmp(ss->mech->name, "SCRAM-SHA-256", 13) == 0;
}

/* The salt an unknown user (or one without SCRAM keys) gets: the same for
 * every spelling of the address and for -PLUS and plain, like a real one. */
static void scram_fake(struct sasl_session *ss, const char *authid)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char canon[AUTH_USER_MAX], msg[AUTH_USER_MAX + 32];
    if (!userdb_canonical(authid, canon, sizeof canon)) {
        snprintf(canon, sizeof canon, "%s", authid);
        str_lower(canon);
    }
    int n = snprintf(msg, sizeof msg, "%s\n%s", scram_sha256(ss) ? "sha256" : "sha1",
                     canon);
    HMAC(EVP_sha256(), g_fake_salt_key, sizeof g_fake_salt_key,
         (const unsigned char *)msg, n > 0 ? (size_t)n : 0, mac, &maclen);
    char *salt = base64_encode(mac, SCRAM_SALT_LEN);
    snprintf(ss->scram.salt, sizeof ss->scram.salt, "%s", salt ? salt : "AAAA");
    free(salt);
    ss->scram.iterations = ss->cfg->scram_iterations;
}

static void scram_load(struct sasl_session *ss, Gsasl_session *gs)
{
    char canon[AUTH_USER_MAX];
    struct userdb_entry e;
    const char *authid = prop(gs, GSASL_AUTHID);
    ss->scram_loaded = true;
    note_authid(ss, authid);
    int rc = auth_lookup_user(ss->cfg, authid, canon, &e);
    if (rc < 0) {
        ss->tempfail = true;
        return;
    }
    if (rc > 0) {
        const char *stored = scram_sha256(ss) ? e.scram_sha256 : e.scram_sha1;
        ss->scram_ok = stored && scram_parse(scram_sha256(ss) ? SCRAM_SHA256 : SCRAM_SHA1,
                                             stored, &ss->scram);
        if (!ss->scram_ok)
            ss->fail_reason = "no scram credentials";
        userdb_entry_free(&e);
    } else {
        ss->fail_reason = "unknown user";
    }
    if (!ss->scram_ok)
        scram_fake(ss, authid);
}

static int scram_property(struct sasl_session *ss, Gsasl_session *gs,
                          Gsasl_property p)
{
    if (!ss->scram_loaded)
        scram_load(ss, gs);
    char iter[16];
    switch (p) {
    case GSASL_SCRAM_ITER:
        snprintf(iter, sizeof iter, "%u", ss->scram.iterations);
        return set_prop(gs, p, iter);
    case GSASL_SCRAM_SALT:
        return set_prop(gs, p, ss->scram.salt);
    case GSASL_SCRAM_STOREDKEY:
        return ss->scram_ok ? set_prop(gs, p, ss->scram.stored_key) : GSASL_NO_CALLBACK;
    case GSASL_SCRAM_SERVERKEY:
        return ss->scram_ok ? set_prop(gs, p, ss->scram.server_key) : GSASL_NO_CALLBACK;
    default:
        return GSASL_NO_CALLBACK;
    }
}

/* ---- channel binding, EXTERNAL ---------------------------------------- */

static int channel_binding(struct sasl_session *ss, Gsasl_session *gs,
                           const char *type, Gsasl_property p)
{
    if (strcmp(ss->cb_type, type) != 0)
        return GSASL_NO_CALLBACK;
    char *b64 = base64_encode(ss->cb_data, ss->cb_len);
    int rc = b64 ? set_prop(gs, p, b64) : GSASL_NO_CALLBACK;
    free(b64);
    return rc;
}

static int validate_external(struct sasl_session *ss, Gsasl_session *gs)
{
    note_authid(ss, ss->cert_identity);
    if (!ss->cert_identity[0]) {
        auth_verdict(ss->cfg, ss->ip, "", false, "no client certificate",
                     &ss->outcome);
        return decide(ss);
    }
    auth_check_identity(ss->cfg, ss->ip, ss->cert_identity,
                        prop(gs, GSASL_AUTHZID), &ss->outcome);
    return decide(ss);
}

static int sasl_callback(Gsasl *ctx, Gsasl_session *gs, Gsasl_property p)
{
    (void)ctx;
    struct sasl_session *ss = gsasl_session_hook_get(gs);
    if (!ss)
        return GSASL_NO_CALLBACK;
    switch (p) {
    case GSASL_VALIDATE_SIMPLE:
        return validate_simple(ss, gs);
    case GSASL_PASSWORD:
        return strcmp(ss->mech->name, "CRAM-MD5") == 0 ? cram_secret(ss, gs)
                                                        : GSASL_NO_CALLBACK;
    case GSASL_SCRAM_ITER:
    case GSASL_SCRAM_SALT:
    case GSASL_SCRAM_STOREDKEY:
    case GSASL_SCRAM_SERVERKEY:
        return scram_property(ss, gs, p);
    case GSASL_CB_TLS_UNIQUE:
        return channel_binding(ss, gs, "tls-unique", p);
    case GSASL_CB_TLS_EXPORTER:
        return channel_binding(ss, gs, "tls-exporter", p);
    case GSASL_VALIDATE_EXTERNAL:
        return validate_external(ss, gs);
    default:
        return GSASL_NO_CALLBACK;
    }
}

/* ---- lifecycle -------------------------------------------------------- */

int sasl_gsasl_init(void)
{
    if (RAND_bytes(g_fake_salt_key, sizeof g_fake_salt_key) != 1)
        return -1;
    if (gsasl_init(&g_ctx) != GSASL_OK)
        return -1;
    gsasl_callback_set(g_ctx, sasl_callback);
    return 0;
}

void sasl_gsasl_done(void)
{
    if (g_ctx)
        gsasl_done(g_ctx);
    g_ctx = NULL;
}

bool sasl_gsasl_supports(const char *mech)
{
    return g_ctx && gsasl_server_support_p(g_ctx, mech);
}

bool sasl_gsasl_start(struct sasl_session *ss)
{
    if (!g_ctx || gsasl_server_start(g_ctx, ss->mech->name, &ss->gs) != GSASL_OK) {
        ss->gs = NULL;
        return false;
    }
    gsasl_session_hook_set(ss->gs, ss);
    return true;
}

int sasl_gsasl_step(struct sasl_session *ss, const char *in, size_t inlen,
                    char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    int rc = gsasl_step(ss->gs, in, inlen, out, outlen);
    if (ss->authid[0] == '\0')
        note_authid(ss, prop(ss->gs, GSASL_AUTHID));
    return rc;
}

void sasl_gsasl_finish(struct sasl_session *ss)
{
    if (ss->gs)
        gsasl_finish(ss->gs);
    ss->gs = NULL;
}
