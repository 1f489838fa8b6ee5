/* test_relay_dns.c — unit tests for src/relay/dns.c against a real DNS
 * server on a loopback port (tests/dns_server.py, answering from the table
 * below): MX order and shuffling, the A/AAAA fallback, IPv6, null MX,
 * NXDOMAIN, SERVFAIL, silence, CNAME chains and loops, the limits, the
 * request deadline, smarthosts and literals, and shutdown with requests
 * open. Every lookup runs an event loop until its callback (or a
 * watchdog), then a little longer to catch a second callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay/dns.h"

static const char TABLE[] =
    "# two MX, the worse one listed first\n"
    "a.test MX 20 mx2.a.test\n"
    "a.test MX 10 mx1.a.test\n"
    "mx1.a.test A 127.0.0.2\n"
    "mx2.a.test A 127.0.0.3\n"
    "# equal preferences\n"
    "eq.test MX 10 mxa.eq.test\n"
    "eq.test MX 10 mxb.eq.test\n"
    "eq.test MX 20 mxc.eq.test\n"
    "mxa.eq.test A 127.0.1.1\n"
    "mxb.eq.test A 127.0.1.2\n"
    "mxc.eq.test A 127.0.1.3\n"
    "# no MX: the domain's own address\n"
    "amx.test A 127.0.0.4\n"
    "# an MX host with IPv6 only\n"
    "v6.test MX 10 mx.v6.test\n"
    "mx.v6.test AAAA ::1\n"
    "# both families, more than fit\n"
    "dual.test A 127.0.2.1\n"
    "dual.test A 127.0.2.2\n"
    "dual.test AAAA 2001:db8::1\n"
    "dual.test AAAA 2001:db8::2\n"
    "dual.test AAAA 2001:db8::3\n"
    "dual.test AAAA 2001:db8::4\n"
    "dual.test AAAA 2001:db8::5\n"
    "dual.test AAAA 2001:db8::6\n"
    "dual.test AAAA 2001:db8::7\n"
    "null.test MX 0 .\n"
    "@servfail fail.test\n"
    "# MX fails for now: no fallback to the A record\n"
    "tfail.test A 127.0.0.9\n"
    "@servfail tfail.test MX\n"
    "@drop slow.test\n"
    "loop1.test CNAME loop2.test\n"
    "loop2.test CNAME loop1.test\n"
    "alias.test CNAME a.test\n"
    "cfb.test CNAME amx.test\n"
    "cn.test MX 10 alias.cn.test\n"
    "alias.cn.test CNAME mx1.a.test\n"
    "gone.test MX 10 nohost.gone.test\n"
    "half.test MX 10 nohost.half.test\n"
    "half.test MX 20 mx1.a.test\n"
    "# 12 MX hosts\n"
    "many.test MX 10 h1.many.test\n"
    "many.test MX 11 h2.many.test\n"
    "many.test MX 12 h3.many.test\n"
    "many.test MX 13 h4.many.test\n"
    "many.test MX 14 h5.many.test\n"
    "many.test MX 15 h6.many.test\n"
    "many.test MX 16 h7.many.test\n"
    "many.test MX 17 h8.many.test\n"
    "many.test MX 18 h9.many.test\n"
    "many.test MX 19 h10.many.test\n"
    "many.test MX 20 h11.many.test\n"
    "many.test MX 21 h12.many.test\n"
    "h1.many.test A 127.0.3.1\n"
    "h2.many.test A 127.0.3.2\n"
    "h3.many.test A 127.0.3.3\n"
    "h4.many.test A 127.0.3.4\n"
    "h5.many.test A 127.0.3.5\n"
    "h6.many.test A 127.0.3.6\n"
    "h7.many.test A 127.0.3.7\n"
    "h8.many.test A 127.0.3.8\n"
    "h9.many.test A 127.0.3.9\n"
    "h10.many.test A 127.0.3.10\n"
    "h11.many.test A 127.0.3.11\n"
    "h12.many.test A 127.0.3.12\n"
    "# the request's deadline: the MX answer comes late, one host never\n"
    "late.test MX 10 fast.late.test\n"
    "late.test MX 20 never.late.test\n"
    "@delay 1200 late.test MX\n"
    "fast.late.test A 127.0.4.1\n"
    "never.late.test A 127.0.4.2\n"
    "@drop never.late.test\n";

struct server {
    pid_t pid;
    char table[64];
    char resolver[32];
};

static struct server srv;

struct outcome {
    struct event_base *base;
    int calls;
    bool inline_call;
    enum relay_dns_status st;
    struct relay_route *route;
    char why[512];
};

static bool in_request; /* set around the relay_dns_* call */

