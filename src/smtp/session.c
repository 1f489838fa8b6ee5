/* session.c — an SMTP session's life: accept, greeting, the line handler
 * (commands, DATA lines, AUTH responses, BDAT octets), replies with the
 * error limit, timeouts, server stop, and the reference count that keeps
 * the session alive while a job or a delayed reply is outstanding. */
#include "smtp/session.h"

#include <event2/buffer.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "net/conn.h"
#include "net/server.h"
#include "smtp/smtp.h"

static void on_line(void *ctx, char *line, size_t len);
static void on_line_too_long(void *ctx);
static void on_bytes(void *ctx, const char *data, size_t len);
static void on_bytes_done(void *ctx);
static void on_tls_ready(void *ctx);
static void on_idle(void *ctx);
static void on_shutdown(void *ctx);
static void on_close(void *ctx, const char *reason);

static const struct conn_ops SMTP_CONN_OPS = {
    .on_line = on_line,
    .on_line_too_long = on_line_too_long,
    .on_bytes = on_bytes,
    .on_bytes_done = on_bytes_done,
    .on_tls_ready = on_tls_ready,
    .on_idle = on_idle,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

/* ---- lifetime ----------------------------------------------------------- */

void smtp_session_ref(struct smtp_session *s)
{
    s->refs++;
}

static void session_free(struct smtp_session *s)
{
    smtp_auth_end(s);
    smtp_data_abort(s);
    envelope_reset(&s->env);
    config_unref(s->cfg);
    free(s);
}

void smtp_session_unref(struct smtp_session *s)
{
    if (--s->refs == 0)
        session_free(s);
}

void smtp_session_close(struct smtp_session *s, const char *reason)
{
    if (s->conn)
        conn_close_after_flush(s->conn, reason);
}

void smtp_session_reset(struct smtp_session *s)
{
    smtp_data_abort(s);
    envelope_reset(&s->env);
    if (s->phase != PHASE_GREET)
        s->phase = PHASE_READY;
    if (s->conn)
        conn_set_max_line(s->conn, SMTP_AUTH_MAX_LINE);
}

bool smtp_plaintext_allowed(const struct smtp_session *s)
{
    return s->cfg->plaintext_without_tls || (s->conn && conn_is_tls(s->conn));
}

/* ---- replies ------------------------------------------------------------ */

__attribute__((format(printf, 2, 0)))
static void vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
    if (!s->conn)
        return;
    evbuffer_add_vprintf(conn_output(s->conn), fmt, ap);
    conn_write(s->conn, "\r\n", 2);
}

void smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
}

void smtp_reply_bad(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
    if (++s->bad_commands >= s->cfg->max_bad_commands && s->conn) {
        log_info("event=too_many_errors session=%s ip=%s", s->id, conn_ip(s->conn));
        smtp_reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
        smtp_session_close(s, "too_many_errors");
    }
}

void smtp_session_idle(struct smtp_session *s)
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

/* ---- accept ------------------------------------------------------------- */

