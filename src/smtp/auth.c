/* auth.c — SMTP AUTH (RFC 4954) over the SASL service in auth/sasl.h, the
 * same exchange POP3 AUTH uses: "334 challenge" and response lines, "*" to
 * cancel, 235 or 535 5.7.8 at the end. Each step runs on the worker pool;
 * failures are answered after the throttle's delay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "core/strutil.h"
#include "net/conn.h"
#include "net/server.h"
#include "smtp/session.h"

#define MAX_AUTH_FAILURES 5

struct auth_job {
    struct smtp_session *s;     /* holds a reference */
    char *response;             /* base64 as sent; NULL = no initial one */
    char *challenge;
    enum sasl_step_rc rc;
    struct auth_outcome out;
    char authid[AUTH_USER_MAX];
};


void smtp_auth_mechlist(struct smtp_session *s, char *out, size_t outsz)
{
    struct sasl_conn_info ci;
    char cert[AUTH_USER_MAX];
    sasl_conn_info_from(&ci, s->conn, "smtp", cert, sizeof cert);
    sasl_mechlist(s->cfg, &ci, out, outsz);
}

void smtp_auth_end(struct smtp_session *s)
{
    sasl_free(s->sasl);
    s->sasl = NULL;
}

static void log_auth(struct smtp_session *s, const char *user, const char *result,
                     const char *reason)
{
    char safe[300];
    str_log_safe(safe, sizeof safe, user, strlen(user));
    log_info("event=login session=%s ip=%s service=smtp method=%s user=%s "
             "result=%s reason=\"%s\"", s->id, s->conn ? conn_ip(s->conn) : "-",
             s->sasl ? sasl_mech(s->sasl) : "-", safe, result, reason);
}

/* ---- the end of an exchange ----------------------------------------------- */

static void failed(struct smtp_session *s, const struct auth_job *j, const char *reply)
{
    log_auth(s, j->authid, "failed", j->out.reason ? j->out.reason : "-");
    smtp_auth_end(s);
    smtp_reply(s, "%s", reply);
    if (++s->auth_failures >= MAX_AUTH_FAILURES) {
        smtp_reply(s, "421 4.7.0 %s Error: too many authentication failures",
                   s->cfg->hostname);
        smtp_session_close(s, "too_many_auth_failures");
    }
}

