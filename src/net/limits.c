/* limits.c — a mutex-protected open hash table of per-address connection
 * counts (entries removed when they drop to zero) and the global count. */
#include "net/limits.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define IP_MAX 46

struct slot {
    char ip[IP_MAX];
    unsigned count;         /* counted toward max_per_ip */
    unsigned pending;       /* TLS handshakes not yet promoted */
    struct slot *next;
};

#define NBUCKETS 4096

struct limits {
    pthread_mutex_t lock;
    unsigned total;
    struct slot *buckets[NBUCKETS];
};

struct limits *limits_new(void)
{
    struct limits *l = calloc(1, sizeof(*l));
    if (l)
        pthread_mutex_init(&l->lock, NULL);
    return l;
}

void limits_free(struct limits *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < NBUCKETS; i++)
        while (l->buckets[i]) {
            struct slot *s = l->buckets[i];
            l->buckets[i] = s->next;
            free(s);
        }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static unsigned hash_ip(const char *ip)
{
    unsigned h = 2166136261u;
    for (; *ip; ip++)
        h = (h ^ (unsigned char)*ip) * 16777619u;
    return h % NBUCKETS;
}

static struct slot **find(struct limits *l, const char *ip)
{
    struct slot **pp = &l->buckets[hash_ip(ip)];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

enum limits_verdict limits_acquire(struct limits *l, const char *ip,
                                   unsigned max_total, unsigned max_per_ip,
                                   bool pending)
{
    enum limits_verdict v = LIMITS_OK;
    pthread_mutex_lock(&l->lock);
    struct slot **pp = find(l, ip);
    if (l->total >= max_total)
        v = LIMITS_TOTAL;
    else if (!pending && *pp && (*pp)->count >= max_per_ip)
        v = LIMITS_PER_IP;
    else if (!*pp && (*pp = calloc(1, sizeof(**pp))) == NULL)
        v = LIMITS_TOTAL;
    if (v == LIMITS_OK) {
        if ((*pp)->ip[0] == '\0')
            strncpy((*pp)->ip, ip, IP_MAX - 1);
        if (pending)
            (*pp)->pending++;
        else
            (*pp)->count++;
        l->total++;
    }
    pthread_mutex_unlock(&l->lock);
    return v;
}

enum limits_verdict limits_promote(struct limits *l, const char *ip,
                                   unsigned max_per_ip)
{
    enum limits_verdict v = LIMITS_PER_IP;
    pthread_mutex_lock(&l->lock);
    struct slot *s = *find(l, ip);
    if (s && s->pending && s->count < max_per_ip) {
        s->pending--;
        s->count++;
        v = LIMITS_OK;
    }
    pthread_mutex_unlock(&l->lock);
    return v;
}

void limits_release(struct limits *l, const char *ip, bool pending)
{
    pthread_mutex_lock(&l->lock);
    struct slot **pp = find(l, ip);
    if (*pp) {
        l->total--;
        if (pending)
            (*pp)->pending--;
        else
            (*pp)->count--;
        if ((*pp)->count == 0 && (*pp)->pending == 0) {
            struct slot *dead = *pp;
            *pp = dead->next;
            free(dead);
        }
    }
    pthread_mutex_unlock(&l->lock);
}

unsigned limits_total(struct limits *l)
{
    pthread_mutex_lock(&l->lock);
    unsigned t = l->total;
    pthread_mutex_unlock(&l->lock);
    return t;
}
