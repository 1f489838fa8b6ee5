/* test_queue.c — unit tests for src/mail/queue.c: IDs, put and read back
 * (hostile bytes in every text field), the files left in msg/ env/ tmp/,
 * pre-made IDs, updates and removal, list order, damaged envelope files,
 * write failures leaving nothing behind, the sweep, and 8 threads putting at
 * once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "mail/envelope.h"
#include "mail/queue.h"

/* bytes no format may trip on: space, LF, CR, '%', '+', '=', non-UTF-8 */
#define HOSTILE "a b\nc\r%41+2B=x\xff\xc3(\x01 ~"

/* ---- fixtures ----------------------------------------------------------- */

struct fixture {
    char dir[PATH_MAX];         /* fresh data_dir */
    struct config *cfg;
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
    char ov[PATH_MAX + 32];
    char *ovs[] = {ov};
    struct config_errors errs = {0};

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/pobox-queue-XXXXXX", base);
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(ov, sizeof ov, "server.data_dir=%s", f->dir);
    f->cfg = config_load(NULL, true, ovs, 1, &errs);
    config_errors_free(&errs);
    if (!f->cfg)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    config_unref(f->cfg);
    free(f);
    return 0;
}

/* out = dir/queue/sub[/name] */
static void qpath(char *out, const struct fixture *f, const char *sub,
                  const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/queue/%s%s%s", f->dir, sub,
                     name ? "/" : "", name ? name : "");
    assert_true(n > 0 && n < PATH_MAX);
}

/* Entries of dir/queue/sub besides . and .. */
static int count_files(const struct fixture *f, const char *sub)
{
    char path[PATH_MAX];
    qpath(path, f, sub, NULL);
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A whole file as a string (caller frees); *len its length. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;

    assert_non_null(fp);
    FILE *mem = open_memstream(&buf, &n);
    int c;
    while ((c = fgetc(fp)) != EOF)
        fputc(c, mem);
    fclose(fp);
    fclose(mem);
    if (len)
        *len = n;
    return buf;
}

/* An unlinked file holding data, positioned at its end (queue_put must
 * pread from 0). */
static int msg_file(const char *data, size_t len)
{
    char path[] = "/tmp/pobox-queue-msg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    return fd;
}

static void env_with(struct envelope *env, const char *sender)
{
    envelope_init(env);
    strcpy(env->sender, sender);
}

