/* base64.h — RFC 4648 base64 for protocol data (SASL exchanges): encoding,
 * and a strict decoder that refuses anything a correct peer would not send
 * (characters outside the alphabet, missing or misplaced padding, blanks). */
#ifndef POBOX_BASE64_H
#define POBOX_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* malloc'd NUL-terminated base64 of data[0..len); NULL when out of memory. */
char *base64_encode(const void *data, size_t len);

/* Decodes text[0..len) into a malloc'd buffer (NUL-terminated for
 * convenience, *outlen excludes it). false when malformed or out of memory. */
bool base64_decode(const char *text, size_t len, unsigned char **out,
                   size_t *outlen);

#endif
