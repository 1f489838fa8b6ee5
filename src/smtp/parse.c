/* parse.c — SMTP command-line parsing: verbs, paths, mailboxes, ESMTP
 * parameters, BDAT, EHLO/HELO, xtext. Recursive descent over the bytes of
 * the line, bounded by the RFC 5321 size limits; see parse.h. */
#include "smtp/parse.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

_Static_assert(SMTP_ADDR_MAX < ENVELOPE_ADDR_MAX, "address buffer");

#define N_PARAMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- character classes ------------------------------------------------- */

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_letdig(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

/* RFC 5321 atext (RFC 5322 3.2.3), ASCII part. */
static bool is_atext(unsigned char c)
{
    return is_letdig(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static int hexval(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Length of the valid UTF-8 sequence of a non-ASCII character starting at
 * s (n bytes available), 0 when invalid: a stray continuation byte, an
 * overlong form, a surrogate, above U+10FFFF, truncated, or a C1 control. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;

    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0xA0)
        return 0;
    return len;
}

/* ---- addresses --------------------------------------------------------- */

enum addr_err {
    AE_OK,
    AE_NO_OPEN,
    AE_NO_CLOSE,
    AE_EMPTY,
    AE_ROUTE,
    AE_LOCAL_EMPTY,
    AE_LOCAL_CHAR,
    AE_LOCAL_DOT,
    AE_QUOTE,
    AE_NO_AT,
    AE_DOMAIN_EMPTY,
    AE_DOMAIN,
    AE_LABEL_LONG,
    AE_LITERAL,
    AE_UTF8,
    AE_UTF8_NOT_ALLOWED,
    AE_LOCAL_LONG,      /* the "too long" ones last: see addr_too_long() */
    AE_TOO_LONG,
};

static const char *const addr_reason[] = {
    [AE_OK] = "ok",
    [AE_NO_OPEN] = "missing <",
    [AE_NO_CLOSE] = "missing >",
    [AE_EMPTY] = "empty address",
    [AE_ROUTE] = "bad source route",
    [AE_LOCAL_EMPTY] = "empty local part",
    [AE_LOCAL_CHAR] = "bad character in local part",
    [AE_LOCAL_DOT] = "misplaced dot in local part",
    [AE_QUOTE] = "bad quoted local part",
    [AE_NO_AT] = "missing @domain",
    [AE_DOMAIN_EMPTY] = "missing domain",
    [AE_DOMAIN] = "bad domain",
    [AE_LABEL_LONG] = "domain label too long",
    [AE_LITERAL] = "bad address literal",
    [AE_UTF8] = "invalid UTF-8",
    [AE_UTF8_NOT_ALLOWED] = "UTF-8 not allowed",
    [AE_LOCAL_LONG] = "local part too long",
    [AE_TOO_LONG] = "address too long",
};

static bool addr_too_long(enum addr_err e)
{
    return e == AE_LOCAL_LONG || e == AE_TOO_LONG;
}

/* Whether s[0..n) is a Dot-string: atoms of atext (or UTF-8, already
 * validated) separated by single dots. */
static bool is_dot_string(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.')
                return false;
        } else if (!is_atext(c) && c < 0x80) {
            return false;
        }
    }
    return true;
}

/* A quoted local part at s[*pos] == '"': decodes its content, then writes
 * the canonical form (unquoted when it is a Dot-string) to out
 * (SMTP_LOCAL_MAX + 1 bytes). */
