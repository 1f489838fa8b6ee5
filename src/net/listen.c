/* listen.c — address parsing and socket binding for the listeners. */
#include "net/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int listen_split(const char *addr, char *host, size_t hostsz, char *port,
                 size_t portsz)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, hostsz, "%.*s", (int)(close - addr - 1), addr + 1);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || strchr(addr, ':') != colon)
            return -1;
        snprintf(host, hostsz, "%.*s", (int)(colon - addr), addr);
    }
    snprintf(port, portsz, "%s", colon + 1);
    if (!*port || strspn(port, "0123456789") != strlen(port) || atoi(port) > 65535)
        return -1;
    return 0;
}

static int bind_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int push_fd(int **fds, size_t *nfds, int fd)
{
    int *n = realloc(*fds, (*nfds + 1) * sizeof(**fds));
    if (!n)
        return -1;
    *fds = n;
    (*fds)[(*nfds)++] = fd;
    return 0;
}

int listen_bind_all(const char *name, char *const *list, int **fds, size_t *nfds)
{
    for (char *const *a = list; a && *a; a++) {
        char host[256], port[16];
        if (listen_split(*a, host, sizeof(host), port, sizeof(port)) != 0) {
            fprintf(stderr, "listen.%s: %s: expected host:port or [ipv6]:port\n",
                    name, *a);
            return -1;
        }
        struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                                 .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
        if (rc != 0) {
            fprintf(stderr, "listen.%s: %s: %s\n", name, *a, gai_strerror(rc));
            return -1;
        }
        int fd = bind_one(res);
        int e = errno;
        freeaddrinfo(res);
        if (fd < 0 || push_fd(fds, nfds, fd) != 0) {
            fprintf(stderr, "listen.%s: %s: cannot listen: %s\n", name, *a,
                    strerror(e));
            if (fd >= 0)
                close(fd);
            return -1;
        }
    }
    return 0;
}
