/* client.h — the relay's outbound SMTP client: one mail transaction (one
 * sender, its recipients at one destination, one message) over one
 * connection to one address, run entirely on an event loop. Nothing here
 * blocks: connect, TLS, every reply and the message body move through
 * libevent bufferevents, and the result comes back through a callback.
 *
 * The conversation (RFC 5321, with RFC 1869/3207/4954/2920/1870/6152/6531/
 * 3461): greeting; EHLO (HELO when EHLO gets 5xx); STARTTLS when offered
 * (or required), then EHLO again; AUTH PLAIN (LOGIN when PLAIN is not
 * offered) when asked for; MAIL FROM with SIZE=, BODY=8BITMIME, SMTPUTF8,
 * RET=, ENVID= as the peer offers them; one RCPT TO per recipient (NOTIFY=,
 * ORCPT= when the peer offers DSN); DATA; the message; QUIT. With
 * PIPELINING, MAIL, every RCPT and DATA go out in one write and the
 * replies are read in order (RFC 2920).
 *
 * Distrust of the peer:
 *  - replies go through relay/reply.c: a line over RELAY_REPLY_LINE_MAX
 *    octets, a reply over RELAY_REPLY_LINES_MAX lines or anything that is
 *    not a reply ends the session (temporary failure) at once; memory stays
 *    bounded whatever the peer sends;
 *  - a peer that sends anything when no reply is due (data after the reply
 *    to our last command, a reply while the message is being sent) ends the
 *    session: no stray line is ever taken for the reply to a later command;
 *    except after "220" to STARTTLS, where whatever came with it is thrown
 *    away unread (RFC 3207 response injection);
 *  - every wait has a deadline (RFC 5321 4.5.3.2): a reply must be complete
 *    within its timeout, however slowly its octets trickle in;
 *  - the message is sent with CRLF line ends only and dot-stuffed: an LF
 *    becomes CRLF, a CR right before an LF is dropped, any other CR is sent
 *    as a line end too (so no bare CR or LF ever goes out: no SMTP
 *    smuggling), a line starting with "." gets another, and the end is
 *    CRLF "." CRLF (with a CRLF first when the message did not end with a
 *    line end). Lines over 998 octets are sent as they are.
 *
 * Threads: a transaction lives on its event base's thread; all calls on
 * that thread. */
#ifndef POBOX_RELAY_CLIENT_H
#define POBOX_RELAY_CLIENT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mail/envelope.h"
#include "relay/reply.h"

struct event_base;
struct relay_client;

enum relay_client_tls {
    /* STARTTLS when the peer offers it; plaintext otherwise. A failed
     * handshake fails the session (tls_failed is set: the caller may try
     * again with RELAY_TLS_NONE, as opportunistic TLS allows). */
    RELAY_TLS_OPPORTUNISTIC,
    RELAY_TLS_REQUIRED,     /* STARTTLS must be offered and work */
    RELAY_TLS_IMPLICIT,     /* TLS from the first octet (port 465) */
    RELAY_TLS_NONE,         /* never STARTTLS */
};

struct relay_client_params {
    struct event_base *base;
    const struct sockaddr *addr;    /* one address of the route, with port;
                                       the caller tries the next on failure */
    socklen_t addrlen;
    const char *host_name;  /* the peer's name: TLS SNI (not sent for an
                               address literal) and certificate name;
                               NULL or "" = none */
    const char *helo;       /* our host name, for EHLO/HELO */
    enum relay_client_tls tls;
    /* Certificates are checked only with tls_verify: chain against the
     * context's trust store and host_name (DNS name or IP address). Without
     * it anything goes (opportunistic TLS, RFC 7435). */
    bool tls_verify;
    SSL_CTX *ssl_ctx;       /* borrowed; from relay_client_ssl_ctx_new; may
                               be NULL only with RELAY_TLS_NONE */
    /* AUTH PLAIN, or LOGIN when PLAIN is not offered; NULL = no AUTH. Only
     * over TLS unless tls is RELAY_TLS_NONE. A peer without AUTH PLAIN/LOGIN
     * or that refuses the credentials is a temporary failure (our
     * configuration, not the mail, is wrong). */
    const char *auth_user, *auth_password;
    const char *sender;     /* "" = the null sender */
    const char *const *rcpts;   /* n_rcpts >= 1 addresses, without <> */
    const unsigned *notify;     /* enum dsn_notify bits per recipient, 0 =
                                   none; NULL = none for all */
    const char *const *orcpt;   /* "type;address" (decoded) per recipient or
                                   NULL; the array may be NULL */
    size_t n_rcpts;
    enum dsn_ret ret;       /* RET=; DSN_RET_UNSET = none */
    const char *envid;      /* ENVID= (decoded), NULL = none */
    /* NOTIFY, ORCPT, RET and ENVID are sent only when the peer offers DSN;
     * ORCPT over 500 and ENVID over 100 octets (as xtext) are left out. */
    bool smtputf8;          /* needs SMTPUTF8: a peer without it fails the
                               session permanently (5.6.7) */
    bool body_8bit;         /* BODY=8BITMIME when offered (sent anyway when
                               not, as most MTAs do) */
    int msg_fd;             /* borrowed; the message, LF line ends, read with
                               pread from offset 0 to EOF */
    uint64_t msg_size;      /* its size with CRLF line ends: SIZE=, and a
                               permanent failure (5.3.4) over the peer's SIZE */
    /* Seconds (RFC 5321 4.5.3.2; 0 = the RFC's value): the TCP connect
     * (default 30), the greeting (300), EHLO/HELO/STARTTLS/AUTH/MAIL/RCPT/
     * QUIT replies and the TLS handshake (300), DATA's 354 (120), each
     * step of sending the message without progress (180), the reply to
     * the final "." (600). */
    unsigned timeout_connect, timeout_greeting, timeout_command,
        timeout_data_init, timeout_data_block, timeout_data_end;
};

