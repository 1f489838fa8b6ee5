/* server.h — `pobox serve`'s engine: binds the listeners, runs the I/O
 * threads and the worker pool, hands accepted sockets to the protocols,
 * enforces connection limits, reloads on SIGHUP and stops on SIGTERM. */
#ifndef POBOX_SERVER_H
#define POBOX_SERVER_H

#include <stdbool.h>
#include <sys/socket.h>

struct config;
struct event_base;
struct jobs;
struct tls;
struct limits;
struct loop;

/* What every session may use; the server owns it. */
struct server {
    struct jobs *jobs;
    struct tls *tls;        /* NULL when TLS could not be set up */
    struct limits *limits;
};

/* Runs on the chosen I/O thread; takes over fd (and its limit slot). */
typedef void (*server_accept_fn)(struct server *srv, struct loop *loop, int fd,
                                 const struct sockaddr *addr, bool implicit_tls);

struct server_service {
    const char *name;            /* "pop3", for logs and errors */
    char *const *addrs;          /* from the config */
    bool implicit_tls;
    server_accept_fn accept;
    const char *busy_reply;      /* sent in plaintext when over a limit */
};

/* Builds a new config for SIGHUP, or NULL (the error is logged). */
typedef struct config *(*server_reload_fn)(void *arg);

/* Work that runs beside the listeners on the main loop (the queue runner):
 * started once the worker pool runs, stopped before it stops. */
struct server_background {
    void *(*start)(struct event_base *base, struct jobs *jobs);
    void (*stop)(void *state);
};

/* Runs until SIGTERM/SIGINT. Returns the process exit code. bg may be NULL. */
int server_run(struct config *cfg, const struct server_service *svcs, size_t n,
               const struct server_background *bg, server_reload_fn reload,
               void *reload_arg);

#endif
