"""test_sasl_gssapi.py — POP3 AUTH GSSAPI (RFC 5034, RFC 4752) against a
throwaway MIT Kerberos realm on loopback (tests/krb5_realm.py).

The client side is python3-gssapi: it initiates a context for the host-based
service pop@mail.example.org with a ticket from kinit, unwraps the server's
RFC 4752 security-layer offer and answers "no security layer" (+ authzid).
The server has auth.keytab = a keytab holding pop/mail.example.org@EXAMPLE.ORG.

Covered: GSSAPI advertised (CAPA SASL, AUTH listing) on plain and TLS
connections only when a keytab is configured; login with and without mutual
authentication, over POP3, STLS and POP3S; an initial response too long for
the 255-octet command line (RFC 5034 section 4: refused, then a login the
proper way);  authzid (own user, another user);
principals without a pobox user and with an instance; bad tokens (garbage,
truncated, a ticket for another service, a ticket of another realm, a
replayed AP-REQ); cancelling with "*" at every step. After every failure the
session goes on and the server stays alive.
"""

import base64
import os
import re
import subprocess
import sys
import time

import gssapi       # python3-gssapi (tools/deps.sh); missing = an error, not a skip
import pytest

from krb5_realm import realm_or_skip
from pobox_harness import DOMAIN, HOSTNAME, make_message, resp_code, to_wire

REALM = "EXAMPLE.ORG"
OTHER_HOST = "other.example.org"     # pop/OTHER_HOST exists in the KDC, not in the keytab
AUTH_FAILED = b"-ERR [AUTH] Authentication failed"

# alice has mail; bob exists in pobox; carol has a principal but no pobox user;
# alice/admin is an instance principal
PRINCIPALS = ["alice", "bob", "carol", "alice/admin"]
POBOX_USERS = ["alice", "bob"]

ALICE = "alice@" + DOMAIN
BOB = "bob@" + DOMAIN
ALICE_MSG = make_message("for alice via kerberos", b"kerberized body\n.dot line\n")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    r = realm_or_skip(tmp_path_factory.mktemp("krb5"), REALM,
                      hosts=[HOSTNAME, OTHER_HOST])
    try:
        r.ccache = {}
        for p in PRINCIPALS:
            r.addprinc(p, "pw-%s-%s" % (p.replace("/", "-"), os.urandom(4).hex()))
            r.ccache[p] = r.kinit(p)
        r.keytab = r.service_keytab("pop", HOSTNAME, r.dir / "pobox.keytab")
        r.addprinc("pop/" + OTHER_HOST)
        with r.environ():
            yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def gserver(realm, server_factory):
    """A pobox server with auth.keytab; plaintext logins need TLS (GSSAPI
    must not: it is no plaintext mechanism)."""
    s = server_factory({"auth": {"keytab": str(realm.keytab),
                                 "plaintext_without_tls": "no",
                                 "failure_delay": "0"}})
    for u in POBOX_USERS:
        s.add_user(address="%s@%s" % (u, DOMAIN))
    s.deliver(ALICE, ALICE_MSG)
    return s


