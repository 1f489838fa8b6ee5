/* fuzz_smtp_parse.c — libFuzzer harness for smtp/parse: the first input
 * byte holds flags (esmtp, SMTPUTF8 offered, SMTPUTF8 given), the rest is a
 * command line (cut at 1000 bytes) fed to every parser: the verb splitter,
 * MAIL and RCPT arguments (as given and behind "FROM:" / "TO:"), BDAT,
 * EHLO, mailbox validation and xtext decoding. abort()s when an invariant
 * of parse.h breaks: outputs NUL-terminated and within their limits, reply
 * texts printable, canonical addresses valid and stable when parsed again,
 * and BDAT, EHLO and xtext equal to plain reference decoders written here.
 * Built and run by tools/fuzz.sh. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/parse.h"

#define LINE_MAX_LEN 1000

static void require(bool ok)
{
    if (!ok)
        abort();
}

/* buf holds a NUL within size bytes; returns the string length. */
static size_t terminated(const char *buf, size_t size)
{
    size_t n = strnlen(buf, size);
    require(n < size);
    return n;
}

static bool all_bytes_in(const char *s, size_t n, unsigned lo, unsigned hi)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < lo || (unsigned char)s[i] > hi)
            return false;
    return true;
}

static bool has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

static bool is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* A refusal: a known code, and a non-empty printable text. */
static void check_error(const struct smtp_error *e)
{
    require(e->code == 501 || e->code == 552 || e->code == 553 ||
            e->code == 555);
    require(e->enhanced != NULL);
    require(strcmp(e->enhanced, "5.5.4") == 0 ||
            strcmp(e->enhanced, "5.1.7") == 0 ||
            strcmp(e->enhanced, "5.1.3") == 0 ||
            strcmp(e->enhanced, "5.6.7") == 0 ||
            strcmp(e->enhanced, "5.3.4") == 0);
    size_t n = terminated(e->text, sizeof(e->text));
    require(n > 0 && all_bytes_in(e->text, n, 32, 126));
}

/* A canonical address: bounded, no control bytes, a valid mailbox. */
static void check_address(const char *addr, size_t size, bool utf8)
{
    size_t n = terminated(addr, size);
    require(n <= SMTP_ADDR_MAX);
    for (size_t i = 0; i < n; i++)
        require((unsigned char)addr[i] >= 32 && addr[i] != 127);
    if (!utf8)
        require(!has_8bit(addr));
    const char *why = "unset";
    require(smtp_valid_mailbox(addr, utf8, &why));
    require(why == NULL);
}

static void check_verb(const char *line, size_t len)
{
    enum smtp_verb v;
    const char *arg = NULL, *err = "unset";
    bool ok = smtp_parse_verb(line, len, &v, &arg, &err);

    size_t vl = 0;
    bool ref = memchr(line, '\0', len) == NULL && len > 0 && line[0] != ' ';
    while (ref && vl < len && line[vl] != ' ') {
        if ((unsigned char)line[vl] < 33 || (unsigned char)line[vl] > 126)
            ref = false;
        vl++;
    }
    require(ok == ref);
    require(arg != NULL && arg >= line && arg <= line + len);
    if (!ok) {
        require(err != NULL && v == SMTP_UNKNOWN);
        return;
    }
    require(err == NULL);
    require(v >= SMTP_EHLO && v <= SMTP_UNKNOWN);
    require(strlen(arg) == (size_t)(line + len - arg));
    require(arg[0] != ' ');
    require(arg >= line + vl);
    static const char *const names[] = {
        "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP",
        "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH",
    };
    for (int i = 0; i <= SMTP_AUTH; i++) {
        bool same = strlen(names[i]) == vl &&
                    strncasecmp(line, names[i], vl) == 0;
        require(same == (v == (enum smtp_verb)i));
    }
}

