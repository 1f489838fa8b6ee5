/* maildir_deliver.c — delivery into a Maildir (store_deliver for the Maildir
 * backend): the message is written under a unique name into tmp/, fsync'd,
 * renamed into new/ with its sizes in the name, and new/ is fsync'd before
 * STORE_OK. The POP3 lock (pobox.lock) is never taken: a session that has
 * the maildrop open keeps its numbers and sees the message next time.
 *
 * Names, as in the Maildir spec and Dovecot:
 *
 *   tmp/TIME.M<usec>P<pid>Q<n>R<8 hex>.HOST
 *   new/TIME.M<usec>P<pid>Q<n>R<8 hex>.HOST,S=<octets>,W=<CRLF octets>
 *
 * TIME is the delivery second, usec zero-padded to 6 digits (so names of one
 * second sort in delivery order), n counts this process's deliveries, R is
 * random. HOST is server.hostname with '/', ':' and ',' (and any byte
 * outside 0x21..0x7E) written as \ooo octal (\057, \072, \054), cut to
 * MD_HOST_MAX characters. S= is the file size; W= is the size RETR sends
 * (core/mailstream.h), which maildir.c reads back for LIST and STAT. */
#include "store/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/mailstream.h"

#define MD_COPY_CHUNK   65536
#define MD_HOST_MAX     100     /* escaped host part; keeps names < NAME_MAX */
#define MD_BASE_MAX     192     /* tmp name; the new/ name adds two sizes */
#define MD_FINAL_MAX    (MD_BASE_MAX + 48)
#define MD_CREATE_TRIES 5

/* Deliveries made by this process: the Q part of names. Atomic because
 * worker threads deliver at the same time. */
static atomic_uint_fast64_t md_deliveries;

/* ---- names ---- */

/* HOST part of a name into out (at least MD_HOST_MAX + 1 bytes). */
static void md_host_part(const char *host, char *out)
{
    char sys[256];
    size_t n = 0;

    if (host == NULL || host[0] == '\0') {
        host = gethostname(sys, sizeof(sys)) == 0 ? sys : "localhost";
        sys[sizeof(sys) - 1] = '\0';
    }
    for (; *host != '\0'; host++) {
        unsigned char c = (unsigned char)*host;
        bool plain = c > 0x20 && c < 0x7f && c != '/' && c != ':' && c != ',';
        if (n + (plain ? 1 : 4) > MD_HOST_MAX)
            break;
        if (plain)
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, 5, "\\%03o", c);
    }
    out[n] = '\0';
}

/* A fresh unique base name. False only if the kernel gives no randomness. */
static bool md_unique_name(const char *host, char *buf, size_t size)
{
    char hpart[MD_HOST_MAX + 1];
    struct timeval tv;
    uint32_t rnd;
    uint64_t q = atomic_fetch_add(&md_deliveries, 1) + 1;

    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return false;
    gettimeofday(&tv, NULL);
    md_host_part(host, hpart);
    snprintf(buf, size, "%lld.M%06ldP%ldQ%" PRIu64 "R%08" PRIx32 ".%s",
             (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), q, rnd,
             hpart);
    return true;
}

/* Creates tmp/NAME for writing under a fresh name put into base. */
static int md_create_tmp(const char *host, int tmp_fd, char *base, size_t size)
{
    for (int i = 0; i < MD_CREATE_TRIES; i++) {
        if (!md_unique_name(host, base, size))
            return -1;
        int fd = openat(tmp_fd, base,
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                        0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* ---- copying ---- */

static bool md_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

struct md_copy {
    int fd;
    uint64_t octets;            /* written: S= */
    struct mailstream ms;       /* counts W= */
};

static bool md_copy_put(struct md_copy *c, const char *p, size_t n)
{
    mailstream_encode(&c->ms, p, n, NULL);
    c->octets += n;
    return md_write_all(c->fd, p, n);
}

/* Writes prefix and then msg_fd from offset 0 to its end into c->fd. */
static bool md_copy_message(struct md_copy *c, const char *prefix, int msg_fd)
{
    char *buf = malloc(MD_COPY_CHUNK);
    off_t off = 0;
    bool ok = buf != NULL;

    mailstream_init(&c->ms, -1);
    if (ok && prefix != NULL)
        ok = md_copy_put(c, prefix, strlen(prefix));
    while (ok) {
        ssize_t r = pread(msg_fd, buf, MD_COPY_CHUNK, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = r == 0;
            break;
        }
        ok = md_copy_put(c, buf, (size_t)r);
        off += r;
    }
    mailstream_finish(&c->ms, NULL);
    free(buf);
    return ok;
}

/* ---- publishing ---- */

/* Renames tmp/base to new/final without replacing anything. 0 or -1. */
static int md_publish(int tmp_fd, const char *base, int new_fd,
                      const char *final)
{
    struct stat st;

    if (renameat2(tmp_fd, base, new_fd, final, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* file system without RENAME_NOREPLACE */
    if (fstatat(new_fd, final, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return -1;
    return renameat(tmp_fd, base, new_fd, final);
}

/* Writes the file into tmp/ and moves it into new/, durably. */
static enum store_status md_deliver_into(const char *host, int tmp_fd,
                                         int new_fd, const char *prefix,
                                         int msg_fd)
{
    char base[MD_BASE_MAX], final[MD_FINAL_MAX];
    struct md_copy c = {.fd = md_create_tmp(host, tmp_fd, base, sizeof(base))};
    bool ok;
    int n;

    if (c.fd < 0)
        return STORE_TEMP_FAIL;
    ok = md_copy_message(&c, prefix, msg_fd);
    ok = ok && fsync(c.fd) == 0;
    ok = close(c.fd) == 0 && ok;
    n = snprintf(final, sizeof(final), "%s,S=%" PRIu64 ",W=%" PRIu64, base,
                 c.octets, c.ms.octets);
    ok = ok && n > 0 && (size_t)n < sizeof(final);
    if (!ok || md_publish(tmp_fd, base, new_fd, final) != 0) {
        unlinkat(tmp_fd, base, 0);
        return STORE_TEMP_FAIL;
    }
    if (fsync(new_fd) != 0) {
        unlinkat(new_fd, final, 0);     /* not durable: the sender retries */
        return STORE_TEMP_FAIL;
    }
    return STORE_OK;
}

enum store_status maildir_deliver(const struct config *cfg,
                                  const char *address, const char *prefix,
                                  int msg_fd)
{
    enum store_status st;
    int dir_fd, tmp_fd, new_fd;

    st = maildir_make_dirs(cfg->data_dir, address, &dir_fd);
    if (st != STORE_OK)
        return st;
    tmp_fd = openat(dir_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    new_fd = openat(dir_fd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dir_fd);
    if (tmp_fd >= 0 && new_fd >= 0)
        st = md_deliver_into(cfg->hostname, tmp_fd, new_fd, prefix, msg_fd);
    else
        st = STORE_TEMP_FAIL;
    if (tmp_fd >= 0)
        close(tmp_fd);
    if (new_fd >= 0)
        close(new_fd);
    return st;
}
