/* queue.c — the outbound queue in data_dir/queue/ (docs/storage.md, "The
 * queue"):
 *
 *   tmp/ID.msg, tmp/ID.env, tmp/ID.env.XXXXXX   files being written
 *   msg/ID   the message as it will be sent (LF line ends), written once
 *   env/ID   its envelope: text, one "KEY VALUE" a line, values in xtext
 *
 * queue_put writes tmp/ID.msg, fsyncs it, renames it to msg/ID, fsyncs msg/,
 * then the same for the envelope into env/: an envelope is never durable
 * before its message, so env/ID names a complete entry and a msg/ID without
 * one is debris (queue_sweep). queue_update replaces env/ID by rename;
 * queue_remove unlinks env/ID, then msg/ID. Both hold flock(LOCK_EX) on
 * msg/ID, whose inode never changes, so an update never brings back an
 * entry removed meanwhile. */
#include "mail/queue.h"
#include "core/fileutil.h"
#include "core/strutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_VERSION 1
#define QUEUE_ENV_MAX (16u << 20)   /* largest envelope file written or read */
#define QUEUE_COPY_BUF 65536
#define QUEUE_PUT_TRIES 8           /* fresh IDs tried when one is taken */

/* ---- IDs ---------------------------------------------------------------- */

void queue_new_id(char id[QUEUE_ID_LEN + 1])
{
    struct timespec ts;
    uint32_t r;

    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)    /* never expected */
        r = (uint32_t)ts.tv_nsec ^ (uint32_t)gettid() * 2654435761u;
    snprintf(id, QUEUE_ID_LEN + 1, "%013" PRIX64 "%07" PRIX32,
             us & 0xFFFFFFFFFFFFFu, r & 0xFFFFFFFu);
}

