"""base.py — what every benchmarked server adapter has in common.

A Server runs one mail server privately on loopback from its own working
directory (config, data, logs), with the benchmark's dataset (users and
Maildirs, see dataset.py). run.py creates it, installs the Maildirs under
maildir_root(), calls start(), runs the load generator against ports[...],
reads pids() for memory figures, drain()s after SMTP runs, and stop()s it.

Helpers here: the process tree from /proc, the file-descriptor limit raised
in children (the idle scenario holds 10,000 connections), waiting for ports,
and the `benchmail` account that owns the Maildirs for Dovecot's mail
processes and Postfix's virtual(8)."""

import os
import pwd
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

NOFILE_WANTED = 131072          # descriptors per process: >= 65536 with room
MAIL_ACCOUNT = "benchmail"      # owner of the Maildirs (Dovecot, Postfix)


class ServerUnavailable(Exception):
    """The server cannot run on this machine (not installed, not root...);
    the message says why."""


def _nofile_wanted():
    try:
        return min(NOFILE_WANTED, int(Path("/proc/sys/fs/nr_open").read_text()))
    except (OSError, ValueError):
        return NOFILE_WANTED


def raise_nofile():
    """Raises RLIMIT_NOFILE: soft = hard, and the hard limit to at least
    NOFILE_WANTED when we may (root with CAP_SYS_RESOURCE; capped by
    fs.nr_open). Used in preexec_fn."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if hard != resource.RLIM_INFINITY and hard < NOFILE_WANTED and os.geteuid() == 0:
        want = _nofile_wanted()
    for h in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
            return
        except (ValueError, OSError):
            continue


def nofile_limit():
    """The RLIMIT_NOFILE servers get from raise_nofile() (a container
    without CAP_SYS_RESOURCE keeps the hard limit it has)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return 1 << 20
    if hard < NOFILE_WANTED and os.geteuid() == 0:
        want = _nofile_wanted()
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, want))
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            return want
        except (ValueError, OSError):
            pass
    return hard


def child_setup():
    """preexec_fn of every server process: its own session (a signal to
    the benchmark's terminal does not reach it) and the raised fd limit."""
    os.setsid()
    raise_nofile()


def proc_table():
    """{pid: (ppid, state, comm)} of every process, from /proc/*/stat."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        lp, rp = data.find("("), data.rfind(")")
        rest = data[rp + 2:].split()
        if len(rest) < 2:
            continue
        out[int(name)] = (int(rest[1]), rest[0], data[lp + 1:rp])
    return out


def descendants(roots, table=None):
    """The given pids that exist (not zombies) plus all their descendants."""
    table = proc_table() if table is None else table
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = [], [p for p in roots if p and p in table]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(p for p in seen if table[p][1] != "Z")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def wait_gone(pids, timeout):
    """True when none of pids is alive within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def wait_port(port, host="127.0.0.1", timeout=30.0, greeting=None, proc=None, what=""):
    """Waits until host:port accepts a connection (and, when greeting is
    given, the first line starts with it). Raises ServerUnavailable on
    timeout or when proc (a Popen) exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable("%s exited with status %s before listening on %d"
                                    % (what or "the server", proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                if greeting is None:
                    return
                s.settimeout(5)
                line = s.recv(512)
                if line.startswith(greeting):
                    return
                last = "greeting %r" % line[:80]
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise ServerUnavailable("%s did not answer on %s:%d within %.0f s (%s)"
                            % (what or "the server", host, port, timeout, last))


def mail_account():
    """(uid, gid) of the `benchmail` system account, created when missing
    (root only). Dovecot refuses to run mail processes as its own internal
    accounts, and the Maildirs must belong to the uid that serves them."""
    try:
        pw = pwd.getpwnam(MAIL_ACCOUNT)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise ServerUnavailable("no '%s' account and not root to create it" % MAIL_ACCOUNT)
    r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        "--comment", "pobox benchmark mail owner", MAIL_ACCOUNT],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ServerUnavailable("useradd %s failed: %s" % (MAIL_ACCOUNT, r.stderr.strip()))
    pw = pwd.getpwnam(MAIL_ACCOUNT)
    return pw.pw_uid, pw.pw_gid


def chown_dirs(root, uid, gid):
    """chown of root and every directory below it (not the files: message
    files are hard links shared with the dataset's template, 0644 and
    readable by anyone; renames and new files need only the directories)."""
    root = Path(root)
    if not root.exists():
        return
    os.chown(root, uid, gid)
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            os.chown(os.path.join(dirpath, d), uid, gid)


def tail(path, n=3000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Server:
    """One server under test. Subclasses set name and implement start(),
    stop(), pids(), maildir_root(), describe(); drain() defaults to nothing
    to wait for (delivery finished before the 250 reply); warnings() lists
    the warning and error lines of the server's log."""

    name = "server"

    def __init__(self, workdir, dataset, ports):
        self.workdir = Path(workdir).resolve()
        self.dataset = dataset
        self.ports = dict(ports)
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)       # unprivileged daemons must reach it

    def start(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def pids(self):
        raise NotImplementedError

    def maildir_root(self):
        raise NotImplementedError

    def drain(self, timeout=120.0):
        """Waits until every message accepted with 250 is in its Maildir;
        True when it is (False: timeout)."""
        return True

    def describe(self):
        return self.name

    def warnings(self):
        return []

    # helpers for subclasses
    def _stop_tree(self, root_pids, sig=signal.SIGTERM, timeout=20.0):
        """Signals root_pids, waits for them and every descendant seen
        before (and meanwhile) to exit; SIGKILLs what is left."""
        tree = set(descendants(root_pids))
        kill_all([p for p in root_pids if p], sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tree |= set(descendants(list(tree)))
            left = [p for p in tree if alive(p)]
            if not left:
                return True
            time.sleep(0.05)
        left = [p for p in tree if alive(p)]
        kill_all(left, signal.SIGKILL)
        wait_gone(left, 5.0)
        return False

    def _stop_proc(self, proc):
        """Stops a process this server started (SIGTERM to its tree, then
        SIGKILL after 10 s) and reaps it."""
        if proc.poll() is None:
            self._stop_tree([proc.pid], signal.SIGTERM, 30.0)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __repr__(self):
        return "<%s %s %s>" % (type(self).__name__, self.workdir, self.ports)
