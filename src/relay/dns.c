/* dns.c — MX routing and smarthost lookups with c-ares on a libevent loop.
 *
 * The c-ares channel tells us which sockets it wants watched through its
 * socket state callback; each gets a persistent libevent event, and one
 * timer follows ares_timeout(). A request lives in a struct req: first the
 * MX query (ares_query), then one ares_getaddrinfo per host, all at once.
 * Its event is the request's deadline and later its completion: the user's
 * callback always runs from that event, so never inside relay_dns_route().
 * A request holds one reference per c-ares query in flight plus one until
 * its callback ran; a deadline may deliver while queries are still out, and
 * their answers then only drop their reference. */
#include "relay/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DNS_TYPE_CNAME 5
#define DNS_TYPE_MX 15
#define DNS_CLASS_IN 1
#define CNAME_HOPS 16

struct dns_sock {
    struct dns_sock *next;
    ares_socket_t fd;
    short what;
    struct event *ev;
};

struct req;

struct relay_dns {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;        /* ares_timeout() */
    struct dns_sock *socks;
    struct req *reqs;           /* every live request */
    unsigned timeout_ms;
    uint64_t rng;               /* xorshift64* state, seeded per instance */
    bool closing;
};

enum host_state { H_PENDING, H_OK, H_GONE, H_TEMP };

struct host_ctx {
    struct req *r;
    size_t i;
};

enum req_kind { K_MX, K_FALLBACK, K_HOST };

struct req {
    struct req *prev, *next;
    struct relay_dns *d;
    relay_dns_cb cb;
    void *arg;
    struct event *ev;           /* deadline, then completion */
    unsigned refs;              /* c-ares queries out + 1 until delivered */
    bool finished, delivered;
    enum req_kind kind;
    enum relay_dns_status st;
    uint16_t port;
    char domain[256];
    char why[512];
    struct relay_mx_host *hosts; /* RELAY_MAX_HOSTS slots */
    size_t n_hosts, pending;
    enum host_state hstate[RELAY_MAX_HOSTS];
    const char *herr[RELAY_MAX_HOSTS];
    struct host_ctx hctx[RELAY_MAX_HOSTS];
};

/* ---- small helpers ---- */

static uint64_t rng_next(struct relay_dns *d)
{
    uint64_t x = d->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void rng_seed(struct relay_dns *d)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
            ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)d;
    }
    d->rng = s ? s : 0x9E3779B97F4A7C15ULL;
}

/* A host name as mail routing accepts it: LDH labels (and "_"), 1-63
 * octets each, at most 253 in all, an optional final dot. */
