/* login.c — USER/PASS and APOP logins: the credential check and the
 * opening of the maildrop run as one job on the worker pool; the answer
 * comes back on the session's loop, delayed after failures as the throttle
 * says, and the session enters TRANSACTION with its message list fixed. */
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

struct login_job {
    struct pop3_session *s;     /* holds a reference */
    bool apop;
    char ip[64];
    char user[256];
    char secret[256];           /* password or APOP digest; wiped */
    char ts[160];
    struct auth_outcome out;
    enum store_status st;
    struct store_mailbox *mb;   /* owned until handed to the session */
};

static void login_work(void *arg)
{
    struct login_job *j = arg;
    const struct config *cfg = j->s->cfg;
    if (j->apop)
        auth_check_apop(cfg, j->ip, j->user, j->ts, j->secret, &j->out);
    else
        auth_check_password(cfg, j->ip, j->user, j->secret, &j->out);
    password_wipe(j->secret, sizeof(j->secret));
    if (j->out.result == AUTH_OK)
        j->st = store_open(cfg, j->out.user, &j->mb);
}

static void log_login(struct pop3_session *s, struct login_job *j,
                      const char *result, const char *reason)
{
    char safe[300];
    str_log_safe(safe, sizeof(safe), j->user, strlen(j->user));
    log_info("event=login session=%s ip=%s method=%s user=%s result=%s reason=\"%s\"",
             s->id, j->ip, j->apop ? "apop" : "pass", safe, result, reason);
}

static void enter_transaction(struct pop3_session *s, struct login_job *j)
{
    s->mb = j->mb;
    j->mb = NULL;
    s->count = store_count(s->mb);
    s->deleted = calloc(s->count ? s->count : 1, sizeof(*s->deleted));
    if (!s->deleted) {
        pop3_reply(s, "-ERR [SYS/TEMP] Out of memory");
        pop3_session_close(s, "oom");
        return;
    }
    for (size_t i = 0; i < s->count; i++)
        s->total_octets += store_size(s->mb, i);
    snprintf(s->authed, sizeof(s->authed), "%s", j->out.user);
    s->state = POP3_TRANSACTION;
    log_login(s, j, "ok", "-");
    pop3_reply(s, "+OK Logged in: %zu messages (%llu octets)", s->count,
               (unsigned long long)s->total_octets);
}

static void answer_failure(struct pop3_session *s, struct login_job *j)
{
    s->auth_failures++;
    log_login(s, j, "failed", j->out.reason ? j->out.reason : "-");
    pop3_reply(s, "-ERR [AUTH] Authentication failed");
    if (s->auth_failures >= MAX_AUTH_FAILURES)
        pop3_session_close(s, "too_many_auth_failures");
}

static void answer(struct pop3_session *s, struct login_job *j)
{
    if (j->out.result == AUTH_FAIL) {
        answer_failure(s, j);
        return;
    }
    if (j->out.result == AUTH_TEMPFAIL) {
        log_login(s, j, "tempfail", j->out.reason ? j->out.reason : "-");
        pop3_reply(s, "-ERR [SYS/TEMP] Authentication is temporarily unavailable");
        return;
    }
    if (j->st == STORE_IN_USE) {
        log_login(s, j, "in_use", "maildrop_locked");
        pop3_reply(s, "-ERR [IN-USE] Mailbox is in use by another POP3 session");
        return;
    }
    if (j->st != STORE_OK) {
        log_login(s, j, "store_error", store_status_str(j->st));
        pop3_reply(s, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later");
        return;
    }
    enter_transaction(s, j);
}

static void login_finish(struct login_job *j)
{
    struct pop3_session *s = j->s;
    if (s->conn)
        answer(s, j);
    if (j->mb)
        store_close(j->mb);
    free(j);
    pop3_session_idle(s);
    pop3_session_unref(s);
}

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
    login_finish(arg);
}

static void login_done(void *arg)
{
    struct login_job *j = arg;
    struct pop3_session *s = j->s;
    if (s->conn && j->out.delay_ms > 0) {
        struct timeval tv = {.tv_sec = (time_t)(j->out.delay_ms / 1000),
                             .tv_usec = (suseconds_t)(j->out.delay_ms % 1000) * 1000};
        if (event_base_once(conn_base(s->conn), -1, EV_TIMEOUT, delayed_cb, j, &tv) == 0)
            return;
    }
    login_finish(j);
}

static void submit(struct pop3_session *s, struct login_job *j)
{
    j->s = s;
    snprintf(j->ip, sizeof(j->ip), "%s", conn_ip(s->conn));
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
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->secret, sizeof(j->secret), "%s", pass);
    submit(s, j);
}

void pop3_login_apop(struct pop3_session *s, const char *user, const char *digest)
{
    struct login_job *j = calloc(1, sizeof(*j));
    if (!j || strlen(user) >= sizeof(j->user) || strlen(digest) >= sizeof(j->secret)) {
        free(j);
        pop3_reply_bad(s, "-ERR [AUTH] Argument too long");
        return;
    }
    j->apop = true;
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->secret, sizeof(j->secret), "%s", digest);
    snprintf(j->ts, sizeof(j->ts), "%s", s->apop_ts);
    submit(s, j);
}
