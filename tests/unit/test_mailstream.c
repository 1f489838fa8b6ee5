/* test_mailstream.c — unit tests for core/mailstream: the bytes RETR and TOP
 * put on the wire (CRLF, dot-stuffing, final ".\r\n"), across any chunking,
 * and the LIST size. Random messages are checked against a simple
 * line-by-line reference encoder written here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "core/mailstream.h"

/* Encodes the chunks in order; returns a NUL-terminated copy of the output
 * (caller frees) and the size counted on the way in *octets. */
static char *encode_chunks(const char *const *chunks, const size_t *lens,
                           size_t n, long top, uint64_t *octets)
{
    struct evbuffer *out = evbuffer_new();
    struct mailstream s;
    size_t len;
    char *res;

    assert_non_null(out);
    mailstream_init(&s, top);
    for (size_t i = 0; i < n; i++)
        mailstream_encode(&s, chunks[i], lens[i], out);
    mailstream_finish(&s, out);
    len = evbuffer_get_length(out);
    res = malloc(len + 1);
    assert_non_null(res);
    evbuffer_copyout(out, res, len);
    res[len] = '\0';
    evbuffer_free(out);
    if (octets != NULL)
        *octets = s.octets;
    return res;
}

/* Chunks given as NULL-terminated strings. */
static void check(long top, const char *want, ...)
{
    const char *chunks[16];
    size_t lens[16], n = 0;
    va_list ap;
    char *got;

    va_start(ap, want);
    while ((chunks[n] = va_arg(ap, const char *)) != NULL) {
        lens[n] = strlen(chunks[n]);
        n++;
    }
    va_end(ap);
    got = encode_chunks(chunks, lens, n, top, NULL);
    assert_string_equal(got, want);
    free(got);
}

static uint64_t size_of(const char *msg)
{
    return mailstream_size(msg, strlen(msg));
}

static void test_lf_to_crlf(void **state)
{
    (void)state;
    check(-1, "a\r\nb\r\n.\r\n", "a\nb\n", NULL);
    check(-1, "\r\n\r\n.\r\n", "\n\n", NULL);
    assert_int_equal(size_of("a\nb\n"), 6);
}

static void test_crlf_kept(void **state)
{
    (void)state;
    check(-1, "a\r\nb\r\n.\r\n", "a\r\nb\r\n", NULL);
    check(-1, "a\r\nb\r\nc\r\n.\r\n", "a\r\nb\nc\r\n", NULL);
    assert_int_equal(size_of("a\r\nb\r\n"), 6);
}

static void test_lone_cr(void **state)
{
    (void)state;
    check(-1, "a\rb\r\n.\r\n", "a\rb\n", NULL);
    check(-1, "a\r\r\n.\r\n", "a\r\r\n", NULL);
    /* a CR after a lone CR does not start a line: no stuffing */
    check(-1, "a\r.b\r\n.\r\n", "a\r.b\n", NULL);
    assert_int_equal(size_of("a\rb\n"), 5);
}

static void test_dot_stuffing(void **state)
{
    (void)state;
    check(-1, "..a\r\n.\r\n", ".a\n", NULL);
    check(-1, "a\r\n..\r\nb\r\n.\r\n", "a\n.\nb\n", NULL);
    check(-1, "a\r\n...\r\n.\r\n", "a\r\n..\r\n", NULL);
    check(-1, "a.b\r\n.\r\n", "a.b\n", NULL);
    check(-1, "..\r\n.\r\n", ".", NULL);
    /* stuffing is not counted in the size */
    assert_int_equal(size_of(".a\n..\n"), 8);
}

static void test_dot_across_chunks(void **state)
{
    (void)state;
    check(-1, "a\r\n..b\r\n.\r\n", "a\n", ".b\n", NULL);
    check(-1, "a\r\n..b\r\n.\r\n", "a\n", "", ".", "b\n", NULL);
    check(-1, "a\r\n..b\r\n.\r\n", "a\r\n", ".", "b\r\n", NULL);
    check(-1, "a.\r\n.\r\n", "a", ".\n", NULL);
}

