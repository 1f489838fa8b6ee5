"""test_curl_smtp.py — curl as an SMTP client: smtp:// with STARTTLS
(--ssl-reqd) on 587 and 25, smtps:// on 465, --mail-from/--mail-rcpt/
--upload-file, AUTH with curl's own choice and with AUTH=PLAIN/LOGIN; a file
with LF line ends goes through with --crlf and is refused without it (bare
LF); the exit codes for a wrong password and a refused recipient."""

import os
import shutil
import subprocess

import pytest

from pobox_harness import DEAD_SMARTHOST, check_trace, crlf, unique

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                 "relay": {"smarthost": DEAD_SMARTHOST}}


def curl(*args, timeout=60):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args),
                          capture_output=True, timeout=timeout)


def out(r):
    return "rc %d\n%s\n%s" % (r.returncode, r.stdout[-2000:].decode(errors="replace"),
                             r.stderr[-3000:].decode(errors="replace"))


def message(sender, to, subject):
    return crlf(b"From: %s\nTo: %s\nSubject: %s\nDate: Mon, 02 Jan 2023 10:00:00 +0000\n"
                b"Message-ID: <%s@client.example.net>\n\nHello via curl.\n.leading dot\n"
                b"..two dots\n.\nbye\n" % (sender.encode(), to.encode(), subject.encode(),
                                          unique("curl").encode()))


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


@pytest.fixture(scope="module")
def bob(server):
    return server.add_user()


def upload(tmp_path, data):
    f = tmp_path / ("%s.eml" % unique("curl"))
    f.write_bytes(data)
    return str(f)


URLS = {"starttls": ("smtp", "submission_port", ["--ssl-reqd"]),
        "implicit": ("smtps", "submissions_port", [])}


@pytest.mark.parametrize("how", ["starttls", "implicit"])
@pytest.mark.parametrize("mech", [None, "PLAIN", "LOGIN"])
def test_curl_submits(server, alice, bob, tmp_path, how, mech):
    user, pw = alice
    scheme, port_attr, extra = URLS[how]
    msg = message(user, bob[0], "curl %s %s" % (how, mech))
    before = len(server.delivered(bob[0]))
    args = extra + ["-k", "-u", "%s:%s" % (user, pw), "--mail-from", user, "--mail-rcpt", bob[0],
                    "--upload-file", upload(tmp_path, msg)]
    if mech:
        args += ["--login-options", "AUTH=" + mech]
    r = curl(*args, "%s://127.0.0.1:%d/client.example.net" % (scheme, getattr(server, port_attr)))
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1, out(r)
    check_trace(got[-1], msg, user, [bob[0]], "ESMTPSA", helo="client.example.net")


def test_curl_lf_file_with_crlf_option(server, alice, bob, tmp_path):
    user, pw = alice
    msg = message(user, bob[0], "curl --crlf")
    lf_msg = msg.replace(b"\r\n", b"\n")
    before = len(server.delivered(bob[0]))
    r = curl("--ssl-reqd", "-k", "-u", "%s:%s" % (user, pw), "--crlf", "--mail-from", user,
             "--mail-rcpt", bob[0], "--upload-file", upload(tmp_path, lf_msg),
             "smtp://127.0.0.1:%d/client.example.net" % server.submission_port)
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    check_trace(got[-1], msg, user, [bob[0]], "ESMTPSA")


def test_curl_lf_file_without_crlf_is_refused(server, alice, bob, tmp_path):
    """curl sends an LF file as it is: bare LFs, refused with 554 5.6.0."""
    user, pw = alice
    lf_msg = message(user, bob[0], "bare LF from curl").replace(b"\r\n", b"\n")
    before = len(server.delivered(bob[0]))
    r = curl("-v", "--ssl-reqd", "-k", "-u", "%s:%s" % (user, pw), "--mail-from", user,
             "--mail-rcpt", bob[0], "--upload-file", upload(tmp_path, lf_msg),
             "smtp://127.0.0.1:%d/client.example.net" % server.submission_port)
    assert r.returncode != 0, out(r)
    assert b"554 5.6.0" in r.stderr, out(r)
    assert len(server.delivered(bob[0])) == before


def test_curl_inbound_on_port_25(server, bob, tmp_path):
    msg = message("someone@example.net", bob[0], "curl inbound")
    before = len(server.delivered(bob[0]))
    r = curl("--mail-from", "someone@example.net", "--mail-rcpt", bob[0],
             "--upload-file", upload(tmp_path, msg),
             "smtp://127.0.0.1:%d/mx.example.net" % server.smtp_port)
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    check_trace(got[-1], msg, "someone@example.net", [bob[0]], "ESMTP", helo="mx.example.net")


def test_curl_rcpt_allowfails(server, bob, tmp_path):
    msg = message("someone@example.net", bob[0], "one good recipient")
    before = len(server.delivered(bob[0]))
    r = curl("--ssl-reqd", "-k", "--mail-from", "someone@example.net",
             "--mail-rcpt", "nobody-%s@example.org" % os.urandom(3).hex(),
             "--mail-rcpt", "x@other.org", "--mail-rcpt", bob[0], "--mail-rcpt-allowfails",
             "--upload-file", upload(tmp_path, msg),
             "smtp://127.0.0.1:%d/mx.example.net" % server.smtp_port)
    assert r.returncode == 0, out(r)
    got = server.delivered(bob[0])
    assert len(got) == before + 1
    check_trace(got[-1], msg, "someone@example.net", [bob[0]], "ESMTPS")


def test_curl_relay_denied(server, tmp_path):
    q = server.queue_count()
    r = curl("--mail-from", "someone@example.net", "--mail-rcpt", "x@other.org",
             "--upload-file", upload(tmp_path, message("someone@example.net", "x@other.org",
                                                       "relay")),
             "smtp://127.0.0.1:%d/mx.example.net" % server.smtp_port)
    assert r.returncode == 55, out(r)       # CURLE_SEND_ERROR: RCPT failed
    assert server.queue_count() == q


def test_curl_wrong_password(server, alice, bob, tmp_path):
    r = curl("-k", "-u", "%s:%s" % (alice[0], server.secret()), "--mail-from", alice[0],
             "--mail-rcpt", bob[0], "--upload-file",
             upload(tmp_path, message(alice[0], bob[0], "wrong password")),
             "smtps://127.0.0.1:%d/client.example.net" % server.submissions_port)
    assert r.returncode == 67, out(r)       # CURLE_LOGIN_DENIED


def test_curl_remote_recipient_queued(server, alice, tmp_path):
    user, pw = alice
    remote = "carol-%s@other.org" % os.urandom(3).hex()
    env_before = {p.name for p in server.queue_files("env")}
    r = curl("-k", "-u", "%s:%s" % (user, pw), "--mail-from", user, "--mail-rcpt", remote,
             "--upload-file", upload(tmp_path, message(user, remote, "to the world")),
             "smtps://127.0.0.1:%d/client.example.net" % server.submissions_port)
    assert r.returncode == 0, out(r)
    new_env = [p for p in server.queue_files("env") if p.name not in env_before]
    assert len(new_env) == 1 and remote.encode() in new_env[0].read_bytes()
