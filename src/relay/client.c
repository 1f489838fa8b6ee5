/* client.c — one outbound SMTP transaction on an event loop: a socket
 * bufferevent for the plaintext part, replaced by an OpenSSL one on the
 * same socket for STARTTLS or implicit TLS; replies through relay/reply.c;
 * the message streamed from its file in chunks, refilled as the socket
 * drains. See client.h for the conversation and what is distrusted.
 *
 * The state is the reply we wait for (phase) and how many replies are
 * owed (outstanding, more than one only when pipelining). One timer holds
 * the deadline of the current wait. The result is handed over from a
 * separate event, so the callback never runs inside a libevent callback
 * of ours, nor inside relay_client_send. */
#include "relay/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base64.h"

#define READ_CHUNK 16384            /* message octets read per pread */
#define OUT_HIGH (64 * 1024)        /* stop refilling output above this */
#define OUT_LOW (16 * 1024)         /* refill when output drains below */
#define IN_HIGH (64 * 1024)         /* input read ahead at most */
#define ORCPT_MAX 500               /* RFC 3461 4.2 */
#define ENVID_MAX 100               /* RFC 3461 4.4 */

enum phase {
    PH_CONNECT,     /* TCP connect */
    PH_TLS,         /* TLS handshake */
    PH_GREETING,
    PH_EHLO,
    PH_HELO,
    PH_STARTTLS,
    PH_AUTH,        /* AUTH PLAIN, or AUTH LOGIN's first 334 */
    PH_AUTH_USER,   /* LOGIN: the reply to the user name */
    PH_AUTH_PASS,   /* LOGIN: the reply to the password */
    PH_MAIL,
    PH_RCPT,
    PH_DATA,
    PH_BODY,        /* sending the message: no reply due */
    PH_DOT,         /* the reply to the final "." */
    PH_DOT_EMPTY,   /* "." sent after a 354 with no recipient accepted */
    PH_QUIT,
    PH_DONE,
};

static const char *const STAGE[] = {
    [PH_CONNECT] = "connect",     [PH_TLS] = "TLS handshake",
    [PH_GREETING] = "greeting",   [PH_EHLO] = "EHLO",
    [PH_HELO] = "HELO",           [PH_STARTTLS] = "STARTTLS",
    [PH_AUTH] = "AUTH",           [PH_AUTH_USER] = "AUTH",
    [PH_AUTH_PASS] = "AUTH",      [PH_MAIL] = "MAIL",
    [PH_RCPT] = "RCPT",           [PH_DATA] = "DATA",
    [PH_BODY] = "message body",   [PH_DOT] = "end of data",
    [PH_DOT_EMPTY] = "end of data", [PH_QUIT] = "QUIT",
    [PH_DONE] = "done",
};

/* What the peer's EHLO reply offers. */
struct ext {
    bool pipelining, size, eightbit, smtputf8, dsn, starttls;
    bool auth_plain, auth_login;
    uint64_t size_max;      /* SIZE's value, 0 = none given */
};

struct relay_client {
    struct event_base *base;
    relay_client_cb cb;
    void *arg;

    /* owned copies of the params */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *host_name, *helo, *auth_user, *auth_password, *sender, *envid;
    char **rcpts, **orcpt;
    unsigned *notify;
    size_t n_rcpts;
    enum relay_client_tls tls;
    bool tls_verify, smtputf8, body_8bit;
    SSL_CTX *ssl_ctx;
    enum dsn_ret ret;
    int msg_fd;
    uint64_t msg_size;
    unsigned t_connect, t_greeting, t_command, t_data_init, t_data_block,
        t_data_end;

    int fd;                     /* ours until a TLS bufferevent takes it */
    struct bufferevent *bev;
    struct evbuffer_cb_entry *out_cb;
    struct event *timer, *done_ev;

    enum phase phase;
    unsigned outstanding;       /* replies owed by the peer */
    bool tls_active, pipelined, mail_failed, auth_done;
    bool in_send;               /* inside relay_client_send */
    bool clean_close;           /* QUIT answered or the peer closed after it */
    int connect_err;            /* an error reported during it */
    struct ext ext, ext_new;    /* ext_new: being read from an EHLO reply */
    unsigned ehlo_lines;
    size_t rcpt_i;              /* RCPT replies read so far */
    size_t n_accepted;
    bool *accepted;             /* per recipient: 2xx at RCPT */

    uint64_t offset;            /* message octets read so far */
    bool bol, pending_cr;       /* at a line start / a CR held back */
    int64_t last_progress_ms;   /* output last drained */
    int64_t drained_ms;         /* output last became empty */