static enum addr_err parse_quoted(const char *s, size_t len, size_t *pos,
                                  char *out, size_t *outlen, bool *utf8)
{
    char content[SMTP_LOCAL_MAX + 1];
    size_t n = 0, i = *pos + 1;

    for (;;) {
        if (i >= len)
            return AE_QUOTE;
        unsigned char c = (unsigned char)s[i];
        size_t k = 1;
        const char *src = s + i;
        if (c == '"')
            break;
        if (c == '\\') {
            if (i + 1 >= len || (unsigned char)s[i + 1] < 32 ||
                (unsigned char)s[i + 1] > 126)
                return AE_QUOTE;
            src = s + i + 1;
            i += 2;
        } else if (c >= 32 && c <= 126) {
            i++;
        } else if (c >= 0x80) {
            k = utf8_len((const unsigned char *)s + i, len - i);
            if (k == 0)
                return AE_UTF8;
            *utf8 = true;
            i += k;
        } else {
            return AE_QUOTE;
        }
        if (n + k > SMTP_LOCAL_MAX)
            return AE_LOCAL_LONG;
        memcpy(content + n, src, k);
        n += k;
    }
    *pos = i + 1;
    if (n == 0)
        return AE_LOCAL_EMPTY;
    if (is_dot_string(content, n)) {
        memcpy(out, content, n);
        *outlen = n;
        return AE_OK;
    }
    size_t o = 0;
    out[o++] = '"';
    for (size_t j = 0; j < n; j++) {
        bool esc = content[j] == '"' || content[j] == '\\';
        if (o + (esc ? 2 : 1) + 1 > SMTP_LOCAL_MAX)
            return AE_LOCAL_LONG;
        if (esc)
            out[o++] = '\\';
        out[o++] = content[j];
    }
    out[o++] = '"';
    *outlen = o;
    return AE_OK;
}

/* A Local-part at s[*pos]; stops at the first byte that cannot continue
 * it. out holds SMTP_LOCAL_MAX + 1 bytes (not NUL-terminated). */
static enum addr_err parse_local(const char *s, size_t len, size_t *pos,
                                 char *out, size_t *outlen, bool *utf8)
{
    if (*pos < len && s[*pos] == '"')
        return parse_quoted(s, len, pos, out, outlen, utf8);

    size_t i = *pos;
    bool dot_ok = false;    /* a dot may come next (after an atom byte) */
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!dot_ok)
                return AE_LOCAL_DOT;
            dot_ok = false;
        } else if (is_atext(c)) {
            dot_ok = true;
        } else if (c >= 0x80) {
            size_t k = utf8_len((const unsigned char *)s + i, len - i);
            if (k == 0)
                return AE_UTF8;
            *utf8 = true;
            i += k - 1;
            dot_ok = true;
        } else {
            break;
        }
        if (i + 1 - *pos > SMTP_LOCAL_MAX)
            return AE_LOCAL_LONG;
    }
    size_t n = i - *pos;
    if (n == 0)
        return AE_LOCAL_EMPTY;
    if (!dot_ok)
        return AE_LOCAL_DOT;    /* ends with a dot */
    memcpy(out, s + *pos, n);
    *outlen = n;
    *pos = i;
    return AE_OK;
}

/* Four Snum (0..255, 1 to 3 digits) separated by dots. */
static bool is_ipv4(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        unsigned v = 0, digits = 0;
        while (i < n && is_digit((unsigned char)s[i]) && digits < 3) {
            v = v * 10 + (unsigned)(s[i] - '0');
            digits++;
            i++;
        }
        if (digits == 0 || v > 255)
            return false;
    }
    return i == n;
}

/* An address literal at s[*pos] == '[': [IPv4], [IPv6:addr] or a general
 * [tag:dcontent]. */
static enum addr_err parse_literal(const char *s, size_t len, size_t *pos)
{
    size_t start = *pos + 1, i = start;
    while (i < len && s[i] != ']') {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126 || c == '[' || c == '\\')
            return AE_LITERAL;
        if (i - start >= SMTP_ADDR_MAX)
            return AE_TOO_LONG;
        i++;
    }
    if (i >= len)
        return AE_LITERAL;
    const char *lit = s + start;
    size_t n = i - start;
    *pos = i + 1;
    if (n >= 5 && strncasecmp(lit, "IPv6:", 5) == 0) {
        char buf[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (n - 5 >= sizeof(buf))
            return AE_LITERAL;
        memcpy(buf, lit + 5, n - 5);
        buf[n - 5] = '\0';
        return inet_pton(AF_INET6, buf, &a6) == 1 ? AE_OK : AE_LITERAL;
    }
    const char *colon = memchr(lit, ':', n);
    if (!colon)
        return is_ipv4(lit, n) ? AE_OK : AE_LITERAL;
    /* General-address-literal: Standardized-tag (an Ldh-str) ":" 1*dcontent */
    size_t tag = (size_t)(colon - lit);
    if (tag == 0 || colon + 1 == lit + n ||
        !is_letdig((unsigned char)lit[tag - 1]))
        return AE_LITERAL;
    for (size_t j = 0; j < tag; j++)
        if (!is_letdig((unsigned char)lit[j]) && lit[j] != '-')
            return AE_LITERAL;
    return AE_OK;
}

