/* test_spool.c — unit tests for the receiving spool (mail/spool.h): what
 * lands in the file (LF line ends) for line input and for raw CRLF chunks
 * split anywhere, the sizes, the bare CR / bare LF / 8-bit / NUL flags, the
 * size limit, a large message, and a write error (RLIMIT_FSIZE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail/spool.h"

struct fx {
    char data_dir[64];
    struct rlimit fsize;        /* restored by teardown */
    void (*xfsz)(int);
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    snprintf(fx->data_dir, sizeof(fx->data_dir), "/tmp/pobox-spool-XXXXXX");
    if (mkdtemp(fx->data_dir) == NULL || getrlimit(RLIMIT_FSIZE, &fx->fsize))
        return -1;
    fx->xfsz = signal(SIGXFSZ, SIG_DFL);
    *state = fx;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    setrlimit(RLIMIT_FSIZE, &fx->fsize);
    signal(SIGXFSZ, fx->xfsz);
    nftw(fx->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* ---- helpers ---- */

static struct spool *new_spool(const struct fx *fx)
{
    struct spool *sp = spool_new(fx->data_dir);

    assert_non_null(sp);
    return sp;
}

/* The whole file; caller frees. */
static char *file_text(const struct spool *sp, size_t *len)
{
    struct stat st;
    char *buf;

    assert_int_equal(fstat(spool_fd(sp), &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(spool_fd(sp), buf, (size_t)st.st_size, 0),
                     st.st_size);
    buf[st.st_size] = '\0';
    *len = (size_t)st.st_size;
    return buf;
}

static void assert_file(const struct spool *sp, const char *want, size_t n)
{
    size_t len;
    char *got = file_text(sp, &len);

    assert_int_equal(len, n);
    assert_memory_equal(got, want, n);
    free(got);
}

static void add_line(struct spool *sp, const char *s, size_t eol)
{
    assert_int_equal(spool_add_line(sp, s, strlen(s), eol), 0);
}

static size_t count_lf(const char *s, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

struct raw_case {
    const char *in;         /* CRLF text as received */
    const char *out;        /* what the file must hold */
    bool bare_cr, bare_lf;
};

static void check_raw_result(struct spool *sp, const struct raw_case *c)
{
    size_t n = strlen(c->out);

    assert_int_equal(spool_finish(sp), 0);
    assert_file(sp, c->out, n);
    assert_int_equal(spool_size(sp), n);
    assert_int_equal(spool_wire_size(sp), n + count_lf(c->out, n));
    assert_int_equal(spool_bare_cr(sp), c->bare_cr);
    assert_int_equal(spool_bare_lf(sp), c->bare_lf);
}

/* Feeds c->in as chunks cut at a and b (a <= b). */
static void run_raw_split(const struct fx *fx, const struct raw_case *c,
                          size_t a, size_t b)
{
    struct spool *sp = new_spool(fx);
    size_t n = strlen(c->in);

    assert_int_equal(spool_add_raw(sp, c->in, a), 0);
    assert_int_equal(spool_add_raw(sp, c->in + a, b - a), 0);
    assert_int_equal(spool_add_raw(sp, c->in + b, n - b), 0);
    check_raw_result(sp, c);
    spool_free(sp);
}

static const struct raw_case raw_cases[] = {
    {"Subject: hi\r\n\r\nbody\r\n.dot\r\n\r\nend\r\n",
     "Subject: hi\n\nbody\n.dot\n\nend\n", false, false},
    {"a\rb\r\nc\r\n", "a\rb\nc\n", true, false},
    {"a\nb\r\n", "a\nb\n", false, true},
    {"a\r\r\nb\n\r\n\r", "a\r\nb\n\n\r", true, true},
    {"\r\n\r\n", "\n\n", false, false},
    {"x\r", "x\r", true, false},
};

/* ---- tests ---- */

static void test_new_makes_dir(void **state)
{
    struct fx *fx = *state;
    char dir[PATH_MAX];
    struct stat st;
    struct spool *sp = new_spool(fx);
    DIR *d;
    struct dirent *de;
    int entries = 0;

    snprintf(dir, sizeof(dir), "%s/spool", fx->data_dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    add_line(sp, "hello", 2);
    assert_int_equal(spool_finish(sp), 0);
    d = opendir(dir);                   /* the file has no name */
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        entries += de->d_name[0] != '.' || strncmp(de->d_name, ".spool-", 7) == 0;
    closedir(d);
    assert_int_equal(entries, 0);
    assert_int_equal(fstat(spool_fd(sp), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    spool_free(sp);
    assert_null(spool_new("/nonexistent/pobox-test"));
    assert_int_equal(errno, ENOENT);
}

static void test_lines_crlf(void **state)
{
    struct spool *sp = new_spool(*state);
    static const char want[] = "Subject: x\n\n.body\n";

    add_line(sp, "Subject: x", 2);
    add_line(sp, "", 2);
    add_line(sp, ".body", 2);
    assert_int_equal(spool_finish(sp), 0);
    assert_file(sp, want, sizeof(want) - 1);
    assert_int_equal(spool_size(sp), 18);
    assert_int_equal(spool_wire_size(sp), 21);
    assert_false(spool_bare_cr(sp));
    assert_false(spool_bare_lf(sp));
    assert_false(spool_eightbit(sp));
    assert_false(spool_nul(sp));
    assert_int_equal(spool_error(sp), 0);
    assert_false(spool_too_big(sp));
    spool_free(sp);
}

static void test_lines_bare(void **state)
{
    struct spool *sp = new_spool(*state);
    static const char want[] = "a\nb\rc\nlast";

    add_line(sp, "a", 2);
    assert_false(spool_bare_cr(sp) || spool_bare_lf(sp));
    add_line(sp, "b\rc", 2);
    assert_true(spool_bare_cr(sp));
    assert_false(spool_bare_lf(sp));
    add_line(sp, "last", 0);            /* a file's last line, no LF */
    assert_false(spool_bare_lf(sp));
    assert_int_equal(spool_finish(sp), 0);
    assert_file(sp, want, sizeof(want) - 1);
    assert_int_equal(spool_size(sp), 10);
    assert_int_equal(spool_wire_size(sp), 12);
    spool_free(sp);

    sp = new_spool(*state);
    add_line(sp, "x", 1);
    assert_true(spool_bare_lf(sp));
    assert_false(spool_bare_cr(sp));
    assert_int_equal(spool_finish(sp), 0);
    assert_file(sp, "x\n", 2);
    spool_free(sp);
}

static void test_raw_every_split(void **state)
{
    for (size_t k = 0; k < sizeof(raw_cases) / sizeof(raw_cases[0]); k++) {
        size_t n = strlen(raw_cases[k].in);
        for (size_t a = 0; a <= n; a++)
            for (size_t b = a; b <= n; b++)
                run_raw_split(*state, &raw_cases[k], a, b);
    }
}

static void test_raw_byte_by_byte(void **state)
{
    for (size_t k = 0; k < sizeof(raw_cases) / sizeof(raw_cases[0]); k++) {
        const struct raw_case *c = &raw_cases[k];
        struct spool *sp = new_spool(*state);
        for (const char *p = c->in; *p != '\0'; p++) {
            assert_int_equal(spool_add_raw(sp, p, 1), 0);
            assert_int_equal(spool_add_raw(sp, NULL, 0), 0);
        }
        check_raw_result(sp, c);
        spool_free(sp);
    }
}

static void test_raw_cr_held(void **state)
{
    struct spool *sp = new_spool(*state);

    assert_int_equal(spool_add_raw(sp, "ab\r", 3), 0);
    assert_int_equal(spool_size(sp), 2);  /* the CR waits */
    assert_false(spool_bare_cr(sp));
    assert_int_equal(spool_add_raw(sp, "\n", 1), 0);
    assert_int_equal(spool_size(sp), 3);
    assert_false(spool_bare_cr(sp));
    assert_int_equal(spool_add_raw(sp, "c\r", 2), 0);
    assert_int_equal(spool_finish(sp), 0);  /* a CR at the very end: bare */
    assert_true(spool_bare_cr(sp));
    assert_file(sp, "ab\nc\r", 5);
    spool_free(sp);
}

static void test_8bit_and_nul(void **state)
{
    struct spool *sp = new_spool(*state);
    static const char nul_line[] = {'a', '\0', 'b'};

    add_line(sp, "plain", 2);
    assert_false(spool_eightbit(sp));
    add_line(sp, "caf\xc3\xa9", 2);
    assert_true(spool_eightbit(sp));
    assert_false(spool_nul(sp));
    assert_int_equal(spool_add_line(sp, nul_line, 3, 2), 0);
    assert_true(spool_nul(sp));
    assert_int_equal(spool_finish(sp), 0);
    assert_file(sp, "plain\ncaf\xc3\xa9\na\0b\n", 16);
    spool_free(sp);

    sp = new_spool(*state);
    assert_int_equal(spool_add_raw(sp, "x\0y\r\n", 5), 0);
    assert_true(spool_nul(sp));
    assert_false(spool_eightbit(sp));
    assert_int_equal(spool_add_raw(sp, "\xff\r\n", 3), 0);
    assert_true(spool_eightbit(sp));
    spool_free(sp);
}

static void test_limit(void **state)
{
    struct spool *sp = new_spool(*state);
    char line[10];

    spool_set_limit(sp, 100);
    memset(line, 'x', sizeof(line));
    for (int i = 0; i < 8; i++)         /* 8 * 12 = 96 wire octets */
        assert_int_equal(spool_add_line(sp, line, 10, 2), 0);
    assert_false(spool_too_big(sp));
    assert_int_equal(spool_add_line(sp, line, 2, 2), 0);  /* 100: fits */
    assert_false(spool_too_big(sp));
    assert_int_equal(spool_add_line(sp, "", 0, 2), 0);    /* 102 */
    assert_true(spool_too_big(sp));
    for (int i = 0; i < 1000; i++)      /* the rest is counted, not kept */
        assert_int_equal(spool_add_raw(sp, "0123456789\r\n", 12), 0);
    assert_int_equal(spool_wire_size(sp), 102 + 12000);
    assert_int_equal(spool_size(sp), 92 + 11000);
    assert_int_equal(spool_finish(sp), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(spool_error(sp), 0);
    {
        struct stat st;
        assert_int_equal(fstat(spool_fd(sp), &st), 0);
        assert_true(st.st_size <= 100);
    }
    spool_free(sp);

    sp = new_spool(*state);             /* exactly the limit is fine */
    add_line(sp, "12345678", 2);
    spool_set_limit(sp, 10);
    assert_false(spool_too_big(sp));
    assert_int_equal(spool_finish(sp), 0);
    assert_file(sp, "12345678\n", 9);
    spool_set_limit(sp, 9);             /* lowered below what is there */
    assert_true(spool_too_big(sp));
    spool_free(sp);
}

static void test_large(void **state)
{
    struct spool *sp = new_spool(*state);
    char line[1001], back[1001];
    struct stat st;
    const int lines = 20 * 1000;        /* 20 MB */

    for (int i = 0; i < lines; i++) {
        snprintf(line, sizeof(line), "%08d", i);
        memset(line + 8, 'a' + i % 26, 991);
        assert_int_equal(spool_add_line(sp, line, 999, 2), 0);
    }
    assert_int_equal(spool_finish(sp), 0);
    assert_int_equal(spool_size(sp), (uint64_t)lines * 1000);
    assert_int_equal(spool_wire_size(sp), (uint64_t)lines * 1001);
    assert_int_equal(fstat(spool_fd(sp), &st), 0);
    assert_int_equal(st.st_size, (off_t)lines * 1000);
    for (int i = 0; i < lines; i += 4999) {
        assert_int_equal(pread(spool_fd(sp), back, 1000, (off_t)i * 1000),
                         1000);
        snprintf(line, sizeof(line), "%08d", i);
        assert_memory_equal(back, line, 8);
        assert_int_equal(back[500], 'a' + i % 26);
        assert_int_equal(back[999], '\n');
    }
    spool_free(sp);
}

/* A file size limit makes writes fail with EFBIG, standing in for ENOSPC. */
static void test_write_error(void **state)
{
    struct fx *fx = *state;
    struct spool *sp = new_spool(fx);
    struct rlimit rl = fx->fsize;
    char line[1000];
    int failed_at = -1;

    signal(SIGXFSZ, SIG_IGN);
    rl.rlim_cur = 200 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    memset(line, 'z', sizeof(line));
    for (int i = 0; i < 1000; i++) {    /* 1 MB */
        if (spool_add_line(sp, line, sizeof(line), 2) != 0 && failed_at < 0)
            failed_at = i;
    }
    assert_true(failed_at > 0 && failed_at < 300);
    assert_int_equal(spool_error(sp), EFBIG);
    assert_false(spool_too_big(sp));
    assert_int_equal(spool_size(sp), 1000 * 1001);     /* still counted */
    assert_int_equal(spool_wire_size(sp), 1000 * 1002);
    assert_int_equal(spool_finish(sp), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(spool_add_raw(sp, "x\r\n", 3), -1);
    spool_free(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_makes_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_bare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_every_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_byte_by_byte, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_raw_cr_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_8bit_and_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