    struct relay_reply_parser parser;
    struct relay_reply reply;
    struct relay_client_result res;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void process_input(struct relay_client *c);
static void start_tls(struct relay_client *c);
static void proceed(struct relay_client *c);
static void on_ehlo_line(void *arg, int code, const char *text, bool last);

/* ---- ending ---- */

static void teardown(struct relay_client *c)
{
    if (c->timer)
        evtimer_del(c->timer);
    if (c->bev) {
        if (c->out_cb)
            evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
        c->out_cb = NULL;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl && c->res.tls_used && c->clean_close) {
            SSL_shutdown(ssl);  /* close_notify, best effort */
            ERR_clear_error();
        }
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* Ends the session: the connection goes now, the callback runs from the
 * done event on the next loop turn. */
static void finish(struct relay_client *c)
{
    if (c->phase == PH_DONE)
        return;
    c->phase = PH_DONE;
    teardown(c);
    event_active(c->done_ev, EV_TIMEOUT, 0);
}

static void client_free(struct relay_client *c)
{
    teardown(c);
    if (c->timer)
        event_free(c->timer);
    if (c->done_ev)
        event_free(c->done_ev);
    for (size_t i = 0; i < c->n_rcpts; i++) {
        free(c->rcpts ? c->rcpts[i] : NULL);
        free(c->orcpt ? c->orcpt[i] : NULL);
    }
    free(c->rcpts);
    free(c->orcpt);
    free(c->notify);
    free(c->accepted);
    free(c->res.rcpts);
    free(c->host_name);
    free(c->helo);
    free(c->auth_user);
    if (c->auth_password) {
        OPENSSL_cleanse(c->auth_password, strlen(c->auth_password));
        free(c->auth_password);
    }
    free(c->sender);
    free(c->envid);
    free(c);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct relay_client *c = arg;
    (void)fd;
    (void)what;
    for (size_t i = 0; i < c->n_rcpts; i++)
        if (c->res.rcpts[i].code >= 200 && c->res.rcpts[i].code < 300)
            c->res.n_delivered++;
    c->cb(c->arg, &c->res);
    client_free(c);
}

void relay_client_cancel(struct relay_client *c)
{
    if (c)
        client_free(c);
}

/* ---- failures ---- */

static void status_from_code(char *out, int code, const char *enhanced)
{
    if (enhanced && *enhanced)
        snprintf(out, RELAY_REPLY_ENH_SIZE, "%s", enhanced);
    else
        snprintf(out, RELAY_REPLY_ENH_SIZE, "%c.0.0", (char)('0' + code / 100 % 10));
}

/* What we were doing, for diagnostics: the final "." may be queued while
 * the message is still on its way out. */
static enum phase doing(const struct relay_client *c)
{
    if (c->phase == PH_DOT && c->bev &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return PH_BODY;
    return c->phase;
}

/* Records the session failure (the first one only counts) in our words. */
static void fail_local(struct relay_client *c, bool temp, const char *status,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail_local(struct relay_client *c, bool temp, const char *status,
                       const char *fmt, ...)
{
    struct relay_client_result *r = &c->res;
    if (r->failed)
        return;
    r->failed = true;
    r->temp = temp;
    r->session_code = 0;
    r->remote = false;
    r->stage = STAGE[doing(c)];
    snprintf(r->status, sizeof r->status, "%s", status);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->diagnostic, sizeof r->diagnostic, fmt, ap);
    va_end(ap);
}

/* Records the session failure as the peer's reply. Any code outside
 * 4xx/5xx (a 2xx or 3xx where it makes no sense) is a temporary protocol
 * failure. */
static void fail_reply(struct relay_client *c, const struct relay_reply *rp)
{
    struct relay_client_result *r = &c->res;
    if (r->failed)
        return;
    r->failed = true;
    r->session_code = rp->code;
    r->remote = true;
    r->stage = STAGE[c->phase];
    r->temp = rp->code < 500;
    if (rp->code >= 400)
        status_from_code(r->status, rp->code, rp->enhanced);
    else
        snprintf(r->status, sizeof r->status, "4.5.0");
    relay_reply_line(rp, r->diagnostic, sizeof r->diagnostic);
}

/* A failure that leaves the connection unusable: close it now. */
static void abort_session(struct relay_client *c)
{
    finish(c);
}

static void arm(struct relay_client *c, unsigned secs)
{
    struct timeval tv = {.tv_sec = secs};
    evtimer_add(c->timer, &tv);
}

static void arm_ms(struct relay_client *c, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- sending commands ---- */

static void send_line(struct relay_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sends a command (CRLF added) whose reply is owed. */
static void send_line(struct relay_client *c, const char *fmt, ...)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(out, fmt, ap);
    va_end(ap);
    evbuffer_add(out, "\r\n", 2);
    c->outstanding++;
}

/* Waits for the reply of phase ph within secs. */
static void expect(struct relay_client *c, enum phase ph, unsigned secs)
{
    c->phase = ph;
    arm(c, secs);
}

static void send_quit(struct relay_client *c)
{
    send_line(c, "QUIT");
    expect(c, PH_QUIT, c->t_command);
}

/* A refusal by the peer: say QUIT, then end (the connection is sane). */
static void fail_reply_quit(struct relay_client *c, const struct relay_reply *rp)
{
    fail_reply(c, rp);
    send_quit(c);
}

static void fail_local_quit(struct relay_client *c, bool temp, const char *status,
                            const char *msg)
{
    fail_local(c, temp, status, "%s", msg);
    send_quit(c);
}

/* RFC 3461 xtext of s into out (NUL-terminated); false when it does not
 * fit in max octets. */
static bool xtext(const char *s, char *out, size_t max)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 33 && *p <= 126 && *p != '+' && *p != '=') {
            if (n + 1 > max)
                return false;
            out[n++] = (char)*p;
        } else {
            if (n + 3 > max)
                return false;
            out[n++] = '+';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return true;
}

static void send_mail(struct relay_client *c)
{
    char envid[ENVID_MAX + 1];
    struct evbuffer *out = bufferevent_get_output(c->bev);

    evbuffer_add_printf(out, "MAIL FROM:<%s>", c->sender);
    if (c->ext.size)
        evbuffer_add_printf(out, " SIZE=%llu", (unsigned long long)c->msg_size);
    if (c->body_8bit && c->ext.eightbit)
        evbuffer_add_printf(out, " BODY=8BITMIME");
    if (c->smtputf8)
        evbuffer_add_printf(out, " SMTPUTF8");
    if (c->ext.dsn && c->ret != DSN_RET_UNSET)
        evbuffer_add_printf(out, " RET=%s", c->ret == DSN_RET_FULL ? "FULL" : "HDRS");
    if (c->ext.dsn && c->envid && xtext(c->envid, envid, ENVID_MAX))
        evbuffer_add_printf(out, " ENVID=%s", envid);
    send_line(c, "%s", "");
}

static void send_rcpt(struct relay_client *c, size_t i)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "RCPT TO:<%s>", c->rcpts[i]);
    unsigned n = c->notify[i];
    if (c->ext.dsn && n) {
        if (n & DSN_NOTIFY_NEVER) {
            evbuffer_add_printf(out, " NOTIFY=NEVER");
        } else {
            const char *sep = " NOTIFY=";
            static const struct { unsigned bit; const char *name; } names[] = {
                {DSN_NOTIFY_SUCCESS, "SUCCESS"},
                {DSN_NOTIFY_FAILURE, "FAILURE"},
                {DSN_NOTIFY_DELAY, "DELAY"},
            };
            for (size_t k = 0; k < 3; k++)
                if (n & names[k].bit) {
                    evbuffer_add_printf(out, "%s%s", sep, names[k].name);
                    sep = ",";
                }
        }
    }
    const char *o = c->orcpt[i];
    size_t tlen = o ? strspn(o, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                "0123456789-") : 0;
    if (c->ext.dsn && tlen > 0 && o[tlen] == ';') {   /* addr-type ";" */
        char buf[ORCPT_MAX + 1];
        /* "ORCPT=" type ";" xtext, at most ORCPT_MAX octets after "=" */
        if (tlen + 1 < ORCPT_MAX && xtext(o + tlen + 1, buf, ORCPT_MAX - tlen - 1))
            evbuffer_add_printf(out, " ORCPT=%.*s;%s", (int)tlen, o, buf);
    }
    send_line(c, "%s", "");
}

/* MAIL, then RCPTs: all at once, with DATA, when pipelining. */
static void start_mail(struct relay_client *c)
{
    c->pipelined = c->ext.pipelining;
    c->rcpt_i = 0;
    send_mail(c);
    if (c->pipelined) {
        for (size_t i = 0; i < c->n_rcpts; i++)
            send_rcpt(c, i);
        send_line(c, "DATA");
    }
    expect(c, PH_MAIL, c->t_command);
}

static void send_ehlo(struct relay_client *c)
{
    memset(&c->ext_new, 0, sizeof c->ext_new);
    c->ehlo_lines = 0;
    relay_reply_observe(&c->parser, on_ehlo_line, c);
    send_line(c, "EHLO %s", c->helo);
    expect(c, PH_EHLO, c->t_command);
}

static bool send_auth(struct relay_client *c)
{
    if (c->ext.auth_plain) {
        size_t ul = strlen(c->auth_user), pl = strlen(c->auth_password);
        size_t len = ul + pl + 2;
        char *raw = malloc(len);
        if (!raw)
            return false;
        raw[0] = '\0';
        memcpy(raw + 1, c->auth_user, ul);
        raw[ul + 1] = '\0';
        memcpy(raw + ul + 2, c->auth_password, pl);
        char *b64 = base64_encode(raw, len);
        OPENSSL_cleanse(raw, len);
        free(raw);
        if (!b64)
            return false;
        send_line(c, "AUTH PLAIN %s", b64);
        OPENSSL_cleanse(b64, strlen(b64));
        free(b64);
    } else {
        send_line(c, "AUTH LOGIN");
    }
    expect(c, PH_AUTH, c->t_command);
    return true;
}

/* Sends base64(s) as an AUTH LOGIN response. */
static bool send_b64(struct relay_client *c, const char *s, enum phase next)
{
    char *b64 = base64_encode(s, strlen(s));
    if (!b64)
        return false;
    send_line(c, "%s", b64);
    OPENSSL_cleanse(b64, strlen(b64));
    free(b64);
    expect(c, next, c->t_command);
    return true;
}

/* ---- the message ---- */

/* Converts n octets of the message into CRLF, dot-stuffed text at o (room
 * for 2n + 2 octets). Returns the octets written. */
static size_t stuff(struct relay_client *c, const unsigned char *in, size_t n,
                    char *o)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = in[i];
        if (c->pending_cr) {
            c->pending_cr = false;
            o[k++] = '\r';
            o[k++] = '\n';
            c->bol = true;
            if (b == '\n')
                continue;       /* CR LF in the file: one line end */
        }
        if (b == '\r') {
            c->pending_cr = true;
            continue;
        }
        if (b == '\n') {
            o[k++] = '\r';
            o[k++] = '\n';
            c->bol = true;
            continue;
        }
        if (c->bol && b == '.')
            o[k++] = '.';
        c->bol = false;
        o[k++] = (char)b;
    }
    return k;
}

