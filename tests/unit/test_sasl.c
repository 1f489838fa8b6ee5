/* test_sasl.c — unit tests for src/auth/sasl.c and sasl_gsasl.c, driving the
 * SASL service exactly as POP3 AUTH and SMTP AUTH do: sasl_start, then
 * sasl_step with base64 strings, against a temporary data_dir whose users
 * were made with userdb_put.
 *
 * Covered: which mechanisms a connection is offered (TLS, channel binding,
 * client certificate, keytab, JWKS, auth.mechanisms order); sasl_start's
 * refusals; PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1/256 (GNU SASL's client as
 * the peer, and a small OpenSSL client for hand-made gs2 headers),
 * SCRAM-SHA-256-PLUS with tls-exporter, EXTERNAL, GSSAPI's refusals (no
 * KDC here: a made-up keytab and a DNS-free krb5.conf); session hygiene
 * under random and abandoned exchanges (SASL_TEST_SEED picks the seed);
 * step limits; failure delays.
 *
 * Users (argon2id costs ~0.25 s a check, so only alice has one and only a
 * few checks use it; the rest use carol's cheap bcrypt hash):
 *   alice  argon2id hash, SCRAM-SHA-1 and SCRAM-SHA-256, APOP secret
 *   bob    argon2id hash only (no SCRAM, no APOP)
 *   carol  bcrypt hash of "secret", SCRAM-SHA-1 and SCRAM-SHA-256 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <gsasl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/password.h"
#include "auth/sasl.h"
#include "auth/scram.h"
#include "auth/throttle.h"
#include "auth/userdb.h"
#include "core/base64.h"
#include "core/config.h"

#define ALICE "alice@example.com"
#define ALICE_PW "correct horse battery"
#define ALICE_APOP "tanstaaf"
#define BOB "bob@example.com"
#define CAROL "carol@example.com"
#define CAROL_PW "secret"
/* bcrypt cost 5 of "secret": a cheap hash for the many checks */
#define CAROL_HASH "$2y$05$Ax/Tcn9C4O2xUF0gv8uPLeg4VIxa2ReYR1MRYZXiablNYcXmlVzMO"
#define NOBODY "nobody@example.com"
#define IP "192.0.2.1"
#define HOSTNAME "mail.example.org"

/* RFC 7517 appendix A.1's P-256 public key (no "use": it says "enc"). */
#define JWKS "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"1\"," \
    "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\"," \
    "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\"}]}"

/* Every mechanism pobox has, in a chosen order (CRAM-MD5 in the middle). */
#define ALL_MECHS "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, " \
    "SCRAM-SHA-1, CRAM-MD5, GSSAPI, EXTERNAL, OAUTHBEARER, XOAUTH2, PLAIN, LOGIN"

/* ---- fixture ------------------------------------------------------------ */

static struct {
    char dir[1024];
    char keytab[PATH_MAX];
    char krb5_conf[PATH_MAX];
    char jwks[PATH_MAX];
    struct config *cfg;         /* ALL_MECHS, keytab, JWKS, no delay */
    struct config *cfg_delay;   /* the same with auth.failure_delay = 1s */
    Gsasl *cli;                 /* GNU SASL, client side */
    struct sasl_conn_info plain;    /* no TLS */
    struct sasl_conn_info tls;      /* TLS, no channel binding */
    struct sasl_conn_info tls_cb;   /* TLS with tls-exporter data */
    struct sasl_conn_info tls_cert; /* TLS with a client certificate (alice) */
    char salt_alice_256[64];        /* s= alice's SCRAM-SHA-256 credentials */
} g;

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

/* A configuration from overrides: data_dir and no failure delay first,
 * then extra (NULL-terminated). NULL when config_load refuses it; *errs_out
 * (if given) gets the first error line. */
static struct config *make_cfg_err(const char *const *extra, char *err_out,
                                   size_t errsz)
{
    char dd[PATH_MAX + 32];
    char *ov[32];
    size_t n = 0;
    snprintf(dd, sizeof dd, "server.data_dir=%s", g.dir);
    ov[n++] = dd;
    ov[n++] = (char *)"auth.failure_delay=0";
    ov[n++] = (char *)"server.hostname=" HOSTNAME;
    for (; extra && *extra && n < 32; extra++)
        ov[n++] = (char *)*extra;
    struct config_errors errs = {0};
    struct config *c = config_load(NULL, true, ov, n, &errs);
    if (err_out && errsz)
        snprintf(err_out, errsz, "%s", errs.n ? errs.lines[0] : "");
    config_errors_free(&errs);
    return c;
}

static struct config *make_cfg(const char *const *extra)
{
    char err[512];
    struct config *c = make_cfg_err(extra, err, sizeof err);
    if (!c)
        fprintf(stderr, "config_load: %s\n", err);
    return c;
}

static int write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(text, fp);
    return fclose(fp);
}

/* A keytab (MIT format 0x502) with a random aes256 key for pop/ and smtp/
 * HOSTNAME@EXAMPLE.ORG: GSSAPI gets an acceptor credential, so garbage
 * tokens reach gss_accept_sec_context (and MIT's leak on a missing keytab,
 * see test_gssapi_refusals, stays out of the leak check). */
static void put16(FILE *fp, unsigned v)
{
    fputc((int)(v >> 8 & 0xff), fp);
    fputc((int)(v & 0xff), fp);
}

static void put32(FILE *fp, uint32_t v)
{
    put16(fp, v >> 16);
    put16(fp, v & 0xffff);
}

static void put_counted(FILE *fp, const void *data, size_t len)
{
    put16(fp, (unsigned)len);
    fwrite(data, 1, len, fp);
}

static int write_keytab(const char *path)
{
    static const char *const services[] = {"pop", "smtp"};
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    fputc(5, fp);
    fputc(2, fp);
    for (size_t i = 0; i < 2; i++) {
        unsigned char key[32];
        const char *svc = services[i];
        if (RAND_bytes(key, sizeof key) != 1)
            return -1;
        size_t size = 2 + (2 + strlen("EXAMPLE.ORG")) + (2 + strlen(svc)) +
                      (2 + strlen(HOSTNAME)) + 4 + 4 + 1 + 2 + (2 + sizeof key) + 4;
        put32(fp, (uint32_t)size);
        put16(fp, 2);                               /* components */
        put_counted(fp, "EXAMPLE.ORG", strlen("EXAMPLE.ORG"));
        put_counted(fp, svc, strlen(svc));
        put_counted(fp, HOSTNAME, strlen(HOSTNAME));
        put32(fp, 3);                               /* KRB5_NT_SRV_HST */
        put32(fp, 0);                               /* timestamp */
        fputc(1, fp);                               /* kvno (8 bits) */
        put16(fp, 18);                              /* aes256-cts-hmac-sha1-96 */
        put_counted(fp, key, sizeof key);
        put32(fp, 1);                               /* kvno (32 bits) */
    }
    return fclose(fp);
}

static int group_setup(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char hash[PASSWORD_HASH_MAX];
    char a1[SCRAM_CREDS_MAX], a256[SCRAM_CREDS_MAX];
    char c1[SCRAM_CREDS_MAX], c256[SCRAM_CREDS_MAX];

    snprintf(g.dir, sizeof g.dir, "%s/pobox-sasl-XXXXXX", base);
    if (!mkdtemp(g.dir))
        return -1;
    snprintf(g.keytab, sizeof g.keytab, "%s/krb5.keytab", g.dir);
    snprintf(g.jwks, sizeof g.jwks, "%s/jwks.json", g.dir);
    if (write_file(g.jwks, JWKS) != 0 || write_keytab(g.keytab) != 0)
        return -1;
    /* Kerberos without DNS (no hostname canonicalisation, no realm lookup) */
    snprintf(g.krb5_conf, sizeof g.krb5_conf, "%s/krb5.conf", g.dir);
    if (write_file(g.krb5_conf, "[libdefaults]\n default_realm = EXAMPLE.ORG\n"
                   " dns_canonicalize_hostname = false\n rdns = false\n"
                   " dns_lookup_realm = false\n dns_lookup_kdc = false\n") != 0 ||
        setenv("KRB5_CONFIG", g.krb5_conf, 1) != 0)
        return -1;

    if (!password_hash(ALICE_PW, hash, sizeof hash) ||
        !scram_make(SCRAM_SHA1, ALICE_PW, 4096, a1, sizeof a1) ||
        !scram_make(SCRAM_SHA256, ALICE_PW, 4096, a256, sizeof a256) ||
        !scram_make(SCRAM_SHA1, CAROL_PW, 4096, c1, sizeof c1) ||
        !scram_make(SCRAM_SHA256, CAROL_PW, 4096, c256, sizeof c256))
        return -1;
    struct userdb_secrets alice = {.hash = hash, .apop_secret = ALICE_APOP,
                                   .scram_sha1 = a1, .scram_sha256 = a256};
    /* bob: the same argon2id string (it is only a valid hash to him) */
    struct userdb_secrets bob = {.hash = hash};
    struct userdb_secrets carol = {.hash = CAROL_HASH, .scram_sha1 = c1,
                                   .scram_sha256 = c256};
    if (userdb_put(g.dir, ALICE, &alice) != 0 || userdb_put(g.dir, BOB, &bob) != 0 ||
        userdb_put(g.dir, CAROL, &carol) != 0)
        return -1;
    /* "ITER,SALT,..." -> SALT */
    const char *s = strchr(a256, ',');
    snprintf(g.salt_alice_256, sizeof g.salt_alice_256, "%.*s",
             (int)(strchr(s + 1, ',') - s - 1), s + 1);

    char kt[PATH_MAX + 32], jw[PATH_MAX + 32];
    snprintf(kt, sizeof kt, "auth.keytab=%s", g.keytab);
    snprintf(jw, sizeof jw, "auth.oauth_jwks=%s", g.jwks);
    const char *common[] = {
        "auth.mechanisms=" ALL_MECHS, kt, jw,
        "auth.oauth_issuer=https://issuer.example",
        "auth.oauth_audience=pobox", "auth.plaintext_without_tls=no", NULL,
    };
    g.cfg = make_cfg(common);
    const char *delayed[] = {
        "auth.mechanisms=" ALL_MECHS, kt, jw,
        "auth.oauth_issuer=https://issuer.example",
        "auth.oauth_audience=pobox", "auth.plaintext_without_tls=no",
        "auth.failure_delay=1s", "auth.max_failure_delay=15s", NULL,
    };
    g.cfg_delay = make_cfg(delayed);
    if (!g.cfg || !g.cfg_delay)
        return -1;
    if (sasl_init(g.cfg) != 0)
        return -1;
    if (gsasl_init(&g.cli) != GSASL_OK)
        return -1;

    g.plain = (struct sasl_conn_info){.service = "pop", .ip = IP};
    g.tls = g.plain;
    g.tls.tls = true;
    g.tls_cb = g.tls;
    g.tls_cb.cb_type = "tls-exporter";
    for (size_t i = 0; i < 32; i++)
        g.tls_cb.cb_data[i] = (unsigned char)(0xa0 + i);
    g.tls_cb.cb_len = 32;
    g.tls_cert = g.tls;
    g.tls_cert.cert_identity = ALICE;
    return 0;
}

