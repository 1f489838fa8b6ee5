/* credcache.h — remembers recent successful password checks so that a mail
 * client polling every few minutes does not pay the deliberately slow hash
 * (argon2id, SHA512-CRYPT) on every login; `auth.cache_ttl` sets how long.
 *
 * Only successes are remembered, and an entry proves nothing but "this
 * password matched this stored hash": it holds a keyed digest (HMAC-SHA256
 * with a per-process random key) of user, stored hash and password, never
 * the password. A changed password changes the stored hash, so old entries
 * stop matching at once; a wrong password always takes the slow path, so
 * failures keep their cost, delay and throttle. Thread-safe. */
#ifndef POBOX_CREDCACHE_H
#define POBOX_CREDCACHE_H

#include <stdbool.h>

/* True when user logged in with pass against stored within ttl seconds. */
bool credcache_check(const char *user, const char *stored, const char *pass,
                     unsigned ttl);

/* Records a successful check (no-op when ttl is 0). */
void credcache_store(const char *user, const char *stored, const char *pass,
                     unsigned ttl);

/* Forgets everything (tests; a reload that lowers the TTL keeps working
 * because expiry is checked against the TTL in force). */
void credcache_clear(void);

#endif
