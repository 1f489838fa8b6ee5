/* test_relay_client.c — unit tests for src/relay/client.c against a real
 * SMTP peer on loopback (tests/smtp_peer.py, one started per test with the
 * behaviour the test needs): the conversation and its parameters (SIZE,
 * BODY, SMTPUTF8, DSN), PIPELINING, HELO fallback, STARTTLS (opportunistic,
 * required, verified, implicit), AUTH PLAIN/LOGIN, per-recipient outcomes,
 * the message on the wire (CRLF, dot-stuffed, byte-exact), and a peer that
 * misbehaves: garbage, 1 MB lines, 10,000-line replies, injected replies
 * after STARTTLS, a failed handshake, stalls, a close mid-DATA. Each
 * transaction runs an event loop until its callback (or a watchdog), then
 * a little longer to catch a second callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay/client.h"

#define MAX_RCPTS 8

/* ---- the peer ---- */

static char dir[64];            /* per test run: port file, cert, records */
static char record[128];        /* the peer's record file */
static pid_t peer_pid;
static int peer_port;
static SSL_CTX *ctx;            /* no CA file: the system's store */
static SSL_CTX *ctx_peer_ca;    /* trusts the peer's self-signed cert */

static void path_in_dir(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static void remove_files(void)
{
    static const char *const names[] = {"port", "port.tmp", "rec", "rec.raw", "rec.data",
                                        "msg"};
    char p[160];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        path_in_dir(p, sizeof p, names[i]);
        unlink(p);
    }
}

/* Starts smtp_peer.py with the options (NULL-terminated). */
static void start_peer(const char *opt, ...)
{
    const char *argv[32];
    char portfile[160], rec_opt[160];
    size_t n = 0;
    va_list ap;

    remove_files();
    path_in_dir(portfile, sizeof portfile, "port");
    snprintf(rec_opt, sizeof rec_opt, "record=%s", record);
    argv[n++] = "python3";
    argv[n++] = "tests/smtp_peer.py";
    argv[n++] = portfile;
    argv[n++] = rec_opt;
    va_start(ap, opt);
    for (const char *o = opt; o && n < 31; o = va_arg(ap, const char *))
        argv[n++] = o;
    va_end(ap);
    argv[n] = NULL;

    peer_pid = fork();
    assert_true(peer_pid >= 0);
    if (peer_pid == 0) {
        execv("/usr/bin/python3", (char *const *)argv);
        _exit(127);
    }
    peer_port = 0;
    for (int i = 0; i < 1000 && peer_port == 0; i++) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            if (fscanf(f, "%d", &peer_port) != 1)
                peer_port = 0;
            fclose(f);
        }
        if (peer_port == 0) {
            int st;
            if (waitpid(peer_pid, &st, WNOHANG) == peer_pid)
                fail_msg("tests/smtp_peer.py exited (run from the repo root)");
            usleep(10000);
        }
    }
    assert_true(peer_port > 0);
}

static void stop_peer(void)
{
    if (peer_pid > 0) {
        kill(peer_pid, SIGTERM);
        waitpid(peer_pid, NULL, 0);
        peer_pid = 0;
    }
}

/* The whole of a file (NUL-terminated, *len without it); "" when missing. */
static char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    size_t n = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        for (;;) {
            if (n + 65536 + 1 > cap) {
                cap = (n + 65536 + 1) * 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
            size_t r = fread(buf + n, 1, 65536, f);
            if (r == 0)
                break;
            n += r;
        }
        fclose(f);
    }
    if (!buf)
        buf = malloc(1);
    assert_non_null(buf);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* The peer's record: it writes each line before it answers, but the last
 * lines (after QUIT) may come a moment after our callback. */
static char *peer_record(void)
{
    usleep(100000);
    return slurp(record, NULL);
}

static void expect_in(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("expected \"%s\" in:\n%s", needle, text);
}

static void expect_not_in(const char *text, const char *needle)
{
    if (strstr(text, needle))
        fail_msg("did not expect \"%s\" in:\n%s", needle, text);
}

static void expect_record(const char *needle)
{
    char *r = peer_record();
    expect_in(r, needle);
    free(r);
}

/* ---- the message ---- */

static int msg_file(const char *data, size_t len)
{
    char p[160];
    path_in_dir(p, sizeof p, "msg");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    return fd;
}

/* ---- running one transaction ---- */

struct outcome {
    struct event_base *base;
    int calls;
    bool inline_call;
    struct relay_client_result res;
    struct relay_client_rcpt rcpts[MAX_RCPTS];
    double seconds;
};

static bool in_send;

