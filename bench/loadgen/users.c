/* users.c — loading the --users file ("ADDRESS PASSWORD" per line) and
 * precomputing each account's AUTH PLAIN string. */
#include "users.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
                     s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static int make_plain64(struct lg_user *u)
{
    size_t raw_len = u->addr_len + u->pw_len + 2;
    unsigned char *raw = malloc(raw_len);
    u->plain64 = malloc(4 * ((raw_len + 2) / 3) + 1);
    if (raw == NULL || u->plain64 == NULL) {
        free(raw);
        return -1;
    }
    raw[0] = '\0';
    memcpy(raw + 1, u->addr, u->addr_len);
    raw[1 + u->addr_len] = '\0';
    memcpy(raw + 2 + u->addr_len, u->pw, u->pw_len);
    u->plain64_len = (size_t)EVP_EncodeBlock((unsigned char *)u->plain64, raw, (int)raw_len);
    free(raw);
    return 0;
}

/* Parses one non-comment line into u; -1 when malformed. */
static int parse_line(char *s, struct lg_user *u)
{
    size_t a = strcspn(s, " \t");
    if (a == 0 || s[a] == '\0')
        return -1;
    s[a] = '\0';
    char *pw = trim(s + a + 1);
    if (*pw == '\0' || strpbrk(pw, " \t") != NULL || strpbrk(s, "\r\n<>") != NULL ||
        a > LG_USER_MAX_LEN || strlen(pw) > LG_USER_MAX_LEN)
        return -1;
    u->addr = strdup(s);
    u->pw = strdup(pw);
    if (u->addr == NULL || u->pw == NULL)
        return -1;
    u->addr_len = strlen(u->addr);
    u->pw_len = strlen(u->pw);
    return make_plain64(u);
}

static int add_user(struct lg_users *u, size_t *cap, char *line)
{
    if (u->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        struct lg_user *nv = realloc(u->v, *cap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        u->v = nv;
    }
    struct lg_user *nu = &u->v[u->n];
    memset(nu, 0, sizeof(*nu));
    u->n++;
    return parse_line(line, nu);
}

int lg_users_load(struct lg_users *u, const char *path, char *err, size_t errlen)
{
    u->v = NULL;
    u->n = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t linecap = 0, cap = 0, lineno = 0;
    int rc = 0;
    while (getline(&line, &linecap, f) > 0) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (add_user(u, &cap, s) < 0) {
            snprintf(err, errlen, "%s:%zu: expected \"ADDRESS PASSWORD\"", path, lineno);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && u->n == 0) {
        snprintf(err, errlen, "%s: no users", path);
        rc = -1;
    }
    if (rc < 0)
        lg_users_free(u);
    return rc;
}

void lg_users_free(struct lg_users *u)
{
    for (size_t i = 0; i < u->n; i++) {
        free(u->v[i].addr);
        free(u->v[i].pw);
        free(u->v[i].plain64);
    }
    free(u->v);
    u->v = NULL;
    u->n = 0;
}
