/* test_userdb.c — unit tests for src/auth/userdb.c: address rules, put /
 * lookup / del / list, what the users file looks like afterwards (APOP and
 * SCRAM extra fields included), reloads after outside edits, and lookups
 * from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/password.h"
#include "auth/userdb.h"

#define HASH_A "{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"
#define HASH_B "$2y$05$Ax/Tcn9C4O2xUF0gv8uPLeg4VIxa2ReYR1MRYZXiablNYcXmlVzMO"
/* SCRAM credentials of "pencil" with the salts of RFC 5802 and RFC 7677 */
#define SCRAM1 "4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,D+CSWLOshSulAsxiupA+qs2/fTE="
#define SCRAM256 "4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* ---- fixtures ----------------------------------------------------------- */

struct fixture {
    char dir[PATH_MAX];     /* fresh temporary data_dir */
    char users[PATH_MAX];   /* dir/users */
};

/* out = a + "/" + b, which must fit in PATH_MAX. */
static void join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", a, b);
    assert_true(n > 0 && n < PATH_MAX);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/pobox-userdb-XXXXXX", base);
    if (!mkdtemp(f->dir))
        return -1;
    join(f->users, f->dir, "users");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* The whole users file as a string (caller frees). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    assert_non_null(fp);
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    int c;
    while ((c = fgetc(fp)) != EOF)
        fputc(c, mem);
    fclose(fp);
    fclose(mem);
    return buf;
}