/* Adds message text to the output until it holds OUT_HIGH octets or the
 * message is all out (then the final "."). */
static void fill_body(struct relay_client *c)
{
    unsigned char buf[READ_CHUNK];
    struct evbuffer *out = bufferevent_get_output(c->bev);

    while (c->phase == PH_BODY && evbuffer_get_length(out) < OUT_HIGH) {
        ssize_t n = pread(c->msg_fd, buf, sizeof buf, (off_t)c->offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            /* closing before "." makes the peer drop the transaction */
            fail_local(c, true, "4.3.0", "reading the queued message: %s",
                       strerror(errno));
            abort_session(c);
            return;
        }
        struct evbuffer_iovec v;
        size_t room = (size_t)n * 2 + 8;
        if (evbuffer_reserve_space(out, (ev_ssize_t)room, &v, 1) < 1 || v.iov_len < room) {
            fail_local(c, true, "4.3.0", "%s", "out of memory");
            abort_session(c);
            return;
        }
        char *o = v.iov_base;
        size_t k = stuff(c, buf, (size_t)n, o);
        c->offset += (uint64_t)n;
        if (n == 0) {
            if (c->pending_cr) {
                c->pending_cr = false;
                o[k++] = '\r';
                o[k++] = '\n';
                c->bol = true;
            }
            if (!c->bol) {
                o[k++] = '\r';
                o[k++] = '\n';
            }
            memcpy(o + k, ".\r\n", 3);
            k += 3;
        }
        v.iov_len = k;
        evbuffer_commit_space(out, &v, 1);
        if (n == 0) {
            /* the final reply's wait starts when the "." has left (on_timer);
             * until then the data block timeout watches the sending */
            c->outstanding++;
            expect(c, PH_DOT, c->t_data_block < c->t_data_end ? c->t_data_block
                                                              : c->t_data_end);
        }
    }
}

