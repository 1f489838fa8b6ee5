/* stats.h — per-thread counters, latency histograms and error samples of
 * a run; merged into one lg_stats for the JSON report. */
#ifndef LG_STATS_H
#define LG_STATS_H

#include <stdint.h>

#include "hist.h"

#define LG_MAX_SAMPLES 10
#define LG_SAMPLE_LEN 160

struct lg_stats {
    uint64_t sessions;      /* sessions completed without error */
    uint64_t errors;        /* sessions that failed */
    uint64_t bytes_in;      /* application bytes received */
    uint64_t body_bytes;    /* POP3 RETR body octets */
    uint64_t messages;      /* RETRs completed / SMTP messages accepted */
    uint64_t smtp_250;      /* 250 replies to the end of DATA */
    uint64_t tls_resumed;   /* handshakes that resumed a session */
    uint64_t tls_full;      /* full handshakes */
    uint64_t answered;      /* pop3-idle: NOOPs answered after the hold */
    struct lg_hist lat;     /* session latency */
    struct lg_hist data_lat;/* smtp-submit: end of DATA -> 250 */
    unsigned nsamples;
    char samples[LG_MAX_SAMPLES][LG_SAMPLE_LEN];
};

void lg_stats_init(struct lg_stats *st);
void lg_stats_merge(struct lg_stats *dst, const struct lg_stats *src);
/* Keeps s (truncated) as an error sample unless 10 are kept or it is
 * already one of them. */
void lg_stats_sample(struct lg_stats *st, const char *s);

#endif
