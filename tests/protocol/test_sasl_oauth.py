"""test_sasl_oauth.py — OAUTHBEARER (RFC 7628) and XOAUTH2 with JWT bearer
tokens checked against a JWKS file (auth.oauth_jwks, oauth_issuer,
oauth_audience, oauth_claim): valid RS256 and ES256 tokens log in; expired,
foreign, forged (bad signature, HS256 key confusion, alg none, unknown kid)
tokens get the JSON error challenge and then -ERR [AUTH]; no impersonation
through a= / user=; key rotation by rewriting the JWKS file."""

import json
import os
import re
import time

import pytest

from pobox_harness import make_message
from sasl_client import (OAUTHBEARER_ERROR_ACK, Exchange, is_challenge, sasl_mechs,
                         oauthbearer_message, xoauth2_message)
from sasl_fixtures import TokenIssuer

FAILED = b"-ERR [AUTH] Authentication failed"
UNSUPPORTED = b"-ERR Unsupported authentication mechanism"
PLAINTEXT_REFUSED_RE = re.compile(rb"^-ERR \[AUTH\] Plaintext authentication (is )?disallowed\b.*STLS")
TLS_MECHS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
             "OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN"]


class Env:
    pass


@pytest.fixture(scope="module")
def env(server_factory, tmp_path_factory):
    e = Env()
    e.issuer = TokenIssuer(tmp_path_factory.mktemp("sasl_oauth_keys"))
    auth = {"plaintext_without_tls": "no", "failure_delay": "0"}
    auth.update(e.issuer.config())
    e.server = server_factory({"auth": auth})
    e.alice = e.server.add_user()[0]
    e.bob = e.server.add_user()[0]
    e.server.deliver(e.alice, make_message("for alice"))
    return e


def connect(env, how="pop3s"):
    if how == "pop3s":
        return env.server.connect_tls()
    c = env.server.connect()
    assert c.starttls().startswith(b"+OK")
    return c


def bearer(c, mech, message):
    """AUTH mech, empty challenge, the message (tokens are longer than the
    255-octet AUTH line allows for an initial response). Returns
    (reply, Exchange)."""
    ex = Exchange(c)
    r = ex.start(mech)
    assert r == b"+ ", "expected an empty challenge: %r\n%s" % (r, ex.transcript())
    return ex.respond(message), ex


def expect_refused(mech, r, ex, status=None):
    """A refused token: the JSON error challenge, the client's dummy answer,
    then the failure reply. Returns the decoded JSON."""
    assert is_challenge(r) and r != b"+ ", \
        "expected a JSON error challenge: %r\n%s" % (r, ex.transcript())
    try:
        err = json.loads(ex.challenge(r))
    except ValueError:
        raise AssertionError("error challenge is not JSON:\n" + ex.transcript())
    assert isinstance(err, dict) and "status" in err, err
    if status:
        assert err["status"] == status, err
    r = ex.respond(OAUTHBEARER_ERROR_ACK if mech == "OAUTHBEARER" else "")
    assert r == FAILED, ex.transcript()
    return err


def expect_failure(mech, r, ex):
    """Failed one way or the other: directly, or via the error challenge."""
    if is_challenge(r):
        expect_refused(mech, r, ex)
    else:
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()


def message_for(mech, env, token, user=None, c=None):
    if mech == "OAUTHBEARER":
        return oauthbearer_message(token, user, port=c.port if c else None)
    return xoauth2_message(user if user is not None else env.alice, token)


# ---------------------------------------------------------------- availability

def test_offered_on_tls_only(env):
    with env.server.connect() as c:
        assert sasl_mechs(c.capa()) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        for mech in ("OAUTHBEARER", "XOAUTH2"):
            r = c.cmd("AUTH " + mech)
            assert PLAINTEXT_REFUSED_RE.match(r), r
        assert c.starttls().startswith(b"+OK")
        assert sasl_mechs(c.capa()) == TLS_MECHS
    with env.server.connect_tls() as c:
        assert sasl_mechs(c.capa()) == TLS_MECHS


