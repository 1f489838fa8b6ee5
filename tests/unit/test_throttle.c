/* test_throttle.c — unit tests for src/auth/throttle.c: growing and capped
 * delays, resets on success, per-address and per-account counters, decay
 * after a quiet hour and the bound on memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "auth/throttle.h"

/* Test hook in throttle.c (not part of throttle.h). */
void throttle_test_advance(int64_t seconds);

#define BASE 100
#define MAX 10000

static int reset(void **state)
{
    throttle_reset_all();
    return 0;
}

static void test_growing_delays(void **state)
{
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 0);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 100);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 200);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 400);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 800);
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 800);
    /* pending does not count as a failure */
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 800);
}

static void test_cap(void **state)
{
    uint64_t d = 0;

    for (int i = 0; i < 7; i++)
        d = throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX);
    assert_int_equal(d, 6400);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), MAX);
    /* far past 64 doublings: still the cap, no overflow */
    for (int i = 0; i < 200; i++)
        d = throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX);
    assert_int_equal(d, MAX);
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), MAX);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", UINT64_MAX / 2,
                                   UINT64_MAX - 1), UINT64_MAX - 1);
}

static void test_success_resets(void **state)
{
    for (int i = 0; i < 5; i++)
        throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX);
    throttle_success("192.0.2.1", "alice@example.com");
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 0);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 100);
}

static void test_separate_ips(void **state)
{
    for (int i = 0; i < 4; i++)
        throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX);
    assert_int_equal(throttle_pending("198.51.100.7", "bob@example.com", BASE, MAX), 0);
    assert_int_equal(throttle_fail("198.51.100.7", "bob@example.com", BASE, MAX), 100);
    assert_int_equal(throttle_fail("2001:db8::1", "carol@example.com", BASE, MAX), 100);
    /* the first address is still slowed down, whatever account it tries */
    assert_int_equal(throttle_pending("192.0.2.1", "dave@example.com", BASE, MAX), 800);
    assert_int_equal(throttle_fail("192.0.2.1", "dave@example.com", BASE, MAX), 1600);
}

static void test_account_delay_from_other_ip(void **state)
{
    for (int i = 0; i < 3; i++)
        throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX);
    /* a new address guessing the same account pays the account's delay */
    assert_int_equal(throttle_pending("203.0.113.9", "alice@example.com", BASE, MAX), 400);
    assert_int_equal(throttle_fail("203.0.113.9", "alice@example.com", BASE, MAX), 800);
    /* a success from the new address clears the account and that address */
    throttle_success("203.0.113.9", "alice@example.com");
    assert_int_equal(throttle_pending("203.0.113.9", "alice@example.com", BASE, MAX), 0);
    /* the first address keeps its own count */
    assert_int_equal(throttle_pending("192.0.2.1", "bob@example.com", BASE, MAX), 400);
}

static void test_base_zero(void **state)
{
    for (int i = 0; i < 10; i++)
        assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", 0, MAX), 0);
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", 0, MAX), 0);
}

static void test_null_and_empty_keys(void **state)
{
    assert_int_equal(throttle_fail(NULL, "alice@example.com", BASE, MAX), 100);
    assert_int_equal(throttle_fail("192.0.2.1", NULL, BASE, MAX), 100);
    assert_int_equal(throttle_fail("", "", BASE, MAX), 0);
    assert_int_equal(throttle_pending(NULL, NULL, BASE, MAX), 0);
    throttle_success(NULL, NULL);
    assert_int_equal(throttle_pending(NULL, "alice@example.com", BASE, MAX), 100);
}

static void test_decay_after_quiet_hour(void **state)
{
    for (int i = 0; i < 4; i++)
        throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX);
    throttle_test_advance(3599);
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 800);
    /* a failure now restarts the hour */
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 1600);
    throttle_test_advance(3599);
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 1600);
    throttle_test_advance(1);
    assert_int_equal(throttle_pending("192.0.2.1", "alice@example.com", BASE, MAX), 0);
    assert_int_equal(throttle_fail("192.0.2.1", "alice@example.com", BASE, MAX), 100);
}

static void test_memory_is_bounded(void **state)
{
    char ip[32];

    throttle_fail("192.0.2.1", NULL, BASE, MAX);
    throttle_fail("192.0.2.1", NULL, BASE, MAX);
    /* 100,000 other addresses push the oldest entry out */
    for (int i = 0; i < 100000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        throttle_fail(ip, NULL, BASE, MAX);
    }
    assert_int_equal(throttle_pending("192.0.2.1", NULL, BASE, MAX), 0);
    /* the newest are still there */
    assert_int_equal(throttle_pending("10.1.134.159", NULL, BASE, MAX), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_growing_delays, reset),
        cmocka_unit_test_setup(test_cap, reset),
        cmocka_unit_test_setup(test_success_resets, reset),
        cmocka_unit_test_setup(test_separate_ips, reset),
        cmocka_unit_test_setup(test_account_delay_from_other_ip, reset),
        cmocka_unit_test_setup(test_base_zero, reset),
        cmocka_unit_test_setup(test_null_and_empty_keys, reset),
        cmocka_unit_test_setup(test_decay_after_quiet_hour, reset),
        cmocka_unit_test_setup(test_memory_is_bounded, reset),
    };
    int rc = cmocka_run_group_tests_name("throttle", tests, NULL, NULL);
    throttle_reset_all();
    return rc;
}
