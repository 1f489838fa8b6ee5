/* test_aliases.c — unit tests for src/mail/aliases.c: address rules, put /
 * lookup / del / list, what the aliases file looks like afterwards, hand
 * edits (comments, separators, duplicates, bad targets), reloads after
 * outside edits, unreadable files, and lookups from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail/aliases.h"

/* ---- fixtures ----------------------------------------------------------- */

struct fixture {
    char dir[PATH_MAX];     /* fresh temporary data_dir */
    char aliases[PATH_MAX + 16]; /* dir/aliases */
};

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/pobox-aliases-XXXXXX", base);
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->aliases, sizeof f->aliases, "%s/aliases", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* The whole file as a string (caller frees). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    assert_non_null(fp);
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    int c;
    while ((c = fgetc(fp)) != EOF)
        fputc(c, mem);
    fclose(fp);
    fclose(mem);
    return buf;
}

static void spew(const char *path, const char *content)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_true(fputs(content, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

static void assert_file(const char *path, const char *want)
{
    char *got = slurp(path);
    assert_string_equal(got, want);
    free(got);
}

/* aliases_put with a NULL-terminated list of targets. */
static int put(const char *dir, const char *alias, ...)
{
    const char *targets[8];
    size_t n = 0;
    va_list ap;

    va_start(ap, alias);
    for (const char *t; (t = va_arg(ap, const char *)) != NULL && n < 8;)
        targets[n++] = t;
    va_end(ap);
    return aliases_put(dir, alias, targets, n);
}

/* The targets of alias joined by ",", "" when there is none (-1 fails the
 * test). Caller frees. */
static char *targets_of(const char *dir, const char *alias)
{
    char **t;
    size_t n;
    char *buf = NULL;
    size_t len = 0;

    int r = aliases_lookup(dir, alias, &t, &n);
    assert_true(r >= 0);
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    for (size_t i = 0; r == 1 && i < n; i++)
        fprintf(mem, "%s%s", i ? "," : "", t[i]);
    fclose(mem);
    if (r == 1) {
        assert_true(n > 0);
        aliases_free_targets(t, n);
    } else {
        assert_null(t);
        assert_int_equal(n, 0);
    }
    return buf;
}

static void assert_targets(const char *dir, const char *alias, const char *want)
{
    char *got = targets_of(dir, alias);
    assert_string_equal(got, want);
    free(got);
}

/* Collects what aliases_list reports, "ALIAS=T1,T2\n" each. */
static void collect(const char *alias, const char *const *targets, size_t n,
                    void *arg)
{
    FILE *mem = arg;
    fprintf(mem, "%s=", alias);
    for (size_t i = 0; i < n; i++)
        fprintf(mem, "%s%s", i ? "," : "", targets[i]);
    fputc('\n', mem);
}

static void assert_list(const char *dir, const char *want)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    assert_int_equal(aliases_list(dir, collect, mem), 0);
    fclose(mem);
    assert_string_equal(buf, want);
    free(buf);
}

/* ---- address rules ------------------------------------------------------ */

static void test_canonical_alias(void **state)
{
    char out[ALIASES_ADDRESS_MAX + 1];

    assert_true(aliases_canonical_alias("Info@Example.ORG", out, sizeof out));
    assert_string_equal(out, "info@example.org");
    assert_true(aliases_canonical_alias("@Example.org", out, sizeof out));
    assert_string_equal(out, "@example.org");
    assert_true(aliases_canonical_alias("J\xc3\xb6rg.X+Y@mail-1.example.org",
                                        out, sizeof out));
    assert_string_equal(out, "j\xc3\xb6rg.x+y@mail-1.example.org");
    assert_true(aliases_canonical_alias("a!#$%&'*/=?^_`{|}~-@localhost", out,
                                        sizeof out));

    const char *bad[] = {
        "", "@", "info", "info@", "a@b@example.org", "a b@example.org",
        ".a@example.org", "a.@example.org", "a..b@example.org",
        "a:b@example.org", "a,b@example.org", "\"a\"@example.org",
        "a@-example.org", "a@example-.org", "a@example..org", "a@.example.org",
        "a@example.org.", "a@exa_mple.org", "a@ex\xc3\xa4mple.org",
        "\xff@example.org", "\xc3@example.org", "a\x01@example.org",
        "a@[127.0.0.1]", "#a@example.org",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(aliases_canonical_alias(bad[i], out, sizeof out));
}

static void test_canonical_target(void **state)
{
    char out[ALIASES_ADDRESS_MAX + 1];

    assert_true(aliases_canonical_target("Bob.Smith@Remote.NET", out, sizeof out));
    assert_string_equal(out, "Bob.Smith@remote.net");
    assert_false(aliases_canonical_target("@example.org", out, sizeof out));
    assert_true(aliases_canonical_target("#a@example.org", out, sizeof out));
    assert_false(aliases_canonical_target("bob", out, sizeof out));
    assert_false(aliases_canonical_target("bob@example.org, x@y.z", out,
                                          sizeof out));
}

static void test_canonical_length(void **state)
{
    char addr[ALIASES_ADDRESS_MAX + 2], out[ALIASES_ADDRESS_MAX + 1];

    /* 63-octet labels: the longest label, and 255 octets in all */
    memset(addr, 'a', sizeof addr);
    memcpy(addr + 60, "@", 1);
    for (size_t i = 124; i < ALIASES_ADDRESS_MAX; i += 64)
        addr[i] = '.';
    addr[ALIASES_ADDRESS_MAX] = '\0';
    assert_true(aliases_canonical_alias(addr, out, sizeof out));
    assert_false(aliases_canonical_alias(addr, out, ALIASES_ADDRESS_MAX));
    addr[ALIASES_ADDRESS_MAX] = 'a';
    addr[ALIASES_ADDRESS_MAX + 1] = '\0';
    assert_false(aliases_canonical_alias(addr, out, sizeof out));
    /* a 64-octet label */
    assert_false(aliases_canonical_alias(
        "a@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
        out, sizeof out));
}

/* ---- the file ----------------------------------------------------------- */

static void test_missing_file_means_no_aliases(void **state)
{
    struct fixture *f = *state;
    char **t = (char **)1;
    size_t n = 7;

    assert_int_equal(aliases_lookup(f->dir, "info@example.org", &t, &n), 0);
    assert_null(t);
    assert_int_equal(n, 0);
    assert_list(f->dir, "");
    assert_int_equal(aliases_del(f->dir, "info@example.org"), 1);
    assert_int_equal(access(f->aliases, F_OK), -1);
}

static void test_put_lookup_del_list(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(put(f->dir, "Info@Example.org", "alice@example.org",
                         "Bob@Remote.NET", NULL), 0);
    assert_int_equal(put(f->dir, "@example.org", "postmaster@example.org", NULL), 0);
    assert_int_equal(put(f->dir, "sales@example.net", "carol@example.net", NULL), 0);
    assert_file(f->aliases, "info@example.org: alice@example.org, Bob@remote.net\n"
                            "@example.org: postmaster@example.org\n"
                            "sales@example.net: carol@example.net\n");
    assert_targets(f->dir, "INFO@example.ORG", "alice@example.org,Bob@remote.net");
    assert_targets(f->dir, "@EXAMPLE.org", "postmaster@example.org");
    assert_targets(f->dir, "info@example.net", "");
    assert_targets(f->dir, "not an address", "");
    assert_list(f->dir, "info@example.org=alice@example.org,Bob@remote.net\n"
                        "@example.org=postmaster@example.org\n"
                        "sales@example.net=carol@example.net\n");

    /* replacing keeps the line's place */
    assert_int_equal(put(f->dir, "info@example.org", "dave@example.org", NULL), 0);
    assert_file(f->aliases, "info@example.org: dave@example.org\n"
                            "@example.org: postmaster@example.org\n"
                            "sales@example.net: carol@example.net\n");
    assert_targets(f->dir, "info@example.org", "dave@example.org");

    assert_int_equal(aliases_del(f->dir, "Info@Example.org"), 0);
    assert_int_equal(aliases_del(f->dir, "info@example.org"), 1);
    assert_int_equal(aliases_del(f->dir, "@example.org"), 0);
    assert_targets(f->dir, "info@example.org", "");
    assert_targets(f->dir, "@example.org", "");
    assert_file(f->aliases, "sales@example.net: carol@example.net\n");
    assert_list(f->dir, "sales@example.net=carol@example.net\n");
}

static void test_hand_edited_file(void **state)
{
    struct fixture *f = *state;

    spew(f->aliases,
         "# aliases of example.org\n"
         "\n"
         "   \t\n"
         "Info@Example.org :alice@example.org,bob@example.org\r\n"
         "  team@example.org:\talice@example.org  bob@example.org ,, "
         "Carol@EXAMPLE.net\n"
         "info@example.org: zed@example.org\n"              /* duplicate */
         "junk line without colon\n"
         "bad alias@example.org: alice@example.org\n"
         "mixed@example.org: not-an-address, ok@example.org, ok@EXAMPLE.org, "
         "@example.org, a@b@c\n"
         "empty@example.org:\n"
         "nothing@example.org: foo, bar\n"
         "#commented@example.org: alice@example.org\n"
         "last@example.org: alice@example.org");            /* no newline */
    assert_targets(f->dir, "info@example.org", "alice@example.org,bob@example.org");
    assert_targets(f->dir, "team@example.org",
                   "alice@example.org,bob@example.org,Carol@example.net");
    assert_targets(f->dir, "mixed@example.org", "ok@example.org");
    assert_targets(f->dir, "empty@example.org", "");
    assert_targets(f->dir, "nothing@example.org", "");
    assert_targets(f->dir, "#commented@example.org", "");
    assert_targets(f->dir, "last@example.org", "alice@example.org");
    assert_list(f->dir,
                "info@example.org=alice@example.org,bob@example.org\n"
                "team@example.org=alice@example.org,bob@example.org,Carol@example.net\n"
                "mixed@example.org=ok@example.org\n"
                "last@example.org=alice@example.org\n");

    /* a rewrite keeps every other line byte for byte, turns the duplicate
     * lines of the alias into one, and ends the unterminated last line */
    assert_int_equal(put(f->dir, "info@example.org", "new@example.org", NULL), 0);
    assert_int_equal(put(f->dir, "added@example.org", "alice@example.org", NULL), 0);
    assert_file(f->aliases,
         "# aliases of example.org\n"
         "\n"
         "   \t\n"
         "info@example.org: new@example.org\n"
         "  team@example.org:\talice@example.org  bob@example.org ,, "
         "Carol@EXAMPLE.net\n"
         "junk line without colon\n"
         "bad alias@example.org: alice@example.org\n"
         "mixed@example.org: not-an-address, ok@example.org, ok@EXAMPLE.org, "
         "@example.org, a@b@c\n"
         "empty@example.org:\n"
         "nothing@example.org: foo, bar\n"
         "#commented@example.org: alice@example.org\n"
         "last@example.org: alice@example.org\n"
         "added@example.org: alice@example.org\n");
    /* deleting an alias line that had no valid target */
    assert_int_equal(aliases_del(f->dir, "empty@example.org"), 0);
    char *text = slurp(f->aliases);
    assert_null(strstr(text, "empty@"));
    free(text);
}

static void test_utf8_local_parts(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(put(f->dir, "J\xc3\x96RG@Example.org",
                         "\xc3\x96@Remote.example", NULL), 0);
    assert_file(f->aliases, "j\xc3\x96rg@example.org: \xc3\x96@remote.example\n");
    assert_targets(f->dir, "j\xc3\x96rg@EXAMPLE.org", "\xc3\x96@remote.example");
    assert_targets(f->dir, "j\xc3\xb6rg@example.org", "");  /* no Unicode folding */
}

static void test_reload_after_outside_rewrite(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(put(f->dir, "info@example.org", "alice@example.org", NULL), 0);
    assert_targets(f->dir, "info@example.org", "alice@example.org");

    /* another size */
    spew(f->aliases, "info@example.org: bob@example.org\n"
                     "zed@example.org: bob@example.org\n");
    assert_targets(f->dir, "info@example.org", "bob@example.org");
    assert_targets(f->dir, "zed@example.org", "bob@example.org");

    /* same size, same inode: only the mtime tells */
    struct stat st;
    assert_int_equal(stat(f->aliases, &st), 0);
    spew(f->aliases, "info@example.org: bob@example.org\n"
                     "zzz@example.org: bob@example.org\n");
    struct timespec ts[2] = { st.st_atim, st.st_mtim };
    ts[1].tv_sec += 1000;       /* whole seconds later, same nanoseconds */
    assert_int_equal(utimensat(AT_FDCWD, f->aliases, ts, 0), 0);
    assert_targets(f->dir, "zed@example.org", "");
    assert_targets(f->dir, "zzz@example.org", "bob@example.org");

    /* a new file renamed into place */
    char other[PATH_MAX + 32];
    snprintf(other, sizeof other, "%s.new", f->aliases);
    spew(other, "info@example.org: carol@example.org\n"
                "zzz@example.org: bob@example.org\n");
    assert_int_equal(rename(other, f->aliases), 0);
    assert_targets(f->dir, "info@example.org", "carol@example.org");

    /* removed file: no aliases */
    assert_int_equal(unlink(f->aliases), 0);
    assert_targets(f->dir, "info@example.org", "");
}

static void test_invalid_input_rejected(void **state)
{
    struct fixture *f = *state;
    const char *many[ALIASES_TARGETS_MAX + 1];
    char (*names)[32] = calloc(ALIASES_TARGETS_MAX + 1, sizeof *names);

    assert_non_null(names);
    errno = 0;
    assert_int_equal(put(f->dir, "info", "alice@example.org", NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(put(f->dir, "info@example.org", "alice", NULL), -1);
    assert_int_equal(put(f->dir, "info@example.org", "@example.org", NULL), -1);
    assert_int_equal(put(f->dir, "info@example.org", NULL), -1);
    assert_int_equal(put(f->dir, "info@example.org", "a@example.org",
                         "a@EXAMPLE.org", NULL), -1);
    assert_int_equal(put(f->dir, "info@example.org", "a@example.org\n"
                         "evil@example.org: x@y.z", NULL), -1);
    assert_int_equal(aliases_put(f->dir, "info@example.org", NULL, 1), -1);
    assert_int_equal(aliases_del(f->dir, "info"), -1);
    assert_int_equal(access(f->aliases, F_OK), -1);

    for (size_t i = 0; i <= ALIASES_TARGETS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "user%zu@example.org", i);
        many[i] = names[i];
    }
    assert_int_equal(aliases_put(f->dir, "big@example.org", many,
                                 ALIASES_TARGETS_MAX + 1), -1);
    assert_int_equal(aliases_put(f->dir, "big@example.org", many,
                                 ALIASES_TARGETS_MAX), 0);
    char **t;
    size_t n;
    assert_int_equal(aliases_lookup(f->dir, "big@example.org", &t, &n), 1);
    assert_int_equal(n, ALIASES_TARGETS_MAX);
    assert_string_equal(t[999], "user999@example.org");
    aliases_free_targets(t, n);
    free(names);
}

static void test_file_mode_and_no_leftovers(void **state)
{
    struct fixture *f = *state;
    struct stat st;
    char tmp[PATH_MAX + 32];

    assert_int_equal(put(f->dir, "info@example.org", "alice@example.org", NULL), 0);
    assert_int_equal(stat(f->aliases, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(tmp, sizeof tmp, "%s.tmp", f->aliases);
    assert_int_equal(access(tmp, F_OK), -1);
    /* an existing file's looser mode is not kept */
    assert_int_equal(chmod(f->aliases, 0666), 0);
    assert_int_equal(put(f->dir, "info@example.org", "bob@example.org", NULL), 0);
    assert_int_equal(stat(f->aliases, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_missing_data_dir_is_created(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX + 16];

    snprintf(dir, sizeof dir, "%s/sub/data", f->dir);
    assert_int_equal(put(dir, "info@example.org", "alice@example.org", NULL), 0);
    assert_targets(dir, "info@example.org", "alice@example.org");
}

static void test_unreadable_is_error(void **state)
{
    struct fixture *f = *state;
    char **t;
    size_t n;

    assert_int_equal(put(f->dir, "info@example.org", "alice@example.org", NULL), 0);
    assert_int_equal(aliases_lookup(f->dir, "info@example.org", &t, &n), 1);
    aliases_free_targets(t, n);
    /* a directory in its place: no stale cached answer either */
    assert_int_equal(unlink(f->aliases), 0);
    assert_int_equal(mkdir(f->aliases, 0700), 0);
    assert_int_equal(aliases_lookup(f->dir, "info@example.org", &t, &n), -1);
    assert_int_equal(aliases_list(f->dir, collect, NULL), -1);
    assert_int_equal(put(f->dir, "info@example.org", "alice@example.org", NULL), -1);
    assert_int_equal(aliases_del(f->dir, "info@example.org"), -1);
    assert_int_equal(aliases_lookup(NULL, "info@example.org", &t, &n), -1);
    assert_int_equal(aliases_lookup("", "info@example.org", &t, &n), -1);
}

static void test_many_aliases(void **state)
{
    struct fixture *f = *state;
    char addr[64], want[64];

    FILE *fp = fopen(f->aliases, "w");
    assert_non_null(fp);
    for (int i = 0; i < 20000; i++)
        fprintf(fp, "alias%d@example.org: user%d@example.org\n", i, i);
    assert_int_equal(fclose(fp), 0);
    for (int i = 0; i < 20000; i += 997) {
        snprintf(addr, sizeof addr, "ALIAS%d@example.org", i);
        snprintf(want, sizeof want, "user%d@example.org", i);
        assert_targets(f->dir, addr, want);
    }
    assert_targets(f->dir, "alias20000@example.org", "");
}

/* ---- threads ------------------------------------------------------------ */

struct reader {
    const char *dir;
    int errors;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    for (int i = 0; i < 300; i++) {
        char **t;
        size_t n;
        int rc = aliases_lookup(r->dir, "info@example.org", &t, &n);
        if (rc != 1 || n != 1 || strcmp(t[0], "alice@example.org") != 0)
            r->errors++;
        if (rc == 1)
            aliases_free_targets(t, n);
    }
    return NULL;
}

static void test_concurrent_lookups_and_writes(void **state)
{
    struct fixture *f = *state;
    struct reader r[4];
    pthread_t t[4];
    char addr[64];

    assert_int_equal(put(f->dir, "info@example.org", "alice@example.org", NULL), 0);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct reader){ .dir = f->dir };
        assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
    }
    for (int i = 0; i < 30; i++) {
        snprintf(addr, sizeof addr, "a%d@example.org", i);
        assert_int_equal(put(f->dir, addr, "bob@example.org", NULL), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].errors, 0);
    }
    assert_targets(f->dir, "a29@example.org", "bob@example.org");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_alias),
        cmocka_unit_test(test_canonical_target),
        cmocka_unit_test(test_canonical_length),
        cmocka_unit_test_setup_teardown(test_missing_file_means_no_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_lookup_del_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_edited_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_utf8_local_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_after_outside_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mode_and_no_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_data_dir_is_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_is_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lookups_and_writes, setup, teardown),
    };
    return cmocka_run_group_tests_name("aliases", tests, NULL, NULL);
}