static void on_result(void *arg, const struct relay_client_result *res)
{
    struct outcome *o = arg;
    if (in_send)
        o->inline_call = true;
    if (o->calls++ == 0) {
        o->res = *res;
        assert_true(res->n_rcpts <= MAX_RCPTS);
        memcpy(o->rcpts, res->rcpts, res->n_rcpts * sizeof *res->rcpts);
        o->res.rcpts = o->rcpts;
    }
    if (o->base)
        event_base_loopbreak(o->base);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in peer_addr;

/* Defaults for a transaction to the peer; tests change what they need. */
static void default_params(struct relay_client_params *p, int msg_fd, uint64_t size)
{
    static const char *const rcpts[] = {"bob@b.test"};
    memset(p, 0, sizeof *p);
    memset(&peer_addr, 0, sizeof peer_addr);
    peer_addr.sin_family = AF_INET;
    peer_addr.sin_port = htons((uint16_t)peer_port);
    peer_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->addr = (const struct sockaddr *)&peer_addr;
    p->addrlen = sizeof peer_addr;
    p->host_name = "localhost";
    p->helo = "client.test";
    p->tls = RELAY_TLS_OPPORTUNISTIC;
    p->ssl_ctx = ctx;
    p->sender = "alice@a.test";
    p->rcpts = rcpts;
    p->n_rcpts = 1;
    p->msg_fd = msg_fd;
    p->msg_size = size;
    p->timeout_connect = 5;
    p->timeout_greeting = 5;
    p->timeout_command = 5;
    p->timeout_data_init = 5;
    p->timeout_data_block = 5;
    p->timeout_data_end = 5;
}

static void run(struct relay_client_params *p, struct outcome *o)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    memset(o, 0, sizeof *o);
    p->base = base;
    struct timeval dog = {30, 0}, tail = {0, 50000};
    struct event *ev = evtimer_new(base, on_watchdog, base);
    evtimer_add(ev, &dog);
    double t0 = now_s();
    in_send = true;
    struct relay_client *c = relay_client_send(p, on_result, o);
    in_send = false;
    assert_non_null(c);
    o->base = base;
    event_base_dispatch(base);
    o->seconds = now_s() - t0;
    event_free(ev);
    o->base = NULL;
    event_base_loopexit(base, &tail);
    event_base_dispatch(base);
    event_base_free(base);
    assert_int_equal(o->calls, 1);
    assert_false(o->inline_call);
}

static void expect_delivered(const struct outcome *o, size_t n)
{
    if (o->res.failed)
        fail_msg("session failed: %s (stage %s)", o->res.diagnostic, o->res.stage);
    assert_int_equal(o->res.n_rcpts, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(o->rcpts[i].code, 250);
        assert_string_equal(o->rcpts[i].status, "2.0.0");
        assert_string_equal(o->rcpts[i].stage, "end of data");
    }
    assert_int_equal(o->res.n_delivered, n);
}

static void expect_failed(const struct outcome *o, bool temp, const char *status,
                          const char *diag_part)
{
    assert_true(o->res.failed);
    assert_int_equal(o->res.temp, temp);
    assert_string_equal(o->res.status, status);
    expect_in(o->res.diagnostic, diag_part);
    for (size_t i = 0; i < o->res.n_rcpts; i++)
        assert_int_equal(o->rcpts[i].code, 0);
    assert_int_equal(o->res.n_delivered, 0);
}

/* Runs a transaction with one default message; returns the fd to close. */
static const char SIMPLE[] = "Subject: hi\n\nhello\n";

static void run_simple(struct relay_client_params *p, struct outcome *o)
{
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    if (!p->addr)
        default_params(p, fd, 0);
    p->msg_fd = fd;
    run(p, o);
    close(fd);
}

/* ---- fixtures ---- */

static int setup_all(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/pobox-client-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(record, sizeof record, "%s/rec", dir);
    signal(SIGPIPE, SIG_IGN);
    ctx = relay_client_ssl_ctx_new(NULL);
    if (!ctx)
        return -1;
    /* the peer makes its certificate at its first start: start one now */
    start_peer(NULL);
    stop_peer();
    char cert[160];
    path_in_dir(cert, sizeof cert, "cert.pem");
    ctx_peer_ca = relay_client_ssl_ctx_new(cert);
    return ctx_peer_ca ? 0 : -1;
}

static int teardown_all(void **state)
{
    stop_peer();
    remove_files();
    char p[160];
    path_in_dir(p, sizeof p, "cert.pem");
    unlink(p);
    path_in_dir(p, sizeof p, "key.pem");
    unlink(p);
    rmdir(dir);
    SSL_CTX_free(ctx);
    SSL_CTX_free(ctx_peer_ca);
    return 0;
}

static int teardown_one(void **state)
{
    stop_peer();
    return 0;
}

/* ---- the conversation ---- */

/* The message file, what must go on the wire, and what the peer keeps
 * after unstuffing: LF becomes CRLF, CR LF in the file stays one line end,
 * a bare CR is a line end too, dots are doubled at line starts, and a last
 * line without LF gets its CRLF. */
static const char TRICKY[] =
    "Subject: dots\n"
    "\n"
    ".leading dot\n"
    "..two dots\n"
    ".\n"
    "a . in the middle\n"
    "crlf in the file\r\n"
    "bare\rcr\n"
    "\n"
    ". \n"
    "8bit: \xc3\xa9t\xc3\xa9\n"
    "last line without LF";
