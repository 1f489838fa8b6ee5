/* loop.h — one thread's epoll event loop with O(1) timers: each timer list
 * has a fixed duration, so arming appends at the tail and the list stays
 * sorted by deadline. */
#ifndef LG_LOOP_H
#define LG_LOOP_H

#include <stdint.h>

/* Something registered with epoll: data.ptr points at it. */
struct lg_io {
    void (*on_event)(struct lg_io *io, uint32_t events);
};

struct lg_tnode {
    struct lg_tnode *prev, *next;   /* NULL when not armed */
    uint64_t deadline;              /* us, monotonic */
    void (*fire)(struct lg_tnode *t);
};

struct lg_tlist {
    struct lg_tnode head;           /* circular list sentinel */
    uint64_t dur_us;
};

#define LG_LOOP_MAX_TLISTS 4

struct lg_loop {
    int epfd;
    int stop;
    uint64_t now;                   /* us, refreshed after each wait */
    uint64_t tick_at;               /* next call of tick, 0 = none */
    struct lg_tlist *lists[LG_LOOP_MAX_TLISTS];
    unsigned nlists;
    void (*tick)(void *arg);        /* at tick_at */
    void (*after)(void *arg);       /* after every batch of events */
    void *arg;
};

uint64_t lg_clock_us(void);

int lg_loop_init(struct lg_loop *l);
void lg_loop_fini(struct lg_loop *l);
/* Registers fd edge-triggered for input and output. */
int lg_loop_add(struct lg_loop *l, int fd, struct lg_io *io);
void lg_loop_run(struct lg_loop *l);

void lg_tlist_init(struct lg_loop *l, struct lg_tlist *list, uint64_t dur_us);
/* (Re)arms t to fire dur_us from now. */
void lg_tlist_arm(struct lg_tlist *list, struct lg_tnode *t, uint64_t now);
void lg_tnode_disarm(struct lg_tnode *t);

#endif
