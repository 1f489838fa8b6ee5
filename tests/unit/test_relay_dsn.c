/* test_relay_dsn.c — unit tests for relay/dsn: the RFC 3464 reports are
 * parsed back with GMime (the MIME tree, the header, the returned
 * original) and their message/delivery-status fields read with a small
 * field parser here; no DSN for the null sender; what RET= returns; the
 * size limit; folding and sanitizing of remote text; SMTPUTF8 (RFC 6533). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "relay/dsn.h"

#define ARRIVAL 1718000000          /* Mon, 10 Jun 2024 06:13:20 UTC */
#define ATTEMPT 1718003600
#define UNTIL 1718400000            /* Fri, 14 Jun 2024 21:20:00 UTC */

static const char original[] =
    "Received: from a.test by mx.a.test\n"
    "From: Alice <alice@a.test>\n"
    "To: bob@b.test\n"
    "Subject: the original\n"
    "Message-ID: <orig@a.test>\n"
    "\n"
    "Hello Bob,\n"
    "--not-a-boundary\n"
    ".\n"
    "bye\n";

/* A temporary file holding len octets of text; unlinked, fd returned. */
static int temp_fd(const char *text, size_t len)
{
    char path[] = "/tmp/test_relay_dsn.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    return fd;
}

static struct relay_dsn_rcpt bob = {
    .address = "bob@b.test",
    .orcpt = "rfc822;Bob@B.test",
    .action = RELAY_DSN_FAILED,
    .status = "5.1.1",
    .remote_mta = "mx.b.test",
    .smtp_reply = "550 5.1.1 <bob@b.test>: Recipient address rejected",
    .last_attempt = ATTEMPT,
};

static void base_params(struct relay_dsn_params *p, int fd)
{
    memset(p, 0, sizeof *p);
    p->kind = RELAY_DSN_FAILURE;
    p->reporting_mta = "mx.a.test";
    p->sender = "alice@a.test";
    p->envid = "QQ314159";
    p->ret = DSN_RET_UNSET;
    p->arrival = ARRIVAL;
    p->now = ATTEMPT + 10;
    p->rcpts = &bob;
    p->n_rcpts = 1;
    p->msg_fd = fd;
}

/* ---- reading the result back ---- */

static GMimeMessage *parse(const char *text)
{
    GMimeStream *s = g_mime_stream_mem_new_with_buffer(text, strlen(text));
    GMimeParser *parser = g_mime_parser_new_with_stream(s);
    GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);

    g_object_unref(parser);
    g_object_unref(s);
    assert_non_null(m);
    return m;
}

static void assert_type(GMimeObject *o, const char *type)
{
    GMimeContentType *ct = g_mime_object_get_content_type(o);
    char *t = g_mime_content_type_get_mime_type(ct);
    assert_string_equal(t, type);
    g_free(t);
}

/* The decoded content of a leaf part, NUL-terminated; g_free() it. */
static char *part_text(GMimeObject *o)
{
    assert_true(GMIME_IS_PART(o));
    GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(o));
    assert_non_null(w);
    GMimeStream *s = g_mime_stream_mem_new();
    g_mime_data_wrapper_write_to_stream(w, s);
    GByteArray *a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
    char *t = g_strndup((const char *)a->data, a->len);
    g_object_unref(s);
    return t;
}

/* message/delivery-status as blocks of fields (RFC 3464 2.1): unfolded,
 * names lowercased. */
#define MAX_BLOCKS 8
#define MAX_FIELDS 16
struct ds {
    size_t n_blocks;
    size_t n_fields[MAX_BLOCKS];
    char *name[MAX_BLOCKS][MAX_FIELDS], *value[MAX_BLOCKS][MAX_FIELDS];
};

