/* maildir_lock.h — the POP3 maildrop lock: one session per Maildir, within
 * this process and across pobox processes sharing a data_dir. A session
 * holds it for its whole life without a file descriptor of its own, so an
 * idle session costs one descriptor (its socket).
 *
 * Within the process: a table of held Maildirs (device, inode). Across
 * processes: an open-file-description lock (F_OFD_SETLK) on one byte of
 * data_dir/pobox.locks, at an offset derived from device and inode, through
 * one descriptor the whole process shares; the kernel drops it when the
 * process dies, so no stale lock outlives a crash. Thread-safe. */
#ifndef POBOX_MAILDIR_LOCK_H
#define POBOX_MAILDIR_LOCK_H

#include <sys/types.h>

/* 1 taken, 0 held by another session (here or in another process),
 * -1 error (out of memory, pobox.locks cannot be opened). */
int maildir_lock_take(const char *data_dir, dev_t dev, ino_t ino);
void maildir_lock_release(dev_t dev, ino_t ino);

#endif
