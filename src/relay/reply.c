/* reply.c — incremental parsing of SMTP server replies for the relay's
 * client (RFC 5321 4.2, RFC 2034 enhanced codes), octet by octet so that
 * any split of the input gives the same replies. */
#include "relay/reply.h"

#include <string.h>

void relay_reply_init(struct relay_reply_parser *p)
{
    memset(p, 0, sizeof *p);
}

void relay_reply_observe(struct relay_reply_parser *p, relay_reply_line_fn *fn,
                         void *arg)
{
    p->on_line = fn;
    p->on_line_arg = arg;
}

bool relay_reply_pending(const struct relay_reply_parser *p)
{
    return !p->failed && (p->line_len > 0 || p->cr || p->cur.n_lines > 0);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 1..3 digits at s[*i], advancing *i past them. */
static bool digits_1_3(const char *s, size_t *i)
{
    size_t n = 0;
    while (n < 3 && is_digit(s[*i + n]))
        n++;
    if (n == 0 || is_digit(s[*i + n]))
        return false;
    *i += n;
    return true;
}

/* Length of the enhanced status code ("c.s.d" with class c) at the start of
 * text and followed by SP or its end, 0 when there is none. */
static size_t enhanced_len(const char *text, char cls)
{
    size_t i = 1;
    if (text[0] != cls || text[1] != '.')
        return 0;
    i++;
    if (!digits_1_3(text, &i) || text[i] != '.')
        return 0;
    i++;
    if (!digits_1_3(text, &i) || (text[i] != ' ' && text[i] != '\0'))
        return 0;
    return i;
}

static enum relay_reply_rc fail(struct relay_reply_parser *p, const char *why,
                                struct relay_reply *out)
{
    p->failed = why;
    *out = p->cur;
    out->code = 0;
    out->why = why;
    return RELAY_REPLY_ERROR;
}

/* One octet of a line (not its EOL). NULL, or why it is an error. */
static const char *line_octet(struct relay_reply_parser *p, char c)
{
    unsigned pos = p->line_len++;

    if (p->line_len > RELAY_REPLY_LINE_MAX)
        return "reply line too long";
    if (pos < 3) {
        if (!is_digit(c) || (pos == 0 && (c < '2' || c > '5')))
            return "malformed reply code";
        if (p->cur.n_lines > 0) {   /* a continuation: the first's code */
            static const int div[3] = {100, 10, 1};
            if (c - '0' != p->cur.code / div[pos] % 10)
                return "reply lines with different codes";
        }
        p->line_code = p->line_code * 10 + (c - '0');
        return NULL;
    }
    if (pos == 3) {
        if (c != '-' && c != ' ')
            return "malformed reply line";
        p->sep = c;
        return NULL;
    }
    if (p->text_len < RELAY_REPLY_KEEP_TEXT) {
        unsigned char u = (unsigned char)c;
        p->line_text[p->text_len++] = u < 0x20 || u == 0x7f ? '?' : c;
    } else {
        p->cur.truncated = true;
    }
    return NULL;
}

/* The end of a line. NULL, or why it is an error; *done when it was the
 * last line of the reply. */
static const char *line_end(struct relay_reply_parser *p, bool *done)
{
    struct relay_reply *r = &p->cur;

    *done = false;
    if (p->line_len < 3)
        return "malformed reply line";
    if (r->n_lines == 0)
        r->code = p->line_code;
    else if (p->line_code != r->code)
        return "reply lines with different codes";
    p->line_text[p->text_len] = '\0';
    if (r->enhanced[0] == '\0') {
        size_t n = enhanced_len(p->line_text, (char)('0' + r->code / 100));
        if (n > 0) {
            memcpy(r->enhanced, p->line_text, n);
            r->enhanced[n] = '\0';
        }
    }
    if (r->n_kept < RELAY_REPLY_KEEP_LINES)
        memcpy(r->text[r->n_kept++], p->line_text, p->text_len + 1);
    else
        r->truncated = true;
    r->n_lines++;
    bool last = p->sep != '-';
    if (p->on_line)
        p->on_line(p->on_line_arg, r->code, p->line_text, last);
    p->line_len = 0;
    p->text_len = 0;
    p->line_code = 0;
    p->sep = 0;
    if (last) {
        r->multiline = r->n_lines > 1;
        *done = true;
        return NULL;
    }
    if (r->n_lines >= RELAY_REPLY_LINES_MAX)
        return "too many reply lines";
    return NULL;
}

enum relay_reply_rc relay_reply_feed(struct relay_reply_parser *p,
                                     const char *data, size_t len,
                                     size_t *consumed, struct relay_reply *out)
{
    *consumed = 0;
    if (p->failed)
        return fail(p, p->failed, out);
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        const char *why = NULL;
        bool done = false;

        if (c == '\n') {
            p->cr = false;
            why = line_end(p, &done);
        } else {
            if (p->cr) {            /* the CR before was text */
                p->cr = false;
                why = line_octet(p, '\r');
            }
            if (!why) {
                if (c == '\r')
                    p->cr = true;
                else
                    why = line_octet(p, c);
            }
        }
        if (why) {
            *consumed = i + 1;
            return fail(p, why, out);
        }
        if (done) {
            *consumed = i + 1;
            *out = p->cur;
            out->why = NULL;
            memset(&p->cur, 0, sizeof p->cur);
            return RELAY_REPLY_REPLY;
        }
    }
    *consumed = len;
    return RELAY_REPLY_NEED_MORE;
}

/* ---- the one-line form ---- */

struct line_out {
    char *buf;
    size_t size, len;
    bool cut;
};

static void put(struct line_out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !o->cut; i++) {
        if (o->len + 1 >= o->size) {
            o->cut = true;
            break;
        }
        unsigned char u = (unsigned char)s[i];
        o->buf[o->len++] = u < 0x20 || u > 0x7e ? '?' : (char)u;
    }
}

char *relay_reply_line(const struct relay_reply *r, char *out, size_t outsz)
{
    struct line_out o = {out, outsz, 0, false};

    if (outsz == 0)
        return out;
    if (r->code < 200 || r->code > 599) {
        const char *why = r->why ? r->why : "no reply";
        put(&o, "protocol error: ", 16);
        put(&o, why, strlen(why));
    } else {
        char code[4] = {(char)('0' + r->code / 100),
                        (char)('0' + r->code / 10 % 10),
                        (char)('0' + r->code % 10), '\0'};
        put(&o, code, 3);
        if (r->enhanced[0]) {
            put(&o, " ", 1);
            put(&o, r->enhanced, strlen(r->enhanced));
        }
        char cls = code[0];
        for (unsigned i = 0; i < r->n_kept && i < RELAY_REPLY_KEEP_LINES; i++) {
            const char *t = r->text[i];
            size_t n = strnlen(t, RELAY_REPLY_KEEP_TEXT + 1);
            size_t e = enhanced_len(t, cls);
            if (e > 0) {
                t += e;
                n -= e;
            }
            while (n > 0 && *t == ' ') {
                t++;
                n--;
            }
            while (n > 0 && t[n - 1] == ' ')
                n--;
            if (n == 0)
                continue;
            put(&o, " ", 1);
            put(&o, t, n);
        }
        if (r->truncated)
            put(&o, " ...", 4);
    }
    if (o.cut) {
        /* room for "..." in a buffer that was filled */
        size_t keep = outsz - 1 >= 3 ? outsz - 1 - 3 : 0;
        o.len = keep;
        for (size_t i = keep; i < outsz - 1; i++)
            out[o.len++] = '.';
    }
    out[o.len] = '\0';
    return out;
}
