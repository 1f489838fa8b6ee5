/* auth.h — the one credential check every login path ends in: POP3
 * USER/PASS and APOP, and every SASL mechanism in POP3 and SMTP.
 *
 * Blocking: run on the worker pool. The caller waits out_delay_ms on its own
 * event loop before replying (never sleeping in a worker). Unknown users and
 * wrong passwords give the same result, reason and timing; the reason is for
 * the log only, never for the client. */
#ifndef POBOX_AUTH_H
#define POBOX_AUTH_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct userdb_entry;

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

/* For mechanisms that check a proof themselves (CRAM-MD5, SCRAM): looks up
 * the user's stored secrets. 1 found (free *e with userdb_entry_free), 0
 * unknown user or not an address, -1 users file unreadable. canon gets the
 * canonical address ("" when user is not a valid address). */
int auth_lookup_user(const struct config *cfg, const char *user,
                     char canon[AUTH_USER_MAX], struct userdb_entry *e);

/* Records the verdict of such a mechanism exactly as a password check would
 * (throttle, delay). account: canonical address, or what the client typed. */
void auth_verdict(const struct config *cfg, const char *ip, const char *account,
                  bool ok, const char *reason, struct auth_outcome *out);

/* An identity proven without a pobox password (TLS client certificate,
 * Kerberos principal, OAuth token): it must name an existing user, and the
 * authorization identity authzid ("" or NULL = none) must be that same user:
 * nobody logs in as someone else. */
void auth_check_identity(const struct config *cfg, const char *ip,
                         const char *identity, const char *authzid,
                         struct auth_outcome *out);

/* True when authzid is empty/NULL or names the same user as canon. */
bool auth_authzid_ok(const char *canon, const char *authzid);

#endif
