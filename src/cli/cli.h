/* cli.h — the `pobox` subcommands (main.c parses the common options and
 * calls one of these). Each returns the process exit code. */
#ifndef POBOX_CLI_H
#define POBOX_CLI_H

#include <stdbool.h>
#include <stddef.h>

struct cli_opts {
    const char *config_path;   /* -c, else config_default_path() */
    bool config_given;
    char **overrides;          /* -o section.key=value */
    size_t n_overrides;
    char **args;               /* what follows the command name */
    size_t nargs;
};

/* Loads the configuration, printing one line per error to stderr. */
struct config *cli_load_config(const struct cli_opts *o);

int cli_serve(const struct cli_opts *o);
int cli_user(const struct cli_opts *o);
int cli_alias(const struct cli_opts *o);
int cli_deliver(const struct cli_opts *o);
int cli_queue(const struct cli_opts *o);
int cli_check(const struct cli_opts *o);
int cli_help(const char *topic);

#endif
