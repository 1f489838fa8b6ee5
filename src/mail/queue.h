/* queue.h — the durable outbound queue in data_dir/queue/ (docs/storage.md,
 * "The queue"): one message file, written once, and one envelope file,
 * rewritten atomically as its recipients progress, per queued message.
 *
 * Writers: smtp/ submission (queue_put), the relay (queue_update,
 * queue_remove, queue_sweep), `pobox queue` (queue_list, queue_read,
 * queue_remove). All calls block on the disk: run them as jobs. They are
 * safe from any number of threads and processes at once. */
#ifndef POBOX_QUEUE_H
#define POBOX_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "mail/envelope.h"

/* An ID: 13 uppercase hex digits of the microseconds since the epoch, then
 * 7 of random. Unique, sorts by time, safe as a file name. */
#define QUEUE_ID_LEN 20
/* queue_update keeps at most this many octets of a last_error. */
#define QUEUE_ERROR_MAX 1000

enum queue_state {
    QUEUE_PENDING,      /* to be (re)tried at next_attempt */
    QUEUE_SENT,         /* a remote 2xx */
    QUEUE_FAILED,       /* 5xx or expired: a bounce is owed */
};

struct queue_rcpt {
    char address[ENVELOPE_ADDR_MAX];    /* never "" */
    unsigned notify;                    /* enum dsn_notify bits, 0 = not given */
    char *orcpt;                        /* owned; "type;address" or NULL */
    enum queue_state state;
    unsigned attempts;                  /* delivery attempts made */
    int64_t next_attempt;               /* unix time */
    char *last_error;                   /* owned; last failure text or NULL
                                           (cut to QUEUE_ERROR_MAX octets) */
    bool reported;                      /* the notice owed for the final
                                           state (bounce, success DSN) is
                                           queued, or none is owed */
};

/* One queued message as its envelope file describes it. */
struct queue_entry {
    char id[QUEUE_ID_LEN + 1];
    int64_t created;                    /* unix time of queue_put */
    uint64_t size;                      /* message octets with CRLF line ends */
    char sender[ENVELOPE_ADDR_MAX];     /* "" for the null sender */
    enum dsn_ret ret;
    char *envid;                        /* owned; ENVID or NULL */
    bool smtputf8, body_8bit;
    char auth_user[ENVELOPE_ADDR_MAX];  /* "" if none */
    int64_t warned;                     /* unix time the delay notice was
                                           queued, 0 = not yet */
    struct queue_rcpt *rcpts;           /* owned, n_rcpts >= 1 */
    size_t n_rcpts;
};

/* A fresh ID into id (NUL-terminated). */
void queue_new_id(char id[QUEUE_ID_LEN + 1]);
/* True when s is an ID in the form queue_new_id makes. */
bool queue_id_valid(const char *s);

/* Queues one message for the remote recipients rcpts (n_rcpts >= 1, taken
 * with their DSN data; env gives sender, ret, envid, smtputf8, body_8bit and
 * auth_user): writes prefix (may be NULL) then the message read with pread
 * from msg_fd (offset 0 to EOF). The ID is *id when it is non-empty (one
 * from queue_new_id, already written into the prefix's Received: line), else
 * a new one stored in *id. Every recipient starts pending, due now. On 0 the
 * message is durable. -1 on error with errno (ENOSPC, EDQUOT: the caller
 * says 452 4.3.1; EEXIST: that ID is taken; EINVAL: bad arguments), leaving
 * nothing behind. */
int queue_put(const struct config *cfg, const struct envelope *env,
              const struct envelope_rcpt *rcpts, size_t n_rcpts,
              const char *prefix, int msg_fd, char id[QUEUE_ID_LEN + 1]);

/* Reads the envelope of id into *out (free with queue_entry_free). 0, or -1
 * with errno: ENOENT not queued, EINVAL not an ID, EBADMSG a damaged file. */
int queue_read(const struct config *cfg, const char *id,
               struct queue_entry *out);
void queue_entry_free(struct queue_entry *e);

/* Opens the message of id for reading (the bytes to send, LF line ends).
 * The fd, or -1 with errno. */
int queue_open_msg(const struct config *cfg, const char *id);

/* Rewrites the envelope of e->id from *e atomically (the relay, after each
 * attempt). -1 with errno ENOENT when the entry is gone (removed meanwhile:
 * it is not brought back), EINVAL when *e cannot be written. */
int queue_update(const struct config *cfg, const struct queue_entry *e);

/* Removes an entry: the envelope first, then the message. -1 with errno
 * ENOENT when there was neither. */
int queue_remove(const struct config *cfg, const char *id);

/* Calls fn for each queued ID, in ID (so time) order; stops at the first
 * non-zero return of fn and returns it. 0 when done (an empty or missing
 * queue included), -1 with errno when the queue cannot be read. */
int queue_list(const struct config *cfg,
               int (*fn)(const char *id, void *arg), void *arg);

/* Deletes what crashed writers left behind: files in tmp/ and messages
 * without an envelope, when last modified at least min_age seconds ago (a
 * queue_put in progress is younger). The number of files removed, or -1. */
int queue_sweep(const struct config *cfg, unsigned min_age);

#endif