/* A Domain (or, when literal_ok, an address literal) at s[*pos]; stops at
 * the first byte that cannot continue it. */
static enum addr_err parse_domain(const char *s, size_t len, size_t *pos,
                                  bool literal_ok, bool *utf8)
{
    size_t i = *pos;

    if (i >= len || s[i] == '>')
        return AE_DOMAIN_EMPTY;
    if (s[i] == '[')
        return literal_ok ? parse_literal(s, len, pos) : AE_DOMAIN;
    for (;;) {
        size_t label = i;
        unsigned char last = 0;
        for (; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (is_letdig(c) || (c == '-' && i > label)) {
                last = c;
            } else if (c >= 0x80) {
                size_t k = utf8_len((const unsigned char *)s + i, len - i);
                if (k == 0)
                    return AE_UTF8;
                *utf8 = true;
                i += k - 1;
                last = 0x80;
            } else {
                break;
            }
            if (i + 1 - label > 63)
                return AE_LABEL_LONG;
        }
        if (i == label || last == '-')
            return AE_DOMAIN;
        if (i - *pos > SMTP_ADDR_MAX)
            return AE_TOO_LONG;
        if (i < len && s[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    *pos = i;
    return AE_OK;
}

/* A Mailbox at s[*pos]; writes its canonical form, NUL-terminated, to out
 * (SMTP_ADDR_MAX + 1 bytes). */
static enum addr_err parse_mailbox(const char *s, size_t len, size_t *pos,
                                   char *out, bool *utf8)
{
    char local[SMTP_LOCAL_MAX + 1];
    size_t ll = 0;
    enum addr_err e = parse_local(s, len, pos, local, &ll, utf8);
    if (e)
        return e;
    if (*pos >= len || s[*pos] == '>')
        return AE_NO_AT;
    if (s[*pos] != '@')
        return AE_LOCAL_CHAR;
    (*pos)++;
    size_t dstart = *pos;
    e = parse_domain(s, len, pos, true, utf8);
    if (e)
        return e;
    size_t dl = *pos - dstart;
    if (ll + 1 + dl > SMTP_ADDR_MAX)
        return AE_TOO_LONG;
    memcpy(out, local, ll);
    out[ll] = '@';
    memcpy(out + ll + 1, s + dstart, dl);
    out[ll + 1 + dl] = '\0';
    return AE_OK;
}

/* A Path or "<>" at s[*pos] (empty out for "<>"); with postmaster, a bare
 * "<postmaster>" in any case gives "postmaster". */
static enum addr_err parse_path(const char *s, size_t len, size_t *pos,
                                bool postmaster, char *out, bool *utf8)
{
    size_t i = *pos;

    out[0] = '\0';
    if (i >= len || s[i] != '<')
        return AE_NO_OPEN;
    i++;
    if (i < len && s[i] == '>') {
        *pos = i + 1;
        return AE_OK;
    }
    if (postmaster && len - i >= 11 &&
        strncasecmp(s + i, "postmaster>", 11) == 0) {
        memcpy(out, "postmaster", 11);
        *pos = i + 11;
        return AE_OK;
    }
    if (i < len && s[i] == '@') {
        /* A-d-l ":" — checked, then dropped (RFC 5321 4.1.1.3, appendix C) */
        for (;;) {
            bool dummy = false;
            i++;
            if (parse_domain(s, len, &i, false, &dummy) != AE_OK)
                return AE_ROUTE;
            if (i < len && s[i] == ',' && i + 1 < len && s[i + 1] == '@') {
                i++;
                continue;
            }
            if (i < len && s[i] == ':') {
                i++;
                break;
            }
            return AE_ROUTE;
        }
    }
    enum addr_err e = parse_mailbox(s, len, &i, out, utf8);
    if (e) {
        out[0] = '\0';
        return e;
    }
    if (i >= len || s[i] != '>') {
        out[0] = '\0';
        return i >= len ? AE_NO_CLOSE : AE_DOMAIN;
    }
    *pos = i + 1;
    return AE_OK;
}

bool smtp_valid_mailbox(const char *addr, bool utf8, const char **why)
{
    char buf[SMTP_ADDR_MAX + 1];
    size_t len = strlen(addr), pos = 0;
    bool has_utf8 = false;
    enum addr_err e = parse_mailbox(addr, len, &pos, buf, &has_utf8);

    if (e == AE_OK && pos != len)
        e = AE_DOMAIN;
    if (e == AE_OK && has_utf8 && !utf8)
        e = AE_UTF8_NOT_ALLOWED;
    if (why)
        *why = e ? addr_reason[e] : NULL;
    return e == AE_OK;
}

/* ---- xtext ------------------------------------------------------------- */

/* Decodes xtext into out (outsz bytes with the NUL); *outlen gets the
 * length. With utf8, valid raw UTF-8 is copied too (RFC 6533 unitext). */
static bool xtext_decode(const char *in, size_t len, char *out, size_t outsz,
                         size_t *outlen, bool utf8)
{
    size_t o = 0;

    if (outsz == 0)
        return false;
    out[0] = '\0';
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)in[i];
        size_t k = 1;
        char dec;
        const char *src = in + i;
        if (c == '+') {
            int hi = i + 1 < len ? hexval((unsigned char)in[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            dec = (char)(hi << 4 | lo);
            src = &dec;
            i += 3;
        } else if (c >= 33 && c <= 126 && c != '=') {
            i++;
        } else if (utf8 && c >= 0x80 &&
                   (k = utf8_len((const unsigned char *)in + i, len - i)) > 0) {
            i += k;
        } else {
            goto bad;
        }
        if (o + k >= outsz)
            goto bad;
        memcpy(out + o, src, k);
        o += k;
    }
    out[o] = '\0';
    *outlen = o;
    return true;
bad:
    out[0] = '\0';
    return false;
}

bool smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsz)
{
    size_t n;
    return xtext_decode(in, len, out, outsz, &n, false);
}

/* Whether s[0..n) is printable ASCII or space; with utf8, valid UTF-8
 * non-ASCII characters too (escapes may have produced any byte). */
static bool printable(const char *s, size_t n, bool utf8)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127)
            continue;
        size_t k = utf8 && c >= 0x80
                       ? utf8_len((const unsigned char *)s + i, n - i) : 0;
        if (k == 0)
            return false;
        i += k - 1;
    }
    return true;
}

