/* config.c — loads pobox.conf (INI, through libinih) into an immutable,
 * reference-counted struct config; one table below lists every key with
 * its type and default, so parsing, validation and `pobox check` printing
 * all come from the same place. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/strutil.h"

enum key_type { K_STRING, K_LIST, K_BOOL, K_UINT, K_SIZE, K_DURATION_S,
                K_DURATION_MS, K_TLSVER };

struct key_def {
    const char *section, *name;
    enum key_type type;
    size_t offset;
    const char *def;           /* NULL: computed (hostname, domains) */
};

#define F(field) offsetof(struct config, field)
static const struct key_def KEYS[] = {
    {"server", "hostname", K_STRING, F(hostname), NULL},
    {"server", "data_dir", K_STRING, F(data_dir), "/var/lib/pobox"},
    {"server", "domains", K_LIST, F(domains), NULL},
    {"server", "user", K_STRING, F(user), "pobox"},
    {"server", "io_threads", K_UINT, F(io_threads), "0"},
    {"server", "workers", K_UINT, F(workers), "4"},
    {"listen", "pop3", K_LIST, F(listen_pop3), "0.0.0.0:110, [::]:110"},
    {"listen", "pop3s", K_LIST, F(listen_pop3s), "0.0.0.0:995, [::]:995"},
    {"listen", "submission", K_LIST, F(listen_submission), "0.0.0.0:587, [::]:587"},
    {"listen", "submissions", K_LIST, F(listen_submissions), "0.0.0.0:465, [::]:465"},
    {"listen", "smtp", K_LIST, F(listen_smtp), "0.0.0.0:25, [::]:25"},
    {"tls", "cert", K_STRING, F(tls_cert), ""},
    {"tls", "key", K_STRING, F(tls_key), ""},
    {"tls", "min_version", K_TLSVER, F(tls_min_version), "1.2"},
    {"tls", "ciphers", K_STRING, F(tls_ciphers), ""},
    {"tls", "handshake_timeout", K_DURATION_S, F(tls_handshake_timeout), "30s"},
    {"tls", "client_ca", K_STRING, F(tls_client_ca), ""},
    {"auth", "plaintext_without_tls", K_BOOL, F(plaintext_without_tls), "no"},
    {"auth", "apop", K_BOOL, F(apop), "yes"},
    {"auth", "failure_delay", K_DURATION_MS, F(failure_delay_ms), "2s"},
    {"auth", "max_failure_delay", K_DURATION_MS, F(max_failure_delay_ms), "15s"},
    {"auth", "mechanisms", K_LIST, F(mechanisms),
     "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, "
     "GSSAPI, EXTERNAL, OAUTHBEARER, XOAUTH2, PLAIN, LOGIN"},
    {"auth", "cache_ttl", K_DURATION_S, F(auth_cache_ttl), "1h"},
    {"auth", "scram_iterations", K_UINT, F(scram_iterations), "4096"},
    {"auth", "keytab", K_STRING, F(keytab), ""},
    {"auth", "oauth_jwks", K_STRING, F(oauth_jwks), ""},
    {"auth", "oauth_issuer", K_STRING, F(oauth_issuer), ""},
    {"auth", "oauth_audience", K_STRING, F(oauth_audience), ""},
    {"auth", "oauth_claim", K_STRING, F(oauth_claim), "email"},
    {"store", "backend", K_STRING, F(store_backend), "maildir"},
    {"store", "postgres", K_STRING, F(store_postgres), ""},
    {"limits", "max_message_size", K_SIZE, F(max_message_size), "52428800"},
    {"limits", "max_connections", K_UINT, F(max_connections), "10000"},
    {"limits", "max_connections_per_ip", K_UINT, F(max_connections_per_ip), "50"},
    {"limits", "max_bad_commands", K_UINT, F(max_bad_commands), "20"},
    {"limits", "max_recipients", K_UINT, F(max_recipients), "1000"},
    {"pop3", "idle_timeout", K_DURATION_S, F(pop3_idle_timeout), "600"},
    {"pop3", "xtnd", K_BOOL, F(pop3_xtnd), "yes"},
    {"smtp", "idle_timeout", K_DURATION_S, F(smtp_idle_timeout), "300"},
    {"smtp", "hide_client_ip", K_BOOL, F(hide_client_ip), "no"},
    {"relay", "smarthost", K_STRING, F(relay_smarthost), ""},
    {"relay", "resolver", K_STRING, F(relay_resolver), ""},
    {"relay", "port", K_UINT, F(relay_port), "25"},
    {"relay", "smarthost_user", K_STRING, F(smarthost_user), ""},
    {"relay", "smarthost_password_file", K_STRING, F(smarthost_password_file), ""},
    {"relay", "smarthost_tls", K_STRING, F(smarthost_tls), "starttls"},
    {"relay", "retry_schedule", K_LIST, F(retry_schedule), "5m 10m 20m 40m 1h"},
    {"relay", "max_queue_time", K_DURATION_S, F(max_queue_time), "5d"},
    {"relay", "delay_warning", K_DURATION_S, F(delay_warning), "4h"},
    {"relay", "max_hops", K_UINT, F(max_hops), "50"},
};
#define NKEYS (sizeof(KEYS) / sizeof(KEYS[0]))

