/* hist.h — latency histogram with log-linear buckets (like HdrHistogram):
 * values in microseconds from 1 us to 1000 s, relative error under 1%. */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

#define LG_HIST_SUB 128u                  /* linear sub-buckets per octave */
#define LG_HIST_MAX_US 1000000000ull      /* 1000 s; larger values clamp */
#define LG_HIST_BUCKETS (2u * LG_HIST_SUB + 23u * LG_HIST_SUB)

struct lg_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t max;
    uint64_t b[LG_HIST_BUCKETS];
};

void lg_hist_init(struct lg_hist *h);
void lg_hist_add(struct lg_hist *h, uint64_t us);
void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src);
/* Value (us) at quantile q in [0,1]: the bucket's upper bound, capped at max. */
uint64_t lg_hist_quantile(const struct lg_hist *h, double q);
double lg_hist_mean(const struct lg_hist *h);

#endif
