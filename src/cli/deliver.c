/* deliver.c — `pobox deliver [-f SENDER] RECIPIENT...`: the local delivery
 * agent. Reads one message on stdin (LF or CRLF line ends; an mbox "From "
 * line first is dropped), resolves the recipients like the SMTP server and
 * hands the message to the same submission path. Exit codes from
 * sysexits.h so Postfix mailbox_command, fetchmail --mda and procmail-style
 * setups can act on them: 0 delivered, 64 usage, 65 bad message, 67 unknown
 * recipient, 75 temporary failure (try again later). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "core/config.h"
#include "mail/envelope.h"
#include "mail/recipient.h"
#include "mail/spool.h"
#include "mail/submit.h"

static int usage(void)
{
    fprintf(stderr, "usage: pobox deliver [-f SENDER] RECIPIENT...\n");
    return EX_USAGE;
}

/* Every recipient must be local (a user, an alias, a catch-all). */
static int check_recipients(const struct config *cfg, const struct envelope *env)
{
    for (size_t i = 0; i < env->n_rcpts; i++) {
        struct recipient_list rl = {0};
        enum recipient_kind k = recipient_resolve(cfg, env->rcpts[i].address, &rl);
        recipient_list_free(&rl);
        if (k == RECIPIENT_TEMPFAIL) {
            fprintf(stderr, "pobox deliver: cannot read the users or aliases "
                            "file now\n");
            return EX_TEMPFAIL;
        }
        if (k != RECIPIENT_LOCAL) {
            fprintf(stderr, "pobox deliver: %s: no such local user\n",
                    env->rcpts[i].address);
            return EX_NOUSER;
        }
    }
    return EX_OK;
}

static int parse_args(const struct cli_opts *o, struct envelope *env)
{
    size_t i = 0;
    if (i + 1 < o->nargs && strcmp(o->args[i], "-f") == 0) {
        if (strlen(o->args[i + 1]) >= sizeof env->sender)
            return usage();
        snprintf(env->sender, sizeof env->sender, "%s", o->args[i + 1]);
        if (strcmp(env->sender, "<>") == 0)
            env->sender[0] = '\0';
        i += 2;
    }
    if (i == o->nargs)
        return usage();
    for (; i < o->nargs; i++)
        if (o->args[i][0] == '-' || !envelope_add_rcpt(env, o->args[i], 0, NULL))
            return usage();
    return EX_OK;
}

/* stdin into the spool, LF line ends; false on a read or write error. */
static bool read_message(struct spool *sp)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool first = true;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        size_t len = (size_t)n, eol = 0;
        if (len && line[len - 1] == '\n')
            eol = (len > 1 && line[len - 2] == '\r') ? 2 : 1;
        len -= eol;
        if (!(first && len >= 5 && strncmp(line, "From ", 5) == 0))
            spool_add_line(sp, line, len, eol ? 2 : 0);
        first = false;
    }
    free(line);
    return !ferror(stdin) && spool_finish(sp) == 0;
}

static int exit_code(const struct submit_result *r)
{
    if (r->code == 250)
        return EX_OK;
    fprintf(stderr, "pobox deliver: %d %s %s\n", r->code, r->enhanced, r->text);
    if (r->code < 500)
        return EX_TEMPFAIL;
    return r->code == 550 ? EX_NOUSER : EX_DATAERR;
}

static int deliver(const struct config *cfg, struct envelope *env)
{
    int rc = check_recipients(cfg, env);
    if (rc != EX_OK)
        return rc;
    struct spool *sp = spool_new(cfg->data_dir);
    if (!sp) {
        fprintf(stderr, "pobox deliver: cannot create a spool file in %s: %s\n",
                cfg->data_dir, strerror(errno));
        return EX_TEMPFAIL;
    }
    struct submit_result res;
    if (!read_message(sp)) {
        fprintf(stderr, "pobox deliver: cannot read or store the message: %s\n",
                strerror(spool_error(sp) ? spool_error(sp) : errno));
        rc = EX_TEMPFAIL;
    } else {
        submit_message(cfg, env, sp, &res);
        rc = exit_code(&res);
    }
    spool_free(sp);
    return rc;
}

int cli_deliver(const struct cli_opts *o)
{
    struct envelope env;
    envelope_init(&env);
    env.origin = ORIGIN_LOCAL;
    snprintf(env.helo, sizeof env.helo, "localhost");
    int rc = parse_args(o, &env);
    if (rc == EX_OK) {
        struct config *cfg = cli_load_config(o);
        rc = cfg ? deliver(cfg, &env) : EX_CONFIG;
        config_unref(cfg);
    }
    envelope_reset(&env);
    return rc;
}