static void start_body(struct relay_client *c)
{
    c->offset = 0;
    c->bol = true;
    c->pending_cr = false;
    c->phase = PH_BODY;
    c->last_progress_ms = now_ms();
    arm(c, c->t_data_block);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    fill_body(c);
}

/* ---- replies ---- */

static bool is2xx(int code)
{
    return code >= 200 && code < 300;
}

static void set_rcpt(struct relay_client *c, size_t i, const struct relay_reply *rp,
                     enum phase ph)
{
    struct relay_client_rcpt *r = &c->res.rcpts[i];
    r->code = rp->code;
    status_from_code(r->status, rp->code, rp->enhanced);
    relay_reply_line(rp, r->reply, sizeof r->reply);
    r->stage = STAGE[ph];
}

/* One EHLO keyword line (observer of the parser). */
static void on_ehlo_line(void *arg, int code, const char *text, bool last)
{
    struct relay_client *c = arg;
    struct ext *e = &c->ext_new;
    unsigned n = c->ehlo_lines++;
    (void)last;
    if (n == 0 || code != 250)
        return;     /* the first line is the peer's name */
    char kw[32];
    size_t k = 0;
    while (text[k] && text[k] != ' ' && text[k] != '=' && k + 1 < sizeof kw) {
        kw[k] = text[k];
        k++;
    }
    kw[k] = '\0';
    const char *args = text + k;
    if (strcasecmp(kw, "PIPELINING") == 0)
        e->pipelining = true;
    else if (strcasecmp(kw, "8BITMIME") == 0)
        e->eightbit = true;
    else if (strcasecmp(kw, "SMTPUTF8") == 0)
        e->smtputf8 = true;
    else if (strcasecmp(kw, "DSN") == 0)
        e->dsn = true;
    else if (strcasecmp(kw, "STARTTLS") == 0)
        e->starttls = true;
    else if (strcasecmp(kw, "SIZE") == 0) {
        e->size = true;
        while (*args == ' ')
            args++;
        uint64_t v = 0;
        bool ok = *args >= '0' && *args <= '9';
        for (; *args >= '0' && *args <= '9'; args++) {
            if (v > (UINT64_MAX - 9) / 10) {
                ok = false;     /* absurdly large: as good as no limit */
                break;
            }
            v = v * 10 + (uint64_t)(*args - '0');
        }
        e->size_max = ok ? v : 0;
    } else if (strcasecmp(kw, "AUTH") == 0) {
        /* "AUTH PLAIN LOGIN" or the old "AUTH=PLAIN LOGIN" */
        const char *p = args;
        while (*p) {
            while (*p == ' ' || *p == '=')
                p++;
            size_t len = strcspn(p, " ");
            if (len == 5 && strncasecmp(p, "PLAIN", 5) == 0)
                e->auth_plain = true;
            else if (len == 5 && strncasecmp(p, "LOGIN", 5) == 0)
                e->auth_login = true;
            p += len;
        }
    }
}

static void on_greeting(struct relay_client *c, const struct relay_reply *rp)
{
    if (rp->code == 220)
        send_ehlo(c);
    else
        fail_reply_quit(c, rp);     /* 554: no service; 421: later */
}

static void on_ehlo(struct relay_client *c, const struct relay_reply *rp)
{
    if (is2xx(rp->code)) {
        c->ext = c->ext_new;
        c->res.peer_dsn = c->ext.dsn;
        proceed(c);
    } else if (rp->code >= 500 && !c->tls_active) {
        memset(&c->ext_new, 0, sizeof c->ext_new);
        send_line(c, "HELO %s", c->helo);
        expect(c, PH_HELO, c->t_command);
    } else {
        fail_reply_quit(c, rp);
    }
}

static void on_helo(struct relay_client *c, const struct relay_reply *rp)
{
    if (is2xx(rp->code)) {
        memset(&c->ext, 0, sizeof c->ext);
        c->res.peer_dsn = false;
        proceed(c);
    } else {
        fail_reply_quit(c, rp);
    }
}