static int group_teardown(void **state)
{
    sasl_done();
    if (g.cli)
        gsasl_done(g.cli);
    config_unref(g.cfg);
    config_unref(g.cfg_delay);
    nftw(g.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    throttle_reset_all();
    return 0;
}

static int reset(void **state)
{
    throttle_reset_all();
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static char *b64(const void *data, size_t len)
{
    char *s = base64_encode(data, len);
    assert_non_null(s);
    return s;
}

/* Decodes a challenge the service produced (it must be valid base64). */
static char *unb64(const char *s, size_t *lenp)
{
    unsigned char *out = NULL;
    size_t len = 0;
    assert_non_null(s);
    assert_true(base64_decode(s, strlen(s), &out, &len));
    if (lenp)
        *lenp = len;
    return (char *)out;
}

static struct sasl_session *start(const struct config *cfg,
                                  const struct sasl_conn_info *ci,
                                  const char *mech, bool ir)
{
    enum sasl_start_rc rc = SASL_START_TEMPFAIL;
    struct sasl_session *ss = sasl_start(cfg, ci, mech, ir, &rc);
    if (rc != SASL_START_OK)
        fail_msg("sasl_start(%s) = %d", mech, rc);
    assert_non_null(ss);
    return ss;
}

static enum sasl_start_rc start_rc(const struct config *cfg,
                                   const struct sasl_conn_info *ci,
                                   const char *mech, bool ir)
{
    enum sasl_start_rc rc = SASL_START_OK;
    struct sasl_session *ss = sasl_start(cfg, ci, mech, ir, &rc);
    if (rc == SASL_START_OK)
        assert_non_null(ss);
    else
        assert_null(ss);
    sasl_free(ss);
    return rc;
}

/* One step with a base64 string (or NULL); checks the invariants every step
 * keeps and returns the challenge, decoded, in *chal (NULL unless
 * SASL_CONTINUE; caller frees). */
static enum sasl_step_rc step_b64(struct sasl_session *ss, const char *in,
                                  char **chal, struct auth_outcome *o)
{
    char *out = (char *)"poison";
    memset(o, 0x5a, sizeof *o);
    enum sasl_step_rc r = sasl_step(ss, in, &out, o);
    if (r == SASL_CONTINUE) {
        char *d = unb64(out, NULL);
        free(out);
        if (chal)
            *chal = d;
        else
            free(d);
    } else {
        assert_null(out);
        if (chal)
            *chal = NULL;
    }
    if (r == SASL_FAILURE || r == SASL_MALFORMED) {
        assert_int_equal(o->result, AUTH_FAIL);
        assert_string_equal(o->user, "");
        assert_non_null(o->reason);
    }
    if (r == SASL_SUCCESS) {
        assert_int_equal(o->result, AUTH_OK);
        assert_int_equal(o->delay_ms, 0);
    }
    return r;
}

/* One step with raw client data (base64-encoded here). */
static enum sasl_step_rc step_raw(struct sasl_session *ss, const void *data,
                                  size_t len, char **chal,
                                  struct auth_outcome *o)
{
    char *in = b64(data, len);
    enum sasl_step_rc r = step_b64(ss, in, chal, o);
    free(in);
    return r;
}

static enum sasl_step_rc step_str(struct sasl_session *ss, const char *s,
                                  char **chal, struct auth_outcome *o)
{
    return step_raw(ss, s, strlen(s), chal, o);
}

static void mechlist(const struct config *cfg, const struct sasl_conn_info *ci,
                     char *out, size_t outsz)
{
    memset(out, 'X', outsz);
    sasl_mechlist(cfg, ci, out, outsz);
    assert_true(strlen(out) < outsz);
}

static void expect_mechlist(const struct config *cfg,
                            const struct sasl_conn_info *ci, const char *want)
{
    char buf[1024];
    mechlist(cfg, ci, buf, sizeof buf);
    assert_string_equal(buf, want);
}

/* A PLAIN message authzid NUL authcid NUL passwd. */
static size_t plain_msg(char *buf, size_t bufsz, const char *authzid,
                        const char *authcid, const char *pw)
{
    size_t a = strlen(authzid), b = strlen(authcid), c = strlen(pw);
    assert_true(a + b + c + 2 <= bufsz);
    memcpy(buf, authzid, a);
    buf[a] = '\0';
    memcpy(buf + a + 1, authcid, b);
    buf[a + 1 + b] = '\0';
    memcpy(buf + a + b + 2, pw, c);
    return a + b + c + 2;
}

/* A whole PLAIN exchange with an initial response. */
static enum sasl_step_rc plain_login(const struct config *cfg,
                                     const char *authzid, const char *authcid,
                                     const char *pw, struct auth_outcome *o)
{
    char msg[512];
    size_t n = plain_msg(msg, sizeof msg, authzid, authcid, pw);
    struct sasl_session *ss = start(cfg, &g.tls, "PLAIN", true);
    enum sasl_step_rc r = step_raw(ss, msg, n, NULL, o);
    sasl_free(ss);
    return r;
}

/* ---- GNU SASL as the client ------------------------------------------- */

struct peer {
    const char *authid, *password, *authzid;
    const char *cb_exporter;    /* base64 tls-exporter data, or NULL */
};

static Gsasl_session *gs_client(const char *mech, const struct peer *p)
{
    Gsasl_session *c = NULL;
    assert_int_equal(gsasl_client_start(g.cli, mech, &c), GSASL_OK);
    if (p->authid)
        assert_int_equal(gsasl_property_set(c, GSASL_AUTHID, p->authid), GSASL_OK);
    if (p->password)
        assert_int_equal(gsasl_property_set(c, GSASL_PASSWORD, p->password), GSASL_OK);
    if (p->authzid)
        assert_int_equal(gsasl_property_set(c, GSASL_AUTHZID, p->authzid), GSASL_OK);
    if (p->cb_exporter)
        assert_int_equal(gsasl_property_set(c, GSASL_CB_TLS_EXPORTER, p->cb_exporter),
                         GSASL_OK);
    return c;
}

/* The client's next message (base64) for the challenge (base64; "" first).
 * Returns the gsasl code; *out is malloc'd ("" when empty). */
static int gs_next(Gsasl_session *c, const char *chal_b64, char **out)
{
    char *o = NULL;
    int rc = gsasl_step64(c, chal_b64, &o);
    *out = strdup(o ? o : "");
    gsasl_free(o);
    assert_non_null(*out);
    return rc;
}

struct exchange {
    enum sasl_step_rc last;     /* the service's last answer */
    int client_rc;              /* GNU SASL's last code */
    unsigned server_steps;
    char server_final[256];     /* the v= message, decoded ("" if none) */
};

/* Runs a whole exchange between a GNU SASL client and the service (the
 * client speaks first, with an initial response). */
static void run_gs(const struct config *cfg, const struct sasl_conn_info *ci,
                   const char *mech, const struct peer *p, struct exchange *x,
                   struct auth_outcome *o)
{
    Gsasl_session *c = gs_client(mech, p);
    struct sasl_session *ss = start(cfg, ci, mech, true);
    char *chal_b64 = strdup("");
    memset(x, 0, sizeof *x);
    for (int i = 0; i < 8; i++) {
        char *resp = NULL;
        x->client_rc = gs_next(c, chal_b64, &resp);
        free(chal_b64);
        chal_b64 = NULL;
        if (x->client_rc != GSASL_OK && x->client_rc != GSASL_NEEDS_MORE) {
            free(resp);
            break;
        }
        char *out = NULL;
        memset(o, 0, sizeof *o);
        x->last = sasl_step(ss, resp, &out, o);
        x->server_steps++;
        free(resp);
        if (x->last != SASL_CONTINUE) {
            assert_null(out);
            break;
        }
        size_t len;
        char *d = unb64(out, &len);
        if (strncmp(d, "v=", 2) == 0)
            snprintf(x->server_final, sizeof x->server_final, "%s", d);
        free(d);
        chal_b64 = out;
    }
    free(chal_b64);
    sasl_free(ss);
    gsasl_finish(c);
}

/* ---- a hand-made SCRAM client (OpenSSL) ------------------------------- */

struct mscram {
    const EVP_MD *md;
    size_t hlen;
    char gs2[128];
    char bare[512];
    unsigned char cb[SASL_CB_MAX];
    size_t cblen;
    unsigned char server_sig[EVP_MAX_MD_SIZE];
    /* from the server-first message */
    char nonce[256], salt[128];
    unsigned iter;
};

/* Client-first message (raw) for gs2 header gs2 ("n,,", "y,,",
 * "p=tls-exporter,,", ...) and user; cb: the data "p=" binds to. */
static size_t ms_first(struct mscram *m, const char *mech, const char *gs2,
                       const char *user, const unsigned char *cb, size_t cblen,
                       char *out, size_t outsz)
{
    unsigned char rnd[18];
    memset(m, 0, sizeof *m);
    m->md = strstr(mech, "SHA-256") ? EVP_sha256() : EVP_sha1();
    m->hlen = (size_t)EVP_MD_get_size(m->md);
    assert_int_equal(RAND_bytes(rnd, sizeof rnd), 1);
    char *nonce = b64(rnd, sizeof rnd);
    snprintf(m->gs2, sizeof m->gs2, "%s", gs2);
    snprintf(m->bare, sizeof m->bare, "n=%s,r=%s", user, nonce);
    free(nonce);
    if (cb) {
        memcpy(m->cb, cb, cblen);
        m->cblen = cblen;
    }
    int n = snprintf(out, outsz, "%s%s", m->gs2, m->bare);
    assert_true(n > 0 && (size_t)n < outsz);
    return (size_t)n;
}

/* Parses r=, s=, i= of a server-first message; false when one is missing. */
static bool ms_parse_first(struct mscram *m, const char *sf)
{
    const char *r = strstr(sf, "r="), *s = strstr(sf, ",s="), *i = strstr(sf, ",i=");
    if (r != sf || !s || !i)
        return false;
    snprintf(m->nonce, sizeof m->nonce, "%.*s", (int)(s - r - 2), r + 2);
    snprintf(m->salt, sizeof m->salt, "%.*s", (int)(i - s - 3), s + 3);
    m->iter = (unsigned)strtoul(i + 3, NULL, 10);
    return m->iter > 0;
}

/* Client-final message (raw) for server-first sf and password pw. */
static size_t ms_final(struct mscram *m, const char *sf, const char *pw,
                       char *out, size_t outsz)
{
    unsigned char salt_raw[128], sp[EVP_MAX_MD_SIZE], ck[EVP_MAX_MD_SIZE];
    unsigned char sk[EVP_MAX_MD_SIZE], svk[EVP_MAX_MD_SIZE];
    unsigned char csig[EVP_MAX_MD_SIZE], proof[EVP_MAX_MD_SIZE];
    unsigned int len;
    unsigned char *salt = NULL;
    size_t saltlen = 0;

    assert_true(ms_parse_first(m, sf));
    assert_true(base64_decode(m->salt, strlen(m->salt), &salt, &saltlen));
    assert_true(saltlen <= sizeof salt_raw);
    memcpy(salt_raw, salt, saltlen);
    free(salt);
    assert_int_equal(PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt_raw, (int)saltlen,
                                       (int)m->iter, m->md, (int)m->hlen, sp), 1);
    assert_non_null(HMAC(m->md, sp, (int)m->hlen, (const unsigned char *)"Client Key",
                         10, ck, &len));
    assert_int_equal(EVP_Digest(ck, m->hlen, sk, &len, m->md, NULL), 1);
    assert_non_null(HMAC(m->md, sp, (int)m->hlen, (const unsigned char *)"Server Key",
                         10, svk, &len));

    unsigned char cbind[256];
    size_t gl = strlen(m->gs2);
    memcpy(cbind, m->gs2, gl);
    if (m->gs2[0] == 'p') {
        memcpy(cbind + gl, m->cb, m->cblen);
        gl += m->cblen;
    }
    char *c = b64(cbind, gl);
    char without_proof[1024], auth_msg[2048];
    snprintf(without_proof, sizeof without_proof, "c=%s,r=%s", c, m->nonce);
    free(c);
    snprintf(auth_msg, sizeof auth_msg, "%s,%s,%s", m->bare, sf, without_proof);
    assert_non_null(HMAC(m->md, sk, (int)m->hlen, (unsigned char *)auth_msg,
                         strlen(auth_msg), csig, &len));
    for (size_t i = 0; i < m->hlen; i++)
        proof[i] = ck[i] ^ csig[i];
    assert_non_null(HMAC(m->md, svk, (int)m->hlen, (unsigned char *)auth_msg,
                         strlen(auth_msg), m->server_sig, &len));
    char *p = b64(proof, m->hlen);
    int n = snprintf(out, outsz, "%s,p=%s", without_proof, p);
    free(p);
    assert_true(n > 0 && (size_t)n < outsz);
    return (size_t)n;
}

/* True when v= in the server-final message is the expected signature. */
static bool ms_verify(const struct mscram *m, const char *final)
{
    char *want = b64(m->server_sig, m->hlen);
    bool ok = strncmp(final, "v=", 2) == 0 && strcmp(final + 2, want) == 0;
    free(want);
    return ok;
}

/* A whole exchange with the hand-made client; returns the service's last
 * answer (SASL_SUCCESS only after the v= was verified and acknowledged). */
static enum sasl_step_rc run_ms(const struct sasl_conn_info *ci, const char *mech,
                                const char *gs2, const unsigned char *cb,
                                size_t cblen, const char *user, const char *pw,
                                struct auth_outcome *o)
{
    struct mscram m;
    char msg[1024], *chal = NULL;
    size_t n = ms_first(&m, mech, gs2, user, cb, cblen, msg, sizeof msg);
    struct sasl_session *ss = start(g.cfg, ci, mech, true);
    enum sasl_step_rc r = step_raw(ss, msg, n, &chal, o);
    if (r == SASL_CONTINUE) {
        n = ms_final(&m, chal, pw, msg, sizeof msg);
        free(chal);
        r = step_raw(ss, msg, n, &chal, o);
        if (r == SASL_CONTINUE) {
            assert_true(ms_verify(&m, chal));
            free(chal);
            r = step_b64(ss, "", NULL, o);
        }
    }
    sasl_free(ss);
    return r;
}

/* The s= of the service's server-first message for user. */
static void scram_first_salt(const struct sasl_conn_info *ci, const char *mech,
                             const char *user, char *salt, size_t saltsz,
                             unsigned *iter)
{
    struct mscram m;
    struct auth_outcome o;
    char msg[1024], *chal = NULL;
    const char *gs2 = strstr(mech, "-PLUS") ? "p=tls-exporter,," : "n,,";
    size_t n = ms_first(&m, mech, gs2, user, ci->cb_data, ci->cb_len, msg, sizeof msg);
    struct sasl_session *ss = start(g.cfg, ci, mech, true);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    assert_true(ms_parse_first(&m, chal));
    /* the server nonce extends the client's */
    const char *cn = strstr(m.bare, ",r=") + 3;
    assert_int_equal(strncmp(m.nonce, cn, strlen(cn)), 0);
    assert_true(strlen(m.nonce) > strlen(cn));
    snprintf(salt, saltsz, "%s", m.salt);
    if (iter)
        *iter = m.iter;
    free(chal);
    sasl_free(ss);
}

/* ==== 1. which mechanisms a connection is offered ======================= */

static void test_mechlist_tls_rule(void **state)
{
    /* no TLS, plaintext_without_tls = no: no PLAIN, LOGIN, OAUTHBEARER,
     * XOAUTH2; no -PLUS (no channel binding), no EXTERNAL (no certificate) */
    expect_mechlist(g.cfg, &g.plain, "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 GSSAPI");
    /* TLS: the plaintext ones too */
    expect_mechlist(g.cfg, &g.tls,
                    "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 GSSAPI OAUTHBEARER "
                    "XOAUTH2 PLAIN LOGIN");
    /* plaintext_without_tls = yes: the same without TLS */
    const char *yes[] = {"auth.mechanisms=" ALL_MECHS,
                         "auth.plaintext_without_tls=yes", NULL};
    struct config *c = make_cfg(yes);
    assert_non_null(c);
    expect_mechlist(c, &g.plain, "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN");
    config_unref(c);
}

static void test_mechlist_channel_binding(void **state)
{
    expect_mechlist(g.cfg, &g.tls_cb,
                    "SCRAM-SHA-256-PLUS SCRAM-SHA-256 SCRAM-SHA-1-PLUS SCRAM-SHA-1 "
                    "CRAM-MD5 GSSAPI OAUTHBEARER XOAUTH2 PLAIN LOGIN");
    struct sasl_conn_info ci = g.tls_cb;
    ci.cb_type = "tls-unique";
    ci.cb_len = 12;
    char buf[1024];
    mechlist(g.cfg, &ci, buf, sizeof buf);
    assert_non_null(strstr(buf, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 SCRAM-SHA-1-PLUS"));
}

static void test_mechlist_external(void **state)
{
    expect_mechlist(g.cfg, &g.tls_cert,
                    "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 GSSAPI EXTERNAL "
                    "OAUTHBEARER XOAUTH2 PLAIN LOGIN");
    struct sasl_conn_info ci = g.tls;
    ci.cert_identity = "";
    char buf[1024];
    mechlist(g.cfg, &ci, buf, sizeof buf);
    assert_null(strstr(buf, "EXTERNAL"));
    /* EXTERNAL does not need TLS itself (the certificate implies it) */
    ci = g.plain;
    ci.cert_identity = ALICE;
    mechlist(g.cfg, &ci, buf, sizeof buf);
    assert_non_null(strstr(buf, "EXTERNAL"));
}

static void test_mechlist_gssapi_needs_keytab_seen_at_init(void **state)
{
    char buf[1024];
    /* no keytab */
    const char *none[] = {"auth.mechanisms=" ALL_MECHS, NULL};
    struct config *c = make_cfg(none);
    assert_non_null(c);
    mechlist(c, &g.tls, buf, sizeof buf);
    assert_null(strstr(buf, "GSSAPI"));
    assert_int_equal(start_rc(c, &g.tls, "GSSAPI", false), SASL_START_UNSUPPORTED);
    config_unref(c);

    /* a keytab sasl_init did not see (a reload changed it): not offered */
    char kt[PATH_MAX + 32];
    snprintf(kt, sizeof kt, "auth.keytab=%s/other.keytab", g.dir);
    const char *other[] = {"auth.mechanisms=" ALL_MECHS, kt, NULL};
    c = make_cfg(other);
    assert_non_null(c);
    mechlist(c, &g.tls, buf, sizeof buf);
    assert_null(strstr(buf, "GSSAPI"));
    assert_int_equal(start_rc(c, &g.tls, "GSSAPI", false), SASL_START_UNSUPPORTED);
    config_unref(c);

    /* the keytab sasl_init saw: offered, and GNU SASL starts it */
    mechlist(g.cfg, &g.plain, buf, sizeof buf);
    assert_non_null(strstr(buf, "GSSAPI"));
    assert_string_equal(getenv("KRB5_KTNAME"), g.keytab);
    assert_int_equal(start_rc(g.cfg, &g.plain, "GSSAPI", false), SASL_START_OK);
}

static void test_mechlist_oauth_needs_jwks(void **state)
{
    char buf[1024];
    const char *none[] = {"auth.mechanisms=" ALL_MECHS, NULL};
    struct config *c = make_cfg(none);
    assert_non_null(c);
    mechlist(c, &g.tls, buf, sizeof buf);
    assert_null(strstr(buf, "OAUTHBEARER"));
    assert_null(strstr(buf, "XOAUTH2"));
    assert_int_equal(start_rc(c, &g.tls, "OAUTHBEARER", true), SASL_START_UNSUPPORTED);
    assert_int_equal(start_rc(c, &g.tls, "XOAUTH2", true), SASL_START_UNSUPPORTED);
    config_unref(c);

    /* a JWKS needs an issuer and an audience */
    char jw[PATH_MAX + 32], err[512];
    snprintf(jw, sizeof jw, "auth.oauth_jwks=%s", g.jwks);
    const char *half[] = {jw, "auth.oauth_issuer=https://issuer.example", NULL};
    assert_null(make_cfg_err(half, err, sizeof err));
    assert_non_null(strstr(err, "oauth"));

    mechlist(g.cfg, &g.tls, buf, sizeof buf);
    assert_non_null(strstr(buf, "OAUTHBEARER XOAUTH2"));
}

static void test_mechlist_cram_md5_only_when_listed(void **state)
{
    /* the default auth.mechanisms has no CRAM-MD5 */
    struct config *c = make_cfg(NULL);
    assert_non_null(c);
    char buf[1024];
    mechlist(c, &g.tls_cb, buf, sizeof buf);
    assert_null(strstr(buf, "CRAM-MD5"));
    assert_string_equal(buf, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 SCRAM-SHA-1-PLUS "
                             "SCRAM-SHA-1 PLAIN LOGIN");
    assert_int_equal(start_rc(c, &g.tls, "CRAM-MD5", false), SASL_START_UNSUPPORTED);
    config_unref(c);
    mechlist(g.cfg, &g.plain, buf, sizeof buf);
    assert_non_null(strstr(buf, "CRAM-MD5"));
}

static void test_mechlist_order_follows_config(void **state)
{
    const char *o1[] = {"auth.mechanisms=LOGIN, CRAM-MD5, PLAIN, SCRAM-SHA-1", NULL};
    struct config *c = make_cfg(o1);
    assert_non_null(c);
    expect_mechlist(c, &g.tls, "LOGIN CRAM-MD5 PLAIN SCRAM-SHA-1");
    expect_mechlist(c, &g.plain, "CRAM-MD5 SCRAM-SHA-1");
    /* mechanisms not listed are not started either */
    assert_int_equal(start_rc(c, &g.tls_cb, "SCRAM-SHA-256", true),
                     SASL_START_UNSUPPORTED);
    config_unref(c);

    /* lowercase in the file, uppercase in the list */
    const char *o2[] = {"auth.mechanisms=plain, scram-sha-256-plus, external", NULL};
    c = make_cfg(o2);
    assert_non_null(c);
    expect_mechlist(c, &g.tls, "PLAIN");
    struct sasl_conn_info ci = g.tls_cb;
    ci.cert_identity = ALICE;
    expect_mechlist(c, &ci, "PLAIN SCRAM-SHA-256-PLUS EXTERNAL");
    config_unref(c);

    const char *empty[] = {"auth.mechanisms=", NULL};
    c = make_cfg(empty);
    if (c) {    /* an empty list may be refused; if not, nothing is offered */
        expect_mechlist(c, &g.tls_cb, "");
        assert_int_equal(start_rc(c, &g.tls, "PLAIN", true), SASL_START_UNSUPPORTED);
        config_unref(c);
    }
}

static void test_mechlist_unknown_mechanisms_refused_by_config(void **state)
{
    char err[512];
    static const char *bad[] = {
        "auth.mechanisms=FOO",
        "auth.mechanisms=PLAIN, FOO",
        "auth.mechanisms=DIGEST-MD5",   /* GNU SASL has it; pobox does not */
        "auth.mechanisms=ANONYMOUS",
        "auth.mechanisms=NTLM",
        "auth.mechanisms=GS2-KRB5",
        "auth.mechanisms=PLAIN-PLUS",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *ov[] = {bad[i], NULL};
        struct config *c = make_cfg_err(ov, err, sizeof err);
        if (c) {
            config_unref(c);
            fail_msg("config_load accepted %s", bad[i]);
        }
        assert_non_null(strstr(err, "auth.mechanisms"));
        assert_non_null(strstr(err, "unknown mechanism"));
    }
    /* and the service does not start what GNU SASL alone has */
    assert_int_equal(start_rc(g.cfg, &g.tls, "DIGEST-MD5", false),
                     SASL_START_UNSUPPORTED);
    assert_int_equal(start_rc(g.cfg, &g.tls, "ANONYMOUS", true),
                     SASL_START_UNSUPPORTED);
}

static void test_mechlist_small_buffer(void **state)
{
    char buf[20];
    /* "SCRAM-SHA-256 SCRAM-SHA-1" does not fit in 20: whole names only */
    mechlist(g.cfg, &g.plain, buf, sizeof buf);
    assert_string_equal(buf, "SCRAM-SHA-256");
    mechlist(g.cfg, &g.plain, buf, 13);
    assert_string_equal(buf, "");
    mechlist(g.cfg, &g.plain, buf, 1);
    assert_string_equal(buf, "");
}

/* ==== 2. sasl_start ===================================================== */

static void test_start_return_codes(void **state)
{
    assert_int_equal(start_rc(g.cfg, &g.tls, "FOO", false), SASL_START_UNSUPPORTED);
    assert_int_equal(start_rc(g.cfg, &g.tls, "", false), SASL_START_UNSUPPORTED);
    assert_int_equal(start_rc(g.cfg, &g.tls, "PLAIN ", true), SASL_START_UNSUPPORTED);
    assert_int_equal(start_rc(g.cfg, &g.tls, "PLAIN-PLUS", true), SASL_START_UNSUPPORTED);

    /* plaintext mechanisms before TLS */
    assert_int_equal(start_rc(g.cfg, &g.plain, "PLAIN", true), SASL_START_NEEDS_TLS);
    assert_int_equal(start_rc(g.cfg, &g.plain, "PLAIN", false), SASL_START_NEEDS_TLS);
    assert_int_equal(start_rc(g.cfg, &g.plain, "LOGIN", false), SASL_START_NEEDS_TLS);
    assert_int_equal(start_rc(g.cfg, &g.plain, "OAUTHBEARER", true), SASL_START_NEEDS_TLS);
    assert_int_equal(start_rc(g.cfg, &g.plain, "XOAUTH2", true), SASL_START_NEEDS_TLS);
    /* ... but not the others */
    assert_int_equal(start_rc(g.cfg, &g.plain, "SCRAM-SHA-1", true), SASL_START_OK);
    assert_int_equal(start_rc(g.cfg, &g.plain, "CRAM-MD5", false), SASL_START_OK);

    /* unusable here */
    assert_int_equal(start_rc(g.cfg, &g.tls, "SCRAM-SHA-256-PLUS", true),
                     SASL_START_UNSUPPORTED);
    assert_int_equal(start_rc(g.cfg, &g.tls, "EXTERNAL", true), SASL_START_UNSUPPORTED);

    /* CRAM-MD5 is server-first */
    assert_int_equal(start_rc(g.cfg, &g.tls, "CRAM-MD5", true), SASL_START_NO_INITIAL);
    assert_int_equal(start_rc(g.cfg, &g.tls, "CRAM-MD5", false), SASL_START_OK);
}

static void test_start_case_insensitive(void **state)
{
    static const char *names[] = {
        "plain", "Plain", "login", "LoGiN", "cram-md5", "scram-sha-1",
        "Scram-Sha-256", "scram-sha-256-plus", "Scram-Sha-1-Plus", "external",
        "gssapi", "oauthbearer", "xoauth2",
    };
    static const char *upper[] = {
        "PLAIN", "PLAIN", "LOGIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1",
        "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "EXTERNAL",
        "GSSAPI", "OAUTHBEARER", "XOAUTH2",
    };
    struct sasl_conn_info ci = g.tls_cb;
    ci.cert_identity = ALICE;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct sasl_session *ss = start(g.cfg, &ci, names[i], false);
        assert_string_equal(sasl_mech(ss), upper[i]);
        assert_string_equal(sasl_authid(ss), "");
        sasl_free(ss);
    }
    sasl_free(NULL);
}

/* ==== 3. PLAIN ========================================================== */

static void test_plain_good_initial_response(void **state)
{
    struct auth_outcome o;
    char msg[256];
    size_t n = plain_msg(msg, sizeof msg, "", "Alice@Example.COM", ALICE_PW);
    struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", true);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, ALICE);     /* canonical */
    assert_string_equal(sasl_authid(ss), "Alice@Example.COM");
    sasl_free(ss);
}

static void test_plain_no_initial_response(void **state)
{
    struct auth_outcome o;
    char *chal = NULL, msg[256];
    struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "");         /* the empty challenge */
    free(chal);
    size_t n = plain_msg(msg, sizeof msg, "", CAROL, CAROL_PW);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, CAROL);
    sasl_free(ss);
}

