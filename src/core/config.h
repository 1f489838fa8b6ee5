/* config.h — pobox configuration: the INI file, -o overrides, defaults,
 * validation, and the one current configuration that SIGHUP replaces.
 *
 * A struct config is immutable once loaded and reference counted: a session
 * keeps the config it started with even when a reload installs a new one. */
#ifndef POBOX_CONFIG_H
#define POBOX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config {
    int refs;                   /* atomic; see config_ref/config_unref */
    char *path;                 /* file it was loaded from, or NULL */

    char *hostname;             /* server.hostname */
    char *data_dir;             /* server.data_dir */
    char **domains;             /* server.domains, NULL-terminated, lowercase */
    char *user;                 /* server.user; "" = do not change user */
    unsigned io_threads;        /* server.io_threads; 0 = one per core */
    unsigned workers;           /* server.workers: blocking-job threads */

    char **listen_pop3;         /* NULL-terminated "host:port" lists */
    char **listen_pop3s;
    char **listen_submission;
    char **listen_submissions;
    char **listen_smtp;

    char *tls_cert, *tls_key;   /* "" = generate into data_dir/tls/ */
    int tls_min_version;        /* OpenSSL TLS1_x_VERSION */
    char *tls_ciphers;          /* TLS <= 1.2 cipher list; "" = pobox's */
    unsigned tls_handshake_timeout;
    char *tls_client_ca;        /* PEM CA file for client certificates
                                   (SASL EXTERNAL); "" = none requested */

    bool plaintext_without_tls; /* auth.plaintext_without_tls */
    bool apop;                  /* auth.apop */
    unsigned failure_delay_ms;  /* auth.failure_delay: first failed login */
    unsigned max_failure_delay_ms; /* auth.max_failure_delay */
    char **mechanisms;          /* auth.mechanisms: SASL names, uppercase */
    unsigned auth_cache_ttl;    /* auth.cache_ttl: remember verified
                                   passwords this long; 0 = never */
    unsigned scram_iterations;  /* auth.scram_iterations for new passwords */
    char *keytab;               /* auth.keytab: GSSAPI; "" = no GSSAPI */
    char *oauth_jwks;           /* auth.oauth_jwks: "" = no OAuth */
    char *oauth_issuer, *oauth_audience, *oauth_claim;

    char *store_backend, *store_postgres;

    uint64_t max_message_size;
    unsigned max_connections, max_connections_per_ip;
    unsigned max_bad_commands;  /* limits.max_bad_commands in a row */
    unsigned max_recipients;    /* limits.max_recipients per message */

    unsigned pop3_idle_timeout; /* seconds */
    unsigned smtp_idle_timeout;
    bool hide_client_ip;        /* smtp.hide_client_ip in Received: of
                                   authenticated submissions */
    bool pop3_xtnd;             /* pop3.xtnd: XTND XMIT and XLST */

    char *relay_smarthost, *relay_resolver;
    unsigned relay_port;        /* relay.port: the port MX hosts are tried on */
    char *smarthost_user, *smarthost_password_file;
    char *smarthost_tls;        /* starttls, implicit or none */
    char **retry_schedule;      /* relay.retry_schedule: durations */
    unsigned max_queue_time;    /* seconds */
    unsigned delay_warning;     /* seconds */
    unsigned max_hops;          /* Received: lines before a loop is declared */
};

/* Collected errors: one line each, "FILE:LINE: key: problem". */
struct config_errors {
    char **lines;
    size_t n;
};

/* Loads FILE (NULL or missing-and-default = embedded defaults only when
 * allow_missing) and applies the "section.key=value" overrides. Returns NULL
 * and fills errs (caller frees with config_errors_free) on any error. */
struct config *config_load(const char *file, bool allow_missing,
                           char *const *overrides, size_t n_overrides,
                           struct config_errors *errs);
void config_errors_free(struct config_errors *errs);

/* Writes the effective configuration in the INI syntax it was read from. */
void config_print(const struct config *cfg, FILE *out);

struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* The process-wide current configuration (set by serve and by reload).
 * config_current() returns a new reference; release it with config_unref. */
void config_set_current(struct config *cfg);   /* takes over the reference */
struct config *config_current(void);

/* Parses "300", "30s", "5m", "2h", "1d" or "250ms" into milliseconds. */
bool config_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Seconds to wait after the attempt-th failed delivery attempt (1-based):
 * relay.retry_schedule, its last step repeating. */
unsigned config_retry_delay(const struct config *cfg, unsigned attempt);

/* True when the lowercase domain is one of cfg->domains. */
bool config_is_local_domain(const struct config *cfg, const char *domain);

/* The default path: $POBOX_CONFIG, else /etc/pobox/pobox.conf. */
const char *config_default_path(void);

#endif
