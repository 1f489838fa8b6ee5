"""test_relay_postfix.py — Debian's Postfix as the receiving MTA of pobox's
outbound relay (issue 5: "a real MTA accepts what we send").

A private Postfix instance runs from its own config directory (`postfix -c
DIR`) in a temporary folder: queue_directory and data_directory there, its
smtpd on 127.0.0.3:P only (master.cf; inet_interfaces = loopback-only,
since Postfix refuses an inet_interfaces address that no interface has, and
lo has only 127.0.0.1), no chroot, mail_owner = postfix (the account the
package creates), compatibility_level = 3.6, STARTTLS offered with a
throw-away certificate, and p.test as a virtual mailbox domain whose one
user carol@p.test gets a Maildir under the folder (virtual(8) needs no UNIX
account; any other p.test address is refused with 550 5.1.1 at RCPT).
Instance A (a.test) finds p.test through the test DNS server (MX mx.p.test
-> 127.0.0.3) and relay.port = P.

Skipped, with the reason, when Postfix is not installed or cannot start
here."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay_env import (A_DOMAIN, RelayEnv, Report, check_group, message, pop3_find,  # noqa: E402
                       queue_empty, queue_state, queued_id, received_lines, submit,
                       wait_mail, wait_until)

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
PFX_ADDR = "127.0.0.3"
ALICE = "alice@" + A_DOMAIN
CAROL = "carol@p.test"

MASTER_CF = """\
{addr}:{port} inet n - n - - smtpd
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
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.p.test
mydomain = p.test
myorigin = p.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP Postfix (pobox interop test)
virtual_mailbox_domains = p.test
virtual_mailbox_base = {dir}/vmail
virtual_mailbox_maps = inline:{{ carol@p.test=carol/ }}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
smtpd_tls_security_level = may
smtpd_tls_cert_file = {dir}/etc/cert.pem
smtpd_tls_key_file = {dir}/etc/key.pem
smtpd_tls_received_header = yes
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""


def postfix_ids():
    import pwd
    try:
        pw = pwd.getpwnam("postfix")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def run_postfix(confdir, *args, timeout=60):
    # Postfix reports fatal errors to the terminal or syslog only: a pty
    # (script -q) makes them visible for the skip reason
    cmd = "%s -c %s %s" % (POSTFIX, confdir, " ".join(args))
    if shutil.which("script"):
        argv = ["script", "-q", "-e", "-c", cmd, "/dev/null"]
    else:
        argv = [POSTFIX, "-c", str(confdir)] + list(args)
    r = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace").strip()


