/* main.c — pobox-loadgen: parses the command line, prepares the run
 * (file limit, users, server address, reachability check, TLS context)
 * and runs a session scenario or a machine-limit mode.
 * Exit: 0 run completed, 1 could not run, 2 usage error. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "limits.h"
#include "opts.h"
#include "report.h"
#include "run.h"

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run_limit(const struct lg_opts *o)
{
    struct lg_limit_res *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return 1;
    lg_hist_init(&r->lat);
    int rc = o->scen == LG_TCP_THROUGHPUT ? lg_limits_tcp(o, r) : lg_limits_fsync(o, r);
    if (rc == 0)
        lg_report_limit(o, r);
    free(r);
    return rc == 0 ? 0 : 1;
}

static int resolve(struct lg_run *r, const struct lg_opts *o)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", o->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int e = getaddrinfo(o->host, port, &hints, &ai);
    if (e != 0) {
        fprintf(stderr, "pobox-loadgen: %s: %s\n", o->host, gai_strerror(e));
        return -1;
    }
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* One blocking-style connect (5 s at most) so that a server that is not
 * there is an exit 1, not a run full of errors. */
static int reachable(const struct lg_run *r, const struct lg_opts *o)
{
    int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, (const struct sockaddr *)&r->addr, r->addrlen) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof(err);
            err = poll(&p, 1, 5000) == 1 ? 0 : ETIMEDOUT;
            if (err == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    if (fd >= 0)
        close(fd);
    if (err != 0)
        fprintf(stderr, "pobox-loadgen: cannot connect to %s port %d: %s\n", o->host,
                o->port, strerror(err));
    return err == 0 ? 0 : -1;
}

static void warn_fds(const struct lg_opts *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)o->conc + 64)
        fprintf(stderr, "pobox-loadgen: warning: %u connections but only %llu file "
                        "descriptors\n", o->conc, (unsigned long long)rl.rlim_cur);
}

static int prepare(struct lg_run *r, const struct lg_opts *o, struct lg_users *users)
{
    char err[512];
    if (lg_users_load(users, o->users_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "pobox-loadgen: %s\n", err);
        return -1;
    }
    r->o = o;
    r->users = users;
    r->scen = o->scen == LG_SMTP_SUBMIT ? &lg_smtp_scen : &lg_pop3_scen;
    r->mid_tag = ((uint64_t)time(NULL) << 22) ^ (uint64_t)getpid();
    if (resolve(r, o) < 0 || reachable(r, o) < 0)
        return -1;
    if (o->tls || o->starttls) {
        r->ctx = lg_tls_ctx();
        if (r->ctx == NULL) {
            fprintf(stderr, "pobox-loadgen: cannot create the TLS context\n");
            return -1;
        }
    }
    if (o->scen == LG_SMTP_SUBMIT && lg_smtp_prepare(r) < 0)
        return -1;
    warn_fds(o);
    if (o->scen != LG_SMTP_SUBMIT && users->n < o->conc && !o->quiet)
        fprintf(stderr, "pobox-loadgen: warning: %u slots share %zu users (a locked "
                        "maildrop refuses a second POP3 session)\n", o->conc, users->n);
    return 0;
}

static int run_sessions(const struct lg_opts *o)
{
    struct lg_users users = {0};
    struct lg_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return 1;
    int rc = prepare(r, o, &users) == 0 && lg_run_exec(r) == 0 ? 0 : 1;
    if (r->ctx != NULL)
        SSL_CTX_free(r->ctx);
    free(r->body);
    free(r);
    lg_users_free(&users);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    struct lg_opts o;
    if (lg_args_parse(&o, argc, argv) < 0)
        return 2;
    if (!lg_opts_is_session(&o))
        return run_limit(&o);
    return run_sessions(&o);
}
