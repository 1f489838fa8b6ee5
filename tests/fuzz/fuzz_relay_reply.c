/* fuzz_relay_reply.c — libFuzzer harness for relay/reply, the SMTP reply
 * parser that reads what a remote (maybe hostile) server sends (the
 * CVE-2020-8794 class: long and endless continuations, a missing final
 * line, mixed codes). The first input octet seeds how the rest is split
 * into chunks; the rest is the server's output. It abort()s when:
 *   - a reply or error differs from a plain line-by-line reference parser
 *     written here (where each reply ends, its code, lines, kept text and
 *     enhanced code; where and whether an error happens),
 *   - feeding the input in chunks differs from feeding it at once,
 *   - an invariant of reply.h breaks (bounds, sanitized text, consumed),
 *   - the line observer or relay_reply_line() misbehave.
 * Built and run by tools/fuzz.sh. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/reply.h"

#define MAX_EVENTS 64

static void require(bool ok)
{
    if (!ok)
        abort();
}

/* ---- the reference: whole lines, no state across calls ---- */

enum ref_kind { REF_NEED, REF_REPLY, REF_ERROR };

struct ref {
    enum ref_kind kind;
    size_t end;                 /* octets used (REPLY, ERROR) */
    int code;
    unsigned n_lines;
    char enhanced[RELAY_REPLY_ENH_SIZE];
    char text[RELAY_REPLY_KEEP_LINES][RELAY_REPLY_KEEP_TEXT + 1];
};

static bool ref_enhanced(const char *t, char cls, char out[RELAY_REPLY_ENH_SIZE])
{
    size_t i = 0;
    if (t[i++] != cls || t[i++] != '.')
        return false;
    for (int part = 0; part < 2; part++) {
        size_t n = 0;
        while (t[i] >= '0' && t[i] <= '9') {
            i++;
            n++;
        }
        if (n < 1 || n > 3)
            return false;
        if (part == 0 && t[i++] != '.')
            return false;
    }
    if (t[i] != ' ' && t[i] != '\0')
        return false;
    memcpy(out, t, i);
    out[i] = '\0';
    return true;
}

/* Scans one reply from the start of d. */
static void ref_scan(const uint8_t *d, size_t len, struct ref *r)
{
    size_t pos = 0;

    memset(r, 0, sizeof *r);
    for (;;) {
        const uint8_t *lf = memchr(d + pos, '\n', len - pos);
        size_t raw = lf ? (size_t)(lf - (d + pos)) : len - pos;
        const uint8_t *line = d + pos;
        /* a CR before the LF is EOL; at the end of the input, undecided */
        size_t l = raw > 0 && line[raw - 1] == '\r' ? raw - 1 : raw;
        for (size_t i = 0; i < l; i++) {
            uint8_t c = line[i];
            bool bad = false;
            if (i >= RELAY_REPLY_LINE_MAX)
                bad = true;
            else if (i < 3)
                bad = c < '0' || c > '9' || (i == 0 && (c < '2' || c > '5')) ||
                      (r->n_lines > 0 &&
                       c - '0' != r->code / (i == 0 ? 100 : i == 1 ? 10 : 1) % 10);
            else if (i == 3)
                bad = c != '-' && c != ' ';
            if (bad) {
                r->kind = REF_ERROR;
                /* a CR is known to be text only with the octet after it */
                r->end = pos + i + 1 + (c == '\r' ? 1 : 0);
                return;
            }
            if (i >= 4)
                break;      /* the rest is text; only its length matters */
        }
        if (l > RELAY_REPLY_LINE_MAX) {
            uint8_t c = line[RELAY_REPLY_LINE_MAX];
            r->kind = REF_ERROR;
            r->end = pos + RELAY_REPLY_LINE_MAX + 1 + (c == '\r' ? 1 : 0);
            return;
        }
        if (!lf) {
            r->kind = REF_NEED;
            return;
        }
        if (l < 3) {
            r->kind = REF_ERROR;
            r->end = pos + raw + 1;
            return;
        }
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (r->n_lines == 0)
            r->code = code;
        char t[RELAY_REPLY_KEEP_TEXT + 1];
        size_t n = 0;
        for (size_t i = 4; i < l && n < RELAY_REPLY_KEEP_TEXT; i++)
            t[n++] = line[i] < 0x20 || line[i] == 0x7f ? '?' : (char)line[i];
        t[n] = '\0';
        if (r->enhanced[0] == '\0')
            ref_enhanced(t, (char)line[0], r->enhanced);
        if (r->n_lines < RELAY_REPLY_KEEP_LINES)
            memcpy(r->text[r->n_lines], t, n + 1);
        r->n_lines++;
        pos += raw + 1;
        if (l == 3 || line[3] != '-') {
            r->kind = REF_REPLY;
            r->end = pos;
            return;
        }
        if (r->n_lines >= RELAY_REPLY_LINES_MAX) {
            r->kind = REF_ERROR;
            r->end = pos;
            return;
        }
    }
}

/* ---- the parser under test ---- */

struct event {
    enum relay_reply_rc rc;
    size_t end;                 /* input offset after it */
    struct relay_reply reply;
};

struct events {
    struct event ev[MAX_EVENTS];
    size_t n;
    bool pending;
};

struct seen {
    unsigned lines, lasts;
};

static void on_line(void *arg, int code, const char *text, bool last)
{
    struct seen *s = arg;

    require(code >= 200 && code <= 599);
    require(strlen(text) <= RELAY_REPLY_KEEP_TEXT);
    s->lines++;
    s->lasts += last;
}