@pytest.fixture(scope="module")
def other_realm_token(tmp_path_factory, realm):
    """The initial context token of alice@OTHER.ORG for
    pop/mail.example.org@OTHER.ORG — the right service name in a realm whose
    keys the server does not have. Made in a child process with the other
    realm's environment, so this process's krb5 settings stay untouched."""
    other = realm_or_skip(tmp_path_factory.mktemp("krb5other"), "OTHER.ORG",
                          hosts=[HOSTNAME])
    try:
        other.addprinc("alice", "pw-other-" + os.urandom(4).hex())
        cc = other.kinit("alice")
        other.addprinc("pop/" + HOSTNAME)
        script = (
            "import base64, gssapi, sys\n"
            "c = gssapi.Credentials(usage='initiate', store={'ccache': sys.argv[1]})\n"
            "n = gssapi.Name('pop@' + sys.argv[2], gssapi.NameType.hostbased_service)\n"
            "x = gssapi.SecurityContext(name=n, creds=c, usage='initiate')\n"
            "sys.stdout.write(base64.b64encode(x.step()).decode())\n")
        env = dict(os.environ)
        env.update(other.env)
        r = subprocess.run([sys.executable, "-c", script, "FILE:%s" % cc, HOSTNAME],
                           capture_output=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
        return base64.b64decode(r.stdout)
    finally:
        other.stop()


# ---------------------------------------------------------------- client

class Transcript(list):
    def __str__(self):
        return "\n".join(self)


def initiator(realm, principal, host=HOSTNAME, service="pop", mutual=True):
    """A GSS-API initiator context of `principal` (from its own ccache) for
    the host-based service service@host. With mutual=False the context is
    complete after the first token (no AP-REP: the server's next challenge is
    the security-layer offer, as with curl)."""
    creds = gssapi.Credentials(usage="initiate",
                               store={"ccache": "FILE:%s" % realm.ccache[principal]})
    name = gssapi.Name("%s@%s" % (service, host), gssapi.NameType.hostbased_service)
    flags = [gssapi.RequirementFlag.out_of_sequence_detection]
    if mutual:
        flags.append(gssapi.RequirementFlag.mutual_authentication)
    return gssapi.SecurityContext(name=name, creds=creds, usage="initiate", flags=flags)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _send(c, t, line: bytes):
    t.append("C: %s" % line.decode("latin-1"))
    c.send(line + b"\r\n")


def _read(c, t) -> bytes:
    line = c.readline()
    t.append("S: %s" % line.decode("latin-1"))
    return line


def fits_line(token: bytes) -> bool:
    """RFC 5034 section 4: the AUTH command with its initial response is
    still at most 255 octets (RFC 2449) with CRLF; a client must not use the
    initial response when it would be longer. A Kerberos AP-REQ never fits."""
    return len(b"AUTH GSSAPI " + _b64(token) + b"\r\n") <= 255


def gss_auth(c, realm, principal, authzid=b"", initial=False, cancel_at=None,
             layer=b"\x01\x00\x00\x00", mutual=True, answer=None, t=None):
    """Runs AUTH GSSAPI on the Pop3 connection `c`; returns (final reply,
    transcript). initial=True sends the first token in the AUTH command
    whatever its length (RFC 5034 forbids that beyond 255 octets: see
    fits_line). cancel_at = 1, 2 or 3 answers "*" to the first challenge,
    the server's context token, or the security-layer offer. answer(ctx)
    gives the raw security-layer answer instead of wrap(layer + authzid)."""
    t = Transcript() if t is None else t
    ctx = initiator(realm, principal, mutual=mutual)
    token = ctx.step()
    step = 0
    if initial:
        _send(c, t, b"AUTH GSSAPI " + _b64(token))
    else:
        _send(c, t, b"AUTH GSSAPI")
    sent_token = initial
    layer_sent = False
    while True:
        line = _read(c, t)
        if not (line == b"+" or line.startswith(b"+ ")):
            return line, t
        step += 1
        assert not layer_sent, "a challenge after the security-layer answer\n%s" % t
        chal = base64.b64decode(line[2:], validate=True)
        if cancel_at == step:
            _send(c, t, b"*")
            continue
        if not sent_token:
            assert chal == b"", "first challenge of AUTH GSSAPI is not empty\n%s" % t
            _send(c, t, _b64(token))
            sent_token = True
        elif not ctx.complete:
            out = ctx.step(chal)
            _send(c, t, _b64(out or b""))
        else:
            # RFC 4752 3.1: unwrap the server's offer, answer with the chosen layer
            offer = ctx.unwrap(chal).message
            t.append("   (security-layer offer %s)" % offer.hex())
            assert len(offer) == 4, "security-layer offer %r\n%s" % (offer, t)
            assert offer[0] & 1, "server offers no 'no security layer' (%r)\n%s" % (offer, t)
            data = answer(ctx) if answer else ctx.wrap(layer + authzid, False).message
            _send(c, t, _b64(data))
            layer_sent = True


def logged_in(reply: bytes):
    m = re.match(rb"^\+OK Logged in: (\d+) messages \((\d+) octets\)$", reply)
    return m and (int(m.group(1)), int(m.group(2)))


def gss_session(server, realm, principal, tls=False, seconds=5, **kw):
    """A POP3 session logged in with AUTH GSSAPI (retrying while the maildrop
    is still locked by a session of the same user that has just ended)."""
    deadline = time.monotonic() + seconds
    while True:
        c = server.connect_tls() if tls else server.connect()
        r, t = gss_auth(c, realm, principal, **kw)
        if r.startswith(b"+OK"):
            return c, r, t
        c.close()
        assert resp_code(r) == "IN-USE" and time.monotonic() < deadline, \
            "AUTH GSSAPI as %s failed:\n%s" % (principal, t)
        time.sleep(0.2)


def gss_auth_retry(c, realm, principal, t, seconds=5, **kw):
    """gss_auth on the open connection `c`, again while the reply is
    [IN-USE] (the maildrop of a session that has just ended)."""
    deadline = time.monotonic() + seconds
    while True:
        r, t = gss_auth(c, realm, principal, t=t, **kw)
        if resp_code(r) != "IN-USE" or time.monotonic() > deadline:
            return r, t
        time.sleep(0.2)


def sasl_mechs(capa_lines):
    for l in capa_lines:
        parts = l.split()
        if parts and parts[0].upper() == "SASL":
            return [p.upper() for p in parts[1:]]
    return []


def auth_listing(c):
    """The mechanisms of a bare AUTH (the pre-RFC 5034 listing), or None when
    the server does not give one."""
    st, lines = c.multi("AUTH")
    if not st.startswith(b"+OK"):
        return None
    return [l.decode("latin-1").strip().upper() for l in lines]


def assert_fails(c, t, r):
    assert r == AUTH_FAILED, "expected %r, got %r\n%s" % (AUTH_FAILED, r, t)
    # not logged in, and the session goes on
    assert c.cmd("STAT").startswith(b"-ERR"), t
    assert "TOP" in [l.split()[0] for l in c.capa() if l.strip()], t


def assert_alice_mailbox(c, reply, t):
    want = (1, len(to_wire(ALICE_MSG)))
    assert logged_in(reply) == want, "reply %r, want %r messages/octets\n%s" % (reply, want, t)
    assert c.stat() == want
    assert c.retr(1) == to_wire(ALICE_MSG)


# ---------------------------------------------------------------- advertising

def test_gssapi_advertised_in_capa_plain_and_tls(gserver):
    with gserver.connect() as c:
        plain = c.capa()
        listing = auth_listing(c)
        c.quit()
    assert "GSSAPI" in sasl_mechs(plain), plain
    assert "USER" not in [l.split()[0] for l in plain if l.strip()], plain
    if listing is not None:
        assert "GSSAPI" in listing, listing
    with gserver.connect_tls() as c:
        tls = c.capa()
        c.quit()
    assert "GSSAPI" in sasl_mechs(tls), tls


def test_gssapi_not_offered_without_keytab(realm, server_factory):
    s = server_factory({"auth": {"failure_delay": "0"}})
    for connect in (s.connect, s.connect_tls):
        with connect() as c:
            lines = c.capa()
            assert "GSSAPI" not in sasl_mechs(lines), lines
            listing = auth_listing(c)
            assert listing is None or "GSSAPI" not in listing, listing
            r = c.cmd("AUTH GSSAPI")
            assert r.startswith(b"-ERR Unsupported authentication mechanism"), r
            # with an initial response (short enough for the command line)
            r = c.cmd(b"AUTH GSSAPI " + _b64(os.urandom(60)))
            assert r.startswith(b"-ERR Unsupported authentication mechanism"), r
            assert c.cmd("STAT").startswith(b"-ERR")
            c.quit()
    assert s.alive()


# ---------------------------------------------------------------- logins

def test_login(gserver, realm):
    c, r, t = gss_session(gserver, realm, "alice")
    with c:
        assert_alice_mailbox(c, r, t)
        assert c.quit().startswith(b"+OK")


def test_login_without_mutual_authentication(gserver, realm):
    """No AP-REP: the challenge after the client's token is the
    security-layer offer (curl's default)."""
    c, r, t = gss_session(gserver, realm, "alice", mutual=False)
    with c:
        assert_alice_mailbox(c, r, t)
        assert c.quit().startswith(b"+OK")


@pytest.mark.parametrize("mutual", [True, False], ids=["mutual", "no-mutual"])
def test_initial_response_longer_than_255_octets(gserver, realm, mutual):
    """A Kerberos token as initial response makes the AUTH line far longer
    than 255 octets. RFC 5034 section 4 tells clients not to do that, but
    some do, and pobox accepts AUTH lines with initial responses up to the
    SASL response limit: the login works."""
    tok = initiator(realm, "alice", mutual=mutual).step()
    assert not fits_line(tok)
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "alice", initial=True, mutual=mutual)
        assert_alice_mailbox(c, r, t)
        c.quit()


