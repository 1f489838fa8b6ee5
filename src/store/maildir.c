/* maildir.c — the Maildir backend: a maildrop is data_dir/mail/DOMAIN/LOCAL/
 * with cur/ new/ tmp/ (SPEC section 3). Opening locks it, moves new/ into
 * cur/ (adding ":2,"), lists the messages oldest first with their UIDLs and
 * CRLF sizes; readers stream a file; commit unlinks the deleted ones.
 * Delivery (tmp/ -> new/) is in maildir_deliver.c; the directories are made
 * here, by maildir_make_dirs, for both.
 *
 * Messages: regular files in new/ and cur/ whose names do not start with '.'
 * and have a non-empty base name (the part before the first ':'). A file in
 * new/ that cannot move to cur/ (a file of that name is already there) is
 * served from new/. Order: by the leading number of the base name (the
 * delivery second of "time.M...P...host" names; none counts as 0), then by
 * base name, then by the rest of the name. UIDL: the base name when it is
 * 1..70 characters in 0x21..0x7E and no other message has it; else generated
 * (below). The first message (in that order) seen with a base name keeps it;
 * later ones with the same base name get generated UIDLs. Size: ",W=NNN" in
 * the base name (Dovecot's CRLF size) when present, else read once and
 * cached. A message file that exists but cannot be read fails the open with
 * STORE_TEMP_FAIL; one that vanishes while opening is left out.
 *
 * The POP3 lock (one session per maildrop, across processes too) is
 * maildir_lock.c's; delivery never takes it. Between operations a session
 * holds no descriptor: the directories are opened again, and checked to be
 * the same directory, for each RETR/TOP and for the commit, so 10,000 idle
 * sessions need 10,000 descriptors, not 50,000.
 *
 * Files in the mailbox directory besides cur/ new/ tmp/:
 *
 *   pobox-uidlist  what a session learns about the messages and the next one
 *                  must find again: generated UIDLs and computed sizes. Text,
 *                  written atomically (tmp file, fsync, rename, fsync dir) and
 *                  only when its content changes. Format, version 1:
 *
 *     pobox-uidlist 1 EPOCH NEXT
 *     KEY UIDL INO PHYS SIZE
 *     ...
 *
 *   The header: EPOCH is 16 lowercase hex digits chosen at random when the
 *   file is created; NEXT is the decimal counter for the next generated UIDL.
 *   Then one line per message, in message order, five fields separated by
 *   one space:
 *     KEY   the base name (file name before the first ':'), with every byte
 *           outside 0x21..0x7E and '%' written as %XX (uppercase hex);
 *     UIDL  "." when the UIDL is the base name itself, else the UIDL;
 *     INO   the file's inode number: tells apart two files with one base
 *           name (whatever flags they get later); matched first, then by
 *           KEY alone (a mailbox restored from a backup has new inodes);
 *     PHYS  the file's size in bytes when SIZE was computed by reading it,
 *           "-" when the size comes from ",W=" in the name;
 *     SIZE  the CRLF size (core/mailstream.h) computed from the file, valid
 *           while it is the same file (INO; Maildir messages are never
 *           rewritten in place, so no stat is needed), or, for a file
 *           with another inode, while it has PHYS bytes; "-" as for PHYS.
 *   Generated UIDLs are "P" EPOCH "." COUNTER: the counter only grows and a
 *   lost or unreadable map starts a new random epoch, so a generated UIDL is
 *   never given to another message. Lines that do not parse are dropped; a
 *   file whose header does not parse (or has another version) is treated as
 *   missing. A UIDL the map holds for a message is kept over any other rule
 *   unless a message earlier in the listing already has it. */
#include "store/maildir.h"
#include "store/maildir_lock.h"
#include "core/strutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/mailstream.h"

#define MD_MAP_NAME      "pobox-uidlist"
#define MD_MAP_TMP       "pobox-uidlist.tmp"
#define MD_MAP_MAGIC     "pobox-uidlist"
#define MD_MAP_VERSION   1
#define MD_MAP_MAX       (1024L * 1024 * 1024)
#define MD_UIDL_MAX      70
#define MD_PART_MAX      255
#define MD_READ_CHUNK    65536
#define MD_POOL_BLOCK    65536
#define MD_NAME_BUF      (NAME_MAX + 8)

/* ---- string pool: every string of a mailbox, freed together ---- */

struct md_pool_block {
    struct md_pool_block *next;
    size_t used, cap;
    char data[];
};

struct md_pool {
    struct md_pool_block *head;
};

static char *md_pool_alloc(struct md_pool *p, size_t n)
{
    struct md_pool_block *b = p->head;

    if (b == NULL || b->cap - b->used < n) {
        /* blocks double from 512 octets: an idle session on a small
         * maildrop keeps a few hundred octets, not a 64 KiB block */
        size_t cap = b == NULL ? 512 : b->cap * 2;
        if (cap > MD_POOL_BLOCK)
            cap = MD_POOL_BLOCK;
        if (cap < n)
            cap = n;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = p->head;
        p->head = b;
    }
    b->used += n;
    return b->data + b->used - n;
}

/* Copies a (alen bytes) and b (blen bytes) as two strings "a\0b\0"; returns
 * the first; the second starts at the result + alen + 1. */
static char *md_pool_pair(struct md_pool *p, const char *a, size_t alen,
                          const char *b, size_t blen)
{
    char *s = md_pool_alloc(p, alen + blen + 2);

    if (s == NULL)
        return NULL;
    memcpy(s, a, alen);
    s[alen] = '\0';
    memcpy(s + alen + 1, b, blen);
    s[alen + 1 + blen] = '\0';
    return s;
}

