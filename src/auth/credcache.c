/* credcache.c — the verified-credential cache (see credcache.h): a fixed
 * table of 8192 slots chosen by a keyed digest of the user, each holding
 * the user's digest, the proof digest and the time it was stored. */
#include "auth/credcache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define CREDCACHE_SLOTS 8192u
#define CREDCACHE_DIGEST 32

struct credcache_slot {
    unsigned char user[CREDCACHE_DIGEST];
    unsigned char proof[CREDCACHE_DIGEST];
    time_t stored_at;           /* 0: empty */
};

static struct credcache_slot credcache_table[CREDCACHE_SLOTS];
static unsigned char credcache_key[32];
static pthread_once_t credcache_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t credcache_lock = PTHREAD_MUTEX_INITIALIZER;
static bool credcache_ready;

static void credcache_init(void)
{
    credcache_ready = RAND_bytes(credcache_key, sizeof credcache_key) == 1;
}

static time_t credcache_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1;       /* never 0, which marks an empty slot */
}

/* HMAC-SHA256(key, a || 0 || b || 0 || c); b and c may be NULL. */
static bool credcache_digest(const char *a, const char *b, const char *c,
                             unsigned char out[CREDCACHE_DIGEST])
{
    const char *parts[3] = {a, b, c};
    unsigned char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 3 && parts[i]; i++) {
        size_t len = strlen(parts[i]);
        if (n + len + 1 > sizeof buf)
            return false;       /* absurd sizes are simply not cached */
        memcpy(buf + n, parts[i], len);
        n += len;
        buf[n++] = '\0';
    }
    unsigned int outlen = 0;
    bool ok = HMAC(EVP_sha256(), credcache_key, sizeof credcache_key, buf, n,
                   out, &outlen) != NULL && outlen == CREDCACHE_DIGEST;
    OPENSSL_cleanse(buf, n);
    return ok;
}

/* Fills the user's digest and proof; the slot index comes from the former. */
static bool credcache_keys(const char *user, const char *stored, const char *pass,
                           unsigned char uid[CREDCACHE_DIGEST],
                           unsigned char proof[CREDCACHE_DIGEST], size_t *slot)
{
    pthread_once(&credcache_once, credcache_init);
    if (!credcache_ready || !user || !stored || !pass)
        return false;
    if (!credcache_digest(user, NULL, NULL, uid) ||
        !credcache_digest(user, stored, pass, proof))
        return false;
    uint32_t h;
    memcpy(&h, uid, sizeof h);
    *slot = h % CREDCACHE_SLOTS;
    return true;
}

bool credcache_check(const char *user, const char *stored, const char *pass,
                     unsigned ttl)
{
    unsigned char uid[CREDCACHE_DIGEST], proof[CREDCACHE_DIGEST];
    size_t i;
    if (ttl == 0 || !credcache_keys(user, stored, pass, uid, proof, &i))
        return false;
    time_t now = credcache_now();
    pthread_mutex_lock(&credcache_lock);
    const struct credcache_slot *s = &credcache_table[i];
    bool hit = s->stored_at != 0 && now - s->stored_at < (time_t)ttl &&
               CRYPTO_memcmp(s->user, uid, sizeof uid) == 0 &&
               CRYPTO_memcmp(s->proof, proof, sizeof proof) == 0;
    pthread_mutex_unlock(&credcache_lock);
    return hit;
}

void credcache_store(const char *user, const char *stored, const char *pass,
                     unsigned ttl)
{
    unsigned char uid[CREDCACHE_DIGEST], proof[CREDCACHE_DIGEST];
    size_t i;
    if (ttl == 0 || !credcache_keys(user, stored, pass, uid, proof, &i))
        return;
    pthread_mutex_lock(&credcache_lock);
    struct credcache_slot *s = &credcache_table[i];
    memcpy(s->user, uid, sizeof uid);
    memcpy(s->proof, proof, sizeof proof);
    s->stored_at = credcache_now();
    pthread_mutex_unlock(&credcache_lock);
}

void credcache_clear(void)
{
    pthread_mutex_lock(&credcache_lock);
    memset(credcache_table, 0, sizeof credcache_table);
    pthread_mutex_unlock(&credcache_lock);
}
