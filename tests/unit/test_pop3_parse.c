/* test_pop3_parse.c — unit tests for pop3/parse: how a POP3 command line
 * splits into keyword, arguments and rest (RFC 1939 section 3), and which
 * message numbers and TOP line counts are accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/parse.h"

/* Parses text (copied into a 256-byte line buffer, like the session does)
 * and returns the status; the parsed result stays valid in *cmd while
 * line does. */
static enum pop3_parse_status parse(const char *text, size_t len,
                                    char line[256], struct pop3_cmdline *cmd)
{
    assert_true(len < 256);
    memcpy(line, text, len);
    line[len] = '\0';
    return pop3_parse_line(line, len, cmd);
}

static enum pop3_parse_status parse_str(const char *text, char line[256],
                                        struct pop3_cmdline *cmd)
{
    return parse(text, strlen(text), line, cmd);
}

static void test_keyword_uppercased(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("uidl", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.keyword, "UIDL");
    assert_int_equal(cmd.argc, 0);
    assert_string_equal(cmd.rest, "");
    assert_int_equal(parse_str("ReTr 7", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.keyword, "RETR");
    assert_int_equal(cmd.argc, 1);
    assert_string_equal(cmd.argv[0], "7");
}

static void test_arguments(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("TOP 3 10", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.keyword, "TOP");
    assert_int_equal(cmd.argc, 2);
    assert_string_equal(cmd.argv[0], "3");
    assert_string_equal(cmd.argv[1], "10");
    assert_string_equal(cmd.rest, "3 10");
    /* argv lives in cmd.buf, not in the line */
    assert_true(cmd.argv[0] >= cmd.buf &&
                cmd.argv[0] < cmd.buf + sizeof(cmd.buf));
}

static void test_rest_keeps_spaces_for_pass(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("PASS my  secret pass", line, &cmd),
                     POP3_PARSE_OK);
    assert_string_equal(cmd.keyword, "PASS");
    assert_string_equal(cmd.rest, "my  secret pass");
    assert_int_equal(cmd.argc, 3);
    assert_string_equal(cmd.argv[0], "my");
    assert_string_equal(cmd.argv[1], "secret");
    assert_string_equal(cmd.argv[2], "pass");
    /* only the one separating space is dropped */
    assert_int_equal(parse_str("PASS  lead", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.rest, " lead");
    assert_int_equal(cmd.argc, 1);
    assert_string_equal(cmd.argv[0], "lead");
}

static void test_trailing_blanks_cut(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("RETR 1 \t  ", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.rest, "1");
    assert_int_equal(cmd.argc, 1);
    assert_string_equal(cmd.argv[0], "1");
    assert_string_equal(line, "RETR 1");        /* cut in place */
    assert_int_equal(parse_str("STAT ", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.keyword, "STAT");
    assert_int_equal(cmd.argc, 0);
    assert_string_equal(cmd.rest, "");
}

static void test_empty_and_blank(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("", line, &cmd), POP3_PARSE_EMPTY);
    assert_int_equal(parse_str("   ", line, &cmd), POP3_PARSE_EMPTY);
    assert_int_equal(parse_str(" \t ", line, &cmd), POP3_PARSE_EMPTY);
    assert_int_equal(cmd.argc, 0);
    assert_string_equal(cmd.keyword, "");
    assert_string_equal(cmd.rest, "");
    /* a command after a leading space is not a command */
    assert_int_not_equal(parse_str(" NOOP", line, &cmd), POP3_PARSE_OK);
}

static void test_nul_inside(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse("RETR\0 1", 7, line, &cmd), POP3_PARSE_NUL);
    assert_int_equal(parse("USER a\0", 7, line, &cmd), POP3_PARSE_NUL);
    assert_int_equal(parse("\0", 1, line, &cmd), POP3_PARSE_NUL);
    assert_int_equal(cmd.argc, 0);
}

