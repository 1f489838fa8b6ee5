/* help.c — `pobox help [COMMAND]`. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name, *text;
} TOPICS[] = {
    {"serve", "pobox serve [-c FILE] [-o section.key=value]...\n"
              "  Runs every configured listener in the foreground, logging to stderr.\n"
              "  SIGTERM/SIGINT stop it cleanly; SIGHUP reloads the configuration,\n"
              "  the users and the TLS certificate without dropping sessions.\n"},
    {"user", "pobox user add ADDRESS [--apop]     create a user\n"
             "pobox user passwd ADDRESS [--apop]  change the password\n"
             "pobox user del ADDRESS [--purge]    remove (--purge: and the mailbox)\n"
             "pobox user list                     one address a line\n"
             "  The password is the first line of stdin when it is not a terminal,\n"
             "  else it is asked twice without echo. --apop also stores the\n"
             "  plaintext-equivalent secret that APOP needs.\n"},
    {"alias", "pobox alias add ALIAS TARGET...  add or replace an alias\n"
              "pobox alias del ALIAS             remove it\n"
              "pobox alias list                  one alias a line: ALIAS: T1, T2\n"
              "  ALIAS is local@domain, or @domain for a catch-all of that domain;\n"
              "  TARGETs are addresses, local or remote. The server sees changes\n"
              "  at once.\n"},
    {"deliver", "pobox deliver [-f SENDER] RECIPIENT...\n"
                "  Local delivery agent: reads one message on stdin and delivers it\n"
                "  to the recipients' mailboxes (aliases and plus-addressing apply).\n"
                "  Exit codes (sysexits.h): 0 delivered, 64 usage, 65 bad message,\n"
                "  67 unknown recipient, 75 temporary failure. For Postfix\n"
                "  mailbox_command, fetchmail --mda, procmail-style setups.\n"},
    {"queue", "pobox queue list        queued messages: ID, age, size, sender; each\n"
              "                        recipient with its state, attempts, next try, error\n"
              "pobox queue flush       retry every queued message now\n"
              "pobox queue delete ID   drop a message without telling anyone\n"
              "pobox queue bounce ID   return a message to its sender now\n"},
    {"check", "pobox check [-c FILE] [-o section.key=value]...\n"
              "  Validates the configuration and prints the effective one;\n"
              "  exits 1 with a line per error.\n"},
};

static void usage(void)
{
    printf("pobox %s: a POP3 and SMTP mail server\n\n"
           "usage: pobox COMMAND [-c FILE] [-o section.key=value]...\n\n"
           "commands:\n"
           "  serve                 run the server in the foreground\n"
           "  user add|passwd|del|list   manage users\n"
           "  alias add|del|list    manage aliases\n"
           "  deliver [-f SENDER] RCPT...  deliver a message from stdin\n"
           "  queue list|flush|delete|bounce   the outbound queue\n"
           "  check                 validate and print the configuration\n"
           "  help [COMMAND]        this text, or one command's\n"
           "  --version             print the version\n\n"
           "-c FILE defaults to $POBOX_CONFIG, else /etc/pobox/pobox.conf\n"
           "(the embedded defaults when that file does not exist).\n",
           POBOX_VERSION);
}

int cli_help(const char *topic)
{
    if (!topic) {
        usage();
        return 0;
    }
    for (size_t i = 0; i < sizeof(TOPICS) / sizeof(TOPICS[0]); i++)
        if (strcmp(topic, TOPICS[i].name) == 0) {
            fputs(TOPICS[i].text, stdout);
            return 0;
        }
    fprintf(stderr, "pobox help: no such command '%s'\n", topic);
    return 2;
}
