/* runner.c — the queue runner's network side, on one event loop: a scan of
 * the queue every few seconds (on the worker pool), a bounded number of
 * deliveries at a time, each one DNS route (MX or smarthost) and SMTP
 * transactions over its addresses in order until one gives verdicts; the
 * verdicts are recorded on the worker pool (runner_work.c). */
#include "relay/runner.h"

#include <event2/event.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "relay/client.h"
#include "relay/dns.h"
#include "relay/runner_impl.h"

#define SCAN_SECONDS 2
#define MAX_ACTIVE 16            /* transactions at a time, in all */
#define MAX_PER_DOMAIN 4         /* ... and to one destination domain */
#define DNS_TIMEOUT_MS 10000
#define STOP_WAIT_MS 10000

struct relay_runner {
    struct event_base *base;
    struct jobs *jobs;
    struct relay_dns *dns;
    SSL_CTX *ssl;
    struct event *timer;
    bool scanning, stopping;
    unsigned outstanding;           /* jobs whose done() is still to come */
    struct delivery *active;        /* list */
    unsigned n_active;
    struct runner_task *waiting;    /* due, waiting for a slot */
};

struct delivery {
    struct delivery *next;
    struct relay_runner *r;
    struct runner_task *task;
    struct config *cfg;
    struct relay_route *route;
    size_t host, addr;
    bool plain_retry;               /* opportunistic TLS failed: once without */
    struct relay_client *client;
    int fd;
    char password[512];
};

static void start_waiting(struct relay_runner *r);

/* ---- jobs --------------------------------------------------------------------- */

struct scan_job {
    struct relay_runner *r;
    struct config *cfg;
    char (*busy)[QUEUE_ID_LEN + 1];
    size_t n_busy;
    struct runner_task *found;
};

static void scan_work(void *arg)
{
    struct scan_job *j = arg;
    j->found = runner_scan(j->cfg, j->busy, j->n_busy);
}

static void scan_done(void *arg)
{
    struct scan_job *j = arg;
    struct relay_runner *r = j->r;
    r->outstanding--;
    r->scanning = false;
    if (r->stopping) {
        runner_task_free(j->found);
    } else {
        while (j->found) {
            struct runner_task *t = j->found;
            j->found = t->next;
            t->next = r->waiting;
            r->waiting = t;
        }
        start_waiting(r);
    }
    config_unref(j->cfg);
    free(j->busy);
    free(j);
}

/* The IDs being delivered or waiting: the scan leaves them alone. */
static size_t busy_ids(struct relay_runner *r, char (**out)[QUEUE_ID_LEN + 1])
{
    size_t n = r->n_active;
    for (struct runner_task *t = r->waiting; t; t = t->next)
        n++;
    *out = calloc(n ? n : 1, sizeof **out);
    size_t i = 0;
    for (struct delivery *d = r->active; d && *out; d = d->next)
        memcpy((*out)[i++], d->task->id, QUEUE_ID_LEN + 1);
    for (struct runner_task *t = r->waiting; t && *out; t = t->next)
        memcpy((*out)[i++], t->id, QUEUE_ID_LEN + 1);
    return *out ? n : 0;
}

static void scan_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay_runner *r = arg;
    (void)fd;
    (void)what;
    if (r->scanning || r->stopping)
        return;
    struct scan_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->r = r;
    j->cfg = config_current();
    j->n_busy = busy_ids(r, &j->busy);
    r->scanning = true;
    r->outstanding++;
    if (!j->busy || !jobs_submit(r->jobs, r->base, scan_work, scan_done, j)) {
        r->scanning = false;
        r->outstanding--;
        config_unref(j->cfg);
        free(j->busy);
        free(j);
    }
}

/* ---- one delivery ------------------------------------------------------------- */

