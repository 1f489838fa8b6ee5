/* mailstream.c — streams a stored message into POP3/SMTP wire form: CRLF line
 * ends, dot-stuffing, TOP's header + n body lines, the final ".\r\n", and the
 * RFC 1939 size of all that (see mailstream.h for the rules).
 *
 * Lines end at LF. Each chunk is scanned with memchr for LF and copied in
 * runs, broken only where a CR must be inserted (LF without CR) or a '.'
 * doubled, straight into space reserved in the output evbuffer (at most
 * twice the input: every LF may gain a CR, every line a '.'), committed
 * once per chunk: one evbuffer call, not two per line.
 *
 * A CR is always sent as soon as it is seen (whether it turns out to be part
 * of CRLF or a lone CR, it is sent as is). One corner the header leaves open:
 * a message whose very last byte is a CR gets only the LF that completes that
 * CRLF at the end, not a second line end ("abc\r" -> "abc\r\n.\r\n"). */
#include "core/mailstream.h"

#include <string.h>

#include <event2/buffer.h>

void mailstream_init(struct mailstream *s, long max_body_lines)
{
    s->at_bol = true;
    s->prev_cr = false;
    s->in_body = false;
    s->header_line_empty = true;
    s->body_lines_left = max_body_lines < 0 ? -1 : max_body_lines;
    s->stopped = false;
    s->octets = 0;
}

/* Where encoded bytes go: reserved evbuffer space, or nowhere (counting). */
struct mailstream_sink {
    char *at;               /* NULL: count only */
};

static void mailstream_add(struct mailstream_sink *out, const char *p, size_t n)
{
    if (out->at != NULL && n > 0) {
        memcpy(out->at, p, n);
        out->at += n;
    }
}

/* Updates the line state for n > 0 bytes of one line that contain no LF. */
static void mailstream_track(struct mailstream *s, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (!s->in_body && s->header_line_empty) {
        /* still empty only if the line so far is a single CR (maybe CRLF) */
        s->header_line_empty = !s->prev_cr && n == 1 && p[0] == '\r';
    }
    s->prev_cr = p[n - 1] == '\r';
}

/* A line has just ended (its LF was sent). Returns true when TOP is done. */
static bool mailstream_line_end(struct mailstream *s)
{
    bool was_empty = s->header_line_empty;

    s->at_bol = true;
    s->prev_cr = false;
    s->header_line_empty = true;
    if (!s->in_body) {
        if (!was_empty)
            return false;
        s->in_body = true;          /* the separator line itself is sent */
        return s->body_lines_left == 0;
    }
    if (s->body_lines_left > 0)
        s->body_lines_left--;
    return s->body_lines_left == 0;
}

/* The encoding loop; out has room for 2 * len octets (or counts only). */
static void mailstream_run(struct mailstream *s, const char *src, size_t len,
                           struct mailstream_sink *out)
{
    const char *p = src, *end = src + len;
    const char *run = src;      /* start of bytes not yet added to out */

    while (p < end) {
        if (s->at_bol) {
            s->at_bol = false;
            if (*p == '.') {
                mailstream_add(out, run, (size_t)(p - run));
                mailstream_add(out, ".", 1);    /* stuffing: not counted */
                run = p;
            }
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            mailstream_track(s, p, (size_t)(end - p));
            s->octets += (uint64_t)(end - p);
            p = end;
            break;
        }
        mailstream_track(s, p, (size_t)(nl - p));
        s->octets += (uint64_t)(nl - p);
        if (s->prev_cr) {
            s->octets += 1;             /* CRLF: the LF joins the run */
        } else {
            mailstream_add(out, run, (size_t)(nl - run));
            mailstream_add(out, "\r\n", 2);
            s->octets += 2;
            run = nl + 1;
        }
        p = nl + 1;
        if (mailstream_line_end(s)) {
            s->stopped = true;
            break;
        }
    }
    mailstream_add(out, run, (size_t)(p - run));
}

/* When the evbuffer cannot reserve 2 * len contiguous octets (out of
 * memory): encode in pieces through a stack buffer. */
static bool mailstream_encode_slow(struct mailstream *s, const char *src,
                                   size_t len, struct evbuffer *out)
{
    char buf[2 * 1024];

    for (size_t off = 0; off < len && !s->stopped;) {
        size_t n = len - off < sizeof(buf) / 2 ? len - off : sizeof(buf) / 2;
        struct mailstream_sink sink = {buf};
        mailstream_run(s, src + off, n, &sink);
        if (evbuffer_add(out, buf, (size_t)(sink.at - buf)) != 0)
            break;
        off += n;
    }
    return !s->stopped;
}

bool mailstream_encode(struct mailstream *s, const char *src, size_t len,
                       struct evbuffer *out)
{
    struct mailstream_sink sink = {NULL};
    struct evbuffer_iovec vec;

    if (s->stopped)
        return false;
    if (out == NULL || len == 0) {
        mailstream_run(s, src, len, &sink);
        return !s->stopped;
    }
    if (evbuffer_reserve_space(out, (ev_ssize_t)(2 * len), &vec, 1) != 1)
        return mailstream_encode_slow(s, src, len, out);
    sink.at = vec.iov_base;
    mailstream_run(s, src, len, &sink);
    vec.iov_len = (size_t)(sink.at - (char *)vec.iov_base);
    evbuffer_commit_space(out, &vec, 1);
    return !s->stopped;
}

void mailstream_finish(struct mailstream *s, struct evbuffer *out)
{
    char tail[5];
    struct mailstream_sink sink = {tail};

    if (!s->stopped) {
        if (s->prev_cr) {
            mailstream_add(&sink, "\n", 1);
            s->octets += 1;
        } else if (!s->at_bol) {
            mailstream_add(&sink, "\r\n", 2);
            s->octets += 2;
        }
        s->at_bol = true;
        s->prev_cr = false;
        s->stopped = true;
    }
    mailstream_add(&sink, ".\r\n", 3);
    if (out != NULL)
        (void)evbuffer_add(out, tail, (size_t)(sink.at - tail));
}

uint64_t mailstream_size(const char *msg, size_t len)
{
    struct mailstream s;

    mailstream_init(&s, -1);
    mailstream_encode(&s, msg, len, NULL);
    mailstream_finish(&s, NULL);
    return s.octets;
}
