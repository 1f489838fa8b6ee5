/* userdb.c — the users file in data_dir (Dovecot passwd-file compatible).
 *
 * Readers share one parsed copy per users file, indexed by a hash table and
 * reloaded when the file's identity (device, inode, size, mtime) changes.
 * Writers lock users.lock, rewrite the whole file into users.tmp keeping
 * every line they do not change byte for byte, fsync, and rename it over
 * users. Nothing here ever prints a hash or a secret. */
#include "auth/userdb.h"
#include "auth/password.h"
#include "auth/scram.h"
#include "core/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define USERDB_ADDRESS_MAX 255      /* octets, without the NUL */
#define USERDB_HASH_MAX 1024        /* longest stored hash put accepts */
#define USERDB_SECRET_MAX 1024      /* longest APOP secret */
#define USERDB_FILE_MAX (1u << 30)  /* refuse to load a larger users file */
#define USERDB_CACHE_MAX 8          /* users files cached at once */
#define USERDB_FIELDS 8             /* address:hash:uid:gid:gecos:home:shell:extra */

/* ---- addresses ---------------------------------------------------------- */

/* Length of the valid, non-control UTF-8 sequence at s (at most n octets),
 * 0 when it is not one. */
static size_t userdb_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp, min;

    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2; cp = s[0] & 0x1F; min = 0xA0;      /* no C1 controls */
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3; cp = s[0] & 0x0F; min = 0x800;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4; cp = s[0] & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* One side of an address: not empty, no leading '.', no "..", no '/', ':',
 * space or control; 8-bit only when allowed and valid UTF-8. */
static bool userdb_part_ok(const char *part, size_t len, bool allow_8bit)
{
    const unsigned char *s = (const unsigned char *)part;

    if (len == 0 || s[0] == '.')
        return false;
    for (size_t i = 0; i < len;) {
        if (s[i] >= 0x80) {
            size_t n = allow_8bit ? userdb_utf8_len(s + i, len - i) : 0;
            if (n == 0)
                return false;
            i += n;
            continue;
        }
        if (s[i] <= 0x20 || s[i] == 0x7F || s[i] == '/' || s[i] == ':')
            return false;
        if (s[i] == '.' && i + 1 < len && s[i + 1] == '.')
            return false;
        i++;
    }
    return true;
}

