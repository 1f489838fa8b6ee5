/* test_relay_reply.c — unit tests for relay/reply: the incremental SMTP
 * reply parser (RFC 5321 4.2, RFC 2034): complete replies from any split
 * of the input, the bounds (line length, line count, kept text), protocol
 * errors, what "consumed" tells the STARTTLS defence, and the one-line
 * form for logs and bounces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "relay/reply.h"

#define MAX_REPLIES 8

/* What feeding some input produced. */
struct result {
    struct relay_reply replies[MAX_REPLIES];
    size_t n;
    size_t end[MAX_REPLIES];    /* input offset just after each reply */
    bool error;
    struct relay_reply err;
    size_t err_at;              /* input offset after the error octet */
    bool pending;               /* a partial reply held at the end */
};

/* Feeds data in chunks of the sizes in splits (cycled; NULL = all at once),
 * collecting replies until the input ends or an error. */
static void run(const char *data, size_t len, const size_t *splits,
                size_t n_splits, struct result *res)
{
    static struct relay_reply_parser p;     /* 16 KB: not on the stack */
    size_t off = 0, k = 0;

    memset(res, 0, sizeof *res);
    relay_reply_init(&p);
    while (off < len) {
        size_t chunk = splits ? splits[k++ % n_splits] : len - off;
        if (chunk > len - off)
            chunk = len - off;
        size_t pos = 0;
        while (pos < chunk) {
            size_t used = 99999;
            struct relay_reply r;
            enum relay_reply_rc rc =
                relay_reply_feed(&p, data + off + pos, chunk - pos, &used, &r);
            assert_true(used <= chunk - pos);
            pos += used;
            if (rc == RELAY_REPLY_NEED_MORE) {
                assert_int_equal(pos, chunk);
            } else if (rc == RELAY_REPLY_REPLY) {
                assert_true(res->n < MAX_REPLIES);
                res->replies[res->n] = r;
                res->end[res->n++] = off + pos;
            } else {
                assert_int_equal(rc, RELAY_REPLY_ERROR);
                res->error = true;
                res->err = r;
                res->err_at = off + pos;
                return;
            }
        }
        off += chunk;
    }
    res->pending = relay_reply_pending(&p);
}

static void run_str(const char *s, struct result *res)
{
    run(s, strlen(s), NULL, 0, res);
}

static void test_simple(void **state)
{
    struct result res;

    run_str("250 OK\r\n", &res);
    assert_false(res.error);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.replies[0].code, 250);
    assert_false(res.replies[0].multiline);
    assert_int_equal(res.replies[0].n_lines, 1);
    assert_int_equal(res.replies[0].n_kept, 1);
    assert_string_equal(res.replies[0].text[0], "OK");
    assert_string_equal(res.replies[0].enhanced, "");
    assert_false(res.replies[0].truncated);
    assert_null(res.replies[0].why);
    assert_int_equal(res.end[0], 8);
    assert_false(res.pending);
}

static void test_code_alone(void **state)
{
    struct result res;

    run_str("250\r\n", &res);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.replies[0].code, 250);
    assert_string_equal(res.replies[0].text[0], "");
    /* "354 " with an empty text too */
    run_str("354 \r\n", &res);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.replies[0].code, 354);
    assert_string_equal(res.replies[0].text[0], "");
}

static void test_empty_continuation(void **state)
{
    struct result res;

    run_str("250-\r\n250 \r\n", &res);
    assert_false(res.error);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.replies[0].code, 250);
    assert_true(res.replies[0].multiline);
    assert_int_equal(res.replies[0].n_lines, 2);
    assert_string_equal(res.replies[0].text[0], "");
    assert_string_equal(res.replies[0].text[1], "");
    /* and "250-" then "250" alone */
    run_str("250-\n250\n", &res);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.replies[0].n_lines, 2);
}

static void test_ehlo_multiline(void **state)
{
    const char *ehlo = "250-mx.b.test Hello\r\n250-PIPELINING\r\n"
                       "250-SIZE 10240000\r\n250-STARTTLS\r\n250 DSN\r\n";
    struct result res;

    run_str(ehlo, &res);
    assert_int_equal(res.n, 1);
    const struct relay_reply *r = &res.replies[0];
    assert_int_equal(r->code, 250);
    assert_true(r->multiline);
    assert_int_equal(r->n_lines, 5);
    assert_int_equal(r->n_kept, 5);
    assert_string_equal(r->text[0], "mx.b.test Hello");
    assert_string_equal(r->text[2], "SIZE 10240000");
    assert_string_equal(r->text[4], "DSN");
    assert_int_equal(res.end[0], strlen(ehlo));
}

