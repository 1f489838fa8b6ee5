/* maildir_lock.c — the POP3 maildrop lock (see maildir_lock.h): a chained
 * hash table of held Maildirs under one mutex, and a one-byte OFD lock per
 * held Maildir in data_dir/pobox.locks for other processes. */
#include "store/maildir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MDL_BUCKETS 4096u
#define MDL_FILE "pobox.locks"

struct mdl_entry {
    struct mdl_entry *next;
    dev_t dev;
    ino_t ino;
    int fd;                     /* the pobox.locks it is locked in */
};

static struct mdl_entry *mdl_table[MDL_BUCKETS];
static pthread_mutex_t mdl_mutex = PTHREAD_MUTEX_INITIALIZER;
/* pobox.locks of the data_dir in use. A reload that changes data_dir opens
 * the new one; the old descriptor stays open for the locks taken in it. */
static char *mdl_dir;
static int mdl_fd = -1;

static uint64_t mdl_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull;
    return h ^ ((uint64_t)dev * 0xC2B2AE3D27D4EB4Full);
}

/* The shared descriptor of data_dir/pobox.locks; mutex held. */
static int mdl_file(const char *data_dir)
{
    if (mdl_fd >= 0 && mdl_dir != NULL && strcmp(mdl_dir, data_dir) == 0)
        return mdl_fd;
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", data_dir, MDL_FILE) >= (int)sizeof(path))
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    char *dir = fd >= 0 ? strdup(data_dir) : NULL;
    if (dir == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    free(mdl_dir);
    mdl_dir = dir;
    mdl_fd = fd;
    return fd;
}

/* F_WRLCK or F_UNLCK on the byte for (dev, ino). 1 done, 0 held elsewhere,
 * -1 error. */
static int mdl_range(int fd, dev_t dev, ino_t ino, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)(mdl_hash(dev, ino) >> 2);      /* below 2^62 */
    fl.l_len = 1;
    while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        if (errno == EAGAIN || errno == EACCES)
            return 0;
        if (errno != EINTR)
            return -1;
    }
    return 1;
}

static struct mdl_entry **mdl_find(dev_t dev, ino_t ino)
{
    struct mdl_entry **p = &mdl_table[mdl_hash(dev, ino) % MDL_BUCKETS];
    while (*p != NULL && !((*p)->dev == dev && (*p)->ino == ino))
        p = &(*p)->next;
    return p;
}

int maildir_lock_take(const char *data_dir, dev_t dev, ino_t ino)
{
    int r = 0, fd;
    struct mdl_entry **p, *e;

    pthread_mutex_lock(&mdl_mutex);
    p = mdl_find(dev, ino);
    if (*p == NULL) {
        e = malloc(sizeof(*e));
        fd = e != NULL ? mdl_file(data_dir) : -1;
        r = fd < 0 ? -1 : mdl_range(fd, dev, ino, F_WRLCK);
        if (r == 1) {
            *e = (struct mdl_entry){.next = NULL, .dev = dev, .ino = ino, .fd = fd};
            *p = e;
        } else {
            free(e);
        }
    }
    pthread_mutex_unlock(&mdl_mutex);
    return r;
}

void maildir_lock_release(dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&mdl_mutex);
    struct mdl_entry **p = mdl_find(dev, ino), *e = *p;
    if (e != NULL) {
        mdl_range(e->fd, dev, ino, F_UNLCK);
        *p = e->next;
        free(e);
    }
    pthread_mutex_unlock(&mdl_mutex);
}