bool userdb_canonical(const char *address, char *out, size_t outsz)
{
    if (!address || !out)
        return false;
    size_t len = strnlen(address, USERDB_ADDRESS_MAX + 1);
    if (len > USERDB_ADDRESS_MAX || len + 1 > outsz)
        return false;
    const char *at = memchr(address, '@', len);
    if (!at || memchr(at + 1, '@', len - (size_t)(at + 1 - address)))
        return false;
    size_t local_len = (size_t)(at - address);
    if (!userdb_part_ok(address, local_len, true) ||
        !userdb_part_ok(at + 1, len - local_len - 1, false))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = address[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
    return true;
}

/* ---- small helpers ------------------------------------------------------ */

/* Writes "data_dir/name" into buf (PATH_MAX). */
static int userdb_path(char *buf, const char *data_dir, const char *name)
{
    if (!data_dir || !*data_dir) {
        errno = EINVAL;
        return -1;
    }
    int n = snprintf(buf, PATH_MAX, "%s/%s", data_dir, name);
    if (n < 0 || n >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static void userdb_free_secret(char *s)
{
    if (s) {
        password_wipe(s, strlen(s));
        free(s);
    }
}

/* A growable byte buffer (owns p). */
struct userdb_buf {
    char *p;
    size_t len, cap;
};

static int userdb_buf_add(struct userdb_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = malloc(cap);
        if (!p)
            return -1;
        if (b->p) {
            memcpy(p, b->p, b->len);
            password_wipe(b->p, b->cap);   /* it holds hashes */
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int userdb_buf_str(struct userdb_buf *b, const char *s)
{
    return userdb_buf_add(b, s, strlen(s));
}

static void userdb_buf_free(struct userdb_buf *b)
{
    if (b->p) {
        password_wipe(b->p, b->cap);
        free(b->p);
    }
    memset(b, 0, sizeof *b);
}

/* base64 of a secret, NUL-terminated; caller frees with userdb_free_secret. */
static char *userdb_b64_encode(const char *secret)
{
    size_t n = strlen(secret);
    char *out = malloc(4 * ((n + 2) / 3) + 1);

    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)secret,
                        (int)n);
    return out;
}

/* The secret from its base64 (len octets); NULL when malformed, empty or
 * holding a NUL. Caller frees with userdb_free_secret. */
static char *userdb_b64_decode(const char *s, size_t len)
{
    if (len == 0 || len % 4 != 0 || len > 4 * ((USERDB_SECRET_MAX + 2) / 3))
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n >= 0)
        n -= (s[len - 1] == '=') + (s[len - 2] == '=');
    if (n <= 0 || memchr(out, '\0', (size_t)n)) {
        password_wipe(out, len / 4 * 3 + 1);
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return (char *)out;
}

/* ---- lines -------------------------------------------------------------- */

/* A users-file line split at ':' into at most USERDB_FIELDS views (the last
 * one is the rest of the line). Views point into the line. */
struct userdb_fields {
    const char *f[USERDB_FIELDS];
    size_t len[USERDB_FIELDS];
    int n;
};

static void userdb_split(const char *line, size_t len, struct userdb_fields *fs)
{
    fs->n = 0;
    for (;;) {
        const char *colon = fs->n < USERDB_FIELDS - 1 ? memchr(line, ':', len)
                                                       : NULL;
        size_t flen = colon ? (size_t)(colon - line) : len;
        fs->f[fs->n] = line;
        fs->len[fs->n] = flen;
        fs->n++;
        if (!colon)
            return;
        line += flen + 1;
        len -= flen + 1;
    }
}

/* Splits line (len octets, no line end) and puts the canonical address in
 * canon (USERDB_ADDRESS_MAX + 1). True when it is a user line. */
static bool userdb_user_line(const char *line, size_t len,
                             struct userdb_fields *fs, char *canon)
{
    char raw[USERDB_ADDRESS_MAX + 1];

    if (len == 0 || line[0] == '#')
        return false;
    userdb_split(line, len, fs);
    if (fs->n < 2 || fs->len[0] > USERDB_ADDRESS_MAX ||
        memchr(fs->f[0], '\0', fs->len[0]))
        return false;
    memcpy(raw, fs->f[0], fs->len[0]);
    raw[fs->len[0]] = '\0';
    return userdb_canonical(raw, canon, USERDB_ADDRESS_MAX + 1);
}

/* Length of a line without its "\n" or "\r\n" end. */
static size_t userdb_line_len(const char *line, size_t with_end)
{
    size_t n = with_end;
    if (n && line[n - 1] == '\n')
        n--;
    if (n && line[n - 1] == '\r')
        n--;
    return n;
}

/* Length of the line at line, with its "\n" when it has one. */
static size_t userdb_next_line(const char *line, const char *end)
{
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    return nl ? (size_t)(nl - line) + 1 : (size_t)(end - line);
}

/* ---- reading the file --------------------------------------------------- */

/* Reads path into *buf (NUL-terminated, caller frees) and its identity into
 * *st. 0 read, 1 no such file, -1 error (errno). */
static int userdb_read_file(const char *path, char **buf, size_t *len,
                            struct stat *st)
{
    /* O_NONBLOCK: a FIFO in its place must not hang a worker */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;

    char *p = NULL;
    size_t n = 0, cap = 0;
    if (fstat(fd, st) < 0)
        goto fail;
    if (!S_ISREG(st->st_mode)) {
        errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if ((uintmax_t)st->st_size >= USERDB_FILE_MAX) {
        errno = EFBIG;
        goto fail;
    }
    cap = (size_t)st->st_size + 2;  /* room to see EOF without growing */
    if (!(p = malloc(cap)))
        goto fail;
    for (;;) {
        if (n + 1 >= cap) {         /* the file grew while we read it */
            if (cap >= USERDB_FILE_MAX) {
                errno = EFBIG;
                goto fail;
            }
            char *q = realloc(p, cap * 2);
            if (!q)
                goto fail;
            p = q;
            cap *= 2;
        }
        ssize_t r = read(fd, p + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    p[n] = '\0';
    *buf = p;
    *len = n;
    return 0;
fail:;
    int saved = errno;
    if (p) {
        password_wipe(p, cap);
        free(p);
    }
    close(fd);
    errno = saved;
    return -1;
}

/* ---- the parsed table --------------------------------------------------- */

struct userdb_user {
    char *address;      /* canonical */
    char *hash;
    char *apop;         /* decoded secret or NULL */
    char *scram_sha1;   /* valid SCRAM stored form or NULL */
    char *scram_sha256;
};

struct userdb_table {
    struct userdb_user *users;  /* file order, first of duplicates only */
    size_t n, cap;
    size_t *slots;              /* open addressing: index + 1, 0 = empty */
    size_t nslots;              /* power of two, > 2 * n */
    size_t n_apop;              /* users with an APOP secret */
};

static uint64_t userdb_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;      /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static const struct userdb_user *userdb_table_find(const struct userdb_table *t,
                                                   const char *address)
{
    if (!t->nslots)
        return NULL;
    size_t mask = t->nslots - 1;
    for (size_t i = userdb_hash(address) & mask; t->slots[i]; i = (i + 1) & mask) {
        const struct userdb_user *u = &t->users[t->slots[i] - 1];
        if (strcmp(u->address, address) == 0)
            return u;
    }
    return NULL;
}

/* Puts user k into the slots (which have room). */
static void userdb_table_slot(struct userdb_table *t, size_t k)
{
    size_t mask = t->nslots - 1;
    size_t i = userdb_hash(t->users[k].address) & mask;
    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = k + 1;
}

/* Rebuilds the slots, sized for at least n users at half load. */
static int userdb_table_index(struct userdb_table *t, size_t n)
{
    size_t nslots = 16;
    while (nslots <= 2 * n)
        nslots *= 2;
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return -1;
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    for (size_t k = 0; k < t->n; k++)
        userdb_table_slot(t, k);
    return 0;
}

static void userdb_user_free(struct userdb_user *u)
{
    free(u->address);
    userdb_free_secret(u->hash);
    userdb_free_secret(u->apop);
    userdb_free_secret(u->scram_sha1);
    userdb_free_secret(u->scram_sha256);
}

static void userdb_table_free(struct userdb_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        userdb_user_free(&t->users[i]);
    free(t->users);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* The next space-separated token of extra (len octets) from *i on: its
 * start in *tok and its length, 0 at the end. */
static size_t userdb_next_token(const char *extra, size_t len, size_t *i,
                                const char **tok)
{
    while (*i < len && (extra[*i] == ' ' || extra[*i] == '\t'))
        (*i)++;
    size_t start = *i;
    while (*i < len && extra[*i] != ' ' && extra[*i] != '\t')
        (*i)++;
    *tok = extra + start;
    return *i - start;
}

static bool userdb_token_is(const char *tok, size_t len, const char *key)
{
    size_t klen = strlen(key);
    return len >= klen && memcmp(tok, key, klen) == 0;
}

/* The value of the first non-empty key= pair of the extra field (key with
 * its '='), its length in *vlen; NULL when none. */
static const char *userdb_extra_value(const struct userdb_fields *fs,
                                      const char *key, size_t *vlen)
{
    if (fs->n < USERDB_FIELDS)
        return NULL;
    const char *extra = fs->f[USERDB_FIELDS - 1], *tok;
    size_t len = fs->len[USERDB_FIELDS - 1], i = 0, n, klen = strlen(key);
    while ((n = userdb_next_token(extra, len, &i, &tok)) > 0) {
        if (n > klen && userdb_token_is(tok, n, key)) {
            *vlen = n - klen;
            return tok + klen;
        }
    }
    return NULL;
}

/* The APOP secret from the extra field, NULL when none (or malformed). */
static char *userdb_extra_apop(const struct userdb_fields *fs)
{
    size_t n;
    const char *v = userdb_extra_value(fs, "apop=", &n);
    return v ? userdb_b64_decode(v, n) : NULL;
}

/* A copy of the SCRAM stored form under key, NULL when none or invalid
 * (*oom set when memory ran out). */
static char *userdb_extra_scram(const struct userdb_fields *fs, const char *key,
                                enum scram_hash h, bool *oom)
{
    struct scram_creds creds;
    size_t n;
    const char *v = userdb_extra_value(fs, key, &n);

    if (!v || n >= SCRAM_CREDS_MAX || memchr(v, '\0', n))
        return NULL;
    char *copy = strndup(v, n);
    if (!copy) {
        *oom = true;
        return NULL;
    }
    bool ok = scram_parse(h, copy, &creds);
    password_wipe(&creds, sizeof creds);
    if (!ok) {
        userdb_free_secret(copy);
        return NULL;
    }
    return copy;
}

/* Appends the user of a split line. -1 out of memory. */
static int userdb_table_add(struct userdb_table *t, const char *canon,
                            const struct userdb_fields *fs)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct userdb_user *u = realloc(t->users, cap * sizeof *u);
        if (!u)
            return -1;
        t->users = u;
        t->cap = cap;
    }
    struct userdb_user *u = &t->users[t->n];
    bool oom = false;
    u->address = strdup(canon);
    u->hash = strndup(fs->f[1], fs->len[1]);
    u->apop = userdb_extra_apop(fs);
    u->scram_sha1 = userdb_extra_scram(fs, "scram-sha-1=", SCRAM_SHA1, &oom);
    u->scram_sha256 = userdb_extra_scram(fs, "scram-sha-256=", SCRAM_SHA256,
                                         &oom);
    if (!u->address || !u->hash || oom) {
        userdb_user_free(u);
        return -1;
    }
    if (u->apop)
        t->n_apop++;
    t->n++;
    return 0;
}

/* Parses a users file into t (empty on entry). -1 out of memory. */
static int userdb_table_parse(struct userdb_table *t, const char *buf, size_t len)
{
    char canon[USERDB_ADDRESS_MAX + 1];
    struct userdb_fields fs;
    size_t linelen;

    if (userdb_table_index(t, 0) < 0)
        return -1;
    for (const char *line = buf; line < buf + len; line += linelen) {
        linelen = userdb_next_line(line, buf + len);
        if (!userdb_user_line(line, userdb_line_len(line, linelen), &fs, canon))
            continue;
        if (memchr(fs.f[1], '\0', fs.len[1]) || userdb_table_find(t, canon))
            continue;           /* a NUL in the hash, or a duplicate */
        if (2 * (t->n + 1) >= t->nslots && userdb_table_index(t, 2 * t->n) < 0)
            return -1;
        if (userdb_table_add(t, canon, &fs) < 0)
            return -1;
        userdb_table_slot(t, t->n - 1);
    }
    return 0;
}

/* Reads and parses a users file. 0 ok, 1 no file (t empty), -1 error. */
static int userdb_table_load(const char *path, struct userdb_table *t,
                             struct stat *st)
{
    char *buf = NULL;
    size_t len = 0;

    memset(t, 0, sizeof *t);
    int rc = userdb_read_file(path, &buf, &len, st);
    if (rc < 0)
        return -1;
    int parsed = rc == 0 ? userdb_table_parse(t, buf, len)
                         : userdb_table_index(t, 0);
    if (buf) {
        password_wipe(buf, len);
        free(buf);
    }
    if (parsed < 0) {
        userdb_table_free(t);
        errno = ENOMEM;
        return -1;
    }
    return rc;
}

/* ---- the cache ---------------------------------------------------------- */

struct userdb_cached {
    char *path;                 /* data_dir/users */
    bool present;               /* false: the file did not exist */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    uint64_t used;              /* last use, for eviction */
    struct userdb_table table;
};

static pthread_mutex_t userdb_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct userdb_cached *userdb_cache[USERDB_CACHE_MAX];
static uint64_t userdb_clock;

static void userdb_cached_free(struct userdb_cached *c)
{
    if (c) {
        userdb_table_free(&c->table);
        free(c->path);
        free(c);
    }
}

/* The slot of path in the cache, or -1. Called with userdb_mutex held. */
static int userdb_cache_slot(const char *path)
{
    for (int i = 0; i < USERDB_CACHE_MAX; i++)
        if (userdb_cache[i] && strcmp(userdb_cache[i]->path, path) == 0)
            return i;
    return -1;
}

/* A free slot, or the least recently used one emptied. */
static int userdb_cache_victim(void)
{
    int victim = 0;
    for (int i = 0; i < USERDB_CACHE_MAX; i++) {
        if (!userdb_cache[i])
            return i;
        if (userdb_cache[i]->used < userdb_cache[victim]->used)
            victim = i;
    }
    userdb_cached_free(userdb_cache[victim]);
    userdb_cache[victim] = NULL;
    return victim;
}

static bool userdb_cached_fresh(const struct userdb_cached *c,
                                const struct stat *st)
{
    if (!st)
        return !c->present;
    return c->present && c->dev == st->st_dev && c->ino == st->st_ino &&
           c->size == st->st_size && c->mtim.tv_sec == st->st_mtim.tv_sec &&
           c->mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Forgets the cached copy of path. */
static void userdb_cache_drop(const char *path)
{
    pthread_mutex_lock(&userdb_mutex);
    int i = userdb_cache_slot(path);
    if (i >= 0) {
        userdb_cached_free(userdb_cache[i]);
        userdb_cache[i] = NULL;
    }
    pthread_mutex_unlock(&userdb_mutex);
}

/* The up-to-date parsed copy of path, NULL when unreadable. Called with
 * userdb_mutex held; the result stays valid until it is released. */
static struct userdb_cached *userdb_cache_get(const char *path)
{
    struct stat st;
    bool exists = stat(path, &st) == 0;
    bool broken = !exists && errno != ENOENT;
    int i = userdb_cache_slot(path);

    if (broken)
        goto fail;
    if (i >= 0 && userdb_cached_fresh(userdb_cache[i], exists ? &st : NULL)) {
        userdb_cache[i]->used = ++userdb_clock;
        return userdb_cache[i];
    }

    struct userdb_cached *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path)))
        goto fail_free;
    memset(&st, 0, sizeof st);
    int rc = userdb_table_load(path, &c->table, &st);
    if (rc < 0)
        goto fail_free;
    c->present = rc == 0;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->size = st.st_size;
    c->mtim = st.st_mtim;
    c->used = ++userdb_clock;
    if (i < 0)
        i = userdb_cache_victim();
    userdb_cached_free(userdb_cache[i]);
    userdb_cache[i] = c;
    return c;

fail_free:
    if (c) {
        free(c->path);
        free(c);
    }
fail:
    if (i >= 0) {
        userdb_cached_free(userdb_cache[i]);
        userdb_cache[i] = NULL;
    }
    return NULL;
}

/* ---- reading API -------------------------------------------------------- */

/* A copy of s, or NULL for NULL; *oom set when memory ran out. */
static char *userdb_dup(const char *s, bool *oom)
{
    char *copy = s ? strdup(s) : NULL;
    if (s && !copy)
        *oom = true;
    return copy;
}

static int userdb_entry_copy(const struct userdb_user *u, struct userdb_entry *out)
{
    bool oom = false;
    out->address = userdb_dup(u->address, &oom);
    out->hash = userdb_dup(u->hash, &oom);
    out->apop_secret = userdb_dup(u->apop, &oom);
    out->scram_sha1 = userdb_dup(u->scram_sha1, &oom);
    out->scram_sha256 = userdb_dup(u->scram_sha256, &oom);
    if (oom) {
        userdb_entry_free(out);
        errno = ENOMEM;
        return -1;
    }
    return 1;
}

int userdb_lookup(const char *data_dir, const char *address,
                  struct userdb_entry *out)
{
    char path[PATH_MAX], canon[USERDB_ADDRESS_MAX + 1];

    if (!out) {
        errno = EINVAL;
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (userdb_path(path, data_dir, "users") < 0)
        return -1;
    if (!userdb_canonical(address, canon, sizeof canon))
        return 0;

    pthread_mutex_lock(&userdb_mutex);
    int rc = -1;
    struct userdb_cached *c = userdb_cache_get(path);
    if (c) {
        const struct userdb_user *u = userdb_table_find(&c->table, canon);
        rc = u ? userdb_entry_copy(u, out) : 0;
    }
    int saved = errno;
    pthread_mutex_unlock(&userdb_mutex);
    errno = saved;
    return rc;
}

bool userdb_has_apop(const char *data_dir)
{
    char path[PATH_MAX];
    if (userdb_path(path, data_dir, "users") < 0)
        return false;
    pthread_mutex_lock(&userdb_mutex);
    struct userdb_cached *c = userdb_cache_get(path);
    bool has = c && c->table.n_apop > 0;
    pthread_mutex_unlock(&userdb_mutex);
    return has;
}

void userdb_entry_free(struct userdb_entry *e)
{
    if (!e)
        return;
    free(e->address);
    userdb_free_secret(e->hash);
    userdb_free_secret(e->apop_secret);
    userdb_free_secret(e->scram_sha1);
    userdb_free_secret(e->scram_sha256);
    memset(e, 0, sizeof *e);
}

int userdb_list(const char *data_dir, void (*fn)(const char *address, void *arg),
                void *arg)
{
    char path[PATH_MAX];
    struct userdb_table t;
    struct stat st;

    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (userdb_path(path, data_dir, "users") < 0)
        return -1;
    if (userdb_table_load(path, &t, &st) < 0)
        return -1;
    for (size_t i = 0; i < t.n; i++)
        fn(t.users[i].address, arg);
    userdb_table_free(&t);
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

/* What a rewrite does to the line of one user. */
struct userdb_change {
    const char *canon;      /* the user */
    const char *hash;       /* NULL: delete the user */
    const char *apop_b64;   /* NULL: no APOP secret */
    const char *scram_sha1; /* NULL: no SCRAM-SHA-1 credentials */
    const char *scram_sha256;
};

/* Creates dir and its missing parents with mode 0700. */
static int userdb_mkdirs(const char *dir)
{
    char tmp[PATH_MAX];
    size_t len = strlen(dir);
    struct stat st;

    if (len >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -1;
        tmp[i] = c;
    }
    if (stat(dir, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Opens and exclusively locks data_dir/users.lock. The fd, or -1. */
static int userdb_lock(const char *data_dir)
{
    return file_lock(data_dir, "users.lock");
}

/* Writes content to data_dir/users.tmp (0600), fsyncs it, renames it over
 * data_dir/users and fsyncs the directory. */
static int userdb_replace_file(const char *data_dir, const struct userdb_buf *b)
{
    return file_replace(data_dir, "users", "users.tmp", b->p ? b->p : "",
                        b->len);
}

/* True for the extra keys userdb_put sets, which a rewrite replaces. */
static bool userdb_own_token(const char *tok, size_t len)
{
    return userdb_token_is(tok, len, "apop=") ||
           userdb_token_is(tok, len, "scram-sha-1=") ||
           userdb_token_is(tok, len, "scram-sha-256=");
}

/* Appends the extra-field tokens of old (other than our own) to b, each
 * preceded by a space. */
static int userdb_keep_extra(struct userdb_buf *b, const struct userdb_fields *old)
{
    if (!old || old->n < USERDB_FIELDS)
        return 0;
    const char *s = old->f[USERDB_FIELDS - 1], *tok;
    size_t len = old->len[USERDB_FIELDS - 1], i = 0, n;
    while ((n = userdb_next_token(s, len, &i, &tok)) > 0) {
        if (userdb_own_token(tok, n))
            continue;
        if (userdb_buf_str(b, " ") < 0 || userdb_buf_add(b, tok, n) < 0)
            return -1;
    }
    return 0;
}

/* Appends " key=value" to b when value is not NULL. */
static int userdb_add_pair(struct userdb_buf *b, const char *key,
                           const char *value)
{
    if (!value)
        return 0;
    if (userdb_buf_str(b, " ") < 0 || userdb_buf_str(b, key) < 0 ||
        userdb_buf_str(b, value) < 0)
        return -1;
    return 0;
}

/* Appends the new line for ch (with its "\n"), keeping the uid, gid, gecos,
 * home, shell and other extra fields of the user's old line when given. */
static int userdb_format_line(struct userdb_buf *b, const struct userdb_change *ch,
                              const struct userdb_fields *old)
{
    struct userdb_buf extra = {0};
    bool middle = false;
    int rc = -1;

    for (int i = 2; old && i < old->n && i < USERDB_FIELDS - 1; i++)
        middle = middle || old->len[i] > 0;
    if (userdb_keep_extra(&extra, old) < 0 ||
        userdb_add_pair(&extra, "apop=", ch->apop_b64) < 0 ||
        userdb_add_pair(&extra, "scram-sha-1=", ch->scram_sha1) < 0 ||
        userdb_add_pair(&extra, "scram-sha-256=", ch->scram_sha256) < 0)
        goto out;

    if (userdb_buf_str(b, ch->canon) < 0 || userdb_buf_str(b, ":") < 0 ||
        userdb_buf_str(b, ch->hash) < 0)
        goto out;
    if (middle || extra.len) {
        for (int i = 2; i < USERDB_FIELDS - 1; i++) {
            bool have = old && i < old->n;
            if (userdb_buf_str(b, ":") < 0 ||
                (have && userdb_buf_add(b, old->f[i], old->len[i]) < 0))
                goto out;
        }
    }
    if (extra.len && (userdb_buf_str(b, ":") < 0 ||
                      userdb_buf_add(b, extra.p, extra.len) < 0))
        goto out;
    rc = userdb_buf_str(b, "\n");
out:
    userdb_buf_free(&extra);
    return rc;
}

/* Builds the new file content from the current one (len octets). *found
 * tells whether the user had a line. */
static int userdb_rewrite(struct userdb_buf *b, const char *cur, size_t len,
                          const struct userdb_change *ch, bool *found)
{
    char canon[USERDB_ADDRESS_MAX + 1];
    struct userdb_fields fs;

    size_t linelen;

    *found = false;
    for (const char *line = cur; line < cur + len; line += linelen) {
        linelen = userdb_next_line(line, cur + len);
        if (userdb_user_line(line, userdb_line_len(line, linelen), &fs, canon) &&
            strcmp(canon, ch->canon) == 0) {
            if (!*found && ch->hash && userdb_format_line(b, ch, &fs) < 0)
                return -1;
            *found = true;
            continue;
        }
        if (userdb_buf_add(b, line, linelen) < 0)
            return -1;
    }
    if (*found || !ch->hash)
        return 0;
    if (b->len && b->p[b->len - 1] != '\n' && userdb_buf_str(b, "\n") < 0)
        return -1;
    return userdb_format_line(b, ch, NULL);
}

/* Applies ch under the lock. 0 done, 1 deleting a user that is not there,
 * -1 error (errno). */
static int userdb_edit(const char *data_dir, const struct userdb_change *ch)
{
    char path[PATH_MAX];
    struct userdb_buf out = {0};
    struct stat st;
    char *cur = NULL;
    size_t len = 0;
    bool found;
    int rc = -1;

    if (userdb_path(path, data_dir, "users") < 0 || userdb_mkdirs(data_dir) < 0)
        return -1;
    int lock = userdb_lock(data_dir);
    if (lock < 0)
        return -1;
    int r = userdb_read_file(path, &cur, &len, &st);
    if (r < 0)
        goto done;
    if (userdb_rewrite(&out, r == 0 ? cur : "", len, ch, &found) < 0) {
        errno = ENOMEM;
        goto done;
    }
    if (!found && !ch->hash) {
        rc = 1;
        goto done;
    }
    rc = userdb_replace_file(data_dir, &out);
done:;
    int saved = errno;
    if (cur) {
        password_wipe(cur, len);
        free(cur);
    }
    userdb_buf_free(&out);
    userdb_cache_drop(path);
    close(lock);
    errno = saved;
    return rc;
}

/* A hash fit for the file: one field, printable, not a plaintext scheme. */
static bool userdb_hash_ok(const char *hash)
{
    size_t len = strnlen(hash, USERDB_HASH_MAX + 1);

    if (len == 0 || len > USERDB_HASH_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)hash[i];
        if (c <= 0x20 || c >= 0x7F || c == ':')
            return false;
    }
    return strncasecmp(hash, "{PLAIN", 6) != 0 &&
           strncasecmp(hash, "{CLEARTEXT}", 11) != 0;
}

/* A SCRAM stored form fit for the file: NULL, or one scram_parse takes. */
static bool userdb_scram_ok(const char *stored, enum scram_hash h)
{
    struct scram_creds creds;

    if (!stored)
        return true;
    bool ok = scram_parse(h, stored, &creds);
    password_wipe(&creds, sizeof creds);
    return ok;
}

static bool userdb_secrets_ok(const struct userdb_secrets *sec)
{
    const char *apop = sec->apop_secret;

    return sec->hash && userdb_hash_ok(sec->hash) &&
           (!apop || (*apop && strlen(apop) <= USERDB_SECRET_MAX)) &&
           userdb_scram_ok(sec->scram_sha1, SCRAM_SHA1) &&
           userdb_scram_ok(sec->scram_sha256, SCRAM_SHA256);
}

int userdb_put(const char *data_dir, const char *address,
               const struct userdb_secrets *sec)
{
    char canon[USERDB_ADDRESS_MAX + 1];

    if (!userdb_canonical(address, canon, sizeof canon) || !sec ||
        !userdb_secrets_ok(sec)) {
        errno = EINVAL;
        return -1;
    }
    struct userdb_change ch = {
        .canon = canon, .hash = sec->hash,
        .scram_sha1 = sec->scram_sha1, .scram_sha256 = sec->scram_sha256,
    };
    char *b64 = NULL;
    if (sec->apop_secret && !(b64 = userdb_b64_encode(sec->apop_secret))) {
        errno = ENOMEM;
        return -1;
    }
    ch.apop_b64 = b64;
    int rc = userdb_edit(data_dir, &ch);
    int saved = errno;
    userdb_free_secret(b64);
    errno = saved;
    return rc;
}

int userdb_del(const char *data_dir, const char *address)
{
    char canon[USERDB_ADDRESS_MAX + 1];

    if (!userdb_canonical(address, canon, sizeof canon)) {
        errno = EINVAL;
        return -1;
    }
    struct userdb_change ch = { .canon = canon };
    return userdb_edit(data_dir, &ch);
}
