/* recipient.h — where mail for an envelope recipient goes: local mailboxes
 * (users), aliases (expanded recursively, catch-alls, plus-addressing) and
 * remote addresses; and which addresses an authenticated user may send as
 * (RFC 6409 submission rule, SPEC section 5).
 *
 * For an address in a local domain (server.domains, compared
 * case-insensitively; ASCII letters of the local part are lowercased, UTF-8
 * passes untouched), the first rule that matches wins:
 *   1. an alias of that address: each target is resolved the same way (a
 *      target naming an alias already being expanded on the way there is
 *      only looked up as a user, so "alice: alice, alice@elsewhere" keeps a
 *      copy in alice's mailbox and forwards one; other loops are cut);
 *   2. a user: that mailbox;
 *   3. user+tag: the same rules for user (only when user+tag itself is
 *      neither an alias nor a user);
 *   4. a catch-all alias @domain: its targets;
 *   5. otherwise unknown.
 * At most RECIPIENT_DEPTH_MAX aliases are expanded in a chain (deeper ones
 * are cut). An address outside the local domains is remote, as given. The
 * bare "postmaster" (RFC 5321 section 4.5.1) means postmaster@ the first
 * local domain. */
#ifndef POBOX_RECIPIENT_H
#define POBOX_RECIPIENT_H

#include <stdbool.h>
#include <stddef.h>

struct config;

#define RECIPIENT_DEPTH_MAX 10      /* aliases expanded in one chain */
#define RECIPIENT_EXPANSION_MAX 1000 /* destinations of one recipient */

enum recipient_kind {
    RECIPIENT_LOCAL,    /* lands locally or through an alias (even if only
                           remote targets came out of it) */
    RECIPIENT_REMOTE,   /* not a local domain */
    RECIPIENT_UNKNOWN,  /* local domain, no user or alias; or the expansion
                           led nowhere (a loop, too deep) */
    RECIPIENT_TEMPFAIL, /* the users or aliases file cannot be read, memory
                           ran out, or the expansion is too large */
};

/* The destinations of a message, deduplicated (start zeroed; free with
 * recipient_list_free). Strings are owned by the list. */
struct recipient_list {
    char **local;       /* canonical user addresses (mailboxes) */
    size_t n_local;
    char **remote;      /* remote addresses (domain compared without case) */
    size_t n_remote;
    /* private */
    size_t cap_local, cap_remote;
    size_t *slots;      /* hash of both lists: (index << 1 | remote) + 1 */
    size_t nslots;
};

/* Resolves one envelope recipient and adds its destinations to *out,
 * skipping those already there (so several RCPTs that expand to the same
 * mailbox deliver once). Returns the kind of the original address; *out is
 * unchanged unless LOCAL or REMOTE. */
enum recipient_kind recipient_resolve(const struct config *cfg,
                                      const char *address,
                                      struct recipient_list *out);
void recipient_list_free(struct recipient_list *l);

/* True when an authenticated user may use address as a sender: the user's
 * own address (any case), a plus-address of it, or an address whose full
 * resolution is exactly that one mailbox (an alias only to the user). False
 * too when the files cannot be read. */
bool recipient_owned_by(const struct config *cfg, const char *user,
                        const char *address);

#endif