/* ---- replies ----------------------------------------------------------- */

static bool fail(struct smtp_error *err, int code, const char *enhanced,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static bool fail(struct smtp_error *err, int code, const char *enhanced,
                 const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->enhanced = enhanced;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof(err->text), fmt, ap);
    va_end(ap);
    return false;
}

static void clear_error(struct smtp_error *err)
{
    err->code = 0;
    err->enhanced = "";
    err->text[0] = '\0';
}

static bool addr_fail(struct smtp_error *err, enum addr_err e, bool sender)
{
    const char *enh = sender ? "5.1.7" : "5.1.3";
    const char *who = sender ? "sender" : "recipient";

    if (e == AE_UTF8_NOT_ALLOWED)
        return fail(err, 553, "5.6.7", "UTF-8 address needs SMTPUTF8");
    if (addr_too_long(e))
        return fail(err, 553, enh, "%s%s", sender ? "Sender " : "Recipient ",
                    addr_reason[e]);
    return fail(err, 501, enh, "Bad %s address syntax: %s", who,
                addr_reason[e]);
}

/* ---- ESMTP parameters -------------------------------------------------- */

struct param {
    const char *key, *val;  /* val NULL when there is no "=" */
    size_t klen, vlen;
};

/* The next space-separated parameter at s[*pos], or false at the end.
 * Multiple and trailing spaces are skipped. */
