/* test_auth.c — unit tests for src/auth/auth.c: the password and APOP
 * checks against a real users file, the same outcome for unknown users and
 * wrong passwords, growing delays, and TEMPFAIL when the users file cannot
 * be read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/password.h"
#include "auth/throttle.h"
#include "auth/userdb.h"
#include "core/config.h"

/* RFC 1939 section 7's example. */
#define APOP_TIMESTAMP "<1896.697170952@dbc.mtview.ca.us>"
#define APOP_SECRET "tanstaaf"
#define APOP_DIGEST "c4c9334bac560ecc979e58001b3e22fb"

/* A cheap known hash of "secret" (bcrypt cost 5) for most users. */
#define BCRYPT_SECRET "$2y$05$Ax/Tcn9C4O2xUF0gv8uPLeg4VIxa2ReYR1MRYZXiablNYcXmlVzMO"

#define IP "192.0.2.1"

struct fixture {
    char dir[PATH_MAX];
    char broken[PATH_MAX];      /* a data_dir whose users is a directory */
    struct config cfg;
    struct config broken_cfg;
};

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char hash[PASSWORD_HASH_MAX];
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/pobox-auth-XXXXXX", base);
    if (!mkdtemp(f->dir))
        return -1;
    if (snprintf(f->broken, sizeof f->broken, "%s/broken", f->dir) >= PATH_MAX ||
        mkdir(f->broken, 0700) < 0)
        return -1;
    char users_dir[PATH_MAX];
    if (snprintf(users_dir, sizeof users_dir, "%s/users", f->broken) >= PATH_MAX ||
        mkdir(users_dir, 0700) < 0)
        return -1;

    /* alice: argon2id (as `pobox user add --apop` makes), with APOP secret;
     * bob: an imported bcrypt hash, no APOP secret. */
    if (!password_hash("right horse", hash, sizeof hash) ||
        userdb_put(f->dir, "alice@example.com",
                   &(struct userdb_secrets){ .hash = hash,
                                             .apop_secret = APOP_SECRET }) < 0 ||
        userdb_put(f->dir, "bob@example.com",
                   &(struct userdb_secrets){ .hash = BCRYPT_SECRET }) < 0)
        return -1;

    f->cfg.data_dir = f->dir;
    f->cfg.failure_delay_ms = 100;
    f->cfg.max_failure_delay_ms = 1000;
    f->broken_cfg = f->cfg;
    f->broken_cfg.data_dir = f->broken;
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    throttle_reset_all();
    return 0;
}

static int reset(void **state)
{
    throttle_reset_all();
    return 0;
}

/* ---- passwords ---------------------------------------------------------- */

static void test_password_ok(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_password(&f->cfg, IP, "Alice@Example.COM", "right horse", &out);
    assert_int_equal(out.result, AUTH_OK);
    assert_string_equal(out.user, "alice@example.com");
    assert_int_equal(out.delay_ms, 0);

    auth_check_password(&f->cfg, IP, "bob@example.com", "secret", &out);
    assert_int_equal(out.result, AUTH_OK);
    assert_string_equal(out.user, "bob@example.com");
}

static void test_wrong_and_unknown_look_alike(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome wrong, unknown, invalid;

    auth_check_password(&f->cfg, "198.51.100.1", "bob@example.com", "Secret", &wrong);
    auth_check_password(&f->cfg, "198.51.100.2", "nobody@example.com", "secret", &unknown);
    auth_check_password(&f->cfg, "198.51.100.3", "not an address", "secret", &invalid);

    assert_int_equal(wrong.result, AUTH_FAIL);
    assert_int_equal(unknown.result, AUTH_FAIL);
    assert_int_equal(invalid.result, AUTH_FAIL);
    assert_string_equal(wrong.reason, "wrong password");
    assert_string_equal(unknown.reason, "unknown user");
    assert_string_equal(invalid.reason, "unknown user");
    /* what a client can see is the same: result, delay, no user */
    assert_int_equal(wrong.delay_ms, 100);
    assert_int_equal(unknown.delay_ms, 100);
    assert_int_equal(invalid.delay_ms, 100);
    assert_string_equal(wrong.user, "");
    assert_string_equal(unknown.user, "");
}

static void test_delays_grow_and_success_clears(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_password(&f->cfg, IP, "bob@example.com", "guess1", &out);
    assert_int_equal(out.delay_ms, 100);
    auth_check_password(&f->cfg, IP, "bob@example.com", "guess2", &out);
    assert_int_equal(out.delay_ms, 200);
    /* same account, other case: the same counter */
    auth_check_password(&f->cfg, "203.0.113.5", "BOB@example.com", "guess3", &out);
    assert_int_equal(out.delay_ms, 400);
    assert_int_equal(throttle_pending("203.0.113.77", "bob@example.com", 100, 1000), 400);

    auth_check_password(&f->cfg, IP, "bob@example.com", "secret", &out);
    assert_int_equal(out.result, AUTH_OK);
    assert_int_equal(out.delay_ms, 0);
    assert_int_equal(throttle_pending(IP, "bob@example.com", 100, 1000), 0);

    /* the cap */
    for (int i = 0; i < 6; i++)
        auth_check_password(&f->cfg, IP, "bob@example.com", "guess", &out);
    assert_int_equal(out.delay_ms, 1000);
}

