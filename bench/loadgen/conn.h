/* conn.h — a non-blocking client connection over plain TCP or TLS:
 * connect, handshake (at connect or STARTTLS), buffered reads of lines and
 * of POP3 multi-line bodies, buffered writes, a per-reply timeout. */
#ifndef LG_CONN_H
#define LG_CONN_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"
#include "stats.h"

struct lg_conn;

/* Callbacks into the protocol script. on_fail is called for connect,
 * handshake, read errors, EOF and the timeout; the conn is still open
 * (the script closes it). */
struct lg_conn_ops {
    void (*on_up)(struct lg_conn *c);       /* connected (and handshake done) */
    void (*on_data)(struct lg_conn *c);     /* new bytes in the read buffer */
    void (*on_fail)(struct lg_conn *c);
};

/* What a thread's connections share. */
struct lg_conn_env {
    struct lg_loop *loop;
    struct lg_tlist *timeouts;      /* per-reply timeout list */
    SSL_CTX *ctx;
    const struct sockaddr *addr;
    socklen_t addrlen;
    struct lg_stats *st;            /* bytes_in, tls_resumed, tls_full */
    uint32_t rbuf_size;             /* read buffer, allocated on first read */
    int lean;                       /* free empty buffers (idle sessions) */
};

enum { LG_CONN_CLOSED, LG_CONN_CONNECTING, LG_CONN_HANDSHAKE, LG_CONN_OPEN };

struct lg_conn {
    struct lg_io io;
    struct lg_tnode timer;
    struct lg_tlist *tlist;         /* list the timer was last armed on */
    const struct lg_conn_ops *ops;
    const struct lg_conn_env *env;
    SSL *ssl;
    SSL_SESSION *resume;            /* session to offer at connect (not owned) */
    char *rbuf, *wbuf;
    uint32_t rcap, rpos, rlen;
    uint32_t wcap, wpos, wlen;
    int fd;
    unsigned char state;
    unsigned char tls_at_connect;
    const char *err_what;           /* last error, see lg_conn_why */
    int err_no;
    unsigned long err_ssl;
    int err_kind;                   /* SSL_get_error() of the last failure */
};

/* State of reading a POP3 multi-line body after its +OK line. */
struct lg_ml {
    uint64_t octets;                /* body octets, terminator excluded */
    uint32_t lines;                 /* body lines (counted when asked) */
    unsigned char at_start;
};

void lg_conn_init(struct lg_conn *c, const struct lg_conn_env *env,
                  const struct lg_conn_ops *ops);
/* Starts a connection (TLS handshake right after connect when tls; resume
 * may be NULL). Returns -1 on immediate failure (see lg_conn_why). */
int lg_conn_connect(struct lg_conn *c, int tls, SSL_SESSION *resume);
/* Starts the TLS handshake on an open plain connection (STARTTLS/STLS);
 * on_up follows when it is done (maybe before this returns). Returns -1
 * on immediate failure (on_fail is not called then). */
int lg_conn_start_tls(struct lg_conn *c, SSL_SESSION *resume);
/* Queues bytes for sending and (re)arms the reply timeout (which data
 * received re-arms too: it fires after that long without progress).
 * Returns -1 on a write error. */
int lg_conn_send(struct lg_conn *c, const void *p, size_t n);
/* Re-arms the conn's timer on another list (e.g. a short linger). */
void lg_conn_arm(struct lg_conn *c, struct lg_tlist *list);
void lg_conn_disarm(struct lg_conn *c);
/* Next complete line without its CRLF (consumed), or NULL. */
const char *lg_conn_line(struct lg_conn *c, size_t *len);
/* Consumes a multi-line body; 1 when its terminating ".\r\n" was read. */
int lg_conn_ml(struct lg_conn *c, struct lg_ml *ml, int count_lines);
static inline void lg_ml_begin(struct lg_ml *ml)
{
    ml->octets = 0;
    ml->lines = 0;
    ml->at_start = 1;
}
static inline size_t lg_conn_pending(const struct lg_conn *c)
{
    return c->rlen - c->rpos;
}
/* Drops unread input. */
void lg_conn_discard(struct lg_conn *c);
/* The TLS session to resume next time (caller owns it), or NULL. */
SSL_SESSION *lg_conn_session(struct lg_conn *c);
/* Closes; abort sends a reset (no TIME_WAIT on our side). */
void lg_conn_close(struct lg_conn *c, int abort);
/* Closes and frees the buffers. */
void lg_conn_free(struct lg_conn *c);
/* Formats the last error, e.g. "connect: Connection refused". */
void lg_conn_why(const struct lg_conn *c, char *buf, size_t n);

/* TLS client context: TLS 1.2+, no verification, no SNI. */
SSL_CTX *lg_tls_ctx(void);

#endif
