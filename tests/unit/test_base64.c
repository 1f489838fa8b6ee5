/* test_base64.c — unit tests for src/core/base64.c: RFC 4648 section 10
 * vectors, encode/decode round trips for every short length and every octet
 * value, and the strict decoder's refusals (length, padding, alphabet,
 * blanks, NUL inside the given length). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

/* ---- helpers ------------------------------------------------------------ */

/* Decodes text[0..len) and expects success with exactly want[0..wantlen). */
static void expect_decode(const char *text, size_t len, const void *want,
                          size_t wantlen)
{
    unsigned char *out = NULL;
    size_t outlen = (size_t)-1;

    assert_true(base64_decode(text, len, &out, &outlen));
    assert_non_null(out);
    assert_int_equal(outlen, wantlen);
    if (wantlen)
        assert_memory_equal(out, want, wantlen);
    assert_int_equal(out[outlen], '\0');     /* NUL-terminated after the data */
    free(out);
}

/* Expects text[0..len) to be refused, leaving *out untouched. */
static void expect_refused(const char *text, size_t len)
{
    unsigned char sentinel;
    unsigned char *out = &sentinel;
    size_t outlen = 12345;

    if (base64_decode(text, len, &out, &outlen)) {
        fail_msg("decoder accepted \"%.*s\" (len %zu)", (int)len, text, len);
        free(out);
    }
    assert_ptr_equal(out, &sentinel);
}

static void expect_refused_str(const char *text)
{
    expect_refused(text, strlen(text));
}

/* ---- RFC 4648 section 10 ------------------------------------------------ */

static const struct {
    const char *plain, *b64;
} RFC4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};
#define N_RFC4648 (sizeof RFC4648 / sizeof RFC4648[0])

static void test_rfc4648_encode(void **state)
{
    for (size_t i = 0; i < N_RFC4648; i++) {
        char *enc = base64_encode(RFC4648[i].plain, strlen(RFC4648[i].plain));
        assert_non_null(enc);
        assert_string_equal(enc, RFC4648[i].b64);
        free(enc);
    }
}

static void test_rfc4648_decode(void **state)
{
    for (size_t i = 0; i < N_RFC4648; i++)
        expect_decode(RFC4648[i].b64, strlen(RFC4648[i].b64), RFC4648[i].plain,
                      strlen(RFC4648[i].plain));
}

/* ---- round trips -------------------------------------------------------- */

static void round_trip(const unsigned char *data, size_t len)
{
    char *enc = base64_encode(data, len);
    assert_non_null(enc);
    assert_int_equal(strlen(enc), 4 * ((len + 2) / 3));
    for (size_t i = 0; enc[i]; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789+/=", enc[i]));
    expect_decode(enc, strlen(enc), data, len);
    free(enc);
}

static void test_round_trip_empty(void **state)
{
    char *enc = base64_encode("", 0);
    assert_non_null(enc);
    assert_string_equal(enc, "");
    free(enc);

    /* decoding nothing gives an allocated, NUL-terminated empty buffer */
    unsigned char *out = NULL;
    size_t outlen = 99;
    assert_true(base64_decode("", 0, &out, &outlen));
    assert_non_null(out);
    assert_int_equal(outlen, 0);
    assert_int_equal(out[0], '\0');
    free(out);
}

static void test_round_trip_lengths_0_to_10(void **state)
{
    unsigned char buf[11];
    srand(4648);
    for (size_t len = 0; len <= 10; len++) {
        for (int rep = 0; rep < 50; rep++) {
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)rand();
            round_trip(buf, len);
        }
        /* and the extremes: all zero (NULs inside the data) and all 0xff */
        memset(buf, 0, sizeof buf);
        round_trip(buf, len);
        memset(buf, 0xff, sizeof buf);
        round_trip(buf, len);
    }
}

static void test_round_trip_all_octets(void **state)
{
    unsigned char buf[256 * 3];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + i / 256);
    for (size_t len = 0; len <= sizeof buf; len += 37)
        round_trip(buf, len);
    round_trip(buf, sizeof buf);
}

