/* json.h — a tiny JSON object writer for the one-line results. */
#ifndef LG_JSON_H
#define LG_JSON_H

#include <stddef.h>
#include <stdint.h>

struct lg_json {
    char buf[8192];
    size_t len;
    int first;              /* no comma before the next member */
};

void lg_json_begin(struct lg_json *j);
void lg_json_str(struct lg_json *j, const char *key, const char *val);
void lg_json_bool(struct lg_json *j, const char *key, int val);
void lg_json_u64(struct lg_json *j, const char *key, uint64_t val);
void lg_json_num(struct lg_json *j, const char *key, double val, int decimals);
/* Opens a nested object or array under key; close with lg_json_close. */
void lg_json_open(struct lg_json *j, const char *key, char bracket);
void lg_json_close(struct lg_json *j, char bracket);
/* An array element string. */
void lg_json_item(struct lg_json *j, const char *val);
/* Ends the object and writes it as one line to stdout (flushed). */
void lg_json_print(struct lg_json *j);

#endif
