/* args.c — command-line parsing of pobox-loadgen into struct lg_opts,
 * with defaults and consistency checks (usage errors exit 2 in main). */
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const scen_names[] = {
    [LG_POP3_LOGIN] = "pop3-login",       [LG_POP3_POLL] = "pop3-poll",
    [LG_POP3_DOWNLOAD] = "pop3-download", [LG_POP3_IDLE] = "pop3-idle",
    [LG_SMTP_SUBMIT] = "smtp-submit",     [LG_TCP_THROUGHPUT] = "tcp-throughput",
    [LG_FSYNC_WRITES] = "fsync-writes",
};

enum {
    OPT_TLS = 256, OPT_STARTTLS, OPT_RESUME, OPT_USERS, OPT_THREADS,
    OPT_TIMEOUT, OPT_MESSAGES, OPT_SIZE, OPT_RCPT, OPT_HOLD, OPT_RATE,
    OPT_DIR, OPT_HELP,
};

static const struct option long_opts[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"tls", no_argument, NULL, OPT_TLS},
    {"starttls", no_argument, NULL, OPT_STARTTLS},
    {"tls-resume", no_argument, NULL, OPT_RESUME},
    {"users", required_argument, NULL, OPT_USERS},
    {"concurrency", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"sessions", required_argument, NULL, 'n'},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"messages", required_argument, NULL, OPT_MESSAGES},
    {"size", required_argument, NULL, OPT_SIZE},
    {"rcpt", required_argument, NULL, OPT_RCPT},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"connect-rate", required_argument, NULL, OPT_RATE},
    {"dir", required_argument, NULL, OPT_DIR},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fputs("usage: pobox-loadgen SCENARIO [options]\n"
          "SCENARIO: pop3-login | pop3-poll | pop3-download | pop3-idle |\n"
          "          smtp-submit | tcp-throughput | fsync-writes\n"
          "  -H, --host ADDR        server address (default 127.0.0.1)\n"
          "  -p, --port N           default 110/995 (POP3), 587/465 (SMTP)\n"
          "  --tls                  implicit TLS (pop3s, submissions)\n"
          "  --starttls             SMTP STARTTLS / POP3 STLS\n"
          "  --tls-resume           reuse each slot's previous TLS session\n"
          "  --users FILE           lines \"ADDRESS PASSWORD\"\n"
          "  -c, --concurrency N    connection slots (default 1)\n"
          "  -d, --duration SEC     run time (default 10; limit modes 3)\n"
          "  -n, --sessions N       total sessions instead of a duration\n"
          "  --threads T            event-loop threads (default 1)\n"
          "  --timeout SEC          per-reply timeout: no reply data for SEC (30)\n"
          "  --messages K           smtp-submit: messages per connection (1)\n"
          "  --size BYTES           smtp-submit: message size (10240)\n"
          "  --rcpt ADDR            smtp-submit: recipient (default: own address)\n"
          "  --hold SEC             pop3-idle: hold time (default: until stdin EOF)\n"
          "  --connect-rate N       pop3-idle: new connections per second (2000)\n"
          "  --dir DIR              fsync-writes: directory to write into\n"
          "  -q, --quiet            no progress on stderr\n",
          f);
}

static int bad(const char *opt, const char *arg)
{
    fprintf(stderr, "pobox-loadgen: bad value for %s: '%s'\n", opt, arg);
    return -1;
}

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_secs(const char *s, double min, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > 1e7)
        return -1;
    *out = v;
    return 0;
}

static int parse_scenario(struct lg_opts *o, const char *name)
{
    for (size_t i = 0; i < sizeof(scen_names) / sizeof(scen_names[0]); i++) {
        if (strcmp(name, scen_names[i]) == 0) {
            o->scen = (enum lg_scenario)i;
            o->scen_name = scen_names[i];
            return 0;
        }
    }
    fprintf(stderr, "pobox-loadgen: unknown scenario '%s'\n", name);
    return -1;
}

static void set_defaults(struct lg_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->conc = 1;
    o->threads = 1;
    o->duration = -1;
    o->timeout = 30;
    o->messages = 1;
    o->size = 10240;
    o->hold = -1;
    o->connect_rate = 2000;
}