static void delivery_free(struct delivery *d)
{
    struct relay_runner *r = d->r;
    for (struct delivery **p = &r->active; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    r->n_active--;
    if (d->fd >= 0)
        close(d->fd);
    relay_route_free(d->route);
    runner_task_free(d->task);
    config_unref(d->cfg);
    memset(d->password, 0, sizeof d->password);
    free(d);
}

static void record_work(void *arg)
{
    struct delivery *d = arg;
    runner_record(d->cfg, d->task);
}

static void record_done(void *arg)
{
    struct delivery *d = arg;
    struct relay_runner *r = d->r;
    r->outstanding--;
    delivery_free(d);
    if (!r->stopping)
        start_waiting(r);
}

/* Every recipient of the task gets the same verdict of our own (the form
 * runner_impl.h describes for queue_rcpt.last_error). */
static void verdict_all(struct delivery *d, int code, const char *status,
                        const char *text)
{
    for (size_t k = 0; k < d->task->n; k++) {
        d->task->code[k] = code;
        snprintf(d->task->status[k], sizeof d->task->status[k], "%s", status);
        snprintf(d->task->diag[k], sizeof d->task->diag[k], "X-Pobox; %s %.480s",
                 status, text);
    }
}

static void finish(struct delivery *d)
{
    struct relay_runner *r = d->r;
    d->client = NULL;
    if (r->stopping) {
        delivery_free(d);
        return;
    }
    r->outstanding++;
    if (!jobs_submit(r->jobs, r->base, record_work, record_done, d)) {
        r->outstanding--;
        delivery_free(d);
    }
}

static void try_address(struct delivery *d);

static void take_results(struct delivery *d, const struct relay_client_result *res)
{
    struct runner_task *t = d->task;
    t->peer_dsn = res->peer_dsn;
    snprintf(t->tls, sizeof t->tls, "%s", res->tls_used ? res->tls_info : "");
    for (size_t k = 0; k < t->n; k++) {
        const struct relay_client_rcpt *c = &res->rcpts[k];
        bool own = !c->code && !res->remote;
        t->code[k] = c->code ? c->code
                     : res->temp ? 0 : (res->session_code ? res->session_code : 554);
        snprintf(t->status[k], sizeof t->status[k], "%s", c->code ? c->status : res->status);
        if (own)
            snprintf(t->diag[k], sizeof t->diag[k], "X-Pobox; %s %.480s", res->status,
                     res->diagnostic);
        else
            snprintf(t->diag[k], sizeof t->diag[k], "%.200s said: %.300s", t->remote_mta,
                     c->code ? c->reply : res->diagnostic);
    }
}

static void client_cb(void *arg, const struct relay_client_result *res)
{
    struct delivery *d = arg;
    d->client = NULL;
    const struct relay_mx_host *h = &d->route->hosts[d->host];
    snprintf(d->task->remote_mta, sizeof d->task->remote_mta, "%.180s[%.60s]", h->name,
             res->remote_ip);
    if (res->failed && res->tls_failed && !d->plain_retry && !*d->cfg->relay_smarthost) {
        d->plain_retry = true;      /* RFC 7435: opportunistic, so again in clear */
        try_address(d);
        return;
    }
    if (res->failed && res->temp && res->n_delivered == 0 && !res->remote) {
        d->plain_retry = false;
        if (++d->addr >= h->n_addrs) {
            d->addr = 0;
            d->host++;
        }
        if (d->host < d->route->n_hosts) {
            try_address(d);
            return;
        }
    }
    take_results(d, res);
    finish(d);
}

static enum relay_client_tls tls_mode(const struct delivery *d)
{
    const struct config *cfg = d->cfg;
    if (d->plain_retry)
        return RELAY_TLS_NONE;
    if (!*cfg->relay_smarthost)
        return RELAY_TLS_OPPORTUNISTIC;
    return strcmp(cfg->smarthost_tls, "implicit") == 0 ? RELAY_TLS_IMPLICIT
           : strcmp(cfg->smarthost_tls, "none") == 0   ? RELAY_TLS_NONE
                                                        : RELAY_TLS_REQUIRED;
}

static void try_address(struct delivery *d)
{
    struct runner_task *t = d->task;
    const struct relay_mx_host *h = &d->route->hosts[d->host];
    const char *rcpts[RUNNER_MAX_RCPTS], *orcpt[RUNNER_MAX_RCPTS];
    unsigned notify[RUNNER_MAX_RCPTS];
    for (size_t k = 0; k < t->n; k++) {
        const struct queue_rcpt *q = &t->entry.rcpts[t->idx[k]];
        rcpts[k] = q->address;
        orcpt[k] = q->orcpt;
        notify[k] = q->notify;
    }
    struct relay_client_params p = {
        .base = d->r->base, .addr = (const struct sockaddr *)&h->addrs[d->addr],
        .addrlen = h->addrlens[d->addr], .host_name = h->name,
        .helo = d->cfg->hostname, .tls = tls_mode(d), .ssl_ctx = d->r->ssl,
        .auth_user = *d->cfg->smarthost_user ? d->cfg->smarthost_user : NULL,
        .auth_password = d->password, .sender = t->entry.sender,
        .rcpts = rcpts, .notify = notify, .orcpt = orcpt, .n_rcpts = t->n,
        .ret = t->entry.ret, .envid = t->entry.envid, .smtputf8 = t->entry.smtputf8,
        .body_8bit = t->entry.body_8bit, .msg_fd = d->fd, .msg_size = t->entry.size,
    };
    d->client = relay_client_send(&p, client_cb, d);
    if (!d->client) {
        verdict_all(d, 0, "4.3.0", "out of memory");
        finish(d);
    }
}

static void dns_cb(void *arg, enum relay_dns_status st, struct relay_route *route,
                   const char *why)
{
    struct delivery *d = arg;
    char diag[400];
    if (d->r->stopping) {
        relay_route_free(route);
        delivery_free(d);
        return;
    }
    d->route = route;
    switch (st) {
    case RELAY_DNS_OK:
        try_address(d);
        return;
    case RELAY_DNS_NULL_MX:
        verdict_all(d, 556, "5.1.10", "the domain accepts no mail (null MX)");
        break;
    case RELAY_DNS_NO_DOMAIN:
        snprintf(diag, sizeof diag, "host or domain name not found: %s", why);
        verdict_all(d, 550, "5.1.2", diag);
        break;
    case RELAY_DNS_TEMP:
        snprintf(diag, sizeof diag, "DNS lookup failed for now: %s", why);
        verdict_all(d, 0, "4.4.3", diag);
        break;
    }
    finish(d);
}

/* The smarthost password: the first line of relay.smarthost_password_file. */
static void read_password(struct delivery *d)
{
    if (!*d->cfg->smarthost_password_file)
        return;
    FILE *f = fopen(d->cfg->smarthost_password_file, "r");
    if (f && fgets(d->password, sizeof d->password, f))
        d->password[strcspn(d->password, "\r\n")] = '\0';
    if (f)
        fclose(f);
}

static void start(struct relay_runner *r, struct runner_task *t)
{
    struct delivery *d = calloc(1, sizeof *d);
    if (!d) {
        runner_task_free(t);
        return;
    }
    t->next = NULL;
    d->r = r;
    d->task = t;
    d->cfg = config_current();
    d->fd = queue_open_msg(d->cfg, t->id);
    d->next = r->active;
    r->active = d;
    r->n_active++;
    read_password(d);
    bool ok = *d->cfg->relay_smarthost
                  ? relay_dns_host(r->dns, d->cfg->relay_smarthost, 25, dns_cb, d)
                  : relay_dns_route(r->dns, t->domain, (uint16_t)d->cfg->relay_port,
                                    dns_cb, d);
    if (d->fd < 0 || !ok) {
        verdict_all(d, 0, "4.3.0", "cannot start the delivery");
        finish(d);
    }
}

static unsigned active_to(const struct relay_runner *r, const char *domain)
{
    unsigned n = 0;
    for (const struct delivery *d = r->active; d; d = d->next)
        n += strcasecmp(d->task->domain, domain) == 0;
    return n;
}

/* Starts waiting tasks while there are free slots, in all and per domain. */
static void start_waiting(struct relay_runner *r)
{
    struct runner_task **p = &r->waiting;
    while (*p && r->n_active < MAX_ACTIVE && !r->stopping) {
        struct runner_task *t = *p;
        if (active_to(r, t->domain) >= MAX_PER_DOMAIN) {
            p = &t->next;
            continue;
        }
        *p = t->next;
        start(r, t);
    }
}

/* ---- start and stop ----------------------------------------------------------- */

struct relay_runner *relay_runner_start(struct event_base *base, struct jobs *jobs)
{
    struct relay_runner *r = calloc(1, sizeof *r);
    struct config *cfg = config_current();
    if (!r || !cfg)
        goto fail;
    r->base = base;
    r->jobs = jobs;
    r->dns = relay_dns_new(base, cfg->relay_resolver, DNS_TIMEOUT_MS);
    r->ssl = relay_client_ssl_ctx_new(NULL);
    r->timer = event_new(base, -1, EV_PERSIST, scan_cb, r);
    struct timeval tv = {.tv_sec = SCAN_SECONDS};
    if (!r->dns || !r->ssl || !r->timer || event_add(r->timer, &tv) != 0) {
        log_error("event=relay_failed error=\"cannot start the queue runner: %s\"",
                  strerror(errno));
        goto fail;
    }
    config_unref(cfg);
    scan_cb(-1, 0, r);      /* what a restart left in the queue, now */
    return r;
fail:
    config_unref(cfg);
    relay_runner_stop(r);
    return NULL;
}

/* Lets outstanding jobs come back, so nothing they hold is lost or leaked. */
static void drain(struct relay_runner *r)
{
    struct timeval tick = {.tv_usec = 100000};
    for (int waited = 0; r->outstanding && waited < STOP_WAIT_MS; waited += 100) {
        event_base_loopexit(r->base, &tick);
        event_base_dispatch(r->base);
    }
}

void relay_runner_stop(struct relay_runner *r)
{
    if (!r)
        return;
    r->stopping = true;
    if (r->timer)
        event_free(r->timer);
    for (struct delivery *d = r->active, *next; d; d = next) {
        next = d->next;
        if (d->client) {
            relay_client_cancel(d->client);
            d->client = NULL;
            delivery_free(d);
        }
    }
    relay_dns_free(r->dns);     /* pending lookups end in dns_cb: freed there */
    drain(r);
    runner_task_free(r->waiting);
    if (r->ssl)
        SSL_CTX_free(r->ssl);
    free(r);
}
