/* conn.c — a client connection: bufferevent plumbing, line framing, flow
 * control, timeouts and the plaintext-to-TLS switch. See conn.h. */
#include "net/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "net/limits.h"
#include "net/loop.h"
#include "net/tls.h"

#define READ_HIGH_WATER (64 * 1024)
#define IDLE_GOODBYE_SECS 2

struct conn {
    struct loop *loop;
    struct loop_node *node;     /* registration with the loop */
    struct bufferevent *bev;
    int fd;
    struct tls *tls;
    struct limits *limits;
    bool slot_pending;          /* limits slot not promoted yet */
    unsigned max_per_ip;
    const char *busy_reply;
    const struct conn_ops *ops;
    void *ctx;
    size_t max_line;
    unsigned idle_timeout, handshake_timeout;
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    char *line;             /* line_cap + 1 bytes, grown to the longest
                               line seen (at most max_line) */
    size_t line_cap;
    size_t last_eol;        /* octets of the line end just delivered */
    uint64_t raw_left;      /* raw mode: octets still to deliver */
    bool raw;

    bool is_tls;            /* TLS established */
    bool handshaking;
    bool switching;         /* STLS: waiting for plaintext output to drain */
    bool paused;
    bool discarding;        /* inside an over-long line */
    bool closing;           /* close requested; free when safe */
    bool flush_then_close;
    bool want_writable;
    int in_callback;
    const char *close_reason;
    int64_t last_read_ms;       /* monotonic: last input */
    int64_t last_drain_ms;      /* monotonic: output last emptied */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_free(struct conn *c);
static void process_input(struct conn *c);

static void set_timeouts(struct conn *c, unsigned secs)
{
    struct timeval tv = {.tv_sec = secs};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void finish_close(struct conn *c)
{
    if (c->in_callback)
        return;
    const char *reason = c->close_reason ? c->close_reason : "closed";
    c->ops->on_close(c->ctx, reason);
    conn_free(c);
}

void conn_close(struct conn *c, const char *reason)
{
    if (!c->closing) {
        c->closing = true;
        c->close_reason = reason;
    }
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    finish_close(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    c->last_read_ms = now_ms();
    process_input(c);
}

static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void setup_bev(struct conn *c)
{
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATER);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static bool begin_tls(struct conn *c)
{
    SSL *ssl = tls_ssl_new(c->tls);
    if (!ssl)
        return false;
    c->bev = bufferevent_openssl_socket_new(conn_base(c), c->fd, ssl,
                                            BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        SSL_free(ssl);
        return false;
    }
    c->fd = -1; /* owned by the bufferevent now */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->handshaking = true;
    setup_bev(c);
    set_timeouts(c, c->handshake_timeout);
    return true;
}

/* STLS: the +OK has left; replace the plaintext bufferevent with TLS. */
static void switch_to_tls(struct conn *c)
{
    c->switching = false;
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (!begin_tls(c))
        conn_close(c, "tls_setup_failed");
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
    if (pending == 0)
        c->last_drain_ms = now_ms();
    if (c->switching && pending == 0) {
        switch_to_tls(c);
        return;
    }
    if (c->flush_then_close && pending == 0) {
        conn_close(c, c->close_reason);
        return;
    }
    if (c->want_writable && !c->closing) {
        c->want_writable = false;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        c->in_callback++;
        c->ops->on_writable(c->ctx);
        c->in_callback--;
        if (c->closing)
            finish_close(c);
        else
            process_input(c);
    }
}

static void log_tls_failure(struct conn *c)
{
    unsigned long err = bufferevent_get_openssl_error(c->bev);
    char buf[128];
    log_info("event=tls_failed ip=%s port=%u reason=%s", c->ip, c->port,
             tls_error_text(err, buf, sizeof(buf)));
    while (bufferevent_get_openssl_error(c->bev))
        ;
}

static void handshake_done(struct conn *c)
{
    c->handshaking = false;
    c->is_tls = true;
    if (c->slot_pending && c->limits) {
        if (limits_promote(c->limits, c->ip, c->max_per_ip) != LIMITS_OK) {
            log_info("event=reject ip=%s port=%u reason=max_connections_per_ip",
                     c->ip, c->port);
            if (c->busy_reply)
                bufferevent_write(c->bev, c->busy_reply, strlen(c->busy_reply));
            conn_close_after_flush(c, "max_connections_per_ip");
            return;
        }
        c->slot_pending = false;
    }
    set_timeouts(c, c->idle_timeout);
    c->in_callback++;
    c->ops->on_tls_ready(c->ctx);
    c->in_callback--;
    if (c->closing)
        finish_close(c);
    else
        process_input(c);
}

static void on_timeout(struct conn *c, short what)
{
    if (c->flush_then_close) {
        conn_close(c, c->close_reason);
        return;
    }
    if (c->handshaking) {
        log_info("event=tls_failed ip=%s port=%u reason=handshake_timeout", c->ip,
                 c->port);
        conn_close(c, "handshake_timeout");
        return;
    }
    /* A long download to a client that sends nothing is not idleness, nor
     * is the time it takes to read the end of one out of the kernel: if
     * output went on well after the last command, wait one more period. */
    if ((what & BEV_EVENT_READING) &&
        (conn_output_len(c) > 0 || c->want_writable ||
         c->last_drain_ms > c->last_read_ms + 1000)) {
        c->last_read_ms = now_ms();
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    size_t unsent = conn_output_len(c);  /* nonzero: the client is not reading */
    c->in_callback++;
    c->ops->on_idle(c->ctx);
    c->in_callback--;
    if (c->closing) {
        finish_close(c);
    } else if (!c->flush_then_close || unsent > 0) {
        conn_close(c, "idle_timeout");
    } else {
        /* The goodbye gets a short while to leave, then the close. */
        set_timeouts(c, IDLE_GOODBYE_SECS);
        bufferevent_enable(c->bev, EV_WRITE);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        handshake_done(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        on_timeout(c, what);
        return;
    }
    if (c->handshaking && (what & BEV_EVENT_ERROR)) {
        log_tls_failure(c);
        conn_close(c, "tls_handshake_failed");
        return;
    }
    conn_close(c, (what & BEV_EVENT_EOF) ? "eof" : "io_error");
}

#define LINE_START_CAP 256

static bool grow_line(struct conn *c, size_t len)
{
    char *n = realloc(c->line, len + 1);
    if (!n)
        return false;
    c->line = n;
    c->line_cap = len;
    return true;
}

/* Raw mode: hands over what has arrived of the requested octets. false
 * when the caller must wait for more input. */
static bool deliver_raw(struct conn *c, struct evbuffer *in)
{
    char buf[16384];
    while (c->raw_left > 0 && !c->paused && !c->closing) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return false;
        size_t n = avail < sizeof buf ? avail : sizeof buf;
        if (n > c->raw_left)
            n = (size_t)c->raw_left;
        evbuffer_remove(in, buf, n);
        c->raw_left -= n;
        c->ops->on_bytes(c->ctx, buf, n);
    }
    if (c->raw_left == 0 && !c->closing) {
        c->raw = false;
        c->ops->on_bytes_done(c->ctx);
    }
    return true;
}

void conn_read_bytes(struct conn *c, uint64_t n)
{
    c->raw = true;
    c->raw_left = n;
    if (!c->in_callback && c->bev)
        process_input(c);
}

/* Delivers complete lines (or raw octets) while not paused. */
static void process_input(struct conn *c)
{
    struct evbuffer *in;
    c->in_callback++;
    while (!c->paused && !c->closing && !c->flush_then_close && !c->switching &&
           c->bev &&
           (in = bufferevent_get_input(c->bev)) != NULL) {
        if (c->raw) {
            if (!deliver_raw(c, in))
                break;
            continue;
        }
        size_t eol_len = 0;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        if (p.pos < 0) {
            size_t avail = evbuffer_get_length(in);
            if (avail >= c->max_line) {
                evbuffer_drain(in, avail);   /* inside an over-long line */
                c->discarding = true;
            }
            break;
        }
        size_t len = (size_t)p.pos;
        if (c->discarding || len + eol_len > c->max_line) {
            evbuffer_drain(in, len + eol_len);
            c->discarding = false;
            c->ops->on_line_too_long(c->ctx);
            continue;
        }
        if (len > c->line_cap && !grow_line(c, len)) {
            conn_close(c, "oom");
            break;
        }
        evbuffer_remove(in, c->line, len);
        evbuffer_drain(in, eol_len);
        c->line[len] = '\0';
        c->last_eol = eol_len;
        c->ops->on_line(c->ctx, c->line, len);
    }
    c->in_callback--;
    if (c->closing)
        finish_close(c);
}

/* Replies go out as soon as they are written: without this, a reply that
 * follows a small unacknowledged segment (the "+OK" before a RETR body, a
 * TLS record) waits for the client's delayed ACK, 40 ms on Linux. */
static void conn_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct conn *conn_new(const struct conn_params *p)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    conn_nodelay(p->fd);
    c->loop = p->loop;
    c->fd = p->fd;
    c->tls = p->tls;
    c->limits = p->limits;
    c->slot_pending = p->implicit_tls;
    c->max_per_ip = p->max_per_ip;
    c->busy_reply = p->busy_reply;
    c->ops = p->ops;
    c->ctx = p->ctx;
    c->max_line = p->max_line;
    c->idle_timeout = p->idle_timeout;
    c->handshake_timeout = p->handshake_timeout;
    c->line_cap = p->max_line < LINE_START_CAP ? p->max_line : LINE_START_CAP;
    c->line = malloc(c->line_cap + 1);
    if (p->addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)p->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, c->ip, sizeof(c->ip));
        c->port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const void *)p->addr;
        inet_ntop(AF_INET, &a->sin_addr, c->ip, sizeof(c->ip));
        c->port = ntohs(a->sin_port);
    }
    bool ok = c->line != NULL;
    if (ok && p->implicit_tls)
        ok = c->tls && begin_tls(c);
    else if (ok) {
        c->bev = bufferevent_socket_new(conn_base(c), c->fd, 0);
        ok = c->bev != NULL;
        if (ok) {
            setup_bev(c);
            set_timeouts(c, c->idle_timeout);
        }
    }
    if (!ok) {
        c->ops = NULL;
        conn_free(c);
        return NULL;
    }
    c->node = loop_conn_add(c->loop, c);
    if (!c->node) {
        c->ops = NULL;
        conn_free(c);
        return NULL;
    }
    return c;
}

