/* backend.h — what a mailstore backend provides to store.c: a table of
 * functions behind store.h, and the common first member of its mailbox and
 * reader structs. Only store/ includes this file.
 *
 * A backend embeds struct store_mailbox (and struct store_reader) as the
 * first member of its own structs and sets ->be to its table; store.c calls
 * through the table, the backend casts back to its own type. */
#ifndef POBOX_STORE_BACKEND_H
#define POBOX_STORE_BACKEND_H

#include "store/store.h"

struct store_backend {
    const char *name;   /* the store.backend configuration value */
    enum store_status (*open)(const struct config *cfg, const char *address,
                              struct store_mailbox **out);
    size_t (*count)(const struct store_mailbox *mb);
    uint64_t (*size)(const struct store_mailbox *mb, size_t i);
    const char *(*uidl)(const struct store_mailbox *mb, size_t i);
    enum store_status (*reader_open)(struct store_mailbox *mb, size_t i,
                                     struct store_reader **out);
    ssize_t (*reader_read)(struct store_reader *r, void *buf, size_t len);
    void (*reader_close)(struct store_reader *r);
    enum store_status (*commit)(struct store_mailbox *mb, const bool *deleted);
    void (*close)(struct store_mailbox *mb);
    enum store_status (*deliver)(const struct config *cfg, const char *address,
                                 const char *prefix, int msg_fd);
};

struct store_mailbox {
    const struct store_backend *be;
};

struct store_reader {
    const struct store_backend *be;
};

#endif
