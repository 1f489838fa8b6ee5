/* dsn.c — writes delivery status notifications (RFC 3464 in a RFC 6522
 * multipart/report, RFC 6533 for SMTPUTF8 originals): the header, the
 * human text, the delivery-status fields and the returned original. */
#include "relay/dsn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mail/headers.h"

#define FOLD_AT 78          /* fold our lines before this column */
#define HARD_MAX 900        /* never a line longer (RFC 5322 says 998) */
#define DATE_SIZE 40
#define READ_CHUNK 65536

/* ---- a growing string ---- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void sb_addf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

/* ---- clean text ---- */

/* Length of the valid UTF-8 sequence of 2..4 octets at s (n left), else 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
        (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return len;
}

/* A copy of s (NULL counts as "") with octets outside printable ASCII made
 * '?', except valid UTF-8 when utf8; runs of white space become one space,
 * none at either end. NULL when out of memory. */
static char *clean(const char *s, bool utf8)
{
    size_t n = s ? strlen(s) : 0, o = 0;
    char *out = malloc(n + 1);

    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            if (o > 0 && out[o - 1] != ' ')
                out[o++] = ' ';
            i++;
        } else if (c > 0x20 && c < 0x7f) {
            out[o++] = (char)c;
            i++;
        } else if (c >= 0x80 && utf8 &&
                   (k = utf8_seq((const unsigned char *)s + i, n - i)) > 0) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            out[o++] = '?';
            i++;
        }
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    return out;
}

/* True when s is fit to be written as it is in an address: no control
 * characters, and only valid UTF-8 (when utf8) or ASCII beyond. */
static bool addr_ok(const char *s, bool utf8)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);

    for (size_t i = 0; i < n;) {
        if (u[i] < 0x20 || u[i] == 0x7f)
            return false;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8 ? utf8_seq(u + i, n - i) : 0;
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

static bool host_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 253)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\\",;:@", c))
            return false;
    }
    return true;
}

/* Writes prefix then the words of text (already clean: single spaces),
 * folded with "\n" + indent before FOLD_AT columns where there is a space,
 * and a word longer than HARD_MAX cut into pieces. Ends with "\n". */
static void fold(struct sbuf *b, const char *prefix, const char *text,
                 const char *indent)
{
    size_t col = strlen(prefix), ind = strlen(indent);
    bool first = true;

    sb_str(b, prefix);
    while (*text) {
        size_t w = strcspn(text, " ");
        while (w > 0) {
            size_t piece = w > HARD_MAX ? HARD_MAX : w;
            if (!first && col + 1 + piece > FOLD_AT) {
                sb_add(b, "\n", 1);
                sb_str(b, indent);
                col = ind;
            } else if (!first) {
                sb_add(b, " ", 1);
                col++;
            }
            sb_add(b, text, piece);
            col += piece;
            first = false;
            text += piece;
            w -= piece;
        }
        while (*text == ' ')
            text++;
    }
    sb_add(b, "\n", 1);
}

/* A header or delivery-status field "Name: value" with value cleaned and
 * folded. */
static void field(struct sbuf *b, const char *name, const char *value,
                  bool utf8)
{
    char *v = clean(value, utf8);
    char prefix[64];

    if (!v) {
        b->oom = true;
        return;
    }
    snprintf(prefix, sizeof prefix, "%s: ", name);
    fold(b, prefix, v, "    ");
    free(v);
}

/* ---- dates, status codes, random ---- */

/* RFC 5322 date-time of t in the local time zone, English names. */
static void fmt_date(int64_t t, char out[DATE_SIZE])
{
    static const char wday[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
                                    "Sat"};
    static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;

    if (!localtime_r(&tt, &tm) && !gmtime_r(&tt, &tm)) {
        snprintf(out, DATE_SIZE, "Thu, 01 Jan 1970 00:00:00 +0000");
        return;
    }
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(out, DATE_SIZE, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
             wday[tm.tm_wday % 7], tm.tm_mday % 100, mon[tm.tm_mon % 12],
             (tm.tm_year + 1900) % 10000, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, sign, off / 60 % 100, off % 60);
}