static void test_bad_keywords(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("CAPABILI", line, &cmd), POP3_PARSE_OK);
    assert_string_equal(cmd.keyword, "CAPABILI");
    assert_int_equal(parse_str("CAPABILIT", line, &cmd),
                     POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(parse_str("STATISTICS 1", line, &cmd),
                     POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(parse_str("utf8", line, &cmd), POP3_PARSE_OK); /* RFC 6856 */
    assert_string_equal(cmd.keyword, "UTF8");
    assert_int_equal(parse_str("US-R a", line, &cmd), POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(parse_str("%n%s%x", line, &cmd), POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(parse_str("USER\ta", line, &cmd), POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(parse_str("R\xc9TR 1", line, &cmd),
                     POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(parse_str("\xff", line, &cmd), POP3_PARSE_BAD_KEYWORD);
    assert_int_equal(cmd.argc, 0);
}

static void test_too_many_args(void **state)
{
    char line[256];
    struct pop3_cmdline cmd;

    assert_int_equal(parse_str("NOOP a b c d", line, &cmd), POP3_PARSE_OK);
    assert_int_equal(cmd.argc, POP3_MAX_ARGS);
    assert_string_equal(cmd.argv[3], "d");
    assert_int_equal(parse_str("NOOP a b c d e", line, &cmd),
                     POP3_PARSE_TOO_MANY);
    assert_true(cmd.argc <= POP3_MAX_ARGS);
    /* blanks between arguments do not make arguments */
    assert_int_equal(parse_str("TOP  1   2 ", line, &cmd), POP3_PARSE_OK);
    assert_int_equal(cmd.argc, 2);
    assert_string_equal(cmd.argv[0], "1");
    assert_string_equal(cmd.argv[1], "2");
}

static void test_longest_line(void **state)
{
    char text[256], line[256];
    struct pop3_cmdline cmd;

    memcpy(text, "USER ", 5);
    memset(text + 5, 'x', 250);
    text[255] = '\0';
    assert_int_equal(parse(text, 255, line, &cmd), POP3_PARSE_OK);
    assert_int_equal(cmd.argc, 1);
    assert_int_equal(strlen(cmd.argv[0]), 250);
    assert_int_equal(strlen(cmd.rest), 250);
}

static bool msgnum(const char *arg, size_t max, size_t *out)
{
    *out = 12345;       /* must stay untouched on failure */
    return pop3_parse_msgnum(arg, max, out);
}

static void test_msgnum_accepts(void **state)
{
    size_t n;

    assert_true(msgnum("1", 10, &n));
    assert_int_equal(n, 1);
    assert_true(msgnum("10", 10, &n));
    assert_int_equal(n, 10);
    assert_true(msgnum("007", 10, &n));
    assert_int_equal(n, 7);
    assert_true(msgnum("0000000001", 10, &n));      /* 10 digits */
    assert_int_equal(n, 1);
}

static void test_msgnum_rejects(void **state)
{
    static const char *bad[] = {
        "0", "-1", "+1", "11", "", " 1", "1 ", "1x", "x1", "0x1", "1.0",
        "99999999999999999999", "00000000001",      /* 11 digits */
    };
    size_t n;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (msgnum(bad[i], 10, &n))
            fail_msg("msgnum accepted \"%s\" (max 10) as %zu", bad[i], n);
        assert_int_equal(n, 12345);
    }
    assert_false(msgnum("1", 0, &n));           /* empty maildrop */
}

static void test_msgnum_ten_digit_boundary(void **state)
{
    size_t n;

    assert_true(msgnum("9999999999", SIZE_MAX, &n));
    assert_true(n == (size_t)9999999999ULL);
    assert_false(msgnum("10000000000", SIZE_MAX, &n));
    assert_false(msgnum("9999999999", 9999999998ULL, &n));
    assert_true(msgnum("4294967296", SIZE_MAX, &n));     /* > 32 bits */
    assert_true(n == (size_t)4294967296ULL);
}

static void test_count(void **state)
{
    unsigned long c = 77;

    assert_true(pop3_parse_count("0", &c));
    assert_int_equal(c, 0);
    assert_true(pop3_parse_count("25", &c));
    assert_int_equal(c, 25);
    assert_true(pop3_parse_count("9999999999", &c));
    assert_true(c == 9999999999UL);
    c = 77;
    static const char *bad[] = {"", "-1", "+1", " 1", "1x", "1.5",
                                "10000000000", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pop3_parse_count(bad[i], &c))
            fail_msg("count accepted \"%s\" as %lu", bad[i], c);
        assert_int_equal(c, 77);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyword_uppercased),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_rest_keeps_spaces_for_pass),
        cmocka_unit_test(test_trailing_blanks_cut),
        cmocka_unit_test(test_empty_and_blank),
        cmocka_unit_test(test_nul_inside),
        cmocka_unit_test(test_bad_keywords),
        cmocka_unit_test(test_too_many_args),
        cmocka_unit_test(test_longest_line),
        cmocka_unit_test(test_msgnum_accepts),
        cmocka_unit_test(test_msgnum_rejects),
        cmocka_unit_test(test_msgnum_ten_digit_boundary),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