static void answer(struct smtp_session *s, struct auth_job *j)
{
    switch (j->rc) {
    case SASL_CONTINUE:
        smtp_reply(s, "334 %s", j->challenge ? j->challenge : "");
        return;
    case SASL_SUCCESS:
        snprintf(s->authed, sizeof s->authed, "%s", j->out.user);
        log_auth(s, j->authid, "ok", "-");
        smtp_auth_end(s);
        smtp_reply(s, "235 2.7.0 Authentication successful");
        return;
    case SASL_MALFORMED:
        failed(s, j, "501 5.5.2 Cannot decode response");
        return;
    case SASL_FAILURE:
        failed(s, j, "535 5.7.8 Authentication credentials invalid");
        return;
    case SASL_TEMPFAIL:
        log_auth(s, j->authid, "tempfail", j->out.reason ? j->out.reason : "-");
        smtp_auth_end(s);
        smtp_reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
}

/* ---- one step on the worker pool ---------------------------------------- */

static void job_free(struct auth_job *j)
{
    free(j->response);
    free(j->challenge);
    free(j);
}

static void step_work(void *arg)
{
    struct auth_job *j = arg;
    j->rc = sasl_step(j->s->sasl, j->response, &j->challenge, &j->out);
    snprintf(j->authid, sizeof j->authid, "%s", sasl_authid(j->s->sasl));
}

static void step_finish(void *arg)
{
    struct auth_job *j = arg;
    struct smtp_session *s = j->s;
    if (s->conn)
        answer(s, j);
    job_free(j);
    smtp_session_idle(s);
    smtp_session_unref(s);
}

static void step_done(void *arg)
{
    struct auth_job *j = arg;
    bool failed_step = j->rc == SASL_FAILURE || j->rc == SASL_MALFORMED;
    jobs_later(j->s->conn ? conn_base(j->s->conn) : NULL,
               failed_step ? j->out.delay_ms : 0, step_finish, j);
}

static void submit_step(struct smtp_session *s, const char *response)
{
    struct auth_job *j = calloc(1, sizeof(*j));
    if (j && response && !(j->response = strdup(response))) {
        free(j);
        j = NULL;
    }
    if (j) {
        j->s = s;
        smtp_session_ref(s);
        s->busy = true;
        if (jobs_submit(s->srv->jobs, conn_base(s->conn), step_work, step_done, j))
            return;
        s->busy = false;
        smtp_session_unref(s);
        job_free(j);
    }
    smtp_auth_end(s);
    smtp_reply(s, "454 4.7.0 Temporary authentication failure");
}

/* ---- the command and the response lines --------------------------------- */

static void start_failed(struct smtp_session *s, enum sasl_start_rc rc)
{
    switch (rc) {
    case SASL_START_NEEDS_TLS:
        smtp_reply_bad(s, "538 5.7.11 Encryption required for requested "
                          "authentication mechanism");
        return;
    case SASL_START_NO_INITIAL:
        smtp_reply_bad(s, "501 5.5.4 This mechanism does not take an initial response");
        return;
    case SASL_START_TEMPFAIL:
        smtp_reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    default:
        smtp_reply_bad(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
}

/* AUTH is allowed after EHLO, once, outside a mail transaction. */
static bool auth_allowed(struct smtp_session *s)
{
    if (s->phase == PHASE_GREET)
        smtp_reply_bad(s, "503 5.5.1 Send EHLO or HELO first");
    else if (s->authed[0])
        smtp_reply_bad(s, "503 5.5.1 Already authenticated");
    else if (s->phase != PHASE_READY)
        smtp_reply_bad(s, "503 5.5.1 AUTH not permitted during a mail transaction");
    else
        return true;
    return false;
}

void smtp_auth_command(struct smtp_session *s, const char *arg)
{
    char mech[64];
    const char *sp = strchr(arg, ' ');
    size_t mlen = sp ? (size_t)(sp - arg) : strlen(arg);
    const char *initial = sp ? sp + 1 : NULL;
    if (!auth_allowed(s))
        return;
    if (initial && strlen(initial) > SASL_MAX_RESPONSE) {
        smtp_reply_bad(s, "500 5.5.6 Authentication exchange line is too long");
        return;
    }
    if (mlen == 0 || mlen >= sizeof mech || (initial && (!*initial || strchr(initial, ' ')))) {
        smtp_reply_bad(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        return;
    }
    memcpy(mech, arg, mlen);
    mech[mlen] = '\0';
    struct sasl_conn_info ci;
    char cert[AUTH_USER_MAX];
    enum sasl_start_rc rc;
    sasl_conn_info_from(&ci, s->conn, "smtp", cert, sizeof cert);
    s->sasl = sasl_start(s->cfg, &ci, mech, initial != NULL, &rc);
    if (!s->sasl) {
        start_failed(s, rc);
        return;
    }
    submit_step(s, initial);
}

void smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
    if (len > SASL_MAX_RESPONSE) {
        smtp_auth_line_too_long(s);
        return;
    }
    if (len == 1 && line[0] == '*') {
        log_auth(s, sasl_authid(s->sasl), "cancelled", "-");
        smtp_auth_end(s);
        smtp_reply(s, "501 5.0.0 Authentication cancelled");
        return;
    }
    /* A NUL would cut the line short: "!" is never base64, so the step
     * fails as malformed (and is throttled). */
    submit_step(s, memchr(line, '\0', len) ? "!" : line);
}

void smtp_auth_line_too_long(struct smtp_session *s)
{
    log_auth(s, sasl_authid(s->sasl), "failed", "response too long");
    smtp_auth_end(s);
    smtp_reply(s, "500 5.5.6 Authentication exchange line is too long");
}
