/* server.c — the serve loop: listeners on the main thread, sessions on the
 * I/O threads, blocking work on the worker pool; signals, reload, limits,
 * privilege drop. */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/jobs.h"
#include "core/log.h"
#include "net/limits.h"
#include "net/listen.h"
#include "net/loop.h"
#include "net/tls.h"

#define STOP_GRACE_SECS 10
#define TRIM_INTERVAL_SECS 5

struct listener {
    struct runner *run;
    const struct server_service *svc;
    struct evconnlistener *evl;
};

struct runner {
    struct server srv;
    struct event_base *main;
    struct loops *loops;
    struct listener **ls;       /* each allocated alone: evconnlistener keeps it */
    size_t nls;
    server_reload_fn reload;
    void *reload_arg;
    unsigned long accepted, accepted_at_trim;   /* main thread only */
    unsigned open_at_trim;      /* connections open at the last trim */
};

struct handoff {
    struct runner *run;
    const struct server_service *svc;
    struct loop *loop;
    int fd;
    struct sockaddr_storage addr;
};

static void addr_ip(const struct sockaddr *sa, char *ip, size_t len)
{
    if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  ip, (socklen_t)len);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                  ip, (socklen_t)len);
}

static void handoff_cb(void *arg)
{
    struct handoff *h = arg;
    h->svc->accept(&h->run->srv, h->loop, h->fd, (struct sockaddr *)&h->addr,
                   h->svc->implicit_tls);
    free(h);
}

static void reject(const struct server_service *svc, int fd, const char *ip,
                   enum limits_verdict v)
{
    if (!svc->implicit_tls && svc->busy_reply) {
        ssize_t w = write(fd, svc->busy_reply, strlen(svc->busy_reply));
        (void)w;
    }
    log_info("event=reject service=%s ip=%s reason=%s", svc->name, ip,
             v == LIMITS_PER_IP ? "max_connections_per_ip" : "max_connections");
    close(fd);
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg)
{
    struct listener *l = arg;
    char ip[INET6_ADDRSTRLEN] = "";
    addr_ip(sa, ip, sizeof(ip));
    struct config *cfg = config_current();
    enum limits_verdict v = limits_acquire(l->run->srv.limits, ip, cfg->max_connections,
                                           cfg->max_connections_per_ip,
                                           l->svc->implicit_tls);
    config_unref(cfg);
    if (v != LIMITS_OK) {
        reject(l->svc, fd, ip, v);
        return;
    }
    l->run->accepted++;
    struct handoff *h = calloc(1, sizeof(*h));
    struct loop *loop = loops_pick(l->run->loops);
    if (h) {
        *h = (struct handoff){.run = l->run, .svc = l->svc, .loop = loop, .fd = fd};
        memcpy(&h->addr, sa, (size_t)socklen < sizeof(h->addr) ? (size_t)socklen
                                                                : sizeof(h->addr));
    }
    if (!h || !loop_post(loop, handoff_cb, h)) {
        free(h);
        limits_release(l->run->srv.limits, ip, l->svc->implicit_tls);
        close(fd);
    }
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct listener *l = arg;
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("event=accept_error service=%s reason=\"%s\"", l->svc->name,
             evutil_socket_error_to_string(e));
}

static int open_listeners(struct runner *run, const struct server_service *svcs,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int *fds = NULL;
        size_t nfds = 0;
        if (listen_bind_all(svcs[i].name, svcs[i].addrs, &fds, &nfds) != 0) {
            for (size_t k = 0; k < nfds; k++)
                close(fds[k]);
            free(fds);
            return -1;
        }
        struct listener **nl = realloc(run->ls, (run->nls + nfds + 1) * sizeof(*nl));
        if (!nl) {
            free(fds);
            return -1;
        }
        run->ls = nl;
        for (size_t k = 0; k < nfds; k++) {
            struct listener *l = calloc(1, sizeof(*l));
            if (l) {
                *l = (struct listener){.run = run, .svc = &svcs[i]};
                l->evl = evconnlistener_new(run->main, accept_cb, l,
                                            LEV_OPT_CLOSE_ON_FREE, -1, fds[k]);
            }
            if (!l || !l->evl) {
                free(l);
                close(fds[k]);
                continue;
            }
            evconnlistener_set_error_cb(l->evl, accept_error_cb);
            run->ls[run->nls++] = l;
        }
        free(fds);
    }
    return 0;
}

