/* test_maildir_deliver.c — unit tests for delivery into a Maildir
 * (store_deliver with store.backend = maildir): the files it leaves in
 * tmp/ and new/ (names with ,S= and ,W=), what the next POP3 session sees
 * (count, LIST size, UIDL, content), delivery during a session, failures
 * that leave nothing behind, and concurrent deliveries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/mailstream.h"
#include "mail/spool.h"
#include "store/store.h"

#define ADDR "alice@example.org"
#define MAX_NAMES 128

struct fx {
    char data_dir[64];
    char mbox[PATH_MAX];        /* data_dir/mail/example.org/alice */
    struct config *cfg;
    struct rlimit fsize;        /* restored by teardown */
    void (*xfsz)(int);
};

/* ---- fixture ---- */

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct config_errors errs = {0};
    char ov_dir[128];
    char *ov[] = {ov_dir, "server.hostname=mail.example.org"};

    if (fx == NULL)
        return -1;
    snprintf(fx->data_dir, sizeof(fx->data_dir), "/tmp/pobox-deliver-XXXXXX");
    if (mkdtemp(fx->data_dir) == NULL || getrlimit(RLIMIT_FSIZE, &fx->fsize))
        return -1;
    snprintf(ov_dir, sizeof(ov_dir), "server.data_dir=%s", fx->data_dir);
    fx->cfg = config_load(NULL, true, ov, 2, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.lines[i]);
    config_errors_free(&errs);
    if (fx->cfg == NULL)
        return -1;
    snprintf(fx->mbox, sizeof(fx->mbox), "%s/mail/example.org/alice",
             fx->data_dir);
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
    config_unref(fx->cfg);
    free(fx);
    return 0;
}

/* ---- helpers ---- */

/* An fd holding text, as the spool would hand it over. */
static int text_fd(const char *text, size_t len)
{
    int fd = memfd_create("msg", MFD_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    return fd;
}

static void deliver_ok(const struct fx *fx, const char *prefix,
                       const char *body)
{
    int fd = text_fd(body, strlen(body));

    assert_int_equal(store_deliver(fx->cfg, ADDR, prefix, fd), STORE_OK);
    close(fd);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The visible names in a mailbox subdirectory, sorted (caller frees each). */
static size_t dir_names(const struct fx *fx, const char *sub, char **names)
{
    char path[PATH_MAX * 2];
    struct dirent *de;
    size_t n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "%s/%s", fx->mbox, sub);
    assert_non_null(d = opendir(path));
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        assert_true(n < MAX_NAMES);
        assert_non_null(names[n++] = strdup(de->d_name));
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_str);
    return n;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

static size_t dir_count(const struct fx *fx, const char *sub)
{
    char *names[MAX_NAMES];
    size_t n = dir_names(fx, sub, names);

    free_names(names, n);
    return n;
}

/* The one file in new/: its name (caller frees). */
static char *only_new(const struct fx *fx)
{
    char *names[MAX_NAMES];

    assert_int_equal(dir_names(fx, "new", names), 1);
    return names[0];
}

/* The whole text of a file under the mailbox (caller frees). */
static char *slurp(const struct fx *fx, const char *sub, const char *name,
                   struct stat *st)
{
    char path[PATH_MAX * 2], *buf;
    int fd;

    snprintf(path, sizeof(path), "%s/%s/%s", fx->mbox, sub, name);
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    assert_int_equal(fstat(fd, st), 0);
    assert_non_null(buf = malloc((size_t)st->st_size + 1));
    assert_int_equal(read(fd, buf, (size_t)st->st_size), st->st_size);
    buf[st->st_size] = '\0';
    close(fd);
    return buf;
}

/* Checks a new/ name against the Maildir format and returns S= and W=. */
static void parse_name(const char *name, const char *host, uint64_t *s,
                       uint64_t *w)
{
    char re_text[256];
    regmatch_t m[3];
    regex_t re;

    snprintf(re_text, sizeof(re_text),
             "^[0-9]+\\.M[0-9]{6}P%ldQ[0-9]+R[0-9a-f]{8}\\.%s"
             ",S=([0-9]+),W=([0-9]+)$", (long)getpid(), host);
    assert_int_equal(regcomp(&re, re_text, REG_EXTENDED), 0);
    if (regexec(&re, name, 3, m, 0) != 0)
        fail_msg("bad name %s", name);
    regfree(&re);
    *s = strtoull(name + m[1].rm_so, NULL, 10);
    *w = strtoull(name + m[2].rm_so, NULL, 10);
}

static struct store_mailbox *open_ok(const struct fx *fx)
{
    struct store_mailbox *mb = NULL;

    assert_int_equal(store_open(fx->cfg, ADDR, &mb), STORE_OK);
    return mb;
}

/* Reads message i through a reader (caller frees). */
static char *read_msg(struct store_mailbox *mb, size_t i)
{
    struct store_reader *r = NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t n;

    assert_non_null(buf);
    assert_int_equal(store_reader_open(mb, i, &r), STORE_OK);
    for (;;) {
        if (cap - len < 1024)
            assert_non_null(buf = realloc(buf, cap *= 2));
        n = store_reader_read(r, buf + len, cap - len - 1);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    store_reader_close(r);
    buf[len] = '\0';
    return buf;
}

static void assert_mode(const char *path, mode_t mode)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, mode);
}

