/* hist.c — log-linear latency histogram: exact below 256 us, then 128
 * linear sub-buckets per power of two (two significant digits). */
#include "hist.h"

#include <string.h>

void lg_hist_init(struct lg_hist *h)
{
    memset(h, 0, sizeof(*h));
}

/* Bucket index of v: v itself below 2*SUB, else octave e (v >> e in
 * [SUB, 2*SUB)) and the linear position inside it. */
static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * LG_HIST_SUB)
        return (unsigned)v;
    unsigned top = 63u - (unsigned)__builtin_clzll(v);   /* floor(log2 v) >= 8 */
    unsigned e = top - 7u;                               /* v >> e in [128,256) */
    return 2 * LG_HIST_SUB + (e - 1) * LG_HIST_SUB + (unsigned)((v >> e) - LG_HIST_SUB);
}

/* Largest value that falls into bucket i. */
static uint64_t bucket_top(unsigned i)
{
    if (i < 2 * LG_HIST_SUB)
        return i;
    unsigned e = (i - 2 * LG_HIST_SUB) / LG_HIST_SUB + 1;
    uint64_t lin = (i - 2 * LG_HIST_SUB) % LG_HIST_SUB + LG_HIST_SUB;
    return ((lin + 1) << e) - 1;
}

void lg_hist_add(struct lg_hist *h, uint64_t us)
{
    if (us > LG_HIST_MAX_US)
        us = LG_HIST_MAX_US;
    h->b[bucket_of(us)]++;
    h->count++;
    h->sum += us;
    if (us > h->max)
        h->max = us;
}

void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src)
{
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bucket_top(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

double lg_hist_mean(const struct lg_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
