/* bounce.h — sending the sender a delivery status notification about a
 * queued message (RFC 3464): a bounce for failed recipients, a delay notice,
 * or a success report (DSN NOTIFY=SUCCESS). Never to a null sender. Used by
 * the queue runner and by `pobox queue bounce`. */
#ifndef POBOX_BOUNCE_H
#define POBOX_BOUNCE_H

#include <stddef.h>

#include "relay/dsn.h"

struct config;
struct queue_entry;

/* Builds the notice about the recipients rcpts of e (indices into
 * e->rcpts, with their action/status/diagnostic in dsn[]) and submits it
 * like any message (null envelope sender; local delivery or the queue).
 * 0 sent (or none owed: null sender), -1 failure (errno; retry later). */
int relay_bounce(const struct config *cfg, const struct queue_entry *e,
                 enum relay_dsn_kind kind, const struct relay_dsn_rcpt *dsn,
                 size_t n);

#endif
