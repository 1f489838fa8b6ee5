/* headers.h — what pobox reads and writes in a message's header: the
 * addresses of From:, Sender:, To:, Cc: and Bcc: (RFC 5322 address lists,
 * parsed by GMime; RFC 6532 UTF-8 allowed), whether Date: and Message-ID:
 * are there, the Date:, Message-ID: and Received: fields pobox adds, and the
 * copy without Bcc: that POP3 XTND XMIT sends on.
 *
 * Messages are spool files with LF line ends (a CR before an LF is
 * tolerated), read through an fd with pread from offset 0. Only the header
 * block is held in memory, and at most HEADERS_MAX octets of it. */
#ifndef POBOX_HEADERS_H
#define POBOX_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "mail/envelope.h"

#define HEADERS_MAX (1024 * 1024)   /* the longest header block accepted */
#define HEADERS_DATE_SIZE 40        /* enough for headers_date() */
#define HEADERS_MSGID_SIZE 320      /* enough for headers_message_id() */

/* Every string and array here is owned by the struct: headers_info_free(). */
struct headers_info {
    size_t header_len;      /* octets of the header block including the empty
                               line that ends it; 0 when the message has no
                               empty line (it is all header) */
    bool has_date, has_message_id;
    /* The addr-spec of every mailbox, in order, groups flattened: as written
     * (quotes, UTF-8 kept; comments, routes and CFWS dropped) with only the
     * domain lowercased. A mailbox without a domain ("alice") is reported as
     * it is, so the caller can refuse it. */
    char **from; size_t n_from;
    char **sender; size_t n_sender;
    char **to, **cc, **bcc; size_t n_to, n_cc, n_bcc;
    size_t n_from_fields;   /* From: fields seen (RFC 5322 wants exactly 1) */
    bool from_malformed;    /* a From: or Sender: field did not parse
                               strictly (its addresses are GMime's best
                               effort), or is not UTF-8 */
    bool malformed;         /* from_malformed, the same for To/Cc/Bcc, a line
                               in the header block that is not a header field
                               (no colon, bad name, leading white space), or
                               a NUL octet in the header block */
};

/* Reads the header block of the message in fd. 0 on success (*out filled;
 * free it with headers_info_free), -1 with errno on failure: EMSGSIZE when
 * the header block is longer than HEADERS_MAX, ENOMEM, or read's errno.
 * On failure *out holds nothing to free. */
int headers_read(int fd, struct headers_info *out);
void headers_info_free(struct headers_info *h);

/* RFC 5322 date-time of now in the local time zone, English names whatever
 * the locale: "Sat, 28 Nov 2026 09:05:00 +0100". */
void headers_date(char *out, size_t outsz);

/* A new unique msg-id: "<20261128080500.4f3a9c2e1b7d5a60c8e9f102@HOSTNAME>"
 * (UTC time + 96 random bits); characters of hostname that cannot be in a
 * dot-atom become '-'. */
void headers_message_id(const char *hostname, char *out, size_t outsz);

/* The trace field pobox prepends, LF line ends, ending with "\n":
 *
 *   Received: from HELO ([IP])
 *   \tby HOSTNAME (pobox) with PROTOCOL id QUEUEID
 *   \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
 *   \t(authenticated sender: USER)
 *   \tfor <RCPT>; DATE
 *
 * PROTOCOL is RFC 3848/6531's SMTP, ESMTP[S][A] or UTF8SMTP[S][A]; POP3
 * XTND XMIT is ESMTP[S]A followed by "(POP3 XTND XMIT)"; pobox deliver is
 * "local" with no from part. The TLS comment comes from env->tls ("VERSION
 * CIPHER"), the user comment from env->auth_user of an authenticated origin;
 * "for" only when there is exactly one recipient. hide_ip (smtp.hide_client_ip)
 * drops "([IP])", for authenticated origins only. Text from the network (HELO,
 * user, recipient, TLS text) is cleaned: control characters, CR, LF and
 * characters that would end a comment or a token become '?', invalid UTF-8
 * (any 8-bit octet when !env->smtputf8) too; HELO and user are cut to 64
 * octets. Lines are folded before 78 columns unless one token (a long
 * recipient or hostname) is longer. NULL when out of memory; free() it. */
char *headers_received(const struct envelope *env, const char *hostname,
                       const char *queue_id, bool hide_ip);

/* Copies the message in in_fd to out_fd (written at out_fd's offset),
 * leaving out every Bcc: field of the header block with its continuation
 * lines (RFC 5322 3.6.3), byte for byte otherwise. 0 on success, -1 with
 * errno (EMSGSIZE: header block longer than HEADERS_MAX). */
int headers_copy_without_bcc(int in_fd, int out_fd);

#endif
