/* spool.h — the message being received (SMTP DATA/BDAT, POP3 XTND XMIT,
 * pobox deliver), kept in an anonymous temporary file under data_dir/spool/
 * with LF line ends, as Maildir stores it. The file has no name: it vanishes
 * when the spool is freed or the process dies. Writes go through a 64 KiB
 * buffer, so a message costs the same memory whatever its size.
 *
 * While the text comes in, the spool counts its sizes and notes what the
 * caller must judge afterwards: bare CR, bare LF, 8-bit octets, NULs. Sizes
 * keep being counted after a write error or once over the size limit, so the
 * caller can read the rest of the message and still tell "too big" (552)
 * from "disk full" (452 4.3.1).
 *
 * Threading: one spool is used by one thread at a time. spool_fd() may be
 * read with pread() from other threads once spool_finish() returned 0. */
#ifndef POBOX_SPOOL_H
#define POBOX_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* A new, empty spool in data_dir/spool/ (created 0700 if missing).
 * NULL with errno on failure. */
struct spool *spool_new(const char *data_dir);

/* Line-at-a-time input (SMTP DATA, XTND XMIT, pobox deliver): one line
 * without its line end, already dot-unstuffed by the caller; eol_len is the
 * line end the client used (2 = CRLF, 1 = bare LF, 0 = none, last line of
 * a file). Stores the line plus LF (none for eol_len 0). Records bare CR (a
 * \r inside the line) and bare LF (eol_len 1) in the flags instead of
 * failing. Returns 0, or -1 once a write has failed (spool_error()). */
int spool_add_line(struct spool *sp, const char *line, size_t len,
                   size_t eol_len);

/* Raw input (SMTP BDAT chunks): CRLF-text bytes in any split; CRLF pairs
 * become LF; a CR not followed by LF (stored as is) and an LF not preceded
 * by CR set the bare flags; a CR at the end of a chunk is held until the
 * next chunk (or spool_finish). Returns as spool_add_line. */
int spool_add_raw(struct spool *sp, const void *data, size_t len);

/* Ends the input: a held CR is stored (as a bare CR), buffers are written.
 * 0 when the whole message is in the file; -1 with errno on a write error
 * (spool_error()) or, with errno EFBIG, when it went over the limit
 * (spool_too_big()): then the file holds only part of the message. */
int spool_finish(struct spool *sp);

/* The file, for pread() by store_deliver and the queue; owned by the spool. */
int spool_fd(const struct spool *sp);

uint64_t spool_size(const struct spool *sp);       /* octets stored (LF ends) */
/* Octets with CRLF line ends (SIZE checks): spool_size() plus one for every
 * LF stored. A last line without a line end gets none added. */
uint64_t spool_wire_size(const struct spool *sp);

bool spool_bare_cr(const struct spool *sp);
bool spool_bare_lf(const struct spool *sp);
/* Octets of the longest line stored, without its line end (RFC 5322
 * allows 998). */
uint64_t spool_longest_line(const struct spool *sp);
bool spool_eightbit(const struct spool *sp);       /* any octet >= 0x80 */
bool spool_nul(const struct spool *sp);            /* any NUL octet */

/* The first write error's errno, 0 if none (ENOSPC: 452 4.3.1). */
int spool_error(const struct spool *sp);

/* Caps what is written: once spool_wire_size() exceeds max_wire_octets,
 * nothing more is written (what was buffered is dropped) but sizes and flags
 * keep being counted, and spool_too_big() is true. 0 = no limit (default). */
void spool_set_limit(struct spool *sp, uint64_t max_wire_octets);
bool spool_too_big(const struct spool *sp);

/* Closes the file (it vanishes) and frees; NULL is fine. */
void spool_free(struct spool *sp);

#endif
