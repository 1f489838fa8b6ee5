/* report.c — builds the one-line JSON results: session scenarios, the
 * pop3-idle "ready" and "done" lines, and the machine-limit modes. */
#include "report.h"

#include "json.h"

static double per_s(double v, double seconds)
{
    return seconds > 0 ? v / seconds : 0.0;
}

static void latency(struct lg_json *j, const char *k, const struct lg_hist *h)
{
    lg_json_open(j, k, '{');
    lg_json_num(j, "mean", lg_hist_mean(h) / 1e3, 3);
    lg_json_num(j, "p50", (double)lg_hist_quantile(h, 0.50) / 1e3, 3);
    lg_json_num(j, "p90", (double)lg_hist_quantile(h, 0.90) / 1e3, 3);
    lg_json_num(j, "p99", (double)lg_hist_quantile(h, 0.99) / 1e3, 3);
    lg_json_num(j, "max", (double)h->max / 1e3, 3);
    lg_json_close(j, '}');
}

static void samples(struct lg_json *j, const struct lg_stats *st)
{
    lg_json_open(j, "error_samples", '[');
    for (unsigned i = 0; i < st->nsamples; i++)
        lg_json_item(j, st->samples[i]);
    lg_json_close(j, ']');
}

static void head(struct lg_json *j, const struct lg_opts *o, const char *phase)
{
    lg_json_begin(j);
    if (phase != NULL)
        lg_json_str(j, "phase", phase);
    lg_json_str(j, "scenario", o->scen_name);
    lg_json_bool(j, "tls", o->tls || o->starttls);
    lg_json_bool(j, "starttls", o->starttls);
    lg_json_bool(j, "resume", o->resume);
    lg_json_u64(j, "concurrency", o->conc);
    lg_json_u64(j, "threads", o->threads);
}

static void tls_counts(struct lg_json *j, const struct lg_stats *st)
{
    lg_json_u64(j, "tls_resumed", st->tls_resumed);
    lg_json_u64(j, "tls_full", st->tls_full);
}

void lg_report_run(const struct lg_opts *o, double seconds, const struct lg_stats *st)
{
    struct lg_json j;
    head(&j, o, NULL);
    lg_json_num(&j, "seconds", seconds, 3);
    lg_json_u64(&j, "sessions", st->sessions);
    lg_json_u64(&j, "errors", st->errors);
    samples(&j, st);
    lg_json_num(&j, "sessions_per_s", per_s((double)st->sessions, seconds), 1);
    lg_json_u64(&j, "bytes_in", st->bytes_in);
    lg_json_num(&j, "mb_per_s", per_s((double)st->bytes_in / 1e6, seconds), 3);
    lg_json_u64(&j, "messages", st->messages);
    lg_json_num(&j, "messages_per_s", per_s((double)st->messages, seconds), 1);
    lg_json_u64(&j, "body_bytes", st->body_bytes);
    lg_json_u64(&j, "smtp_250", st->smtp_250);
    latency(&j, "latency_ms", &st->lat);
    if (o->scen == LG_SMTP_SUBMIT)
        latency(&j, "data_latency_ms", &st->data_lat);
    tls_counts(&j, st);
    lg_json_print(&j);
}

void lg_report_idle_ready(const struct lg_opts *o, double seconds, const struct lg_stats *st)
{
    struct lg_json j;
    head(&j, o, "ready");
    lg_json_num(&j, "seconds", seconds, 3);
    lg_json_u64(&j, "sessions", o->conc);
    lg_json_u64(&j, "held", st->sessions);
    lg_json_u64(&j, "errors", st->errors);
    samples(&j, st);
    latency(&j, "latency_ms", &st->lat);
    tls_counts(&j, st);
    lg_json_print(&j);
}

void lg_report_idle_done(const struct lg_opts *o, double seconds, double hold,
                         const struct lg_stats *st)
{
    struct lg_json j;
    head(&j, o, "done");
    lg_json_num(&j, "seconds", seconds, 3);
    lg_json_num(&j, "hold_s", hold, 3);
    lg_json_u64(&j, "sessions", o->conc);
    lg_json_u64(&j, "held", st->sessions);
    lg_json_u64(&j, "answered", st->answered);
    lg_json_u64(&j, "errors", st->errors);
    samples(&j, st);
    lg_json_u64(&j, "bytes_in", st->bytes_in);
    latency(&j, "latency_ms", &st->lat);
    tls_counts(&j, st);
    lg_json_print(&j);
}

void lg_report_limit(const struct lg_opts *o, const struct lg_limit_res *r)
{
    struct lg_json j;
    lg_json_begin(&j);
    lg_json_str(&j, "scenario", o->scen_name);
    lg_json_num(&j, "seconds", r->seconds, 3);
    if (o->scen == LG_TCP_THROUGHPUT) {
        lg_json_u64(&j, "bytes_in", r->bytes);
        lg_json_num(&j, "mb_per_s", per_s((double)r->bytes / 1e6, r->seconds), 1);
    } else {
        lg_json_u64(&j, "writes", r->writes);
        lg_json_num(&j, "writes_per_s", per_s((double)r->writes, r->seconds), 1);
        latency(&j, "latency_ms", &r->lat);
    }
    lg_json_print(&j);
}
