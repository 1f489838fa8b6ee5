/* scram.h — SCRAM credentials (RFC 5802, RFC 7677) as the users file keeps
 * them: salted StoredKey and ServerKey, so SCRAM-SHA-1 and SCRAM-SHA-256
 * need no recoverable secret.
 *
 * Stored form (the same as Dovecot's SCRAM schemes, without the prefix):
 *     ITERATIONS,SALT,STOREDKEY,SERVERKEY      (the last three base64) */
#ifndef POBOX_SCRAM_H
#define POBOX_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

enum scram_hash { SCRAM_SHA1, SCRAM_SHA256 };

#define SCRAM_SALT_LEN 16       /* octets of random salt for new credentials */
#define SCRAM_B64_MAX 64        /* room for any base64 field above + NUL */
#define SCRAM_CREDS_MAX 256     /* room for the whole stored form + NUL */

struct scram_creds {
    unsigned iterations;
    char salt[SCRAM_B64_MAX];        /* base64, as sent in s= */
    char stored_key[SCRAM_B64_MAX];  /* base64 */
    char server_key[SCRAM_B64_MAX];  /* base64 */
};

/* Derives credentials for password with a fresh random salt into out
 * (stored form). false on failure (RNG, out too small). */
bool scram_make(enum scram_hash h, const char *password, unsigned iterations,
                char *out, size_t outsz);
/* The same with a given salt (tests, RFC vectors). */
bool scram_make_salted(enum scram_hash h, const char *password,
                       unsigned iterations, const unsigned char *salt,
                       size_t salt_len, char *out, size_t outsz);
/* Parses the stored form; false when malformed or when the key lengths do
 * not fit h (20 octets for SHA-1, 32 for SHA-256). */
bool scram_parse(enum scram_hash h, const char *stored, struct scram_creds *out);

#endif