/* ---- tests ---- */

static void test_deliver_and_read(void **state)
{
    struct fx *fx = *state;
    static const char prefix[] = "Return-Path: <bob@example.net>\n"
                                 "Delivered-To: alice@example.org\n";
    static const char body[] = "Subject: hi\n\nHello\n.dot line\n\n";
    char whole[256], *name, *text, base[NAME_MAX + 1];
    struct store_mailbox *mb;
    struct stat st;
    uint64_t s, w;

    snprintf(whole, sizeof(whole), "%s%s", prefix, body);
    deliver_ok(fx, prefix, body);
    assert_int_equal(dir_count(fx, "tmp"), 0);
    assert_int_equal(dir_count(fx, "cur"), 0);
    name = only_new(fx);
    parse_name(name, "mail\\.example\\.org", &s, &w);
    assert_int_equal(s, strlen(whole));
    assert_int_equal(w, mailstream_size(whole, strlen(whole)));
    assert_int_equal(w, strlen(whole) + 7);     /* 7 lines */
    text = slurp(fx, "new", name, &st);
    assert_string_equal(text, whole);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(text);
    snprintf(base, sizeof(base), "%s", name);

    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    assert_int_equal(store_size(mb, 0), w);
    text = read_msg(mb, 0);
    assert_string_equal(text, whole);
    free(text);
    if (strlen(base) <= 70)
        assert_string_equal(store_uidl(mb, 0), base);
    snprintf(whole, sizeof(whole), "%s", store_uidl(mb, 0));
    store_close(mb);
    mb = open_ok(fx);                   /* the same UIDL next time */
    assert_string_equal(store_uidl(mb, 0), whole);
    store_close(mb);
    free(name);
}

static void test_creates_dirs(void **state)
{
    struct fx *fx = *state;
    char path[PATH_MAX * 2];
    static const char *const subs[] = {"cur", "new", "tmp"};

    snprintf(path, sizeof(path), "%s/mail", fx->data_dir);
    assert_int_equal(access(path, F_OK), -1);
    deliver_ok(fx, NULL, "x\n");
    assert_mode(path, 0700);
    snprintf(path, sizeof(path), "%s/mail/example.org", fx->data_dir);
    assert_mode(path, 0700);
    assert_mode(fx->mbox, 0700);
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", fx->mbox, subs[i]);
        assert_mode(path, 0700);
    }
    assert_int_equal(dir_count(fx, "new"), 1);
}