static void ds_parse(const char *text, struct ds *ds)
{
    memset(ds, 0, sizeof *ds);
    char *copy = strdup(text);
    assert_non_null(copy);
    bool new_block = true;
    /* unfold first: "\n" + WSP joins the lines */
    size_t w = 0;
    for (size_t i = 0; copy[i]; i++) {
        if (copy[i] == '\n' && (copy[i + 1] == ' ' || copy[i + 1] == '\t'))
            continue;
        copy[w++] = copy[i];
    }
    copy[w] = '\0';
    for (char *line = copy; line && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line == '\0') {
            new_block = true;
        } else {
            if (new_block) {
                assert_true(ds->n_blocks < MAX_BLOCKS);
                ds->n_blocks++;
                new_block = false;
            }
            size_t b = ds->n_blocks - 1, f = ds->n_fields[b]++;
            assert_true(f < MAX_FIELDS);
            char *colon = strchr(line, ':');
            assert_non_null(colon);
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            ds->name[b][f] = g_ascii_strdown(line, -1);
            ds->value[b][f] = g_strdup(v);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(copy);
}

static const char *ds_get(const struct ds *ds, size_t b, const char *name)
{
    assert_true(b < ds->n_blocks);
    const char *found = NULL;
    for (size_t f = 0; f < ds->n_fields[b]; f++) {
        if (strcmp(ds->name[b][f], name) == 0) {
            assert_null(found);         /* each field once */
            found = ds->value[b][f];
        }
    }
    return found;
}

static void ds_free(struct ds *ds)
{
    for (size_t b = 0; b < ds->n_blocks; b++)
        for (size_t f = 0; f < ds->n_fields[b]; f++) {
            g_free(ds->name[b][f]);
            g_free(ds->value[b][f]);
        }
}

/* Every line shorter than 998 octets (RFC 5322 2.1.1), LF only. */
static void assert_lines_ok(const char *text)
{
    assert_null(strchr(text, '\r'));
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        assert_true(n < 998);
        p += n + (nl ? 1 : 0);
    }
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
}

/* The multipart/report of m: checks the type and count, returns it. */
static GMimeMultipart *report(GMimeMessage *m, const char *report_type,
                              int parts)
{
    GMimeObject *body = g_mime_message_get_mime_part(m);
    assert_non_null(body);
    assert_type(body, "multipart/report");
    GMimeContentType *ct = g_mime_object_get_content_type(body);
    assert_string_equal(g_mime_content_type_get_parameter(ct, "report-type"),
                        report_type);
    assert_true(GMIME_IS_MULTIPART(body));
    GMimeMultipart *mp = GMIME_MULTIPART(body);
    assert_int_equal(g_mime_multipart_get_count(mp), parts);
    return mp;
}

/* ---- the tests ---- */

