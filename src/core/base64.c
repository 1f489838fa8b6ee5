/* base64.c — RFC 4648 base64 over OpenSSL's block coder, with the strict
 * validation OpenSSL's decoder leaves out. */
#include "core/base64.h"

#include <openssl/evp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

char *base64_encode(const void *data, size_t len)
{
    if (len > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static bool base64_alphabet(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Length a multiple of 4, alphabet only, '=' only as the last one or two. */
static bool base64_valid(const char *text, size_t len, size_t *pad)
{
    if (len % 4 != 0 || len > (size_t)INT_MAX)
        return false;
    *pad = 0;
    if (len && text[len - 1] == '=')
        *pad = (len > 1 && text[len - 2] == '=') ? 2 : 1;
    for (size_t i = 0; i < len - *pad; i++)
        if (!base64_alphabet((unsigned char)text[i]))
            return false;
    return true;
}

bool base64_decode(const char *text, size_t len, unsigned char **out,
                   size_t *outlen)
{
    size_t pad;
    if (!base64_valid(text, len, &pad))
        return false;
    unsigned char *buf = malloc(len / 4 * 3 + 1);
    if (!buf)
        return false;
    int n = len ? EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len) : 0;
    if (n < 0 || (size_t)n < pad) {
        free(buf);
        return false;
    }
    *outlen = (size_t)n - pad;
    buf[*outlen] = '\0';
    *out = buf;
    return true;
}