static void test_plain_wrong_password(void **state)
{
    struct auth_outcome o;
    char msg[256];
    size_t n = plain_msg(msg, sizeof msg, "", CAROL, "Secret");
    struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", true);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "wrong password");
    /* the log may name the account, never the password */
    assert_string_equal(sasl_authid(ss), CAROL);
    sasl_free(ss);
}

static void test_plain_unknown_user(void **state)
{
    struct auth_outcome o;
    assert_int_equal(plain_login(g.cfg, "", NOBODY, CAROL_PW, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "unknown user");
}

static void test_plain_authzid(void **state)
{
    struct auth_outcome o;
    /* authzid = the same user, any case */
    assert_int_equal(plain_login(g.cfg, CAROL, CAROL, CAROL_PW, &o), SASL_SUCCESS);
    assert_string_equal(o.user, CAROL);
    assert_int_equal(plain_login(g.cfg, "CAROL@example.com", CAROL, CAROL_PW, &o),
                     SASL_SUCCESS);
    assert_string_equal(o.user, CAROL);
    /* another user: refused even with the right password */
    assert_int_equal(plain_login(g.cfg, ALICE, CAROL, CAROL_PW, &o), SASL_FAILURE);
    assert_string_equal(o.user, "");
    assert_string_equal(o.reason, "authzid is another user");
    /* an authzid that is no address at all */
    assert_int_equal(plain_login(g.cfg, "admin", CAROL, CAROL_PW, &o), SASL_FAILURE);
}

static void test_plain_malformed_base64(void **state)
{
    static const char *bad[] = {
        "AGNhcm9sQGV4YW1wbGUuY29tAHNlY3JldA",       /* padding missing */
        "AGNhcm9sQGV4YW1wbGUuY29tAHNlY3JldA= ",
        "AGNhcm9sQGV4YW1wbGUuY29tAHNlY3JldA=\r\n",
        "!!!!", "Zg=", "====", "Zg==Zg==", "-_-_", "*",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct auth_outcome o;
        struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", true);
        assert_int_equal(step_b64(ss, bad[i], NULL, &o), SASL_MALFORMED);
        assert_string_equal(o.reason, "malformed base64");
        /* and the exchange is over */
        assert_int_equal(step_b64(ss, "", NULL, &o), SASL_FAILURE);
        sasl_free(ss);
    }
    /* the same message correctly padded is fine */
    struct auth_outcome o;
    struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", true);
    assert_int_equal(step_b64(ss, "AGNhcm9sQGV4YW1wbGUuY29tAHNlY3JldA==", NULL, &o),
                     SASL_SUCCESS);
    sasl_free(ss);
}

static void test_plain_nul_layout(void **state)
{
    static const struct {
        const char *msg;
        size_t len;
    } bad[] = {
#define M(s) {s, sizeof(s) - 1}
        M("carol@example.com\0secret"),                 /* one NUL */
        M("\0carol@example.com\0secret\0"),             /* four fields */
        M("\0carol@example.com\0secret\0x"),
        M("carol@example.com\0carol@example.com\0secret\0"),
        M("\0carol@example.com\0sec\0ret"),             /* NUL in password */
        M("carol@example.com"),                          /* no NUL */
        M("\0"), M("\0\0"),                              /* nothing */
        M("\0\0secret"),                                 /* empty authcid */
#undef M
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct auth_outcome o;
        struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", true);
        enum sasl_step_rc r = step_raw(ss, bad[i].msg, bad[i].len, NULL, &o);
        if (r != SASL_FAILURE)
            fail_msg("PLAIN layout case %zu: %d, want SASL_FAILURE", i, r);
        sasl_free(ss);
    }
}

/* RFC 4954 "=": an empty initial response, which is not the same as no
 * initial response. An empty PLAIN message is malformed (it needs at least
 * two NULs), and so is an empty SCRAM client-first message: the exchange
 * must fail, not answer with another empty challenge as if there had been
 * no initial response. */
static void test_empty_initial_response_fails(void **state)
{
    static const char *mechs[] = {
        "PLAIN", "LOGIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
        "OAUTHBEARER", "XOAUTH2",
    };
    char bad[256] = "";
    for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++) {
        struct auth_outcome o;
        char *chal = NULL;
        struct sasl_session *ss = start(g.cfg, &g.tls_cb, mechs[i], true);
        enum sasl_step_rc r = step_b64(ss, "=", &chal, &o);
        if (r != SASL_FAILURE)
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s->%s%s%s",
                     mechs[i], r == SASL_CONTINUE ? "CONTINUE(\"" : "rc",
                     r == SASL_CONTINUE ? chal : "", r == SASL_CONTINUE ? "\")" : "");
        free(chal);
        sasl_free(ss);
    }
    if (*bad)
        fail_msg("initial response \"=\" did not fail:%s", bad);
}

