/* strutil.h — small string helpers shared by every layer. */
#ifndef POBOX_STRUTIL_H
#define POBOX_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>

void str_lower(char *s);
void str_upper(char *s);
/* Strips leading and trailing blanks in place; returns s. */
char *str_trim(char *s);
/* Copies at most outsz-1 bytes and always terminates; returns false if cut. */
bool str_copy(char *out, size_t outsz, const char *in);
/* Value of a hex digit, -1 when c is not one. */
int str_hexval(char c);
/* Bytes safe to put in a logfmt value: printable ASCII except '"' and '\\';
 * anything else becomes \xNN; cut at outsz with "...". Returns out. */
const char *str_log_safe(char *out, size_t outsz, const char *in, size_t len);
/* The same for a value between double quotes: spaces stay. */
const char *str_log_quoted(char *out, size_t outsz, const char *in, size_t len);

#endif
