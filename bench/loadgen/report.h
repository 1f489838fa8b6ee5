/* report.h — the JSON result lines of each kind of run. */
#ifndef LG_REPORT_H
#define LG_REPORT_H

#include "limits.h"
#include "opts.h"
#include "stats.h"

void lg_report_run(const struct lg_opts *o, double seconds, const struct lg_stats *st);
void lg_report_idle_ready(const struct lg_opts *o, double seconds, const struct lg_stats *st);
void lg_report_idle_done(const struct lg_opts *o, double seconds, double hold,
                         const struct lg_stats *st);
void lg_report_limit(const struct lg_opts *o, const struct lg_limit_res *r);

#endif
