/* session.h — the POP3 session shared by the pop3/ files (not a public
 * interface): state, the reply function, and the command table's needs. */
#ifndef POBOX_POP3_SESSION_H
#define POBOX_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "auth/sasl.h"
#include "core/mailstream.h"
#include "pop3/parse.h"
#include "store/store.h"

struct conn;
struct config;
struct server;
struct sasl_session;
struct spool;

#define POP3_MAX_LINE 255   /* RFC 2449 section 4, including CRLF */
/* Before login, AUTH lines may carry initial responses that do not fit in
 * 255 octets (Kerberos and OAuth tokens; mpop sends them so): those up to
 * the SASL response limit are accepted; other commands keep 255. */
#define POP3_AUTH_MAX_LINE (SASL_MAX_RESPONSE + 64)

enum pop3_state {
    POP3_AUTHORIZATION,
    POP3_TRANSACTION,
    POP3_UPDATE,          /* QUIT committing; nothing else is accepted */
};

struct pop3_session {
    unsigned refs;              /* the conn holds one; each job or timer one */
    struct conn *conn;          /* NULL once the connection is gone */
    struct server *srv;
    struct config *cfg;         /* the config this session started with */
    char id[17];
    enum pop3_state state;
    bool busy;                  /* a job, a delayed reply or a stream runs */
    bool shutting_down;
    bool greeted;
    bool utf8;
    unsigned bad_commands;      /* in a row */
    unsigned auth_failures;
    char apop_ts[160];          /* "<...@host>", "" when APOP is off */
    char user[256];             /* from USER, waiting for PASS */
    char authed[256];           /* canonical address after login */
    struct sasl_session *sasl;  /* an AUTH exchange is running */

    struct store_mailbox *mb;
    bool *deleted;
    size_t count;
    size_t n_deleted;
    uint64_t deleted_octets, total_octets;

    /* RETR/TOP streaming */
    struct store_reader *reader;
    struct mailstream ms;
    size_t streaming_msg;       /* 1-based */
    uint64_t stream_octets;

    unsigned retr_count;
    uint64_t retr_octets;

    /* XTND XMIT: the message being received (xtnd.c) */
    struct spool *xmit;         /* non-NULL while its lines come in */
    bool xmit_prev_crlf;        /* the last line ended in CRLF */
    bool xmit_long_line;        /* a line over 1000 octets was dropped */
};

/* Replies: one line, CRLF added. Never pass client bytes as the format. */
void pop3_reply(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A -ERR that counts toward limits.max_bad_commands. */
void pop3_reply_bad(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void pop3_session_ref(struct pop3_session *s);
void pop3_session_unref(struct pop3_session *s);
/* Ends a busy phase: lets the next pipelined command run. */
void pop3_session_idle(struct pop3_session *s);
/* Says goodbye and closes after the output is sent. */
void pop3_session_close(struct pop3_session *s, const char *reason);

/* Runs fn(arg) on the session's loop after delay_ms (at once when 0 or
 * when the timer cannot be set). */
void pop3_session_after(struct pop3_session *s, uint64_t delay_ms,
                        void (*fn)(void *arg), void *arg);

/* Command dispatch (commands.c). */
void pop3_dispatch(struct pop3_session *s, struct pop3_cmdline *cmd);
void pop3_send_capa(struct pop3_session *s);
/* Login path (login.c): USER/PASS, APOP and AUTH end here. */
struct pop3_login {
    const char *method;         /* "pass", "apop" or the SASL mechanism */
    char ip[64];
    char user[256];             /* as the client named it, for the log */
    struct auth_outcome out;
    enum store_status st;
    struct store_mailbox *mb;   /* owned until handed to the session */
};
void pop3_login_init(struct pop3_session *s, struct pop3_login *l,
                     const char *method);
/* Worker side: opens the maildrop when the credentials were good. */
void pop3_login_open(const struct config *cfg, struct pop3_login *l);
/* Loop side: the reply, and TRANSACTION on success. */
void pop3_login_answer(struct pop3_session *s, struct pop3_login *l);
/* Counts and logs a failed login and sends reply (closes after 5). */
void pop3_login_failed(struct pop3_session *s, const struct pop3_login *l,
                       const char *reply);
void pop3_login_release(struct pop3_login *l);
void pop3_login_password(struct pop3_session *s, const char *user, const char *pass);
void pop3_login_apop(struct pop3_session *s, const char *user, const char *digest);
/* AUTH (auth.c): the command, each response line of the exchange, and the
 * end of an exchange when the session goes away. */
void pop3_auth_command(struct pop3_session *s, const struct pop3_cmdline *cmd);
/* An AUTH command line longer than 255 octets: "AUTH MECH RESPONSE". */
void pop3_auth_long_command(struct pop3_session *s, char *line, size_t len);
void pop3_auth_line(struct pop3_session *s, const char *line, size_t len);
void pop3_auth_line_too_long(struct pop3_session *s);
void pop3_auth_end(struct pop3_session *s);
/* The SASL line for CAPA ("" when no mechanism is usable). */
void pop3_auth_mechlist(struct pop3_session *s, char *out, size_t outsz);
/* Leaves TRANSACTION (QUIT): commits deletions on the worker pool. */
void pop3_quit_commit(struct pop3_session *s);
/* Streams message msg (1-based); body_lines -1 for RETR. */
void pop3_retr_start(struct pop3_session *s, size_t msg, long body_lines);
void pop3_retr_continue(struct pop3_session *s);
void pop3_retr_abort(struct pop3_session *s);

/* XTND XMIT and XLST (xtnd.c): the command, each line of the message XMIT
 * receives (and one over 1000 octets), and the end of an unfinished XMIT
 * when the session goes away. */
void pop3_xtnd_command(struct pop3_session *s, const struct pop3_cmdline *cmd);
void pop3_xtnd_line(struct pop3_session *s, const char *line, size_t len);
void pop3_xtnd_line_too_long(struct pop3_session *s);
void pop3_xtnd_abort(struct pop3_session *s);

bool pop3_plaintext_allowed(const struct pop3_session *s);

#endif
