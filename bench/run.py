#!/usr/bin/python3
"""run.py — `make bench`: runs pobox and its peers (Dovecot for POP3,
Postfix for SMTP submission) side by side on loopback, alternating
A B A B over several repetitions, measures the machine's limits in the
same run, prints the comparison table and saves every run as JSON lines
under bench/results/. `--quick` is the one-minute subset (`make bench
QUICK=1`)."""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import measure  # noqa: E402
import report  # noqa: E402
import scenarios as sc  # noqa: E402
from servers.base import ServerUnavailable  # noqa: E402
from servers.dataset import Dataset  # noqa: E402
from servers.dovecot import DovecotServer  # noqa: E402
from servers.pobox import PoboxServer  # noqa: E402
from servers.postfix import PostfixServer  # noqa: E402

PORTS = {
    "pobox": {"pop3": 25110, "pop3s": 25995, "submission": 25587},
    "pobox-nocache": {"pop3": 28110, "pop3s": 28995, "submission": 0},
    "dovecot": {"pop3": 26110, "pop3s": 26995, "submission": 0},
    "postfix": {"pop3": 0, "pop3s": 0, "submission": 27587},
}


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.reps = args.reps or (2 if args.quick else 3)
        self.seconds = args.seconds or (1.5 if args.quick else 5.0)
        self.loadgen = str(Path(args.loadgen).resolve())
        self.work = Path(tempfile.mkdtemp(prefix="pobox-bench-"))
        os.chmod(self.work, 0o755)
        self.data = Dataset(Path(args.data), self.quick)
        self.servers = {}
        self.unavailable = {}
        self.records = []
        self.idle_done = set()          # servers that held idle sessions already
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        self.out = results / ("%s%s.jsonl" % (stamp, "-quick" if self.quick else ""))

    # --- bookkeeping -------------------------------------------------------
    def log(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def save(self, rec):
        rec = dict(rec, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.records.append(rec)
        with open(self.out, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")

    def users_file(self, group, n):
        src = self.data.users_file(group)
        if not n:
            return str(src)
        dst = self.work / ("users-%s-%d" % (group, n))
        if not dst.exists():
            lines = [ln for ln in src.read_text().splitlines() if ln.strip()]
            dst.write_text("\n".join(lines[:n]) + "\n")
        return str(dst)

    # --- servers -------------------------------------------------------------
    def start(self, name):
        cls = {"pobox": PoboxServer, "pobox-nocache": PoboxServer,
               "dovecot": DovecotServer, "postfix": PostfixServer}[name]
        wd = self.work / name
        wd.mkdir()
        os.chmod(wd, 0o755)
        kw = {}
        if name.startswith("pobox"):
            kw["binary"] = str(Path(self.args.pobox).resolve())
        if name == "pobox-nocache":
            kw["options"] = {"auth.cache_ttl": "0"}
        try:
            srv = cls(wd, self.data, PORTS[name], **kw)
            self.data.install_maildirs(srv.maildir_root())
            srv.start()
        except ServerUnavailable as e:
            self.unavailable[name] = str(e)
            self.log("%s: not run: %s" % (name, e))
            return
        self.servers[name] = srv
        self.log("%s: %s" % (name, srv.describe()))

    def stop_all(self):
        for srv in self.servers.values():
            srv.stop()

    # --- one run of the load generator ------------------------------------
    def loadgen_argv(self, s, srv, extra=()):
        return ([self.loadgen, s.mode, "-q", "-p", str(srv.ports[s.port]),
                 "--users", self.users_file(s.group, s.users),
                 "-c", str(s.concurrency or len(self.data.users(s.group)))]
                + list(s.args) + list(extra))

    def run_once(self, s, name, rep):
        srv = self.servers[name]
        argv = self.loadgen_argv(s, srv, ["-d", str(self.seconds)])
        before = self.data.count_messages(srv.maildir_root(), s.group) \
            if s.mode == "smtp-submit" else 0
        base = measure.rss_kb(srv.pids())
        with measure.PeakRss(srv.pids) as peak:
            res = measure.loadgen_json(argv, self.seconds + 300)
        rec = dict(res, scenario=s.name, server=name, rep=rep)
        rec["rss_growth_kb"] = max(0, peak.peak - base)
        rec["messages_per_s"] = res.get("messages", 0) / max(res["seconds"], 1e-9)
        if s.mode == "smtp-submit":
            srv.drain(120)
            delivered = self.data.count_messages(srv.maildir_root(), s.group) - before
            rec["delivered"] = delivered
            rec["lost"] = res.get("smtp_250", 0) - delivered
        self.save(rec)
        self.log("  %-20s %-8s rep %d: %s %.1f, errors %d" % (
            s.name, name, rep, s.metric, rec.get(s.metric, 0), res["errors"]))
        return rec

    def warm(self, s, name):
        """First sessions build each server's caches and indexes (pobox's
        size/UIDL cache, Dovecot's index); they are not measured."""
        srv = self.servers[name]
        n = len(self.data.users(s.group)) if not s.users else s.users
        if s.mode == "smtp-submit":
            return
        argv = self.loadgen_argv(s, srv, ["-n", str(n)])
        measure.loadgen_json(argv, 600)

    def run_scenario(self, s):
        names = [n for n in (s.pobox, s.peer) if n in self.servers]
        for n in names:
            self.warm(s, n)
        for rep in range(self.reps):
            for n in names:             # A B A B ...
                self.run_once(s, n, rep)

    # --- idle sessions --------------------------------------------------------
    def run_idle(self, n_sessions, name):
        import subprocess
        srv = self.servers[name]
        users = self.data.users_file("idle")
        if name in self.idle_done:
            time.sleep(6.0)     # the previous sessions are gone and their memory trimmed
        self.idle_done.add(name)
        base = measure.pss_kb(srv.pids())
        argv = [self.loadgen, "pop3-idle", "-q", "--tls", "-p", str(srv.ports["pop3s"]),
                "--users", str(users), "-c", str(n_sessions), "--timeout", "600"]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            ready = json.loads(p.stdout.readline() or b"{}")
            time.sleep(6.0)             # settled: pobox trims freed memory 5 s after a burst
            pss = measure.pss_kb(srv.pids())
            rss = measure.rss_kb(srv.pids())
            p.stdin.close()
            done = json.loads(p.stdout.readline() or b"{}")
            p.wait(300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        held = ready.get("sessions", 0) - ready.get("errors", 0)
        rec = {"scenario": "pop3-idle-%d" % n_sessions, "server": name, "rep": 0,
               "sessions": n_sessions, "held": held,
               "errors": ready.get("errors", 0) + (held - done.get("answered", 0)),
               "error_samples": ready.get("error_samples", []) + done.get("error_samples", []),
               "answered": done.get("answered", 0),
               "pss_kb": pss - base, "rss_kb_total": rss,
               "kb_per_session": (pss - base) / max(held, 1)}
        self.save(rec)
        self.log("  pop3-idle-%-9d %-8s: %.1f kB/session, %d held, %d answered NOOP" % (
            n_sessions, name, rec["kb_per_session"], held, rec["answered"]))

    # --- growth ------------------------------------------------------------------
    def run_growth(self, group, name):
        srv = self.servers[name]
        s = sc.Scenario(group, "pop3-poll", group, "pop3", "dovecot",
                        "sessions_per_s", "polls/s", concurrency=1)
        self.warm(s, name)
        argv = self.loadgen_argv(s, srv, ["-d", str(min(self.seconds, 3.0))])
        res = measure.loadgen_json(argv, 600)
        rec = dict(res, scenario="growth-" + group, server=name, rep=0,
                   maildrop=sc.GROWTH_SIZES[group])
        self.save(rec)
        self.log("  growth %-10s %-8s: %.2f ms per poll" % (
            group, name, res["latency_ms"]["p50"]))

    # --- the whole run -------------------------------------------------------
    def run(self):
        self.log("dataset in %s ..." % self.data.root)
        self.data.build()
        self.log("machine limits ...")
        limits = measure.machine_limits(self.loadgen, self.work, 1 if self.quick else 3,
                                        self.data.hash, self.data.password)
        self.save(dict(limits, scenario="machine-limits", server="machine"))
        for name in ("pobox", "pobox-nocache", "dovecot", "postfix"):
            self.start(name)
        if "pobox" not in self.servers:
            raise SystemExit("pobox did not start: %s" % self.unavailable.get("pobox"))
        only = set(self.args.only.split(",")) if self.args.only else None
        pick = [s for s in sc.POP3 + sc.SMTP
                if (not self.quick or s.quick) and (not only or s.name in only)]
        for s in pick:
            self.run_scenario(s)
        sizes = sc.IDLE_SIZES_QUICK if self.quick else sc.IDLE_SIZES
        if not only or "pop3-idle" in only:
            for n in sizes:
                for name in ("pobox", "dovecot"):
                    if name in self.servers and n <= sc.IDLE_MAX[name]:
                        self.run_idle(n, name)
        if not self.quick and (not only or "growth" in only):
            for g in sc.GROWTH_GROUPS:
                for name in ("pobox", "dovecot"):
                    if name in self.servers:
                        self.run_growth(g, name)
        return limits, pick

    def close(self):
        self.stop_all()
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--pobox", default="build/pobox")
    ap.add_argument("--loadgen", default="build/bench/pobox-loadgen")
    ap.add_argument("--data", default="/var/tmp/pobox-bench-data",
                    help="where the generated users and Maildirs are kept between runs")
    args = ap.parse_args()
    b = Bench(args)
    try:
        limits, pick = b.run()
    finally:
        b.close()
    text = report.table(b.records, limits, pick, b.servers, b.unavailable, b.quick)
    print(text)
    b.save({"scenario": "summary", "server": "-", "table": text})
    print("results: %s" % b.out.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
