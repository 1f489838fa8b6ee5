/* tls_peer.c — what SASL needs to know about one TLS connection: channel
 * binding data for SCRAM-*-PLUS and the verified client certificate's
 * identity for EXTERNAL. */
#include "net/tls.h"

#include <openssl/x509v3.h>
#include <string.h>

#include "core/strutil.h"

#define TLS_FINISHED_MAX 64
#define EXPORTER_LEN 32
static const char EXPORTER_LABEL[] = "EXPORTER-Channel-Binding";

/* tls-unique: the first Finished message of the handshake, the client's in a
 * full handshake and the server's in an abbreviated (resumed) one. */
static bool tls_unique(SSL *ssl, unsigned char *out, size_t *outlen)
{
    if (SSL_get_extms_support(ssl) != 1)
        return false;
    unsigned char buf[TLS_FINISHED_MAX];
    size_t n = SSL_session_reused(ssl) ? SSL_get_finished(ssl, buf, sizeof buf)
                                       : SSL_get_peer_finished(ssl, buf, sizeof buf);
    if (n == 0 || n > sizeof buf || n > TLS_CB_MAX)
        return false;
    memcpy(out, buf, n);
    *outlen = n;
    return true;
}

bool tls_channel_binding(SSL *ssl, const char **type, unsigned char *out,
                         size_t *outlen)
{
    if (!ssl || !SSL_is_init_finished(ssl))
        return false;
    int version = SSL_version(ssl);
    if (version == TLS1_3_VERSION) {
        if (SSL_export_keying_material(ssl, out, EXPORTER_LEN, EXPORTER_LABEL,
                                       sizeof(EXPORTER_LABEL) - 1, NULL, 0, 1) != 1)
            return false;
        *outlen = EXPORTER_LEN;
        *type = "tls-exporter";
        return true;
    }
    if (version == TLS1_2_VERSION && tls_unique(ssl, out, outlen)) {
        *type = "tls-unique";
        return true;
    }
    return false;
}

/* Copies an ASN1 string that is plain printable text; false otherwise. */
static bool copy_text(const ASN1_STRING *s, char *out, size_t outsz)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (!p || len <= 0 || (size_t)len >= outsz)
        return false;
    for (int i = 0; i < len; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return false;
    memcpy(out, p, (size_t)len);
    out[len] = '\0';
    return true;
}

static bool san_email(X509 *crt, char *out, size_t outsz)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(crt, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; names && !found && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_EMAIL)
            found = copy_text(gn->d.rfc822Name, out, outsz);
    }
    GENERAL_NAMES_free(names);
    return found;
}

static bool subject_entry(X509 *crt, int nid, char *out, size_t outsz)
{
    X509_NAME *name = X509_get_subject_name(crt);
    int idx = name ? X509_NAME_get_index_by_NID(name, nid, -1) : -1;
    if (idx < 0)
        return false;
    X509_NAME_ENTRY *e = X509_NAME_get_entry(name, idx);
    return e && copy_text(X509_NAME_ENTRY_get_data(e), out, outsz);
}

bool tls_client_identity(SSL *ssl, char *out, size_t outsz)
{
    if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK)
        return false;
    X509 *crt = SSL_get0_peer_certificate(ssl);
    if (!crt)
        return false;
    if (!san_email(crt, out, outsz) &&
        !subject_entry(crt, NID_pkcs9_emailAddress, out, outsz) &&
        !subject_entry(crt, NID_commonName, out, outsz))
        return false;
    str_lower(out);
    return true;
}
