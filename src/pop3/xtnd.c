/* xtnd.c — qpopper's XTND extensions (draft-hansen-pop3-xtndext-00), after
 * login only and only with pop3.xtnd = yes:
 *
 *   XTND XMIT          the client sends a message, ended by CRLF.CRLF as SMTP
 *                      DATA (dot-unstuffing, bare CR/LF and lines over 1000
 *                      octets refuse it); it is sent through the submission
 *                      path (mail/submit.h) as the logged-in user, to the
 *                      addresses of its To:, Cc: and Bcc: fields, without
 *                      its Bcc: fields.
 *   XTND XLST name [n] one header field of every message (or of message n)
 *                      not marked as deleted: "N Name: value" lines, the
 *                      field unfolded; messages without the field are left
 *                      out.
 *
 * The replies are qpopper's (pop_xmit.c, xtnd_xlst.c); failures add the
 * reason and, for temporary ones, [SYS/TEMP] (RFC 3206). The submission and
 * the header reading run on the worker pool. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "mail/envelope.h"
#include "mail/headers.h"
#include "mail/recipient.h"
#include "mail/spool.h"
#include "mail/submit.h"
#include "net/conn.h"
#include "net/server.h"
#include "pop3/session.h"
#include "store/store.h"

#define XMIT_MAX_LINE 1000          /* with CRLF, as SMTP text lines */
#define XLST_HEADER_MAX (64 * 1024) /* read of one message's header block */
#define XLST_NAME_MAX 128

#define XMIT_OK "+OK Message sent successfully"
#define XMIT_FAIL "Unable to send message"

/* ---- XTND XMIT: receiving ------------------------------------------------- */

void pop3_xtnd_abort(struct pop3_session *s)
{
    if (!s->xmit)
        return;
    log_info("event=xtnd_xmit session=%s user=%s result=aborted", s->id,
             s->authed[0] ? s->authed : "-");
    spool_free(s->xmit);
    s->xmit = NULL;
    if (s->conn)
        conn_set_max_line(s->conn, POP3_MAX_LINE);
}

static void xmit_start(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (cmd->argc > 1) {
        pop3_reply_bad(s, "-ERR XTND XMIT: too many arguments");
        return;
    }
    s->xmit = spool_new(s->cfg->data_dir);
    if (!s->xmit) {
        log_error("event=spool_failed session=%s error=\"%s\"", s->id, strerror(errno));
        pop3_reply(s, "-ERR [SYS/TEMP] Unable to create a temporary message file");
        return;
    }
    spool_set_limit(s->xmit, s->cfg->max_message_size);
    s->xmit_prev_crlf = true;   /* the command's CRLF */
    s->xmit_long_line = false;
    conn_set_max_line(s->conn, XMIT_MAX_LINE);
    pop3_reply(s, "+OK Start sending message.");
}

/* ---- XTND XMIT: the submission (worker) ------------------------------------ */

struct xmit_job {
    struct pop3_session *s;     /* holds a reference */
    struct spool *in;           /* the message as received */
    struct envelope env;
    int kind;                   /* 2 sent, 4 temporary failure, 5 refused */
    char text[300];             /* the reason, for a failure */
    struct submit_result res;
    uint64_t size;
};

__attribute__((format(printf, 3, 4)))
static void xmit_fail(struct xmit_job *j, int kind, const char *fmt, ...)
{
    va_list ap;
    j->kind = kind;
    va_start(ap, fmt);
    vsnprintf(j->text, sizeof j->text, fmt, ap);
    va_end(ap);
}

/* An address for a reply: control characters become '?', cut at 200. */
static void reply_safe(char *out, size_t outsz, const char *in)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < outsz && i < 200; i++) {
        unsigned char c = (unsigned char)in[i];
        out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[o] = '\0';
}

static bool has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* Adds one header address to the envelope (once); false with the job's
 * failure set. */