static void on_result(void *arg, enum relay_dns_status st, struct relay_route *route,
                      const char *why)
{
    struct outcome *o = arg;
    if (in_request)
        o->inline_call = true;
    if (o->calls++ == 0) {
        o->st = st;
        o->route = route;
        snprintf(o->why, sizeof(o->why), "%s", why ? why : "(null)");
    } else {
        relay_route_free(route);
    }
    if (o->base)
        event_base_loopbreak(o->base);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Runs base until o's callback (10 s at most), then 50 ms more. */
static void wait_for(struct event_base *base, struct outcome *o)
{
    struct timeval dog = {10, 0}, tail = {0, 50000};
    struct event *ev = evtimer_new(base, on_watchdog, base);
    o->base = base;
    evtimer_add(ev, &dog);
    event_base_dispatch(base);
    event_free(ev);
    o->base = NULL;
    event_base_loopexit(base, &tail);
    event_base_dispatch(base);
    assert_int_equal(o->calls, 1);
    assert_false(o->inline_call);
}

static void request(struct relay_dns *d, bool host, const char *name, uint16_t port,
                    struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    in_request = true;
    bool ok = host ? relay_dns_host(d, name, port, on_result, o)
                   : relay_dns_route(d, name, port, on_result, o);
    in_request = false;
    assert_true(ok);
}

/* One lookup on a fresh loop and resolver. */
static void lookup_with(const char *resolver, bool host, const char *name, uint16_t port,
                        unsigned timeout_ms, struct outcome *o)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    struct relay_dns *d = relay_dns_new(base, resolver, timeout_ms);
    assert_non_null(d);
    request(d, host, name, port, o);
    wait_for(base, o);
    relay_dns_free(d);
    event_base_free(base);
}

static void route(const char *domain, struct outcome *o)
{
    lookup_with(srv.resolver, false, domain, 25, 2000, o);
}

static void expect_addr(const struct relay_mx_host *h, size_t i, const char *ip,
                        uint16_t port)
{
    char text[INET6_ADDRSTRLEN];
    const struct sockaddr_storage *ss = &h->addrs[i];
    assert_true(i < h->n_addrs);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        assert_int_equal(h->addrlens[i], sizeof(*sin));
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        assert_int_equal(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        assert_int_equal(ss->ss_family, AF_INET6);
        assert_int_equal(h->addrlens[i], sizeof(*sin6));
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        assert_int_equal(ntohs(sin6->sin6_port), port);
    }
    assert_string_equal(text, ip);
}

/* ---- the server ---- */

static int start_server(void **state)
{
    int fds[2];
    char line[32] = "";
    size_t len = 0;

    snprintf(srv.table, sizeof(srv.table), "/tmp/pobox-dns-XXXXXX");
    int tfd = mkstemp(srv.table);
    if (tfd < 0 || write(tfd, TABLE, sizeof(TABLE) - 1) != (ssize_t)sizeof(TABLE) - 1)
        return -1;
    close(tfd);
    if (pipe(fds) != 0)
        return -1;
    srv.pid = fork();
    if (srv.pid < 0)
        return -1;
    if (srv.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/usr/bin/python3", "python3", "tests/dns_server.py", "0", srv.table,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (len + 1 < sizeof(line) && !memchr(line, '\n', len)) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0)
            break;
        ssize_t n = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
    }
    close(fds[0]);
    int port = atoi(line);
    if (port <= 0) {
        fprintf(stderr, "tests/dns_server.py did not start (run from the repo root)\n");
        return -1;
    }
    snprintf(srv.resolver, sizeof(srv.resolver), "127.0.0.1:%d", port);
    return 0;
}

static int stop_server(void **state)
{
    if (srv.pid > 0) {
        kill(srv.pid, SIGTERM);
        waitpid(srv.pid, NULL, 0);
    }
    unlink(srv.table);
    return 0;
}

