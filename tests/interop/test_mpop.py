"""test_mpop.py — mpop leaving mail on the server (keep on, UIDLs) over STLS
and POP3S, and APOP without TLS: a second run retrieves nothing new."""

import os
import shutil
import subprocess

import pytest

from pobox_harness import make_message

pytestmark = pytest.mark.skipif(shutil.which("mpop") is None, reason="mpop is not installed")

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}}


class Mpop:
    def __init__(self, home, port, user, pw, tls="starttls", auth="user"):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.rc = home / "mpoprc"
        self.out = home / "out.mbox"
        tls_lines = {
            "starttls": "tls on\ntls_starttls on\ntls_certcheck off\n",
            "implicit": "tls on\ntls_starttls off\ntls_certcheck off\n",
            "off": "tls off\n",
        }[tls]
        self.rc.write_text(
            "defaults\n" + tls_lines +
            "keep on\n"
            "only_new on\n"
            "timeout 20\n"
            "uidls_file %s\n"
            "account test\n"
            "host 127.0.0.1\n"
            "port %d\n"
            "auth %s\n"
            "user %s\n"
            "password %s\n"
            "delivery mbox %s\n" % (home / "uidls", port, auth, user, pw, self.out))
        os.chmod(self.rc, 0o600)

    def run(self):
        env = dict(os.environ, HOME=str(self.home))
        return subprocess.run(["mpop", "-C", str(self.rc), "test"],
                              capture_output=True, timeout=60, env=env)

    def fetched(self):
        return self.out.read_bytes() if self.out.exists() else b""


def log_of(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")[-3000:]


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_mpop_keep_on_server(server, tmp_path, tls):
    user, pw = server.add_user()
    subjects = [b"mpop %s %d" % (tls.encode(), i) for i in range(3)]
    for s in subjects[:2]:
        server.deliver(user, make_message(s.decode(), b"body of " + s + b"\n..two dots\n"))
    port = server.pop3_port if tls == "starttls" else server.pop3s_port
    mp = Mpop(tmp_path / "home", port, user, pw, tls=tls)

    r = mp.run()
    assert r.returncode == 0, "first run: rc %d\n%s" % (r.returncode, log_of(r))
    got = mp.fetched()
    assert got.count(b"\nFrom ") + got.startswith(b"From ") == 2, got
    for s in subjects[:2]:
        assert b"Subject: " + s + b"\n" in got
        assert b"body of " + s + b"\n..two dots\n" in got
    assert len(server.message_files(user)) == 2, "keep on: mail removed from the server"

    r = mp.run()
    assert r.returncode == 0, "second run: rc %d\n%s" % (r.returncode, log_of(r))
    assert mp.fetched() == got, "second run retrieved mail again"

    server.deliver(user, make_message(subjects[2].decode(), b"third\n"))
    r = mp.run()
    assert r.returncode == 0, log_of(r)
    new = mp.fetched()[len(got):]
    assert b"Subject: " + subjects[2] in new
    assert subjects[0] not in new and subjects[1] not in new
    assert len(server.message_files(user)) == 3


def test_mpop_plaintext_user_refused_without_tls(server, tmp_path):
    user, pw = server.add_user()
    server.deliver(user, make_message("not over plaintext"))
    mp = Mpop(tmp_path / "home", server.pop3_port, user, pw, tls="off", auth="user")
    r = mp.run()
    assert r.returncode != 0, log_of(r)
    assert "-ERR [AUTH]" in log_of(r), "not refused by the server: " + log_of(r)
    assert mp.fetched() == b""


def test_mpop_apop_without_tls(server, tmp_path):
    user, pw = server.add_user(apop=True)
    server.deliver(user, make_message("mpop apop", b"via APOP\n"))
    mp = Mpop(tmp_path / "home", server.pop3_port, user, pw, tls="off", auth="apop")
    r = mp.run()
    assert r.returncode == 0, log_of(r)
    assert b"Subject: mpop apop\n" in mp.fetched()