static void test_enhanced(void **state)
{
    struct result res;

    run_str("550-5.1.1 The email account that you tried to reach does\r\n"
            "550 5.1.1 not exist.\r\n", &res);
    assert_int_equal(res.replies[0].code, 550);
    assert_string_equal(res.replies[0].enhanced, "5.1.1");
    assert_string_equal(res.replies[0].text[1], "5.1.1 not exist.");

    run_str("250 2.1.5\r\n", &res);                 /* code at line end */
    assert_string_equal(res.replies[0].enhanced, "2.1.5");
    run_str("452 4.123.456 busy\r\n", &res);        /* 3-digit parts */
    assert_string_equal(res.replies[0].enhanced, "4.123.456");
    run_str("550 2.1.1 class differs\r\n", &res);
    assert_string_equal(res.replies[0].enhanced, "");
    run_str("250 2.1.1234 x\r\n", &res);            /* 4 digits */
    assert_string_equal(res.replies[0].enhanced, "");
    run_str("250 2.0.0Ok\r\n", &res);               /* no SP after */
    assert_string_equal(res.replies[0].enhanced, "");
    run_str("250 2..0 x\r\n", &res);
    assert_string_equal(res.replies[0].enhanced, "");
    run_str("250 2.0 x\r\n", &res);
    assert_string_equal(res.replies[0].enhanced, "");
    /* the first line that has one */
    run_str("250-hello\r\n250 2.0.0 ok\r\n", &res);
    assert_string_equal(res.replies[0].enhanced, "2.0.0");
}

static void test_bare_lf_and_cr(void **state)
{
    struct result res;

    run_str("220 ready\n", &res);
    assert_int_equal(res.n, 1);
    assert_string_equal(res.replies[0].text[0], "ready");
    /* a CR not before LF is text, kept as '?' */
    run_str("250 a\rb\r\n", &res);
    assert_string_equal(res.replies[0].text[0], "a?b");
    run_str("250 ok\r\r\n", &res);
    assert_string_equal(res.replies[0].text[0], "ok?");
    /* a CR ending one chunk and its LF in the next */
    size_t split[] = {7, 100};
    run("250 ok\r\n251 x\r\n", 15, split, 2, &res);
    assert_int_equal(res.n, 2);
    assert_string_equal(res.replies[0].text[0], "ok");
    assert_int_equal(res.end[0], 8);
    assert_int_equal(res.replies[1].code, 251);
    /* a CR alone waits for what follows */
    run_str("250 ok\r", &res);
    assert_int_equal(res.n, 0);
    assert_true(res.pending);
}

static void test_control_and_8bit(void **state)
{
    struct result res;
    const char nul[] = "250 a\0b\tc\x7f\r\n";

    run(nul, sizeof nul - 1, NULL, 0, &res);
    assert_int_equal(res.n, 1);
    assert_string_equal(res.replies[0].text[0], "a?b?c?");
    run_str("250 gr\xc3\xbc\xc3\x9f\r\n", &res);
    assert_string_equal(res.replies[0].text[0], "gr\xc3\xbc\xc3\x9f");
    /* a NUL in the code is a protocol error */
    const char nulcode[] = "2\0" "0 ok\r\n";
    run(nulcode, sizeof nulcode - 1, NULL, 0, &res);
    assert_true(res.error);
    assert_int_equal(res.err_at, 2);
}

static void expect_error(const char *in, size_t err_at, const char *why)
{
    struct result res;

    run_str(in, &res);
    assert_true(res.error);
    assert_int_equal(res.n, 0);
    assert_int_equal(res.err.code, 0);
    assert_non_null(res.err.why);
    assert_string_equal(res.err.why, why);
    assert_int_equal(res.err_at, err_at);
}

