/* commands.c — one small cmd_*() per POP3 command and the table that maps
 * keywords and states to them (RFC 1939, 2449 CAPA, 2595 STLS, 6856 UTF8).
 * Login itself is in login.c, AUTH in auth.c, message streaming in retr.c,
 * qpopper's XTND in xtnd.c. */
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "net/conn.h"
#include "pop3/session.h"
#include "store/store.h"

#define ST_AUTH (1u << POP3_AUTHORIZATION)
#define ST_TRANS (1u << POP3_TRANSACTION)

struct pop3_command {
    const char *keyword;
    unsigned states;
    unsigned min_args, max_args;
    void (*fn)(struct pop3_session *s, const struct pop3_cmdline *cmd);
};

/* Message number argument i: replies -ERR and returns 0 when it is bad or
 * names a message marked as deleted. */
static size_t get_msgnum(struct pop3_session *s, const char *arg)
{
    size_t n;
    if (!pop3_parse_msgnum(arg, SIZE_MAX, &n)) {
        pop3_reply_bad(s, "-ERR Invalid message number: expected 1 to %zu", s->count);
        return 0;
    }
    if (n > s->count) {
        pop3_reply_bad(s, "-ERR No such message (the maildrop has %zu)", s->count);
        return 0;
    }
    if (s->deleted[n - 1]) {
        pop3_reply_bad(s, "-ERR Message %zu is marked as deleted", n);
        return 0;
    }
    return n;
}

void pop3_send_capa(struct pop3_session *s)
{
    pop3_reply(s, "+OK Capability list follows");
    pop3_reply(s, "TOP");
    pop3_reply(s, "UIDL");
    pop3_reply(s, "RESP-CODES");
    pop3_reply(s, "AUTH-RESP-CODE");
    pop3_reply(s, "PIPELINING");
    pop3_reply(s, "UTF8 USER");
    pop3_reply(s, "EXPIRE NEVER");
    if (s->cfg->pop3_xtnd)
        pop3_reply(s, "X-XTND XMIT XLST");  /* unregistered: an X tag (RFC 2449) */
    if (s->state == POP3_AUTHORIZATION) {
        if (!conn_is_tls(s->conn) && conn_tls_available(s->conn))
            pop3_reply(s, "STLS");
        if (pop3_plaintext_allowed(s))
            pop3_reply(s, "USER");
        char mechs[512];
        pop3_auth_mechlist(s, mechs, sizeof mechs);
        if (mechs[0])
            pop3_reply(s, "SASL %s", mechs);
    }
    pop3_reply(s, "IMPLEMENTATION pobox-%s", POBOX_VERSION);
    pop3_reply(s, ".");
}

static void cmd_capa(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    pop3_send_capa(s);
}

static void cmd_noop(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    pop3_reply(s, "+OK");
}

static void cmd_quit(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (s->state == POP3_TRANSACTION) {
        pop3_quit_commit(s);
        return;
    }
    pop3_reply(s, "+OK pobox signing off");
    pop3_session_close(s, "quit");
}

static void cmd_stls(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (conn_is_tls(s->conn)) {
        pop3_reply_bad(s, "-ERR TLS is already active");
        return;
    }
    if (!conn_tls_available(s->conn)) {
        pop3_reply_bad(s, "-ERR [SYS/PERM] TLS is not available");
        return;
    }
    pop3_reply(s, "+OK Begin TLS negotiation");
    s->user[0] = '\0';
    conn_start_tls(s->conn);
}

static void cmd_utf8(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    s->utf8 = true;
    pop3_reply(s, "+OK UTF8 enabled");
}

static void cmd_user(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (!pop3_plaintext_allowed(s)) {
        pop3_reply_bad(s, "-ERR [AUTH] Plaintext authentication is disallowed on "
                          "non-secure connections: use STLS first");
        return;
    }
    if (strlen(cmd->rest) >= sizeof(s->user)) {
        pop3_reply_bad(s, "-ERR [AUTH] User name too long");
        return;
    }
    snprintf(s->user, sizeof(s->user), "%s", cmd->rest);
    pop3_reply(s, "+OK Send your password");
}

static void cmd_pass(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (!pop3_plaintext_allowed(s)) {
        pop3_reply_bad(s, "-ERR [AUTH] Plaintext authentication is disallowed on "
                          "non-secure connections: use STLS first");
        return;
    }
    if (!s->user[0]) {
        pop3_reply_bad(s, "-ERR Send USER first");
        return;
    }
    char user[sizeof(s->user)];
    memcpy(user, s->user, sizeof(user));
    s->user[0] = '\0';
    pop3_login_password(s, user, cmd->rest);
}

static void cmd_apop(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (!s->apop_ts[0]) {
        pop3_reply_bad(s, "-ERR APOP is not available on this server");
        return;
    }
    pop3_login_apop(s, cmd->argv[0], cmd->argv[1]);
}

static void cmd_stat(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    pop3_reply(s, "+OK %zu %llu", s->count - s->n_deleted,
               (unsigned long long)(s->total_octets - s->deleted_octets));
}

