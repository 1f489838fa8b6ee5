/* password.c — password hashing (argon2id) and verification of the stored
 * schemes pobox accepts: argon2id/argon2i, and the crypt(3) families
 * SHA512-CRYPT ($6$), SHA256-CRYPT ($5$), bcrypt ($2y$/$2b$/$2a$) and
 * yescrypt ($y$). Plaintext and weak schemes never verify. */
#include "auth/password.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* argon2id cost for new hashes: RFC 9106's second recommended option
 * (memory-hard, 64 MiB, 3 passes, one lane). */
#define PASSWORD_T_COST 3
#define PASSWORD_M_COST_KIB 65536
#define PASSWORD_LANES 1
#define PASSWORD_SALT_LEN 16
#define PASSWORD_DIGEST_LEN 32
#define PASSWORD_PREFIX "{ARGON2ID}"

/* How a stored hash is checked. */
enum password_kind {
    PASSWORD_NONE,      /* unknown, weak or plaintext: never verifies */
    PASSWORD_ARGON2ID,
    PASSWORD_ARGON2I,
    PASSWORD_CRYPT,     /* crypt(3) string of an accepted family */
};

void password_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

bool password_hash(const char *plain, char *out, size_t outsz)
{
    unsigned char salt[PASSWORD_SALT_LEN];
    size_t prefix = strlen(PASSWORD_PREFIX);
    size_t enclen = argon2_encodedlen(PASSWORD_T_COST, PASSWORD_M_COST_KIB,
                                      PASSWORD_LANES, PASSWORD_SALT_LEN,
                                      PASSWORD_DIGEST_LEN, Argon2_id);

    if (!plain || !out || outsz < prefix + enclen)
        return false;
    if (RAND_bytes(salt, sizeof salt) != 1)
        return false;
    memcpy(out, PASSWORD_PREFIX, prefix);
    int rc = argon2id_hash_encoded(PASSWORD_T_COST, PASSWORD_M_COST_KIB,
                                   PASSWORD_LANES, plain, strlen(plain),
                                   salt, sizeof salt, PASSWORD_DIGEST_LEN,
                                   out + prefix, outsz - prefix);
    password_wipe(salt, sizeof salt);
    if (rc != ARGON2_OK) {
        password_wipe(out, outsz);
        return false;
    }
    return true;
}

/* True when s is a crypt(3) string of a family we accept. */
static bool password_is_strong_crypt(const char *s)
{
    return strncmp(s, "$6$", 3) == 0 || strncmp(s, "$5$", 3) == 0 ||
           strncmp(s, "$2y$", 4) == 0 || strncmp(s, "$2b$", 4) == 0 ||
           strncmp(s, "$2a$", 4) == 0 || strncmp(s, "$y$", 3) == 0;
}

/* Kind of a bare hash (no {SCHEME} prefix), recognised by its own prefix. */
static enum password_kind password_bare_kind(const char *s)
{
    if (strncmp(s, "$argon2id$", 10) == 0)
        return PASSWORD_ARGON2ID;
    if (strncmp(s, "$argon2i$", 9) == 0)
        return PASSWORD_ARGON2I;
    if (password_is_strong_crypt(s))
        return PASSWORD_CRYPT;
    return PASSWORD_NONE;
}

/* Kind of "{SCHEME}rest": the scheme must agree with the hash it labels. */
static enum password_kind password_scheme_kind(const char *scheme, size_t len,
                                               const char *rest)
{
    static const struct {
        const char *name;
        const char *prefix;     /* NULL: any accepted crypt(3) family */
    } schemes[] = {
        { "ARGON2ID", "$argon2id$" },
        { "ARGON2I", "$argon2i$" },
        { "SHA512-CRYPT", "$6$" },
        { "SHA256-CRYPT", "$5$" },
        { "BLF-CRYPT", "$2" },
        { "CRYPT", NULL },
    };

    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        const char *name = schemes[i].name;
        if (strlen(name) != len || strncasecmp(scheme, name, len) != 0)
            continue;
        if (!schemes[i].prefix)
            return password_is_strong_crypt(rest) ? PASSWORD_CRYPT
                                                  : PASSWORD_NONE;
        if (strncmp(rest, schemes[i].prefix, strlen(schemes[i].prefix)) != 0)
            return PASSWORD_NONE;
        return password_bare_kind(rest);
    }
    return PASSWORD_NONE;
}

/* Compares crypt(3) output of plain under setting with setting itself. */
static bool password_crypt_verify(const char *plain, const char *stored)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);   /* owned; ~32 KiB */
    bool ok = false;

    if (!cd)
        return false;
    const char *res = crypt_rn(plain, stored, cd, (int)sizeof *cd);
    if (res && res[0] != '*') {
        size_t n = strlen(res);
        ok = n == strlen(stored) && CRYPTO_memcmp(res, stored, n) == 0;
    }
    password_wipe(cd, sizeof *cd);
    free(cd);
    return ok;
}

bool password_verify(const char *plain, const char *stored)
{
    enum password_kind kind;
    const char *hash = stored;

    if (!plain || !stored)
        return false;
    if (stored[0] == '{') {
        const char *end = strchr(stored, '}');
        if (!end)
            return false;
        hash = end + 1;
        kind = password_scheme_kind(stored + 1, (size_t)(end - stored - 1), hash);
    } else {
        kind = password_bare_kind(stored);
    }

    switch (kind) {
    case PASSWORD_ARGON2ID:
        return argon2id_verify(hash, plain, strlen(plain)) == ARGON2_OK;
    case PASSWORD_ARGON2I:
        return argon2i_verify(hash, plain, strlen(plain)) == ARGON2_OK;
    case PASSWORD_CRYPT:
        return password_crypt_verify(plain, hash);
    case PASSWORD_NONE:
        break;
    }
    return false;
}

/* The dummy hash: made once, with the same parameters as real ones. */
static char password_dummy[PASSWORD_HASH_MAX];
static bool password_dummy_ok;
static pthread_once_t password_dummy_once = PTHREAD_ONCE_INIT;

static void password_dummy_init(void)
{
    password_dummy_ok = password_hash("pobox dummy password", password_dummy,
                                      sizeof password_dummy);
}

bool password_verify_dummy(const char *plain)
{
    pthread_once(&password_dummy_once, password_dummy_init);
    if (!plain)
        plain = "";
    if (password_dummy_ok) {
        (void)password_verify(plain, password_dummy);
    } else {
        /* Could not make the dummy: hashing costs the same time. */
        char scratch[PASSWORD_HASH_MAX];
        (void)password_hash(plain, scratch, sizeof scratch);
        password_wipe(scratch, sizeof scratch);
    }
    return false;
}