static void test_garbage(void **state)
{
    expect_error("\r\n", 2, "malformed reply line");
    expect_error("\n", 1, "malformed reply line");
    expect_error("25\r\n", 4, "malformed reply line");
    expect_error("abc def\r\n", 1, "malformed reply code");
    expect_error("2x0 ok\r\n", 2, "malformed reply code");
    expect_error("150 ok\r\n", 1, "malformed reply code");
    expect_error("650 ok\r\n", 1, "malformed reply code");
    expect_error("050 ok\r\n", 1, "malformed reply code");
    expect_error(" 250 ok\r\n", 1, "malformed reply code");
    expect_error("250x ok\r\n", 4, "malformed reply line");
    expect_error("250\tok\r\n", 4, "malformed reply line");
    expect_error("250_ok\r\n", 4, "malformed reply line");
    expect_error("HTTP/1.1 400 Bad Request\r\n", 1, "malformed reply code");
    expect_error("\r250 ok\r\n", 2, "malformed reply code");
}

static void test_mixed_codes(void **state)
{
    struct result res;

    expect_error("250-first\r\n550 second\r\n", 12,
                 "reply lines with different codes");
    /* the error carries the lines read so far */
    run_str("250-first\r\n251-second\r\n", &res);
    assert_true(res.error);
    assert_int_equal(res.err.code, 0);
    assert_int_equal(res.err.n_kept, 1);
    assert_string_equal(res.err.text[0], "first");
    expect_error("250-a\r\n260-b\r\n", 9, "reply lines with different codes");
    expect_error("250-a\r\n25\r\n", 11, "malformed reply line");
}

static void test_long_line(void **state)
{
    struct result res;
    size_t big = 1024 * 1024;
    char *buf = malloc(big + 2);

    assert_non_null(buf);
    memcpy(buf, "250 ", 4);
    memset(buf + 4, 'x', big - 4);
    memcpy(buf + big, "\r\n", 2);
    /* 1 MB: refused at the first octet past the limit */
    run(buf, big + 2, NULL, 0, &res);
    assert_true(res.error);
    assert_string_equal(res.err.why, "reply line too long");
    assert_int_equal(res.err_at, RELAY_REPLY_LINE_MAX + 1);
    /* the same in small chunks */
    size_t split[] = {1000};
    run(buf, big + 2, split, 1, &res);
    assert_true(res.error);
    assert_int_equal(res.err_at, RELAY_REPLY_LINE_MAX + 1);
    /* exactly the limit: accepted, text cut to what is kept */
    memcpy(buf + RELAY_REPLY_LINE_MAX, "\r\n", 2);
    run(buf, RELAY_REPLY_LINE_MAX + 2, NULL, 0, &res);
    assert_false(res.error);
    assert_int_equal(res.n, 1);
    assert_true(res.replies[0].truncated);
    assert_int_equal(strlen(res.replies[0].text[0]), RELAY_REPLY_KEEP_TEXT);
    /* the CR of CRLF does not count; a CR that is text does */
    memcpy(buf + RELAY_REPLY_LINE_MAX, "\r\r\n", 3);
    run(buf, RELAY_REPLY_LINE_MAX + 3, NULL, 0, &res);
    assert_true(res.error);
    /* 512 octets of text: all kept */
    memcpy(buf + 4 + RELAY_REPLY_KEEP_TEXT, "\r\n", 2);
    run(buf, 4 + RELAY_REPLY_KEEP_TEXT + 2, NULL, 0, &res);
    assert_false(res.replies[0].truncated);
    assert_int_equal(strlen(res.replies[0].text[0]), RELAY_REPLY_KEEP_TEXT);
    free(buf);
}

/* n lines of "250-line I", the last one "250 last" when final. */
static char *many_lines(unsigned n, bool final, size_t *len)
{
    char *buf = malloc((size_t)n * 20 + 20);
    size_t o = 0;

    assert_non_null(buf);
    for (unsigned i = 0; i < n; i++)
        o += (size_t)sprintf(buf + o, "250-line %u\r\n", i);
    if (final)
        o += (size_t)sprintf(buf + o, "250 last\r\n");
    *len = o;
    return buf;
}

static void test_many_lines(void **state)
{
    struct result res;
    size_t len;
    char *buf;

    /* 100 lines in all: accepted, 16 kept */
    buf = many_lines(RELAY_REPLY_LINES_MAX - 1, true, &len);
    run(buf, len, NULL, 0, &res);
    assert_false(res.error);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.replies[0].n_lines, RELAY_REPLY_LINES_MAX);
    assert_int_equal(res.replies[0].n_kept, RELAY_REPLY_KEEP_LINES);
    assert_true(res.replies[0].truncated);
    assert_string_equal(res.replies[0].text[15], "line 15");
    free(buf);
    /* 10,000 continuation lines: stops at line 100 */
    buf = many_lines(10000, true, &len);
    run(buf, len, NULL, 0, &res);
    assert_true(res.error);
    assert_string_equal(res.err.why, "too many reply lines");
    size_t at = 0;
    for (unsigned i = 0; i < RELAY_REPLY_LINES_MAX; i++)
        at += (size_t)snprintf(NULL, 0, "250-line %u\r\n", i);
    assert_int_equal(res.err_at, at);
    free(buf);
}

