/* loop.h — the I/O threads: each runs one libevent loop and owns the
 * connections handed to it for their whole life, so protocol code needs no
 * locks. The acceptor hands new sockets over with loop_post(). */
#ifndef POBOX_LOOP_H
#define POBOX_LOOP_H

#include <stdbool.h>

struct event_base;
struct loop;
struct loops;
struct conn;

typedef void (*loop_fn)(void *arg);

struct loops *loops_start(unsigned n);
struct loop *loops_pick(struct loops *ls);           /* round robin */
struct event_base *loop_base(struct loop *l);
/* Runs fn(arg) on the loop's thread soon. Thread safe. */
bool loop_post(struct loop *l, loop_fn fn, void *arg);

/* Connection registry (called by net/conn.c on the loop's thread):
 * add returns a handle (NULL when out of memory) that del takes back. */
struct loop_node *loop_conn_add(struct loop *l, struct conn *c);
void loop_conn_del(struct loop *l, struct loop_node *node);

/* Asks every loop to end its connections (conn_shutdown), waits up to
 * grace_secs for them to finish, cuts the rest, and joins the threads. */
void loops_stop(struct loops *ls, unsigned grace_secs);
/* Delivers callbacks still queued (job completions) and frees everything.
 * Call after the worker pool has stopped. */
void loops_free(struct loops *ls);

#endif
