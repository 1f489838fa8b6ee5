/* util.h — small helpers shared by the load generator's modules:
 * container_of and integer-to-decimal formatting without stdio. */
#ifndef LG_UTIL_H
#define LG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LG_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define LG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Writes v in decimal at dst (no NUL); returns the number of digits. */
static inline size_t lg_utoa(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* Appends len bytes to *p and advances it. */
static inline void lg_put(char **p, const void *src, size_t len)
{
    memcpy(*p, src, len);
    *p += len;
}

/* Appends a string literal. */
#define LG_PUT_LIT(pp, lit) lg_put((pp), (lit), sizeof(lit) - 1)

#endif