struct loader {
    struct config *cfg;
    const char *file;
    int line;
    FILE *fp;
    bool seen[NKEYS];
    struct config_errors *errs;
};

static void add_error(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_error(struct config_errors *errs, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **n = realloc(errs->lines, (errs->n + 1) * sizeof(*n));
    if (!n)
        return;
    errs->lines = n;
    errs->lines[errs->n] = strdup(buf);
    if (errs->lines[errs->n])
        errs->n++;
}

void config_errors_free(struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

bool config_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    char *end;
    if (!s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    uint64_t mult;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        mult = 86400 * 1000;
    else
        return false;
    if (v > UINT32_MAX)
        return false;
    *out_ms = v * mult;
    return true;
}

static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static void free_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

/* Splits on commas and blanks into a NULL-terminated vector. */
static char **split_list(const char *s, void (*transform)(char *))
{
    size_t cap = 4, n = 0;
    char **v = calloc(cap + 1, sizeof(*v));
    while (v && *s) {
        while (*s == ',' || isspace((unsigned char)*s))
            s++;
        size_t len = strcspn(s, ", \t");
        if (len == 0)
            break;
        if (n == cap) {
            char **nv = realloc(v, (cap * 2 + 1) * sizeof(*v));
            if (!nv) {
                free_list(v);
                return NULL;
            }
            v = nv;
            cap *= 2;
        }
        v[n] = strndup(s, len);
        if (transform && v[n])
            transform(v[n]);
        v[++n] = NULL;
        s += len;
    }
    return v;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"yes", "true", "on", "1"};
    static const char *no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return (*out = true);
        if (strcasecmp(s, no[i]) == 0)
            return !(*out = false);
    }
    return false;
}

static bool parse_tlsver(const char *s, int *out)
{
    static const struct { const char *name; int v; } vers[] = {
        {"1.0", TLS1_VERSION}, {"1.1", TLS1_1_VERSION},
        {"1.2", TLS1_2_VERSION}, {"1.3", TLS1_3_VERSION},
    };
    for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++)
        if (strcmp(s, vers[i].name) == 0 || (strncasecmp(s, "tls", 3) == 0 &&
                                             strcmp(s + 3, vers[i].name) == 0)) {
            *out = vers[i].v;
            return true;
        }
    return false;
}

/* Stores value into the field of key k; returns a problem text or NULL. */
static const char *set_value(struct config *cfg, const struct key_def *k,
                             const char *value)
{
    void *field = (char *)cfg + k->offset;
    uint64_t u;
    switch (k->type) {
    case K_STRING: {
        char *dup = strdup(value);
        if (!dup)
            return "out of memory";
        free(*(char **)field);
        *(char **)field = dup;
        return NULL;
    }
    case K_LIST: {
        char **l = split_list(value, k->offset == F(domains) ? str_lower
                                     : k->offset == F(mechanisms) ? str_upper
                                                                  : NULL);
        if (!l)
            return "out of memory";
        free_list(*(char ***)field);
        *(char ***)field = l;
        return NULL;
    }
    case K_BOOL:
        return parse_bool(value, (bool *)field) ? NULL : "expected yes or no";
    case K_UINT:
        if (!parse_uint(value, UINT_MAX, &u))
            return "expected a whole number";
        *(unsigned *)field = (unsigned)u;
        return NULL;
    case K_SIZE:
        if (!parse_uint(value, UINT64_MAX, &u))
            return "expected a number of octets";
        *(uint64_t *)field = u;
        return NULL;
    case K_DURATION_S:
    case K_DURATION_MS:
        if (!config_parse_duration_ms(value, &u))
            return "expected a duration: seconds, or a number with ms, s, m, h or d";
        if (k->type == K_DURATION_S)
            u = (u + 999) / 1000;
        if (u > UINT_MAX)
            return "duration too long";
        *(unsigned *)field = (unsigned)u;
        return NULL;
    case K_TLSVER:
        return parse_tlsver(value, (int *)field) ? NULL
                                                 : "expected 1.0, 1.1, 1.2 or 1.3";
    }
    return "unknown type";
}

