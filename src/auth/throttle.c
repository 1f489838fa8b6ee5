/* throttle.c — failed-login counters per client address and per account,
 * turned into growing delays.
 *
 * One hash table holds both kinds of counter ("ip" and "account" entries),
 * chained, hashed with SipHash under a random key so that chosen account
 * names cannot pile into one bucket. Every entry is also on a list ordered
 * by its last failure: the oldest are evicted when the table is full and
 * entries quiet for an hour are dropped, so memory stays bounded whatever
 * a client sends. One mutex guards it all. */
#include "auth/throttle.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THROTTLE_MAX_ENTRIES 100000     /* both kinds together */
#define THROTTLE_BUCKETS (1u << 17)     /* power of two, > max entries */
#define THROTTLE_DECAY_SEC 3600         /* a quiet hour forgets */
#define THROTTLE_KEY_MAX 320            /* longer keys are cut */

enum throttle_kind { THROTTLE_IP = 'i', THROTTLE_ACCOUNT = 'a' };

struct throttle_entry {
    struct throttle_entry *chain;           /* next in bucket */
    struct throttle_entry *older, *newer;   /* age list */
    uint64_t hash;
    int64_t last;                           /* monotonic s of last failure */
    uint32_t failures;
    char kind;                              /* enum throttle_kind */
    char key[];                             /* NUL-terminated */
};

static pthread_mutex_t throttle_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct throttle_entry **throttle_buckets;    /* lazily allocated */
static struct throttle_entry *throttle_oldest, *throttle_newest;
static size_t throttle_count;
static int64_t throttle_skew;                       /* tests move time */

static pthread_once_t throttle_once = PTHREAD_ONCE_INIT;
static unsigned char throttle_sipkey[16];
static EVP_MAC *throttle_mac;                       /* NULL: fall back */

static void throttle_init(void)
{
    if (RAND_bytes(throttle_sipkey, sizeof throttle_sipkey) != 1)
        memset(throttle_sipkey, 0x5a, sizeof throttle_sipkey);
    throttle_mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
}

/* Keyed hash of kind and key; FNV-1a over the same input if SipHash is
 * unavailable. */
static uint64_t throttle_hash(char kind, const char *key, size_t len)
{
    uint64_t h = 0;
    size_t outlen = 0;
    size_t size = sizeof h;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = throttle_mac ? EVP_MAC_CTX_new(throttle_mac) : NULL;

    if (ctx && EVP_MAC_init(ctx, throttle_sipkey, sizeof throttle_sipkey, params) &&
        EVP_MAC_update(ctx, (const unsigned char *)&kind, 1) &&
        EVP_MAC_update(ctx, (const unsigned char *)key, len) &&
        EVP_MAC_final(ctx, (unsigned char *)&h, &outlen, sizeof h) &&
        outlen == sizeof h) {
        EVP_MAC_CTX_free(ctx);
        return h;
    }
    EVP_MAC_CTX_free(ctx);
    h = 14695981039346656037ULL ^ (unsigned char)kind;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

static int64_t throttle_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec + throttle_skew;
}

/* ---- age list and table (throttle_mutex held) ---------------------------- */

static void throttle_unlink_age(struct throttle_entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        throttle_oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        throttle_newest = e->older;
    e->older = e->newer = NULL;
}

static void throttle_push_newest(struct throttle_entry *e)
{
    e->older = throttle_newest;
    e->newer = NULL;
    if (throttle_newest)
        throttle_newest->newer = e;
    else
        throttle_oldest = e;
    throttle_newest = e;
}

