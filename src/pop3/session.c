/* session.c — a POP3 session's life: accept, greeting (with the APOP
 * timestamp), the line handler, replies, bad-command accounting, timeouts,
 * server stop, and the reference count that keeps the session alive while
 * a job or a delayed reply is outstanding. */
#include "pop3/session.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth/userdb.h"
#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "net/conn.h"
#include "net/server.h"
#include "pop3/pop3.h"
#include "store/store.h"


static void on_line(void *ctx, char *line, size_t len);
static void on_line_too_long(void *ctx);
static void on_writable(void *ctx);
static void on_tls_ready(void *ctx);
static void on_idle(void *ctx);
static void on_shutdown(void *ctx);
static void on_close(void *ctx, const char *reason);

static const struct conn_ops POP3_CONN_OPS = {
    .on_line = on_line,
    .on_line_too_long = on_line_too_long,
    .on_writable = on_writable,
    .on_tls_ready = on_tls_ready,
    .on_idle = on_idle,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

static void random_hex(char *out, size_t bytes)
{
    unsigned char r[32];
    if (bytes > sizeof(r))
        bytes = sizeof(r);
    if (RAND_bytes(r, (int)bytes) != 1)
        memset(r, 0, bytes);
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

void pop3_session_ref(struct pop3_session *s)
{
    s->refs++;
}

static void session_free(struct pop3_session *s)
{
    pop3_auth_end(s);
    pop3_retr_abort(s);
    pop3_xtnd_abort(s);
    if (s->mb)
        store_close(s->mb);
    free(s->deleted);
    config_unref(s->cfg);
    free(s);
}

void pop3_session_unref(struct pop3_session *s)
{
    if (--s->refs == 0)
        session_free(s);
}

__attribute__((format(printf, 2, 0)))
static void vreply(struct pop3_session *s, const char *fmt, va_list ap)
{
    if (!s->conn)
        return;
    evbuffer_add_vprintf(conn_output(s->conn), fmt, ap);
    conn_write(s->conn, "\r\n", 2);
}

void pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
    s->bad_commands = 0;
}

void pop3_reply_bad(struct pop3_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
    /* One reply per command: the last error is the goodbye. */
    if (++s->bad_commands >= s->cfg->max_bad_commands && s->conn) {
        log_info("event=too_many_bad_commands session=%s ip=%s", s->id,
                 conn_ip(s->conn));
        pop3_session_close(s, "too_many_bad_commands");
    }
}

void pop3_session_close(struct pop3_session *s, const char *reason)
{
    if (s->conn)
        conn_close_after_flush(s->conn, reason);
}

void pop3_session_idle(struct pop3_session *s)
{
    s->busy = false;
    if (!s->conn)
        return;
    if (s->shutting_down) {
        on_shutdown(s);
        return;
    }
    conn_resume(s->conn);
}

void pop3_session_after(struct pop3_session *s, uint64_t delay_ms,
                        void (*fn)(void *arg), void *arg)
{
    jobs_later(s->conn ? conn_base(s->conn) : NULL, delay_ms, fn, arg);
}

bool pop3_plaintext_allowed(const struct pop3_session *s)
{
    return s->cfg->plaintext_without_tls || (s->conn && conn_is_tls(s->conn));
}

static void greet(struct pop3_session *s)
{
    if (s->cfg->apop && userdb_has_apop(s->cfg->data_dir)) {
        char rnd[33];
        random_hex(rnd, 16);
        snprintf(s->apop_ts, sizeof(s->apop_ts), "<%lld.%d.%s@%s>",
                 (long long)time(NULL), (int)getpid(), rnd, s->cfg->hostname);
        pop3_reply(s, "+OK pobox ready %s", s->apop_ts);
    } else
        pop3_reply(s, "+OK pobox ready");
    s->greeted = true;
}

void pop3_accept(struct server *srv, struct loop *loop, int fd,
                 const struct sockaddr *addr, bool implicit_tls)
{
    struct pop3_session *s = calloc(1, sizeof(*s));
    struct config *cfg = config_current();
    if (!s) {
        config_unref(cfg);
        close(fd);
        return;
    }
    s->refs = 1;
    s->srv = srv;
    s->cfg = cfg;
    random_hex(s->id, 8);
    struct conn_params p = {
        .loop = loop, .fd = fd, .addr = addr, .tls = srv->tls,
        .implicit_tls = implicit_tls, .limits = srv->limits,
        .max_per_ip = cfg->max_connections_per_ip, .busy_reply = POP3_BUSY_REPLY,
        .max_line = POP3_AUTH_MAX_LINE, .idle_timeout = cfg->pop3_idle_timeout,
        .handshake_timeout = cfg->tls_handshake_timeout,
        .ops = &POP3_CONN_OPS, .ctx = s,
    };
    s->conn = conn_new(&p);
    if (!s->conn) {
        session_free(s);
        return;
    }
    log_info("event=connect session=%s service=%s ip=%s port=%u", s->id,
             implicit_tls ? "pop3s" : "pop3", conn_ip(s->conn), conn_port(s->conn));
    if (!implicit_tls)
        greet(s);
}

static void on_tls_ready(void *ctx)
{
    struct pop3_session *s = ctx;
    char info[128];
    conn_tls_info(s->conn, info, sizeof(info));
    log_info("event=tls session=%s ip=%s tls=\"%s\"", s->id, conn_ip(s->conn), info);
    if (!s->greeted)
        greet(s); /* implicit TLS: the greeting follows the handshake */
}

static void dispatch_line(struct pop3_session *s, char *line, size_t len)
{
    struct pop3_cmdline cmd;
    switch (pop3_parse_line(line, len, &cmd)) {
    case POP3_PARSE_OK:
        pop3_dispatch(s, &cmd);
        return;
    case POP3_PARSE_EMPTY:
        pop3_reply_bad(s, "-ERR Empty command");
        return;
    case POP3_PARSE_NUL:
        pop3_reply_bad(s, "-ERR NUL bytes are not allowed in commands");
        return;
    case POP3_PARSE_BAD_KEYWORD:
        pop3_reply_bad(s, "-ERR Unknown command");
        return;
    case POP3_PARSE_TOO_MANY:
        pop3_reply_bad(s, "-ERR Too many arguments");
        return;
    }
}

static void on_line(void *ctx, char *line, size_t len)
{
    struct pop3_session *s = ctx;
    if (s->state == POP3_UPDATE)
        return; /* QUIT is committing: nothing after it counts */
    if (s->xmit)
        pop3_xtnd_line(s, line, len);
    else if (s->sasl)
        pop3_auth_line(s, line, len);
    else if (len + conn_last_eol(s->conn) <= POP3_MAX_LINE)
        dispatch_line(s, line, len);
    else if (s->state == POP3_AUTHORIZATION && strncasecmp(line, "AUTH ", 5) == 0)
        pop3_auth_long_command(s, line, len);
    else
        on_line_too_long(s);
    if (s->busy && s->conn)
        conn_pause(s->conn);
}

static void on_line_too_long(void *ctx)
{
    struct pop3_session *s = ctx;
    if (s->xmit)
        pop3_xtnd_line_too_long(s);
    else if (s->sasl)
        pop3_auth_line_too_long(s);
    else
        pop3_reply_bad(s, "-ERR Line too long (a command is at most 255 octets)");
}

static void on_writable(void *ctx)
{
    pop3_retr_continue(ctx);
}

static void on_idle(void *ctx)
{
    struct pop3_session *s = ctx;
    log_info("event=idle_timeout session=%s user=%s", s->id,
             s->authed[0] ? s->authed : "-");
    pop3_reply(s, "-ERR Disconnected for inactivity");
    pop3_session_close(s, "idle_timeout");
}

static void on_shutdown(void *ctx)
{
    struct pop3_session *s = ctx;
    s->shutting_down = true;
    if (s->reader) {
        /* Mid-message: no reply can be sent; the client retries later. */
        conn_close(s->conn, "server_stop");
        return;
    }
    if (s->busy)
        return; /* the job finishes first; pop3_session_idle comes back */
    pop3_reply(s, "-ERR [SYS/TEMP] Server shutting down");
    pop3_session_close(s, "server_stop");
}

static void on_close(void *ctx, const char *reason)
{
    struct pop3_session *s = ctx;
    log_info("event=disconnect session=%s reason=%s user=%s retr=%u retr_octets=%llu",
             s->id, reason, s->authed[0] ? s->authed : "-", s->retr_count,
             (unsigned long long)s->retr_octets);
    s->conn = NULL;
    pop3_retr_abort(s);
    pop3_xtnd_abort(s);
    pop3_session_unref(s);
}
