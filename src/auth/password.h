/* password.h — password hashing and verification.
 *
 * New hashes are argon2id ("{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash").
 * Verification also takes the schemes Dovecot passwd-files hold:
 * {SHA512-CRYPT}/$6$, {BLF-CRYPT}/$2y$ (and $2b$/$2a$), {CRYPT}/yescrypt $y$,
 * {SHA256-CRYPT}/$5$, and bare crypt(3) strings of those forms.
 * Plaintext schemes ({PLAIN}, {CLEARTEXT}) are refused. */
#ifndef POBOX_PASSWORD_H
#define POBOX_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_HASH_MAX 256

/* Fills out (PASSWORD_HASH_MAX) with a new argon2id hash. false on failure. */
bool password_hash(const char *plain, char *out, size_t outsz);

/* Verifies in constant time with respect to the password. Unknown or
 * malformed stored hashes verify false. */
bool password_verify(const char *plain, const char *stored);

/* Verifies against a fixed dummy argon2id hash and returns false: spends the
 * same time a real check would, so unknown users look like wrong passwords. */
bool password_verify_dummy(const char *plain);

/* Zeroes a secret in a way the compiler cannot optimise out. */
void password_wipe(void *p, size_t n);

#endif
