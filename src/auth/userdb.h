/* userdb.h — the users file in data_dir: lookup, add/replace, delete, list.
 *
 * Format, one user a line (compatible with Dovecot passwd-files, whose extra
 * colon fields are ignored):
 *     ADDRESS:HASH[:uid:gid:gecos:home:shell:EXTRA]
 * where EXTRA (the last field) holds space-separated key=value pairs; pobox
 * writes   ADDRESS:HASH:::::: apop=BASE64SECRET   for --apop users.
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

/* Adds or replaces a user. apop_secret NULL = none. 0 ok, -1 error (errno). */
int userdb_put(const char *data_dir, const char *address, const char *hash,
               const char *apop_secret);
/* 0 removed, 1 no such user, -1 error. */
int userdb_del(const char *data_dir, const char *address);
/* Calls fn for every address in file order. -1 when unreadable. */
int userdb_list(const char *data_dir, void (*fn)(const char *address, void *arg),
                void *arg);

#endif
