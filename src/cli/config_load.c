/* config_load.c — loads the configuration for a subcommand and prints
 * each problem on its own line. */
#include <stdio.h>

#include "cli/cli.h"
#include "core/config.h"

struct config *cli_load_config(const struct cli_opts *o)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(o->config_path, !o->config_given, o->overrides,
                                     o->n_overrides, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    config_errors_free(&errs);
    return cfg;
}
