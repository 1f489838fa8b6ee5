"""test_sasl_external.py — SASL EXTERNAL (RFC 4422 appendix A) with TLS
client certificates (tls.client_ca): offered only on TLS with a certificate
that verified against the configured CA, the identity taken from the
certificate (subjectAltName email, subject emailAddress, CN), no
impersonation through the authzid, and certificates never required."""

import ssl

import pytest

from pobox_harness import make_message, tls_client_context, to_wire
from sasl_client import Exchange, plain_message, sasl_mechs, scram_login
from sasl_fixtures import ClientCA

FAILED = b"-ERR [AUTH] Authentication failed"
UNSUPPORTED = b"-ERR Unsupported authentication mechanism"

WITH_EXTERNAL = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
                 "EXTERNAL", "PLAIN", "LOGIN"]
WITHOUT_EXTERNAL = [m for m in WITH_EXTERNAL if m != "EXTERNAL"]


class Env:
    pass


@pytest.fixture(scope="module")
def env(server_factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("sasl_external_pki")
    e = Env()
    e.ca = ClientCA(d / "ca", "pobox users CA")
    e.rogue = ClientCA(d / "rogue", "someone else's CA")
    e.server = server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
                               "tls": {"client_ca": str(e.ca.pem_path)}})
    srv = e.server
    # one user per kind of certificate, each with a different number of
    # messages so that STAT tells whose mailbox a login opened
    e.users = {}
    for n, kind in enumerate(["email", "san", "cn", "both_san", "both_subject",
                              "upper"], start=1):
        user, pw = srv.add_user()
        for i in range(n):
            srv.deliver(user, make_message("%s %d" % (kind, i)))
        e.users[kind] = (user, pw, n)
    ca = e.ca
    e.certs = {
        "email": ca.client_cert("email", cn="Email Person", email=e.users["email"][0]),
        "san": ca.client_cert("san", cn="SAN Person", san_email=e.users["san"][0]),
        "cn": ca.client_cert("cn", cn=e.users["cn"][0]),
        # SAN first, then the subject's emailAddress (docs/auth.md)
        "both": ca.client_cert("both", cn="Both", san_email=e.users["both_san"][0],
                               email=e.users["both_subject"][0]),
        "upper": ca.client_cert("upper", email=e.users["upper"][0].upper()),
        "unknown": ca.client_cert("unknown", email="nobody-here@example.org"),
        "expired": ca.client_cert("expired", email=e.users["email"][0], expired=True),
        "rogue": e.rogue.client_cert("rogue", email=e.users["email"][0]),
    }
    return e


def ctx_with(env, cert, **kw):
    ctx = tls_client_context(**kw)
    if cert:
        c, k = env.certs[cert]
        ctx.load_cert_chain(str(c), str(k))
    return ctx


def connect(env, cert, how="pop3s", **kw):
    srv = env.server
    if how == "pop3s":
        return srv.connect_tls(context=ctx_with(env, cert, **kw))
    c = srv.connect()
    r = c.starttls(ctx_with(env, cert, **kw))
    assert r.startswith(b"+OK"), r
    return c


def expect_login_as(env, c, r, ex, who):
    user, _, n = env.users[who]
    assert r.startswith(b"+OK Logged in: %d messages" % n), \
        "expected a login as %s (%d messages): %r\n%s" % (user, n, r, ex.transcript())
    assert c.stat()[0] == n


# ---------------------------------------------------------------- offered or not

@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_external_offered_with_verified_certificate(env, how):
    with connect(env, "email", how) as c:
        assert sasl_mechs(c.capa()) == WITH_EXTERNAL
        st = c.cmd("AUTH")
        assert st.startswith(b"+OK"), st
        assert [l.decode() for l in c.read_multi()] == WITH_EXTERNAL


@pytest.mark.parametrize("cert", [None, "rogue", "expired"])
def test_external_not_offered_without_a_verified_certificate(env, cert):
    """No certificate, one from another CA, an expired one: the TLS
    connection works, EXTERNAL is neither offered nor accepted, and the other
    mechanisms work."""
    user, pw, n = env.users["email"]
    with connect(env, cert) as c:
        assert c.greeting.startswith(b"+OK"), c.greeting
        assert sasl_mechs(c.capa()) == WITHOUT_EXTERNAL
        ex = Exchange(c)
        assert ex.start("EXTERNAL", b"").startswith(UNSUPPORTED), ex.transcript()
        assert ex.start("EXTERNAL").startswith(UNSUPPORTED), ex.transcript()
        assert ex.start("EXTERNAL", user.encode()).startswith(UNSUPPORTED), ex.transcript()
        r = ex.start("PLAIN", plain_message(user, pw))
        assert r.startswith(b"+OK Logged in: %d messages" % n), ex.transcript()
        c.quit()