static bool add_recipient(const struct config *cfg, struct xmit_job *j,
                          const char *addr)
{
    char safe[256];
    const char *at = strrchr(addr, '@');
    if (!at || at == addr || !at[1]) {
        reply_safe(safe, sizeof safe, addr);
        xmit_fail(j, 5, "recipient address without a domain: %s", safe);
        return false;
    }
    for (size_t i = 0; i < j->env.n_rcpts; i++)
        if (strcasecmp(j->env.rcpts[i].address, addr) == 0)
            return true;
    if (j->env.n_rcpts >= cfg->max_recipients) {
        xmit_fail(j, 5, "Too many recipients (at most %u)", cfg->max_recipients);
        return false;
    }
    /* Unknown local addresses refuse the message, as RCPT does over SMTP:
     * the user learns it now rather than the address being dropped. */
    struct recipient_list scratch = {0};
    enum recipient_kind k = recipient_resolve(cfg, addr, &scratch);
    recipient_list_free(&scratch);
    if (k == RECIPIENT_TEMPFAIL) {
        xmit_fail(j, 4, "Temporary lookup failure");
        return false;
    }
    if (k == RECIPIENT_UNKNOWN) {
        reply_safe(safe, sizeof safe, addr);
        xmit_fail(j, 5, "<%s>: Recipient address rejected: User unknown", safe);
        return false;
    }
    if (!envelope_add_rcpt(&j->env, addr, 0, NULL)) {
        reply_safe(safe, sizeof safe, addr);
        if (strlen(addr) >= ENVELOPE_ADDR_MAX)
            xmit_fail(j, 5, "recipient address too long: %.60s...", safe);
        else
            xmit_fail(j, 4, "Out of memory");
        return false;
    }
    if (has_8bit(addr))
        j->env.smtputf8 = true;
    return true;
}

static bool add_recipients(const struct config *cfg, struct xmit_job *j,
                           const struct headers_info *h)
{
    char *const *lists[3] = {h->to, h->cc, h->bcc};
    size_t counts[3] = {h->n_to, h->n_cc, h->n_bcc};
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++)
            if (!add_recipient(cfg, j, lists[l][i]))
                return false;
    if (j->env.n_rcpts == 0) {
        xmit_fail(j, 5, "no recipient addresses in To:, Cc: or Bcc:");
        return false;
    }
    return true;
}

static void xmit_io_fail(struct xmit_job *j, int err)
{
    if (err == ENOSPC || err == EDQUOT)
        xmit_fail(j, 4, "Insufficient system storage");
    else
        xmit_fail(j, 4, "Cannot store the message now, try again later");
}

static void xmit_work(void *arg)
{
    struct xmit_job *j = arg;
    const struct config *cfg = j->s->cfg;
    struct headers_info h;
    struct spool *out = NULL;

    if (spool_finish(j->in) != 0) {
        xmit_io_fail(j, spool_error(j->in));
        return;
    }
    int fd = spool_fd(j->in);
    if (headers_read(fd, &h) != 0) {
        if (errno == EMSGSIZE)
            xmit_fail(j, 5, "the header is longer than 1 MiB");
        else
            xmit_io_fail(j, errno);
        return;
    }
    bool ok = add_recipients(cfg, j, &h);
    headers_info_free(&h);
    if (!ok)
        return;

    /* The copy that is sent: without Bcc:, in a spool of its own. */
    out = spool_new(cfg->data_dir);
    if (!out) {
        xmit_io_fail(j, errno);
        return;
    }
    if (headers_copy_without_bcc(fd, spool_fd(out)) != 0 || spool_finish(out) != 0) {
        if (errno == EMSGSIZE)
            xmit_fail(j, 5, "the header is longer than 1 MiB");
        else
            xmit_io_fail(j, errno ? errno : spool_error(out));
        spool_free(out);
        return;
    }
    submit_message(cfg, &j->env, out, &j->res);
    spool_free(out);
    if (j->res.code == 250)
        j->kind = 2;
    else
        xmit_fail(j, j->res.code / 100 == 4 ? 4 : 5, "%s", j->res.text);
}

static void xmit_job_free(struct xmit_job *j)
{
    spool_free(j->in);
    envelope_reset(&j->env);
    free(j);
}

