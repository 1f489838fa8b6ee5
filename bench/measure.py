"""measure.py — what the benchmark reads off the machine while a server
runs: the memory of a server's processes (RSS and PSS from /proc), a
sampler that records the peak RSS during a run, and the machine's own
limits (loopback TCP, fsync'd small-file writes, SHA512-CRYPT verifies)
that each result is compared with."""

import json
import os
import subprocess
import threading
import time


def _proc_kb(pid, path, field):
    try:
        with open("/proc/%d/%s" % (pid, path)) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def rss_kb(pids):
    """Sum of resident set sizes, kB."""
    return sum(_proc_kb(p, "status", "VmRSS:") for p in pids)


def pss_kb(pids):
    """Sum of proportional set sizes, kB: shared pages are split between
    the processes that map them, so a forking server is not overcounted."""
    return sum(_proc_kb(p, "smaps_rollup", "Pss:") for p in pids)


class PeakRss:
    """Samples the RSS of `pids_fn()` every `interval` seconds in a thread
    until stopped; `peak` is the highest sum seen."""

    def __init__(self, pids_fn, interval=0.01):
        self.pids_fn = pids_fn
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        pids = self.pids_fn()
        n = 0
        while not self._stop.is_set():
            if n % 20 == 0:             # new processes (process-per-connection)
                pids = self.pids_fn()
            self.peak = max(self.peak, rss_kb(pids))
            n += 1
            self._stop.wait(self.interval)


def loadgen_json(argv, timeout):
    """Runs the load generator; returns its last JSON line as a dict."""
    r = subprocess.run(argv, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    lines = [ln for ln in r.stdout.decode(errors="replace").splitlines()
             if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError("%s failed (exit %d): %s" % (
            " ".join(argv[:2]), r.returncode, r.stderr.decode(errors="replace")[-500:]))
    return json.loads(lines[-1])


def crypt_verifies_per_s(hash_, password, seconds):
    """SHA512-CRYPT verifies per second on all cores (one process per core)
    using the C library's crypt(3), as both servers do. hash_ may carry
    the passwd-file scheme prefix ({SHA512-CRYPT}), which crypt(3) does not
    take."""
    if hash_.startswith("{"):
        hash_ = hash_[hash_.index("}") + 1:]
    code = ("import crypt,sys,time\n"
            "h,p,s=sys.argv[1],sys.argv[2],float(sys.argv[3]);n=0;t=time.time()\n"
            "while time.time()-t<s:\n crypt.crypt(p,h);n+=1\n"
            "print(n/(time.time()-t))\n")
    procs = [subprocess.Popen(["/usr/bin/python3", "-W", "ignore", "-c", code,
                               hash_, password, str(seconds)],
                              stdout=subprocess.PIPE)
             for _ in range(os.cpu_count() or 1)]
    return sum(float(p.communicate()[0]) for p in procs)


def machine_limits(loadgen, workdir, seconds, hash_, password):
    """The limits every result is compared with, measured in this run."""
    tcp = loadgen_json([loadgen, "tcp-throughput", "-q", "-d", str(seconds)], 60)
    fs_dir = workdir / "fsync-probe"
    fs_dir.mkdir(parents=True, exist_ok=True)
    fs = loadgen_json([loadgen, "fsync-writes", "-q", "-d", str(seconds),
                       "--dir", str(fs_dir)], 60)
    time.sleep(0.2)
    return {
        "tcp_mb_per_s": tcp["mb_per_s"],
        "fsync_writes_per_s": fs["writes_per_s"],
        "crypt_per_s": crypt_verifies_per_s(hash_, password, min(seconds, 2)),
        "cpus": os.cpu_count(),
    }