def test_external_not_offered_on_plain_connection(env):
    with env.server.connect() as c:
        assert sasl_mechs(c.capa()) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        assert c.cmd("AUTH EXTERNAL =").startswith(UNSUPPORTED)


def test_scram_works_on_a_connection_without_certificate(env):
    user, pw, n = env.users["san"]
    with connect(env, None) as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw)
        assert r.startswith(b"+OK Logged in: %d messages" % n), ex.transcript()
        c.quit()


# ---------------------------------------------------------------- logging in

@pytest.mark.parametrize("cert,who", [("email", "email"), ("san", "san"), ("cn", "cn"),
                                      ("both", "both_san"), ("upper", "upper")])
@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_external_logs_in_as_the_certificate_user(env, cert, who, how):
    with connect(env, cert, how) as c:
        ex = Exchange(c)
        r = ex.start("EXTERNAL", b"")              # "AUTH EXTERNAL ="
        expect_login_as(env, c, r, ex, who)
        assert c.quit().startswith(b"+OK")


def test_external_over_tls12(env):
    with connect(env, "san", maximum=ssl.TLSVersion.TLSv1_2) as c:
        assert c.sock.version() == "TLSv1.2"
        ex = Exchange(c)
        expect_login_as(env, c, ex.start("EXTERNAL", b""), ex, "san")
        c.quit()


def test_external_without_initial_response(env):
    """AUTH EXTERNAL, an empty challenge, an empty response."""
    with connect(env, "email") as c:
        ex = Exchange(c)
        assert ex.start("EXTERNAL") == b"+ ", ex.transcript()
        expect_login_as(env, c, ex.respond(""), ex, "email")
        c.quit()


def test_external_authzid_equal_to_certificate_user(env):
    user = env.users["san"][0]
    with connect(env, "san") as c:
        ex = Exchange(c)
        expect_login_as(env, c, ex.start("EXTERNAL", user.encode()), ex, "san")
        c.quit()


@pytest.mark.parametrize("initial", [True, False])
def test_external_authzid_of_another_user_is_refused(env, initial):
    victim = env.users["cn"][0]
    with connect(env, "email") as c:
        ex = Exchange(c)
        if initial:
            r = ex.start("EXTERNAL", victim.encode())
        else:
            assert ex.start("EXTERNAL") == b"+ ", ex.transcript()
            r = ex.respond(victim.encode())
        assert r == FAILED, ex.transcript()
        assert c.cmd("STAT").startswith(b"-ERR"), "logged in as someone"
        # the same connection can still log in as itself
        expect_login_as(env, c, ex.start("EXTERNAL", b""), ex, "email")
        c.quit()


def test_external_with_subject_email_not_chosen_over_san(env):
    """The 'both' certificate names two users; only the SAN one is its
    identity, the subject emailAddress is not an allowed authzid."""
    other = env.users["both_subject"][0]
    with connect(env, "both") as c:
        ex = Exchange(c)
        assert ex.start("EXTERNAL", other.encode()) == FAILED, ex.transcript()
        c.quit()


def test_external_certificate_of_unknown_user(env):
    with connect(env, "unknown") as c:
        assert "EXTERNAL" in sasl_mechs(c.capa())
        ex = Exchange(c)
        assert ex.start("EXTERNAL", b"") == FAILED, ex.transcript()
        c.quit()


def test_external_malformed_authzid(env):
    with connect(env, "email") as c:
        ex = Exchange(c)
        r = ex.start("EXTERNAL", "!!!!")
        assert r.startswith(b"-ERR [AUTH]") and b"base64" in r.lower(), ex.transcript()
        r = ex.start("EXTERNAL", b"\0" + env.users["email"][0].encode())
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        expect_login_as(env, c, ex.start("EXTERNAL", b""), ex, "email")
        c.quit()


def test_external_reads_the_same_mailbox_as_plain(env):
    user, pw, n = env.users["email"]
    with connect(env, "email") as c:
        ex = Exchange(c)
        expect_login_as(env, c, ex.start("EXTERNAL", b""), ex, "email")
        body = c.retr(1)
        c.quit()
    files = env.server.message_files(user)
    assert body in [to_wire(f.read_bytes()) for f in files]