static void spew(const char *path, const char *content)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fputs(content, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* userdb_put with only a hash and an APOP secret (NULL = none). */
static int put(const char *dir, const char *address, const char *hash,
               const char *apop)
{
    struct userdb_secrets sec = { .hash = hash, .apop_secret = apop };
    return userdb_put(dir, address, &sec);
}

/* userdb_put with every secret. */
static int put_all(const char *dir, const char *address, const char *hash,
                   const char *apop, const char *sha1, const char *sha256)
{
    struct userdb_secrets sec = { .hash = hash, .apop_secret = apop,
                                  .scram_sha1 = sha1, .scram_sha256 = sha256 };
    return userdb_put(dir, address, &sec);
}

/* Collects the addresses userdb_list reports, one a line. */
static void collect(const char *address, void *arg)
{
    char *buf = arg;
    strcat(buf, address);
    strcat(buf, "\n");
}

/* ---- addresses ---------------------------------------------------------- */

static void test_canonical_valid(void **state)
{
    char out[256];

    assert_true(userdb_canonical("Alice@Example.COM", out, sizeof out));
    assert_string_equal(out, "alice@example.com");
    assert_true(userdb_canonical("first.last+tag@mail.example.org", out, sizeof out));
    assert_string_equal(out, "first.last+tag@mail.example.org");
    /* UTF-8 local part (RFC 6531): kept, ASCII lowercased */
    assert_true(userdb_canonical("J\xc3\xb6rg@EXAMPLE.de", out, sizeof out));
    assert_string_equal(out, "j\xc3\xb6rg@example.de");
    assert_true(userdb_canonical("\xe2\x82\xac\xf0\x9f\x93\xa7@x.y", out, sizeof out));
}

static void test_canonical_invalid(void **state)
{
    static const char *bad[] = {
        "", "alice", "@example.com", "alice@", "a@b@example.com",
        "a/b@example.com", "alice@exa/mple.com", "a:b@example.com",
        "a b@example.com", "a\tb@example.com", "alice@example.com\n",
        "a\x01@example.com", "a\x7f@example.com", ".alice@example.com",
        "alice@.example.com", "al..ice@example.com", "alice@example..com",
        "../x@example.com", "alice@..",
        "\xff@example.com",                 /* not UTF-8 */
        "\xc3@example.com",                 /* truncated sequence */
        "\xc0\xaf@example.com",             /* overlong '/' */
        "\xed\xa0\x80@example.com",         /* surrogate */
        "\xc2\x85@example.com",             /* C1 control NEL */
        "alice@ex\xc3\xa4mple.com",         /* 8-bit domain */
    };
    char out[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(userdb_canonical(bad[i], out, sizeof out));
    assert_false(userdb_canonical(NULL, out, sizeof out));
}

static void test_canonical_length(void **state)
{
    char addr[300], out[300];

    memset(addr, 'a', sizeof addr);
    memcpy(addr + 255 - 12, "@example.com", 13);    /* 255 octets */
    assert_int_equal(strlen(addr), 255);
    assert_true(userdb_canonical(addr, out, sizeof out));
    assert_false(userdb_canonical(addr, out, 255));  /* no room for NUL */

    memset(addr, 'a', sizeof addr);
    memcpy(addr + 256 - 12, "@example.com", 13);    /* 256 octets */
    assert_false(userdb_canonical(addr, out, sizeof out));
}

/* ---- put / lookup / del / list ------------------------------------------ */

static void test_missing_file_means_no_users(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;
    char list[64] = "";

    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 0);
    assert_int_equal(userdb_list(f->dir, collect, list), 0);
    assert_string_equal(list, "");
    assert_int_equal(userdb_del(f->dir, "alice@example.com"), 1);
}

static void test_put_lookup_del_list(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;
    char list[256] = "";

    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, NULL), 0);
    assert_int_equal(put(f->dir, "bob@example.com", HASH_B, NULL), 0);

    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.address, "alice@example.com");
    assert_string_equal(e.hash, HASH_A);
    assert_null(e.apop_secret);
    userdb_entry_free(&e);
    assert_int_equal(userdb_lookup(f->dir, "bob@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_B);
    userdb_entry_free(&e);
    assert_int_equal(userdb_lookup(f->dir, "carol@example.com", &e), 0);

    assert_int_equal(userdb_list(f->dir, collect, list), 0);
    assert_string_equal(list, "alice@example.com\nbob@example.com\n");

    /* replace keeps the position */
    assert_int_equal(put(f->dir, "alice@example.com", HASH_B, NULL), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_B);
    userdb_entry_free(&e);

    assert_int_equal(userdb_del(f->dir, "alice@example.com"), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 0);
    assert_int_equal(userdb_del(f->dir, "alice@example.com"), 1);
    list[0] = '\0';
    assert_int_equal(userdb_list(f->dir, collect, list), 0);
    assert_string_equal(list, "bob@example.com\n");

    char *content = slurp(f->users);
    assert_string_equal(content, "bob@example.com:" HASH_B "\n");
    free(content);
}

static void test_canonical_lowercase(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    assert_int_equal(put(f->dir, "Alice@Example.COM", HASH_A, NULL), 0);
    assert_int_equal(userdb_lookup(f->dir, "ALICE@EXAMPLE.COM", &e), 1);
    assert_string_equal(e.address, "alice@example.com");
    userdb_entry_free(&e);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    userdb_entry_free(&e);

    /* a second put with other case replaces, does not add */
    assert_int_equal(put(f->dir, "ALICE@example.com", HASH_B, NULL), 0);
    char *content = slurp(f->users);
    assert_string_equal(content, "alice@example.com:" HASH_B "\n");
    free(content);

    /* a hand-written mixed-case line is found too */
    spew(f->users, "Bob@Example.Com:" HASH_A "\n");
    assert_int_equal(userdb_lookup(f->dir, "bob@example.com", &e), 1);
    assert_string_equal(e.address, "bob@example.com");
    userdb_entry_free(&e);
    assert_int_equal(userdb_del(f->dir, "BOB@EXAMPLE.COM"), 0);
    content = slurp(f->users);
    assert_string_equal(content, "");
    free(content);
}

static void test_preserves_other_lines(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;
    static const char before[] =
        "# pobox users\n"
        "\n"
        "bob@example.com:" HASH_B ":1000:1000:Bob B:/home/bob::userdb_quota_rule=*:storage=1G\n"
        "this line is not a user\n"
        "alice@example.com:" HASH_A ":::::: userdb_mail=maildir:~/M apop=b2xk\n"
        "  # indented comment-ish thing\n"
        "dave@example.com:" HASH_A "\n"
        "eve@example.com:{PLAIN}ignored-by-pobox\r\n"
        "alice@example.com:duplicate-line-hash\n"
        "# trailing comment without newline";
    static const char after[] =
        "# pobox users\n"
        "\n"
        "bob@example.com:" HASH_B ":1000:1000:Bob B:/home/bob::userdb_quota_rule=*:storage=1G\n"
        "this line is not a user\n"
        "alice@example.com:" HASH_B ":::::: userdb_mail=maildir:~/M apop=bmV3\n"
        "  # indented comment-ish thing\n"
        "eve@example.com:{PLAIN}ignored-by-pobox\r\n"
        "# trailing comment without newline\n"
        "carol@example.com:" HASH_A "\n";

    spew(f->users, before);
    /* the first line of a duplicated user wins */
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_A);
    assert_string_equal(e.apop_secret, "old");
    userdb_entry_free(&e);
    assert_int_equal(userdb_lookup(f->dir, "bob@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_B);
    userdb_entry_free(&e);

    assert_int_equal(put(f->dir, "alice@example.com", HASH_B, "new"), 0);
    assert_int_equal(userdb_del(f->dir, "dave@example.com"), 0);
    assert_int_equal(put(f->dir, "carol@example.com", HASH_A, NULL), 0);

    char *content = slurp(f->users);
    assert_string_equal(content, after);
    free(content);

    char list[256] = "";
    assert_int_equal(userdb_list(f->dir, collect, list), 0);
    assert_string_equal(list, "bob@example.com\nalice@example.com\n"
                              "eve@example.com\ncarol@example.com\n");
}

static void test_apop_secret_round_trip(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;
    static const char secret[] = "s3:cr et: with  spaces =";

    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, secret), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.apop_secret, secret);
    assert_string_equal(e.hash, HASH_A);
    userdb_entry_free(&e);

    char *content = slurp(f->users);
    assert_null(strstr(content, "s3:cr"));
    assert_string_equal(content, "alice@example.com:" HASH_A
                        ":::::: apop=czM6Y3IgZXQ6IHdpdGggIHNwYWNlcyA9\n");
    free(content);

    /* every base64 padding length, and 8-bit bytes */
    static const char *secrets[] = { "a", "ab", "abc", "abcd", "\xc3\xa9t\xc3\xa9" };
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        assert_int_equal(put(f->dir, "alice@example.com", HASH_A, secrets[i]), 0);
        assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
        assert_string_equal(e.apop_secret, secrets[i]);
        userdb_entry_free(&e);
    }

    /* put without a secret removes it */
    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, NULL), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_null(e.apop_secret);
    userdb_entry_free(&e);
}