static void test_failure_bounce(void **state)
{
    struct relay_dsn_params p;
    int fd = temp_fd(original, sizeof original - 1);

    base_params(&p, fd);
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);

    GMimeMessage *m = parse(text);
    GMimeObject *mo = GMIME_OBJECT(m);
    assert_string_equal(g_mime_message_get_subject(m),
                        "Undelivered Mail Returned to Sender");
    InternetAddressList *from = g_mime_message_get_from(m);
    assert_int_equal(internet_address_list_length(from), 1);
    InternetAddress *fa = internet_address_list_get_address(from, 0);
    assert_string_equal(internet_address_mailbox_get_addr(
                            INTERNET_ADDRESS_MAILBOX(fa)),
                        "MAILER-DAEMON@mx.a.test");
    assert_string_equal(internet_address_get_name(fa), "Mail Delivery System");
    InternetAddressList *to = g_mime_message_get_to(m);
    assert_int_equal(internet_address_list_length(to), 1);
    assert_string_equal(internet_address_mailbox_get_addr(
                            INTERNET_ADDRESS_MAILBOX(
                                internet_address_list_get_address(to, 0))),
                        "alice@a.test");
    assert_string_equal(g_mime_object_get_header(mo, "Auto-Submitted"),
                        "auto-replied");
    assert_string_equal(g_mime_object_get_header(mo, "MIME-Version"), "1.0");
    assert_string_equal(g_mime_object_get_header(mo, "Date"),
                        "Mon, 10 Jun 2024 07:13:30 +0000");
    const char *msgid = g_mime_message_get_message_id(m);
    assert_non_null(msgid);
    assert_non_null(strstr(msgid, "@mx.a.test"));

    GMimeMultipart *mp = report(m, "delivery-status", 3);
    /* 1: the human text */
    GMimeObject *p1 = g_mime_multipart_get_part(mp, 0);
    assert_type(p1, "text/plain");
    char *human = part_text(p1);
    assert_non_null(strstr(human, "could not be delivered"));
    assert_non_null(strstr(human, "<bob@b.test>: host mx.b.test said: 550 "
                                  "5.1.1 <bob@b.test>: Recipient address"));
    assert_non_null(strstr(human, "Your message is attached."));
    g_free(human);
    /* 2: the delivery status */
    GMimeObject *p2 = g_mime_multipart_get_part(mp, 1);
    assert_type(p2, "message/delivery-status");
    char *status = part_text(p2);
    struct ds ds;
    ds_parse(status, &ds);
    assert_int_equal(ds.n_blocks, 2);
    assert_string_equal(ds_get(&ds, 0, "reporting-mta"), "dns; mx.a.test");
    assert_string_equal(ds_get(&ds, 0, "original-envelope-id"), "QQ314159");
    assert_string_equal(ds_get(&ds, 0, "arrival-date"),
                        "Mon, 10 Jun 2024 06:13:20 +0000");
    assert_string_equal(ds_get(&ds, 1, "original-recipient"),
                        "rfc822;Bob@B.test");
    assert_string_equal(ds_get(&ds, 1, "final-recipient"), "rfc822;bob@b.test");
    assert_string_equal(ds_get(&ds, 1, "action"), "failed");
    assert_string_equal(ds_get(&ds, 1, "status"), "5.1.1");
    assert_string_equal(ds_get(&ds, 1, "remote-mta"), "dns; mx.b.test");
    assert_string_equal(ds_get(&ds, 1, "diagnostic-code"),
                        "smtp; 550 5.1.1 <bob@b.test>: Recipient address "
                        "rejected");
    assert_string_equal(ds_get(&ds, 1, "last-attempt-date"),
                        "Mon, 10 Jun 2024 07:13:20 +0000");
    assert_null(ds_get(&ds, 1, "will-retry-until"));
    ds_free(&ds);
    g_free(status);
    /* 3: the whole original */
    GMimeObject *p3 = g_mime_multipart_get_part(mp, 2);
    assert_type(p3, "message/rfc822");
    assert_true(GMIME_IS_MESSAGE_PART(p3));
    GMimeMessage *orig =
        g_mime_message_part_get_message(GMIME_MESSAGE_PART(p3));
    assert_non_null(orig);
    assert_string_equal(g_mime_message_get_subject(orig), "the original");
    assert_string_equal(g_mime_message_get_message_id(orig), "orig@a.test");
    /* byte for byte after the part header */
    const char *body = strstr(text, "Content-Type: message/rfc822\n\n");
    assert_non_null(body);
    body += strlen("Content-Type: message/rfc822\n\n");
    assert_memory_equal(body, original, sizeof original - 1);

    g_object_unref(m);
    free(text);
    close(fd);
}

static void test_null_sender(void **state)
{
    struct relay_dsn_params p;

    base_params(&p, -1);
    p.sender = "";
    errno = 0;
    assert_null(relay_dsn_build(&p));
    assert_int_equal(errno, EINVAL);
    p.sender = NULL;
    assert_null(relay_dsn_build(&p));
    p.kind = RELAY_DSN_DELAY;
    assert_null(relay_dsn_build(&p));
    p.kind = RELAY_DSN_SUCCESS;
    assert_null(relay_dsn_build(&p));
}

static void test_bad_params(void **state)
{
    struct relay_dsn_params p;
    char *text;

    base_params(&p, -1);
    p.n_rcpts = 0;
    assert_null(relay_dsn_build(&p));
    base_params(&p, -1);
    p.sender = "alice@a.test>\nBcc: victim@c.test";
    assert_null(relay_dsn_build(&p));
    assert_int_equal(errno, EINVAL);
    p.sender = "al\xc3\xa9@a.test";         /* UTF-8 without SMTPUTF8 */
    assert_null(relay_dsn_build(&p));
    base_params(&p, -1);
    p.reporting_mta = "mx.a.test\nX-Evil: 1";
    assert_null(relay_dsn_build(&p));
    p.reporting_mta = "mx a";
    assert_null(relay_dsn_build(&p));
    p.reporting_mta = "";
    assert_null(relay_dsn_build(&p));
    assert_null(relay_dsn_build(NULL));
    /* a quoted local part with a space is an address */
    base_params(&p, -1);
    p.sender = "\"a b\"@a.test";
    text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nTo: <\"a b\"@a.test>\n"));
    free(text);
}