static bool next_param(const char *s, size_t *pos, struct param *p)
{
    size_t i = *pos;
    while (s[i] == ' ')
        i++;
    if (s[i] == '\0') {
        *pos = i;
        return false;
    }
    size_t end = i;
    while (s[end] != '\0' && s[end] != ' ')
        end++;
    const char *eq = memchr(s + i, '=', end - i);
    p->key = s + i;
    p->klen = eq ? (size_t)(eq - (s + i)) : end - i;
    p->val = eq ? eq + 1 : NULL;
    p->vlen = eq ? (size_t)(s + end - (eq + 1)) : 0;
    *pos = end;
    return true;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool valid_keyword(const struct param *p)
{
    if (p->klen == 0 || !is_letdig((unsigned char)p->key[0]))
        return false;
    for (size_t i = 1; i < p->klen; i++)
        if (!is_letdig((unsigned char)p->key[i]) && p->key[i] != '-')
            return false;
    return true;
}

static bool key_is(const struct param *p, const char *name)
{
    return strlen(name) == p->klen && strncasecmp(p->key, name, p->klen) == 0;
}

static bool val_is(const struct param *p, const char *name)
{
    return p->val && strlen(name) == p->vlen &&
           strncasecmp(p->val, name, p->vlen) == 0;
}

/* Refuses a keyword that is not well formed, or one not in names[] (then
 * 555 naming it); returns its index in names, or -1 with *err set.
 * Duplicates (bit set in *seen) get 501. */
static int lookup_param(const struct param *p, const char *const *names,
                        int n, unsigned *seen, struct smtp_error *err)
{
    if (!valid_keyword(p)) {
        fail(err, 501, "5.5.4", "Invalid parameter syntax");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!key_is(p, names[i]))
            continue;
        if (*seen & (1u << i)) {
            fail(err, 501, "5.5.4", "Duplicate parameter %s", names[i]);
            return -1;
        }
        *seen |= 1u << i;
        return i;
    }
    int shown = p->klen > 32 ? 32 : (int)p->klen;
    fail(err, 555, "5.5.4", "Unsupported parameter %.*s", shown, p->key);
    return -1;
}

/* SIZE=1*20DIGIT (RFC 1870). */
static bool param_size(const struct param *p, uint64_t *size,
                       struct smtp_error *err)
{
    if (!p->val || p->vlen == 0 || p->vlen > 20)
        return fail(err, 501, "5.5.4", "Invalid SIZE value");
    uint64_t v = 0;
    for (size_t i = 0; i < p->vlen; i++) {
        unsigned char c = (unsigned char)p->val[i];
        if (!is_digit(c))
            return fail(err, 501, "5.5.4", "Invalid SIZE value");
        unsigned d = (unsigned)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fail(err, 552, "5.3.4",
                        "Message size exceeds fixed maximum message size");
        v = v * 10 + d;
    }
    *size = v;
    return true;
}

enum { MP_SIZE, MP_BODY, MP_SMTPUTF8, MP_RET, MP_ENVID, MP_AUTH };
static const char *const mail_params[] = {
    [MP_SIZE] = "SIZE", [MP_BODY] = "BODY", [MP_SMTPUTF8] = "SMTPUTF8",
    [MP_RET] = "RET", [MP_ENVID] = "ENVID", [MP_AUTH] = "AUTH",
};

static bool mail_param(const struct param *p, int which, bool utf8_allowed,
                       struct smtp_mail_args *out, struct smtp_error *err)
{
    char scratch[SMTP_ADDR_MAX * 2 + 1];
    size_t n;

