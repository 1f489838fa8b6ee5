/* listen.h — turns a listen list ("0.0.0.0:110", "[::]:110", "host:port")
 * into bound, listening, non-blocking sockets. */
#ifndef POBOX_LISTEN_H
#define POBOX_LISTEN_H

#include <stddef.h>

/* Binds every address of list; appends the fds to *fds (realloc'ed) and
 * returns 0, or -1 after printing "listen.NAME: ADDRESS: reason" to
 * stderr. */
int listen_bind_all(const char *name, char *const *list, int **fds, size_t *nfds);

/* Splits "host:port" / "[v6]:port" into host and port. */
int listen_split(const char *addr, char *host, size_t hostsz, char *port,
                 size_t portsz);

#endif
