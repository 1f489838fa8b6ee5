/* users.h — the benchmark accounts read from the --users file, with the
 * per-user strings the scripts send precomputed. */
#ifndef LG_USERS_H
#define LG_USERS_H

#include <stddef.h>

/* Longest address or password accepted (commands are built on the stack). */
#define LG_USER_MAX_LEN 400

struct lg_user {
    char *addr;
    char *pw;
    char *plain64;          /* base64("\0addr\0pw") for AUTH PLAIN */
    size_t addr_len, pw_len, plain64_len;
};

struct lg_users {
    struct lg_user *v;
    size_t n;
};

/* Reads "ADDRESS PASSWORD" lines (space or tab separated; blank and #
 * lines ignored). Returns -1 with a message in err. */
int lg_users_load(struct lg_users *u, const char *path, char *err, size_t errlen);
void lg_users_free(struct lg_users *u);

#endif
