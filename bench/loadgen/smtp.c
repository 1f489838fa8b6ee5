/* smtp.c — the smtp-submit session script: greeting, EHLO, optional
 * STARTTLS, AUTH PLAIN, then K times MAIL/RCPT/DATA with a generated
 * message, QUIT. One command at a time, every reply checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"
#include "worker.h"

#define LINE_LEN 80                 /* 78 characters + CRLF */

enum { S_GREET, S_EHLO, S_STARTTLS, S_AUTH, S_MAIL, S_RCPT, S_DATA, S_MSG, S_QUIT, S_EOF };

static const char *const step_names[] = {
    [S_GREET] = "greeting", [S_EHLO] = "EHLO", [S_STARTTLS] = "STARTTLS",
    [S_AUTH] = "AUTH",      [S_MAIL] = "MAIL", [S_RCPT] = "RCPT",
    [S_DATA] = "DATA",      [S_MSG] = "end of DATA", [S_QUIT] = "QUIT",
    [S_EOF] = "close",
};

static const char alnum[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

int lg_smtp_prepare(struct lg_run *r)
{
    const char *rcpt = r->o->rcpt;
    if (rcpt != NULL && (strlen(rcpt) > LG_USER_MAX_LEN || strpbrk(rcpt, "\r\n<>"))) {
        fprintf(stderr, "pobox-loadgen: bad --rcpt\n");
        return -1;
    }
    size_t lines = r->o->size / LINE_LEN + 2;
    r->body_cap = lines * LINE_LEN;
    r->body = malloc(r->body_cap);
    if (r->body == NULL)
        return -1;
    for (size_t k = 0; k < lines; k++) {
        char *l = r->body + k * LINE_LEN;
        for (size_t j = 0; j < LINE_LEN - 2; j++)
            l[j] = alnum[(k + j) % (sizeof(alnum) - 1)];
        l[LINE_LEN - 2] = '\r';
        l[LINE_LEN - 1] = '\n';
    }
    return 0;
}

static struct lg_slot *slot_of(struct lg_conn *c)
{
    return LG_CONTAINER_OF(c, struct lg_slot, conn);
}

static void send_or_fail(struct lg_slot *s, const char *p, size_t n)
{
    if (s->conn.state == LG_CONN_OPEN && lg_conn_send(&s->conn, p, n) < 0)
        lg_slot_conn_failed(s, step_names[s->step]);
}

/* Sends PREFIX ARG SUFFIX CRLF and moves to step. */
static void cmd(struct lg_slot *s, int step, const char *prefix, const char *arg,
                size_t arg_len, const char *suffix)
{
    char buf[64 + 4 * LG_USER_MAX_LEN];     /* AUTH PLAIN: base64 of 2 * max + 2 */
    char *p = buf;
    lg_put(&p, prefix, strlen(prefix));
    if (arg != NULL)
        lg_put(&p, arg, arg_len);
    lg_put(&p, suffix, strlen(suffix));
    LG_PUT_LIT(&p, "\r\n");
    s->step = (unsigned char)step;
    send_or_fail(s, buf, (size_t)(p - buf));
}

static const char *rcpt_of(const struct lg_slot *s, size_t *len)
{
    const char *r = lg_slot_opts(s)->rcpt;
    if (r == NULL) {
        *len = s->user->addr_len;
        return s->user->addr;
    }
    *len = strlen(r);
    return r;
}

static const char *date_now(struct lg_worker *w)
{
    time_t t = time(NULL);
    if (t != w->date_sec) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
        w->date_sec = t;
    }
    return w->date;
}

static size_t build_headers(struct lg_slot *s, char *buf)
{
    struct lg_worker *w = s->w;
    size_t rl;
    const char *rcpt = rcpt_of(s, &rl);
    const char *date = date_now(w);
    uint32_t seq = ++w->msg_seq;
    char *p = buf;
    LG_PUT_LIT(&p, "From: <");
    lg_put(&p, s->user->addr, s->user->addr_len);
    LG_PUT_LIT(&p, ">\r\nTo: <");
    lg_put(&p, rcpt, rl);
    LG_PUT_LIT(&p, ">\r\nSubject: bench ");
    p += lg_utoa(p, seq);
    LG_PUT_LIT(&p, "\r\nMessage-ID: <");
    p += lg_utoa(p, seq);
    *p++ = '.';
    p += lg_utoa(p, w->id);
    *p++ = '.';
    p += lg_utoa(p, w->run->mid_tag);
    LG_PUT_LIT(&p, "@bench.test>\r\nDate: ");
    lg_put(&p, date, strlen(date));
    LG_PUT_LIT(&p, "\r\n\r\n");
    return (size_t)(p - buf);
}

