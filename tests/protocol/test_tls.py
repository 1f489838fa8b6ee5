"""test_tls.py — STLS (RFC 2595) and POP3S (RFC 8314), the plaintext-login
refusal, STLS command injection (CVE-2011-0411 class), TLS versions and
ciphers, the generated self-signed certificate, certificate reload."""

import poplib
import socket
import ssl
import subprocess
import time

import pytest

from pobox_harness import make_message, resp_code, tls_client_context, to_wire

# auth.plaintext_without_tls is left at its default (no)
SERVER_CONFIG = {"auth": {"failure_delay": "0", "plaintext_without_tls": "no"},
                 "tls": {"handshake_timeout": "2s"}}


@pytest.fixture(scope="module")
def alice(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("over tls", b"secret body\n.dot line\n"))
    return user, pw


@pytest.fixture(scope="module")
def apop_user(server):
    return server.add_user(apop=True)


def tags(lines):
    return {l.split()[0].upper() for l in lines if l.strip()}


# ---------------------------------------------------------------- plaintext

def test_capa_on_plain_connection_offers_stls_not_user(server):
    with server.connect() as c:
        t = tags(c.capa())
    assert "STLS" in t
    assert "USER" not in t, "USER offered where plaintext login is refused"


def test_plaintext_login_refused_without_tls(server, alice):
    user, pw = alice
    with server.connect() as c:
        r = c.cmd("USER " + user)
        if r.startswith(b"+OK"):
            r = c.cmd("PASS " + pw)
        assert r.startswith(b"-ERR") and resp_code(r) == "AUTH", r
        assert b"STLS" in r.upper(), "refusal does not mention STLS: %r" % r
        # not logged in: the session is still in AUTHORIZATION
        assert c.cmd("STAT").startswith(b"-ERR")
        # and STLS followed by the same login works on this connection
        assert c.starttls().startswith(b"+OK")
        c.login(user, pw)
        assert c.stat()[0] == 1
        c.quit()


def test_apop_allowed_without_tls(server, apop_user):
    user, pw = apop_user
    with server.connect() as c:
        r = c.apop(user, pw)
        assert r.startswith(b"+OK"), r
        c.quit()


# ---------------------------------------------------------------- STLS

def test_stls_with_poplib(server, alice):
    user, pw = alice
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    try:
        p.stls(context=tls_client_context())
        assert p.user(user).startswith(b"+OK")
        assert p.pass_(pw).startswith(b"+OK")
        count, size = p.stat()
        assert count == 1
        resp, lines, octets = p.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == to_wire(make_message_body(alice, server))
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()


def make_message_body(alice, server):
    files = server.message_files(alice[0])
    assert len(files) == 1
    return files[0].read_bytes()


def test_capa_after_stls(server):
    with server.connect() as c:
        assert c.starttls().startswith(b"+OK")
        t = tags(c.capa())
        assert "STLS" not in t, "STLS still offered inside TLS"
        assert "USER" in t, "USER not offered inside TLS"
        for x in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "UTF8"):
            assert x in t


def test_stls_injection_is_discarded(server, alice):
    """CVE-2011-0411: commands sent in plaintext together with STLS must not
    be executed inside the TLS session."""
    with server.connect() as c:
        c.send(b"STLS\r\nCAPA\r\n")
        r = c.readline()
        assert r.startswith(b"+OK"), r
        assert c.unread == b"", "server answered the injected command in plaintext: %r" % c.unread
        c.sock.settimeout(10)
        c.sock = tls_client_context().wrap_socket(c.sock)
        # nothing may be waiting on the TLS stream
        leaked = c.pending(1.5)
        assert leaked == b"", "answer to the injected CAPA on the TLS stream: %r" % leaked
        # the first reply inside TLS belongs to our first command
        r = c.cmd("STAT")
        assert r.startswith(b"-ERR"), r
        c.login(*alice)
        assert c.stat()[0] == 1
        c.quit()


def test_stls_injection_of_login_commands(server, alice):
    user, pw = alice
    with server.connect() as c:
        c.send(("STLS\r\nUSER %s\r\nPASS %s\r\n" % (user, pw)).encode())
        assert c.readline().startswith(b"+OK")
        assert c.unread == b""
        c.sock = tls_client_context().wrap_socket(c.sock)
        assert c.pending(1.5) == b""
        # not logged in by the injected commands
        assert c.cmd("STAT").startswith(b"-ERR")
        c.quit()


def test_stls_refused_inside_tls(server):
    with server.connect() as c:
        assert c.starttls().startswith(b"+OK")
        r = c.cmd("STLS")
        assert r.startswith(b"-ERR"), r
        assert c.capa()                       # the session goes on


