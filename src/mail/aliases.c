/* aliases.c — the aliases file in data_dir ("ALIAS: TARGET, TARGET...").
 *
 * Readers share one parsed copy per aliases file, indexed by a hash table
 * and reloaded when the file's identity (device, inode, size, mtime)
 * changes. Writers lock aliases.lock, rewrite the whole file into
 * aliases.tmp keeping every line they do not change byte for byte, fsync,
 * and rename it over aliases. The same pattern as auth/userdb.c. */
#include "mail/aliases.h"
#include "core/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALIASES_FILE_MAX (1u << 30)  /* refuse to load a larger file */
#define ALIASES_CACHE_MAX 8          /* aliases files cached at once */
#define ALIASES_LABEL_MAX 63         /* octets of one domain label */

/* ---- addresses ---------------------------------------------------------- */

/* Length of the valid, non-control UTF-8 sequence at s (at most n octets),
 * 0 when it is not one. */
static size_t aliases_utf8_len(const unsigned char *s, size_t n)
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

static bool aliases_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

/* RFC 5322 atext (ASCII part). */
static bool aliases_is_atext(unsigned char c)
{
    return aliases_is_alnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* A dot-atom of atext and UTF-8 (RFC 6531 local part), len > 0. */
static bool aliases_local_ok(const char *part, size_t len)
{
    const unsigned char *s = (const unsigned char *)part;

    if (len == 0 || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        if (s[i] >= 0x80)
            n = aliases_utf8_len(s + i, len - i);
        else if (s[i] == '.')
            n = s[i + 1] == '.' ? 0 : 1;    /* s[len - 1] is not '.' */
        else if (!aliases_is_atext(s[i]))
            n = 0;
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Dot-separated labels of letters, digits and inner '-'. */
static bool aliases_domain_ok(const char *d, size_t len)
{
    size_t label = 0;

    if (len == 0)
        return false;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)d[i] : '.';
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            label = 0;
        } else if (aliases_is_alnum(c) || (c == '-' && label > 0)) {
            if (++label > ALIASES_LABEL_MAX)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* Copies s (len octets) into out, lowercasing ASCII letters from `from` on. */
static void aliases_copy_lower(char *out, const char *s, size_t len, size_t from)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        out[i] = (i >= from && c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
}

/* Checks local@domain (local may be empty when catch_all) and copies it
 * into out with ASCII letters lowercased: everywhere when lower_local, else
 * in the domain only. */
static bool aliases_canonical(const char *addr, char *out, size_t outsz,
                              bool catch_all, bool lower_local)
{
    if (!addr || !out)
        return false;
    size_t len = strnlen(addr, ALIASES_ADDRESS_MAX + 1);
    if (len > ALIASES_ADDRESS_MAX || len + 1 > outsz)
        return false;
    const char *at = memchr(addr, '@', len);
    if (!at)
        return false;
    size_t local_len = (size_t)(at - addr);
    bool local_ok = catch_all && local_len == 0 ? true
                                                : aliases_local_ok(addr, local_len);
    if (!local_ok || !aliases_domain_ok(at + 1, len - local_len - 1))
        return false;
    aliases_copy_lower(out, addr, len, lower_local ? 0 : local_len);
    return true;
}

bool aliases_canonical_alias(const char *alias, char *out, size_t outsz)
{
    /* a leading '#' (atext) would turn the alias line into a comment */
    return alias && alias[0] != '#' &&
           aliases_canonical(alias, out, outsz, true, true);
}

bool aliases_canonical_target(const char *target, char *out, size_t outsz)
{
    return aliases_canonical(target, out, outsz, false, false);
}

/* ---- small helpers ------------------------------------------------------ */

/* Writes "data_dir/name" into buf (PATH_MAX). */
static int aliases_path(char *buf, const char *data_dir, const char *name)
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

/* A growable byte buffer (owns p). */
struct aliases_buf {
    char *p;
    size_t len, cap;
};

static int aliases_buf_add(struct aliases_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int aliases_buf_str(struct aliases_buf *b, const char *s)
{
    return aliases_buf_add(b, s, strlen(s));
}

void aliases_free_targets(char **targets, size_t n)
{
    if (!targets)
        return;
    for (size_t i = 0; i < n; i++)
        free(targets[i]);
    free(targets);
}

/* Length of the line at line, with its "\n" when it has one. */
static size_t aliases_next_line(const char *line, const char *end)
{
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    return nl ? (size_t)(nl - line) + 1 : (size_t)(end - line);
}

/* Length of a line without its "\n" or "\r\n" end. */
static size_t aliases_line_len(const char *line, size_t with_end)
{
    size_t n = with_end;
    if (n && line[n - 1] == '\n')
        n--;
    if (n && line[n - 1] == '\r')
        n--;
    return n;
}

/* ---- reading the file --------------------------------------------------- */

/* Reads path into *buf (NUL-terminated, caller frees) and its identity into
 * *st. 0 read, 1 no such file, -1 error (errno). */
static int aliases_read_file(const char *path, char **buf, size_t *len,
                             struct stat *st)
{
    /* O_NONBLOCK: a FIFO in its place must not hang a worker */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;

    struct aliases_buf b = {0};
    char chunk[65536];
    if (fstat(fd, st) < 0)
        goto fail;
    if (!S_ISREG(st->st_mode)) {
        errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        if (b.len + (size_t)r >= ALIASES_FILE_MAX) {
            errno = EFBIG;
            goto fail;
        }
        if (aliases_buf_add(&b, chunk, (size_t)r) < 0)
            goto fail;
    }
    close(fd);
    if (!b.p && aliases_buf_add(&b, "", 0) < 0)
        return -1;
    *buf = b.p;
    *len = b.len;
    return 0;
fail:;
    int saved = errno;
    free(b.p);
    close(fd);
    errno = saved;
    return -1;
}

/* ---- lines -------------------------------------------------------------- */

static bool aliases_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* When line (len octets, no line end) is an alias line, puts the canonical
 * alias into canon (ALIASES_ADDRESS_MAX + 1) and the targets part into
 * *rest / *rest_len. */
static bool aliases_key(const char *line, size_t len, char *canon,
                        const char **rest, size_t *rest_len)
{
    char raw[ALIASES_ADDRESS_MAX + 1];
    size_t i = 0;

    while (i < len && aliases_is_blank(line[i]))
        i++;
    if (i == len || line[i] == '#')
        return false;
    const char *colon = memchr(line + i, ':', len - i);
    if (!colon)
        return false;
    size_t end = (size_t)(colon - line);
    while (end > i && aliases_is_blank(line[end - 1]))
        end--;
    if (end - i > ALIASES_ADDRESS_MAX)
        return false;
    memcpy(raw, line + i, end - i);
    raw[end - i] = '\0';
    *rest = colon + 1;
    *rest_len = len - (size_t)(colon + 1 - line);
    return strlen(raw) == end - i && aliases_canonical_alias(raw, canon,
                                                             ALIASES_ADDRESS_MAX + 1);
}

/* The next target token in s (len octets) from *i on: its length (0 at the
 * end) and *tok. */
static size_t aliases_next_token(const char *s, size_t len, size_t *i,
                                 const char **tok)
{
    while (*i < len && (s[*i] == ',' || aliases_is_blank(s[*i])))
        (*i)++;
    size_t start = *i;
    while (*i < len && s[*i] != ',' && !aliases_is_blank(s[*i]))
        (*i)++;
    *tok = s + start;
    return *i - start;
}

/* ---- the parsed table --------------------------------------------------- */

struct aliases_alias {
    char *alias;        /* canonical */
    char **targets;     /* canonical, no duplicates */
    size_t n;
};

struct aliases_table {
    struct aliases_alias *aliases;  /* file order, first of duplicates only */
    size_t n, cap;
    size_t *slots;                  /* open addressing: index + 1, 0 = empty */
    size_t nslots;                  /* power of two, > 2 * n */
};

static uint64_t aliases_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;      /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static const struct aliases_alias *aliases_table_find(const struct aliases_table *t,
                                                      const char *alias)
{
    if (!t->nslots)
        return NULL;
    size_t mask = t->nslots - 1;
    for (size_t i = aliases_hash(alias) & mask; t->slots[i]; i = (i + 1) & mask) {
        const struct aliases_alias *a = &t->aliases[t->slots[i] - 1];
        if (strcmp(a->alias, alias) == 0)
            return a;
    }
    return NULL;
}

/* Puts alias k into the slots (which have room). */
static void aliases_table_slot(struct aliases_table *t, size_t k)
{
    size_t mask = t->nslots - 1;
    size_t i = aliases_hash(t->aliases[k].alias) & mask;
    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = k + 1;
}

/* Rebuilds the slots, sized for at least n aliases at half load. */
static int aliases_table_index(struct aliases_table *t, size_t n)
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
        aliases_table_slot(t, k);
    return 0;
}

static void aliases_table_free(struct aliases_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->aliases[i].alias);
        aliases_free_targets(t->aliases[i].targets, t->aliases[i].n);
    }
    free(t->aliases);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static bool aliases_has(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* Fills a with the valid targets of rest (invalid ones and duplicates are
 * skipped, at most ALIASES_TARGETS_MAX). -1 out of memory. */
static int aliases_parse_targets(struct aliases_alias *a, const char *rest,
                                 size_t len)
{
    char raw[ALIASES_ADDRESS_MAX + 1], canon[ALIASES_ADDRESS_MAX + 1];
    const char *tok;
    size_t i = 0, n;

    while ((n = aliases_next_token(rest, len, &i, &tok)) > 0 &&
           a->n < ALIASES_TARGETS_MAX) {
        if (n > ALIASES_ADDRESS_MAX || memchr(tok, '\0', n))
            continue;
        memcpy(raw, tok, n);
        raw[n] = '\0';
        if (!aliases_canonical_target(raw, canon, sizeof canon) ||
            aliases_has(a->targets, a->n, canon))
            continue;
        char **grown = realloc(a->targets, (a->n + 1) * sizeof *grown);
        if (!grown)
            return -1;
        a->targets = grown;
        if (!(a->targets[a->n] = strdup(canon)))
            return -1;
        a->n++;
    }
    return 0;
}

/* Appends the alias canon with the targets of rest. -1 out of memory. */
static int aliases_table_add(struct aliases_table *t, const char *canon,
                             const char *rest, size_t rest_len)
{
    struct aliases_alias a = {0};

    if (!(a.alias = strdup(canon)) ||
        aliases_parse_targets(&a, rest, rest_len) < 0)
        goto fail;
    if (a.n == 0) {             /* no valid target: not an alias */
        free(a.alias);
        return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct aliases_alias *p = realloc(t->aliases, cap * sizeof *p);
        if (!p)
            goto fail;
        t->aliases = p;
        t->cap = cap;
    }
    if (2 * (t->n + 1) >= t->nslots && aliases_table_index(t, 2 * t->n + 2) < 0)
        goto fail;
    t->aliases[t->n++] = a;
    aliases_table_slot(t, t->n - 1);
    return 0;
fail:
    free(a.alias);
    aliases_free_targets(a.targets, a.n);
    return -1;
}

/* Parses an aliases file into t (empty on entry). -1 out of memory. */
static int aliases_table_parse(struct aliases_table *t, const char *buf,
                               size_t len)
{
    char canon[ALIASES_ADDRESS_MAX + 1];
    const char *rest;
    size_t linelen, rest_len;

    if (aliases_table_index(t, 0) < 0)
        return -1;
    for (const char *line = buf; line < buf + len; line += linelen) {
        linelen = aliases_next_line(line, buf + len);
        if (!aliases_key(line, aliases_line_len(line, linelen), canon, &rest,
                         &rest_len) || aliases_table_find(t, canon))
            continue;
        if (aliases_table_add(t, canon, rest, rest_len) < 0)
            return -1;
    }
    return 0;
}

/* Reads and parses an aliases file. 0 ok, 1 no file (t empty), -1 error. */
static int aliases_table_load(const char *path, struct aliases_table *t,
                              struct stat *st)
{
    char *buf = NULL;
    size_t len = 0;

    memset(t, 0, sizeof *t);
    int rc = aliases_read_file(path, &buf, &len, st);
    if (rc < 0)
        return -1;
    int parsed = rc == 0 ? aliases_table_parse(t, buf, len)
                         : aliases_table_index(t, 0);
    free(buf);
    if (parsed < 0) {
        aliases_table_free(t);
        errno = ENOMEM;
        return -1;
    }
    return rc;
}

/* ---- the cache ---------------------------------------------------------- */

struct aliases_cached {
    char *path;                 /* data_dir/aliases */
    bool present;               /* false: the file did not exist */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    uint64_t used;              /* last use, for eviction */
    struct aliases_table table;
};

static pthread_mutex_t aliases_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct aliases_cached *aliases_cache[ALIASES_CACHE_MAX];
static uint64_t aliases_clock;

static void aliases_cached_free(struct aliases_cached *c)
{
    if (c) {
        aliases_table_free(&c->table);
        free(c->path);
        free(c);
    }
}

/* The slot of path in the cache, or -1. Called with aliases_mutex held. */
static int aliases_cache_slot(const char *path)
{
    for (int i = 0; i < ALIASES_CACHE_MAX; i++)
        if (aliases_cache[i] && strcmp(aliases_cache[i]->path, path) == 0)
            return i;
    return -1;
}

/* A free slot, or the least recently used one emptied. */
static int aliases_cache_victim(void)
{
    int victim = 0;
    for (int i = 0; i < ALIASES_CACHE_MAX; i++) {
        if (!aliases_cache[i])
            return i;
        if (aliases_cache[i]->used < aliases_cache[victim]->used)
            victim = i;
    }
    aliases_cached_free(aliases_cache[victim]);
    aliases_cache[victim] = NULL;
    return victim;
}

static bool aliases_cached_fresh(const struct aliases_cached *c,
                                 const struct stat *st)
{
    if (!st)
        return !c->present;
    return c->present && c->dev == st->st_dev && c->ino == st->st_ino &&
           c->size == st->st_size && c->mtim.tv_sec == st->st_mtim.tv_sec &&
           c->mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Forgets the cached copy at slot i (may be -1). Mutex held. */
static void aliases_cache_forget(int i)
{
    if (i >= 0) {
        aliases_cached_free(aliases_cache[i]);
        aliases_cache[i] = NULL;
    }
}

/* Forgets the cached copy of path. */
static void aliases_cache_drop(const char *path)
{
    pthread_mutex_lock(&aliases_mutex);
    aliases_cache_forget(aliases_cache_slot(path));
    pthread_mutex_unlock(&aliases_mutex);
}

/* A freshly loaded cache entry for path, NULL on error. */
static struct aliases_cached *aliases_cached_load(const char *path)
{
    struct stat st;
    struct aliases_cached *c = calloc(1, sizeof *c);

    if (!c || !(c->path = strdup(path))) {
        free(c);
        return NULL;
    }
    memset(&st, 0, sizeof st);
    int rc = aliases_table_load(path, &c->table, &st);
    if (rc < 0) {
        int saved = errno;
        free(c->path);
        free(c);
        errno = saved;
        return NULL;
    }
    c->present = rc == 0;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->size = st.st_size;
    c->mtim = st.st_mtim;
    return c;
}

/* The up-to-date parsed copy of path, NULL when unreadable. Called with
 * aliases_mutex held; the result stays valid until it is released. */
static struct aliases_cached *aliases_cache_get(const char *path)
{
    struct stat st;
    bool exists = stat(path, &st) == 0;
    int i = aliases_cache_slot(path);

    if (!exists && errno != ENOENT) {
        aliases_cache_forget(i);
        return NULL;
    }
    if (i >= 0 && aliases_cached_fresh(aliases_cache[i], exists ? &st : NULL)) {
        aliases_cache[i]->used = ++aliases_clock;
        return aliases_cache[i];
    }
    struct aliases_cached *c = aliases_cached_load(path);
    if (!c) {
        aliases_cache_forget(i);
        return NULL;
    }
    c->used = ++aliases_clock;
    if (i < 0)
        i = aliases_cache_victim();
    aliases_cached_free(aliases_cache[i]);
    aliases_cache[i] = c;
    return c;
}

/* ---- reading API -------------------------------------------------------- */

/* Copies the targets of a into *targets / *n. 1, or -1 out of memory. */
static int aliases_copy_targets(const struct aliases_alias *a, char ***targets,
                                size_t *n)
{
    char **copy = calloc(a->n, sizeof *copy);
    if (!copy)
        goto oom;
    for (size_t i = 0; i < a->n; i++)
        if (!(copy[i] = strdup(a->targets[i]))) {
            aliases_free_targets(copy, i);
            goto oom;
        }
    *targets = copy;
    *n = a->n;
    return 1;
oom:
    errno = ENOMEM;
    return -1;
}

int aliases_lookup(const char *data_dir, const char *alias, char ***targets,
                   size_t *n)
{
    char path[PATH_MAX], canon[ALIASES_ADDRESS_MAX + 1];

    if (!targets || !n) {
        errno = EINVAL;
        return -1;
    }
    *targets = NULL;
    *n = 0;
    if (aliases_path(path, data_dir, "aliases") < 0)
        return -1;
    if (!aliases_canonical_alias(alias, canon, sizeof canon))
        return 0;

    pthread_mutex_lock(&aliases_mutex);
    int rc = -1;
    struct aliases_cached *c = aliases_cache_get(path);
    if (c) {
        const struct aliases_alias *a = aliases_table_find(&c->table, canon);
        rc = a ? aliases_copy_targets(a, targets, n) : 0;
    }
    int saved = errno;
    pthread_mutex_unlock(&aliases_mutex);
    errno = saved;
    return rc;
}

int aliases_list(const char *data_dir,
                 void (*fn)(const char *alias, const char *const *targets,
                            size_t n, void *arg),
                 void *arg)
{
    char path[PATH_MAX];
    struct aliases_table t;
    struct stat st;

    if (!fn) {
        errno = EINVAL;
        return -1;
    }
    if (aliases_path(path, data_dir, "aliases") < 0 ||
        aliases_table_load(path, &t, &st) < 0)
        return -1;
    for (size_t i = 0; i < t.n; i++)
        fn(t.aliases[i].alias, (const char *const *)t.aliases[i].targets,
           t.aliases[i].n, arg);
    aliases_table_free(&t);
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

/* Creates dir and its missing parents with mode 0700. */
static int aliases_mkdirs(const char *dir)
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

/* Opens and exclusively locks data_dir/aliases.lock. The fd, or -1. */
static int aliases_lock(const char *data_dir)
{
    char path[PATH_MAX];

    if (aliases_path(path, data_dir, "aliases.lock") < 0 ||
        aliases_mkdirs(data_dir) < 0)
        return -1;
    return file_lock(data_dir, "aliases.lock");
}

/* Writes content to data_dir/aliases.tmp (0600), fsyncs it, renames it over
 * data_dir/aliases and fsyncs the directory. */
static int aliases_replace_file(const char *data_dir, const struct aliases_buf *b)
{
    return file_replace(data_dir, "aliases", "aliases.tmp", b->p ? b->p : "",
                        b->len);
}

/* What a rewrite does to one alias. */
struct aliases_change {
    const char *canon;          /* the alias */
    char *const *targets;       /* canonical; NULL: delete the alias */
    size_t n;
};

/* Appends "ALIAS: T1, T2\n". */
static int aliases_format_line(struct aliases_buf *b, const struct aliases_change *ch)
{
    if (aliases_buf_str(b, ch->canon) < 0 || aliases_buf_str(b, ":") < 0)
        return -1;
    for (size_t i = 0; i < ch->n; i++)
        if (aliases_buf_str(b, i ? ", " : " ") < 0 ||
            aliases_buf_str(b, ch->targets[i]) < 0)
            return -1;
    return aliases_buf_str(b, "\n");
}

/* Builds the new file content from the current one (len octets). *found
 * tells whether the alias had a line; all its lines are replaced by one. */
static int aliases_rewrite(struct aliases_buf *b, const char *cur, size_t len,
                           const struct aliases_change *ch, bool *found)
{
    char canon[ALIASES_ADDRESS_MAX + 1];
    const char *rest;
    size_t linelen, rest_len;

    *found = false;
    for (const char *line = cur; line < cur + len; line += linelen) {
        linelen = aliases_next_line(line, cur + len);
        if (aliases_key(line, aliases_line_len(line, linelen), canon, &rest,
                        &rest_len) && strcmp(canon, ch->canon) == 0) {
            if (!*found && ch->targets && aliases_format_line(b, ch) < 0)
                return -1;
            *found = true;
            continue;
        }
        if (aliases_buf_add(b, line, linelen) < 0)
            return -1;
    }
    if (*found || !ch->targets)
        return 0;
    if (b->len && b->p[b->len - 1] != '\n' && aliases_buf_str(b, "\n") < 0)
        return -1;
    return aliases_format_line(b, ch);
}

/* Applies ch under the lock. 0 done, 1 deleting an alias that is not there,
 * -1 error (errno). */
static int aliases_edit(const char *data_dir, const struct aliases_change *ch)
{
    char path[PATH_MAX];
    struct aliases_buf out = {0};
    struct stat st;
    char *cur = NULL;
    size_t len = 0;
    bool found;
    int rc = -1;

    if (aliases_path(path, data_dir, "aliases") < 0)
        return -1;
    int lock = aliases_lock(data_dir);
    if (lock < 0)
        return -1;
    int r = aliases_read_file(path, &cur, &len, &st);
    if (r < 0)
        goto done;
    if (aliases_rewrite(&out, r == 0 ? cur : "", len, ch, &found) < 0) {
        errno = ENOMEM;
        goto done;
    }
    if (!found && !ch->targets) {
        rc = 1;
        goto done;
    }
    rc = aliases_replace_file(data_dir, &out);
done:;
    int saved = errno;
    free(cur);
    free(out.p);
    aliases_cache_drop(path);
    close(lock);
    errno = saved;
    return rc;
}

/* Canonical copies of the n targets (caller frees with
 * aliases_free_targets), NULL with errno EINVAL when one is invalid or
 * repeated. */
static char **aliases_canonical_list(const char *const *targets, size_t n)
{
    char canon[ALIASES_ADDRESS_MAX + 1];
    char **out = calloc(n, sizeof *out);

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!aliases_canonical_target(targets[i], canon, sizeof canon) ||
            aliases_has(out, i, canon)) {
            aliases_free_targets(out, i);
            errno = EINVAL;
            return NULL;
        }
        if (!(out[i] = strdup(canon))) {
            aliases_free_targets(out, i);
            errno = ENOMEM;
            return NULL;
        }
    }
    return out;
}

int aliases_put(const char *data_dir, const char *alias,
                const char *const *targets, size_t n)
{
    char canon[ALIASES_ADDRESS_MAX + 1];

    if (!aliases_canonical_alias(alias, canon, sizeof canon) || !targets ||
        n == 0 || n > ALIASES_TARGETS_MAX) {
        errno = EINVAL;
        return -1;
    }
    char **list = aliases_canonical_list(targets, n);
    if (!list)
        return -1;
    struct aliases_change ch = { .canon = canon, .targets = list, .n = n };
    int rc = aliases_edit(data_dir, &ch);
    int saved = errno;
    aliases_free_targets(list, n);
    errno = saved;
    return rc;
}

int aliases_del(const char *data_dir, const char *alias)
{
    char canon[ALIASES_ADDRESS_MAX + 1];

    if (!aliases_canonical_alias(alias, canon, sizeof canon)) {
        errno = EINVAL;
        return -1;
    }
    struct aliases_change ch = { .canon = canon };
    return aliases_edit(data_dir, &ch);
}