static bool name_ok(const char *s)
{
    size_t len = strlen(s), label = 0;
    if (len && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* name without its final dot into out (which has 256 bytes). */
static void copy_name(char *out, const char *name)
{
    size_t len = strlen(name);
    if (len && name[len - 1] == '.')
        len--;
    if (len > 255)
        len = 255;
    memcpy(out, name, len);
    out[len] = '\0';
}

static void appendf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void appendf(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

static bool status_is_gone(int status)
{
    return status == ARES_ENOTFOUND || status == ARES_ENODATA ||
           status == ARES_EBADNAME;
}

static const char *status_text(int status)
{
    switch (status) {
    case ARES_ENOTFOUND: return "host not found (NXDOMAIN)";
    case ARES_ENODATA: return "no address record";
    case ARES_ESERVFAIL: return "server failure (SERVFAIL)";
    case ARES_EREFUSED: return "query refused";
    case ARES_ETIMEOUT: return "no reply (timeout)";
    case ARES_ECONNREFUSED: /* c-ares 1.18's word for "every server failed" */
        return "no DNS server answered (SERVFAIL, REFUSED or unreachable)";
    case ARES_EDESTRUCTION: case ARES_ECANCELLED: return "DNS resolver shut down";
    default: return ares_strerror(status);
    }
}

/* ---- libevent glue ---- */

static void timer_rearm(struct relay_dns *d)
{
    struct timeval tv;
    if (d->closing)
        return;
    if (ares_timeout(d->channel, NULL, &tv))
        evtimer_add(d->timer, &tv);
    else
        evtimer_del(d->timer);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct relay_dns *d = arg;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    timer_rearm(d);
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    struct relay_dns *d = arg;
    ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    timer_rearm(d);
}

/* c-ares: watch fd for reading and/or writing, or forget it (both 0). May
 * free the event that is running (libevent allows that). */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct relay_dns *d = data;
    struct dns_sock **pp = &d->socks;
    while (*pp && (*pp)->fd != fd)
        pp = &(*pp)->next;
    struct dns_sock *s = *pp;
    short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

    if (s && (what == 0 || s->what != what)) {
        event_free(s->ev);
        *pp = s->next;
        free(s);
        s = NULL;
    }
    if (what == 0 || s)
        return;
    s = calloc(1, sizeof(*s));
    if (s)
        s->ev = event_new(d->base, fd, what | EV_PERSIST, on_sock, d);
    if (!s || !s->ev || event_add(s->ev, NULL) != 0) {
        /* Nothing watches fd: its query ends by the timer (timeout). */
        if (s && s->ev)
            event_free(s->ev);
        free(s);
        return;
    }
    s->fd = fd;
    s->what = what;
    s->next = d->socks;
    d->socks = s;
}

/* ---- request life ---- */

static void on_req_event(evutil_socket_t fd, short what, void *arg);

static struct req *req_new(struct relay_dns *d, enum req_kind kind, uint16_t port,
                           relay_dns_cb cb, void *arg)
{
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->hosts = calloc(RELAY_MAX_HOSTS, sizeof(*r->hosts));
    if (!d->closing) /* while closing it needs none: relay_dns_free answers it */
        r->ev = evtimer_new(d->base, on_req_event, r);
    if (!r->hosts || (!d->closing && !r->ev)) {
        if (r->ev)
            event_free(r->ev);
        free(r->hosts);
        free(r);
        return NULL;
    }
    r->d = d;
    r->cb = cb;
    r->arg = arg;
    r->refs = 1;
    r->kind = kind;
    r->port = port;
    for (size_t i = 0; i < RELAY_MAX_HOSTS; i++)
        r->hctx[i] = (struct host_ctx){r, i};
    r->next = d->reqs;
    if (d->reqs)
        d->reqs->prev = r;
    d->reqs = r;
    if (d->closing) {
        r->finished = true;
        r->st = RELAY_DNS_TEMP;
        snprintf(r->why, sizeof(r->why), "DNS resolver shut down");
    } else {
        struct timeval tv = {.tv_sec = d->timeout_ms / 1000,
                             .tv_usec = (suseconds_t)(d->timeout_ms % 1000) * 1000};
        evtimer_add(r->ev, &tv);
    }
    return r;
}

static void req_unref(struct req *r)
{
    if (--r->refs)
        return;
    struct relay_dns *d = r->d;
    if (r->prev)
        r->prev->next = r->next;
    else
        d->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->ev)
        event_free(r->ev);
    free(r->hosts);
    free(r);
}

/* Decides the result; the callback then runs from the request's event. */
static void req_finish(struct req *r, enum relay_dns_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void req_finish(struct req *r, enum relay_dns_status st, const char *fmt, ...)
{
    if (r->finished)
        return;
    r->finished = true;
    r->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    if (r->ev) {
        struct timeval now = {0, 0};
        event_del(r->ev);
        evtimer_add(r->ev, &now);
    }
}

/* The route from the hosts that have addresses (moved out of r), or the
 * failure when none has: NO_DOMAIN when every host is gone for good, else
 * TEMP. */
static void req_finish_hosts(struct req *r)
{
    char notes[400] = "";
    size_t n = 0;
    bool temp = false;

    for (size_t i = 0; i < r->n_hosts; i++) {
        if (r->hstate[i] == H_OK) {
            if (n != i)
                r->hosts[n] = r->hosts[i];
            n++;
            continue;
        }
        temp |= r->hstate[i] != H_GONE;
        if (r->hstate[i] == H_PENDING)
            appendf(notes, sizeof(notes), "%s%s: no reply within %u ms", notes[0] ? "; " : "",
                    r->hosts[i].name, r->d->timeout_ms);
        else
            appendf(notes, sizeof(notes), "%s%s: %s", notes[0] ? "; " : "",
                    r->hosts[i].name, r->herr[i] ? r->herr[i] : "no address");
    }
    r->n_hosts = n;
    if (n > 0) {
        req_finish(r, RELAY_DNS_OK, "%s", notes);
        return;
    }
    enum relay_dns_status st = temp ? RELAY_DNS_TEMP : RELAY_DNS_NO_DOMAIN;
    switch (r->kind) {
    case K_MX:
        req_finish(r, st, "no address for any MX host of %s: %s", r->domain, notes);
        break;
    case K_FALLBACK:
        if (st == RELAY_DNS_NO_DOMAIN)
            req_finish(r, st, "%s has no MX and no A/AAAA record", r->domain);
        else
            req_finish(r, st, "%s has no MX; address lookup: %s", r->domain, notes);
        break;
    case K_HOST:
        req_finish(r, st, "smarthost %s", notes);
        break;
    }
}

static void req_deliver(struct req *r)
{
    relay_dns_cb cb = r->cb;
    void *arg = r->arg;
    enum relay_dns_status st = r->st;
    struct relay_route *route = NULL;
    char why[sizeof(r->why)];

    if (st == RELAY_DNS_OK) {
        route = malloc(sizeof(*route));
        if (route) {
            route->hosts = r->hosts;
            route->n_hosts = r->n_hosts;
            r->hosts = NULL;
        } else {
            st = RELAY_DNS_TEMP;
            snprintf(r->why, sizeof(r->why), "out of memory");
        }
    }
    memcpy(why, r->why, sizeof(why));
    r->delivered = true;
    if (r->ev) {
        event_free(r->ev);
        r->ev = NULL;
    }
    req_unref(r); /* r may be gone now; d may be freed by cb */
    cb(arg, st, route, why);
}

static void on_req_event(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    if (!r->finished) {
        if (r->kind == K_MX && r->n_hosts == 0)
            req_finish(r, RELAY_DNS_TEMP, "MX lookup for %s: no reply within %u ms",
                       r->domain, r->d->timeout_ms);
        else
            req_finish_hosts(r);
    }
    req_deliver(r);
}

/* ---- address lookups ---- */

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct host_ctx *hc = arg;
    struct req *r = hc->r;
    struct relay_mx_host *h = r->delivered ? NULL : &r->hosts[hc->i];

    if (h && !r->d->closing) {
        struct ares_addrinfo_node *v4[RELAY_MAX_ADDRS], *v6[RELAY_MAX_ADDRS];
        size_t n4 = 0, n6 = 0;
        for (struct ares_addrinfo_node *n = status == ARES_SUCCESS && res ? res->nodes : NULL;
             n; n = n->ai_next) {
            if (n->ai_family == AF_INET && n4 < RELAY_MAX_ADDRS &&
                n->ai_addrlen >= (ares_socklen_t)sizeof(struct sockaddr_in))
                v4[n4++] = n;
            else if (n->ai_family == AF_INET6 && n6 < RELAY_MAX_ADDRS &&
                     n->ai_addrlen >= (ares_socklen_t)sizeof(struct sockaddr_in6))
                v6[n6++] = n;
        }
        for (size_t i4 = 0, i6 = 0; h->n_addrs < RELAY_MAX_ADDRS && (i4 < n4 || i6 < n6);) {
            struct ares_addrinfo_node *n = NULL;
            if (i4 < n4 && (i4 <= i6 || i6 >= n6))
                n = v4[i4++];
            else
                n = v6[i6++];
            struct sockaddr_storage *ss = &h->addrs[h->n_addrs];
            memset(ss, 0, sizeof(*ss));
            if (n->ai_family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *)ss;
                memcpy(sin, n->ai_addr, sizeof(*sin));
                sin->sin_port = htons(r->port);
                h->addrlens[h->n_addrs++] = sizeof(*sin);
            } else {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
                memcpy(sin6, n->ai_addr, sizeof(*sin6));
                sin6->sin6_port = htons(r->port);
                h->addrlens[h->n_addrs++] = sizeof(*sin6);
            }
        }
        if (h->n_addrs > 0) {
            r->hstate[hc->i] = H_OK;
        } else if (status == ARES_SUCCESS || status_is_gone(status)) {
            r->hstate[hc->i] = H_GONE;
            r->herr[hc->i] = status == ARES_ENOTFOUND ? status_text(status)
                                                      : "no address record";
        } else {
            r->hstate[hc->i] = H_TEMP;
            r->herr[hc->i] = status_text(status);
        }
        if (--r->pending == 0)
            req_finish_hosts(r);
    }
    if (res)
        ares_freeaddrinfo(res);
    req_unref(r);
}