static void on_starttls(struct relay_client *c, const struct relay_reply *rp)
{
    if (rp->code == 220) {
        start_tls(c);
        return;
    }
    if (c->tls == RELAY_TLS_REQUIRED) {
        fail_reply(c, rp);
        c->res.temp = true;     /* our policy, not the mail's fault */
        send_quit(c);
        return;
    }
    c->ext.starttls = false;    /* RFC 3207: go on without TLS */
    proceed(c);
}

static void on_auth(struct relay_client *c, const struct relay_reply *rp)
{
    bool ok;
    if (rp->code == 235 && (c->phase == PH_AUTH || c->phase == PH_AUTH_PASS)) {
        c->auth_done = true;
        proceed(c);
        return;
    }
    if (rp->code == 334 && c->phase == PH_AUTH && !c->ext.auth_plain)
        ok = send_b64(c, c->auth_user, PH_AUTH_USER);
    else if (rp->code == 334 && c->phase == PH_AUTH_USER)
        ok = send_b64(c, c->auth_password, PH_AUTH_PASS);
    else if (rp->code == 334) {
        /* a challenge where none is due: the exchange is confused */
        fail_local(c, true, "4.7.0", "%s", "AUTH failed: unexpected challenge");
        abort_session(c);
        return;
    } else {
        /* refused credentials are our configuration's problem: retry */
        fail_reply(c, rp);
        c->res.temp = true;
        send_quit(c);
        return;
    }
    if (!ok) {
        fail_local(c, true, "4.3.0", "%s", "out of memory");
        abort_session(c);
    }
}

static void on_mail(struct relay_client *c, const struct relay_reply *rp)
{
    if (!is2xx(rp->code)) {
        fail_reply(c, rp);
        c->mail_failed = true;
        if (!c->pipelined) {
            send_quit(c);
            return;
        }
    } else if (!c->pipelined) {
        send_rcpt(c, 0);
    }
    expect(c, PH_RCPT, c->t_command);
}

static void on_rcpt(struct relay_client *c, const struct relay_reply *rp)
{
    size_t i = c->rcpt_i++;
    if (!c->mail_failed) {
        if (is2xx(rp->code)) {
            c->accepted[i] = true;
            c->n_accepted++;
        } else if (rp->code >= 400) {
            set_rcpt(c, i, rp, PH_RCPT);
        } else {
            fail_reply(c, rp);      /* 3xx to RCPT: the peer is confused */
            if (c->pipelined)
                abort_session(c);
            else
                send_quit(c);
            return;
        }
    }
    if (c->rcpt_i < c->n_rcpts) {
        if (!c->pipelined)
            send_rcpt(c, c->rcpt_i);
        expect(c, PH_RCPT, c->t_command);
        return;
    }
    if (c->pipelined) {
        expect(c, PH_DATA, c->t_data_init);
    } else if (c->n_accepted > 0) {
        send_line(c, "DATA");
        expect(c, PH_DATA, c->t_data_init);
    } else {
        send_quit(c);   /* every recipient has its verdict */
    }
}

static void on_data(struct relay_client *c, const struct relay_reply *rp)
{
    if (rp->code == 354) {
        if (c->mail_failed || c->n_accepted == 0) {
            /* RFC 2920 3.1: nobody to send to, but DATA went through */
            evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
            c->outstanding++;
            expect(c, PH_DOT_EMPTY, c->t_data_end);
        } else {
            start_body(c);
        }
        return;
    }
    if (!c->mail_failed && c->n_accepted > 0) {
        if (rp->code >= 400) {
            for (size_t i = 0; i < c->n_rcpts; i++)
                if (c->accepted[i])
                    set_rcpt(c, i, rp, PH_DATA);
        } else {
            fail_reply(c, rp);
        }
    }
    send_quit(c);
}

static void on_dot(struct relay_client *c, const struct relay_reply *rp)
{
    if (rp->code >= 200 && rp->code < 300) {
        /* fine */
    } else if (rp->code < 400) {
        fail_reply(c, rp);
        send_quit(c);
        return;
    }
    for (size_t i = 0; i < c->n_rcpts; i++)
        if (c->accepted[i])
            set_rcpt(c, i, rp, PH_DOT);
    send_quit(c);
}

static void on_reply(struct relay_client *c, const struct relay_reply *rp)
{
    switch (c->phase) {
    case PH_GREETING: on_greeting(c, rp); break;
    case PH_EHLO: on_ehlo(c, rp); break;
    case PH_HELO: on_helo(c, rp); break;
    case PH_STARTTLS: on_starttls(c, rp); break;
    case PH_AUTH:
    case PH_AUTH_USER:
    case PH_AUTH_PASS: on_auth(c, rp); break;
    case PH_MAIL: on_mail(c, rp); break;
    case PH_RCPT: on_rcpt(c, rp); break;
    case PH_DATA: on_data(c, rp); break;
    case PH_DOT: on_dot(c, rp); break;
    case PH_DOT_EMPTY: send_quit(c); break;
    case PH_QUIT:
        if (c->outstanding == 0) {
            c->clean_close = true;
            finish(c);
        }
        break;
    default: break;
    }
}

/* The next step after EHLO/HELO, STARTTLS or AUTH: TLS, then AUTH, then
 * the checks that need the peer's extensions, then MAIL. */
