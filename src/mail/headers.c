/* headers.c — reading a message's header block (the address lists through
 * GMime, never a parser of our own) and writing the Date:, Message-ID: and
 * Received: fields pobox adds. See headers.h. */
#include "mail/headers.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#define READ_CHUNK (16 * 1024)  /* first read; the buffer doubles from there */
#define COPY_CHUNK (64 * 1024)
#define NET_TEXT_MAX 64         /* HELO and user in Received:, in octets */
#define FOLD_WIDTH 77           /* the columns a Received: line may fill */

/* ---- GMime, initialised once for the process ---- */

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
    g_mime_init();
}

/* ---- the header block ---- */

struct block {
    char *buf;          /* the octets read, NUL-terminated; malloc'd */
    size_t have;        /* octets in buf (may include some of the body) */
    size_t len;         /* the header block without its empty line */
    size_t header_len;  /* as headers_info.header_len */
};

/* One field of the header block: a line that does not start with white
 * space and the continuation lines after it. */
struct field {
    size_t start, end;  /* [start, end) without the last LF */
    size_t next;        /* where the next field starts */
    const char *name;   /* NULL when the line is not a header field */
    size_t name_len;
    size_t value;       /* offset just after the colon */
};

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Reads up to the empty line that ends the header block (or EOF), keeping
 * at most HEADERS_MAX + 1 octets. */
static int block_read(int fd, struct block *b)
{
    size_t cap = READ_CHUNK, have = 0, line = 0;
    bool eof = false;
    char *buf = malloc(cap + 1);

    memset(b, 0, sizeof *b);
    if (!buf)
        return -1;
    for (;;) {
        char *nl;
        while ((nl = memchr(buf + line, '\n', have - line))) {
            size_t l = (size_t)(nl - (buf + line));
            if (l == 0 || (l == 1 && buf[line] == '\r')) {
                b->len = line;
                b->header_len = (size_t)(nl - buf) + 1;
                goto found;
            }
            line = (size_t)(nl - buf) + 1;
        }
        if (eof) {
            b->len = have;
            b->header_len = 0;
            goto found;
        }
        if (have > HEADERS_MAX)
            break;
        if (have == cap) {
            size_t ncap = cap * 2 > HEADERS_MAX + 1 ? HEADERS_MAX + 1 : cap * 2;
            char *n = realloc(buf, ncap + 1);
            if (!n) {
                free(buf);
                return -1;
            }
            buf = n;
            cap = ncap;
        }
        ssize_t r = pread(fd, buf + have, cap - have, (off_t)have);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return -1;
        }
        if (r == 0)
            eof = true;
        have += (size_t)r;
    }
    free(buf);
    errno = EMSGSIZE;
    return -1;

found:
    if (b->len > HEADERS_MAX || b->header_len > HEADERS_MAX) {
        free(buf);
        errno = EMSGSIZE;
        return -1;
    }
    buf[have] = '\0';
    b->buf = buf;
    b->have = have;
    return 0;
}

static size_t line_end(const struct block *b, size_t p)
{
    const char *nl = memchr(b->buf + p, '\n', b->len - p);
    return nl ? (size_t)(nl - b->buf) : b->len;
}

/* The field starting at p < b->len. */
static void field_at(const struct block *b, size_t p, struct field *f)
{
    size_t first = line_end(b, p), e = first;

    while (e + 1 < b->len && is_wsp(b->buf[e + 1]))
        e = line_end(b, e + 1);
    f->start = p;
    f->end = e;
    f->next = e < b->len ? e + 1 : b->len;
    f->name = NULL;
    f->name_len = 0;
    if (is_wsp(b->buf[p]))
        return;                         /* continuation of nothing */
    const char *colon = memchr(b->buf + p, ':', first - p);
    if (!colon)
        return;
    size_t n = (size_t)(colon - (b->buf + p));
    while (n > 0 && is_wsp(b->buf[p + n - 1]))     /* obs: WSP before ':' */
        n--;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b->buf[p + i];
        if (c < 33 || c > 126)
            return;
    }
    f->name = b->buf + p;
    f->name_len = n;
    f->value = (size_t)(colon - b->buf) + 1;
}

static bool field_is(const struct field *f, const char *name)
{
    return f->name && f->name_len == strlen(name)
        && g_ascii_strncasecmp(f->name, name, f->name_len) == 0;
}

/* The field's value unfolded (line ends removed, a CR before an LF too);
 * malloc'd. */
