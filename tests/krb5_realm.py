"""krb5_realm.py — a throwaway MIT Kerberos realm on loopback for the GSSAPI
tests.

Realm(workdir, realm="EXAMPLE.ORG", hosts=[...]) writes a krb5.conf and a
kdc.conf into `workdir`, creates the KDC database non-interactively
(kdb5_util create -s), adds principals with kadmin.local (no kadmind), runs
`krb5kdc -n` in the foreground on a free 127.0.0.1 port (UDP and TCP) and
stops it again. Clients get tickets with Realm.kinit() into a ccache of their
own, so several principals can be used side by side.

Everything lives in `workdir`: database, stash, ACL, logs, ccaches, keytabs
and the replay cache. Nothing is read from or written to /etc or /var.

The fixture helper `realm_or_skip()` turns a KDC that cannot run here
(binaries missing, no port) into pytest.skip with the KDC's own words — the
only skip these tests allow themselves.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SBIN_DIRS = ["/usr/sbin", "/usr/local/sbin", "/sbin"]
START_TIMEOUT = 10.0    # KDC readiness, seconds
CMD_TIMEOUT = 30        # any one kdb5_util / kadmin.local / kinit run, seconds
MASTER_PASSWORD = "masterpw"


class RealmError(Exception):
    """The realm could not be set up (missing binaries, KDC would not start)."""


def _which(name):
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN_DIRS:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _kdc_preexec():
    """In the KDC child: its own session, and SIGTERM when the test process
    dies without stopping it (Linux PR_SET_PDEATHSIG)."""
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _free_udp_tcp_port(host="127.0.0.1"):
    """A port that is free for both TCP and UDP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
                return port
    raise RealmError("no port free for both TCP and UDP on %s" % host)


