/* limits.c — machine-limit modes. tcp-throughput: one loopback TCP stream
 * between two threads of this process, 256 KiB writes for -d seconds.
 * fsync-writes: create tmp/N, write 10240 bytes, fsync, rename to new/N,
 * fsync new/ — what a maildir delivery costs the disk. */
#include "limits.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop.h"
#include "util.h"

#define CHUNK (256u * 1024u)
#define FILE_SIZE 10240u

static int fail(const char *what)
{
    fprintf(stderr, "pobox-loadgen: %s: %s\n", what, strerror(errno));
    return -1;
}

struct receiver {
    int lfd;
    uint64_t bytes;
    uint64_t t_end;
};

static void *receive(void *arg)
{
    struct receiver *rc = arg;
    int fd = accept(rc->lfd, NULL, NULL);
    char *buf = malloc(CHUNK);
    if (fd >= 0 && buf != NULL) {
        ssize_t n;
        while ((n = read(fd, buf, CHUNK)) > 0 || (n < 0 && errno == EINTR))
            rc->bytes += n > 0 ? (uint64_t)n : 0;
    }
    rc->t_end = lg_clock_us();
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int listen_loopback(struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(*sa);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)sa, sizeof(*sa)) < 0 || listen(fd, 1) < 0 ||
        getsockname(fd, (struct sockaddr *)sa, &len) < 0) {
        fail("listen on 127.0.0.1");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Writes CHUNK-sized blocks until the duration is over. */
static int send_for(int fd, double secs, uint64_t t0)
{
    char *buf = malloc(CHUNK);
    if (buf == NULL)
        return fail("malloc");
    memset(buf, 'x', CHUNK);
    uint64_t end = t0 + (uint64_t)(secs * 1e6);
    int rc = 0;
    while (lg_clock_us() < end && rc == 0) {
        size_t off = 0;
        while (off < CHUNK) {
            ssize_t n = write(fd, buf + off, CHUNK - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = fail("write");
                break;
            }
            off += (size_t)n;
        }
    }
    free(buf);
    return rc;
}

int lg_limits_tcp(const struct lg_opts *o, struct lg_limit_res *r)
{
    struct sockaddr_in sa;
    struct receiver rc = {.lfd = listen_loopback(&sa)};
    if (rc.lfd < 0)
        return -1;
    pthread_t th;
    if (pthread_create(&th, NULL, receive, &rc) != 0) {
        close(rc.lfd);
        return fail("pthread_create");
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    uint64_t t0 = lg_clock_us();
    int rc_send = ok ? send_for(fd, o->duration, t0) : fail("connect");
    if (fd >= 0)
        close(fd);
    if (!ok)    /* unblock accept() */
        shutdown(rc.lfd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(rc.lfd);
    r->bytes = rc.bytes;
    r->seconds = (double)(rc.t_end - t0) / 1e6;
    return ok && rc_send == 0 ? 0 : -1;
}

/* Name of file n: "lg<pid>.<n>". */
static void file_name(char *buf, uint64_t n)
{
    char *p = buf;
    LG_PUT_LIT(&p, "lg");
    p += lg_utoa(p, (uint64_t)getpid());
    *p++ = '.';
    p += lg_utoa(p, n);
    *p = '\0';
}

static int write_one(int tmpfd, int newfd, const char *name, const char *data)
{
    int fd = openat(tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail("create tmp file");
    size_t off = 0;
    while (off < FILE_SIZE) {
        ssize_t n = write(fd, data + off, FILE_SIZE - off);
        if (n < 0 && errno != EINTR) {
            close(fd);
            return fail("write");
        }
        off += n > 0 ? (size_t)n : 0;
    }
    if (fsync(fd) < 0 || close(fd) < 0)
        return fail("fsync");
    if (renameat(tmpfd, name, newfd, name) < 0)
        return fail("rename");
    if (fsync(newfd) < 0)
        return fail("fsync new/");
    return 0;
}

static void make_data(char *data)
{
    for (unsigned i = 0; i < FILE_SIZE; i++)
        data[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
}

static void cleanup(int dirfd, int tmpfd, int newfd, uint64_t n, int made_tmp,
                    int made_new)
{
    char name[48];
    for (uint64_t i = 0; i < n; i++) {
        file_name(name, i);
        unlinkat(newfd, name, 0);
        unlinkat(tmpfd, name, 0);
    }
    if (made_tmp)
        unlinkat(dirfd, "tmp", AT_REMOVEDIR);
    if (made_new)
        unlinkat(dirfd, "new", AT_REMOVEDIR);
}

static int run_writes(const struct lg_opts *o, int tmpfd, int newfd,
                      struct lg_limit_res *r, uint64_t *n)
{
    char data[FILE_SIZE], name[48];
    make_data(data);
    uint64_t t0 = lg_clock_us(), end = t0 + (uint64_t)(o->duration * 1e6), now = t0;
    int rc = 0;
    while (now < end) {
        uint64_t t = now;
        file_name(name, *n);
        (*n)++;
        if ((rc = write_one(tmpfd, newfd, name, data)) < 0)
            break;
        now = lg_clock_us();
        lg_hist_add(&r->lat, now - t);
        r->writes++;
    }
    r->seconds = (double)(now - t0) / 1e6;
    return rc;
}

int lg_limits_fsync(const struct lg_opts *o, struct lg_limit_res *r)
{
    int dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return fail(o->dir);
    int made_tmp = mkdirat(dirfd, "tmp", 0700) == 0;
    int made_new = mkdirat(dirfd, "new", 0700) == 0;
    int tmpfd = openat(dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int newfd = openat(dirfd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    uint64_t n = 0;
    int rc = tmpfd < 0 || newfd < 0 ? fail("tmp/ or new/") : run_writes(o, tmpfd, newfd, r, &n);
    if (tmpfd >= 0 && newfd >= 0)
        cleanup(dirfd, tmpfd, newfd, n, made_tmp, made_new);
    if (tmpfd >= 0)
        close(tmpfd);
    if (newfd >= 0)
        close(newfd);
    close(dirfd);
    return rc;
}
