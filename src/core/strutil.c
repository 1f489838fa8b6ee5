/* strutil.c — small string helpers shared by every layer. */
#include "core/strutil.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void str_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

void str_upper(char *s)
{
    for (; *s; s++)
        *s = (char)toupper((unsigned char)*s);
}

char *str_trim(char *s)
{
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    size_t lead = strspn(s, " \t\r\n");
    if (lead)
        memmove(s, s + lead, len - lead + 1);
    return s;
}

bool str_copy(char *out, size_t outsz, const char *in)
{
    if (outsz == 0)
        return false;
    size_t len = strlen(in);
    bool fits = len < outsz;
    if (!fits)
        len = outsz - 1;
    memcpy(out, in, len);
    out[len] = '\0';
    return fits;
}

static const char *log_escape(char *out, size_t outsz, const char *in, size_t len,
                              bool spaces)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        char tmp[8];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && (spaces || c != ' ')) {
            tmp[0] = (char)c;
            tmp[1] = '\0';
        } else
            snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        size_t tl = strlen(tmp);
        if (o + tl + 4 > outsz) {
            if (outsz >= 4) {
                memcpy(out + (o < outsz - 4 ? o : outsz - 4), "...", 4);
                return out;
            }
            break;
        }
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    if (outsz)
        out[o < outsz ? o : outsz - 1] = '\0';
    return out;
}

const char *str_log_safe(char *out, size_t outsz, const char *in, size_t len)
{
    return log_escape(out, outsz, in, len, false);
}

const char *str_log_quoted(char *out, size_t outsz, const char *in, size_t len)
{
    return log_escape(out, outsz, in, len, true);
}

int str_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
