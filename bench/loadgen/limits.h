/* limits.h — the machine-limit modes: loopback TCP throughput and
 * fsync'ed maildir-style file writes, without a server. */
#ifndef LG_LIMITS_H
#define LG_LIMITS_H

#include <stdint.h>

#include "hist.h"
#include "opts.h"

struct lg_limit_res {
    double seconds;
    uint64_t bytes;         /* tcp-throughput: bytes received */
    uint64_t writes;        /* fsync-writes: files written */
    struct lg_hist lat;     /* fsync-writes: per file */
};

/* Each returns 0, or -1 after a message on stderr. */
int lg_limits_tcp(const struct lg_opts *o, struct lg_limit_res *r);
int lg_limits_fsync(const struct lg_opts *o, struct lg_limit_res *r);

#endif