static void proceed(struct relay_client *c)
{
    if (!c->tls_active && (c->tls == RELAY_TLS_OPPORTUNISTIC ||
                           c->tls == RELAY_TLS_REQUIRED)) {
        if (c->ext.starttls) {
            send_line(c, "STARTTLS");
            expect(c, PH_STARTTLS, c->t_command);
            return;
        }
        if (c->tls == RELAY_TLS_REQUIRED) {
            fail_local_quit(c, true, "4.7.4",
                            "TLS is required, but the peer does not offer STARTTLS");
            return;
        }
    }
    if (c->auth_user && !c->auth_done) {
        if (!c->tls_active && c->tls != RELAY_TLS_NONE) {
            fail_local_quit(c, true, "4.7.4",
                            "AUTH without TLS refused (the peer offers no STARTTLS)");
            return;
        }
        if (!c->ext.auth_plain && !c->ext.auth_login) {
            fail_local_quit(c, true, "4.7.4",
                            "AUTH required, but the peer offers neither PLAIN nor LOGIN");
            return;
        }
        if (!send_auth(c)) {
            fail_local(c, true, "4.3.0", "%s", "out of memory");
            abort_session(c);
        }
        return;
    }
    if (c->smtputf8 && !c->ext.smtputf8) {
        fail_local_quit(c, false, "5.6.7",
                        "the message needs SMTPUTF8, which the peer does not offer");
        return;
    }
    if (c->ext.size && c->ext.size_max > 0 && c->msg_size > c->ext.size_max) {
        char text[160];
        snprintf(text, sizeof text,
                 "message size %llu exceeds the peer's limit of %llu octets",
                 (unsigned long long)c->msg_size, (unsigned long long)c->ext.size_max);
        fail_local_quit(c, false, "5.3.4", text);
        return;
    }
    start_mail(c);
}

/* ---- input ---- */

static void protocol_error(struct relay_client *c, const char *why)
{
    fail_local(c, true, "4.5.0", "protocol error in reply to %s: %s", STAGE[c->phase],
               why);
    abort_session(c);
}

/* Feeds what has arrived to the parser, one reply at a time. */
static void process_input(struct relay_client *c)
{
    while (c->phase != PH_DONE && c->bev) {
        struct bufferevent *bev = c->bev;
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        if (c->outstanding == 0) {
            if (c->phase == PH_BODY)
                fail_local(c, true, "4.5.0", "%s",
                           "the peer spoke while the message was being sent");
            else
                fail_local(c, true, "4.5.0", "the peer sent data before its turn (after %s)",
                           STAGE[c->phase]);
            abort_session(c);
            return;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        size_t used = 0;
        enum relay_reply_rc rc =
            relay_reply_feed(&c->parser, v.iov_base, v.iov_len, &used, &c->reply);
        evbuffer_drain(in, used);
        if (rc == RELAY_REPLY_NEED_MORE)
            continue;
        if (rc == RELAY_REPLY_ERROR) {
            protocol_error(c, c->reply.why ? c->reply.why : "bad reply");
            return;
        }
        c->outstanding--;
        bool rest = evbuffer_get_length(in) > 0;
        if (c->outstanding == 0 && c->phase == PH_STARTTLS && c->reply.code == 220) {
            /* RFC 3207 response injection: whatever came with the 220 is
             * dropped unread; TLS starts from a clean slate */
            evbuffer_drain(in, evbuffer_get_length(in));
            relay_reply_init(&c->parser);
            rest = false;
        }
        if (c->outstanding == 0 && rest && c->phase != PH_QUIT) {
            fail_local(c, true, "4.5.0", "the peer sent data before its turn (after %s)",
                       STAGE[c->phase]);
            abort_session(c);
            return;
        }
        relay_reply_observe(&c->parser, NULL, NULL);
        on_reply(c, &c->reply);
        if (c->bev != bev)
            return;     /* now TLS: the new bufferevent brings its own input */
    }
}

/* ---- TLS ---- */

static bool is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                      void *arg)
{
    struct relay_client *c = arg;
    if (info->n_deleted > 0) {
        c->last_progress_ms = now_ms();
        if (evbuffer_get_length(buf) == 0)
            c->drained_ms = c->last_progress_ms;
    }
}

static bool setup_bev(struct relay_client *c)
{
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, IN_HIGH);
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), on_output, c);
    return c->out_cb && bufferevent_enable(c->bev, EV_READ | EV_WRITE) == 0;
}

/* Replaces the plaintext bufferevent by a TLS client on the same socket
 * (its input is empty or dropped: nothing read in plaintext survives). */
static void start_tls(struct relay_client *c)
{
    SSL *ssl = SSL_new(c->ssl_ctx);
    if (!ssl) {
        fail_local(c, true, "4.7.0", "%s", "TLS setup failed");
        abort_session(c);
        return;
    }
    if (c->host_name && *c->host_name && !is_ip_literal(c->host_name))
        SSL_set_tlsext_host_name(ssl, c->host_name);
    if (c->tls_verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        bool ok = c->host_name && *c->host_name &&
                  (is_ip_literal(c->host_name)
                       ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host_name) == 1
                       : X509_VERIFY_PARAM_set1_host(vp, c->host_name, 0) == 1);
        if (!ok) {
            SSL_free(ssl);
            fail_local(c, true, "4.7.5", "%s",
                       "TLS verification needs the peer's name, and there is none");
            abort_session(c);
            return;
        }
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    }
    if (c->bev) {
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
        c->out_cb = NULL;
        bufferevent_free(c->bev);   /* does not own the socket */
    }
    c->bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl,
                                            BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        SSL_free(ssl);
        fail_local(c, true, "4.7.0", "%s", "TLS setup failed");
        abort_session(c);
        return;
    }
    c->fd = -1;     /* the bufferevent closes it */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->outstanding = 0;
    relay_reply_init(&c->parser);
    expect(c, PH_TLS, c->t_command);
    if (!setup_bev(c)) {
        fail_local(c, true, "4.7.0", "%s", "TLS setup failed");
        abort_session(c);
    }
}