/* Puts msg for env's recipients; returns the fd-independent result. */
static int put(const struct fixture *f, const struct envelope *env,
               const char *prefix, const char *msg, char id[QUEUE_ID_LEN + 1])
{
    int fd = msg_file(msg, strlen(msg));
    int rc = queue_put(f->cfg, env, env->rcpts, env->n_rcpts, prefix, fd, id);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* ---- IDs ---------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_ids(void **state)
{
    enum { N = 2000 };
    static char ids[N][QUEUE_ID_LEN + 1];
    time_t before = time(NULL);

    for (int i = 0; i < N; i++) {
        queue_new_id(ids[i]);
        assert_int_equal(strlen(ids[i]), QUEUE_ID_LEN);
        assert_true(queue_id_valid(ids[i]));
        /* the time part never goes back (same clock, one thread) */
        if (i)
            assert_true(strncmp(ids[i - 1], ids[i], 13) <= 0);
    }
    /* the time part is now, in microseconds */
    char time_part[14];
    memcpy(time_part, ids[0], 13);
    time_part[13] = '\0';
    unsigned long long us = strtoull(time_part, NULL, 16);
    assert_true(us / 1000000 >= (unsigned long long)before &&
                us / 1000000 <= (unsigned long long)time(NULL));
    qsort(ids, N, sizeof ids[0], cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);

    assert_false(queue_id_valid(NULL));
    assert_false(queue_id_valid(""));
    assert_false(queue_id_valid("0123456789ABCDEF0123"  "0"));
    assert_false(queue_id_valid("0123456789ABCDEF012"));
    assert_false(queue_id_valid("0123456789abcdef0123"));
    assert_false(queue_id_valid("../../../etc/passwd0"));
    assert_false(queue_id_valid("0123456789ABCDEF012G"));
    assert_true(queue_id_valid("0123456789ABCDEF0123"));
}

/* ---- put and read ------------------------------------------------------- */

static void test_put_read(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "";
    const char *prefix = "Received: from x by y with ESMTPSA id ID\n";
    const char *msg = "Subject: hi\n\nline 1\n.dot\n\xe2\x82\xac\n";

    env_with(&env, "s" HOSTILE "@a.test");
    env.ret = DSN_RET_HDRS;
    env.envid = strdup("E" HOSTILE);
    env.smtputf8 = true;
    env.body_8bit = true;
    strcpy(env.auth_user, "alice@a.test");
    env.origin = ORIGIN_SUBMISSION;
    assert_true(envelope_add_rcpt(&env, "bob@b.test",
                                  DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY,
                                  "rfc822;b" HOSTILE "@b.test"));
    assert_true(envelope_add_rcpt(&env, "carol+tag@c.test", 0, NULL));
    assert_true(envelope_add_rcpt(&env, "d\xc3\xa9@d.test", DSN_NOTIFY_NEVER, ""));
    assert_true(envelope_add_rcpt(&env, "r" HOSTILE "@e.test",
                                  DSN_NOTIFY_FAILURE, "x"));

    time_t before = time(NULL);
    assert_int_equal(put(f, &env, prefix, msg, id), 0);
    assert_true(queue_id_valid(id));

    /* files: one message, one envelope, no debris */
    char path[PATH_MAX];
    assert_int_equal(count_files(f, "msg"), 1);
    assert_int_equal(count_files(f, "env"), 1);
    assert_int_equal(count_files(f, "tmp"), 0);
    qpath(path, f, "msg", id);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t len;
    char *body = slurp(path, &len);
    assert_int_equal(len, strlen(prefix) + strlen(msg));
    assert_memory_equal(body, prefix, strlen(prefix));
    assert_string_equal(body + strlen(prefix), msg);
    free(body);

    /* the envelope file: printable ASCII lines, one per field and rcpt */
    qpath(path, f, "env", id);
    char *text = slurp(path, &len);
    int lines = 0;
    for (size_t i = 0; i < len; i++) {
        assert_true(text[i] == '\n' || (text[i] >= 0x20 && text[i] < 0x7F));
        lines += text[i] == '\n';
    }
    /* version id created size sender ret envid smtputf8 body_8bit auth_user
       warned, 4 rcpt, end */
    assert_int_equal(lines, 16);
    assert_true(strncmp(text, "version 1\n", 10) == 0);
    assert_non_null(strstr(text, "\nrcpt bob@b.test notify=success,delay "
                                 "orcpt=rfc822;ba+20b+0Ac+0D%41+2B2B+3Dx+FF+C3(+01+20~@b.test "
                                 "state=pending attempts=0 next_attempt="));
    assert_non_null(strstr(text, "\nend\n"));
    assert_int_equal(text[len - 1], '\n');
    free(text);

    /* every field back */
    struct queue_entry e;
    assert_int_equal(queue_read(f->cfg, id, &e), 0);
    assert_string_equal(e.id, id);
    assert_true(e.created >= before && e.created <= time(NULL));
    /* CRLF size: every LF counts twice */
    size_t lfs = 0;
    for (const char *p = prefix; *p; p++)
        lfs += *p == '\n';
    for (const char *p = msg; *p; p++)
        lfs += *p == '\n';
    assert_int_equal(e.size, strlen(prefix) + strlen(msg) + lfs);
    assert_string_equal(e.sender, "s" HOSTILE "@a.test");
    assert_int_equal(e.ret, DSN_RET_HDRS);
    assert_string_equal(e.envid, "E" HOSTILE);
    assert_true(e.smtputf8);
    assert_true(e.body_8bit);
    assert_string_equal(e.auth_user, "alice@a.test");
    assert_int_equal(e.warned, 0);
    assert_int_equal(e.n_rcpts, 4);
    for (size_t i = 0; i < e.n_rcpts; i++) {
        assert_string_equal(e.rcpts[i].address, env.rcpts[i].address);
        assert_int_equal(e.rcpts[i].notify, env.rcpts[i].notify);
        if (env.rcpts[i].orcpt)
            assert_string_equal(e.rcpts[i].orcpt, env.rcpts[i].orcpt);
        else
            assert_null(e.rcpts[i].orcpt);
        assert_int_equal(e.rcpts[i].state, QUEUE_PENDING);
        assert_int_equal(e.rcpts[i].attempts, 0);
        assert_int_equal(e.rcpts[i].next_attempt, e.created);
        assert_null(e.rcpts[i].last_error);
        assert_false(e.rcpts[i].reported);
    }
    queue_entry_free(&e);

    /* the message through queue_open_msg */
    int fd = queue_open_msg(f->cfg, id);
    assert_true(fd >= 0);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    assert_int_equal(n, (ssize_t)(strlen(prefix) + strlen(msg)));
    close(fd);

    envelope_reset(&env);
}

/* The null sender, no optional fields, no prefix, an empty message. */
static void test_put_minimal(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "";
    struct queue_entry e;

    env_with(&env, "");
    assert_true(envelope_add_rcpt(&env, "bob@b.test", 0, NULL));
    assert_int_equal(put(f, &env, NULL, "", id), 0);
    assert_int_equal(queue_read(f->cfg, id, &e), 0);
    assert_string_equal(e.sender, "");
    assert_int_equal(e.ret, DSN_RET_UNSET);
    assert_null(e.envid);
    assert_false(e.smtputf8);
    assert_false(e.body_8bit);
    assert_string_equal(e.auth_user, "");
    assert_int_equal(e.size, 0);
    assert_int_equal(e.n_rcpts, 1);
    assert_int_equal(e.rcpts[0].notify, 0);
    queue_entry_free(&e);

    char path[PATH_MAX];
    qpath(path, f, "env", id);
    char *text = slurp(path, NULL);
    assert_non_null(strstr(text, "\nsender\n"));
    assert_null(strstr(text, "envid"));
    assert_null(strstr(text, "ret "));
    free(text);
    envelope_reset(&env);
}

/* An ID made first (for the Received: line) is the file's; taken: EEXIST. */
static void test_premade_id(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1], prefix[128];
    struct queue_entry e;

    env_with(&env, "alice@a.test");
    assert_true(envelope_add_rcpt(&env, "bob@b.test", 0, NULL));
    queue_new_id(id);
    snprintf(prefix, sizeof prefix, "Received: by h id %s\n", id);
    memcpy(id2, id, sizeof id);
    assert_int_equal(put(f, &env, prefix, "x\n", id2), 0);
    assert_string_equal(id2, id);
    assert_int_equal(queue_read(f->cfg, id, &e), 0);
    queue_entry_free(&e);

    /* the same ID again: refused, the first entry untouched */
    assert_int_equal(put(f, &env, "other\n", "y\n", id2), -1);
    assert_int_equal(errno, EEXIST);
    assert_string_equal(id2, id);
    char path[PATH_MAX];
    qpath(path, f, "msg", id);
    char *body = slurp(path, NULL), want[160];
    snprintf(want, sizeof want, "%sx\n", prefix);
    assert_string_equal(body, want);
    free(body);
    assert_int_equal(count_files(f, "msg"), 1);
    assert_int_equal(count_files(f, "env"), 1);
    assert_int_equal(count_files(f, "tmp"), 0);

    /* not an ID */
    strcpy(id2, "../../x");
    assert_int_equal(put(f, &env, NULL, "y\n", id2), -1);
    assert_int_equal(errno, EINVAL);
    envelope_reset(&env);
}