static void xmit_done(void *arg)
{
    struct xmit_job *j = arg;
    struct pop3_session *s = j->s;
    log_info("event=xtnd_xmit session=%s user=%s id=%s rcpts=%zu delivered=%zu "
             "queued=%zu size=%llu result=%s reason=\"%s\"", s->id, s->authed,
             j->res.id[0] ? j->res.id : "-", j->env.n_rcpts, j->res.delivered,
             j->res.queued, (unsigned long long)j->size,
             j->kind == 2 ? "sent" : j->kind == 4 ? "tempfail" : "refused",
             j->kind == 2 ? "-" : j->text);
    if (j->kind == 2)
        pop3_reply(s, XMIT_OK);
    else if (j->kind == 4)
        pop3_reply(s, "-ERR [SYS/TEMP] " XMIT_FAIL ": %s", j->text);
    else
        pop3_reply_bad(s, "-ERR " XMIT_FAIL ": %s", j->text);
    xmit_job_free(j);
    pop3_session_idle(s);
    pop3_session_unref(s);
}

/* A refusal decided from what was received; NULL when the message is fine. */
static const char *refusal(const struct pop3_session *s, struct spool *sp, bool *temp)
{
    *temp = false;
    if (spool_too_big(sp))
        return "Message size exceeds fixed maximum message size";
    if (spool_bare_cr(sp) || spool_bare_lf(sp))
        return "bare CR or LF in the data (use CRLF line ends)";
    if (s->xmit_long_line)
        return "a line is longer than 1000 octets";
    *temp = true;
    if (spool_error(sp) == ENOSPC || spool_error(sp) == EDQUOT)
        return "Insufficient system storage";
    if (spool_error(sp))
        return "Cannot store the message now, try again later";
    return NULL;
}

static void xmit_end(struct pop3_session *s)
{
    struct spool *sp = s->xmit;
    s->xmit = NULL;
    conn_set_max_line(s->conn, POP3_MAX_LINE);
    bool temp;
    const char *why = refusal(s, sp, &temp);
    if (why) {
        log_info("event=xtnd_xmit session=%s user=%s size=%llu result=%s reason=\"%s\"",
                 s->id, s->authed, (unsigned long long)spool_wire_size(sp),
                 temp ? "tempfail" : "refused", why);
        spool_free(sp);
        if (temp)
            pop3_reply(s, "-ERR [SYS/TEMP] " XMIT_FAIL ": %s", why);
        else
            pop3_reply_bad(s, "-ERR " XMIT_FAIL ": %s", why);
        return;
    }
    struct xmit_job *j = calloc(1, sizeof *j);
    if (!j) {
        spool_free(sp);
        pop3_reply(s, "-ERR [SYS/TEMP] " XMIT_FAIL ": Out of memory");
        return;
    }
    j->in = sp;
    j->size = spool_wire_size(sp);
    envelope_init(&j->env);
    j->env.origin = ORIGIN_XTND;
    j->env.esmtp = true;
    j->env.body_8bit = spool_eightbit(sp);
    snprintf(j->env.sender, sizeof j->env.sender, "%s", s->authed);
    snprintf(j->env.auth_user, sizeof j->env.auth_user, "%s", s->authed);
    snprintf(j->env.client_ip, sizeof j->env.client_ip, "%s", conn_ip(s->conn));
    if (conn_is_tls(s->conn))
        conn_tls_info(s->conn, j->env.tls, sizeof j->env.tls);
    if (has_8bit(s->authed))
        j->env.smtputf8 = true;
    j->s = s;
    pop3_session_ref(s);
    s->busy = true;
    if (jobs_submit(s->srv->jobs, conn_base(s->conn), xmit_work, xmit_done, j))
        return;
    s->busy = false;
    pop3_session_unref(s);
    xmit_job_free(j);
    pop3_reply(s, "-ERR [SYS/TEMP] Server busy, try again later");
}

void pop3_xtnd_line(struct pop3_session *s, const char *line, size_t len)
{
    size_t eol = conn_last_eol(s->conn);
    if (len == 1 && line[0] == '.' && eol == 2 && s->xmit_prev_crlf) {
        xmit_end(s);
        return;
    }
    if (len > 0 && line[0] == '.') {
        line++;
        len--;
    }
    spool_add_line(s->xmit, line, len, eol);
    s->xmit_prev_crlf = eol == 2;
}

void pop3_xtnd_line_too_long(struct pop3_session *s)
{
    /* Thrown away up to its line end; the message is refused at its end. */
    s->xmit_long_line = true;
    s->xmit_prev_crlf = true;
}