static void tls_failed(struct relay_client *c)
{
    char why[256] = "";
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    unsigned long err = bufferevent_get_openssl_error(c->bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (c->tls_verify && vr != X509_V_OK)
        snprintf(why, sizeof why, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (err) {
        const char *r = ERR_reason_error_string(err);
        snprintf(why, sizeof why, "%s", r ? r : "unknown error");
    } else {
        snprintf(why, sizeof why, "%s", "connection closed by the peer");
    }
    while (bufferevent_get_openssl_error(c->bev))
        ;
    ERR_clear_error();
    c->res.tls_failed = true;
    fail_local(c, true, c->tls_verify && vr != X509_V_OK ? "4.7.5" : "4.7.0",
               "TLS handshake failed: %s", why);
    abort_session(c);
}

static void tls_ready(struct relay_client *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    c->tls_active = true;
    c->res.tls_used = true;
    if (ssl)
        snprintf(c->res.tls_info, sizeof c->res.tls_info, "%s %s", SSL_get_version(ssl),
                 SSL_get_cipher_name(ssl));
    if (c->tls == RELAY_TLS_IMPLICIT) {
        c->outstanding = 1;
        expect(c, PH_GREETING, c->t_greeting);
    } else {
        send_ehlo(c);   /* RFC 3207: forget everything learnt before */
    }
}

/* ---- bufferevent callbacks ---- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct relay_client *c = arg;
    (void)bev;
    if (c->phase == PH_BODY)
        fill_body(c);
}

static void connected(struct relay_client *c)
{
    if (c->tls == RELAY_TLS_IMPLICIT) {
        start_tls(c);
        return;
    }
    c->outstanding = 1;
    expect(c, PH_GREETING, c->t_greeting);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct relay_client *c = arg;
    int err = EVUTIL_SOCKET_ERROR();
    (void)bev;

    if (c->in_send && !(what & BEV_EVENT_CONNECTED)) {
        /* libevent reports some connect errors at once */
        c->connect_err = err ? err : ECONNREFUSED;
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        if (c->phase == PH_CONNECT)
            connected(c);
        else if (c->phase == PH_TLS)
            tls_ready(c);
        return;
    }
    if (c->phase == PH_DONE)
        return;
    /* what is left to read first: a "421" before the close counts */
    process_input(c);
    if (c->phase == PH_DONE)
        return;
    if (c->phase == PH_QUIT) {
        finish(c);      /* the verdicts are in; the close is fine */
        return;
    }
    if (c->phase == PH_CONNECT) {
        fail_local(c, true, "4.4.1", "connect: %s",
                   err ? evutil_socket_error_to_string(err) : "failed");
    } else if (c->phase == PH_TLS) {
        tls_failed(c);
        return;
    } else {
        bool body = doing(c) == PH_BODY;
        fail_local(c, true, "4.4.2", "connection %s %s %s%s%s",
                   what & BEV_EVENT_EOF ? "closed by the peer" : "lost",
                   body ? "while sending the" : "after",
                   body ? "message" : STAGE[c->phase],
                   what & BEV_EVENT_EOF ? "" : ": ",
                   what & BEV_EVENT_EOF ? "" : err ? evutil_socket_error_to_string(err) : "error");
    }
    abort_session(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct relay_client *c = arg;
    (void)fd;
    (void)what;
    int64_t now = now_ms();
    size_t pending = c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
    int64_t block = (int64_t)c->t_data_block * 1000;

    switch (c->phase) {
    case PH_CONNECT:
        fail_local(c, true, "4.4.1", "%s", "connect: timeout");
        break;
    case PH_TLS:
        c->res.tls_failed = true;
        fail_local(c, true, "4.7.0", "%s", "TLS handshake failed: timeout");
        break;
    case PH_GREETING:
        fail_local(c, true, "4.4.2", "%s", "timeout waiting for the greeting");
        break;
    case PH_BODY:
    case PH_DOT:
        /* still sending: a step that moved within the block timeout is fine */
        if (pending > 0 || c->phase == PH_BODY) {
            if (now - c->last_progress_ms < block) {
                arm_ms(c, block - (now - c->last_progress_ms));
                return;
            }
            fail_local(c, true, "4.4.2", "%s", "timeout sending the message");
            break;
        }
        /* the final reply's wait counts from when the "." left */
        if (now - c->drained_ms < (int64_t)c->t_data_end * 1000) {
            arm_ms(c, (int64_t)c->t_data_end * 1000 - (now - c->drained_ms));
            return;
        }
        fail_local(c, true, "4.4.2", "%s", "timeout after end of data");
        break;
    case PH_QUIT:
        finish(c);      /* a peer that does not answer QUIT changes nothing */
        return;
    default:
        fail_local(c, true, "4.4.2", "timeout after %s", STAGE[c->phase]);
        break;
    }
    abort_session(c);
}

/* ---- starting ---- */

static bool clean_text(const char *s, bool allow_empty, bool allow_space)
{
    if (!s || (!*s && !allow_empty))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (!allow_space && *p == ' '))
            return false;
    return true;
}

