/* test_headers.c — unit tests for mail/headers.h: the addresses read from
 * From/Sender/To/Cc/Bcc of messages written to temporary spool files, the
 * header block's limits, the Date:, Message-ID: and Received: fields pobox
 * writes (including hostile HELO and user text), and the copy without Bcc:
 * that XTND XMIT sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mail/envelope.h"
#include "mail/headers.h"

/* ---- helpers ---- */

/* An unlinked temporary file holding n octets of s, offset 0. */
static int spool_n(const char *s, size_t n)
{
    char path[] = "/tmp/pobox-test-headers.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, s + off, n - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    return fd;
}

static int spool(const char *s)
{
    return spool_n(s, strlen(s));
}

static void read_msg(const char *msg, struct headers_info *h)
{
    int fd = spool(msg);
    assert_int_equal(headers_read(fd, h), 0);
    close(fd);
}

/* The whole file behind fd as a NUL-terminated malloc'd string. */
static char *slurp(int fd, size_t *len)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *s = malloc((size_t)st.st_size + 1);
    assert_non_null(s);
    assert_int_equal(pread(fd, s, (size_t)st.st_size, 0), st.st_size);
    s[st.st_size] = '\0';
    if (len)
        *len = (size_t)st.st_size;
    return s;
}

static char *copy_without_bcc(const char *msg)
{
    int in = spool(msg), out = spool("");
    assert_int_equal(headers_copy_without_bcc(in, out), 0);
    char *s = slurp(out, NULL);
    close(in);
    close(out);
    return s;
}

static bool matches(const char *re, const char *s)
{
    regex_t r;
    assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
    bool m = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return m;
}

#define DATE_RE "(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-3][0-9] " \
    "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} " \
    "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] [+-][0-9]{4}"

/* ---- reading: addresses ---- */

