"""test_curl.py — curl as a POP3 client: pop3:// with STLS (--ssl-reqd),
pop3s://, APOP on a plain connection, LIST/RETR/UIDL/DELE, and the refusal
of a plaintext login without TLS."""

import shutil
import subprocess

import pytest

from pobox_harness import make_message, to_wire

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

# plaintext logins need TLS; nobody has an APOP secret, so the greeting has no
# APOP timestamp and curl uses USER/PASS
SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}}

MESSAGES = [make_message("curl one", b"first body\n.dotted line\n"),
            make_message("curl two", b"second body\nno final newline")]


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args),
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def mailbox(server):
    user, pw = server.add_user()
    for m in MESSAGES:
        server.deliver(user, m)
    return user, pw


def expected_listing():
    return b"".join(b"%d %d\r\n" % (i, len(to_wire(m))) for i, m in enumerate(MESSAGES, 1))


def test_curl_plain_login_refused_without_tls(server, mailbox):
    user, pw = mailbox
    r = curl("-u", "%s:%s" % (user, pw), "pop3://127.0.0.1:%d/" % server.pop3_port)
    assert r.returncode != 0, "listing over plaintext succeeded: %r" % r.stdout
    assert r.stdout == b""


def test_curl_stls_list(server, mailbox):
    user, pw = mailbox
    r = curl("--ssl-reqd", "-k", "-u", "%s:%s" % (user, pw),
             "pop3://127.0.0.1:%d/" % server.pop3_port)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected_listing()


def test_curl_stls_retr(server, mailbox):
    user, pw = mailbox
    for i, m in enumerate(MESSAGES, 1):
        r = curl("--ssl-reqd", "-k", "-u", "%s:%s" % (user, pw),
                 "pop3://127.0.0.1:%d/%d" % (server.pop3_port, i))
        assert r.returncode == 0, r.stderr
        assert r.stdout == to_wire(m)


def test_curl_pop3s_list_retr_uidl(server, mailbox):
    user, pw = mailbox
    base = "pop3s://127.0.0.1:%d/" % server.pop3s_port
    r = curl("-k", "-u", "%s:%s" % (user, pw), base)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected_listing()
    r = curl("-k", "-u", "%s:%s" % (user, pw), base + "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == to_wire(MESSAGES[1])
    r = curl("-k", "-u", "%s:%s" % (user, pw), "-X", "UIDL", base)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 3, lines
    uids = [l.split(b" ")[1] for l in lines[:2]]
    assert len(set(uids)) == 2


def test_curl_wrong_password(server, mailbox):
    user, _ = mailbox
    r = curl("-k", "-u", "%s:%s" % (user, server.secret()),
             "pop3s://127.0.0.1:%d/" % server.pop3s_port)
    assert r.returncode == 67, (r.returncode, r.stderr)     # CURLE_LOGIN_DENIED


def test_curl_dele(server):
    user, pw = server.add_user()
    keep, gone = make_message("keep"), make_message("delete me")
    server.deliver(user, keep)
    server.deliver(user, gone)
    r = curl("-k", "-u", "%s:%s" % (user, pw), "-X", "DELE", "-I",
             "pop3s://127.0.0.1:%d/2" % server.pop3s_port)
    assert r.returncode == 0, r.stderr
    files = server.message_files(user)
    assert [f.read_bytes() for f in files] == [keep]


@pytest.fixture(scope="module")
def apop_server(server_factory):
    srv = server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}})
    return srv


def test_curl_apop_on_plain_connection(apop_server):
    user, pw = apop_server.add_user(apop=True)
    apop_server.deliver(user, MESSAGES[0])
    r = curl("-u", "%s:%s" % (user, pw), "pop3://127.0.0.1:%d/1" % apop_server.pop3_port)
    assert r.returncode == 0, r.stderr
    assert r.stdout == to_wire(MESSAGES[0])


def test_curl_user_without_apop_secret_when_apop_is_offered(apop_server):
    apop_server.add_user(apop=True)          # the greeting now has a timestamp
    user, pw = apop_server.add_user()
    apop_server.deliver(user, MESSAGES[1])
    r = curl("--ssl-reqd", "-k", "-u", "%s:%s" % (user, pw),
             "pop3://127.0.0.1:%d/1" % apop_server.pop3_port)
    assert r.returncode == 0, r.stderr
    assert r.stdout == to_wire(MESSAGES[1])
