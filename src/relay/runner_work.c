/* runner_work.c — the queue runner's file work, on the worker pool:
 * scanning the queue for due recipients, expiry, mail loops, delay
 * notices, recording each transaction's outcome, bounces, success reports,
 * and removing finished entries. Every outcome is written before it is
 * acted on, so a crash repeats at most the last transaction. */
#include "relay/runner_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/strutil.h"
#include "relay/bounce.h"

#define HEADER_SCAN_MAX (256 * 1024)

void runner_task_free(struct runner_task *t)
{
    while (t) {
        struct runner_task *next = t->next;
        queue_entry_free(&t->entry);
        free(t);
        t = next;
    }
}

static void set_error(struct queue_rcpt *r, const char *text)
{
    char *dup = strdup(text);
    if (!dup)
        return;
    free(r->last_error);
    r->last_error = dup;
}

/* ---- notices -------------------------------------------------------------- */

static bool wants(const struct queue_rcpt *r, unsigned bit)
{
    return r->notify ? (r->notify & bit) != 0 : bit != DSN_NOTIFY_SUCCESS;
}

/* One notice of kind about every recipient in state st not yet reported
 * (for DELAY: pending ones, once). Marks them reported (not for DELAY). */
static void send_notice(const struct config *cfg, struct queue_entry *e,
                        enum relay_dsn_kind kind, enum queue_state st,
                        unsigned bit, bool *changed)
{
    size_t cap = e->n_rcpts ? e->n_rcpts : 1;
    struct relay_dsn_rcpt dsn[cap];
    char (*bufs)[600] = calloc(cap, 600);
    char (*stat)[16] = calloc(cap, 16);
    size_t n = 0;
    if (!bufs || !stat) {
        free(bufs);
        free(stat);
        return;
    }
    int64_t now = time(NULL);
    for (size_t i = 0; i < e->n_rcpts; i++) {
        struct queue_rcpt *r = &e->rcpts[i];
        if (r->state != st || (kind != RELAY_DSN_DELAY && r->reported) ||
            (kind == RELAY_DSN_DELAY && r->attempts == 0))
            continue;
        if (kind != RELAY_DSN_DELAY) {
            r->reported = true;
            *changed = true;
        }
        if (!wants(r, bit))
            continue;
        dsn[n] = (struct relay_dsn_rcpt){
            .address = r->address, .orcpt = r->orcpt,
            .action = kind == RELAY_DSN_FAILURE ? RELAY_DSN_FAILED
                      : kind == RELAY_DSN_DELAY ? RELAY_DSN_DELAYED : RELAY_DSN_RELAYED,
            .last_attempt = now, .retry_until = e->created + cfg->max_queue_time,
        };
        relay_bounce_describe(r->last_error, bufs[n], stat[n], &dsn[n]);
        n++;
    }
    if (n && relay_bounce(cfg, e, kind, dsn, n) != 0)
        log_error("event=notice_failed id=%s error=\"%s\"", e->id, strerror(errno));
    free(bufs);
    free(stat);
}

/* ---- expiry, loops, delay ----------------------------------------------- */

static unsigned count_received(const struct config *cfg, const char *id)
{
    int fd = queue_open_msg(cfg, id);
    if (fd < 0)
        return 0;
    char *buf = malloc(HEADER_SCAN_MAX + 1);
    ssize_t n = buf ? pread(fd, buf, HEADER_SCAN_MAX, 0) : -1;
    close(fd);
    unsigned count = 0;
    for (ssize_t i = 0; i + 9 < n; i++) {
        bool line_start = i == 0 || buf[i - 1] == '\n';
        if (line_start && buf[i] == '\n')
            break;  /* end of the header */
        if (line_start && strncasecmp(buf + i, "Received:", 9) == 0)
            count++;
    }
    free(buf);
    return count;
}

static void fail_pending(struct queue_entry *e, const char *why, bool *changed)
{
    for (size_t i = 0; i < e->n_rcpts; i++)
        if (e->rcpts[i].state == QUEUE_PENDING) {
            e->rcpts[i].state = QUEUE_FAILED;
            set_error(&e->rcpts[i], why);
            *changed = true;
        }
}

static bool first_look(const struct queue_entry *e)
{
    for (size_t i = 0; i < e->n_rcpts; i++)
        if (e->rcpts[i].attempts)
            return false;
    return true;
}

/* What needs no network; true when the entry is finished and removed. */
static bool housekeeping(const struct config *cfg, struct queue_entry *e)
{
    bool changed = false;
    int64_t now = time(NULL);
    char why[160];
    if (first_look(e) && count_received(cfg, e->id) > cfg->max_hops) {
        snprintf(why, sizeof why, "X-Pobox; 5.4.6 mail loop: more than %u Received: lines",
                 cfg->max_hops);
        fail_pending(e, why, &changed);
    }
    if (now - e->created >= (int64_t)cfg->max_queue_time)
        fail_pending(e, "X-Pobox; 4.4.7 delivery time expired", &changed);
    send_notice(cfg, e, RELAY_DSN_FAILURE, QUEUE_FAILED, DSN_NOTIFY_FAILURE, &changed);
    send_notice(cfg, e, RELAY_DSN_SUCCESS, QUEUE_SENT, DSN_NOTIFY_SUCCESS, &changed);
    bool pending = false, tried = false;
    for (size_t i = 0; i < e->n_rcpts; i++) {
        pending |= e->rcpts[i].state == QUEUE_PENDING;
        tried |= e->rcpts[i].state == QUEUE_PENDING && e->rcpts[i].attempts > 0;
    }
    if (tried && !e->warned && now - e->created >= (int64_t)cfg->delay_warning) {
        send_notice(cfg, e, RELAY_DSN_DELAY, QUEUE_PENDING, DSN_NOTIFY_DELAY, &changed);
        e->warned = now;
        changed = true;
    }
    if (!pending) {
        queue_remove(cfg, e->id);
        log_info("event=queue_done id=%s", e->id);
        return true;
    }
    if (changed && queue_update(cfg, e) != 0)
        log_error("event=queue_update_failed id=%s error=\"%s\"", e->id, strerror(errno));
    return false;
}