/* Releases the slot, the socket and the memory. */
static void conn_free(struct conn *c)
{
    if (c->node)
        loop_conn_del(c->loop, c->node);
    if (c->bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl && c->is_tls)
            SSL_shutdown(ssl);
        bufferevent_free(c->bev);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->limits)
        limits_release(c->limits, c->ip, c->slot_pending);
    free(c->line);
    free(c);
}

void conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->bev && !c->closing)
        bufferevent_write(c->bev, data, len);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
    if (!c->bev || c->closing)
        return;
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
    va_end(ap);
}

struct evbuffer *conn_output(struct conn *c)
{
    return bufferevent_get_output(c->bev);
}

size_t conn_output_len(struct conn *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

void conn_want_writable(struct conn *c, size_t low_water)
{
    c->want_writable = true;
    bufferevent_setwatermark(c->bev, EV_WRITE, low_water, 0);
}

void conn_pause(struct conn *c)
{
    c->paused = true;
}

void conn_resume(struct conn *c)
{
    if (!c->paused || c->flush_then_close)
        return;
    c->paused = false;
    if (!c->in_callback)
        process_input(c);
}

void conn_start_tls(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    bufferevent_disable(c->bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in)); /* no injected commands */
    c->discarding = false;
    c->switching = true;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (conn_output_len(c) == 0)
        switch_to_tls(c);
}

