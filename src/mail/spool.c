/* spool.c — the message being received, in an anonymous file under
 * data_dir/spool/ (O_TMPFILE, else mkostemp + unlink), written through a
 * 64 KiB buffer with LF line ends; counts sizes and notes bare CR, bare LF,
 * 8-bit and NUL octets on the way (see spool.h). */
#include "mail/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_BUF 65536

struct spool {
    int fd;
    int err;                /* first write errno */
    uint64_t size, wire;    /* octets stored; with CRLF ends */
    uint64_t limit;         /* max wire octets written; 0 = none */
    bool bare_cr, bare_lf, eightbit, nul;
    bool too_big;           /* over the limit: writing stopped */
    bool held_cr;           /* raw input ended in CR */
    uint64_t line, longest; /* octets of the current and the longest line */
    size_t used;            /* bytes in buf */
    char buf[SPOOL_BUF];
};

/* ---- the file ---- */

/* An unnamed file in dir: O_TMPFILE where the file system has it. */
static int spool_open_file(const char *dir)
{
    char path[PATH_MAX];
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    if (snprintf(path, sizeof(path), "%s/.spool-XXXXXX", dir)
        >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);     /* 0600 */
    if (fd >= 0)
        unlink(path);
    return fd;
}

struct spool *spool_new(const char *data_dir)
{
    char dir[PATH_MAX];
    struct spool *sp;
    int fd, err;

    if (data_dir == NULL || data_dir[0] == '\0') {
        errno = EINVAL;
        return NULL;
    }
    if (snprintf(dir, sizeof(dir), "%s/spool", data_dir) >= (int)sizeof(dir)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST)
        || (fd = spool_open_file(dir)) < 0)
        return NULL;
    if ((sp = calloc(1, sizeof(*sp))) == NULL) {
        err = errno;
        close(fd);
        errno = err;
        return NULL;
    }
    sp->fd = fd;
    return sp;
}

void spool_free(struct spool *sp)
{
    if (sp == NULL)
        return;
    close(sp->fd);
    free(sp);
}

/* Writes out the buffer, unless writing already stopped. */
static void spool_flush(struct spool *sp)
{
    const char *p = sp->buf;
    size_t n = sp->used;

    sp->used = 0;
    while (n > 0 && sp->err == 0 && !sp->too_big) {
        ssize_t w = write(sp->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            sp->err = w < 0 && errno != 0 ? errno : EIO;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* ---- storing ---- */

/* Stops writing once over the limit; what is buffered goes nowhere. */
static void spool_check_limit(struct spool *sp)
{
    if (sp->limit != 0 && sp->wire > sp->limit && !sp->too_big) {
        sp->too_big = true;
        sp->used = 0;
    }
}

/* Counts n octets about to be stored: sizes and the 8-bit/NUL flags. */
static void spool_count(struct spool *sp, const char *p, size_t n)
{
    uint64_t lf = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c != '\n') {
            sp->line++;
        } else {
            if (sp->line > sp->longest)
                sp->longest = sp->line;
            sp->line = 0;
        }
        if (c == '\n')
            lf++;
        else if (c >= 0x80)
            sp->eightbit = true;
        else if (c == 0)
            sp->nul = true;
    }
    sp->size += n;
    sp->wire += n + lf;
}

/* Stores n octets as they are (already LF-ended text). */
static void spool_store(struct spool *sp, const char *p, size_t n)
{
    spool_count(sp, p, n);
    spool_check_limit(sp);
    if (sp->too_big || sp->err != 0)
        return;
    while (n > 0) {
        size_t k = SPOOL_BUF - sp->used;
        if (k > n)
            k = n;
        memcpy(sp->buf + sp->used, p, k);
        sp->used += k;
        p += k;
        n -= k;
        if (sp->used == SPOOL_BUF)
            spool_flush(sp);
    }
}

/* A CR held from the end of the last raw chunk, not followed by LF. */
static void spool_release_cr(struct spool *sp)
{
    if (!sp->held_cr)
        return;
    sp->held_cr = false;
    sp->bare_cr = true;
    spool_store(sp, "\r", 1);
}

int spool_add_line(struct spool *sp, const char *line, size_t len,
                   size_t eol_len)
{
    spool_release_cr(sp);
    if (len > 0 && memchr(line, '\r', len) != NULL)
        sp->bare_cr = true;
    if (eol_len == 1)
        sp->bare_lf = true;
    spool_store(sp, line, len);
    if (eol_len > 0)
        spool_store(sp, "\n", 1);
    return sp->err != 0 ? -1 : 0;
}

/* Stores text up to a CR: any LF in it is a bare one. */
static void spool_store_run(struct spool *sp, const char *p, size_t n)
{
    if (memchr(p, '\n', n) != NULL)
        sp->bare_lf = true;
    spool_store(sp, p, n);
}

int spool_add_raw(struct spool *sp, const void *data, size_t len)
{
    const char *p = data, *end;

    if (len == 0)
        return sp->err != 0 ? -1 : 0;
    end = p + len;
    if (sp->held_cr && *p == '\n') {
        sp->held_cr = false;
        spool_store(sp, "\n", 1);
        p++;
    }
    if (p < end)
        spool_release_cr(sp);       /* held CR, then not LF: bare */
    while (p < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        spool_store_run(sp, p, (size_t)((cr != NULL ? cr : end) - p));
        if (cr == NULL)
            break;
        if (cr + 1 == end) {
            sp->held_cr = true;
            break;
        }
        if (cr[1] == '\n') {
            spool_store(sp, "\n", 1);
            p = cr + 2;
        } else {
            sp->bare_cr = true;
            spool_store(sp, "\r", 1);
            p = cr + 1;
        }
    }
    return sp->err != 0 ? -1 : 0;
}

int spool_finish(struct spool *sp)
{
    spool_release_cr(sp);
    spool_flush(sp);
    if (sp->err != 0) {
        errno = sp->err;
        return -1;
    }
    if (sp->too_big) {
        errno = EFBIG;
        return -1;
    }
    return 0;
}

/* ---- what the caller asks ---- */

void spool_set_limit(struct spool *sp, uint64_t max_wire_octets)
{
    sp->limit = max_wire_octets;
    spool_check_limit(sp);
}

bool spool_too_big(const struct spool *sp)
{
    return sp->too_big;
}

int spool_fd(const struct spool *sp)
{
    return sp->fd;
}

uint64_t spool_size(const struct spool *sp)
{
    return sp->size;
}

uint64_t spool_longest_line(const struct spool *sp)
{
    return sp->line > sp->longest ? sp->line : sp->longest;
}

uint64_t spool_wire_size(const struct spool *sp)
{
    return sp->wire;
}

bool spool_bare_cr(const struct spool *sp)
{
    return sp->bare_cr;
}

bool spool_bare_lf(const struct spool *sp)
{
    return sp->bare_lf;
}

bool spool_eightbit(const struct spool *sp)
{
    return sp->eightbit;
}

bool spool_nul(const struct spool *sp)
{
    return sp->nul;
}

int spool_error(const struct spool *sp)
{
    return sp->err;
}