static void test_ret_hdrs(void **state)
{
    struct relay_dsn_params p;
    int fd = temp_fd(original, sizeof original - 1);

    base_params(&p, fd);
    p.ret = DSN_RET_HDRS;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);
    assert_null(strstr(text, "Hello Bob"));
    GMimeMessage *m = parse(text);
    GMimeMultipart *mp = report(m, "delivery-status", 3);
    GMimeObject *p3 = g_mime_multipart_get_part(mp, 2);
    assert_type(p3, "text/rfc822-headers");
    char *hdrs = part_text(p3);
    /* the header fields, without the empty line or the body */
    size_t hl = (size_t)(strstr(original, "\n\n") - original) + 1;
    assert_int_equal(strlen(hdrs), hl);
    assert_memory_equal(hdrs, original, hl);
    g_free(hdrs);
    char *human = part_text(g_mime_multipart_get_part(mp, 0));
    assert_non_null(strstr(human, "The header of your message is attached."));
    g_free(human);
    g_object_unref(m);
    free(text);
    close(fd);
}

static void test_too_large(void **state)
{
    struct relay_dsn_params p;
    size_t big = 200000;
    char *msg = malloc(big);

    assert_non_null(msg);
    memcpy(msg, original, sizeof original - 1);
    for (size_t i = sizeof original - 1; i < big; i++)
        msg[i] = (i % 72 == 0) ? '\n' : 'x';
    msg[big - 1] = '\n';
    int fd = temp_fd(msg, big);
    base_params(&p, fd);
    p.return_max = 100000;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_true(strlen(text) < 10000);
    GMimeMessage *m = parse(text);
    GMimeMultipart *mp = report(m, "delivery-status", 3);
    assert_type(g_mime_multipart_get_part(mp, 2), "text/rfc822-headers");
    char *human = part_text(g_mime_multipart_get_part(mp, 0));
    assert_non_null(strstr(human, "too large to be returned"));
    g_free(human);
    g_object_unref(m);
    free(text);
    /* at the limit: returned */
    p.return_max = big;
    text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_true(strlen(text) > big);
    assert_non_null(strstr(text, "Content-Type: message/rfc822\n"));
    free(text);
    close(fd);
    free(msg);
}

static void test_delay(void **state)
{
    struct relay_dsn_params p;
    struct relay_dsn_rcpt r = {
        .address = "bob@b.test",
        .action = RELAY_DSN_DELAYED,
        .status = "4.4.1",
        .reason = "connection to mx.b.test timed out",
        .last_attempt = ATTEMPT,
        .retry_until = UNTIL,
    };
    int fd = temp_fd(original, sizeof original - 1);

    base_params(&p, fd);
    p.kind = RELAY_DSN_DELAY;
    p.ret = DSN_RET_FULL;       /* RET applies to failures only */
    p.envid = NULL;
    p.rcpts = &r;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);
    GMimeMessage *m = parse(text);
    assert_string_equal(g_mime_message_get_subject(m),
                        "Delayed Mail (still being retried)");
    GMimeMultipart *mp = report(m, "delivery-status", 3);
    char *human = part_text(g_mime_multipart_get_part(mp, 0));
    assert_non_null(strstr(human, "not been delivered yet"));
    assert_non_null(strstr(human, "Fri, 14 Jun 2024 21:20:00 +0000"));
    assert_non_null(strstr(human, "<bob@b.test>: connection to mx.b.test "
                                  "timed out"));
    g_free(human);
    char *status = part_text(g_mime_multipart_get_part(mp, 1));
    struct ds ds;
    ds_parse(status, &ds);
    assert_null(ds_get(&ds, 0, "original-envelope-id"));
    assert_null(ds_get(&ds, 1, "original-recipient"));
    assert_null(ds_get(&ds, 1, "remote-mta"));
    assert_string_equal(ds_get(&ds, 1, "action"), "delayed");
    assert_string_equal(ds_get(&ds, 1, "status"), "4.4.1");
    assert_string_equal(ds_get(&ds, 1, "diagnostic-code"),
                        "X-Pobox; connection to mx.b.test timed out");
    assert_string_equal(ds_get(&ds, 1, "will-retry-until"),
                        "Fri, 14 Jun 2024 21:20:00 +0000");
    ds_free(&ds);
    g_free(status);
    assert_type(g_mime_multipart_get_part(mp, 2), "text/rfc822-headers");
    g_object_unref(m);
    free(text);
    close(fd);
}