    switch (which) {
    case MP_SIZE:
        return param_size(p, &out->size, err);
    case MP_BODY:
        if (val_is(p, "7BIT"))
            out->body_7bit = true;
        else if (val_is(p, "8BITMIME"))
            out->body_8bit = true;
        else if (val_is(p, "BINARYMIME"))
            return fail(err, 555, "5.5.4", "BODY=BINARYMIME not supported");
        else
            return fail(err, 501, "5.5.4", "Invalid BODY value");
        return true;
    case MP_SMTPUTF8:
        if (!utf8_allowed)
            return fail(err, 555, "5.5.4", "Unsupported parameter SMTPUTF8");
        if (p->val)
            return fail(err, 501, "5.5.4", "SMTPUTF8 takes no value");
        out->smtputf8 = true;
        return true;
    case MP_RET:
        if (val_is(p, "FULL"))
            out->ret = DSN_RET_FULL;
        else if (val_is(p, "HDRS"))
            out->ret = DSN_RET_HDRS;
        else
            return fail(err, 501, "5.5.4", "Invalid RET value");
        return true;
    case MP_ENVID:
        if (!p->val || p->vlen == 0 ||
            !xtext_decode(p->val, p->vlen, scratch, sizeof(scratch), &n,
                          false) ||
            !printable(scratch, n, false))
            return fail(err, 501, "5.5.4", "Invalid ENVID value");
        if (n > SMTP_ENVID_MAX)
            return fail(err, 501, "5.5.4", "ENVID too long");
        memcpy(out->envid, scratch, n + 1);
        return true;
    case MP_AUTH:
        /* RFC 4954 5: "<>" or an xtext mailbox; accepted and dropped */
        if (!p->val || p->vlen == 0 ||
            !xtext_decode(p->val, p->vlen, scratch, sizeof(scratch), &n,
                          false) ||
            !printable(scratch, n, false))
            return fail(err, 501, "5.5.4", "Invalid AUTH value");
        out->has_auth = true;
        return true;
    }
    return fail(err, 555, "5.5.4", "Unsupported parameter");
}

/* NOTIFY=NEVER / 1#(SUCCESS / FAILURE / DELAY) (RFC 3461 4.1). */
static bool param_notify(const struct param *p, unsigned *notify,
                         struct smtp_error *err)
{
    unsigned bits = 0;
    size_t i = 0;

    if (!p->val || p->vlen == 0)
        return fail(err, 501, "5.5.4", "Invalid NOTIFY value");
    while (i <= p->vlen) {
        const char *v = p->val + i;
        const char *comma = memchr(v, ',', p->vlen - i);
        size_t n = comma ? (size_t)(comma - v) : p->vlen - i;
        static const struct { const char *name; unsigned bit; } words[] = {
            {"NEVER", DSN_NOTIFY_NEVER}, {"SUCCESS", DSN_NOTIFY_SUCCESS},
            {"FAILURE", DSN_NOTIFY_FAILURE}, {"DELAY", DSN_NOTIFY_DELAY},
        };
        unsigned bit = 0;
        for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
            if (strlen(words[w].name) == n &&
                strncasecmp(v, words[w].name, n) == 0)
                bit = words[w].bit;
        if (bit == 0)
            return fail(err, 501, "5.5.4", "Invalid NOTIFY value");
        bits |= bit;
        i += n + 1;
    }
    if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER)
        return fail(err, 501, "5.5.4", "NOTIFY=NEVER cannot be combined");
    *notify = bits;
    return true;
}

/* An RFC 822 atom character: printable ASCII except specials. */
static bool is_atom_char(unsigned char c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\".[]", c);
}

