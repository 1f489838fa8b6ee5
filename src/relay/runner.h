/* runner.h — the queue runner inside `pobox serve`: finds due messages in
 * data_dir/queue (also those a crash or restart left), groups their
 * recipients by destination domain, delivers each group over SMTP (MX
 * lookups or relay.smarthost) on an event loop, records every outcome
 * durably, retries on the schedule, and sends bounces and delay notices. */
#ifndef POBOX_RUNNER_H
#define POBOX_RUNNER_H

struct event_base;
struct jobs;
struct relay_runner;

/* Starts on base (its loop thread runs every network step; file work goes
 * to the worker pool). NULL on failure (logged). */
struct relay_runner *relay_runner_start(struct event_base *base, struct jobs *jobs);
/* Cancels open transactions (their messages stay queued) and frees. Call on
 * base's thread before the worker pool stops. */
void relay_runner_stop(struct relay_runner *r);

#endif