static void test_success(void **state)
{
    struct relay_dsn_params p;
    struct relay_dsn_rcpt r[2] = {
        {.address = "bob@b.test", .action = RELAY_DSN_DELIVERED,
         .status = "2.0.0", .remote_mta = "mx.b.test",
         .smtp_reply = "250 2.0.0 Ok: queued as 4F2A"},
        {.address = "carol@c.test", .action = RELAY_DSN_RELAYED,
         .status = "not a status", .remote_mta = "mx.c.test",
         .smtp_reply = "250 ok"},
    };

    base_params(&p, -1);
    p.kind = RELAY_DSN_SUCCESS;
    p.rcpts = r;
    p.n_rcpts = 2;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);
    GMimeMessage *m = parse(text);
    assert_string_equal(g_mime_message_get_subject(m),
                        "Successful Mail Delivery Report");
    GMimeMultipart *mp = report(m, "delivery-status", 2);  /* no original */
    char *status = part_text(g_mime_multipart_get_part(mp, 1));
    struct ds ds;
    ds_parse(status, &ds);
    assert_int_equal(ds.n_blocks, 3);
    assert_string_equal(ds_get(&ds, 1, "action"), "delivered");
    assert_string_equal(ds_get(&ds, 1, "status"), "2.0.0");
    assert_string_equal(ds_get(&ds, 2, "final-recipient"),
                        "rfc822;carol@c.test");
    assert_string_equal(ds_get(&ds, 2, "action"), "relayed");
    assert_string_equal(ds_get(&ds, 2, "status"), "2.0.0");    /* default */
    assert_null(ds_get(&ds, 2, "last-attempt-date"));
    ds_free(&ds);
    g_free(status);
    char *human = part_text(g_mime_multipart_get_part(mp, 0));
    assert_non_null(strstr(human, "was delivered"));
    assert_non_null(strstr(human, "no further"));
    assert_null(strstr(human, "attached"));
    g_free(human);
    g_object_unref(m);
    free(text);
}

/* The remote text is cleaned (no CR, LF or controls: no field of its own)
 * and folded: every line < 998 octets, the words all there. */
static void test_long_hostile_diagnostic(void **state)
{
    struct relay_dsn_params p;
    struct relay_dsn_rcpt r = bob;
    size_t n = 6000;
    char *diag = malloc(n + 1), *expect = malloc(n + 1);

    assert_non_null(diag);
    assert_non_null(expect);
    strcpy(diag, "550 5.7.1 \r\nX-Injected: yes\x01\x7f ");
    size_t o = strlen(diag);
    for (; o < 3000; o++)               /* words of 9 */
        diag[o] = o % 10 == 0 ? ' ' : 'w';
    for (; o < n; o++)                  /* then one token of 3000 */
        diag[o] = 't';
    diag[n] = '\0';
    r.smtp_reply = diag;
    base_params(&p, -1);
    p.rcpts = &r;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);
    assert_null(strstr(text, "\nX-Injected"));
    GMimeMessage *m = parse(text);
    GMimeMultipart *mp = report(m, "delivery-status", 2);
    char *status = part_text(g_mime_multipart_get_part(mp, 1));
    struct ds ds;
    ds_parse(status, &ds);
    const char *dc = ds_get(&ds, 1, "diagnostic-code");
    assert_non_null(dc);
    assert_true(strncmp(dc, "smtp; 550 5.7.1 X-Injected: yes?? w", 35) == 0);
    /* no character lost: only white space differs */
    size_t e = 0;
    for (const char *s = diag; *s; s++)
        if (*s > ' ' && *s < 0x7f)
            expect[e++] = *s;
    expect[e] = '\0';
    size_t g = 0;
    const char *d = dc + strlen("smtp;");
    for (; *d; d++)
        if (*d != ' ' && *d != '?')
            assert_int_equal(*d, expect[g++]);
    assert_int_equal(g, e);
    ds_free(&ds);
    g_free(status);
    g_object_unref(m);
    free(text);
    free(diag);
    free(expect);
}

