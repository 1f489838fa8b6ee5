/* maildir.h — the Maildir backend of the mailstore (store/backend.h).
 * Internal to store/: everything else uses store/store.h. */
#ifndef POBOX_STORE_MAILDIR_H
#define POBOX_STORE_MAILDIR_H

#include "store/backend.h"

/* Immutable function table; store.c picks it for store.backend = maildir. */
extern const struct store_backend maildir_backend;

#endif
