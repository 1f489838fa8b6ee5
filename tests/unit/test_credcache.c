/* test_credcache.c — unit tests for src/auth/credcache.c: a remembered
 * success matches only the same user, stored hash and password within the
 * TTL; a TTL of 0 remembers nothing; and through auth_check_password, a
 * changed password in the users file stops the old one at once while a
 * wrong password is never let through by the cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/credcache.h"
#include "auth/password.h"
#include "auth/throttle.h"
#include "auth/userdb.h"
#include "core/config.h"

#define HASH_A "$2y$05$Ax/Tcn9C4O2xUF0gv8uPLeg4VIxa2ReYR1MRYZXiablNYcXmlVzMO"
#define HASH_B "{SHA512-CRYPT}$6$other$salt"

static int reset(void **state)
{
    credcache_clear();
    return 0;
}

static void test_hit_after_store(void **state)
{
    assert_false(credcache_check("a@x.org", HASH_A, "secret", 3600));
    credcache_store("a@x.org", HASH_A, "secret", 3600);
    assert_true(credcache_check("a@x.org", HASH_A, "secret", 3600));
}

static void test_other_password_user_or_hash_miss(void **state)
{
    credcache_store("a@x.org", HASH_A, "secret", 3600);
    assert_false(credcache_check("a@x.org", HASH_A, "secreT", 3600));
    assert_false(credcache_check("a@x.org", HASH_A, "", 3600));
    assert_false(credcache_check("b@x.org", HASH_A, "secret", 3600));
    assert_false(credcache_check("a@x.org", HASH_B, "secret", 3600));
    /* the parts are separated: moving a byte between them is no match */
    credcache_store("ab@x.org", "c", "d", 3600);
    assert_false(credcache_check("ab@x.org", "", "cd", 3600));
}

static void test_ttl_zero_remembers_nothing(void **state)
{
    credcache_store("a@x.org", HASH_A, "secret", 0);
    assert_false(credcache_check("a@x.org", HASH_A, "secret", 3600));
    credcache_store("a@x.org", HASH_A, "secret", 3600);
    assert_false(credcache_check("a@x.org", HASH_A, "secret", 0));
}

static void test_expired_entry_misses(void **state)
{
    credcache_store("a@x.org", HASH_A, "secret", 1);
    assert_true(credcache_check("a@x.org", HASH_A, "secret", 1));
    sleep(2);
    assert_false(credcache_check("a@x.org", HASH_A, "secret", 1));
}

static void test_clear(void **state)
{
    credcache_store("a@x.org", HASH_A, "secret", 3600);
    credcache_clear();
    assert_false(credcache_check("a@x.org", HASH_A, "secret", 3600));
}

/* Through auth_check_password with a real users file. */
static void test_password_change_stops_old_password(void **state)
{
    char dir[PATH_MAX], hash[PASSWORD_HASH_MAX];
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/pobox-credcache-XXXXXX", base);
    assert_non_null(mkdtemp(dir));
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.data_dir = dir;
    cfg.auth_cache_ttl = 3600;
    struct auth_outcome out;

    struct userdb_secrets sec = {.hash = HASH_A};
    assert_int_equal(userdb_put(dir, "c@x.org", &sec), 0);
    auth_check_password(&cfg, "192.0.2.9", "c@x.org", "secret", &out);
    assert_int_equal(out.result, AUTH_OK);
    auth_check_password(&cfg, "192.0.2.9", "c@x.org", "secret", &out);
    assert_int_equal(out.result, AUTH_OK);                  /* from the cache */
    auth_check_password(&cfg, "192.0.2.9", "c@x.org", "wrong", &out);
    assert_int_equal(out.result, AUTH_FAIL);

    assert_true(password_hash("new-secret", hash, sizeof hash));
    sec.hash = hash;
    assert_int_equal(userdb_put(dir, "c@x.org", &sec), 0);
    auth_check_password(&cfg, "192.0.2.9", "c@x.org", "secret", &out);
    assert_int_equal(out.result, AUTH_FAIL);
    auth_check_password(&cfg, "192.0.2.9", "c@x.org", "new-secret", &out);
    assert_int_equal(out.result, AUTH_OK);

    assert_int_equal(userdb_del(dir, "c@x.org"), 0);
    auth_check_password(&cfg, "192.0.2.9", "c@x.org", "new-secret", &out);
    assert_int_equal(out.result, AUTH_FAIL);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hit_after_store, reset),
        cmocka_unit_test_setup(test_other_password_user_or_hash_miss, reset),
        cmocka_unit_test_setup(test_ttl_zero_remembers_nothing, reset),
        cmocka_unit_test_setup(test_expired_entry_misses, reset),
        cmocka_unit_test_setup(test_clear, reset),
        cmocka_unit_test_setup(test_password_change_stops_old_password, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
