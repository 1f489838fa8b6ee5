/* fileutil.h — durable file handling shared by the files in data_dir:
 * writing everything, fsyncing a directory, giving a file the owner of its
 * directory, lock files and atomic replacement by rename. */
#ifndef POBOX_FILEUTIL_H
#define POBOX_FILEUTIL_H

#include <stddef.h>

/* Writes all n octets of p to fd, retrying on EINTR. 0, or -1 (errno). */
int file_write_all(int fd, const void *p, size_t n);
/* Opens the directory dir and fsyncs it. 0, or -1 (errno of the failure). */
int file_fsync_dir(const char *dir);
/* As root, gives fd the owner and group of dir, so that a server that
 * dropped privileges can still use what a root command wrote. 0 when not
 * root or nothing to change, else as fchown; -1 (errno) on error. */
int file_chown_like_dir(int fd, const char *dir);
/* Opens (creating, 0600) dir/name, takes flock(LOCK_EX) on it and gives it
 * the owner of dir. The fd (closing it unlocks), or -1 (errno; EINVAL for an
 * empty dir, ENAMETOOLONG for a too long path). */
int file_lock(const char *dir, const char *name);
/* Writes data to dir/tmp_name (0600, owner of dir), fsyncs it, renames it
 * over dir/name and fsyncs dir. 0, or -1 (errno; tmp_name is removed when
 * the new content did not reach name). */
int file_replace(const char *dir, const char *name, const char *tmp_name,
                 const void *data, size_t len);

#endif