/* ORCPT=addr-type ";" xtext (RFC 3461 4.2, RFC 6533 for utf-8). */
static bool param_orcpt(const struct param *p, bool smtputf8,
                        struct smtp_rcpt_args *out, struct smtp_error *err)
{
    const char *semi = p->val ? memchr(p->val, ';', p->vlen) : NULL;
    if (!semi)
        return fail(err, 501, "5.5.4", "Invalid ORCPT value");
    size_t tl = (size_t)(semi - p->val);
    if (tl == 0 || tl > 32)
        return fail(err, 501, "5.5.4", "Invalid ORCPT value");
    for (size_t i = 0; i < tl; i++)
        if (!is_atom_char((unsigned char)p->val[i]))
            return fail(err, 501, "5.5.4", "Invalid ORCPT value");
    bool utf8 = smtputf8 && tl == 5 && strncasecmp(p->val, "utf-8", 5) == 0;
    size_t rest = p->vlen - tl - 1, n;
    memcpy(out->orcpt, p->val, tl);
    out->orcpt[tl] = ';';
    size_t room = SMTP_ORCPT_MAX + 1 - (tl + 1);
    if (rest == 0 ||
        !xtext_decode(semi + 1, rest, out->orcpt + tl + 1, room, &n, utf8) ||
        n == 0 || !printable(out->orcpt + tl + 1, n, utf8)) {
        out->orcpt[0] = '\0';
        return fail(err, 501, "5.5.4", "Invalid ORCPT value");
    }
    out->has_orcpt = true;
    return true;
}

enum { RP_NOTIFY, RP_ORCPT };
static const char *const rcpt_params[] = {
    [RP_NOTIFY] = "NOTIFY", [RP_ORCPT] = "ORCPT",
};

/* ---- commands ---------------------------------------------------------- */

/* "FROM:" / "TO:" in any case, then at most one space; returns the path's
 * offset or 0. */
static size_t skip_keyword(const char *arg, const char *kw)
{
    size_t n = strlen(kw);
    if (strncasecmp(arg, kw, n) != 0)
        return 0;
    return arg[n] == ' ' ? n + 1 : n;
}

bool smtp_parse_mail(const char *arg, bool esmtp, bool utf8_allowed,
                     struct smtp_mail_args *out, struct smtp_error *err)
{
    size_t len = strlen(arg), pos;
    bool utf8 = false;
    struct param p;
    unsigned seen = 0;

    memset(out, 0, sizeof(*out));
    clear_error(err);
    if ((pos = skip_keyword(arg, "FROM:")) == 0) {
        fail(err, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
        goto bad;
    }
    enum addr_err e = parse_path(arg, len, &pos, false, out->address, &utf8);
    if (e) {
        addr_fail(err, e, true);
        goto bad;
    }
    if (arg[pos] != '\0' && arg[pos] != ' ') {
        fail(err, 501, "5.5.4", "Unexpected text after address");
        goto bad;
    }
    while (next_param(arg, &pos, &p)) {
        if (!esmtp) {
            fail(err, 555, "5.5.4", "MAIL parameters need EHLO");
            goto bad;
        }
        int which = lookup_param(&p, mail_params, N_PARAMS(mail_params), &seen,
                                 err);
        if (which < 0 || !mail_param(&p, which, utf8_allowed, out, err))
            goto bad;
    }
    if (utf8 && !out->smtputf8) {
        addr_fail(err, AE_UTF8_NOT_ALLOWED, true);
        goto bad;
    }
    return true;
bad:
    memset(out, 0, sizeof(*out));
    return false;
}

bool smtp_parse_rcpt(const char *arg, bool esmtp, bool smtputf8,
                     struct smtp_rcpt_args *out, struct smtp_error *err)
{
    size_t len = strlen(arg), pos;
    bool utf8 = false;
    struct param p;
    unsigned seen = 0;

    memset(out, 0, sizeof(*out));
    clear_error(err);
    if ((pos = skip_keyword(arg, "TO:")) == 0) {
        fail(err, 501, "5.5.4", "Syntax: RCPT TO:<address>");
        goto bad;
    }
    enum addr_err e = parse_path(arg, len, &pos, true, out->address, &utf8);
    if (e == AE_OK && out->address[0] == '\0')
        e = AE_EMPTY;
    if (e) {
        addr_fail(err, e, false);
        goto bad;
    }
    if (arg[pos] != '\0' && arg[pos] != ' ') {
        fail(err, 501, "5.5.4", "Unexpected text after address");
        goto bad;
    }
    while (next_param(arg, &pos, &p)) {
        if (!esmtp) {
            fail(err, 555, "5.5.4", "RCPT parameters need EHLO");
            goto bad;
        }
        int which = lookup_param(&p, rcpt_params, N_PARAMS(rcpt_params), &seen,
                                 err);
        if (which < 0)
            goto bad;
        if (which == RP_NOTIFY ? !param_notify(&p, &out->notify, err)
                               : !param_orcpt(&p, smtputf8, out, err))
            goto bad;
    }
    if (utf8 && !smtputf8) {
        addr_fail(err, AE_UTF8_NOT_ALLOWED, false);
        goto bad;
    }
    return true;
bad:
    memset(out, 0, sizeof(*out));
    return false;
}

bool smtp_parse_bdat(const char *arg, uint64_t *size, bool *last,
                     struct smtp_error *err)
{
    size_t i = 0;
    uint64_t v = 0;