/* ---- XTND XLST --------------------------------------------------------------- */

struct xlst_job {
    struct pop3_session *s;     /* holds a reference */
    char name[XLST_NAME_MAX + 1];
    size_t *msgs;               /* 0-based numbers to look at */
    size_t n_msgs;
    char *out;                  /* the listing lines, CRLF ended */
    size_t out_len;
    bool oom;
};

/* The length of the header block in buf (through the empty line), or 0
 * when it has not ended within len octets. */
static size_t header_end(const char *buf, size_t len)
{
    size_t line = 0;
    const char *nl;
    while ((nl = memchr(buf + line, '\n', len - line))) {
        size_t l = (size_t)(nl - (buf + line));
        if (l == 0 || (l == 1 && buf[line] == '\r'))
            return (size_t)(nl - buf) + 1;
        line = (size_t)(nl - buf) + 1;
    }
    return 0;
}

/* Reads message i's header block (at most XLST_HEADER_MAX octets) into buf;
 * returns its length, or -1 when the message cannot be read. */
static ssize_t read_header(struct store_mailbox *mb, size_t i, char *buf)
{
    struct store_reader *r = NULL;
    if (store_reader_open(mb, i, &r) != STORE_OK)
        return -1;
    size_t have = 0;
    for (;;) {
        ssize_t n = store_reader_read(r, buf + have, XLST_HEADER_MAX - have);
        if (n < 0) {
            store_reader_close(r);
            return -1;
        }
        have += (size_t)n;
        size_t end = header_end(buf, have);
        if (end) {
            have = end;
            break;
        }
        if (n == 0 || have == XLST_HEADER_MAX)
            break;
    }
    store_reader_close(r);
    return (ssize_t)have;
}

/* The field called name at the start of the line at p (name, optional
 * blanks, colon)? */
static bool field_is(const char *p, size_t len, const char *name)
{
    size_t n = strlen(name);
    if (len < n + 1 || strncasecmp(p, name, n) != 0)
        return false;
    size_t k = n;
    while (k < len && (p[k] == ' ' || p[k] == '\t'))
        k++;
    return k < len && p[k] == ':';
}

static bool out_add(struct xlst_job *j, const char *p, size_t n, size_t *cap)
{
    if (j->out_len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 4096;
        while (ncap < j->out_len + n + 1)
            ncap *= 2;
        char *o = realloc(j->out, ncap);
        if (!o) {
            j->oom = true;
            return false;
        }
        j->out = o;
        *cap = ncap;
    }
    memcpy(j->out + j->out_len, p, n);
    j->out_len += n;
    return true;
}

/* Appends "N field" for the first field called j->name in the header block
 * buf[0..len): unfolded (line ends removed), CR and NUL octets made blanks. */
static void list_field(struct xlst_job *j, size_t msgno, const char *buf, size_t len,
                       size_t *cap)
{
    size_t p = 0;
    while (p < len) {
        const char *nl = memchr(buf + p, '\n', len - p);
        size_t next = nl ? (size_t)(nl - buf) + 1 : len;
        size_t l = next - p;
        if (l == 0 || buf[p] == '\n' || (buf[p] == '\r' && l <= 2))
            return;         /* the empty line: not there */
        if (buf[p] != ' ' && buf[p] != '\t' && field_is(buf + p, l, j->name)) {
            char num[32];
            int k = snprintf(num, sizeof num, "%zu ", msgno);
            if (!out_add(j, num, (size_t)k, cap))
                return;
            size_t q = p;
            do {
                /* one physical line without its line end */
                const char *e = memchr(buf + q, '\n', len - q);
                size_t end = e ? (size_t)(e - buf) : len;
                size_t stop = end;
                if (stop > q && buf[stop - 1] == '\r')
                    stop--;
                for (size_t c = q; c < stop; c++) {
                    char ch = buf[c] == '\r' || buf[c] == '\0' ? ' ' : buf[c];
                    if (!out_add(j, &ch, 1, cap))
                        return;
                }
                q = e ? end + 1 : len;
            } while (q < len && (buf[q] == ' ' || buf[q] == '\t'));
            out_add(j, "\r\n", 2, cap);
            return;
        }
        p = next;
    }
}

