/* worker.c — one thread's event loop running a range of connection slots:
 * starts sessions back to back while the run lasts, records how each one
 * ended, paces pop3-idle connections and parks them for the hold. */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

#define LG_LINGER_US 1000000u       /* wait for the server's close after QUIT */
#define LG_BACKOFF_US 10000u        /* pause after a failed session */
#define LG_PACE_US 2000u            /* pop3-idle connect pacing tick */

static int is_idle(const struct lg_worker *w)
{
    return w->run->o->scen == LG_POP3_IDLE;
}

static int may_start(struct lg_worker *w)
{
    const struct lg_opts *o = w->run->o;
    if (o->sessions != 0)
        return atomic_fetch_add_explicit(&w->run->started, 1, memory_order_relaxed) <
               o->sessions;
    return w->loop.now < w->run->t_end;
}

static void queue_restart(struct lg_slot *s)
{
    if (s->queued)
        return;
    s->queued = 1;
    s->next_restart = s->w->restart;
    s->w->restart = s;
}

static void on_backoff(struct lg_tnode *t)
{
    struct lg_slot *s = LG_CONTAINER_OF(t, struct lg_slot, backoff);
    s->w->backing_off--;
    queue_restart(s);
}

static void slot_start(struct lg_slot *s)
{
    struct lg_worker *w = s->w;
    s->t0 = w->loop.now;
    s->lat = 0;
    s->step = 0;
    s->in_ml = 0;
    s->closing = 0;
    s->parked = 0;
    w->active++;
    if (w->run->scen->start(s) < 0)
        lg_slot_conn_failed(s, NULL);     /* why: "connect: ..." */
}

/* The session has ended (conn closed); failed says how. */
static void session_end(struct lg_slot *s, int failed)
{
    struct lg_worker *w = s->w;
    w->active--;
    if (!is_idle(w)) {
        atomic_fetch_add_explicit(&w->progress, 1, memory_order_relaxed);
        if (failed) {
            w->backing_off++;
            lg_tlist_arm(&w->t_backoff, &s->backoff, w->loop.now);
        } else {
            queue_restart(s);
        }
        return;
    }
    if (s->parked)
        s->parked = 0;
    else if (w->phase == LG_PHASE_CONNECT)
        w->settled++;
}

void lg_slot_fail(struct lg_slot *s, const char *step, const char *reason, size_t len)
{
    struct lg_worker *w = s->w;
    char buf[LG_SAMPLE_LEN];
    snprintf(buf, sizeof(buf), "%s: %s%s%.*s", w->run->o->scen_name, step ? step : "",
             step ? ": " : "", (int)(len > 120 ? 120 : len), reason);
    lg_stats_sample(&w->st, buf);
    w->st.errors++;
    lg_conn_close(&s->conn, 1);
    session_end(s, 1);
}

/* Ends a session whose last reply came: keeps its TLS session for resume. */
static void session_done(struct lg_slot *s, int abort)
{
    struct lg_worker *w = s->w;
    if (w->run->o->resume && !abort) {
        SSL_SESSION *ns = lg_conn_session(&s->conn);
        if (ns != NULL) {
            if (s->tls_sess != NULL)
                SSL_SESSION_free(s->tls_sess);
            s->tls_sess = ns;
        }
    }
    if (!is_idle(w)) {
        w->st.sessions++;
        lg_hist_add(&w->st.lat, s->lat);
    }
    lg_conn_close(&s->conn, abort);
    session_end(s, 0);
}

/* The step to name for a failure in the connect or handshake phase, where
 * the reason may already say it ("connect: Connection refused"). */
static const char *phase_step(const struct lg_conn *c, const char *step)
{
    const char *what = c->err_what ? c->err_what : "";
    if (c->state == LG_CONN_CONNECTING)
        return strcmp(what, "connect") == 0 ? NULL : "connect";
    if (c->state == LG_CONN_HANDSHAKE)
        return strcmp(what, "TLS handshake") == 0 ? NULL : "TLS handshake";
    return step;
}

void lg_slot_conn_failed(struct lg_slot *s, const char *step)
{
    if (s->closing) {
        const char *what = s->conn.err_what;
        session_done(s, what != NULL && strcmp(what, "connection closed by server") != 0);
        return;
    }
    char why[LG_SAMPLE_LEN];
    lg_conn_why(&s->conn, why, sizeof(why));
    lg_slot_fail(s, phase_step(&s->conn, step), why, strlen(why));
}

void lg_slot_replied(struct lg_slot *s)
{
    uint64_t now = s->w->loop.now;
    s->lat = now > s->t0 ? now - s->t0 : 1;
    s->closing = 1;
    lg_conn_arm(&s->conn, &s->w->t_linger);
}