/* ---- MX ---- */

static void test_mx_order(void **state)
{
    struct outcome o;
    route("a.test", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_string_equal(o.why, "");
    assert_int_equal(o.route->n_hosts, 2);
    assert_string_equal(o.route->hosts[0].name, "mx1.a.test");
    assert_int_equal(o.route->hosts[0].preference, 10);
    assert_int_equal(o.route->hosts[0].n_addrs, 1);
    expect_addr(&o.route->hosts[0], 0, "127.0.0.2", 25);
    assert_string_equal(o.route->hosts[1].name, "mx2.a.test");
    assert_int_equal(o.route->hosts[1].preference, 20);
    expect_addr(&o.route->hosts[1], 0, "127.0.0.3", 25);
    relay_route_free(o.route);

    /* trailing dot, other case, other port */
    lookup_with(srv.resolver, false, "A.Test.", 2525, 2000, &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 2);
    expect_addr(&o.route->hosts[0], 0, "127.0.0.2", 2525);
    relay_route_free(o.route);
}

static void test_mx_equal_shuffled(void **state)
{
    struct event_base *base = event_base_new();
    struct relay_dns *d = relay_dns_new(base, srv.resolver, 2000);
    int first_a = 0, first_b = 0;
    assert_non_null(d);
    for (int i = 0; i < 50; i++) {
        struct outcome o;
        request(d, false, "eq.test", 25, &o);
        wait_for(base, &o);
        assert_int_equal(o.st, RELAY_DNS_OK);
        assert_int_equal(o.route->n_hosts, 3);
        const char *h0 = o.route->hosts[0].name, *h1 = o.route->hosts[1].name;
        if (strcmp(h0, "mxa.eq.test") == 0) {
            first_a++;
            assert_string_equal(h1, "mxb.eq.test");
        } else {
            first_b++;
            assert_string_equal(h0, "mxb.eq.test");
            assert_string_equal(h1, "mxa.eq.test");
        }
        assert_string_equal(o.route->hosts[2].name, "mxc.eq.test");
        relay_route_free(o.route);
    }
    assert_true(first_a > 0);
    assert_true(first_b > 0);
    relay_dns_free(d);
    event_base_free(base);
}

static void test_no_mx_falls_back_to_a(void **state)
{
    struct outcome o;
    route("amx.test", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "amx.test");
    assert_int_equal(o.route->hosts[0].preference, 0);
    assert_int_equal(o.route->hosts[0].n_addrs, 1);
    expect_addr(&o.route->hosts[0], 0, "127.0.0.4", 25);
    relay_route_free(o.route);
}

static void test_aaaa_only_host(void **state)
{
    struct outcome o;
    route("v6.test", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "mx.v6.test");
    assert_int_equal(o.route->hosts[0].n_addrs, 1);
    expect_addr(&o.route->hosts[0], 0, "::1", 25);
    relay_route_free(o.route);
}

static void test_families_interleaved(void **state)
{
    struct outcome o;
    route("dual.test", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    const struct relay_mx_host *h = &o.route->hosts[0];
    assert_int_equal(h->n_addrs, 8); /* 2 + 7 found, 8 kept */
    expect_addr(h, 0, "127.0.2.1", 25);
    expect_addr(h, 1, "2001:db8::1", 25);
    expect_addr(h, 2, "127.0.2.2", 25);
    expect_addr(h, 3, "2001:db8::2", 25);
    expect_addr(h, 4, "2001:db8::3", 25);
    expect_addr(h, 7, "2001:db8::6", 25);
    relay_route_free(o.route);
}

static void test_limits(void **state)
{
    struct outcome o;
    route("many.test", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, RELAY_MAX_HOSTS);
    assert_string_equal(o.route->hosts[0].name, "h1.many.test");
    assert_string_equal(o.route->hosts[9].name, "h10.many.test");
    expect_addr(&o.route->hosts[9], 0, "127.0.3.10", 25);
    relay_route_free(o.route);
}

static void test_null_mx(void **state)
{
    struct outcome o;
    route("null.test", &o);
    assert_int_equal(o.st, RELAY_DNS_NULL_MX);
    assert_null(o.route);
    assert_non_null(strstr(o.why, "null MX"));
}

static void test_nxdomain(void **state)
{
    struct outcome o;
    route("nx.test", &o);
    assert_int_equal(o.st, RELAY_DNS_NO_DOMAIN);
    assert_null(o.route);
    assert_non_null(strstr(o.why, "NXDOMAIN"));
}

static void test_servfail_is_temporary(void **state)
{
    struct outcome o;
    route("fail.test", &o);
    assert_int_equal(o.st, RELAY_DNS_TEMP);
    assert_null(o.route);
    assert_non_null(strstr(o.why, "SERVFAIL"));

    /* the domain has an A record, but its MX lookup failed: no fallback */
    route("tfail.test", &o);
    assert_int_equal(o.st, RELAY_DNS_TEMP);
    assert_null(o.route);
}

static void test_no_reply_times_out(void **state)
{
    struct outcome o;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lookup_with(srv.resolver, false, "slow.test", 25, 1000, &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_int_equal(o.st, RELAY_DNS_TEMP);
    assert_null(o.route);
    assert_non_null(strstr(o.why, "timeout"));
    assert_true(ms < 1000 + 1000); /* the timeout, loose for loaded machines */
}

static void test_cname(void **state)
{
    struct outcome o;
    route("loop1.test", &o);
    assert_int_equal(o.st, RELAY_DNS_TEMP);
    assert_null(o.route);
    assert_non_null(strstr(o.why, "CNAME loop"));

    route("alias.test", &o); /* a chain to a.test: a.test's MX */
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 2);
    assert_string_equal(o.route->hosts[0].name, "mx1.a.test");
    relay_route_free(o.route);

    route("cfb.test", &o); /* a chain to a name without MX: its address */
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "cfb.test");
    expect_addr(&o.route->hosts[0], 0, "127.0.0.4", 25);
    relay_route_free(o.route);

    route("cn.test", &o); /* an MX host that is an alias (RFC 2181 10.3 says no) */
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "alias.cn.test");
    expect_addr(&o.route->hosts[0], 0, "127.0.0.2", 25);
    relay_route_free(o.route);
}