/* Starts the address lookups of r->hosts[0 .. n_hosts). */
static void lookup_hosts(struct req *r, bool absolute)
{
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC,
                                        .ai_flags = ARES_AI_NOSORT};
    r->pending = r->n_hosts + 1; /* +1: no completion while starting */
    for (size_t i = 0; i < r->n_hosts && !r->finished; i++) {
        char name[258];
        snprintf(name, sizeof(name), "%s%s", r->hosts[i].name, absolute ? "." : "");
        r->refs++;
        ares_getaddrinfo(r->d->channel, name, NULL, &hints, on_addrinfo, &r->hctx[i]);
    }
    if (--r->pending == 0 && !r->finished)
        req_finish_hosts(r);
}

/* ---- MX ---- */

static int mx_cmp(const void *a, const void *b)
{
    const struct ares_mx_reply *x = *(struct ares_mx_reply *const *)a;
    const struct ares_mx_reply *y = *(struct ares_mx_reply *const *)b;
    return (x->priority > y->priority) - (x->priority < y->priority);
}

/* Follows the CNAME records of an answer from the question's name: true
 * (and the name where it turned) when the chain comes back on itself or is
 * longer than CNAME_HOPS. */
static bool cname_loop(const unsigned char *abuf, int alen, char *where, size_t wlen)
{
    char *owner[CNAME_HOPS * 2], *target[CNAME_HOPS * 2], *qname = NULL;
    size_t n = 0;
    bool loop = false;

    if (alen < 12)
        return false;
    unsigned qd = (unsigned)abuf[4] << 8 | abuf[5], an = (unsigned)abuf[6] << 8 | abuf[7];
    const unsigned char *p = abuf + 12, *end = abuf + alen;
    for (unsigned i = 0; i < qd; i++) {
        char *name;
        long len;
        if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
            goto out;
        if (i == 0)
            qname = name;
        else
            ares_free_string(name);
        p += len;
        if (end - p < 4)
            goto out;
        p += 4;
    }
    for (unsigned i = 0; i < an && n < CNAME_HOPS * 2; i++) {
        char *name, *to;
        long len;
        if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
            goto out;
        p += len;
        if (end - p < 10) {
            ares_free_string(name);
            goto out;
        }
        unsigned type = (unsigned)p[0] << 8 | p[1], cls = (unsigned)p[2] << 8 | p[3];
        size_t rdlen = (size_t)p[8] << 8 | p[9];
        p += 10;
        if ((size_t)(end - p) < rdlen) {
            ares_free_string(name);
            goto out;
        }
        if (type == DNS_TYPE_CNAME && cls == DNS_CLASS_IN &&
            ares_expand_name(p, abuf, alen, &to, &len) == ARES_SUCCESS) {
            owner[n] = name;
            target[n++] = to;
        } else {
            ares_free_string(name);
        }
        p += rdlen;
    }
    if (qname) {
        const char *seen[CNAME_HOPS + 1], *cur = qname;
        size_t nseen = 0;
        while (!loop) {
            size_t i = 0;
            while (i < n && strcasecmp(owner[i], cur) != 0)
                i++;
            if (i == n)
                break; /* the chain ends */
            seen[nseen++] = cur;
            cur = target[i];
            for (size_t j = 0; j < nseen && !loop; j++)
                loop = strcasecmp(seen[j], cur) == 0;
            loop |= nseen > CNAME_HOPS - 1;
        }
        if (loop)
            snprintf(where, wlen, "%s", cur);
    }
out:
    for (size_t i = 0; i < n; i++) {
        ares_free_string(owner[i]);
        ares_free_string(target[i]);
    }
    if (qname)
        ares_free_string(qname);
    return loop;
}

