/* sasl_conn.c — what the SASL service needs to know about a client
 * connection (address, TLS, channel binding, verified client certificate),
 * read off the connection the same way for POP3 and SMTP. */
#include <string.h>

#include "auth/sasl.h"
#include "net/conn.h"
#include "net/tls.h"

void sasl_conn_info_from(struct sasl_conn_info *ci, struct conn *c,
                         const char *service, char *cert, size_t certsz)
{
    memset(ci, 0, sizeof *ci);
    ci->service = service;
    ci->ip = conn_ip(c);
    ci->tls = conn_is_tls(c);
    SSL *ssl = conn_ssl(c);
    const char *type = NULL;
    if (ssl && tls_channel_binding(ssl, &type, ci->cb_data, &ci->cb_len))
        ci->cb_type = type;
    if (ssl && tls_client_identity(ssl, cert, certsz))
        ci->cert_identity = cert;
}