static bool valid_params(const struct relay_client_params *p)
{
    if (!p->base || !p->addr || p->addrlen == 0 ||
        p->addrlen > sizeof(struct sockaddr_storage) ||
        (p->addr->sa_family != AF_INET && p->addr->sa_family != AF_INET6) ||
        p->n_rcpts == 0 || !p->rcpts || p->msg_fd < 0 ||
        !clean_text(p->helo, false, false) || !clean_text(p->sender, true, true) ||
        (p->host_name && !clean_text(p->host_name, true, false)) ||
        (p->envid && !clean_text(p->envid, true, true)) ||
        (p->tls != RELAY_TLS_NONE && !p->ssl_ctx) ||
        (p->tls > RELAY_TLS_NONE) ||
        (p->auth_user && (!clean_text(p->auth_user, false, true) || !p->auth_password)))
        return false;
    for (size_t i = 0; i < p->n_rcpts; i++) {
        if (!clean_text(p->rcpts[i], false, true))
            return false;
        if (p->orcpt && p->orcpt[i] && !clean_text(p->orcpt[i], true, true))
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

static unsigned secs_or(unsigned v, unsigned dflt)
{
    return v ? v : dflt;
}

struct relay_client *relay_client_send(const struct relay_client_params *p,
                                       relay_client_cb cb, void *arg)
{
    if (!p || !cb || !valid_params(p)) {
        errno = EINVAL;
        return NULL;
    }
    struct relay_client *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    bool ok = true;
    c->fd = -1;
    c->base = p->base;
    c->cb = cb;
    c->arg = arg;
    memcpy(&c->addr, p->addr, p->addrlen);
    c->addrlen = p->addrlen;
    c->host_name = dup_or_null(p->host_name, &ok);
    c->helo = dup_or_null(p->helo, &ok);
    c->auth_user = dup_or_null(p->auth_user, &ok);
    c->auth_password = p->auth_user ? dup_or_null(p->auth_password, &ok) : NULL;
    c->sender = dup_or_null(p->sender, &ok);
    c->envid = dup_or_null(p->envid, &ok);
    c->n_rcpts = p->n_rcpts;
    c->rcpts = calloc(p->n_rcpts, sizeof *c->rcpts);
    c->orcpt = calloc(p->n_rcpts, sizeof *c->orcpt);
    c->notify = calloc(p->n_rcpts, sizeof *c->notify);
    c->accepted = calloc(p->n_rcpts, sizeof *c->accepted);
    c->res.rcpts = calloc(p->n_rcpts, sizeof *c->res.rcpts);
    c->res.n_rcpts = p->n_rcpts;
    ok = ok && c->rcpts && c->orcpt && c->notify && c->accepted && c->res.rcpts;
    for (size_t i = 0; ok && i < p->n_rcpts; i++) {
        c->rcpts[i] = dup_or_null(p->rcpts[i], &ok);
        c->orcpt[i] = p->orcpt ? dup_or_null(p->orcpt[i], &ok) : NULL;
        c->notify[i] = p->notify ? p->notify[i] : 0;
        c->res.rcpts[i].stage = "";
    }
    c->tls = p->tls;
    c->tls_verify = p->tls_verify;
    c->ssl_ctx = p->ssl_ctx;
    c->smtputf8 = p->smtputf8;
    c->body_8bit = p->body_8bit;
    c->ret = p->ret;
    c->msg_fd = p->msg_fd;
    c->msg_size = p->msg_size;
    c->t_connect = secs_or(p->timeout_connect, 30);
    c->t_greeting = secs_or(p->timeout_greeting, 300);
    c->t_command = secs_or(p->timeout_command, 300);
    c->t_data_init = secs_or(p->timeout_data_init, 120);
    c->t_data_block = secs_or(p->timeout_data_block, 180);
    c->t_data_end = secs_or(p->timeout_data_end, 600);
    c->res.stage = "";
    relay_reply_init(&c->parser);

    if (c->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&c->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, c->res.remote_ip, sizeof c->res.remote_ip);
    } else {
        const struct sockaddr_in *a = (const void *)&c->addr;
        inet_ntop(AF_INET, &a->sin_addr, c->res.remote_ip, sizeof c->res.remote_ip);
    }

    c->timer = ok ? evtimer_new(c->base, on_timer, c) : NULL;
    c->done_ev = ok ? event_new(c->base, -1, 0, on_done, c) : NULL;
    if (ok && c->timer && c->done_ev)
        c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd >= 0) {
        int one = 1;    /* commands go out without waiting for delayed ACKs */
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->bev = bufferevent_socket_new(c->base, c->fd, 0);
    }
    if (!c->bev || !setup_bev(c)) {
        int e = c->fd < 0 && ok && c->timer && c->done_ev ? errno : ENOMEM;
        c->cb = NULL;
        client_free(c);
        errno = e;
        return NULL;
    }
    c->phase = PH_CONNECT;
    arm(c, c->t_connect);
    c->in_send = true;
    int r = bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->addr, (int)c->addrlen);
    int e = errno;
    c->in_send = false;
    if (r != 0 || c->connect_err) {
        /* failed at once (no route, ...): reported from the loop */
        e = c->connect_err ? c->connect_err : e ? e : ECONNREFUSED;
        fail_local(c, true, "4.4.1", "connect: %s", strerror(e));
        finish(c);
    }
    return c;
}

/* ---- the TLS context ---- */

SSL_CTX *relay_client_ssl_ctx_new(const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Opportunistic TLS (RFC 7435): a certificate that does not verify
     * still beats plaintext, so nothing is checked unless a transaction
     * sets tls_verify (SSL_set_verify per connection). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    int r = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx);
    if (r != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