static void check_mail(const char *arg, bool esmtp, bool utf8_allowed)
{
    struct smtp_mail_args m;
    struct smtp_error e;

    if (!smtp_parse_mail(arg, esmtp, utf8_allowed, &m, &e)) {
        check_error(&e);
        require(is_zero(&m, sizeof(m)));
        return;
    }
    if (m.address[0])
        check_address(m.address, sizeof(m.address), m.smtputf8);
    else
        require(is_zero(m.address, sizeof(m.address)));
    require(!(m.body_7bit && m.body_8bit));
    require(m.ret == DSN_RET_UNSET || m.ret == DSN_RET_FULL ||
            m.ret == DSN_RET_HDRS);
    size_t n = terminated(m.envid, sizeof(m.envid));
    require(n <= SMTP_ENVID_MAX && all_bytes_in(m.envid, n, 32, 126));
    if (m.smtputf8)
        require(utf8_allowed);
    if (!esmtp)
        require(m.size == 0 && !m.body_7bit && !m.body_8bit &&
                !m.smtputf8 && m.ret == DSN_RET_UNSET && n == 0 &&
                !m.has_auth);

    /* the canonical address parses to itself */
    char again[ENVELOPE_ADDR_MAX + 32];
    struct smtp_mail_args m2;
    snprintf(again, sizeof(again), "FROM:<%s>%s", m.address,
             m.smtputf8 ? " SMTPUTF8" : "");
    require(smtp_parse_mail(again, true, true, &m2, &e));
    require(strcmp(m2.address, m.address) == 0);
}

static void check_rcpt(const char *arg, bool esmtp, bool smtputf8)
{
    struct smtp_rcpt_args r;
    struct smtp_error e;

    if (!smtp_parse_rcpt(arg, esmtp, smtputf8, &r, &e)) {
        check_error(&e);
        require(is_zero(&r, sizeof(r)));
        return;
    }
    if (strcmp(r.address, "postmaster") != 0)
        check_address(r.address, sizeof(r.address), smtputf8);
    require((r.notify & ~0xFu) == 0);
    if (r.notify & DSN_NOTIFY_NEVER)
        require(r.notify == DSN_NOTIFY_NEVER);
    size_t n = terminated(r.orcpt, sizeof(r.orcpt));
    require(n <= SMTP_ORCPT_MAX);
    require(r.has_orcpt == (n > 0));
    if (n > 0) {
        const char *semi = strchr(r.orcpt, ';');
        require(semi != NULL && semi > r.orcpt && semi[1] != '\0');
        for (size_t i = 0; i < n; i++)
            require((unsigned char)r.orcpt[i] >= 32 && r.orcpt[i] != 127);
        if (!smtputf8)
            require(!has_8bit(r.orcpt));
    }
    if (!esmtp)
        require(r.notify == 0 && !r.has_orcpt);

    char again[ENVELOPE_ADDR_MAX + 8];
    struct smtp_rcpt_args r2;
    snprintf(again, sizeof(again), "TO:<%s>", r.address);
    require(smtp_parse_rcpt(again, true, smtputf8, &r2, &e));
    require(strcmp(r2.address, r.address) == 0);
}

/* Reference BDAT: digits (value must fit 64 bits), then optionally spaces
 * and LAST in any case, then only spaces. */
static void check_bdat(const char *arg)
{
    uint64_t size = 1, ref = 0;
    bool last = true, ref_last = false, ref_ok = true;
    struct smtp_error e;
    bool ok = smtp_parse_bdat(arg, &size, &last, &e);

    size_t i = 0;
    if (arg[0] < '0' || arg[0] > '9')
        ref_ok = false;
    for (; ref_ok && arg[i] >= '0' && arg[i] <= '9'; i++)
        if (__builtin_mul_overflow(ref, 10, &ref) ||
            __builtin_add_overflow(ref, (uint64_t)(arg[i] - '0'), &ref))
            ref_ok = false;
    if (ref_ok) {
        const char *rest = arg + i;
        size_t sp = strspn(rest, " ");
        if (sp > 0 && strncasecmp(rest + sp, "LAST", 4) == 0 &&
            rest[sp + 4 + strspn(rest + sp + 4, " ")] == '\0' &&
            (rest[sp + 4] == ' ' || rest[sp + 4] == '\0'))
            ref_last = true;
        else if (rest[sp] != '\0')
            ref_ok = false;
    }
    require(ok == ref_ok);
    if (ok) {
        require(size == ref && last == ref_last);
    } else {
        check_error(&e);
        require(size == 0 && !last);
    }
}