static void check_ready(struct lg_worker *w)
{
    if (w->phase != LG_PHASE_CONNECT || w->settled < w->nslots)
        return;
    w->phase = LG_PHASE_HOLD;
    struct lg_run *r = w->run;
    pthread_mutex_lock(&r->mu);
    w->ready_sessions = w->st.sessions;
    w->ready_errors = w->st.errors;
    w->ready_nsamples = w->st.nsamples;
    memcpy(w->ready_samples, w->st.samples, sizeof(w->ready_samples));
    r->n_ready++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void lg_slot_parked(struct lg_slot *s)
{
    struct lg_worker *w = s->w;
    uint64_t now = w->loop.now;
    lg_conn_disarm(&s->conn);
    s->parked = 1;
    w->settled++;
    atomic_fetch_add_explicit(&w->progress, 1, memory_order_relaxed);
    w->st.sessions++;
    lg_hist_add(&w->st.lat, now > s->t0 ? now - s->t0 : 1);
    check_ready(w);
}

/* pop3-idle: opens connections at --connect-rate (this thread's share). */
static void pace(void *arg)
{
    struct lg_worker *w = arg;
    const struct lg_opts *o = w->run->o;
    double rate = o->connect_rate / (double)w->run->nworkers;
    double secs = (double)(w->loop.now - w->run->t_start) / 1e6;
    uint64_t allowed = (uint64_t)(rate * secs) + 1;
    while (w->opened < w->nslots && w->opened < allowed)
        slot_start(&w->slots[w->opened++]);
    if (w->opened < w->nslots)
        w->loop.tick_at = w->loop.now + LG_PACE_US;
}

static void after_batch(void *arg)
{
    struct lg_worker *w = arg;
    while (w->restart != NULL) {
        struct lg_slot *s = w->restart;
        w->restart = s->next_restart;
        s->queued = 0;
        w->loop.now = lg_clock_us();
        if (may_start(w))
            slot_start(s);
    }
    if (is_idle(w))
        check_ready(w);
    if (w->active == 0 && w->restart == NULL && w->backing_off == 0 &&
        (!is_idle(w) || w->phase == LG_PHASE_AFTER))
        w->loop.stop = 1;
}

static void on_go(struct lg_io *io, uint32_t events)
{
    struct lg_worker *w = LG_CONTAINER_OF(io, struct lg_worker, go_io);
    uint64_t v;
    (void)events;
    if (read(w->go_fd, &v, sizeof(v)) != sizeof(v) || w->phase != LG_PHASE_HOLD)
        return;
    w->phase = LG_PHASE_AFTER;
    for (unsigned i = 0; i < w->nslots; i++) {
        struct lg_slot *s = &w->slots[i];
        if (s->parked) {
            s->parked = 0;
            w->run->scen->resume(s);
        }
    }
}

void lg_worker_go(struct lg_worker *w)
{
    uint64_t one = 1;
    if (write(w->go_fd, &one, sizeof(one)) != sizeof(one))
        perror("pobox-loadgen: eventfd");
}

static void *worker_main(void *arg)
{
    struct lg_worker *w = arg;
    w->loop.now = lg_clock_us();
    if (is_idle(w)) {
        w->phase = LG_PHASE_CONNECT;
        pace(w);
    } else {
        for (unsigned i = w->nslots; i-- > 0;)
            queue_restart(&w->slots[i]);
    }
    after_batch(w);
    lg_loop_run(&w->loop);
    struct lg_run *r = w->run;
    uint64_t now = lg_clock_us();
    pthread_mutex_lock(&r->mu);
    if (now > r->t_done)
        r->t_done = now;
    r->n_done++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void init_env(struct lg_worker *w)
{
    struct lg_run *r = w->run;
    const struct lg_opts *o = r->o;
    w->env.loop = &w->loop;
    w->env.timeouts = &w->t_reply;
    w->env.ctx = r->ctx;
    w->env.addr = (const struct sockaddr *)&r->addr;
    w->env.addrlen = r->addrlen;
    w->env.st = &w->st;
    w->env.lean = o->scen == LG_POP3_IDLE;
    w->env.rbuf_size = o->scen == LG_POP3_DOWNLOAD ? 256u * 1024
                       : o->scen == LG_POP3_POLL   ? 16u * 1024
                                                   : 4096u;
}

static int init_loop(struct lg_worker *w)
{
    if (lg_loop_init(&w->loop) < 0)
        return -1;
    lg_tlist_init(&w->loop, &w->t_reply, (uint64_t)(w->run->o->timeout * 1e6));
    lg_tlist_init(&w->loop, &w->t_linger, LG_LINGER_US);
    lg_tlist_init(&w->loop, &w->t_backoff, LG_BACKOFF_US);
    w->loop.after = after_batch;
    w->loop.tick = pace;
    w->loop.arg = w;
    if (!is_idle(w))
        return 0;
    w->go_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->go_io.on_event = on_go;
    return w->go_fd < 0 ? -1 : lg_loop_add(&w->loop, w->go_fd, &w->go_io);
}

struct lg_worker *lg_worker_new(struct lg_run *r, unsigned id, unsigned first,
                                unsigned nslots)
{
    struct lg_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->run = r;
    w->id = id;
    w->go_fd = -1;
    lg_stats_init(&w->st);
    w->slots = calloc(nslots ? nslots : 1, sizeof(*w->slots));
    if (w->slots == NULL || init_loop(w) < 0) {
        lg_worker_free(w);
        return NULL;
    }
    init_env(w);
    w->nslots = nslots;
    for (unsigned i = 0; i < nslots; i++) {
        struct lg_slot *s = &w->slots[i];
        lg_conn_init(&s->conn, &w->env, r->scen->ops);
        s->backoff.fire = on_backoff;
        s->w = w;
        s->idx = first + i;
        s->user = &r->users->v[s->idx % r->users->n];
    }
    return w;
}

int lg_worker_spawn(struct lg_worker *w)
{
    int e = pthread_create(&w->th, NULL, worker_main, w);
    if (e != 0)
        fprintf(stderr, "pobox-loadgen: pthread_create: %s\n", strerror(e));
    return e ? -1 : 0;
}

void lg_worker_free(struct lg_worker *w)
{
    if (w == NULL)
        return;
    for (unsigned i = 0; i < w->nslots; i++) {
        lg_conn_free(&w->slots[i].conn);
        if (w->slots[i].tls_sess != NULL)
            SSL_SESSION_free(w->slots[i].tls_sess);
    }
    free(w->slots);
    if (w->go_fd >= 0)
        close(w->go_fd);
    lg_loop_fini(&w->loop);
    free(w);
}
