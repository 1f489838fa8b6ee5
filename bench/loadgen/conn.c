/* conn.c — lifecycle and I/O of a non-blocking TCP/TLS client connection:
 * connect, TLS handshake, the edge-triggered read loop that feeds the
 * protocol script, buffered writes, timeout, close. */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util.h"

#define IO_AGAIN (-1)
#define IO_ERROR (-2)

static void conn_on_event(struct lg_io *io, uint32_t events);

static void conn_fail(struct lg_conn *c, const char *what, int err)
{
    c->err_what = what;
    c->err_no = err;
    c->ops->on_fail(c);
}

static void conn_on_timer(struct lg_tnode *t)
{
    struct lg_conn *c = LG_CONTAINER_OF(t, struct lg_conn, timer);
    c->err_ssl = 0;
    c->err_kind = 0;
    conn_fail(c, "timeout", 0);
}

void lg_conn_init(struct lg_conn *c, const struct lg_conn_env *env,
                  const struct lg_conn_ops *ops)
{
    memset(c, 0, sizeof(*c));
    c->io.on_event = conn_on_event;
    c->timer.fire = conn_on_timer;
    c->env = env;
    c->ops = ops;
    c->fd = -1;
}

void lg_conn_arm(struct lg_conn *c, struct lg_tlist *list)
{
    c->tlist = list;
    lg_tlist_arm(list, &c->timer, c->env->loop->now);
}

void lg_conn_disarm(struct lg_conn *c)
{
    lg_tnode_disarm(&c->timer);
}

int lg_conn_connect(struct lg_conn *c, int tls, SSL_SESSION *resume)
{
    const struct lg_conn_env *env = c->env;
    c->err_ssl = 0;
    c->err_kind = 0;
    c->fd = socket(env->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->err_what = "socket";
        c->err_no = errno;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, env->addr, env->addrlen) < 0 && errno != EINPROGRESS) {
        c->err_what = "connect";
        c->err_no = errno;
        lg_conn_close(c, 1);
        return -1;
    }
    if (lg_loop_add(env->loop, c->fd, &c->io) < 0) {
        c->err_what = "epoll_ctl";
        c->err_no = errno;
        lg_conn_close(c, 1);
        return -1;
    }
    c->state = LG_CONN_CONNECTING;
    c->tls_at_connect = (unsigned char)(tls != 0);
    c->resume = resume;
    lg_conn_arm(c, env->timeouts);
    return 0;
}

/* Records why an SSL call failed (err_*), clears the thread's error queue
 * and returns the SSL_get_error() kind. */
static int tls_why(struct lg_conn *c, const char *what, int ret)
{
    int sys = errno;
    int e = SSL_get_error(c->ssl, ret);
    c->err_what = what;
    c->err_ssl = ERR_peek_last_error();
    c->err_no = e == SSL_ERROR_SYSCALL ? sys : 0;
    c->err_kind = e;
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && sys == 0 && c->err_ssl == 0)) {
        c->err_what = "connection closed by server";
        c->err_kind = 0;
    }
    return e;
}

/* The handshake is complete: count it, tell the script. 1 when the conn
 * is still open afterwards. */
static int handshake_done(struct lg_conn *c)
{
    c->state = LG_CONN_OPEN;
    if (SSL_session_reused(c->ssl))
        c->env->st->tls_resumed++;
    else
        c->env->st->tls_full++;
    c->ops->on_up(c);
    return c->state == LG_CONN_OPEN ? 1 : -1;
}

/* 1: handshake done and on_up called, 0: waiting, -1: failed. */
static int conn_handshake(struct lg_conn *c)
{
    int r = SSL_connect(c->ssl);
    if (r == 1)
        return handshake_done(c);
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    tls_why(c, "TLS handshake", r);
    c->ops->on_fail(c);
    return -1;
}