static char *field_value(const struct block *b, const struct field *f)
{
    const char *s = b->buf + f->value;
    size_t n = f->end - f->value, o = 0;
    char *v = malloc(n + 1);

    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || (s[i] == '\r' && (i + 1 == n || s[i + 1] == '\n')))
            continue;
        v[o++] = s[i];
    }
    v[o] = '\0';
    return v;
}

/* ---- address lists ---- */

struct strvec {
    char **v;
    size_t n, cap;
};

static bool strvec_push(struct strvec *sv, char *s)
{
    if (!s)
        return false;
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 4;
        char **n = realloc(sv->v, cap * sizeof *n);
        if (!n) {
            free(s);
            return false;
        }
        sv->v = n;
        sv->cap = cap;
    }
    sv->v[sv->n++] = s;
    return true;
}

static void strvec_free(struct strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

/* The addr-spec with its domain (after the last '@') lowercased; malloc'd. */
static char *addr_copy(const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (!at)
        return strdup(addr);

    const char *dom = at + 1;
    size_t local = (size_t)(dom - addr);
    bool ascii = true;
    for (const char *p = dom; *p; p++)
        if ((unsigned char)*p >= 0x80)
            ascii = false;
    if (ascii || !g_utf8_validate(dom, -1, NULL)) {
        char *s = strdup(addr);
        if (s)
            for (char *p = s + local; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
        return s;
    }
    gchar *low = g_utf8_strdown(dom, -1);
    size_t dl = strlen(low);
    char *s = malloc(local + dl + 1);
    if (s) {
        memcpy(s, addr, local);
        memcpy(s + local, low, dl + 1);
    }
    g_free(low);
    return s;
}

/* Appends the mailboxes of list (groups flattened) to sv. */
static bool add_mailboxes(InternetAddressList *list, struct strvec *sv)
{
    int n = internet_address_list_length(list);

    for (int i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            InternetAddressList *members =
                internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
            if (members && !add_mailboxes(members, sv))
                return false;
        } else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            const char *a =
                internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            if (a && *a && !strvec_push(sv, addr_copy(a)))
                return false;
        }
    }
    return true;
}

/* Only white space and comments (a Bcc: may be just that). */
static bool only_cfws(const char *s)
{
    int depth = 0;

    for (; *s; s++) {
        if (depth > 0) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '(')
                depth++;
            else if (*s == ')')
                depth--;
        } else if (*s == '(') {
            depth = 1;
        } else if (!is_wsp(*s) && *s != '\r' && *s != '\n') {
            return false;
        }
    }
    return depth == 0;
}

struct parsers {
    GMimeParserOptions *strict, *loose;
    bool warned;        /* set by GMime's warning callback */
};

static void on_warning(gint64 offset, GMimeParserWarning code,
                       const gchar *item, gpointer data)
{
    struct parsers *ps = data;
    ps->warned = true;
}

/* Parses an address-list value into sv: strictly, and when that fails or
 * warns, *bad is set and GMime's loose mode says what it can. */
static bool parse_addresses(struct parsers *ps, const char *value,
                            struct strvec *sv, bool *bad)
{
    if (!g_utf8_validate(value, -1, NULL))
        *bad = true;
    if (only_cfws(value))
        return true;
    ps->warned = false;
    InternetAddressList *list = internet_address_list_parse(ps->strict, value);
    if (!list || ps->warned) {
        *bad = true;
        if (!list)
            list = internet_address_list_parse(ps->loose, value);
        if (!list)
            return true;
    }
    bool ok = add_mailboxes(list, sv);
    g_object_unref(list);
    return ok;
}

