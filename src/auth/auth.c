/* auth.c — the credential check every login path ends in: look the user up,
 * verify the password (or the APOP digest), and turn failures into growing
 * delays. Unknown users cost the same as wrong passwords. */
#include "auth/auth.h"
#include "auth/credcache.h"
#include "core/strutil.h"
#include "auth/password.h"
#include "auth/throttle.h"
#include "auth/userdb.h"
#include "core/config.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#define AUTH_MD5_LEN 16

/* Starts an outcome as a failure with no delay. */
static void auth_outcome_init(struct auth_outcome *out)
{
    memset(out, 0, sizeof *out);
    out->result = AUTH_FAIL;
}

static void auth_succeed(struct auth_outcome *out, const char *ip,
                         const char *canon)
{
    out->result = AUTH_OK;
    out->reason = "ok";
    out->delay_ms = 0;
    /* canon fits: userdb_canonical was given AUTH_USER_MAX. */
    memcpy(out->user, canon, strlen(canon) + 1);
    throttle_success(ip, canon);
}

/* Records a failure for the account (canonical when valid, else as typed). */
static void auth_fail(const struct config *cfg, struct auth_outcome *out,
                      const char *ip, const char *account, const char *reason)
{
    out->result = AUTH_FAIL;
    out->reason = reason;
    out->user[0] = '\0';
    out->delay_ms = throttle_fail(ip, account ? account : "",
                                  cfg->failure_delay_ms,
                                  cfg->max_failure_delay_ms);
}

static void auth_tempfail(struct auth_outcome *out)
{
    out->result = AUTH_TEMPFAIL;
    out->reason = "userdb unavailable";
    out->user[0] = '\0';
    out->delay_ms = 0;
}

int auth_lookup_user(const struct config *cfg, const char *user,
                     char canon[AUTH_USER_MAX], struct userdb_entry *e)
{
    memset(e, 0, sizeof *e);
    if (!userdb_canonical(user, canon, AUTH_USER_MAX)) {
        canon[0] = '\0';
        return 0;
    }
    return userdb_lookup(cfg->data_dir, canon, e);
}

void auth_check_password(const struct config *cfg, const char *ip,
                         const char *user, const char *pass,
                         struct auth_outcome *out)
{
    char canon[AUTH_USER_MAX];
    struct userdb_entry e;

    auth_outcome_init(out);
    if (!pass)
        pass = "";
    int rc = auth_lookup_user(cfg, user, canon, &e);
    if (rc < 0) {
        auth_tempfail(out);
        return;
    }
    const char *account = canon[0] ? canon : user;
    if (rc == 0) {
        password_verify_dummy(pass);
        auth_fail(cfg, out, ip, account, "unknown user");
        return;
    }
    if (credcache_check(canon, e.hash, pass, cfg->auth_cache_ttl)) {
        auth_succeed(out, ip, canon);
    } else if (password_verify(pass, e.hash)) {
        credcache_store(canon, e.hash, pass, cfg->auth_cache_ttl);
        auth_succeed(out, ip, canon);
    } else {
        auth_fail(cfg, out, ip, account, "wrong password");
    }
    userdb_entry_free(&e);
}

/* Decodes exactly 32 hex digits (either case) into 16 octets. */
static bool auth_parse_digest(const char *hex, unsigned char out[AUTH_MD5_LEN])
{
    if (!hex || strnlen(hex, 2 * AUTH_MD5_LEN + 1) != 2 * AUTH_MD5_LEN)
        return false;
    for (int i = 0; i < AUTH_MD5_LEN; i++) {
        int hi = str_hexval(hex[2 * i]), lo = str_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* MD5(timestamp || secret) into md. */
static bool auth_apop_md5(const char *timestamp, const char *secret,
                          unsigned char md[AUTH_MD5_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) &&
              EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) &&
              EVP_DigestUpdate(ctx, secret, strlen(secret)) &&
              EVP_DigestFinal_ex(ctx, md, &len) && len == AUTH_MD5_LEN;
    EVP_MD_CTX_free(ctx);
    return ok;
}

void auth_check_apop(const struct config *cfg, const char *ip,
                     const char *user, const char *timestamp,
                     const char *digest_hex, struct auth_outcome *out)
{
    char canon[AUTH_USER_MAX];
    unsigned char want[AUTH_MD5_LEN], got[AUTH_MD5_LEN];
    struct userdb_entry e;

    auth_outcome_init(out);
    int rc = auth_lookup_user(cfg, user, canon, &e);
    if (rc < 0) {
        auth_tempfail(out);
        return;
    }
    const char *account = canon[0] ? canon : user;
    if (rc == 0) {
        auth_fail(cfg, out, ip, account, "unknown user");
        return;
    }
    if (!e.apop_secret) {
        auth_fail(cfg, out, ip, account, "no apop secret");
    } else if (!timestamp || !auth_parse_digest(digest_hex, got)) {
        auth_fail(cfg, out, ip, account, "malformed digest");
    } else if (!auth_apop_md5(timestamp, e.apop_secret, want)) {
        auth_tempfail(out);
        out->reason = "md5 unavailable";
    } else if (CRYPTO_memcmp(want, got, AUTH_MD5_LEN) == 0) {
        auth_succeed(out, ip, canon);
    } else {
        auth_fail(cfg, out, ip, account, "wrong digest");
    }
    password_wipe(want, sizeof want);
    userdb_entry_free(&e);
}

void auth_verdict(const struct config *cfg, const char *ip, const char *account,
                  bool ok, const char *reason, struct auth_outcome *out)
{
    char canon[AUTH_USER_MAX];
    auth_outcome_init(out);
    if (ok && userdb_canonical(account, canon, sizeof canon))
        auth_succeed(out, ip, canon);
    else
        auth_fail(cfg, out, ip, account ? account : "", ok ? "invalid user" : reason);
}

bool auth_authzid_ok(const char *canon, const char *authzid)
{
    char az[AUTH_USER_MAX];
    if (!authzid || !*authzid)
        return true;
    return userdb_canonical(authzid, az, sizeof az) && strcmp(az, canon) == 0;
}

void auth_check_identity(const struct config *cfg, const char *ip,
                         const char *identity, const char *authzid,
                         struct auth_outcome *out)
{
    char canon[AUTH_USER_MAX];
    struct userdb_entry e;

    auth_outcome_init(out);
    int rc = auth_lookup_user(cfg, identity ? identity : "", canon, &e);
    if (rc < 0) {
        auth_tempfail(out);
        return;
    }
    const char *account = canon[0] ? canon : (identity ? identity : "");
    if (rc == 0) {
        auth_fail(cfg, out, ip, account, "unknown user");
        return;
    }
    userdb_entry_free(&e);
    if (auth_authzid_ok(canon, authzid))
        auth_succeed(out, ip, canon);
    else
        auth_fail(cfg, out, ip, account, "authzid is another user");
}
