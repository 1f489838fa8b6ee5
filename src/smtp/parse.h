/* parse.h — SMTP command-line parsing: the verb, the MAIL FROM and RCPT TO
 * paths with their ESMTP parameters, BDAT, EHLO/HELO, RFC 5321 mailbox
 * syntax and RFC 3461 xtext. Pure functions: no I/O, no allocation, no
 * global state; every output is a caller-provided buffer. Fuzzed by
 * tests/fuzz/fuzz_smtp_parse.c.
 *
 * RFCs: 5321 (4.1.1-4.1.4, 4.1.2 grammar, 4.5.3.1 limits), 6531 (SMTPUTF8),
 * 1870 (SIZE), 6152 (8BITMIME), 3461 (DSN), 4954 (AUTH=), 3030 (BDAT),
 * 3463 (enhanced status codes).
 *
 * Reply codes the parsers choose (struct smtp_error):
 *   501 5.5.4  command syntax: "MAIL" without "FROM:", "RCPT" without "TO:",
 *              text after the path, a malformed parameter, a bad SIZE, BODY,
 *              RET, ENVID, AUTH, NOTIFY or ORCPT value, a duplicate
 *              parameter, BDAT without a valid size or with anything but
 *              LAST, an empty or malformed EHLO/HELO argument
 *   501 5.1.7  bad sender address syntax (MAIL)
 *   501 5.1.3  bad recipient address syntax (RCPT), including "<>"
 *   553 5.1.7  sender address or its local part too long (RFC 5321 4.5.3.1)
 *   553 5.1.3  recipient address or its local part too long
 *   553 5.6.7  a non-ASCII address without SMTPUTF8 (RFC 6531, X.6.7)
 *   555 5.5.4  an unknown parameter, SMTPUTF8 where not offered,
 *              BODY=BINARYMIME, any parameter in a HELO (non-ESMTP) session
 *              (RFC 5321 4.1.1.11)
 *   552 5.3.4  SIZE= of at most 20 digits whose value overflows 64 bits
 *              (syntactically valid per RFC 1870, certainly too big)
 *
 * Addresses are returned in canonical text form without the angle
 * brackets: the local part as written (case kept) if it is a Dot-string;
 * a Quoted-string is unquoted when its content is a valid Dot-string and
 * otherwise kept quoted with only DQUOTE and backslash escaped by a
 * backslash. Examples: <"joe"@x> gives joe@x, <"a\b"@x> gives ab@x,
 * <"a b"@x> gives "a b"@x, <"a\\b"@x> gives "a\\b"@x. The domain
 * is kept as written (case kept, U-labels kept). Limits are checked on this
 * canonical form: local part <= 64 octets, the whole address <= 254
 * (so it fits ENVELOPE_ADDR_MAX with its NUL), domain labels <= 63.
 * An empty local part, even a quoted "", is refused. UTF-8 must be valid:
 * no overlong forms, surrogates, code points above U+10FFFF, truncated
 * sequences, stray continuation bytes, nor C1 controls (U+0080..U+009F).
 * U-labels are checked only for valid UTF-8 (no IDNA2008 tables). */
#ifndef POBOX_SMTP_PARSE_H
#define POBOX_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mail/envelope.h"

#define SMTP_LOCAL_MAX 64       /* octets in a local part */
#define SMTP_ADDR_MAX 254       /* octets in an address, without <> and NUL */
#define SMTP_HELO_MAX 255       /* octets in an EHLO/HELO argument */
#define SMTP_ENVID_MAX 100      /* decoded ENVID octets (RFC 3461 4.4) */
#define SMTP_ORCPT_MAX 500      /* "type;decoded-address" octets */

enum smtp_verb {
    SMTP_EHLO, SMTP_HELO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_BDAT,
    SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN, SMTP_HELP,
    SMTP_STARTTLS, SMTP_AUTH, SMTP_UNKNOWN
};

/* A refusal: the session writes "<code> <enhanced> <text>\r\n". text is
 * printable ASCII (never CR or LF); it may name a parameter keyword, which
 * is then made of letters, digits and '-' only, at most 32 of them. The
 * struct holds no pointer into the input, so it may be copied. */
struct smtp_error {
    int code;               /* 501, 552, 553 or 555 */
    const char *enhanced;   /* static, e.g. "5.5.4" */
    char text[128];
};

struct smtp_mail_args {
    char address[ENVELOPE_ADDR_MAX];   /* canonical, "" for <> */
    uint64_t size;                     /* SIZE=, 0 when not given */
    bool body_7bit, body_8bit;         /* BODY=7BIT / BODY=8BITMIME */
    bool smtputf8;                     /* SMTPUTF8 given */
    enum dsn_ret ret;                  /* RET=, DSN_RET_UNSET when absent */
    char envid[SMTP_ENVID_MAX + 1];    /* ENVID= xtext-decoded, "" if none;
                                          printable ASCII or space */
    bool has_auth;                     /* AUTH= given (value not kept) */
};

