/* smtp.h — the SMTP service's entry points: a new client socket becomes an
 * SMTP session on port 25 (inbound mail for local domains) or a submission
 * session on 587 (STARTTLS) or 465 (implicit TLS). RFC 5321, 6409, 8314. */
#ifndef POBOX_SMTP_H
#define POBOX_SMTP_H

#include <stdbool.h>
#include <sys/socket.h>

struct server;
struct loop;

/* server_accept_fn for listen.smtp (implicit_tls is always false). */
void smtp_accept(struct server *srv, struct loop *loop, int fd,
                 const struct sockaddr *addr, bool implicit_tls);
/* server_accept_fn for listen.submission (false) and listen.submissions. */
void smtp_accept_submission(struct server *srv, struct loop *loop, int fd,
                            const struct sockaddr *addr, bool implicit_tls);

/* Sent in plaintext when a connection is over a limit. */
#define SMTP_BUSY_REPLY "421 4.7.0 Too many connections, try again later\r\n"

#endif
