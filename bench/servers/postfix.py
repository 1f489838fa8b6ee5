"""postfix.py — Postfix under test (SMTP submission).

A private instance as in tests/interop/test_relay_postfix.py: `postfix -c
WORKDIR/etc start` as root (through `script -q`, so that fatal errors that
Postfix only writes to a terminal are seen), queue_directory and
data_directory in the working directory, no chroot, mail_owner = postfix,
compatibility_level = 3.6, logging to WORKDIR/maillog through postlogd.

master.cf has one listener, the submission service on 127.0.0.1:PORT
(smtpd with TLS required, SASL AUTH required, RFC 6409 style
restrictions, and a sender must be the authenticated address as pobox
enforces). SASL comes from a private Dovecot instance that runs only its
auth service (protocols = none) with the same passwd-file users, on a unix
socket in the working directory. Mail for bench.test goes to virtual(8)
Maildirs under maildir_root(), owned by the `benchmail` account.

Durability, from Postfix's source: cleanup(8) fsyncs the queue file
(mail_stream_finish_file) before it reports success to smtpd, which only
then sends 250; virtual(8) fsyncs the Maildir file in tmp/ (mail_copy with
MAIL_COPY_TOFILE) before it links it into new/ and reports delivery (it does
not fsync the new/ directory). Delivery is asynchronous: drain() waits for
an empty queue."""

import os
import pwd
import shutil
import subprocess
import time

from .base import (Server, ServerUnavailable, alive, child_setup, chown_dirs,
                   descendants, mail_account, tail, wait_port)
from .dovecot import (AUTH_ONLY, COMMON, DovecotInstance, dovecot_version,
                      write_passwd)
from .pobox import MAX_MESSAGE_SIZE

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"

