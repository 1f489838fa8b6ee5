/* userdb.h — the users file in data_dir: lookup, add/replace, delete, list.
 *
 * Format, one user a line (compatible with Dovecot passwd-files, whose extra
 * colon fields are ignored):
 *     ADDRESS:HASH[:uid:gid:gecos:home:shell:EXTRA]
 * where EXTRA (the last field) holds space-separated key=value pairs. pobox
 * writes
 *   ADDRESS:HASH:::::: [apop=SECRET] scram-sha-1=SCRAM scram-sha-256=SCRAM
 * where apop= is the --apop secret (base64) and SCRAM the stored form of
 * auth/scram.h (ITERATIONS,SALT,STOREDKEY,SERVERKEY). A line with none of
 * them (an imported crypt hash) stays ADDRESS:HASH. Other extra pairs are
 * kept as they are.
 * Lines starting with '#' and empty lines are ignored.
 *
 * Writers lock data_dir/users.lock, write users.tmp, fsync, rename. Readers
 * (the server) see changes without restart: the cached copy is reloaded when
 * the file's inode, size or mtime change. All functions are thread safe. */
#ifndef POBOX_USERDB_H
#define POBOX_USERDB_H

#include <stdbool.h>
#include <stddef.h>

struct userdb_entry {
    char *address;      /* canonical, lowercase */
    char *hash;         /* as stored, e.g. "{ARGON2ID}$argon2id$..." */
    char *apop_secret;  /* plaintext-equivalent secret, NULL if none */
    char *scram_sha1;   /* SCRAM stored form (auth/scram.h), NULL if none */
    char *scram_sha256; /* the same for SCRAM-SHA-256 */
};

/* What userdb_put stores for a user; the strings stay the caller's. */
struct userdb_secrets {
    const char *hash;           /* required */
    const char *apop_secret;    /* NULL = none */
    const char *scram_sha1;     /* stored form, NULL = none */
    const char *scram_sha256;   /* stored form, NULL = none */
};

/* Lowercases and validates ADDRESS into out (local@domain, no '/', no
 * control chars or spaces, neither part empty or starting with '.').
 * Returns false when it is not a valid mailbox address. */
bool userdb_canonical(const char *address, char *out, size_t outsz);

/* 1 found (fill *out; free with userdb_entry_free), 0 not found, -1 the file
 * cannot be read (temporary failure). */
int userdb_lookup(const char *data_dir, const char *address,
                  struct userdb_entry *out);
void userdb_entry_free(struct userdb_entry *e);

/* True when at least one user has an APOP secret (APOP is then offered). */
bool userdb_has_apop(const char *data_dir);

/* Adds or replaces a user with exactly the secrets in sec (a NULL field
 * removes what the old line had). 0 ok, -1 error (errno; EINVAL for a bad
 * address, hash, secret or SCRAM stored form). */
int userdb_put(const char *data_dir, const char *address,
               const struct userdb_secrets *sec);
/* 0 removed, 1 no such user, -1 error. */
int userdb_del(const char *data_dir, const char *address);
/* Calls fn for every address in file order. -1 when unreadable. */
int userdb_list(const char *data_dir, void (*fn)(const char *address, void *arg),
                void *arg);

#endif