def test_login_over_pop3s(gserver, realm):
    c, r, t = gss_session(gserver, realm, "alice", tls=True)
    with c:
        assert_alice_mailbox(c, r, t)
        assert c.quit().startswith(b"+OK")


def test_login_over_stls(gserver, realm):
    with gserver.connect() as c:
        assert c.starttls().startswith(b"+OK")
        assert "GSSAPI" in sasl_mechs(c.capa())
        r, t = gss_auth_retry(c, realm, "alice", Transcript())
        assert_alice_mailbox(c, r, t)
        assert c.quit().startswith(b"+OK")


def test_second_user_logs_in_as_own_mailbox(gserver, realm):
    c, r, t = gss_session(gserver, realm, "bob")
    with c:
        assert logged_in(r) == (0, 0), "%r\n%s" % (r, t)
        assert c.stat() == (0, 0)
        c.quit()


def test_authzid_own_user(gserver, realm):
    c, r, t = gss_session(gserver, realm, "alice", authzid=ALICE.encode())
    with c:
        assert_alice_mailbox(c, r, t)
        c.quit()


def test_authzid_other_user_refused(gserver, realm):
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "alice", authzid=BOB.encode())
        assert_fails(c, t, r)
        # the same connection can still log in properly
        r, t = gss_auth_retry(c, realm, "alice", t)
        assert_alice_mailbox(c, r, t)
        c.quit()


