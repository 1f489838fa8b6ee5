"""test_fetchmail.py — fetchmail in keep mode with UIDL, over STLS and over
POP3S: the first run fetches every message, a second run fetches nothing
new, a message delivered in between is the only one fetched next; mail stays
on the server."""

import os
import shutil
import subprocess

import pytest

from pobox_harness import make_message

pytestmark = pytest.mark.skipif(shutil.which("fetchmail") is None,
                                reason="fetchmail is not installed")

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}}


class Fetchmail:
    def __init__(self, home, host_port, user, pw, implicit_tls):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.rc = home / "fetchmailrc"
        self.out = home / "out.mbox"
        self.rc.write_text(
            'set no bouncemail\n'
            'set no syslog\n'
            'poll 127.0.0.1 with proto POP3 port %d uidl auth password timeout 20\n'
            '    user "%s" there with password "%s" is "root" here\n'
            '    options keep no sslcertck %s\n'
            '    mda "cat >> %s"\n'
            % (host_port, user, pw, "ssl" if implicit_tls else 'sslproto "tls1.2+"',
               self.out))
        os.chmod(self.rc, 0o600)

    def run(self):
        env = dict(os.environ, HOME=str(self.home))
        return subprocess.run(
            ["fetchmail", "-f", str(self.rc), "-i", str(self.home / "fetchids"),
             "--pidfile", str(self.home / "fetchmail.pid"), "--nodetach", "-v"],
            capture_output=True, timeout=60, env=env)

    def fetched(self):
        return self.out.read_bytes() if self.out.exists() else b""


def log_of(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")[-3000:]


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["stls", "pop3s"])
def test_fetchmail_keep_uidl(server, tmp_path, implicit_tls):
    user, pw = server.add_user()
    subjects = [b"fetchmail %s %d" % (b"pop3s" if implicit_tls else b"stls", i)
                for i in range(3)]
    for s in subjects[:2]:
        server.deliver(user, make_message(s.decode(), b"body of " + s + b"\n.dot\n"))
    port = server.pop3s_port if implicit_tls else server.pop3_port
    fm = Fetchmail(tmp_path / "home", port, user, pw, implicit_tls)

    r = fm.run()
    assert r.returncode == 0, "first run: rc %d\n%s" % (r.returncode, log_of(r))
    got = fm.fetched()
    for s in subjects[:2]:
        assert b"Subject: " + s + b"\n" in got, got
        assert b"body of " + s + b"\n.dot\n" in got
    assert pw not in log_of(r)
    # on port 110 the login can only have worked after STLS: the server
    # refuses plaintext logins without TLS (SERVER_CONFIG)

    # keep mode: the mail is still on the server
    assert len(server.message_files(user)) == 2

    # second run: nothing new (fetchmail exit code 1 = no mail)
    r = fm.run()
    assert r.returncode == 1, "second run: rc %d\n%s" % (r.returncode, log_of(r))
    assert fm.fetched() == got

    # one new message: only it is fetched
    server.deliver(user, make_message(subjects[2].decode(), b"third\n"))
    r = fm.run()
    assert r.returncode == 0, log_of(r)
    new = fm.fetched()[len(got):]
    assert b"Subject: " + subjects[2] in new
    assert subjects[0] not in new and subjects[1] not in new
    assert len(server.message_files(user)) == 3


def test_fetchmail_wrong_password(server, tmp_path):
    user, _ = server.add_user()
    server.deliver(user, make_message("not fetched"))
    fm = Fetchmail(tmp_path / "home", server.pop3s_port, user, server.secret(), True)
    r = fm.run()
    assert r.returncode == 3, "rc %d (3 = authentication failed)\n%s" % (r.returncode, log_of(r))
    assert fm.fetched() == b""