static const char TRICKY_WIRE[] =
    "Subject: dots\r\n"
    "\r\n"
    "..leading dot\r\n"
    "...two dots\r\n"
    "..\r\n"
    "a . in the middle\r\n"
    "crlf in the file\r\n"
    "bare\r\ncr\r\n"
    "\r\n"
    ".. \r\n"
    "8bit: \xc3\xa9t\xc3\xa9\r\n"
    "last line without LF\r\n";
static const char TRICKY_DATA[] =
    "Subject: dots\r\n"
    "\r\n"
    ".leading dot\r\n"
    "..two dots\r\n"
    ".\r\n"
    "a . in the middle\r\n"
    "crlf in the file\r\n"
    "bare\r\ncr\r\n"
    "\r\n"
    ". \r\n"
    "8bit: \xc3\xa9t\xc3\xa9\r\n"
    "last line without LF\r\n";

static void expect_wire(const char *wire, size_t wire_len, const char *data,
                        size_t data_len)
{
    char p[160];
    size_t n;
    path_in_dir(p, sizeof p, "rec.raw");
    char *raw = slurp(p, &n);
    assert_int_equal(n, wire_len);
    assert_memory_equal(raw, wire, wire_len);
    free(raw);
    path_in_dir(p, sizeof p, "rec.data");
    char *d = slurp(p, &n);
    assert_int_equal(n, data_len);
    assert_memory_equal(d, data, data_len);
    free(d);
}

static void test_plain_with_params(void **state)
{
    static const char *const rcpts[] = {"bob@b.test", "carol@b.test"};
    static const unsigned notify[] = {DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE,
                                      DSN_NOTIFY_NEVER};
    static const char *const orcpt[] = {"rfc822;bob+x=y@b.test", NULL};
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=8bitmime,size=1000000,dsn", NULL);
    int fd = msg_file(TRICKY, sizeof TRICKY - 1);
    default_params(&p, fd, 4242);
    p.rcpts = rcpts;
    p.notify = notify;
    p.orcpt = orcpt;
    p.n_rcpts = 2;
    p.ret = DSN_RET_HDRS;
    p.envid = "id 1+2";
    p.body_8bit = true;
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 2);
    assert_true(o.res.peer_dsn);
    assert_false(o.res.tls_used);
    assert_string_equal(o.res.remote_ip, "127.0.0.1");
    assert_string_equal(o.rcpts[0].reply, "250 2.0.0 queued as TEST");

    char *r = peer_record();
    expect_in(r, "C: EHLO client.test\n");
    expect_in(r, "C: MAIL FROM:<alice@a.test> SIZE=4242 BODY=8BITMIME RET=HDRS "
                 "ENVID=id+201+2B2\n");
    expect_in(r, "C: RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE "
                 "ORCPT=rfc822;bob+2Bx+3Dy@b.test\n");
    expect_in(r, "C: RCPT TO:<carol@b.test> NOTIFY=NEVER\n");
    expect_in(r, "C: DATA\n");
    expect_in(r, "C: QUIT\n");
    expect_not_in(r, "STARTTLS");      /* not offered */
    expect_not_in(r, "# early");       /* no pipelining without PIPELINING */
    expect_not_in(r, "# bare");
    expect_not_in(r, "C!");
    free(r);
    expect_wire(TRICKY_WIRE, sizeof TRICKY_WIRE - 1, TRICKY_DATA, sizeof TRICKY_DATA - 1);
}

static void test_no_extensions_no_params(void **state)
{
    static const unsigned notify[] = {DSN_NOTIFY_SUCCESS};
    static const char *const orcpt[] = {"rfc822;bob@b.test"};
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer(NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 100);
    p.sender = "";
    p.notify = notify;
    p.orcpt = orcpt;
    p.ret = DSN_RET_FULL;
    p.envid = "x";
    p.body_8bit = true;
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    assert_false(o.res.peer_dsn);
    char *r = peer_record();
    expect_in(r, "C: MAIL FROM:<>\n");
    expect_in(r, "C: RCPT TO:<bob@b.test>\n");
    free(r);
    expect_wire("Subject: hi\r\n\r\nhello\r\n", 22, "Subject: hi\r\n\r\nhello\r\n", 22);
}

static void test_empty_message(void **state)
{
    struct relay_client_params p;
    struct outcome o;

    start_peer(NULL);
    int fd = msg_file("", 0);
    default_params(&p, fd, 0);
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    expect_record("# data 0\n");
}

static void test_pipelining_and_rcpt_outcomes(void **state)
{
    static const char *const rcpts[] = {"ok1@b.test", "later@b.test", "nobody@b.test",
                                        "ok2@b.test"};
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=pipelining,8bitmime", "rcpt:later@b.test=451",
               "rcpt:nobody@b.test=550", NULL);
    int fd = msg_file(TRICKY, sizeof TRICKY - 1);
    default_params(&p, fd, 0);
    p.rcpts = rcpts;
    p.n_rcpts = 4;
    run(&p, &o);
    close(fd);
    assert_false(o.res.failed);
    assert_int_equal(o.res.n_delivered, 2);
    assert_int_equal(o.rcpts[0].code, 250);
    assert_int_equal(o.rcpts[1].code, 451);
    assert_string_equal(o.rcpts[1].status, "4.0.0");
    assert_string_equal(o.rcpts[1].stage, "RCPT");
    assert_string_equal(o.rcpts[1].reply, "451 4.0.0 rcpt says the test");
    assert_int_equal(o.rcpts[2].code, 550);
    assert_string_equal(o.rcpts[2].status, "5.0.0");
    assert_int_equal(o.rcpts[3].code, 250);
    char *r = peer_record();
    /* MAIL, every RCPT and DATA in one go (RFC 2920) */
    expect_in(r, "# batch MAIL,RCPT,RCPT,RCPT,RCPT,DATA\n");
    expect_in(r, "C: MAIL FROM:<alice@a.test>\n");  /* no SIZE offered, 7bit */
    free(r);
    expect_wire(TRICKY_WIRE, sizeof TRICKY_WIRE - 1, TRICKY_DATA, sizeof TRICKY_DATA - 1);
}