/* ---- SCRAM credentials ------------------------------------------------- */

static void test_scram_round_trip(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    assert_int_equal(put_all(f->dir, "alice@example.com", HASH_A, NULL, SCRAM1,
                             SCRAM256), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_A);
    assert_null(e.apop_secret);
    assert_string_equal(e.scram_sha1, SCRAM1);
    assert_string_equal(e.scram_sha256, SCRAM256);
    userdb_entry_free(&e);
    char *content = slurp(f->users);
    assert_string_equal(content, "alice@example.com:" HASH_A ":::::: "
                        "scram-sha-1=" SCRAM1 " scram-sha-256=" SCRAM256 "\n");
    free(content);

    /* with an APOP secret, and only one of the two */
    assert_int_equal(put_all(f->dir, "alice@example.com", HASH_B, "old", NULL,
                             SCRAM256), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.apop_secret, "old");
    assert_null(e.scram_sha1);
    assert_string_equal(e.scram_sha256, SCRAM256);
    userdb_entry_free(&e);
    content = slurp(f->users);
    assert_string_equal(content, "alice@example.com:" HASH_B ":::::: apop=b2xk "
                        "scram-sha-256=" SCRAM256 "\n");
    free(content);

    /* a put without them removes them, and the line is as before */
    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, NULL), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_null(e.apop_secret);
    assert_null(e.scram_sha1);
    assert_null(e.scram_sha256);
    userdb_entry_free(&e);
    content = slurp(f->users);
    assert_string_equal(content, "alice@example.com:" HASH_A "\n");
    free(content);
}

static void test_scram_replaced_other_extras_kept(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    spew(f->users, "alice@example.com:" HASH_A ":1000::::: userdb_mail=x "
                   "scram-sha-256=" SCRAM256 " apop=b2xk nopassword "
                   "scram-sha-1=" SCRAM1 "\n");
    assert_int_equal(put_all(f->dir, "alice@example.com", HASH_B, NULL, SCRAM1,
                             NULL), 0);
    char *content = slurp(f->users);
    assert_string_equal(content, "alice@example.com:" HASH_B ":1000::::: "
                        "userdb_mail=x nopassword scram-sha-1=" SCRAM1 "\n");
    free(content);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.scram_sha1, SCRAM1);
    assert_null(e.scram_sha256);
    userdb_entry_free(&e);
}

