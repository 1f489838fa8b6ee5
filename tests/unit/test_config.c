/* test_config.c — unit tests for core/config: defaults, "FILE:LINE: key:
 * problem" errors, -o overrides, durations, lists, domains, missing files,
 * and that `pobox check`'s printed configuration reads back the same.
 * Every test writes its pobox.conf into a fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

/* Per-test state: a temporary directory and the config file in it. */
struct env {
    char dir[64];
    char path[128];
    struct config_errors errs;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    snprintf(e->dir, sizeof(e->dir), "/tmp/pobox-test-config.XXXXXX");
    if (!mkdtemp(e->dir)) {
        free(e);
        return -1;
    }
    snprintf(e->path, sizeof(e->path), "%s/pobox.conf", e->dir);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    char sub[160];
    config_errors_free(&e->errs);
    unlink(e->path);
    snprintf(sub, sizeof(sub), "%s/sub", e->dir);
    rmdir(sub);
    rmdir(e->dir);
    free(e);
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Writes text to e->path and loads it with the overrides; errors in e->errs
 * (cleared first). */
static struct config *load_ov(struct env *e, const char *text,
                              char *const *ov, size_t n_ov)
{
    config_errors_free(&e->errs);
    write_text(e->path, text);
    return config_load(e->path, false, ov, n_ov, &e->errs);
}

static struct config *load(struct env *e, const char *text)
{
    return load_ov(e, text, NULL, 0);
}

/* Loads text that must be valid. */
static struct config *load_ok(struct env *e, const char *text)
{
    struct config *cfg = load(e, text);
    for (size_t i = 0; i < e->errs.n; i++)
        print_error("unexpected error: %s\n", e->errs.lines[i]);
    assert_non_null(cfg);
    assert_int_equal(e->errs.n, 0);
    return cfg;
}

/* Error i starts with "PATH:LINE: key: " (the problem text may change). */
static void assert_error_at(struct env *e, size_t i, int line, const char *key)
{
    char want[256];
    snprintf(want, sizeof(want), "%s:%d: %s: ", e->path, line, key);
    assert_true(i < e->errs.n);
    if (strncmp(e->errs.lines[i], want, strlen(want)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", e->errs.lines[i],
                 want);
}

static void assert_list(char *const *got, const char *const *want)
{
    size_t i = 0;
    assert_non_null(got);
    for (; want[i]; i++) {
        assert_non_null(got[i]);
        assert_string_equal(got[i], want[i]);
    }
    assert_null(got[i]);
}

static void assert_defaults(const struct config *cfg)
{
    static const char *const pop3[] = {"0.0.0.0:110", "[::]:110", NULL};
    assert_string_equal(cfg->data_dir, "/var/lib/pobox");
    assert_list(cfg->listen_pop3, pop3);
    assert_false(cfg->plaintext_without_tls);
    assert_true(cfg->apop);
    assert_int_equal(cfg->pop3_idle_timeout, 600);
    assert_int_equal(cfg->max_connections, 10000);
    assert_int_equal(cfg->max_connections_per_ip, 50);
    assert_true(cfg->max_message_size == 52428800);
    assert_string_equal(cfg->store_backend, "maildir");
    assert_true(cfg->hostname != NULL && cfg->hostname[0] != '\0');
}

static void test_empty_file_gives_defaults(void **state)
{
    struct env *e = *state;
    struct config *cfg = load_ok(e, "");
    assert_defaults(cfg);
    config_unref(cfg);
    cfg = load_ok(e, "; only a comment\n\n# another\n");
    assert_defaults(cfg);
    config_unref(cfg);
}

static void test_missing_file(void **state)
{
    struct env *e = *state;
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope.conf", e->dir);

    struct config *cfg = config_load(missing, true, NULL, 0, &e->errs);
    assert_non_null(cfg);
    assert_int_equal(e->errs.n, 0);
    assert_defaults(cfg);
    config_unref(cfg);

    cfg = config_load(missing, false, NULL, 0, &e->errs);
    assert_null(cfg);
    assert_int_equal(e->errs.n, 1);
    assert_non_null(strstr(e->errs.lines[0], missing));
    assert_non_null(strstr(e->errs.lines[0], "cannot open"));
}

/* A directory is not a configuration file, even when missing is allowed. */
static void test_directory_is_an_error(void **state)
{
    struct env *e = *state;
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/sub", e->dir);
    assert_int_equal(mkdir(sub, 0700), 0);

    struct config *cfg = config_load(sub, false, NULL, 0, &e->errs);
    if (cfg) {
        config_unref(cfg);
        fail_msg("the directory %s loaded as an empty configuration", sub);
    }
    assert_true(e->errs.n >= 1);
    assert_non_null(strstr(e->errs.lines[0], sub));
}

static void test_unknown_key_names_file_and_line(void **state)
{
    struct env *e = *state;
    char want[256];

    assert_null(load(e, "[server]\ndata_dir = /srv/mail\nbogus = 1\n"));
    assert_int_equal(e->errs.n, 1);
    snprintf(want, sizeof(want), "%s:3: server.bogus: unknown key", e->path);
    assert_string_equal(e->errs.lines[0], want);

    /* comments, blank lines and sections count as lines */
    assert_null(load(e, "; c\n\n[pop3]\n# c\n\n[nosuch]\nkey = v\n"));
    assert_int_equal(e->errs.n, 1);
    snprintf(want, sizeof(want), "%s:7: nosuch.key: unknown key", e->path);
    assert_string_equal(e->errs.lines[0], want);
}

static void test_bad_values_name_their_lines(void **state)
{
    struct env *e = *state;

    assert_null(load(e, "[auth]\n"
                        "apop = maybe\n"
                        "[limits]\n"
                        "max_connections = 12x\n"
                        "max_message_size = -5\n"
                        "max_connections_per_ip = 4294967296\n"
                        "[pop3]\n"
                        "idle_timeout = 5x\n"
                        "[smtp]\n"
                        "idle_timeout = -1\n"));
    assert_int_equal(e->errs.n, 6);
    assert_error_at(e, 0, 2, "auth.apop");
    assert_error_at(e, 1, 4, "limits.max_connections");
    assert_error_at(e, 2, 5, "limits.max_message_size");
    assert_error_at(e, 3, 6, "limits.max_connections_per_ip");
    assert_error_at(e, 4, 8, "pop3.idle_timeout");
    assert_error_at(e, 5, 10, "smtp.idle_timeout");
}

/* Values longer than libinih's default line buffer (200 bytes), such as a
 * PostgreSQL connection string, load whole and do not shift line numbers. */
static void test_long_line(void **state)
{
    struct env *e = *state;
    char text[512], value[301];
    memset(value, 'a', 300);
    value[300] = '\0';
    memcpy(value, "host=db", 7);
    snprintf(text, sizeof(text), "[store]\npostgres = %s\nbogus = 1\n", value);

    assert_null(load(e, text));
    for (size_t i = 0; i < e->errs.n; i++)
        print_message("error: %s\n", e->errs.lines[i]);
    assert_int_equal(e->errs.n, 1);
    assert_error_at(e, 0, 3, "store.bogus");
}

static void test_bool_spellings(void **state)
{
    struct env *e = *state;
    static const char *yes[] = {"yes", "true", "on", "1", "YES", "True"};
    static const char *no[] = {"no", "false", "off", "0", "NO", "Off"};
    char text[64];

    for (size_t i = 0; i < 6; i++) {
        snprintf(text, sizeof(text), "[auth]\napop = %s\n", no[i]);
        struct config *cfg = load_ok(e, text);
        assert_false(cfg->apop);
        config_unref(cfg);
        snprintf(text, sizeof(text), "[auth]\nplaintext_without_tls = %s\n",
                 yes[i]);
        cfg = load_ok(e, text);
        assert_true(cfg->plaintext_without_tls);
        config_unref(cfg);
    }
}

static void test_overrides_win(void **state)
{
    struct env *e = *state;
    char *ov[] = {"server.data_dir=/from/cli", " pop3.idle_timeout = 5m "};

    struct config *cfg = load_ov(e, "[server]\ndata_dir = /from/file\n"
                                    "[pop3]\nidle_timeout = 10\n"
                                    "[auth]\napop = no\n", ov, 2);
    assert_non_null(cfg);
    assert_string_equal(cfg->data_dir, "/from/cli");
    assert_int_equal(cfg->pop3_idle_timeout, 300);
    assert_false(cfg->apop);                /* the file still counts */
    config_unref(cfg);
}

static void test_override_errors(void **state)
{
    struct env *e = *state;
    char *ov[] = {"server.nope=1", "nodot=1", "auth.apop=perhaps"};

    assert_null(load_ov(e, "", ov, 3));
    assert_int_equal(e->errs.n, 3);
    assert_string_equal(e->errs.lines[0], "-o server.nope: unknown key");
    assert_non_null(strstr(e->errs.lines[1], "nodot=1"));
    assert_string_equal(e->errs.lines[2], "-o auth.apop: expected yes or no");
}

static void test_parse_duration(void **state)
{
    static const struct { const char *s; uint64_t ms; } ok[] = {
        {"30", 30000}, {"30s", 30000}, {"5m", 300000}, {"2h", 7200000},
        {"1d", 86400000}, {"250ms", 250}, {"0", 0},
    };
    static const char *bad[] = {"5x", "-1", "", "s", " 5", "5 s", "5M",
                                "1.5s", "99999999999999999999"};
    uint64_t ms;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ms = 1;
        if (!config_parse_duration_ms(ok[i].s, &ms))
            fail_msg("duration \"%s\" rejected", ok[i].s);
        assert_true(ms == ok[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_duration_ms(bad[i], &ms))
            fail_msg("duration \"%s\" accepted", bad[i]);
}

static void test_duration_keys(void **state)
{
    struct env *e = *state;
    struct config *cfg = load_ok(e, "[pop3]\nidle_timeout = 5m\n"
                                    "[auth]\nfailure_delay = 250ms\n"
                                    "max_failure_delay = 3\n"
                                    "[tls]\nhandshake_timeout = 1500ms\n");
    assert_int_equal(cfg->pop3_idle_timeout, 300);
    assert_int_equal(cfg->failure_delay_ms, 250);
    assert_int_equal(cfg->max_failure_delay_ms, 3000);
    assert_int_equal(cfg->tls_handshake_timeout, 2);    /* rounded up */
    config_unref(cfg);
}

/* 71582789m is 4294967340 s: more than an unsigned holds, so it must be
 * refused, not wrapped to 44 seconds. */
static void test_duration_seconds_overflow(void **state)
{
    struct env *e = *state;
    struct config *cfg = load(e, "[pop3]\nidle_timeout = 71582789m\n");
    if (cfg) {
        unsigned got = cfg->pop3_idle_timeout;
        config_unref(cfg);
        fail_msg("pop3.idle_timeout = 71582789m loaded as %u s", got);
    }
    assert_error_at(e, 0, 2, "pop3.idle_timeout");
}

static void test_lists(void **state)
{
    struct env *e = *state;
    static const char *const four[] = {"127.0.0.1:1100", "[::1]:1100",
                                       "127.0.0.2:1100", "127.0.0.3:1100",
                                       NULL};
    static const char *const one[] = {"a:1", NULL};
    static const char *const none[] = {NULL};

    struct config *cfg = load_ok(e, "[listen]\n"
        "pop3 = 127.0.0.1:1100,[::1]:1100  127.0.0.2:1100\t, 127.0.0.3:1100\n"
        "pop3s = , ,a:1,,\n"
        "smtp =\n");
    assert_list(cfg->listen_pop3, four);
    assert_list(cfg->listen_pop3s, one);
    assert_list(cfg->listen_smtp, none);
    config_unref(cfg);
}

static void test_domains_lowercased(void **state)
{
    struct env *e = *state;
    static const char *const want[] = {"example.com", "mail.example.org",
                                       NULL};

    struct config *cfg = load_ok(e, "[server]\nhostname = mx.example.com\n"
                                    "domains = Example.COM, mail.Example.org\n");
    assert_list(cfg->domains, want);
    assert_true(config_is_local_domain(cfg, "example.com"));
    assert_true(config_is_local_domain(cfg, "EXAMPLE.com"));
    assert_false(config_is_local_domain(cfg, "example.net"));
    assert_false(config_is_local_domain(cfg, "mx.example.com"));
    config_unref(cfg);
}

static void test_domains_default_to_hostname(void **state)
{
    struct env *e = *state;
    static const char *const want[] = {"mail.example.org", NULL};

    struct config *cfg = load_ok(e, "[server]\nhostname = Mail.Example.ORG\n");
    assert_list(cfg->domains, want);
    config_unref(cfg);

    cfg = load_ok(e, "");           /* machine name, lowercased */
    assert_non_null(cfg->domains[0]);
    assert_null(cfg->domains[1]);
    assert_string_equal(cfg->domains[0], cfg->hostname);
    for (const char *p = cfg->domains[0]; *p; p++)
        assert_false(*p >= 'A' && *p <= 'Z');
    config_unref(cfg);
}

/* config_print into a NUL-terminated string (caller frees). */
static char *print_to_string(const struct config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_print(cfg, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* Prints cfg, loads the printed text back and prints that: same text. */
static void assert_round_trip(struct env *e, struct config *cfg)
{
    char *first = print_to_string(cfg);
    struct config *again = load_ok(e, first);
    char *second = print_to_string(again);
    assert_string_equal(first, second);
    free(first);
    free(second);
    config_unref(again);
}

static void test_print_round_trip(void **state)
{
    struct env *e = *state;
    char *ov[] = {"relay.smarthost=[smtp.example.net]:587"};

    struct config *cfg = load_ok(e, "");
    assert_round_trip(e, cfg);
    config_unref(cfg);

    cfg = load_ov(e, "[server]\nhostname = mx.example.com\n"
                     "data_dir = /srv/mail\ndomains = a.example, B.example\n"
                     "io_threads = 3\n"
                     "[listen]\npop3 = 127.0.0.1:1100\nsmtp =\n"
                     "[tls]\nmin_version = 1.3\nhandshake_timeout = 2m\n"
                     "[auth]\napop = off\nfailure_delay = 250ms\n"
                     "[limits]\nmax_message_size = 1048576\n"
                     "[pop3]\nidle_timeout = 1h\n", ov, 1);
    assert_non_null(cfg);
    char *text = print_to_string(cfg);
    assert_non_null(strstr(text, "[server]\n"));
    assert_non_null(strstr(text, "data_dir = /srv/mail\n"));
    assert_non_null(strstr(text, "smarthost = [smtp.example.net]:587\n"));
    free(text);
    assert_round_trip(e, cfg);
    config_unref(cfg);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_empty_file_gives_defaults),
        T(test_missing_file),
        T(test_directory_is_an_error),
        T(test_unknown_key_names_file_and_line),
        T(test_bad_values_name_their_lines),
        T(test_long_line),
        T(test_bool_spellings),
        T(test_overrides_win),
        T(test_override_errors),
        T(test_parse_duration),
        T(test_duration_keys),
        T(test_duration_seconds_overflow),
        T(test_lists),
        T(test_domains_lowercased),
        T(test_domains_default_to_hostname),
        T(test_print_round_trip),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
