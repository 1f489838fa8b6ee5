/* test_maildir.c — unit tests for the Maildir mailstore (store/store.h with
 * store.backend = maildir): files dropped into new/ and cur/ of a temporary
 * data dir, then what a POP3 session sees: counts, order, UIDLs, sizes, the
 * lock, reading, deleting, and the pobox-uidlist map across sessions. */
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/mailstream.h"
#include "store/store.h"

#define ADDR "alice@example.org"

struct fx {
    char data_dir[64];
    char backend[16];
    char mbox[PATH_MAX];        /* data_dir/mail/example.org/alice */
    struct config cfg;
};

/* ---- fixture and file helpers ---- */

static void mkdir_p(const char *path)
{
    char buf[PATH_MAX * 2];

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0700);
        *p = '/';
    }
    mkdir(buf, 0700);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    char sub[PATH_MAX + 8];

    if (fx == NULL)
        return -1;
    snprintf(fx->data_dir, sizeof(fx->data_dir), "/tmp/pobox-maildir-XXXXXX");
    if (mkdtemp(fx->data_dir) == NULL)
        return -1;
    snprintf(fx->backend, sizeof(fx->backend), "maildir");
    fx->cfg.data_dir = fx->data_dir;
    fx->cfg.store_backend = fx->backend;
    snprintf(fx->mbox, sizeof(fx->mbox), "%s/mail/example.org/alice",
             fx->data_dir);
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", fx->mbox,
                 (const char *[]){"cur", "new", "tmp"}[i]);
        mkdir_p(sub);
    }
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

    nftw(fx->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static void path_of(const struct fx *fx, const char *rel, char *buf,
                    size_t size)
{
    int n = snprintf(buf, size, "%s/%s", fx->mbox, rel);

    assert_true(n > 0 && (size_t)n < size);
}

/* Writes a file under the mailbox, e.g. "new/1.a.host". */
static void put_file(const struct fx *fx, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    FILE *f;

    path_of(fx, rel, path, sizeof(path));
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static bool file_exists(const struct fx *fx, const char *rel)
{
    char path[PATH_MAX * 2];
    struct stat st;

    path_of(fx, rel, path, sizeof(path));
    return lstat(path, &st) == 0;
}

static void rename_file(const struct fx *fx, const char *from, const char *to)
{
    char a[PATH_MAX * 2], b[PATH_MAX * 2];

    path_of(fx, from, a, sizeof(a));
    path_of(fx, to, b, sizeof(b));
    assert_int_equal(rename(a, b), 0);
}

static void unlink_file(const struct fx *fx, const char *rel)
{
    char path[PATH_MAX * 2];

    path_of(fx, rel, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The visible names in a mailbox subdirectory, sorted, joined by '|'. */
static char *list_dir(const struct fx *fx, const char *sub)
{
    char path[PATH_MAX * 2], *names[64], *out = calloc(1, 4096);
    size_t n = 0;
    struct dirent *de;
    DIR *d;

    path_of(fx, sub, path, sizeof(path));
    assert_non_null(out);
    assert_non_null(d = opendir(path));
    while ((de = readdir(d)) != NULL && n < 64)
        if (de->d_name[0] != '.')
            assert_non_null(names[n++] = strdup(de->d_name));
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strcat(out, "|");
        strcat(out, names[i]);
        free(names[i]);
    }
    return out;
}

static void assert_dir(const struct fx *fx, const char *sub, const char *want)
{
    char *got = list_dir(fx, sub);

    assert_string_equal(got, want);
    free(got);
}

/* The whole text of a file under the mailbox (caller frees). */
static char *slurp(const struct fx *fx, const char *rel)
{
    char path[PATH_MAX * 2], *buf;
    FILE *f;
    long n;

    path_of(fx, rel, path, sizeof(path));
    assert_non_null(f = fopen(path, "rb"));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    assert_non_null(buf = malloc((size_t)n + 1));
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static struct store_mailbox *open_ok(const struct fx *fx)
{
    struct store_mailbox *mb = NULL;

    assert_int_equal(store_open(&fx->cfg, ADDR, &mb), STORE_OK);
    assert_non_null(mb);
    return mb;
}

/* Reads message i through a reader with a small buffer (caller frees). */
static char *read_msg(struct store_mailbox *mb, size_t i)
{
    struct store_reader *r = NULL;
    size_t len = 0, cap = 64;
    char *buf = malloc(cap);
    ssize_t n;

    assert_non_null(buf);
    assert_int_equal(store_reader_open(mb, i, &r), STORE_OK);
    for (;;) {
        if (cap - len < 8)
            assert_non_null(buf = realloc(buf, cap *= 2));
        n = store_reader_read(r, buf + len, 7);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    store_reader_close(r);
    buf[len] = '\0';
    return buf;
}

static bool uidl_valid(const char *u)
{
    size_t n = u ? strlen(u) : 0;

    if (n < 1 || n > 70)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e)
            return false;
    return true;
}

static bool is_generated(const char *u)
{
    size_t n = strlen(u);

    if (n < 19 || u[0] != 'P' || u[17] != '.')
        return false;
    for (size_t i = 1; i < 17; i++)
        if (!strchr("0123456789abcdef", u[i]))
            return false;
    return strspn(u + 18, "0123456789") == n - 18;
}

/* Every UIDL valid and no two alike. */
static void assert_uidls_unique(struct store_mailbox *mb)
{
    size_t n = store_count(mb);

    for (size_t i = 0; i < n; i++) {
        assert_true(uidl_valid(store_uidl(mb, i)));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(store_uidl(mb, i), store_uidl(mb, j));
    }
}

/* All UIDLs joined by '|' (caller frees). */
static char *uidl_list(struct store_mailbox *mb)
{
    size_t len = 1, n = store_count(mb);
    char *out;

    for (size_t i = 0; i < n; i++)
        len += strlen(store_uidl(mb, i)) + 1;
    assert_non_null(out = calloc(1, len));
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strcat(out, "|");
        strcat(out, store_uidl(mb, i));
    }
    return out;
}

static ino_t map_inode(const struct fx *fx)
{
    char path[PATH_MAX * 2];
    struct stat st;

    path_of(fx, "pobox-uidlist", path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    return st.st_ino;
}

/* ---- tests ---- */

static void test_creates_mailbox(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb = NULL;
    char path[PATH_MAX + 32];
    struct stat st;

    snprintf(path, sizeof(path), "%s/mail/example.org/bob", fx->data_dir);
    assert_int_equal(store_open(&fx->cfg, "bob@example.org", &mb), STORE_OK);
    assert_int_equal(store_count(mb), 0);
    store_close(mb);
    for (int i = 0; i < 3; i++) {
        char sub[PATH_MAX + 64];
        snprintf(sub, sizeof(sub), "%s/%s", path,
                 (const char *[]){"cur", "new", "tmp"}[i]);
        assert_int_equal(stat(sub, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    snprintf(path, sizeof(path), "%s/pobox.locks", fx->data_dir);
    assert_int_equal(stat(path, &st), 0);       /* the POP3 lock file */
}

static void test_bad_addresses(void **state)
{
    static const char *const bad[] = {
        "", "alice", "alice@", "@example.org", "../x@example.org",
        "a/b@example.org", ".alice@example.org", "a..b@example.org",
        "alice@..", "alice@.example.org", "alice@exa/mple.org",
        "alice@example..org", "al\001ice@example.org", "alice@exa\nmple.org",
        "alice@exa\177mple.org",
    };
    struct fx *fx = *state;
    char path[PATH_MAX];
    struct stat st;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct store_mailbox *mb = (struct store_mailbox *)&mb;
        assert_int_equal(store_open(&fx->cfg, bad[i], &mb), STORE_PERM_FAIL);
        assert_null(mb);
    }
    snprintf(path, sizeof(path), "%s/mail/x", fx->data_dir);
    assert_int_not_equal(stat(path, &st), 0);
}

static void test_backend_choice(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb = NULL;

    snprintf(fx->backend, sizeof(fx->backend), "postgres");
    assert_int_equal(store_open(&fx->cfg, ADDR, &mb), STORE_PERM_FAIL);
    assert_null(mb);
    snprintf(fx->backend, sizeof(fx->backend), "nosuch");
    assert_int_equal(store_open(&fx->cfg, ADDR, &mb), STORE_PERM_FAIL);
    snprintf(fx->backend, sizeof(fx->backend), "maildir");
    mb = open_ok(fx);
    store_close(mb);
    assert_string_equal(store_status_str(STORE_IN_USE), "in use");
}

static void test_new_moved_to_cur(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *text;

    put_file(fx, "new/1000.M1P1.host", "Subject: x\n\nhello\n");
    put_file(fx, "new/1001.M1P1.host:2,S", "two\n");
    mb = open_ok(fx);
    assert_dir(fx, "new", "");
    assert_dir(fx, "cur", "1000.M1P1.host:2,|1001.M1P1.host:2,S");
    assert_int_equal(store_count(mb), 2);
    assert_string_equal(store_uidl(mb, 0), "1000.M1P1.host");
    assert_string_equal(store_uidl(mb, 1), "1001.M1P1.host");
    text = read_msg(mb, 0);
    assert_string_equal(text, "Subject: x\n\nhello\n");
    free(text);
    store_close(mb);
}

static void test_order(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *u;

    put_file(fx, "cur/200.M1.h:2,S", "a\n");
    put_file(fx, "new/1000.M2.h", "b\n");
    put_file(fx, "cur/30000.A.h:2,", "c\n");
    put_file(fx, "new/99.Z.h", "d\n");
    put_file(fx, "cur/99.A.h:2,", "e\n");
    put_file(fx, "cur/script-drop", "f\n");
    mb = open_ok(fx);
    u = uidl_list(mb);
    assert_string_equal(u, "script-drop|99.A.h|99.Z.h|200.M1.h|1000.M2.h|"
                           "30000.A.h");
    free(u);
    store_close(mb);
    /* the same order the next time */
    mb = open_ok(fx);
    u = uidl_list(mb);
    assert_string_equal(u, "script-drop|99.A.h|99.Z.h|200.M1.h|1000.M2.h|"
                           "30000.A.h");
    free(u);
    store_close(mb);
}

static void test_ignored_files(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char path[PATH_MAX * 2], target[PATH_MAX * 2];

    put_file(fx, "new/.hidden", "x\n");
    put_file(fx, "cur/.hidden:2,", "x\n");
    put_file(fx, "cur/:2,S", "no base name\n");
    put_file(fx, "cur/5.real:2,", "real\n");
    path_of(fx, "cur/6.dir", path, sizeof(path));
    assert_int_equal(mkdir(path, 0700), 0);
    path_of(fx, "cur/7.fifo", path, sizeof(path));
    assert_int_equal(mkfifo(path, 0600), 0);
    path_of(fx, "cur/5.real:2,", target, sizeof(target));
    path_of(fx, "cur/8.link", path, sizeof(path));
    assert_int_equal(symlink(target, path), 0);
    path_of(fx, "new/9.link", path, sizeof(path));
    assert_int_equal(symlink(target, path), 0);
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    assert_string_equal(store_uidl(mb, 0), "5.real");
    store_close(mb);
    assert_true(file_exists(fx, "new/9.link"));
    assert_true(file_exists(fx, "new/.hidden"));
}

static void test_uidl_kinds(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char name71[80], name70[80], rel[100];
    char *first, *second, *dup_gen;

    memset(name71, 'x', 71);
    memcpy(name71, "10.", 3);
    name71[71] = '\0';
    memset(name70, 'y', 70);
    memcpy(name70, "20.", 3);
    name70[70] = '\0';
    put_file(fx, "cur/1.short:2,", "a\n");
    snprintf(rel, sizeof(rel), "cur/%s:2,", name71);
    put_file(fx, rel, "long\n");
    snprintf(rel, sizeof(rel), "cur/%s:2,", name70);
    put_file(fx, rel, "seventy\n");
    put_file(fx, "cur/30.has space:2,", "space\n");
    put_file(fx, "cur/40.caf\xc3\xa9:2,", "utf8\n");
    put_file(fx, "cur/50.del\x7f:2,", "del\n");
    put_file(fx, "cur/60.dup:2,S", "dup one\n");
    put_file(fx, "cur/60.dup:2,T", "dup two\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 8);
    assert_uidls_unique(mb);
    assert_string_equal(store_uidl(mb, 0), "1.short");
    assert_true(is_generated(store_uidl(mb, 1)));
    assert_string_equal(store_uidl(mb, 2), name70);
    assert_true(is_generated(store_uidl(mb, 3)));
    assert_true(is_generated(store_uidl(mb, 4)));
    assert_true(is_generated(store_uidl(mb, 5)));
    assert_string_equal(store_uidl(mb, 6), "60.dup");   /* first by name */
    assert_true(is_generated(store_uidl(mb, 7)));
    first = uidl_list(mb);
    dup_gen = strdup(store_uidl(mb, 7));
    store_close(mb);

    /* the same UIDLs in the next session */
    mb = open_ok(fx);
    second = uidl_list(mb);
    assert_string_equal(first, second);
    free(second);
    store_close(mb);
    free(first);

    /* each duplicate keeps its UIDL after another program changed the
     * flags of both (which also swaps their order by name) */
    rename_file(fx, "cur/60.dup:2,S", "cur/60.dup:2,ZS");
    rename_file(fx, "cur/60.dup:2,T", "cur/60.dup:2,");
    mb = open_ok(fx);
    for (size_t i = 6; i < 8; i++) {
        char *text = read_msg(mb, i);
        if (strcmp(text, "dup one\n") == 0)
            assert_string_equal(store_uidl(mb, i), "60.dup");
        else
            assert_string_equal(store_uidl(mb, i), dup_gen);
        free(text);
    }
    assert_string_equal(store_uidl(mb, 0), "1.short");
    store_close(mb);
    free(dup_gen);
}

static void test_duplicate_in_new_and_cur(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *a, *b;

    put_file(fx, "cur/7.x:2,", "in cur\n");
    put_file(fx, "new/7.x", "in new\n");
    mb = open_ok(fx);
    /* new/7.x cannot move without replacing cur/7.x:2, */
    assert_dir(fx, "new", "7.x");
    assert_dir(fx, "cur", "7.x:2,");
    assert_int_equal(store_count(mb), 2);
    assert_uidls_unique(mb);
    /* same time and base name: "7.x" sorts before "7.x:2," */
    a = read_msg(mb, 0);
    b = read_msg(mb, 1);
    assert_string_equal(a, "in new\n");
    assert_string_equal(b, "in cur\n");
    assert_string_equal(store_uidl(mb, 0), "7.x");
    assert_true(is_generated(store_uidl(mb, 1)));
    free(a);
    free(b);
    store_close(mb);
}

static void test_uidl_never_reused(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    bool del[1] = {true};
    char *old;

    put_file(fx, "cur/1.bad name:2,", "one\n");
    mb = open_ok(fx);
    old = strdup(store_uidl(mb, 0));
    assert_true(is_generated(old));
    assert_int_equal(store_commit(mb, del), STORE_OK);
    store_close(mb);

    put_file(fx, "cur/2.bad name:2,", "two\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    assert_true(is_generated(store_uidl(mb, 0)));
    assert_string_not_equal(store_uidl(mb, 0), old);
    /* same epoch, next counter */
    assert_memory_equal(store_uidl(mb, 0), old, 18);
    store_close(mb);
    free(old);
}

static void test_generated_uidl_not_taken_by_base(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char rel[64], *gen;

    put_file(fx, "cur/1.bad name:2,", "one\n");
    mb = open_ok(fx);
    gen = strdup(store_uidl(mb, 0));
    store_close(mb);
    /* a later file whose base name is that very UIDL */
    snprintf(rel, sizeof(rel), "cur/%s:2,", gen);
    put_file(fx, rel, "impostor\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 2);
    assert_uidls_unique(mb);
    /* "P..." has no leading number: it sorts first, with a new UIDL */
    assert_string_equal(store_uidl(mb, 1), gen);
    assert_true(is_generated(store_uidl(mb, 0)));
    store_close(mb);
    free(gen);
}

static void test_sizes(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;

    put_file(fx, "cur/1.a,S=5,W=999:2,", "hello");      /* W= is trusted */
    put_file(fx, "cur/2.b:2,", "a\nb\n");
    put_file(fx, "cur/3.c:2,", "abc");
    put_file(fx, "cur/4.d:2,", "a\r\nb\r\n");
    put_file(fx, "cur/5.e:2,", "");
    put_file(fx, "cur/6.f,W=12,S=3:2,", "x\n");
    put_file(fx, "cur/7.g,W=x:2,", ".\n.\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 7);
    assert_int_equal(store_size(mb, 0), 999);
    assert_int_equal(store_size(mb, 1), 6);
    assert_int_equal(store_size(mb, 2), 5);
    assert_int_equal(store_size(mb, 3), 6);
    assert_int_equal(store_size(mb, 4), 0);
    assert_int_equal(store_size(mb, 5), 12);
    assert_int_equal(store_size(mb, 6), 6);
    store_close(mb);
}

/* LIST sizes equal what RETR sends (without stuffing and the final line). */
static void test_size_matches_retr(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *big = malloc(300000);

    assert_non_null(big);
    for (size_t i = 0; i < 299999; i++)
        big[i] = "ab.\n\r\n"[i % 6 == 5 ? 3 : i % 7 % 6];
    big[299999] = '\0';
    put_file(fx, "cur/1.big:2,", big);
    put_file(fx, "cur/2.mixed:2,", ".x\r\ny\n\rz");
    mb = open_ok(fx);
    for (size_t i = 0; i < store_count(mb); i++) {
        char *text = read_msg(mb, i);
        struct mailstream ms;
        mailstream_init(&ms, -1);
        mailstream_encode(&ms, text, strlen(text), NULL);
        mailstream_finish(&ms, NULL);
        assert_int_equal(store_size(mb, i), ms.octets);
        if (i == 0)
            assert_string_equal(text, big);
        free(text);
    }
    store_close(mb);
    free(big);
}

static void test_size_cache(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *map;

    put_file(fx, "cur/1.a:2,", "x\ny\n");       /* 4 bytes, CRLF size 6 */
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0), 6);
    store_close(mb);
    map = slurp(fx, "pobox-uidlist");
    assert_non_null(strstr(map, "\n1.a . "));
    assert_non_null(strstr(map, " 4 6\n"));
    free(map);

    /* same length, other content: the cached size proves nothing was read */
    put_file(fx, "cur/1.a:2,", "\n\n\n\n");
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0), 6);
    store_close(mb);

    /* the same file (inode) is trusted without a stat, even rewritten in
     * place, which Maildir never does */
    put_file(fx, "cur/1.a:2,", "\n\n\n\n\n");
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0), 6);
    store_close(mb);

    /* another file under that name (another inode, as a restore from a
     * backup gives) with another length: computed again */
    put_file(fx, "cur/.new", "\n\n\n\n\n");
    rename_file(fx, "cur/.new", "cur/1.a:2,");
    mb = open_ok(fx);
    assert_int_equal(store_size(mb, 0), 10);
    store_close(mb);
    map = slurp(fx, "pobox-uidlist");
    assert_non_null(strstr(map, " 5 10\n"));
    free(map);
}

static void test_map_format(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *map, *line2;
    unsigned long long next;
    char epoch[17];

    put_file(fx, "cur/1.a,W=7:2,S", "hello\n");
    put_file(fx, "cur/2.b%c d:2,", "x\n");
    mb = open_ok(fx);
    store_close(mb);
    map = slurp(fx, "pobox-uidlist");
    assert_int_equal(sscanf(map, "pobox-uidlist 1 %16[0-9a-f] %llu\n", epoch,
                            &next), 2);
    assert_int_equal(strlen(epoch), 16);
    assert_int_equal(next, 2);
    line2 = strchr(map, '\n') + 1;
    assert_memory_equal(line2, "1.a,W=7 . ", 10);
    assert_non_null(strstr(line2, " - -\n2.b%25c%20d P"));
    assert_non_null(strstr(map, ".1 "));
    assert_string_equal(map + strlen(map) - 5, " 2 3\n");
    free(map);
}

static void test_map_written_only_when_changed(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    ino_t ino;

    put_file(fx, "cur/1.a:2,", "a\n");
    put_file(fx, "cur/2.b,W=3:2,", "b\n");
    mb = open_ok(fx);
    store_close(mb);
    ino = map_inode(fx);
    mb = open_ok(fx);
    store_close(mb);
    assert_true(map_inode(fx) == ino);          /* not rewritten */
    put_file(fx, "new/3.c", "c\n");
    mb = open_ok(fx);
    store_close(mb);
    assert_true(map_inode(fx) != ino);          /* rewritten */
}

static void test_map_pruned(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *map;

    put_file(fx, "cur/1.keep:2,", "a\n");
    put_file(fx, "cur/2.gone:2,", "b\n");
    mb = open_ok(fx);
    store_close(mb);
    map = slurp(fx, "pobox-uidlist");
    assert_non_null(strstr(map, "\n2.gone "));
    free(map);
    unlink_file(fx, "cur/2.gone:2,");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    store_close(mb);
    map = slurp(fx, "pobox-uidlist");
    assert_null(strstr(map, "2.gone"));
    assert_non_null(strstr(map, "\n1.keep "));
    free(map);
}

static void test_map_damaged(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *before, *map, *p;
    char *u;

    put_file(fx, "cur/1.ok:2,", "a\n");
    put_file(fx, "cur/2.bad one:2,", "b\n");
    put_file(fx, "cur/3.bad two:2,", "c\n");
    mb = open_ok(fx);
    before = uidl_list(mb);
    store_close(mb);

    /* one broken line: the others keep their UIDLs */
    map = slurp(fx, "pobox-uidlist");
    p = strstr(map, "\n2.bad%20one ");
    assert_non_null(p);
    p[3] = '%';
    p[4] = 'Z';
    put_file(fx, "pobox-uidlist", map);
    free(map);
    mb = open_ok(fx);
    u = uidl_list(mb);
    assert_string_not_equal(u, before);
    assert_string_equal(store_uidl(mb, 0), "1.ok");
    assert_non_null(strstr(before, store_uidl(mb, 2)));
    assert_null(strstr(before, store_uidl(mb, 1)));
    assert_uidls_unique(mb);
    free(u);
    store_close(mb);

    /* a broken header: a new epoch, base-name UIDLs unchanged */
    put_file(fx, "pobox-uidlist", "garbage\n1.ok . 1 - -\n");
    mb = open_ok(fx);
    assert_string_equal(store_uidl(mb, 0), "1.ok");
    assert_true(is_generated(store_uidl(mb, 1)));
    assert_null(strstr(before, store_uidl(mb, 1)));
    assert_uidls_unique(mb);
    store_close(mb);
    free(before);
}

/* Rewrites the map's header counter, as a stale or hand-edited map has. */
static void set_map_next(const struct fx *fx, unsigned next)
{
    char *map = slurp(fx, "pobox-uidlist"), *rest = strchr(map, '\n');
    char *text = malloc(strlen(map) + 32), epoch[17];

    assert_non_null(rest);
    assert_non_null(text);
    assert_int_equal(sscanf(map, "pobox-uidlist 1 %16s", epoch), 1);
    sprintf(text, "pobox-uidlist 1 %s %u%s", epoch, next, rest);
    put_file(fx, "pobox-uidlist", text);
    free(text);
    free(map);
}

static void test_map_stale_counter(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *old;

    put_file(fx, "cur/1.bad one:2,", "a\n");
    put_file(fx, "cur/2.ok:2,", "b\n");
    mb = open_ok(fx);
    old = strdup(store_uidl(mb, 0));
    store_close(mb);
    /* the counter went back, the line with the UIDL is still there, but the
     * message is gone before the next session sees it */
    set_map_next(fx, 1);
    unlink_file(fx, "cur/1.bad one:2,");
    put_file(fx, "cur/3.bad two:2,", "c\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 2);
    assert_true(is_generated(store_uidl(mb, 1)));
    assert_string_not_equal(store_uidl(mb, 1), old);
    store_close(mb);
    free(old);
}

static void test_map_repeated_uidl(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char text[256];

    put_file(fx, "cur/1.a:2,", "a\n");
    put_file(fx, "cur/2.b:2,", "b\n");
    put_file(fx, "cur/3.c:2,", "c\n");
    /* a hand-edited map giving two messages one UIDL, and a third a base
     * name UIDL that is another message's */
    snprintf(text, sizeof(text), "pobox-uidlist 1 0123456789abcdef 9\n"
             "1.a P0123456789abcdef.4 1 - -\n"
             "2.b P0123456789abcdef.4 2 - -\n"
             "3.c 1.a 3 - -\n");
    put_file(fx, "pobox-uidlist", text);
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 3);
    assert_uidls_unique(mb);
    assert_string_equal(store_uidl(mb, 0), "P0123456789abcdef.4");
    assert_string_equal(store_uidl(mb, 2), "1.a");
    assert_string_equal(store_uidl(mb, 1), "2.b");
    store_close(mb);
}

static void test_in_use(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb, *mb2 = NULL;

    put_file(fx, "new/1.a", "a\n");
    mb = open_ok(fx);
    assert_int_equal(store_open(&fx->cfg, ADDR, &mb2), STORE_IN_USE);
    assert_null(mb2);
    /* delivery is not blocked: new mail waits for the next session */
    put_file(fx, "new/2.b", "b\n");
    assert_int_equal(store_count(mb), 1);
    store_close(mb);
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 2);
    store_close(mb);
}

static void test_lock_dies_with_process(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb = NULL;
    int fds[2], status;
    char c;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (store_open(&fx->cfg, ADDR, &mb) == STORE_OK)
            (void)!write(fds[1], "k", 1);
        for (;;)
            pause();
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    assert_int_equal(store_open(&fx->cfg, ADDR, &mb), STORE_IN_USE);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    mb = open_ok(fx);
    store_close(mb);
}

static void test_commit(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    bool del[3] = {true, false, true};
    bool none[1] = {false};

    put_file(fx, "cur/1.a:2,S", "a\n");
    put_file(fx, "cur/2.b:2,", "b\n");
    put_file(fx, "new/3.c", "c\n");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 3);
    assert_int_equal(store_commit(mb, del), STORE_OK);
    assert_int_equal(store_reader_open(mb, 0, &(struct store_reader *){NULL}),
                     STORE_GONE);
    store_close(mb);
    assert_dir(fx, "cur", "2.b:2,");
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 1);
    assert_string_equal(store_uidl(mb, 0), "2.b");
    assert_int_equal(store_commit(mb, none), STORE_OK);
    store_close(mb);
    assert_dir(fx, "cur", "2.b:2,");
}

static void test_commit_gone_or_renamed(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    bool del[3] = {true, true, false};

    put_file(fx, "cur/1.a:2,", "a\n");
    put_file(fx, "cur/2.b:2,", "b\n");
    put_file(fx, "cur/3.c:2,", "c\n");
    mb = open_ok(fx);
    unlink_file(fx, "cur/1.a:2,");                      /* deleted */
    rename_file(fx, "cur/2.b:2,", "cur/2.b:2,S");       /* flags changed */
    assert_int_equal(store_commit(mb, del), STORE_OK);
    store_close(mb);
    assert_dir(fx, "cur", "3.c:2,");
}

static void test_vanished(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    struct store_reader *r = (struct store_reader *)&r;

    put_file(fx, "cur/1.a:2,", "a\n");
    put_file(fx, "new/2.b", "b\n");
    mb = open_ok(fx);
    unlink_file(fx, "cur/1.a:2,");
    unlink_file(fx, "cur/2.b:2,");
    assert_int_equal(store_reader_open(mb, 0, &r), STORE_GONE);
    assert_null(r);
    assert_int_equal(store_reader_open(mb, 1, &r), STORE_GONE);
    store_close(mb);
}

static void test_renamed_still_readable(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *text;

    put_file(fx, "cur/1.a:2,", "first\n");
    put_file(fx, "cur/2.b:2,S", "second\n");
    mb = open_ok(fx);
    rename_file(fx, "cur/1.a:2,", "cur/1.a:2,RS");
    rename_file(fx, "cur/2.b:2,S", "cur/2.b:2,");
    text = read_msg(mb, 0);
    assert_string_equal(text, "first\n");
    free(text);
    text = read_msg(mb, 1);
    assert_string_equal(text, "second\n");
    free(text);
    /* reading again uses the name found */
    text = read_msg(mb, 0);
    assert_string_equal(text, "first\n");
    free(text);
    store_close(mb);
}

static void test_renamed_duplicates_readable(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char *a, *b;

    put_file(fx, "cur/5.d:2,S", "one\n");
    put_file(fx, "cur/5.d:2,T", "two\n");
    mb = open_ok(fx);
    rename_file(fx, "cur/5.d:2,S", "cur/5.d:2,AS");
    rename_file(fx, "cur/5.d:2,T", "cur/5.d:2,AT");
    a = read_msg(mb, 0);
    b = read_msg(mb, 1);
    assert_string_equal(a, "one\n");
    assert_string_equal(b, "two\n");
    free(a);
    free(b);
    store_close(mb);
}

static void test_many_messages(void **state)
{
    struct fx *fx = *state;
    struct store_mailbox *mb;
    char rel[64], *first;

    for (int i = 0; i < 2000; i++) {
        snprintf(rel, sizeof(rel), "%s/%d.M%dP1.host%s",
                 i % 2 ? "new" : "cur", 1000 + (i * 7919) % 2000, i,
                 i % 2 ? "" : ":2,S");
        put_file(fx, rel, i % 3 ? "body\n" : "x\r\ny\r\n");
    }
    mb = open_ok(fx);
    assert_int_equal(store_count(mb), 2000);
    for (size_t i = 1; i < 2000; i++)
        assert_true(strtoul(store_uidl(mb, i - 1), NULL, 10)
                    < strtoul(store_uidl(mb, i), NULL, 10));
    first = uidl_list(mb);
    store_close(mb);
    mb = open_ok(fx);
    char *again = uidl_list(mb);
    assert_string_equal(first, again);
    free(again);
    free(first);
    store_close(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_creates_mailbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_choice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_moved_to_cur, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidl_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_in_new_and_cur, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uidl_never_reused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_generated_uidl_not_taken_by_base,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_matches_retr, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_size_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_written_only_when_changed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_pruned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_stale_counter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_map_repeated_uidl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_dies_with_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_gone_or_renamed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_vanished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renamed_still_readable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_renamed_duplicates_readable,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_messages, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