static void test_all_rcpts_refused(void **state)
{
    static const char *const rcpts[] = {"x@b.test", "y@b.test"};
    struct relay_client_params p;
    struct outcome o;

    /* pipe 2: a peer that says 354 to DATA without recipients (RFC 2920
     * 3.1 says the client then sends just the ".") */
    for (int pipe = 0; pipe < 3; pipe++) {
        start_peer(pipe ? "ext=pipelining" : "ext=dsn", "rcpt=550",
                   pipe == 2 ? "data=354" : NULL, NULL);
        int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
        default_params(&p, fd, 0);
        p.rcpts = rcpts;
        p.n_rcpts = 2;
        run(&p, &o);
        close(fd);
        assert_false(o.res.failed);
        assert_int_equal(o.rcpts[0].code, 550);
        assert_int_equal(o.rcpts[1].code, 550);
        assert_int_equal(o.res.n_delivered, 0);
        char *r = peer_record();
        if (!pipe)
            expect_not_in(r, "C: DATA");    /* nobody to send to */
        if (pipe == 2)
            expect_in(r, "# data 0\n");
        else
            expect_not_in(r, "# data");
        expect_in(r, "C: QUIT\n");
        free(r);
        stop_peer();
    }
}

static void test_mail_refused(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    for (int pipe = 0; pipe < 2; pipe++) {
        start_peer(pipe ? "ext=pipelining" : "ext=dsn", "mail=550", NULL);
        memset(&p, 0, sizeof p);
        run_simple(&p, &o);
        expect_failed(&o, false, "5.0.0", "550 5.0.0 mail says the test");
        assert_int_equal(o.res.session_code, 550);
        assert_true(o.res.remote);
        assert_string_equal(o.res.stage, "MAIL");
        char *r = peer_record();
        expect_not_in(r, "# data");
        expect_in(r, "C: QUIT\n");
        free(r);
        stop_peer();
    }
    /* 4xx: temporary */
    start_peer("mail=452", NULL);
    memset(&p, 0, sizeof p);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.0.0", "452 4.0.0 mail says the test");
}

static void test_data_refused(void **state)
{
    static const char *const rcpts[] = {"bob@b.test", "nobody@b.test"};
    struct relay_client_params p;
    struct outcome o;

    start_peer("data=451", "rcpt:nobody@b.test=550", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.rcpts = rcpts;
    p.n_rcpts = 2;
    run(&p, &o);
    close(fd);
    assert_false(o.res.failed);
    assert_int_equal(o.rcpts[0].code, 451);
    assert_string_equal(o.rcpts[0].stage, "DATA");
    assert_int_equal(o.rcpts[1].code, 550);
    assert_string_equal(o.rcpts[1].stage, "RCPT");
}

static void test_dataend_refused(void **state)
{
    static const char *const rcpts[] = {"bob@b.test", "carol@b.test"};
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=pipelining", "dataend=554", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.rcpts = rcpts;
    p.n_rcpts = 2;
    run(&p, &o);
    close(fd);
    assert_false(o.res.failed);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(o.rcpts[i].code, 554);
        assert_string_equal(o.rcpts[i].status, "5.0.0");
        assert_string_equal(o.rcpts[i].stage, "end of data");
        assert_string_equal(o.rcpts[i].reply, "554 5.0.0 dataend says the test");
    }
    assert_int_equal(o.res.n_delivered, 0);
    expect_record("C: QUIT\n");
}

static void test_helo_fallback(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer("ehlo=502", NULL);
    run_simple(&p, &o);
    expect_delivered(&o, 1);
    char *r = peer_record();
    expect_in(r, "C: EHLO client.test\n");
    expect_in(r, "C: HELO client.test\n");
    expect_in(r, "C: MAIL FROM:<alice@a.test>\n");
    free(r);
}