static void test_missing_final_line(void **state)
{
    struct result res;
    size_t len;
    char *buf = many_lines(20, false, &len);

    run(buf, len, NULL, 0, &res);
    assert_false(res.error);
    assert_int_equal(res.n, 0);
    assert_true(res.pending);
    free(buf);
    run_str("250 no end of line", &res);
    assert_int_equal(res.n, 0);
    assert_true(res.pending);
}

static void test_sticky_error(void **state)
{
    struct relay_reply_parser p;
    struct relay_reply r;
    size_t used;

    relay_reply_init(&p);
    assert_int_equal(relay_reply_feed(&p, "xyz\r\n", 5, &used, &r),
                     RELAY_REPLY_ERROR);
    assert_int_equal(used, 1);
    assert_int_equal(relay_reply_feed(&p, "250 ok\r\n", 8, &used, &r),
                     RELAY_REPLY_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.why, "malformed reply code");
    assert_false(relay_reply_pending(&p));
    relay_reply_init(&p);
    assert_int_equal(relay_reply_feed(&p, "250 ok\r\n", 8, &used, &r),
                     RELAY_REPLY_REPLY);
    assert_int_equal(r.code, 250);
}

/* After "220" to STARTTLS the bytes behind it are the injection: consumed
 * stops right after the reply, and the parser holds nothing. */
static void test_starttls_injection(void **state)
{
    struct relay_reply_parser p;
    struct relay_reply r;
    const char in[] = "220 2.0.0 Ready to start TLS\r\n250 injected\r\n";
    size_t used;

    relay_reply_init(&p);
    assert_int_equal(relay_reply_feed(&p, in, sizeof in - 1, &used, &r),
                     RELAY_REPLY_REPLY);
    assert_int_equal(r.code, 220);
    assert_string_equal(r.enhanced, "2.0.0");
    assert_int_equal(used, strlen("220 2.0.0 Ready to start TLS\r\n"));
    assert_string_equal(in + used, "250 injected\r\n");
    assert_false(relay_reply_pending(&p));
    /* a partial line behind it is not held either */
    const char in2[] = "220 go\r\n250 inj";
    relay_reply_init(&p);
    assert_int_equal(relay_reply_feed(&p, in2, sizeof in2 - 1, &used, &r),
                     RELAY_REPLY_REPLY);
    assert_int_equal(used, 8);
    assert_false(relay_reply_pending(&p));
    /* but a server that sends ahead of its turn is visible */
    assert_int_equal(relay_reply_feed(&p, in2 + used, sizeof in2 - 1 - used,
                                      &used, &r), RELAY_REPLY_NEED_MORE);
    assert_true(relay_reply_pending(&p));
}

static void test_pipelined(void **state)
{
    const char *in = "250 2.1.0 sender ok\r\n250 2.1.5 rcpt ok\r\n"
                     "550 5.1.1 unknown\r\n354 go ahead\r\n";
    struct result res;

    run_str(in, &res);
    assert_false(res.error);
    assert_int_equal(res.n, 4);
    assert_int_equal(res.replies[0].code, 250);
    assert_int_equal(res.replies[2].code, 550);
    assert_string_equal(res.replies[2].enhanced, "5.1.1");
    assert_int_equal(res.replies[3].code, 354);
    assert_string_equal(res.replies[3].enhanced, "");
    assert_int_equal(res.end[0], 21);
    assert_int_equal(res.end[3], strlen(in));
}

static void assert_same(const struct result *a, const struct result *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->error, b->error);
    assert_int_equal(a->pending, b->pending);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->end[i], b->end[i]);
        assert_memory_equal(&a->replies[i], &b->replies[i],
                            sizeof a->replies[i]);
    }
    if (a->error) {
        assert_int_equal(a->err_at, b->err_at);
        assert_string_equal(a->err.why, b->err.why);
    }
}

