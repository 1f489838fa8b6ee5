"""dovecot.py — Dovecot under test (POP3, POP3S) and the private Dovecot
auth service that Postfix's submission SASL uses (postfix.py).

A private instance: `dovecot -F -c WORKDIR/dovecot.conf` in the foreground,
its own base_dir (run/), state_dir, log file, listeners on 127.0.0.1 only.
Users come from a passwd-file in the working directory with the dataset's
SHA512-CRYPT hash (passdb and userdb), mail processes run as the
`benchmail` account (Dovecot refuses its own internal accounts), which owns
the Maildir directories. Dovecot's defaults otherwise: pop3-login in
high-security mode (one login process per connection, service_count = 1,
which stays as the TLS proxy of a POP3S session), one pop3 process per
session, auth_cache off, mail_fsync = optimized. Only the process and
client limits are raised so that 10,000 idle POP3S sessions fit
(process_limit of pop3-login and pop3, default_client_limit for auth,
anvil, config, which keep one connection per process, within the fd limit).
Where the fd limit cannot hold the stats process's two connections per
session (20,000 in a container without CAP_SYS_RESOURCE), the stats writer
is turned off (stats_writer_socket_path empty; describe() says so):
otherwise every process past the limit waits 5 s for the stats handshake
to time out."""

import grp
import os
import re
import subprocess
from pathlib import Path

from .base import (Server, ServerUnavailable, child_setup, chown_dirs, descendants,
                   mail_account, nofile_limit, tail, wait_port)

DOVECOT = "/usr/sbin/dovecot"

# Sessions the idle scenario holds at most, and headroom: every POP3S
# session is a pop3-login process (TLS proxy) plus a pop3 process.
MAX_SESSIONS = 12000

COMMON = """\
# private benchmark instance (bench/servers/dovecot.py)
instance_name = {instance}
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {workdir}/dovecot.log
listen = 127.0.0.1
first_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
"""

POP3 = """\
protocols = pop3
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mailroot}/%d/%n
pop3_uidl_format = %f

default_client_limit = {clients}
{stats}service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
  process_limit = {procs}
}}
service pop3 {{
  process_limit = {procs}
}}
"""

AUTH_ONLY = """\
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_client_limit = {clients}
service auth {{
  unix_listener {socket} {{
    mode = 0666
  }}
}}
"""


def stats_fits():
    """Every login and pop3 process keeps a connection to the stats
    process: 2 per session. False when the fd limit (which a container
    without CAP_SYS_RESOURCE cannot raise) is too low for that at
    MAX_SESSIONS: past it, each new process waits 5 s for the stats
    handshake to time out."""
    return nofile_limit() >= 2 * MAX_SESSIONS + 1000


def client_limit():
    """default_client_limit: what auth, anvil, stats... need when every
    session is a login process and a pop3 process connected to them, within
    the fd limit the processes get (Dovecot warns above it)."""
    return max(1000, min(3 * MAX_SESSIONS, nofile_limit() - 1000))


def dovecot_version():
    try:
        r = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or "?"
    except OSError:
        return "?"