static int tls_begin(struct lg_conn *c, SSL_SESSION *resume)
{
    c->ssl = SSL_new(c->env->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        c->err_what = "SSL_new";
        c->err_no = 0;
        c->err_kind = 0;
        c->err_ssl = ERR_get_error();
        ERR_clear_error();
        return -1;
    }
    SSL_set_connect_state(c->ssl);
    if (resume != NULL)
        SSL_set_session(c->ssl, resume);
    c->state = LG_CONN_HANDSHAKE;
    return 0;
}

int lg_conn_start_tls(struct lg_conn *c, SSL_SESSION *resume)
{
    if (tls_begin(c, resume) < 0)
        return -1;
    lg_conn_arm(c, c->env->timeouts);
    int r = SSL_connect(c->ssl);
    if (r == 1) {       /* the server's flight was already there */
        handshake_done(c);
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    tls_why(c, "TLS handshake", r);
    return -1;
}

/* 1: open (on_up called), 0: handshake under way, -1: failed. */
static int conn_connected(struct lg_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        conn_fail(c, "connect", err);
        return -1;
    }
    if (c->tls_at_connect) {
        if (tls_begin(c, c->resume) < 0) {
            c->ops->on_fail(c);
            return -1;
        }
        return conn_handshake(c);
    }
    c->state = LG_CONN_OPEN;
    c->ops->on_up(c);
    return c->state == LG_CONN_OPEN ? 1 : -1;
}

/* Bytes read, 0 at EOF, IO_AGAIN or IO_ERROR (err_* set). */
static ssize_t raw_read(struct lg_conn *c, char *buf, size_t len)
{
    if (c->ssl == NULL) {
        ssize_t n = read(c->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EINTR)
            return IO_AGAIN;
        c->err_what = "read";
        c->err_no = errno;
        return IO_ERROR;
    }
    int n = SSL_read(c->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return IO_AGAIN;
    tls_why(c, "TLS read", n);
    return c->err_kind == 0 ? 0 : IO_ERROR;
}

/* Bytes written (maybe fewer than len), IO_AGAIN or IO_ERROR. */
static ssize_t raw_write(struct lg_conn *c, const char *p, size_t len)
{
    if (c->ssl == NULL) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EINTR)
            return IO_AGAIN;
        c->err_what = "write";
        c->err_no = errno;
        return IO_ERROR;
    }
    int n = SSL_write(c->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return IO_AGAIN;
    tls_why(c, "TLS write", n);
    return IO_ERROR;
}

/* Writes as much of p as the socket takes; returns bytes written or -1. */
static ssize_t write_some(struct lg_conn *c, const char *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = raw_write(c, p + done, len - done);
        if (n == IO_AGAIN)
            break;
        if (n < 0)
            return -1;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int wbuf_append(struct lg_conn *c, const char *p, size_t n)
{
    if (c->wpos == c->wlen)
        c->wpos = c->wlen = 0;
    if ((size_t)c->wcap - c->wlen < n) {
        size_t need = (size_t)c->wlen + n, cap = c->wcap ? c->wcap : 1024;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(c->wbuf, cap);
        if (nb == NULL) {
            c->err_what = "out of memory";
            c->err_no = ENOMEM;
            return -1;
        }
        c->wbuf = nb;
        c->wcap = (uint32_t)cap;
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += (uint32_t)n;
    return 0;
}

int lg_conn_send(struct lg_conn *c, const void *p, size_t n)
{
    lg_conn_arm(c, c->env->timeouts);
    if (c->wpos == c->wlen) {
        ssize_t w = write_some(c, p, n);
        if (w < 0)
            return -1;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return n ? wbuf_append(c, p, n) : 0;
}

static int flush(struct lg_conn *c)
{
    if (c->wpos == c->wlen)
        return 0;
    ssize_t w = write_some(c, c->wbuf + c->wpos, c->wlen - c->wpos);
    if (w < 0)
        return -1;
    c->wpos += (uint32_t)w;
    if (c->wpos == c->wlen && c->env->lean) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = c->wpos = c->wlen = 0;
    }
    return 0;
}

/* Makes room in the read buffer; -1 when a reply does not fit. */
static int rbuf_room(struct lg_conn *c)
{
    if (c->rbuf == NULL) {
        c->rbuf = malloc(c->env->rbuf_size);
        if (c->rbuf == NULL) {
            c->err_what = "out of memory";
            c->err_no = ENOMEM;
            return -1;
        }
        c->rcap = c->env->rbuf_size;
    }
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0 && c->rcap - c->rlen < c->rcap / 2) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rlen == c->rcap) {
        c->err_what = "reply line too long";
        c->err_no = 0;
        return -1;
    }
    return 0;
}