static void test_decode_binary(void **state)
{
    static const unsigned char zeros[3] = {0, 0, 0};
    static const unsigned char ff[3] = {0xff, 0xff, 0xff};
    static const unsigned char nul_in_middle[] = {'a', 0, 'b'};

    expect_decode("AAAA", 4, zeros, 3);
    expect_decode("////", 4, ff, 3);
    expect_decode("YQBi", 4, nul_in_middle, 3);  /* outlen counts past NULs */
    expect_decode("+/+/", 4, "\xfb\xff\xbf", 3);
}

/* The decoder reads exactly len characters, not up to a NUL. */
static void test_decode_explicit_length(void **state)
{
    expect_decode("Zm9vYmFy", 4, "foo", 3);
    expect_decode("Zm9vYmFyJUNK", 8, "foobar", 6);
    expect_decode("Zg==garbage!", 4, "f", 1);
    expect_decode("", 0, "", 0);
    expect_decode("Zm9v", 0, "", 0);
}

/* ---- strict refusals ---------------------------------------------------- */

static void test_refuse_length_not_multiple_of_4(void **state)
{
    static const char *bad[] = {
        "Z", "Zg", "Zg=", "Zm9", "Zm9vY", "Zm9vYg", "Zm9vYg=", "Zm9vYmFy=",
        "=", "==", "===", "Zm9vYmFyZ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused_str(bad[i]);
    /* a valid string cut short by the given length */
    expect_refused("Zm9v", 3);
    expect_refused("Zm9vYmFy", 7);
}

static void test_refuse_misplaced_padding(void **state)
{
    static const char *bad[] = {
        "====",             /* nothing but padding */
        "A===",             /* three pad characters */
        "Z===",
        "Z=g=",             /* '=' before data */
        "=Zg=",
        "Zg=A",             /* '=' then data */
        "Zg==Zg==",         /* padding in the middle of the string */
        "Zm8=Zm9v",
        "Zg==Zm8=",
        "====Zm9v",
        "Zm9v====",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused_str(bad[i]);
}

static void test_refuse_outside_alphabet(void **state)
{
    static const char *bad[] = {
        "Zm9 ",  " Zm9",  "Zm 9",  "Zm9v Zg=",     /* space */
        "Zm9\r", "Zm9\n", "Zm9\t",                 /* CR, LF, TAB */
        "Zm9vYg\r\n",   "Zm9v\r\nYg==",            /* line breaks */
        "Zm9-",  "Zm9_",  "-_-_",                  /* base64url alphabet */
        "Zm9.",  "Zm9*",  "Zm9!",  "Zm9:",  "Zm9\\",
        "Zm9\x80", "Zm9\xff", "Zg\xc3\xa9",        /* 8-bit */
        "Zm9v\x7f===",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused_str(bad[i]);
}

static void test_refuse_nul_inside_length(void **state)
{
    /* a NUL inside the given length is not an end of string: it is a
     * character outside the alphabet */
    expect_refused("Zm\0v", 4);
    expect_refused("\0\0\0\0", 4);
    expect_refused("Zg=\0", 4);
    expect_refused("Zm9vYmF\0", 8);
    expect_refused("Zm9v\0\0\0\0", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode),
        cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_round_trip_empty),
        cmocka_unit_test(test_round_trip_lengths_0_to_10),
        cmocka_unit_test(test_round_trip_all_octets),
        cmocka_unit_test(test_decode_binary),
        cmocka_unit_test(test_decode_explicit_length),
        cmocka_unit_test(test_refuse_length_not_multiple_of_4),
        cmocka_unit_test(test_refuse_misplaced_padding),
        cmocka_unit_test(test_refuse_outside_alphabet),
        cmocka_unit_test(test_refuse_nul_inside_length),
    };
    return cmocka_run_group_tests_name("base64", tests, NULL, NULL);
}
