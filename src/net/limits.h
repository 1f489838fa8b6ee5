/* limits.h — connection counting for limits.max_connections (all listeners
 * together) and limits.max_connections_per_ip. Thread safe: the acceptor
 * takes a slot, the I/O thread that closes the connection gives it back. */
#ifndef POBOX_LIMITS_H
#define POBOX_LIMITS_H

enum limits_verdict { LIMITS_OK, LIMITS_TOTAL, LIMITS_PER_IP };

struct limits;

struct limits *limits_new(void);
void limits_free(struct limits *l);
enum limits_verdict limits_acquire(struct limits *l, const char *ip,
                                   unsigned max_total, unsigned max_per_ip);
void limits_release(struct limits *l, const char *ip);
unsigned limits_total(struct limits *l);

#endif