def test_authzid_unknown_user_refused(gserver, realm):
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "alice", authzid=b"nobody@" + DOMAIN.encode())
        assert_fails(c, t, r)
        c.quit()


def test_principal_without_pobox_user(gserver, realm):
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "carol")
        assert_fails(c, t, r)
        r, t = gss_auth(c, realm, "carol", authzid=ALICE.encode(), t=t)
        assert_fails(c, t, r)
        c.quit()


def test_instance_principal_refused(gserver, realm):
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "alice/admin")
        assert_fails(c, t, r)
        # not even when it asks for alice's mailbox
        r, t = gss_auth(c, realm, "alice/admin", authzid=ALICE.encode(), t=t)
        assert_fails(c, t, r)
        c.quit()


# ---------------------------------------------------------------- bad tokens

def _bad_token_then_login(server, realm, token, initial=False):
    assert not initial or fits_line(token)
    with server.connect() as c:
        t = Transcript()
        if initial:
            _send(c, t, b"AUTH GSSAPI " + _b64(token))
        else:
            _send(c, t, b"AUTH GSSAPI")
            r = _read(c, t)
            assert r == b"+ " or r == b"+", t
            _send(c, t, _b64(token))
        r = _read(c, t)
        assert_fails(c, t, r)
        assert server.alive(), t
        # a correct GSSAPI login in the same connection
        r, t = gss_auth_retry(c, realm, "alice", t)
        assert_alice_mailbox(c, r, t)
        c.quit()
    server.assert_alive()


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "no-initial-response"])
def test_garbage_token(gserver, realm, initial):
    _bad_token_then_login(gserver, realm, os.urandom(150), initial)