static void start_fallback(struct req *r)
{
    r->kind = K_FALLBACK;
    copy_name(r->hosts[0].name, r->domain);
    r->hosts[0].preference = 0;
    r->n_hosts = 1;
    lookup_hosts(r, true);
}

static void use_mx(struct req *r, struct ares_mx_reply *mx)
{
    size_t n = 0, nnull = 0, nbad = 0;
    for (struct ares_mx_reply *m = mx; m; m = m->next)
        n++;
    struct ares_mx_reply **v = calloc(n, sizeof(*v));
    if (!v) {
        req_finish(r, RELAY_DNS_TEMP, "out of memory");
        return;
    }
    n = 0;
    for (struct ares_mx_reply *m = mx; m; m = m->next) {
        if (!m->host[0] || strcmp(m->host, ".") == 0)
            nnull++; /* "0 ." (RFC 7505) */
        else if (!name_ok(m->host))
            nbad++;
        else
            v[n++] = m;
    }
    qsort(v, n, sizeof(*v), mx_cmp);
    for (size_t lo = 0; lo < n;) { /* shuffle each run of equal preference */
        size_t hi = lo + 1;
        while (hi < n && v[hi]->priority == v[lo]->priority)
            hi++;
        for (size_t i = hi - 1; i > lo; i--) {
            size_t j = lo + (size_t)(rng_next(r->d) % (uint64_t)(i - lo + 1));
            struct ares_mx_reply *t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
        lo = hi;
    }
    for (size_t i = 0; i < n && r->n_hosts < RELAY_MAX_HOSTS; i++) {
        char name[256];
        copy_name(name, v[i]->host);
        bool dup = false;
        for (size_t j = 0; j < r->n_hosts && !dup; j++)
            dup = strcasecmp(r->hosts[j].name, name) == 0;
        if (dup)
            continue;
        struct relay_mx_host *h = &r->hosts[r->n_hosts++];
        memcpy(h->name, name, sizeof(name));
        h->preference = v[i]->priority;
    }
    free(v);

    if (r->n_hosts == 0 && nnull > 0)
        req_finish(r, RELAY_DNS_NULL_MX, "%s does not accept mail (null MX, RFC 7505)",
                   r->domain);
    else if (r->n_hosts == 0)
        req_finish(r, RELAY_DNS_NO_DOMAIN, "%s: %zu MX record(s), no valid host name",
                   r->domain, nbad);
    else
        lookup_hosts(r, true);
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct req *r = arg;
    struct ares_mx_reply *mx = NULL;
    char where[256];

    if (r->delivered || r->finished || r->d->closing) {
        req_unref(r);
        return;
    }
    if (status == ARES_SUCCESS) {
        status = ares_parse_mx_reply(abuf, alen, &mx);
        if (status == ARES_SUCCESS && !mx)
            status = ARES_ENODATA;
        if (status == ARES_ENODATA && cname_loop(abuf, alen, where, sizeof(where))) {
            req_finish(r, RELAY_DNS_TEMP, "%s: CNAME loop at %s", r->domain, where);
            goto done;
        }
        if (status != ARES_SUCCESS && status != ARES_ENODATA) {
            req_finish(r, RELAY_DNS_TEMP, "MX lookup for %s: malformed reply (%s)",
                       r->domain, ares_strerror(status));
            goto done;
        }
    }
    if (status == ARES_SUCCESS)
        use_mx(r, mx);
    else if (status == ARES_ENODATA)
        start_fallback(r);
    else if (status == ARES_ENOTFOUND || status == ARES_EBADNAME)
        req_finish(r, RELAY_DNS_NO_DOMAIN, "%s: domain not found (NXDOMAIN)", r->domain);
    else
        req_finish(r, RELAY_DNS_TEMP, "MX lookup for %s: %s", r->domain, status_text(status));
done:
    if (mx)
        ares_free_data(mx);
    req_unref(r);
}

/* ---- literals ---- */

/* text → one address with port; false when text is no IP literal. */
static bool literal_addr(const char *text, uint16_t port, struct relay_mx_host *h)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};

    memset(&h->addrs[0], 0, sizeof(h->addrs[0]));
    if (inet_pton(AF_INET, text, &sin.sin_addr) == 1) {
        memcpy(&h->addrs[0], &sin, sizeof(sin));
        h->addrlens[0] = sizeof(sin);
    } else if (inet_pton(AF_INET6, text, &sin6.sin6_addr) == 1) {
        memcpy(&h->addrs[0], &sin6, sizeof(sin6));
        h->addrlens[0] = sizeof(sin6);
    } else {
        return false;
    }
    h->n_addrs = 1;
    return true;
}