def test_not_offered_without_jwks(server_factory):
    srv = server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}})
    with srv.connect_tls() as c:
        mechs = sasl_mechs(c.capa())
        assert "OAUTHBEARER" not in mechs and "XOAUTH2" not in mechs, mechs
        assert c.cmd("AUTH OAUTHBEARER").startswith(UNSUPPORTED)
        assert c.cmd("AUTH XOAUTH2").startswith(UNSUPPORTED)


# ---------------------------------------------------------------- valid tokens

@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("with_authzid", [True, False], ids=["a=user", "no-a="])
@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_oauthbearer_valid_token(env, alg, with_authzid, how):
    with connect(env, how) as c:
        tok = env.issuer.token(env.alice, alg=alg)
        r, ex = bearer(c, "OAUTHBEARER", oauthbearer_message(
            tok, env.alice if with_authzid else None, port=c.port))
        assert r.startswith(b"+OK Logged in: 1 messages"), ex.transcript()
        assert c.stat()[0] == 1
        c.quit()


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_xoauth2_valid_token(env, alg, how):
    with connect(env, how) as c:
        tok = env.issuer.token(env.bob, alg=alg)
        r, ex = bearer(c, "XOAUTH2", xoauth2_message(env.bob, tok))
        assert r.startswith(b"+OK Logged in: 0 messages"), ex.transcript()
        c.quit()


def test_oauthbearer_minimal_message(env):
    """Only the required parts: no host/port, no a=."""
    with connect(env) as c:
        tok = env.issuer.token(env.bob, alg="ES256")
        r, ex = bearer(c, "OAUTHBEARER", oauthbearer_message(tok, None, host=None))
        assert r.startswith(b"+OK Logged in"), ex.transcript()
        c.quit()


# ---------------------------------------------------------------- refused tokens

def ghost():
    return "nobody-%d@example.org" % os.getpid()


def claimed(env, kind):
    """The a= / user= that goes with a bad token: alice, except for the
    token of a user that does not exist, which names itself."""
    return ghost() if kind == "no-such-user" else env.alice


