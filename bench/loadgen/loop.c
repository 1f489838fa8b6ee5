/* loop.c — the per-thread epoll loop: waits for events or the earliest
 * timer, dispatches events, fires expired timers, then runs the owner's
 * after-batch hook (session restarts) and tick. */
#include "loop.h"

#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LG_LOOP_BATCH 256

uint64_t lg_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int lg_loop_init(struct lg_loop *l)
{
    *l = (struct lg_loop){0};
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->now = lg_clock_us();
    return l->epfd < 0 ? -1 : 0;
}

void lg_loop_fini(struct lg_loop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
}

int lg_loop_add(struct lg_loop *l, int fd, struct lg_io *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
}

void lg_tlist_init(struct lg_loop *l, struct lg_tlist *list, uint64_t dur_us)
{
    list->head.prev = list->head.next = &list->head;
    list->dur_us = dur_us;
    if (l->nlists < LG_LOOP_MAX_TLISTS)
        l->lists[l->nlists++] = list;
}

void lg_tnode_disarm(struct lg_tnode *t)
{
    if (t->next == NULL)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

void lg_tlist_arm(struct lg_tlist *list, struct lg_tnode *t, uint64_t now)
{
    lg_tnode_disarm(t);
    t->deadline = now + list->dur_us;
    t->prev = list->head.prev;
    t->next = &list->head;
    list->head.prev->next = t;
    list->head.prev = t;
}

/* Milliseconds epoll may sleep: until the earliest deadline, rounded up. */
static int wait_ms(const struct lg_loop *l)
{
    uint64_t first = l->tick_at ? l->tick_at : UINT64_MAX;
    for (unsigned i = 0; i < l->nlists; i++) {
        const struct lg_tnode *h = &l->lists[i]->head;
        if (h->next != h && h->next->deadline < first)
            first = h->next->deadline;
    }
    if (first == UINT64_MAX)
        return -1;
    if (first <= l->now)
        return 0;
    uint64_t ms = (first - l->now + 999) / 1000;
    return ms > 60000 ? 60000 : (int)ms;
}

static void fire_expired(struct lg_loop *l)
{
    for (unsigned i = 0; i < l->nlists; i++) {
        struct lg_tnode *h = &l->lists[i]->head;
        while (h->next != h && h->next->deadline <= l->now) {
            struct lg_tnode *t = h->next;
            lg_tnode_disarm(t);
            t->fire(t);
        }
    }
}

void lg_loop_run(struct lg_loop *l)
{
    struct epoll_event evs[LG_LOOP_BATCH];
    while (!l->stop) {
        int n = epoll_wait(l->epfd, evs, LG_LOOP_BATCH, wait_ms(l));
        if (n < 0 && errno != EINTR)
            break;
        l->now = lg_clock_us();
        for (int i = 0; i < n; i++) {
            struct lg_io *io = evs[i].data.ptr;
            io->on_event(io, evs[i].events);
        }
        fire_expired(l);
        if (l->tick_at && l->tick_at <= l->now && l->tick) {
            l->tick_at = 0;
            l->tick(l->arg);
        }
        if (l->after)
            l->after(l->arg);
    }
}