struct smtp_rcpt_args {
    char address[ENVELOPE_ADDR_MAX];   /* canonical; "postmaster" for
                                          <postmaster> in any case */
    unsigned notify;                   /* enum dsn_notify bits, 0 if absent */
    char orcpt[SMTP_ORCPT_MAX + 12];   /* "type;decoded", "" if absent */
    bool has_orcpt;
};

/* Splits a command line (without CRLF, NUL-terminated at len) into its verb
 * (case-insensitive, ends at the first space) and *arg: the rest after the
 * spaces that follow the verb, "" when none; it points into line and keeps
 * any trailing blanks, which the argument parsers below ignore. A verb of
 * printable ASCII that is not known gives SMTP_UNKNOWN and true. Returns
 * false, *verb SMTP_UNKNOWN and *err a static reason for a NUL anywhere in
 * the line, an empty line or one starting with a space, or a control or
 * non-ASCII byte in the verb; *err is NULL on success. */
bool smtp_parse_verb(const char *line, size_t len, enum smtp_verb *verb,
                     const char **arg, const char **err);

/* The argument of MAIL: "FROM:<a@b> SIZE=123 BODY=8BITMIME". "FROM:" in
 * any case, then at most one space (leniency, as Postfix), then the path
 * ("<>", "<mailbox>", or "<@route,@route:mailbox>" whose route is checked
 * and dropped), then parameters separated by one or more spaces; trailing
 * spaces are fine. Parameter keywords and the BODY, RET values are
 * case-insensitive. Known: SIZE, BODY, SMTPUTF8 (only when utf8_allowed),
 * RET, ENVID, AUTH (RFC 4954: "<>" or an xtext decoding to at most 508
 * octets of printable ASCII; parsed and dropped).
 * Parameters need esmtp (an EHLO session). A non-ASCII address needs the
 * SMTPUTF8 parameter. Returns true and fills *out, or false with *err
 * filled and *out zeroed. */
bool smtp_parse_mail(const char *arg, bool esmtp, bool utf8_allowed,
                     struct smtp_mail_args *out, struct smtp_error *err);

/* The argument of RCPT: "TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b",
 * the same lexical rules as smtp_parse_mail. "<>" is refused; a bare
 * "<postmaster>" (any case) is accepted without a domain (RFC 5321 4.5.1).
 * smtputf8: this transaction gave SMTPUTF8, so a non-ASCII address is
 * fine. Known parameters: NOTIFY (NEVER alone, or a comma list of SUCCESS,
 * FAILURE, DELAY; case-insensitive) and ORCPT (addr-type ";" xtext; the
 * type is an RFC 822 atom of at most 32 octets, kept as written; the
 * decoded address must be non-empty printable ASCII or space, and for type
 * "utf-8" in an SMTPUTF8 transaction may also hold UTF-8, raw (RFC 6533
 * unitext) or escaped; at most SMTP_ORCPT_MAX octets as "type;decoded").
 * Returns true and fills *out, or false with *err filled and *out zeroed. */
bool smtp_parse_rcpt(const char *arg, bool esmtp, bool smtputf8,
                     struct smtp_rcpt_args *out, struct smtp_error *err);

/* The argument of BDAT: "12345" or "12345 LAST" (LAST in any case; one or
 * more spaces between, trailing spaces fine; leading zeros fine). The size
 * must fit in 64 bits. On false (501 5.5.4) the chunk length is unknown, so
 * the session cannot skip the chunk and should close the connection. */
bool smtp_parse_bdat(const char *arg, uint64_t *size, bool *last,
                     struct smtp_error *err);

/* The argument of EHLO/HELO. Lenient, as Postfix: any token of printable
 * ASCII (33..126) up to SMTP_HELO_MAX octets, leading and trailing blanks
 * ignored; refused when empty, with blanks inside, control or non-ASCII
 * bytes, or longer than SMTP_HELO_MAX or outsz - 1. out gets the token
 * ("" on false). */
bool smtp_parse_helo(const char *arg, char *out, size_t outsz,
                     struct smtp_error *err);

/* Whether addr (NUL-terminated, no angle brackets) is an RFC 5321 Mailbox:
 * Local-part "@" (Domain / address-literal), with the limits and UTF-8
 * rules above; non-ASCII only when utf8. Address literals: [IPv4], [IPv6:
 * ...] (checked with inet_pton) or a general [tag:content]. The canonical
 * form of a valid address is valid. *why (when why is not NULL) gets a
 * static lowercase reason on false, NULL on true. */
bool smtp_valid_mailbox(const char *addr, bool utf8, const char **why);

/* Decodes RFC 3461 xtext: bytes 33..126 except '+' and '=' stand for
 * themselves, "+XX" (two hex digits; lowercase accepted) for the byte XX.
 * Returns false for any other byte, a bad or short escape, "+00" (the
 * output is a C string), or when the result and its NUL exceed outsz;
 * out is then "" (when outsz > 0). */
bool smtp_xtext_decode(const char *in, size_t len, char *out, size_t outsz);

#endif