static void test_line_with_apop_and_scram(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    spew(f->users,
         "alice@example.com:" HASH_A ":::::: apop=b2xk scram-sha-1=" SCRAM1
         " scram-sha-256=" SCRAM256 "\n"
         /* other order, tabs, unknown pairs */
         "bob@example.com:" HASH_B ":::::: scram-sha-256=" SCRAM256
         "\tuserdb_x=1 scram-sha-1=" SCRAM1 "  apop=bmV3\r\n");
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_A);
    assert_string_equal(e.apop_secret, "old");
    assert_string_equal(e.scram_sha1, SCRAM1);
    assert_string_equal(e.scram_sha256, SCRAM256);
    userdb_entry_free(&e);
    assert_int_equal(userdb_lookup(f->dir, "bob@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_B);
    assert_string_equal(e.apop_secret, "new");
    assert_string_equal(e.scram_sha1, SCRAM1);
    assert_string_equal(e.scram_sha256, SCRAM256);
    userdb_entry_free(&e);
    assert_true(userdb_has_apop(f->dir));
}

static void test_hash_only_lines(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    spew(f->users,
         "alice@example.com:" HASH_A "\n"
         "bob@example.com:" HASH_B ":1000:1000:Bob:/home/bob:/bin/sh\n"
         /* malformed or mismatched credentials count as none */
         "carol@example.com:" HASH_A ":::::: scram-sha-1=" SCRAM256
         " scram-sha-256=4096,x,y,z scram-sha-1=\n");
    static const char *users[] = { "alice@example.com", "bob@example.com",
                                   "carol@example.com" };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(userdb_lookup(f->dir, users[i], &e), 1);
        assert_string_equal(e.hash, i == 1 ? HASH_B : HASH_A);
        assert_null(e.apop_secret);
        assert_null(e.scram_sha1);
        assert_null(e.scram_sha256);
        userdb_entry_free(&e);
    }
    assert_false(userdb_has_apop(f->dir));
}

static void test_scram_invalid_rejected(void **state)
{
    struct fixture *f = *state;

    errno = 0;
    assert_int_equal(put_all(f->dir, "x@example.com", HASH_A, NULL, SCRAM256,
                             NULL), -1);            /* SHA-256 keys as SHA-1 */
    assert_int_equal(errno, EINVAL);
    assert_int_equal(put_all(f->dir, "x@example.com", HASH_A, NULL, NULL,
                             SCRAM1), -1);
    assert_int_equal(put_all(f->dir, "x@example.com", HASH_A, NULL,
                             SCRAM1 " apop=eA==", NULL), -1);
    assert_int_equal(put_all(f->dir, "x@example.com", HASH_A, NULL, "", NULL), -1);
    assert_int_equal(put_all(f->dir, "x@example.com", NULL, NULL, SCRAM1,
                             SCRAM256), -1);
    assert_int_equal(userdb_put(f->dir, "x@example.com", NULL), -1);
    assert_int_equal(access(f->users, F_OK), -1);
}

static void test_reload_after_outside_rewrite(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, NULL), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    userdb_entry_free(&e);

    /* another size */
    spew(f->users, "alice@example.com:" HASH_B "\nzed@example.com:" HASH_B "\n");
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_B);
    userdb_entry_free(&e);
    assert_int_equal(userdb_lookup(f->dir, "zed@example.com", &e), 1);
    userdb_entry_free(&e);

    /* same size, same inode: only the mtime tells */
    struct stat st;
    assert_int_equal(stat(f->users, &st), 0);
    spew(f->users, "alice@example.com:" HASH_B "\nzzz@example.com:" HASH_B "\n");
    struct timespec ts[2] = { st.st_atim, st.st_mtim };
    ts[1].tv_sec += 1000;       /* whole seconds later, same nanoseconds */
    assert_int_equal(utimensat(AT_FDCWD, f->users, ts, 0), 0);
    assert_int_equal(userdb_lookup(f->dir, "zed@example.com", &e), 0);
    assert_int_equal(userdb_lookup(f->dir, "zzz@example.com", &e), 1);
    userdb_entry_free(&e);

    /* removed file: no users */
    assert_int_equal(unlink(f->users), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), 0);
}