int headers_read(int fd, struct headers_info *out)
{
    struct block b;
    struct strvec from = {0}, sender = {0}, to = {0}, cc = {0}, bcc = {0};
    struct parsers ps = {0};
    bool ok = true;

    memset(out, 0, sizeof *out);
    if (block_read(fd, &b) < 0)
        return -1;
    pthread_once(&gmime_once, gmime_init_once);
    ps.strict = g_mime_parser_options_new();
    ps.loose = g_mime_parser_options_new();
    g_mime_parser_options_set_address_compliance_mode(ps.strict,
                                                      GMIME_RFC_COMPLIANCE_STRICT);
    g_mime_parser_options_set_address_compliance_mode(ps.loose,
                                                      GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_warning_callback(ps.strict, on_warning, &ps);
    g_mime_parser_options_set_warning_callback(ps.loose, on_warning, &ps);

    out->header_len = b.header_len;
    if (memchr(b.buf, '\0', b.len))
        out->malformed = true;
    for (size_t p = 0; ok && p < b.len;) {
        struct field f;
        field_at(&b, p, &f);
        p = f.next;
        if (!f.name) {
            out->malformed = true;
            continue;
        }
        if (field_is(&f, "date")) {
            out->has_date = true;
            continue;
        }
        if (field_is(&f, "message-id")) {
            out->has_message_id = true;
            continue;
        }

        struct strvec *sv = NULL;
        bool is_from = false;
        if (field_is(&f, "from")) {
            sv = &from;
            is_from = true;
            out->n_from_fields++;
        } else if (field_is(&f, "sender")) {
            sv = &sender;
            is_from = true;
        } else if (field_is(&f, "to")) {
            sv = &to;
        } else if (field_is(&f, "cc")) {
            sv = &cc;
        } else if (field_is(&f, "bcc")) {
            sv = &bcc;
        } else {
            continue;
        }
        char *value = field_value(&b, &f);
        bool bad = false;
        ok = value && parse_addresses(&ps, value, sv, &bad);
        free(value);
        if (bad) {
            out->malformed = true;
            if (is_from)
                out->from_malformed = true;
        }
    }
    g_mime_parser_options_free(ps.strict);
    g_mime_parser_options_free(ps.loose);
    free(b.buf);
    if (!ok) {
        strvec_free(&from);
        strvec_free(&sender);
        strvec_free(&to);
        strvec_free(&cc);
        strvec_free(&bcc);
        memset(out, 0, sizeof *out);
        errno = ENOMEM;
        return -1;
    }
    out->from = from.v;
    out->n_from = from.n;
    out->sender = sender.v;
    out->n_sender = sender.n;
    out->to = to.v;
    out->n_to = to.n;
    out->cc = cc.v;
    out->n_cc = cc.n;
    out->bcc = bcc.v;
    out->n_bcc = bcc.n;
    return 0;
}

void headers_info_free(struct headers_info *h)
{
    struct strvec all[] = {
        {h->from, h->n_from, 0}, {h->sender, h->n_sender, 0},
        {h->to, h->n_to, 0}, {h->cc, h->n_cc, 0}, {h->bcc, h->n_bcc, 0},
    };

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        strvec_free(&all[i]);
    memset(h, 0, sizeof *h);
}

/* ---- copying without Bcc: ---- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int headers_copy_without_bcc(int in_fd, int out_fd)
{
    struct block b;
    int rc = -1;

    if (block_read(in_fd, &b) < 0)
        return -1;
    for (size_t p = 0; p < b.len;) {
        struct field f;
        field_at(&b, p, &f);
        if (!field_is(&f, "bcc") && write_all(out_fd, b.buf + p, f.next - p) < 0)
            goto out;
        p = f.next;
    }
    /* The empty line and the body, from the file (b.buf holds only part). */
    char *chunk = malloc(COPY_CHUNK);
    if (!chunk)
        goto out;
    for (off_t off = (off_t)b.len;;) {
        ssize_t r = pread(in_fd, chunk, COPY_CHUNK, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -1 : 0;
            break;
        }
        if (write_all(out_fd, chunk, (size_t)r) < 0)
            break;
        off += r;
    }
    free(chunk);
out:
    free(b.buf);
    return rc;
}

/* ---- Date: and Message-ID: ---- */

void headers_date(char *out, size_t outsz)
{
    static const char wday[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (!localtime_r(&now, &tm) && !gmtime_r(&now, &tm)) {
        if (outsz)
            out[0] = '\0';
        return;
    }
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(out, outsz, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
             wday[tm.tm_wday % 7], tm.tm_mday, mon[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
             sign, off / 60 % 100, off % 60);
}

static void random_bytes(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        p += r;
        n -= (size_t)r;
    }
    if (n > 0) {        /* no getrandom(2): time, pid and thread id */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30
                   ^ (uint64_t)getpid() << 40 ^ (uint64_t)gettid() << 20;
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            p[i] = (unsigned char)(x >> 56);
        }
    }
}

