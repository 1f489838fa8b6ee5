"""pobox.py — pobox under test: `pobox -c WORKDIR/pobox.conf serve` in the
foreground, as the invoking user (server.user empty), POP3, POP3S and
submission on 127.0.0.1, the dataset's certificate, and a users file
written directly (Dovecot passwd-file compatible "address:{SHA512-CRYPT}..."
lines: `pobox user add` would hash with argon2id, slowly, and another
scheme than the peers')."""

import os
import subprocess
from pathlib import Path

from .base import (Server, ServerUnavailable, child_setup, descendants, tail,
                   wait_port)

CONF = """\
# pobox benchmark instance (bench/servers/pobox.py)
[server]
hostname = bench.test
data_dir = {data}
domains = bench.test
user =

[listen]
pop3 = 127.0.0.1:{pop3}
pop3s = 127.0.0.1:{pop3s}
submission = 127.0.0.1:{submission}
submissions =
smtp =

[tls]
cert = {cert}
key = {key}

[auth]
plaintext_without_tls = yes

[limits]
max_message_size = {max_size}
max_connections = 30000
max_connections_per_ip = 30000
"""

MAX_MESSAGE_SIZE = 104857600        # the same for Postfix (message_size_limit)


class PoboxServer(Server):
    name = "pobox"

    def __init__(self, workdir, dataset, ports, binary="build/pobox", options=None):
        """options: {"section.key": value} passed as -o overrides."""
        super().__init__(workdir, dataset, ports)
        self.binary = str(Path(binary).resolve())
        self.options = dict(options or {})
        self.effective = {}             # "section.key" -> value, from `pobox check`
        self.conf = self.workdir / "pobox.conf"
        self.data = self.workdir / "data"
        self.log = self.workdir / "pobox.log"
        self.proc = None
        self._logf = None
        self._version = None

    def maildir_root(self):
        return self.data / "mail"

    def _listen(self, key):
        return self.ports.get(key) or 0

    def write_config(self):
        self.data.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data, 0o700)
        self.conf.write_text(CONF.format(
            data=self.data, cert=self.dataset.cert, key=self.dataset.key,
            pop3=self._listen("pop3"), pop3s=self._listen("pop3s"),
            submission=self._listen("submission"), max_size=MAX_MESSAGE_SIZE))
        # drop listeners whose port is 0/absent
        text = self.conf.read_text()
        for key in ("pop3", "pop3s", "submission"):
            if not self._listen(key):
                text = text.replace("%s = 127.0.0.1:0\n" % key, "%s =\n" % key)
        self.conf.write_text(text)
        h = self.dataset.hash
        users = self.data / "users"
        tmp = self.data / "users.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            for a in self.dataset.all_users():
                f.write("%s:%s\n" % (a, h))
        os.replace(tmp, users)

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise ServerUnavailable("no pobox binary at %s (make)" % self.binary)
        if self.proc is not None:
            return
        self.write_config()
        opts = []
        for k, v in self.options.items():
            opts += ["-o", "%s=%s" % (k, v)]
        r = subprocess.run([self.binary, "-c", str(self.conf)] + opts + ["check"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise ServerUnavailable("pobox check: %s" % (r.stderr or r.stdout).strip())
        self.effective = parse_check(r.stdout)
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)] + opts + ["serve"],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, cwd=str(self.workdir),
                                     preexec_fn=child_setup)
        try:
            for key, greet in (("pop3", b"+OK"), ("submission", b"220"), ("pop3s", None)):
                if self._listen(key):
                    wait_port(self.ports[key], greeting=greet, proc=self.proc,
                              what="pobox (%s)" % key)
        except ServerUnavailable as e:
            self.stop()
            raise ServerUnavailable("%s\n%s" % (e, tail(self.log, 2000)))

    def stop(self):
        if self.proc is None:
            return
        self._stop_proc(self.proc)
        self.proc = None
        if self._logf:
            self._logf.close()
            self._logf = None

    def pids(self):
        if self.proc is None or self.proc.poll() is not None:
            return []
        return descendants([self.proc.pid])

    def warnings(self):
        """level=warn and level=error lines of pobox.log."""
        text = tail(self.log, 200000)
        return [ln for ln in text.splitlines()
                if " level=warn " in ln or " level=error " in ln]

    def version(self):
        if self._version is None:
            try:
                r = subprocess.run([self.binary, "--version"], capture_output=True,
                                   text=True, timeout=10)
                self._version = r.stdout.strip() or "pobox ?"
            except OSError:
                self._version = "pobox ?"
        return self._version

    def describe(self):
        e = self.effective
        threads = e.get("server.io_threads", "?")
        if threads == "0":
            threads = "one per core"
        ttl = e.get("auth.cache_ttl")
        if ttl is None:
            cache = "no credential cache in this build"
        elif ttl in ("0", "0s", "0ms"):
            cache = "auth.cache_ttl = 0 (credential cache off)"
        else:
            cache = "auth.cache_ttl = %s%s (verified passwords remembered)" % (
                ttl, " s" if ttl.isdigit() else "")
        return ("%s (%s): one process, I/O threads %s, %s workers; SMTP 250 after "
                "fsync of the Maildir file and of new/; users file SHA512-CRYPT, %s"
                % (self.version(), self.binary, threads, e.get("server.workers", "?"),
                   cache))


def parse_check(text):
    """`pobox check` output -> {"section.key": value}."""
    out, section = {}, ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            k, v = line.split("=", 1)
            out["%s.%s" % (section, k.strip())] = v.strip()
    return out
