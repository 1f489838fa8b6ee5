/* json.c — writing the result line: keys, escaped strings, numbers, nested
 * objects and arrays into a fixed buffer, printed with one fflush. */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void out(struct lg_json *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out(struct lg_json *j, const char *fmt, ...)
{
    if (j->len >= sizeof(j->buf))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof(j->buf) - j->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        j->len += (size_t)n;
    if (j->len > sizeof(j->buf) - 1)
        j->len = sizeof(j->buf) - 1;
}

static void escaped(struct lg_json *j, const char *s)
{
    out(j, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out(j, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            out(j, "\\u%04x", c);
        else
            out(j, "%c", c);
    }
    out(j, "\"");
}

static void key(struct lg_json *j, const char *k)
{
    if (!j->first)
        out(j, ",");
    j->first = 0;
    if (k != NULL) {
        escaped(j, k);
        out(j, ":");
    }
}

void lg_json_begin(struct lg_json *j)
{
    j->len = 0;
    j->first = 1;
    out(j, "{");
}

void lg_json_str(struct lg_json *j, const char *k, const char *val)
{
    key(j, k);
    escaped(j, val);
}

void lg_json_bool(struct lg_json *j, const char *k, int val)
{
    key(j, k);
    out(j, "%s", val ? "true" : "false");
}

void lg_json_u64(struct lg_json *j, const char *k, uint64_t val)
{
    key(j, k);
    out(j, "%llu", (unsigned long long)val);
}

void lg_json_num(struct lg_json *j, const char *k, double val, int decimals)
{
    key(j, k);
    out(j, "%.*f", decimals, isfinite(val) ? val : 0.0);
}

void lg_json_open(struct lg_json *j, const char *k, char bracket)
{
    key(j, k);
    out(j, "%c", bracket);
    j->first = 1;
}

void lg_json_close(struct lg_json *j, char bracket)
{
    out(j, "%c", bracket);
    j->first = 0;
}

void lg_json_item(struct lg_json *j, const char *val)
{
    key(j, NULL);
    escaped(j, val);
}

void lg_json_print(struct lg_json *j)
{
    out(j, "}");
    fwrite(j->buf, 1, j->len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}