void conn_close_after_flush(struct conn *c, const char *reason)
{
    if (c->closing || c->flush_then_close)
        return;
    c->flush_then_close = true;
    c->close_reason = reason;
    c->paused = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (conn_output_len(c) == 0)
        conn_close(c, reason);
    else
        set_timeouts(c, 10);
}

#define SHUTDOWN_DRAIN_SECS 2

void conn_shutdown(struct conn *c)
{
    if (c->handshaking || c->switching) {
        conn_close(c, "server_stop"); /* nothing to say before TLS exists */
        return;
    }
    c->in_callback++;
    c->ops->on_shutdown(c->ctx);
    c->in_callback--;
    if (c->closing)
        finish_close(c);
    else if (c->flush_then_close)
        set_timeouts(c, SHUTDOWN_DRAIN_SECS); /* a client that stopped reading */
}

bool conn_is_tls(const struct conn *c)
{
    return c->is_tls;
}

SSL *conn_ssl(const struct conn *c)
{
    return c->is_tls && c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

void conn_set_max_line(struct conn *c, size_t max_line)
{
    c->max_line = max_line;
}

size_t conn_last_eol(const struct conn *c)
{
    return c->last_eol;
}

bool conn_tls_available(const struct conn *c)
{
    return c->tls != NULL;
}

const char *conn_ip(const struct conn *c)
{
    return c->ip;
}

unsigned conn_port(const struct conn *c)
{
    return c->port;
}

void conn_tls_info(const struct conn *c, char *buf, size_t len)
{
    SSL *ssl = conn_ssl(c);
    if (!ssl) {
        snprintf(buf, len, "%s", "");
        return;
    }
    snprintf(buf, len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

struct event_base *conn_base(const struct conn *c)
{
    return loop_base(c->loop);
}

struct loop *conn_loop(const struct conn *c)
{
    return c->loop;
}

void conn_set_idle_timeout(struct conn *c, unsigned secs)
{
    c->idle_timeout = secs;
    if (c->bev && !c->handshaking)
        set_timeouts(c, secs);
}
