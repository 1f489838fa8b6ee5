/* commands.c — the SMTP commands of RFC 5321 and its extensions, one small
 * cmd_*() each: the EHLO keywords, the envelope (MAIL, RCPT with the relay
 * and submission rules), RSET, NOOP, QUIT, VRFY, EXPN, HELP, STARTTLS.
 * DATA and BDAT are in data.c, AUTH in auth.c. */
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "mail/recipient.h"
#include "net/conn.h"
#include "smtp/parse.h"
#include "smtp/session.h"

static void reply_error(struct smtp_session *s, const struct smtp_error *e)
{
    smtp_reply_bad(s, "%d %s %s", e->code, e->enhanced, e->text);
}

static bool in_transaction(const struct smtp_session *s)
{
    return s->phase == PHASE_MAIL || s->phase == PHASE_RCPT || s->phase == PHASE_BDAT;
}

/* ---- EHLO, HELO --------------------------------------------------------- */

static void send_ehlo_keywords(struct smtp_session *s)
{
    char mechs[512];
    smtp_reply(s, "250-%s", s->cfg->hostname);
    smtp_reply(s, "250-PIPELINING");
    smtp_reply(s, "250-SIZE %llu", (unsigned long long)s->cfg->max_message_size);
    smtp_reply(s, "250-8BITMIME");
    smtp_reply(s, "250-ENHANCEDSTATUSCODES");
    smtp_reply(s, "250-SMTPUTF8");
    smtp_reply(s, "250-CHUNKING");
    smtp_reply(s, "250-DSN");
    if (!conn_is_tls(s->conn) && conn_tls_available(s->conn))
        smtp_reply(s, "250-STARTTLS");
    smtp_auth_mechlist(s, mechs, sizeof mechs);
    if (mechs[0] && !s->authed[0])
        smtp_reply(s, "250-AUTH %s", mechs);
    smtp_reply(s, "250 HELP");
}

static void cmd_hello(struct smtp_session *s, const char *arg, bool esmtp)
{
    char helo[256];
    struct smtp_error e;
    if (!smtp_parse_helo(arg, helo, sizeof helo, &e)) {
        reply_error(s, &e);
        return;
    }
    smtp_session_reset(s);
    snprintf(s->env.helo, sizeof s->env.helo, "%s", helo);
    s->env.esmtp = esmtp;
    s->phase = PHASE_READY;
    if (esmtp)
        send_ehlo_keywords(s);
    else
        smtp_reply(s, "250 %s", s->cfg->hostname);
}

/* ---- MAIL, RCPT --------------------------------------------------------- */

static bool mail_allowed(struct smtp_session *s)
{
    if (s->phase == PHASE_GREET)
        smtp_reply_bad(s, "503 5.5.1 Send EHLO or HELO first");
    else if (in_transaction(s))
        smtp_reply_bad(s, "503 5.5.1 Sender already specified");
    else if (s->submission && !s->authed[0])
        smtp_reply_bad(s, "530 5.7.0 Authentication required");
    else
        return true;
    return false;
}

static void cmd_mail(struct smtp_session *s, const char *arg)
{
    struct smtp_mail_args a;
    struct smtp_error e;
    if (!mail_allowed(s))
        return;
    if (!smtp_parse_mail(arg, s->env.esmtp, true, &a, &e)) {
        reply_error(s, &e);
        return;
    }
    if (a.size > s->cfg->max_message_size) {
        smtp_reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
        return;
    }
    if (s->authed[0] && a.address[0] &&
        !recipient_owned_by(s->cfg, s->authed, a.address)) {
        smtp_reply_bad(s, "553 5.7.1 <%s>: sender address not owned by %s",
                       a.address, s->authed);
        return;
    }
    snprintf(s->env.sender, sizeof s->env.sender, "%s", a.address);
    s->env.smtputf8 = a.smtputf8;
    s->env.body_8bit = a.body_8bit;
    s->env.ret = a.ret;
    s->env.declared_size = a.size;
    s->env.envid = a.envid[0] ? strdup(a.envid) : NULL;
    s->env.origin = s->authed[0] ? ORIGIN_SUBMISSION : ORIGIN_SMTP;
    snprintf(s->env.auth_user, sizeof s->env.auth_user, "%s", s->authed);
    s->phase = PHASE_MAIL;
    smtp_reply(s, "250 2.1.0 Ok");
}

/* <postmaster> without a domain (RFC 5321 4.5.1): the first local domain's. */
static void postmaster_address(struct smtp_session *s, char *addr, size_t sz)
{
    if (strchr(addr, '@') == NULL)
        snprintf(addr, sz, "postmaster@%s", s->cfg->domains[0]);
}

/* 0 accepted, else the reply was sent. */
static int check_recipient(struct smtp_session *s, const char *addr)
{
    struct recipient_list rl = {0};
    enum recipient_kind k = recipient_resolve(s->cfg, addr, &rl);
    recipient_list_free(&rl);
    switch (k) {
    case RECIPIENT_LOCAL:
        return 0;
    case RECIPIENT_REMOTE:
        if (s->authed[0])
            return 0;
        smtp_reply_bad(s, "554 5.7.1 <%s>: Relay access denied", addr);
        return -1;
    case RECIPIENT_UNKNOWN:
        smtp_reply_bad(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
                       addr);
        return -1;
    case RECIPIENT_TEMPFAIL:
        break;
    }
    smtp_reply(s, "451 4.3.0 Temporary lookup failure");
    return -1;
}

