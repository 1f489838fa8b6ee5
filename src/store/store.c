/* store.c — the mailstore front door: picks the backend named by
 * cfg->store_backend and forwards every store.h call to it. Protocol and
 * delivery code never see which backend runs. */
#include "store/store.h"

#include <string.h>

#include "core/config.h"
#include "store/backend.h"
#include "store/maildir.h"

/* Returns the backend for a configuration name, or NULL if there is none
 * (yet): "postgres" is accepted by the configuration but not built here. */
static const struct store_backend *store_backend_find(const char *name)
{
    if (name == NULL || name[0] == '\0' || strcmp(name, "maildir") == 0)
        return &maildir_backend;
    return NULL;
}

enum store_status store_open(const struct config *cfg, const char *address,
                             struct store_mailbox **out)
{
    const struct store_backend *be;

    *out = NULL;
    if (cfg == NULL || address == NULL)
        return STORE_PERM_FAIL;
    be = store_backend_find(cfg->store_backend);
    if (be == NULL)
        return STORE_PERM_FAIL;
    return be->open(cfg, address, out);
}

enum store_status store_deliver(const struct config *cfg, const char *address,
                                const char *prefix, int msg_fd)
{
    const struct store_backend *be;

    if (cfg == NULL || address == NULL)
        return STORE_PERM_FAIL;
    be = store_backend_find(cfg->store_backend);
    if (be == NULL || be->deliver == NULL)
        return STORE_PERM_FAIL;
    if (msg_fd < 0)
        return STORE_TEMP_FAIL;
    return be->deliver(cfg, address, prefix, msg_fd);
}

size_t store_count(const struct store_mailbox *mb)
{
    return mb->be->count(mb);
}

uint64_t store_size(const struct store_mailbox *mb, size_t i)
{
    if (i >= mb->be->count(mb))
        return 0;
    return mb->be->size(mb, i);
}

const char *store_uidl(const struct store_mailbox *mb, size_t i)
{
    if (i >= mb->be->count(mb))
        return NULL;
    return mb->be->uidl(mb, i);
}

enum store_status store_reader_open(struct store_mailbox *mb, size_t i,
                                    struct store_reader **out)
{
    *out = NULL;
    if (i >= mb->be->count(mb))
        return STORE_PERM_FAIL;
    return mb->be->reader_open(mb, i, out);
}

ssize_t store_reader_read(struct store_reader *r, void *buf, size_t len)
{
    return r->be->reader_read(r, buf, len);
}

void store_reader_close(struct store_reader *r)
{
    if (r != NULL)
        r->be->reader_close(r);
}

enum store_status store_commit(struct store_mailbox *mb, const bool *deleted)
{
    return mb->be->commit(mb, deleted);
}

void store_close(struct store_mailbox *mb)
{
    if (mb != NULL)
        mb->be->close(mb);
}

const char *store_status_str(enum store_status st)
{
    switch (st) {
    case STORE_OK:        return "ok";
    case STORE_IN_USE:    return "in use";
    case STORE_GONE:      return "message gone";
    case STORE_TEMP_FAIL: return "temporary failure";
    case STORE_PERM_FAIL: return "permanent failure";
    }
    return "unknown";
}