static void xlst_work(void *arg)
{
    struct xlst_job *j = arg;
    struct pop3_session *s = j->s;
    size_t cap = 0;
    char *buf = malloc(XLST_HEADER_MAX);
    if (!buf) {
        j->oom = true;
        return;
    }
    for (size_t k = 0; k < j->n_msgs && !j->oom; k++) {
        ssize_t n = read_header(s->mb, j->msgs[k], buf);
        if (n < 0)
            continue;       /* gone (removed by another program) or unreadable */
        list_field(j, j->msgs[k] + 1, buf, (size_t)n, &cap);
    }
    free(buf);
}

static void xlst_done(void *arg)
{
    struct xlst_job *j = arg;
    struct pop3_session *s = j->s;
    if (j->oom) {
        pop3_reply(s, "-ERR [SYS/TEMP] Out of memory");
    } else if (s->conn) {
        pop3_reply(s, "+OK xlst command accepted; headers coming.");
        if (j->out_len)
            conn_write(s->conn, j->out, j->out_len);
        pop3_reply(s, ".");
    }
    free(j->out);
    free(j->msgs);
    free(j);
    pop3_session_idle(s);
    pop3_session_unref(s);
}

static bool valid_field_name(const char *name)
{
    if (!name[0] || strlen(name) > XLST_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == ':')
            return false;
    return true;
}

static void xlst(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (cmd->argc < 2) {
        pop3_reply_bad(s, "-ERR XTND XLST: missing argument (XTND XLST header [msg])");
        return;
    }
    if (cmd->argc > 3) {
        pop3_reply_bad(s, "-ERR XTND XLST: too many arguments");
        return;
    }
    char name[XLST_NAME_MAX + 2];
    snprintf(name, sizeof name, "%s", cmd->argv[1]);
    size_t nl = strlen(name);
    if (nl > 1 && name[nl - 1] == ':')
        name[nl - 1] = '\0';      /* "Subject:" names Subject too */
    if (strlen(cmd->argv[1]) > XLST_NAME_MAX + 1 || !valid_field_name(name)) {
        pop3_reply_bad(s, "-ERR XTND XLST: invalid header field name");
        return;
    }
    size_t first = 0, last = s->count;   /* [first, last) */
    if (cmd->argc == 3) {
        size_t n;
        if (!pop3_parse_msgnum(cmd->argv[2], SIZE_MAX, &n)) {
            pop3_reply_bad(s, "-ERR Invalid message number: expected 1 to %zu", s->count);
            return;
        }
        if (n > s->count) {
            pop3_reply_bad(s, "-ERR Message %zu does not exist.", n);
            return;
        }
        first = n - 1;
        last = n;
    }
    struct xlst_job *j = calloc(1, sizeof *j);
    if (j && last > first)
        j->msgs = calloc(last - first, sizeof *j->msgs);
    if (!j || (last > first && !j->msgs)) {
        if (j)
            free(j);
        pop3_reply(s, "-ERR [SYS/TEMP] Out of memory");
        return;
    }
    snprintf(j->name, sizeof j->name, "%s", name);
    for (size_t i = first; i < last; i++)
        if (!s->deleted[i])
            j->msgs[j->n_msgs++] = i;
    j->s = s;
    pop3_session_ref(s);
    s->busy = true;
    if (jobs_submit(s->srv->jobs, conn_base(s->conn), xlst_work, xlst_done, j))
        return;
    s->busy = false;
    pop3_session_unref(s);
    free(j->msgs);
    free(j);
    pop3_reply(s, "-ERR [SYS/TEMP] Server busy, try again later");
}

/* ---- the command ------------------------------------------------------------ */

void pop3_xtnd_command(struct pop3_session *s, const struct pop3_cmdline *cmd)
{
    if (cmd->argc == 0) {
        pop3_reply_bad(s, "-ERR XTND: missing subcommand (XMIT or XLST)");
        return;
    }
    if (strcasecmp(cmd->argv[0], "XMIT") == 0)
        xmit_start(s, cmd);
    else if (strcasecmp(cmd->argv[0], "XLST") == 0)
        xlst(s, cmd);
    else
        pop3_reply_bad(s, "-ERR Unknown XTND subcommand (XMIT and XLST are supported)");
}