def test_stls_refused_on_pop3s(server):
    with server.connect_tls() as c:
        r = c.cmd("STLS")
        assert r.startswith(b"-ERR"), r
        assert c.capa()


def test_stls_refused_after_login(server, apop_user):
    user, pw = apop_user
    with server.connect() as c:
        assert c.apop(user, pw).startswith(b"+OK")
        r = c.cmd("STLS")
        assert r.startswith(b"-ERR"), r
        # still a plaintext session that works
        assert c.cmd("NOOP").startswith(b"+OK")
        c.quit()


def test_stls_with_argument_refused(server):
    with server.connect() as c:
        r = c.cmd("STLS now")
        assert r.startswith(b"-ERR"), r
        assert c.capa()


def test_garbage_instead_of_client_hello(server):
    with server.connect() as c:
        assert c.cmd("STLS").startswith(b"+OK")
        c.send(b"this is not a TLS record\r\n" * 4)
        c.wait_closed(10)
    server.assert_alive()
    time.sleep(0.3)
    failed = [l for l in server.log_text().splitlines()
              if "tls" in l.lower() and "127.0.0.1" in l and "reason" in l.lower()]
    assert failed, "failed handshake not logged with the client address and a reason"


def test_client_closes_during_stls_handshake(server):
    with server.connect() as c:
        assert c.cmd("STLS").startswith(b"+OK")
    server.assert_alive()


# ---------------------------------------------------------------- POP3S

def test_pop3s_with_poplib(server, alice):
    user, pw = alice
    p = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=tls_client_context(), timeout=10)
    try:
        assert p.getwelcome().startswith(b"+OK")
        caps = p.capa()
        assert "STLS" not in caps and "USER" in caps, caps
        p.user(user)
        p.pass_(pw)
        assert p.stat()[0] == 1
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()


def test_plaintext_to_pop3s_port(server):
    with socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=10) as s:
        s.sendall(b"CAPA\r\nUSER x\r\n")
        s.settimeout(10)
        data = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        except (socket.timeout, ConnectionResetError):
            pass
        assert b"+OK" not in data, "plaintext POP3 answered on the POP3S port: %r" % data
    server.assert_alive()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_accepted(server, version):
    ctx = tls_client_context(minimum=version, maximum=version)
    with server.connect_tls(context=ctx) as c:
        assert c.greeting.startswith(b"+OK")
        assert c.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                    ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        if version == ssl.TLSVersion.TLSv1_2:
            name = c.sock.cipher()[0]
            assert "ECDHE" in name and ("GCM" in name or "CHACHA20" in name), name
        c.quit()
    with server.connect() as c:
        assert c.starttls(ctx).startswith(b"+OK")
        assert c.sock.version().startswith("TLSv1.")
        assert c.capa()


def test_tls_1_1_refused_by_default(server):
    ctx = tls_client_context(minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1,
                             seclevel0=True)
    with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError, OSError)):
        with server.connect_tls(context=ctx) as c:
            c.cmd("QUIT")
    server.assert_alive()


def test_rsa_certificate_forward_secrecy_only(server_factory, tmp_path):
    """With an RSA certificate (tls.cert/tls.key), TLS 1.2 still uses ECDHE:
    a client offering only static-RSA key exchange is refused."""
    cert, key = tmp_path / "rsa.crt", tmp_path / "rsa.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=rsa.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    srv = server_factory({"tls": {"cert": str(cert), "key": str(key)}})
    ctx = tls_client_context(maximum=ssl.TLSVersion.TLSv1_2)
    with srv.connect_tls(context=ctx) as c:
        assert c.sock.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(cert.read_text())
        name = c.sock.cipher()[0]
        assert name.startswith("ECDHE-RSA-") or name.startswith("DHE-RSA-"), name
        c.quit()
    ctx = tls_client_context(maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("AES128-SHA:AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384")
    with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError)):
        with srv.connect_tls(context=ctx) as c:
            c.cmd("QUIT")
    srv.assert_alive()


def test_tls_session_resumption(server):
    ctx = tls_client_context(maximum=ssl.TLSVersion.TLSv1_2)
    with server.connect_tls(context=ctx) as c:
        session = c.sock.session
        c.cmd("QUIT")
    assert session is not None
    sock = socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=10)
    with ctx.wrap_socket(sock, session=session) as s:
        assert s.session_reused, "TLS 1.2 session not resumed"
        s.sendall(b"QUIT\r\n")


