/* limits.h — connection counting for limits.max_connections (all listeners
 * together) and limits.max_connections_per_ip. Thread safe: the acceptor
 * takes a slot, the I/O thread that closes the connection gives it back.
 *
 * An implicit-TLS connection takes a "pending" slot: it counts toward the
 * total at once but toward its address only when its handshake completes
 * (limits_promote), so half-open handshakes from one address, cut by
 * tls.handshake_timeout, cannot lock that address's real users out. */
#ifndef POBOX_LIMITS_H
#define POBOX_LIMITS_H

#include <stdbool.h>

enum limits_verdict { LIMITS_OK, LIMITS_TOTAL, LIMITS_PER_IP };

struct limits;

struct limits *limits_new(void);
void limits_free(struct limits *l);
enum limits_verdict limits_acquire(struct limits *l, const char *ip,
                                   unsigned max_total, unsigned max_per_ip,
                                   bool pending);
/* A pending slot becomes a counted one, if the address has room. */
enum limits_verdict limits_promote(struct limits *l, const char *ip,
                                   unsigned max_per_ip);
/* pending: the slot was never promoted. */
void limits_release(struct limits *l, const char *ip, bool pending);
unsigned limits_total(struct limits *l);

#endif