static void test_smtputf8(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    /* a peer without SMTPUTF8: a permanent failure before MAIL */
    start_peer("ext=8bitmime", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.smtputf8 = true;
    p.sender = "j\xc3\xb6rg@a.test";
    run(&p, &o);
    expect_failed(&o, false, "5.6.7", "SMTPUTF8");
    assert_false(o.res.remote);
    char *r = peer_record();
    expect_not_in(r, "C: MAIL");
    expect_in(r, "C: QUIT\n");
    free(r);
    stop_peer();

    start_peer("ext=8bitmime,smtputf8", NULL);
    default_params(&p, fd, 0);
    p.smtputf8 = true;
    p.body_8bit = true;
    p.sender = "j\xc3\xb6rg@a.test";
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    expect_record("C: MAIL FROM:<j\xc3\xb6rg@a.test> BODY=8BITMIME SMTPUTF8\n");
}

static void test_size_limit(void **state)
{
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=size=100", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 101);
    run(&p, &o);
    close(fd);
    expect_failed(&o, false, "5.3.4", "exceeds");
    expect_record("C: QUIT\n");
}

/* ---- TLS ---- */

static void test_starttls_opportunistic(void **state)
{
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=pipelining,starttls", NULL);
    int fd = msg_file(TRICKY, sizeof TRICKY - 1);
    default_params(&p, fd, 0);
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    assert_true(o.res.tls_used);
    assert_false(o.res.tls_failed);
    assert_true(strncmp(o.res.tls_info, "TLSv1.", 6) == 0);
    char *r = peer_record();
    const char *tls = strstr(r, "# tls\n");
    assert_non_null(tls);
    assert_non_null(strstr(r, "C: STARTTLS\n"));
    assert_true(strstr(r, "C: STARTTLS\n") < tls);
    expect_in(tls, "C: EHLO client.test\n");     /* EHLO again over TLS */
    expect_in(tls, "C: MAIL FROM");
    expect_not_in(r, "# pre-tls data");
    free(r);
    expect_wire(TRICKY_WIRE, sizeof TRICKY_WIRE - 1, TRICKY_DATA, sizeof TRICKY_DATA - 1);
}

static void test_starttls_injection_dropped(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    /* "220" and "250 injected" arrive in one write: the 250 must not be
     * taken for the reply to the EHLO sent over TLS */
    start_peer("ext=starttls", "starttls=inject", NULL);
    run_simple(&p, &o);
    expect_delivered(&o, 1);
    assert_true(o.res.tls_used);
    char *r = peer_record();
    const char *tls = strstr(r, "# tls\n");
    assert_non_null(tls);
    expect_in(tls, "C: EHLO client.test\n");
    free(r);
}

static void test_starttls_refused(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    /* opportunistic: go on in plaintext */
    start_peer("ext=starttls", "starttls=454", NULL);
    run_simple(&p, &o);
    expect_delivered(&o, 1);
    assert_false(o.res.tls_used);
    stop_peer();

    /* required: a temporary failure */
    start_peer("ext=starttls", "starttls=454", NULL);
    memset(&p, 0, sizeof p);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_REQUIRED;
    run(&p, &o);
    close(fd);
    expect_failed(&o, true, "4.0.0", "454");
    expect_not_in(o.res.diagnostic, "\n");
}

static void test_tls_required_not_offered(void **state)
{
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=pipelining", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_REQUIRED;
    run(&p, &o);
    close(fd);
    expect_failed(&o, true, "4.7.4", "STARTTLS");
    char *r = peer_record();
    expect_not_in(r, "C: MAIL");
    expect_in(r, "C: QUIT\n");
    free(r);
}

static void test_tls_none_ignores_starttls(void **state)
{
    struct relay_client_params p;
    struct outcome o;

    start_peer("ext=starttls", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_NONE;
    p.ssl_ctx = NULL;
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    assert_false(o.res.tls_used);
    char *r = peer_record();
    expect_not_in(r, "C: STARTTLS");
    free(r);
}

static void test_tls_handshake_fails(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer("ext=starttls", "starttls=badtls", NULL);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.7.0", "TLS handshake failed: ");
    assert_true(o.res.tls_failed);
    assert_false(o.res.tls_used);
    assert_string_equal(o.res.stage, "TLS handshake");
}

static void test_tls_verify(void **state)
{
    struct relay_client_params p;
    struct outcome o;
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);

    start_peer("ext=starttls", NULL);
    /* the peer's certificate, trusted, for its name: fine */
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_REQUIRED;
    p.tls_verify = true;
    p.ssl_ctx = ctx_peer_ca;
    run(&p, &o);
    expect_delivered(&o, 1);
    assert_true(o.res.tls_used);

    /* its IP address is in the certificate too */
    default_params(&p, fd, 0);
    p.host_name = "127.0.0.1";
    p.tls_verify = true;
    p.ssl_ctx = ctx_peer_ca;
    run(&p, &o);
    expect_delivered(&o, 1);

    /* another name */
    default_params(&p, fd, 0);
    p.host_name = "mx.other.test";
    p.tls_verify = true;
    p.ssl_ctx = ctx_peer_ca;
    run(&p, &o);
    expect_failed(&o, true, "4.7.5", "certificate verify failed");
    assert_true(o.res.tls_failed);

    /* not trusted (the system's store) */
    default_params(&p, fd, 0);
    p.tls_verify = true;
    run(&p, &o);
    expect_failed(&o, true, "4.7.5", "certificate verify failed");

    /* without tls_verify the same certificate is fine */
    default_params(&p, fd, 0);
    p.host_name = "mx.other.test";
    run(&p, &o);
    expect_delivered(&o, 1);
    assert_true(o.res.tls_used);
    close(fd);
}

static void test_implicit_tls(void **state)
{
    struct relay_client_params p;
    struct outcome o;

    start_peer("implicit", "ext=pipelining,starttls", NULL);
    int fd = msg_file(TRICKY, sizeof TRICKY - 1);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_IMPLICIT;
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    assert_true(o.res.tls_used);
    char *r = peer_record();
    expect_not_in(r, "C: STARTTLS");
    assert_true(strncmp(r, "# tls\n", 6) == 0);
    free(r);
    expect_wire(TRICKY_WIRE, sizeof TRICKY_WIRE - 1, TRICKY_DATA, sizeof TRICKY_DATA - 1);

    /* a plaintext server on an implicit-TLS route */
    stop_peer();
    start_peer(NULL);
    fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_IMPLICIT;
    run(&p, &o);
    close(fd);
    expect_failed(&o, true, "4.7.0", "TLS handshake failed");
}

/* ---- AUTH ---- */

static void test_auth_plain_and_login(void **state)
{
    struct relay_client_params p;
    struct outcome o;
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);

    start_peer("ext=starttls,auth", "user=smart", "pass=s3cret pass", NULL);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_REQUIRED;
    p.auth_user = "smart";
    p.auth_password = "s3cret pass";
    run(&p, &o);
    expect_delivered(&o, 1);
    char *r = peer_record();
    const char *tls = strstr(r, "# tls\n");
    assert_non_null(tls);
    expect_in(tls, "# auth PLAIN smart s3cret pass\n");
    expect_not_in(r, "# early");
    free(r);
    stop_peer();

    start_peer("ext=starttls,auth=LOGIN+CRAM-MD5", "user=smart", "pass=pw", NULL);
    default_params(&p, fd, 0);
    p.auth_user = "smart";
    p.auth_password = "pw";
    run(&p, &o);
    expect_delivered(&o, 1);
    expect_record("# auth LOGIN smart pw\n");
    stop_peer();

    /* wrong password: temporary (our configuration) */
    start_peer("ext=starttls,auth", "user=smart", "pass=right", NULL);
    default_params(&p, fd, 0);
    p.auth_user = "smart";
    p.auth_password = "wrong";
    run(&p, &o);
    expect_failed(&o, true, "5.7.8", "535 5.7.8 authentication failed");
    assert_int_equal(o.res.session_code, 535);
    assert_string_equal(o.res.stage, "AUTH");
    expect_record("C: QUIT\n");
    stop_peer();

    /* no TLS offered: no password in plaintext */
    start_peer("ext=auth", NULL);
    default_params(&p, fd, 0);
    p.auth_user = "smart";
    p.auth_password = "pw";
    run(&p, &o);
    expect_failed(&o, true, "4.7.4", "AUTH without TLS");
    r = peer_record();
    expect_not_in(r, "C: AUTH");
    free(r);
    stop_peer();

    /* ... unless TLS is off by configuration */
    start_peer("ext=auth", NULL);
    default_params(&p, fd, 0);
    p.tls = RELAY_TLS_NONE;
    p.auth_user = "smart";
    p.auth_password = "pw";
    run(&p, &o);
    expect_delivered(&o, 1);
    expect_record("# auth PLAIN smart pw\n");
    stop_peer();

    /* AUTH not offered */
    start_peer("ext=starttls", NULL);
    default_params(&p, fd, 0);
    p.auth_user = "smart";
    p.auth_password = "pw";
    run(&p, &o);
    expect_failed(&o, true, "4.7.4", "neither PLAIN nor LOGIN");
    close(fd);
}