bool queue_id_valid(const char *s)
{
    if (!s)
        return false;
    for (int i = 0; i < QUEUE_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return s[QUEUE_ID_LEN] == '\0';
}

/* ---- paths and files ---------------------------------------------------- */

/* buf (PATH_MAX) = data_dir/queue[/sub[/name]]. */
static int queue_path(char *buf, const struct config *cfg, const char *sub,
                      const char *name)
{
    if (!cfg || !cfg->data_dir || !cfg->data_dir[0]) {
        errno = EINVAL;
        return -1;
    }
    int n = snprintf(buf, PATH_MAX, "%s/queue%s%s%s%s", cfg->data_dir,
                     sub ? "/" : "", sub ? sub : "", name ? "/" : "",
                     name ? name : "");
    if (n < 0 || n >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* As root, gives a new file or directory to the owner of data_dir, so that
 * a server that dropped privileges can handle what `pobox` wrote. */
static int queue_fix_owner(int fd, const char *path, const char *data_dir)
{
    struct stat dst, st;

    if (fd >= 0)
        return file_chown_like_dir(fd, data_dir);
    if (geteuid() != 0)
        return 0;
    if (stat(data_dir, &dst) < 0 || lstat(path, &st) < 0)
        return -1;
    if (st.st_uid == dst.st_uid && st.st_gid == dst.st_gid)
        return 0;
    return lchown(path, dst.st_uid, dst.st_gid);
}

/* Creates path (0700) under parent unless it exists; a new directory is
 * made durable by fsyncing parent. */
static int queue_mkdir(const char *path, const char *parent, const char *data_dir)
{
    if (mkdir(path, 0700) < 0)
        return errno == EEXIST ? 0 : -1;
    if (queue_fix_owner(-1, path, data_dir) < 0)
        return -1;
    return file_fsync_dir(parent);
}

/* data_dir/queue and its tmp/ msg/ env/. */
static int queue_make_dirs(const struct config *cfg)
{
    static const char *const subs[] = {"tmp", "msg", "env"};
    char top[PATH_MAX], sub[PATH_MAX];

    if (queue_path(top, cfg, NULL, NULL) < 0 ||
        queue_mkdir(top, cfg->data_dir, cfg->data_dir) < 0)
        return -1;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (queue_path(sub, cfg, subs[i], NULL) < 0 ||
            queue_mkdir(sub, top, cfg->data_dir) < 0)
            return -1;
    return 0;
}

/* Renames from to to unless to exists (EEXIST). */
static int queue_rename_new(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* a file system without RENAME_NOREPLACE */
    if (link(from, to) < 0)
        return -1;
    unlink(from);
    return 0;
}

/* Opens msg/id and takes flock(LOCK_EX) on it: the lock of the entry. The
 * fd (closing it unlocks), or -1 (ENOENT: no such message). */
static int queue_lock(const struct config *cfg, const char *id)
{
    char path[PATH_MAX];

    if (queue_path(path, cfg, "msg", id) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return -1;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
        ;
    if (rc < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* ---- text buffer -------------------------------------------------------- */

struct queue_buf {
    char *p;            /* owned */
    size_t len, cap;
    bool oom;           /* an append failed; p holds what came before */
};

static void qb_add(struct queue_buf *b, const char *data, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void qb_str(struct queue_buf *b, const char *s)
{
    qb_add(b, s, strlen(s));
}

static void qb_num(struct queue_buf *b, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    qb_str(b, num);
}

/* xtext (RFC 3461) of the first n octets of s: '!'..'~' but '+' and '='
 * as they are, any other octet as "+XX". */
static void qb_xtext_n(struct queue_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;

    while (i < n) {
        size_t run = i;
        while (run < n) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x21 || c > 0x7E || c == '+' || c == '=')
                break;
            run++;
        }
        qb_add(b, s + i, run - i);
        if (run == n)
            break;
        unsigned char c = (unsigned char)s[run];
        char enc[3] = {'+', hex[c >> 4], hex[c & 15]};
        qb_add(b, enc, 3);
        i = run + 1;
    }
}

static void qb_xtext(struct queue_buf *b, const char *s)
{
    qb_xtext_n(b, s, strlen(s));
}

/* ---- writing an envelope ------------------------------------------------ */

static const char *const queue_state_names[] = {"pending", "sent", "failed"};
static const struct { unsigned bit; const char *name; } queue_notify_names[] = {
    {DSN_NOTIFY_NEVER, "never"}, {DSN_NOTIFY_SUCCESS, "success"},
    {DSN_NOTIFY_FAILURE, "failure"}, {DSN_NOTIFY_DELAY, "delay"},
};
#define QUEUE_NOTIFY_ALL (DSN_NOTIFY_NEVER | DSN_NOTIFY_SUCCESS | \
                          DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)

/* True when the array s holds a C string. */
static bool queue_fits(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

/* True when e can be written and read back as it is. */
static bool queue_entry_ok(const struct queue_entry *e)
{
    if (!queue_id_valid(e->id) || e->created < 0 || e->warned < 0 ||
        (unsigned)e->ret > DSN_RET_HDRS || !e->rcpts || e->n_rcpts == 0 ||
        !queue_fits(e->sender, sizeof e->sender) ||
        !queue_fits(e->auth_user, sizeof e->auth_user))
        return false;
    for (size_t i = 0; i < e->n_rcpts; i++) {
        const struct queue_rcpt *r = &e->rcpts[i];
        if (!queue_fits(r->address, sizeof r->address) || !r->address[0] ||
            (r->notify & ~(unsigned)QUEUE_NOTIFY_ALL) ||
            (unsigned)r->state > QUEUE_FAILED || r->next_attempt < 0)
            return false;
    }
    return true;
}

static void queue_format_rcpt(struct queue_buf *b, const struct queue_rcpt *r)
{
    qb_str(b, "rcpt ");
    qb_xtext(b, r->address);
    if (r->notify) {
        const char *sep = " notify=";
        for (size_t i = 0; i < sizeof queue_notify_names /
                               sizeof queue_notify_names[0]; i++) {
            if (r->notify & queue_notify_names[i].bit) {
                qb_str(b, sep);
                qb_str(b, queue_notify_names[i].name);
                sep = ",";
            }
        }
    }
    if (r->orcpt) {
        qb_str(b, " orcpt=");
        qb_xtext(b, r->orcpt);
    }
    qb_str(b, " state=");
    qb_str(b, queue_state_names[r->state]);
    qb_str(b, " attempts=");
    qb_num(b, r->attempts);
    qb_str(b, " next_attempt=");
    qb_num(b, (uint64_t)r->next_attempt);
    qb_str(b, r->reported ? " reported=1" : " reported=0");
    if (r->last_error) {
        qb_str(b, " last_error=");
        qb_xtext_n(b, r->last_error, strnlen(r->last_error, QUEUE_ERROR_MAX));
    }
    qb_str(b, "\n");
}

/* Appends "key value\n" (just "key\n" for an empty value), value in xtext. */
static void queue_format_str(struct queue_buf *b, const char *key,
                             const char *value)
{
    qb_str(b, key);
    if (value[0]) {
        qb_str(b, " ");
        qb_xtext(b, value);
    }
    qb_str(b, "\n");
}

static void queue_format_num(struct queue_buf *b, const char *key, uint64_t v)
{
    qb_str(b, key);
    qb_str(b, " ");
    qb_num(b, v);
    qb_str(b, "\n");
}

/* The envelope file of e (checked by queue_entry_ok) into b. 0, or -1 with
 * errno ENOMEM, or EFBIG when it would be too large to read back. */
static int queue_format(struct queue_buf *b, const struct queue_entry *e)
{
    queue_format_num(b, "version", QUEUE_VERSION);
    queue_format_str(b, "id", e->id);
    queue_format_num(b, "created", (uint64_t)e->created);
    queue_format_num(b, "size", e->size);
    queue_format_str(b, "sender", e->sender);
    if (e->ret != DSN_RET_UNSET)
        queue_format_str(b, "ret", e->ret == DSN_RET_FULL ? "full" : "hdrs");
    if (e->envid)
        queue_format_str(b, "envid", e->envid);
    queue_format_num(b, "smtputf8", e->smtputf8);
    queue_format_num(b, "body_8bit", e->body_8bit);
    if (e->auth_user[0])
        queue_format_str(b, "auth_user", e->auth_user);
    queue_format_num(b, "warned", (uint64_t)e->warned);
    for (size_t i = 0; i < e->n_rcpts && !b->oom && b->len <= QUEUE_ENV_MAX; i++)
        queue_format_rcpt(b, &e->rcpts[i]);
    qb_str(b, "end\n");
    if (b->oom) {
        errno = ENOMEM;
        return -1;
    }
    if (b->len > QUEUE_ENV_MAX) {
        errno = EFBIG;
        return -1;
    }
    return 0;
}

/* Writes the content of b to a new file at path (O_EXCL when excl, else path
 * is a mkostemp template), fsyncs and closes it. On error nothing is left. */
static int queue_write_file(char *path, bool excl, const struct queue_buf *b,
                            const char *data_dir)
{
    int fd = excl ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
                               O_NOFOLLOW | O_NOCTTY, 0600)
                  : mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (queue_fix_owner(fd, NULL, data_dir) < 0 ||
        file_write_all(fd, b->p, b->len) < 0 || fsync(fd) < 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        errno = saved;
        return -1;
    }
    if (close(fd) < 0) {
        int saved = errno;
        unlink(path);
        errno = saved;
        return -1;
    }
    return 0;
}

/* ---- reading an envelope ------------------------------------------------ */

/* Decodes the xtext s into out (outsz octets with the NUL). False when s is
 * not xtext, decodes to a NUL or does not fit. */
static bool queue_unxtext(const char *s, char *out, size_t outsz)
{
    size_t n = 0;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x21 || c > 0x7E || c == '=')
            return false;
        if (c == '+') {
            int hi = str_hexval(s[1]), lo = hi < 0 ? -1 : str_hexval(s[2]);
            if (lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (unsigned char)(hi << 4 | lo);
            s += 2;
        }
        if (n + 1 >= outsz)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

/* The decoded xtext s in a new string (*out), false when malformed (or
 * out of memory: *oom). */
static bool queue_unxtext_dup(const char *s, char **out, bool *oom)
{
    size_t size = strlen(s) + 1;    /* decoding never grows */
    char *p = malloc(size);

    if (!p) {
        *oom = true;
        return false;
    }
    if (!queue_unxtext(s, p, size)) {
        free(p);
        return false;
    }
    *out = p;
    return true;
}

/* A decimal number without sign or leading zeros, at most max. */
static bool queue_parse_num(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s || (s[0] == '0' && s[1]))
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool queue_parse_time(const char *s, int64_t *out)
{
    uint64_t v;
    if (!queue_parse_num(s, INT64_MAX, &v))
        return false;
    *out = (int64_t)v;
    return true;
}

static bool queue_parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
        return false;
    *out = s[0] == '1';
    return true;
}

static bool queue_parse_notify(char *s, unsigned *out)
{
    unsigned bits = 0;

    for (char *tok = s, *comma; tok; tok = comma ? comma + 1 : NULL) {
        if ((comma = strchr(tok, ',')))
            *comma = '\0';
        size_t i, n = sizeof queue_notify_names / sizeof queue_notify_names[0];
        for (i = 0; i < n && strcmp(tok, queue_notify_names[i].name) != 0; i++)
            ;
        if (i == n || (bits & queue_notify_names[i].bit))
            return false;
        bits |= queue_notify_names[i].bit;
    }
    *out = bits;
    return true;
}

/* Parses the value of a rcpt line (NUL-terminated, changed in place) into
 * r (zeroed). False when malformed (or out of memory: *oom). */
static bool queue_parse_rcpt(char *v, struct queue_rcpt *r, bool *oom)
{
    enum { NOTIFY = 1, ORCPT = 2, STATE = 4, ATTEMPTS = 8, NEXT = 16,
           REPORTED = 32, ERROR = 64 };
    unsigned seen = 0;
    char *sp = strchr(v, ' ');

    if (sp)
        *sp = '\0';
    if (!queue_unxtext(v, r->address, sizeof r->address) || !r->address[0])
        return false;
    while (sp) {
        char *tok = sp + 1;
        if ((sp = strchr(tok, ' ')))
            *sp = '\0';
        char *val = strchr(tok, '=');
        if (!val)
            return false;
        *val++ = '\0';
        unsigned bit;
        bool ok;
        uint64_t n = 0;
        if (strcmp(tok, "notify") == 0) {
            bit = NOTIFY;
            ok = queue_parse_notify(val, &r->notify);
        } else if (strcmp(tok, "orcpt") == 0) {
            bit = ORCPT;
            ok = queue_unxtext_dup(val, &r->orcpt, oom);
        } else if (strcmp(tok, "state") == 0) {
            bit = STATE;
            ok = false;
            for (int i = QUEUE_PENDING; i <= QUEUE_FAILED && !ok; i++)
                if ((ok = strcmp(val, queue_state_names[i]) == 0))
                    r->state = (enum queue_state)i;
        } else if (strcmp(tok, "attempts") == 0) {
            bit = ATTEMPTS;
            ok = queue_parse_num(val, UINT_MAX, &n);
            r->attempts = (unsigned)n;
        } else if (strcmp(tok, "next_attempt") == 0) {
            bit = NEXT;
            ok = queue_parse_time(val, &r->next_attempt);
        } else if (strcmp(tok, "reported") == 0) {
            bit = REPORTED;
            ok = queue_parse_bool(val, &r->reported);
        } else if (strcmp(tok, "last_error") == 0) {
            bit = ERROR;
            ok = queue_unxtext_dup(val, &r->last_error, oom);
        } else {
            return false;
        }
        if (!ok || (seen & bit))
            return false;
        seen |= bit;
    }
    return (seen & (STATE | ATTEMPTS | NEXT)) == (STATE | ATTEMPTS | NEXT);
}

static int queue_add_rcpt(struct queue_entry *e, size_t *cap,
                          struct queue_rcpt **r)
{
    if (e->n_rcpts == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        struct queue_rcpt *p = realloc(e->rcpts, n * sizeof *p);
        if (!p)
            return -1;
        e->rcpts = p;
        *cap = n;
    }
    *r = &e->rcpts[e->n_rcpts++];
    memset(*r, 0, sizeof **r);
    return 0;
}

/* The keys of an envelope file besides rcpt: each at most once. */
enum {
    K_VERSION, K_ID, K_CREATED, K_SIZE, K_SENDER, K_RET, K_ENVID,
    K_SMTPUTF8, K_BODY_8BIT, K_AUTH_USER, K_WARNED, K_END, K_COUNT
};
static const char *const queue_keys[K_COUNT] = {
    "version", "id", "created", "size", "sender", "ret", "envid",
    "smtputf8", "body_8bit", "auth_user", "warned", "end",
};

/* One "key value" line (NUL-terminated, changed in place) into e. */
static bool queue_parse_line(char *line, struct queue_entry *e, size_t *cap,
                             unsigned *seen, bool *oom)
{
    char *v = strchr(line, ' ');
    if (v)
        *v++ = '\0';
    else
        v = line + strlen(line);

    if (strcmp(line, "rcpt") == 0) {
        struct queue_rcpt *r;
        if (!(*seen & 1u << K_VERSION) || (*seen & 1u << K_END))
            return false;
        if (queue_add_rcpt(e, cap, &r) < 0) {
            *oom = true;
            return false;
        }
        return queue_parse_rcpt(v, r, oom);
    }
    int k;
    for (k = 0; k < K_COUNT && strcmp(line, queue_keys[k]) != 0; k++)
        ;
    if (k == K_COUNT || (*seen & 1u << k) || (*seen & 1u << K_END) ||
        (k != K_VERSION && !(*seen & 1u << K_VERSION)) ||
        (k == K_VERSION && *seen))
        return false;
    *seen |= 1u << k;

    uint64_t n;
    switch (k) {
    case K_VERSION:
        return queue_parse_num(v, UINT_MAX, &n) && n == QUEUE_VERSION;
    case K_ID:
        return strcmp(v, e->id) == 0;
    case K_CREATED:
        return queue_parse_time(v, &e->created);
    case K_SIZE:
        return queue_parse_num(v, UINT64_MAX, &e->size);
    case K_SENDER:
        return queue_unxtext(v, e->sender, sizeof e->sender);
    case K_RET:
        if (strcmp(v, "full") == 0)
            e->ret = DSN_RET_FULL;
        else if (strcmp(v, "hdrs") == 0)
            e->ret = DSN_RET_HDRS;
        else
            return false;
        return true;
    case K_ENVID:
        return queue_unxtext_dup(v, &e->envid, oom);
    case K_SMTPUTF8:
        return queue_parse_bool(v, &e->smtputf8);
    case K_BODY_8BIT:
        return queue_parse_bool(v, &e->body_8bit);
    case K_AUTH_USER:
        return queue_unxtext(v, e->auth_user, sizeof e->auth_user);
    case K_WARNED:
        return queue_parse_time(v, &e->warned);
    default:    /* K_END */
        return *v == '\0';
    }
}

/* Parses the envelope file text (len octets, NUL-terminated, changed in
 * place) of id into e (zeroed, id set). 0, or -1 with errno EBADMSG or
 * ENOMEM (e then needs queue_entry_free). */
static int queue_parse(char *text, size_t len, struct queue_entry *e)
{
    const unsigned required = 1u << K_VERSION | 1u << K_ID | 1u << K_CREATED |
                              1u << K_SIZE | 1u << K_SENDER | 1u << K_END;
    unsigned seen = 0;
    size_t cap = 0;
    bool oom = false;

    if (memchr(text, '\0', len) || (len && text[len - 1] != '\n')) {
        errno = EBADMSG;
        return -1;
    }
    for (char *line = text; line < text + len;) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        if (!queue_parse_line(line, e, &cap, &seen, &oom)) {
            errno = oom ? ENOMEM : EBADMSG;
            return -1;
        }
        line = nl + 1;
    }
    if ((seen & required) != required || e->n_rcpts == 0) {
        errno = EBADMSG;
        return -1;
    }
    return 0;
}

/* Reads the regular file path (at most max octets) into *buf, NUL-
 * terminated; caller frees. */
static int queue_read_file(const char *path, size_t max, char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    char *p = NULL;
    size_t n = 0;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode) || (uintmax_t)st.st_size > max) {
        errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
        goto fail;
    }
    size_t cap = (size_t)st.st_size + 1;
    if (!(p = malloc(cap + 1)))
        goto fail;
    for (;;) {
        ssize_t r = read(fd, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {     /* it grew: not a file we wrote */
            errno = EFBIG;
            goto fail;
        }
    }
    close(fd);
    p[n] = '\0';
    *buf = p;
    *len = n;
    return 0;
fail:;
    int saved = errno;
    free(p);
    close(fd);
    errno = saved;
    return -1;
}

/* ---- the API ------------------------------------------------------------ */

void queue_entry_free(struct queue_entry *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_rcpts; i++) {
        free(e->rcpts[i].orcpt);
        free(e->rcpts[i].last_error);
    }
    free(e->rcpts);
    free(e->envid);
    memset(e, 0, sizeof *e);
}

int queue_read(const struct config *cfg, const char *id, struct queue_entry *out)
{
    char path[PATH_MAX], *text = NULL;
    size_t len;

    if (!out) {
        errno = EINVAL;
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (!queue_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if (queue_path(path, cfg, "env", id) < 0)
        return -1;
    if (queue_read_file(path, QUEUE_ENV_MAX, &text, &len) < 0) {
        if (errno == EFBIG || errno == EINVAL || errno == ELOOP)
            errno = EBADMSG;    /* too large, not a file, a symlink */
        return -1;
    }
    memcpy(out->id, id, QUEUE_ID_LEN + 1);
    int rc = queue_parse(text, len, out);
    int saved = errno;
    free(text);
    if (rc < 0)
        queue_entry_free(out);
    errno = saved;
    return rc;
}

int queue_open_msg(const struct config *cfg, const char *id)
{
    char path[PATH_MAX];

    if (!queue_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if (queue_path(path, cfg, "msg", id) < 0)
        return -1;
    return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
}

/* Writes prefix and the message of msg_fd to a new file at path, fsyncs it;
 * *size gets its octets with CRLF line ends. Nothing left on error. */
static int queue_write_msg(const char *path, const char *prefix, int msg_fd,
                           uint64_t *size, const char *data_dir)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW |
                        O_NOCTTY, 0600);
    if (fd < 0)
        return -1;
    char *buf = malloc(QUEUE_COPY_BUF);
    uint64_t n = 0;
    if (!buf || queue_fix_owner(fd, NULL, data_dir) < 0)
        goto fail;
    if (prefix) {
        size_t plen = strlen(prefix);
        if (file_write_all(fd, prefix, plen) < 0)
            goto fail;
        n += plen;
        for (const char *p = prefix; (p = strchr(p, '\n')); p++)
            n++;
    }
    for (off_t off = 0;;) {
        ssize_t r = pread(msg_fd, buf, QUEUE_COPY_BUF, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        if (file_write_all(fd, buf, (size_t)r) < 0)
            goto fail;
        off += r;
        n += (uint64_t)r;
        for (const char *p = buf, *end = buf + r;
             (p = memchr(p, '\n', (size_t)(end - p))); p++)
            n++;
    }
    if (fsync(fd) < 0)
        goto fail;
    free(buf);
    buf = NULL;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    *size = n;
    return 0;
fail:;
    int saved = errno;
    free(buf);
    if (fd >= 0)
        close(fd);
    unlink(path);
    errno = saved;
    return -1;
}

/* One attempt of queue_put with the ID e->id: message, then envelope. */
static int queue_put_files(const struct config *cfg, struct queue_entry *e,
                           const char *prefix, int msg_fd)
{
    char tmp_msg[PATH_MAX], tmp_env[PATH_MAX], msg[PATH_MAX], env[PATH_MAX];
    char msg_dir[PATH_MAX], env_dir[PATH_MAX], name[QUEUE_ID_LEN + 8];
    struct queue_buf b = {0};
    bool msg_in = false, env_in = false;

    snprintf(name, sizeof name, "%s.msg", e->id);
    if (queue_path(tmp_msg, cfg, "tmp", name) < 0)
        return -1;
    snprintf(name, sizeof name, "%s.env", e->id);
    if (queue_path(tmp_env, cfg, "tmp", name) < 0 ||
        queue_path(msg, cfg, "msg", e->id) < 0 ||
        queue_path(env, cfg, "env", e->id) < 0 ||
        queue_path(msg_dir, cfg, "msg", NULL) < 0 ||
        queue_path(env_dir, cfg, "env", NULL) < 0)
        return -1;

    if (queue_write_msg(tmp_msg, prefix, msg_fd, &e->size, cfg->data_dir) < 0)
        return -1;
    if (queue_rename_new(tmp_msg, msg) < 0) {
        int saved = errno;
        unlink(tmp_msg);
        errno = saved;
        return -1;
    }
    msg_in = true;
    /* the message is durable before its envelope can be */
    if (file_fsync_dir(msg_dir) < 0 || queue_format(&b, e) < 0 ||
        queue_write_file(tmp_env, true, &b, cfg->data_dir) < 0)
        goto fail;
    if (queue_rename_new(tmp_env, env) < 0) {
        int saved = errno;
        unlink(tmp_env);
        errno = saved;
        goto fail;
    }
    env_in = true;
    if (file_fsync_dir(env_dir) < 0)
        goto fail;
    free(b.p);
    return 0;
fail:;
    int saved = errno;
    if (env_in)
        unlink(env);
    if (msg_in)
        unlink(msg);
    free(b.p);
    errno = saved;
    return -1;
}

int queue_put(const struct config *cfg, const struct envelope *env,
              const struct envelope_rcpt *rcpts, size_t n_rcpts,
              const char *prefix, int msg_fd, char id[QUEUE_ID_LEN + 1])
{
    if (!cfg || !env || !rcpts || n_rcpts == 0 || msg_fd < 0 || !id ||
        (id[0] && !queue_id_valid(id))) {
        errno = EINVAL;
        return -1;
    }
    bool premade = id[0] != '\0';
    struct queue_entry e = {
        .created = (int64_t)time(NULL), .ret = env->ret,
        .envid = env->envid, .smtputf8 = env->smtputf8,
        .body_8bit = env->body_8bit, .n_rcpts = n_rcpts,
    };
    if (!queue_fits(env->sender, sizeof env->sender) ||
        !queue_fits(env->auth_user, sizeof env->auth_user)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(e.sender, env->sender, strlen(env->sender) + 1);
    memcpy(e.auth_user, env->auth_user, strlen(env->auth_user) + 1);
    if (!(e.rcpts = calloc(n_rcpts, sizeof *e.rcpts))) {
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; i < n_rcpts; i++) {
        struct queue_rcpt *r = &e.rcpts[i];
        if (!queue_fits(rcpts[i].address, sizeof rcpts[i].address))
            break;      /* queue_entry_ok refuses the empty address left */
        memcpy(r->address, rcpts[i].address, strlen(rcpts[i].address) + 1);
        r->notify = rcpts[i].notify;
        r->orcpt = rcpts[i].orcpt;      /* borrowed */
        r->state = QUEUE_PENDING;
        r->next_attempt = e.created;
    }
    if (premade)
        memcpy(e.id, id, QUEUE_ID_LEN + 1);
    else
        queue_new_id(e.id);

    int rc = -1;
    if (!queue_entry_ok(&e)) {
        errno = EINVAL;
    } else if (queue_make_dirs(cfg) == 0) {
        for (int tries = 0;; tries++) {
            rc = queue_put_files(cfg, &e, prefix, msg_fd);
            if (rc == 0 || errno != EEXIST || premade ||
                tries + 1 >= QUEUE_PUT_TRIES)
                break;
            queue_new_id(e.id);     /* taken: by chance only */
        }
    }
    int saved = errno;
    free(e.rcpts);
    if (rc == 0)
        memcpy(id, e.id, QUEUE_ID_LEN + 1);
    errno = saved;
    return rc;
}

int queue_update(const struct config *cfg, const struct queue_entry *e)
{
    char tmp[PATH_MAX], env[PATH_MAX], env_dir[PATH_MAX], name[QUEUE_ID_LEN + 16];
    struct queue_buf b = {0};
    struct stat st;

    if (!e || !queue_entry_ok(e)) {
        errno = EINVAL;
        return -1;
    }
    snprintf(name, sizeof name, "%s.env.XXXXXX", e->id);
    if (queue_path(tmp, cfg, "tmp", name) < 0 ||
        queue_path(env, cfg, "env", e->id) < 0 ||
        queue_path(env_dir, cfg, "env", NULL) < 0 || queue_format(&b, e) < 0) {
        int saved = errno;
        free(b.p);
        errno = saved;
        return -1;
    }
    int rc = -1, lock = queue_lock(cfg, e->id);
    if (lock < 0)
        goto out;
    if (stat(env, &st) < 0 || queue_make_dirs(cfg) < 0 ||
        queue_write_file(tmp, false, &b, cfg->data_dir) < 0)
        goto out;
    if (rename(tmp, env) < 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        goto out;
    }
    rc = file_fsync_dir(env_dir);
out:;
    int saved = errno;
    if (lock >= 0)
        close(lock);
    free(b.p);
    errno = saved;
    return rc;
}

int queue_remove(const struct config *cfg, const char *id)
{
    char msg[PATH_MAX], env[PATH_MAX], msg_dir[PATH_MAX], env_dir[PATH_MAX];

    if (!queue_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    if (queue_path(msg, cfg, "msg", id) < 0 || queue_path(env, cfg, "env", id) < 0 ||
        queue_path(msg_dir, cfg, "msg", NULL) < 0 ||
        queue_path(env_dir, cfg, "env", NULL) < 0)
        return -1;
    int lock = queue_lock(cfg, id);
    if (lock < 0 && errno != ENOENT)
        return -1;

    int rc = 0;
    bool had_env = unlink(env) == 0;
    if (!had_env && errno != ENOENT)
        rc = -1;
    else if (had_env && file_fsync_dir(env_dir) < 0)
        rc = -1;
    /* the message goes only once its envelope is gone for good */
    bool had_msg = false;
    if (rc == 0) {
        had_msg = unlink(msg) == 0;
        if (!had_msg && errno != ENOENT)
            rc = -1;
        else if (had_msg && file_fsync_dir(msg_dir) < 0)
            rc = -1;
    }
    int saved = errno;
    if (lock >= 0)
        close(lock);
    errno = saved;
    if (rc == 0 && !had_env && !had_msg) {
        errno = ENOENT;
        return -1;
    }
    return rc;
}

static int queue_cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

int queue_list(const struct config *cfg,
               int (*fn)(const char *id, void *arg), void *arg)
{
    char path[PATH_MAX];
    char (*ids)[QUEUE_ID_LEN + 1] = NULL;
    size_t n = 0, cap = 0;

    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (queue_path(path, cfg, "env", NULL) < 0)
        return -1;
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int err = 0;
    for (;;) {
        errno = 0;
        if (!(de = readdir(d))) {
            err = errno;
            break;
        }
        if (!queue_id_valid(de->d_name))
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 64;
            void *p = realloc(ids, c * sizeof *ids);
            if (!p) {
                err = ENOMEM;
                break;
            }
            ids = p;
            cap = c;
        }
        memcpy(ids[n++], de->d_name, QUEUE_ID_LEN + 1);
    }
    closedir(d);
    if (err) {
        free(ids);
        errno = err;
        return -1;
    }
    if (n)
        qsort(ids, n, sizeof *ids, queue_cmp_id);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(ids[i], arg);
    free(ids);
    return rc;
}

/* True when the entry at dir_fd/name is a regular file last modified before
 * cutoff. */
static bool queue_stale(int dir_fd, const char *name, time_t cutoff)
{
    struct stat st;
    return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISREG(st.st_mode) && st.st_mtime <= cutoff;
}

int queue_sweep(const struct config *cfg, unsigned min_age)
{
    char path[PATH_MAX], env[PATH_MAX];
    time_t cutoff = time(NULL) - (time_t)min_age;
    int removed = 0;
    DIR *d;
    struct dirent *de;

    if (queue_path(path, cfg, "tmp", NULL) < 0)
        return -1;
    if ((d = opendir(path))) {
        while ((de = readdir(d))) {
            if (de->d_name[0] != '.' && queue_stale(dirfd(d), de->d_name, cutoff) &&
                unlinkat(dirfd(d), de->d_name, 0) == 0)
                removed++;
        }
        closedir(d);
    } else if (errno != ENOENT) {
        return -1;
    }

    if (queue_path(path, cfg, "msg", NULL) < 0)
        return -1;
    if (!(d = opendir(path)))
        return errno == ENOENT ? removed : -1;
    /* a message without an envelope that old is not a queue_put in
     * progress: that renames the envelope in within a few fsyncs */
    int swept_msgs = 0;
    while ((de = readdir(d))) {
        struct stat st;
        if (queue_id_valid(de->d_name) && queue_stale(dirfd(d), de->d_name, cutoff) &&
            queue_path(env, cfg, "env", de->d_name) == 0 &&
            stat(env, &st) < 0 && errno == ENOENT &&
            unlinkat(dirfd(d), de->d_name, 0) == 0)
            swept_msgs++;
    }
    if (swept_msgs)
        fsync(dirfd(d));
    closedir(d);
    return removed + swept_msgs;
}
