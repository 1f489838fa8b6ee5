"""report.py — turns the benchmark's run records into the printed report:
the machine's limits, each server's setup, the comparison table (medians,
ratio, min-max, share of the machine limit, target), the idle-session
memory table and the growth table (with a PNG plot when gnuplot exists)."""

import shutil
import statistics
import subprocess
from pathlib import Path

import scenarios as sc

LIMIT_NAMES = {
    "tcp_mb_per_s": "loopback TCP, one stream",
    "fsync_writes_per_s": "fsync'd 10 KB file writes",
    "crypt_per_s": "SHA512-CRYPT verifies, all cores",
}


def _values(records, scenario, server, key):
    return [r[key] for r in records
            if r.get("scenario") == scenario and r.get("server") == server and key in r]


def _fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.2f" % x


def _span(vals):
    return "%s-%s" % (_fmt(min(vals)), _fmt(max(vals))) if vals else "-"


def _med(vals):
    return statistics.median(vals) if vals else None


def limits_text(limits):
    lines = ["Machine limits (measured in this run, %d CPUs):" % limits["cpus"]]
    lines.append("  %-36s %10.0f MB/s" % (LIMIT_NAMES["tcp_mb_per_s"], limits["tcp_mb_per_s"]))
    lines.append("  %-36s %10.0f /s" % (LIMIT_NAMES["fsync_writes_per_s"],
                                         limits["fsync_writes_per_s"]))
    lines.append("  %-36s %10.0f /s" % (LIMIT_NAMES["crypt_per_s"], limits["crypt_per_s"]))
    return lines


def _row(records, s, limits):
    pv = _values(records, s.name, s.pobox, s.metric)
    qv = _values(records, s.name, s.peer, s.metric)
    pm, qm = _med(pv), _med(qv)
    ratio = None
    if pm and qm:
        ratio = qm / pm if s.lower_is_better else pm / qm
    errs = sum(_values(records, s.name, s.pobox, "errors")) + \
        sum(_values(records, s.name, s.peer, "errors"))
    share = "%3.0f%%" % (100.0 * pm / limits[s.limit]) if pm and s.limit else "   -"
    verdict = "-"
    if s.target and ratio is not None:
        verdict = "%s (>=%.1fx)" % ("met" if ratio >= s.target else "MISSED", s.target)
    line = "%-20s %-9s %9s  %-8s %9s  %6s  %-13s %-13s %5s  %s  errors %d" % (
        s.name, s.unit, _fmt(pm), s.peer, _fmt(qm),
        ("%.2fx" % ratio) if ratio is not None else "-", _span(pv), _span(qv),
        share, verdict, errs)
    out = [line]
    for key in s.extra_metrics:
        pe = _values(records, s.name, s.pobox, key)
        qe = _values(records, s.name, s.peer, key)
        if key in ("lost", "rss_growth_kb"):
            agg = max
        else:
            agg = _med
        out.append("  %-18s %-9s %9s  %-8s %9s" % (
            "", key, _fmt(agg(pe)) if pe else "-", "", _fmt(agg(qe)) if qe else "-"))
    return out


def main_table(records, limits, pick):
    head = "%-20s %-9s %9s  %-8s %9s  %6s  %-13s %-13s %5s  %s" % (
        "scenario", "unit", "pobox", "peer", "peer", "ratio", "pobox min-max",
        "peer min-max", "limit", "target")
    lines = [head, "-" * len(head)]
    for s in pick:
        lines += _row(records, s, limits)
    return lines