static void random_hex(char *out, size_t bytes)
{
    unsigned char r[16];
    if (bytes > sizeof(r))
        bytes = sizeof(r);
    if (RAND_bytes(r, (int)bytes) != 1)
        memset(r, 0, bytes);
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static void greet(struct smtp_session *s)
{
    smtp_reply(s, "220 %s ESMTP pobox", s->cfg->hostname);
}

static void accept_session(struct server *srv, struct loop *loop, int fd,
                           const struct sockaddr *addr, bool implicit_tls,
                           bool submission)
{
    struct smtp_session *s = calloc(1, sizeof(*s));
    struct config *cfg = config_current();
    if (!s) {
        config_unref(cfg);
        close(fd);
        return;
    }
    s->refs = 1;
    s->srv = srv;
    s->cfg = cfg;
    s->submission = submission;
    s->implicit_tls = implicit_tls;
    random_hex(s->id, 8);
    envelope_init(&s->env);
    struct conn_params p = {
        .loop = loop, .fd = fd, .addr = addr, .tls = srv->tls,
        .implicit_tls = implicit_tls, .limits = srv->limits,
        .max_per_ip = cfg->max_connections_per_ip, .busy_reply = SMTP_BUSY_REPLY,
        .max_line = SMTP_AUTH_MAX_LINE, .idle_timeout = cfg->smtp_idle_timeout,
        .handshake_timeout = cfg->tls_handshake_timeout,
        .ops = &SMTP_CONN_OPS, .ctx = s,
    };
    s->conn = conn_new(&p);
    if (!s->conn) {
        session_free(s);
        return;
    }
    snprintf(s->env.client_ip, sizeof s->env.client_ip, "%s", conn_ip(s->conn));
    log_info("event=connect session=%s service=%s ip=%s port=%u", s->id,
             !submission ? "smtp" : implicit_tls ? "submissions" : "submission",
             conn_ip(s->conn), conn_port(s->conn));
    if (!implicit_tls)
        greet(s);
}

void smtp_accept(struct server *srv, struct loop *loop, int fd,
                 const struct sockaddr *addr, bool implicit_tls)
{
    accept_session(srv, loop, fd, addr, implicit_tls, false);
}

void smtp_accept_submission(struct server *srv, struct loop *loop, int fd,
                            const struct sockaddr *addr, bool implicit_tls)
{
    accept_session(srv, loop, fd, addr, implicit_tls, true);
}

/* ---- connection callbacks ----------------------------------------------- */

static void on_tls_ready(void *ctx)
{
    struct smtp_session *s = ctx;
    char info[128];
    conn_tls_info(s->conn, info, sizeof(info));
    snprintf(s->env.tls, sizeof s->env.tls, "%s", info);
    log_info("event=tls session=%s ip=%s tls=\"%s\"", s->id, conn_ip(s->conn), info);
    if (s->implicit_tls && s->phase == PHASE_GREET && !s->env.helo[0])
        greet(s); /* 465: the greeting follows the handshake */
}

static void on_line(void *ctx, char *line, size_t len)
{
    struct smtp_session *s = ctx;
    if (s->sasl)
        smtp_auth_line(s, line, len);
    else if (s->phase == PHASE_DATA)
        smtp_data_line(s, line, len);
    else if (len + conn_last_eol(s->conn) <= SMTP_MAX_LINE ||
             strncasecmp(line, "AUTH ", 5) == 0)
        smtp_dispatch(s, line, len);
    else
        smtp_reply_bad(s, "500 5.5.2 Line too long");
    if (s->busy && s->conn)
        conn_pause(s->conn);
}

static void on_line_too_long(void *ctx)
{
    struct smtp_session *s = ctx;
    if (s->sasl)
        smtp_auth_line_too_long(s);
    else if (s->phase == PHASE_DATA)
        smtp_data_line_too_long(s);
    else
        smtp_reply_bad(s, "500 5.5.2 Line too long");
}

static void on_bytes(void *ctx, const char *data, size_t len)
{
    smtp_bdat_bytes(ctx, data, len);
}

static void on_bytes_done(void *ctx)
{
    struct smtp_session *s = ctx;
    smtp_bdat_done(s);
    if (s->busy && s->conn)
        conn_pause(s->conn);
}

static void on_idle(void *ctx)
{
    struct smtp_session *s = ctx;
    log_info("event=idle_timeout session=%s user=%s", s->id,
             s->authed[0] ? s->authed : "-");
    smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
    smtp_session_close(s, "idle_timeout");
}

static void on_shutdown(void *ctx)
{
    struct smtp_session *s = ctx;
    s->shutting_down = true;
    if (s->busy)
        return; /* the delivery finishes first; smtp_session_idle comes back */
    smtp_reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
    smtp_session_close(s, "server_stop");
}

static void on_close(void *ctx, const char *reason)
{
    struct smtp_session *s = ctx;
    log_info("event=disconnect session=%s reason=%s user=%s messages=%u", s->id,
             reason, s->authed[0] ? s->authed : "-", s->messages);
    s->conn = NULL;
    smtp_session_unref(s);
}