def bad_tokens(env):
    iss, alice = env.issuer, env.alice
    now = int(time.time())
    return {
        "expired": iss.token(alice, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "expired-es256": iss.token(alice, alg="ES256", exp=now - 600, iat=now - 900,
                                   nbf=now - 900),
        "wrong-audience": iss.token(alice, aud="someone-else"),
        "wrong-issuer": iss.token(alice, iss="https://evil.example.net/"),
        "bad-signature": iss.token(alice, key=iss.other_rsa),
        "ec-key-for-rsa-kid": iss.token(alice, alg="ES256", kid=iss.RSA_KID),
        "hs256-with-public-key": iss.hs256_with_public_key(alice),
        "alg-none": iss.alg_none(alice),
        "unknown-kid": iss.token(alice, kid="no-such-key"),
        "no-exp": iss.token(alice, exp=None),
        "not-yet-valid": iss.token(alice, nbf=now + 3600),
        "no-such-user": iss.token(ghost()),
        "no-email-claim": iss.token(alice, email=None),
        "not-a-jwt": "not-a-jwt",
        "truncated": iss.token(alice)[:-20],
        "empty-signature": iss.token(alice).rsplit(".", 1)[0] + ".",
    }


BAD = ["expired", "expired-es256", "wrong-audience", "wrong-issuer", "bad-signature",
       "ec-key-for-rsa-kid", "hs256-with-public-key", "alg-none", "unknown-kid", "no-exp",
       "not-yet-valid", "no-such-user", "no-email-claim", "not-a-jwt", "truncated",
       "empty-signature"]


@pytest.mark.parametrize("kind", BAD)
def test_oauthbearer_refused_token(env, kind):
    tok = bad_tokens(env)[kind]
    with connect(env) as c:
        r, ex = bearer(c, "OAUTHBEARER", oauthbearer_message(tok, claimed(env, kind),
                                                             port=c.port))
        expect_refused("OAUTHBEARER", r, ex, status="invalid_token")
        assert c.cmd("STAT").startswith(b"-ERR")
        # the session goes on: a valid token works
        r, ex = bearer(c, "OAUTHBEARER", oauthbearer_message(
            env.issuer.token(env.alice), env.alice, port=c.port))
        assert r.startswith(b"+OK Logged in"), ex.transcript()
        c.quit()


@pytest.mark.parametrize("kind", BAD)
def test_xoauth2_refused_token(env, kind):
    tok = bad_tokens(env)[kind]
    with connect(env) as c:
        r, ex = bearer(c, "XOAUTH2", xoauth2_message(claimed(env, kind), tok))
        expect_refused("XOAUTH2", r, ex)
        assert c.cmd("STAT").startswith(b"-ERR")
        c.quit()


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_token_of_another_user_is_refused(env, mech):
    """Bob's valid token with a= / user= naming alice."""
    tok = env.issuer.token(env.bob)
    with connect(env) as c:
        r, ex = bearer(c, mech, message_for(mech, env, tok, user=env.alice, c=c))
        expect_failure(mech, r, ex)
        assert c.cmd("STAT").startswith(b"-ERR"), "logged in as someone else"
        c.quit()


def test_cancel_error_challenge(env):
    with connect(env) as c:
        r, ex = bearer(c, "OAUTHBEARER", oauthbearer_message(
            bad_tokens(env)["expired"], None, port=c.port))
        assert is_challenge(r), ex.transcript()
        assert ex.respond("*").startswith(b"-ERR"), ex.transcript()
        assert c.capa()


def test_valid_token_after_error_challenge_still_fails(env):
    """RFC 7628 3.2.3: after the error challenge the exchange can only
    fail, whatever the client sends."""
    with connect(env) as c:
        r, ex = bearer(c, "OAUTHBEARER", oauthbearer_message(
            bad_tokens(env)["wrong-issuer"], None, port=c.port))
        assert is_challenge(r), ex.transcript()
        r = ex.respond(oauthbearer_message(env.issuer.token(env.alice), None, port=c.port))
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert c.cmd("STAT").startswith(b"-ERR")


# ---------------------------------------------------------------- malformed messages

@pytest.mark.parametrize("msg", [
    b"",
    b"n,,",
    b"n,,\x01\x01",
    b"n,,\x01auth=Bearer\x01\x01",
    b"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01",
    b"n,,\x01auth=Bearer %(t)s",                            # no final \x01\x01
    b"\x01auth=Bearer %(t)s\x01\x01",                       # no GS2 header
    b"p=tls-unique,,\x01auth=Bearer %(t)s\x01\x01",         # channel binding: not in OAUTHBEARER
    b"y,,\x01auth=Bearer %(t)s\x01\x01",
    b"n,a=,\x01auth=Bearer %(t)s\x01\x01",
    b"n,,\x01auth=Bearer %(t)s\x01auth=Bearer %(t)s\x01\x01",
    b"n,,\x01host=\x00evil\x01auth=Bearer %(t)s\x01\x01",
    b"n,,\x01" + b"k=v\x01" * 2000 + b"auth=Bearer %(t)s\x01\x01",
])
def test_oauthbearer_malformed_messages(env, msg):
    tok = env.issuer.token(env.alice).encode()
    data = msg % {b"t": tok} if b"%(t)s" in msg else msg
    with connect(env) as c:
        r, ex = bearer(c, "OAUTHBEARER", data)
        if r.startswith(b"+OK"):
            # two things RFC 7628 allows a lenient server to accept
            assert msg in (b"y,,\x01auth=Bearer %(t)s\x01\x01",
                           b"n,,\x01" + b"k=v\x01" * 2000 + b"auth=Bearer %(t)s\x01\x01"), \
                "malformed message accepted:\n" + ex.transcript()
            c.quit()
            return
        expect_failure("OAUTHBEARER", r, ex)


@pytest.mark.parametrize("msg", [
    b"",
    b"user=%(u)s\x01\x01",
    b"auth=Bearer %(t)s\x01\x01",
    b"user=%(u)s\x01auth=Bearer %(t)s",
    b"user=%(u)s\x01auth=Basic %(t)s\x01\x01",
])
def test_xoauth2_malformed_messages(env, msg):
    tok = env.issuer.token(env.alice).encode()
    data = msg % {b"t": tok, b"u": env.alice.encode()} if b"%(" in msg else msg
    with connect(env) as c:
        r, ex = bearer(c, "XOAUTH2", data)
        expect_failure("XOAUTH2", r, ex)
        assert c.cmd("STAT").startswith(b"-ERR")


# ---------------------------------------------------------------- the JWKS file

@pytest.fixture(scope="module")
def rotating(server_factory, tmp_path_factory):
    """A server of its own whose JWKS file the tests rewrite; the user
    claim is "upn" here (auth.oauth_claim)."""
    iss = TokenIssuer(tmp_path_factory.mktemp("sasl_oauth_rotating"))
    auth = {"plaintext_without_tls": "no", "failure_delay": "0", "oauth_claim": "upn"}
    auth.update(iss.config())
    srv = server_factory({"auth": auth})
    user = srv.add_user()[0]
    return srv, iss, user


def upn_token(iss, user, **kw):
    return iss.token("x@y.invalid", upn=user, **kw)


def login_with(srv, mech, msg_fn, on_failure=None):
    """One attempt on a new pop3s connection; on_failure(reply, Exchange)
    runs before the connection closes."""
    with srv.connect_tls() as c:
        ex = Exchange(c)
        assert ex.start(mech) == b"+ ", ex.transcript()
        r = ex.respond(msg_fn(c))
        ok = r.startswith(b"+OK Logged in")
        if ok:
            c.quit()
        elif on_failure:
            on_failure(r, ex)
        return r, ex, ok


def test_oauth_claim_setting(rotating):
    srv, iss, user = rotating
    r, ex, ok = login_with(srv, "XOAUTH2", lambda c: xoauth2_message(user, upn_token(iss, user)))
    assert ok, ex.transcript()
    # the email claim does not count on this server
    tok = iss.token(user, upn=None)
    r, ex, ok = login_with(srv, "XOAUTH2", lambda c: xoauth2_message(user, tok),
                           lambda r, ex: expect_refused("XOAUTH2", r, ex))
    assert not ok


def test_jwks_key_rotation_without_restart(rotating):
    srv, iss, user = rotating
    from cryptography.hazmat.primitives.asymmetric import rsa
    from sasl_fixtures import jwk_of
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old_tok = upn_token(iss, user)
    new_tok = upn_token(iss, user, key=new_key, kid="rsa-2")
    r, ex, ok = login_with(srv, "OAUTHBEARER", lambda c: oauthbearer_message(new_tok, user),
                           lambda r, ex: expect_refused("OAUTHBEARER", r, ex, "invalid_token"))
    assert not ok, "token of a key not in the JWKS accepted"
    # the provider rotates: the file now holds only the new key
    tmp = iss.jwks_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": [jwk_of(new_key.public_key(), "rsa-2")]}))
    os.rename(tmp, iss.jwks_path)
    deadline = time.monotonic() + 5
    while True:
        r, ex, ok = login_with(srv, "OAUTHBEARER", lambda c: oauthbearer_message(new_tok, user))
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert ok, "new JWKS not picked up:\n" + ex.transcript()
    r, ex, ok = login_with(srv, "OAUTHBEARER", lambda c: oauthbearer_message(old_tok, user))
    assert not ok, "token of a removed key still accepted"


def test_jwks_unreadable_is_a_temporary_failure(rotating):
    srv, iss, user = rotating
    saved = iss.jwks_path.read_bytes()
    os.unlink(iss.jwks_path)
    try:
        tok = upn_token(iss, user)
        for mech, fn in (("OAUTHBEARER", lambda c: oauthbearer_message(tok, user)),
                         ("XOAUTH2", lambda c: xoauth2_message(user, tok))):
            r, ex, ok = login_with(srv, mech, fn)
            assert r.startswith(b"-ERR [SYS/TEMP]"), ex.transcript()
        # garbage in the file: the same
        iss.jwks_path.write_text("{ not json")
        r, ex, ok = login_with(srv, "XOAUTH2", lambda c: xoauth2_message(user, tok))
        assert r.startswith(b"-ERR [SYS/TEMP]"), ex.transcript()
    finally:
        iss.jwks_path.write_bytes(saved)
    srv.assert_alive()