def idle_table(records):
    rows = [r for r in records if str(r.get("scenario", "")).startswith("pop3-idle-")]
    if not rows:
        return []
    lines = ["", "Idle authenticated POP3S sessions: server PSS per session (all its processes)",
             "%-8s %14s %14s %8s %10s %s" % ("sessions", "pobox kB/sess", "dovecot kB/sess",
                                            "ratio", "pobox MB", "NOOP answered (pobox/dovecot)")]
    sizes = sorted({r["sessions"] for r in rows})
    for n in sizes:
        p = [r for r in rows if r["sessions"] == n and r["server"] == "pobox"]
        d = [r for r in rows if r["sessions"] == n and r["server"] == "dovecot"]
        pk = p[0]["kb_per_session"] if p else None
        dk = d[0]["kb_per_session"] if d else None
        ratio = ("1/%.0f" % (dk / pk)) if pk and dk else "-"
        lines.append("%-8d %14s %14s %8s %10s %s/%s   target <= %d kB and <= 1/25: %s" % (
            n, _fmt(pk), _fmt(dk) if d else "not run", ratio, _fmt(p[0]["pss_kb"] / 1024.0) if p else "-",
            p[0]["answered"] if p else "-", d[0]["answered"] if d else "-",
            sc.IDLE_TARGET_KB,
            "met" if pk is not None and pk <= sc.IDLE_TARGET_KB and (not dk or pk * 25 <= dk)
            else "MISSED"))
    if any(n > sc.IDLE_MAX["dovecot"] for n in sizes):
        lines.append("  Dovecot is measured up to %d sessions: two processes and about 1.8 MB"
                     " of machine memory per POP3S session" % sc.IDLE_MAX["dovecot"])
    return lines


def growth_table(records, out_png):
    rows = [r for r in records if str(r.get("scenario", "")).startswith("growth-")]
    if not rows:
        return []
    lines = ["", "Growth: pop3-poll (login, STAT, UIDL, QUIT) time against maildrop size",
             "%-10s %14s %14s %16s" % ("messages", "pobox ms/poll", "dovecot ms/poll",
                                       "pobox us/message")]
    data = []
    for g, n in sc.GROWTH_SIZES.items():
        p = [r for r in rows if r["scenario"] == "growth-" + g and r["server"] == "pobox"]
        d = [r for r in rows if r["scenario"] == "growth-" + g and r["server"] == "dovecot"]
        if not p:
            continue
        pm = p[0]["latency_ms"]["p50"]
        dm = d[0]["latency_ms"]["p50"] if d else None
        data.append((n, pm, dm))
        lines.append("%-10d %14s %14s %16s" % (n, _fmt(pm), _fmt(dm), _fmt(pm * 1000.0 / n)))
    if len(data) >= 2:
        (n0, t0, _), (n1, t1, _) = data[-2], data[-1]
        lines.append("  last step: %.0fx messages -> %.1fx time (linear or better: %s)" % (
            n1 / n0, t1 / t0, "yes" if t1 / t0 <= n1 / n0 * 1.1 else "NO"))
    if shutil.which("gnuplot") and data:
        _plot(data, out_png)
        lines.append("  plot: %s" % out_png)
    return lines


def _plot(data, out_png):
    dat = Path(str(out_png) + ".dat")
    dat.write_text("".join("%d %f %s\n" % (n, p, d if d is not None else "NaN")
                           for n, p, d in data))
    script = ("set terminal png size 800,500; set output '%s'; set logscale xy;"
              "set xlabel 'messages in maildrop'; set ylabel 'ms per poll (median)';"
              "plot '%s' using 1:2 with linespoints title 'pobox',"
              " '' using 1:3 with linespoints title 'dovecot'" % (out_png, dat))
    subprocess.run(["gnuplot", "-e", script], check=False)
    dat.unlink()


def table(records, limits, pick, servers, unavailable, quick):
    lines = ["", "pobox benchmark%s" % (" (QUICK subset)" if quick else "")]
    lines += limits_text(limits)
    lines.append("Servers:")
    for name, srv in servers.items():
        lines.append("  %-8s %s" % (name, srv.describe()))
    for name, why in unavailable.items():
        lines.append("  %-8s not run: %s" % (name, why))
    lines.append("Medians over the repetitions; ratio = pobox / peer (higher is better"
                 " for pobox); limit = pobox median as a share of the machine limit.")
    lines.append("")
    lines += main_table(records, limits, pick)
    lines += idle_table(records)
    lines += growth_table(records, Path(__file__).resolve().parent / "results" / "growth.png")
    return "\n".join(lines) + "\n"