/* Reference EHLO: trim blanks, then 1..255 bytes of 33..126. */
static void check_helo(const char *arg, size_t outsz)
{
    char out[SMTP_HELO_MAX + 1];
    struct smtp_error e;
    bool ok = smtp_parse_helo(arg, out, outsz, &e);

    size_t s = strspn(arg, " \t"), end = strlen(arg);
    while (end > s && (arg[end - 1] == ' ' || arg[end - 1] == '\t'))
        end--;
    size_t n = end - s;
    bool ref = n > 0 && n <= SMTP_HELO_MAX && n < outsz &&
               all_bytes_in(arg + s, n, 33, 126);
    require(ok == ref);
    if (ok) {
        require(strlen(out) == n && memcmp(out, arg + s, n) == 0);
    } else {
        check_error(&e);
        if (outsz > 0)
            require(out[0] == '\0');
    }
}

static void check_mailbox(const char *s)
{
    const char *why_a = "unset", *why_u = "unset";
    bool ascii = smtp_valid_mailbox(s, false, &why_a);
    bool utf8 = smtp_valid_mailbox(s, true, &why_u);

    require(ascii == (why_a == NULL) && utf8 == (why_u == NULL));
    if (ascii)
        require(utf8 && !has_8bit(s));
    if (utf8) {
        require(strlen(s) <= SMTP_ADDR_MAX && strchr(s, '@') != NULL);
        require(ascii == !has_8bit(s));
    }
}

/* Reference xtext: 33..126 except '+' and '='; "+XX" any case, not 00. */
static bool ref_xtext(const char *in, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+') {
            unsigned v;
            char hex[3] = {0};
            const char *digits = "0123456789abcdefABCDEF";
            if (i + 2 >= len)
                return false;
            hex[0] = in[i + 1];
            hex[1] = in[i + 2];
            if (!hex[0] || !hex[1] || !strchr(digits, hex[0]) ||
                !strchr(digits, hex[1]))
                return false;
            if (sscanf(hex, "%2x", &v) != 1 || v == 0)
                return false;
            c = (unsigned char)v;
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return false;
        }
        if (o + 1 >= outsz)
            return false;
        out[o++] = (char)c;
    }
    if (outsz == 0)
        return false;
    out[o] = '\0';
    return true;
}

static void check_xtext(const char *in, size_t len, size_t outsz)
{
    char out[LINE_MAX_LEN + 1], ref[LINE_MAX_LEN + 1];
    memset(out, 'Q', sizeof(out));
    bool ok = smtp_xtext_decode(in, len, out, outsz);
    bool rok = ref_xtext(in, len, ref, outsz);

    require(ok == rok);
    if (outsz > 0)
        terminated(out, outsz);
    if (ok)
        require(strcmp(out, ref) == 0);
    else if (outsz > 0)
        require(out[0] == '\0');
    /* nothing written past outsz */
    for (size_t i = outsz; i < sizeof(out); i++)
        require(out[i] == 'Q');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[LINE_MAX_LEN + 1], prefixed[LINE_MAX_LEN + 8];

    if (size == 0)
        return 0;
    unsigned flags = data[0];
    bool esmtp = flags & 1, utf8_allowed = flags & 2, smtputf8 = flags & 4;
    size_t outsz = (flags >> 3) & 1 ? ((size_t)flags >> 4) : LINE_MAX_LEN + 1;
    data++;
    size--;
    size_t len = size < LINE_MAX_LEN ? size : LINE_MAX_LEN;
    memcpy(line, data, len);
    line[len] = '\0';

    check_verb(line, len);
    check_xtext(line, len, outsz);

    /* the argument parsers take C strings: the text up to the first NUL */
    check_mail(line, esmtp, utf8_allowed);
    check_rcpt(line, esmtp, smtputf8);
    check_bdat(line);
    check_helo(line, outsz > SMTP_HELO_MAX + 1 ? SMTP_HELO_MAX + 1 : outsz);
    check_mailbox(line);
    snprintf(prefixed, sizeof(prefixed), "FROM:%s", line);
    check_mail(prefixed, esmtp, utf8_allowed);
    snprintf(prefixed, sizeof(prefixed), "TO:%s", line);
    check_rcpt(prefixed, esmtp, smtputf8);
    return 0;
}
