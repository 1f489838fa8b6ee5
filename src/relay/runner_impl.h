/* runner_impl.h — what runner.c (the loop side: scheduling, DNS, SMTP
 * transactions) and runner_work.c (the worker side: scanning the queue,
 * recording outcomes, notices) share. Not a public interface. */
#ifndef POBOX_RUNNER_IMPL_H
#define POBOX_RUNNER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mail/queue.h"

struct config;

#define RUNNER_MAX_RCPTS 100    /* recipients of one transaction */

/* queue_rcpt.last_error is written in the form relay_bounce_describe()
 * (relay/bounce.h) reads back for the DSN. */

/* One SMTP transaction to do: the due recipients of one message that share
 * a destination domain. */
struct runner_task {
    struct runner_task *next;
    char id[QUEUE_ID_LEN + 1];
    char domain[256];
    struct queue_entry entry;       /* as read when the task was made */
    size_t idx[RUNNER_MAX_RCPTS];   /* indices into entry.rcpts */
    size_t n;
    /* outcomes, filled on the loop */
    int code[RUNNER_MAX_RCPTS];     /* 2xx/4xx/5xx, 0 = temporary failure */
    char status[RUNNER_MAX_RCPTS][12];
    char diag[RUNNER_MAX_RCPTS][512];
    char remote_mta[256];
    char tls[128];                  /* "TLSv1.3 ..." or "" */
    bool peer_dsn;                  /* the peer took over DSN duties */
};

/* Worker side. Handles what needs no network (expiry, loops, delay notices,
 * finished entries) and returns the transactions due now, skipping the IDs
 * in busy (n_busy of them). */
struct runner_task *runner_scan(const struct config *cfg, char (*busy)[QUEUE_ID_LEN + 1],
                                size_t n_busy);
/* Records the outcomes of task, sends what notices they call for, and
 * removes the entry when every recipient is done. */
void runner_record(const struct config *cfg, struct runner_task *task);
void runner_task_free(struct runner_task *t);

#endif