/* "c.s.d": class 2, 4 or 5, subject and detail 1..3 digits (RFC 3463). */
static bool status_ok(const char *s)
{
    if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    s += 2;
    for (int part = 0; part < 2; part++) {
        size_t n = strspn(s, "0123456789");
        if (n < 1 || n > 3)
            return false;
        s += n;
        if (part == 0 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static const char *action_name(enum relay_dsn_action a)
{
    switch (a) {
    case RELAY_DSN_FAILED: return "failed";
    case RELAY_DSN_DELAYED: return "delayed";
    case RELAY_DSN_DELIVERED: return "delivered";
    case RELAY_DSN_RELAYED: return "relayed";
    }
    return "failed";
}

static const char *default_status(enum relay_dsn_action a)
{
    switch (a) {
    case RELAY_DSN_FAILED: return "5.0.0";
    case RELAY_DSN_DELAYED: return "4.0.0";
    case RELAY_DSN_DELIVERED:
    case RELAY_DSN_RELAYED: return "2.0.0";
    }
    return "5.0.0";
}

static void random_hex(char *out, size_t nbytes)
{
    unsigned char r[32];
    size_t got = 0;

    if (nbytes > sizeof r)
        nbytes = sizeof r;
    while (got < nbytes) {
        ssize_t n = getrandom(r + got, nbytes - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < nbytes) {     /* no getrandom: the clock; the boundary is
                               checked against the content anyway */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^
                     (uint64_t)getpid() << 40;
        for (size_t i = got; i < nbytes; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            r[i] = (unsigned char)(x >> 56);
        }
    }
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* ---- the original ---- */

struct original {
    char *buf;          /* what is returned (CR before LF dropped) */
    size_t len;
    bool full;          /* the whole message, else its header fields */
    bool cut;           /* full was wanted but the message is too big */
};

/* Offset just past the empty line ending the header block of buf[0..n),
 * or 0 when there is none yet; *fields_end is where the empty line starts. */
static size_t header_end(const char *buf, size_t n, size_t *fields_end)
{
    for (size_t i = 0; i < n;) {
        const char *lf = memchr(buf + i, '\n', n - i);
        if (!lf)
            return 0;
        size_t line = (size_t)(lf - (buf + i));
        if (line == 0 || (line == 1 && buf[i] == '\r')) {
            *fields_end = i;
            return i + line + 1;
        }
        i += line + 1;
    }
    return 0;
}

/* Reads up to limit octets of fd from offset 0 into *o (o->buf owned). When
 * stop_at_header, stops once the header block is complete. Returns 0 or -1
 * with errno; *eof says the whole file was read. */
static int read_prefix(int fd, size_t limit, bool stop_at_header,
                       struct original *o, bool *eof)
{
    size_t cap = 0;
    size_t fields_end;

    *eof = false;
    for (;;) {
        if (o->len >= limit)
            return 0;
        size_t want = limit - o->len < READ_CHUNK ? limit - o->len : READ_CHUNK;
        if (o->len + want + 1 > cap) {
            size_t ncap = cap ? cap * 2 : READ_CHUNK + 1;
            while (ncap < o->len + want + 1)
                ncap *= 2;
            char *np = realloc(o->buf, ncap);
            if (!np) {
                errno = ENOMEM;
                return -1;
            }
            o->buf = np;
            cap = ncap;
        }
        ssize_t r = pread(fd, o->buf + o->len, want, (off_t)o->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            *eof = true;
            return 0;
        }
        o->len += (size_t)r;
        if (stop_at_header && header_end(o->buf, o->len, &fields_end))
            return 0;
    }
}

/* Drops every CR before an LF, in place. */
static void crlf_to_lf(struct original *o)
{
    size_t w = 0;

    for (size_t i = 0; i < o->len; i++) {
        if (o->buf[i] == '\r' && i + 1 < o->len && o->buf[i + 1] == '\n')
            continue;
        o->buf[w++] = o->buf[i];
    }
    o->len = w;
}

/* Fills *o from fd: all of it when want_full and it has at most return_max
 * octets, else its header fields (at most HEADERS_MAX octets, cut after a
 * whole line). */
static int read_original(int fd, bool want_full, uint64_t return_max,
                         struct original *o)
{
    struct stat st;
    bool eof;

    memset(o, 0, sizeof *o);
    if (fstat(fd, &st) < 0)
        return -1;
    if (want_full && (uint64_t)st.st_size <= return_max) {
        size_t limit = return_max > SIZE_MAX - 1 ? SIZE_MAX - 1
                                                 : (size_t)return_max;
        if (read_prefix(fd, limit + 1, false, o, &eof) < 0)
            goto fail;
        if (o->len <= return_max) {  /* did not grow meanwhile */
            crlf_to_lf(o);
            o->full = true;
            return 0;
        }
        o->len = 0;
    }
    o->cut = want_full;
    if (read_prefix(fd, HEADERS_MAX, true, o, &eof) < 0)
        goto fail;
    size_t fields_end;
    if (header_end(o->buf, o->len, &fields_end)) {
        o->len = fields_end;
    } else if (!eof) {      /* an endless header: up to its last whole line */
        while (o->len > 0 && o->buf[o->len - 1] != '\n')
            o->len--;
    }
    crlf_to_lf(o);
    return 0;
fail:
    free(o->buf);
    o->buf = NULL;
    return -1;
}

/* ---- the parts ---- */

static const char *const subjects[] = {
    [RELAY_DSN_FAILURE] = "Undelivered Mail Returned to Sender",
    [RELAY_DSN_DELAY] = "Delayed Mail (still being retried)",
    [RELAY_DSN_SUCCESS] = "Successful Mail Delivery Report",
};

/* "address" as "type;address" for a recipient field: rfc822 for ASCII,
 * utf-8 (RFC 6533) for the rest. */
static void addr_field(struct sbuf *b, const char *name, const char *type,
                       const char *addr, bool utf8)
{
    char *v = clean(addr, utf8);
    if (!v) {
        b->oom = true;
        return;
    }
    size_t tl = strlen(type);
    char *value = malloc(tl + 1 + strlen(v) + 1);
    if (!value) {
        free(v);
        b->oom = true;
        return;
    }
    memcpy(value, type, tl);
    value[tl] = ';';
    strcpy(value + tl + 1, v);
    field(b, name, value, utf8);
    free(value);
    free(v);
}

static void human_part(struct sbuf *b, const struct relay_dsn_params *p,
                       const struct original *o, bool utf8)
{
    char date[DATE_SIZE];
    int64_t until = 0;

    for (size_t i = 0; i < p->n_rcpts; i++)
        if (p->rcpts[i].retry_until > until)
            until = p->rcpts[i].retry_until;
    sb_addf(b, "This is the mail delivery system at %s.\n\n", p->reporting_mta);
    switch (p->kind) {
    case RELAY_DSN_FAILURE:
        sb_str(b, "Your message could not be delivered to one or more of its\n"
                  "recipients; the reasons are below. This is a permanent\n"
                  "error: it will not be tried again.\n");
        break;
    case RELAY_DSN_DELAY:
        sb_str(b, "Your message has not been delivered yet to one or more of\n"
                  "its recipients; the reasons are below. It is still queued\n");
        if (until) {
            fmt_date(until, date);
            sb_addf(b, "and will be tried again until\n%s.\n", date);
        } else {
            sb_str(b, "and will be tried again.\n");
        }
        sb_str(b, "You do not need to send it again.\n");
        break;
    case RELAY_DSN_SUCCESS:
        sb_str(b, "Your message was delivered to the recipients below, as\n"
                  "you asked.\n");
        break;
    }
    if (p->msg_fd >= 0) {
        if (o->full)
            sb_str(b, "\nYour message is attached.\n");
        else if (o->cut)
            sb_str(b, "\nYour message is too large to be returned; its header\n"
                      "is attached.\n");
        else
            sb_str(b, "\nThe header of your message is attached.\n");
    }
    sb_str(b, "\n");
    for (size_t i = 0; i < p->n_rcpts; i++) {
        const struct relay_dsn_rcpt *r = &p->rcpts[i];
        struct sbuf line = {0};
        sb_str(&line, "<");
        sb_str(&line, r->address);
        sb_str(&line, ">: ");
        if (r->smtp_reply) {
            if (r->remote_mta) {
                sb_str(&line, "host ");
                sb_str(&line, r->remote_mta);
                sb_str(&line, " said: ");
            }
            sb_str(&line, r->smtp_reply);
        } else if (r->reason) {
            sb_str(&line, r->reason);
        } else {
            sb_str(&line, action_name(r->action));
            if (r->remote_mta) {
                sb_str(&line, " (host ");
                sb_str(&line, r->remote_mta);
                sb_str(&line, ")");
            }
        }
        if (r->action == RELAY_DSN_RELAYED)
            sb_str(&line, " (relayed to a mail system that sends no further "
                          "notices)");
        if (line.oom) {
            b->oom = true;
            free(line.p);
            return;
        }
        char *v = clean(line.p, utf8);
        free(line.p);
        if (!v) {
            b->oom = true;
            return;
        }
        fold(b, "", v, "    ");
        sb_str(b, "\n");
        free(v);
    }
    sb_addf(b, "For help, write to the postmaster of %s and include\n"
               "this report.\n", p->reporting_mta);
}

static void status_part(struct sbuf *b, const struct relay_dsn_params *p,
                        bool utf8)
{
    char date[DATE_SIZE];

    sb_str(b, "Reporting-MTA: dns; ");
    sb_str(b, p->reporting_mta);    /* host_ok() */
    sb_str(b, "\n");
    if (p->envid && *p->envid)
        field(b, "Original-Envelope-Id", p->envid, utf8);
    if (p->arrival) {
        fmt_date(p->arrival, date);
        field(b, "Arrival-Date", date, false);
    }
    for (size_t i = 0; i < p->n_rcpts; i++) {
        const struct relay_dsn_rcpt *r = &p->rcpts[i];
        sb_str(b, "\n");
        const char *semi = r->orcpt ? strchr(r->orcpt, ';') : NULL;
        if (semi && semi > r->orcpt) {
            char type[32];
            size_t tl = (size_t)(semi - r->orcpt);
            if (tl < sizeof type) {
                memcpy(type, r->orcpt, tl);
                type[tl] = '\0';
                addr_field(b, "Original-Recipient", type, semi + 1, utf8);
            }
        }
        addr_field(b, "Final-Recipient",
                   utf8 && has_8bit(r->address, strlen(r->address))
                       ? "utf-8" : "rfc822",
                   r->address, utf8);
        sb_addf(b, "Action: %s\n", action_name(r->action));
        sb_addf(b, "Status: %s\n", status_ok(r->status)
                                       ? r->status : default_status(r->action));
        if (r->remote_mta && *r->remote_mta) {
            char *h = clean(r->remote_mta, false);
            if (!h) {
                b->oom = true;
                return;
            }
            for (char *c = h; *c; c++)
                if (*c == ' ')
                    *c = '?';
            char v[300];
            snprintf(v, sizeof v, "dns; %s", h);
            free(h);
            field(b, "Remote-MTA", v, false);
        }
        if (r->smtp_reply || r->reason) {
            const char *type = r->smtp_reply ? "smtp; " : "X-Pobox; ";
            const char *text = r->smtp_reply ? r->smtp_reply : r->reason;
            struct sbuf v = {0};
            sb_str(&v, type);
            sb_str(&v, text);
            if (v.oom) {
                free(v.p);
                b->oom = true;
                return;
            }
            field(b, "Diagnostic-Code", v.p, utf8);
            free(v.p);
        }
        if (r->last_attempt) {
            fmt_date(r->last_attempt, date);
            field(b, "Last-Attempt-Date", date, false);
        }
        if (r->action == RELAY_DSN_DELAYED && r->retry_until) {
            fmt_date(r->retry_until, date);
            field(b, "Will-Retry-Until", date, false);
        }
    }
}

/* ---- the whole ---- */

char *relay_dsn_build(const struct relay_dsn_params *p)
{
    if (!p || !p->sender || !*p->sender || !p->rcpts || p->n_rcpts == 0 ||
        !host_ok(p->reporting_mta) || !addr_ok(p->sender, p->smtputf8) ||
        (unsigned)p->kind > RELAY_DSN_SUCCESS) {
        errno = EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < p->n_rcpts; i++) {
        if (!p->rcpts[i].address || !*p->rcpts[i].address) {
            errno = EINVAL;
            return NULL;
        }
    }
    bool utf8 = p->smtputf8;
    struct original o = {0};
    if (p->msg_fd >= 0) {
        bool want_full = p->kind == RELAY_DSN_FAILURE && p->ret != DSN_RET_HDRS;
        uint64_t max = p->return_max ? p->return_max : RELAY_DSN_RETURN_DEFAULT;
        if (read_original(p->msg_fd, want_full, max, &o) < 0)
            return NULL;
    }

    struct sbuf human = {0}, status = {0}, out = {0};
    char *result = NULL;
    human_part(&human, p, &o, utf8);
    status_part(&status, p, utf8);
    if (human.oom || status.oom)
        goto oom;

    /* A boundary found in none of the parts. */
    char boundary[80];
    for (int tries = 0;; tries++) {
        char hex[33];
        random_hex(hex, 16);
        snprintf(boundary, sizeof boundary, "=_pobox_report_%s", hex);
        if (!memmem(human.p, human.len, boundary, strlen(boundary)) &&
            !memmem(status.p, status.len, boundary, strlen(boundary)) &&
            !(o.buf && memmem(o.buf, o.len, boundary, strlen(boundary))))
            break;
        if (tries == 16) {
            errno = EAGAIN;
            goto fail;
        }
    }

    bool human_8 = has_8bit(human.p, human.len);
    bool status_8 = has_8bit(status.p, status.len);
    bool orig_8 = o.buf && has_8bit(o.buf, o.len);
    char date[DATE_SIZE], msgid[HEADERS_MSGID_SIZE];
    fmt_date(p->now ? p->now : (int64_t)time(NULL), date);
    headers_message_id(p->reporting_mta, msgid, sizeof msgid);

    sb_addf(&out, "From: Mail Delivery System <MAILER-DAEMON@%s>\n",
            p->reporting_mta);
    sb_str(&out, "To: <");
    sb_str(&out, p->sender);
    sb_str(&out, ">\n");
    sb_addf(&out, "Subject: %s\n", subjects[p->kind]);
    sb_addf(&out, "Date: %s\n", date);
    sb_addf(&out, "Message-ID: %s\n", msgid);
    sb_str(&out, "Auto-Submitted: auto-replied\n");
    sb_str(&out, "MIME-Version: 1.0\n");
    sb_addf(&out, "Content-Type: multipart/report; report-type=%s;\n"
                  "    boundary=\"%s\"\n",
            utf8 ? "global-delivery-status" : "delivery-status", boundary);
    sb_addf(&out, "Content-Transfer-Encoding: %s\n",
            human_8 || status_8 || orig_8 ? "8bit" : "7bit");
    sb_str(&out, "\nThis is a MIME-encapsulated message.\n\n");

    sb_addf(&out, "--%s\n", boundary);
    sb_addf(&out, "Content-Description: Notification\n"
                  "Content-Type: text/plain; charset=%s\n",
            human_8 ? "utf-8" : "us-ascii");
    if (human_8)
        sb_str(&out, "Content-Transfer-Encoding: 8bit\n");
    sb_str(&out, "\n");
    sb_add(&out, human.p, human.len);

    sb_addf(&out, "\n--%s\n", boundary);
    sb_addf(&out, "Content-Description: Delivery report\n"
                  "Content-Type: message/%s\n",
            utf8 ? "global-delivery-status" : "delivery-status");
    if (status_8)
        sb_str(&out, "Content-Transfer-Encoding: 8bit\n");
    sb_str(&out, "\n");
    sb_add(&out, status.p, status.len);

    if (p->msg_fd >= 0) {
        const char *type = o.full ? (utf8 ? "message/global" : "message/rfc822")
                                  : (utf8 ? "message/global-headers"
                                          : "text/rfc822-headers");
        sb_addf(&out, "\n--%s\n", boundary);
        sb_addf(&out, "Content-Description: %s\nContent-Type: %s\n",
                o.full ? "Undelivered message" : "Message header", type);
        if (orig_8)
            sb_str(&out, "Content-Transfer-Encoding: 8bit\n");
        sb_str(&out, "\n");
        if (o.buf)
            sb_add(&out, o.buf, o.len);
        if (o.len > 0 && o.buf[o.len - 1] != '\n')
            sb_str(&out, "\n");
    }
    sb_addf(&out, "\n--%s--\n", boundary);
    if (out.oom)
        goto oom;
    result = out.p;
    out.p = NULL;
    goto done;
oom:
    errno = ENOMEM;
fail:
    free(out.p);
done:
    free(human.p);
    free(status.p);
    free(o.buf);
    return result;
}