void headers_message_id(const char *hostname, char *out, size_t outsz)
{
    unsigned char r[12];
    char hex[2 * sizeof r + 1], host[256];
    size_t h = 0;
    time_t now = time(NULL);
    struct tm tm;

    random_bytes(r, sizeof r);
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    for (const char *s = hostname ? hostname : ""; *s && h < sizeof host - 1; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || (c >= '0' && c <= '9') || c == '.' || c == '-';
        host[h++] = ok ? c : '-';
    }
    host[h] = '\0';
    gmtime_r(&now, &tm);
    snprintf(out, outsz, "<%04d%02d%02d%02d%02d%02d.%s@%s>",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, hex, h ? host : "localhost");
}

/* ---- Received: ---- */

enum text_kind {
    TEXT_DOMAIN,    /* HELO, hostname: letters, digits, - . _ : [ ] */
    TEXT_ATOM,      /* queue id, TLS version and cipher: letters, digits, - . _ */
    TEXT_COMMENT,   /* the user: printable, space, no ( ) \ */
    TEXT_ADDR,      /* a recipient: printable, space, no < > */
    TEXT_IP,        /* hex digits . : */
};

static bool ascii_ok(unsigned char c, enum text_kind k)
{
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9');
    if (c == ' ')
        return k == TEXT_COMMENT || k == TEXT_ADDR;
    if (c < 0x20 || c >= 0x7f)
        return false;
    switch (k) {
    case TEXT_DOMAIN:
        return alnum || c == '-' || c == '.' || c == '_' || c == ':'
            || c == '[' || c == ']';
    case TEXT_ATOM:
        return alnum || c == '-' || c == '.' || c == '_';
    case TEXT_COMMENT:
        return c != '(' && c != ')' && c != '\\';
    case TEXT_ADDR:
        return c != '<' && c != '>';
    case TEXT_IP:
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
            || (c >= 'A' && c <= 'F') || c == '.' || c == ':';
    }
    return false;
}

/* Copies at most max octets of src (whole characters) into dst[dstsz],
 * every octet that kind does not allow, and any 8-bit character unless
 * utf8 (and then only valid UTF-8 at or above U+00A0), becoming '?'. */
static void clean(char *dst, size_t dstsz, const char *src, size_t max,
                  enum text_kind kind, bool utf8)
{
    size_t o = 0, n = strlen(src);

    if (max > dstsz - 1)
        max = dstsz - 1;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)src[i];
        size_t len = 1;
        bool ok;
        if (c < 0x80) {
            ok = ascii_ok(c, kind);
        } else {
            gunichar u = g_utf8_get_char_validated(src + i, (gssize)(n - i));
            ok = utf8 && kind != TEXT_ATOM && kind != TEXT_IP
                && u != (gunichar)-1 && u != (gunichar)-2 && u >= 0xa0;
            if (ok)
                len = (size_t)(g_utf8_next_char(src + i) - (src + i));
        }
        if (o + (ok ? len : 1) > max)
            break;
        if (ok) {
            memcpy(dst + o, src + i, len);
            o += len;
        } else {
            dst[o++] = '?';
        }
        i += len;
    }
    dst[o] = '\0';
}

struct out {
    char *buf;
    size_t len, cap;
    size_t col;         /* the column the next octet goes to */
    bool fresh;         /* at the start of a continuation line */
    bool oom;
};

static void out_raw(struct out *o, const char *s)
{
    size_t n = strlen(s);

    if (o->oom)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->len + n + 1) * 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n + 1);
    o->len += n;
    for (; *s; s++) {
        if (*s == '\n')
            o->col = 0;
        else if (*s == '\t')
            o->col = (o->col / 8 + 1) * 8;
        else if (((unsigned char)*s & 0xc0) != 0x80)
            o->col++;
    }
}

static void out_break(struct out *o)
{
    out_raw(o, "\n\t");
    o->fresh = true;
}

/* A token, after a space or, when the line would pass FOLD_WIDTH, after a
 * fold. */
static void out_word(struct out *o, const char *w)
{
    if (!o->fresh) {
        size_t width = 0;
        for (const char *s = w; *s; s++)
            width += ((unsigned char)*s & 0xc0) != 0x80;
        if (o->col + 1 + width > FOLD_WIDTH)
            out_break(o);
        else
            out_raw(o, " ");
    }
    out_raw(o, w);
    o->fresh = false;
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" (an IPv4-mapped IPv6 address is
 * written as IPv4). */
