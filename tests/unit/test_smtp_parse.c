/* test_smtp_parse.c — unit tests for smtp/parse: command verbs, MAIL FROM
 * and RCPT TO paths with their ESMTP parameters (RFC 5321, 1870, 6152,
 * 3461, 4954, 6531), BDAT (RFC 3030), EHLO/HELO arguments, mailbox syntax
 * and xtext, with the reply code each refusal carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/parse.h"

/* ---- helpers ----------------------------------------------------------- */

/* Parses MAIL arg and requires success. */
static struct smtp_mail_args mail_ok(const char *arg, bool esmtp, bool utf8)
{
    struct smtp_mail_args m;
    struct smtp_error e;
    if (!smtp_parse_mail(arg, esmtp, utf8, &m, &e))
        fail_msg("MAIL \"%s\" refused: %d %s %s", arg, e.code, e.enhanced,
                 e.text);
    return m;
}

/* Parses MAIL arg, requires a refusal with code and enhanced code, and
 * text starting with text (when not NULL); *out must be zeroed. */
static void mail_bad(const char *arg, bool esmtp, bool utf8, int code,
                     const char *enhanced, const char *text)
{
    struct smtp_mail_args m, zero;
    struct smtp_error e;
    memset(&zero, 0, sizeof(zero));
    if (smtp_parse_mail(arg, esmtp, utf8, &m, &e))
        fail_msg("MAIL \"%s\" accepted as <%s>", arg, m.address);
    if (e.code != code || strcmp(e.enhanced, enhanced) != 0)
        fail_msg("MAIL \"%s\": got %d %s %s, want %d %s", arg, e.code,
                 e.enhanced, e.text, code, enhanced);
    if (text && strncmp(e.text, text, strlen(text)) != 0)
        fail_msg("MAIL \"%s\": text \"%s\", want \"%s...\"", arg, e.text,
                 text);
    assert_memory_equal(&m, &zero, sizeof(m));
}

static struct smtp_rcpt_args rcpt_ok(const char *arg, bool esmtp, bool utf8)
{
    struct smtp_rcpt_args r;
    struct smtp_error e;
    if (!smtp_parse_rcpt(arg, esmtp, utf8, &r, &e))
        fail_msg("RCPT \"%s\" refused: %d %s %s", arg, e.code, e.enhanced,
                 e.text);
    return r;
}

static void rcpt_bad(const char *arg, bool esmtp, bool utf8, int code,
                     const char *enhanced, const char *text)
{
    struct smtp_rcpt_args r, zero;
    struct smtp_error e;
    memset(&zero, 0, sizeof(zero));
    if (smtp_parse_rcpt(arg, esmtp, utf8, &r, &e))
        fail_msg("RCPT \"%s\" accepted as <%s>", arg, r.address);
    if (e.code != code || strcmp(e.enhanced, enhanced) != 0)
        fail_msg("RCPT \"%s\": got %d %s %s, want %d %s", arg, e.code,
                 e.enhanced, e.text, code, enhanced);
    if (text && strncmp(e.text, text, strlen(text)) != 0)
        fail_msg("RCPT \"%s\": text \"%s\", want \"%s...\"", arg, e.text,
                 text);
    assert_memory_equal(&r, &zero, sizeof(r));
}

/* The canonical address MAIL gives for path (esmtp, SMTPUTF8 allowed and
 * given when utf8). */
static void canon(const char *path, const char *want, bool utf8)
{
    char arg[600];
    snprintf(arg, sizeof(arg), "FROM:%s%s", path, utf8 ? " SMTPUTF8" : "");
    struct smtp_mail_args m = mail_ok(arg, true, true);
    assert_string_equal(m.address, want);
    snprintf(arg, sizeof(arg), "TO:%s", path);
    struct smtp_rcpt_args r = rcpt_ok(arg, true, utf8);
    assert_string_equal(r.address, want);
    /* the canonical form is a valid mailbox that parses to itself */
    const char *why = "x";
    assert_true(smtp_valid_mailbox(want, utf8, &why));
    assert_null(why);
    snprintf(arg, sizeof(arg), "TO:<%s>", want);
    r = rcpt_ok(arg, true, utf8);
    assert_string_equal(r.address, want);
}

static void mailbox_bad(const char *addr, bool utf8, const char *why_want)
{
    const char *why = NULL;
    if (smtp_valid_mailbox(addr, utf8, &why))
        fail_msg("mailbox \"%s\" accepted", addr);
    assert_non_null(why);
    if (why_want && strcmp(why, why_want) != 0)
        fail_msg("mailbox \"%s\": why \"%s\", want \"%s\"", addr, why,
                 why_want);
}

static void mailbox_good(const char *addr, bool utf8)
{
    const char *why = NULL;
    if (!smtp_valid_mailbox(addr, utf8, &why))
        fail_msg("mailbox \"%s\" refused: %s", addr, why);
}