/* Every split into two, and octet by octet, gives what one feed gives. */
static void test_every_split(void **state)
{
    static const char *const inputs[] = {
        "250 OK\r\n",
        "250-mx.b.test\r\n250-SIZE 100\r\n250 8BITMIME\r\n",
        "550-5.1.1 no\r\n550 5.1.1 such user\r\n221 bye\r\n",
        "250 a\rb\r\r\n250\n",
        "250-x\r\n251 y\r\n",
        "250 2.0.0 ok\r\n2x0 bad\r\n",
        "220 ready\r\n250 part",
    };
    static struct result whole, parts;

    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
        const char *in = inputs[k];
        size_t len = strlen(in);
        run(in, len, NULL, 0, &whole);
        for (size_t cut = 1; cut < len; cut++) {
            size_t split[] = {cut, len};
            run(in, len, split, 2, &parts);
            assert_same(&whole, &parts);
        }
        size_t one[] = {1};
        run(in, len, one, 1, &parts);
        assert_same(&whole, &parts);
        size_t three[] = {3};
        run(in, len, three, 1, &parts);
        assert_same(&whole, &parts);
    }
}

struct seen {
    unsigned n;
    bool last_flag;
    char text[40][RELAY_REPLY_KEEP_TEXT + 1];
};

static void on_line(void *arg, int code, const char *text, bool last)
{
    struct seen *s = arg;

    assert_int_equal(code, 250);
    assert_true(s->n < 40);
    snprintf(s->text[s->n++], sizeof s->text[0], "%s", text);
    s->last_flag = last;
}

static void test_observer(void **state)
{
    static struct relay_reply_parser p;
    static struct seen seen;
    struct relay_reply r;
    size_t len, used;
    char *buf = many_lines(24, true, &len);

    relay_reply_init(&p);
    relay_reply_observe(&p, on_line, &seen);
    assert_int_equal(relay_reply_feed(&p, buf, len, &used, &r),
                     RELAY_REPLY_REPLY);
    assert_int_equal(r.n_lines, 25);
    assert_int_equal(r.n_kept, RELAY_REPLY_KEEP_LINES);
    assert_int_equal(seen.n, 25);
    assert_string_equal(seen.text[20], "line 20");
    assert_string_equal(seen.text[24], "last");
    assert_true(seen.last_flag);
    free(buf);
}

static void test_line_form(void **state)
{
    struct result res;
    char out[256];

    run_str("550-5.1.1 The account\r\n550-5.1.1  does not\r\n"
            "550 5.1.1 exist\r\n", &res);
    assert_string_equal(relay_reply_line(&res.replies[0], out, sizeof out),
                        "550 5.1.1 The account does not exist");
    run_str("250-mx Hello\r\n250 SIZE\r\n", &res);
    assert_string_equal(relay_reply_line(&res.replies[0], out, sizeof out),
                        "250 mx Hello SIZE");
    run_str("250\r\n", &res);
    assert_string_equal(relay_reply_line(&res.replies[0], out, sizeof out),
                        "250");
    run_str("451 caf\xc3\xa9 \x01\r\n", &res);
    assert_string_equal(relay_reply_line(&res.replies[0], out, sizeof out),
                        "451 caf?? ?");
    /* cut */
    run_str("250 0123456789abcdef\r\n", &res);
    assert_string_equal(relay_reply_line(&res.replies[0], out, 12),
                        "250 0123...");
    assert_string_equal(relay_reply_line(&res.replies[0], out, 3), "..");
    assert_string_equal(relay_reply_line(&res.replies[0], out, 1), "");
    /* a failed parse */
    run_str("garbage\r\n", &res);
    assert_true(res.error);
    assert_string_equal(relay_reply_line(&res.err, out, sizeof out),
                        "protocol error: malformed reply code");
    /* truncated replies say so */
    size_t len;
    char *buf = many_lines(30, true, &len);
    run(buf, len, NULL, 0, &res);
    relay_reply_line(&res.replies[0], out, sizeof out);
    assert_non_null(strstr(out, "line 15 ..."));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_code_alone),
        cmocka_unit_test(test_empty_continuation),
        cmocka_unit_test(test_ehlo_multiline),
        cmocka_unit_test(test_enhanced),
        cmocka_unit_test(test_bare_lf_and_cr),
        cmocka_unit_test(test_control_and_8bit),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_mixed_codes),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_many_lines),
        cmocka_unit_test(test_missing_final_line),
        cmocka_unit_test(test_sticky_error),
        cmocka_unit_test(test_starttls_injection),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_observer),
        cmocka_unit_test(test_line_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
