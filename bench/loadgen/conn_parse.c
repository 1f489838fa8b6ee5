/* conn_parse.c — reading replies out of a connection's buffer: single
 * lines, and POP3 multi-line bodies scanned with memmem for "\r\n.\r\n"
 * (also across buffer boundaries) while the consumed bytes are dropped. */
#include "conn.h"

#include <string.h>

const char *lg_conn_line(struct lg_conn *c, size_t *len)
{
    char *start = c->rbuf + c->rpos;
    size_t avail = c->rlen - c->rpos;
    char *nl = avail ? memchr(start, '\n', avail) : NULL;
    if (nl == NULL)
        return NULL;
    c->rpos += (uint32_t)(nl + 1 - start);
    size_t n = (size_t)(nl - start);
    if (n > 0 && start[n - 1] == '\r')
        n--;
    *len = n;
    return start;
}

static uint32_t count_lines(const char *p, size_t n)
{
    uint32_t lines = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

/* The body may be empty: then ".\r\n" follows the +OK line directly and
 * there is no "\r\n" before the dot inside the body. */
static int ml_empty_body(struct lg_conn *c, struct lg_ml *ml, int *done)
{
    const char *d = c->rbuf + c->rpos;
    size_t n = c->rlen - c->rpos;
    *done = 0;
    if (n >= 3) {
        ml->at_start = 0;
        if (memcmp(d, ".\r\n", 3) == 0) {
            c->rpos += 3;
            *done = 1;
        }
        return 0;
    }
    if (n == 0 || memcmp(d, ".\r\n", n) == 0)
        return -1;                      /* cannot tell yet */
    ml->at_start = 0;
    return 0;
}

int lg_conn_ml(struct lg_conn *c, struct lg_ml *ml, int count)
{
    if (ml->at_start) {
        int done;
        if (ml_empty_body(c, ml, &done) < 0)
            return 0;
        if (done)
            return 1;
    }
    const char *d = c->rbuf + c->rpos;
    size_t n = c->rlen - c->rpos;
    const char *p = memmem(d, n, "\r\n.\r\n", 5);
    if (p != NULL) {
        size_t body = (size_t)(p - d) + 2;
        ml->octets += body;
        if (count)
            ml->lines += count_lines(d, body);
        c->rpos += (uint32_t)(body + 3);
        return 1;
    }
    /* Keep the last 4 bytes: they may start the terminator. */
    if (n > 4) {
        size_t k = n - 4;
        ml->octets += k;
        if (count)
            ml->lines += count_lines(d, k);
        c->rpos += (uint32_t)k;
    }
    return 0;
}
