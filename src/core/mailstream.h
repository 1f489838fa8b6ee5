/* mailstream.h — turns a stored message (LF or CRLF line ends) into the
 * bytes POP3 RETR/TOP and SMTP DATA send: CRLF line ends, dot-stuffing, and
 * the final ".\r\n"; and computes the size RFC 1939 LIST reports.
 *
 * Streaming: feed chunks of any size in order; state carries across chunk
 * boundaries (a CR at the end of one chunk and LF at the start of the next,
 * a '.' starting the next chunk). Rules:
 *   - LF not preceded by CR becomes CRLF; CRLF stays; a lone CR is sent as is.
 *   - a line starting with '.' gets one more '.'.
 *   - a message not ending in a line end gets CRLF before the final ".\r\n".
 * mailstream_size() counts the octets mailstream_encode() would send, before
 * dot-stuffing and without the final "." line (RFC 1939 / SPEC section 4),
 * including the CRLF added to a last line that lacks one. */
#ifndef POBOX_MAILSTREAM_H
#define POBOX_MAILSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct mailstream {
    bool at_bol;          /* next byte starts a line */
    bool prev_cr;         /* last byte fed was CR */
    bool in_body;         /* the empty line after the header was seen */
    bool header_line_empty; /* the current header line is empty so far */
    long body_lines_left; /* TOP: body lines still to send; -1 = all */
    bool stopped;         /* TOP limit reached: ignore further input */
    uint64_t octets;      /* size counted so far (no stuffing) */
};

/* max_body_lines: -1 for RETR (everything), n >= 0 for TOP n. */
void mailstream_init(struct mailstream *s, long max_body_lines);

/* Appends the encoded form of src to out (out may be NULL to only count).
 * Returns false once the TOP limit is reached: the caller may stop reading. */
bool mailstream_encode(struct mailstream *s, const char *src, size_t len,
                       struct evbuffer *out);

/* Ends the message: CRLF if the last line lacked one, then ".\r\n".
 * out may be NULL (counting only). */
void mailstream_finish(struct mailstream *s, struct evbuffer *out);

/* Size a whole message has on the wire (see above), from a streaming count:
 * init with -1, encode with out == NULL, finish with out == NULL, then read
 * s->octets. This helper does it for one buffer. */
uint64_t mailstream_size(const char *msg, size_t len);

#endif
