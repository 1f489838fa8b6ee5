/* gssapi.c — RFC 4752 server side over MIT libgssapi_krb5. pobox does this
 * itself rather than through GNU SASL because libgsasl 2.2's GSSAPI server
 * leaks the error token of every failed gss_accept_sec_context (a leak any
 * client with a foreign ticket can trigger) and the buffer of a short
 * security-layer answer. Every GSS buffer here is released on every path. */
#include "auth/gssapi.h"

#include <gssapi/gssapi.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LAYER_NONE 0x01     /* RFC 4752 section 3.3: no security layer */

enum gssapi_phase { PH_CONTEXT, PH_TOKEN_SENT, PH_LAYER_SENT, PH_DONE };

struct gssapi_state {
    char target[512];           /* "service@hostname" */
    enum gssapi_phase phase;
    gss_ctx_id_t ctx;
    gss_name_t client;
};

struct gssapi_state *gssapi_new(const char *service, const char *hostname)
{
    struct gssapi_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    snprintf(st->target, sizeof st->target, "%s@%s", service, hostname);
    st->ctx = GSS_C_NO_CONTEXT;
    st->client = GSS_C_NO_NAME;
    return st;
}

void gssapi_free(struct gssapi_state *st)
{
    OM_uint32 min;
    if (!st)
        return;
    if (st->ctx != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&min, &st->ctx, GSS_C_NO_BUFFER);
    if (st->client != GSS_C_NO_NAME)
        gss_release_name(&min, &st->client);
    free(st);
}

/* gss_release_buffer skips empty buffers, but MIT's unwrap mallocs one
 * (zero octets) for an empty message: free such a one ourselves. */
static void release_buffer(gss_buffer_desc *b)
{
    OM_uint32 min;
    if (b->length == 0 && b->value) {
        free(b->value);
        b->value = NULL;
    }
    gss_release_buffer(&min, b);
}

/* Moves a GSS buffer into a malloc'd one; the GSS buffer is released. */
static bool take_buffer(gss_buffer_desc *b, char **out, size_t *outlen)
{
    bool ok = true;
    *out = NULL;
    *outlen = 0;
    if (b->length) {
        *out = malloc(b->length);
        if (*out) {
            memcpy(*out, b->value, b->length);
            *outlen = b->length;
        } else {
            ok = false;
        }
    }
    release_buffer(b);
    return ok;
}

/* Acceptor credentials, one per target for the life of the process:
 * acquiring costs a keytab read, and MIT krb5 leaks memory on every failed
 * gss_acquire_cred (a missing keytab), so a failure is retried at most every
 * RETRY_SECONDS. MIT credentials may be shared by threads. */
#define CRED_SLOTS 8
#define RETRY_SECONDS 30

struct cred_slot {
    char target[512];
    gss_cred_id_t cred;
    time_t failed_at;
};

static pthread_mutex_t g_cred_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cred_slot g_creds[CRED_SLOTS];

static gss_cred_id_t acquire(const char *target)
{
    OM_uint32 maj, min;
    gss_name_t name = GSS_C_NO_NAME;
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
    gss_buffer_desc tb = {strlen(target), (void *)target};
    maj = gss_import_name(&min, &tb, GSS_C_NT_HOSTBASED_SERVICE, &name);
    if (GSS_ERROR(maj))
        return GSS_C_NO_CREDENTIAL;
    maj = gss_acquire_cred(&min, name, GSS_C_INDEFINITE, GSS_C_NO_OID_SET,
                           GSS_C_ACCEPT, &cred, NULL, NULL);
    gss_release_name(&min, &name);
    return GSS_ERROR(maj) ? GSS_C_NO_CREDENTIAL : cred;
}

static struct cred_slot *cred_slot(const char *target)
{
    struct cred_slot *free_slot = NULL;
    for (size_t i = 0; i < CRED_SLOTS; i++) {
        if (strcmp(g_creds[i].target, target) == 0)
            return &g_creds[i];
        if (!free_slot && !g_creds[i].target[0])
            free_slot = &g_creds[i];
    }
    if (free_slot)
        snprintf(free_slot->target, sizeof free_slot->target, "%s", target);
    return free_slot;
}

static gss_cred_id_t shared_cred(const char *target)
{
    pthread_mutex_lock(&g_cred_lock);
    struct cred_slot *slot = cred_slot(target);
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
    if (slot) {
        time_t now = time(NULL);
        if (slot->cred == GSS_C_NO_CREDENTIAL &&
            (!slot->failed_at || now - slot->failed_at >= RETRY_SECONDS)) {
            slot->cred = acquire(target);
            slot->failed_at = slot->cred == GSS_C_NO_CREDENTIAL ? now : 0;
        }
        cred = slot->cred;
    }
    pthread_mutex_unlock(&g_cred_lock);
    return cred;
}

void gssapi_done(void)
{
    OM_uint32 min;
    pthread_mutex_lock(&g_cred_lock);
    for (size_t i = 0; i < CRED_SLOTS; i++) {
        if (g_creds[i].cred != GSS_C_NO_CREDENTIAL)
            gss_release_cred(&min, &g_creds[i].cred);
        memset(&g_creds[i], 0, sizeof g_creds[i]);
    }
    pthread_mutex_unlock(&g_cred_lock);
}