/* ---- a misbehaving peer ---- */

static void test_greeting_554(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer("greeting=554", NULL);
    run_simple(&p, &o);
    expect_failed(&o, false, "5.0.0", "554 5.0.0 greeting says the test");
    assert_int_equal(o.res.session_code, 554);
    assert_string_equal(o.res.stage, "greeting");
    char *r = peer_record();
    expect_not_in(r, "C: EHLO");
    expect_in(r, "C: QUIT\n");
    free(r);
    stop_peer();

    start_peer("greeting=421", NULL);
    memset(&p, 0, sizeof p);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.0.0", "421");
}

static void test_garbage_greeting(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer("greeting=garbage", NULL);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "protocol error in reply to greeting: ");
    char *r = peer_record();
    expect_not_in(r, "C: ");
    free(r);
}

static void test_megabyte_reply_line(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer("greeting=long", NULL);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "reply line too long");
    stop_peer();

    start_peer("ehlo=long", NULL);
    memset(&p, 0, sizeof p);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "protocol error in reply to EHLO: reply line too long");
}

static void test_ten_thousand_lines(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    start_peer("greeting=many", NULL);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "too many reply lines");
    stop_peer();

    start_peer("ehlo=many", NULL);
    memset(&p, 0, sizeof p);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "too many reply lines");
    stop_peer();

    start_peer("ext=pipelining", "rcpt=many", NULL);
    memset(&p, 0, sizeof p);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "protocol error in reply to RCPT: too many reply lines");
}

