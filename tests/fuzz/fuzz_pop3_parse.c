/* fuzz_pop3_parse.c — libFuzzer harness for pop3/parse: feeds the input as
 * one command line (cut at 255 bytes) to pop3_parse_line(), then every
 * argument to pop3_parse_msgnum() and pop3_parse_count(), and abort()s when
 * an invariant of parse.h breaks. Numbers are checked against a plain
 * reference decoder written here. Built and run by tools/fuzz.sh. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/parse.h"

#define LINE_MAX_LEN 255
#define MSGNUM_MAX 1000

static void require(bool ok)
{
    if (!ok)
        abort();
}

/* The keyword is 0..8 uppercase ASCII letters or digits, NUL-terminated (a failed
 * parse may leave a prefix of it). */
static void check_keyword(const struct pop3_cmdline *cmd,
                          enum pop3_parse_status st)
{
    size_t n = strnlen(cmd->keyword, sizeof(cmd->keyword));
    require(n <= POP3_KEYWORD_MAX);
    for (size_t i = 0; i < n; i++)
        require((cmd->keyword[i] >= 'A' && cmd->keyword[i] <= 'Z') ||
                (cmd->keyword[i] >= '0' && cmd->keyword[i] <= '9'));
    if (st == POP3_PARSE_OK)
        require(n >= 1);
}

/* Every argv is a non-empty, space-free string inside cmd->buf. */
static void check_args(const struct pop3_cmdline *cmd)
{
    const char *lo = cmd->buf, *hi = cmd->buf + sizeof(cmd->buf);
    require(cmd->argc <= POP3_MAX_ARGS);
    for (unsigned i = 0; i < cmd->argc; i++) {
        const char *a = cmd->argv[i];
        require(a >= lo && a < hi);
        size_t n = strnlen(a, (size_t)(hi - a));
        require(n > 0 && a + n < hi);
        require(memchr(a, ' ', n) == NULL);
    }
}

/* The arguments are exactly the space-separated words of rest. */
static void check_rest_matches_args(const struct pop3_cmdline *cmd)
{
    const char *p = cmd->rest;
    unsigned i = 0;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        size_t n = strcspn(p, " ");
        require(i < cmd->argc);
        require(strlen(cmd->argv[i]) == n && memcmp(cmd->argv[i], p, n) == 0);
        i++;
        p += n;
    }
    require(i == cmd->argc);
}

/* Reference: 1..10 ASCII digits, nothing else. */
static bool ref_decimal(const char *s, unsigned long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 10)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    *out = v;
    return true;
}

static void check_numbers(const char *arg)
{
    size_t msg = 0;
    unsigned long cnt = 0, ref = 0;
    bool ref_ok = ref_decimal(arg, &ref);
    bool msg_ok = pop3_parse_msgnum(arg, MSGNUM_MAX, &msg);

    require(msg_ok == (ref_ok && ref >= 1 && ref <= MSGNUM_MAX));
    if (msg_ok)
        require(msg == ref && msg >= 1 && msg <= MSGNUM_MAX);
    bool cnt_ok = pop3_parse_count(arg, &cnt);
    require(cnt_ok == ref_ok);
    if (cnt_ok)
        require(cnt == ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[LINE_MAX_LEN + 1];
    struct pop3_cmdline cmd;
    size_t len = size < LINE_MAX_LEN ? size : LINE_MAX_LEN;

    memcpy(line, data, len);
    line[len] = '\0';
    enum pop3_parse_status st = pop3_parse_line(line, len, &cmd);
    require(st == POP3_PARSE_OK || st == POP3_PARSE_EMPTY ||
            st == POP3_PARSE_NUL || st == POP3_PARSE_BAD_KEYWORD ||
            st == POP3_PARSE_TOO_MANY);
    require(cmd.rest != NULL);
    check_keyword(&cmd, st);
    check_args(&cmd);
    for (unsigned i = 0; i < cmd.argc; i++)
        check_numbers(cmd.argv[i]);
    if (st == POP3_PARSE_OK)
        check_rest_matches_args(&cmd);
    return 0;
}
