/* pop3.c — the POP3 session scripts: pop3-login, pop3-poll, pop3-download
 * and pop3-idle (login, NOOP, park for the hold, NOOP, QUIT). One command
 * at a time, every reply checked. */
#include <string.h>

#include "util.h"
#include "worker.h"

enum {
    P_GREET, P_STLS, P_USER, P_PASS, P_STAT, P_UIDL, P_RETR,
    P_NOOP, P_PARKED, P_NOOP2, P_QUIT, P_EOF,
};

static const char *const step_names[] = {
    [P_GREET] = "greeting", [P_STLS] = "STLS",   [P_USER] = "USER",
    [P_PASS] = "PASS",      [P_STAT] = "STAT",   [P_UIDL] = "UIDL",
    [P_RETR] = "RETR",      [P_NOOP] = "NOOP",   [P_PARKED] = "hold",
    [P_NOOP2] = "NOOP",     [P_QUIT] = "QUIT",   [P_EOF] = "close",
};

static struct lg_slot *slot_of(struct lg_conn *c)
{
    return LG_CONTAINER_OF(c, struct lg_slot, conn);
}

/* Sends "VERB ARG\r\n" (arg may be NULL) and moves to step. */
static void cmd(struct lg_slot *s, int step, const char *verb, const char *arg,
                size_t arg_len)
{
    char buf[16 + LG_USER_MAX_LEN];
    char *p = buf;
    lg_put(&p, verb, strlen(verb));
    if (arg != NULL) {
        *p++ = ' ';
        lg_put(&p, arg, arg_len);
    }
    lg_put(&p, "\r\n", 2);
    s->step = (unsigned char)step;
    if (lg_conn_send(&s->conn, buf, (size_t)(p - buf)) < 0)
        lg_slot_conn_failed(s, step_names[step]);
}

static void cmd_retr(struct lg_slot *s)
{
    char num[20];
    size_t n = lg_utoa(num, s->i);
    cmd(s, P_RETR, "RETR", num, n);
}

static void after_login(struct lg_slot *s)
{
    switch (lg_slot_opts(s)->scen) {
    case LG_POP3_POLL: cmd(s, P_STAT, "STAT", NULL, 0); break;
    case LG_POP3_DOWNLOAD: cmd(s, P_UIDL, "UIDL", NULL, 0); break;
    case LG_POP3_IDLE: cmd(s, P_NOOP, "NOOP", NULL, 0); break;
    default: cmd(s, P_QUIT, "QUIT", NULL, 0); break;
    }
}

static void after_uidl(struct lg_slot *s)
{
    if (lg_slot_opts(s)->scen != LG_POP3_DOWNLOAD || s->ml.lines == 0) {
        cmd(s, P_QUIT, "QUIT", NULL, 0);
        return;
    }
    s->n = s->ml.lines;
    s->i = 1;
    cmd_retr(s);
}

static void after_retr(struct lg_slot *s)
{
    struct lg_stats *st = &s->w->st;
    st->messages++;
    st->body_bytes += s->ml.octets;
    if (s->i++ < s->n)
        cmd_retr(s);
    else
        cmd(s, P_QUIT, "QUIT", NULL, 0);
}

static void start_stls(struct lg_slot *s)
{
    if (lg_conn_pending(&s->conn) != 0) {
        lg_slot_fail(s, "STLS", "data after the +OK", strlen("data after the +OK"));
        return;
    }
    if (lg_conn_start_tls(&s->conn, s->tls_sess) < 0)
        lg_slot_conn_failed(s, "STLS");
}

/* The reply to the current step was +OK (and its body, if any, read). */
static void next(struct lg_slot *s)
{
    const struct lg_user *u = s->user;
    switch (s->step) {
    case P_GREET:
        if (lg_slot_opts(s)->starttls)
            cmd(s, P_STLS, "STLS", NULL, 0);
        else
            cmd(s, P_USER, "USER", u->addr, u->addr_len);
        break;
    case P_STLS: start_stls(s); break;
    case P_USER: cmd(s, P_PASS, "PASS", u->pw, u->pw_len); break;
    case P_PASS: after_login(s); break;
    case P_STAT: cmd(s, P_UIDL, "UIDL", NULL, 0); break;
    case P_UIDL: after_uidl(s); break;
    case P_RETR: after_retr(s); break;
    case P_NOOP: s->step = P_PARKED; lg_slot_parked(s); break;
    case P_NOOP2: s->w->st.answered++; cmd(s, P_QUIT, "QUIT", NULL, 0); break;
    case P_QUIT: s->step = P_EOF; lg_slot_replied(s); break;
    default: break;
    }
}

static void on_up(struct lg_conn *c)
{
    struct lg_slot *s = slot_of(c);
    if (s->step == P_STLS) {            /* STLS handshake done */
        const struct lg_user *u = s->user;
        cmd(s, P_USER, "USER", u->addr, u->addr_len);
    }
}

/* Reads the +OK/-ERR line; 1 when the step succeeded, 0 need more, -1 failed. */
static int status(struct lg_slot *s)
{
    size_t len;
    const char *line = lg_conn_line(&s->conn, &len);
    if (line == NULL)
        return 0;
    if (len >= 3 && memcmp(line, "+OK", 3) == 0)
        return 1;
    lg_slot_fail(s, step_names[s->step], line, len);
    return -1;
}

static void on_data(struct lg_conn *c)
{
    struct lg_slot *s = slot_of(c);
    while (c->state == LG_CONN_OPEN) {
        if (s->step == P_EOF) {
            lg_conn_discard(c);
            return;
        }
        if (s->step == P_PARKED) {     /* the server speaks during the hold */
            size_t len;
            const char *line = lg_conn_line(c, &len);
            if (line != NULL)
                lg_slot_fail(s, "hold", line, len);
            return;
        }
        if (s->in_ml) {
            if (!lg_conn_ml(c, &s->ml, s->step == P_UIDL))
                return;
            s->in_ml = 0;
        } else {
            int r = status(s);
            if (r <= 0)
                return;
            if (s->step == P_UIDL || s->step == P_RETR) {
                s->in_ml = 1;
                lg_ml_begin(&s->ml);
                continue;
            }
        }
        next(s);
    }
}

static void on_fail(struct lg_conn *c)
{
    struct lg_slot *s = slot_of(c);
    lg_slot_conn_failed(s, step_names[s->step]);
}

static int start(struct lg_slot *s)
{
    const struct lg_opts *o = lg_slot_opts(s);
    s->step = P_GREET;
    return lg_conn_connect(&s->conn, o->tls, s->tls_sess);
}

static void resume(struct lg_slot *s)
{
    cmd(s, P_NOOP2, "NOOP", NULL, 0);
}

static const struct lg_conn_ops pop3_ops = {
    .on_up = on_up,
    .on_data = on_data,
    .on_fail = on_fail,
};

const struct lg_scen lg_pop3_scen = {
    .ops = &pop3_ops,
    .start = start,
    .resume = resume,
};
