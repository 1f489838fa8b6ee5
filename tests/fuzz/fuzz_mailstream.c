/* fuzz_mailstream.c — libFuzzer harness for core/mailstream: the first input
 * byte picks RETR or TOP 0..20 and a chunk size, the rest is a stored
 * message fed through mailstream_encode() in chunks, then
 * mailstream_finish(). abort()s when the wire form breaks a rule of
 * mailstream.h: final ".\r\n", no bare LF, dot-stuffing, the RFC 1939 size,
 * and byte equality with a one-pass reference encoder written here.
 * Built and run by tools/fuzz.sh. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/mailstream.h"

static void require(bool ok)
{
    if (!ok)
        abort();
}

/* A growable byte buffer for the reference encoder. */
struct bytes {
    char *p;
    size_t n, cap;
};

static void bytes_add(struct bytes *b, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 16;
        b->p = realloc(b->p, b->cap);
        require(b->p != NULL);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* Sends one line (content without its LF) the way mailstream.h says:
 * stuffing, content, then CRLF (just LF when the content ends in CR). */
static void ref_line(struct bytes *b, const char *p, size_t n)
{
    if (n > 0 && p[0] == '.')
        bytes_add(b, ".", 1);
    bytes_add(b, p, n);
    if (n > 0 && p[n - 1] == '\r')
        bytes_add(b, "\n", 1);
    else
        bytes_add(b, "\r\n", 2);
}

/* Reference encoder: whole message at once, line by line. top < 0 = RETR;
 * otherwise the header, the empty separator line and top body lines. */
static struct bytes ref_encode(const char *msg, size_t len, long top)
{
    struct bytes b = {0};
    bool in_body = false;
    long body = 0;
    size_t i = 0;

    while (i < len) {
        const char *nl = memchr(msg + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (msg + i)) : len - i;
        ref_line(&b, msg + i, n);
        i += n + 1;
        if (nl == NULL || top < 0)
            continue;
        if (in_body)
            body++;
        else if (n == 0 || (n == 1 && msg[i - 2] == '\r'))
            in_body = true;
        if (in_body && body == top)
            break;
    }
    bytes_add(&b, ".\r\n", 3);
    return b;
}

static const size_t CHUNKS[8] = {1, 2, 3, 5, 8, 64, 512, 4096};

/* Streams msg through mailstream in chunks of chunk bytes; the returned
 * evbuffer (caller frees) holds the wire form. */
static struct evbuffer *stream_encode(const char *msg, size_t len, long top,
                                      size_t chunk, uint64_t *octets)
{
    struct evbuffer *out = evbuffer_new();
    struct mailstream s;
    bool more = true;

    require(out != NULL);
    mailstream_init(&s, top);
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        bool r = mailstream_encode(&s, msg + off, n, out);
        require(more || !r);     /* once stopped, it stays stopped */
        require(top >= 0 || r);  /* RETR never stops */
        more = r;
    }
    mailstream_finish(&s, out);
    *octets = s.octets;
    return out;
}

/* Checks the wire rules; returns the number of stuffed dots. */
static size_t check_wire(const char *w, size_t n, size_t msg_len)
{
    size_t stuffed = 0;

    if (msg_len == 0)
        require(n == 3 && memcmp(w, ".\r\n", 3) == 0);
    else
        require(n >= 5 && memcmp(w + n - 5, "\r\n.\r\n", 5) == 0);
    for (size_t i = 0; i < n; i++)
        if (w[i] == '\n')
            require(i > 0 && w[i - 1] == '\r');
    for (size_t i = 0; i < n - 3; i++) {
        bool bol = i == 0 || (w[i - 1] == '\n' && w[i - 2] == '\r');
        if (!bol || w[i] != '.')
            continue;
        require(i + 1 < n - 3 && w[i + 1] == '.');
        stuffed++;
    }
    return stuffed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    long top = (long)(data[0] & 0x1f) % 22 - 1;
    size_t chunk = CHUNKS[data[0] >> 5];
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;
    uint64_t octets;

    struct evbuffer *out = stream_encode(msg, len, top, chunk, &octets);
    size_t n = evbuffer_get_length(out);
    const char *w = (const char *)evbuffer_pullup(out, -1);
    require(n > 0 && w != NULL);
    size_t stuffed = check_wire(w, n, len);
    if (top < 0) {
        uint64_t size_rfc = mailstream_size(msg, len);
        require(size_rfc == n - stuffed - 3);
        require(octets == size_rfc);
    }
    struct bytes ref = ref_encode(msg, len, top);
    require(ref.n == n && memcmp(ref.p, w, n) == 0);
    free(ref.p);
    evbuffer_free(out);
    return 0;
}