def test_self_signed_certificate_generated(server):
    with server.connect_tls() as c:
        der = c.sock.getpeercert(binary_form=True)
        c.quit()
    assert der and len(der) > 200
    tls_dir = server.data_dir / "tls"
    assert tls_dir.is_dir(), "no %s" % tls_dir
    pems = [p for p in tls_dir.iterdir() if p.is_file()]
    assert len(pems) >= 2, pems
    # the served certificate is the one in data_dir/tls/
    served = ssl.DER_cert_to_PEM_cert(der).strip()
    assert any(served.split("-----")[2].strip().replace("\n", "") in
               p.read_text(errors="replace").replace("\n", "") for p in pems)
    # the private key is not readable by others
    for p in pems:
        if "PRIVATE KEY" in p.read_text(errors="replace"):
            assert p.stat().st_mode & 0o077 == 0, "%s mode %o" % (p, p.stat().st_mode)


def test_certificate_reload_on_sighup(server, alice, tmp_path):
    cert, key = tmp_path / "new.crt", tmp_path / "new.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                    "/CN=reloaded.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    new_der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    with server.connect_tls() as c:
        old_der = c.sock.getpeercert(binary_form=True)
        c.quit()
    session = server.session(*alice, tls=True)
    try:
        server.set("tls", "cert", str(cert))
        server.set("tls", "key", str(key))
        server.reload()
        deadline = time.monotonic() + 10
        while True:
            with server.connect_tls() as c:
                der = c.sock.getpeercert(binary_form=True)
                c.cmd("QUIT")
            if der == new_der:
                break
            assert time.monotonic() < deadline, "new certificate not served after SIGHUP"
            time.sleep(0.2)
        # the session opened before the reload is still there
        assert session.stat()[0] == 1
        assert session.quit().startswith(b"+OK")
    finally:
        session.close()
        server.set("tls", "cert", "")
        server.set("tls", "key", "")
        server.reload()
    deadline = time.monotonic() + 10
    while True:
        with server.connect_tls() as c:
            der = c.sock.getpeercert(binary_form=True)
            c.cmd("QUIT")
        if der == old_der:
            break
        assert time.monotonic() < deadline, "generated certificate not back after SIGHUP"
        time.sleep(0.2)


def test_handshake_timeout_after_stls(server):
    """tls.handshake_timeout (2s here): a client that says STLS and then
    nothing is cut off."""
    with server.connect() as c:
        assert c.cmd("STLS").startswith(b"+OK")
        t0 = time.monotonic()
        c.wait_closed(10)
        assert time.monotonic() - t0 < 9


def test_handshake_timeout_on_pop3s(server):
    with socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=10) as s:
        t0 = time.monotonic()
        s.settimeout(10)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 9, "silent POP3S client not cut off"


TLS_NAMES = {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1",
             ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}


def _handshake(srv, version):
    """The TLS version negotiated by a client that speaks only `version`
    (with OpenSSL's security level 0 so that the client itself allows old
    protocols), or None when the handshake fails."""
    ctx = tls_client_context(minimum=version, maximum=version, seclevel0=True)
    try:
        with srv.connect_tls(context=ctx) as c:
            assert c.greeting.startswith(b"+OK")
            v = c.sock.version()
            c.cmd("QUIT")
            return v
    except (ssl.SSLError, ConnectionResetError, EOFError):
        return None


def test_tls_min_version_1_3(server_factory):
    srv = server_factory({"tls": {"min_version": "1.3"}})
    assert _handshake(srv, ssl.TLSVersion.TLSv1_2) is None, "TLS 1.2 accepted with min_version 1.3"
    assert _handshake(srv, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["TLSv1.0", "TLSv1.1"])
def test_tls_min_version_1_0_serves_old_clients(server_factory, version):
    """tls.min_version = 1.0 is for sites that must serve old Outlook: a
    client that speaks only TLS 1.0 or 1.1 gets a working session."""
    srv = server_factory({"tls": {"min_version": "1.0"},
                          "auth": {"plaintext_without_tls": "no", "failure_delay": "0"}})
    got = _handshake(srv, version)
    assert got == TLS_NAMES[version], \
        "a %s-only client failed with tls.min_version = 1.0 (got %r)" % (TLS_NAMES[version], got)
    # and over STLS
    user, pw = srv.add_user()
    ctx = tls_client_context(minimum=version, maximum=version, seclevel0=True)
    with srv.connect() as c:
        assert c.starttls(ctx).startswith(b"+OK")
        c.login(user, pw)
        c.quit()


def test_apop_after_stls_uses_the_original_greeting(server, apop_user):
    user, pw = apop_user
    with server.connect() as c:
        assert c.starttls().startswith(b"+OK")
        r = c.apop(user, pw)          # digest over the plaintext greeting's timestamp
        assert r.startswith(b"+OK"), r
        c.quit()