static void throttle_remove(struct throttle_entry *e)
{
    struct throttle_entry **pp = &throttle_buckets[e->hash & (THROTTLE_BUCKETS - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    throttle_unlink_age(e);
    throttle_count--;
    free(e);
}

/* Drops entries whose last failure is an hour old or more. */
static void throttle_expire(int64_t now)
{
    while (throttle_oldest && now - throttle_oldest->last >= THROTTLE_DECAY_SEC)
        throttle_remove(throttle_oldest);
}

static struct throttle_entry *throttle_find(char kind, const char *key,
                                            size_t len, uint64_t hash)
{
    if (!throttle_buckets)
        return NULL;
    struct throttle_entry *e = throttle_buckets[hash & (THROTTLE_BUCKETS - 1)];
    for (; e; e = e->chain)
        if (e->hash == hash && e->kind == kind && strlen(e->key) == len &&
            memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* Length of the key we store for s. */
static size_t throttle_keylen(const char *s)
{
    return strnlen(s, THROTTLE_KEY_MAX);
}

/* The entry for (kind, key), created if missing; NULL out of memory. */
static struct throttle_entry *throttle_get(char kind, const char *key)
{
    size_t len = throttle_keylen(key);
    uint64_t hash = throttle_hash(kind, key, len);
    struct throttle_entry *e = throttle_find(kind, key, len, hash);

    if (e)
        return e;
    if (!throttle_buckets &&
        !(throttle_buckets = calloc(THROTTLE_BUCKETS, sizeof *throttle_buckets)))
        return NULL;
    if (throttle_count >= THROTTLE_MAX_ENTRIES)
        throttle_remove(throttle_oldest);
    e = calloc(1, sizeof *e + len + 1);
    if (!e)
        return NULL;
    memcpy(e->key, key, len);
    e->kind = kind;
    e->hash = hash;
    e->chain = throttle_buckets[hash & (THROTTLE_BUCKETS - 1)];
    throttle_buckets[hash & (THROTTLE_BUCKETS - 1)] = e;
    throttle_push_newest(e);
    throttle_count++;
    return e;
}

/* Failure count of (kind, key); 0 when unknown. */
static uint32_t throttle_count_of(char kind, const char *key)
{
    if (!key || !*key)
        return 0;
    size_t len = throttle_keylen(key);
    struct throttle_entry *e = throttle_find(kind, key, len,
                                             throttle_hash(kind, key, len));
    return e ? e->failures : 0;
}

/* Records one failure for (kind, key) and returns its new count. */
static uint32_t throttle_record(char kind, const char *key, int64_t now)
{
    if (!key || !*key)
        return 0;
    struct throttle_entry *e = throttle_get(kind, key);
    if (!e)
        return 0;
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->last = now;
    throttle_unlink_age(e);
    throttle_push_newest(e);
    return e->failures;
}

static void throttle_forget(char kind, const char *key)
{
    if (!key || !*key)
        return;
    size_t len = throttle_keylen(key);
    struct throttle_entry *e = throttle_find(kind, key, len,
                                             throttle_hash(kind, key, len));
    if (e)
        throttle_remove(e);
}

/* ---- the delay ---------------------------------------------------------- */

/* base * 2^(n-1), capped at max; 0 when n or base is 0. */
static uint64_t throttle_delay(uint32_t n, uint64_t base_ms, uint64_t max_ms)
{
    if (n == 0 || base_ms == 0)
        return 0;
    uint32_t shift = n - 1;
    if (shift >= 64 || base_ms > (UINT64_MAX >> shift))
        return max_ms;
    uint64_t d = base_ms << shift;
    return d < max_ms ? d : max_ms;
}

static uint32_t throttle_max(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* ---- API ---------------------------------------------------------------- */

uint64_t throttle_fail(const char *ip, const char *account, uint64_t base_ms,
                       uint64_t max_ms)
{
    if (base_ms == 0)
        return 0;
    pthread_once(&throttle_once, throttle_init);
    pthread_mutex_lock(&throttle_mutex);
    int64_t now = throttle_now();
    throttle_expire(now);
    uint32_t n = throttle_max(throttle_record(THROTTLE_IP, ip, now),
                              throttle_record(THROTTLE_ACCOUNT, account, now));
    pthread_mutex_unlock(&throttle_mutex);
    return throttle_delay(n, base_ms, max_ms);
}

uint64_t throttle_pending(const char *ip, const char *account, uint64_t base_ms,
                          uint64_t max_ms)
{
    if (base_ms == 0)
        return 0;
    pthread_once(&throttle_once, throttle_init);
    pthread_mutex_lock(&throttle_mutex);
    throttle_expire(throttle_now());
    uint32_t n = throttle_max(throttle_count_of(THROTTLE_IP, ip),
                              throttle_count_of(THROTTLE_ACCOUNT, account));
    pthread_mutex_unlock(&throttle_mutex);
    return throttle_delay(n, base_ms, max_ms);
}

void throttle_success(const char *ip, const char *account)
{
    pthread_once(&throttle_once, throttle_init);
    pthread_mutex_lock(&throttle_mutex);
    throttle_forget(THROTTLE_IP, ip);
    throttle_forget(THROTTLE_ACCOUNT, account);
    pthread_mutex_unlock(&throttle_mutex);
}

void throttle_reset_all(void)
{
    pthread_mutex_lock(&throttle_mutex);
    while (throttle_oldest)
        throttle_remove(throttle_oldest);
    free(throttle_buckets);
    throttle_buckets = NULL;
    throttle_skew = 0;
    pthread_mutex_unlock(&throttle_mutex);
}

/* For unit tests only (not in throttle.h): moves the throttle's clock
 * forward by seconds, so decay can be tested without sleeping.
 * throttle_reset_all() puts it back. */
void throttle_test_advance(int64_t seconds);
void throttle_test_advance(int64_t seconds)
{
    pthread_mutex_lock(&throttle_mutex);
    throttle_skew += seconds;
    pthread_mutex_unlock(&throttle_mutex);
}