static const struct key_def *find_key(const char *section, const char *name,
                                      size_t *idx)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 &&
            strcmp(KEYS[i].name, name) == 0) {
            *idx = i;
            return &KEYS[i];
        }
    return NULL;
}

static int ini_handler_fn(void *user, const char *section, const char *name,
                          const char *value)
{
    struct loader *ld = user;
    size_t idx;
    const struct key_def *k = find_key(section, name, &idx);
    if (!k && !*section) {
        add_error(ld->errs, "%s:%d: %s: key outside a [section]", ld->file,
                  ld->line, name);
        return 1;
    }
    if (!k) {
        add_error(ld->errs, "%s:%d: %s.%s: unknown key", ld->file, ld->line,
                  section, name);
        return 1;
    }
    const char *problem = set_value(ld->cfg, k, value);
    if (problem)
        add_error(ld->errs, "%s:%d: %s.%s: %s", ld->file, ld->line, section,
                  name, problem);
    ld->seen[idx] = true;
    return 1;
}

#define CONFIG_MAX_LINE 8192

/* fgets-style reader that counts lines, so errors can name them, and
 * refuses lines libinih would cut. */
static char *line_reader(char *str, int num, void *stream)
{
    struct loader *ld = stream;
    char *r = fgets(str, num, ld->fp);
    if (!r)
        return NULL;
    ld->line++;
    size_t len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(ld->fp)) {
        add_error(ld->errs, "%s:%d: line longer than %d characters", ld->file,
                  ld->line, CONFIG_MAX_LINE - 3);
        int c;
        while ((c = fgetc(ld->fp)) != EOF && c != '\n')
            ;
        str[0] = '\0'; /* parse the rest as an empty line */
    }
    return r;
}

/* libinih's knobs are process-wide: set them once. */
static void ini_setup(void)
{
    ini_use_stack = false;
    ini_initial_alloc = CONFIG_MAX_LINE;
    ini_max_line = CONFIG_MAX_LINE;
    ini_allow_multiline = false;
}

static bool machine_fqdn(char *out, size_t outsz)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        return false;
    host[sizeof(host) - 1] = '\0';
    struct addrinfo hints = {.ai_flags = AI_CANONNAME, .ai_family = AF_UNSPEC};
    struct addrinfo *ai = NULL;
    if (strchr(host, '.') == NULL && getaddrinfo(host, NULL, &hints, &ai) == 0 &&
        ai && ai->ai_canonname && strchr(ai->ai_canonname, '.'))
        snprintf(out, outsz, "%s", ai->ai_canonname);
    else
        snprintf(out, outsz, "%s", host);
    if (ai)
        freeaddrinfo(ai);
    str_lower(out);
    return true;
}

static bool apply_defaults(struct config *cfg, const bool *seen)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!seen[i] && KEYS[i].def && set_value(cfg, &KEYS[i], KEYS[i].def))
            return false;
    if (!cfg->hostname || !*cfg->hostname) {
        char fqdn[256];
        if (!machine_fqdn(fqdn, sizeof(fqdn)))
            snprintf(fqdn, sizeof(fqdn), "localhost");
        free(cfg->hostname);
        cfg->hostname = strdup(fqdn);
    }
    if (!cfg->domains || !cfg->domains[0]) {
        free_list(cfg->domains);
        cfg->domains = split_list(cfg->hostname, str_lower);
    }
    return cfg->hostname && cfg->domains;
}

/* The SASL mechanisms pobox implements (auth/sasl.c serves exactly these). */
static const char *const KNOWN_MECHANISMS[] = {
    "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL", "GSSAPI",
    "OAUTHBEARER", "XOAUTH2",
};

static void validate_auth(const struct config *cfg, const char *file,
                          struct config_errors *errs)
{
    for (char **m = cfg->mechanisms; m && *m; m++) {
        size_t i, n = sizeof(KNOWN_MECHANISMS) / sizeof(KNOWN_MECHANISMS[0]);
        for (i = 0; i < n && strcmp(*m, KNOWN_MECHANISMS[i]) != 0; i++)
            ;
        if (i == n)
            add_error(errs, "%s: auth.mechanisms: unknown mechanism %s", file, *m);
    }
    if (cfg->scram_iterations < 4096 || cfg->scram_iterations > 10000000)
        add_error(errs, "%s: auth.scram_iterations: expected 4096 to 10000000",
                  file);
    if (!*cfg->oauth_claim)
        add_error(errs, "%s: auth.oauth_claim: must not be empty", file);
    if (*cfg->oauth_jwks && (!*cfg->oauth_issuer || !*cfg->oauth_audience))
        add_error(errs, "%s: auth.oauth_jwks: needs auth.oauth_issuer and "
                  "auth.oauth_audience", file);
}