/* As root: hand data_dir to server.user, then become that user. */
static int drop_privileges(const struct config *cfg)
{
    if (getuid() != 0 || !*cfg->user)
        return 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        fprintf(stderr, "server.user: no such user '%s' (create it with "
                        "'useradd --system %s' or set server.user)\n",
                cfg->user, cfg->user);
        return -1;
    }
    char tls[4096];
    snprintf(tls, sizeof(tls), "%s/tls", cfg->data_dir);
    mkdir(cfg->data_dir, 0700);
    if (chown(cfg->data_dir, pw->pw_uid, pw->pw_gid) != 0 ||
        (access(tls, F_OK) == 0 && chown(tls, pw->pw_uid, pw->pw_gid) != 0)) {
        fprintf(stderr, "server.data_dir: %s: cannot give it to %s: %s\n",
                cfg->data_dir, cfg->user, strerror(errno));
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "server.user: cannot switch to %s: %s\n", cfg->user,
                strerror(errno));
        return -1;
    }
    log_info("event=privileges_dropped user=%s uid=%u", cfg->user,
             (unsigned)pw->pw_uid);
    return 0;
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct runner *run = arg;
    log_info("event=stopping signal=%d", (int)sig);
    event_base_loopexit(run->main, NULL);
}

static void reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct runner *run = arg;
    struct config *cfg = run->reload(run->reload_arg);
    if (!cfg) {
        log_error("event=reload_failed reason=config_errors keeping=old");
        return;
    }
    bool tls_ok = run->srv.tls ? tls_reload(run->srv.tls, cfg) : true;
    config_set_current(cfg);
    log_info("event=reloaded tls=%s note=\"listener changes need a restart\"",
             tls_ok ? "reloaded" : "kept_old");
}

/* After a burst of connections (TLS handshakes allocate far more than an
 * established session keeps) or of sessions ending, glibc keeps the freed
 * pages inside its arenas, interleaved with live sessions; a few seconds
 * after connections came or went, hand whole free pages back. */
static void trim_cb(evutil_socket_t fd, short what, void *arg)
{
    struct runner *run = arg;
    unsigned open = limits_total(run->srv.limits);
    if (run->accepted == run->accepted_at_trim && open == run->open_at_trim)
        return;
    run->accepted_at_trim = run->accepted;
    run->open_at_trim = open;
    malloc_trim(0);
}

static void run_main_loop(struct runner *run)
{
    struct event *sigs[3];
    struct timeval every = {TRIM_INTERVAL_SECS, 0};
    struct event *trim = event_new(run->main, -1, EV_PERSIST, trim_cb, run);
    if (trim)
        event_add(trim, &every);
    sigs[0] = evsignal_new(run->main, SIGTERM, stop_cb, run);
    sigs[1] = evsignal_new(run->main, SIGINT, stop_cb, run);
    sigs[2] = evsignal_new(run->main, SIGHUP, reload_cb, run);
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            evsignal_add(sigs[i], NULL);
    log_info("event=ready pid=%d listeners=%zu", (int)getpid(), run->nls);
    event_base_dispatch(run->main);
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (trim)
        event_free(trim);
}

static void shutdown_all(struct runner *run)
{
    for (size_t i = 0; i < run->nls; i++) {
        evconnlistener_free(run->ls[i]->evl);
        free(run->ls[i]);
    }
    free(run->ls);
    if (run->loops)
        loops_stop(run->loops, STOP_GRACE_SECS);
    jobs_stop(run->srv.jobs);
    loops_free(run->loops);
    tls_free(run->srv.tls);
    limits_free(run->srv.limits);
    event_base_free(run->main);
}

static unsigned io_thread_count(const struct config *cfg)
{
    if (cfg->io_threads)
        return cfg->io_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 256 ? (unsigned)n : 1;
}

int server_run(struct config *cfg, const struct server_service *svcs, size_t n,
               const struct server_background *bg, server_reload_fn reload,
               void *reload_arg)
{
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    struct runner run = {.reload = reload, .reload_arg = reload_arg};
    config_set_current(config_ref(cfg));
    run.main = event_base_new();
    run.srv.limits = limits_new();
    run.srv.tls = tls_new(cfg);
    if (!run.srv.tls)
        fprintf(stderr, "tls: cannot set up TLS with tls.cert/tls.key (see the "
                        "log line above)\n");
    int rc = 1;
    if (run.main && run.srv.limits && run.srv.tls && open_listeners(&run, svcs, n) == 0 &&
        drop_privileges(cfg) == 0 &&
        (run.srv.jobs = jobs_start(cfg->workers)) != NULL &&
        (run.loops = loops_start(io_thread_count(cfg))) != NULL) {
        void *bg_state = bg ? bg->start(run.main, run.srv.jobs) : NULL;
        run_main_loop(&run);
        if (bg && bg_state)
            bg->stop(bg_state);
        rc = 0;
    }
    shutdown_all(&run);
    config_set_current(NULL);
    log_info("event=stopped exit=%d", rc);
    return rc;
}