static void test_mx_hosts_without_address(void **state)
{
    struct outcome o;
    route("gone.test", &o);
    assert_int_equal(o.st, RELAY_DNS_NO_DOMAIN);
    assert_null(o.route);
    assert_non_null(strstr(o.why, "nohost.gone.test"));

    route("half.test", &o); /* the first has none: the second is the route */
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "mx1.a.test");
    assert_int_equal(o.route->hosts[0].preference, 20);
    assert_non_null(strstr(o.why, "nohost.half.test"));
    relay_route_free(o.route);
}

static void test_deadline_keeps_what_resolved(void **state)
{
    struct outcome o;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lookup_with(srv.resolver, false, "late.test", 25, 2000, &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "fast.late.test");
    assert_non_null(strstr(o.why, "never.late.test: no reply within 2000 ms"));
    assert_true(ms < 2000 + 1000);
    relay_route_free(o.route);
}

static void test_bad_domains(void **state)
{
    const char *bad[] = {"", "bad domain", "a..test", "-.", "[::1]", "[300.1.1.1]",
                         "[IPv6:127.0.0.1]", "caf\xc3\xa9.test"};
    struct outcome o;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        route(bad[i], &o);
        assert_int_equal(o.st, RELAY_DNS_NO_DOMAIN);
        assert_null(o.route);
    }
}