/* ==== 4. LOGIN ========================================================== */

static void test_login_no_initial_response(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    struct sasl_session *ss = start(g.cfg, &g.tls, "LOGIN", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "User Name");
    free(chal);
    assert_int_equal(step_str(ss, ALICE, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "Password");
    free(chal);
    assert_int_equal(step_str(ss, ALICE_PW, NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, ALICE);
    assert_string_equal(sasl_authid(ss), ALICE);
    sasl_free(ss);
}

static void test_login_initial_response_is_user_name(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    struct sasl_session *ss = start(g.cfg, &g.tls, "LOGIN", true);
    assert_int_equal(step_str(ss, CAROL, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "Password");     /* not "User Name" again */
    free(chal);
    assert_int_equal(step_str(ss, CAROL_PW, NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, CAROL);
    sasl_free(ss);
}

static void test_login_wrong_password(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    struct sasl_session *ss = start(g.cfg, &g.tls, "LOGIN", true);
    assert_int_equal(step_str(ss, CAROL, &chal, &o), SASL_CONTINUE);
    free(chal);
    assert_int_equal(step_str(ss, "wrong", NULL, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "wrong password");
    sasl_free(ss);

    /* an empty user name or password ends the exchange */
    ss = start(g.cfg, &g.tls, "LOGIN", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    free(chal);
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_FAILURE);
    sasl_free(ss);
}

/* ==== 5. CRAM-MD5 ======================================================= */

static char *cram_response(const char *user, const char *secret, const char *chal)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    assert_non_null(HMAC(EVP_md5(), secret, (int)strlen(secret),
                         (const unsigned char *)chal, strlen(chal), md, &len));
    assert_int_equal(len, 16);
    char *out = malloc(strlen(user) + 34);
    assert_non_null(out);
    int n = sprintf(out, "%s ", user);
    for (unsigned i = 0; i < len; i++)
        n += sprintf(out + n, "%02x", md[i]);
    return out;
}

/* Starts CRAM-MD5 and returns its challenge (checked for RFC 2195's form). */
static struct sasl_session *cram_start(char **chal)
{
    struct auth_outcome o;
    struct sasl_session *ss = start(g.cfg, &g.plain, "CRAM-MD5", false);
    assert_int_equal(step_b64(ss, NULL, chal, &o), SASL_CONTINUE);
    size_t n = strlen(*chal);
    assert_true(n > 2);
    assert_int_equal((*chal)[0], '<');
    assert_int_equal((*chal)[n - 1], '>');
    return ss;
}

static void test_cram_md5_good(void **state)
{
    struct auth_outcome o;
    char *chal = NULL, *chal2 = NULL;
    struct sasl_session *ss = cram_start(&chal);
    /* a fresh challenge each time */
    struct sasl_session *ss2 = cram_start(&chal2);
    assert_string_not_equal(chal, chal2);
    free(chal2);
    sasl_free(ss2);

    char *resp = cram_response(ALICE, ALICE_APOP, chal);
    assert_int_equal(step_str(ss, resp, NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, ALICE);
    free(resp);
    free(chal);
    sasl_free(ss);
}

static void test_cram_md5_wrong_digest(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    struct sasl_session *ss = cram_start(&chal);
    char *resp = cram_response(ALICE, "tanstaaF", chal);
    assert_int_equal(step_str(ss, resp, NULL, &o), SASL_FAILURE);
    free(resp);
    free(chal);
    sasl_free(ss);

    /* the right digest for another challenge (a replay) */
    ss = cram_start(&chal);
    resp = cram_response(ALICE, ALICE_APOP, "<1896.697170952@postoffice.example.net>");
    assert_int_equal(step_str(ss, resp, NULL, &o), SASL_FAILURE);
    free(resp);
    free(chal);
    sasl_free(ss);

    /* not a digest at all */
    ss = cram_start(&chal);
    assert_int_equal(step_str(ss, ALICE, NULL, &o), SASL_FAILURE);
    free(chal);
    sasl_free(ss);
}

static void test_cram_md5_no_secret_or_unknown(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    /* bob has no APOP secret: his (argon2id) password does not help */
    struct sasl_session *ss = cram_start(&chal);
    char *resp = cram_response(BOB, ALICE_PW, chal);
    assert_int_equal(step_str(ss, resp, NULL, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "no apop secret");
    free(resp);
    free(chal);
    sasl_free(ss);

    ss = cram_start(&chal);
    resp = cram_response(NOBODY, ALICE_APOP, chal);
    assert_int_equal(step_str(ss, resp, NULL, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "unknown user");
    free(resp);
    free(chal);
    sasl_free(ss);
}

/* ==== 6. SCRAM-SHA-1 and SCRAM-SHA-256 ================================== */

static void check_scram_good(const char *mech)
{
    struct peer p = {.authid = ALICE, .password = ALICE_PW};
    struct exchange x;
    struct auth_outcome o;
    run_gs(g.cfg, &g.tls, mech, &p, &x, &o);
    assert_int_equal(x.last, SASL_SUCCESS);
    assert_int_equal(x.client_rc, GSASL_OK);    /* the client accepted v= */
    assert_int_equal(x.server_steps, 3);        /* first, final, "" after v= */
    assert_true(strncmp(x.server_final, "v=", 2) == 0);
    assert_string_equal(o.user, ALICE);

    /* and with the hand-made client: without channel binding support ("n")
     * and with it but none offered here ("y") */
    assert_int_equal(run_ms(&g.tls, mech, "n,,", NULL, 0, CAROL, CAROL_PW, &o),
                     SASL_SUCCESS);
    assert_string_equal(o.user, CAROL);
    assert_int_equal(run_ms(&g.tls, mech, "y,,", NULL, 0, CAROL, CAROL_PW, &o),
                     SASL_SUCCESS);
    /* authzid = self */
    assert_int_equal(run_ms(&g.tls, mech, "n,a=carol@example.com,", NULL, 0, CAROL,
                            CAROL_PW, &o), SASL_SUCCESS);
}

static void test_scram_sha1_good(void **state)
{
    check_scram_good("SCRAM-SHA-1");
}

static void test_scram_sha256_good(void **state)
{
    check_scram_good("SCRAM-SHA-256");
}

/* After the v= challenge only an empty response completes the login. */
static void check_scram_data_after_success(const char *mech)
{
    struct mscram m;
    struct auth_outcome o;
    char msg[1024], *chal = NULL;
    size_t n = ms_first(&m, mech, "n,,", CAROL, NULL, 0, msg, sizeof msg);
    struct sasl_session *ss = start(g.cfg, &g.tls, mech, true);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    n = ms_final(&m, chal, CAROL_PW, msg, sizeof msg);
    free(chal);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    assert_true(ms_verify(&m, chal));
    free(chal);
    assert_int_equal(step_str(ss, "v=again", NULL, &o), SASL_FAILURE);
    assert_string_equal(o.user, "");
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_FAILURE);   /* over */
    sasl_free(ss);
}

static void test_scram_data_after_success(void **state)
{
    check_scram_data_after_success("SCRAM-SHA-1");
    check_scram_data_after_success("SCRAM-SHA-256");
}

static void test_scram_wrong_password(void **state)
{
    struct peer p = {.authid = ALICE, .password = "correct horse battery!"};
    struct exchange x;
    struct auth_outcome o;
    run_gs(g.cfg, &g.tls, "SCRAM-SHA-256", &p, &x, &o);
    assert_int_equal(x.last, SASL_FAILURE);
    assert_int_equal(x.server_steps, 2);
    assert_string_equal(o.user, "");
    run_gs(g.cfg, &g.tls, "SCRAM-SHA-1", &p, &x, &o);
    assert_int_equal(x.last, SASL_FAILURE);
    /* the SCRAM-SHA-1 password is not the SCRAM-SHA-256 one's salt, etc.:
     * carol's password for alice fails too */
    assert_int_equal(run_ms(&g.tls, "SCRAM-SHA-256", "n,,", NULL, 0, ALICE,
                            CAROL_PW, &o), SASL_FAILURE);
}

static void test_scram_authzid_other_user(void **state)
{
    struct peer p = {.authid = ALICE, .password = ALICE_PW, .authzid = BOB};
    struct exchange x;
    struct auth_outcome o;
    run_gs(g.cfg, &g.tls, "SCRAM-SHA-256", &p, &x, &o);
    assert_int_equal(x.last, SASL_FAILURE);
    assert_string_equal(o.user, "");
    assert_int_equal(run_ms(&g.tls, "SCRAM-SHA-1", "n,a=alice@example.com,", NULL, 0,
                            CAROL, CAROL_PW, &o), SASL_FAILURE);
}

static void test_scram_unknown_user(void **state)
{
    char s1[128], s2[128], s_real[128];
    unsigned i1 = 0, i2 = 0, i_real = 0;
    /* the first challenge looks like a real user's: s= and i= */
    scram_first_salt(&g.tls, "SCRAM-SHA-256", NOBODY, s1, sizeof s1, &i1);
    scram_first_salt(&g.tls, "SCRAM-SHA-256", NOBODY, s2, sizeof s2, &i2);
    scram_first_salt(&g.tls, "SCRAM-SHA-256", ALICE, s_real, sizeof s_real, &i_real);
    assert_string_equal(s_real, g.salt_alice_256);
    assert_string_equal(s1, s2);                    /* stable fake salt */
    assert_int_equal(i1, i_real);
    assert_int_equal(i2, i_real);
    assert_int_equal(strlen(s1), strlen(s_real));
    /* another unknown user, another salt */
    scram_first_salt(&g.tls, "SCRAM-SHA-256", "nobody2@example.com", s2, sizeof s2, NULL);
    assert_string_not_equal(s1, s2);
    /* and the exchange fails at the proof */
    struct auth_outcome o;
    assert_int_equal(run_ms(&g.tls, "SCRAM-SHA-256", "n,,", NULL, 0, NOBODY,
                            "whatever", &o), SASL_FAILURE);
    assert_string_equal(o.reason, "unknown user");
    assert_int_equal(run_ms(&g.tls, "SCRAM-SHA-1", "n,,", NULL, 0, NOBODY,
                            "whatever", &o), SASL_FAILURE);
    /* not an address at all */
    assert_int_equal(run_ms(&g.tls, "SCRAM-SHA-1", "n,,", NULL, 0, "nobody",
                            "whatever", &o), SASL_FAILURE);
}

/* A real user's salt does not depend on how the name is spelled or on
 * -PLUS: an unknown user's fake salt must not either, or comparing two
 * first challenges tells which accounts exist. */
static void test_scram_unknown_user_salt_indistinguishable(void **state)
{
    char a[128], b[128];
    /* real user: the same salt whatever the case */
    scram_first_salt(&g.tls, "SCRAM-SHA-256", ALICE, a, sizeof a, NULL);
    scram_first_salt(&g.tls, "SCRAM-SHA-256", "ALICE@example.com", b, sizeof b, NULL);
    assert_string_equal(a, b);
    scram_first_salt(&g.tls_cb, "SCRAM-SHA-256-PLUS", ALICE, b, sizeof b, NULL);
    assert_string_equal(a, b);

    /* unknown user: must behave the same */
    bool case_ok, plus_ok;
    scram_first_salt(&g.tls, "SCRAM-SHA-256", NOBODY, a, sizeof a, NULL);
    scram_first_salt(&g.tls, "SCRAM-SHA-256", "NOBODY@example.com", b, sizeof b, NULL);
    case_ok = strcmp(a, b) == 0;
    scram_first_salt(&g.tls_cb, "SCRAM-SHA-256-PLUS", NOBODY, b, sizeof b, NULL);
    plus_ok = strcmp(a, b) == 0;
    if (!case_ok || !plus_ok)
        fail_msg("fake SCRAM salt for an unknown user changes with%s%s "
                 "(a real user's does not): account existence leaks",
                 case_ok ? "" : " the case of the name",
                 plus_ok ? "" : (case_ok ? " -PLUS" : " and with -PLUS"));
}

static void test_scram_user_without_credentials(void **state)
{
    struct auth_outcome o;
    char s[128];
    unsigned it = 0;
    /* bob has only a password hash: a fake first challenge, then failure */
    scram_first_salt(&g.tls, "SCRAM-SHA-256", BOB, s, sizeof s, &it);
    assert_int_equal(it, 4096);
    struct peer p = {.authid = BOB, .password = ALICE_PW};
    struct exchange x;
    run_gs(g.cfg, &g.tls, "SCRAM-SHA-256", &p, &x, &o);
    assert_int_equal(x.last, SASL_FAILURE);
    assert_int_equal(x.server_steps, 2);
    assert_string_equal(o.reason, "no scram credentials");
    run_gs(g.cfg, &g.tls, "SCRAM-SHA-1", &p, &x, &o);
    assert_int_equal(x.last, SASL_FAILURE);
}

static void test_scram_replay(void **state)
{
    struct mscram m;
    struct auth_outcome o;
    char first[1024], final[1024], *chal = NULL;
    size_t nf = ms_first(&m, "SCRAM-SHA-256", "n,,", CAROL, NULL, 0, first,
                         sizeof first);

    /* exchange A: complete up to the client-final message, not sent */
    struct sasl_session *a = start(g.cfg, &g.tls, "SCRAM-SHA-256", true);
    assert_int_equal(step_raw(a, first, nf, &chal, &o), SASL_CONTINUE);
    size_t nl = ms_final(&m, chal, CAROL_PW, final, sizeof final);
    free(chal);

    /* exchange B: the same client messages */
    struct sasl_session *b = start(g.cfg, &g.tls, "SCRAM-SHA-256", true);
    assert_int_equal(step_raw(b, first, nf, &chal, &o), SASL_CONTINUE);
    free(chal);
    assert_int_equal(step_raw(b, final, nl, NULL, &o), SASL_FAILURE);
    sasl_free(b);

    /* A itself still completes: B did not disturb it */
    assert_int_equal(step_raw(a, final, nl, &chal, &o), SASL_CONTINUE);
    assert_true(ms_verify(&m, chal));
    free(chal);
    assert_int_equal(step_b64(a, "", NULL, &o), SASL_SUCCESS);
    sasl_free(a);

    /* ... and a completed exchange's final message, replayed, fails */
    b = start(g.cfg, &g.tls, "SCRAM-SHA-256", true);
    assert_int_equal(step_raw(b, first, nf, &chal, &o), SASL_CONTINUE);
    free(chal);
    assert_int_equal(step_raw(b, final, nl, NULL, &o), SASL_FAILURE);
    sasl_free(b);
}

static void test_scram_empty_and_garbage_first(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    static const char *bad[] = {
        "n,,", "x,,n=carol@example.com,r=abc", "n,,n=,r=abc",
        "n,,r=abc,n=carol@example.com", "n,,n=carol@example.com",
        "n,,n=carol@example.com,r=", "n,,n=carol@example.com",
        "n=carol@example.com,r=abc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sasl_session *ss = start(g.cfg, &g.tls, "SCRAM-SHA-256", true);
        enum sasl_step_rc r = step_str(ss, bad[i], &chal, &o);
        if (r != SASL_FAILURE)
            fail_msg("SCRAM client-first \"%s\": %d, want SASL_FAILURE", bad[i], r);
        sasl_free(ss);
    }
}

/* ==== 7. SCRAM-SHA-256-PLUS with tls-exporter =========================== */

static void test_scram_plus_tls_exporter(void **state)
{
    char *cb = b64(g.tls_cb.cb_data, g.tls_cb.cb_len);
    struct peer p = {.authid = ALICE, .password = ALICE_PW, .cb_exporter = cb};
    struct exchange x;
    struct auth_outcome o;
    run_gs(g.cfg, &g.tls_cb, "SCRAM-SHA-256-PLUS", &p, &x, &o);
    assert_int_equal(x.last, SASL_SUCCESS);
    assert_int_equal(x.client_rc, GSASL_OK);
    assert_string_equal(o.user, ALICE);
    free(cb);

    /* the hand-made client binds the same data */
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,",
                            g.tls_cb.cb_data, g.tls_cb.cb_len, CAROL, CAROL_PW, &o),
                     SASL_SUCCESS);
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-1-PLUS", "p=tls-exporter,,",
                            g.tls_cb.cb_data, g.tls_cb.cb_len, CAROL, CAROL_PW, &o),
                     SASL_SUCCESS);
}

static void test_scram_plus_wrong_binding(void **state)
{
    unsigned char other[32];
    memcpy(other, g.tls_cb.cb_data, 32);
    other[31] ^= 1;
    char *cb = b64(other, sizeof other);
    struct peer p = {.authid = ALICE, .password = ALICE_PW, .cb_exporter = cb};
    struct exchange x;
    struct auth_outcome o;
    run_gs(g.cfg, &g.tls_cb, "SCRAM-SHA-256-PLUS", &p, &x, &o);
    assert_int_equal(x.last, SASL_FAILURE);
    assert_string_equal(o.user, "");
    free(cb);

    /* shorter data (a prefix), and another channel binding type */
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,",
                            g.tls_cb.cb_data, 31, CAROL, CAROL_PW, &o), SASL_FAILURE);
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-256-PLUS", "p=tls-unique,,",
                            g.tls_cb.cb_data, 32, CAROL, CAROL_PW, &o), SASL_FAILURE);
    /* -PLUS without binding at all */
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-256-PLUS", "n,,", NULL, 0, CAROL,
                            CAROL_PW, &o), SASL_FAILURE);
}