static void validate_relay(const struct config *cfg, const char *file,
                           struct config_errors *errs)
{
    uint64_t ms;
    if (!cfg->retry_schedule || !cfg->retry_schedule[0])
        add_error(errs, "%s: relay.retry_schedule: needs at least one duration", file);
    for (char **p = cfg->retry_schedule; p && *p; p++)
        if (!config_parse_duration_ms(*p, &ms) || ms < 1000)
            add_error(errs, "%s: relay.retry_schedule: %s is not a duration of "
                      "at least 1 second", file, *p);
    if (strcmp(cfg->smarthost_tls, "starttls") != 0 &&
        strcmp(cfg->smarthost_tls, "implicit") != 0 &&
        strcmp(cfg->smarthost_tls, "none") != 0)
        add_error(errs, "%s: relay.smarthost_tls: expected starttls, implicit or none",
                  file);
    if (cfg->relay_port == 0 || cfg->relay_port > 65535)
        add_error(errs, "%s: relay.port: expected 1 to 65535", file);
    if (*cfg->smarthost_user && !*cfg->smarthost_password_file)
        add_error(errs, "%s: relay.smarthost_user: needs "
                  "relay.smarthost_password_file", file);
    if (cfg->max_hops == 0)
        add_error(errs, "%s: relay.max_hops: must be at least 1", file);
}

unsigned config_retry_delay(const struct config *cfg, unsigned attempt)
{
    uint64_t ms = 300000;
    size_t n = 0;
    while (cfg->retry_schedule && cfg->retry_schedule[n])
        n++;
    if (n > 0) {
        size_t i = attempt == 0 ? 0 : attempt - 1;
        config_parse_duration_ms(cfg->retry_schedule[i < n ? i : n - 1], &ms);
    }
    return (unsigned)(ms / 1000);
}

static void validate(const struct config *cfg, const char *file,
                     struct config_errors *errs)
{
    if (strcmp(cfg->store_backend, "maildir") != 0 &&
        strcmp(cfg->store_backend, "postgres") != 0)
        add_error(errs, "%s: store.backend: expected maildir or postgres", file);
    if (strcmp(cfg->store_backend, "postgres") == 0 && !*cfg->store_postgres)
        add_error(errs, "%s: store.postgres: required with store.backend = postgres",
                  file);
    if (!*cfg->data_dir)
        add_error(errs, "%s: server.data_dir: must not be empty", file);
    if ((*cfg->tls_cert == '\0') != (*cfg->tls_key == '\0'))
        add_error(errs, "%s: tls.cert, tls.key: set both or neither", file);
    if (cfg->pop3_idle_timeout == 0)
        add_error(errs, "%s: pop3.idle_timeout: must be at least 1 second", file);
    if (cfg->tls_handshake_timeout == 0)
        add_error(errs, "%s: tls.handshake_timeout: must be at least 1 second", file);
    if (cfg->max_connections == 0 || cfg->max_connections_per_ip == 0)
        add_error(errs, "%s: limits: connection limits must be at least 1", file);
    if (cfg->workers == 0)
        add_error(errs, "%s: server.workers: must be at least 1", file);
    if (cfg->max_recipients == 0)
        add_error(errs, "%s: limits.max_recipients: must be at least 1", file);
    if (cfg->smtp_idle_timeout == 0)
        add_error(errs, "%s: smtp.idle_timeout: must be at least 1 second", file);
    validate_auth(cfg, file, errs);
    validate_relay(cfg, file, errs);
}