static void test_address_literal_domain(void **state)
{
    struct outcome o;
    route("[127.0.0.7]", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    expect_addr(&o.route->hosts[0], 0, "127.0.0.7", 25);
    relay_route_free(o.route);

    route("[IPv6:::1]", &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    expect_addr(&o.route->hosts[0], 0, "::1", 25);
    relay_route_free(o.route);
}

/* ---- smarthost ---- */

static void test_smarthost_lookup(void **state)
{
    struct outcome o;
    lookup_with(srv.resolver, true, "mx1.a.test:2525", 25, 2000, &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "mx1.a.test");
    expect_addr(&o.route->hosts[0], 0, "127.0.0.2", 2525);
    relay_route_free(o.route);

    lookup_with(srv.resolver, true, "[mx.v6.test]", 587, 2000, &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    expect_addr(&o.route->hosts[0], 0, "::1", 587);
    relay_route_free(o.route);

    lookup_with(srv.resolver, true, "nx.test:25", 25, 2000, &o);
    assert_int_equal(o.st, RELAY_DNS_NO_DOMAIN);
    assert_null(o.route);

    lookup_with(srv.resolver, true, "slow.test", 25, 1000, &o);
    assert_int_equal(o.st, RELAY_DNS_TEMP);
}

static void test_smarthost_literal_needs_no_dns(void **state)
{
    /* a resolver nobody answers on: any query would time out */
    struct outcome o;
    lookup_with("127.0.0.1:9", true, "127.0.0.1:2525", 25, 5000, &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_int_equal(o.route->n_hosts, 1);
    assert_string_equal(o.route->hosts[0].name, "127.0.0.1");
    expect_addr(&o.route->hosts[0], 0, "127.0.0.1", 2525);
    relay_route_free(o.route);

    lookup_with("127.0.0.1:9", true, "[::1]:2525", 25, 5000, &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    assert_string_equal(o.route->hosts[0].name, "::1");
    expect_addr(&o.route->hosts[0], 0, "::1", 2525);
    relay_route_free(o.route);

    lookup_with("127.0.0.1:9", true, "192.0.2.1", 587, 5000, &o);
    assert_int_equal(o.st, RELAY_DNS_OK);
    expect_addr(&o.route->hosts[0], 0, "192.0.2.1", 587);
    relay_route_free(o.route);

    const char *bad[] = {"", ":25", "[::1", "[::1]x", "host:0", "host:65536", "host:",
                         "host:25x", "bad host:25"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lookup_with("127.0.0.1:9", true, bad[i], 25, 5000, &o);
        assert_int_equal(o.st, RELAY_DNS_NO_DOMAIN);
        assert_null(o.route);
    }
}

static void test_parse_hostport(void **state)
{
    char host[64];
    uint16_t port;
    assert_true(relay_dns_parse_hostport("smtp.example:587", 25, host, sizeof(host), &port));
    assert_string_equal(host, "smtp.example");
    assert_int_equal(port, 587);
    assert_true(relay_dns_parse_hostport("smtp.example", 25, host, sizeof(host), &port));
    assert_int_equal(port, 25);
    assert_true(relay_dns_parse_hostport("[2001:db8::1]:2525", 25, host, sizeof(host), &port));
    assert_string_equal(host, "2001:db8::1");
    assert_int_equal(port, 2525);
    assert_true(relay_dns_parse_hostport("2001:db8::1", 26, host, sizeof(host), &port));
    assert_string_equal(host, "2001:db8::1");
    assert_int_equal(port, 26);
    assert_true(relay_dns_parse_hostport("[relay.example]", 465, host, sizeof(host), &port));
    assert_string_equal(host, "relay.example");
    assert_int_equal(port, 465);
    assert_false(relay_dns_parse_hostport("x:+25", 25, host, sizeof(host), &port));
    assert_false(relay_dns_parse_hostport("x: 25", 25, host, sizeof(host), &port));
    assert_false(relay_dns_parse_hostport("[]:25", 25, host, sizeof(host), &port));
    assert_false(relay_dns_parse_hostport("a-very-long-name.example", 25, host, 8, &port));
}

/* ---- the resolver itself ---- */

static void test_bad_resolver(void **state)
{
    struct event_base *base = event_base_new();
    errno = 0;
    assert_null(relay_dns_new(base, "not an address", 1000));
    assert_int_equal(errno, EINVAL);
    struct relay_dns *d = relay_dns_new(base, "", 1000); /* the system's */
    assert_non_null(d);
    relay_dns_free(d);
    relay_dns_free(NULL);
    event_base_free(base);
}

struct again {
    struct relay_dns *d;
    struct outcome *inner;
    struct outcome outer;
};

static void on_result_again(void *arg, enum relay_dns_status st, struct relay_route *route,
                            const char *why)
{
    struct again *a = arg;
    on_result(&a->outer, st, route, why);
    /* asking again from a shutdown callback: answered too, TEMP */
    assert_true(relay_dns_route(a->d, "a.test", 25, on_result, a->inner));
}

static void test_free_with_requests_open(void **state)
{
    struct event_base *base = event_base_new();
    struct relay_dns *d = relay_dns_new(base, srv.resolver, 5000);
    struct outcome slow, inner;
    struct again a = {.d = d, .inner = &inner};
    assert_non_null(d);
    request(d, false, "slow.test", 25, &slow);
    memset(&inner, 0, sizeof(inner));
    assert_true(relay_dns_route(d, "slow.test", 25, on_result_again, &a));
    struct timeval tv = {0, 100000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    assert_int_equal(slow.calls, 0);
    relay_dns_free(d);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(slow.st, RELAY_DNS_TEMP);
    assert_non_null(strstr(slow.why, "shut down"));
    assert_int_equal(a.outer.calls, 1);
    assert_int_equal(a.outer.st, RELAY_DNS_TEMP);
    assert_int_equal(inner.calls, 1);
    assert_int_equal(inner.st, RELAY_DNS_TEMP);
    event_base_free(base);
}

/* Many requests in flight on one resolver at once, each answered once. */
struct batch {
    struct event_base *base;
    int done;
    int total;
};

struct batch_item {
    struct batch *b;
    enum relay_dns_status want;
    int calls;
    enum relay_dns_status st;
};

static void on_batch(void *arg, enum relay_dns_status st, struct relay_route *route,
                     const char *why)
{
    struct batch_item *it = arg;
    it->calls++;
    it->st = st;
    relay_route_free(route);
    if (++it->b->done == it->b->total)
        event_base_loopbreak(it->b->base);
}

static void test_many_at_once(void **state)
{
    static const struct {
        const char *domain;
        enum relay_dns_status want;
    } kinds[] = {{"a.test", RELAY_DNS_OK},         {"nx.test", RELAY_DNS_NO_DOMAIN},
                 {"null.test", RELAY_DNS_NULL_MX}, {"amx.test", RELAY_DNS_OK},
                 {"fail.test", RELAY_DNS_TEMP},    {"eq.test", RELAY_DNS_OK},
                 {"loop1.test", RELAY_DNS_TEMP},   {"[127.0.0.1]", RELAY_DNS_OK}};
    enum { N = 200 };
    static struct batch_item items[N];
    struct event_base *base = event_base_new();
    struct relay_dns *d = relay_dns_new(base, srv.resolver, 5000);
    struct batch b = {.base = base, .total = N};
    assert_non_null(d);
    for (int i = 0; i < N; i++) {
        size_t k = (size_t)i % (sizeof(kinds) / sizeof(kinds[0]));
        items[i] = (struct batch_item){.b = &b, .want = kinds[k].want};
        assert_true(relay_dns_route(d, kinds[k].domain, 25, on_batch, &items[i]));
    }
    struct timeval dog = {10, 0};
    struct event *ev = evtimer_new(base, on_watchdog, base);
    evtimer_add(ev, &dog);
    event_base_dispatch(base);
    event_free(ev);
    assert_int_equal(b.done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(items[i].calls, 1);
        assert_int_equal(items[i].st, items[i].want);
    }
    relay_dns_free(d);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mx_order),
        cmocka_unit_test(test_mx_equal_shuffled),
        cmocka_unit_test(test_no_mx_falls_back_to_a),
        cmocka_unit_test(test_aaaa_only_host),
        cmocka_unit_test(test_families_interleaved),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_null_mx),
        cmocka_unit_test(test_nxdomain),
        cmocka_unit_test(test_servfail_is_temporary),
        cmocka_unit_test(test_no_reply_times_out),
        cmocka_unit_test(test_cname),
        cmocka_unit_test(test_mx_hosts_without_address),
        cmocka_unit_test(test_deadline_keeps_what_resolved),
        cmocka_unit_test(test_bad_domains),
        cmocka_unit_test(test_address_literal_domain),
        cmocka_unit_test(test_smarthost_lookup),
        cmocka_unit_test(test_smarthost_literal_needs_no_dns),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_bad_resolver),
        cmocka_unit_test(test_free_with_requests_open),
        cmocka_unit_test(test_many_at_once),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