/* "y": the client supports channel binding but thinks the server does not.
 * Here the server offered -PLUS, so this is a downgrade: refuse. */
static void test_scram_downgrade_y_refused(void **state)
{
    struct auth_outcome o;
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-256", "y,,", NULL, 0, CAROL,
                            CAROL_PW, &o), SASL_FAILURE);
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-1", "y,,", NULL, 0, CAROL,
                            CAROL_PW, &o), SASL_FAILURE);
    /* "n" (no channel binding support) is still fine there */
    assert_int_equal(run_ms(&g.tls_cb, "SCRAM-SHA-256", "n,,", NULL, 0, CAROL,
                            CAROL_PW, &o), SASL_SUCCESS);
    /* and "y" where no -PLUS is offered is fine (see check_scram_good) */
}

/* ==== 8. EXTERNAL ======================================================= */

static void test_external(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    /* "=": the empty initial response, no authzid */
    struct sasl_session *ss = start(g.cfg, &g.tls_cert, "EXTERNAL", true);
    assert_int_equal(step_b64(ss, "=", NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, ALICE);
    assert_string_equal(sasl_authid(ss), ALICE);
    sasl_free(ss);

    /* the same as the caller passes it ("" for "=") */
    ss = start(g.cfg, &g.tls_cert, "EXTERNAL", true);
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_SUCCESS);
    sasl_free(ss);

    /* no initial response: an empty challenge first */
    ss = start(g.cfg, &g.tls_cert, "EXTERNAL", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "");
    free(chal);
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_SUCCESS);
    assert_string_equal(o.user, ALICE);
    sasl_free(ss);

    /* authzid = the certificate's user */
    ss = start(g.cfg, &g.tls_cert, "EXTERNAL", true);
    assert_int_equal(step_str(ss, "Alice@example.com", NULL, &o), SASL_SUCCESS);
    sasl_free(ss);
}

