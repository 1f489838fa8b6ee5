/* conn.h — one client connection on an I/O loop: a libevent bufferevent
 * (plain or OpenSSL), line framing with a length limit, output with flow
 * control, idle and TLS-handshake timeouts, STARTTLS/STLS switching, and the
 * connection-limit slot it holds.
 *
 * Callbacks run on the loop thread. A callback may call conn_close(); the
 * connection is freed only after the callback returns. on_close is the last
 * callback; the conn pointer is invalid after it. */
#ifndef POBOX_CONN_H
#define POBOX_CONN_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct conn;
struct loop;
struct tls;
struct limits;
struct evbuffer;
struct event_base;

struct conn_ops {
    /* A complete line without its CRLF or LF; line[len] is '\0' but the
     * line may contain NULs. */
    void (*on_line)(void *ctx, char *line, size_t len);
    /* A line longer than the limit was received and thrown away. */
    void (*on_line_too_long)(void *ctx);
    /* Raw mode (conn_read_bytes): the next piece of the requested octets;
     * after the last piece, on_bytes_done and line mode again. May be NULL
     * for protocols that never use raw mode. */
    void (*on_bytes)(void *ctx, const char *data, size_t len);
    void (*on_bytes_done)(void *ctx);
    /* Output dropped below the low-water mark set by conn_want_writable. */
    void (*on_writable)(void *ctx);
    /* TLS handshake done (implicit TLS at connect, or after conn_start_tls). */
    void (*on_tls_ready)(void *ctx);
    /* No input for the idle timeout while nothing was being sent. */
    void (*on_idle)(void *ctx);
    /* The server is stopping: say goodbye (or finish a job) and close. */
    void (*on_shutdown)(void *ctx);
    /* The connection is gone (reason for the log). */
    void (*on_close)(void *ctx, const char *reason);
};

struct conn_params {
    struct loop *loop;
    int fd;
    const struct sockaddr *addr;
    struct tls *tls;              /* context for TLS, NULL if none */
    bool implicit_tls;            /* handshake right away (POP3S, 465) */
    struct limits *limits;        /* slot released when the conn is freed;
                                     pending for implicit TLS until the
                                     handshake, then promoted */
    unsigned max_per_ip;          /* for that promotion */
    const char *busy_reply;       /* sent over TLS when promotion fails */
    size_t max_line;              /* including the line end */
    unsigned idle_timeout;        /* seconds */
    unsigned handshake_timeout;   /* seconds */
    const struct conn_ops *ops;
    void *ctx;
};

struct conn *conn_new(const struct conn_params *p);

void conn_write(struct conn *c, const void *data, size_t len);
void conn_printf(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct evbuffer *conn_output(struct conn *c);
size_t conn_output_len(struct conn *c);
/* Calls on_writable once when the output drains below low_water. */
void conn_want_writable(struct conn *c, size_t low_water);

/* Stops delivering lines (pipelined input waits) / starts again. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);

/* STLS/STARTTLS: throws away input received so far, sends what is already
 * queued in plaintext, then handshakes; on_tls_ready follows. */
void conn_start_tls(struct conn *c);

/* Sends what is queued, then closes. */
void conn_close_after_flush(struct conn *c, const char *reason);
void conn_close(struct conn *c, const char *reason);
/* Called by the loop at server stop: forwards to ops->on_shutdown. */
void conn_shutdown(struct conn *c);

bool conn_is_tls(const struct conn *c);
/* The connection's SSL once TLS is up, else NULL (for channel binding and
 * the client certificate; use it on the connection's loop only). */
SSL *conn_ssl(const struct conn *c);
/* Changes the longest line accepted (including the line end), e.g. for the
 * long responses of a SASL exchange. The line buffer grows only as long
 * lines actually arrive. */
void conn_set_max_line(struct conn *c, size_t max_line);
/* Switches to raw mode for the next n octets (SMTP BDAT): they arrive
 * through on_bytes, then on_bytes_done; then lines again. */
void conn_read_bytes(struct conn *c, uint64_t n);
/* Octets of the line end (1 or 2) of the line on_line just received. */
size_t conn_last_eol(const struct conn *c);
bool conn_tls_available(const struct conn *c);  /* a TLS context exists */
const char *conn_ip(const struct conn *c);
unsigned conn_port(const struct conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" */
void conn_tls_info(const struct conn *c, char *buf, size_t len);
struct event_base *conn_base(const struct conn *c);
struct loop *conn_loop(const struct conn *c);
void conn_set_idle_timeout(struct conn *c, unsigned secs);

#endif
