/* bounce.c — turns a delivery status notification into a message and hands
 * it to the submission path, from the null sender so that it can never
 * bounce in turn. */
#include "relay/bounce.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "mail/envelope.h"
#include "mail/queue.h"
#include "mail/spool.h"
#include "mail/submit.h"

/* The DSN text (LF line ends) into a finished spool. */
static struct spool *spool_text(const struct config *cfg, const char *text)
{
    struct spool *sp = spool_new(cfg->data_dir);
    if (!sp)
        return NULL;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        spool_add_line(sp, p, len, nl ? 2 : 0);
        p += len + (nl ? 1 : 0);
    }
    if (spool_finish(sp) != 0) {
        int err = errno;
        spool_free(sp);
        errno = err;
        return NULL;
    }
    return sp;
}

static int submit_notice_to(const struct config *cfg, const char *to, bool smtputf8,
                            const char *text);

static int submit_notice(const struct config *cfg, const struct queue_entry *e,
                         const char *text)
{
    return submit_notice_to(cfg, e->sender, e->smtputf8, text);
}

static int submit_notice_to(const struct config *cfg, const char *to, bool smtputf8,
                            const char *text)
{
    struct envelope env;
    envelope_init(&env);
    env.origin = ORIGIN_LOCAL;
    env.smtputf8 = smtputf8;
    snprintf(env.helo, sizeof env.helo, "%s", cfg->hostname);
    if (!envelope_add_rcpt(&env, to, DSN_NOTIFY_NEVER, NULL)) {
        envelope_reset(&env);
        errno = ENOMEM;
        return -1;
    }
    struct spool *sp = spool_text(cfg, text);
    int rc = -1;
    if (sp) {
        struct submit_result res;
        submit_message(cfg, &env, sp, &res);
        rc = res.code == 250 ? 0 : -1;
        /* A bounce to an address that does not exist is dropped, not retried. */
        if (res.code >= 500)
            rc = 0;
        errno = rc ? EAGAIN : 0;
        spool_free(sp);
    }
    envelope_reset(&env);
    return rc;
}

/* The status word ("5.1.1") at the start of text into status; returns the
 * text after it, or text when there is none. */
static char *take_status(char *text, char status[16])
{
    size_t n = strcspn(text, " ");
    if (n > 4 && n < 16 && (text[0] == '2' || text[0] == '4' || text[0] == '5') &&
        text[1] == '.') {
        memcpy(status, text, n);
        status[n] = '\0';
        return text[n] ? text + n + 1 : text + n;
    }
    return text;
}

void relay_bounce_describe(const char *err, char buf[600], char status[16],
                           struct relay_dsn_rcpt *d)
{
    snprintf(buf, 600, "%s", err ? err : "");
    status[0] = '\0';
    char *said = strstr(buf, " said: ");
    if (strncmp(buf, "X-Pobox; ", 9) == 0) {
        d->reason = take_status(buf + 9, status);
    } else if (said) {
        *said = '\0';
        d->remote_mta = buf;
        d->smtp_reply = said + 7;
        take_status(strchr(said + 7, ' ') ? strchr(said + 7, ' ') + 1 : said + 7, status);
    } else if (*buf) {
        d->smtp_reply = buf;
    }
    d->status = status[0] ? status : NULL;
}

int relay_bounce(const struct config *cfg, const struct queue_entry *e,
                 enum relay_dsn_kind kind, const struct relay_dsn_rcpt *dsn,
                 size_t n)
{
    if (!e->sender[0] || n == 0)
        return 0; /* no notices to the null sender: no bounce loops */
    int fd = queue_open_msg(cfg, e->id);
    struct relay_dsn_params p = {
        .kind = kind, .reporting_mta = cfg->hostname, .sender = e->sender,
        .envid = e->envid, .ret = e->ret, .smtputf8 = e->smtputf8,
        .arrival = e->created, .rcpts = dsn, .n_rcpts = n, .msg_fd = fd,
    };
    char *text = relay_dsn_build(&p);
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (!text) {
        errno = err;
        return -1;
    }
    int rc = submit_notice(cfg, e, text);
    free(text);
    return rc;
}

int relay_notify_delivered(const struct config *cfg, const struct envelope *env,
                           int msg_fd, const struct envelope_rcpt *const *rcpts,
                           size_t n)
{
    if (!env->sender[0] || n == 0)
        return 0;
    struct relay_dsn_rcpt dsn[n];
    for (size_t i = 0; i < n; i++)
        dsn[i] = (struct relay_dsn_rcpt){
            .address = rcpts[i]->address, .orcpt = rcpts[i]->orcpt,
            .action = RELAY_DSN_DELIVERED, .status = "2.0.0",
            .reason = "delivered to the mailbox", .last_attempt = time(NULL),
        };
    struct relay_dsn_params p = {
        .kind = RELAY_DSN_SUCCESS, .reporting_mta = cfg->hostname,
        .sender = env->sender, .envid = env->envid, .ret = env->ret,
        .smtputf8 = env->smtputf8, .arrival = time(NULL), .rcpts = dsn,
        .n_rcpts = n, .msg_fd = msg_fd,
    };
    char *text = relay_dsn_build(&p);
    if (!text)
        return -1;
    int rc = submit_notice_to(cfg, env->sender, env->smtputf8, text);
    free(text);
    return rc;
}
