/* submit.h — the one path every accepted message takes, whatever brought it
 * (SMTP DATA or BDAT, POP3 XTND XMIT, pobox deliver): check the header
 * (a submission's From: must be the user's own), add the trace header
 * (and Message-ID and Date to submissions that lack them), deliver to each
 * local mailbox exactly once, and queue the remote recipients — all
 * durable before the caller may say 250. */
#ifndef POBOX_SUBMIT_H
#define POBOX_SUBMIT_H

#include <stddef.h>

struct config;
struct envelope;
struct spool;

struct submit_result {
    int code;                   /* 250, or 451 / 452 / 550 / 553 / 554 */
    const char *enhanced;       /* "2.0.0", "4.3.1", ... */
    char text[256];             /* the reply text after the codes */
    char id[32];                /* the message's ID (logs, Received, queue) */
    size_t delivered, queued;   /* local mailboxes, remote recipients */
};

/* Blocking (worker pool). sp must be finished (spool_finish). */
void submit_message(const struct config *cfg, const struct envelope *env,
                    struct spool *sp, struct submit_result *res);

#endif
