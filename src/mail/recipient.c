/* recipient.c — resolves envelope recipients into local mailboxes and
 * remote addresses (users, aliases, catch-alls, plus-addressing), and the
 * submission rule of which addresses belong to an authenticated user. The
 * rules are in recipient.h. */
#include "mail/recipient.h"
#include "auth/userdb.h"
#include "core/config.h"
#include "mail/aliases.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RECIPIENT_ADDR_MAX 256      /* an address, NUL included */
#define RECIPIENT_WORK_MAX 10000    /* addresses looked at for one recipient */

/* ---- the deduplicated list ---------------------------------------------- */

/* FNV-1a over the local part as it is and the domain lowercased. */
static uint64_t recipient_hash(const char *addr)
{
    const char *at = strrchr(addr, '@');
    uint64_t h = 14695981039346656037ULL;
    for (const char *s = addr; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (at && s > at && c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

/* Same local part (octet for octet) and same domain (any case). */
static bool recipient_same(const char *a, const char *b)
{
    const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');
    if (!at_a || !at_b)
        return strcmp(a, b) == 0;
    size_t la = (size_t)(at_a - a), lb = (size_t)(at_b - b);
    return la == lb && memcmp(a, b, la) == 0 && strcasecmp(at_a, at_b) == 0;
}

static const char *recipient_entry(const struct recipient_list *l, size_t slot)
{
    size_t k = (slot - 1) >> 1;
    return (slot - 1) & 1 ? l->remote[k] : l->local[k];
}

/* The slot index where addr (of the given kind) is, or the empty one where
 * it would go. The table has room. */
static size_t recipient_probe(const struct recipient_list *l, const char *addr,
                              bool remote)
{
    size_t mask = l->nslots - 1;
    size_t i = recipient_hash(addr) & mask;
    for (; l->slots[i]; i = (i + 1) & mask)
        if ((((l->slots[i] - 1) & 1) != 0) == remote &&
            recipient_same(recipient_entry(l, l->slots[i]), addr))
            break;
    return i;
}

/* Rebuilds the hash table for the entries there are, at most half full
 * after one more. -1 out of memory. */
static int recipient_reindex(struct recipient_list *l)
{
    size_t n = l->n_local + l->n_remote, nslots = 16;
    while (nslots <= 2 * (n + 1))
        nslots *= 2;
    free(l->slots);
    l->nslots = 0;
    if (!(l->slots = calloc(nslots, sizeof *l->slots)))
        return -1;
    l->nslots = nslots;
    for (size_t k = 0; k < l->n_local; k++)
        l->slots[recipient_probe(l, l->local[k], false)] = (k << 1) + 1;
    for (size_t k = 0; k < l->n_remote; k++)
        l->slots[recipient_probe(l, l->remote[k], true)] = ((k << 1) | 1) + 1;
    return 0;
}

/* Makes room for one more entry in the array *arr (count n, capacity *cap). */
static int recipient_grow(char ***arr, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    char **p = realloc(*arr, ncap * sizeof *p);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Adds a copy of addr unless it is there. 1 added, 0 already there, -1 out
 * of memory. */
static int recipient_list_add(struct recipient_list *l, const char *addr,
                              bool remote)
{
    size_t n = l->n_local + l->n_remote;
    if ((!l->nslots || 2 * (n + 1) >= l->nslots) && recipient_reindex(l) < 0)
        return -1;
    size_t i = recipient_probe(l, addr, remote);
    if (l->slots[i])
        return 0;
    char ***arr = remote ? &l->remote : &l->local;
    size_t *count = remote ? &l->n_remote : &l->n_local;
    char *copy = strdup(addr);
    if (!copy || recipient_grow(arr, *count, remote ? &l->cap_remote
                                                     : &l->cap_local) < 0) {
        free(copy);
        return -1;
    }
    (*arr)[*count] = copy;
    l->slots[i] = ((*count << 1) | (remote ? 1 : 0)) + 1;
    (*count)++;
    return 1;
}

/* Drops the entries after the first n_local / n_remote (the index is rebuilt
 * at the next add). */
static void recipient_list_truncate(struct recipient_list *l, size_t n_local,
                                    size_t n_remote)
{
    while (l->n_local > n_local)
        free(l->local[--l->n_local]);
    while (l->n_remote > n_remote)
        free(l->remote[--l->n_remote]);
    free(l->slots);
    l->slots = NULL;
    l->nslots = 0;
}

/* Adds every entry of from to to; on failure to is as it was. */
static int recipient_list_merge(struct recipient_list *to,
                                const struct recipient_list *from)
{
    size_t n_local = to->n_local, n_remote = to->n_remote;
    for (size_t i = 0; i < from->n_local; i++)
        if (recipient_list_add(to, from->local[i], false) < 0)
            goto fail;
    for (size_t i = 0; i < from->n_remote; i++)
        if (recipient_list_add(to, from->remote[i], true) < 0)
            goto fail;
    return 0;
fail:
    recipient_list_truncate(to, n_local, n_remote);
    return -1;
}

void recipient_list_free(struct recipient_list *l)
{
    if (!l)
        return;
    recipient_list_truncate(l, 0, 0);
    free(l->local);
    free(l->remote);
    memset(l, 0, sizeof *l);
}

/* ---- expansion ---------------------------------------------------------- */

struct recipient_ctx {
    const struct config *cfg;
    struct recipient_list found;                /* destinations so far */
    const char *path[RECIPIENT_DEPTH_MAX];      /* aliases being expanded */
    unsigned work;
    bool fail;                                  /* temporary failure */
};

/* Copies addr into out (RECIPIENT_ADDR_MAX) with ASCII letters lowercased.
 * False when it does not fit. */
static bool recipient_lower(const char *addr, char *out)
{
    size_t len = strnlen(addr, RECIPIENT_ADDR_MAX);
    if (len >= RECIPIENT_ADDR_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = addr[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    return true;
}

/* user@domain for user+tag@domain (the first '+', not the first octet) into
 * out (RECIPIENT_ADDR_MAX). False when addr has no tag. */
static bool recipient_strip_plus(const char *addr, char *out)
{
    const char *at = strrchr(addr, '@');
    const char *plus = at ? memchr(addr, '+', (size_t)(at - addr)) : NULL;
    if (!plus || plus == addr)
        return false;
    size_t base = (size_t)(plus - addr);
    memcpy(out, addr, base);
    memcpy(out + base, at, strlen(at) + 1);
    return true;
}

/* 1 when addr is a user, 0 not, -1 unreadable. */
static int recipient_is_user(const struct config *cfg, const char *addr)
{
    struct userdb_entry e;
    int r = userdb_lookup(cfg->data_dir, addr, &e);
    if (r == 1)
        userdb_entry_free(&e);
    return r;
}

static void recipient_add(struct recipient_ctx *x, const char *addr, bool remote)
{
    if (recipient_list_add(&x->found, addr, remote) < 0 ||
        x->found.n_local + x->found.n_remote > RECIPIENT_EXPANSION_MAX)
        x->fail = true;
}

static void recipient_expand(struct recipient_ctx *x, const char *addr,
                             size_t depth);

static bool recipient_on_path(const struct recipient_ctx *x, const char *key,
                              size_t depth)
{
    for (size_t i = 0; i < depth; i++)
        if (strcmp(x->path[i], key) == 0)
            return true;
    return false;
}

/* Expands the alias key (canonical) when there is one and it is not being
 * expanded already. True when it was an alias (even if cut for depth) or
 * the lookup failed. */
static bool recipient_try_alias(struct recipient_ctx *x, const char *key,
                                size_t depth)
{
    char **targets;
    size_t n;

    if (recipient_on_path(x, key, depth))
        return false;
    int r = aliases_lookup(x->cfg->data_dir, key, &targets, &n);
    if (r <= 0) {
        x->fail = x->fail || r < 0;
        return r < 0;
    }
    if (depth < RECIPIENT_DEPTH_MAX) {
        x->path[depth] = key;
        for (size_t i = 0; i < n && !x->fail; i++)
            recipient_expand(x, targets[i], depth + 1);
    }
    aliases_free_targets(targets, n);
    return true;
}

/* Adds the destinations of addr (a valid address; depth aliases up). */
static void recipient_expand(struct recipient_ctx *x, const char *addr,
                             size_t depth)
{
    char key[RECIPIENT_ADDR_MAX], base[RECIPIENT_ADDR_MAX];
    const char *at = strrchr(addr, '@');

    if (x->fail || ++x->work > RECIPIENT_WORK_MAX) {
        x->fail = true;
        return;
    }
    if (!at || !config_is_local_domain(x->cfg, at + 1)) {
        recipient_add(x, addr, true);
        return;
    }
    if (!recipient_lower(addr, key) || at == addr)
        return;
    if (recipient_try_alias(x, key, depth))
        return;
    int user = recipient_is_user(x->cfg, key);
    if (user != 0) {
        if (user > 0)
            recipient_add(x, key, false);
        x->fail = x->fail || user < 0;
        return;
    }
    if (recipient_strip_plus(key, base)) {
        recipient_expand(x, base, depth);
        return;
    }
    recipient_try_alias(x, strrchr(key, '@'), depth);   /* the catch-all */
}

/* "postmaster" without a domain (RFC 5321 4.5.1) as postmaster@ the first
 * local domain in out; else addr. */
static const char *recipient_postmaster(const struct config *cfg,
                                        const char *addr, char *out)
{
    if (strchr(addr, '@') || strcasecmp(addr, "postmaster") != 0 ||
        !cfg->domains || !cfg->domains[0])
        return addr;
    int n = snprintf(out, RECIPIENT_ADDR_MAX, "postmaster@%s", cfg->domains[0]);
    return n > 0 && n < RECIPIENT_ADDR_MAX ? out : addr;
}

enum recipient_kind recipient_resolve(const struct config *cfg,
                                      const char *address,
                                      struct recipient_list *out)
{
    char pm[RECIPIENT_ADDR_MAX];

    if (!cfg || !address || !out)
        return RECIPIENT_TEMPFAIL;
    address = recipient_postmaster(cfg, address, pm);
    const char *at = strrchr(address, '@');
    if (!at || at == address || !at[1])
        return RECIPIENT_UNKNOWN;
    if (!config_is_local_domain(cfg, at + 1))
        return recipient_list_add(out, address, true) < 0 ? RECIPIENT_TEMPFAIL
                                                          : RECIPIENT_REMOTE;

    struct recipient_ctx x = { .cfg = cfg };
    recipient_expand(&x, address, 0);
    enum recipient_kind kind = RECIPIENT_LOCAL;
    if (x.fail)
        kind = RECIPIENT_TEMPFAIL;
    else if (x.found.n_local + x.found.n_remote == 0)
        kind = RECIPIENT_UNKNOWN;
    else if (recipient_list_merge(out, &x.found) < 0)
        kind = RECIPIENT_TEMPFAIL;
    recipient_list_free(&x.found);
    return kind;
}

/* ---- the submission rule ------------------------------------------------ */

/* True when addr (lowercased) is me+tag@domain and not itself a user or an
 * alias. */
static bool recipient_plus_of(const struct config *cfg, const char *addr,
                              const char *me)
{
    char base[RECIPIENT_ADDR_MAX], **targets;
    size_t n;

    if (!recipient_strip_plus(addr, base) || strcmp(base, me) != 0)
        return false;
    int alias = aliases_lookup(cfg->data_dir, addr, &targets, &n);
    if (alias > 0)
        aliases_free_targets(targets, n);
    return alias == 0 && recipient_is_user(cfg, addr) == 0;
}

bool recipient_owned_by(const struct config *cfg, const char *user,
                        const char *address)
{
    char me[RECIPIENT_ADDR_MAX], addr[RECIPIENT_ADDR_MAX];

    if (!cfg || !address || !userdb_canonical(user, me, sizeof me) ||
        !recipient_lower(address, addr))
        return false;
    if (strcmp(addr, me) == 0 || recipient_plus_of(cfg, addr, me))
        return true;
    struct recipient_list l = {0};
    bool owned = recipient_resolve(cfg, address, &l) == RECIPIENT_LOCAL &&
                 l.n_local == 1 && l.n_remote == 0 &&
                 strcmp(l.local[0], me) == 0;
    recipient_list_free(&l);
    return owned;
}
