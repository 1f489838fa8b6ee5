/* auth.h — the one credential check every login path ends in (POP3 USER/PASS
 * and APOP now, SASL in POP3 and SMTP later).
 *
 * Blocking: run on the worker pool. The caller waits out_delay_ms on its own
 * event loop before replying (never sleeping in a worker). Unknown users and
 * wrong passwords give the same result, reason and timing; the reason is for
 * the log only, never for the client. */
#ifndef POBOX_AUTH_H
#define POBOX_AUTH_H

#include <stdint.h>

struct config;

enum auth_result {
    AUTH_OK,
    AUTH_FAIL,      /* wrong credentials, unknown user, no APOP secret */
    AUTH_TEMPFAIL,  /* users file unreadable and the like */
};

#define AUTH_USER_MAX 256

struct auth_outcome {
    enum auth_result result;
    char user[AUTH_USER_MAX];   /* canonical address when AUTH_OK */
    uint64_t delay_ms;          /* wait this long before answering */
    const char *reason;         /* static string for the log */
};

void auth_check_password(const struct config *cfg, const char *ip,
                         const char *user, const char *pass,
                         struct auth_outcome *out);

/* RFC 1939 APOP: digest_hex = hex MD5(timestamp || secret), 32 chars. */
void auth_check_apop(const struct config *cfg, const char *ip,
                     const char *user, const char *timestamp,
                     const char *digest_hex, struct auth_outcome *out);


#endif