static void test_from_display_name(void **state)
{
    struct headers_info h;
    read_msg("From: Alice Example <Alice@Example.ORG>\nSubject: hi\n\nbody\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "Alice@example.org");   /* domain only */
    assert_int_equal(h.n_from_fields, 1);
    assert_false(h.malformed);
    assert_false(h.from_malformed);
    assert_int_equal(h.header_len, strlen("From: Alice Example <Alice@Example.ORG>\nSubject: hi\n\n"));
    headers_info_free(&h);

    read_msg("From: =?utf-8?q?J=C3=B6rg?= <j@x.de>\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "j@x.de");
    assert_false(h.malformed);
    headers_info_free(&h);

    read_msg("From: \"Doe, John\" <john@example.com>\n\n", &h);
    assert_int_equal(h.n_from, 1);      /* the comma is in the quotes */
    assert_string_equal(h.from[0], "john@example.com");
    headers_info_free(&h);
}

static void test_from_quoted_local_part(void **state)
{
    struct headers_info h;
    read_msg("From: \"Doe, John\" <\"john doe\"@Example.com>\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "\"john doe\"@example.com");
    assert_false(h.malformed);
    headers_info_free(&h);

    /* the last @ starts the domain: a quoted @ is local part */
    read_msg("From: \"alice@example.org\"@EVIL.example\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "\"alice@example.org\"@evil.example");
    headers_info_free(&h);
}

static void test_from_comments(void **state)
{
    struct headers_info h;
    read_msg("From: alice@example.org (Alice Smith)\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "alice@example.org");
    assert_false(h.malformed);
    headers_info_free(&h);

    read_msg("From: (who) john.(x)doe@(y)example.com (z (nested))\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "john.doe@example.com");
    headers_info_free(&h);

    /* obs-route and CFWS around dots */
    read_msg("From: <@route.example:alice@example.org>\nSender: john . doe@example.com\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "alice@example.org");
    assert_int_equal(h.n_sender, 1);
    assert_string_equal(h.sender[0], "john.doe@example.com");
    assert_false(h.from_malformed);
    headers_info_free(&h);
}

static void test_groups(void **state)
{
    struct headers_info h;
    read_msg("From: a@example.org\nTo: undisclosed-recipients:;\n\n", &h);
    assert_int_equal(h.n_to, 0);
    assert_false(h.malformed);
    headers_info_free(&h);

    read_msg("From: a@example.org\nTo: team: b@x.org, \"C\" <c@y.org>;, d@z.org\n\n", &h);
    assert_int_equal(h.n_to, 3);
    assert_string_equal(h.to[0], "b@x.org");
    assert_string_equal(h.to[1], "c@y.org");
    assert_string_equal(h.to[2], "d@z.org");
    assert_false(h.malformed);
    headers_info_free(&h);

    /* a group in From: (RFC 6854) still yields its mailboxes */
    read_msg("From: Managing Partners: ben@example.com, carol@example.com;\n\n", &h);
    assert_int_equal(h.n_from, 2);
    assert_string_equal(h.from[1], "carol@example.com");
    headers_info_free(&h);
}

static void test_multiple_from(void **state)
{
    struct headers_info h;
    read_msg("From: a@x.org, Bob <b@y.org>\nSender: a@x.org\n\n", &h);
    assert_int_equal(h.n_from, 2);
    assert_int_equal(h.n_from_fields, 1);
    assert_string_equal(h.from[0], "a@x.org");
    assert_string_equal(h.from[1], "b@y.org");
    assert_int_equal(h.n_sender, 1);
    headers_info_free(&h);

    /* two From: fields: both reported, the caller decides */
    read_msg("From: mine@example.org\nSubject: x\nfrom: Boss <boss@example.org>\n\nb\n", &h);
    assert_int_equal(h.n_from_fields, 2);
    assert_int_equal(h.n_from, 2);
    assert_string_equal(h.from[0], "mine@example.org");
    assert_string_equal(h.from[1], "boss@example.org");
    headers_info_free(&h);

    read_msg("Subject: no from\n\nFrom: body@example.org\n", &h);
    assert_int_equal(h.n_from_fields, 0);
    assert_int_equal(h.n_from, 0);
    headers_info_free(&h);
}

static void test_folded(void **state)
{
    struct headers_info h;
    read_msg("From: Alice\n <alice@example.org>\nTo: a@x.org,\n\tb@y.org,\n  c@z.org\n"
             "Subject: folded\n continues\n\nbody\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "alice@example.org");
    assert_int_equal(h.n_to, 3);
    assert_string_equal(h.to[2], "c@z.org");
    assert_false(h.malformed);
    headers_info_free(&h);

    /* a folded address is unfolded, not cut */
    read_msg("From: Alice <alice\n @example.org>\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "alice@example.org");
    headers_info_free(&h);
}

static void test_utf8(void **state)
{
    struct headers_info h;
    read_msg("From: Jörg Müller <jörg@BÜCHER.de>\nTo: 用户@例子.广告, Ünï <ÜSER@Bücher.DE>\n\n", &h);
    assert_false(h.malformed);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "jörg@bücher.de");
    assert_int_equal(h.n_to, 2);
    assert_string_equal(h.to[0], "用户@例子.广告");
    assert_string_equal(h.to[1], "ÜSER@bücher.de");
    headers_info_free(&h);

    /* 8-bit that is not UTF-8 (Latin-1) is not RFC 6532 */
    read_msg("From: J\xf6rg <j\xf6rg@example.com>\n\n", &h);
    assert_true(h.from_malformed);
    assert_true(h.malformed);
    headers_info_free(&h);
}

static void test_to_cc_bcc(void **state)
{
    struct headers_info h;
    read_msg("From: me@example.org\nTO: a@x.org\ncC: b@y.org, c@y.org\nBcc : d@z.org\n"
             "Cc: e@y.org\nbcc: (hidden)\nBcc:\nReply-To: r@x.org\n\n", &h);
    assert_false(h.malformed);
    assert_int_equal(h.n_to, 1);
    assert_string_equal(h.to[0], "a@x.org");
    assert_int_equal(h.n_cc, 3);
    assert_string_equal(h.cc[0], "b@y.org");
    assert_string_equal(h.cc[1], "c@y.org");
    assert_string_equal(h.cc[2], "e@y.org");
    assert_int_equal(h.n_bcc, 1);
    assert_string_equal(h.bcc[0], "d@z.org");
    headers_info_free(&h);
}

static void test_date_and_message_id_present(void **state)
{
    struct headers_info h;
    read_msg("From: a@x.org\n\n", &h);
    assert_false(h.has_date);
    assert_false(h.has_message_id);
    headers_info_free(&h);

    read_msg("DATE: Sat, 28 Nov 2026 09:05:00 +0000\nmessage-ID: <x@y>\n\n", &h);
    assert_true(h.has_date);
    assert_true(h.has_message_id);
    headers_info_free(&h);

    /* in the body they do not count; nor do look-alike names */
    read_msg("Dated: x\nMessage-IDs: y\n\nDate: Sat, 28 Nov 2026 09:05:00 +0000\n", &h);
    assert_false(h.has_date);
    assert_false(h.has_message_id);
    headers_info_free(&h);
}

static void test_no_body(void **state)
{
    struct headers_info h;
    read_msg("From: a@x.org\nSubject: all header\n", &h);
    assert_int_equal(h.header_len, 0);
    assert_int_equal(h.n_from, 1);
    headers_info_free(&h);

    read_msg("From: a@x.org", &h);      /* not even a final LF */
    assert_int_equal(h.header_len, 0);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "a@x.org");
    headers_info_free(&h);

    read_msg("", &h);
    assert_int_equal(h.header_len, 0);
    assert_int_equal(h.n_from, 0);
    assert_false(h.malformed);
    headers_info_free(&h);

    read_msg("\nFrom: a@x.org\n", &h);  /* no header at all */
    assert_int_equal(h.header_len, 1);
    assert_int_equal(h.n_from, 0);
    headers_info_free(&h);
}

static void test_crlf(void **state)
{
    struct headers_info h;
    const char *msg = "From: Alice\r\n <a@x.org>\r\nTo: b@y.org\r\n\r\nbody\r\n";
    read_msg(msg, &h);
    assert_int_equal(h.header_len, strlen("From: Alice\r\n <a@x.org>\r\nTo: b@y.org\r\n\r\n"));
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "a@x.org");
    assert_int_equal(h.n_to, 1);
    assert_string_equal(h.to[0], "b@y.org");
    assert_false(h.malformed);
    headers_info_free(&h);
}

static void test_malformed(void **state)
{
    struct headers_info h;

    read_msg("From: a@x.org\nthis line has no colon\nTo: b@y.org\n\nbody\n", &h);
    assert_true(h.malformed);
    assert_false(h.from_malformed);
    assert_int_equal(h.n_to, 1);        /* parsing goes on */
    headers_info_free(&h);

    read_msg(" starts with a continuation\nFrom: a@x.org\n\n", &h);
    assert_true(h.malformed);
    assert_int_equal(h.n_from, 1);
    headers_info_free(&h);

    read_msg(": no name\n\n", &h);
    assert_true(h.malformed);
    headers_info_free(&h);

    read_msg("Bad Name: x\n\n", &h);
    assert_true(h.malformed);
    headers_info_free(&h);

    const char *bad_from[] = {
        "From: Alice alice@example.org\n\n",    /* phrase without <> */
        "From: alice@\n\n",
        "From: a@b.c; d@e.f\n\n",
        "From: <a@b.c\n\n",
        "From: a@b.c (unterminated comment\n\n",
        "From: \"unterminated <a@b.c>\n\n",
        "From: ours@example.org theirs@example.net\n\n",
        "Sender: @@@\n\n",
    };
    for (size_t i = 0; i < sizeof bad_from / sizeof bad_from[0]; i++) {
        read_msg(bad_from[i], &h);
        if (!h.from_malformed)
            fail_msg("not malformed: %s", bad_from[i]);
        assert_true(h.malformed);
        headers_info_free(&h);
    }

    /* loose parsing still reports what it can of a bad list */
    read_msg("From: ours@example.org theirs@example.net\n\n", &h);
    assert_int_equal(h.n_from, 2);
    headers_info_free(&h);

    /* a bad To: is malformed but not from_malformed */
    read_msg("From: a@x.org\nTo: <<>>\n\n", &h);
    assert_true(h.malformed);
    assert_false(h.from_malformed);
    headers_info_free(&h);

    /* a NUL in the header block */
    static const char nul[] = "From: a@x.org\nX-A: a\0b\n\nbody";
    int fd = spool_n(nul, sizeof nul - 1);
    assert_int_equal(headers_read(fd, &h), 0);
    close(fd);
    assert_true(h.malformed);
    headers_info_free(&h);
}

static void test_address_without_domain(void **state)
{
    struct headers_info h;
    read_msg("From: alice\nTo: Bob <bob>, c@x.org\n\n", &h);
    assert_int_equal(h.n_from, 1);
    assert_string_equal(h.from[0], "alice");    /* reported; caller refuses */
    assert_int_equal(h.n_to, 2);
    assert_string_equal(h.to[0], "bob");
    headers_info_free(&h);
}

static void test_header_too_long(void **state)
{
    struct headers_info h;
    size_t big = HEADERS_MAX + 100;
    char *msg = malloc(big + 16);
    assert_non_null(msg);

    /* one folded field longer than 1 MiB, then a body */
    size_t n = (size_t)sprintf(msg, "From: a@x.org\nX-Big: x");
    while (n < big) {
        memcpy(msg + n, "\n xxxxxxxxxxxxxx", 16);
        n += 16;
    }
    memcpy(msg + n, "\n\nbody\n", 7);
    n += 7;
    int fd = spool_n(msg, n);
    errno = 0;
    assert_int_equal(headers_read(fd, &h), -1);
    assert_int_equal(errno, EMSGSIZE);
    assert_int_equal(h.n_from, 0);
    headers_info_free(&h);         /* harmless after a failure */
    int out = spool("");
    assert_int_equal(headers_copy_without_bcc(fd, out), -1);
    assert_int_equal(errno, EMSGSIZE);
    close(out);
    close(fd);

    /* all header, no empty line, longer than 1 MiB */
    fd = spool_n(msg, n - 7);
    assert_int_equal(headers_read(fd, &h), -1);
    assert_int_equal(errno, EMSGSIZE);
    close(fd);

    /* exactly HEADERS_MAX octets with the empty line: accepted */
    memset(msg, 'x', HEADERS_MAX);
    memcpy(msg, "From: a@x.org\nX-Big: ", 21);
    msg[HEADERS_MAX - 2] = '\n';
    msg[HEADERS_MAX - 1] = '\n';
    memcpy(msg + HEADERS_MAX, "body\n", 5);
    fd = spool_n(msg, HEADERS_MAX + 5);
    assert_int_equal(headers_read(fd, &h), 0);
    assert_int_equal(h.header_len, HEADERS_MAX);
    assert_int_equal(h.n_from, 1);
    headers_info_free(&h);
    close(fd);

    /* one more octet: refused */
    memset(msg, 'x', HEADERS_MAX + 1);
    memcpy(msg, "From: a@x.org\nX-Big: ", 21);
    msg[HEADERS_MAX - 1] = '\n';
    msg[HEADERS_MAX] = '\n';
    fd = spool_n(msg, HEADERS_MAX + 1);
    assert_int_equal(headers_read(fd, &h), -1);
    assert_int_equal(errno, EMSGSIZE);
    close(fd);

    /* a small header before a large body is fine */
    memset(msg, 'b', big);
    memcpy(msg, "From: a@x.org\n\n", 15);
    fd = spool_n(msg, big);
    assert_int_equal(headers_read(fd, &h), 0);
    assert_int_equal(h.header_len, 15);
    headers_info_free(&h);
    close(fd);
    free(msg);
}

static void test_hostile_values(void **state)
{
    struct headers_info h;
    size_t n = 900 * 1024;
    char *msg = malloc(n + 32);
    assert_non_null(msg);

    /* deeply nested comments */
    memcpy(msg, "From: a@x.org ", 14);
    memset(msg + 14, '(', n);
    memcpy(msg + 14 + n, "\n\n", 3);
    read_msg(msg, &h);
    assert_true(h.from_malformed);
    headers_info_free(&h);

    /* a huge list: every address reported */
    size_t o = (size_t)sprintf(msg, "To: ");
    size_t count = 0;
    while (o < n) {
        o += (size_t)sprintf(msg + o, "u%zu@example.org,\n ", count);
        count++;
    }
    memcpy(msg + o, "z@example.org\n\n", 16);
    read_msg(msg, &h);
    assert_int_equal(h.n_to, count + 1);
    assert_string_equal(h.to[count], "z@example.org");
    assert_false(h.malformed);
    headers_info_free(&h);
    free(msg);
}

static void *read_many(void *arg)
{
    int fd = *(int *)arg;
    for (int i = 0; i < 200; i++) {
        struct headers_info h;
        if (headers_read(fd, &h) != 0 || h.n_from != 1 || h.n_to != 2)
            return (void *)1;
        headers_info_free(&h);
    }
    return NULL;
}

static void test_threads(void **state)
{
    int fd = spool("From: A <a@x.org>\nTo: b@y.org, g: c@z.org;\n\nbody\n");
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, read_many, &fd), 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
    close(fd);
}

/* ---- Date: and Message-ID: ---- */

static void test_date(void **state)
{
    char d[HEADERS_DATE_SIZE], want[64];
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;

    headers_date(d, sizeof d);
    assert_true(matches("^" DATE_RE "$", d));

    setenv("TZ", "UTC0", 1);
    tzset();
    for (int tries = 0; tries < 3; tries++) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S +0000", &tm);
        headers_date(d, sizeof d);
        if (strcmp(d, want) == 0)
            break;              /* else a second went by: again */
    }
    assert_string_equal(d, want);

    setenv("TZ", "IST-5:30", 1);
    tzset();
    headers_date(d, sizeof d);
    assert_true(matches(" \\+0530$", d));
    setenv("TZ", "EST5", 1);
    tzset();
    headers_date(d, sizeof d);
    assert_true(matches(" -0500$", d));
    assert_true(matches("^" DATE_RE "$", d));

    if (old) {
        setenv("TZ", old, 1);
        free(old);
    } else {
        unsetenv("TZ");
    }
    tzset();
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_message_id(void **state)
{
    enum { N = 10000 };
    char **ids = malloc(N * sizeof *ids);
    assert_non_null(ids);

    for (int i = 0; i < N; i++) {
        char id[HEADERS_MSGID_SIZE];
        headers_message_id("mail.example.org", id, sizeof id);
        if (i == 0)
            assert_true(matches("^<[0-9]{14}\\.[0-9a-f]{24}@mail\\.example\\.org>$", id));
        ids[i] = strdup(id);
    }
    qsort(ids, N, sizeof *ids, cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(ids);

    char id[HEADERS_MSGID_SIZE];
    headers_message_id("bad host>\n@x", id, sizeof id);
    assert_true(matches("^<[0-9]{14}\\.[0-9a-f]{24}@bad-host---x>$", id));
    headers_message_id("", id, sizeof id);
    assert_true(matches("@localhost>$", id));
}

/* ---- Received: ---- */

static struct envelope env_for(enum envelope_origin origin, const char *helo,
                               const char *ip, const char *tls,
                               const char *user, int n_rcpts)
{
    struct envelope env;
    envelope_init(&env);
    env.origin = origin;
    env.esmtp = true;
    snprintf(env.helo, sizeof env.helo, "%s", helo);
    snprintf(env.client_ip, sizeof env.client_ip, "%s", ip);
    snprintf(env.tls, sizeof env.tls, "%s", tls);
    snprintf(env.auth_user, sizeof env.auth_user, "%s", user);
    snprintf(env.sender, sizeof env.sender, "alice@example.org");
    for (int i = 0; i < n_rcpts; i++) {
        char a[64];
        snprintf(a, sizeof a, "rcpt%d@example.net", i + 1);
        assert_true(envelope_add_rcpt(&env, a, 0, NULL));
    }
    return env;
}

/* got must be want with "DATE" standing for an RFC 5322 date-time. */
static void assert_received(const char *got, const char *want)
{
    const char *d = strstr(want, "DATE");
    assert_non_null(d);
    size_t pre = (size_t)(d - want);
    if (strncmp(got, want, pre) != 0)
        fail_msg("Received:\n%s\nwanted:\n%s", got, want);
    assert_true(strlen(got) >= pre + 31);
    char date[32];
    memcpy(date, got + pre, 31);
    date[31] = '\0';
    if (!matches("^" DATE_RE "$", date))
        fail_msg("bad date in:\n%s", got);
    assert_string_equal(got + pre + 31, d + 4);
}

/* Every line shorter than 78 columns, every LF but the last followed by a
 * TAB, no CR, no control character. */
static void assert_well_formed(const char *r, bool short_lines)
{
    size_t col = 0;
    assert_true(strncmp(r, "Received: ", 10) == 0);
    for (const char *p = r; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') {
            if (p[1] != '\0' && p[1] != '\t')
                fail_msg("LF not followed by TAB in:\n%s", r);
            col = 0;
            continue;
        }
        if (c == '\t') {
            col = (col / 8 + 1) * 8;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            fail_msg("control character %#x in:\n%s", c, r);
        if ((c & 0xc0) != 0x80)
            col++;
        if (short_lines && col >= 78)
            fail_msg("line too long in:\n%s", r);
    }
    assert_true(r[strlen(r) - 1] == '\n');
}

static void test_received_smtp(void **state)
{
    struct envelope env = env_for(ORIGIN_SMTP, "mx.sender.example", "192.0.2.7", "", "", 1);
    env.esmtp = false;
    char *r = headers_received(&env, "mail.example.org", "4F3A9C2E1B", false);
    assert_received(r, "Received: from mx.sender.example ([192.0.2.7])\n"
                       "\tby mail.example.org (pobox) with SMTP id 4F3A9C2E1B\n"
                       "\tfor <rcpt1@example.net>; DATE\n");
    assert_well_formed(r, true);
    free(r);

    /* EHLO, TLS, two recipients: no "for"; hide_ip ignored without AUTH */
    envelope_reset(&env);
    env = env_for(ORIGIN_SMTP, "mx.sender.example", "2001:db8::25",
                  "TLSv1.3 TLS_AES_256_GCM_SHA384", "", 2);
    r = headers_received(&env, "mail.example.org", "Q1", true);
    assert_received(r, "Received: from mx.sender.example ([IPv6:2001:db8::25])\n"
                       "\tby mail.example.org (pobox) with ESMTPS id Q1\n"
                       "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384);\n"
                       "\tDATE\n");
    assert_well_formed(r, true);
    free(r);
    envelope_reset(&env);

    env = env_for(ORIGIN_SMTP, "h", "::ffff:192.0.2.9", "", "", 1);
    r = headers_received(&env, "mail.example.org", "Q1", false);
    assert_non_null(strstr(r, "from h ([192.0.2.9])\n"));
    assert_non_null(strstr(r, "with ESMTP id Q1\n"));
    free(r);
    envelope_reset(&env);
}

static void test_received_submission(void **state)
{
    struct envelope env = env_for(ORIGIN_SUBMISSION, "[192.168.1.20]", "198.51.100.4",
                                  "TLSv1.3 TLS_AES_128_GCM_SHA256", "alice@example.org", 1);
    char *r = headers_received(&env, "mail.example.org", "ABC", false);
    assert_received(r, "Received: from [192.168.1.20] ([198.51.100.4])\n"
                       "\tby mail.example.org (pobox) with ESMTPSA id ABC\n"
                       "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\n"
                       "\t(authenticated sender: alice@example.org)\n"
                       "\tfor <rcpt1@example.net>; DATE\n");
    assert_well_formed(r, true);
    free(r);

    r = headers_received(&env, "mail.example.org", "ABC", true);     /* hide_ip */
    assert_received(r, "Received: from [192.168.1.20]\n"
                       "\tby mail.example.org (pobox) with ESMTPSA id ABC\n"
                       "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\n"
                       "\t(authenticated sender: alice@example.org)\n"
                       "\tfor <rcpt1@example.net>; DATE\n");
    assert_null(strstr(r, "198.51.100.4"));
    free(r);

    /* no TLS (AUTH on port 25 over plaintext, allowed by config) */
    env.tls[0] = '\0';
    r = headers_received(&env, "mail.example.org", "ABC", false);
    assert_non_null(strstr(r, " with ESMTPA id ABC\n\t(authenticated sender: alice@example.org)\n"));
    assert_null(strstr(r, "using"));
    free(r);

    /* SMTPUTF8 */
    env.smtputf8 = true;
    snprintf(env.tls, sizeof env.tls, "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384");
    snprintf(env.auth_user, sizeof env.auth_user, "jörg");
    r = headers_received(&env, "mail.example.org", "ABC", true);
    assert_non_null(strstr(r, " with UTF8SMTPSA id ABC\n"));
    assert_non_null(strstr(r, "(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384)"));
    assert_non_null(strstr(r, "(authenticated sender: jörg)"));
    free(r);
    env.smtputf8 = false;
    r = headers_received(&env, "mail.example.org", "ABC", true);
    assert_non_null(strstr(r, "(authenticated sender: j??rg)"));
    assert_non_null(strstr(r, " with ESMTPSA id ABC\n"));
    free(r);
    env.tls[0] = '\0';
    env.smtputf8 = true;
    r = headers_received(&env, "mail.example.org", "ABC", true);
    assert_non_null(strstr(r, " with UTF8SMTPA id ABC\n"));
    free(r);
    env.auth_user[0] = '\0';    /* no user known: no comment */
    r = headers_received(&env, "mail.example.org", "ABC", true);
    assert_null(strstr(r, "authenticated"));
    free(r);
    envelope_reset(&env);

    env = env_for(ORIGIN_SMTP, "x", "192.0.2.1", "", "", 0);
    env.smtputf8 = true;
    r = headers_received(&env, "h.example", "Q", false);
    assert_non_null(strstr(r, " with UTF8SMTP id Q;"));
    free(r);
}

static void test_received_xtnd_local(void **state)
{
    struct envelope env = env_for(ORIGIN_XTND, "", "203.0.113.5", "", "bob", 3);
    env.esmtp = false;
    char *r = headers_received(&env, "pop.example.org", "X9", false);
    assert_received(r, "Received: from [203.0.113.5] ([203.0.113.5])\n"
                       "\tby pop.example.org (pobox) with ESMTPA (POP3 XTND XMIT) id X9\n"
                       "\t(authenticated sender: bob); DATE\n");
    assert_well_formed(r, true);
    free(r);

    r = headers_received(&env, "pop.example.org", "X9", true);
    assert_received(r, "Received: by pop.example.org (pobox) with ESMTPA (POP3 XTND XMIT) id X9\n"
                       "\t(authenticated sender: bob); DATE\n");
    assert_null(strstr(r, "203.0.113.5"));
    assert_well_formed(r, true);
    free(r);

    snprintf(env.tls, sizeof env.tls, "TLSv1.3 TLS_AES_256_GCM_SHA384");
    r = headers_received(&env, "pop.example.org", "X9", true);
    assert_non_null(strstr(r, "with ESMTPSA (POP3 XTND XMIT)"));
    assert_non_null(strstr(r, "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)"));
    free(r);
    envelope_reset(&env);

    env = env_for(ORIGIN_LOCAL, "", "", "", "", 1);
    r = headers_received(&env, "mail.example.org", "L1", false);
    assert_received(r, "Received: by mail.example.org (pobox) with local id L1\n"
                       "\tfor <rcpt1@example.net>; DATE\n");
    assert_well_formed(r, true);
    free(r);
    /* local: no TLS or user even if set, and no id when none is given */
    snprintf(env.tls, sizeof env.tls, "TLSv1.3 X");
    snprintf(env.auth_user, sizeof env.auth_user, "root");
    snprintf(env.client_ip, sizeof env.client_ip, "127.0.0.1");
    r = headers_received(&env, "mail.example.org", NULL, false);
    assert_received(r, "Received: by mail.example.org (pobox) with local\n"
                       "\tfor <rcpt1@example.net>; DATE\n");
    free(r);
    envelope_reset(&env);
}

static void test_received_injection(void **state)
{
    struct envelope env = env_for(ORIGIN_SUBMISSION, "evil\r\nBcc: x@evil.example",
                                  "192.0.2.1\r\nX: y", "TLSv1.3 A)\nB",
                                  "bob)\r\nBcc: x@evil.example (", 1);
    snprintf(env.rcpts[0].address, sizeof env.rcpts[0].address,
             "a>\nBcc: b@evil.example");
    char *r = headers_received(&env, "mail.example.org", "Q\nX", false);

    assert_well_formed(r, true);
    assert_null(strchr(r, '\r'));
    assert_null(strstr(r, "\nBcc"));
    assert_null(strstr(r, "\n\tBcc"));
    assert_non_null(strstr(r, "from evil??Bcc:?x?evil.example ("));
    assert_non_null(strstr(r, "(using TLSv1.3 with cipher A??B)"));
    assert_non_null(strstr(r, "(authenticated sender: bob???Bcc: x@evil.example ?)"));
    assert_non_null(strstr(r, "for <a??Bcc: b@evil.example>;"));
    assert_non_null(strstr(r, "id Q?X"));
    /* comments stay balanced */
    int depth = 0;
    for (const char *p = r; *p; p++) {
        depth += *p == '(';
        depth -= *p == ')';
        assert_true(depth >= 0 && depth <= 1);
    }
    assert_int_equal(depth, 0);
    free(r);

    /* invalid UTF-8 and C1 controls even with SMTPUTF8 */
    snprintf(env.helo, sizeof env.helo, "h\xc3(\xc2\x85x\xe2\x80");
    env.smtputf8 = true;
    r = headers_received(&env, "mail.example.org", "Q", false);
    assert_non_null(strstr(r, "from h????x?? ("));
    free(r);
    envelope_reset(&env);
}

static void test_received_long_values(void **state)
{
    char helo[200], user[200];
    memset(helo, 'h', sizeof helo - 1);
    helo[sizeof helo - 1] = '\0';
    memset(user, 'u', sizeof user - 1);
    user[sizeof user - 1] = '\0';
    struct envelope env = env_for(ORIGIN_SUBMISSION, helo, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                                  "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256", user, 1);
    char *r = headers_received(&env, "a-rather-long-host-name.mail.example.org",
                               "0123456789ABCDEF", false);
    assert_well_formed(r, true);
    assert_non_null(strstr(r, "Received: from\n\thhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh\n"));
    assert_null(strstr(r, "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"));
    assert_non_null(strstr(r, "\t([IPv6:2001:db8:ffff:ffff:ffff:ffff:ffff:ffff])\n"));
    assert_non_null(strstr(r, "sender:\n\tuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu)\n"));
    free(r);

    /* a recipient too long for one line stays whole, under 998 octets */
    char rcpt[ENVELOPE_ADDR_MAX];
    memset(rcpt, 'r', sizeof rcpt - 1);
    rcpt[sizeof rcpt - 1] = '\0';
    rcpt[100] = '@';
    snprintf(env.rcpts[0].address, sizeof env.rcpts[0].address, "%s", rcpt);
    r = headers_received(&env, "mail.example.org", "Q", false);
    assert_well_formed(r, false);
    char want[ENVELOPE_ADDR_MAX + 8];
    snprintf(want, sizeof want, "<%s>;", rcpt);
    assert_non_null(strstr(r, want));
    for (const char *line = r; *line;) {
        const char *nl = strchr(line, '\n');
        assert_true(nl - line < 998);
        line = nl + 1;
    }
    free(r);
    envelope_reset(&env);
}

/* ---- copying without Bcc: ---- */

static void test_copy_without_bcc(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Bcc: x@y.org\nFrom: a@x.org\nTo: b@y.org\n\nbody\n",
         "From: a@x.org\nTo: b@y.org\n\nbody\n"},
        {"From: a@x.org\nTo: b@y.org\nBcc: x@y.org\n\nbody\n",
         "From: a@x.org\nTo: b@y.org\n\nbody\n"},
        {"From: a@x.org\nBcc: x@y.org,\n  z@w.org,\n\tq@r.org\nTo: b@y.org\n\nbody\n",
         "From: a@x.org\nTo: b@y.org\n\nbody\n"},
        {"BCC: 1@x.org\nFrom: a@x.org\nbcc: 2@x.org\nBcc : 3@x.org\n (more)\nTo: b@y.org\nbCc:\n\nbody\n",
         "From: a@x.org\nTo: b@y.org\n\nbody\n"},
        {"From: a@x.org\nBcc-Copy: stays\nX-Bcc: stays\n\nBcc: body line stays\n\nBcc: too\n",
         "From: a@x.org\nBcc-Copy: stays\nX-Bcc: stays\n\nBcc: body line stays\n\nBcc: too\n"},
        {"From: a@x.org\nBcc: x@y.org\n", "From: a@x.org\n"},          /* no body */
        {"From: a@x.org\nBcc: x@y.org", "From: a@x.org\n"},
        {"Bcc: x@y.org\n\n", "\n"},
        {"", ""},
        {"\nBcc: body\n", "\nBcc: body\n"},
        {"From: a@x.org\r\nBcc: x@y.org\r\n\r\nBcc: body\r\n",
         "From: a@x.org\r\n\r\nBcc: body\r\n"},
        {"no colon line\nBcc: x\n garbage\n\nb", "no colon line\n\nb"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = copy_without_bcc(cases[i].in);
        if (strcmp(got, cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\" want \"%s\"", i, got, cases[i].out);
        free(got);
    }
}

static void test_copy_large_body(void **state)
{
    size_t n = 3 * HEADERS_MAX + 12345;
    char *msg = malloc(n);
    assert_non_null(msg);
    for (size_t i = 0; i < n; i++)
        msg[i] = (char)('a' + i % 26);
    const char *hdr = "From: a@x.org\nBcc: secret@x.org\n\n";
    memcpy(msg, hdr, strlen(hdr));
    for (size_t i = 100; i < n; i += 1000)
        msg[i] = '\n';
    int in = spool_n(msg, n), out = spool("");
    assert_int_equal(headers_copy_without_bcc(in, out), 0);
    size_t len;
    char *got = slurp(out, &len);
    size_t drop = strlen("Bcc: secret@x.org\n");
    assert_int_equal(len, n - drop);
    assert_memory_equal(got, "From: a@x.org\n\n", 15);
    assert_memory_equal(got + 14, msg + 14 + drop, n - 14 - drop);
    free(got);
    free(msg);
    close(in);
    close(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_display_name),
        cmocka_unit_test(test_from_quoted_local_part),
        cmocka_unit_test(test_from_comments),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_multiple_from),
        cmocka_unit_test(test_folded),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_to_cc_bcc),
        cmocka_unit_test(test_date_and_message_id_present),
        cmocka_unit_test(test_no_body),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_address_without_domain),
        cmocka_unit_test(test_header_too_long),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test(test_received_smtp),
        cmocka_unit_test(test_received_submission),
        cmocka_unit_test(test_received_xtnd_local),
        cmocka_unit_test(test_received_injection),
        cmocka_unit_test(test_received_long_values),
        cmocka_unit_test(test_copy_without_bcc),
        cmocka_unit_test(test_copy_large_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
