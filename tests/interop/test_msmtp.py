"""test_msmtp.py — msmtp submitting through pobox: 587 with STARTTLS and
465 with implicit TLS, AUTH PLAIN, LOGIN, SCRAM-SHA-256 and msmtp's own
choice; the message arrives byte-identical under the trace fields; remote
recipients are queued; a wrong password, a foreign sender and a missing
STARTTLS fail the way a user would notice (exit code, nothing delivered)."""

import os
import shutil

import pytest

from pobox_harness import DEAD_SMARTHOST, Msmtp, check_trace, unique

pytestmark = pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp is not installed")

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                 "relay": {"smarthost": DEAD_SMARTHOST}}


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


@pytest.fixture(scope="module")
def bob(server):
    return server.add_user()


def message(sender, to, subject):
    return (b"From: Alice <%s>\nTo: %s\nSubject: %s\nDate: Mon, 02 Jan 2023 10:00:00 +0000\n"
            b"Message-ID: <%s@client.example.net>\n\n"
            b"Hello via msmtp.\n.a dot line\n..two dots\n.\nlast line\n"
            % (sender.encode(), to.encode(), subject.encode(), unique("msmtp").encode()))


def port_of(server, tls):
    return server.submission_port if tls == "starttls" else server.submissions_port


@pytest.mark.parametrize("auth", ["plain", "login", "scram-sha-256", "on"])
@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_msmtp_submits(server, alice, bob, tmp_path, tls, auth):
    user, pw = alice
    server.passwords.add(pw)
    msg = message(user, bob[0], "msmtp %s %s" % (tls, auth))
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, port_of(server, tls), user, pw, tls=tls, auth=auth)
    r = m.send([bob[0]], msg)
    assert r.returncode == 0, m.output(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1, m.output(r)
    check_trace(got[-1], msg, user, [bob[0]], "ESMTPSA", helo="client.example.net")


def test_msmtp_to_several_recipients(server, alice, bob, tmp_path):
    user, pw = alice
    carol, _ = server.add_user()
    remote = "dave-%s@other.org" % os.urandom(3).hex()
    msg = message(user, "%s, %s" % (bob[0], carol), "several")
    counts = {u: len(server.delivered(u)) for u in (bob[0], carol)}
    env_before = {p.name for p in server.queue_files("env")}
    m = Msmtp(tmp_path, server.submissions_port, user, pw, tls="implicit")
    r = m.send([bob[0], carol, remote], msg)
    assert r.returncode == 0, m.output(r)
    for u in counts:
        got = server.delivered(u)
        assert len(got) == counts[u] + 1
        check_trace(got[-1], msg, user, [u], "ESMTPSA")
    new_env = [p for p in server.queue_files("env") if p.name not in env_before]
    assert len(new_env) == 1 and remote.encode() in new_env[0].read_bytes(), new_env


def test_msmtp_wrong_password(server, alice, bob, tmp_path):
    user, _ = alice
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, server.submission_port, user, server.secret(), tls="starttls")
    r = m.send([bob[0]], message(user, bob[0], "wrong password"))
    assert r.returncode != 0, m.output(r)
    assert "535" in m.output(r), m.output(r)
    assert len(server.delivered(bob[0])) == before


def test_msmtp_foreign_sender_refused(server, alice, bob, tmp_path):
    user, pw = alice
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, server.submission_port, user, pw, sender=bob[0])
    r = m.send([bob[0]], message(bob[0], bob[0], "not mine"))
    assert r.returncode != 0, m.output(r)
    assert "553" in m.output(r), m.output(r)
    assert len(server.delivered(bob[0])) == before


def test_msmtp_foreign_from_header_refused(server, alice, bob, tmp_path):
    user, pw = alice
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, server.submissions_port, user, pw, tls="implicit")
    r = m.send([bob[0]], message(bob[0], bob[0], "From: not mine"))
    assert r.returncode != 0, m.output(r)
    assert "553" in m.output(r), m.output(r)
    assert len(server.delivered(bob[0])) == before


def test_msmtp_plain_without_tls_refused(server, alice, bob, tmp_path):
    """auth.plaintext_without_tls = no: PLAIN over a plain connection on
    587 fails, and the password never crosses the wire in clear."""
    user, pw = alice
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, server.submission_port, user, pw, tls="off", auth="plain")
    r = m.send([bob[0]], message(user, bob[0], "no tls"))
    assert r.returncode != 0, m.output(r)
    assert len(server.delivered(bob[0])) == before


def test_msmtp_scram_without_tls(server, alice, bob, tmp_path):
    """SCRAM does not reveal the password and is offered without TLS."""
    user, pw = alice
    msg = message(user, bob[0], "scram without tls")
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, server.submission_port, user, pw, tls="off", auth="scram-sha-256")
    r = m.send([bob[0]], msg)
    assert r.returncode == 0, m.output(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    check_trace(got[-1], msg, user, [bob[0]], "ESMTPA")


def test_msmtp_to_port_25_without_auth(server, bob, tmp_path):
    msg = message("someone@example.net", bob[0], "inbound via msmtp")
    before = len(server.delivered(bob[0]))
    m = Msmtp(tmp_path, server.smtp_port, tls="starttls", sender="someone@example.net")
    r = m.send([bob[0]], msg)
    assert r.returncode == 0, m.output(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    check_trace(got[-1], msg, "someone@example.net", [bob[0]], "ESMTPS")


def test_msmtp_dsn(server, alice, tmp_path):
    user, pw = alice
    remote = "erin-%s@other.org" % os.urandom(3).hex()
    env_before = {p.name for p in server.queue_files("env")}
    m = Msmtp(tmp_path, server.submission_port, user, pw)
    r = m.send([remote], message(user, remote, "dsn"), "--dsn-notify=failure,delay",
               "--dsn-return=headers")
    assert r.returncode == 0, m.output(r)
    new_env = [p for p in server.queue_files("env") if p.name not in env_before]
    assert len(new_env) == 1
    text = new_env[0].read_bytes().lower()
    assert remote.encode() in text and b"delay" in text and b"hdrs" in text, text