/* An original with its own MIME parts, CRLF line ends and 8-bit text. */
static void test_mime_original(void **state)
{
    static const char msg[] =
        "From: alice@a.test\r\n"
        "Subject: parts\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"=_pobox_report_x\"\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "--=_pobox_report_x\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "gr\xc3\xbc\xc3\x9f\r\n"
        "--=_pobox_report_x--\r\n";
    struct relay_dsn_params p;
    int fd = temp_fd(msg, sizeof msg - 1);

    base_params(&p, fd);
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);              /* CRs dropped */
    assert_non_null(strstr(text, "\nContent-Transfer-Encoding: 8bit\n"));
    GMimeMessage *m = parse(text);
    GMimeObject *body = g_mime_message_get_mime_part(m);
    const char *boundary = g_mime_multipart_get_boundary(GMIME_MULTIPART(body));
    assert_non_null(boundary);
    assert_string_not_equal(boundary, "=_pobox_report_x");
    GMimeMultipart *mp = report(m, "delivery-status", 3);
    GMimeObject *p3 = g_mime_multipart_get_part(mp, 2);
    assert_true(GMIME_IS_MESSAGE_PART(p3));
    GMimeMessage *orig =
        g_mime_message_part_get_message(GMIME_MESSAGE_PART(p3));
    GMimeObject *ob = g_mime_message_get_mime_part(orig);
    assert_true(GMIME_IS_MULTIPART(ob));
    assert_int_equal(g_mime_multipart_get_count(GMIME_MULTIPART(ob)), 1);
    g_object_unref(m);
    free(text);
    close(fd);
}

/* RFC 6533: message/global-delivery-status, message/global, UTF-8 kept. */
static void test_smtputf8(void **state)
{
    static const char msg[] =
        "From: j\xc3\xb6rg@a.test\n"
        "To: b\xc3\xb6" "b@b.test\n"
        "Subject: gr\xc3\xbc\xc3\x9f\n"
        "\n"
        "hi\n";
    struct relay_dsn_rcpt r = {
        .address = "b\xc3\xb6" "b@b.test",
        .orcpt = "utf-8;b\xc3\xb6" "b@b.test",
        .action = RELAY_DSN_FAILED,
        .status = "5.1.1",
        .remote_mta = "mx.b.test",
        .smtp_reply = "550 5.1.1 no such user",
    };
    struct relay_dsn_params p;
    int fd = temp_fd(msg, sizeof msg - 1);

    base_params(&p, fd);
    p.sender = "j\xc3\xb6rg@a.test";
    p.smtputf8 = true;
    p.rcpts = &r;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_lines_ok(text);
    assert_non_null(strstr(text, "\nTo: <j\xc3\xb6rg@a.test>\n"));
    GMimeMessage *m = parse(text);
    GMimeMultipart *mp = report(m, "global-delivery-status", 3);
    GMimeObject *p1 = g_mime_multipart_get_part(mp, 0);
    assert_type(p1, "text/plain");
    assert_string_equal(g_mime_object_get_content_type_parameter(p1, "charset"),
                        "utf-8");
    GMimeObject *p2 = g_mime_multipart_get_part(mp, 1);
    assert_type(p2, "message/global-delivery-status");
    char *status = part_text(p2);
    struct ds ds;
    ds_parse(status, &ds);
    assert_string_equal(ds_get(&ds, 1, "final-recipient"),
                        "utf-8;b\xc3\xb6" "b@b.test");
    assert_string_equal(ds_get(&ds, 1, "original-recipient"),
                        "utf-8;b\xc3\xb6" "b@b.test");
    ds_free(&ds);
    g_free(status);
    GMimeObject *p3 = g_mime_multipart_get_part(mp, 2);
    assert_type(p3, "message/global");
    assert_non_null(strstr(text, "Content-Type: message/global\n"
                                 "Content-Transfer-Encoding: 8bit\n\n"
                                 "From: j\xc3\xb6rg@a.test\n"));
    g_object_unref(m);
    free(text);
    /* headers only: message/global-headers */
    p.ret = DSN_RET_HDRS;
    text = relay_dsn_build(&p);
    assert_non_null(text);
    assert_non_null(strstr(text, "Content-Type: message/global-headers\n"));
    free(text);
    close(fd);
}

