"""test_smtp_tls.py — STARTTLS (RFC 3207) on 25 and 587, implicit TLS on
465 (RFC 8314; SPEC section 5, docs/smtp.md): the 220 reply, the session
starting over after the handshake, STARTTLS command injection
(CVE-2011-0411 class), STARTTLS twice, TLS versions, plaintext on the TLS
port, stalled handshakes, plaintext mechanisms only after TLS, the
Received: line of a TLS session."""

import os
import socket
import ssl
import time

import pytest

from pobox_harness import (Smtp, assert_queued, check_trace, smtp_message, tls_client_context)

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                 "tls": {"handshake_timeout": "2s"}}

READY = (220, [b"2.0.0 Ready to start TLS"])
SEND_EHLO_FIRST = (503, [b"5.5.1 Send EHLO or HELO first"])
ALREADY = (503, [b"5.5.1 TLS already active"])
MAIL_OK = (250, [b"2.1.0 Ok"])
RCPT_OK = (250, [b"2.1.5 Ok"])
OK = (250, [b"2.0.0 Ok"])
SENDER = "sender@example.net"


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


def conn(server, listener):
    c = server.smtp_connect(listener)
    assert c.greeting.code == 220, c.greeting
    assert c.ehlo().code == 250, c.transcript()
    return c


def auth_mechs(c):
    ext = c.extensions()
    return ext.get("AUTH")


def wrap(c, context=None):
    c.sock = (context or tls_client_context()).wrap_socket(c.sock)
    c.tls = True


# ---------------------------------------------------------------- STARTTLS

@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_starttls(server, listener):
    with conn(server, listener) as c:
        assert "STARTTLS" in c.extensions(), c.ehlo_reply
        assert c.starttls() == READY, c.transcript()
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        # the session starts over: EHLO first
        assert c.mail(SENDER) == SEND_EHLO_FIRST, c.transcript()
        assert c.ehlo().code == 250
        assert "STARTTLS" not in c.extensions(), "STARTTLS offered on TLS: %r" % c.ehlo_reply
        assert c.starttls() == ALREADY, c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()


def test_implicit_tls_on_465(server):
    with server.smtp_connect("submissions") as c:
        assert c.tls and c.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert c.greeting.code == 220
        assert c.ehlo().code == 250
        assert "STARTTLS" not in c.extensions(), c.ehlo_reply
        assert c.starttls() == ALREADY, c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_plaintext_mechanisms_only_after_tls(server, listener, alice):
    user, pw = alice
    with conn(server, listener) as c:
        before = auth_mechs(c) or []
        assert "PLAIN" not in before and "LOGIN" not in before, c.ehlo_reply
        r = c.auth_plain(user, pw)
        assert r == (538, [b"5.7.11 Encryption required for requested authentication "
                           b"mechanism"]), c.transcript()
        r = c.cmd("AUTH LOGIN")
        assert r.code == 538 and r.enhanced == "5.7.11", c.transcript()
        assert c.starttls() == READY
        assert c.ehlo().code == 250
        after = auth_mechs(c)
        assert after and "PLAIN" in after and "LOGIN" in after, c.ehlo_reply
        assert c.auth_plain(user, pw) == (235, [b"2.7.0 Authentication successful"]), \
            c.transcript()
        c.quit()


def test_starttls_with_an_argument(server):
    with conn(server, "submission") as c:
        r = c.cmd("STARTTLS now")
        assert r.code == 501 and r.enhanced == "5.5.4", c.transcript()
        assert c.starttls() == READY, c.transcript()
        c.quit()


def test_starttls_before_ehlo(server):
    """RFC 3207 does not require EHLO first; either STARTTLS works or it
    asks for EHLO (503 5.5.1) and the session goes on."""
    with server.smtp_connect("smtp") as c:
        r = c.starttls()
        assert r == READY or r == SEND_EHLO_FIRST, c.transcript()
        assert c.ehlo().code == 250
        c.quit()


@pytest.mark.parametrize("listener", ["smtp", "submission"])
@pytest.mark.parametrize("injected", [b"RSET\r\n", b"NOOP\r\nNOOP\r\n",
                                      b"MAIL FROM:<evil@example.net>\r\n",
                                      b"EHLO evil.example.net\r\nMAIL FROM:<evil@example.net>\r\n"])
def test_starttls_injection(server, listener, injected):
    """Commands sent in the same packet as STARTTLS are thrown away: after
    the handshake the server answers nothing until the client speaks, and
    nothing they asked for happened."""
    with conn(server, listener) as c:
        c.send(b"STARTTLS\r\n" + injected)
        assert c.reply() == READY, c.transcript()
        assert c.unread == b"", "plaintext after the 220: %r" % c.unread
        wrap(c)
        assert c.pending(1.0) == b"", "the server answered injected commands:\n" + c.transcript()
        assert c.mail(SENDER) == SEND_EHLO_FIRST, c.transcript()
        assert c.ehlo().code == 250
        assert c.rcpt("someone@example.org") == (503, [b"5.5.1 Need MAIL before RCPT"]), \
            c.transcript()
        c.quit()


