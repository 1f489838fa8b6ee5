"""test_swaks.py — swaks against pobox: AUTH PLAIN, LOGIN and CRAM-MD5 over
STARTTLS (--tls) on 587 and over implicit TLS (--tlsc) on 465, PIPELINING
(--pipeline), inbound delivery on 25, and the exit codes swaks gives for the
refusals a user meets (relay denied, AUTH required, wrong password)."""

import os
import shutil
import subprocess

import pytest

from pobox_harness import DEAD_SMARTHOST, check_trace, unique

pytestmark = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                 "relay": {"smarthost": DEAD_SMARTHOST}}


def swaks(port, *args, data=None, tmp_path=None):
    argv = ["swaks", "--server", "127.0.0.1:%d" % port, "--ehlo", "client.example.net",
            "--timeout", "20"]
    if data is not None:
        f = tmp_path / ("%s.eml" % unique("swaks"))
        f.write_bytes(data[:-1] if data.endswith(b"\n") else data)
        argv += ["--data", "@%s" % f]
    return subprocess.run(argv + list(args), capture_output=True, timeout=60)


def out(r):
    return "rc %d\n%s%s" % (r.returncode, r.stdout.decode(errors="replace")[-4000:],
                           r.stderr.decode(errors="replace")[-2000:])


def message(sender, to, subject):
    """What --data @file sends, ending in a line end: swaks adds CRLF . CRLF
    after the file's content, so the file has no final line end."""
    return (b"From: %s\nTo: %s\nSubject: %s\nDate: Mon, 02 Jan 2023 10:00:00 +0000\n"
            b"Message-ID: <%s@client.example.net>\n\nHello via swaks.\n.leading dot\n"
            b"..two dots\nbye\n" % (sender.encode(), to.encode(), subject.encode(),
                                   unique("swaks").encode()))


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


@pytest.fixture(scope="module")
def bob(server):
    return server.add_user()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("tls", ["--tls", "--tlsc"])
def test_swaks_auth_submission(server, alice, bob, tmp_path, mech, tls):
    user, pw = alice
    port = server.submission_port if tls == "--tls" else server.submissions_port
    msg = message(user, bob[0], "swaks %s %s" % (mech, tls))
    before = len(server.delivered(bob[0]))
    r = swaks(port, tls, "--auth", mech, "--auth-user", user, "--auth-password", pw,
              "--from", user, "--to", bob[0], data=msg, tmp_path=tmp_path)
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1, out(r)
    check_trace(got[-1], msg, user, [bob[0]], "ESMTPSA", helo="client.example.net")


@pytest.mark.parametrize("port_name", ["smtp", "submission"])
def test_swaks_pipeline(server, alice, bob, tmp_path, port_name):
    user, pw = alice
    msg = message(user, bob[0], "swaks pipelined on " + port_name)
    before = len(server.delivered(bob[0]))
    args = ["--pipeline", "--tls", "--from", user, "--to", bob[0]]
    if port_name == "submission":
        args += ["--auth", "PLAIN", "--auth-user", user, "--auth-password", pw]
    r = swaks(getattr(server, port_name + "_port"), *args, data=msg, tmp_path=tmp_path)
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1, out(r)
    check_trace(got[-1], msg, user, [bob[0]],
                "ESMTPSA" if port_name == "submission" else "ESMTPS")


def test_swaks_inbound_without_tls(server, bob, tmp_path):
    msg = message("someone@example.net", bob[0], "plain inbound")
    before = len(server.delivered(bob[0]))
    r = swaks(server.smtp_port, "--from", "someone@example.net", "--to", bob[0],
              data=msg, tmp_path=tmp_path)
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1, out(r)
    check_trace(got[-1], msg, "someone@example.net", [bob[0]], "ESMTP")


def test_swaks_default_message(server, bob):
    """swaks's own test message (with its Date and Message-ID)."""
    before = len(server.delivered(bob[0]))
    r = swaks(server.smtp_port, "--from", "someone@example.net", "--to", bob[0])
    assert r.returncode == 0, out(r)
    assert len(server.delivered(bob[0])) == before + 1


def test_swaks_relay_denied(server, tmp_path):
    q = server.queue_count()
    r = swaks(server.smtp_port, "--from", "someone@example.net", "--to", "x@other.org")
    assert r.returncode == 24, out(r)          # no RCPTs accepted
    assert b"554 5.7.1" in r.stdout, out(r)
    assert server.queue_count() == q


def test_swaks_unknown_user(server):
    r = swaks(server.smtp_port, "--from", "someone@example.net",
              "--to", "nobody-%s@example.org" % os.urandom(3).hex())
    assert r.returncode == 24, out(r)
    assert b"550 5.1.1" in r.stdout, out(r)


def test_swaks_submission_without_auth(server, alice, bob):
    r = swaks(server.submission_port, "--tls", "--from", alice[0], "--to", bob[0])
    assert r.returncode == 23, out(r)          # error in MAIL
    assert b"530 5.7.0" in r.stdout, out(r)


def test_swaks_wrong_password(server, alice, bob):
    before = len(server.delivered(bob[0]))
    r = swaks(server.submissions_port, "--tlsc", "--auth", "PLAIN", "--auth-user", alice[0],
              "--auth-password", server.secret(), "--from", alice[0], "--to", bob[0])
    assert r.returncode == 28, out(r)          # error in AUTH
    assert b"535 5.7.8" in r.stdout, out(r)
    assert len(server.delivered(bob[0])) == before


def test_swaks_plain_without_tls_not_offered(server, alice, bob):
    """With auth.plaintext_without_tls = no, PLAIN is not offered before
    STARTTLS: swaks gives up instead of sending the password."""
    r = swaks(server.submission_port, "--auth", "PLAIN", "--auth-user", alice[0],
              "--auth-password", alice[1], "--from", alice[0], "--to", bob[0])
    assert r.returncode == 28, out(r)
    assert b"235 " not in r.stdout, out(r)


def test_swaks_foreign_sender(server, alice, bob):
    r = swaks(server.submissions_port, "--tlsc", "--auth", "PLAIN", "--auth-user", alice[0],
              "--auth-password", alice[1], "--from", bob[0], "--to", bob[0])
    assert r.returncode == 23, out(r)
    assert b"553 5.7.1" in r.stdout, out(r)


@pytest.fixture(scope="module")
def cram(server_factory):
    return server_factory({"auth": {
        "plaintext_without_tls": "no", "failure_delay": "0",
        "mechanisms": "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, "
                      "CRAM-MD5, PLAIN, LOGIN"}})


@pytest.mark.parametrize("tls", [None, "--tls", "--tlsc"])
def test_swaks_cram_md5(cram, tmp_path, tls):
    """CRAM-MD5 is not a plaintext mechanism: offered with and without TLS
    for users added with --apop."""
    user, pw = cram.add_user(apop=True)
    to, _ = cram.add_user()
    port = cram.submissions_port if tls == "--tlsc" else cram.submission_port
    msg = message(user, to, "swaks cram-md5")
    r = swaks(port, *([tls] if tls else []), "--auth", "CRAM-MD5", "--auth-user", user,
              "--auth-password", pw, "--from", user, "--to", to, data=msg, tmp_path=tmp_path)
    assert r.returncode == 0, out(r)
    got = cram.delivered(to)
    assert len(got) == 1
    check_trace(got[0], msg, user, [to], "ESMTPSA" if tls else "ESMTPA")
