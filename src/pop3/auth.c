/* auth.c — POP3 AUTH (RFC 5034) over the SASL service in auth/sasl.h: the
 * mechanism list, the exchange of "+ challenge" and response lines, "*" to
 * cancel, and the login at its end through login.c. Each step runs on the
 * worker pool; failures are answered after the throttle's delay, exactly
 * like USER/PASS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "core/jobs.h"
#include "core/log.h"
#include "net/conn.h"
#include "net/server.h"
#include "pop3/session.h"

struct auth_job {
    struct pop3_session *s;     /* holds a reference */
    char *response;             /* base64 as sent; NULL = no initial one */
    char *challenge;
    enum sasl_step_rc rc;
    struct pop3_login login;
};

void pop3_auth_mechlist(struct pop3_session *s, char *out, size_t outsz)
{
    struct sasl_conn_info ci;
    char cert[AUTH_USER_MAX];
    sasl_conn_info_from(&ci, s->conn, "pop", cert, sizeof cert);
    sasl_mechlist(s->cfg, &ci, out, outsz);
}

void pop3_auth_end(struct pop3_session *s)
{
    if (!s->sasl)
        return;
    sasl_free(s->sasl);
    s->sasl = NULL;
}

static void log_end(struct pop3_session *s, const char *result)
{
    log_info("event=login session=%s ip=%s method=%s result=%s", s->id,
             conn_ip(s->conn), sasl_mech(s->sasl), result);
}

/* ---- one step on the worker pool -------------------------------------- */

static void job_free(struct auth_job *j)
{
    pop3_login_release(&j->login);
    free(j->response);
    free(j->challenge);
    free(j);
}

static void step_work(void *arg)
{
    struct auth_job *j = arg;
    j->rc = sasl_step(j->s->sasl, j->response, &j->challenge, &j->login.out);
    snprintf(j->login.user, sizeof j->login.user, "%s", sasl_authid(j->s->sasl));
    if (j->rc == SASL_SUCCESS)
        pop3_login_open(j->s->cfg, &j->login);
}

static void answer(struct pop3_session *s, struct auth_job *j)
{
    switch (j->rc) {
    case SASL_CONTINUE:
        pop3_reply(s, "+ %s", j->challenge ? j->challenge : "");
        return;
    case SASL_SUCCESS:
        pop3_auth_end(s);
        pop3_login_answer(s, &j->login);
        return;
    case SASL_MALFORMED:
        pop3_auth_end(s);
        pop3_login_failed(s, &j->login, "-ERR [AUTH] Malformed base64 in the SASL response");
        return;
    case SASL_FAILURE:
    case SASL_TEMPFAIL:
        pop3_auth_end(s);
        pop3_login_answer(s, &j->login);
        return;
    }
}

static void step_finish(void *arg)
{
    struct auth_job *j = arg;
    struct pop3_session *s = j->s;
    if (s->conn)
        answer(s, j);
    job_free(j);
    pop3_session_idle(s);
    pop3_session_unref(s);
}

static void step_done(void *arg)
{
    struct auth_job *j = arg;
    bool failed = j->rc == SASL_FAILURE || j->rc == SASL_MALFORMED;
    pop3_session_after(j->s, failed ? j->login.out.delay_ms : 0, step_finish, j);
}

/* Runs the next step with response (NULL: none; copied). */
static void submit_step(struct pop3_session *s, const char *response)
{
    struct auth_job *j = calloc(1, sizeof(*j));
    if (j && response && !(j->response = strdup(response))) {
        free(j);
        j = NULL;
    }
    if (j) {
        pop3_login_init(s, &j->login, sasl_mech(s->sasl));
        j->s = s;
        pop3_session_ref(s);
        s->busy = true;
        if (jobs_submit(s->srv->jobs, conn_base(s->conn), step_work, step_done, j))
            return;
        s->busy = false;
        pop3_session_unref(s);
        job_free(j);
    }
    pop3_auth_end(s);
    pop3_reply(s, "-ERR [SYS/TEMP] Server busy, try again later");
}

/* ---- the command and the response lines -------------------------------- */

static void list_mechanisms(struct pop3_session *s)
{
    char list[512];
    pop3_auth_mechlist(s, list, sizeof list);
    pop3_reply(s, "+OK SASL mechanisms follow");
    for (char *p = strtok(list, " "); p; p = strtok(NULL, " "))
        pop3_reply(s, "%s", p);
    pop3_reply(s, ".");
}

static void start_failed(struct pop3_session *s, enum sasl_start_rc rc)
{
    switch (rc) {
    case SASL_START_NEEDS_TLS:
        pop3_reply_bad(s, "-ERR [AUTH] Plaintext authentication is disallowed on "
                          "non-secure connections: use STLS first");
        return;
    case SASL_START_NO_INITIAL:
        pop3_reply_bad(s, "-ERR This mechanism does not take an initial response");
        return;
    case SASL_START_TEMPFAIL:
        pop3_reply(s, "-ERR [SYS/TEMP] Authentication is temporarily unavailable");
        return;
    default:
        pop3_reply_bad(s, "-ERR Unsupported authentication mechanism");
        return;
    }
}

/* AUTH MECH [RESPONSE]: starts the exchange with the first step. */
static void auth_start(struct pop3_session *s, const char *mech,
                       const char *initial)
{
    struct sasl_conn_info ci;
    char cert[AUTH_USER_MAX];
    enum sasl_start_rc rc;
    sasl_conn_info_from(&ci, s->conn, "pop", cert, sizeof cert);
    s->sasl = sasl_start(s->cfg, &ci, mech, initial != NULL, &rc);
    if (!s->sasl) {
        start_failed(s, rc);
        return;
    }
    submit_step(s, initial);
}

void pop3_auth_command(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (cmd->argc == 0)
        list_mechanisms(s);
    else
        auth_start(s, cmd->argv[0], cmd->argc > 1 ? cmd->argv[1] : NULL);
}

void pop3_auth_long_command(struct pop3_session *s, char *line, size_t len)
{
    char *mech = line + 5, *sp = memchr(mech, ' ', len - 5);
    if (!sp || sp == mech || memchr(line, '\0', len) || strchr(sp + 1, ' ')) {
        pop3_reply_bad(s, "-ERR AUTH: expected AUTH mechanism initial-response");
        return;
    }
    *sp = '\0';
    auth_start(s, mech, sp + 1);
}

void pop3_auth_line(struct pop3_session *s, const char *line, size_t len)
{
    if (len > SASL_MAX_RESPONSE) {
        pop3_auth_line_too_long(s);
        return;
    }
    if (len == 1 && line[0] == '*') {
        log_end(s, "cancelled");
        pop3_auth_end(s);
        pop3_reply(s, "-ERR Authentication cancelled");
        return;
    }
    /* A NUL would cut the line short: send the step something that is never
     * base64 instead, so it fails as malformed (and is throttled). */
    submit_step(s, memchr(line, '\0', len) ? "!" : line);
}

void pop3_auth_line_too_long(struct pop3_session *s)
{
    log_end(s, "response_too_long");
    pop3_auth_end(s);
    pop3_reply(s, "-ERR [AUTH] SASL response too long (at most %d octets)",
               SASL_MAX_RESPONSE);
}