def test_starttls_injection_in_a_separate_segment_before_the_handshake(server):
    """Plaintext that arrives after STARTTLS but before the ClientHello is
    not a command either (the handshake fails or the bytes are dropped)."""
    with conn(server, "smtp") as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert c.cmd("STARTTLS") == READY
        c.send(b"RSET\r\n")
        time.sleep(0.2)
        try:
            wrap(c)
        except (ssl.SSLError, OSError):
            server.assert_smtp_alive()
            return
        assert c.pending(0.5) == b"", c.transcript()
        assert c.ehlo().code == 250
        c.quit()


def test_auth_before_starttls_is_forgotten(server, alice):
    """RFC 3207 4.2: after the handshake the server forgets what it learnt
    before. Relaying needs a new AUTH (or STARTTLS is refused after AUTH)."""
    from sasl_client import ScramClient, b64, unb64
    user, pw = alice
    with conn(server, "smtp") as c:
        sc = ScramClient("SHA-256", user, pw)
        r = c.cmd("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
        assert r.code == 334, c.transcript()
        r = c.cmd(b64(sc.client_final_for(unb64(r.lines[0]))))
        assert r.code == 334, c.transcript()
        sc.verify_server_final(unb64(r.lines[0]))
        assert c.cmd("") == (235, [b"2.7.0 Authentication successful"]), c.transcript()
        r = c.starttls()
        if r.code != 220:
            assert r.code == 503, c.transcript()
            c.quit()
            return
        assert c.ehlo().code == 250
        assert c.mail(user) == MAIL_OK
        assert c.rcpt("someone@other.org") == (
            554, [b"5.7.1 <someone@other.org>: Relay access denied"]), c.transcript()
        c.quit()


# ---------------------------------------------------------------- TLS versions, bad handshakes

def test_tls12_client_on_both_listeners(server):
    ctx = tls_client_context(maximum=ssl.TLSVersion.TLSv1_2)
    with server.smtp_connect("submissions", context=ctx) as c:
        assert c.sock.version() == "TLSv1.2"
        assert c.ehlo().code == 250
        c.quit()
    with conn(server, "submission") as c:
        assert c.starttls(context=ctx) == READY
        assert c.sock.version() == "TLSv1.2"
        assert c.ehlo().code == 250
        c.quit()


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_refused(server, version):
    v = getattr(ssl.TLSVersion, version)
    ctx = tls_client_context(minimum=v, maximum=v, seclevel0=True)
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        Smtp(server.submissions_port, tls=True, context=ctx).close()
    server.assert_smtp_alive()


def test_plaintext_on_the_tls_port(server):
    """No plaintext greeting on 465 and no answer to a plaintext EHLO."""
    with socket.create_connection(("127.0.0.1", server.submissions_port), timeout=10) as s:
        s.settimeout(0.5)
        try:
            first = s.recv(100)
        except socket.timeout:
            first = b""
        assert not first.startswith(b"220"), "plaintext greeting on 465: %r" % first
        s.settimeout(10)
        s.sendall(b"EHLO plain.example.net\r\n")
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"250" not in got, "EHLO answered in plaintext on 465: %r" % got
    server.assert_smtp_alive()


def test_garbage_instead_of_a_handshake(server):
    with conn(server, "submission") as c:
        assert c.cmd("STARTTLS") == READY
        c.send(b"this is not TLS\r\n" * 10)
        got = c.wait_closed(10)
        assert b"250" not in got, got
    server.assert_smtp_alive()


def test_stalled_handshake_is_cut(server):
    """tls.handshake_timeout (2 s here) ends a STARTTLS that never
    handshakes."""
    with conn(server, "smtp") as c:
        assert c.cmd("STARTTLS") == READY
        t0 = time.monotonic()
        c.wait_closed(15)
        took = time.monotonic() - t0
    assert took < 12, "closed after %.1fs" % took
    server.assert_smtp_alive()


def test_same_certificate_as_pop3s(server):
    with server.connect_tls() as p:
        pop3 = p.sock.getpeercert(binary_form=True)
    with server.smtp_connect("submissions") as c:
        smtp465 = c.sock.getpeercert(binary_form=True)
    with conn(server, "submission") as c:
        c.starttls()
        smtp587 = c.sock.getpeercert(binary_form=True)
    assert pop3 == smtp465 == smtp587


# ---------------------------------------------------------------- Received after STARTTLS

def test_received_after_starttls_on_port_25(server, alice):
    user = alice[0]
    msg = smtp_message("over starttls", os.urandom(4).hex().encode() + b"\r\n")
    before = len(server.delivered(user))
    with conn(server, "smtp") as c:
        assert c.starttls() == READY
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        assert c.ehlo("mx.example.net").code == 250
        assert_queued(c.send_mail(SENDER, [user], msg), c)
        c.quit()
    got = server.delivered(user)
    assert len(got) == before + 1
    line = check_trace(got[-1], msg, SENDER, [user], "ESMTPS", helo="mx.example.net")
    assert cipher.encode() in line, "Received: lacks the cipher %s: %r" % (cipher, line)
    assert version.replace("v", "").encode() in line.replace(b"v1", b"1").replace(b"_", b"."), \
        "Received: lacks %s: %r" % (version, line)


def test_smtplib_starttls_and_ssl(server, alice):
    user, pw = alice
    for listener in ("submission", "submissions"):
        s = server.smtplib(listener, login=(user, pw))
        try:
            code, _ = s.noop()
            assert code == 250
            assert "starttls" not in s.esmtp_features
        finally:
            s.quit()