static void test_bad_args(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "";
    int fd = msg_file("x\n", 2);

    env_with(&env, "alice@a.test");
    assert_int_equal(queue_put(f->cfg, &env, env.rcpts, 0, NULL, fd, id), -1);
    assert_int_equal(errno, EINVAL);
    assert_true(envelope_add_rcpt(&env, "", 0, NULL));
    assert_int_equal(queue_put(f->cfg, &env, env.rcpts, 1, NULL, fd, id), -1);
    assert_int_equal(errno, EINVAL);
    assert_string_equal(id, "");
    assert_int_equal(count_files(f, "msg"), 0);
    assert_int_equal(count_files(f, "env"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);
    close(fd);
    envelope_reset(&env);
}

/* ---- update and remove -------------------------------------------------- */

static void test_update(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "";
    struct queue_entry e, back;

    env_with(&env, "alice@a.test");
    assert_true(envelope_add_rcpt(&env, "bob@b.test", DSN_NOTIFY_FAILURE, NULL));
    assert_true(envelope_add_rcpt(&env, "carol@c.test", 0, "rfc822;carol@c.test"));
    assert_int_equal(put(f, &env, NULL, "x\n", id), 0);

    assert_int_equal(queue_read(f->cfg, id, &e), 0);
    e.warned = 1700000000;
    e.rcpts[0].state = QUEUE_SENT;
    e.rcpts[0].attempts = 1;
    e.rcpts[0].last_error = strdup("250 2.0.0 Ok " HOSTILE);
    e.rcpts[0].reported = true;
    e.rcpts[1].state = QUEUE_FAILED;
    e.rcpts[1].attempts = 4000000000u;
    e.rcpts[1].next_attempt = INT64_MAX;
    e.rcpts[1].last_error = malloc(QUEUE_ERROR_MAX + 500);
    memset(e.rcpts[1].last_error, '\n', QUEUE_ERROR_MAX + 499);
    e.rcpts[1].last_error[QUEUE_ERROR_MAX + 499] = '\0';
    assert_int_equal(queue_update(f->cfg, &e), 0);
    assert_int_equal(count_files(f, "tmp"), 0);

    assert_int_equal(queue_read(f->cfg, id, &back), 0);
    assert_int_equal(back.warned, 1700000000);
    assert_int_equal(back.created, e.created);
    assert_int_equal(back.size, 3);     /* "x\n" sent as "x\r\n" */
    assert_int_equal(back.rcpts[0].state, QUEUE_SENT);
    assert_int_equal(back.rcpts[0].attempts, 1);
    assert_string_equal(back.rcpts[0].last_error, "250 2.0.0 Ok " HOSTILE);
    assert_true(back.rcpts[0].reported);
    assert_int_equal(back.rcpts[0].notify, DSN_NOTIFY_FAILURE);
    assert_int_equal(back.rcpts[1].state, QUEUE_FAILED);
    assert_int_equal(back.rcpts[1].attempts, 4000000000u);
    assert_true(back.rcpts[1].next_attempt == INT64_MAX);
    assert_int_equal(strlen(back.rcpts[1].last_error), QUEUE_ERROR_MAX);
    assert_string_equal(back.rcpts[1].orcpt, "rfc822;carol@c.test");
    assert_false(back.rcpts[1].reported);
    queue_entry_free(&back);

    /* removed: gone for good, and an update does not bring it back */
    assert_int_equal(queue_remove(f->cfg, id), 0);
    assert_int_equal(count_files(f, "msg"), 0);
    assert_int_equal(count_files(f, "env"), 0);
    assert_int_equal(queue_read(f->cfg, id, &back), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(queue_update(f->cfg, &e), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(count_files(f, "env"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);
    assert_int_equal(queue_remove(f->cfg, id), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(queue_open_msg(f->cfg, id), -1);
    assert_int_equal(errno, ENOENT);

    /* an entry that cannot be written */
    e.rcpts[0].address[0] = '\0';
    assert_int_equal(queue_update(f->cfg, &e), -1);
    assert_int_equal(errno, EINVAL);
    queue_entry_free(&e);
    envelope_reset(&env);
}

/* ---- list --------------------------------------------------------------- */

struct seen {
    char ids[64][QUEUE_ID_LEN + 1];
    int n, stop_at;
};

static int collect(const char *id, void *arg)
{
    struct seen *s = arg;
    memcpy(s->ids[s->n++], id, QUEUE_ID_LEN + 1);
    return s->n == s->stop_at ? 7 : 0;
}

static void test_list(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    static const char *const ids[] = {
        "0000000000003AAAAAAA", "0000000000001FFFFFFF", "0000000000002000000F",
        "00000000000020000000", "FFFFFFFFFFFFF0000000",
    };
    struct seen s = {.stop_at = -1};

    /* no queue directory yet */
    assert_int_equal(queue_list(f->cfg, collect, &s), 0);
    assert_int_equal(s.n, 0);

    env_with(&env, "alice@a.test");
    assert_true(envelope_add_rcpt(&env, "bob@b.test", 0, NULL));
    for (size_t i = 0; i < 5; i++) {
        char id[QUEUE_ID_LEN + 1];
        strcpy(id, ids[i]);
        assert_int_equal(put(f, &env, NULL, "x\n", id), 0);
    }
    /* debris is not listed: a message without envelope, junk names */
    char path[PATH_MAX];
    qpath(path, f, "msg", "00000000000000000001");
    fclose(fopen(path, "w"));
    qpath(path, f, "env", ".hidden");
    fclose(fopen(path, "w"));
    qpath(path, f, "env", "0000000000000000000a");
    fclose(fopen(path, "w"));

    assert_int_equal(queue_list(f->cfg, collect, &s), 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.ids[0], ids[1]);
    assert_string_equal(s.ids[1], ids[3]);
    assert_string_equal(s.ids[2], ids[2]);
    assert_string_equal(s.ids[3], ids[0]);
    assert_string_equal(s.ids[4], ids[4]);

    /* fn stops the walk */
    memset(&s, 0, sizeof s);
    s.stop_at = 2;
    assert_int_equal(queue_list(f->cfg, collect, &s), 7);
    assert_int_equal(s.n, 2);
    envelope_reset(&env);
}

/* ---- damaged envelope files --------------------------------------------- */

static void test_damaged(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "", path[PATH_MAX], good[1024];
    struct queue_entry e;

    env_with(&env, "alice@a.test");
    assert_true(envelope_add_rcpt(&env, "bob@b.test", 0, NULL));
    assert_int_equal(put(f, &env, NULL, "x\n", id), 0);
    qpath(path, f, "env", id);
    char *orig = slurp(path, NULL);
    snprintf(good, sizeof good, "%s", orig);
    free(orig);

    const char *rcpt = "rcpt bob@b.test state=pending attempts=0 next_attempt=5 reported=0\n";
    char head[256];
    snprintf(head, sizeof head, "version 1\nid %s\ncreated 1\nsize 4\nsender a@b\n", id);
    struct { const char *what, *body; } cases[] = {
        {"empty", ""},
        {"no end", NULL},
        {"after end", NULL},
        {"no rcpt", NULL},
        {"bad version", "version 2\n"},
        {"version not first", NULL},
        {"other id", "version 1\nid 00000000000000000000\ncreated 1\nsize 4\nsender a\n"},
        {"unknown key", NULL},
        {"duplicate key", NULL},
        {"bad xtext", NULL},
        {"xtext NUL", NULL},
        {"bad state", NULL},
        {"bad number", NULL},
        {"negative", NULL},
        {"unknown attr", NULL},
        {"dup attr", NULL},
        {"missing attempts", NULL},
        {"empty rcpt", NULL},
        {"bad notify", NULL},
        {"address too long", NULL},
        {"no final LF", NULL},
        {"NUL byte", NULL},
    };
    char buf[2048];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *w = cases[i].what;
        size_t blen;
        if (cases[i].body)
            snprintf(buf, sizeof buf, "%s", cases[i].body);
        else if (!strcmp(w, "no end"))
            snprintf(buf, sizeof buf, "%s%s", head, rcpt);
        else if (!strcmp(w, "after end"))
            snprintf(buf, sizeof buf, "%s%send\n%s", head, rcpt, rcpt);
        else if (!strcmp(w, "no rcpt"))
            snprintf(buf, sizeof buf, "%send\n", head);
        else if (!strcmp(w, "version not first"))
            snprintf(buf, sizeof buf, "id %s\nversion 1\n%send\n", id, rcpt);
        else if (!strcmp(w, "unknown key"))
            snprintf(buf, sizeof buf, "%scolor red\n%send\n", head, rcpt);
        else if (!strcmp(w, "duplicate key"))
            snprintf(buf, sizeof buf, "%ssender c@d\n%send\n", head, rcpt);
        else if (!strcmp(w, "bad xtext"))
            snprintf(buf, sizeof buf, "%senvid a+4\n%send\n", head, rcpt);
        else if (!strcmp(w, "xtext NUL"))
            snprintf(buf, sizeof buf, "%senvid a+00b\n%send\n", head, rcpt);
        else if (!strcmp(w, "bad state"))
            snprintf(buf, sizeof buf, "%srcpt b@c state=done attempts=0 next_attempt=5\nend\n", head);
        else if (!strcmp(w, "bad number"))
            snprintf(buf, sizeof buf, "%srcpt b@c state=sent attempts=99999999999 next_attempt=5\nend\n", head);
        else if (!strcmp(w, "negative"))
            snprintf(buf, sizeof buf, "%srcpt b@c state=sent attempts=0 next_attempt=-5\nend\n", head);
        else if (!strcmp(w, "unknown attr"))
            snprintf(buf, sizeof buf, "%srcpt b@c state=sent attempts=0 next_attempt=5 x=1\nend\n", head);
        else if (!strcmp(w, "dup attr"))
            snprintf(buf, sizeof buf, "%srcpt b@c state=sent state=sent attempts=0 next_attempt=5\nend\n", head);
        else if (!strcmp(w, "missing attempts"))
            snprintf(buf, sizeof buf, "%srcpt b@c state=sent next_attempt=5\nend\n", head);
        else if (!strcmp(w, "empty rcpt"))
            snprintf(buf, sizeof buf, "%srcpt  state=sent attempts=0 next_attempt=5\nend\n", head);
        else if (!strcmp(w, "bad notify"))
            snprintf(buf, sizeof buf, "%srcpt b@c notify=success,,delay state=sent attempts=0 next_attempt=5\nend\n", head);
        else if (!strcmp(w, "address too long")) {
            char longaddr[400];
            memset(longaddr, 'a', 300);
            longaddr[300] = '\0';
            snprintf(buf, sizeof buf, "%srcpt %s state=sent attempts=0 next_attempt=5\nend\n", head, longaddr);
        } else if (!strcmp(w, "no final LF"))
            snprintf(buf, sizeof buf, "%s%send", head, rcpt);
        else    /* NUL byte: written below */
            snprintf(buf, sizeof buf, "%s%send\n", head, rcpt);
        blen = strlen(buf);
        if (!strcmp(w, "NUL byte"))
            buf[strlen(head) + 6] = '\0';   /* inside the rcpt address */
        FILE *fp = fopen(path, "wb");
        assert_int_equal(fwrite(buf, 1, blen, fp), blen);
        fclose(fp);
        errno = 0;
        if (queue_read(f->cfg, id, &e) != -1 || errno != EBADMSG)
            fail_msg("damaged case \"%s\" was not refused (errno %d)", w, errno);
        assert_int_equal(e.n_rcpts, 0);
        assert_null(e.rcpts);
    }

    /* the same head and rcpt line do parse: the cases fail for their reason */
    snprintf(buf, sizeof buf, "%s%send\n", head, rcpt);
    FILE *fp = fopen(path, "wb");
    fputs(buf, fp);
    fclose(fp);
    assert_int_equal(queue_read(f->cfg, id, &e), 0);
    assert_string_equal(e.sender, "a@b");
    assert_int_equal(e.rcpts[0].next_attempt, 5);
    queue_entry_free(&e);

    /* a symlink in env/ is not followed */
    unlink(path);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_int_equal(queue_read(f->cfg, id, &e), -1);
    assert_int_equal(errno, EBADMSG);

    /* not an ID */
    assert_int_equal(queue_read(f->cfg, "../env/x", &e), -1);
    assert_int_equal(errno, EINVAL);
    envelope_reset(&env);
}

/* ---- write failures ----------------------------------------------------- */

/* queue_put with RLIMIT_FSIZE at limit octets (SIGXFSZ ignored: writes fail
 * with EFBIG). */
static int put_limited(const struct fixture *f, const struct envelope *env,
                       const char *msg, rlim_t limit, char id[QUEUE_ID_LEN + 1])
{
    struct rlimit old, lim;
    int fd = msg_file(msg, strlen(msg));

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = limit == RLIM_INFINITY ? old.rlim_max : limit;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = queue_put(f->cfg, env, env->rcpts, env->n_rcpts, NULL, fd, id);
    int saved = errno;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    close(fd);
    errno = saved;
    return rc;
}

static void test_write_failure(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "";
    static char big[200000];

    env_with(&env, "alice@a.test");
    for (int i = 0; i < 40; i++) {
        char addr[64], orcpt[128];
        snprintf(addr, sizeof addr, "rcpt%02d@b.test", i);
        snprintf(orcpt, sizeof orcpt, "rfc822;a-rather-long-original-recipient-%02d@b.test", i);
        assert_true(envelope_add_rcpt(&env, addr, DSN_NOTIFY_FAILURE, orcpt));
    }
    /* the message is too large */
    memset(big, 'x', sizeof big - 1);
    for (size_t i = 70; i < sizeof big - 1; i += 71)
        big[i] = '\n';
    assert_int_equal(put_limited(f, &env, big, 100000, id), -1);
    assert_int_equal(errno, EFBIG);
    assert_string_equal(id, "");
    assert_int_equal(count_files(f, "msg"), 0);
    assert_int_equal(count_files(f, "env"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);

    /* the message fits, its envelope (~3 KB) does not: the message goes */
    assert_int_equal(put_limited(f, &env, "Subject: s\n\nshort\n", 1000, id), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(count_files(f, "msg"), 0);
    assert_int_equal(count_files(f, "env"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);

    /* and without the limit it works */
    assert_int_equal(put_limited(f, &env, "Subject: s\n\nshort\n", RLIM_INFINITY, id), 0);
    assert_int_equal(count_files(f, "msg"), 1);
    assert_int_equal(count_files(f, "env"), 1);

    /* a pipe cannot be pread: an error, nothing left */
    int p[2];
    char id2[QUEUE_ID_LEN + 1] = "";
    assert_int_equal(pipe(p), 0);
    assert_int_equal(queue_put(f->cfg, &env, env.rcpts, 1, NULL, p[0], id2), -1);
    assert_int_equal(errno, ESPIPE);
    close(p[0]);
    close(p[1]);
    assert_int_equal(count_files(f, "msg"), 1);
    assert_int_equal(count_files(f, "env"), 1);
    assert_int_equal(count_files(f, "tmp"), 0);
    envelope_reset(&env);
}

/* ---- sweep -------------------------------------------------------------- */

static void make_old(const char *path, time_t age)
{
    struct timespec ts[2] = {{time(NULL) - age, 0}, {time(NULL) - age, 0}};
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("debris\n", fp);
    fclose(fp);
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_sweep(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char id[QUEUE_ID_LEN + 1] = "", path[PATH_MAX];

    assert_int_equal(queue_sweep(f->cfg, 60), 0);     /* no queue yet */
    env_with(&env, "alice@a.test");
    assert_true(envelope_add_rcpt(&env, "bob@b.test", 0, NULL));
    assert_int_equal(put(f, &env, NULL, "x\n", id), 0);
    /* an old complete entry stays */
    qpath(path, f, "msg", id);
    struct timespec ts[2] = {{1, 0}, {1, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);

    qpath(path, f, "tmp", "00000000000000000001.msg");
    make_old(path, 3600);
    qpath(path, f, "tmp", "00000000000000000002.env.abcdef");
    make_old(path, 10);                                 /* too young */
    qpath(path, f, "msg", "00000000000000000003");     /* orphan, old */
    make_old(path, 3600);
    qpath(path, f, "msg", "00000000000000000004");     /* orphan, young */
    make_old(path, 0);

    assert_int_equal(queue_sweep(f->cfg, 60), 2);
    assert_int_equal(count_files(f, "tmp"), 1);
    assert_int_equal(count_files(f, "msg"), 2);
    qpath(path, f, "msg", id);
    assert_int_equal(access(path, F_OK), 0);
    qpath(path, f, "msg", "00000000000000000004");
    assert_int_equal(access(path, F_OK), 0);
    struct queue_entry e;
    assert_int_equal(queue_read(f->cfg, id, &e), 0);
    queue_entry_free(&e);
    envelope_reset(&env);
}

/* ---- threads ------------------------------------------------------------ */

enum { THREADS = 8, PER_THREAD = 25 };

struct worker {
    const struct fixture *f;
    int n;
    char ids[PER_THREAD][QUEUE_ID_LEN + 1];
    int failed;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct envelope env;
    char msg[128];

    envelope_init(&env);
    snprintf(env.sender, sizeof env.sender, "t%d@a.test", w->n);
    if (!envelope_add_rcpt(&env, "bob@b.test", 0, NULL) ||
        !envelope_add_rcpt(&env, "carol@c.test", DSN_NOTIFY_DELAY, "rfc822;x@y"))
        w->failed++;
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(msg, sizeof msg, "Subject: %d.%d\n\nbody\n", w->n, i);
        int fd = msg_file(msg, strlen(msg));
        w->ids[i][0] = '\0';
        if (i % 2)
            queue_new_id(w->ids[i]);    /* half with pre-made IDs */
        if (queue_put(w->f->cfg, &env, env.rcpts, env.n_rcpts, NULL, fd,
                      w->ids[i]) != 0)
            w->failed++;
        close(fd);
    }
    envelope_reset(&env);
    return NULL;
}

static int count_cb(const char *id, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void test_threads(void **state)
{
    struct fixture *f = *state;
    static struct worker w[THREADS];
    pthread_t th[THREADS];
    static char all[THREADS * PER_THREAD][QUEUE_ID_LEN + 1];

    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.f = f, .n = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    int k = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].failed, 0);
        for (int j = 0; j < PER_THREAD; j++) {
            struct queue_entry e;
            char want[64];
            assert_int_equal(queue_read(f->cfg, w[i].ids[j], &e), 0);
            snprintf(want, sizeof want, "t%d@a.test", i);
            assert_string_equal(e.sender, want);
            assert_int_equal(e.n_rcpts, 2);
            queue_entry_free(&e);

            char path[PATH_MAX], body[64];
            qpath(path, f, "msg", w[i].ids[j]);
            char *got = slurp(path, NULL);
            snprintf(body, sizeof body, "Subject: %d.%d\n\nbody\n", i, j);
            assert_string_equal(got, body);
            free(got);
            memcpy(all[k++], w[i].ids[j], QUEUE_ID_LEN + 1);
        }
    }
    qsort(all, k, sizeof all[0], cmp_str);
    for (int i = 1; i < k; i++)
        assert_string_not_equal(all[i - 1], all[i]);
    int listed = 0;
    assert_int_equal(queue_list(f->cfg, count_cb, &listed), 0);
    assert_int_equal(listed, THREADS * PER_THREAD);
    assert_int_equal(count_files(f, "tmp"), 0);
    assert_int_equal(count_files(f, "msg"), THREADS * PER_THREAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test_setup_teardown(test_put_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_premade_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