static void cmd_rcpt(struct smtp_session *s, const char *arg)
{
    struct smtp_rcpt_args a;
    struct smtp_error e;
    if (s->phase != PHASE_MAIL && s->phase != PHASE_RCPT) {
        smtp_reply_bad(s, "503 5.5.1 Need MAIL before RCPT");
        return;
    }
    if (!smtp_parse_rcpt(arg, s->env.esmtp, s->env.smtputf8, &a, &e)) {
        reply_error(s, &e);
        return;
    }
    if (s->env.n_rcpts >= s->cfg->max_recipients) {
        smtp_reply(s, "452 4.5.3 Too many recipients");
        return;
    }
    postmaster_address(s, a.address, sizeof a.address);
    if (check_recipient(s, a.address) != 0)
        return;
    if (!envelope_add_rcpt(&s->env, a.address, a.notify,
                           a.has_orcpt ? a.orcpt : NULL)) {
        smtp_reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    s->phase = PHASE_RCPT;
    smtp_reply(s, "250 2.1.5 Ok");
}

/* ---- the rest ----------------------------------------------------------- */

static void cmd_data(struct smtp_session *s, const char *arg)
{
    if (*arg)
        smtp_reply_bad(s, "501 5.5.4 Syntax: DATA");
    else if (s->phase == PHASE_BDAT)
        smtp_reply_bad(s, "503 5.5.1 DATA cannot follow BDAT");
    else if (s->phase != PHASE_RCPT)
        smtp_reply_bad(s, "503 5.5.1 Need RCPT before DATA");
    else
        smtp_data_start(s);
}

static void cmd_starttls(struct smtp_session *s, const char *arg)
{
    if (*arg) {
        smtp_reply_bad(s, "501 5.5.4 Syntax: STARTTLS");
    } else if (conn_is_tls(s->conn)) {
        smtp_reply_bad(s, "503 5.5.1 TLS already active");
    } else if (!conn_tls_available(s->conn)) {
        smtp_reply(s, "454 4.7.0 TLS not available");
    } else if (s->phase == PHASE_GREET) {
        smtp_reply_bad(s, "503 5.5.1 Send EHLO or HELO first");
    } else {
        smtp_reply(s, "220 2.0.0 Ready to start TLS");
        /* RFC 3207 4.2: forget everything; the client starts with EHLO. */
        smtp_session_reset(s);
        s->phase = PHASE_GREET;
        s->env.helo[0] = '\0';
        s->authed[0] = '\0';
        conn_start_tls(s->conn);
    }
}

static void cmd_simple(struct smtp_session *s, enum smtp_verb v, const char *arg)
{
    switch (v) {
    case SMTP_RSET:
        if (*arg) {
            smtp_reply_bad(s, "501 5.5.4 Syntax: RSET");
            return;
        }
        smtp_session_reset(s);
        smtp_reply(s, "250 2.0.0 Ok");
        return;
    case SMTP_NOOP:
        smtp_reply(s, "250 2.0.0 Ok");
        return;
    case SMTP_QUIT:
        smtp_reply(s, "221 2.0.0 Bye");
        smtp_session_close(s, "quit");
        return;
    case SMTP_VRFY:
        if (!*arg)
            smtp_reply_bad(s, "501 5.5.4 Syntax: VRFY address");
        else
            smtp_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message "
                          "and attempt delivery");
        return;
    case SMTP_EXPN:
        smtp_reply_bad(s, "502 5.5.1 EXPN not supported");
        return;
    default:
        smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET "
                      "NOOP QUIT VRFY HELP STARTTLS AUTH");
        return;
    }
}

void smtp_dispatch(struct smtp_session *s, char *line, size_t len)
{
    enum smtp_verb v;
    const char *arg, *why;
    if (!smtp_parse_verb(line, len, &v, &arg, &why)) {
        smtp_reply_bad(s, "500 5.5.2 %s", why);
        return;
    }
    switch (v) {
    case SMTP_EHLO: cmd_hello(s, arg, true); return;
    case SMTP_HELO: cmd_hello(s, arg, false); return;
    case SMTP_MAIL: cmd_mail(s, arg); return;
    case SMTP_RCPT: cmd_rcpt(s, arg); return;
    case SMTP_DATA: cmd_data(s, arg); return;
    case SMTP_BDAT: smtp_bdat_start(s, arg); return;
    case SMTP_STARTTLS: cmd_starttls(s, arg); return;
    case SMTP_AUTH: smtp_auth_command(s, arg); return;
    case SMTP_UNKNOWN:
        smtp_reply_bad(s, "500 5.5.2 Command unrecognized");
        return;
    default:
        cmd_simple(s, v, arg);
        return;
    }
}