static bool load_file(struct loader *ld, bool allow_missing)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ini_setup);
    ld->fp = fopen(ld->file, "r");
    if (!ld->fp) {
        if (allow_missing && errno == ENOENT)
            return true;
        add_error(ld->errs, "%s: cannot open: %s", ld->file, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fileno(ld->fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        add_error(ld->errs, "%s: not a regular file", ld->file);
        fclose(ld->fp);
        return false;
    }
    int rc = ini_parse_stream(line_reader, ld, ini_handler_fn, ld);
    if (ferror(ld->fp))
        add_error(ld->errs, "%s: read error: %s", ld->file, strerror(errno));
    fclose(ld->fp);
    ld->fp = NULL;
    if (rc > 0)
        add_error(ld->errs, "%s:%d: syntax error (expected [section] or key = value)",
                  ld->file, rc);
    return rc >= 0;
}

static void apply_override(struct loader *ld, const char *ov)
{
    const char *eq = strchr(ov, '=');
    const char *dot = strchr(ov, '.');
    if (!eq || !dot || dot > eq) {
        add_error(ld->errs, "-o %s: expected section.key=value", ov);
        return;
    }
    char section[64], name[64];
    snprintf(section, sizeof(section), "%.*s", (int)(dot - ov), ov);
    snprintf(name, sizeof(name), "%.*s", (int)(eq - dot - 1), dot + 1);
    str_trim(section);
    str_trim(name);
    char *value = strdup(eq + 1);
    if (!value)
        return;
    str_trim(value);
    size_t idx;
    const struct key_def *k = find_key(section, name, &idx);
    if (!k)
        add_error(ld->errs, "-o %s.%s: unknown key", section, name);
    else {
        const char *problem = set_value(ld->cfg, k, value);
        if (problem)
            add_error(ld->errs, "-o %s.%s: %s", section, name, problem);
        ld->seen[idx] = true;
    }
    free(value);
}

struct config *config_load(const char *file, bool allow_missing,
                           char *const *overrides, size_t n_overrides,
                           struct config_errors *errs)
{
    struct loader ld = {.file = file ? file : "(defaults)", .errs = errs};
    ld.cfg = calloc(1, sizeof(*ld.cfg));
    if (!ld.cfg)
        return NULL;
    ld.cfg->refs = 1;
    ld.cfg->path = file ? strdup(file) : NULL;
    if (file)
        load_file(&ld, allow_missing);
    for (size_t i = 0; i < n_overrides; i++)
        apply_override(&ld, overrides[i]);
    if (!apply_defaults(ld.cfg, ld.seen))
        add_error(errs, "%s: out of memory", ld.file);
    if (errs->n == 0)
        validate(ld.cfg, ld.file, errs);
    if (errs->n) {
        config_unref(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

static void print_value(const struct config *cfg, const struct key_def *k, FILE *out)
{
    const void *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case K_STRING:
        fprintf(out, "%s", *(char *const *)field);
        break;
    case K_LIST:
        for (char *const *p = *(char **const *)field; p && *p; p++)
            fprintf(out, "%s%s", p == *(char **const *)field ? "" : ", ", *p);
        break;
    case K_BOOL:
        fprintf(out, "%s", *(const bool *)field ? "yes" : "no");
        break;
    case K_UINT:
    case K_DURATION_S:
        fprintf(out, "%u", *(const unsigned *)field);
        break;
    case K_DURATION_MS:
        fprintf(out, "%ums", *(const unsigned *)field);
        break;
    case K_SIZE:
        fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case K_TLSVER: {
        int v = *(const int *)field;
        fprintf(out, "1.%d", v == TLS1_VERSION ? 0 : v == TLS1_1_VERSION ? 1
                             : v == TLS1_2_VERSION ? 2 : 3);
        break;
    }
    }
}

void config_print(const struct config *cfg, FILE *out)
{
    const char *section = "";
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(section, KEYS[i].section) != 0) {
            section = KEYS[i].section;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        fprintf(out, "%s = ", KEYS[i].name);
        print_value(cfg, &KEYS[i], out);
        fputc('\n', out);
    }
}

struct config *config_ref(struct config *cfg)
{
    if (cfg)
        atomic_fetch_add_explicit((_Atomic int *)&cfg->refs, 1,
                                  memory_order_relaxed);
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (!cfg || atomic_fetch_sub_explicit((_Atomic int *)&cfg->refs, 1,
                                          memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        void *field = (char *)cfg + KEYS[i].offset;
        if (KEYS[i].type == K_STRING)
            free(*(char **)field);
        else if (KEYS[i].type == K_LIST)
            free_list(*(char ***)field);
    }
    free(cfg->path);
    free(cfg);
}

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct config *current;

void config_set_current(struct config *cfg)
{
    pthread_mutex_lock(&current_lock);
    struct config *old = current;
    current = cfg;
    pthread_mutex_unlock(&current_lock);
    config_unref(old);
}

struct config *config_current(void)
{
    pthread_mutex_lock(&current_lock);
    struct config *c = config_ref(current);
    pthread_mutex_unlock(&current_lock);
    return c;
}

bool config_is_local_domain(const struct config *cfg, const char *domain)
{
    for (char **d = cfg->domains; d && *d; d++)
        if (strcasecmp(*d, domain) == 0)
            return true;
    return false;
}

const char *config_default_path(void)
{
    const char *env = getenv("POBOX_CONFIG");
    return env && *env ? env : "/etc/pobox/pobox.conf";
}