static void test_no_prefix_no_final_lf(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *name, *text;
    uint64_t s, w;

    deliver_ok(fx, NULL, "Subject: a\n\nno line end");
    name = only_new(fx);
    parse_name(name, "mail\\.example\\.org", &s, &w);
    assert_int_equal(s, 23);
    assert_int_equal(w, 23 + 2 + 2);    /* two LFs, plus CRLF at the end */
    free(name);
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0), 27);
    text = read_msg(mb, 0);
    assert_string_equal(text, "Subject: a\n\nno line end");
    free(text);
    store_close(mb);

    deliver_ok(fx, "X-A: b\n", "");     /* an empty message: prefix only */
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 2);
    assert_int_equal(store_size(mb, 1), 8);
    store_close(mb);
}

static void test_hostname_escaped(void **state)
{
    struct fx *fx = *state;
    struct config cfg = *fx->cfg;
    struct store_mailbox *mb;
    char host[] = "h/a:b,W=7";
    char *name;
    uint64_t s, w;
    int fd = text_fd("abc\n", 4);

    cfg.hostname = host;
    assert_int_equal(store_deliver(&cfg, ADDR, NULL, fd), STORE_OK);
    close(fd);
    name = only_new(fx);
    parse_name(name, "h\\\\057a\\\\072b\\\\054W=7", &s, &w);
    assert_int_equal(s, 4);
    assert_int_equal(w, 5);
    free(name);
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0), 5);     /* not the hostname's W=7 */
    store_close(mb);
}

static void test_order(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char body[32], *text;

    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "Subject: %d\n", i);
        deliver_ok(fx, NULL, body);
    }
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 5);
    for (size_t i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "Subject: %zu\n", i);
        text = read_msg(mb, i);
        assert_string_equal(text, body);
        free(text);
    }
    store_close(mb);
}

static void test_while_session_open(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb, *other = NULL;
    bool del[1] = {true};
    char *text;

    deliver_ok(fx, NULL, "first\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    deliver_ok(fx, NULL, "second\n");           /* the lock does not stop it */
    assert_int_equal(store_open(fx->cfg, ADDR, &other), STORE_IN_USE);
    assert_int_equal(store_count(mb), 1);       /* numbers fixed at login */
    text = read_msg(mb, 0);
    assert_string_equal(text, "first\n");
    free(text);
    assert_int_equal(store_commit(mb, del), STORE_OK);
    store_close(mb);
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    assert_int_equal(store_size(mb, 0), 8);
    text = read_msg(mb, 0);
    assert_string_equal(text, "second\n");
    free(text);
    store_close(mb);
}

/* A file size limit makes writes fail with EFBIG, standing in for ENOSPC. */
static void test_write_failure(void **state)
{
    struct fx *fx = *state;
    struct rlimit rl = fx->fsize;
    size_t len = 100 * 1024;
    char *big = malloc(len);
    int fd;

    assert_non_null(big);
    memset(big, 'y', len);
    big[len - 1] = '\n';
    fd = text_fd(big, len);
    deliver_ok(fx, NULL, "ok\n");               /* the Maildir exists */
    signal(SIGXFSZ, SIG_IGN);
    rl.rlim_cur = 8192;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    assert_int_equal(store_deliver(fx->cfg, ADDR, "X: y\n", fd),
                     STORE_TEMP_FAIL);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &fx->fsize), 0);
    assert_int_equal(dir_count(fx, "tmp"), 0);
    assert_int_equal(dir_count(fx, "new"), 1);  /* only "ok" */
    assert_int_equal(store_deliver(fx->cfg, ADDR, "X: y\n", fd), STORE_OK);
    assert_int_equal(dir_count(fx, "new"), 2);
    close(fd);
    free(big);
}

static void test_read_failure(void **state)
{
    struct fx *fx = *state;
    int dir = open(fx->data_dir, O_RDONLY | O_DIRECTORY);

    assert_true(dir >= 0);
    assert_int_equal(store_deliver(fx->cfg, ADDR, "X: y\n", dir),
                     STORE_TEMP_FAIL);          /* pread: EISDIR */
    close(dir);
    assert_int_equal(store_deliver(fx->cfg, ADDR, NULL, -1), STORE_TEMP_FAIL);
    assert_int_equal(dir_count(fx, "tmp"), 0);
    assert_int_equal(dir_count(fx, "new"), 0);
}

