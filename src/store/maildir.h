/* maildir.h — the Maildir backend of the mailstore (store/backend.h):
 * reading in maildir.c, delivery in maildir_deliver.c, and what the two
 * share. Internal to store/: everything else uses store/store.h. */
#ifndef POBOX_STORE_MAILDIR_H
#define POBOX_STORE_MAILDIR_H

#include "store/backend.h"

/* Immutable function table; store.c picks it for store.backend = maildir. */
extern const struct store_backend maildir_backend;

/* Opens data_dir/mail/DOMAIN/LOCAL/ into *dir_fd (the caller closes it),
 * creating it and its cur/ new/ tmp/ (0700) when missing; the parent of
 * every directory created is fsync'd. STORE_PERM_FAIL for an address that
 * cannot name a directory (no '@', '/', "..", a leading '.', control
 * characters, a part longer than 255), STORE_TEMP_FAIL on I/O errors; *dir_fd
 * is -1 on failure. */
enum store_status maildir_make_dirs(const char *data_dir, const char *address,
                                    int *dir_fd);

/* store_deliver() for this backend (maildir_deliver.c). */
enum store_status maildir_deliver(const struct config *cfg,
                                  const char *address, const char *prefix,
                                  int msg_fd);

#endif
