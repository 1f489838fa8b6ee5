/* loop.c — I/O threads, one libevent loop each, with the registry of the
 * connections each owns (for a clean stop). */
#include "net/loop.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "net/conn.h"

struct loop_node {
    struct conn *conn;
    struct loop_node *prev, *next;
};

struct loop {
    struct event_base *base;
    pthread_t thread;
    bool started;
    bool stopping;
    struct loop_node *conns;     /* touched only on this loop's thread */
    atomic_uint nconns;
    struct event *deadline;
};

struct loops {
    unsigned n;
    atomic_uint next;
    struct loop *v;
};

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

struct loops *loops_start(unsigned n)
{
    struct loops *ls = calloc(1, sizeof(*ls));
    if (!ls || !(ls->v = calloc(n, sizeof(*ls->v)))) {
        free(ls);
        return NULL;
    }
    ls->n = n;
    for (unsigned i = 0; i < n; i++) {
        struct loop *l = &ls->v[i];
        l->base = event_base_new();
        if (!l->base || pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            loops_stop(ls, 0);
            loops_free(ls);
            return NULL;
        }
        l->started = true;
    }
    return ls;
}

struct loop *loops_pick(struct loops *ls)
{
    return &ls->v[atomic_fetch_add(&ls->next, 1) % ls->n];
}

struct event_base *loop_base(struct loop *l)
{
    return l->base;
}

struct posted {
    loop_fn fn;
    void *arg;
};

static void posted_cb(evutil_socket_t fd, short what, void *arg)
{
    struct posted p = *(struct posted *)arg;
    free(arg);
    p.fn(p.arg);
}

bool loop_post(struct loop *l, loop_fn fn, void *arg)
{
    struct posted *p = malloc(sizeof(*p));
    if (!p)
        return false;
    p->fn = fn;
    p->arg = arg;
    if (event_base_once(l->base, -1, EV_TIMEOUT, posted_cb, p, NULL) != 0) {
        free(p);
        return false;
    }
    return true;
}

struct loop_node *loop_conn_add(struct loop *l, struct conn *c)
{
    struct loop_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->conn = c;
    n->next = l->conns;
    if (l->conns)
        l->conns->prev = n;
    l->conns = n;
    atomic_fetch_add(&l->nconns, 1);
    return n;
}

void loop_conn_del(struct loop *l, struct loop_node *n)
{
    if (n) {
        if (n->prev)
            n->prev->next = n->next;
        else
            l->conns = n->next;
        if (n->next)
            n->next->prev = n->prev;
        free(n);
        atomic_fetch_sub(&l->nconns, 1);
    }
    if (l->stopping && l->conns == NULL)
        event_base_loopexit(l->base, NULL);
}

static void cut_all(evutil_socket_t fd, short what, void *arg)
{
    struct loop *l = arg;
    while (l->conns)
        conn_close(l->conns->conn, "server_stop");
    event_base_loopexit(l->base, NULL);
}

/* On the loop's thread: ask each connection to end. */
static void stop_on_loop(void *arg)
{
    struct loop *l = arg;
    l->stopping = true;
    struct loop_node *n = l->conns;
    while (n) {
        struct loop_node *next = n->next;   /* n may be freed */
        conn_shutdown(n->conn);
        n = next;
    }
    if (l->conns == NULL)
        event_base_loopexit(l->base, NULL);
}

void loops_stop(struct loops *ls, unsigned grace_secs)
{
    for (unsigned i = 0; i < ls->n; i++) {
        struct loop *l = &ls->v[i];
        if (!l->started)
            continue;
        struct timeval tv = {.tv_sec = grace_secs};
        l->deadline = evtimer_new(l->base, cut_all, l);
        if (l->deadline)
            evtimer_add(l->deadline, &tv);
        if (!loop_post(l, stop_on_loop, l))
            event_base_loopexit(l->base, NULL);
    }
    for (unsigned i = 0; i < ls->n; i++)
        if (ls->v[i].started) {
            pthread_join(ls->v[i].thread, NULL);
            ls->v[i].started = false;
        }
}

void loops_free(struct loops *ls)
{
    if (!ls)
        return;
    for (unsigned i = 0; i < ls->n; i++) {
        struct loop *l = &ls->v[i];
        if (!l->base)
            continue;
        if (l->deadline)
            event_free(l->deadline);
        l->deadline = NULL;
        /* Run job completions queued after the loop stopped. */
        for (int k = 0; k < 8; k++)
            event_base_loop(l->base, EVLOOP_NONBLOCK);
        event_base_free(l->base);
    }
    free(ls->v);
    free(ls);
}