static void test_bad_address(void **state)
{
    struct fx *fx = *state;
    static const char *const bad[] = {"alice", "../x@example.org",
                                      "x@..", "x@a/b", "@example.org",
                                      "a@", ".a@example.org"};
    char path[PATH_MAX];
    int fd = text_fd("x\n", 2);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(store_deliver(fx->cfg, bad[i], NULL, fd),
                         STORE_PERM_FAIL);
    assert_int_equal(store_deliver(fx->cfg, NULL, NULL, fd), STORE_PERM_FAIL);
    close(fd);
    snprintf(path, sizeof(path), "%s/mail", fx->data_dir);
    assert_int_equal(access(path, F_OK), -1);   /* nothing made */
}

/* The spool's output goes straight in: LF text, sizes agree. */
static void test_from_spool(void **state)
{
    struct fx *fx = *state;
    static const char wire[] = "Subject: s\r\n\r\nline\r\n..\r\n";
    static const char prefix[] = "Received: by test\n";
    struct spool *sp = spool_new(fx->data_dir);
    struct store_mailbox *mb;
    char *text;

    assert_non_null(sp);
    assert_int_equal(spool_add_raw(sp, wire, sizeof(wire) - 1), 0);
    assert_int_equal(spool_finish(sp), 0);
    assert_int_equal(store_deliver(fx->cfg, ADDR, prefix, spool_fd(sp)),
                     STORE_OK);
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0),
                     sizeof(prefix) + spool_wire_size(sp));  /* +1: CRLF */
    text = read_msg(mb, 0);
    assert_string_equal(text, "Received: by test\nSubject: s\n\nline\n..\n");
    free(text);
    store_close(mb);
    spool_free(sp);
}

struct worker {
    const struct fx *fx;
    int fd;                     /* shared by all workers */
    int id;
    int ok;                     /* deliveries that returned STORE_OK */
};

#define WORKERS 4
#define PER_WORKER 25

static void *worker_run(void *arg)
{
    struct worker *wk = arg;
    char prefix[64];

    for (int i = 0; i < PER_WORKER; i++) {
        snprintf(prefix, sizeof(prefix), "X-Worker: %d\nX-N: %02d\n", wk->id,
                 i);
        if (store_deliver(wk->fx->cfg, ADDR, prefix, wk->fd) == STORE_OK)
            wk->ok++;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    struct fx *fx = *state;
    struct worker wk[WORKERS];
    pthread_t th[WORKERS];
    bool seen[WORKERS][PER_WORKER] = {{false}};
    struct store_mailbox *mb;
    int fd = text_fd("Subject: same\n\nbody\n", 20);

    for (int t = 0; t < WORKERS; t++) {
        wk[t] = (struct worker){.fx = fx, .fd = fd, .id = t};
        assert_int_equal(pthread_create(&th[t], NULL, worker_run, &wk[t]), 0);
    }
    for (int t = 0; t < WORKERS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(wk[t].ok, PER_WORKER);
    }
    close(fd);
    assert_int_equal(dir_count(fx, "new"), WORKERS * PER_WORKER);
    assert_int_equal(dir_count(fx, "tmp"), 0);
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), WORKERS * PER_WORKER);
    for (size_t i = 0; i < store_count(mb); i++) {
        char *text = read_msg(mb, i);
        int t, n;
        assert_int_equal(sscanf(text, "X-Worker: %d\nX-N: %d\n", &t, &n), 2);
        assert_true(t >= 0 && t < WORKERS && n >= 0 && n < PER_WORKER);
        assert_false(seen[t][n]);
        seen[t][n] = true;
        assert_string_equal(strstr(text, "Subject:"),
                            "Subject: same\n\nbody\n");
        assert_int_equal(store_size(mb, i), strlen(text) + 5);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(store_uidl(mb, i), store_uidl(mb, j));
        free(text);
    }
    store_close(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deliver_and_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_creates_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_prefix_no_final_lf, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hostname_escaped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_while_session_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_from_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