static void test_unrequested_reply(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    /* a reply nobody asked for, right after the EHLO reply: it must not be
     * taken for the reply to MAIL */
    start_peer("ehlo=extra", NULL);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.5.0", "before its turn");
    char *r = peer_record();
    expect_not_in(r, "C: MAIL");
    free(r);
}

static void test_stalls(void **state)
{
    struct relay_client_params p;
    struct outcome o;
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);

    start_peer("greeting=stall", NULL);
    default_params(&p, fd, 0);
    p.timeout_greeting = 1;
    run(&p, &o);
    expect_failed(&o, true, "4.4.2", "timeout waiting for the greeting");
    assert_true(o.seconds >= 0.9 && o.seconds < 5);
    stop_peer();

    start_peer("mail=stall", NULL);
    default_params(&p, fd, 0);
    p.timeout_command = 1;
    run(&p, &o);
    expect_failed(&o, true, "4.4.2", "timeout after MAIL");
    assert_string_equal(o.res.stage, "MAIL");
    stop_peer();

    start_peer("ext=pipelining", "rcpt=stall", NULL);
    default_params(&p, fd, 0);
    p.timeout_command = 1;
    run(&p, &o);
    expect_failed(&o, true, "4.4.2", "timeout after RCPT");
    stop_peer();

    start_peer("data=stall", NULL);
    default_params(&p, fd, 0);
    p.timeout_data_init = 1;
    run(&p, &o);
    expect_failed(&o, true, "4.4.2", "timeout after DATA");
    stop_peer();

    start_peer("dataend=stall", NULL);
    default_params(&p, fd, 0);
    p.timeout_data_end = 1;
    run(&p, &o);
    expect_failed(&o, true, "4.4.2", "timeout after end of data");
    expect_record("# data 22\n");
    stop_peer();

    /* a peer that never answers QUIT changes nothing */
    start_peer("quit=stall", NULL);
    default_params(&p, fd, 0);
    p.timeout_command = 1;
    run(&p, &o);
    expect_delivered(&o, 1);
    close(fd);
}

/* A message of n octets: lines of varying length, some starting with a
 * dot. Returns it (LF ends); *wire gets the expected CRLF form. */
static char *big_message(size_t n, char **wire, size_t *wire_len)
{
    char *m = malloc(n);
    char *w = malloc(n * 2 + 8);
    assert_non_null(m);
    assert_non_null(w);
    size_t k = 0, col = 0;
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245 + 12345;
        char ch;
        if (i + 1 == n || (col > 0 && (x >> 16) % 70 == 0))
            ch = '\n';
        else if (col == 0 && (x >> 16) % 5 == 0)
            ch = '.';
        else
            ch = (char)('a' + (x >> 16) % 26);
        m[i] = ch;
        if (ch == '\n') {
            w[k++] = '\r';
            w[k++] = '\n';
            col = 0;
        } else {
            if (col == 0 && ch == '.')
                w[k++] = '.';
            w[k++] = ch;
            col++;
        }
    }
    *wire = w;
    *wire_len = k;
    return m;
}

static void test_big_message(void **state)
{
    struct relay_client_params p;
    struct outcome o;
    char *wire;
    size_t wire_len, n = 8 * 1024 * 1024;
    char *m = big_message(n, &wire, &wire_len);

    start_peer("ext=pipelining,starttls", NULL);
    int fd = msg_file(m, n);
    default_params(&p, fd, wire_len);
    run(&p, &o);
    close(fd);
    expect_delivered(&o, 1);
    assert_true(o.res.tls_used);
    char path[160];
    size_t got;
    path_in_dir(path, sizeof path, "rec.raw");
    char *raw = slurp(path, &got);
    assert_int_equal(got, wire_len);
    assert_memory_equal(raw, wire, wire_len);
    free(raw);
    free(m);
    free(wire);
}

static void test_close_mid_data(void **state)
{
    struct relay_client_params p;
    struct outcome o;
    char *wire;
    size_t wire_len, n = 16 * 1024 * 1024;
    char *m = big_message(n, &wire, &wire_len);

    start_peer("body=close", "rcvbuf=4096", NULL);
    int fd = msg_file(m, n);
    default_params(&p, fd, 0);
    run(&p, &o);
    close(fd);
    expect_failed(&o, true, "4.4.2", "while sending the message");
    assert_string_equal(o.res.stage, "message body");
    free(m);
    free(wire);
}

static void test_stall_mid_data(void **state)
{
    struct relay_client_params p;
    struct outcome o;
    char *wire;
    size_t wire_len, n = 16 * 1024 * 1024;
    char *m = big_message(n, &wire, &wire_len);

    start_peer("body=stall", "rcvbuf=4096", NULL);
    int fd = msg_file(m, n);
    default_params(&p, fd, 0);
    p.timeout_data_block = 1;
    run(&p, &o);
    close(fd);
    expect_failed(&o, true, "4.4.2", "timeout sending the message");
    assert_true(o.seconds < 10);
    free(m);
    free(wire);
}

/* ---- the API ---- */