static void finish_literal(struct req *r, const char *name)
{
    r->n_hosts = 1;
    r->hstate[0] = H_OK;
    copy_name(r->hosts[0].name, name);
    req_finish(r, RELAY_DNS_OK, "%s", "");
}

/* ---- public ---- */

/* A channel on d's loop asking resolver ("" for the system's). Two tries;
 * c-ares doubles the second's wait: T/4 + T/2 < T, so a query's own
 * timeout ends it before the request's deadline (with one server). */
static int open_channel(struct relay_dns *d, const char *resolver, int flags,
                        ares_channel *out)
{
    struct ares_options o = {0};
    char lookups[] = "b";
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
    o.flags = flags;
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = d;
    o.timeout = (int)(d->timeout_ms / 4 ? d->timeout_ms / 4 : 1);
    o.tries = 2;
    if (*resolver) {
        o.lookups = lookups; /* DNS only: /etc/hosts is not the given resolver */
        mask |= ARES_OPT_LOOKUPS;
    }
    int rc = ares_init_options(out, &o, mask);
    if (rc == ARES_SUCCESS && *resolver) {
        rc = ares_set_servers_ports_csv(*out, resolver);
        if (rc != ARES_SUCCESS) {
            ares_destroy(*out);
            rc = ARES_EBADSTR;
        }
    }
    return rc;
}

