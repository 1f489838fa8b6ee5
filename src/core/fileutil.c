/* fileutil.c — durable file handling shared by the files in data_dir (the
 * users and aliases files, the queue): write loops, directory fsync,
 * ownership like data_dir when running as root, lock files, and atomic
 * replacement (temp file, fsync, rename, fsync the directory). Every
 * function leaves errno as the failing call set it. */
#include "core/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* buf (PATH_MAX) = dir/name. */
static int file_path(char *buf, const char *dir, const char *name)
{
    if (!dir || !*dir) {
        errno = EINVAL;
        return -1;
    }
    int n = snprintf(buf, PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* Closes fd keeping errno; returns -1. */
static int file_close_fail(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Removes path keeping errno; returns -1. */
static int file_unlink_fail(const char *path)
{
    int saved = errno;
    unlink(path);
    errno = saved;
    return -1;
}

int file_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;

    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int file_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int file_chown_like_dir(int fd, const char *dir)
{
    struct stat dst, fst;

    if (geteuid() != 0)
        return 0;
    if (stat(dir, &dst) < 0 || fstat(fd, &fst) < 0)
        return -1;
    if (fst.st_uid == dst.st_uid && fst.st_gid == dst.st_gid)
        return 0;
    return fchown(fd, dst.st_uid, dst.st_gid);
}

int file_lock(const char *dir, const char *name)
{
    char path[PATH_MAX];

    if (file_path(path, dir, name) < 0)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                  0600);
    if (fd < 0)
        return -1;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
        ;
    if (rc < 0 || file_chown_like_dir(fd, dir) < 0)
        return file_close_fail(fd);
    return fd;
}

/* Writes data to a new tmp (0600, owner of dir) and fsyncs and closes it.
 * On error tmp is removed. */
static int file_write_tmp(const char *tmp, const char *dir, const void *data,
                          size_t len)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW |
                       O_NOCTTY, 0600);
    if (fd < 0)
        return -1;
    if (fchmod(fd, 0600) < 0 || file_chown_like_dir(fd, dir) < 0 ||
        file_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        file_close_fail(fd);
        return file_unlink_fail(tmp);
    }
    if (close(fd) < 0)
        return file_unlink_fail(tmp);
    return 0;
}

int file_replace(const char *dir, const char *name, const char *tmp_name,
                 const void *data, size_t len)
{
    char tmp[PATH_MAX], path[PATH_MAX];

    if (file_path(tmp, dir, tmp_name) < 0 || file_path(path, dir, name) < 0)
        return -1;
    if (file_write_tmp(tmp, dir, data, len) < 0)
        return -1;
    if (rename(tmp, path) < 0)
        return file_unlink_fail(tmp);
    return file_fsync_dir(dir);
}