/* Options with a numeric argument; returns 0, -1 (bad value) or 1 (not one). */
static int parse_numeric(struct lg_opts *o, int c, const char *a)
{
    uint64_t u = 0;
    switch (c) {
    case 'p':
        if (parse_uint(a, 1, 65535, &u) < 0) return bad("--port", a);
        o->port = (int)u;
        return 0;
    case 'c':
        if (parse_uint(a, 1, 1000000, &u) < 0) return bad("--concurrency", a);
        o->conc = (unsigned)u;
        return 0;
    case 'd':
        return parse_secs(a, 0.001, &o->duration) < 0 ? bad("--duration", a) : 0;
    case 'n':
        if (parse_uint(a, 1, UINT64_MAX / 2, &u) < 0) return bad("--sessions", a);
        o->sessions = u;
        return 0;
    case OPT_THREADS:
        if (parse_uint(a, 1, 256, &u) < 0) return bad("--threads", a);
        o->threads = (unsigned)u;
        return 0;
    case OPT_TIMEOUT:
        return parse_secs(a, 0.001, &o->timeout) < 0 ? bad("--timeout", a) : 0;
    case OPT_MESSAGES:
        if (parse_uint(a, 1, 1000000, &u) < 0) return bad("--messages", a);
        o->messages = (unsigned)u;
        return 0;
    case OPT_SIZE:
        if (parse_uint(a, 0, (uint64_t)1 << 31, &u) < 0) return bad("--size", a);
        o->size = (size_t)u;
        return 0;
    case OPT_HOLD:
        return parse_secs(a, 0, &o->hold) < 0 ? bad("--hold", a) : 0;
    case OPT_RATE:
        return parse_secs(a, 1, &o->connect_rate) < 0 ? bad("--connect-rate", a) : 0;
    default:
        return 1;
    }
}

static int parse_one(struct lg_opts *o, int c, const char *a)
{
    int r = parse_numeric(o, c, a);
    if (r <= 0)
        return r;
    switch (c) {
    case 'H': o->host = a; return 0;
    case OPT_TLS: o->tls = 1; return 0;
    case OPT_STARTTLS: o->starttls = 1; return 0;
    case OPT_RESUME: o->resume = 1; return 0;
    case OPT_USERS: o->users_file = a; return 0;
    case OPT_RCPT: o->rcpt = a; return 0;
    case OPT_DIR: o->dir = a; return 0;
    case 'q': o->quiet = 1; return 0;
    case OPT_HELP: usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
}

int lg_opts_is_session(const struct lg_opts *o)
{
    return o->scen != LG_TCP_THROUGHPUT && o->scen != LG_FSYNC_WRITES;
}

static int fail(const char *msg)
{
    fprintf(stderr, "pobox-loadgen: %s\n", msg);
    return -1;
}

static int check(struct lg_opts *o)
{
    if (o->tls && o->starttls)
        return fail("--tls and --starttls exclude each other");
    if (o->resume && !o->tls && !o->starttls)
        return fail("--tls-resume needs --tls or --starttls");
    if (o->sessions != 0 && o->duration > 0)
        return fail("give --duration or --sessions, not both");
    if (o->scen == LG_FSYNC_WRITES && o->dir == NULL)
        return fail("fsync-writes needs --dir");
    if (lg_opts_is_session(o) && o->users_file == NULL)
        return fail("this scenario needs --users FILE");
    if (o->scen == LG_POP3_IDLE && o->sessions != 0)
        return fail("pop3-idle takes -c, not --sessions");
    if (o->duration < 0)
        o->duration = lg_opts_is_session(o) ? 10 : 3;
    if (o->port == 0 && o->scen == LG_SMTP_SUBMIT)
        o->port = o->tls ? 465 : 587;
    else if (o->port == 0)
        o->port = o->tls ? 995 : 110;
    if (o->conc < o->threads)
        o->threads = o->conc;
    return 0;
}

int lg_args_parse(struct lg_opts *o, int argc, char **argv)
{
    set_defaults(o);
    int c;
    while ((c = getopt_long(argc, argv, "H:p:c:d:n:q", long_opts, NULL)) != -1) {
        if (parse_one(o, c, optarg) < 0)
            return -1;
    }
    if (optind != argc - 1) {
        usage(stderr);
        return -1;
    }
    if (parse_scenario(o, argv[optind]) < 0)
        return -1;
    return check(o);
}
