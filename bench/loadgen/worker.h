/* worker.h — connection slots, the per-thread workers that run them, the
 * run shared by all threads, and the interface between a worker and a
 * protocol script (pop3.c, smtp.c). */
#ifndef LG_WORKER_H
#define LG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "conn.h"
#include "loop.h"
#include "opts.h"
#include "stats.h"
#include "users.h"

struct lg_worker;
struct lg_run;

/* One connection slot: runs sessions back to back. */
struct lg_slot {
    struct lg_conn conn;
    struct lg_tnode backoff;        /* pause after a failed session */
    struct lg_worker *w;
    const struct lg_user *user;
    SSL_SESSION *tls_sess;          /* --tls-resume: offered next time */
    struct lg_slot *next_restart;
    uint64_t t0;                    /* session start, us */
    uint64_t t_mark;                /* smtp: end of DATA sent */
    uint64_t lat;                   /* session latency, 0 = not yet */
    struct lg_ml ml;
    uint32_t n, i;                  /* pop3: messages, current; smtp: message */
    uint32_t idx;                   /* global slot number */
    unsigned char step, in_ml, parked, queued, closing;
};

/* A protocol script. */
struct lg_scen {
    const struct lg_conn_ops *ops;
    int (*start)(struct lg_slot *s);    /* -1: immediate failure (conn why) */
    void (*resume)(struct lg_slot *s);  /* pop3-idle: after the hold */
};

extern const struct lg_scen lg_pop3_scen;
extern const struct lg_scen lg_smtp_scen;
/* smtp-submit: builds the shared body lines; -1 with a message on stderr. */
int lg_smtp_prepare(struct lg_run *r);

/* What all threads share. */
struct lg_run {
    const struct lg_opts *o;
    const struct lg_users *users;
    const struct lg_scen *scen;
    SSL_CTX *ctx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t t_start, t_end;        /* us; t_end: end of the --duration */
    atomic_uint_fast64_t started;   /* --sessions: sessions started */
    char *body;                     /* smtp: body lines, shared */
    size_t body_cap;
    uint64_t mid_tag;               /* smtp: makes Message-IDs unique */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n_ready, n_done;       /* workers ready (pop3-idle) / finished */
    uint64_t t_ready, t_done;
    struct lg_worker **workers;
    unsigned nworkers;
};

enum { LG_PHASE_RUN, LG_PHASE_CONNECT, LG_PHASE_HOLD, LG_PHASE_AFTER };

struct lg_worker {
    struct lg_run *run;
    struct lg_loop loop;
    struct lg_tlist t_reply, t_linger, t_backoff;
    struct lg_conn_env env;
    struct lg_slot *slots;
    unsigned nslots;
    unsigned active;                /* sessions in flight */
    unsigned backing_off;           /* slots pausing after a failure */
    unsigned opened, settled;       /* pop3-idle: started / parked or failed */
    int phase;
    struct lg_slot *restart;        /* slots whose session ended */
    int go_fd;                      /* pop3-idle: main says "hold is over" */
    struct lg_io go_io;
    uint64_t ready_sessions, ready_errors;  /* pop3-idle: at the ready line */
    unsigned ready_nsamples;
    char ready_samples[LG_MAX_SAMPLES][LG_SAMPLE_LEN];
    atomic_uint_fast64_t progress;  /* sessions ended (pop3-idle: logged in) */
    uint32_t msg_seq;               /* smtp: Message-ID counter */
    unsigned id;
    time_t date_sec;                /* smtp: cached Date header */
    char date[48];
    pthread_t th;
    struct lg_stats st;
};

struct lg_worker *lg_worker_new(struct lg_run *r, unsigned id, unsigned first,
                                unsigned nslots);
void lg_worker_free(struct lg_worker *w);
int lg_worker_spawn(struct lg_worker *w);
/* pop3-idle: ends the hold (called from the main thread). */
void lg_worker_go(struct lg_worker *w);

/* Services for scripts. */
static inline const struct lg_opts *lg_slot_opts(const struct lg_slot *s)
{
    return s->w->run->o;
}
static inline uint64_t lg_slot_now(const struct lg_slot *s)
{
    return s->w->loop.now;
}
/* Fails the session: error sample "SCENARIO: STEP: REASON" (step may be
 * NULL), reset. */
void lg_slot_fail(struct lg_slot *s, const char *step, const char *reason, size_t len);
/* The connection failed (on_fail): an error, or the end of a session
 * that was waiting for the server to close. */
void lg_slot_conn_failed(struct lg_slot *s, const char *step);
/* Final reply received: latency taken; wait briefly for the server's close. */
void lg_slot_replied(struct lg_slot *s);
/* pop3-idle: logged in, now idle until the hold ends. */
void lg_slot_parked(struct lg_slot *s);

#endif