static void test_external_refusals(void **state)
{
    struct auth_outcome o;
    struct sasl_session *ss = start(g.cfg, &g.tls_cert, "EXTERNAL", true);
    assert_int_equal(step_str(ss, BOB, NULL, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "authzid is another user");
    sasl_free(ss);

    struct sasl_conn_info ci = g.tls;
    ci.cert_identity = NOBODY;
    ss = start(g.cfg, &ci, "EXTERNAL", true);
    assert_int_equal(step_b64(ss, "=", NULL, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "unknown user");
    sasl_free(ss);

    ci.cert_identity = "CN=alice";
    ss = start(g.cfg, &ci, "EXTERNAL", true);
    assert_int_equal(step_b64(ss, "=", NULL, &o), SASL_FAILURE);
    sasl_free(ss);
}

/* GSSAPI without a KDC: only the refusals. (With a missing keytab, every
 * exchange's gss_acquire_cred fails inside MIT krb5 1.20, which leaks ~80
 * octets each time: a library leak, reproduced without pobox; the fixture
 * writes a real keytab so that this binary stays valgrind-clean.) */
static void test_gssapi_refusals(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    struct sasl_session *ss = start(g.cfg, &g.tls, "GSSAPI", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "");
    free(chal);
    assert_int_equal(step_str(ss, "\x60\x81\x01not a GSS token", NULL, &o), SASL_FAILURE);
    assert_string_equal(o.user, "");
    sasl_free(ss);

    ss = start(g.cfg, &g.tls, "GSSAPI", true);
    assert_int_equal(step_b64(ss, "=", NULL, &o), SASL_FAILURE);
    sasl_free(ss);

    ss = start(g.cfg, &g.tls, "GSSAPI", true);
    assert_int_equal(step_b64(ss, "YII=", NULL, &o), SASL_FAILURE);
    sasl_free(ss);
}

/* ==== 9. session hygiene ================================================ */

static const char *const LOOP_MECHS[] = {
    "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL", "GSSAPI",
    "OAUTHBEARER", "XOAUTH2",
};
#define N_LOOP_MECHS (sizeof LOOP_MECHS / sizeof LOOP_MECHS[0])

static unsigned rnd(unsigned n)
{
    return (unsigned)rand() % n;
}

/* A client response for mech: garbage, invalid base64, empty, or a valid
 * partial message. Never one that would reach an argon2id check (unknown
 * users get a dummy one): PLAIN and LOGIN garbage always holds a NUL layout
 * GNU SASL refuses, and valid PLAIN/LOGIN data names carol (bcrypt). */
static char *loop_input(const char *mech)
{
    unsigned char buf[96];
    size_t len;
    bool login = strcmp(mech, "LOGIN") == 0, plain = strcmp(mech, "PLAIN") == 0;
    switch (rnd(6)) {
    case 0: {   /* random octets */
        len = rnd(64);
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)rand();
        if (plain) {        /* exactly one NUL: never a PLAIN message */
            for (size_t i = 0; i < len; i++)
                if (!buf[i])
                    buf[i] = 'x';
            if (len)
                buf[rnd((unsigned)len)] = 0;
        } else if (login) { /* a NUL inside: GNU SASL refuses it */
            if (!len)
                len = 1;
            buf[rnd((unsigned)len)] = 0;
        }
        return b64(buf, len);
    }
    case 1: {   /* not base64 */
        static const char *bad[] = {"!", "Zg=", "Zg", "====", "A===", "Zg==Zg==",
                                    "Zm9v\r\n", " Zm9v", "-_-_", "*"};
        return strdup(bad[rnd(sizeof bad / sizeof bad[0])]);
    }
    case 2:
        return strdup(rnd(2) ? "" : "=");
    default: {  /* a plausible message for the mechanism */
        const char *s;
        char tmp[256];
        if (plain) {
            len = plain_msg(tmp, sizeof tmp, "", CAROL, rnd(2) ? "wrong" : "");
            return b64(tmp, len);
        } else if (login) {
            s = rnd(2) ? CAROL : "not-carols-password";
        } else if (strcmp(mech, "CRAM-MD5") == 0) {
            s = rnd(2) ? CAROL " 0123456789abcdef0123456789abcdef" : NOBODY " x";
        } else if (strncmp(mech, "SCRAM", 5) == 0) {
            static const char *sc[] = {
                "n,,n=carol@example.com,r=abcdefgh",
                "y,,n=nobody@example.com,r=abcdefgh",
                "p=tls-exporter,,n=carol@example.com,r=abcdefgh",
                "c=biws,r=abcdefgh,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "c=biws,r=abcdefghXYZ,p=dGVzdA==",
            };
            s = sc[rnd(sizeof sc / sizeof sc[0])];
        } else if (strcmp(mech, "EXTERNAL") == 0) {
            s = rnd(2) ? CAROL : BOB;
        } else if (strcmp(mech, "OAUTHBEARER") == 0) {
            s = rnd(2) ? "n,a=carol@example.com,\001auth=Bearer abc.def.ghi\001\001"
                       : "\001";
        } else if (strcmp(mech, "XOAUTH2") == 0) {
            s = "user=carol@example.com\001auth=Bearer abc.def.ghi\001\001";
        } else {
            s = "\x60\x81\x00garbage-gss-token";
        }
        return b64(s, strlen(s));
    }
    }
}

struct slot {
    struct sasl_session *ss;
    const char *mech;
    unsigned steps_left;
    bool first;         /* no step yet */
    bool ir;
    bool done;          /* a step ended the exchange */
};

static void loop_step(struct slot *s, unsigned *counts)
{
    struct auth_outcome o;
    char *out = (char *)"poison";
    char *in;
    if (s->first && !s->ir)
        in = NULL;
    else
        in = loop_input(s->mech);
    enum sasl_step_rc r = sasl_step(s->ss, in, &out, &o);
    free(in);
    counts[r]++;
    switch (r) {
    case SASL_CONTINUE: {
        assert_false(s->done);
        size_t len;
        free(unb64(out, &len));
        free(out);
        break;
    }
    case SASL_SUCCESS:
        /* only EXTERNAL (certificate of carol) can succeed here */
        assert_false(s->done);
        assert_null(out);
        assert_string_equal(s->mech, "EXTERNAL");
        assert_string_equal(o.user, CAROL);
        s->done = true;
        break;
    case SASL_FAILURE:
    case SASL_MALFORMED:
        assert_null(out);
        assert_int_equal(o.result, AUTH_FAIL);
        assert_string_equal(o.user, "");
        s->done = true;
        break;
    case SASL_TEMPFAIL:
        assert_null(out);
        assert_true(strcmp(s->mech, "GSSAPI") == 0 || strcmp(s->mech, "OAUTHBEARER") == 0 ||
                    strcmp(s->mech, "XOAUTH2") == 0);
        s->done = true;
        break;
    default:
        fail_msg("sasl_step returned %d", r);
    }
    s->first = false;
}

static void test_hygiene_random_exchanges(void **state)
{
    unsigned seed = getenv("SASL_TEST_SEED") ? (unsigned)atoi(getenv("SASL_TEST_SEED"))
                                             : 20110517u;
    srand(seed);
    struct sasl_conn_info ci = g.tls_cb;
    ci.cert_identity = CAROL;
    struct slot slots[4] = {{0}};
    unsigned started = 0, counts[8] = {0}, frees_early = 0;
    while (started < 500) {
        struct slot *s = &slots[rnd(4)];
        if (!s->ss) {
            s->mech = LOOP_MECHS[rnd(N_LOOP_MECHS)];
            s->ir = strcmp(s->mech, "CRAM-MD5") != 0 && rnd(2);
            s->ss = start(g.cfg, &ci, s->mech, s->ir);
            s->steps_left = rnd(3);
            s->first = true;
            s->done = false;
            started++;
        } else if (s->steps_left) {
            loop_step(s, counts);
            s->steps_left--;
        } else {
            if (!s->done)
                frees_early++;
            sasl_free(s->ss);
            s->ss = NULL;
        }
    }
    for (size_t i = 0; i < 4; i++)
        sasl_free(slots[i].ss);
    print_message("seed %u: %u exchanges, %u abandoned midway; continue %u, "
                  "success %u, failure %u, malformed %u, tempfail %u\n",
                  seed, started, frees_early, counts[SASL_CONTINUE],
                  counts[SASL_SUCCESS], counts[SASL_FAILURE], counts[SASL_MALFORMED],
                  counts[SASL_TEMPFAIL]);

    /* a normal login works afterwards, with the costly hash and with SCRAM */
    struct auth_outcome o;
    assert_int_equal(plain_login(g.cfg, "", ALICE, ALICE_PW, &o), SASL_SUCCESS);
    assert_string_equal(o.user, ALICE);
    struct peer p = {.authid = CAROL, .password = CAROL_PW};
    struct exchange x;
    run_gs(g.cfg, &g.tls, "SCRAM-SHA-1", &p, &x, &o);
    assert_int_equal(x.last, SASL_SUCCESS);
    assert_string_equal(o.user, CAROL);
}

/* An exchange abandoned midway leaves nothing behind for the next one on
 * the same connection (the CVE-2011-1720 pattern: AUTH, "*", AUTH). */
static void test_hygiene_abandon_then_restart(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    for (size_t i = 0; i < N_LOOP_MECHS; i++) {
        struct sasl_conn_info ci = g.tls_cb;
        ci.cert_identity = CAROL;
        bool ir = strcmp(LOOP_MECHS[i], "CRAM-MD5") != 0;
        struct sasl_session *ss = start(g.cfg, &ci, LOOP_MECHS[i], ir);
        if (ir) {
            char *in = loop_input(LOOP_MECHS[i]);
            enum sasl_step_rc r = sasl_step(ss, in, &chal, &o);
            free(chal);
            chal = NULL;
            free(in);
            (void)r;
        }
        sasl_free(ss);  /* "*" */
        assert_int_equal(plain_login(g.cfg, "", CAROL, CAROL_PW, &o), SASL_SUCCESS);
        assert_string_equal(o.user, CAROL);
    }
    /* LOGIN abandoned after the user name: a new LOGIN asks for it again */
    struct sasl_session *ss = start(g.cfg, &g.tls, "LOGIN", true);
    assert_int_equal(step_str(ss, CAROL, &chal, &o), SASL_CONTINUE);
    free(chal);
    sasl_free(ss);
    ss = start(g.cfg, &g.tls, "LOGIN", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    assert_string_equal(chal, "User Name");
    free(chal);
    assert_string_equal(sasl_authid(ss), "");
    sasl_free(ss);
}

static void test_step_after_end_fails(void **state)
{
    struct auth_outcome o;
    char msg[256];
    size_t n = plain_msg(msg, sizeof msg, "", CAROL, CAROL_PW);

    struct sasl_session *ss = start(g.cfg, &g.tls, "PLAIN", true);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_SUCCESS);
    /* nothing after success, not even the right message again */
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_FAILURE);
    assert_string_equal(o.user, "");
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_FAILURE);
    assert_int_equal(step_b64(ss, NULL, NULL, &o), SASL_FAILURE);
    sasl_free(ss);

    n = plain_msg(msg, sizeof msg, "", CAROL, "wrong");
    ss = start(g.cfg, &g.tls, "PLAIN", true);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_FAILURE);
    n = plain_msg(msg, sizeof msg, "", CAROL, CAROL_PW);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_FAILURE);
    assert_string_equal(o.user, "");
    sasl_free(ss);

    /* after SCRAM's final empty answer */
    struct mscram m;
    char first[512], *chal = NULL;
    n = ms_first(&m, "SCRAM-SHA-1", "n,,", CAROL, NULL, 0, first, sizeof first);
    ss = start(g.cfg, &g.tls, "SCRAM-SHA-1", true);
    assert_int_equal(step_raw(ss, first, n, &chal, &o), SASL_CONTINUE);
    n = ms_final(&m, chal, CAROL_PW, msg, sizeof msg);
    free(chal);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    free(chal);
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_SUCCESS);
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_FAILURE);
    sasl_free(ss);
}