/* ares_library_init() and _cleanup() keep an unlocked count: one lock for
 * the loops that start and stop their resolvers at the same time. */
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

struct relay_dns *relay_dns_new(struct event_base *base, const char *resolver,
                                unsigned timeout_ms)
{
    struct relay_dns *d = calloc(1, sizeof(*d));
    if (!d) {
        errno = ENOMEM;
        return NULL;
    }
    if (!resolver)
        resolver = "";
    d->base = base;
    d->timeout_ms = timeout_ms ? timeout_ms : 1;
    rng_seed(d);
    d->timer = evtimer_new(base, on_timer, d);
    if (!d->timer) {
        free(d);
        errno = ENOMEM;
        return NULL;
    }

    pthread_mutex_lock(&lib_lock);
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    pthread_mutex_unlock(&lib_lock);
    if (rc != ARES_SUCCESS) {
        event_free(d->timer);
        free(d);
        errno = EIO;
        return NULL;
    }

    rc = open_channel(d, resolver, 0, &d->channel);
    struct ares_addr_port_node *servers = NULL;
    if (rc == ARES_SUCCESS && ares_get_servers_ports(d->channel, &servers) == ARES_SUCCESS &&
        servers && !servers->next) {
        /* One server: its SERVFAIL or REFUSED is final, and c-ares would
         * only ask it again and then report "connection refused". With
         * several, c-ares moves on to the next server on those. */
        ares_channel one;
        if (open_channel(d, resolver, ARES_FLAG_NOCHECKRESP, &one) == ARES_SUCCESS) {
            ares_destroy(d->channel);
            d->channel = one;
        }
    }
    if (servers)
        ares_free_data(servers);
    if (rc != ARES_SUCCESS) {
        pthread_mutex_lock(&lib_lock);
        ares_library_cleanup();
        pthread_mutex_unlock(&lib_lock);
        event_free(d->timer);
        free(d);
        errno = rc == ARES_ENOMEM ? ENOMEM : rc == ARES_EBADSTR ? EINVAL : EIO;
        return NULL;
    }
    return d;
}

void relay_dns_free(struct relay_dns *d)
{
    if (!d)
        return;
    d->closing = true;
    /* Every c-ares callback runs now (ARES_EDESTRUCTION) and drops its
     * reference; then only requests waiting for their callback are left. */
    ares_destroy(d->channel);
    d->channel = NULL;
    while (d->reqs) {
        struct req *r = d->reqs;
        req_finish(r, RELAY_DNS_TEMP, "DNS resolver shut down"); /* unless known */
        req_deliver(r);
    }
    while (d->socks) { /* normally closed by ares_destroy already */
        struct dns_sock *s = d->socks;
        d->socks = s->next;
        event_free(s->ev);
        free(s);
    }
    event_free(d->timer);
    pthread_mutex_lock(&lib_lock);
    ares_library_cleanup();
    pthread_mutex_unlock(&lib_lock);
    free(d);
}