/* Headers, then body lines up to --size octets in all, then ".". */
static void send_message(struct lg_slot *s)
{
    const struct lg_run *r = s->w->run;
    char hdr[256 + 2 * LG_USER_MAX_LEN];
    size_t hl = build_headers(s, hdr);
    size_t body = r->o->size > hl ? r->o->size - hl : 0;
    size_t full = body / LINE_LEN, rem = body % LINE_LEN;
    if (rem > 0 && rem < 3 && full > 0) {
        full--;
        rem += LINE_LEN;
    }
    char tail[LINE_LEN * 2 + 8];
    char *p = tail;
    if (rem >= 3)
        lg_put(&p, r->body + full * LINE_LEN, rem - 2);
    if (rem > 0)
        LG_PUT_LIT(&p, "\r\n");
    LG_PUT_LIT(&p, ".\r\n");
    s->step = S_MSG;
    send_or_fail(s, hdr, hl);
    if (full > 0)
        send_or_fail(s, r->body, full * LINE_LEN);
    send_or_fail(s, tail, (size_t)(p - tail));
    s->t_mark = lg_clock_us();
}

static void mail_from(struct lg_slot *s)
{
    cmd(s, S_MAIL, "MAIL FROM:<", s->user->addr, s->user->addr_len, ">");
}

static void message_accepted(struct lg_slot *s)
{
    struct lg_stats *st = &s->w->st;
    uint64_t now = lg_slot_now(s);
    st->messages++;
    st->smtp_250++;
    lg_hist_add(&st->data_lat, now > s->t_mark ? now - s->t_mark : 1);
    if (++s->i < lg_slot_opts(s)->messages)
        mail_from(s);
    else
        cmd(s, S_QUIT, "QUIT", NULL, 0, "");
}

static void start_tls(struct lg_slot *s)
{
    if (lg_conn_pending(&s->conn) != 0) {
        lg_slot_fail(s, "STARTTLS", "data after the 220", strlen("data after the 220"));
        return;
    }
    if (lg_conn_start_tls(&s->conn, s->tls_sess) < 0)
        lg_slot_conn_failed(s, "STARTTLS");
}

static void next(struct lg_slot *s)
{
    size_t rl;
    const char *rcpt;
    switch (s->step) {
    case S_GREET: cmd(s, S_EHLO, "EHLO bench.test", NULL, 0, ""); break;
    case S_EHLO:
        if (lg_slot_opts(s)->starttls && s->conn.ssl == NULL)
            cmd(s, S_STARTTLS, "STARTTLS", NULL, 0, "");
        else
            cmd(s, S_AUTH, "AUTH PLAIN ", s->user->plain64, s->user->plain64_len, "");
        break;
    case S_STARTTLS: start_tls(s); break;
    case S_AUTH: s->i = 0; mail_from(s); break;
    case S_MAIL:
        rcpt = rcpt_of(s, &rl);
        cmd(s, S_RCPT, "RCPT TO:<", rcpt, rl, ">");
        break;
    case S_RCPT: cmd(s, S_DATA, "DATA", NULL, 0, ""); break;
    case S_DATA: send_message(s); break;
    case S_MSG: message_accepted(s); break;
    case S_QUIT: s->step = S_EOF; lg_slot_replied(s); break;
    default: break;
    }
}

/* Reads a (multi-line) reply; 1 when its final line is in, 0 need more,
 * -1 when the session failed (wrong reply class). */
static int reply(struct lg_slot *s)
{
    size_t len;
    const char *line;
    while ((line = lg_conn_line(&s->conn, &len)) != NULL) {
        if (len >= 4 && line[3] == '-')
            continue;
        char want = s->step == S_DATA ? '3' : '2';
        if (len >= 3 && line[0] == want)
            return 1;
        lg_slot_fail(s, step_names[s->step], line, len);
        return -1;
    }
    return 0;
}

static void on_data(struct lg_conn *c)
{
    struct lg_slot *s = slot_of(c);
    while (c->state == LG_CONN_OPEN) {
        if (s->step == S_EOF) {
            lg_conn_discard(c);
            return;
        }
        if (reply(s) <= 0)
            return;
        next(s);
    }
}

static void on_up(struct lg_conn *c)
{
    struct lg_slot *s = slot_of(c);
    if (s->step == S_STARTTLS)          /* STARTTLS handshake done */
        cmd(s, S_EHLO, "EHLO bench.test", NULL, 0, "");
}

static void on_fail(struct lg_conn *c)
{
    struct lg_slot *s = slot_of(c);
    lg_slot_conn_failed(s, step_names[s->step]);
}

static int start(struct lg_slot *s)
{
    s->step = S_GREET;
    s->i = 0;
    return lg_conn_connect(&s->conn, lg_slot_opts(s)->tls, s->tls_sess);
}

static void no_resume(struct lg_slot *s)
{
    (void)s;
}

static const struct lg_conn_ops smtp_ops = {
    .on_up = on_up,
    .on_data = on_data,
    .on_fail = on_fail,
};

const struct lg_scen lg_smtp_scen = {
    .ops = &smtp_ops,
    .start = start,
    .resume = no_resume,
};