static void test_crlf_across_chunks(void **state)
{
    (void)state;
    check(-1, "a\r\nb\r\n.\r\n", "a\r", "\nb\n", NULL);
    check(-1, "a\r\n..\r\n.\r\n", "a\r", "\n", ".\n", NULL);
    check(-1, "a\rb\r\n.\r\n", "a\r", "b\n", NULL);
    check(-1, "a\r\r\n.\r\n", "a\r", "\r", "\n", NULL);
}

static void test_missing_final_newline(void **state)
{
    (void)state;
    check(-1, "abc\r\n.\r\n", "abc", NULL);
    check(-1, "a\r\nbc\r\n.\r\n", "a\nb", "c", NULL);
    /* a final CR gets the LF that completes its CRLF */
    check(-1, "abc\r\n.\r\n", "abc\r", NULL);
    assert_int_equal(size_of("abc"), 5);
    assert_int_equal(size_of("abc\r"), 5);
}

static void test_empty_message(void **state)
{
    (void)state;
    check(-1, ".\r\n", NULL);
    check(-1, ".\r\n", "", "", NULL);
    assert_int_equal(size_of(""), 0);
}

static const char msg_top[] = "From: a\nSubject: b\n\nline1\nline2\nline3\n";

static void test_top_0(void **state)
{
    (void)state;
    check(0, "From: a\r\nSubject: b\r\n\r\n.\r\n", msg_top, NULL);
    check(0, "H\r\n\r\n.\r\n", "H\r\n\r\nbody\r\n", NULL);
    check(0, "H\r\n\r\n.\r\n", "H\n\r", "\nbody\n", NULL);
    /* no empty line: all of it is header */
    check(0, "H: 1\r\nH: 2\r\n.\r\n", "H: 1\nH: 2", NULL);
    /* a line holding only a lone CR and more is not the separator */
    check(0, "H\r\n\r\r\nx\r\n.\r\n", "H\n\r\r\nx\n", NULL);
    check(0, "\r\n.\r\n", "\nbody\n", NULL);
}

static void test_top_2(void **state)
{
    (void)state;
    check(2, "From: a\r\nSubject: b\r\n\r\nline1\r\nline2\r\n.\r\n",
          msg_top, NULL);
    check(2, "H\r\n\r\n..a\r\nb\r\n.\r\n", "H\n", "\n.a", "\nb\nc\n", NULL);
    check(1, "H\r\n\r\n\r\n.\r\n", "H\n\n\n\nx\n", NULL);
}

static void test_top_larger_than_body(void **state)
{
    (void)state;
    check(10, "From: a\r\nSubject: b\r\n\r\nline1\r\nline2\r\nline3\r\n.\r\n",
          msg_top, NULL);
    check(10, "H\r\n\r\nx\r\n.\r\n", "H\n\nx", NULL);
}

static void test_top_stops_reading(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct mailstream s;

    (void)state;
    mailstream_init(&s, 1);
    assert_true(mailstream_encode(&s, "H\n\n", 3, out));
    assert_false(mailstream_encode(&s, "a\nb\n", 4, out));
    assert_false(mailstream_encode(&s, "c\n", 2, out));
    mailstream_finish(&s, out);
    assert_int_equal(evbuffer_get_length(out), strlen("H\r\n\r\na\r\n.\r\n"));
    evbuffer_free(out);
}

/* ---- random messages against a reference ---- */

/* xorshift64: the same sequence on every run */
static uint32_t rnd(uint64_t *rng, uint32_t n)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return (uint32_t)(*rng % n);
}

struct text {
    char *p;
    size_t len;
    uint64_t counted;   /* octets without stuffing and final line */
};

static void text_add(struct text *t, const char *s, size_t n, bool counted)
{
    memcpy(t->p + t->len, s, n);
    t->len += n;
    if (counted)
        t->counted += n;
}