class Realm:
    """One MIT krb5 realm with its own KDC process."""

    def __init__(self, workdir, realm="EXAMPLE.ORG", hosts=("mail.example.org",)):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.realm = realm
        self.hosts = list(hosts)
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self.db = self.dir / "principal"
        self.stash = self.dir / "stash"
        self.acl = self.dir / "kadm5.acl"
        self.kdc_log = self.dir / "kdc.log"
        self.kdc_stderr = self.dir / "krb5kdc.stderr"
        self.rcache_dir = self.dir / "rcache"
        self.rcache_dir.mkdir(exist_ok=True)
        self.default_ccache = self.dir / "ccache"
        self.port = None
        self.proc = None
        self.passwords = {}         # principal -> password
        self._ccaches = 0
        self.bins = {}
        for b in ("kdb5_util", "kadmin.local", "krb5kdc", "kinit", "klist", "kdestroy"):
            p = _which(b)
            if p is None:
                raise RealmError("%s not found (install krb5-kdc, krb5-admin-server, "
                                 "krb5-user)" % b)
            self.bins[b] = p

    # -- configuration
    def _write_config(self):
        d = self.dir
        domain_realm = "".join("    %s = %s\n" % (h, self.realm) for h in self.hosts)
        self.krb5_conf.write_text(
            "# written by tests/krb5_realm.py\n"
            "[libdefaults]\n"
            "    default_realm = {realm}\n"
            "    dns_lookup_kdc = false\n"
            "    dns_lookup_realm = false\n"
            "    dns_canonicalize_hostname = false\n"
            "    qualify_shortname = \"\"\n"
            "    rdns = false\n"
            "    ignore_acceptor_hostname = false\n"
            "    udp_preference_limit = 1\n"
            "    forwardable = false\n"
            "    ticket_lifetime = 1h\n"
            "    default_ccache_name = FILE:{ccache}\n"
            "\n"
            "[realms]\n"
            "    {realm} = {{\n"
            "        kdc = 127.0.0.1:{port}\n"
            "    }}\n"
            "\n"
            "[domain_realm]\n"
            "{domain_realm}"
            .format(realm=self.realm, port=self.port, ccache=self.default_ccache,
                    domain_realm=domain_realm))
        self.kdc_conf.write_text(
            "# written by tests/krb5_realm.py\n"
            "[kdcdefaults]\n"
            "    kdc_listen = 127.0.0.1:{port}\n"
            "    kdc_tcp_listen = 127.0.0.1:{port}\n"
            "    kdc_ports = {port}\n"
            "    kdc_tcp_ports = {port}\n"
            "\n"
            "[realms]\n"
            "    {realm} = {{\n"
            "        database_name = {d}/principal\n"
            "        key_stash_file = {d}/stash\n"
            "        acl_file = {d}/kadm5.acl\n"
            "        kdc_listen = 127.0.0.1:{port}\n"
            "        kdc_tcp_listen = 127.0.0.1:{port}\n"
            "        kdc_ports = {port}\n"
            "        kdc_tcp_ports = {port}\n"
            "        max_life = 1h\n"
            "        max_renewable_life = 0\n"
            "        master_key_type = aes256-cts-hmac-sha1-96\n"
            "        supported_enctypes = aes256-cts-hmac-sha1-96:normal "
            "aes128-cts-hmac-sha1-96:normal\n"
            "    }}\n"
            "\n"
            "[logging]\n"
            "    kdc = FILE:{d}/kdc.log\n"
            "    admin_server = FILE:{d}/kadmin.log\n"
            "    default = FILE:{d}/krb5lib.log\n"
            .format(realm=self.realm, port=self.port, d=d))
        self.acl.write_text("*/admin@%s *\n" % self.realm)

    @property
    def env(self):
        """The environment variables a krb5 program of this realm needs
        (client or server side)."""
        return {"KRB5_CONFIG": str(self.krb5_conf),
                "KRB5_KDC_PROFILE": str(self.kdc_conf),
                "KRB5RCACHEDIR": str(self.rcache_dir),
                "KRB5CCNAME": "FILE:%s" % self.default_ccache}

    def _run(self, argv, input=None, env=None, check=True):
        e = dict(os.environ)
        e.update(self.env)
        e.update(env or {})
        e.pop("KRB5_KTNAME", None)
        e.pop("KRB5_CLIENT_KTNAME", None)
        try:
            r = subprocess.run(argv, input=input, capture_output=True, env=e,
                               timeout=CMD_TIMEOUT, cwd=str(self.dir),
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as ex:
            raise RealmError("%s timed out after %ds" % (" ".join(argv), CMD_TIMEOUT)) from ex
        if check and r.returncode != 0:
            raise RealmError("%s: rc %d\nstdout: %s\nstderr: %s" % (
                " ".join(argv), r.returncode, r.stdout.decode("utf-8", "replace"),
                r.stderr.decode("utf-8", "replace")))
        return r

    def kadmin(self, query):
        """One kadmin.local command (e.g. "addprinc -pw PW alice")."""
        return self._run([self.bins["kadmin.local"], "-r", self.realm, "-q", query])

    # -- principals and keytabs
    def principal(self, name):
        return name if "@" in name else "%s@%s" % (name, self.realm)

    def addprinc(self, name, password=None):
        """Adds a principal with a password (or random keys when password is
        None); returns the full principal name."""
        full = self.principal(name)
        if password is None:
            self.kadmin("addprinc -randkey %s" % full)
        else:
            self.kadmin("addprinc -pw %s %s" % (password, full))
            self.passwords[full] = password
        return full

    def ktadd(self, name, keytab):
        """Exports the keys of a principal into `keytab` (new random keys)."""
        keytab = Path(keytab)
        self.kadmin("ktadd -k %s %s" % (keytab, self.principal(name)))
        os.chmod(keytab, 0o600)
        return keytab

    def service_keytab(self, service, host, keytab=None):
        """Creates service/host with random keys and writes its keytab;
        returns the keytab path."""
        keytab = Path(keytab or self.dir / ("%s_%s.keytab" % (service, host)))
        self.addprinc("%s/%s" % (service, host))
        return self.ktadd("%s/%s" % (service, host), keytab)

    def new_ccache(self, tag="cc"):
        self._ccaches += 1
        safe = "".join(c if c.isalnum() else "_" for c in tag)
        return self.dir / ("ccache_%s_%d" % (safe, self._ccaches))

    def kinit(self, principal, password=None, ccache=None):
        """Gets a TGT for `principal` with its password on stdin into a new
        (or the given) ccache; returns the ccache path (a plain file)."""
        full = self.principal(principal)
        password = password if password is not None else self.passwords[full]
        ccache = Path(ccache) if ccache else self.new_ccache(full.split("@")[0])
        self._run([self.bins["kinit"], "-c", "FILE:%s" % ccache, full],
                  input=(password + "\n").encode())
        return ccache

    def klist(self, ccache):
        r = self._run([self.bins["klist"], "-c", "FILE:%s" % ccache], check=False)
        return (r.stdout + r.stderr).decode("utf-8", "replace")

    # -- KDC process
    def _create_db(self):
        if self.db.exists():
            return
        self._run([self.bins["kdb5_util"], "create", "-s", "-r", self.realm,
                   "-P", MASTER_PASSWORD])

    def _kdc_tail(self, n=3000):
        out = ""
        for f in (self.kdc_stderr, self.kdc_log):
            try:
                t = f.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if t.strip():
                out += "[%s]\n%s\n" % (f.name, t[-n:])
        return out or "(the KDC wrote nothing)"

    def _kdc_listening(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self):
        """Writes the config, creates the database and starts the KDC; waits
        until a kinit works. Raises RealmError when it cannot."""
        last = ""
        for attempt in range(3):
            self.port = _free_udp_tcp_port()
            self._write_config()
            self._create_db()
            err = open(self.kdc_stderr, "ab")
            e = dict(os.environ)
            e.update(self.env)
            self.proc = subprocess.Popen(
                [self.bins["krb5kdc"], "-n", "-r", self.realm],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=e,
                cwd=str(self.dir), preexec_fn=_kdc_preexec)
            err.close()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None or self._kdc_listening():
                    break
                time.sleep(0.05)
            if self.proc.poll() is None and self._kdc_listening():
                break
            last = "krb5kdc (rc %r) did not listen on 127.0.0.1:%d within %.0fs:\n%s" % (
                self.proc.poll(), self.port, START_TIMEOUT, self._kdc_tail())
            self._kill()
            if "in use" not in last.lower():
                raise RealmError(last)
        else:
            raise RealmError(last)
        # the KDC answers: a principal of our own gets a ticket
        probe = self.addprinc("krb5-realm-probe", "probe-" + os.urandom(6).hex())
        try:
            cc = self.kinit(probe, ccache=self.dir / "ccache_probe")
        except RealmError as ex:
            tail = self._kdc_tail()
            self.stop()
            raise RealmError("the KDC runs but kinit fails: %s\n%s" % (ex, tail))
        cc.unlink()
        return self

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- environment of this (test) process
    @contextlib.contextmanager
    def environ(self, ccache=None):
        """Sets KRB5_CONFIG, KRB5_KDC_PROFILE, KRB5RCACHEDIR and KRB5CCNAME in
        os.environ (so that the pobox servers started meanwhile inherit them,
        and the gssapi module of this process uses this realm) and restores
        the previous values afterwards."""
        new = dict(self.env)
        if ccache is not None:
            new["KRB5CCNAME"] = "FILE:%s" % ccache
        keys = list(new) + ["KRB5_KTNAME", "KRB5_CLIENT_KTNAME"]
        old = {k: os.environ.get(k) for k in keys}
        try:
            os.environ.pop("KRB5_KTNAME", None)
            os.environ.pop("KRB5_CLIENT_KTNAME", None)
            os.environ.update(new)
            yield self
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def realm_or_skip(workdir, realm="EXAMPLE.ORG", hosts=("mail.example.org",)):
    """A started Realm, or pytest.skip with the reason (KDC stderr included)
    when a KDC cannot run here. The caller must stop() it."""
    try:
        r = Realm(workdir, realm=realm, hosts=hosts)
    except RealmError as ex:
        pytest.skip("no Kerberos KDC here: %s" % ex)
    try:
        return r.start()
    except RealmError as ex:
        r.stop()
        pytest.skip("the Kerberos KDC cannot start here: %s" % ex)