static void test_connect_refused(void **state)
{
    struct relay_client_params p = {0};
    struct outcome o;

    /* a port nobody listens on: bind one, then close it */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    peer_port = ntohs(a.sin_port);
    run_simple(&p, &o);
    expect_failed(&o, true, "4.4.1", "connect: Connection refused");
    assert_string_equal(o.res.stage, "connect");
}

static void test_cancel(void **state)
{
    struct relay_client_params p;
    struct outcome o = {0};

    start_peer("greeting=stall", NULL);
    int fd = msg_file(SIMPLE, sizeof SIMPLE - 1);
    default_params(&p, fd, 0);
    struct event_base *base = event_base_new();
    p.base = base;
    struct relay_client *c = relay_client_send(&p, on_result, &o);
    assert_non_null(c);
    struct timeval t = {0, 300000};
    event_base_loopexit(base, &t);
    event_base_dispatch(base);
    relay_client_cancel(c);
    event_base_loopexit(base, &t);
    event_base_dispatch(base);
    assert_int_equal(o.calls, 0);
    event_base_free(base);
    close(fd);

    /* cancelled before the loop ever ran */
    base = event_base_new();
    p.base = base;
    c = relay_client_send(&p, on_result, &o);
    assert_non_null(c);
    relay_client_cancel(c);
    event_base_loopexit(base, &t);
    event_base_dispatch(base);
    assert_int_equal(o.calls, 0);
    event_base_free(base);
}

static void test_bad_params(void **state)
{
    static const char *const bad_rcpt[] = {"bob@b.test>\r\nRCPT TO:<evil@x.test"};
    struct relay_client_params p;
    struct outcome o = {0};
    struct event_base *base = event_base_new();

    peer_port = 25;
    default_params(&p, 0, 0);
    p.base = base;
    p.rcpts = bad_rcpt;
    errno = 0;
    assert_null(relay_client_send(&p, on_result, &o));
    assert_int_equal(errno, EINVAL);

    default_params(&p, 0, 0);
    p.base = base;
    p.sender = "a@a.test\r\nRSET";
    assert_null(relay_client_send(&p, on_result, &o));

    default_params(&p, 0, 0);
    p.base = base;
    p.helo = "";
    assert_null(relay_client_send(&p, on_result, &o));

    default_params(&p, 0, 0);
    p.base = base;
    p.n_rcpts = 0;
    assert_null(relay_client_send(&p, on_result, &o));

    default_params(&p, 0, 0);
    p.base = base;
    p.ssl_ctx = NULL;   /* TLS wanted, no context */
    assert_null(relay_client_send(&p, on_result, &o));
    assert_int_equal(o.calls, 0);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_plain_with_params, teardown_one),
        cmocka_unit_test_teardown(test_no_extensions_no_params, teardown_one),
        cmocka_unit_test_teardown(test_empty_message, teardown_one),
        cmocka_unit_test_teardown(test_pipelining_and_rcpt_outcomes, teardown_one),
        cmocka_unit_test_teardown(test_all_rcpts_refused, teardown_one),
        cmocka_unit_test_teardown(test_mail_refused, teardown_one),
        cmocka_unit_test_teardown(test_data_refused, teardown_one),
        cmocka_unit_test_teardown(test_dataend_refused, teardown_one),
        cmocka_unit_test_teardown(test_helo_fallback, teardown_one),
        cmocka_unit_test_teardown(test_smtputf8, teardown_one),
        cmocka_unit_test_teardown(test_size_limit, teardown_one),
        cmocka_unit_test_teardown(test_starttls_opportunistic, teardown_one),
        cmocka_unit_test_teardown(test_starttls_injection_dropped, teardown_one),
        cmocka_unit_test_teardown(test_starttls_refused, teardown_one),
        cmocka_unit_test_teardown(test_tls_required_not_offered, teardown_one),
        cmocka_unit_test_teardown(test_tls_none_ignores_starttls, teardown_one),
        cmocka_unit_test_teardown(test_tls_handshake_fails, teardown_one),
        cmocka_unit_test_teardown(test_tls_verify, teardown_one),
        cmocka_unit_test_teardown(test_implicit_tls, teardown_one),
        cmocka_unit_test_teardown(test_auth_plain_and_login, teardown_one),
        cmocka_unit_test_teardown(test_greeting_554, teardown_one),
        cmocka_unit_test_teardown(test_garbage_greeting, teardown_one),
        cmocka_unit_test_teardown(test_megabyte_reply_line, teardown_one),
        cmocka_unit_test_teardown(test_ten_thousand_lines, teardown_one),
        cmocka_unit_test_teardown(test_unrequested_reply, teardown_one),
        cmocka_unit_test_teardown(test_stalls, teardown_one),
        cmocka_unit_test_teardown(test_big_message, teardown_one),
        cmocka_unit_test_teardown(test_close_mid_data, teardown_one),
        cmocka_unit_test_teardown(test_stall_mid_data, teardown_one),
        cmocka_unit_test_teardown(test_connect_refused, teardown_one),
        cmocka_unit_test_teardown(test_cancel, teardown_one),
        cmocka_unit_test_teardown(test_bad_params, teardown_one),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
