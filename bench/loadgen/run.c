/* run.c — the main thread's part of a session run: splits the slots over
 * the worker threads, prints progress on stderr, drives the pop3-idle
 * phases (ready line, hold, go), merges the results and reports them. */
#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

static uint64_t progress(const struct lg_run *r)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        n += atomic_load_explicit(&r->workers[i]->progress, memory_order_relaxed);
    return n;
}

/* Waits (mutex held) until *counter reaches nworkers, printing progress. */
static void wait_all(struct lg_run *r, unsigned *counter, const char *what)
{
    while (*counter < r->nworkers) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT && !r->o->quiet)
            fprintf(stderr, "pobox-loadgen: %.1f s, %llu sessions %s\n",
                    (double)(lg_clock_us() - r->t_start) / 1e6,
                    (unsigned long long)progress(r), what);
    }
}

static void hold(const struct lg_opts *o)
{
    if (o->hold >= 0) {
        struct timespec ts = {.tv_sec = (time_t)o->hold,
                              .tv_nsec = (long)((o->hold - (double)(time_t)o->hold) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        return;
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        ;
}

static void report_ready(struct lg_run *r)
{
    struct lg_stats *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return;
    lg_stats_init(st);
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct lg_worker *w = r->workers[i];
        st->sessions += w->ready_sessions;
        st->errors += w->ready_errors;
        st->tls_resumed += w->st.tls_resumed;
        st->tls_full += w->st.tls_full;
        lg_hist_merge(&st->lat, &w->st.lat);
        for (unsigned k = 0; k < w->ready_nsamples; k++)
            lg_stats_sample(st, w->ready_samples[k]);
    }
    lg_report_idle_ready(r->o, (double)(lg_clock_us() - r->t_start) / 1e6, st);
    free(st);
}

/* pop3-idle: ready line, hold, then let the workers finish. */
static double idle_phases(struct lg_run *r)
{
    pthread_mutex_lock(&r->mu);
    wait_all(r, &r->n_ready, "logged in");
    pthread_mutex_unlock(&r->mu);
    report_ready(r);
    if (!r->o->quiet && r->o->hold >= 0)
        fprintf(stderr, "pobox-loadgen: holding for %.1f s\n", r->o->hold);
    else if (!r->o->quiet)
        fprintf(stderr, "pobox-loadgen: holding until stdin is closed\n");
    uint64_t t = lg_clock_us();
    hold(r->o);
    double held = (double)(lg_clock_us() - t) / 1e6;
    for (unsigned i = 0; i < r->nworkers; i++)
        lg_worker_go(r->workers[i]);
    return held;
}

static int create_workers(struct lg_run *r)
{
    unsigned T = r->o->threads, conc = r->o->conc, first = 0;
    r->workers = calloc(T, sizeof(*r->workers));
    if (r->workers == NULL)
        return -1;
    for (unsigned i = 0; i < T; i++) {
        unsigned n = conc / T + (i < conc % T ? 1 : 0);
        r->workers[i] = lg_worker_new(r, i, first, n);
        if (r->workers[i] == NULL)
            return -1;
        r->nworkers++;
        first += n;
    }
    return 0;
}

static void report(struct lg_run *r, double held)
{
    struct lg_stats *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return;
    lg_stats_init(st);
    for (unsigned i = 0; i < r->nworkers; i++)
        lg_stats_merge(st, &r->workers[i]->st);
    double secs = (double)(r->t_done - r->t_start) / 1e6;
    if (r->o->scen == LG_POP3_IDLE)
        lg_report_idle_done(r->o, secs, held, st);
    else
        lg_report_run(r->o, secs, st);
    free(st);
}

int lg_run_exec(struct lg_run *r)
{
    int rc = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (create_workers(r) < 0) {
        fprintf(stderr, "pobox-loadgen: cannot set up the workers: %s\n", strerror(errno));
        goto out;
    }
    r->t_start = lg_clock_us();
    r->t_end = r->t_start + (uint64_t)(r->o->duration * 1e6);
    unsigned spawned = 0;
    while (spawned < r->nworkers && lg_worker_spawn(r->workers[spawned]) == 0)
        spawned++;
    if (spawned < r->nworkers)
        abort();    /* cannot stop running workers cleanly; rare */
    double held = r->o->scen == LG_POP3_IDLE ? idle_phases(r) : 0;
    pthread_mutex_lock(&r->mu);
    wait_all(r, &r->n_done, "ended");
    pthread_mutex_unlock(&r->mu);
    for (unsigned i = 0; i < r->nworkers; i++)
        pthread_join(r->workers[i]->th, NULL);
    report(r, held);
    rc = 0;
out:
    for (unsigned i = 0; i < r->nworkers; i++)
        lg_worker_free(r->workers[i]);
    free(r->workers);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    return rc;
}
