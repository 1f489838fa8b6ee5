/* aliases.h — the aliases file in data_dir: lookup, add/replace, delete,
 * list.
 *
 * Format, one alias a line:
 *     ALIAS: TARGET, TARGET...
 * ALIAS is a full address local@domain or a catch-all @domain, stored in
 * lowercase (aliases match case-insensitively). TARGETs are full addresses,
 * local or remote; their domain is lowercased, their local part kept as
 * given. Targets are separated by commas and/or blanks. Lines starting with
 * '#' and blank lines are ignored; there are no continuation lines. When an
 * alias has several lines, the first one counts.
 *
 * Address syntax (RFC 5321/6531): the local part is a dot-atom whose octets
 * are RFC 5322 atext or valid UTF-8 (no quoted strings); the domain is
 * dot-separated labels of ASCII letters, digits and '-'. At most 255 octets.
 * An alias may not start with '#' (its line would be a comment).
 *
 * Writers lock data_dir/aliases.lock, write aliases.tmp (mode 0600, as the
 * users file), fsync, rename. Readers see changes without restart: the cached
 * copy is reloaded when the file's inode, size or mtime change. All functions
 * are thread safe. */
#ifndef POBOX_ALIASES_H
#define POBOX_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#define ALIASES_ADDRESS_MAX 255     /* octets, without the NUL */
#define ALIASES_TARGETS_MAX 1000    /* targets of one alias */

/* Validates ALIAS (local@domain or @domain) and writes it lowercased (ASCII
 * only) into out. False when it is not a valid alias. */
bool aliases_canonical_alias(const char *alias, char *out, size_t outsz);
/* Validates a target (local@domain) and writes it into out with its domain
 * lowercased. False when it is not a valid address. */
bool aliases_canonical_target(const char *target, char *out, size_t outsz);

/* 1 found (*targets holds *n canonical targets; free them with
 * aliases_free_targets), 0 no such alias (or not a valid one), -1 the file
 * cannot be read (temporary failure). */
int aliases_lookup(const char *data_dir, const char *alias, char ***targets,
                   size_t *n);
void aliases_free_targets(char **targets, size_t n);

/* Adds or replaces ALIAS with the n targets (1..ALIASES_TARGETS_MAX, valid,
 * no two the same after canonicalisation). 0 ok, -1 error (errno; EINVAL for
 * a bad alias, target or count). */
int aliases_put(const char *data_dir, const char *alias,
                const char *const *targets, size_t n);
/* 0 removed, 1 no such alias, -1 error (errno). */
int aliases_del(const char *data_dir, const char *alias);
/* Calls fn for every alias in file order. 0 ok (also when there is no
 * file), -1 unreadable. */
int aliases_list(const char *data_dir,
                 void (*fn)(const char *alias, const char *const *targets,
                            size_t n, void *arg),
                 void *arg);

#endif