/* Line by line, the obvious way: what the wire must carry. */
static void reference(const char *msg, size_t len, long top, struct text *t)
{
    size_t pos = 0;
    bool in_body = false;
    long left = top;

    t->p = malloc(2 * len + 8);
    t->len = 0;
    t->counted = 0;
    assert_non_null(t->p);
    while (pos < len) {
        const char *line = msg + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (nl && n > 0 && line[n - 1] == '\r')
            n--;                            /* CRLF: the CR is the line end */
        if (n > 0 && line[0] == '.')
            text_add(t, ".", 1, false);
        text_add(t, line, n, true);
        if (!nl) {
            if (line[n - 1] == '\r')
                text_add(t, "\n", 1, true);
            else
                text_add(t, "\r\n", 2, true);
            break;
        }
        text_add(t, "\r\n", 2, true);
        if (!in_body) {
            if (n == 0) {
                in_body = true;
                if (left == 0)
                    break;
            }
        } else if (left > 0 && --left == 0) {
            break;
        }
    }
    text_add(t, ".\r\n", 3, false);
}

/* Lines of the output starting with '.', except the final one. */
static size_t count_stuffing(const char *out, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i + 3 < len; i++)
        if ((i == 0 || out[i - 1] == '\n') && out[i] == '.')
            n++;
    return n;
}

static char *random_message(uint64_t *rng, size_t *len)
{
    static const char alphabet[] = "ab .\r\n\n\n.";
    size_t n = rnd(rng, 5) == 0 ? rnd(rng, 8) : rnd(rng, 400);
    char *m = malloc(n + 1);

    assert_non_null(m);
    for (size_t i = 0; i < n; i++)
        m[i] = alphabet[rnd(rng, sizeof(alphabet) - 1)];
    m[n] = '\0';
    *len = n;
    return m;
}

/* Splits msg into random chunks (some empty) and encodes them. */
static char *encode_random_chunks(uint64_t *rng, const char *msg,
                                  size_t len, long top, uint64_t *octets)
{
    const char *chunks[1024];
    size_t lens[1024], n = 0, pos = 0;

    while (pos < len && n < 1023) {
        size_t max = rnd(rng, 2) ? 3 : 40;
        size_t c = rnd(rng, 4) == 0 ? 0 : 1 + rnd(rng, (uint32_t)max);
        if (c > len - pos)
            c = len - pos;
        chunks[n] = msg + pos;
        lens[n++] = c;
        pos += c;
    }
    chunks[n] = msg + pos;
    lens[n++] = len - pos;
    return encode_chunks(chunks, lens, n, top, octets);
}

static void test_random_against_reference(void **state)
{
    uint64_t rng = 0x1234567887654321ULL;

    (void)state;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len, out_len;
        char *msg = random_message(&rng, &len);
        long top = rnd(&rng, 3) == 0 ? -1 : (long)rnd(&rng, 5);
        struct text want;
        uint64_t octets;
        char *got = encode_random_chunks(&rng, msg, len, top, &octets);

        reference(msg, len, top, &want);
        out_len = strlen(got);
        assert_int_equal(out_len, want.len);
        assert_memory_equal(got, want.p, want.len);
        assert_int_equal(octets, want.counted);
        if (top < 0) {
            assert_int_equal(mailstream_size(msg, len), octets);
            assert_int_equal(mailstream_size(msg, len),
                             out_len - count_stuffing(got, out_len) - 3);
        }
        free(want.p);
        free(got);
        free(msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_to_crlf),
        cmocka_unit_test(test_crlf_kept),
        cmocka_unit_test(test_lone_cr),
        cmocka_unit_test(test_dot_stuffing),
        cmocka_unit_test(test_dot_across_chunks),
        cmocka_unit_test(test_crlf_across_chunks),
        cmocka_unit_test(test_missing_final_newline),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_top_0),
        cmocka_unit_test(test_top_2),
        cmocka_unit_test(test_top_larger_than_body),
        cmocka_unit_test(test_top_stops_reading),
        cmocka_unit_test(test_random_against_reference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
