/* run.h — running a session scenario: threads, pop3-idle phases, merged
 * results. */
#ifndef LG_RUN_H
#define LG_RUN_H

#include "worker.h"

/* Runs r (set up by the caller: options, users, scenario, address, TLS
 * context), prints the JSON line(s). Returns 0, or -1 when it could not run. */
int lg_run_exec(struct lg_run *r);

#endif
