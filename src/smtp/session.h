/* session.h — the SMTP session shared by the smtp/ files (not a public
 * interface): state, envelope, replies, and what each file provides. */
#ifndef POBOX_SMTP_SESSION_H
#define POBOX_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "mail/envelope.h"

struct conn;
struct config;
struct server;
struct spool;

#define SMTP_MAX_LINE 512           /* RFC 5321 4.5.3.1.4, with CRLF */
#define SMTP_MAX_TEXT_LINE 1000     /* RFC 5321 4.5.3.1.6, with CRLF */
/* AUTH lines may carry initial responses up to the SASL limit. */
#define SMTP_AUTH_MAX_LINE (SASL_MAX_RESPONSE + 64)

enum smtp_phase {
    PHASE_GREET,         /* before EHLO/HELO */
    PHASE_READY,         /* EHLO done, no transaction */
    PHASE_MAIL,          /* MAIL accepted */
    PHASE_RCPT,          /* at least one RCPT accepted */
    PHASE_DATA,          /* reading DATA lines */
    PHASE_BDAT,          /* BDAT transaction: chunks so far */
};

struct smtp_session {
    unsigned refs;              /* the conn holds one; each job one */
    struct conn *conn;          /* NULL once the connection is gone */
    struct server *srv;
    struct config *cfg;
    char id[17];
    bool submission;            /* 587/465: AUTH before MAIL */
    bool implicit_tls;
    enum smtp_phase phase;
    bool busy;                  /* a job or a delayed reply is pending */
    bool shutting_down;
    unsigned bad_commands;
    unsigned auth_failures;
    unsigned messages;          /* accepted in this session */
    char authed[256];           /* the authenticated user, "" if none */
    struct sasl_session *sasl;  /* an AUTH exchange is running */
    struct envelope env;

    /* DATA / BDAT */
    struct spool *spool;
    bool prev_crlf;             /* the previous data line ended in CRLF */
    bool long_line;             /* a data line over 1000 octets */
    bool bdat_discard;          /* this chunk is read and thrown away */
    bool bdat_last;
    uint64_t bdat_size;
    char bdat_reply[128];       /* sent after a discarded chunk */
};

/* Replies: one line each, CRLF added; never client bytes as the format. */
void smtp_reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A reply to a bad command: counts toward limits.max_bad_commands, after
 * which the session says 421 and closes. */
void smtp_reply_bad(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtp_session_ref(struct smtp_session *s);
void smtp_session_unref(struct smtp_session *s);
/* Ends a busy phase: lets the next pipelined command run. */
void smtp_session_idle(struct smtp_session *s);
void smtp_session_close(struct smtp_session *s, const char *reason);
/* Ends the mail transaction (RSET, after a message, STARTTLS). */
void smtp_session_reset(struct smtp_session *s);
bool smtp_plaintext_allowed(const struct smtp_session *s);

/* commands.c */
void smtp_dispatch(struct smtp_session *s, char *line, size_t len);
/* data.c */
void smtp_data_start(struct smtp_session *s);
void smtp_data_line(struct smtp_session *s, const char *line, size_t len);
void smtp_data_line_too_long(struct smtp_session *s);
void smtp_bdat_start(struct smtp_session *s, const char *arg);
void smtp_bdat_bytes(struct smtp_session *s, const char *data, size_t len);
void smtp_bdat_done(struct smtp_session *s);
void smtp_data_abort(struct smtp_session *s);
/* auth.c */
void smtp_auth_command(struct smtp_session *s, const char *arg);
void smtp_auth_line(struct smtp_session *s, const char *line, size_t len);
void smtp_auth_line_too_long(struct smtp_session *s);
void smtp_auth_end(struct smtp_session *s);
void smtp_auth_mechlist(struct smtp_session *s, char *out, size_t outsz);

#endif
