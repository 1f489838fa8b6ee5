/* jobs.h — the worker pool for blocking or CPU-heavy work (password checks,
 * opening and committing maildrops, deliveries).
 *
 * A job's work() runs on a worker thread; its done() then runs on the event
 * loop that submitted it, so protocol code never takes locks. A session that
 * may end while its job runs keeps itself alive with a reference the done()
 * callback releases (see pop3/session.c). */
#ifndef POBOX_JOBS_H
#define POBOX_JOBS_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct jobs;

typedef void (*jobs_fn)(void *arg);

/* Starts n worker threads. */
struct jobs *jobs_start(unsigned n);
/* Queues work; done runs later on origin (an event_base made notifiable by
 * evthread_use_pthreads). Returns false when out of memory. */
bool jobs_submit(struct jobs *pool, struct event_base *origin, jobs_fn work,
                 jobs_fn done, void *arg);
/* Runs fn(arg) on base's loop after delay_ms (delayed replies after failed
 * logins); at once, in the caller, when delay_ms is 0 or no timer can be
 * set. */
void jobs_later(struct event_base *base, uint64_t delay_ms, jobs_fn fn, void *arg);
/* Finishes queued jobs, joins the threads and frees the pool. Pending done()
 * callbacks are still delivered by their loops if those keep running. */
void jobs_stop(struct jobs *pool);

#endif