static void test_too_many_steps(void **state)
{
    struct auth_outcome o;
    char *chal = NULL;
    /* EXTERNAL keeps asking while it gets no response at all */
    struct sasl_session *ss = start(g.cfg, &g.tls_cert, "EXTERNAL", false);
    for (int i = 1; i <= 16; i++) {
        enum sasl_step_rc r = step_b64(ss, NULL, &chal, &o);
        if (r != SASL_CONTINUE)
            fail_msg("step %d: %d", i, r);
        free(chal);
    }
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_FAILURE);
    assert_string_equal(o.reason, "too many steps");
    sasl_free(ss);

    /* empty PLAIN responses end within the limit too (at once, or at 17) */
    ss = start(g.cfg, &g.tls, "PLAIN", false);
    enum sasl_step_rc r = SASL_CONTINUE;
    int i;
    for (i = 1; i <= 40 && r == SASL_CONTINUE; i++) {
        r = step_b64(ss, i == 1 ? NULL : "", &chal, &o);
        free(chal);
    }
    assert_int_equal(r, SASL_FAILURE);
    assert_true(i - 1 <= 17);
    sasl_free(ss);
}

/* ==== 10. failure delays ================================================ */

static void test_delay_on_failure_not_success(void **state)
{
    struct auth_outcome o;
    const struct config *c = g.cfg_delay;

    assert_int_equal(plain_login(c, "", CAROL, "wrong", &o), SASL_FAILURE);
    assert_true(o.delay_ms > 0);
    assert_int_equal(o.delay_ms, 1000);
    assert_int_equal(plain_login(c, "", CAROL, CAROL_PW, &o), SASL_SUCCESS);
    assert_int_equal(o.delay_ms, 0);

    /* malformed base64 is a failure too */
    throttle_reset_all();
    struct sasl_session *ss = start(c, &g.tls, "PLAIN", true);
    assert_int_equal(step_b64(ss, "Zg=", NULL, &o), SASL_MALFORMED);
    assert_true(o.delay_ms > 0);
    sasl_free(ss);

    /* SCRAM: wrong proof delayed; the success (at v= and at the end) not */
    throttle_reset_all();
    struct mscram m;
    char msg[1024], *chal = NULL;
    size_t n = ms_first(&m, "SCRAM-SHA-256", "n,,", CAROL, NULL, 0, msg, sizeof msg);
    ss = start(c, &g.tls, "SCRAM-SHA-256", true);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    assert_int_equal(o.delay_ms, 0);
    n = ms_final(&m, chal, "wrong", msg, sizeof msg);
    free(chal);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_FAILURE);
    assert_int_equal(o.delay_ms, 1000);
    sasl_free(ss);
    uint64_t wrong_delay = o.delay_ms;

    n = ms_first(&m, "SCRAM-SHA-256", "n,,", CAROL, NULL, 0, msg, sizeof msg);
    ss = start(c, &g.tls, "SCRAM-SHA-256", true);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    n = ms_final(&m, chal, CAROL_PW, msg, sizeof msg);
    free(chal);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    assert_int_equal(o.delay_ms, 0);
    free(chal);
    assert_int_equal(step_b64(ss, "", NULL, &o), SASL_SUCCESS);
    assert_int_equal(o.delay_ms, 0);
    sasl_free(ss);

    /* an unknown user costs what a wrong password costs */
    throttle_reset_all();
    n = ms_first(&m, "SCRAM-SHA-256", "n,,", NOBODY, NULL, 0, msg, sizeof msg);
    ss = start(c, &g.tls, "SCRAM-SHA-256", true);
    assert_int_equal(step_raw(ss, msg, n, &chal, &o), SASL_CONTINUE);
    n = ms_final(&m, chal, "x", msg, sizeof msg);
    free(chal);
    assert_int_equal(step_raw(ss, msg, n, NULL, &o), SASL_FAILURE);
    assert_int_equal(o.delay_ms, wrong_delay);
    sasl_free(ss);

    /* CRAM-MD5 and EXTERNAL failures are delayed as well */
    throttle_reset_all();
    ss = start(c, &g.plain, "CRAM-MD5", false);
    assert_int_equal(step_b64(ss, NULL, &chal, &o), SASL_CONTINUE);
    char *resp = cram_response(ALICE, "wrong", chal);
    free(chal);
    assert_int_equal(step_str(ss, resp, NULL, &o), SASL_FAILURE);
    assert_int_equal(o.delay_ms, 1000);
    free(resp);
    sasl_free(ss);
    ss = start(c, &g.tls_cert, "EXTERNAL", true);
    assert_int_equal(step_str(ss, BOB, NULL, &o), SASL_FAILURE);
    assert_true(o.delay_ms > 0);
    sasl_free(ss);
}

