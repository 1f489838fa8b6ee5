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
struct envelope;
struct envelope_rcpt;

/* Builds the notice about the recipients rcpts of e (indices into
 * e->rcpts, with their action/status/diagnostic in dsn[]) and submits it
 * like any message (null envelope sender; local delivery or the queue).
 * 0 sent (or none owed: null sender), -1 failure (errno; retry later). */
int relay_bounce(const struct config *cfg, const struct queue_entry *e,
                 enum relay_dsn_kind kind, const struct relay_dsn_rcpt *dsn,
                 size_t n);

/* NOTIFY=SUCCESS on local delivery (RFC 3461 6.2): a "delivered" report
 * about rcpts (original recipient addresses with their ORCPT) of the
 * message in msg_fd, to env's sender. 0 sent or none owed, -1 failure. */
int relay_notify_delivered(const struct config *cfg, const struct envelope *env,
                           int msg_fd, const struct envelope_rcpt *const *rcpts,
                           size_t n);

/* A queued recipient's last_error, as the queue runner writes it
 *   "HOST[IP] said: 550 5.1.1 text"   a remote server's reply
 *   "X-Pobox; 5.1.2 text"             pobox's own reason, with its status
 * into d's remote_mta, smtp_reply or reason, and status (pointing into buf
 * and status). */
void relay_bounce_describe(const char *err, char buf[600], char status[16],
                           struct relay_dsn_rcpt *d);

#endif
