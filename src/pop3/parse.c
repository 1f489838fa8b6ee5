/* parse.c — POP3 command-line parsing: keyword, arguments, numbers. */
#include "pop3/parse.h"

#include <ctype.h>
#include <string.h>

enum pop3_parse_status pop3_parse_line(char *line, size_t len,
                                       struct pop3_cmdline *out)
{
    memset(out, 0, sizeof(*out));
    out->rest = "";
    if (memchr(line, '\0', len))
        return POP3_PARSE_NUL;
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = '\0';
    size_t kw = 0;
    while (kw < len && line[kw] != ' ')
        kw++;
    if (kw == 0)
        return POP3_PARSE_EMPTY;
    if (kw > POP3_KEYWORD_MAX)
        return POP3_PARSE_BAD_KEYWORD;
    for (size_t i = 0; i < kw; i++) {
        if (!isalnum((unsigned char)line[i]) || (unsigned char)line[i] > 0x7f)
            return POP3_PARSE_BAD_KEYWORD;
        out->keyword[i] = (char)toupper((unsigned char)line[i]);
    }
    if (kw == len)
        return POP3_PARSE_OK;
    out->rest = line + kw + 1;
    size_t n = strlen(out->rest);
    if (n >= sizeof(out->buf))
        return POP3_PARSE_TOO_MANY;
    memcpy(out->buf, out->rest, n + 1);
    char *save = NULL;
    for (char *tok = strtok_r(out->buf, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        if (out->argc == POP3_MAX_ARGS)
            return POP3_PARSE_TOO_MANY;
        out->argv[out->argc++] = tok;
    }
    return POP3_PARSE_OK;
}

static bool parse_decimal(const char *arg, unsigned long *out)
{
    size_t n = strlen(arg);
    if (n == 0 || n > 10 || strspn(arg, "0123456789") != n)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned long)(arg[i] - '0');
    *out = v;
    return true;
}

bool pop3_parse_msgnum(const char *arg, size_t max, size_t *out)
{
    unsigned long v;
    if (!parse_decimal(arg, &v) || v == 0 || v > max)
        return false;
    *out = v;
    return true;
}

bool pop3_parse_count(const char *arg, unsigned long *out)
{
    return parse_decimal(arg, out);
}