class Postfix:
    def __init__(self, port):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="pobox-postfix-"))
        os.chmod(self.dir, 0o755)       # the postfix user must reach its dirs
        self.etc = self.dir / "etc"
        self.started = False

    def maillog(self):
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self):
        """None when running, else the reason why it cannot run here."""
        if not os.path.exists(POSTFIX):
            return "Postfix is not installed (Debian package postfix)"
        if os.geteuid() != 0:
            return "a private Postfix instance needs root"
        ids = postfix_ids()
        if ids is None:
            return "no 'postfix' account (Debian's postfix package creates it)"
        uid, gid = ids
        for d in ("etc", "spool", "data", "vmail"):
            (self.dir / d).mkdir()
        for d in ("data", "vmail"):
            os.chown(self.dir / d, uid, gid)
            os.chmod(self.dir / d, 0o700)
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(self.etc / "key.pem"), "-out", str(self.etc / "cert.pem"),
             "-days", "2", "-subj", "/CN=mx.p.test"], capture_output=True, timeout=60)
        if r.returncode != 0:
            return "openssl could not make a certificate: %s" % r.stderr.decode(errors="replace")
        os.chmod(self.etc / "key.pem", 0o600)
        (self.etc / "main.cf").write_text(MAIN_CF.format(dir=self.dir, uid=uid, gid=gid))
        (self.etc / "master.cf").write_text(MASTER_CF.format(addr=PFX_ADDR, port=self.port))
        rc, out = run_postfix(self.etc, "check")
        if rc != 0:
            return "postfix check failed (rc %d): %s" % (rc, out)
        rc, out = run_postfix(self.etc, "start")
        if rc != 0:
            return "postfix start failed (rc %d): %s\n%s" % (rc, out, self.maillog()[-2000:])
        self.started = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((PFX_ADDR, self.port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return None
            except OSError:
                pass
            time.sleep(0.2)
        return "Postfix did not answer on %s:%d: %s" % (PFX_ADDR, self.port, self.maillog()[-2000:])

    def master_pid(self):
        try:
            return int((self.dir / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        if self.started:
            pid = self.master_pid()
            run_postfix(self.etc, "stop")
            deadline = time.monotonic() + 15
            while pid and time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if pid and _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def delivered(self):
        """Contents of carol's Maildir (new/ and cur/)."""
        out = []
        for sub in ("new", "cur"):
            d = self.dir / "vmail" / "carol" / sub
            if d.is_dir():
                out += [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()]
        return out


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = RelayEnv(tmp_path_factory.mktemp("relay_postfix"),
                 extra_dns=["p.test MX 10 mx.p.test", "mx.p.test A %s" % PFX_ADDR],
                 extra_addresses=[PFX_ADDR])
    yield e
    problems = e.close()
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def postfix(env):
    pf = Postfix(env.port)
    try:
        why = pf.start()
        if why:
            pytest.skip("Postfix cannot run here: " + why)
        yield pf
    finally:
        pf.stop()


@pytest.fixture(scope="module")
def a(env, postfix):
    srv = env.make_a(relay={"retry_schedule": "1s"})
    yield srv
    problems = env.stop_server(srv)
    env.servers.remove(srv)
    if problems:
        pytest.fail("A teardown: " + "; ".join(problems), pytrace=False)


def test_postfix_accepts_what_pobox_relays(env, postfix, a):
    body = (b"A message relayed to Postfix.\r\n.a line with a leading dot\r\n"
            b"..two\r\n.\r\n" + b"y" * 990 + b"\r\nend\r\n")
    msg, token = message(ALICE, CAROL, "to postfix", body=body)
    qid = queued_id(submit(a, a.alice[0], a.alice[1], [CAROL], msg))
    got = wait_until(lambda: [m for m in postfix.delivered() if token.encode() in m], 25, 0.25,
                     lambda: "the message in carol's Maildir at Postfix; A queue %s\n"
                     "--- Postfix log:\n%s\n--- A log tail:\n%s" % (
                         queue_state(a), postfix.maillog()[-3000:], a.log_text()[-2500:]))
    assert len(got) == 1, "%d copies at Postfix" % len(got)
    m = got[0]
    # Maildir files have LF line ends; the message arrived unchanged
    assert m.endswith(msg.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")), m[-600:]
    assert re.search(rb"(?m)^Return-Path: <alice@a\.test>$", m), m[:600]
    assert re.search(rb"(?m)^Delivered-To: carol@p\.test$", m), m[:600]
    rec = received_lines(m)
    assert re.search(rb"\bby mx\.p\.test \(Postfix\) with ESMTPS\b", rec[0]), \
        "Postfix's Received: shows STARTTLS (opportunistic TLS from pobox): %r" % rec
    assert re.search(rb"from mx\.a\.test\b", rec[0]), "EHLO name: %r" % rec[0]
    assert re.search(rb"\bby mx\.a\.test\b", rec[1]) and qid.encode() in rec[1], rec
    wait_until(lambda: queue_empty(a), 10, 0.25, lambda: queue_state(a))
    log = postfix.maillog()
    assert re.search(r"to=<carol@p\.test>, relay=virtual.*status=sent", log), log[-2000:]


def test_postfix_refusal_bounces_with_its_reply(env, postfix, a):
    rcpt = "nobody@p.test"
    msg, token = message(ALICE, rcpt, "unknown at postfix")
    submit(a, a.alice[0], a.alice[1], [rcpt], msg)
    wait_mail(a, ALICE, token, "multipart/report", timeout=25)
    got = pop3_find(a, a.alice[0], a.alice[1], token, "multipart/report")
    assert len(got) == 1, len(got)
    rep = Report(got[0])
    g = rep.rcpt(rcpt)
    check_group(g, "failed", 5, diagnostic="User unknown in virtual mailbox table")
    assert token.encode() in rep.returned
    wait_until(lambda: queue_empty(a), 10, 0.25, lambda: queue_state(a))
    problems = []
    if not re.match(r"(?i)^smtp; *550 5\.1\.1 <nobody@p\.test>", g.get("diagnostic-code", "")):
        problems.append("Diagnostic-Code is not 'smtp; 550 5.1.1 <nobody@p.test>...'")
    if g.get("status") != "5.1.1":
        problems.append("Status is not Postfix's 5.1.1")
    if not re.search(r"(?i)mx\.p\.test|127\.0\.0\.3", g.get("remote-mta", "")):
        problems.append("no Remote-MTA naming Postfix")
    assert not problems, "; ".join(problems) + ":\n%r" % g
