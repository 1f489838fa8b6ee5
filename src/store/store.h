/* store.h — the mailstore interface that protocols and delivery use: open
 * and lock a maildrop, list its messages, read one, commit deletions;
 * deliver a new message into a maildrop.
 *
 * One header, several backends (maildir.c today, pg.c later): store.c picks
 * the backend from cfg->store_backend; nothing above this layer knows which.
 *
 * Threading: store_open, store_commit, store_close and store_deliver may
 * block on disk and run on the worker pool. A store_mailbox is used by one thread at a time.
 * Readers read the stored message (LF line ends) in chunks; the caller turns
 * it into CRLF + dot-stuffing (core/mailstream.h). */
#ifndef POBOX_STORE_H
#define POBOX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct config;

enum store_status {
    STORE_OK = 0,
    STORE_IN_USE,      /* maildrop locked by another session */
    STORE_GONE,        /* the message vanished (deleted by another program) */
    STORE_TEMP_FAIL,   /* I/O error, out of memory: try again later */
    STORE_PERM_FAIL,   /* bad address or a mailbox that cannot exist */
};

struct store_mailbox;
struct store_reader;

/* Opens and locks the maildrop of a canonical (lowercase) address, creating
 * it if missing. Message numbers (0-based here) are fixed from now on. */
enum store_status store_open(const struct config *cfg, const char *address,
                             struct store_mailbox **out);

size_t store_count(const struct store_mailbox *mb);
/* Octets a RETR sends with CRLF line ends (before dot-stuffing). */
uint64_t store_size(const struct store_mailbox *mb, size_t i);
/* 1..70 chars in 0x21..0x7E, unique and stable (SPEC section 4). */
const char *store_uidl(const struct store_mailbox *mb, size_t i);

enum store_status store_reader_open(struct store_mailbox *mb, size_t i,
                                    struct store_reader **out);
/* Returns bytes read, 0 at the end, -1 on an I/O error. */
ssize_t store_reader_read(struct store_reader *r, void *buf, size_t len);
void store_reader_close(struct store_reader *r);

/* Removes every message i with deleted[i] true, durably. A crash midway
 * leaves each message whole or gone. Returns STORE_OK when all are gone
 * (messages already removed by another program count as gone). */
enum store_status store_commit(struct store_mailbox *mb, const bool *deleted);

/* Unlocks and frees. */
void store_close(struct store_mailbox *mb);

/* Delivers one message into the maildrop of a canonical address, creating
 * the Maildir if missing: prefix (header lines with LF ends, e.g.
 * "Return-Path: <a@b>\nDelivered-To: c@d\nReceived: ...\n"; may be NULL)
 * followed by the message read from msg_fd at offsets 0..EOF (LF line
 * ends, as the spool stores it; use pread so the fd can be shared). On
 * STORE_OK the message is durable: written into tmp/, fsync'd, renamed
 * into new/, and new/ fsync'd. Never takes the POP3 maildrop lock: new
 * mail lands while a session is open. STORE_TEMP_FAIL on any I/O error
 * (ENOSPC included), after removing the tmp file: nothing half-delivered.
 * STORE_PERM_FAIL for an address that cannot be a maildrop.
 * Blocking: worker pool. */
enum store_status store_deliver(const struct config *cfg, const char *address,
                                const char *prefix, int msg_fd);

const char *store_status_str(enum store_status st);

#endif
