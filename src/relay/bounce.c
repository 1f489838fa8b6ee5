/* bounce.c — turns a delivery status notification into a message and hands
 * it to the submission path, from the null sender so that it can never
 * bounce in turn. */
#include "relay/bounce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int submit_notice(const struct config *cfg, const struct queue_entry *e,
                         const char *text)
{
    struct envelope env;
    envelope_init(&env);
    env.origin = ORIGIN_LOCAL;
    env.smtputf8 = e->smtputf8;
    snprintf(env.helo, sizeof env.helo, "%s", cfg->hostname);
    if (!envelope_add_rcpt(&env, e->sender, DSN_NOTIFY_NEVER, NULL)) {
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