static void cmd_list(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (cmd->argc == 1) {
        size_t n = get_msgnum(s, cmd->argv[0]);
        if (n)
            pop3_reply(s, "+OK %zu %llu", n,
                       (unsigned long long)store_size(s->mb, n - 1));
        return;
    }
    pop3_reply(s, "+OK %zu messages (%llu octets)", s->count - s->n_deleted,
               (unsigned long long)(s->total_octets - s->deleted_octets));
    for (size_t i = 0; i < s->count; i++)
        if (!s->deleted[i])
            pop3_reply(s, "%zu %llu", i + 1, (unsigned long long)store_size(s->mb, i));
    pop3_reply(s, ".");
}

static void cmd_uidl(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (cmd->argc == 1) {
        size_t n = get_msgnum(s, cmd->argv[0]);
        if (n)
            pop3_reply(s, "+OK %zu %s", n, store_uidl(s->mb, n - 1));
        return;
    }
    pop3_reply(s, "+OK Unique-ID listing follows");
    for (size_t i = 0; i < s->count; i++)
        if (!s->deleted[i])
            pop3_reply(s, "%zu %s", i + 1, store_uidl(s->mb, i));
    pop3_reply(s, ".");
}

static void cmd_retr(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    size_t n = get_msgnum(s, cmd->argv[0]);
    if (n)
        pop3_retr_start(s, n, -1);
}

static void cmd_top(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    size_t n = get_msgnum(s, cmd->argv[0]);
    if (!n)
        return;
    unsigned long lines;
    if (!pop3_parse_count(cmd->argv[1], &lines) || lines > 0x7fffffffUL) {
        pop3_reply_bad(s, "-ERR Invalid line count: expected a number from 0");
        return;
    }
    pop3_retr_start(s, n, (long)lines);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    size_t n = get_msgnum(s, cmd->argv[0]);
    if (!n)
        return;
    s->deleted[n - 1] = true;
    s->n_deleted++;
    s->deleted_octets += store_size(s->mb, n - 1);
    pop3_reply(s, "+OK Message %zu deleted", n);
}

static void cmd_rset(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    memset(s->deleted, 0, s->count * sizeof(*s->deleted));
    s->n_deleted = 0;
    s->deleted_octets = 0;
    pop3_reply(s, "+OK Maildrop has %zu messages (%llu octets)", s->count,
               (unsigned long long)s->total_octets);
}

static const struct pop3_command COMMANDS[] = {
    {"CAPA", ST_AUTH | ST_TRANS, 0, 0, cmd_capa},
    {"NOOP", ST_TRANS, 0, 0, cmd_noop},
    {"QUIT", ST_AUTH | ST_TRANS, 0, 0, cmd_quit},
    {"STLS", ST_AUTH, 0, 0, cmd_stls},
    {"UTF8", ST_AUTH, 0, 0, cmd_utf8},
    {"USER", ST_AUTH, 1, POP3_MAX_ARGS, cmd_user},
    {"PASS", ST_AUTH, 1, POP3_MAX_ARGS, cmd_pass},
    {"APOP", ST_AUTH, 2, 2, cmd_apop},
    {"AUTH", ST_AUTH, 0, 2, pop3_auth_command},
    {"STAT", ST_TRANS, 0, 0, cmd_stat},
    {"LIST", ST_TRANS, 0, 1, cmd_list},
    {"UIDL", ST_TRANS, 0, 1, cmd_uidl},
    {"RETR", ST_TRANS, 1, 1, cmd_retr},
    {"TOP", ST_TRANS, 2, 2, cmd_top},
    {"DELE", ST_TRANS, 1, 1, cmd_dele},
    {"RSET", ST_TRANS, 0, 0, cmd_rset},
    {"XTND", ST_TRANS, 0, POP3_MAX_ARGS, pop3_xtnd_command},
};

static const char *state_hint(const struct pop3_session *s)
{
    return s->state == POP3_AUTHORIZATION ? "log in first"
                                          : "not allowed after login";
}

void pop3_dispatch(struct pop3_session *s, struct pop3_cmdline *cmd)
{
    const struct pop3_command *c = NULL;
    for (size_t i = 0; i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++)
        if (strcmp(COMMANDS[i].keyword, cmd->keyword) == 0)
            c = &COMMANDS[i];
    if (c && c->fn == pop3_xtnd_command && !s->cfg->pop3_xtnd)
        c = NULL;               /* pop3.xtnd = no: as if it did not exist */
    if (!c) {
        pop3_reply_bad(s, "-ERR Unknown command");
        return;
    }
    if (!(c->states & (1u << s->state))) {
        pop3_reply_bad(s, "-ERR %s: %s", c->keyword, state_hint(s));
        return;
    }
    if (cmd->argc < c->min_args) {
        pop3_reply_bad(s, "-ERR %s: missing argument", c->keyword);
        return;
    }
    if (cmd->argc > c->max_args) {
        pop3_reply_bad(s, "-ERR %s: too many arguments", c->keyword);
        return;
    }
    c->fn(s, cmd);
}
