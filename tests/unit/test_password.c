/* test_password.c — unit tests for src/auth/password.c: new argon2id hashes,
 * the imported schemes that must verify, and everything that must not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "auth/password.h"

/* Known hashes of "secret", made outside pobox:
 * openssl passwd -6 / -5 -salt saltsalt secret; bcrypt and yescrypt with
 * libxcrypt's crypt_gensalt_rn + crypt_r (checked with Python's crypt);
 * argon2 with the reference libargon2 at small costs. */
#define SHA512_SECRET "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"
#define SHA256_SECRET "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA"
#define BCRYPT_2Y_SECRET "$2y$05$Ax/Tcn9C4O2xUF0gv8uPLeg4VIxa2ReYR1MRYZXiablNYcXmlVzMO"
#define BCRYPT_2B_SECRET "$2b$05$Ax/Tcn9C4O2xUF0gv8uPLeg4VIxa2ReYR1MRYZXiablNYcXmlVzMO"
#define YESCRYPT_SECRET "$y$j9T$9.HJux7ldvkAMpbc5nS2qg3UZewvIYXL1WOnmT/DVN6$7Al.7rBtJzZYIO50anUGQDsWCjAOFdaLgJ5bI6wBY61"
#define ARGON2ID_SECRET "$argon2id$v=19$m=256,t=2,p=1$cG9ib3gtdGVzdC1zYWx0IQ$11dwf+4g4UzRksOVZ4tW6Hy/klaU4eDb+KQsysJfpCA"
#define ARGON2I_SECRET "$argon2i$v=19$m=256,t=2,p=1$cG9ib3gtdGVzdC1zYWx0IQ$wQKKPpZPGNoTjPy5ziMKdJjMYdrqMF+12Apx6nkfCps"

static void test_hash_round_trip(void **state)
{
    char h1[PASSWORD_HASH_MAX], h2[PASSWORD_HASH_MAX];

    assert_true(password_hash("correct horse", h1, sizeof h1));
    static const char prefix[] = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$";
    assert_int_equal(strncmp(h1, prefix, strlen(prefix)), 0);
    assert_true(password_verify("correct horse", h1));
    assert_false(password_verify("correct horsE", h1));
    assert_false(password_verify("", h1));
    /* the bare string, as Dovecot may store it, verifies too */
    assert_true(password_verify("correct horse", h1 + strlen("{ARGON2ID}")));
    /* a fresh salt every time */
    assert_true(password_hash("correct horse", h2, sizeof h2));
    assert_string_not_equal(h1, h2);
    assert_null(strstr(h1, "correct horse"));
}

static void test_hash_small_buffer(void **state)
{
    char small[40];

    memset(small, 'x', sizeof small);
    assert_false(password_hash("pw", small, sizeof small));
    assert_false(password_hash(NULL, small, sizeof small));
}

static void check_vector(const char *stored)
{
    assert_true(password_verify("secret", stored));
    assert_false(password_verify("Secret", stored));
    assert_false(password_verify("secret ", stored));
    assert_false(password_verify("", stored));
}

static void test_sha512_crypt(void **state)
{
    check_vector(SHA512_SECRET);
    check_vector("{SHA512-CRYPT}" SHA512_SECRET);
    check_vector("{sha512-crypt}" SHA512_SECRET);
    check_vector("{CRYPT}" SHA512_SECRET);
}

static void test_sha256_crypt(void **state)
{
    check_vector(SHA256_SECRET);
    check_vector("{SHA256-CRYPT}" SHA256_SECRET);
}

static void test_bcrypt(void **state)
{
    check_vector(BCRYPT_2Y_SECRET);
    check_vector(BCRYPT_2B_SECRET);
    check_vector("{BLF-CRYPT}" BCRYPT_2Y_SECRET);
    check_vector("{CRYPT}" BCRYPT_2B_SECRET);
}

static void test_yescrypt(void **state)
{
    check_vector(YESCRYPT_SECRET);
    check_vector("{CRYPT}" YESCRYPT_SECRET);
}

static void test_argon2_vectors(void **state)
{
    check_vector(ARGON2ID_SECRET);
    check_vector("{ARGON2ID}" ARGON2ID_SECRET);
    check_vector(ARGON2I_SECRET);
    check_vector("{ARGON2I}" ARGON2I_SECRET);
}

static void test_scheme_must_match_hash(void **state)
{
    assert_false(password_verify("secret", "{SHA512-CRYPT}" YESCRYPT_SECRET));
    assert_false(password_verify("secret", "{BLF-CRYPT}" SHA512_SECRET));
    assert_false(password_verify("secret", "{SHA256-CRYPT}" SHA512_SECRET));
    assert_false(password_verify("secret", "{ARGON2ID}" ARGON2I_SECRET));
    assert_false(password_verify("secret", "{CRYPT}" ARGON2ID_SECRET));
}

static void test_plaintext_and_weak_refused(void **state)
{
    static const char *refused[] = {
        "{PLAIN}secret",
        "{plain}secret",
        "{CLEARTEXT}secret",
        "secret",
        "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
        "{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
        "{CRYPT}saHW9GdxihkGQ",     /* DES crypt("secret", "sa") */
        "saHW9GdxihkGQ",
        "$1$saltsalt$9xy1btjgzLYfb7hivXtC//",     /* md5crypt of "secret" */
        "{CRYPT}$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
        ("{UNKNOWN}" SHA512_SECRET),
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_false(password_verify("secret", refused[i]));
}

static void test_garbage_refused(void **state)
{
    static const char *garbage[] = {
        "", "{", "{}", "{SHA512-CRYPT", "{SHA512-CRYPT}", "$6$", "$6$saltsalt$",
        "$6$saltsalt$short", "$2y$05$tooshort", "$y$", "$argon2id$",
        "$argon2id$v=19$m=256,t=2,p=1$!!!$???",
        "{ARGON2ID}$argon2id$garbage",
        "*0", "*",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        assert_false(password_verify("secret", garbage[i]));
        assert_false(password_verify("", garbage[i]));
    }
    assert_false(password_verify(NULL, SHA512_SECRET));
    assert_false(password_verify("secret", NULL));
}

static void test_dummy_is_false(void **state)
{
    assert_false(password_verify_dummy("pobox dummy password"));
    assert_false(password_verify_dummy(""));
    assert_false(password_verify_dummy(NULL));
}

static void test_wipe(void **state)
{
    char buf[32];

    memset(buf, 'A', sizeof buf);
    password_wipe(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
    password_wipe(NULL, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_round_trip),
        cmocka_unit_test(test_hash_small_buffer),
        cmocka_unit_test(test_sha512_crypt),
        cmocka_unit_test(test_sha256_crypt),
        cmocka_unit_test(test_bcrypt),
        cmocka_unit_test(test_yescrypt),
        cmocka_unit_test(test_argon2_vectors),
        cmocka_unit_test(test_scheme_must_match_hash),
        cmocka_unit_test(test_plaintext_and_weak_refused),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_dummy_is_false),
        cmocka_unit_test(test_wipe),
    };
    return cmocka_run_group_tests_name("password", tests, NULL, NULL);
}