def test_garbage_with_krb5_token_header(gserver, realm):
    # RFC 2743 framing with the krb5 mechanism OID, AP-REQ tag, junk inside
    oid = bytes.fromhex("06092a864886f712010202")
    body = oid + b"\x01\x00" + os.urandom(120)
    token = b"\x60" + bytes([len(body)]) + body
    _bad_token_then_login(gserver, realm, token, True)


def test_truncated_token(gserver, realm):
    token = initiator(realm, "alice").step()
    _bad_token_then_login(gserver, realm, token[:len(token) // 2])


def test_ticket_for_another_service(gserver, realm):
    token = initiator(realm, "alice", host=OTHER_HOST).step()
    _bad_token_then_login(gserver, realm, token)


def test_ticket_of_another_realm(gserver, realm, other_realm_token):
    _bad_token_then_login(gserver, realm, other_realm_token)


def test_replayed_ap_req_refused(gserver, realm):
    """A captured first token (AP-REQ) sent again on a new connection must not
    log anybody in: the acceptor's replay cache refuses it (GSSAPI runs
    without TLS, so an eavesdropper has the token)."""
    with gserver.connect() as c:
        ctx = initiator(realm, "bob")
        token = ctx.step()
        t = Transcript()
        _send(c, t, b"AUTH GSSAPI")
        assert _read(c, t) == b"+ ", t
        _send(c, t, _b64(token))
        r = _read(c, t)
        assert r.startswith(b"+ "), t            # the server's AP-REP
        _send(c, t, b"*")
        r = _read(c, t)
        assert r.startswith(b"-ERR"), t
        c.quit()
    with gserver.connect() as c:
        t.append("--- new connection, same token")
        _send(c, t, b"AUTH GSSAPI")
        assert _read(c, t) == b"+ ", t
        _send(c, t, _b64(token))
        r = _read(c, t)
        if r.startswith(b"+ "):
            # the context went on: the replay was accepted by the acceptor;
            # carry it through as an attacker could not (no session key),
            # but a server must not have got this far
            _send(c, t, b"")
            r = _read(c, t)
        assert r == AUTH_FAILED, "replayed AP-REQ not refused\n%s" % t
        c.quit()


# ---------------------------------------------------------------- cancel

@pytest.mark.parametrize("cancel_at", [1, 2, 3], ids=["first-challenge", "context-token",
                                                       "security-layer"])
def test_cancel(gserver, realm, cancel_at):
    with gserver.connect() as c:
        # without initial response, challenge 1 is the empty one
        r, t = gss_auth(c, realm, "alice", cancel_at=cancel_at)
        assert r.startswith(b"-ERR"), "'*' at step %d: %r\n%s" % (cancel_at, r, t)
        assert c.cmd("STAT").startswith(b"-ERR"), t
        r, t = gss_auth_retry(c, realm, "alice", t)
        assert_alice_mailbox(c, r, t)
        c.quit()


def test_unoffered_security_layer_refused(gserver, realm):
    """Choosing a layer the server did not offer (integrity, bit 2) fails:
    pobox offers only "no security layer" and would not protect the session."""
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "alice", layer=b"\x02\x00\x10\x00")
        assert_fails(c, t, r)
        c.quit()
    gserver.assert_alive()


@pytest.mark.parametrize("answer", [
    lambda ctx: ctx.wrap(b"\x01", False).message,          # shorter than 4 octets
    lambda ctx: ctx.wrap(b"", False).message,               # empty
    lambda ctx: os.urandom(40),                             # not a wrap token
    lambda ctx: b"",                                        # nothing at all
    lambda ctx: ctx.wrap(b"\x01\x00\x00\x00", False).message[:-3],   # cut short
], ids=["short", "empty-wrapped", "garbage", "empty", "truncated"])
def test_bad_security_layer_answer(gserver, realm, answer):
    with gserver.connect() as c:
        r, t = gss_auth(c, realm, "alice", answer=answer)
        assert_fails(c, t, r)
        r, t = gss_auth_retry(c, realm, "alice", t)
        assert_alice_mailbox(c, r, t)
        c.quit()
    gserver.assert_alive()
