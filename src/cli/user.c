/* user.c — `pobox user add|passwd|del|list`: reads passwords (stdin's
 * first line, or a no-echo prompt asked twice on a terminal), hashes them
 * with argon2id, derives the SCRAM-SHA-1 and SCRAM-SHA-256 credentials
 * (auth.scram_iterations) and edits the users file through auth/userdb. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth/password.h"
#include "auth/scram.h"
#include "auth/userdb.h"
#include "cli/cli.h"
#include "core/config.h"

#define PASS_MAX 512

static bool read_line(FILE *in, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, in))
        return false;
    size_t n = strcspn(buf, "\r\n");
    if (buf[n] == '\0' && n == len - 1)
        return false; /* too long */
    buf[n] = '\0';
    return true;
}

static bool prompt_noecho(const char *prompt, char *buf, size_t len)
{
    struct termios old, noecho;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return false;
    noecho = old;
    noecho.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
    bool ok = read_line(stdin, buf, len);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return ok;
}

/* Fills pass; prints why and returns false when no usable password came. */
static bool get_password(char *pass, size_t len)
{
    if (!isatty(STDIN_FILENO)) {
        if (!read_line(stdin, pass, len)) {
            fprintf(stderr, "pobox user: no password on stdin (first line), or "
                            "longer than %d characters\n", PASS_MAX - 2);
            return false;
        }
    } else {
        char again[PASS_MAX];
        bool ok = prompt_noecho("Password: ", pass, len) &&
                  prompt_noecho("Again: ", again, sizeof(again));
        bool same = ok && strcmp(pass, again) == 0;
        password_wipe(again, sizeof(again));
        if (!same) {
            fprintf(stderr, "pobox user: the passwords do not match\n");
            return false;
        }
    }
    if (!*pass) {
        fprintf(stderr, "pobox user: the password must not be empty\n");
        return false;
    }
    return true;
}

/* The argon2id hash and both SCRAM credentials of pass; prints why and
 * returns false on failure. */
static bool derive_secrets(const struct config *cfg, const char *pass,
                           char *hash, size_t hashsz, char *sha1, char *sha256)
{
    if (!password_hash(pass, hash, hashsz)) {
        fprintf(stderr, "pobox user: cannot hash the password\n");
        return false;
    }
    if (!scram_make(SCRAM_SHA1, pass, cfg->scram_iterations, sha1,
                    SCRAM_CREDS_MAX) ||
        !scram_make(SCRAM_SHA256, pass, cfg->scram_iterations, sha256,
                    SCRAM_CREDS_MAX)) {
        fprintf(stderr, "pobox user: cannot derive the SCRAM credentials\n");
        return false;
    }
    return true;
}

static int set_password(const struct config *cfg, const char *addr, bool apop,
                        bool must_exist)
{
    struct userdb_entry e;
    int found = userdb_lookup(cfg->data_dir, addr, &e);
    if (found < 0) {
        fprintf(stderr, "pobox user: cannot read %s/users: %s\n", cfg->data_dir,
                strerror(errno));
        return 1;
    }
    if (found)
        userdb_entry_free(&e);
    if (found && !must_exist) {
        fprintf(stderr, "pobox user add: %s already exists (use 'pobox user "
                        "passwd')\n", addr);
        return 1;
    }
    if (!found && must_exist) {
        fprintf(stderr, "pobox user passwd: no such user %s\n", addr);
        return 1;
    }
    char pass[PASS_MAX], hash[PASSWORD_HASH_MAX];
    char sha1[SCRAM_CREDS_MAX], sha256[SCRAM_CREDS_MAX];
    int rc = 1;
    if (!get_password(pass, sizeof(pass)) ||
        !derive_secrets(cfg, pass, hash, sizeof(hash), sha1, sha256))
        goto out;
    struct userdb_secrets sec = {
        .hash = hash, .apop_secret = apop ? pass : NULL,
        .scram_sha1 = sha1, .scram_sha256 = sha256,
    };
    if (userdb_put(cfg->data_dir, addr, &sec) != 0) {
        fprintf(stderr, "pobox user: cannot write %s/users: %s\n", cfg->data_dir,
                strerror(errno));
        goto out;
    }
    rc = 0;
out:
    password_wipe(pass, sizeof(pass));
    password_wipe(hash, sizeof(hash));
    password_wipe(sha1, sizeof(sha1));
    password_wipe(sha256, sizeof(sha256));
    return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    return remove(path);
}

static int purge_mailbox(const struct config *cfg, const char *addr)
{
    const char *at = strrchr(addr, '@');
    char path[4096];
    snprintf(path, sizeof(path), "%s/mail/%s/%.*s", cfg->data_dir, at + 1,
             (int)(at - addr), addr);
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        fprintf(stderr, "pobox user del: cannot remove %s: %s\n", path,
                strerror(errno));
        return 1;
    }
    return 0;
}

static int del_user(const struct config *cfg, const char *addr, bool purge)
{
    int r = userdb_del(cfg->data_dir, addr);
    if (r < 0) {
        fprintf(stderr, "pobox user del: cannot write %s/users: %s\n", cfg->data_dir,
                strerror(errno));
        return 1;
    }
    if (r == 1) {
        fprintf(stderr, "pobox user del: no such user %s\n", addr);
        return 1;
    }
    return purge ? purge_mailbox(cfg, addr) : 0;
}

static void print_address(const char *address, void *arg)
{
    printf("%s\n", address);
}

static int run(const struct config *cfg, const char *verb, const char *addr,
               const char *flag)
{
    if (strcmp(verb, "list") == 0) {
        if (userdb_list(cfg->data_dir, print_address, NULL) != 0) {
            fprintf(stderr, "pobox user list: cannot read %s/users: %s\n",
                    cfg->data_dir, strerror(errno));
            return 1;
        }
        return 0;
    }
    bool apop = flag && strcmp(flag, "--apop") == 0;
    bool purge = flag && strcmp(flag, "--purge") == 0;
    if (strcmp(verb, "add") == 0 && (!flag || apop))
        return set_password(cfg, addr, apop, false);
    if (strcmp(verb, "passwd") == 0 && (!flag || apop))
        return set_password(cfg, addr, apop, true);
    if (strcmp(verb, "del") == 0 && (!flag || purge))
        return del_user(cfg, addr, purge);
    fprintf(stderr, "pobox user: unknown option '%s' for '%s'\n", flag, verb);
    return 2;
}

int cli_user(const struct cli_opts *o)
{
    const char *verb = o->nargs ? o->args[0] : "";
    bool is_list = strcmp(verb, "list") == 0;
    if ((!is_list && strcmp(verb, "add") && strcmp(verb, "passwd") &&
         strcmp(verb, "del")) ||
        (is_list && o->nargs != 1) || (!is_list && (o->nargs < 2 || o->nargs > 3))) {
        fprintf(stderr, "usage: pobox user add|passwd ADDRESS [--apop] | "
                        "del ADDRESS [--purge] | list\n");
        return 2;
    }
    char addr[256] = "";
    if (!is_list && !userdb_canonical(o->args[1], addr, sizeof(addr))) {
        fprintf(stderr, "pobox user %s: '%s' is not a valid address "
                        "(expected local@domain)\n", verb, o->args[1]);
        return 2;
    }
    struct config *cfg = cli_load_config(o);
    if (!cfg)
        return 1;
    int rc = run(cfg, verb, addr, o->nargs == 3 ? o->args[2] : NULL);
    config_unref(cfg);
    return rc;
}
