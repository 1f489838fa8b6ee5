/* queue.c — `pobox queue list|flush|delete ID|bounce ID`: the outbound
 * queue seen and steered by the admin. The running server's queue runner
 * picks up what flush and bounce change at its next scan. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/config.h"
#include "mail/queue.h"
#include "relay/bounce.h"

static const char *state_name(enum queue_state st)
{
    return st == QUEUE_PENDING ? "pending" : st == QUEUE_SENT ? "sent" : "failed";
}

static void print_age(int64_t secs)
{
    if (secs < 3600)
        printf("%lldm", (long long)(secs / 60));
    else if (secs < 86400)
        printf("%lldh", (long long)(secs / 3600));
    else
        printf("%lldd", (long long)(secs / 86400));
}

static int list_one(const char *id, void *arg)
{
    const struct config *cfg = arg;
    struct queue_entry e;
    if (queue_read(cfg, id, &e) != 0) {
        printf("%s  (unreadable: %s)\n", id, strerror(errno));
        return 0;
    }
    int64_t now = time(NULL);
    printf("%s  ", e.id);
    print_age(now - e.created);
    printf("  %llu  <%s>\n", (unsigned long long)e.size, e.sender);
    for (size_t i = 0; i < e.n_rcpts; i++) {
        const struct queue_rcpt *r = &e.rcpts[i];
        printf("    %s  %s  attempts=%u", r->address, state_name(r->state), r->attempts);
        if (r->state == QUEUE_PENDING) {
            printf("  next=");
            print_age(r->next_attempt > now ? r->next_attempt - now : 0);
        }
        if (r->last_error)
            printf("  error=\"%s\"", r->last_error);
        putchar('\n');
    }
    queue_entry_free(&e);
    return 0;
}

static int flush_one(const char *id, void *arg)
{
    const struct config *cfg = arg;
    struct queue_entry e;
    if (queue_read(cfg, id, &e) != 0)
        return 0;
    for (size_t i = 0; i < e.n_rcpts; i++)
        if (e.rcpts[i].state == QUEUE_PENDING)
            e.rcpts[i].next_attempt = time(NULL);
    if (queue_update(cfg, &e) != 0)
        fprintf(stderr, "pobox queue flush: %s: %s\n", id, strerror(errno));
    queue_entry_free(&e);
    return 0;
}

/* Every recipient not yet delivered fails now; the sender gets a bounce. */
static int bounce_one(const struct config *cfg, const char *id)
{
    struct queue_entry e;
    if (queue_read(cfg, id, &e) != 0) {
        fprintf(stderr, "pobox queue bounce: %s: %s\n", id, strerror(errno));
        return 1;
    }
    struct relay_dsn_rcpt dsn[e.n_rcpts ? e.n_rcpts : 1];
    char bufs[e.n_rcpts ? e.n_rcpts : 1][600], stat[e.n_rcpts ? e.n_rcpts : 1][16];
    size_t n = 0;
    for (size_t i = 0; i < e.n_rcpts; i++) {
        if (e.rcpts[i].state != QUEUE_PENDING)
            continue;
        dsn[n] = (struct relay_dsn_rcpt){
            .address = e.rcpts[i].address, .orcpt = e.rcpts[i].orcpt,
            .action = RELAY_DSN_FAILED, .last_attempt = time(NULL),
        };
        relay_bounce_describe(e.rcpts[i].last_error, bufs[n], stat[n], &dsn[n]);
        dsn[n].status = "5.0.0";
        if (!dsn[n].smtp_reply)
            dsn[n].reason = "returned to the sender by the postmaster";
        n++;
    }
    int rc = relay_bounce(cfg, &e, RELAY_DSN_FAILURE, dsn, n);
    if (rc != 0)
        fprintf(stderr, "pobox queue bounce: %s: the bounce could not be sent: %s\n",
                id, strerror(errno));
    else if (queue_remove(cfg, id) != 0)
        fprintf(stderr, "pobox queue bounce: %s: %s\n", id, strerror(errno));
    queue_entry_free(&e);
    return rc ? 1 : 0;
}

static int run(const struct config *cfg, const char *cmd, const char *id)
{
    if (strcmp(cmd, "list") == 0)
        return queue_list(cfg, list_one, (void *)cfg) == 0 ? 0 : 1;
    if (strcmp(cmd, "flush") == 0)
        return queue_list(cfg, flush_one, (void *)cfg) == 0 ? 0 : 1;
    if (!queue_id_valid(id)) {
        fprintf(stderr, "pobox queue %s: '%s' is not a queue ID\n", cmd, id);
        return 2;
    }
    if (strcmp(cmd, "bounce") == 0)
        return bounce_one(cfg, id);
    if (queue_remove(cfg, id) != 0) {
        fprintf(stderr, "pobox queue delete: %s: %s\n", id,
                errno == ENOENT ? "no such message" : strerror(errno));
        return 1;
    }
    return 0;
}

int cli_queue(const struct cli_opts *o)
{
    const char *cmd = o->nargs ? o->args[0] : "";
    bool with_id = strcmp(cmd, "delete") == 0 || strcmp(cmd, "bounce") == 0;
    bool without = strcmp(cmd, "list") == 0 || strcmp(cmd, "flush") == 0;
    if (!((with_id && o->nargs == 2) || (without && o->nargs == 1))) {
        fprintf(stderr, "usage: pobox queue list | flush | delete ID | bounce ID\n");
        return 2;
    }
    struct config *cfg = cli_load_config(o);
    if (!cfg)
        return 1;
    int rc = run(cfg, cmd, with_id ? o->args[1] : NULL);
    config_unref(cfg);
    return rc;
}
