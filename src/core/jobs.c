/* jobs.c — a fixed pool of worker threads fed by one FIFO queue. Completion
 * goes back to the submitting loop with event_base_once(), which libevent
 * makes thread safe once evthread_use_pthreads() has been called. */
#include "core/jobs.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

struct job {
    struct job *next;
    struct event_base *origin;
    jobs_fn work, done;
    void *arg;
};

struct jobs {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    bool stopping;
    unsigned n;
    pthread_t *threads;
};

static void job_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    j->done(j->arg);
    free(j);
}

static struct job *next_job(struct jobs *pool)
{
    pthread_mutex_lock(&pool->lock);
    while (!pool->head && !pool->stopping)
        pthread_cond_wait(&pool->cond, &pool->lock);
    struct job *j = pool->head;
    if (j) {
        pool->head = j->next;
        if (!pool->head)
            pool->tail = NULL;
    }
    pthread_mutex_unlock(&pool->lock);
    return j;
}

static void *worker_main(void *arg)
{
    struct jobs *pool = arg;
    struct job *j;
    while ((j = next_job(pool)) != NULL) {
        j->work(j->arg);
        if (!j->done || !j->origin ||
            event_base_once(j->origin, -1, EV_TIMEOUT, job_done_cb, j, NULL) != 0) {
            if (j->done)
                j->done(j->arg); /* no loop to return to: finish here */
            free(j);
        }
    }
    return NULL;
}

struct jobs *jobs_start(unsigned n)
{
    struct jobs *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->threads = calloc(n, sizeof(*pool->threads));
    if (!pool->threads) {
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    for (; pool->n < n; pool->n++)
        if (pthread_create(&pool->threads[pool->n], NULL, worker_main, pool) != 0)
            break;
    if (pool->n == 0) {
        jobs_stop(pool);
        return NULL;
    }
    return pool;
}

bool jobs_submit(struct jobs *pool, struct event_base *origin, jobs_fn work,
                 jobs_fn done, void *arg)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return false;
    *j = (struct job){.origin = origin, .work = work, .done = done, .arg = arg};
    pthread_mutex_lock(&pool->lock);
    if (pool->tail)
        pool->tail->next = j;
    else
        pool->head = j;
    pool->tail = j;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return true;
}

void jobs_stop(struct jobs *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->cond);
    free(pool->threads);
    free(pool);
}

struct later_call {
    jobs_fn fn;
    void *arg;
};

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    struct later_call c = *(struct later_call *)arg;
    (void)fd;
    (void)what;
    free(arg);
    c.fn(c.arg);
}

void jobs_later(struct event_base *base, uint64_t delay_ms, jobs_fn fn, void *arg)
{
    struct later_call *c = delay_ms && base ? malloc(sizeof(*c)) : NULL;
    if (c) {
        struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                             .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000};
        *c = (struct later_call){fn, arg};
        if (event_base_once(base, -1, EV_TIMEOUT, later_cb, c, &tv) == 0)
            return;
        free(c);
    }
    fn(arg);
}