MASTER_CF = """\
127.0.0.1:{port} inet n - n - {maxproc} smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
# private benchmark instance (bench/servers/postfix.py)
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
local_recipient_maps =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP Postfix
message_size_limit = {max_size}
mailbox_size_limit = 0
virtual_mailbox_limit = 0
virtual_mailbox_domains = bench.test
virtual_mailbox_base = {mailroot}
virtual_mailbox_maps = texthash:{dir}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
smtpd_sender_login_maps = texthash:{dir}/etc/senders
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl}
smtpd_sasl_auth_enable = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def postfix_version():
    try:
        r = subprocess.run([POSTCONF, "-d", "-h", "mail_version"], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or "?"
    except OSError:
        return "?"


class PostfixServer(Server):
    name = "postfix"

    def __init__(self, workdir, dataset, ports, smtpd_maxproc=None):
        """smtpd_maxproc: process limit of the submission service (None:
        Postfix's default_process_limit, 100)."""
        super().__init__(workdir, dataset, ports)
        self.etc = self.workdir / "etc"
        self.spool = self.workdir / "spool"
        self.maillog = self.workdir / "maillog"
        self.smtpd_maxproc = smtpd_maxproc
        self.auth = None
        self.started = False
        self._version = None

    def maildir_root(self):
        return self.workdir / "mail"

    def sasl_socket(self):
        return self.workdir / "auth" / "auth-postfix"

    def _run(self, *args, timeout=60):
        # Postfix reports fatal errors to the terminal or syslog only: a pty
        # (script -q) makes them visible
        cmd = "%s -c %s %s" % (POSTFIX, self.etc, " ".join(args))
        if shutil.which("script"):
            argv = ["script", "-q", "-e", "-c", cmd, "/dev/null"]
        else:
            argv = [POSTFIX, "-c", str(self.etc)] + list(args)
        r = subprocess.run(argv, capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, preexec_fn=child_setup)
        return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()

    def _check_here(self):
        if not os.path.exists(POSTFIX):
            raise ServerUnavailable("Postfix is not installed (Debian package postfix)")
        if os.geteuid() != 0:
            raise ServerUnavailable("a private Postfix instance needs root")
        try:
            pw = pwd.getpwnam("postfix")
        except KeyError:
            raise ServerUnavailable("no 'postfix' account (Debian's postfix package creates it)")
        return pw.pw_uid, pw.pw_gid

    def write_config(self, uid, gid):
        puid, pgid = self._check_here()
        for d in ("etc", "spool", "data", "auth"):
            (self.workdir / d).mkdir(exist_ok=True)
        os.chown(self.workdir / "data", puid, pgid)
        os.chmod(self.workdir / "data", 0o700)
        users = self.dataset.all_users()
        with open(self.etc / "vmailbox", "w") as f:
            for a in users:
                local, domain = a.split("@", 1)
                f.write("%s %s/%s/\n" % (a, domain, local))
        with open(self.etc / "senders", "w") as f:
            for a in users:
                f.write("%s %s\n" % (a, a))
        (self.etc / "main.cf").write_text(MAIN_CF.format(
            dir=self.workdir, mailroot=self.maildir_root(), uid=uid, gid=gid,
            cert=self.dataset.cert, key=self.dataset.key, sasl=self.sasl_socket(),
            max_size=MAX_MESSAGE_SIZE))
        (self.etc / "master.cf").write_text(MASTER_CF.format(
            port=self.ports["submission"], maxproc=self.smtpd_maxproc or "-"))

    def start(self):
        if self.started:
            return
        self._check_here()
        if not self.ports.get("submission"):
            raise ServerUnavailable("no submission port given")
        uid, gid = mail_account()
        self.maildir_root().mkdir(parents=True, exist_ok=True)
        chown_dirs(self.maildir_root(), uid, gid)
        self.write_config(uid, gid)
        # SASL: Dovecot's auth service alone
        authdir = self.workdir / "auth"
        write_passwd(authdir / "passwd", self.dataset, uid, gid, self.maildir_root())
        conf = (COMMON.format(instance="dovecot-bench-auth", workdir=authdir, uid=uid,
                              passwd=authdir / "passwd")
                + AUTH_ONLY.format(socket=self.sasl_socket(), clients=1000))
        self.auth = DovecotInstance(authdir, conf, "Dovecot auth for Postfix")
        self.auth.start()
        deadline = time.monotonic() + 30
        while not self.sasl_socket().exists():
            if not self.auth.running() or time.monotonic() > deadline:
                err = self.auth.failed("no SASL socket %s" % self.sasl_socket())
                self.stop()
                raise err
            time.sleep(0.05)
        rc, out = self._run("check")
        if rc != 0:
            self.stop()
            raise ServerUnavailable("postfix check failed (rc %d): %s" % (rc, out))
        rc, out = self._run("start")
        if rc != 0:
            self.stop()
            raise ServerUnavailable("postfix start failed (rc %d): %s\n%s"
                                    % (rc, out, tail(self.maillog, 2000)))
        self.started = True
        try:
            wait_port(self.ports["submission"], greeting=b"220", what="Postfix")
        except ServerUnavailable as e:
            self.stop()
            raise ServerUnavailable("%s\n%s" % (e, tail(self.maillog, 2000)))

    def master_pid(self):
        try:
            pid = int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def stop(self):
        if self.started:
            pid = self.master_pid()
            tree = descendants([pid]) if pid else []
            self._run("stop")
            self.started = False
            if pid:
                self._stop_tree(tree, 15, 20.0)
        if self.auth is not None:
            self.auth.stop(self)

    def pids(self):
        out = []
        pid = self.master_pid() if self.started else None
        if pid:
            out += descendants([pid])
        if self.auth is not None:
            out += self.auth.pids()
        return sorted(out)

    def queued(self):
        """Files in the queue directories that hold messages not yet
        delivered."""
        n = 0
        for q in QUEUES:
            for _, _, files in os.walk(self.spool / q):
                n += len(files)
        return n

    def drain(self, timeout=120.0):
        """Waits until every accepted message has left the queue (delivered
        to its Maildir). True when the queue emptied within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.queued() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def warnings(self):
        text = tail(self.maillog, 200000)
        out = [ln for ln in text.splitlines()
               if any(w in ln for w in (" warning: ", " fatal: ", " error: ", " panic: "))]
        return out + (self.auth.warnings() if self.auth else [])

    def describe(self):
        if self._version is None:
            self._version = postfix_version()
        return ("Postfix %s: a smtpd process per connection (maxproc %s); 250 after "
                "cleanup(8) fsyncs the queue file; virtual(8) delivers to Maildir "
                "asynchronously, fsyncing the file (not new/); SASL by Dovecot %s auth "
                "(passwd-file SHA512-CRYPT, auth_cache off)"
                % (self._version, self.smtpd_maxproc or 100, dovecot_version()))
