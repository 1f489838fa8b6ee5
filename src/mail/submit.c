/* submit.c — the submission path every accepted message takes (SMTP, POP3
 * XTND XMIT, pobox deliver): header checks, trace header, local delivery
 * to each mailbox once, and the durable queue for the rest. */
#include "mail/submit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "mail/envelope.h"
#include "mail/headers.h"
#include "mail/queue.h"
#include "mail/recipient.h"
#include "mail/spool.h"
#include "relay/bounce.h"
#include "store/store.h"

__attribute__((format(printf, 4, 5)))
static void set(struct submit_result *r, int code, const char *enhanced,
                const char *fmt, ...)
{
    va_list ap;
    r->code = code;
    r->enhanced = enhanced;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

static void set_io_error(struct submit_result *r, int err)
{
    if (err == ENOSPC || err == EDQUOT)
        set(r, 452, "4.3.1", "Insufficient system storage");
    else
        set(r, 451, "4.3.0", "Cannot store the message now, try again later");
}

static bool authenticated(const struct envelope *env)
{
    return env->origin == ORIGIN_SUBMISSION || env->origin == ORIGIN_XTND;
}

/* RFC 6409: a submission's From: names only the user's own addresses. */
static bool from_owned(const struct config *cfg, const struct envelope *env,
                       const struct headers_info *h)
{
    if (!authenticated(env))
        return true;
    for (size_t i = 0; i < h->n_from; i++)
        if (!recipient_owned_by(cfg, env->auth_user, h->from[i]))
            return false;
    return true;
}

/* Received:, plus Message-ID: and Date: when a submission lacks them. */
static char *make_prefix(const struct config *cfg, const struct envelope *env,
                         const struct headers_info *h, const char *id)
{
    bool hide = authenticated(env) && cfg->hide_client_ip;
    char *received = headers_received(env, cfg->hostname, id, hide);
    if (!received)
        return NULL;
    char msgid[HEADERS_MSGID_SIZE] = "", date[HEADERS_DATE_SIZE] = "";
    if (authenticated(env) && !h->has_message_id)
        headers_message_id(cfg->hostname, msgid, sizeof msgid);
    if (authenticated(env) && !h->has_date)
        headers_date(date, sizeof date);
    char *prefix = NULL;
    if (asprintf(&prefix, "%s%s%s%s%s%s%s", received, msgid[0] ? "Message-ID: " : "",
                 msgid, msgid[0] ? "\n" : "", date[0] ? "Date: " : "", date,
                 date[0] ? "\n" : "") < 0)
        prefix = NULL;
    free(received);
    return prefix;
}

/* ---- recipients ------------------------------------------------------------ */

struct targets {
    struct recipient_list rl;
    struct envelope_rcpt *remote;   /* DSN data for rl.remote[i] */
    const struct envelope_rcpt **notify_local;  /* NOTIFY=SUCCESS, local */
    size_t n_notify_local;
};

/* The remote addresses rcpt expanded to inherit its DSN parameters; an
 * alias target gets the original recipient as ORCPT (RFC 3461 4.2). */
static bool add_remote_dsn(struct targets *t, const struct envelope_rcpt *rcpt,
                           size_t first)
{
    struct envelope_rcpt *n = realloc(t->remote, t->rl.n_remote * sizeof *n);
    if (!n && t->rl.n_remote)
        return false;
    t->remote = n;
    for (size_t i = first; i < t->rl.n_remote; i++) {
        struct envelope_rcpt *r = &t->remote[i];
        memset(r, 0, sizeof *r);
        snprintf(r->address, sizeof r->address, "%s", t->rl.remote[i]);
        r->notify = rcpt->notify;
        if (rcpt->orcpt)
            r->orcpt = strdup(rcpt->orcpt);
        else if (strcasecmp(r->address, rcpt->address) != 0 &&
                 asprintf(&r->orcpt, "rfc822;%s", rcpt->address) < 0)
            r->orcpt = NULL;
    }
    return true;
}

static void targets_free(struct targets *t)
{
    for (size_t i = 0; t->remote && i < t->rl.n_remote; i++)
        free(t->remote[i].orcpt);
    free(t->remote);
    free(t->notify_local);
    recipient_list_free(&t->rl);
}

/* 0 ok; else the result is set. */
static int resolve_all(const struct config *cfg, const struct envelope *env,
                       struct targets *t, struct submit_result *r)
{
    t->notify_local = calloc(env->n_rcpts ? env->n_rcpts : 1, sizeof *t->notify_local);
    if (!t->notify_local) {
        set_io_error(r, ENOMEM);
        return -1;
    }
    for (size_t i = 0; i < env->n_rcpts; i++) {
        size_t before = t->rl.n_remote, before_local = t->rl.n_local;
        enum recipient_kind k = recipient_resolve(cfg, env->rcpts[i].address, &t->rl);
        if (t->rl.n_local > before_local && (env->rcpts[i].notify & DSN_NOTIFY_SUCCESS))
            t->notify_local[t->n_notify_local++] = &env->rcpts[i];
        if (k == RECIPIENT_TEMPFAIL) {
            set(r, 451, "4.3.0", "Temporary lookup failure");
            return -1;
        }
        if (!add_remote_dsn(t, &env->rcpts[i], before)) {
            set_io_error(r, ENOMEM);
            return -1;
        }
    }
    if (t->rl.n_local + t->rl.n_remote == 0) {
        set(r, 550, "5.1.1", "No deliverable recipients");
        return -1;
    }
    return 0;
}

/* ---- delivery ---------------------------------------------------------------- */

static int deliver_local(const struct config *cfg, const struct envelope *env,
                         const struct targets *t, const char *prefix, int fd,
                         struct submit_result *r)
{
    for (size_t i = 0; i < t->rl.n_local; i++) {
        char *p = NULL;
        if (asprintf(&p, "Return-Path: <%s>\nDelivered-To: %s\n%s", env->sender,
                     t->rl.local[i], prefix) < 0) {
            set_io_error(r, ENOMEM);
            return -1;
        }
        errno = 0;
        enum store_status st = store_deliver(cfg, t->rl.local[i], p, fd);
        int err = errno;
        free(p);
        if (st != STORE_OK) {
            set_io_error(r, err);
            return -1;
        }
        r->delivered++;
    }
    return 0;
}

static void deliver_all(const struct config *cfg, const struct envelope *env,
                        struct targets *t, const char *prefix, int fd,
                        struct submit_result *r)
{
    if (deliver_local(cfg, env, t, prefix, fd, r) != 0)
        return;
    if (t->rl.n_remote) {
        char id[QUEUE_ID_LEN + 1];
        memcpy(id, r->id, sizeof id);
        if (queue_put(cfg, env, t->remote, t->rl.n_remote, prefix, fd, id) != 0) {
            set_io_error(r, errno);
            return;
        }
        r->queued = t->rl.n_remote;
    }
    set(r, 250, "2.0.0", "Ok: queued as %s", r->id);
    /* RFC 3461: the final MTA reports success when asked; a report that
     * cannot be sent now does not undo the delivery. */
    relay_notify_delivered(cfg, env, fd, t->notify_local, t->n_notify_local);
}

void submit_message(const struct config *cfg, const struct envelope *env,
                    struct spool *sp, struct submit_result *res)
{
    struct headers_info h;
    struct targets t = {0};
    memset(res, 0, sizeof *res);
    int fd = spool_fd(sp);
    if (headers_read(fd, &h) != 0) {
        set(res, 554, "5.6.0", "Message refused: the header cannot be read "
            "(longer than 1 MiB?)");
        return;
    }
    char id[QUEUE_ID_LEN + 1];
    queue_new_id(id);
    snprintf(res->id, sizeof res->id, "%s", id);
    char *prefix = NULL;
    if (!from_owned(cfg, env, &h))
        set(res, 553, "5.7.1", "From: header address not owned by %.200s", env->auth_user);
    else if (!(prefix = make_prefix(cfg, env, &h, id)))
        set_io_error(res, ENOMEM);
    else if (resolve_all(cfg, env, &t, res) == 0)
        deliver_all(cfg, env, &t, prefix, fd, res);
    free(prefix);
    targets_free(&t);
    headers_info_free(&h);
}