/* Without SMTPUTF8 everything we write is ASCII: 7bit. */
static void test_ascii_only(void **state)
{
    struct relay_dsn_rcpt r = bob;
    struct relay_dsn_params p;

    r.smtp_reply = "550 5.1.1 caf\xc3\xa9 \xff unknown";
    r.remote_mta = "mx.b.test\xc3\xa9 x";
    base_params(&p, -1);
    p.envid = "id\x01with\nlf";
    p.rcpts = &r;
    char *text = relay_dsn_build(&p);
    assert_non_null(text);
    for (const char *s = text; *s; s++)
        assert_true(*s == '\n' || (*s >= ' ' && *s < 0x7f));
    assert_non_null(strstr(text, "Content-Transfer-Encoding: 7bit\n"));
    assert_non_null(strstr(text, "charset=us-ascii\n"));
    assert_non_null(strstr(text, "\nOriginal-Envelope-Id: id?with lf\n"));
    assert_non_null(strstr(text, "\nRemote-MTA: dns; mx.b.test???x\n"));
    assert_non_null(strstr(text, "smtp; 550 5.1.1 caf?? ? unknown\n"));
    free(text);
}

/* The parts around the original stay intact whatever it holds, including
 * an original with no header/body separator or no final LF. */
static void test_odd_originals(void **state)
{
    static const char *const msgs[] = {
        "Subject: all header, no end of line",
        "\nbody only\n",
        "",
        "Subject: x\n\n\n\n",
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        for (int ret = DSN_RET_FULL; ret <= DSN_RET_HDRS; ret++) {
            struct relay_dsn_params p;
            int fd = temp_fd(msgs[i], strlen(msgs[i]));
            base_params(&p, fd);
            p.ret = (enum dsn_ret)ret;
            char *text = relay_dsn_build(&p);
            assert_non_null(text);
            assert_lines_ok(text);
            GMimeMessage *m = parse(text);
            report(m, "delivery-status", 3);
            g_object_unref(m);
            free(text);
            close(fd);
        }
    }
}

static void test_unreadable_original(void **state)
{
    struct relay_dsn_params p;
    int fd = temp_fd("x", 1);

    close(fd);
    base_params(&p, fd);        /* closed: EBADF */
    errno = 0;
    assert_null(relay_dsn_build(&p));
    assert_int_equal(errno, EBADF);
}

static void test_boundaries_differ(void **state)
{
    struct relay_dsn_params p;

    base_params(&p, -1);
    char *a = relay_dsn_build(&p), *b = relay_dsn_build(&p);
    assert_non_null(a);
    assert_non_null(b);
    const char *ba = strstr(a, "boundary=\""), *bb = strstr(b, "boundary=\"");
    assert_non_null(ba);
    assert_non_null(bb);
    assert_true(strncmp(ba, bb, 40) != 0);
    free(a);
    free(b);
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    g_mime_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_bounce),
        cmocka_unit_test(test_null_sender),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_ret_hdrs),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_long_hostile_diagnostic),
        cmocka_unit_test(test_mime_original),
        cmocka_unit_test(test_smtputf8),
        cmocka_unit_test(test_ascii_only),
        cmocka_unit_test(test_odd_originals),
        cmocka_unit_test(test_unreadable_original),
        cmocka_unit_test(test_boundaries_differ),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_mime_shutdown();
    return rc;
}