    *size = 0;
    *last = false;
    clear_error(err);
    if (!is_digit((unsigned char)arg[0]))
        return fail(err, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
    for (; is_digit((unsigned char)arg[i]); i++) {
        unsigned d = (unsigned)(arg[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fail(err, 501, "5.5.4", "Invalid BDAT chunk size");
        v = v * 10 + d;
    }
    bool is_last = false;
    if (arg[i] == ' ') {
        while (arg[i] == ' ')
            i++;
        if (strncasecmp(arg + i, "LAST", 4) == 0 &&
            (arg[i + 4] == ' ' || arg[i + 4] == '\0')) {
            is_last = true;
            i += 4;
        }
        while (arg[i] == ' ')
            i++;
    }
    if (arg[i] != '\0')
        return fail(err, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
    *size = v;
    *last = is_last;
    return true;
}

bool smtp_parse_helo(const char *arg, char *out, size_t outsz,
                     struct smtp_error *err)
{
    size_t start = 0, end = strlen(arg);

    if (outsz > 0)
        out[0] = '\0';
    clear_error(err);
    while (arg[start] == ' ' || arg[start] == '\t')
        start++;
    while (end > start && (arg[end - 1] == ' ' || arg[end - 1] == '\t'))
        end--;
    if (start == end)
        return fail(err, 501, "5.5.4", "Syntax: HELO/EHLO hostname");
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c < 33 || c > 126)
            return fail(err, 501, "5.5.4", "Invalid HELO/EHLO hostname");
    }
    size_t n = end - start;
    if (n > SMTP_HELO_MAX || n >= outsz)
        return fail(err, 501, "5.5.4", "HELO/EHLO hostname too long");
    memcpy(out, arg + start, n);
    out[n] = '\0';
    return true;
}

bool smtp_parse_verb(const char *line, size_t len, enum smtp_verb *verb,
                     const char **arg, const char **err)
{
    static const struct { const char *name; enum smtp_verb verb; } verbs[] = {
        {"EHLO", SMTP_EHLO}, {"HELO", SMTP_HELO}, {"MAIL", SMTP_MAIL},
        {"RCPT", SMTP_RCPT}, {"DATA", SMTP_DATA}, {"BDAT", SMTP_BDAT},
        {"RSET", SMTP_RSET}, {"NOOP", SMTP_NOOP}, {"QUIT", SMTP_QUIT},
        {"VRFY", SMTP_VRFY}, {"EXPN", SMTP_EXPN}, {"HELP", SMTP_HELP},
        {"STARTTLS", SMTP_STARTTLS}, {"AUTH", SMTP_AUTH},
    };
    size_t n = 0;

    *verb = SMTP_UNKNOWN;
    *arg = line + len;
    *err = NULL;
    if (memchr(line, '\0', len)) {
        *err = "NUL character in command";
        return false;
    }
    while (n < len && line[n] != ' ') {
        unsigned char c = (unsigned char)line[n];
        if (c < 33 || c > 126) {
            *err = "Invalid character in command";
            return false;
        }
        n++;
    }
    if (n == 0) {
        *err = len == 0 ? "Empty command" : "Command starts with a space";
        return false;
    }
    size_t a = n;
    while (a < len && line[a] == ' ')
        a++;
    *arg = line + a;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strlen(verbs[i].name) == n &&
            strncasecmp(line, verbs[i].name, n) == 0) {
            *verb = verbs[i].verb;
            break;
        }
    }
    return true;
}