/* The wrapped offer: no security layer, maximum message size 0. */
static enum gssapi_rc send_layer_offer(struct gssapi_state *st, char **out,
                                       size_t *outlen, const char **reason)
{
    OM_uint32 maj, min;
    unsigned char offer[4] = {LAYER_NONE, 0, 0, 0};
    gss_buffer_desc in = {sizeof offer, offer}, wrapped = GSS_C_EMPTY_BUFFER;
    maj = gss_wrap(&min, st->ctx, 0, GSS_C_QOP_DEFAULT, &in, NULL, &wrapped);
    if (GSS_ERROR(maj)) {
        release_buffer(&wrapped);
        *reason = "gss_wrap failed";
        return GSSAPI_FAIL;
    }
    st->phase = PH_LAYER_SENT;
    if (!take_buffer(&wrapped, out, outlen)) {
        *reason = "out of memory";
        return GSSAPI_FAIL;
    }
    return GSSAPI_CONTINUE;
}

static enum gssapi_rc step_context(struct gssapi_state *st, const void *in,
                                   size_t inlen, char **out, size_t *outlen,
                                   const char **reason)
{
    OM_uint32 maj, min;
    if (inlen == 0) {
        *reason = "empty gssapi token";
        return GSSAPI_FAIL;
    }
    gss_cred_id_t cred = shared_cred(st->target);
    if (cred == GSS_C_NO_CREDENTIAL) {
        *reason = "no acceptor credential (keytab)";
        return GSSAPI_FAIL;
    }
    gss_buffer_desc tok = {inlen, (void *)in}, reply = GSS_C_EMPTY_BUFFER;
    if (st->client != GSS_C_NO_NAME)
        gss_release_name(&min, &st->client);
    maj = gss_accept_sec_context(&min, &st->ctx, cred, &tok,
                                 GSS_C_NO_CHANNEL_BINDINGS, &st->client, NULL,
                                 &reply, NULL, NULL, NULL);
    bool have_reply = reply.length > 0;
    if (!take_buffer(&reply, out, outlen) || GSS_ERROR(maj)) {
        free(*out);
        *out = NULL;
        *outlen = 0;
        *reason = GSS_ERROR(maj) ? "gss_accept_sec_context failed" : "out of memory";
        return GSSAPI_FAIL;
    }
    if (maj & GSS_S_CONTINUE_NEEDED)
        return GSSAPI_CONTINUE;
    if (have_reply) {
        st->phase = PH_TOKEN_SENT;  /* the client answers it with nothing */
        return GSSAPI_CONTINUE;
    }
    return send_layer_offer(st, out, outlen, reason);
}

static bool client_name(struct gssapi_state *st, char *principal, size_t psz)
{
    OM_uint32 maj, min;
    gss_buffer_desc name = GSS_C_EMPTY_BUFFER;
    maj = gss_display_name(&min, st->client, &name, NULL);
    bool ok = !GSS_ERROR(maj) && name.length > 0 && name.length < psz &&
              !memchr(name.value, '\0', name.length);
    if (ok) {
        memcpy(principal, name.value, name.length);
        principal[name.length] = '\0';
    }
    gss_release_buffer(&min, &name);
    return ok;
}

/* The client's wrapped choice: layer octet, 3 octets of size, authzid. */
static enum gssapi_rc step_layer(struct gssapi_state *st, const void *in,
                                 size_t inlen, char *principal, size_t psz,
                                 char *authzid, size_t azsz, const char **reason)
{
    OM_uint32 maj, min;
    gss_buffer_desc tok = {inlen, (void *)in}, plain = GSS_C_EMPTY_BUFFER;
    st->phase = PH_DONE;
    maj = gss_unwrap(&min, st->ctx, &tok, &plain, NULL, NULL);
    const unsigned char *p = plain.value;
    enum gssapi_rc rc = GSSAPI_FAIL;
    if (GSS_ERROR(maj))
        *reason = "gss_unwrap failed";
    else if (plain.length < 4 || p[0] != LAYER_NONE)
        *reason = "bad security layer answer";
    else if (plain.length - 4 >= azsz || memchr(p + 4, '\0', plain.length - 4))
        *reason = "bad authzid";
    else if (!client_name(st, principal, psz))
        *reason = "no client name";
    else {
        memcpy(authzid, p + 4, plain.length - 4);
        authzid[plain.length - 4] = '\0';
        rc = GSSAPI_OK;
    }
    release_buffer(&plain);
    return rc;
}

enum gssapi_rc gssapi_step(struct gssapi_state *st, const void *in, size_t inlen,
                           char **out, size_t *outlen, char *principal,
                           size_t psz, char *authzid, size_t azsz,
                           const char **reason)
{
    *out = NULL;
    *outlen = 0;
    switch (st->phase) {
    case PH_CONTEXT:
        return step_context(st, in, inlen, out, outlen, reason);
    case PH_TOKEN_SENT:
        if (inlen != 0) {
            *reason = "unexpected data";
            return GSSAPI_FAIL;
        }
        return send_layer_offer(st, out, outlen, reason);
    case PH_LAYER_SENT:
        return step_layer(st, in, inlen, principal, psz, authzid, azsz, reason);
    case PH_DONE:
        break;
    }
    *reason = "exchange over";
    return GSSAPI_FAIL;
}
