/* test_recipient.c — unit tests for src/mail/recipient.c: users, remote
 * addresses, aliases (fan-out to local and remote, nesting, loops, the depth
 * and size limits), catch-alls, plus-addressing, deduplication across
 * recipients, unreadable files, and the submission ownership rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/userdb.h"
#include "core/config.h"
#include "mail/aliases.h"
#include "mail/recipient.h"

#define HASH "{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"

/* ---- fixtures ----------------------------------------------------------- */

struct fixture {
    char dir[PATH_MAX];         /* fresh temporary data_dir */
    struct config *cfg;         /* domains example.org, example.net */
    struct recipient_list l;    /* freed by teardown */
};

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static struct config *load_config(const char *dir)
{
    char ov_dir[PATH_MAX + 32];
    char *ov[] = {ov_dir, "server.hostname=mail.example.org",
                  "server.domains=example.org, Example.NET"};
    struct config_errors errs = {0};

    snprintf(ov_dir, sizeof ov_dir, "server.data_dir=%s", dir);
    struct config *cfg = config_load(NULL, true, ov, 3, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.lines[i]);
    config_errors_free(&errs);
    return cfg;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/pobox-recipient-XXXXXX", base);
    if (!mkdtemp(f->dir) || !(f->cfg = load_config(f->dir)))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    recipient_list_free(&f->l);
    config_unref(f->cfg);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void user(struct fixture *f, const char *address)
{
    struct userdb_secrets sec = { .hash = HASH };
    assert_int_equal(userdb_put(f->dir, address, &sec), 0);
}

/* An alias with a NULL-terminated list of targets. */
static void alias(struct fixture *f, const char *name, ...)
{
    const char *targets[16];
    size_t n = 0;
    va_list ap;

    va_start(ap, name);
    for (const char *t; (t = va_arg(ap, const char *)) != NULL && n < 16;)
        targets[n++] = t;
    va_end(ap);
    assert_int_equal(aliases_put(f->dir, name, targets, n), 0);
}

/* The fixture's list as "local1,local2|remote1,remote2". */
static void assert_found(struct fixture *f, const char *want)
{
    char got[4096] = "";
    size_t len = 0;

    for (size_t i = 0; i < f->l.n_local; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s",
                                i ? "," : "", f->l.local[i]);
    len += (size_t)snprintf(got + len, sizeof got - len, "|");
    for (size_t i = 0; i < f->l.n_remote; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s",
                                i ? "," : "", f->l.remote[i]);
    assert_true(len < sizeof got);
    assert_string_equal(got, want);
}

static enum recipient_kind resolve(struct fixture *f, const char *address)
{
    return recipient_resolve(f->cfg, address, &f->l);
}

/* Resolves address into a fresh list and compares it with want. */
static void assert_resolves(struct fixture *f, const char *address,
                            enum recipient_kind kind, const char *want)
{
    recipient_list_free(&f->l);
    assert_int_equal(resolve(f, address), kind);
    assert_found(f, want);
}

/* ---- users and remote addresses ----------------------------------------- */

static void test_user_and_remote(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob@example.net");
    assert_int_equal(resolve(f, "alice@example.org"), RECIPIENT_LOCAL);
    assert_int_equal(resolve(f, "ALICE@Example.ORG"), RECIPIENT_LOCAL);
    assert_int_equal(resolve(f, "Bob@EXAMPLE.net"), RECIPIENT_LOCAL);
    assert_int_equal(resolve(f, "carol@Remote.example"), RECIPIENT_REMOTE);
    assert_int_equal(resolve(f, "carol@remote.EXAMPLE"), RECIPIENT_REMOTE);
    assert_int_equal(resolve(f, "Carol@remote.example"), RECIPIENT_REMOTE);
    /* remote addresses as given; the domain's case does not make another */
    assert_found(f, "alice@example.org,bob@example.net|"
                    "carol@Remote.example,Carol@remote.example");
}

static void test_unknown(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    assert_int_equal(resolve(f, "alice@example.org"), RECIPIENT_LOCAL);
    const char *unknown[] = {
        "nobody@example.org", "alice@example.net", "@example.org", "alice",
        "", "alice@", "+tag@example.org", "a\"b@example.org",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        assert_int_equal(resolve(f, unknown[i]), RECIPIENT_UNKNOWN);
    assert_found(f, "alice@example.org|");
}

static void test_utf8_local_part(void **state)
{
    struct fixture *f = *state;

    user(f, "j\xc3\xb6rg@example.org");
    assert_resolves(f, "J\xc3\xb6RG@Example.org", RECIPIENT_LOCAL,
                    "j\xc3\xb6rg@example.org|");
    /* only ASCII is case-folded */
    assert_resolves(f, "J\xc3\x96RG@example.org", RECIPIENT_UNKNOWN, "|");
    assert_resolves(f, "J\xc3\x96RG@remote.example", RECIPIENT_REMOTE,
                    "|J\xc3\x96RG@remote.example");
}

/* ---- plus-addressing ---------------------------------------------------- */

static void test_plus_addressing(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob+real@example.org");
    user(f, "carol@example.org");
    alias(f, "alice+list@example.org", "carol@example.org", NULL);
    alias(f, "sales@example.org", "alice@example.org", "dan@remote.example", NULL);

    assert_resolves(f, "Alice+Tag@example.org", RECIPIENT_LOCAL, "alice@example.org|");
    assert_resolves(f, "alice+@example.org", RECIPIENT_LOCAL, "alice@example.org|");
    assert_resolves(f, "alice+a+b@example.org", RECIPIENT_LOCAL, "alice@example.org|");
    /* user+tag that is itself an alias or a user is not stripped */
    assert_resolves(f, "alice+list@example.org", RECIPIENT_LOCAL, "carol@example.org|");
    assert_resolves(f, "bob+real@example.org", RECIPIENT_LOCAL, "bob+real@example.org|");
    assert_resolves(f, "bob+other@example.org", RECIPIENT_UNKNOWN, "|");
    /* the base may be an alias */
    assert_resolves(f, "sales+web@example.org", RECIPIENT_LOCAL,
                    "alice@example.org|dan@remote.example");
    /* a plus target of an alias */
    alias(f, "news@example.org", "carol+news@example.org", NULL);
    assert_resolves(f, "news@example.org", RECIPIENT_LOCAL, "carol@example.org|");
    /* remote plus-addresses are left alone */
    assert_resolves(f, "x+y@remote.example", RECIPIENT_REMOTE, "|x+y@remote.example");
}

/* ---- aliases ------------------------------------------------------------ */

static void test_alias_fan_out(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob@example.org");
    alias(f, "team@example.org", "alice@example.org", "Bob@Example.org",
          "Carol@Remote.example", "nobody@example.org", NULL);
    alias(f, "out@example.org", "dan@remote.example", NULL);
    alias(f, "lost@example.org", "nobody@example.org", NULL);

    /* unknown local targets are dropped; remote ones keep their local part */
    assert_resolves(f, "Team@example.org", RECIPIENT_LOCAL,
                    "alice@example.org,bob@example.org|Carol@remote.example");
    /* local even when only remote targets come out of it */
    assert_resolves(f, "out@example.org", RECIPIENT_LOCAL, "|dan@remote.example");
    /* an alias leading nowhere is unknown */
    assert_resolves(f, "lost@example.org", RECIPIENT_UNKNOWN, "|");
}

static void test_dedup_across_recipients(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob@example.org");
    alias(f, "team@example.org", "alice@example.org", "bob@example.org",
          "carol@remote.example", NULL);
    alias(f, "all@example.org", "team@example.org", "alice@example.org",
          "CAROL@remote.example", NULL);
    alias(f, "d1@example.org", "d2@example.org", "d3@example.org", NULL);
    alias(f, "d2@example.org", "alice@example.org", NULL);
    alias(f, "d3@example.org", "alice+x@example.org", NULL);

    assert_int_equal(resolve(f, "alice@example.org"), RECIPIENT_LOCAL);
    assert_int_equal(resolve(f, "team@example.org"), RECIPIENT_LOCAL);
    assert_int_equal(resolve(f, "ALICE+news@example.org"), RECIPIENT_LOCAL);
    assert_int_equal(resolve(f, "carol@REMOTE.example"), RECIPIENT_REMOTE);
    assert_int_equal(resolve(f, "all@example.org"), RECIPIENT_LOCAL);
    assert_found(f, "alice@example.org,bob@example.org|"
                    "carol@remote.example,CAROL@remote.example");
    /* a diamond: one mailbox */
    assert_resolves(f, "d1@example.org", RECIPIENT_LOCAL, "alice@example.org|");
}

static void test_catch_all(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob@example.org");
    alias(f, "@Example.org", "alice@example.org", NULL);
    alias(f, "info@example.org", "bob@example.org", NULL);

    assert_resolves(f, "random@example.org", RECIPIENT_LOCAL, "alice@example.org|");
    assert_resolves(f, "random+tag@EXAMPLE.org", RECIPIENT_LOCAL,
                    "alice@example.org|");
    /* users and aliases come before the catch-all */
    assert_resolves(f, "bob@example.org", RECIPIENT_LOCAL, "bob@example.org|");
    assert_resolves(f, "bob+tag@example.org", RECIPIENT_LOCAL, "bob@example.org|");
    assert_resolves(f, "info@example.org", RECIPIENT_LOCAL, "bob@example.org|");
    /* another domain has none */
    assert_resolves(f, "random@example.net", RECIPIENT_UNKNOWN, "|");
    /* a catch-all pointing at an unknown address of its own domain */
    alias(f, "@example.net", "nobody@example.net", NULL);
    assert_resolves(f, "random@example.net", RECIPIENT_UNKNOWN, "|");
    alias(f, "@example.net", "nobody@example.net", "x@remote.example", NULL);
    assert_resolves(f, "random@example.net", RECIPIENT_LOCAL, "|x@remote.example");
}

static void test_loops(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob@example.org");
    /* a loop with no mailbox in it */
    alias(f, "a@example.org", "b@example.org", NULL);
    alias(f, "b@example.org", "a@example.org", NULL);
    assert_resolves(f, "a@example.org", RECIPIENT_UNKNOWN, "|");
    /* a loop with mailboxes on the way */
    alias(f, "c@example.org", "d@example.org", "alice@example.org", NULL);
    alias(f, "d@example.org", "c@example.org", "bob@example.org", NULL);
    assert_resolves(f, "c@example.org", RECIPIENT_LOCAL,
                    "bob@example.org,alice@example.org|");
    /* self-reference: a user's alias keeps a copy and forwards one */
    alias(f, "alice@example.org", "alice@example.org", "alice@remote.example", NULL);
    assert_resolves(f, "alice@example.org", RECIPIENT_LOCAL,
                    "alice@example.org|alice@remote.example");
    assert_resolves(f, "alice+tag@example.org", RECIPIENT_LOCAL,
                    "alice@example.org|alice@remote.example");
    /* an alias that is not a user pointing at itself: nothing */
    alias(f, "self@example.org", "SELF@example.org", NULL);
    assert_resolves(f, "self@example.org", RECIPIENT_UNKNOWN, "|");
    /* an alias on a user that points elsewhere wins over the mailbox */
    alias(f, "bob@example.org", "alice@example.org", NULL);
    assert_resolves(f, "bob@example.org", RECIPIENT_LOCAL,
                    "alice@example.org|alice@remote.example");
}

static void test_depth_limit(void **state)
{
    struct fixture *f = *state;
    char name[64], next[64];

    user(f, "alice@example.org");
    /* c0 -> c1 -> ... -> c10 -> alice: c1 is 10 aliases deep, c0 11 */
    for (int i = 0; i <= RECIPIENT_DEPTH_MAX; i++) {
        snprintf(name, sizeof name, "c%d@example.org", i);
        snprintf(next, sizeof next, "c%d@example.org", i + 1);
        alias(f, name, i == RECIPIENT_DEPTH_MAX ? "alice@example.org" : next, NULL);
    }
    assert_resolves(f, "c1@example.org", RECIPIENT_LOCAL, "alice@example.org|");
    assert_resolves(f, "c0@example.org", RECIPIENT_UNKNOWN, "|");
    /* what is found before the cut is kept */
    alias(f, "c0@example.org", "c1@example.org", "x@remote.example", NULL);
    assert_resolves(f, "c0@example.org", RECIPIENT_LOCAL, "|x@remote.example");
}

static void test_expansion_limit(void **state)
{
    struct fixture *f = *state;
    const char *many[ALIASES_TARGETS_MAX];
    char (*names)[32] = calloc(ALIASES_TARGETS_MAX, sizeof *names);

    assert_non_null(names);
    for (size_t i = 0; i < ALIASES_TARGETS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "r%zu@remote.example", i);
        many[i] = names[i];
    }
    assert_int_equal(aliases_put(f->dir, "big@example.org", many,
                                 ALIASES_TARGETS_MAX), 0);
    assert_int_equal(resolve(f, "big@example.org"), RECIPIENT_LOCAL);
    assert_int_equal(f->l.n_remote, RECIPIENT_EXPANSION_MAX);
    assert_string_equal(f->l.remote[999], "r999@remote.example");
    /* one more destination is too many: nothing added */
    alias(f, "bigger@example.org", "big@example.org", "x@remote.example", NULL);
    assert_int_equal(resolve(f, "bigger@example.org"), RECIPIENT_TEMPFAIL);
    assert_int_equal(f->l.n_remote, RECIPIENT_EXPANSION_MAX);
    free(names);
}

static void test_postmaster(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    assert_resolves(f, "Postmaster", RECIPIENT_UNKNOWN, "|");
    alias(f, "postmaster@example.org", "alice@example.org", NULL);
    assert_resolves(f, "Postmaster", RECIPIENT_LOCAL, "alice@example.org|");
    assert_resolves(f, "POSTMASTER@example.ORG", RECIPIENT_LOCAL,
                    "alice@example.org|");
}

static void test_unreadable_is_tempfail(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX + 32];

    user(f, "alice@example.org");
    alias(f, "team@example.org", "alice@example.org", NULL);
    assert_int_equal(resolve(f, "bob@remote.example"), RECIPIENT_REMOTE);

    /* the aliases file */
    snprintf(path, sizeof path, "%s/aliases", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(resolve(f, "team@example.org"), RECIPIENT_TEMPFAIL);
    assert_int_equal(resolve(f, "alice@example.org"), RECIPIENT_TEMPFAIL);
    assert_int_equal(resolve(f, "carol@remote.example"), RECIPIENT_REMOTE);
    assert_false(recipient_owned_by(f->cfg, "alice@example.org",
                                    "team@example.org"));
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(resolve(f, "alice@example.org"), RECIPIENT_LOCAL);

    /* the users file */
    snprintf(path, sizeof path, "%s/users", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(resolve(f, "alice@example.org"), RECIPIENT_TEMPFAIL);
    assert_int_equal(resolve(f, "nobody@example.org"), RECIPIENT_TEMPFAIL);
    assert_false(recipient_owned_by(f->cfg, "alice@example.org",
                                    "alice+tag@example.org"));
    assert_found(f, "alice@example.org|bob@remote.example,carol@remote.example");
}

/* ---- the submission rule ------------------------------------------------ */

static bool owned(struct fixture *f, const char *address)
{
    return recipient_owned_by(f->cfg, "alice@example.org", address);
}

static void test_owned_by(void **state)
{
    struct fixture *f = *state;

    user(f, "alice@example.org");
    user(f, "bob@example.org");
    alias(f, "me@example.org", "alice@example.org", NULL);
    alias(f, "me2@example.org", "me@example.org", NULL);
    alias(f, "me3@example.org", "ALICE+x@example.org", NULL);
    alias(f, "us@example.org", "alice@example.org", "bob@example.org", NULL);
    alias(f, "fwd@example.org", "alice@example.org", "alice@remote.example", NULL);
    alias(f, "alice+bob@example.org", "bob@example.org", NULL);

    assert_true(owned(f, "alice@example.org"));
    assert_true(owned(f, "Alice@EXAMPLE.org"));
    assert_true(owned(f, "alice+news@example.org"));
    assert_true(owned(f, "me@example.org"));
    assert_true(owned(f, "ME2@example.org"));
    assert_true(owned(f, "me3@example.org"));
    assert_true(recipient_owned_by(f->cfg, "ALICE@example.org", "me@example.org"));

    assert_false(owned(f, "us@example.org"));
    assert_false(owned(f, "fwd@example.org"));
    assert_false(owned(f, "bob@example.org"));
    assert_false(owned(f, "bob+x@example.org"));
    assert_false(owned(f, "alice+bob@example.org"));   /* an alias of bob's */
    assert_false(owned(f, "nobody@example.org"));
    assert_false(owned(f, "alice@remote.example"));
    assert_false(owned(f, "alice@example.net"));
    assert_false(owned(f, ""));
    assert_false(recipient_owned_by(f->cfg, "not an address", "x@example.org"));
    assert_true(recipient_owned_by(f->cfg, "bob@example.org", "alice+bob@example.org"));

    /* a catch-all to the user alone */
    alias(f, "@example.net", "alice@example.org", NULL);
    assert_true(owned(f, "anything@example.net"));
    alias(f, "@example.net", "alice@example.org", "bob@example.org", NULL);
    assert_false(owned(f, "anything@example.net"));

    /* the own address stays owned when the user forwards their mail */
    alias(f, "alice@example.org", "alice@example.org", "alice@remote.example", NULL);
    assert_true(owned(f, "alice@example.org"));
    assert_true(owned(f, "alice+news@example.org"));
    assert_false(owned(f, "me@example.org"));   /* now expands to two */
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_user_and_remote),
        T(test_unknown),
        T(test_utf8_local_part),
        T(test_plus_addressing),
        T(test_alias_fan_out),
        T(test_dedup_across_recipients),
        T(test_catch_all),
        T(test_loops),
        T(test_depth_limit),
        T(test_expansion_limit),
        T(test_postmaster),
        T(test_unreadable_is_tempfail),
        T(test_owned_by),
    };
#undef T
    return cmocka_run_group_tests_name("recipient", tests, NULL, NULL);
}
