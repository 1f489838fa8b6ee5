/* stats.c — initialising and merging run statistics, keeping a few
 * distinct error samples. */
#include "stats.h"

#include <string.h>

void lg_stats_init(struct lg_stats *st)
{
    memset(st, 0, sizeof(*st));
    lg_hist_init(&st->lat);
    lg_hist_init(&st->data_lat);
}

void lg_stats_sample(struct lg_stats *st, const char *s)
{
    if (st->nsamples >= LG_MAX_SAMPLES)
        return;
    char buf[LG_SAMPLE_LEN];
    size_t n = strlen(s);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (unsigned i = 0; i < st->nsamples; i++)
        if (strcmp(st->samples[i], buf) == 0)
            return;
    memcpy(st->samples[st->nsamples++], buf, n + 1);
}

void lg_stats_merge(struct lg_stats *dst, const struct lg_stats *src)
{
    dst->sessions += src->sessions;
    dst->errors += src->errors;
    dst->bytes_in += src->bytes_in;
    dst->body_bytes += src->body_bytes;
    dst->messages += src->messages;
    dst->smtp_250 += src->smtp_250;
    dst->tls_resumed += src->tls_resumed;
    dst->tls_full += src->tls_full;
    dst->answered += src->answered;
    lg_hist_merge(&dst->lat, &src->lat);
    lg_hist_merge(&dst->data_lat, &src->data_lat);
    for (unsigned i = 0; i < src->nsamples; i++)
        lg_stats_sample(dst, src->samples[i]);
}
