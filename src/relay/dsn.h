/* dsn.h — delivery status notifications (RFC 3464) as message text: the
 * bounce for a failure, the delay notice, the success report. The relay
 * decides who gets one (never the null sender; NOTIFY= of each recipient,
 * RFC 3461) and queues the text with the null sender <>; this module only
 * writes it.
 *
 * The message (LF line ends, every line of our own text < 998 octets):
 *
 *   From: Mail Delivery System <MAILER-DAEMON@REPORTING_MTA>
 *   To: <SENDER>
 *   Subject: Undelivered Mail Returned to Sender      (FAILURE)
 *            Delayed Mail (still being retried)       (DELAY)
 *            Successful Mail Delivery Report          (SUCCESS)
 *   Date, Message-ID, Auto-Submitted: auto-replied (RFC 3834), MIME-Version
 *   Content-Type: multipart/report; report-type=delivery-status;
 *           boundary="..."        (random, found in none of the parts)
 *
 *   1. text/plain: what happened, one paragraph per recipient
 *   2. message/delivery-status: Reporting-MTA, Original-Envelope-Id,
 *      Arrival-Date; per recipient Original-Recipient, Final-Recipient,
 *      Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
 *      Will-Retry-Until (RFC 3464 2.2, 2.3)
 *   3. the original: message/rfc822 (all of it) or text/rfc822-headers
 *      (its header block). All of it only for a FAILURE whose RET is not
 *      HDRS (RFC 3461 4.3 applies RET to failures; delay and success
 *      reports carry the header block), and only when it is at most
 *      return_max octets: a longer one is returned as its header block,
 *      which the text says. No third part when msg_fd is -1.
 *
 * For an SMTPUTF8 original (RFC 6533) the types are message/global-delivery-
 * status (report-type=global-delivery-status), message/global and
 * message/global-headers, UTF-8 is kept (valid UTF-8 only) in addresses and
 * text, non-ASCII addresses get the address type "utf-8", and the report
 * itself must then be sent with SMTPUTF8. Otherwise every field we write is
 * printable US-ASCII (anything else becomes '?').
 *
 * The text contains 8-bit octets (and must be sent with BODY=8BITMIME or
 * SMTPUTF8) exactly when the returned original or UTF-8 text has them;
 * Content-Transfer-Encoding says 8bit then, 7bit otherwise. */
#ifndef POBOX_RELAY_DSN_H
#define POBOX_RELAY_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mail/envelope.h"

/* Default most octets of an original returned in full. */
#define RELAY_DSN_RETURN_DEFAULT (512 * 1024)

enum relay_dsn_kind {
    RELAY_DSN_FAILURE,      /* bounce: 5xx or expired */
    RELAY_DSN_DELAY,        /* still queued after relay.delay_warning */
    RELAY_DSN_SUCCESS,      /* NOTIFY=SUCCESS: delivered or relayed */
};

enum relay_dsn_action {     /* RFC 3464 2.3.3 */
    RELAY_DSN_FAILED,
    RELAY_DSN_DELAYED,
    RELAY_DSN_DELIVERED,
    RELAY_DSN_RELAYED,      /* passed to an MTA that does not do DSN */
};

struct relay_dsn_rcpt {
    const char *address;    /* the final recipient, as in RCPT TO */
    const char *orcpt;      /* queue_rcpt.orcpt "type;address", or NULL */
    enum relay_dsn_action action;
    const char *status;     /* "5.1.1"; NULL or not "c.s.d": 5.0.0, 4.0.0
                               or 2.0.0 after the action */
    const char *remote_mta; /* the host that answered, or NULL */
    const char *smtp_reply; /* its reply, relay_reply_line() form
                               ("550 5.1.1 ..."), or NULL: becomes
                               "Diagnostic-Code: smtp; ..." */
    const char *reason;     /* our own words when there is no reply ("Host or
                               domain name not found", "message expired"),
                               or NULL: becomes "Diagnostic-Code: X-Pobox;
                               ..." when smtp_reply is NULL */
    int64_t last_attempt;   /* unix time, 0 = none */
    int64_t retry_until;    /* unix time, for DELAYED: Will-Retry-Until */
};

struct relay_dsn_params {
    enum relay_dsn_kind kind;
    const char *reporting_mta;  /* our host name */
    const char *sender;         /* the original envelope sender ("" or NULL
                                   = the null sender: no DSN) */
    const char *envid;          /* ENVID, or NULL */
    enum dsn_ret ret;
    bool smtputf8;              /* the original was sent with SMTPUTF8 */
    int64_t arrival;            /* unix time it was queued */
    int64_t now;                /* unix time for Date:; 0 = time(NULL) */
    const struct relay_dsn_rcpt *rcpts;     /* the recipients to report */
    size_t n_rcpts;                         /* >= 1 */
    int msg_fd;                 /* the original (LF line ends, a CR before LF
                                   is dropped) read with pread from 0 to
                                   EOF, or -1 */
    uint64_t return_max;        /* 0 = RELAY_DSN_RETURN_DEFAULT */
};

/* The DSN as a NUL-terminated string (free() it), or NULL with errno:
 * EINVAL for the null sender, no recipients (or one without an address), a
 * sender with control characters or with 8-bit octets that are not valid
 * UTF-8 under smtputf8 (any, without it), a reporting MTA that is not a
 * plain host name; ENOMEM; or the errno of fstat/pread on msg_fd. */
char *relay_dsn_build(const struct relay_dsn_params *p);

#endif