static void test_delay_grows(void **state)
{
    struct auth_outcome o;
    uint64_t last = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(plain_login(g.cfg_delay, "", CAROL, "wrong", &o), SASL_FAILURE);
        assert_true(o.delay_ms > last);
        last = o.delay_ms;
    }
    assert_int_equal(last, 8000);
    /* with auth.failure_delay = 0, none */
    assert_int_equal(plain_login(g.cfg, "", CAROL, "wrong", &o), SASL_FAILURE);
    assert_int_equal(o.delay_ms, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* 1 */
        cmocka_unit_test_setup(test_mechlist_tls_rule, reset),
        cmocka_unit_test_setup(test_mechlist_channel_binding, reset),
        cmocka_unit_test_setup(test_mechlist_external, reset),
        cmocka_unit_test_setup(test_mechlist_gssapi_needs_keytab_seen_at_init, reset),
        cmocka_unit_test_setup(test_mechlist_oauth_needs_jwks, reset),
        cmocka_unit_test_setup(test_mechlist_cram_md5_only_when_listed, reset),
        cmocka_unit_test_setup(test_mechlist_order_follows_config, reset),
        cmocka_unit_test_setup(test_mechlist_unknown_mechanisms_refused_by_config, reset),
        cmocka_unit_test_setup(test_mechlist_small_buffer, reset),
        /* 2 */
        cmocka_unit_test_setup(test_start_return_codes, reset),
        cmocka_unit_test_setup(test_start_case_insensitive, reset),
        /* 3 */
        cmocka_unit_test_setup(test_plain_good_initial_response, reset),
        cmocka_unit_test_setup(test_plain_no_initial_response, reset),
        cmocka_unit_test_setup(test_plain_wrong_password, reset),
        cmocka_unit_test_setup(test_plain_unknown_user, reset),
        cmocka_unit_test_setup(test_plain_authzid, reset),
        cmocka_unit_test_setup(test_plain_malformed_base64, reset),
        cmocka_unit_test_setup(test_plain_nul_layout, reset),
        cmocka_unit_test_setup(test_empty_initial_response_fails, reset),
        /* 4 */
        cmocka_unit_test_setup(test_login_no_initial_response, reset),
        cmocka_unit_test_setup(test_login_initial_response_is_user_name, reset),
        cmocka_unit_test_setup(test_login_wrong_password, reset),
        /* 5 */
        cmocka_unit_test_setup(test_cram_md5_good, reset),
        cmocka_unit_test_setup(test_cram_md5_wrong_digest, reset),
        cmocka_unit_test_setup(test_cram_md5_no_secret_or_unknown, reset),
        /* 6 */
        cmocka_unit_test_setup(test_scram_sha1_good, reset),
        cmocka_unit_test_setup(test_scram_sha256_good, reset),
        cmocka_unit_test_setup(test_scram_data_after_success, reset),
        cmocka_unit_test_setup(test_scram_wrong_password, reset),
        cmocka_unit_test_setup(test_scram_authzid_other_user, reset),
        cmocka_unit_test_setup(test_scram_unknown_user, reset),
        cmocka_unit_test_setup(test_scram_unknown_user_salt_indistinguishable, reset),
        cmocka_unit_test_setup(test_scram_user_without_credentials, reset),
        cmocka_unit_test_setup(test_scram_replay, reset),
        cmocka_unit_test_setup(test_scram_empty_and_garbage_first, reset),
        /* 7 */
        cmocka_unit_test_setup(test_scram_plus_tls_exporter, reset),
        cmocka_unit_test_setup(test_scram_plus_wrong_binding, reset),
        cmocka_unit_test_setup(test_scram_downgrade_y_refused, reset),
        /* 8 */
        cmocka_unit_test_setup(test_external, reset),
        cmocka_unit_test_setup(test_external_refusals, reset),
        cmocka_unit_test_setup(test_gssapi_refusals, reset),
        /* 9 */
        cmocka_unit_test_setup(test_hygiene_random_exchanges, reset),
        cmocka_unit_test_setup(test_hygiene_abandon_then_restart, reset),
        cmocka_unit_test_setup(test_step_after_end_fails, reset),
        cmocka_unit_test_setup(test_too_many_steps, reset),
        /* 10 */
        cmocka_unit_test_setup(test_delay_on_failure_not_success, reset),
        cmocka_unit_test_setup(test_delay_grows, reset),
    };
    return cmocka_run_group_tests_name("sasl", tests, group_setup, group_teardown);
}