static char *md_pool_strdup(struct md_pool *p, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = md_pool_alloc(p, n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void md_pool_free(struct md_pool *p)
{
    while (p->head != NULL) {
        struct md_pool_block *next = p->head->next;
        free(p->head);
        p->head = next;
    }
}

/* ---- hash index: open addressing over array indices, keys compared by
 * the caller; several entries may share a key ---- */

struct md_hash {
    uint32_t *slot;     /* index + 1; 0 = empty */
    size_t mask;
};

static uint64_t md_hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

/* Room for n entries at a load of at most one half. */
static bool md_hash_init(struct md_hash *h, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n)
        cap *= 2;
    h->slot = calloc(cap, sizeof(*h->slot));
    h->mask = cap - 1;
    return h->slot != NULL;
}

static void md_hash_free(struct md_hash *h)
{
    free(h->slot);
    h->slot = NULL;
}

static void md_hash_add(struct md_hash *h, uint64_t hv, size_t idx)
{
    size_t pos = hv & h->mask;

    while (h->slot[pos] != 0)
        pos = (pos + 1) & h->mask;
    h->slot[pos] = (uint32_t)(idx + 1);
}

/* Walks the entries that may have hash hv: start with *pos = SIZE_MAX;
 * returns the next candidate index, or SIZE_MAX when there is none. */
static size_t md_hash_next(const struct md_hash *h, uint64_t hv, size_t *pos)
{
    *pos = *pos == SIZE_MAX ? (hv & h->mask) : ((*pos + 1) & h->mask);
    return h->slot[*pos] != 0 ? (size_t)h->slot[*pos] - 1 : SIZE_MAX;
}

/* ---- the mailbox ---- */

struct md_msg {
    char *base;         /* pool: base name; info follows it in the pool */
    char *info;         /* pool: ":2,FLAGS" or "" */
    const char *uidl;   /* base, or a pool string */
    uint64_t size;      /* CRLF octets */
    uint64_t time;      /* leading number of the base name */
    uint64_t ino;
    int64_t phys;       /* bytes on disk when known, else -1 */
    size_t line;        /* matching map line, SIZE_MAX if none */
    bool in_new;        /* listed from new/ (could not be moved) */
    bool dup;           /* another message has the same base name */
    bool size_in_name;  /* size from ",W=" */
    bool gone;          /* vanished while opening, or deleted by commit */
};

struct md_box {
    struct store_mailbox base;
    int dir_fd, cur_fd, new_fd;     /* -1 while detached */
    dev_t dev;              /* the maildrop directory, also the lock key */
    ino_t ino;
    bool locked;            /* holds the POP3 lock */
    const char *data_dir, *address;         /* in pool: to attach again */
    struct md_msg *msgs;    /* owned, n used of cap */
    size_t n, cap;
    struct md_pool pool;    /* owns every string of msgs */
};

struct md_reader {
    struct store_reader base;
    int fd;
};

static struct md_box *md_box_of(struct store_mailbox *mb)
{
    return (struct md_box *)mb;
}

static const struct md_box *md_cbox_of(const struct store_mailbox *mb)
{
    return (const struct md_box *)mb;
}

/* ---- names ---- */

static bool md_uidl_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > MD_UIDL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* Parses all of s (decimal) into *out; false on junk or overflow. */
static bool md_parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Leading decimal number of a base name (delivery seconds), 0 if none. */
static uint64_t md_name_time(const char *base)
{
    uint64_t v = 0;

    for (; *base >= '0' && *base <= '9'; base++) {
        unsigned d = (unsigned)(*base - '0');
        if (v > (UINT64_MAX - d) / 10)
            return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

/* Dovecot's ",W=NNN" (the CRLF size) in a base name. */
static bool md_name_vsize(const char *base, uint64_t *out)
{
    for (const char *p = strstr(base, ",W="); p != NULL;
         p = strstr(p + 1, ",W=")) {
        const char *num = p + 3;
        size_t n = strcspn(num, ",");
        if (md_parse_u64(num, n, out))
            return true;
    }
    return false;
}

static int md_full_name(const struct md_msg *m, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s%s", m->base, m->info);

    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int md_msg_cmp(const void *a, const void *b)
{
    const struct md_msg *x = a, *y = b;
    int c;

    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if ((c = strcmp(x->base, y->base)) != 0)
        return c;
    if ((c = strcmp(x->info, y->info)) != 0)
        return c;
    return (int)x->in_new - (int)y->in_new;
}

/* ---- the map file ---- */

struct md_line {
    char *key;          /* into the map buffer, decoded */
    const char *uidl;   /* into the map buffer; NULL = the base name */
    uint64_t ino;
    int64_t phys, size; /* -1 = "-" */
    bool claimed;       /* matched to a message */
};

struct md_map {
    char *buf;              /* the file's text, owned */
    struct md_line *lines;  /* owned */
    size_t n;
    struct md_hash idx;     /* lines by key */
    uint64_t epoch, next;
    bool loaded;            /* a valid header was read */
    bool dropped;           /* some lines did not parse */
};

static void md_map_free(struct md_map *map)
{
    free(map->buf);
    free(map->lines);
    md_hash_free(&map->idx);
}

/* Cuts the next space-separated field off *p. */
static char *md_field(char **p)
{
    char *s = *p, *sp = strchr(s, ' ');

    if (sp != NULL) {
        *sp = '\0';
        *p = sp + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

/* Decodes %XX in place; false if malformed or empty or it holds a NUL. */
static bool md_key_decode(char *s)
{
    char *w = s;

    for (const char *r = s; *r != '\0'; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = str_hexval(r[1]), lo = hi < 0 ? -1 : str_hexval(r[2]);
        if (lo < 0 || (hi == 0 && lo == 0))
            return false;
        *w++ = (char)(hi * 16 + lo);
        r += 2;
    }
    *w = '\0';
    return w != s;
}

static bool md_parse_opt(const char *s, int64_t *out)
{
    uint64_t v;

    if (strcmp(s, "-") == 0) {
        *out = -1;
        return true;
    }
    if (!md_parse_u64(s, strlen(s), &v) || v > INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

/* Keeps the counter past every generated UIDL of this epoch it sees. */
static void md_map_note_uidl(struct md_map *map, const char *uidl)
{
    char prefix[24];
    uint64_t k;

    snprintf(prefix, sizeof(prefix), "P%016" PRIx64 ".", map->epoch);
    if (strncmp(uidl, prefix, 18) == 0
        && md_parse_u64(uidl + 18, strlen(uidl + 18), &k)
        && k >= map->next && k < UINT64_MAX)
        map->next = k + 1;
}

static bool md_map_parse_line(struct md_map *map, char *s, struct md_line *l)
{
    char *key = md_field(&s), *uidl = md_field(&s), *ino = md_field(&s);
    char *phys = md_field(&s), *size = md_field(&s);

    if (*s != '\0' || !md_key_decode(key)
        || !md_parse_u64(ino, strlen(ino), &l->ino)
        || !md_parse_opt(phys, &l->phys) || !md_parse_opt(size, &l->size)
        || (l->phys < 0) != (l->size < 0))
        return false;
    if (strcmp(uidl, ".") == 0) {
        l->uidl = NULL;
    } else if (md_uidl_ok(uidl)) {
        l->uidl = uidl;
        md_map_note_uidl(map, uidl);
    } else {
        return false;
    }
    l->key = key;
    l->claimed = false;
    return true;
}

static bool md_map_parse_header(struct md_map *map, char *s)
{
    char *magic = md_field(&s), *ver = md_field(&s);
    char *epoch = md_field(&s), *next = md_field(&s);
    uint64_t v = 0;

    if (*s != '\0' || strcmp(magic, MD_MAP_MAGIC) != 0
        || strcmp(ver, "1") != 0 || strlen(epoch) != 16
        || !md_parse_u64(next, strlen(next), &map->next))
        return false;
    for (int i = 0; i < 16; i++) {
        int d = str_hexval(epoch[i]);
        if (d < 0)
            return false;
        v = v * 16 + (uint64_t)d;
    }
    map->epoch = v;
    return true;
}

/* Splits map->buf (NUL-terminated, len bytes) into header and lines. */
static enum store_status md_map_parse(struct md_map *map, size_t len)
{
    size_t nlines = 0;
    char *p = map->buf, *end = map->buf + len, *nl;

    for (const char *q = p; (q = memchr(q, '\n', (size_t)(end - q))); q++)
        nlines++;
    map->lines = calloc(nlines + 1, sizeof(*map->lines));
    if (map->lines == NULL || !md_hash_init(&map->idx, nlines + 1))
        return STORE_TEMP_FAIL;
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return STORE_OK;                /* not even a header: ignore it */
    *nl = '\0';
    if (!md_map_parse_header(map, p))
        return STORE_OK;
    map->loaded = true;
    for (p = nl + 1; p < end && (nl = memchr(p, '\n', (size_t)(end - p)));
         p = nl + 1) {
        struct md_line *l = &map->lines[map->n];
        *nl = '\0';
        if (!md_map_parse_line(map, p, l)) {
            map->dropped = true;
            continue;
        }
        md_hash_add(&map->idx, md_hash_bytes(l->key, strlen(l->key)), map->n);
        map->n++;
    }
    if (p < end)
        map->dropped = true;            /* a last line without LF */
    return STORE_OK;
}

static enum store_status md_read_all(int fd, char **out, size_t *out_len)
{
    struct stat st;
    size_t cap, len = 0;
    char *buf;

    if (fstat(fd, &st) != 0 || st.st_size > MD_MAP_MAX)
        return STORE_TEMP_FAIL;
    cap = (size_t)st.st_size + 1;
    if ((buf = malloc(cap)) == NULL)
        return STORE_TEMP_FAIL;
    while (len < cap - 1) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return STORE_TEMP_FAIL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return STORE_OK;
}

static enum store_status md_map_read(int dir_fd, struct md_map *map)
{
    enum store_status st;
    size_t len;
    int fd;

    memset(map, 0, sizeof(*map));
    map->next = 1;
    fd = openat(dir_fd, MD_MAP_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return md_hash_init(&map->idx, 1) ? STORE_OK : STORE_TEMP_FAIL;
    if (fd < 0)
        return STORE_TEMP_FAIL;
    st = md_read_all(fd, &map->buf, &len);
    close(fd);
    if (st != STORE_OK)
        return st;
    return md_map_parse(map, len);
}

static void md_put_key(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x20 && c < 0x7f && c != '%')
            putc(c, f);
        else
            fprintf(f, "%%%02X", c);
    }
}

static void md_put_line(FILE *f, const struct md_msg *m)
{
    md_put_key(f, m->base);
    fprintf(f, " %s %" PRIu64, m->uidl == m->base ? "." : m->uidl, m->ino);
    if (m->size_in_name)
        fputs(" - -\n", f);
    else
        fprintf(f, " %" PRId64 " %" PRIu64 "\n", m->phys, m->size);
}

static enum store_status md_map_write(struct md_box *mb,
                                      const struct md_map *map)
{
    int fd = openat(mb->dir_fd, MD_MAP_TMP,
                    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                    0600);
    FILE *f;
    bool ok;

    if (fd < 0)
        return STORE_TEMP_FAIL;
    if ((f = fdopen(fd, "w")) == NULL) {
        close(fd);
        unlinkat(mb->dir_fd, MD_MAP_TMP, 0);
        return STORE_TEMP_FAIL;
    }
    fprintf(f, "%s %d %016" PRIx64 " %" PRIu64 "\n", MD_MAP_MAGIC,
            MD_MAP_VERSION, map->epoch, map->next);
    for (size_t i = 0; i < mb->n; i++)
        md_put_line(f, &mb->msgs[i]);
    ok = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    ok = ok && renameat(mb->dir_fd, MD_MAP_TMP, mb->dir_fd, MD_MAP_NAME) == 0;
    if (!ok) {
        unlinkat(mb->dir_fd, MD_MAP_TMP, 0);
        return STORE_TEMP_FAIL;
    }
    return fsync(mb->dir_fd) == 0 ? STORE_OK : STORE_TEMP_FAIL;
}

static bool md_map_line_same(const struct md_line *l, const struct md_msg *m)
{
    bool is_base = m->uidl == m->base;

    if ((l->uidl == NULL) != is_base
        || (!is_base && strcmp(l->uidl, m->uidl) != 0) || l->ino != m->ino)
        return false;
    if (m->size_in_name)
        return l->phys < 0;
    return l->phys == m->phys && l->size == (int64_t)m->size;
}

static bool md_map_changed(const struct md_box *mb, const struct md_map *map,
                           uint64_t next_before)
{
    if (!map->loaded || map->dropped || map->n != mb->n
        || map->next != next_before)
        return true;
    for (size_t i = 0; i < mb->n; i++) {
        const struct md_msg *m = &mb->msgs[i];
        if (m->line == SIZE_MAX || !md_map_line_same(&map->lines[m->line], m))
            return true;
    }
    return false;
}

/* ---- scanning ---- */

static enum store_status md_add_msg(struct md_box *mb, const char *name,
                                    uint64_t ino, int64_t phys, bool in_new)
{
    size_t base_len = strcspn(name, ":");
    struct md_msg *m;

    if (base_len == 0)
        return STORE_OK;                /* ":2,S" has no base name */
    if (mb->n == mb->cap) {
        size_t cap = mb->cap ? mb->cap * 2 : 64;
        struct md_msg *msgs;
        if (cap >= UINT32_MAX / 2
            || !(msgs = realloc(mb->msgs, cap * sizeof(*msgs))))
            return STORE_TEMP_FAIL;
        mb->msgs = msgs;
        mb->cap = cap;
    }
    m = &mb->msgs[mb->n];
    memset(m, 0, sizeof(*m));
    m->base = md_pool_pair(&mb->pool, name, base_len, name + base_len,
                           strlen(name + base_len));
    if (m->base == NULL)
        return STORE_TEMP_FAIL;
    m->info = m->base + base_len + 1;
    m->time = md_name_time(m->base);
    m->ino = ino;
    m->phys = phys;
    m->line = SIZE_MAX;
    m->in_new = in_new;
    mb->n++;
    return STORE_OK;
}

/* True for a directory entry that may be a message; *phys gets its size
 * when a stat was needed to tell, else -1. */
static bool md_entry_ok(int dfd, const struct dirent *de, int64_t *phys)
{
    struct stat st;

    *phys = -1;
    if (de->d_name[0] == '.')
        return false;
    if (de->d_type == DT_REG)
        return true;
    if (de->d_type != DT_UNKNOWN)
        return false;
    if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0
        || !S_ISREG(st.st_mode))
        return false;
    *phys = st.st_size;
    return true;
}

/* readdir that tells the end (true, *de NULL) from an error (false). */
static bool md_readdir(DIR *d, struct dirent **de)
{
    errno = 0;
    *de = readdir(d);
    return *de != NULL || errno == 0;
}

static DIR *md_opendir(int fd)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;

    if (dfd < 0)
        return NULL;
    if ((d = fdopendir(dfd)) == NULL)
        close(dfd);
    return d;
}

/* Moves new/NAME to cur/NAME:2, without replacing anything there.
 * Returns 0, or an errno value. */
static int md_move_to_cur(struct md_box *mb, const char *name)
{
    char target[MD_NAME_BUF];
    struct stat st;

    if (snprintf(target, sizeof(target), "%s%s", name,
                 strchr(name, ':') ? "" : ":2,") >= (int)sizeof(target))
        return ENAMETOOLONG;
    if (renameat2(mb->new_fd, name, mb->cur_fd, target, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return errno;
    /* file system without RENAME_NOREPLACE */
    if (fstatat(mb->cur_fd, target, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return EEXIST;
    return renameat(mb->new_fd, name, mb->cur_fd, target) == 0 ? 0 : errno;
}

/* new/: move each message to cur/; one that cannot move is served from new/. */
static enum store_status md_take_new(struct md_box *mb, const struct dirent *de,
                                     int64_t phys)
{
    int err = md_move_to_cur(mb, de->d_name);
    if (err != 0 && err != ENOENT)
        return md_add_msg(mb, de->d_name, de->d_ino, phys, true);
    return STORE_OK;
}

static enum store_status md_take_cur(struct md_box *mb, const struct dirent *de,
                                     int64_t phys)
{
    return md_add_msg(mb, de->d_name, de->d_ino, phys, false);
}

/* Walks one of new/ or cur/, handing each message file to take(). */
static enum store_status md_scan(struct md_box *mb, int dir_fd,
                                 enum store_status (*take)(struct md_box *,
                                                           const struct dirent *,
                                                           int64_t))
{
    enum store_status st = STORE_OK;
    DIR *d = md_opendir(dir_fd);
    struct dirent *de;
    int64_t phys;

    if (d == NULL)
        return STORE_TEMP_FAIL;
    while (st == STORE_OK) {
        if (!md_readdir(d, &de))
            st = STORE_TEMP_FAIL;
        if (de == NULL)
            break;
        if (md_entry_ok(dir_fd, de, &phys))
            st = take(mb, de, phys);
    }
    closedir(d);
    return st;
}

/* Marks the messages that share a base name with another one. */
static enum store_status md_mark_dups(struct md_box *mb)
{
    struct md_hash h;

    if (!md_hash_init(&h, mb->n))
        return STORE_TEMP_FAIL;
    for (size_t i = 0; i < mb->n; i++) {
        struct md_msg *m = &mb->msgs[i];
        uint64_t hv = md_hash_bytes(m->base, strlen(m->base));
        size_t pos = SIZE_MAX, j;
        while ((j = md_hash_next(&h, hv, &pos)) != SIZE_MAX) {
            if (strcmp(mb->msgs[j].base, m->base) == 0)
                m->dup = mb->msgs[j].dup = true;
        }
        md_hash_add(&h, hv, i);
    }
    md_hash_free(&h);
    return STORE_OK;
}

/* ---- matching messages to map lines ---- */

/* Finds an unclaimed line with m's base name; same_ino: also its inode. */
static size_t md_map_find(const struct md_map *map, const struct md_msg *m,
                          bool same_ino)
{
    uint64_t hv = md_hash_bytes(m->base, strlen(m->base));
    size_t pos = SIZE_MAX, j, best = SIZE_MAX;

    while ((j = md_hash_next(&map->idx, hv, &pos)) != SIZE_MAX) {
        const struct md_line *l = &map->lines[j];
        if (l->claimed || strcmp(l->key, m->base) != 0
            || (same_ino && l->ino != m->ino))
            continue;
        if (best == SIZE_MAX || j < best)
            best = j;                   /* the earliest line in the file */
    }
    return best;
}

/* Inode matches first (they tell duplicates apart), then by name alone
 * (a mailbox restored from a backup has new inodes). */
static void md_match(struct md_box *mb, struct md_map *map)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < mb->n; i++) {
            struct md_msg *m = &mb->msgs[i];
            if (m->line != SIZE_MAX)
                continue;
            m->line = md_map_find(map, m, pass == 0);
            if (m->line != SIZE_MAX)
                map->lines[m->line].claimed = true;
        }
    }
}

/* ---- sizes ---- */

/* Opens a message file for reading; never blocks on a FIFO put in its
 * place. Returns the fd, or -1 with errno (ENOENT also when the name is no
 * longer a regular file). */
static int md_open_file(int dfd, const char *name, struct stat *st)
{
    int fd = openat(dfd, name,
                    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);

    if (fd < 0) {
        if (errno == ELOOP)
            errno = ENOENT;
        return -1;
    }
    if (fstat(fd, st) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        errno = ENOENT;                 /* not a regular file any more */
        return -1;
    }
    return fd;
}

static ssize_t md_read(int fd, void *buf, size_t len)
{
    ssize_t r;

    do
        r = read(fd, buf, len);
    while (r < 0 && errno == EINTR);
    return r;
}

/* Reads a message to count its CRLF size. ENOENT: it vanished. */
static enum store_status md_compute_size(struct md_box *mb, struct md_msg *m,
                                         char *buf, int *err)
{
    char name[MD_NAME_BUF];
    struct mailstream ms;
    struct stat st;
    ssize_t r;
    int fd;

    *err = 0;
    if (md_full_name(m, name, sizeof(name)) != 0
        || (fd = md_open_file(m->in_new ? mb->new_fd : mb->cur_fd, name,
                              &st)) < 0) {
        *err = errno;
        return STORE_TEMP_FAIL;
    }
    mailstream_init(&ms, -1);
    while ((r = md_read(fd, buf, MD_READ_CHUNK)) > 0)
        mailstream_encode(&ms, buf, (size_t)r, NULL);
    *err = r < 0 ? errno : 0;
    close(fd);
    if (r < 0)
        return STORE_TEMP_FAIL;
    mailstream_finish(&ms, NULL);
    m->size = ms.octets;
    m->phys = st.st_size;
    return STORE_OK;
}

/* Fills one message's size from its name, the map, or its content.
 * Marks it gone when it vanished meanwhile. */
static enum store_status md_msg_size(struct md_box *mb, struct md_msg *m,
                                     const struct md_map *map, char *buf)
{
    const struct md_line *l = m->line == SIZE_MAX ? NULL : &map->lines[m->line];
    struct stat st;
    int err;

    if (md_name_vsize(m->base, &m->size)) {
        m->size_in_name = true;
        return STORE_OK;
    }
    if (l != NULL && l->size >= 0 && l->phys >= 0 && l->ino == m->ino) {
        /* the same file (Maildir messages are never rewritten in place):
         * no stat, which would cost more than the rest of the open */
        m->size = (uint64_t)l->size;
        m->phys = l->phys;
        return STORE_OK;
    }
    if (l != NULL && l->size >= 0 && m->phys < 0) {
        char name[MD_NAME_BUF];
        int dfd = m->in_new ? mb->new_fd : mb->cur_fd;
        if (md_full_name(m, name, sizeof(name)) == 0
            && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            m->phys = S_ISREG(st.st_mode) ? st.st_size : -1;
    }
    if (l != NULL && l->size >= 0 && m->phys >= 0 && l->phys == m->phys) {
        m->size = (uint64_t)l->size;
        return STORE_OK;
    }
    if (md_compute_size(mb, m, buf, &err) == STORE_OK)
        return STORE_OK;
    if (err == ENOENT) {
        m->gone = true;
        return STORE_OK;
    }
    return STORE_TEMP_FAIL;
}

static enum store_status md_sizes(struct md_box *mb, const struct md_map *map)
{
    enum store_status st = STORE_OK;
    char *buf = malloc(MD_READ_CHUNK);
    size_t kept = 0;

    if (buf == NULL)
        return STORE_TEMP_FAIL;
    for (size_t i = 0; i < mb->n && st == STORE_OK; i++)
        st = md_msg_size(mb, &mb->msgs[i], map, buf);
    free(buf);
    if (st != STORE_OK)
        return st;
    for (size_t i = 0; i < mb->n; i++)      /* drop the vanished, in order */
        if (!mb->msgs[i].gone)
            mb->msgs[kept++] = mb->msgs[i];
    mb->n = kept;
    return STORE_OK;
}

/* ---- UIDLs ---- */

static bool md_uidl_taken(const struct md_box *mb, const struct md_hash *set,
                          const char *uidl)
{
    uint64_t hv = md_hash_bytes(uidl, strlen(uidl));
    size_t pos = SIZE_MAX, j;

    while ((j = md_hash_next(set, hv, &pos)) != SIZE_MAX)
        if (strcmp(mb->msgs[j].uidl, uidl) == 0)
            return true;
    return false;
}

static void md_uidl_take(struct md_box *mb, struct md_hash *set, size_t i,
                         const char *uidl)
{
    mb->msgs[i].uidl = uidl;
    md_hash_add(set, md_hash_bytes(uidl, strlen(uidl)), i);
}

/* The UIDL the map remembers for message i, if still usable. */
static enum store_status md_uidl_known(struct md_box *mb, struct md_hash *set,
                                       size_t i, const struct md_map *map)
{
    struct md_msg *m = &mb->msgs[i];
    const char *u;

    if (m->line == SIZE_MAX)
        return STORE_OK;
    u = map->lines[m->line].uidl;
    if (u == NULL)
        u = md_uidl_ok(m->base) ? m->base : NULL;
    if (u == NULL || md_uidl_taken(mb, set, u))
        return STORE_OK;
    if (u != m->base && (u = md_pool_strdup(&mb->pool, u)) == NULL)
        return STORE_TEMP_FAIL;
    md_uidl_take(mb, set, i, u);
    return STORE_OK;
}

/* The base name if it is a usable UIDL, else "P" EPOCH "." COUNTER. */
static enum store_status md_uidl_new(struct md_box *mb, struct md_hash *set,
                                     size_t i, struct md_map *map)
{
    struct md_msg *m = &mb->msgs[i];
    char buf[48];
    char *u;

    if (md_uidl_ok(m->base) && !md_uidl_taken(mb, set, m->base)) {
        md_uidl_take(mb, set, i, m->base);
        return STORE_OK;
    }
    do {
        if (map->next == UINT64_MAX)
            return STORE_TEMP_FAIL;
        snprintf(buf, sizeof(buf), "P%016" PRIx64 ".%" PRIu64, map->epoch,
                 map->next++);
    } while (md_uidl_taken(mb, set, buf));
    if ((u = md_pool_strdup(&mb->pool, buf)) == NULL)
        return STORE_TEMP_FAIL;
    md_uidl_take(mb, set, i, u);
    return STORE_OK;
}

/* Known messages keep their UIDL; then the new ones, in message order. */
static enum store_status md_assign_uidls(struct md_box *mb, struct md_map *map)
{
    enum store_status st = STORE_OK;
    struct md_hash set;

    if (!md_hash_init(&set, mb->n))
        return STORE_TEMP_FAIL;
    for (size_t i = 0; i < mb->n; i++)
        mb->msgs[i].uidl = NULL;
    for (size_t i = 0; i < mb->n && st == STORE_OK; i++)
        st = md_uidl_known(mb, &set, i, map);
    for (size_t i = 0; i < mb->n && st == STORE_OK; i++)
        if (mb->msgs[i].uidl == NULL)
            st = md_uidl_new(mb, &set, i, map);
    md_hash_free(&set);
    return st;
}

/* ---- open ---- */

static enum store_status md_new_epoch(struct md_map *map)
{
    uint64_t e;

    if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
        return STORE_TEMP_FAIL;
    map->epoch = e;
    map->next = 1;
    return STORE_OK;
}

/* Lists the messages, fixes their UIDLs and sizes, saves the map. */
static enum store_status md_load(struct md_box *mb)
{
    struct md_map map;
    uint64_t next_before;
    enum store_status st = md_map_read(mb->dir_fd, &map);

    if (st == STORE_OK && !map.loaded)
        st = md_new_epoch(&map);
    next_before = map.next;
    if (st == STORE_OK)
        st = md_scan(mb, mb->new_fd, md_take_new);
    if (st == STORE_OK)
        st = md_scan(mb, mb->cur_fd, md_take_cur);
    if (st == STORE_OK) {
        if (mb->n > 1)
            qsort(mb->msgs, mb->n, sizeof(*mb->msgs), md_msg_cmp);
        md_match(mb, &map);
        st = md_sizes(mb, &map);
    }
    if (st == STORE_OK)
        st = md_mark_dups(mb);
    if (st == STORE_OK)
        st = md_assign_uidls(mb, &map);
    if (st == STORE_OK && md_map_changed(mb, &map, next_before)) {
        /* sizes can be computed again, a new UIDL must be kept */
        if (md_map_write(mb, &map) != STORE_OK && map.next != next_before)
            st = STORE_TEMP_FAIL;
    }
    md_map_free(&map);
    return st;
}

/* One address part as a directory name: no '/', no "..", no leading '.',
 * no control characters, not empty. */
static bool md_part_ok(const char *p, size_t n)
{
    if (n == 0 || n > MD_PART_MAX || p[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f || c == '/')
            return false;
        if (c == '.' && i + 1 < n && p[i + 1] == '.')
            return false;
    }
    return true;
}

/* Creates directory name under parent (0700) unless it exists; a new one
 * is made durable by fsyncing parent. */
static bool md_mkdir_durable(int parent, const char *name)
{
    if (mkdirat(parent, name, 0700) == 0)
        return fsync(parent) == 0;
    return errno == EEXIST;
}

/* Replaces *fd (a directory) by its subdirectory name, created first if
 * missing when create is set. */
static bool md_descend(int *fd, const char *name, bool create)
{
    int sub = -1;

    if (!create || md_mkdir_durable(*fd, name))
        sub = openat(*fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(*fd);
    *fd = sub;
    return sub >= 0;
}

/* cur/ new/ tmp/ of an open mailbox directory, created if missing. */
static bool md_make_subdirs(int dir_fd)
{
    return md_mkdir_durable(dir_fd, "cur") && md_mkdir_durable(dir_fd, "new")
           && md_mkdir_durable(dir_fd, "tmp");
}

/* Opens data_dir/mail/DOMAIN/LOCAL; with create, makes what is missing,
 * cur/ new/ tmp/ included. */
static enum store_status md_walk(const char *data_dir, const char *address,
                                 bool create, int *dir_fd)
{
    const char *at = address == NULL ? NULL : strrchr(address, '@');
    char local[MD_PART_MAX + 1];
    size_t local_len;
    int fd;

    *dir_fd = -1;
    if (at == NULL || data_dir == NULL || data_dir[0] == '\0')
        return STORE_PERM_FAIL;
    local_len = (size_t)(at - address);
    if (!md_part_ok(address, local_len) || !md_part_ok(at + 1, strlen(at + 1)))
        return STORE_PERM_FAIL;
    memcpy(local, address, local_len);
    local[local_len] = '\0';
    fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || !md_descend(&fd, "mail", create) || !md_descend(&fd, at + 1, create)
        || !md_descend(&fd, local, create) || (create && !md_make_subdirs(fd))) {
        if (fd >= 0)
            close(fd);
        return STORE_TEMP_FAIL;
    }
    *dir_fd = fd;
    return STORE_OK;
}

enum store_status maildir_make_dirs(const char *data_dir, const char *address,
                                    int *dir_fd)
{
    return md_walk(data_dir, address, true, dir_fd);
}

static int md_open_subdir(int dir_fd, const char *name)
{
    return openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* Closes every descriptor; the session keeps its lock and message list. */
static void md_detach(struct md_box *mb)
{
    int *fds[] = {&mb->cur_fd, &mb->new_fd, &mb->dir_fd};

    for (size_t k = 0; k < sizeof(fds) / sizeof(fds[0]); k++) {
        if (*fds[k] >= 0)
            close(*fds[k]);
        *fds[k] = -1;
    }
}

/* Opens the maildrop directory and cur/ new/. The first time it records
 * which directory it is; later it must be that same one (a maildrop
 * removed or replaced meanwhile is a temporary failure). */
static enum store_status md_attach(struct md_box *mb)
{
    struct stat st;
    enum store_status rc;

    if (mb->dir_fd >= 0)
        return STORE_OK;
    /* creating only at open: a maildrop removed meanwhile stays removed */
    rc = md_walk(mb->data_dir, mb->address, mb->ino == 0, &mb->dir_fd);
    if (rc != STORE_OK)
        return rc;
    if (fstat(mb->dir_fd, &st) != 0)
        rc = STORE_TEMP_FAIL;
    else if (mb->ino == 0) {
        mb->dev = st.st_dev;
        mb->ino = st.st_ino;
    } else if (mb->dev != st.st_dev || mb->ino != st.st_ino)
        rc = STORE_TEMP_FAIL;
    if (rc == STORE_OK) {
        mb->cur_fd = md_open_subdir(mb->dir_fd, "cur");
        mb->new_fd = md_open_subdir(mb->dir_fd, "new");
        if (mb->cur_fd < 0 || mb->new_fd < 0)
            rc = STORE_TEMP_FAIL;
    }
    if (rc != STORE_OK)
        md_detach(mb);
    return rc;
}

static void md_close(struct store_mailbox *smb)
{
    struct md_box *mb = md_box_of(smb);

    md_detach(mb);
    if (mb->locked)
        maildir_lock_release(mb->dev, mb->ino);
    md_pool_free(&mb->pool);
    free(mb->msgs);
    free(mb);
}

/* Takes the POP3 lock on the attached maildrop. */
static enum store_status md_take_lock(struct md_box *mb)
{
    int r = maildir_lock_take(mb->data_dir, mb->dev, mb->ino);

    mb->locked = r == 1;
    return r == 1 ? STORE_OK : r == 0 ? STORE_IN_USE : STORE_TEMP_FAIL;
}

static enum store_status md_open(const struct config *cfg, const char *address,
                                 struct store_mailbox **out)
{
    struct md_box *mb = calloc(1, sizeof(*mb));
    enum store_status st;

    *out = NULL;
    if (mb == NULL)
        return STORE_TEMP_FAIL;
    mb->base.be = &maildir_backend;
    mb->dir_fd = mb->cur_fd = mb->new_fd = -1;
    mb->data_dir = md_pool_strdup(&mb->pool, cfg->data_dir);
    mb->address = md_pool_strdup(&mb->pool, address);
    st = mb->data_dir && mb->address ? md_attach(mb) : STORE_TEMP_FAIL;
    if (st == STORE_OK)
        st = md_take_lock(mb);
    if (st == STORE_OK)
        st = md_load(mb);
    md_detach(mb);
    if (st != STORE_OK) {
        md_close(&mb->base);
        return st;
    }
    *out = &mb->base;
    return STORE_OK;
}

/* ---- listing ---- */

static size_t md_count(const struct store_mailbox *smb)
{
    return md_cbox_of(smb)->n;
}

static uint64_t md_size(const struct store_mailbox *smb, size_t i)
{
    return md_cbox_of(smb)->msgs[i].size;
}

static const char *md_uidl(const struct store_mailbox *smb, size_t i)
{
    return md_cbox_of(smb)->msgs[i].uidl;
}

/* ---- finding messages another program renamed ---- */

/* How well directory entry de fits message m after a rename: 0 not at all,
 * 1 same base name (enough unless the base name is shared), 2 same inode. */
static int md_relocate_fit(const struct md_msg *m, const struct dirent *de,
                           size_t blen)
{
    if (strncmp(m->base, de->d_name, blen) != 0 || m->base[blen] != '\0')
        return 0;
    if (m->ino == de->d_ino)
        return 2;
    return m->dup ? 0 : 1;
}

/* Takes de's name for message m (same base name, other info). */
static enum store_status md_relocate_to(struct md_box *mb, struct md_msg *m,
                                        const struct dirent *de, size_t blen)
{
    char *info = md_pool_strdup(&mb->pool, de->d_name + blen);

    if (info == NULL)
        return STORE_TEMP_FAIL;         /* the old name stays */
    m->info = info;
    m->in_new = false;                  /* m->ino stays: what fits compare */
    return STORE_OK;
}

/* Scans cur/ once for the messages idx[0..n) under a new name (flags
 * changed, or moved from new/ by another program) and updates the names
 * found. A renamed file keeps its inode, which tells duplicates apart. */
static enum store_status md_relocate(struct md_box *mb, const size_t *idx,
                                     size_t n)
{
    enum store_status st = STORE_OK;
    unsigned char *fit = calloc(n, 1);  /* best fit found per message */
    struct md_hash h;
    struct dirent *de;
    int64_t phys;
    DIR *d = NULL;

    if (fit == NULL || !md_hash_init(&h, n)) {
        free(fit);
        return STORE_TEMP_FAIL;
    }
    for (size_t k = 0; k < n; k++) {
        const char *b = mb->msgs[idx[k]].base;
        md_hash_add(&h, md_hash_bytes(b, strlen(b)), k);
    }
    if ((d = md_opendir(mb->cur_fd)) == NULL)
        st = STORE_TEMP_FAIL;
    while (st == STORE_OK) {
        if (!md_readdir(d, &de))
            st = STORE_TEMP_FAIL;
        if (de == NULL)
            break;
        if (!md_entry_ok(mb->cur_fd, de, &phys))
            continue;
        size_t blen = strcspn(de->d_name, ":"), pos = SIZE_MAX, k;
        uint64_t hv = md_hash_bytes(de->d_name, blen);
        while (st == STORE_OK
               && (k = md_hash_next(&h, hv, &pos)) != SIZE_MAX) {
            int f = md_relocate_fit(&mb->msgs[idx[k]], de, blen);
            if (f <= fit[k])
                continue;
            st = md_relocate_to(mb, &mb->msgs[idx[k]], de, blen);
            fit[k] = (unsigned char)f;
            break;
        }
    }
    if (d != NULL)
        closedir(d);
    md_hash_free(&h);
    free(fit);
    return st;
}

/* ---- reading ---- */

/* Opens message i of an attached maildrop, looking for it under a new name
 * (flags changed by another program) when it is not under its own. */
static enum store_status md_open_msg(struct md_box *mb, size_t i, int *fd)
{
    struct md_msg *m = &mb->msgs[i];
    char name[MD_NAME_BUF];
    struct stat st;

    *fd = -1;
    for (int attempt = 0; attempt < 2 && *fd < 0; attempt++) {
        if (attempt == 1 && md_relocate(mb, &i, 1) != STORE_OK)
            return STORE_TEMP_FAIL;
        if (md_full_name(m, name, sizeof(name)) != 0)
            return STORE_TEMP_FAIL;
        *fd = md_open_file(m->in_new ? mb->new_fd : mb->cur_fd, name, &st);
        if (*fd < 0 && errno != ENOENT)
            return STORE_TEMP_FAIL;
    }
    return *fd < 0 ? STORE_GONE : STORE_OK;
}

static enum store_status md_reader_open(struct store_mailbox *smb, size_t i,
                                        struct store_reader **out)
{
    struct md_box *mb = md_box_of(smb);
    struct md_reader *r;
    enum store_status st;
    int fd = -1;

    *out = NULL;
    if (mb->msgs[i].gone)
        return STORE_GONE;
    st = md_attach(mb);
    if (st == STORE_OK)
        st = md_open_msg(mb, i, &fd);
    md_detach(mb);
    if (st != STORE_OK)
        return st;
    if ((r = malloc(sizeof(*r))) == NULL) {
        close(fd);
        return STORE_TEMP_FAIL;
    }
    r->base.be = &maildir_backend;
    r->fd = fd;
    *out = &r->base;
    return STORE_OK;
}

static ssize_t md_reader_read(struct store_reader *sr, void *buf, size_t len)
{
    return md_read(((struct md_reader *)sr)->fd, buf, len);
}

static void md_reader_close(struct store_reader *sr)
{
    struct md_reader *r = (struct md_reader *)sr;

    close(r->fd);
    free(r);
}

/* ---- commit ---- */

/* Unlinks message i. Returns 0, or an errno value. */
static int md_unlink(struct md_box *mb, size_t i)
{
    struct md_msg *m = &mb->msgs[i];
    char name[MD_NAME_BUF];

    if (md_full_name(m, name, sizeof(name)) != 0)
        return ENAMETOOLONG;
    if (unlinkat(m->in_new ? mb->new_fd : mb->cur_fd, name, 0) != 0)
        return errno;
    m->gone = true;
    return 0;
}

/* Remembers that message i was not under its name; without memory to look
 * for it elsewhere it counts as gone. */
static void md_note_missing(struct md_box *mb, size_t i, size_t **missing,
                            size_t *n_missing)
{
    if (*missing == NULL)
        *missing = malloc(mb->n * sizeof(**missing));
    if (*missing != NULL)
        (*missing)[(*n_missing)++] = i;
    else
        mb->msgs[i].gone = true;
}

/* Deletes on an attached maildrop. */
static enum store_status md_commit_attached(struct md_box *mb,
                                            const bool *deleted)
{
    enum store_status st = STORE_OK;
    size_t *missing = NULL, n_missing = 0;
    bool any = false, from_new = false;

    for (size_t i = 0; i < mb->n; i++) {
        if (!deleted[i] || mb->msgs[i].gone)
            continue;
        any = true;
        from_new |= mb->msgs[i].in_new;
        int err = md_unlink(mb, i);
        if (err == ENOENT)
            md_note_missing(mb, i, &missing, &n_missing);
        else if (err != 0)
            st = STORE_TEMP_FAIL;
    }
    /* another program changed flags since open: delete under the new name */
    if (n_missing > 0 && md_relocate(mb, missing, n_missing) != STORE_OK)
        st = STORE_TEMP_FAIL;
    for (size_t k = 0; k < n_missing; k++) {
        int err = md_unlink(mb, missing[k]);
        if (err != 0 && err != ENOENT)
            st = STORE_TEMP_FAIL;
        mb->msgs[missing[k]].gone = err == 0 || err == ENOENT;
    }
    free(missing);
    if (any && fsync(mb->cur_fd) != 0)
        st = STORE_TEMP_FAIL;
    if (from_new && fsync(mb->new_fd) != 0)
        st = STORE_TEMP_FAIL;
    return st;
}

static enum store_status md_commit(struct store_mailbox *smb,
                                   const bool *deleted)
{
    struct md_box *mb = md_box_of(smb);
    enum store_status st;
    bool any = false;

    for (size_t i = 0; i < mb->n && !any; i++)
        any = deleted[i] && !mb->msgs[i].gone;
    if (!any)
        return STORE_OK;
    st = md_attach(mb);
    if (st == STORE_OK)
        st = md_commit_attached(mb, deleted);
    md_detach(mb);
    return st;
}

const struct store_backend maildir_backend = {
    .name = "maildir",
    .open = md_open,
    .count = md_count,
    .size = md_size,
    .uidl = md_uidl,
    .reader_open = md_reader_open,
    .reader_read = md_reader_read,
    .reader_close = md_reader_close,
    .commit = md_commit,
    .close = md_close,
    .deliver = maildir_deliver,
};