static void format_ip(char *dst, size_t dstsz, const char *ip)
{
    char c[64];

    clean(c, sizeof c, ip, sizeof c - 1, TEXT_IP, false);
    const char *v = c;
    if (g_ascii_strncasecmp(v, "::ffff:", 7) == 0 && strchr(v + 7, '.')
        && !strchr(v + 7, ':'))
        v += 7;
    snprintf(dst, dstsz, strchr(v, ':') ? "[IPv6:%s]" : "[%s]", v);
}

char *headers_received(const struct envelope *env, const char *hostname,
                       const char *queue_id, bool hide_ip)
{
    struct out o = {0};
    char helo[NET_TEXT_MAX + 1], ip[80], host[256], qid[65], proto[16],
         tlsv[64], cipher[128], user[NET_TEXT_MAX + 1], w[400],
         date[HEADERS_DATE_SIZE];
    bool local = env->origin == ORIGIN_LOCAL;
    bool authed = !local && (env->origin == ORIGIN_SUBMISSION
                             || env->origin == ORIGIN_XTND || env->auth_user[0]);
    bool utf8 = env->smtputf8;

    clean(helo, sizeof helo, env->helo, NET_TEXT_MAX, TEXT_DOMAIN, utf8);
    clean(host, sizeof host, hostname ? hostname : "", 255, TEXT_DOMAIN, false);
    clean(qid, sizeof qid, queue_id ? queue_id : "", 64, TEXT_ATOM, false);
    clean(user, sizeof user, env->auth_user, NET_TEXT_MAX, TEXT_COMMENT, utf8);
    ip[0] = '\0';
    if (env->client_ip[0])
        format_ip(ip, sizeof ip, env->client_ip);
    if (!host[0])
        snprintf(host, sizeof host, "localhost");

    out_raw(&o, "Received:");
    if (!local && (helo[0] || (ip[0] && !(hide_ip && authed)))) {
        out_word(&o, "from");
        out_word(&o, helo[0] ? helo : ip);
        if (ip[0] && !(hide_ip && authed)) {
            snprintf(w, sizeof w, "(%s)", ip);
            out_word(&o, w);
        }
        out_break(&o);
    }

    out_word(&o, "by");
    out_word(&o, host);
    out_word(&o, "(pobox)");
    out_word(&o, "with");
    if (local)
        snprintf(proto, sizeof proto, "local");
    else if (!env->esmtp && !env->smtputf8 && env->origin != ORIGIN_XTND)
        snprintf(proto, sizeof proto, "SMTP");
    else
        snprintf(proto, sizeof proto, "%s%s%s", utf8 ? "UTF8SMTP" : "ESMTP",
                 env->tls[0] ? "S" : "", authed ? "A" : "");
    out_word(&o, proto);
    if (env->origin == ORIGIN_XTND)
        out_word(&o, "(POP3 XTND XMIT)");
    if (qid[0]) {
        out_word(&o, "id");
        out_word(&o, qid);
    }

    if (!local && env->tls[0]) {
        const char *sp = strchr(env->tls, ' ');
        char v[sizeof env->tls];
        snprintf(v, sizeof v, "%.*s", sp ? (int)(sp - env->tls) : (int)sizeof v,
                 env->tls);
        clean(tlsv, sizeof tlsv, v, sizeof tlsv - 1, TEXT_ATOM, false);
        out_break(&o);
        out_word(&o, "(using");
        if (sp) {
            clean(cipher, sizeof cipher, sp + 1, sizeof cipher - 1, TEXT_ATOM, false);
            out_word(&o, tlsv);
            out_word(&o, "with");
            out_word(&o, "cipher");
            snprintf(w, sizeof w, "%s)", cipher);
        } else {
            snprintf(w, sizeof w, "%s)", tlsv);
        }
        out_word(&o, w);
    }

    if (authed && user[0]) {
        out_break(&o);
        out_word(&o, "(authenticated");
        out_word(&o, "sender:");
        snprintf(w, sizeof w, "%s)", user);
        out_word(&o, w);
    }

    headers_date(date, sizeof date);
    if (env->n_rcpts == 1) {
        char rcpt[ENVELOPE_ADDR_MAX];
        clean(rcpt, sizeof rcpt, env->rcpts[0].address, sizeof rcpt - 1,
              TEXT_ADDR, utf8);
        out_break(&o);
        out_word(&o, "for");
        snprintf(w, sizeof w, "<%s>;", rcpt);
        out_word(&o, w);
    } else {
        out_raw(&o, ";");
    }
    out_word(&o, date);
    out_raw(&o, "\n");
    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
