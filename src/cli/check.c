/* check.c — `pobox check`: validate the configuration and print the
 * effective one (exit 1 with a line per error). */
#include <stdio.h>

#include "cli/cli.h"
#include "core/config.h"

int cli_check(const struct cli_opts *o)
{
    struct config *cfg = cli_load_config(o);
    if (!cfg)
        return 1;
    printf("# effective configuration of %s\n", cfg->path ? cfg->path : "(defaults)");
    config_print(cfg, stdout);
    config_unref(cfg);
    return 0;
}