bool relay_dns_route(struct relay_dns *d, const char *domain, uint16_t port,
                     relay_dns_cb cb, void *arg)
{
    struct req *r = req_new(d, K_MX, port, cb, arg);
    if (!r)
        return false;
    if (r->finished)
        return true; /* closing */
    size_t len = strlen(domain);
    copy_name(r->domain, domain);

    if (len > 2 && domain[0] == '[' && domain[len - 1] == ']') {
        char lit[64];
        const char *in = domain + 1;
        size_t n = len - 2;
        bool v6 = n > 5 && strncasecmp(in, "IPv6:", 5) == 0;
        if (v6) {
            in += 5;
            n -= 5;
        }
        r->kind = K_HOST;
        struct in6_addr probe;
        bool ok = n < sizeof(lit);
        if (ok) {
            memcpy(lit, in, n);
            lit[n] = '\0';
            /* "[IPv6:...]" must hold IPv6, "[...]" IPv4 (RFC 5321 4.1.3) */
            ok = inet_pton(v6 ? AF_INET6 : AF_INET, lit, &probe) == 1 &&
                 literal_addr(lit, port, &r->hosts[0]);
        }
        if (ok)
            finish_literal(r, domain);
        else
            req_finish(r, RELAY_DNS_NO_DOMAIN, "invalid address literal");
        return true;
    }
    if (!name_ok(domain)) {
        snprintf(r->domain, sizeof(r->domain), "?");
        req_finish(r, RELAY_DNS_NO_DOMAIN, "not a valid domain name");
        return true;
    }
    r->refs++;
    ares_query(d->channel, r->domain, DNS_CLASS_IN, DNS_TYPE_MX, on_mx, r);
    timer_rearm(d);
    return true;
}

bool relay_dns_parse_hostport(const char *hostport, uint16_t default_port,
                              char *host, size_t hostlen, uint16_t *port)
{
    const char *end, *colon;
    const char *start = hostport;
    size_t n;

    if (hostport[0] == '[') {
        start = hostport + 1;
        end = strchr(start, ']');
        if (!end)
            return false;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon)
            return false;
    } else {
        colon = strchr(hostport, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* a bare IPv6 address */
        end = colon ? colon : hostport + strlen(hostport);
    }
    n = (size_t)(end - start);
    if (n == 0 || n >= hostlen)
        return false;
    *port = default_port;
    if (colon) {
        char *e;
        errno = 0;
        unsigned long p = strtoul(colon + 1, &e, 10);
        if (errno || *e || e == colon + 1 || colon[1] < '0' || colon[1] > '9' ||
            p == 0 || p > 65535)
            return false;
        *port = (uint16_t)p;
    }
    memcpy(host, start, n);
    host[n] = '\0';
    return true;
}

bool relay_dns_host(struct relay_dns *d, const char *hostport, uint16_t default_port,
                    relay_dns_cb cb, void *arg)
{
    char host[256];
    uint16_t port;
    struct req *r = req_new(d, K_HOST, 0, cb, arg);
    if (!r)
        return false;
    if (r->finished)
        return true; /* closing */
    if (!relay_dns_parse_hostport(hostport, default_port, host, sizeof(host), &port)) {
        req_finish(r, RELAY_DNS_NO_DOMAIN, "invalid smarthost (want host:port)");
        return true;
    }
    r->port = port;
    if (literal_addr(host, port, &r->hosts[0])) {
        finish_literal(r, host);
        return true;
    }
    if (!name_ok(host)) {
        req_finish(r, RELAY_DNS_NO_DOMAIN, "invalid smarthost name");
        return true;
    }
    copy_name(r->domain, host);
    copy_name(r->hosts[0].name, host);
    r->n_hosts = 1;
    lookup_hosts(r, false); /* the system's search rules apply, as for getaddrinfo */
    timer_rearm(d);
    return true;
}

void relay_route_free(struct relay_route *r)
{
    if (!r)
        return;
    free(r->hosts);
    free(r);
}
