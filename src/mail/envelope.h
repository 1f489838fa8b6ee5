/* envelope.h — the SMTP envelope of one message on its way in: who sends,
 * to whom, the DSN parameters (RFC 3461) and how it arrived (for the
 * Received: line). Filled by smtp/ (and POP3 XTND XMIT, pobox deliver);
 * read by mail/submit.c, mail/queue.c and, later, the relay. */
#ifndef POBOX_ENVELOPE_H
#define POBOX_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_ADDR_MAX 256   /* an address without <>, NUL included */

enum dsn_notify {               /* RFC 3461 NOTIFY=, a bit set; 0 = not given */
    DSN_NOTIFY_NEVER = 1 << 0,
    DSN_NOTIFY_SUCCESS = 1 << 1,
    DSN_NOTIFY_FAILURE = 1 << 2,
    DSN_NOTIFY_DELAY = 1 << 3,
};

enum dsn_ret { DSN_RET_UNSET, DSN_RET_FULL, DSN_RET_HDRS };

struct envelope_rcpt {
    char address[ENVELOPE_ADDR_MAX];    /* as given in RCPT TO, UTF-8 */
    unsigned notify;                    /* enum dsn_notify bits */
    char *orcpt;                        /* ORCPT= "type;xtext-decoded", or NULL */
};

enum envelope_origin {
    ORIGIN_SMTP,        /* port 25, not authenticated */
    ORIGIN_SUBMISSION,  /* authenticated (587, 465, or AUTH on 25) */
    ORIGIN_XTND,        /* POP3 XTND XMIT, authenticated */
    ORIGIN_LOCAL,       /* pobox deliver */
};

struct envelope {
    char sender[ENVELOPE_ADDR_MAX];     /* MAIL FROM, "" for <> */
    struct envelope_rcpt *rcpts;
    size_t n_rcpts, cap_rcpts;
    enum dsn_ret ret;
    char *envid;                        /* ENVID= xtext-decoded, or NULL */
    bool smtputf8;                      /* SMTPUTF8 given at MAIL */
    bool body_8bit;                     /* BODY=8BITMIME */
    uint64_t declared_size;             /* SIZE=, 0 when not given */

    enum envelope_origin origin;
    char auth_user[ENVELOPE_ADDR_MAX];  /* authenticated user, "" if none */
    char helo[256];                     /* EHLO/HELO argument */
    char client_ip[64];
    bool esmtp;                         /* EHLO rather than HELO */
    char tls[128];                      /* "TLSv1.3 TLS_AES_..." or "" */
};

void envelope_init(struct envelope *env);
/* Adds a recipient (address copied; orcpt copied when not NULL). false when
 * out of memory or address too long. */
bool envelope_add_rcpt(struct envelope *env, const char *address,
                       unsigned notify, const char *orcpt);
/* Ends the mail transaction (RSET, after DATA): frees the recipients and
 * DSN data, clears the sender; the session fields (origin, auth_user, helo,
 * client_ip, esmtp, tls) stay. */
void envelope_reset(struct envelope *env);

#endif