/* One recipient's outcome. */
struct relay_client_rcpt {
    /* 2xx: delivered (the final reply to the message). 4xx/5xx: refused at
     * RCPT, or the reply to DATA or to the message. 0: no verdict, the
     * session failure (relay_client_result) applies. */
    int code;
    char status[RELAY_REPLY_ENH_SIZE];  /* the reply's enhanced code, else
                                           "C.0.0" after its class; "" with
                                           code 0 */
    char reply[512];        /* the reply, relay_reply_line() form */
    const char *stage;      /* static: "RCPT", "DATA" or "end of data" */
};

struct relay_client_result {
    /* The session ended before a verdict for every recipient: a network
     * error, a timeout, a protocol error, a TLS failure, a refusal at the
     * greeting, EHLO, AUTH or MAIL, or our own policy (SMTPUTF8, SIZE,
     * TLS required). Recipients with code 0 share this failure. */
    bool failed;
    bool temp;              /* the failure is temporary (retry) */
    int session_code;       /* the reply code that ended it, 0 for our own
                               reasons (network, timeout, protocol, policy) */
    char status[RELAY_REPLY_ENH_SIZE];  /* "4.4.1", "5.6.7", ... */
    /* With remote: the peer's reply in relay_reply_line() form ("550 5.7.1
     * go away"). Else our words: "connect: Connection refused", "timeout
     * after MAIL", "TLS handshake failed: ...", "protocol error in reply to
     * EHLO: reply line too long". */
    char diagnostic[512];
    bool remote;
    const char *stage;      /* static: what we were waiting for ("connect",
                               "greeting", "EHLO", "MAIL", "end of data") */
    struct relay_client_rcpt *rcpts;    /* n_rcpts, in the params' order */
    size_t n_rcpts;
    unsigned n_delivered;   /* recipients with a 2xx code */
    bool peer_dsn;          /* the peer offered DSN (else a success is
                               "relayed", RFC 3464 2.3.3) */
    bool tls_used;          /* the session ran over TLS */
    bool tls_failed;        /* the TLS handshake failed */
    char tls_info[128];     /* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" */
    char remote_ip[64];
};

/* res and everything in it are valid only during the call. */
typedef void (*relay_client_cb)(void *arg, const struct relay_client_result *res);

/* Starts the transaction: p is copied (strings, recipients and the address
 * too; msg_fd, ssl_ctx and base are borrowed until cb). cb is called
 * exactly once, on the loop and never inside this call, after QUIT or the
 * failure; the handle is gone when it returns. NULL when it cannot start
 * (cb never called): errno ENOMEM, or EINVAL for bad params (no recipient,
 * a CR, LF or other control octet in an address, helo, host name or user,
 * a missing ssl_ctx, ...). */
struct relay_client *relay_client_send(const struct relay_client_params *p,
                                       relay_client_cb cb, void *arg);

/* Drops a transaction now (server shutdown): closes the connection (a
 * message in flight is not delivered, RFC 5321 says so for a lost
 * connection before "."), cb is never called. Not from inside cb. */
void relay_client_cancel(struct relay_client *c);

/* A client TLS context: TLS 1.2 or later, no compression or renegotiation,
 * peer certificates not checked unless a transaction asks (tls_verify),
 * then against ca_file (PEM), or the system's store when NULL. SNI and the
 * expected name are set per connection. NULL on failure. SSL_CTX_free it. */
SSL_CTX *relay_client_ssl_ctx_new(const char *ca_file);

#endif
