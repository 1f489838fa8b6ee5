/* login.c — the end of every POP3 login (USER/PASS, APOP, AUTH): the
 * maildrop is opened on the worker pool right after a good credential
 * check; the answer comes back on the session's loop, delayed after
 * failures as the throttle says, and the session enters TRANSACTION with its
 * message list fixed. USER/PASS and APOP jobs live here too; AUTH's
 * exchange is in auth.c. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/password.h"
#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "core/strutil.h"
#include "net/conn.h"
#include "net/server.h"
#include "pop3/session.h"
#include "store/store.h"

#define MAX_AUTH_FAILURES 5

void pop3_login_init(struct pop3_session *s, struct pop3_login *l,
                     const char *method)
{
    memset(l, 0, sizeof *l);
    l->method = method;
    snprintf(l->ip, sizeof(l->ip), "%s", s->conn ? conn_ip(s->conn) : "");
}

void pop3_login_open(const struct config *cfg, struct pop3_login *l)
{
    if (l->out.result == AUTH_OK)
        l->st = store_open(cfg, l->out.user, &l->mb);
}

void pop3_login_release(struct pop3_login *l)
{
    if (l->mb)
        store_close(l->mb);
    l->mb = NULL;
}

static void log_login(struct pop3_session *s, const struct pop3_login *l,
                      const char *result, const char *reason)
{
    char safe[300];
    str_log_safe(safe, sizeof(safe), l->user, strlen(l->user));
    log_info("event=login session=%s ip=%s method=%s user=%s result=%s reason=\"%s\"",
             s->id, l->ip, l->method, safe, result, reason);
}

static void enter_transaction(struct pop3_session *s, struct pop3_login *l)
{
    s->mb = l->mb;
    l->mb = NULL;
    s->count = store_count(s->mb);
    s->deleted = calloc(s->count ? s->count : 1, sizeof(*s->deleted));
    if (!s->deleted) {
        pop3_reply(s, "-ERR [SYS/TEMP] Out of memory");
        pop3_session_close(s, "oom");
        return;
    }
    for (size_t i = 0; i < s->count; i++)
        s->total_octets += store_size(s->mb, i);
    snprintf(s->authed, sizeof(s->authed), "%s", l->out.user);
    s->state = POP3_TRANSACTION;
    conn_set_max_line(s->conn, POP3_MAX_LINE);
    log_login(s, l, "ok", "-");
    pop3_reply(s, "+OK Logged in: %zu messages (%llu octets)", s->count,
               (unsigned long long)s->total_octets);
}

void pop3_login_failed(struct pop3_session *s, const struct pop3_login *l,
                       const char *reply)
{
    s->auth_failures++;
    log_login(s, l, "failed", l->out.reason ? l->out.reason : "-");
    pop3_reply(s, "%s", reply);
    if (s->auth_failures >= MAX_AUTH_FAILURES)
        pop3_session_close(s, "too_many_auth_failures");
}

void pop3_login_answer(struct pop3_session *s, struct pop3_login *l)
{
    if (l->out.result == AUTH_FAIL) {
        pop3_login_failed(s, l, "-ERR [AUTH] Authentication failed");
    } else if (l->out.result == AUTH_TEMPFAIL) {
        log_login(s, l, "tempfail", l->out.reason ? l->out.reason : "-");
        pop3_reply(s, "-ERR [SYS/TEMP] Authentication is temporarily unavailable");
    } else if (l->st == STORE_IN_USE) {
        log_login(s, l, "in_use", "maildrop_locked");
        pop3_reply(s, "-ERR [IN-USE] Mailbox is in use by another POP3 session");
    } else if (l->st != STORE_OK) {
        log_login(s, l, "store_error", store_status_str(l->st));
        pop3_reply(s, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later");
    } else {
        enter_transaction(s, l);
    }
}

/* ---- USER/PASS and APOP ----------------------------------------------- */

struct login_job {
    struct pop3_session *s;     /* holds a reference */
    bool apop;
    char secret[256];           /* password or APOP digest; wiped */
    char ts[160];
    struct pop3_login login;
};

static void login_work(void *arg)
{
    struct login_job *j = arg;
    const struct config *cfg = j->s->cfg;
    if (j->apop)
        auth_check_apop(cfg, j->login.ip, j->login.user, j->ts, j->secret, &j->login.out);
    else
        auth_check_password(cfg, j->login.ip, j->login.user, j->secret, &j->login.out);
    password_wipe(j->secret, sizeof(j->secret));
    pop3_login_open(cfg, &j->login);
}

static void login_finish(void *arg)
{
    struct login_job *j = arg;
    struct pop3_session *s = j->s;
    if (s->conn)
        pop3_login_answer(s, &j->login);
    pop3_login_release(&j->login);
    free(j);
    pop3_session_idle(s);
    pop3_session_unref(s);
}

static void login_done(void *arg)
{
    struct login_job *j = arg;
    pop3_session_after(j->s, j->login.out.delay_ms, login_finish, j);
}

static void submit(struct pop3_session *s, struct login_job *j)
{
    j->s = s;
    pop3_session_ref(s);
    s->busy = true;
    if (!jobs_submit(s->srv->jobs, conn_base(s->conn), login_work, login_done, j)) {
        s->busy = false;
        pop3_session_unref(s);
        password_wipe(j->secret, sizeof(j->secret));
        free(j);
        pop3_reply(s, "-ERR [SYS/TEMP] Server busy, try again later");
    }
}

void pop3_login_password(struct pop3_session *s, const char *user, const char *pass)
{
    struct login_job *j = calloc(1, sizeof(*j));
    if (!j || strlen(pass) >= sizeof(j->secret)) {
        free(j);
        pop3_reply_bad(s, "-ERR [AUTH] Password too long");
        return;
    }
    pop3_login_init(s, &j->login, "pass");
    snprintf(j->login.user, sizeof(j->login.user), "%s", user);
    snprintf(j->secret, sizeof(j->secret), "%s", pass);
    submit(s, j);
}

void pop3_login_apop(struct pop3_session *s, const char *user, const char *digest)
{
    struct login_job *j = calloc(1, sizeof(*j));
    if (!j || strlen(user) >= sizeof(j->login.user) || strlen(digest) >= sizeof(j->secret)) {
        free(j);
        pop3_reply_bad(s, "-ERR [AUTH] Argument too long");
        return;
    }
    pop3_login_init(s, &j->login, "apop");
    j->apop = true;
    snprintf(j->login.user, sizeof(j->login.user), "%s", user);
    snprintf(j->secret, sizeof(j->secret), "%s", digest);
    snprintf(j->ts, sizeof(j->ts), "%s", s->apop_ts);
    submit(s, j);
}