def write_passwd(path, dataset, uid, gid, mailroot):
    """Dovecot passwd-file: user:{SHA512-CRYPT}$6$...:uid:gid::home::"""
    h = dataset.hash
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as f:
        for a in dataset.all_users():
            local, domain = a.split("@", 1)
            f.write("%s:%s:%d:%d::%s/%s/%s::\n" % (a, h, uid, gid, mailroot, domain, local))
    # the auth process runs as the dovecot account
    try:
        os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(tmp, 0o640)
    except (KeyError, OSError):
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class DovecotInstance:
    """One private Dovecot master process and its children."""

    def __init__(self, workdir, conf_text, what="dovecot"):
        self.workdir = Path(workdir)
        self.conf = self.workdir / "dovecot.conf"
        self.log = self.workdir / "dovecot.log"
        self.errlog = self.workdir / "dovecot.stderr"
        self.conf_text = conf_text
        self.what = what
        self.proc = None
        self._errf = None

    def check(self):
        if not os.path.exists(DOVECOT):
            raise ServerUnavailable("Dovecot is not installed (dovecot-core, dovecot-pop3d)")
        if os.geteuid() != 0:
            raise ServerUnavailable("a private Dovecot instance needs root")

    def start(self):
        self.check()
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        (self.workdir / "state").mkdir(exist_ok=True)
        self.conf.write_text(self.conf_text)
        r = subprocess.run([DOVECOT, "-c", str(self.conf), "-n"], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise ServerUnavailable("%s: configuration refused: %s"
                                    % (self.what, (r.stderr or r.stdout).strip()))
        self._errf = open(self.errlog, "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self._errf,
                                     stderr=subprocess.STDOUT, cwd=str(self.workdir),
                                     preexec_fn=child_setup)

    def failed(self, why):
        return ServerUnavailable("%s: %s\n%s%s" % (self.what, why, tail(self.errlog, 1500),
                                                   tail(self.log, 2000)))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return descendants([self.proc.pid]) if self.running() else []

    def stop(self, server):
        if self.proc is None:
            return
        server._stop_proc(self.proc)
        self.proc = None
        if self._errf:
            self._errf.close()
            self._errf = None

    def warnings(self):
        """Warning/Error/Fatal lines of the log and stderr so far."""
        text = tail(self.errlog, 20000) + tail(self.log, 200000)
        return [ln for ln in text.splitlines()
                if re.search(r"\b(Warning|Error|Fatal|Panic):", ln)
                and "Killed with signal 15" not in ln]


class DovecotServer(Server):
    name = "dovecot"

    def __init__(self, workdir, dataset, ports, extra_conf=""):
        """extra_conf: dovecot.conf text appended to the generated one."""
        super().__init__(workdir, dataset, ports)
        self.extra_conf = extra_conf
        self.instance = None
        self._version = None

    def maildir_root(self):
        return self.workdir / "mail"

    def conf_text(self, uid):
        passwd = self.workdir / "passwd"
        return (COMMON.format(instance="dovecot-bench", workdir=self.workdir, uid=uid,
                              passwd=passwd)
                + POP3.format(cert=self.dataset.cert, key=self.dataset.key,
                              mailroot=self.maildir_root(), pop3=self.ports.get("pop3") or 0,
                              pop3s=self.ports.get("pop3s") or 0, procs=MAX_SESSIONS,
                              clients=client_limit(),
                              stats="" if stats_fits() else "stats_writer_socket_path =\n")
                + self.extra_conf)

    def start(self):
        if self.instance is not None and self.instance.running():
            return
        inst = DovecotInstance(self.workdir, "", "Dovecot")
        inst.check()
        uid, gid = mail_account()
        self.maildir_root().mkdir(parents=True, exist_ok=True)
        chown_dirs(self.maildir_root(), uid, gid)
        write_passwd(self.workdir / "passwd", self.dataset, uid, gid, self.maildir_root())
        inst.conf_text = self.conf_text(uid)
        self.instance = inst
        inst.start()
        try:
            for key, greet in (("pop3", b"+OK"), ("pop3s", None)):
                if self.ports.get(key):
                    wait_port(self.ports[key], greeting=greet, proc=inst.proc, what="Dovecot")
        except ServerUnavailable as e:
            err = inst.failed(str(e))
            self.stop()
            raise err

    def stop(self):
        if self.instance is not None:
            self.instance.stop(self)

    def pids(self):
        return self.instance.pids() if self.instance else []

    def warnings(self):
        return self.instance.warnings() if self.instance else []

    def describe(self):
        if self._version is None:
            self._version = dovecot_version()
        return ("Dovecot %s: POP3 read-only (no DELE), pop3-login high-security mode "
                "(a process per connection), a pop3 process per session, passwd-file "
                "SHA512-CRYPT, auth_cache off (default), mail_fsync = optimized (default), "
                "pop3_uidl_format = %%f%s"
                % (self._version, "" if stats_fits() else
                   "; stats_writer_socket_path empty (fd limit %d < 2 stats connections "
                   "per session)" % nofile_limit()))