static void conn_read(struct lg_conn *c)
{
    for (;;) {
        if (rbuf_room(c) < 0) {
            c->ops->on_fail(c);
            return;
        }
        ssize_t n = raw_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n == IO_AGAIN)
            break;
        if (n == 0) {
            conn_fail(c, "connection closed by server", 0);
            return;
        }
        if (n < 0) {
            c->ops->on_fail(c);
            return;
        }
        c->rlen += (uint32_t)n;
        c->env->st->bytes_in += (uint64_t)n;
        if (c->tlist == c->env->timeouts && c->timer.next != NULL)
            lg_conn_arm(c, c->tlist);      /* the reply is making progress */
        c->ops->on_data(c);
        if (c->state != LG_CONN_OPEN)
            return;
    }
    if (c->env->lean && c->rpos == c->rlen) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = c->rpos = c->rlen = 0;
    }
}

static void conn_on_event(struct lg_io *io, uint32_t events)
{
    struct lg_conn *c = LG_CONTAINER_OF(io, struct lg_conn, io);
    (void)events;
    if (c->state == LG_CONN_CLOSED)
        return;
    if (c->state == LG_CONN_CONNECTING && conn_connected(c) <= 0)
        return;
    if (c->state == LG_CONN_HANDSHAKE && conn_handshake(c) <= 0)
        return;
    if (flush(c) < 0) {
        c->ops->on_fail(c);
        return;
    }
    conn_read(c);
}

SSL_SESSION *lg_conn_session(struct lg_conn *c)
{
    return c->ssl ? SSL_get1_session(c->ssl) : NULL;
}

void lg_conn_discard(struct lg_conn *c)
{
    c->rpos = c->rlen = 0;
}

void lg_conn_close(struct lg_conn *c, int abort)
{
    lg_tnode_disarm(&c->timer);
    if (c->ssl != NULL) {
        /* Marked as shut down so that SSL_free keeps the session resumable. */
        if (!abort)
            SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        if (abort) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(c->fd);
        c->fd = -1;
    }
    c->state = LG_CONN_CLOSED;
    c->rpos = c->rlen = c->wpos = c->wlen = 0;
    if (c->env->lean)
        lg_conn_free(c);
}

void lg_conn_free(struct lg_conn *c)
{
    if (c->state != LG_CONN_CLOSED)
        lg_conn_close(c, 1);
    free(c->rbuf);
    free(c->wbuf);
    c->rbuf = c->wbuf = NULL;
    c->rcap = c->wcap = 0;
}

void lg_conn_why(const struct lg_conn *c, char *buf, size_t n)
{
    const char *what = c->err_what ? c->err_what : "error";
    if (c->err_ssl != 0) {
        char e[120];
        ERR_error_string_n(c->err_ssl, e, sizeof(e));
        snprintf(buf, n, "%s: %s", what, e);
    } else if (c->err_kind != 0) {
        snprintf(buf, n, "%s: SSL error %d%s%s", what, c->err_kind, c->err_no ? ", " : "",
                 c->err_no ? strerror(c->err_no) : "");
    } else if (c->err_no != 0) {
        snprintf(buf, n, "%s: %s", what, strerror(c->err_no));
    } else {
        snprintf(buf, n, "%s", what);
    }
}
