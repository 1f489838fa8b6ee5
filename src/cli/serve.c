/* serve.c — `pobox serve`: loads the configuration, wires the protocol
 * services (POP3, POP3S, submission, submissions, SMTP) to their listeners,
 * starts the queue runner, and runs the server until SIGTERM. */
#include <stdio.h>

#include "auth/sasl.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "net/server.h"
#include "pop3/pop3.h"
#include "relay/runner.h"
#include "smtp/smtp.h"

static void *relay_start(struct event_base *base, struct jobs *jobs)
{
    return relay_runner_start(base, jobs);
}

static void relay_stop(void *state)
{
    relay_runner_stop(state);
}

static const struct server_background RELAY = {relay_start, relay_stop};

static struct config *reload(void *arg)
{
    const struct cli_opts *o = arg;
    return cli_load_config(o);
}

int cli_serve(const struct cli_opts *o)
{
    if (o->nargs) {
        fprintf(stderr, "pobox serve: unexpected argument '%s'\n", o->args[0]);
        return 2;
    }
    struct config *cfg = cli_load_config(o);
    if (!cfg)
        return 1;
    if (sasl_init(cfg) != 0) {
        config_unref(cfg);
        return 1;
    }
    const struct server_service svcs[] = {
        {"pop3", cfg->listen_pop3, false, pop3_accept, POP3_BUSY_REPLY},
        {"pop3s", cfg->listen_pop3s, true, pop3_accept, POP3_BUSY_REPLY},
        {"submission", cfg->listen_submission, false, smtp_accept_submission,
         SMTP_BUSY_REPLY},
        {"submissions", cfg->listen_submissions, true, smtp_accept_submission,
         SMTP_BUSY_REPLY},
        {"smtp", cfg->listen_smtp, false, smtp_accept, SMTP_BUSY_REPLY},
    };
    log_info("event=starting version=%s config=\"%s\" hostname=%s data_dir=\"%s\"",
             POBOX_VERSION, cfg->path ? cfg->path : "(defaults)", cfg->hostname,
             cfg->data_dir);
    int rc = server_run(cfg, svcs, sizeof(svcs) / sizeof(svcs[0]), &RELAY, reload,
                        (void *)o);
    sasl_done();
    config_unref(cfg);
    return rc;
}
