/* reply.h — the relay's SMTP client reads server replies (RFC 5321 4.2)
 * with this incremental parser: bytes go in as they arrive, split anywhere;
 * complete replies come out. Pure: no I/O, no allocation, no global state.
 * Fuzzed by tests/fuzz/fuzz_relay_reply.c.
 *
 * What it accepts (anything else is a protocol error):
 *
 *   Reply-line = *( Reply-code "-" [ textstring ] EOL )
 *                   Reply-code [ SP [ textstring ] ] EOL
 *
 * - Reply-code: three digits, the first 2..5 (so 200..599; the others are
 *   not checked against RFC 5321's 0..5). Every line of one reply carries
 *   the same code ("250-a" then "550 b" is an error).
 * - "250" alone is a complete reply with empty text; "250-" alone is a
 *   continuation with empty text.
 * - EOL is CRLF or a bare LF. A CR not followed by LF is text. Text octets
 *   below 0x20 (NUL, TAB, a bare CR ...) and DEL are kept as '?'; 8-bit
 *   octets are kept as they are.
 * - A line may hold RELAY_REPLY_LINE_MAX octets (its EOL not counted; RFC
 *   5321 4.5.3.1.5 allows 512 with CRLF), a reply RELAY_REPLY_LINES_MAX
 *   lines. Past either limit the parser stops at once, without waiting for
 *   the rest (a 1 MB line is refused at octet 4097).
 * - The enhanced status code (RFC 2034/3463, "class.subject.detail" then
 *   SP or end of line, class = the first digit of the reply code, subject
 *   and detail 1..3 digits) is taken from the first line that has one.
 *
 * A reply without its final line is simply not complete: the parser waits
 * for more, and the caller's command timeout (RFC 5321 4.5.3.2) ends it.
 * Errors are for good: the parser answers RELAY_REPLY_ERROR until
 * relay_reply_init() again, and the caller treats the session as failed
 * temporarily (4xx, retry later) and closes the connection. */
#ifndef POBOX_RELAY_REPLY_H
#define POBOX_RELAY_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define RELAY_REPLY_LINE_MAX 4096   /* octets in one reply line */
#define RELAY_REPLY_LINES_MAX 100   /* lines in one reply */
#define RELAY_REPLY_KEEP_LINES 16   /* lines whose text is kept */
#define RELAY_REPLY_KEEP_TEXT 512   /* octets of text kept per line */
#define RELAY_REPLY_ENH_SIZE 12     /* "5.123.123" and its NUL */

/* One reply. Holds no pointer into the input: may be copied. */
struct relay_reply {
    int code;                   /* 200..599; 0 when the parser failed */
    char enhanced[RELAY_REPLY_ENH_SIZE];    /* "5.1.1", "" when none */
    bool multiline;             /* more than one line */
    unsigned n_lines;           /* lines received, 1..RELAY_REPLY_LINES_MAX */
    unsigned n_kept;            /* lines in text[], <= RELAY_REPLY_KEEP_LINES */
    bool truncated;             /* lines or octets of text were dropped */
    /* The text of each kept line after "NNN-" / "NNN " (the enhanced code,
     * when the line has one, included), NUL-terminated, no octet < 0x20. */
    char text[RELAY_REPLY_KEEP_LINES][RELAY_REPLY_KEEP_TEXT + 1];
    const char *why;            /* static; on error, what went wrong */
};

/* Optional: called for every line of a reply once it is complete and
 * valid (so an EHLO reply's keywords past RELAY_REPLY_KEEP_LINES are not
 * lost): the line's code, its text as in relay_reply.text (at most
 * RELAY_REPLY_KEEP_TEXT octets, NUL-terminated), and whether it is the
 * last line. */
typedef void relay_reply_line_fn(void *arg, int code, const char *text,
                                 bool last);

/* Parser state; opaque to callers apart from its size. */
struct relay_reply_parser {
    struct relay_reply cur;     /* the reply being read */
    unsigned line_len;          /* octets of the current line so far */
    unsigned text_len;          /* of them kept in line_text */
    int line_code;              /* code of the current line so far */
    char sep;                   /* '-', ' ' or 0 (line ended after code) */
    bool cr;                    /* the last octet was a CR */
    const char *failed;         /* static: why, once an error happened */
    char line_text[RELAY_REPLY_KEEP_TEXT + 1];
    relay_reply_line_fn *on_line;
    void *on_line_arg;
};

enum relay_reply_rc {
    RELAY_REPLY_NEED_MORE,  /* all input taken, no reply complete yet */
    RELAY_REPLY_REPLY,      /* *out holds a reply */
    RELAY_REPLY_ERROR,      /* *out has code 0 and why; the parser is dead */
};

/* Starts (or restarts) a parser: no partial reply, no error, no observer. */
void relay_reply_init(struct relay_reply_parser *p);

/* Sets the per-line observer (NULL to remove). */
void relay_reply_observe(struct relay_reply_parser *p, relay_reply_line_fn *fn,
                         void *arg);

/* Parses up to len octets of data. *consumed is how many octets were used:
 *   NEED_MORE: all of them (len).
 *   REPLY: up to and including the EOL of the reply's last line; the
 *     octets after it (data + *consumed ...) were not looked at. Call
 *     again with them for the next reply (PIPELINING), or throw them away
 *     (after "220" to STARTTLS: RFC 3207 response injection) and
 *     relay_reply_init() before reading from the TLS layer.
 *   ERROR: up to and including the offending octet (0 when the parser
 *     had already failed).
 * *out is written only when REPLY or ERROR is returned (on ERROR with the
 * lines completed so far, code 0 and why). */
enum relay_reply_rc relay_reply_feed(struct relay_reply_parser *p,
                                     const char *data, size_t len,
                                     size_t *consumed, struct relay_reply *out);

/* True when the parser holds part of a reply (octets that did not yet make
 * one): a server that speaks before its turn. */
bool relay_reply_pending(const struct relay_reply_parser *p);

/* The reply as one line for logs, queue errors and Diagnostic-Code:
 * "550 5.1.1 text of line 1 text of line 2 ..." — the code, the enhanced
 * code when there is one, then each kept line's text with its own leading
 * enhanced code dropped, joined by single spaces; octets outside printable
 * ASCII become '?'. For a failed parse: "protocol error: WHY". Cut to fit
 * outsz (ending in "..." when cut), always NUL-terminated when outsz > 0.
 * Returns out. */
char *relay_reply_line(const struct relay_reply *r, char *out, size_t outsz);

#endif
