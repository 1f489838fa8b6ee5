"""test_fetchmail_sasl.py — fetchmail against pobox's AUTH: `auth cram-md5`
(server with CRAM-MD5 in auth.mechanisms, user added with --apop) with and
without TLS, `auth password` (fetchmail sends USER/PASS) over STLS and POP3S,
and `auth any` (CRAM-MD5 first, USER/PASS when that fails). GSSAPI is in
test_fetchmail_gssapi.py."""

import os
import shutil
import subprocess

import pytest

from pobox_harness import make_message

pytestmark = pytest.mark.skipif(shutil.which("fetchmail") is None,
                                reason="fetchmail is not installed")

SERVER_CONFIG = {"auth": {
    "plaintext_without_tls": "no", "failure_delay": "0",
    "mechanisms": "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, "
                  "CRAM-MD5, PLAIN, LOGIN"}}

TLS_OPTIONS = {
    "pop3s": "ssl no sslcertck",
    "stls": 'sslproto "tls1.2+" no sslcertck',
    "none": 'sslproto "" no sslcertck',         # no STLS at all
}

AUTH_FAILED = 3     # fetchmail's PS_AUTHFAIL


def run_fetchmail(server, home, auth, tls, user, pw):
    home.mkdir(parents=True, exist_ok=True)
    out = home / "out.mbox"
    rc = home / "fetchmailrc"
    port = server.pop3s_port if tls == "pop3s" else server.pop3_port
    rc.write_text(
        'set no bouncemail\n'
        'set no syslog\n'
        'poll 127.0.0.1 with proto POP3 port %d uidl auth %s timeout 20\n'
        '    user "%s" there with password "%s" is "root" here\n'
        '    options keep %s\n'
        '    mda "cat >> %s"\n' % (port, auth, user, pw, TLS_OPTIONS[tls], out))
    rc.chmod(0o600)
    r = subprocess.run(
        ["fetchmail", "-f", str(rc), "-i", str(home / "fetchids"),
         "--pidfile", str(home / "fetchmail.pid"), "--nodetach", "-v", "-v"],
        capture_output=True, timeout=90, env=dict(os.environ, HOME=str(home)))
    r.log = (r.stdout + r.stderr).decode("utf-8", "replace")
    r.fetched = out.read_bytes() if out.exists() else b""
    return r


def sent(r):
    """The login commands fetchmail sent, from its -v -v trace: 'USER',
    'APOP' or 'AUTH MECHANISM' (no arguments)."""
    out = []
    for line in r.log.splitlines():
        if "POP3> " not in line:
            continue
        words = line.split("POP3> ", 1)[1].split()
        if words and words[0] in ("USER", "APOP"):
            out.append(words[0])
        elif words and words[0] == "AUTH":
            out.append(" ".join(words[:2]))
    return out


def short(r):
    return "rc %d\n%s" % (r.returncode, r.log[-3000:])


@pytest.mark.parametrize("tls", ["none", "pop3s", "stls"])
def test_fetchmail_cram_md5(server, tmp_path, tls):
    user, pw = server.add_user(apop=True)
    subjects = [b"fetchmail cram %s %d" % (tls.encode(), i) for i in range(2)]
    for s in subjects:
        server.deliver(user, make_message(s.decode(), b"body of " + s + b"\n.dot\n"))
    r = run_fetchmail(server, tmp_path / "home", "cram-md5", tls, user, pw)
    assert r.returncode == 0, short(r)
    for s in subjects:
        assert b"Subject: " + s + b"\n" in r.fetched, short(r)
        assert b"body of " + s + b"\n.dot\n" in r.fetched
    assert sent(r) == ["AUTH CRAM-MD5"], short(r)
    assert pw not in r.log


@pytest.mark.parametrize("who", ["wrong-password", "user-without-apop"])
def test_fetchmail_cram_md5_refused(server, tmp_path, who):
    if who == "wrong-password":
        user, _ = server.add_user(apop=True)
        pw = server.secret()
    else:
        user, pw = server.add_user()           # no CRAM-MD5 secret
    server.deliver(user, make_message("not fetched"))
    r = run_fetchmail(server, tmp_path / "home", "cram-md5", "none", user, pw)
    assert r.returncode == AUTH_FAILED, short(r)
    assert "-ERR [AUTH] Authentication failed" in r.log, short(r)
    assert r.fetched == b""


@pytest.mark.parametrize("tls", ["pop3s", "stls"])
def test_fetchmail_auth_password(server, tmp_path, tls):
    user, pw = server.add_user()
    server.deliver(user, make_message("fetchmail password " + tls))
    r = run_fetchmail(server, tmp_path / "home", "password", tls, user, pw)
    assert r.returncode == 0, short(r)
    assert b"Subject: fetchmail password " + tls.encode() in r.fetched
    assert sent(r) in (["USER"], ["AUTH PLAIN"]), short(r)


def test_fetchmail_auth_password_wrong(server, tmp_path):
    user, _ = server.add_user()
    server.deliver(user, make_message("not fetched"))
    r = run_fetchmail(server, tmp_path / "home", "password", "pop3s", user, server.secret())
    assert r.returncode == AUTH_FAILED, short(r)
    assert r.fetched == b""


@pytest.mark.parametrize("apop", [True, False], ids=["apop-user", "plain-user"])
def test_fetchmail_auth_any(server, tmp_path, apop):
    """fetchmail's default tries CRAM-MD5 when offered; a user without a
    CRAM-MD5 secret gets the failure and fetchmail goes on to USER/PASS."""
    user, pw = server.add_user(apop=apop)
    server.deliver(user, make_message("fetchmail any"))
    r = run_fetchmail(server, tmp_path / "home", "any", "pop3s", user, pw)
    assert r.returncode == 0, short(r)
    assert b"Subject: fetchmail any" in r.fetched
    assert sent(r)[0] == "AUTH CRAM-MD5", short(r)
    if not apop:
        assert sent(r) == ["AUTH CRAM-MD5", "USER"], short(r)
