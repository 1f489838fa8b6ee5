/* alias.c — `pobox alias add|del|list`: checks the addresses and edits the
 * aliases file through mail/aliases. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/config.h"
#include "mail/aliases.h"

static void usage(void)
{
    fprintf(stderr, "usage: pobox alias add ALIAS TARGET... | del ALIAS | list\n");
}

/* Checks every target (valid, not repeated, not too many); prints why and
 * returns false when one is wrong. */
static bool targets_ok(char *const *targets, size_t n)
{
    char canon[ALIASES_ADDRESS_MAX + 1], prev[ALIASES_ADDRESS_MAX + 1];

    if (n > ALIASES_TARGETS_MAX) {
        fprintf(stderr, "pobox alias add: too many targets (%zu; at most %d)\n",
                n, ALIASES_TARGETS_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!aliases_canonical_target(targets[i], canon, sizeof canon)) {
            fprintf(stderr, "pobox alias add: '%s' is not a valid target "
                            "(expected local@domain)\n", targets[i]);
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (aliases_canonical_target(targets[j], prev, sizeof prev) &&
                strcmp(prev, canon) == 0) {
                fprintf(stderr, "pobox alias add: target %s is given twice\n",
                        canon);
                return false;
            }
    }
    return true;
}

/* A warning (the alias is still stored) when it is not in a local domain. */
static void warn_not_local(const struct config *cfg, const char *alias)
{
    const char *domain = strrchr(alias, '@') + 1;
    if (!config_is_local_domain(cfg, domain))
        fprintf(stderr, "pobox alias add: warning: %s is not in server.domains; "
                        "mail for %s is not delivered through this alias\n",
                domain, alias);
}

static int add_alias(const struct config *cfg, const char *alias,
                     char *const *targets, size_t n)
{
    if (aliases_put(cfg->data_dir, alias, (const char *const *)targets, n) != 0) {
        fprintf(stderr, "pobox alias add: cannot write %s/aliases: %s\n",
                cfg->data_dir, strerror(errno));
        return 1;
    }
    warn_not_local(cfg, alias);
    return 0;
}

static int del_alias(const struct config *cfg, const char *alias)
{
    int r = aliases_del(cfg->data_dir, alias);
    if (r < 0) {
        fprintf(stderr, "pobox alias del: cannot write %s/aliases: %s\n",
                cfg->data_dir, strerror(errno));
        return 1;
    }
    if (r == 1) {
        fprintf(stderr, "pobox alias del: no such alias %s\n", alias);
        return 1;
    }
    return 0;
}

static void print_alias(const char *alias, const char *const *targets, size_t n,
                        void *arg)
{
    printf("%s:", alias);
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? ", " : " ", targets[i]);
    putchar('\n');
}

static int list_aliases(const struct config *cfg)
{
    if (aliases_list(cfg->data_dir, print_alias, NULL) != 0) {
        fprintf(stderr, "pobox alias list: cannot read %s/aliases: %s\n",
                cfg->data_dir, strerror(errno));
        return 1;
    }
    return 0;
}

/* True when the words after the verb have the right number. */
static bool arity_ok(const struct cli_opts *o, const char *verb)
{
    if (strcmp(verb, "list") == 0)
        return o->nargs == 1;
    if (strcmp(verb, "del") == 0)
        return o->nargs == 2;
    return strcmp(verb, "add") == 0 && o->nargs >= 3;
}

/* Checks the command line and puts the canonical alias into alias; prints
 * why and returns false when it is wrong. */
static bool args_ok(const struct cli_opts *o, const char *verb, char *alias)
{
    if (!arity_ok(o, verb)) {
        usage();
        return false;
    }
    if (strcmp(verb, "list") == 0)
        return true;
    if (!aliases_canonical_alias(o->args[1], alias, ALIASES_ADDRESS_MAX + 1)) {
        fprintf(stderr, "pobox alias %s: '%s' is not a valid alias (expected "
                        "local@domain or @domain)\n", verb, o->args[1]);
        return false;
    }
    return strcmp(verb, "add") != 0 || targets_ok(o->args + 2, o->nargs - 2);
}

int cli_alias(const struct cli_opts *o)
{
    const char *verb = o->nargs ? o->args[0] : "";
    char alias[ALIASES_ADDRESS_MAX + 1] = "";

    if (!args_ok(o, verb, alias))
        return 2;
    struct config *cfg = cli_load_config(o);
    if (!cfg)
        return 1;
    int rc;
    if (strcmp(verb, "list") == 0)
        rc = list_aliases(cfg);
    else if (strcmp(verb, "add") == 0)
        rc = add_alias(cfg, alias, o->args + 2, o->nargs - 2);
    else
        rc = del_alias(cfg, alias);
    config_unref(cfg);
    return rc;
}
