/* throttle.h — growing delays after failed logins, per client address and
 * per account, kept in memory with decay (a quiet hour forgets).
 *
 * delay = base * 2^(failures-1), capped at max; a success for the account
 * from that address clears both counters for that pair. Thread safe. */
#ifndef POBOX_THROTTLE_H
#define POBOX_THROTTLE_H

#include <stdint.h>

/* Records a failure; returns the delay in ms before the -ERR may be sent. */
uint64_t throttle_fail(const char *ip, const char *account, uint64_t base_ms,
                       uint64_t max_ms);
/* Delay already owed before even checking a login from ip for account. */
uint64_t throttle_pending(const char *ip, const char *account, uint64_t base_ms,
                          uint64_t max_ms);
void throttle_success(const char *ip, const char *account);
void throttle_reset_all(void);

#endif