/* A string of n copies of c. */
static char *rep(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* ---- verbs ------------------------------------------------------------- */

static enum smtp_verb verb_of(const char *line, const char **arg)
{
    enum smtp_verb v;
    const char *err = "x";
    if (!smtp_parse_verb(line, strlen(line), &v, arg, &err))
        fail_msg("verb of \"%s\" refused: %s", line, err);
    assert_null(err);
    return v;
}

static void test_verbs(void **state)
{
    const char *arg;
    static const struct { const char *line; enum smtp_verb v; } cases[] = {
        {"EHLO x", SMTP_EHLO}, {"helo x", SMTP_HELO},
        {"Mail FROM:<>", SMTP_MAIL}, {"rcpt TO:<a@b>", SMTP_RCPT},
        {"DATA", SMTP_DATA}, {"bdat 1", SMTP_BDAT}, {"RSET", SMTP_RSET},
        {"noop", SMTP_NOOP}, {"QuIt", SMTP_QUIT}, {"VRFY a", SMTP_VRFY},
        {"EXPN a", SMTP_EXPN}, {"HELP", SMTP_HELP},
        {"starttls", SMTP_STARTTLS}, {"AUTH PLAIN", SMTP_AUTH},
        {"XYZZY", SMTP_UNKNOWN}, {"MAILX FROM:<>", SMTP_UNKNOWN},
        {"MAI", SMTP_UNKNOWN}, {"STARTTLSX", SMTP_UNKNOWN},
        {"GET / HTTP/1.0", SMTP_UNKNOWN}, {"MAIL:", SMTP_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (verb_of(cases[i].line, &arg) != cases[i].v)
            fail_msg("verb of \"%s\"", cases[i].line);
}

static void test_verb_argument(void **state)
{
    const char *arg;
    const char *line = "MAIL FROM:<a@b> SIZE=1";

    assert_int_equal(verb_of(line, &arg), SMTP_MAIL);
    assert_ptr_equal(arg, line + 5);
    assert_string_equal(arg, "FROM:<a@b> SIZE=1");
    assert_int_equal(verb_of("DATA", &arg), SMTP_DATA);
    assert_string_equal(arg, "");
    /* spaces after the verb are skipped; trailing ones are kept */
    assert_int_equal(verb_of("RCPT   TO:<a@b>  ", &arg), SMTP_RCPT);
    assert_string_equal(arg, "TO:<a@b>  ");
    assert_int_equal(verb_of("QUIT   ", &arg), SMTP_QUIT);
    assert_string_equal(arg, "");
    /* 8-bit bytes in the argument are the argument parser's business */
    assert_int_equal(verb_of("NOOP \xc3\xa9", &arg), SMTP_NOOP);
    assert_string_equal(arg, "\xc3\xa9");
}

static void test_verb_refused(void **state)
{
    enum smtp_verb v = SMTP_DATA;
    const char *arg = NULL, *err = NULL;

    /* NUL anywhere in the line, even in the argument */
    assert_false(smtp_parse_verb("MAIL\0FROM:<>", 12, &v, &arg, &err));
    assert_non_null(err);
    assert_int_equal(v, SMTP_UNKNOWN);
    err = NULL;
    assert_false(smtp_parse_verb("NOOP x\0", 7, &v, &arg, &err));
    assert_non_null(err);
    assert_false(smtp_parse_verb("\0", 1, &v, &arg, &err));
    /* non-ASCII and control bytes in the verb */
    static const char *bad[] = {
        "M\xc3\x80IL FROM:<>", "DATA\xff", "\xef\xbb\xbfHELO x", "QU\x01IT",
        "HELO\tx", "DATA\r", "", " MAIL FROM:<>", "   ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        if (smtp_parse_verb(bad[i], strlen(bad[i]), &v, &arg, &err))
            fail_msg("verb of \"%s\" accepted", bad[i]);
        assert_non_null(err);
        assert_int_equal(v, SMTP_UNKNOWN);
        assert_non_null(arg);
    }
}

/* ---- MAIL FROM --------------------------------------------------------- */

static void test_mail_basic(void **state)
{
    struct smtp_mail_args m = mail_ok("FROM:<joe@example.com>", false, false);
    assert_string_equal(m.address, "joe@example.com");
    assert_true(m.size == 0);
    assert_false(m.body_8bit || m.body_7bit || m.smtputf8 || m.has_auth);
    assert_int_equal(m.ret, DSN_RET_UNSET);
    assert_string_equal(m.envid, "");

    /* "FROM:" in any case, one optional space, trailing spaces */
    assert_string_equal(mail_ok("from:<a@b.c>", true, false).address, "a@b.c");
    assert_string_equal(mail_ok("FrOm: <a@b.c>", true, false).address, "a@b.c");
    assert_string_equal(mail_ok("FROM:<a@b.c>   ", true, false).address,
                        "a@b.c");
    /* the case of the address is kept */
    assert_string_equal(
        mail_ok("FROM:<Joe.Q@Example.COM>", true, false).address,
        "Joe.Q@Example.COM");
}

static void test_mail_null_sender(void **state)
{
    struct smtp_mail_args m = mail_ok("FROM:<>", false, false);
    assert_string_equal(m.address, "");
    m = mail_ok("FROM:<> SIZE=10 RET=HDRS", true, false);
    assert_string_equal(m.address, "");
    assert_true(m.size == 10);
    assert_int_equal(m.ret, DSN_RET_HDRS);
    m = mail_ok("FROM: <>", true, false);
    assert_string_equal(m.address, "");
}

static void test_mail_syntax(void **state)
{
    /* no FROM: */
    mail_bad("", true, false, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
    mail_bad("<a@b>", true, false, 501, "5.5.4", "Syntax: MAIL FROM:");
    mail_bad("FROM <a@b>", true, false, 501, "5.5.4", "Syntax: MAIL FROM:");
    mail_bad("FROM :<a@b>", true, false, 501, "5.5.4", "Syntax: MAIL FROM:");
    mail_bad("TO:<a@b>", true, false, 501, "5.5.4", "Syntax: MAIL FROM:");
    mail_bad("FRO", true, false, 501, "5.5.4", NULL);
    /* bad paths: sender syntax */
    static const char *bad[] = {
        "FROM:", "FROM:a@b", "FROM:<a@b", "FROM:a@b>", "FROM:  <a@b>",
        "FROM:<a@b c>", "FROM:<a b@c>", "FROM:< a@b>", "FROM:<a@b >",
        "FROM:<a@@b>", "FROM:<a@b@c>", "FROM:<@b>", "FROM:<a@>",
        "FROM:<a>", "FROM:<.a@b>", "FROM:<a.@b>", "FROM:<a..b@c>",
        "FROM:<a@-b.c>", "FROM:<a@b-.c>", "FROM:<a@b..c>", "FROM:<a@.b>",
        "FROM:<a@b.>", "FROM:<a@b_c>", "FROM:<\"a@b>", "FROM:<\"\"@b>",
        "FROM:<a(b)@c>", "FROM:<a,b@c>", "FROM:<a@[1.2.3.4>",
        "FROM:<a@[]>", "FROM:<a@[1.2.3]>", "FROM:<a@[1.2.3.256]>",
        "FROM:<a@[1.2.3.4.5]>", "FROM:<a@[IPv6:1::2::3]>",
        "FROM:<a@[IPv6:1.2.3.4]>", "FROM:<a@[x]>", "FROM:<a@[tag-:x]>",
        "FROM:<a@[:x]>", "FROM:<a@[tag:]>", "FROM:<a@[a b]>",
        "FROM:<a@[a\\]]>", "FROM:<postmaster>", "FROM:<<a@b>>",
        "FROM:<a\x01@b>", "FROM:<a@b\x7f>", "FROM:<\"a\x01\"@b>",
        "FROM:<\"a\\\x01\"@b>", "FROM:<@x:>", "FROM:<@:a@b>",
        "FROM:<@x,a@b>", "FROM:<@x;a@b>", "FROM:<@x,:a@b>",
        "FROM:<@[1.2.3.4]:a@b>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        mail_bad(bad[i], true, true, 501, "5.1.7",
                 "Bad sender address syntax: ");
    /* text glued to the path */
    mail_bad("FROM:<a@b>SIZE=1", true, false, 501, "5.5.4",
             "Unexpected text after address");
    mail_bad("FROM:<a@b>>", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<>x", true, false, 501, "5.5.4", NULL);
}

static void test_mail_reasons(void **state)
{
    mail_bad("FROM:a@b", true, false, 501, "5.1.7",
             "Bad sender address syntax: missing <");
    mail_bad("FROM:<a@b", true, false, 501, "5.1.7",
             "Bad sender address syntax: missing >");
    mail_bad("FROM:<ab>", true, false, 501, "5.1.7",
             "Bad sender address syntax: missing @domain");
    mail_bad("FROM:<@b>", true, false, 501, "5.1.7",
             "Bad sender address syntax: bad source route");
    mail_bad("FROM:<a@>", true, false, 501, "5.1.7",
             "Bad sender address syntax: missing domain");
    mail_bad("FROM:<\"\"@b>", true, false, 501, "5.1.7",
             "Bad sender address syntax: empty local part");
    mail_bad("FROM:<a..b@c>", true, false, 501, "5.1.7",
             "Bad sender address syntax: misplaced dot");
    mail_bad("FROM:<a@[1.2.3.256]>", true, false, 501, "5.1.7",
             "Bad sender address syntax: bad address literal");
}

static void test_mail_lengths(void **state)
{
    char local[100], dom[300], arg[700];

    /* local part: 64 octets fine, 65 too long */
    snprintf(arg, sizeof(arg), "FROM:<%s@b.c>", rep(local, 'x', 64));
    assert_int_equal(strlen(mail_ok(arg, true, false).address), 68);
    snprintf(arg, sizeof(arg), "FROM:<%s@b.c>", rep(local, 'x', 65));
    mail_bad(arg, true, false, 553, "5.1.7", "Sender local part too long");
    /* quoted: the canonical form counts ("\"" + 62 + "\"" = 64) */
    snprintf(arg, sizeof(arg), "FROM:<\"%s %s\"@b.c>", rep(local, 'x', 30),
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(strlen(mail_ok(arg, true, false).address), 64 + 4);
    snprintf(arg, sizeof(arg), "FROM:<\"%s %s\"@b.c>", rep(local, 'x', 31),
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    mail_bad(arg, true, false, 553, "5.1.7", "Sender local part too long");
    /* unneeded quotes do not count */
    snprintf(arg, sizeof(arg), "FROM:<\"%s\"@b.c>", rep(local, 'x', 64));
    assert_int_equal(strlen(mail_ok(arg, true, false).address), 68);

    /* whole address: 254 fine, 255 too long (labels of 63) */
    char l63[64], l61[62];
    rep(l63, 'a', 63);
    rep(l61, 'b', 61);
    snprintf(dom, sizeof(dom), "%s.%s.%s.%s", l63, l63, l63, l61);
    assert_int_equal(strlen(dom), 63 * 3 + 3 + 61);   /* 253 */
    snprintf(arg, sizeof(arg), "FROM:<@%s:a@%s>", dom, dom);
    mail_bad(arg, true, false, 553, "5.1.7", "Sender address too long");
    dom[strlen(dom) - 1] = '\0';                        /* 252 */
    snprintf(arg, sizeof(arg), "FROM:<a@%s>", dom);
    assert_int_equal(strlen(mail_ok(arg, true, false).address), 254);
    snprintf(arg, sizeof(arg), "FROM:<ab@%s>", dom);
    mail_bad(arg, true, false, 553, "5.1.7", "Sender address too long");
    /* a label of 64 is a syntax error */
    snprintf(arg, sizeof(arg), "FROM:<a@%sa.b>", l63);
    mail_bad(arg, true, false, 501, "5.1.7",
             "Bad sender address syntax: domain label too long");
    snprintf(arg, sizeof(arg), "FROM:<a@%s.b>", l63);
    mail_ok(arg, true, false);
    /* a very long domain fails early, without overflow */
    char huge[3000];
    memcpy(huge, "FROM:<a@", 8);
    for (size_t i = 8; i < 2990; i++)
        huge[i] = (i % 10) ? 'z' : '.';
    memcpy(huge + 2990, "z>", 3);
    mail_bad(huge, true, false, 553, "5.1.7", NULL);
}

static void test_mail_source_route(void **state)
{
    struct smtp_mail_args m =
        mail_ok("FROM:<@relay.example,@other.example:joe@example.com>",
                true, false);
    assert_string_equal(m.address, "joe@example.com");
    assert_string_equal(mail_ok("FROM:<@a:b@c>", false, false).address, "b@c");
}

static void test_canonical_form(void **state)
{
    canon("<a@b>", "a@b", false);
    canon("<\"joe\"@x.org>", "joe@x.org", false);
    canon("<\"j.o.e\"@x.org>", "j.o.e@x.org", false);
    canon("<\"a b\"@x.org>", "\"a b\"@x.org", false);
    canon("<\"a\\b\"@x.org>", "ab@x.org", false);
    canon("<\"a\\ b\"@x.org>", "\"a b\"@x.org", false);
    canon("<\"a\\\"b\"@x.org>", "\"a\\\"b\"@x.org", false);
    canon("<\"a\\\\b\"@x.org>", "\"a\\\\b\"@x.org", false);
    canon("<\"a..b\"@x.org>", "\"a..b\"@x.org", false);
    canon("<\".a\"@x.org>", "\".a\"@x.org", false);
    canon("<\"a@b\"@x.org>", "\"a@b\"@x.org", false);
    canon("<\"<a>\"@x.org>", "\"<a>\"@x.org", false);
    canon("<!#$%&'*+-/=?^_`{|}~@x.org>", "!#$%&'*+-/=?^_`{|}~@x.org", false);
    canon("<user+tag@x.org>", "user+tag@x.org", false);
    canon("<a@[192.0.2.1]>", "a@[192.0.2.1]", false);
    canon("<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", false);
    canon("<a@[ipv6:::ffff:192.0.2.1]>", "a@[ipv6:::ffff:192.0.2.1]", false);
    canon("<a@[x-tag:some.thing]>", "a@[x-tag:some.thing]", false);
    canon("<a@localhost>", "a@localhost", false);
    canon("<a@1.2.3.4>", "a@1.2.3.4", false);
    canon("<a@xn--bcher-kva.example>", "a@xn--bcher-kva.example", false);
    canon("<a@b-c.d--e.f>", "a@b-c.d--e.f", false);
    canon("<@r1,@r2:\"x y\"@z>", "\"x y\"@z", false);
    canon("<\"\xc3\xa9t\xc3\xa9\"@x>", "\xc3\xa9t\xc3\xa9@x", true);
    canon("<\"\xc3\xa9 t\"@x>", "\"\xc3\xa9 t\"@x", true);
}

static void test_mail_size_body(void **state)
{
    struct smtp_mail_args m =
        mail_ok("FROM:<a@b> SIZE=123 BODY=8BITMIME", true, false);
    assert_true(m.size == 123);
    assert_true(m.body_8bit);
    assert_false(m.body_7bit);
    m = mail_ok("FROM:<a@b> body=7bit size=0", true, false);
    assert_true(m.body_7bit);
    assert_true(m.size == 0);
    m = mail_ok("FROM:<a@b>   Size=00000000000000000042   ", true, false);
    assert_true(m.size == 42);
    m = mail_ok("FROM:<a@b> SIZE=18446744073709551615", true, false);
    assert_true(m.size == UINT64_MAX);

    mail_bad("FROM:<a@b> SIZE=18446744073709551616", true, false, 552,
             "5.3.4", NULL);
    mail_bad("FROM:<a@b> SIZE=99999999999999999999", true, false, 552,
             "5.3.4", NULL);
    static const char *bad_size[] = {
        "FROM:<a@b> SIZE=99999999999999999999999", "FROM:<a@b> SIZE=",
        "FROM:<a@b> SIZE", "FROM:<a@b> SIZE=-1", "FROM:<a@b> SIZE=+1",
        "FROM:<a@b> SIZE=1k", "FROM:<a@b> SIZE=0x10", "FROM:<a@b> SIZE=1=2",
        "FROM:<a@b> SIZE=000000000000000000001",
    };
    for (size_t i = 0; i < sizeof(bad_size) / sizeof(bad_size[0]); i++)
        mail_bad(bad_size[i], true, false, 501, "5.5.4", "Invalid SIZE value");
    mail_bad("FROM:<a@b> BODY=BINARYMIME", true, false, 555, "5.5.4", NULL);
    mail_bad("FROM:<a@b> BODY=8BIT", true, false, 501, "5.5.4",
             "Invalid BODY value");
    mail_bad("FROM:<a@b> BODY", true, false, 501, "5.5.4",
             "Invalid BODY value");
    mail_bad("FROM:<a@b> BODY=", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> BODY=7BIT BODY=8BITMIME", true, false, 501, "5.5.4",
             "Duplicate parameter BODY");
}

static void test_mail_params_rules(void **state)
{
    /* unknown, duplicate, malformed */
    mail_bad("FROM:<a@b> FOO=1", true, false, 555, "5.5.4",
             "Unsupported parameter FOO");
    mail_bad("FROM:<a@b> X-Thing", true, false, 555, "5.5.4",
             "Unsupported parameter X-Thing");
    mail_bad("FROM:<a@b> SIZE=1 size=2", true, false, 501, "5.5.4",
             "Duplicate parameter SIZE");
    mail_bad("FROM:<a@b> =1", true, false, 501, "5.5.4",
             "Invalid parameter syntax");
    mail_bad("FROM:<a@b> -X=1", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> SI_ZE=1", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> SIZE=1\tBODY=7BIT", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> \xc3\xa9=1", true, true, 501, "5.5.4", NULL);
    /* a long unknown keyword is cut at 32 in the reply */
    struct smtp_mail_args m;
    struct smtp_error e;
    char arg[300], kw[200];
    snprintf(arg, sizeof(arg), "FROM:<a@b> %s=1", rep(kw, 'K', 100));
    assert_false(smtp_parse_mail(arg, true, false, &m, &e));
    assert_int_equal(e.code, 555);
    assert_int_equal(strlen(e.text), strlen("Unsupported parameter ") + 32);
    /* parameters need EHLO */
    mail_bad("FROM:<a@b> SIZE=1", false, false, 555, "5.5.4", NULL);
    mail_bad("FROM:<> BODY=8BITMIME", false, true, 555, "5.5.4", NULL);
    mail_ok("FROM:<a@b>  ", false, false);
    /* error in a later parameter */
    mail_bad("FROM:<a@b> SIZE=1 BODY=7BIT RET=ALL", true, false, 501, "5.5.4",
             "Invalid RET value");
}

static void test_mail_smtputf8(void **state)
{
    const char *u = "FROM:<\xc3\xa9l\xc3\xa8ve@\xc3\xa9" "cole.fr> SMTPUTF8";
    struct smtp_mail_args m = mail_ok(u, true, true);
    assert_true(m.smtputf8);
    assert_string_equal(m.address, "\xc3\xa9l\xc3\xa8ve@\xc3\xa9" "cole.fr");
    m = mail_ok("FROM:<a@b> smtputf8 BODY=8BITMIME", true, true);
    assert_true(m.smtputf8 && m.body_8bit);
    /* SMTPUTF8 where not offered */
    mail_bad(u, true, false, 555, "5.5.4", "Unsupported parameter SMTPUTF8");
    mail_bad("FROM:<a@b> SMTPUTF8=yes", true, true, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> SMTPUTF8 SMTPUTF8", true, true, 501, "5.5.4",
             "Duplicate parameter SMTPUTF8");
    /* UTF-8 address without the parameter */
    mail_bad("FROM:<\xc3\xa9@b>", true, true, 553, "5.6.7",
             "UTF-8 address needs SMTPUTF8");
    mail_bad("FROM:<a@\xc3\xa9.fr>", true, false, 553, "5.6.7", NULL);
    mail_bad("FROM:<a@\xc3\xa9.fr>", false, true, 553, "5.6.7", NULL);
    /* four-byte characters and U+00A0 are fine */
    mail_ok("FROM:<\xf0\x9f\x98\x80@b> SMTPUTF8", true, true);
    mail_ok("FROM:<\xc2\xa0@b> SMTPUTF8", true, true);
    mail_ok("FROM:<a@\xf4\x8f\xbf\xbf> SMTPUTF8", true, true);
}

static void test_invalid_utf8(void **state)
{
    static const char *bad[] = {
        "\xc0\xaf",             /* overlong '/' */
        "\xc1\xbf",             /* overlong */
        "\xe0\x80\xaf",         /* overlong, 3 bytes */
        "\xe0\x9f\xbf",         /* overlong U+07FF */
        "\xf0\x80\x80\xaf",     /* overlong, 4 bytes */
        "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
        "\xed\xa0\x80",         /* U+D800 surrogate */
        "\xed\xbf\xbf",         /* U+DFFF surrogate */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",     /* beyond */
        "\xff", "\xfe",
        "\x80",                 /* stray continuation */
        "a\xbf",
        "\xc3",                 /* truncated */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3\x28",             /* bad continuation */
        "\xe2\x28\xa1",
        "\xc2\x80",             /* C1 control U+0080 */
        "\xc2\x9f",             /* C1 control U+009F */
    };
    char arg[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(arg, sizeof(arg), "FROM:<%s@b> SMTPUTF8", bad[i]);
        mail_bad(arg, true, true, 501, "5.1.7",
                 "Bad sender address syntax: invalid UTF-8");
        snprintf(arg, sizeof(arg), "TO:<a@x%s>", bad[i]);
        rcpt_bad(arg, true, true, 501, "5.1.3",
                 "Bad recipient address syntax: invalid UTF-8");
        snprintf(arg, sizeof(arg), "TO:<\"%s\"@b>", bad[i]);
        rcpt_bad(arg, true, true, 501, "5.1.3", NULL);
        snprintf(arg, sizeof(arg), "%s@b", bad[i]);
        mailbox_bad(arg, true, "invalid UTF-8");
    }
    /* truncated at the very end of the address text */
    mailbox_bad("a@b\xc3", true, "invalid UTF-8");
    mailbox_bad("a@b\xf0\x9f", true, "invalid UTF-8");
}

static void test_mail_dsn(void **state)
{
    struct smtp_mail_args m =
        mail_ok("FROM:<a@b> RET=FULL ENVID=QQ314159", true, false);
    assert_int_equal(m.ret, DSN_RET_FULL);
    assert_string_equal(m.envid, "QQ314159");
    m = mail_ok("FROM:<a@b> ret=hdrs envid=a+2Bb+3Dc+20d", true, false);
    assert_int_equal(m.ret, DSN_RET_HDRS);
    assert_string_equal(m.envid, "a+b=c d");

    char arg[400], v[300];
    snprintf(arg, sizeof(arg), "FROM:<a@b> ENVID=%s", rep(v, 'e', 100));
    assert_int_equal(strlen(mail_ok(arg, true, false).envid), 100);
    snprintf(arg, sizeof(arg), "FROM:<a@b> ENVID=%s", rep(v, 'e', 101));
    mail_bad(arg, true, false, 501, "5.5.4", "ENVID too long");
    /* the limit is on the decoded value */
    char enc[400] = "FROM:<a@b> ENVID=";
    for (int i = 0; i < 100; i++)
        strcat(enc, "+2B");
    assert_string_equal(mail_ok(enc, true, false).envid, rep(v, '+', 100));
    static const char *bad[] = {
        "FROM:<a@b> ENVID=", "FROM:<a@b> ENVID", "FROM:<a@b> ENVID=a+",
        "FROM:<a@b> ENVID=a+2", "FROM:<a@b> ENVID=a+GG",
        "FROM:<a@b> ENVID=a+00b", "FROM:<a@b> ENVID=a+0D+0Ab",
        "FROM:<a@b> ENVID=a+7F", "FROM:<a@b> ENVID=a+C3+A9",
        "FROM:<a@b> ENVID=a=b", "FROM:<a@b> ENVID=\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        mail_bad(bad[i], true, true, 501, "5.5.4", "Invalid ENVID value");
    mail_bad("FROM:<a@b> RET=", true, false, 501, "5.5.4", "Invalid RET value");
    mail_bad("FROM:<a@b> RET", true, false, 501, "5.5.4", "Invalid RET value");
    mail_bad("FROM:<a@b> RET=FULL RET=HDRS", true, false, 501, "5.5.4",
             "Duplicate parameter RET");
    mail_bad("FROM:<a@b> ENVID=x ENVID=y", true, false, 501, "5.5.4",
             "Duplicate parameter ENVID");
}

static void test_mail_auth(void **state)
{
    struct smtp_mail_args m = mail_ok("FROM:<a@b> AUTH=<>", true, false);
    assert_true(m.has_auth);
    m = mail_ok("FROM:<a@b> AUTH=e+3Dmc2@example.com SIZE=5", true, false);
    assert_true(m.has_auth);
    assert_true(m.size == 5);
    mail_bad("FROM:<a@b> AUTH=", true, false, 501, "5.5.4",
             "Invalid AUTH value");
    mail_bad("FROM:<a@b> AUTH", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> AUTH=a+0Ab", true, false, 501, "5.5.4", NULL);
    mail_bad("FROM:<a@b> AUTH=<> AUTH=<>", true, false, 501, "5.5.4",
             "Duplicate parameter AUTH");
    mail_bad("FROM:<a@b> AUTH=<>", false, false, 555, "5.5.4", NULL);
}

/* ---- RCPT TO ----------------------------------------------------------- */

static void test_rcpt_basic(void **state)
{
    struct smtp_rcpt_args r = rcpt_ok("TO:<joe@example.com>", false, false);
    assert_string_equal(r.address, "joe@example.com");
    assert_int_equal(r.notify, 0);
    assert_false(r.has_orcpt);
    assert_string_equal(r.orcpt, "");
    assert_string_equal(rcpt_ok("to: <a@b>  ", false, false).address, "a@b");
    assert_string_equal(rcpt_ok("To:<@x,@y:a@b>", false, false).address, "a@b");

    rcpt_bad("", true, false, 501, "5.5.4", "Syntax: RCPT TO:<address>");
    rcpt_bad("<a@b>", true, false, 501, "5.5.4", "Syntax: RCPT TO:");
    rcpt_bad("FROM:<a@b>", true, false, 501, "5.5.4", NULL);
    rcpt_bad("TO:<>", true, false, 501, "5.1.3",
             "Bad recipient address syntax: empty address");
    rcpt_bad("TO:a@b", true, false, 501, "5.1.3", "Bad recipient address");
    rcpt_bad("TO:<a@b", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<a@b c>", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<a@@b>", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<@b>", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<a@-b>", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<user>", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<a@b>x", true, false, 501, "5.5.4", NULL);
    rcpt_bad("TO:  <a@b>", true, false, 501, "5.1.3", NULL);

    char arg[200], local[80];
    snprintf(arg, sizeof(arg), "TO:<%s@b>", rep(local, 'y', 65));
    rcpt_bad(arg, true, false, 553, "5.1.3", "Recipient local part too long");
}

static void test_rcpt_postmaster(void **state)
{
    assert_string_equal(rcpt_ok("TO:<postmaster>", false, false).address,
                        "postmaster");
    assert_string_equal(rcpt_ok("TO:<PostMaster>", false, false).address,
                        "postmaster");
    assert_string_equal(
        rcpt_ok("TO:<POSTMASTER> NOTIFY=NEVER", true, false).address,
        "postmaster");
    assert_string_equal(rcpt_ok("TO:<Postmaster@Example.com>", false,
                                false).address, "Postmaster@Example.com");
    rcpt_bad("TO:<postmasterx>", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<postmaster", true, false, 501, "5.1.3", NULL);
    rcpt_bad("TO:<@a:postmaster>", true, false, 501, "5.1.3", NULL);
}

static void test_rcpt_notify(void **state)
{
    struct smtp_rcpt_args r =
        rcpt_ok("TO:<a@b> NOTIFY=SUCCESS,FAILURE", true, false);
    assert_int_equal(r.notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE);
    r = rcpt_ok("TO:<a@b> notify=never", true, false);
    assert_int_equal(r.notify, DSN_NOTIFY_NEVER);
    r = rcpt_ok("TO:<a@b> NOTIFY=delay,Failure,SUCCESS", true, false);
    assert_int_equal(r.notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE |
                                   DSN_NOTIFY_DELAY);
    r = rcpt_ok("TO:<a@b> NOTIFY=DELAY", true, false);
    assert_int_equal(r.notify, DSN_NOTIFY_DELAY);

    rcpt_bad("TO:<a@b> NOTIFY=NEVER,SUCCESS", true, false, 501, "5.5.4",
             "NOTIFY=NEVER cannot be combined");
    rcpt_bad("TO:<a@b> NOTIFY=FAILURE,NEVER", true, false, 501, "5.5.4", NULL);
    static const char *bad[] = {
        "TO:<a@b> NOTIFY=", "TO:<a@b> NOTIFY", "TO:<a@b> NOTIFY=ALWAYS",
        "TO:<a@b> NOTIFY=SUCCESS,", "TO:<a@b> NOTIFY=,SUCCESS",
        "TO:<a@b> NOTIFY=SUCCESS,,DELAY", "TO:<a@b> NOTIFY=SUCCESSFAILURE",
        "TO:<a@b> NOTIFY=SUCCES", "TO:<a@b> NOTIFY=SUCCESS;FAILURE",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        rcpt_bad(bad[i], true, false, 501, "5.5.4", "Invalid NOTIFY value");
    rcpt_bad("TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", true, false, 501, "5.5.4",
             "Duplicate parameter NOTIFY");
    rcpt_bad("TO:<a@b> NOTIFY=NEVER", false, false, 555, "5.5.4", NULL);
}

static void test_rcpt_orcpt(void **state)
{
    struct smtp_rcpt_args r =
        rcpt_ok("TO:<a@b> NOTIFY=SUCCESS ORCPT=rfc822;a@b", true, false);
    assert_true(r.has_orcpt);
    assert_string_equal(r.orcpt, "rfc822;a@b");
    r = rcpt_ok("TO:<a@b> orcpt=RFC822;joe+2Btag@x+3Dy.org", true, false);
    assert_string_equal(r.orcpt, "RFC822;joe+tag@x=y.org");
    r = rcpt_ok("TO:<a@b> ORCPT=rfc822;+22a+20b+22@x", true, false);
    assert_string_equal(r.orcpt, "rfc822;\"a b\"@x");
    /* RFC 6533 utf-8-addr-xtext: the \x{..} escapes stay as text */
    r = rcpt_ok("TO:<a@b> ORCPT=utf-8;\\x{E9}@x", true, false);
    assert_string_equal(r.orcpt, "utf-8;\\x{E9}@x");
    /* unitext: raw UTF-8 only for type utf-8 in an SMTPUTF8 transaction */
    r = rcpt_ok("TO:<a@b> ORCPT=utf-8;\xc3\xa9@x", true, true);
    assert_string_equal(r.orcpt, "utf-8;\xc3\xa9@x");
    r = rcpt_ok("TO:<a@b> ORCPT=UTF-8;+C3+A9@x", true, true);
    assert_string_equal(r.orcpt, "UTF-8;\xc3\xa9@x");
    rcpt_bad("TO:<a@b> ORCPT=utf-8;+C3@x", true, true, 501, "5.5.4", NULL);
    rcpt_bad("TO:<a@b> ORCPT=utf-8;\xc3\xa9@x", true, false, 501, "5.5.4",
             "Invalid ORCPT value");
    rcpt_bad("TO:<a@b> ORCPT=rfc822;\xc3\xa9@x", true, true, 501, "5.5.4",
             NULL);
    rcpt_bad("TO:<a@b> ORCPT=rfc822;+C3+A9@x", true, true, 501, "5.5.4",
             NULL);
    static const char *bad[] = {
        "TO:<a@b> ORCPT=", "TO:<a@b> ORCPT", "TO:<a@b> ORCPT=rfc822",
        "TO:<a@b> ORCPT=rfc822;", "TO:<a@b> ORCPT=;a@b",
        "TO:<a@b> ORCPT=rfc 822;a@b", "TO:<a@b> ORCPT=rf(c;a@b",
        "TO:<a@b> ORCPT=rfc822;a+0D+0AX-Injected:+20y",
        "TO:<a@b> ORCPT=rfc822;a+00b", "TO:<a@b> ORCPT=rfc822;a+zzb",
        "TO:<a@b> ORCPT=rfc822;a+4", "TO:<a@b> ORCPT=rfc822;a=b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        rcpt_bad(bad[i], true, false, 501, "5.5.4", "Invalid ORCPT value");
    rcpt_bad("TO:<a@b> ORCPT=rfc822;a@b ORCPT=rfc822;c@d", true, false, 501,
             "5.5.4", "Duplicate parameter ORCPT");
    /* at most 500 octets as "type;address" */
    char arg[700], v[600];
    snprintf(arg, sizeof(arg), "TO:<a@b> ORCPT=rfc822;%s", rep(v, 'o', 493));
    assert_int_equal(strlen(rcpt_ok(arg, true, false).orcpt), 500);
    snprintf(arg, sizeof(arg), "TO:<a@b> ORCPT=rfc822;%s", rep(v, 'o', 494));
    rcpt_bad(arg, true, false, 501, "5.5.4", "Invalid ORCPT value");
}

static void test_rcpt_params_rules(void **state)
{
    rcpt_bad("TO:<a@b> SIZE=1", true, false, 555, "5.5.4",
             "Unsupported parameter SIZE");
    rcpt_bad("TO:<a@b> FOO", true, false, 555, "5.5.4",
             "Unsupported parameter FOO");
    rcpt_bad("TO:<a@b> ORCPT=rfc822;a@b", false, false, 555, "5.5.4", NULL);
    rcpt_bad("TO:<a@b> =x", true, false, 501, "5.5.4", NULL);
    struct smtp_rcpt_args r =
        rcpt_ok("TO:<a@b>   orcpt=rfc822;a@b    notify=failure  ", true, false);
    assert_int_equal(r.notify, DSN_NOTIFY_FAILURE);
    assert_string_equal(r.orcpt, "rfc822;a@b");
}

static void test_rcpt_smtputf8(void **state)
{
    /* user@example.ad in Chinese */
    const char *addr = "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90."
                       "\xe5\xb9\xbf\xe5\x91\x8a";
    char arg[64];
    snprintf(arg, sizeof(arg), "TO:<%s>", addr);
    struct smtp_rcpt_args r = rcpt_ok(arg, true, true);
    assert_string_equal(r.address, addr);
    rcpt_bad("TO:<\xe7\x94\xa8\xe6\x88\xb7@b>", true, false, 553, "5.6.7",
             "UTF-8 address needs SMTPUTF8");
    rcpt_bad("TO:<a@\xc3\xa9>", false, false, 553, "5.6.7", NULL);
    /* the UTF-8 check runs after the syntax */
    rcpt_bad("TO:<\xc3\xa9@b", true, false, 501, "5.1.3", NULL);
}

/* ---- BDAT -------------------------------------------------------------- */

static void test_bdat(void **state)
{
    uint64_t size = 7;
    bool last = true;
    struct smtp_error e;

    assert_true(smtp_parse_bdat("12345", &size, &last, &e));
    assert_true(size == 12345);
    assert_false(last);
    assert_true(smtp_parse_bdat("0 LAST", &size, &last, &e));
    assert_true(size == 0);
    assert_true(last);
    assert_true(smtp_parse_bdat("1000 last  ", &size, &last, &e));
    assert_true(size == 1000 && last);
    assert_true(smtp_parse_bdat("7   Last", &size, &last, &e));
    assert_true(size == 7 && last);
    assert_true(smtp_parse_bdat("12 ", &size, &last, &e));
    assert_true(size == 12 && !last);
    assert_true(smtp_parse_bdat("18446744073709551615", &size, &last, &e));
    assert_true(size == UINT64_MAX);
    assert_true(smtp_parse_bdat("000000000000000000000000042", &size, &last,
                                &e));
    assert_true(size == 42);

    static const char *bad[] = {
        "", " ", "LAST", "12 MORE", "12 LAST x", "12 LASTX", "12LAST",
        "-1", "+1", "1x", "0x10", " 12", "12\t", "12 LAST LAST", "1 2",
        "18446744073709551616", "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size = 7;
        last = true;
        if (smtp_parse_bdat(bad[i], &size, &last, &e))
            fail_msg("BDAT \"%s\" accepted", bad[i]);
        assert_int_equal(e.code, 501);
        assert_string_equal(e.enhanced, "5.5.4");
        assert_true(size == 0 && !last);
    }
    assert_false(smtp_parse_bdat("", &size, &last, &e));
    assert_string_equal(e.text, "Syntax: BDAT chunk-size [LAST]");
}

/* ---- EHLO / HELO ------------------------------------------------------- */

static void test_helo(void **state)
{
    char out[256];
    struct smtp_error e;

    assert_true(smtp_parse_helo("mail.example.com", out, sizeof(out), &e));
    assert_string_equal(out, "mail.example.com");
    assert_true(smtp_parse_helo("[192.0.2.1]  ", out, sizeof(out), &e));
    assert_string_equal(out, "[192.0.2.1]");
    assert_true(smtp_parse_helo("[IPv6:2001:db8::1]", out, sizeof(out), &e));
    assert_string_equal(out, "[IPv6:2001:db8::1]");
    /* lenient: any printable token */
    assert_true(smtp_parse_helo("my_pc!", out, sizeof(out), &e));
    assert_string_equal(out, "my_pc!");
    assert_true(smtp_parse_helo("  x\t", out, sizeof(out), &e));
    assert_string_equal(out, "x");

    char arg[400];
    rep(arg, 'h', 255);
    assert_true(smtp_parse_helo(arg, out, sizeof(out), &e));
    assert_int_equal(strlen(out), 255);
    rep(arg, 'h', 256);
    assert_false(smtp_parse_helo(arg, out, sizeof(out), &e));
    assert_int_equal(e.code, 501);
    assert_string_equal(out, "");
    /* a small out buffer */
    char small[8];
    assert_true(smtp_parse_helo("1234567", small, sizeof(small), &e));
    assert_false(smtp_parse_helo("12345678", small, sizeof(small), &e));
    assert_string_equal(small, "");

    static const char *bad[] = {"", "   ", "a b", "a\tb", "a\x01", "\x7f",
                                "h\xc3\xa9llo", "x\r", "a  b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(out, "junk");
        if (smtp_parse_helo(bad[i], out, sizeof(out), &e))
            fail_msg("HELO \"%s\" accepted", bad[i]);
        assert_int_equal(e.code, 501);
        assert_string_equal(e.enhanced, "5.5.4");
        assert_string_equal(out, "");
    }
}

/* ---- mailboxes --------------------------------------------------------- */

static void test_valid_mailbox(void **state)
{
    mailbox_good("a@b", false);
    mailbox_good("first.last@sub.example.co.uk", false);
    mailbox_good("\"quoted string\"@example.com", false);
    mailbox_good("\"\\\"\"@example.com", false);
    mailbox_good("a@[127.0.0.1]", false);
    mailbox_good("a@[IPv6:::1]", false);
    mailbox_good("a@[IPv6:2001:db8:0:0:0:0:2:1]", false);
    mailbox_good("a@[IPv6:::ffff:10.0.0.1]", false);
    mailbox_good("a@[000.010.255.1]", false);
    mailbox_good("a@[x400:c=us;a=x]", false);
    mailbox_good("\xc3\xa9@\xc3\xa9.fr", true);
    mailbox_good("a@b", true);

    mailbox_bad("", false, "empty local part");
    mailbox_bad("@b", false, "empty local part");
    mailbox_bad("a", false, "missing @domain");
    mailbox_bad("a@", false, "missing domain");
    mailbox_bad("a@b@c", false, "bad domain");
    mailbox_bad("a@b c", false, "bad domain");
    mailbox_bad("a b@c", false, "bad character in local part");
    mailbox_bad("<a@b>", false, NULL);
    mailbox_bad("a@b>", false, NULL);
    mailbox_bad(".a@b", false, "misplaced dot in local part");
    mailbox_bad("a.@b", false, "misplaced dot in local part");
    mailbox_bad("a..b@c", false, "misplaced dot in local part");
    mailbox_bad("a@-b", false, "bad domain");
    mailbox_bad("a@b-", false, "bad domain");
    mailbox_bad("a@b.-c", false, "bad domain");
    mailbox_bad("a@b.c-", false, "bad domain");
    mailbox_bad("a@b..c", false, "bad domain");
    mailbox_bad("a@b.c.", false, "bad domain");
    mailbox_bad("\"a@b", false, "bad quoted local part");
    mailbox_bad("\"a\\\"@b", false, "bad quoted local part");
    mailbox_bad("\"\"@b", false, "empty local part");
    mailbox_bad("a@[1.2.3.4", false, "bad address literal");
    mailbox_bad("a@[1.2.3.04444]", false, "bad address literal");
    mailbox_bad("a@[IPv6:::1:]", false, "bad address literal");
    mailbox_bad("a@[IPv6:12345::]", false, "bad address literal");
    mailbox_bad("a@[IPv6:1:2:3:4:5:6:7:8:9]", false, "bad address literal");
    mailbox_bad("a@[1.2.3.4]x", false, "bad domain");
    mailbox_bad("\xc3\xa9@b", false, "UTF-8 not allowed");
    mailbox_bad("a@b.\xc3\xa9", false, "UTF-8 not allowed");
    mailbox_bad("postmaster", false, "missing @domain");

    char buf[400];
    char *p = rep(buf, 'l', 65);
    strcat(p, "@b");
    mailbox_bad(buf, false, "local part too long");
    /* labels of exactly 63 are fine; 64 too long */
    rep(buf, 'l', 2);
    buf[1] = '@';
    rep(buf + 2, 'd', 63);
    mailbox_good(buf, false);
    rep(buf + 2, 'd', 64);
    mailbox_bad(buf, false, "domain label too long");
    /* 255 octets */
    rep(buf, 'x', 255);
    buf[60] = '@';
    for (int i = 100; i < 255; i += 50)
        buf[i] = '.';
    mailbox_bad(buf, false, "address too long");
    buf[254] = '\0';
    mailbox_good(buf, false);

    /* why may be NULL */
    assert_false(smtp_valid_mailbox("x", false, NULL));
    assert_true(smtp_valid_mailbox("x@y", false, NULL));
}

/* ---- xtext ------------------------------------------------------------- */

static void test_xtext(void **state)
{
    char out[32];

    assert_true(smtp_xtext_decode("abc", 3, out, sizeof(out)));
    assert_string_equal(out, "abc");
    assert_true(smtp_xtext_decode("+2B", 3, out, sizeof(out)));
    assert_string_equal(out, "+");
    assert_true(smtp_xtext_decode("a+3Db+2bc", 9, out, sizeof(out)));
    assert_string_equal(out, "a=b+c");
    assert_true(smtp_xtext_decode("+20+7E!~", 8, out, sizeof(out)));
    assert_string_equal(out, " ~!~");
    assert_true(smtp_xtext_decode("", 0, out, sizeof(out)));
    assert_string_equal(out, "");
    /* len is honoured, not the NUL */
    assert_true(smtp_xtext_decode("abcdef", 2, out, sizeof(out)));
    assert_string_equal(out, "ab");
    /* control bytes may be escaped (callers check what they need) */
    assert_true(smtp_xtext_decode("+0D+0A", 6, out, sizeof(out)));
    assert_string_equal(out, "\r\n");
    assert_true(smtp_xtext_decode("+FF", 3, out, sizeof(out)));
    assert_string_equal(out, "\xff");

    static const char *bad[] = {"+", "+2", "a+", "+G0", "+0G", "+ 20",
                                "a b", "a=b", "+00", "\x7f", "\x01",
                                "\xc3\xa9", "a\tb", "+-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(out, "junk");
        if (smtp_xtext_decode(bad[i], strlen(bad[i]), out, sizeof(out)))
            fail_msg("xtext \"%s\" accepted", bad[i]);
        assert_string_equal(out, "");
    }
    /* embedded NUL within len */
    assert_false(smtp_xtext_decode("a\0b", 3, out, sizeof(out)));
    /* escape cut by len */
    assert_false(smtp_xtext_decode("a+2B", 3, out, sizeof(out)));
    /* output size: result plus NUL must fit */
    char four[4];
    assert_true(smtp_xtext_decode("abc", 3, four, sizeof(four)));
    assert_string_equal(four, "abc");
    assert_false(smtp_xtext_decode("abcd", 4, four, sizeof(four)));
    assert_string_equal(four, "");
    assert_true(smtp_xtext_decode("+2B+2B+2B", 9, four, sizeof(four)));
    assert_string_equal(four, "+++");
    assert_false(smtp_xtext_decode("a", 1, four, 0));
    assert_false(smtp_xtext_decode("", 0, four, 0));
}

/* ---- errors ------------------------------------------------------------ */

/* Every refusal text is non-empty printable ASCII; structs can be copied. */
static void test_error_text(void **state)
{
    static const char *mails[] = {
        "FROM:<a\x01@b>", "FROM:<a@b> \x01=1", "FROM:<a@b> SIZE=\r\n",
        "FROM:<a@b> ENVID=+0D+0A", "x",
    };
    for (size_t i = 0; i < sizeof(mails) / sizeof(mails[0]); i++) {
        struct smtp_mail_args m;
        struct smtp_error e, copy;
        assert_false(smtp_parse_mail(mails[i], true, true, &m, &e));
        copy = e;
        memset(&e, 'Z', sizeof(e));
        assert_true(copy.text[0] != '\0');
        for (const char *p = copy.text; *p; p++)
            assert_true(*p >= 32 && *p < 127);
        assert_true(copy.code >= 500 && copy.code < 600);
        assert_int_equal(copy.enhanced[0], '5');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),
        cmocka_unit_test(test_verb_argument),
        cmocka_unit_test(test_verb_refused),
        cmocka_unit_test(test_mail_basic),
        cmocka_unit_test(test_mail_null_sender),
        cmocka_unit_test(test_mail_syntax),
        cmocka_unit_test(test_mail_reasons),
        cmocka_unit_test(test_mail_lengths),
        cmocka_unit_test(test_mail_source_route),
        cmocka_unit_test(test_canonical_form),
        cmocka_unit_test(test_mail_size_body),
        cmocka_unit_test(test_mail_params_rules),
        cmocka_unit_test(test_mail_smtputf8),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_mail_dsn),
        cmocka_unit_test(test_mail_auth),
        cmocka_unit_test(test_rcpt_basic),
        cmocka_unit_test(test_rcpt_postmaster),
        cmocka_unit_test(test_rcpt_notify),
        cmocka_unit_test(test_rcpt_orcpt),
        cmocka_unit_test(test_rcpt_params_rules),
        cmocka_unit_test(test_rcpt_smtputf8),
        cmocka_unit_test(test_bdat),
        cmocka_unit_test(test_helo),
        cmocka_unit_test(test_valid_mailbox),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_error_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
