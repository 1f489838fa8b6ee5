/* parse.h — POP3 command-line parsing (RFC 1939 section 3): the keyword,
 * its arguments, and message numbers. Pure functions, fuzzed. */
#ifndef POBOX_POP3_PARSE_H
#define POBOX_POP3_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define POP3_MAX_ARGS 4
#define POP3_KEYWORD_MAX 8

enum pop3_parse_status {
    POP3_PARSE_OK,
    POP3_PARSE_EMPTY,        /* empty or blank line */
    POP3_PARSE_NUL,          /* a NUL byte in the line */
    POP3_PARSE_BAD_KEYWORD,  /* keyword not 1..8 ASCII letters or digits */
    POP3_PARSE_TOO_MANY,     /* more than POP3_MAX_ARGS arguments */
};

struct pop3_cmdline {
    char keyword[POP3_KEYWORD_MAX + 1];  /* uppercased */
    unsigned argc;
    const char *argv[POP3_MAX_ARGS];     /* point into the line */
    const char *rest;   /* everything after the keyword and one space
                           (PASS may contain spaces), "" when none */
    char buf[256];      /* arguments, NUL-separated */
};

/* Parses line (len bytes, NUL-terminated at len, at most 255; trailing
 * blanks are cut in place). argv and rest stay valid while out and line do. */
enum pop3_parse_status pop3_parse_line(char *line, size_t len,
                                       struct pop3_cmdline *out);

/* A message number: 1..max in plain decimal (no sign, no spaces, at most
 * 10 digits). Returns false otherwise. */
bool pop3_parse_msgnum(const char *arg, size_t max, size_t *out);

/* A non-negative line count for TOP: decimal, at most 10 digits. */
bool pop3_parse_count(const char *arg, unsigned long *out);

#endif
