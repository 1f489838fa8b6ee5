/* data.c — the message of a transaction: DATA lines (only CRLF.CRLF ends
 * them; dot-unstuffing; bare CR/LF and over-long lines refuse the message
 * after its end, never end it) and BDAT chunks (RFC 3030), both into a
 * spool; then the submission path on the worker pool, and the reply. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "mail/spool.h"
#include "mail/submit.h"
#include "net/conn.h"
#include "net/server.h"
#include "smtp/parse.h"
#include "smtp/session.h"

struct data_job {
    struct smtp_session *s;     /* holds a reference */
    const char *refusal;        /* the message was refused as received */
    struct submit_result res;
};

void smtp_data_abort(struct smtp_session *s)
{
    spool_free(s->spool);
    s->spool = NULL;
}

static bool open_spool(struct smtp_session *s)
{
    s->spool = spool_new(s->cfg->data_dir);
    if (!s->spool) {
        log_error("event=spool_failed session=%s error=\"%s\"", s->id, strerror(errno));
        smtp_reply(s, "451 4.3.0 Cannot store the message now, try again later");
        return false;
    }
    spool_set_limit(s->spool, s->cfg->max_message_size);
    return true;
}

/* ---- after the end of the message ---------------------------------------- */

static void log_message(struct smtp_session *s, const struct submit_result *r)
{
    log_info("event=message session=%s id=%s from=<%s> rcpts=%zu delivered=%zu "
             "queued=%zu size=%llu result=%d", s->id, r->id[0] ? r->id : "-",
             s->env.sender, s->env.n_rcpts, r->delivered, r->queued,
             (unsigned long long)spool_size(s->spool), r->code);
}

/* A refusal decided from what was received (after spool_finish, which
 * settles a CR held at the end of the last chunk); NULL when fine. */
static const char *refusal(struct smtp_session *s)
{
    if (spool_too_big(s->spool))
        return "552 5.3.4 Message size exceeds fixed maximum message size";
    if (spool_bare_cr(s->spool) || spool_bare_lf(s->spool))
        return "554 5.6.0 Message refused: bare CR or LF in the data (use CRLF line ends)";
    if (s->long_line || spool_longest_line(s->spool) > SMTP_MAX_TEXT_LINE - 2)
        return "554 5.6.0 Message refused: a line is longer than 1000 octets";
    if (spool_error(s->spool) == ENOSPC)
        return "452 4.3.1 Insufficient system storage";
    if (spool_error(s->spool))
        return "451 4.3.0 Cannot store the message now, try again later";
    return NULL;
}

static void submit_work(void *arg)
{
    struct data_job *j = arg;
    struct smtp_session *s = j->s;
    spool_finish(s->spool);
    j->refusal = refusal(s);
    if (!j->refusal)
        submit_message(s->cfg, &s->env, s->spool, &j->res);
}

static void reply_refusal(struct smtp_session *s, const char *r)
{
    log_info("event=message session=%s from=<%s> result=refused reason=\"%s\"",
             s->id, s->env.sender, r);
    if (r[0] == '5')
        smtp_reply_bad(s, "%s", r);
    else
        smtp_reply(s, "%s", r);
}

static void submit_done(void *arg)
{
    struct data_job *j = arg;
    struct smtp_session *s = j->s;
    if (j->refusal) {
        reply_refusal(s, j->refusal);
    } else {
        log_message(s, &j->res);
        if (j->res.code == 250)
            s->messages++;
        if (j->res.code >= 500)
            smtp_reply_bad(s, "%d %s %s", j->res.code, j->res.enhanced, j->res.text);
        else
            smtp_reply(s, "%d %s %s", j->res.code, j->res.enhanced, j->res.text);
    }
    smtp_session_reset(s);
    free(j);
    smtp_session_idle(s);
    smtp_session_unref(s);
}

/* The end of the message: the rest happens on the worker pool. */
static void message_end(struct smtp_session *s)
{
    conn_set_max_line(s->conn, SMTP_AUTH_MAX_LINE);
    struct data_job *j = calloc(1, sizeof *j);
    if (j) {
        j->s = s;
        smtp_session_ref(s);
        s->busy = true;
        if (jobs_submit(s->srv->jobs, conn_base(s->conn), submit_work, submit_done, j))
            return;
        s->busy = false;
        smtp_session_unref(s);
        free(j);
    }
    smtp_reply(s, "451 4.3.0 Server busy, try again later");
    smtp_session_reset(s);
}

/* ---- DATA ------------------------------------------------------------------ */

void smtp_data_start(struct smtp_session *s)
{
    if (!open_spool(s))
        return;
    s->phase = PHASE_DATA;
    s->prev_crlf = true;    /* the DATA command's CRLF */
    s->long_line = false;
    /* One more for the dot a client stuffs before a line starting with
     * "."; the limit is checked again on the unstuffed text. */
    conn_set_max_line(s->conn, SMTP_MAX_TEXT_LINE + 1);
    smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

void smtp_data_line(struct smtp_session *s, const char *line, size_t len)
{
    size_t eol = conn_last_eol(s->conn);
    if (len == 1 && line[0] == '.' && eol == 2 && s->prev_crlf) {
        message_end(s);
        return;
    }
    if (len > 0 && line[0] == '.') {
        line++;
        len--;
    }
    spool_add_line(s->spool, line, len, eol);
    s->prev_crlf = eol == 2;
}

void smtp_data_line_too_long(struct smtp_session *s)
{
    s->long_line = true;
    s->prev_crlf = true;
}

/* ---- BDAT ------------------------------------------------------------------ */

/* The chunk is read and thrown away; reply is sent after it. */
static void bdat_discard(struct smtp_session *s, uint64_t size, const char *reply)
{
    s->bdat_discard = true;
    snprintf(s->bdat_reply, sizeof s->bdat_reply, "%s", reply);
    conn_read_bytes(s->conn, size);
}

void smtp_bdat_start(struct smtp_session *s, const char *arg)
{
    uint64_t size;
    bool last;
    struct smtp_error e;
    if (!smtp_parse_bdat(arg, &size, &last, &e)) {
        smtp_reply_bad(s, "%d %s %s", e.code, e.enhanced, e.text);
        return;
    }
    if (s->phase != PHASE_RCPT && s->phase != PHASE_BDAT) {
        bdat_discard(s, size, "503 5.5.1 Need RCPT before DATA");
        return;
    }
    if (s->phase == PHASE_RCPT && !open_spool(s)) {
        bdat_discard(s, size, "");
        return;
    }
    s->phase = PHASE_BDAT;
    s->bdat_discard = false;
    s->bdat_last = last;
    s->bdat_size = size;
    conn_read_bytes(s->conn, size);
}

void smtp_bdat_bytes(struct smtp_session *s, const char *data, size_t len)
{
    if (!s->bdat_discard && s->spool)
        spool_add_raw(s->spool, data, len);
}

void smtp_bdat_done(struct smtp_session *s)
{
    if (s->bdat_discard) {
        s->bdat_discard = false;
        if (s->bdat_reply[0])
            smtp_reply_bad(s, "%s", s->bdat_reply);
        return;
    }
    if (spool_too_big(s->spool)) {
        smtp_reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
        smtp_session_reset(s);
    } else if (s->bdat_last) {
        message_end(s);
    } else {
        smtp_reply(s, "250 2.0.0 Ok: %llu octets received",
                   (unsigned long long)s->bdat_size);
    }
}
