/* opts.h — the load generator's run options (parsed by args.c) and the
 * list of scenarios. */
#ifndef LG_OPTS_H
#define LG_OPTS_H

#include <stddef.h>
#include <stdint.h>

enum lg_scenario {
    LG_POP3_LOGIN,
    LG_POP3_POLL,
    LG_POP3_DOWNLOAD,
    LG_POP3_IDLE,
    LG_SMTP_SUBMIT,
    LG_TCP_THROUGHPUT,
    LG_FSYNC_WRITES,
};

struct lg_opts {
    enum lg_scenario scen;
    const char *scen_name;
    const char *host;
    int port;               /* 0: the scenario's default */
    int tls;                /* implicit TLS */
    int starttls;           /* STARTTLS (SMTP) / STLS (POP3) */
    int resume;             /* reuse each slot's TLS session */
    const char *users_file;
    unsigned conc;
    unsigned threads;
    double duration;        /* seconds; used when sessions == 0 */
    uint64_t sessions;      /* total sessions, 0 = run for duration */
    double timeout;         /* per-reply timeout, seconds */
    unsigned messages;      /* smtp-submit: messages per connection */
    size_t size;            /* smtp-submit: message size */
    const char *rcpt;       /* smtp-submit: recipient, NULL = own address */
    double hold;            /* pop3-idle: hold seconds, < 0 = until EOF */
    double connect_rate;    /* pop3-idle: new connections per second */
    const char *dir;        /* fsync-writes */
    int quiet;
};

/* Parses argv into o. Returns 0, or -1 after printing a usage error. */
int lg_args_parse(struct lg_opts *o, int argc, char **argv);

/* 1 for the scenarios that speak a mail protocol to a server. */
int lg_opts_is_session(const struct lg_opts *o);

#endif
