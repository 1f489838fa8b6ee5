/* pop3.h — the POP3 service's entry point: a new client socket becomes a
 * POP3 session (RFC 1939, 2449, 2595, 3206, 6856, 8314). */
#ifndef POBOX_POP3_H
#define POBOX_POP3_H

#include <stdbool.h>
#include <sys/socket.h>

struct server;
struct loop;

/* server_accept_fn for listen.pop3 (implicit_tls false) and listen.pop3s. */
void pop3_accept(struct server *srv, struct loop *loop, int fd,
                 const struct sockaddr *addr, bool implicit_tls);

/* Sent in plaintext when a connection is over a limit. */
#define POP3_BUSY_REPLY "-ERR [SYS/TEMP] Too many connections, try again later\r\n"

#endif