static void check_reply(const struct relay_reply *r, enum relay_reply_rc rc)
{
    if (rc == RELAY_REPLY_REPLY) {
        require(r->code >= 200 && r->code <= 599);
        require(r->why == NULL);
        require(r->n_lines >= 1 && r->n_lines <= RELAY_REPLY_LINES_MAX);
        require(r->multiline == (r->n_lines > 1));
    } else {
        require(r->code == 0 && r->why != NULL);
        require(r->n_lines <= RELAY_REPLY_LINES_MAX);
    }
    unsigned kept = r->n_lines < RELAY_REPLY_KEEP_LINES ? r->n_lines
                                                         : RELAY_REPLY_KEEP_LINES;
    require(r->n_kept == kept);
    if (r->n_lines > RELAY_REPLY_KEEP_LINES)
        require(r->truncated);
    for (unsigned i = 0; i < r->n_kept; i++) {
        size_t n = strnlen(r->text[i], sizeof r->text[i]);
        require(n <= RELAY_REPLY_KEEP_TEXT);
        for (size_t k = 0; k < n; k++)
            require((unsigned char)r->text[i][k] >= 0x20 &&
                    r->text[i][k] != 0x7f);
    }
    size_t e = strnlen(r->enhanced, sizeof r->enhanced);
    require(e < sizeof r->enhanced);
    if (e > 0) {    /* an error keeps what the lines so far had */
        require(r->enhanced[0] >= '2' && r->enhanced[0] <= '5');
        if (rc == RELAY_REPLY_REPLY)
            require(r->enhanced[0] == '0' + r->code / 100);
    }
    char line[64];
    size_t outsz = 1 + (r->n_lines * 7 + (unsigned)r->code) % sizeof line;
    relay_reply_line(r, line, outsz);
    size_t n = strlen(line);
    require(n < outsz);
    for (size_t k = 0; k < n; k++)
        require(line[k] >= 0x20 && line[k] < 0x7f);
}

/* Feeds data in chunks (sizes from seed; 0 = all at once). */
static void run(const uint8_t *data, size_t len, unsigned seed,
                struct events *out)
{
    static struct relay_reply_parser p;
    struct seen seen = {0, 0};
    uint32_t x = seed * 2654435761u + 1;
    size_t off = 0;

    out->n = 0;
    out->pending = false;
    relay_reply_init(&p);
    relay_reply_observe(&p, on_line, &seen);
    while (off < len) {
        size_t chunk = len - off;
        if (seed) {
            x = x * 1103515245u + 12345u;
            size_t want = (x >> 16) % 3 == 0 ? 1 : 1 + (x >> 8) % 700;
            if (want < chunk)
                chunk = want;
        }
        size_t pos = 0;
        while (pos < chunk) {
            struct relay_reply r;
            size_t used = (size_t)-1;
            enum relay_reply_rc rc = relay_reply_feed(
                &p, (const char *)data + off + pos, chunk - pos, &used, &r);
            require(used <= chunk - pos);
            pos += used;
            if (rc == RELAY_REPLY_NEED_MORE) {
                require(pos == chunk);
                continue;
            }
            require(rc == RELAY_REPLY_REPLY || rc == RELAY_REPLY_ERROR);
            require(used > 0);
            check_reply(&r, rc);
            require(seen.lines == r.n_lines);
            require(seen.lasts == (rc == RELAY_REPLY_REPLY ? 1u : 0u));
            seen.lines = seen.lasts = 0;
            if (rc == RELAY_REPLY_REPLY) {
                require(data[off + pos - 1] == '\n');
                require(!relay_reply_pending(&p));
            }
            if (out->n == MAX_EVENTS)
                return;
            struct event *ev = &out->ev[out->n++];
            ev->rc = rc;
            ev->end = off + pos;
            ev->reply = r;
            if (rc == RELAY_REPLY_ERROR) {
                struct relay_reply again;
                require(relay_reply_feed(&p, "250 ok\r\n", 8, &used, &again) ==
                        RELAY_REPLY_ERROR && used == 0);
                return;
            }
        }
        off += chunk;
    }
    out->pending = relay_reply_pending(&p);
}

static void compare_with_reference(const uint8_t *data, size_t len,
                                   const struct events *ev)
{
    size_t start = 0;
    struct ref ref;

    for (size_t i = 0; i < ev->n; i++) {
        const struct event *e = &ev->ev[i];
        ref_scan(data + start, len - start, &ref);
        require(ref.kind == (e->rc == RELAY_REPLY_REPLY ? REF_REPLY : REF_ERROR));
        require(start + ref.end == e->end);
        if (e->rc == RELAY_REPLY_REPLY) {
            const struct relay_reply *r = &e->reply;
            require(r->code == ref.code && r->n_lines == ref.n_lines);
            require(strcmp(r->enhanced, ref.enhanced) == 0);
            for (unsigned k = 0; k < r->n_kept; k++)
                require(strcmp(r->text[k], ref.text[k]) == 0);
        }
        start = e->end;
    }
    if (ev->n < MAX_EVENTS && (ev->n == 0 || ev->ev[ev->n - 1].rc !=
                                                 RELAY_REPLY_ERROR)) {
        ref_scan(data + start, len - start, &ref);
        require(ref.kind == REF_NEED);
        require(ev->pending == (start < len));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct events whole, parts;

    if (size == 0)
        return 0;
    unsigned seed = data[0] | 1u;
    data++;
    size--;
    run(data, size, 0, &whole);
    compare_with_reference(data, size, &whole);
    run(data, size, seed, &parts);
    require(whole.n == parts.n && whole.pending == parts.pending);
    for (size_t i = 0; i < whole.n; i++) {
        require(whole.ev[i].rc == parts.ev[i].rc);
        require(whole.ev[i].end == parts.ev[i].end);
        require(memcmp(&whole.ev[i].reply, &parts.ev[i].reply,
                       sizeof whole.ev[i].reply) == 0);
    }
    return 0;
}