static void test_null_password(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_password(&f->cfg, IP, "bob@example.com", NULL, &out);
    assert_int_equal(out.result, AUTH_FAIL);
    auth_check_password(&f->cfg, IP, NULL, NULL, &out);
    assert_int_equal(out.result, AUTH_FAIL);
    assert_string_equal(out.reason, "unknown user");
}

/* ---- APOP --------------------------------------------------------------- */

static void test_apop_right(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_apop(&f->cfg, IP, "alice@example.com", APOP_TIMESTAMP,
                    APOP_DIGEST, &out);
    assert_int_equal(out.result, AUTH_OK);
    assert_string_equal(out.user, "alice@example.com");
    assert_int_equal(out.delay_ms, 0);

    auth_check_apop(&f->cfg, IP, "ALICE@example.com", APOP_TIMESTAMP,
                    "C4C9334BAC560ECC979E58001B3E22FB", &out);
    assert_int_equal(out.result, AUTH_OK);
}

static void test_apop_wrong(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_apop(&f->cfg, IP, "alice@example.com", APOP_TIMESTAMP,
                    "c4c9334bac560ecc979e58001b3e22fc", &out);
    assert_int_equal(out.result, AUTH_FAIL);
    assert_int_equal(out.delay_ms, 100);
    assert_string_equal(out.user, "");
    /* right digest for another timestamp */
    auth_check_apop(&f->cfg, IP, "alice@example.com",
                    "<1896.697170953@dbc.mtview.ca.us>", APOP_DIGEST, &out);
    assert_int_equal(out.result, AUTH_FAIL);
    assert_int_equal(out.delay_ms, 200);
}

static void test_apop_malformed(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;
    static const char *bad[] = {
        "", "c4c9334bac560ecc979e58001b3e22f",      /* 31 */
        "c4c9334bac560ecc979e58001b3e22fb0",        /* 33 */
        "g4c9334bac560ecc979e58001b3e22fb",         /* not hex */
        " c4c9334bac560ecc979e58001b3e22f",
        "c4c9334bac560ecc979e58001b3e22f\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        auth_check_apop(&f->cfg, IP, "alice@example.com", APOP_TIMESTAMP,
                        bad[i], &out);
        assert_int_equal(out.result, AUTH_FAIL);
    }
    auth_check_apop(&f->cfg, IP, "alice@example.com", APOP_TIMESTAMP, NULL, &out);
    assert_int_equal(out.result, AUTH_FAIL);
    auth_check_apop(&f->cfg, IP, "alice@example.com", NULL, APOP_DIGEST, &out);
    assert_int_equal(out.result, AUTH_FAIL);
}

static void test_apop_no_secret_or_unknown(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_apop(&f->cfg, IP, "bob@example.com", APOP_TIMESTAMP,
                    APOP_DIGEST, &out);
    assert_int_equal(out.result, AUTH_FAIL);
    assert_string_equal(out.reason, "no apop secret");
    assert_int_equal(out.delay_ms, 100);

    auth_check_apop(&f->cfg, "198.51.100.9", "nobody@example.com",
                    APOP_TIMESTAMP, APOP_DIGEST, &out);
    assert_int_equal(out.result, AUTH_FAIL);
    assert_string_equal(out.reason, "unknown user");
    assert_int_equal(out.delay_ms, 100);
}

/* ---- unreadable users file ---------------------------------------------- */

static void test_tempfail_when_users_unreadable(void **state)
{
    struct fixture *f = *state;
    struct auth_outcome out;

    auth_check_password(&f->broken_cfg, IP, "alice@example.com", "right horse", &out);
    assert_int_equal(out.result, AUTH_TEMPFAIL);
    assert_string_equal(out.reason, "userdb unavailable");
    assert_int_equal(out.delay_ms, 0);
    assert_string_equal(out.user, "");

    auth_check_apop(&f->broken_cfg, IP, "alice@example.com", APOP_TIMESTAMP,
                    APOP_DIGEST, &out);
    assert_int_equal(out.result, AUTH_TEMPFAIL);
    /* no failure was counted against the user */
    assert_int_equal(throttle_pending(IP, "alice@example.com", 100, 1000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_password_ok, reset),
        cmocka_unit_test_setup(test_wrong_and_unknown_look_alike, reset),
        cmocka_unit_test_setup(test_delays_grow_and_success_clears, reset),
        cmocka_unit_test_setup(test_null_password, reset),
        cmocka_unit_test_setup(test_apop_right, reset),
        cmocka_unit_test_setup(test_apop_wrong, reset),
        cmocka_unit_test_setup(test_apop_malformed, reset),
        cmocka_unit_test_setup(test_apop_no_secret_or_unknown, reset),
        cmocka_unit_test_setup(test_tempfail_when_users_unreadable, reset),
    };
    return cmocka_run_group_tests_name("auth", tests, group_setup, group_teardown);
}
