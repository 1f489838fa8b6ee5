/* dns.h — where outbound mail goes: MX routing (RFC 5321 section 5.1) and
 * smarthost lookups on an I/O thread's event loop, with c-ares.
 *
 * One struct relay_dns per event loop, used only on that loop's thread. No
 * call blocks: queries run on the loop's sockets and timers, and every
 * answer comes back through a callback on the same loop, never from inside
 * the call that asked. */
#ifndef POBOX_RELAY_DNS_H
#define POBOX_RELAY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct relay_dns;

#define RELAY_MAX_HOSTS 10  /* hosts in a route (RFC 5321 5.1 asks for a bound) */
#define RELAY_MAX_ADDRS 8   /* addresses kept per host */

struct relay_mx_host {
    char name[256];        /* MX target, the domain itself (no MX), the
                            * smarthost's name or an address literal's text */
    unsigned preference;   /* MX preference; 0 without MX */
    /* Port already set. IPv4 and IPv6 interleaved, IPv4 first: v4, v6, v4,
     * v6, ... then the rest of the longer family; so a host with broken
     * IPv6 still gets an IPv4 try first and both families fit in the 8. */
    struct sockaddr_storage addrs[RELAY_MAX_ADDRS];
    socklen_t addrlens[RELAY_MAX_ADDRS];
    size_t n_addrs;        /* >= 1 in a delivered route */
};

/* Hosts in the order to try: lowest preference first, equal preferences in
 * a fresh random order on every lookup. Only hosts with an address. */
struct relay_route {
    struct relay_mx_host *hosts;
    size_t n_hosts;        /* 1 .. RELAY_MAX_HOSTS */
};

enum relay_dns_status {
    RELAY_DNS_OK,
    /* Permanent: NXDOMAIN; no MX and no A/AAAA; no MX host has an address;
     * a name that is not a valid ASCII domain (U-labels must be converted
     * to A-labels before) or an unusable smarthost string. */
    RELAY_DNS_NO_DOMAIN,
    RELAY_DNS_NULL_MX,     /* RFC 7505 "0 .": the domain takes no mail */
    /* Retry later: SERVFAIL, REFUSED, no reply within the timeout, a CNAME
     * loop (real recursive resolvers answer SERVFAIL to those too), a
     * malformed reply, out of memory, the resolver shut down. */
    RELAY_DNS_TEMP,
};

/* st's result. route is NULL unless st is RELAY_DNS_OK, and then the
 * callee owns it (relay_route_free). why is a one-line reason for the log
 * and the bounce (safe to log: names are checked to be plain ASCII); with
 * OK it is "" or notes on hosts left out ("mx2.example: timeout"). why is
 * valid only during the call. */
typedef void (*relay_dns_cb)(void *arg, enum relay_dns_status st,
                             struct relay_route *route, const char *why);

/* A resolver on base's loop. resolver is relay.resolver: "" for the
 * system's (/etc/resolv.conf, read here, once), else one or more "ip",
 * "ip:port" or "[v6]:port", comma separated; then /etc/hosts is not used.
 * timeout_ms bounds each request: its callback comes at most that long
 * after the request, whatever the DNS does; hosts still unresolved then
 * are left out of the route (each query is sent twice at most, waiting a
 * quarter of timeout_ms, then half, per server). With one server, its
 * SERVFAIL or REFUSED is final; with several, c-ares asks the next.
 * NULL with errno EINVAL for a bad resolver string, else ENOMEM or EIO. */
struct relay_dns *relay_dns_new(struct event_base *base, const char *resolver,
                                unsigned timeout_ms);
/* Stops every query. Requests still open get their callback now, with
 * RELAY_DNS_TEMP "DNS resolver shut down", before this returns (a request
 * made from such a callback gets the same). Call on the loop's thread,
 * not from inside one of these shutdown callbacks. NULL is fine. */
void relay_dns_free(struct relay_dns *d);

/* Routes mail for domain (a domain name, or an RFC 5321 address literal
 * "[192.0.2.1]" / "[IPv6:2001:db8::1]", which needs no DNS):
 *  - its MX records, lowest preference first, equal preferences shuffled
 *    (xorshift seeded from getrandom() per struct relay_dns); duplicates
 *    dropped, at most RELAY_MAX_HOSTS hosts;
 *  - a null MX "0 ." → RELAY_DNS_NULL_MX (a "." beside real MX is skipped);
 *  - then the A and AAAA of every host at once; a host without an address
 *    is left out (its reason goes into why); none left → NO_DOMAIN, or TEMP
 *    if any failed only for now;
 *  - no MX records (NOERROR without MX, also at the end of a CNAME chain)
 *    → the domain's own A/AAAA as one host (RFC 5321 5.1); never when the
 *    MX lookup failed for now (SERVFAIL, timeout: TEMP);
 *  - a CNAME loop in the MX answer → TEMP "CNAME loop at NAME".
 * Names are looked up as absolute names, never with the search domains.
 * Every address gets port. cb runs exactly once, later, on the loop. false
 * when out of memory: then cb is never called. */
bool relay_dns_route(struct relay_dns *d, const char *domain, uint16_t port,
                     relay_dns_cb cb, void *arg);

/* The smarthost: "host", "host:port", "[host]:port", "ip:port",
 * "[v6]:port" or "[v6]" (default_port when none) → a route of one host
 * with its A/AAAA (interleaved as above). An IP literal needs no DNS.
 * NO_DOMAIN when the host does not exist or the string is not valid;
 * callers usually keep the mail queued then, since it is their own
 * configuration. Same callback rules and return as relay_dns_route. */
bool relay_dns_host(struct relay_dns *d, const char *hostport, uint16_t default_port,
                    relay_dns_cb cb, void *arg);

/* Splits "host[:port]" / "[host][:port]" as relay_dns_host does, for
 * checking relay.smarthost when the config is loaded. host gets the name
 * without brackets. false when malformed or host does not fit. */
bool relay_dns_parse_hostport(const char *hostport, uint16_t default_port,
                              char *host, size_t hostlen, uint16_t *port);

void relay_route_free(struct relay_route *r);

#endif