static void test_invalid_input_rejected(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;

    errno = 0;
    assert_int_equal(put(f->dir, "no-at-sign", HASH_A, NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(put(f->dir, "a:b@example.com", HASH_A, NULL), -1);
    assert_int_equal(put(f->dir, "../../etc@example.com", HASH_A, NULL), -1);
    assert_int_equal(put(f->dir, "x@example.com", "bad:hash", NULL), -1);
    assert_int_equal(put(f->dir, "x@example.com", "bad\nhash", NULL), -1);
    assert_int_equal(put(f->dir, "x@example.com", "", NULL), -1);
    assert_int_equal(put(f->dir, "x@example.com", "{PLAIN}secret", NULL), -1);
    assert_int_equal(put(f->dir, "x@example.com", HASH_A, ""), -1);
    assert_int_equal(userdb_del(f->dir, "not an address"), -1);
    assert_int_equal(userdb_lookup(f->dir, "not an address", &e), 0);
    /* nothing was written */
    assert_int_equal(access(f->users, F_OK), -1);
}

static void test_file_mode_and_no_plaintext(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX], users[PATH_MAX], hash[PASSWORD_HASH_MAX];
    struct stat st;

    /* data_dir is created, 0700 */
    join(dir, f->dir, "new/data");
    join(users, dir, "users");
    assert_true(password_hash("hunter2-plaintext", hash, sizeof hash));
    assert_int_equal(put(dir, "alice@example.com", hash, NULL), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(users, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    char *content = slurp(users);
    assert_null(strstr(content, "hunter2"));
    assert_non_null(strstr(content, "alice@example.com:{ARGON2ID}$argon2id$"));
    free(content);

    /* a users file the admin made 0644 goes back to 0600 on rewrite, even
     * over a stale users.tmp left 0644 by a crash */
    assert_int_equal(chmod(users, 0644), 0);
    join(users, dir, "users.tmp");
    spew(users, "stale");
    assert_int_equal(chmod(users, 0644), 0);
    join(users, dir, "users");
    assert_int_equal(put(dir, "bob@example.com", HASH_B, NULL), 0);
    assert_int_equal(stat(users, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* no temporary file left behind */
    join(users, dir, "users.tmp");
    assert_int_equal(access(users, F_OK), -1);
}

static void test_unreadable_is_error(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;
    char list[64] = "";

    assert_int_equal(mkdir(f->users, 0700), 0);
    assert_int_equal(userdb_lookup(f->dir, "alice@example.com", &e), -1);
    assert_int_equal(userdb_list(f->dir, collect, list), -1);
    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, NULL), -1);
}

static void test_many_users(void **state)
{
    struct fixture *f = *state;
    struct userdb_entry e;
    char addr[64];

    FILE *fp = fopen(f->users, "w");
    assert_non_null(fp);
    for (int i = 0; i < 20000; i++)
        fprintf(fp, "user%d@example.com:%s\n", i, i % 2 ? HASH_A : HASH_B);
    assert_int_equal(fclose(fp), 0);

    for (int i = 0; i < 20000; i += 997) {
        snprintf(addr, sizeof addr, "USER%d@example.com", i);
        assert_int_equal(userdb_lookup(f->dir, addr, &e), 1);
        assert_string_equal(e.hash, i % 2 ? HASH_A : HASH_B);
        userdb_entry_free(&e);
    }
    assert_int_equal(userdb_lookup(f->dir, "user20000@example.com", &e), 0);
    assert_int_equal(put(f->dir, "user19999@example.com", HASH_B, NULL), 0);
    assert_int_equal(userdb_lookup(f->dir, "user19999@example.com", &e), 1);
    assert_string_equal(e.hash, HASH_B);
    userdb_entry_free(&e);
}

/* ---- threads ------------------------------------------------------------ */

struct reader {
    const char *dir;
    int errors;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct userdb_entry e;

    for (int i = 0; i < 2000; i++) {
        if (userdb_lookup(r->dir, "alice@example.com", &e) != 1)
            r->errors++;
        else
            userdb_entry_free(&e);
    }
    return NULL;
}

static void test_concurrent_lookups_and_writes(void **state)
{
    struct fixture *f = *state;
    struct reader r[4];
    pthread_t t[4];
    char addr[64];

    assert_int_equal(put(f->dir, "alice@example.com", HASH_A, NULL), 0);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct reader){ .dir = f->dir };
        assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
    }
    for (int i = 0; i < 30; i++) {
        snprintf(addr, sizeof addr, "user%d@example.com", i);
        assert_int_equal(put(f->dir, addr, HASH_B, "apop"), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].errors, 0);
    }
    char list[2048] = "";
    assert_int_equal(userdb_list(f->dir, collect, list), 0);
    assert_non_null(strstr(list, "alice@example.com\nuser0@example.com\n"));
    assert_non_null(strstr(list, "user29@example.com\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_valid),
        cmocka_unit_test(test_canonical_invalid),
        cmocka_unit_test(test_canonical_length),
        cmocka_unit_test_setup_teardown(test_missing_file_means_no_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_lookup_del_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_lowercase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserves_other_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apop_secret_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scram_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scram_replaced_other_extras_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_with_apop_and_scram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_only_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scram_invalid_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_after_outside_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_mode_and_no_plaintext, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_is_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lookups_and_writes, setup, teardown),
    };
    return cmocka_run_group_tests_name("userdb", tests, NULL, NULL);
}
