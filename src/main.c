/* main.c — `pobox`: parses the options every command shares (-c FILE,
 * -o section.key=value) and runs the subcommand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"

static int add_override(struct cli_opts *o, char *kv)
{
    char **n = realloc(o->overrides, (o->n_overrides + 1) * sizeof(*n));
    if (!n)
        return -1;
    o->overrides = n;
    o->overrides[o->n_overrides++] = kv;
    return 0;
}

/* Splits argv into options and positional words (the command first). */
static int parse_args(int argc, char **argv, struct cli_opts *o)
{
    o->args = calloc((size_t)argc + 1, sizeof(*o->args));
    if (!o->args)
        return -1;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-o") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "pobox: %s needs an argument\n", argv[i]);
            return -1;
        }
        if (strcmp(argv[i], "-c") == 0) {
            o->config_path = argv[++i];
            o->config_given = true;
        } else if (strcmp(argv[i], "-o") == 0) {
            if (add_override(o, argv[++i]) != 0)
                return -1;
        } else
            o->args[o->nargs++] = argv[i];
    }
    if (!o->config_path)
        o->config_path = config_default_path();
    return 0;
}

int main(int argc, char **argv)
{
    struct cli_opts o = {0};
    int rc = 2;
    if (parse_args(argc, argv, &o) != 0)
        goto out;
    const char *cmd = o.nargs ? o.args[0] : "help";
    struct cli_opts sub = o;
    sub.args = o.args + (o.nargs ? 1 : 0);
    sub.nargs = o.nargs ? o.nargs - 1 : 0;
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("pobox %s\n", POBOX_VERSION);
        rc = 0;
    } else if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
               strcmp(cmd, "-h") == 0)
        rc = cli_help(sub.nargs ? sub.args[0] : NULL);
    else if (strcmp(cmd, "serve") == 0)
        rc = cli_serve(&sub);
    else if (strcmp(cmd, "user") == 0)
        rc = cli_user(&sub);
    else if (strcmp(cmd, "alias") == 0)
        rc = cli_alias(&sub);
    else if (strcmp(cmd, "queue") == 0)
        rc = cli_queue(&sub);
    else if (strcmp(cmd, "deliver") == 0)
        rc = cli_deliver(&sub);
    else if (strcmp(cmd, "check") == 0)
        rc = cli_check(&sub);
    else {
        fprintf(stderr, "pobox: unknown command '%s' (try 'pobox help')\n", cmd);
        rc = 2;
    }
out:
    free(o.args);
    free(o.overrides);
    return rc;
}