/* ---- scanning ------------------------------------------------------------------ */

struct scan {
    const struct config *cfg;
    char (*busy)[QUEUE_ID_LEN + 1];
    size_t n_busy;
    struct runner_task *tasks;
};

static const char *domain_of(const struct config *cfg, const char *address)
{
    const char *at = strrchr(address, '@');
    return *cfg->relay_smarthost ? "" : at ? at + 1 : "";
}

/* The task for domain, made on first use. */
static struct runner_task *task_for(struct scan *sc, const struct queue_entry *e,
                                    const char *domain)
{
    for (struct runner_task *t = sc->tasks; t; t = t->next)
        if (strcmp(t->id, e->id) == 0 && strcasecmp(t->domain, domain) == 0 &&
            t->n < RUNNER_MAX_RCPTS)
            return t;
    struct runner_task *t = calloc(1, sizeof *t);
    if (!t || queue_read(sc->cfg, e->id, &t->entry) != 0) {
        free(t);
        return NULL;
    }
    memcpy(t->id, e->id, sizeof t->id);
    snprintf(t->domain, sizeof t->domain, "%s", domain);
    t->next = sc->tasks;
    sc->tasks = t;
    return t;
}

static bool is_busy(const struct scan *sc, const char *id)
{
    for (size_t i = 0; i < sc->n_busy; i++)
        if (strcmp(sc->busy[i], id) == 0)
            return true;
    return false;
}

static int scan_one(const char *id, void *arg)
{
    struct scan *sc = arg;
    struct queue_entry e;
    if (is_busy(sc, id) || queue_read(sc->cfg, id, &e) != 0)
        return 0;
    if (!housekeeping(sc->cfg, &e)) {
        int64_t now = time(NULL);
        for (size_t i = 0; i < e.n_rcpts; i++) {
            const struct queue_rcpt *r = &e.rcpts[i];
            if (r->state != QUEUE_PENDING || r->next_attempt > now)
                continue;
            struct runner_task *t = task_for(sc, &e, domain_of(sc->cfg, r->address));
            if (t)
                t->idx[t->n++] = i;
        }
    }
    queue_entry_free(&e);
    return 0;
}

struct runner_task *runner_scan(const struct config *cfg, char (*busy)[QUEUE_ID_LEN + 1],
                                size_t n_busy)
{
    struct scan sc = {.cfg = cfg, .busy = busy, .n_busy = n_busy};
    queue_list(cfg, scan_one, &sc);
    return sc.tasks;
}

/* ---- recording -------------------------------------------------------------- */

static void record_one(const struct config *cfg, struct queue_entry *e,
                       const struct runner_task *t, size_t k, int64_t now)
{
    size_t i = t->idx[k];
    if (i >= e->n_rcpts || strcmp(e->rcpts[i].address, t->entry.rcpts[i].address) != 0)
        return;
    struct queue_rcpt *r = &e->rcpts[i];
    if (r->state != QUEUE_PENDING)
        return;
    set_error(r, t->diag[k]);
    if (t->code[k] >= 200 && t->code[k] < 300) {
        r->state = QUEUE_SENT;
        r->reported = t->peer_dsn;  /* RFC 3461 5.2: the peer reports now */
    } else if (t->code[k] >= 500) {
        r->state = QUEUE_FAILED;
    } else {
        r->attempts++;
        r->next_attempt = now + config_retry_delay(cfg, r->attempts);
    }
    char rcpt[300], reply[600];
    str_log_safe(rcpt, sizeof rcpt, r->address, strlen(r->address));
    str_log_quoted(reply, sizeof reply, t->diag[k], strlen(t->diag[k]));
    char tls[160];
    str_log_safe(tls, sizeof tls, t->tls, strlen(t->tls));
    log_info("event=delivery id=%s rcpt=<%s> relay=%s tls=%s code=%d status=%s "
             "result=%s reply=\"%s\"", e->id, rcpt,
             t->remote_mta[0] ? t->remote_mta : "-", t->tls[0] ? tls : "none",
             t->code[k], t->status[k][0] ? t->status[k] : "-",
             r->state == QUEUE_SENT ? "sent" : r->state == QUEUE_FAILED ? "bounced"
                                                                         : "deferred",
             reply);
}

void runner_record(const struct config *cfg, struct runner_task *task)
{
    struct queue_entry e;
    if (queue_read(cfg, task->id, &e) != 0)
        return; /* deleted meanwhile (pobox queue delete) */
    int64_t now = time(NULL);
    for (size_t k = 0; k < task->n; k++)
        record_one(cfg, &e, task, k, now);
    if (queue_update(cfg, &e) != 0)
        log_error("event=queue_update_failed id=%s error=\"%s\"", e.id, strerror(errno));
    housekeeping(cfg, &e);
    queue_entry_free(&e);
}
