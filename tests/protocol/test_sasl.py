"""test_sasl.py — POP3 AUTH (RFC 5034, RFC 4422, RFC 3206): which mechanisms
are offered where (CAPA SASL, AUTH without argument), PLAIN, LOGIN, CRAM-MD5,
SCRAM-SHA-1/256 with and without channel binding (tls-unique on TLS 1.2,
tls-exporter on TLS 1.3), cancel, bad input, the AUTH line limit, the
plaintext-before-TLS refusal, failure counting and delays, the idle timeout
in the middle of an exchange, and mechanism switching (CVE-2011-1720 class).

EXTERNAL is in test_sasl_external.py, OAUTHBEARER/XOAUTH2 in
test_sasl_oauth.py, GSSAPI elsewhere. Client side: tests/sasl_client.py."""

import base64
import os
import re
import ssl
import subprocess
import time

import pytest

from pobox_harness import make_message, resp_code, tls_client_context, to_wire
from sasl_client import (LOGIN_PASSWORD_CHALLENGE, LOGIN_USER_CHALLENGE,
                         CRAM_CHALLENGE_RE, Exchange, ScramClient, b64,
                         channel_binding, cram_md5_response, is_challenge,
                         plain_message, sasl_mechs, scram_login)

ITERATIONS = 4567       # auth.scram_iterations of the module's server

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0",
                          "scram_iterations": str(ITERATIONS)}}

FAILED = b"-ERR [AUTH] Authentication failed"
UNSUPPORTED = b"-ERR Unsupported authentication mechanism"
# the reply to a plaintext mechanism before TLS (as for USER/PASS)
PLAINTEXT_REFUSED_RE = re.compile(rb"^-ERR \[AUTH\] Plaintext authentication (is )?disallowed\b.*STLS")
LOGGED_IN_RE = re.compile(rb"^\+OK Logged in: (\d+) messages \((\d+) octets\)$")

ALL_PLAIN = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN"]
ALL_TLS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
           "PLAIN", "LOGIN"]

TLS12 = dict(context=tls_client_context(maximum=ssl.TLSVersion.TLSv1_2))


# ---------------------------------------------------------------- helpers

def connect(server, how, **kw):
    """A connection in AUTHORIZATION state: 'pop3' (plain), 'pop3s'
    (implicit TLS, TLS 1.3), 'stls' (pop3 + STLS, TLS 1.3) or 'tls12'
    (pop3s limited to TLS 1.2)."""
    if how == "pop3":
        return server.connect(**kw)
    if how == "pop3s":
        return server.connect_tls(**kw)
    if how == "tls12":
        c = server.connect_tls(**TLS12)
        assert c.sock.version() == "TLSv1.2", c.sock.version()
        return c
    if how == "stls":
        c = server.connect(**kw)
        r = c.starttls()
        assert r.startswith(b"+OK"), r
        return c
    raise ValueError(how)


def auth_list(c):
    """AUTH without argument: (status line, mechanism lines)."""
    st = c.cmd("AUTH")
    if not st.startswith(b"+OK"):
        return st, None
    return st, [l.decode("latin-1") for l in c.read_multi()]


def assert_logged_in(r, ex=None, messages=None, octets=None):
    m = LOGGED_IN_RE.match(r)
    assert m, "not logged in: %r\n%s" % (r, ex.transcript() if ex else "")
    if messages is not None:
        assert (int(m.group(1)), int(m.group(2))) == (messages, octets), r


def assert_failed(r, ex=None):
    assert r == FAILED, "expected %r, got %r\n%s" % (FAILED, r, ex.transcript() if ex else "")


def plain(c, user, pw, authzid="", initial=True):
    ex = Exchange(c)
    msg = plain_message(user, pw, authzid)
    if initial:
        return ex.start("PLAIN", msg), ex
    r = ex.start("PLAIN")
    assert r == b"+ ", "PLAIN without initial response: expected an empty " \
                       "challenge '+ ', got %r" % r
    return ex.respond(msg), ex


def plain_retry(c, user, pw, seconds=5):
    """PLAIN, retried while the maildrop is still locked by this user's
    session that has just ended (QUIT on another connection)."""
    deadline = time.monotonic() + seconds
    while True:
        r, ex = plain(c, user, pw)
        if resp_code(r) != "IN-USE" or time.monotonic() > deadline:
            return r, ex
        time.sleep(0.2)


def login_mech(c, user, pw, initial=False):
    ex = Exchange(c)
    if initial:
        r = ex.start("LOGIN", user.encode())
    else:
        r = ex.start("LOGIN")
        assert ex.challenge(r) == LOGIN_USER_CHALLENGE, ex.transcript()
        r = ex.respond(user.encode())
    if not is_challenge(r):
        return r, ex
    assert ex.challenge(r) == LOGIN_PASSWORD_CHALLENGE, ex.transcript()
    return ex.respond(pw.encode()), ex


def assert_session_goes_on(c, user=None, pw=None):
    """CAPA answers normally (no exchange left over), and when given, a
    correct PLAIN login works on this same connection."""
    assert c.capa()
    if user:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        assert c.stat()[0] >= 0


def write_users_line(server, line):
    """Adds a raw line to data_dir/users the way an admin importing
    Dovecot users would (temp file + rename)."""
    users = server.data_dir / "users"
    old = users.read_text() if users.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    tmp = server.data_dir / "users.test-tmp"
    tmp.write_text(old + line + "\n")
    os.rename(tmp, users)


@pytest.fixture(scope="module")
def alice(server):
    """A user with two messages."""
    user, pw = server.add_user()
    msgs = [make_message("sasl one", b"first\n"), make_message("sasl two", b"second\n.dot\n")]
    for m in msgs:
        server.deliver(user, m)
    return user, pw, len(msgs), sum(len(to_wire(m)) for m in msgs)


# ---------------------------------------------------------------- the test client itself

@pytest.mark.parametrize("hash_name,cnonce,server_first,client_final,server_final", [
    # RFC 5802 section 5
    ("SHA-1", "fyko+d2lbbFgONRv9qkxdawL",
     b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
     b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
     b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
    # RFC 7677 section 3
    ("SHA-256", "rOprNGfwEbeRWgbNEkqO",
     b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
     b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
])
def test_scram_client_against_rfc_vectors(hash_name, cnonce, server_first, client_final,
                                          server_final):
    """tests/sasl_client.py reproduces the RFC examples (no server needed)."""
    sc = ScramClient(hash_name, "user", "pencil", nonce=cnonce)
    assert sc.client_first() == b"n,,n=user,r=" + cnonce.encode()
    assert sc.client_final_for(server_first) == client_final
    sc.verify_server_final(server_final)


def test_cram_md5_client_against_rfc_vector():
    """RFC 2195 section 2."""
    assert cram_md5_response("tim", "tanstaaftanstaaf",
                             b"<1896.697170952@postoffice.reston.mci.net>") == \
        b"tim b913a602c7eda7a495b4e6e7334d3890"


# ---------------------------------------------------------------- availability

def test_capa_sasl_on_plain_listener(server):
    with server.connect() as c:
        assert sasl_mechs(c.capa()) == ALL_PLAIN


@pytest.mark.parametrize("how", ["pop3s", "stls", "tls12"])
def test_capa_sasl_on_tls_adds_plus_variants(server, how):
    with connect(server, how) as c:
        assert sasl_mechs(c.capa()) == ALL_TLS


@pytest.mark.parametrize("how", ["pop3", "pop3s", "stls"])
def test_auth_without_argument_lists_capa_mechanisms(server, how):
    with connect(server, how) as c:
        capa = sasl_mechs(c.capa())
        st, mechs = auth_list(c)
        assert st.startswith(b"+OK"), st
        assert mechs == capa, (mechs, capa)
        # the list ended with '.', the session goes on
        assert c.cmd("NOOP").startswith(b"-ERR")       # NOOP is TRANSACTION only
        assert c.capa()


def test_auth_is_case_insensitive_and_initial_response_form(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r = c.cmd("auth plain " + b64(plain_message(user, pw)))
        assert_logged_in(r)
        c.quit()


@pytest.mark.parametrize("mech", ["CRAM-MD5", "GSSAPI", "EXTERNAL", "OAUTHBEARER",
                                  "XOAUTH2", "DIGEST-MD5", "NTLM", "ANONYMOUS",
                                  "SCRAM-SHA-512", "SCRAM-SHA-256-PLUS",
                                  "SCRAM-SHA-1-PLUS", "X" * 40, "PLAIN-"])
def test_unknown_or_unusable_mechanism_refused(server, mech):
    """Not configured (CRAM-MD5), no keytab (GSSAPI), no client certificate
    (EXTERNAL), no JWKS (OAUTHBEARER, XOAUTH2), -PLUS without TLS, unknown
    names: all refused the same way, with and without initial response."""
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start(mech).startswith(UNSUPPORTED), ex.transcript()
        assert ex.start(mech, b"x").startswith(UNSUPPORTED), ex.transcript()
        assert ex.start(mech, "=").startswith(UNSUPPORTED), ex.transcript()
        # nothing started: CAPA is answered as a command
        assert sasl_mechs(c.capa()) == ALL_PLAIN


def test_plus_mechanisms_refused_on_plain_listener_but_work_on_tls(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw, cbflag="p",
                               cb_type="tls-exporter", cb_data=b"\0" * 32)
        assert r.startswith(UNSUPPORTED), ex.transcript()
    with server.connect_tls() as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_auth_after_login_is_refused(server):
    user, pw = server.add_user()
    with server.connect() as c:
        assert_logged_in(plain(c, user, pw)[0])
        for line in ("AUTH", "AUTH PLAIN", "AUTH PLAIN " + b64(plain_message(user, pw)),
                     "AUTH SCRAM-SHA-256"):
            r = c.cmd(line)
            assert r.startswith(b"-ERR"), (line, r)
        # no exchange was started: the session is still in TRANSACTION
        assert c.stat() == (0, 0)
        assert c.quit().startswith(b"+OK")


# ---------------------------------------------------------------- PLAIN

@pytest.mark.parametrize("how", ["pop3", "pop3s", "stls"])
def test_plain_with_initial_response(server, how):
    user, pw = server.add_user()
    msgs = [make_message("p1"), make_message("p2", b"x" * 1000 + b"\n")]
    for m in msgs:
        server.deliver(user, m)
    octets = sum(len(to_wire(m)) for m in msgs)
    with connect(server, how) as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex, 2, octets)
        assert c.stat() == (2, octets)
        assert c.retr(2) == to_wire(msgs[1])
        assert c.quit().startswith(b"+OK")


@pytest.mark.parametrize("how", ["pop3", "pop3s"])
def test_plain_without_initial_response(server, how):
    user, pw = server.add_user()
    with connect(server, how) as c:
        r, ex = plain(c, user, pw, initial=False)
        assert_logged_in(r, ex, 0, 0)
        assert c.stat() == (0, 0)
        c.quit()


def test_plain_authzid_equal_to_user(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex = plain(c, user, pw, authzid=user)
        assert_logged_in(r, ex)
        c.quit()


def test_plain_authzid_of_another_user_is_refused(server, alice):
    """No impersonation: bob's password with authzid alice fails, and bob
    does not get alice's (or his own) mailbox."""
    bob, bob_pw = server.add_user()
    with server.connect() as c:
        r, ex = plain(c, bob, bob_pw, authzid=alice[0])
        assert_failed(r, ex)
        assert c.cmd("STAT").startswith(b"-ERR")
        # the session goes on
        r, ex = plain(c, bob, bob_pw)
        assert_logged_in(r, ex, 0, 0)
        c.quit()


def test_plain_wrong_password_and_unknown_user_same_reply(server):
    user, _ = server.add_user()
    with server.connect() as c:
        wrong_pw = plain(c, user, server.secret())[0]
        unknown = plain(c, "nosuch-%d@example.org" % os.getpid(), server.secret())[0]
        unknown_domain = plain(c, "x@unknown.invalid", server.secret())[0]
    assert wrong_pw == unknown == unknown_domain == FAILED, (wrong_pw, unknown, unknown_domain)


def test_plain_domain_part_is_case_insensitive(server):
    user, pw = server.add_user()
    local, domain = user.split("@")
    with server.connect() as c:
        r, ex = plain(c, local + "@" + domain.upper(), pw)
        assert_logged_in(r, ex)
        c.quit()


def test_plain_failure_then_success_on_same_connection(server, alice):
    user, pw, n, octets = alice
    with server.connect() as c:
        assert_failed(*plain(c, user, server.secret()))
        assert_failed(*plain(c, user, server.secret(), initial=False))
        r, ex = plain_retry(c, user, pw)
        assert_logged_in(r, ex, n, octets)
        c.quit()


def test_plain_same_reply_as_user_pass(server, alice):
    """'+OK Logged in: N messages (M octets)' as USER/PASS says it."""
    user, pw, n, octets = alice
    with server.session(user, pw) as c:
        via_pass = c.cmd("STAT")
        c.quit()
    with server.connect() as c:
        r, ex = plain_retry(c, user, pw)
        assert_logged_in(r, ex, n, octets)
        assert c.cmd("STAT") == via_pass
        c.quit()


# ---------------------------------------------------------------- LOGIN

@pytest.mark.parametrize("how", ["pop3", "pop3s"])
def test_login_mechanism(server, how):
    user, pw = server.add_user()
    server.deliver(user, make_message("login mech"))
    with connect(server, how) as c:
        r, ex = login_mech(c, user, pw)
        assert_logged_in(r, ex)
        assert c.stat()[0] == 1
        c.quit()


def test_login_mechanism_with_user_as_initial_response(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex = login_mech(c, user, pw, initial=True)
        assert_logged_in(r, ex)
        c.quit()


def test_login_mechanism_wrong_password(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex = login_mech(c, user, server.secret())
        assert_failed(r, ex)
        r, ex = login_mech(c, user, pw, initial=True)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- SCRAM

@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
@pytest.mark.parametrize("initial", [True, False], ids=["initial", "no-initial"])
@pytest.mark.parametrize("how", ["pop3", "pop3s"])
def test_scram(server, mech, initial, how):
    """The whole exchange; scram_login checks the server's v= signature
    against the one computed from the password."""
    user, pw = server.add_user()
    server.deliver(user, make_message("scram"))
    with connect(server, how) as c:
        r, ex, sc = scram_login(c, mech, user, pw, initial=initial)
        assert_logged_in(r, ex)
        assert sc.iterations == ITERATIONS, "i=%d, auth.scram_iterations is %d" % (
            sc.iterations, ITERATIONS)
        assert len(sc.salt) >= 8, "salt of %d octets" % len(sc.salt)
        assert c.stat()[0] == 1
        c.quit()


def test_scram_server_final_is_a_challenge_then_ok(server):
    """RFC 5034 section 4: the v= success data comes as a '+ ' challenge,
    the client answers with an empty line, then +OK."""
    user, pw = server.add_user()
    with server.connect() as c:
        sc = ScramClient("SHA-256", user, pw)
        ex = Exchange(c)
        r = ex.start("SCRAM-SHA-256", sc.client_first())
        r = ex.respond(sc.client_final_for(ex.challenge(r)))
        assert is_challenge(r), ex.transcript()
        sc.verify_server_final(ex.challenge(r))
        # not logged in before the empty answer
        r = ex.respond("")
        assert_logged_in(r, ex)
        c.quit()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
@pytest.mark.parametrize("how", ["pop3s", "stls", "tls12"])
def test_scram_plus(server, mech, how):
    """tls-exporter on TLS 1.3 (pop3s, STLS), tls-unique on TLS 1.2."""
    user, pw = server.add_user()
    with connect(server, how) as c:
        cb_type, cb_data = channel_binding(c.sock)
        assert cb_type == ("tls-unique" if how == "tls12" else "tls-exporter")
        r, ex, _ = scram_login(c, mech, user, pw, cb_type=cb_type, cb_data=cb_data)
        assert_logged_in(r, ex)
        c.quit()


@pytest.mark.parametrize("how", ["pop3s", "tls12"])
def test_scram_plus_wrong_channel_binding_data(server, how):
    user, pw = server.add_user()
    with connect(server, how) as c:
        cb_type, cb_data = channel_binding(c.sock)
        bad = bytes(b ^ 0xFF for b in cb_data)
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw, cb_type=cb_type,
                               cb_data=bad)
        assert_failed(r, ex)
        # the right binding works on the same connection
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_scram_plus_binding_of_another_connection(server):
    """The binding of connection A used on connection B (what a MITM
    relaying the exchange would have to send) fails."""
    user, pw = server.add_user()
    with server.connect_tls() as a, server.connect_tls() as b:
        _, data_a = channel_binding(a.sock)
        r, ex, _ = scram_login(b, "SCRAM-SHA-256-PLUS", user, pw,
                               cb_type="tls-exporter", cb_data=data_a)
        assert_failed(r, ex)


def test_scram_plus_tls_unique_on_tls13_fails(server):
    """RFC 9266: tls-unique is undefined for TLS 1.3."""
    user, pw = server.add_user()
    with server.connect_tls() as c:
        assert c.sock.version() == "TLSv1.3"
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw, cb_type="tls-unique",
                               cb_data=b"\0" * 12)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()


def test_scram_plus_without_binding_flag_fails(server):
    """A -PLUS mechanism with gs2 flag 'n' (RFC 5802 section 6)."""
    user, pw = server.add_user()
    with server.connect_tls() as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw, cbflag="n")
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
@pytest.mark.parametrize("how", ["pop3s", "tls12", "stls"])
def test_scram_y_flag_where_plus_is_offered_fails(server, mech, how):
    """Downgrade protection (RFC 5802 section 6): the client supports
    channel binding but thinks the server does not ('y'), while the server
    offers -PLUS on this connection: someone removed -PLUS from the list."""
    user, pw = server.add_user()
    with connect(server, how) as c:
        assert mech + "-PLUS" in sasl_mechs(c.capa())
        r, ex, _ = scram_login(c, mech, user, pw, cbflag="y")
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        # 'n' (no binding support) works on the same connection
        r, ex, _ = scram_login(c, mech, user, pw, cbflag="n")
        assert_logged_in(r, ex)
        c.quit()


def test_scram_y_flag_without_tls_works(server):
    """Without TLS the server offers no -PLUS, so 'y' is the honest answer."""
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, pw, cbflag="y")
        assert_logged_in(r, ex)
        c.quit()


def test_scram_p_flag_on_non_plus_mechanism_fails(server):
    """'p' says the client uses channel binding, which a non-PLUS mechanism
    cannot carry (RFC 5802 section 6)."""
    user, pw = server.add_user()
    with server.connect_tls() as c:
        cb_type, cb_data = channel_binding(c.sock)
        r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, pw, cbflag="p",
                               cb_type=cb_type, cb_data=cb_data)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_wrong_password(server, mech):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex, _ = scram_login(c, mech, user, server.secret())
        assert_failed(r, ex)
        r, ex, _ = scram_login(c, mech, user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_scram_tampered_proof(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, pw, proof_tamper=True)
        assert_failed(r, ex)


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_unknown_user_looks_normal_until_the_proof(server, mech):
    """No user enumeration: an unknown user gets a well-formed server-first
    message (fresh nonce, salt, the same iteration count as real users) and
    the same failure as a wrong password."""
    user, pw = server.add_user()
    ghost = "ghost-%d@example.org" % os.getpid()
    with server.connect() as c:
        sc = ScramClient(mech[6:], ghost, "whatever")
        ex = Exchange(c)
        r = ex.start(mech, sc.client_first())
        assert is_challenge(r), "no server-first for an unknown user:\n" + ex.transcript()
        final = sc.client_final_for(ex.challenge(r))     # checks r=, s=, i=
        assert sc.iterations == ITERATIONS, ex.transcript()
        r_ghost = ex.respond(final)
        assert_failed(r_ghost, ex)
    with server.connect() as c:
        r_wrong, ex, _ = scram_login(c, mech, user, server.secret())
    assert r_ghost == r_wrong == FAILED


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_unknown_user_salt_is_stable(server, mech):
    """A real user's salt is the same in every exchange; if an unknown
    user's salt changed from one exchange to the next, two AUTH attempts
    would tell that the user does not exist."""
    real, _ = server.add_user()
    ghost = "ghost2-%d@example.org" % os.getpid()

    def salt_of(name):
        with server.connect() as c:
            sc = ScramClient(mech[6:], name, "x")
            ex = Exchange(c)
            r = ex.start(mech, sc.client_first())
            sc.client_final_for(ex.challenge(r))
            assert ex.respond("*").startswith(b"-ERR"), ex.transcript()
            return sc.salt, sc.iterations

    assert salt_of(real) == salt_of(real)
    assert salt_of(ghost) == salt_of(ghost), "unknown user's salt changes between exchanges"
    assert len(salt_of(ghost)[0]) == len(salt_of(real)[0])


def test_scram_user_with_only_a_crypt_hash(server):
    """A user imported with a {SHA512-CRYPT} hash and no SCRAM keys: PLAIN,
    LOGIN and USER/PASS work, SCRAM fails (the server cannot derive SCRAM
    keys from a crypt hash) with the usual failure reply."""
    user = "crypt-%d@example.org" % os.getpid()
    pw = "Crypt-Only-Pw-%s" % os.urandom(3).hex()
    server.passwords.add(pw)
    h = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                       capture_output=True, check=True).stdout.decode().strip()
    assert h.startswith("$6$"), h
    write_users_line(server, "%s:{SHA512-CRYPT}%s" % (user, h))
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        with server.connect() as c:
            r, ex, _ = scram_login(c, mech, user, pw)
            assert_failed(r, ex)
    with server.connect() as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex, 0, 0)
        c.quit()
    with server.session(user, pw) as c:      # USER/PASS
        c.quit()
    with server.connect() as c:
        deadline = time.monotonic() + 5
        while True:
            r, ex = login_mech(c, user, pw)
            if resp_code(r) != "IN-USE" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert_logged_in(r, ex)
        c.quit()


def test_scram_replayed_conversation_fails(server):
    """An eavesdropper replays a recorded successful exchange (the same
    client-first, then the old client-final): the server's new nonce makes
    the old proof worthless."""
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex, sc = scram_login(c, "SCRAM-SHA-256", user, pw)
        assert_logged_in(r, ex)
        c.quit()
    with server.connect() as c:
        ex = Exchange(c)
        r = ex.start("SCRAM-SHA-256", sc.client_first())
        assert is_challenge(r), ex.transcript()
        assert ex.challenge(r) != sc.server_first, "server nonce reused:\n" + ex.transcript()
        r = ex.respond(sc.client_final)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert c.cmd("STAT").startswith(b"-ERR"), "replay logged in"


def test_scram_old_client_final_with_new_client_first(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex, old = scram_login(c, "SCRAM-SHA-256", user, server.secret())
        assert_failed(r, ex)
        sc = ScramClient("SHA-256", user, pw)
        r = ex.start("SCRAM-SHA-256", sc.client_first())
        assert is_challenge(r), ex.transcript()
        r = ex.respond(old.client_final)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
def test_scram_authzid(server, alice, mech):
    """a= equal to the user is fine; a= naming another user is not."""
    user, pw = server.add_user()
    with server.connect_tls() as c:
        r, ex, _ = scram_login(c, mech, user, pw, authzid=alice[0])
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert c.cmd("STAT").startswith(b"-ERR")
        r, ex, _ = scram_login(c, mech, user, pw, authzid=user)
        assert_logged_in(r, ex, 0, 0)
        c.quit()


def test_scram_client_final_first_is_refused(server):
    """Wrong step order: a client-final message where client-first belongs."""
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        fake_final = b"c=biws,r=abcdefghijklmnop,p=" + base64.b64encode(b"\0" * 32)
        r = ex.start("SCRAM-SHA-256", fake_final)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        r = ex.start("SCRAM-SHA-256")
        assert r == b"+ ", ex.transcript()
        r = ex.respond(fake_final)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        # the session goes on
        r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_scram_client_first_twice_is_refused(server):
    user, pw = server.add_user()
    with server.connect() as c:
        sc = ScramClient("SHA-256", user, pw)
        ex = Exchange(c)
        r = ex.start("SCRAM-SHA-256", sc.client_first())
        assert is_challenge(r), ex.transcript()
        r = ex.respond(sc.client_first())
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert_session_goes_on(c, *server.add_user())
        c.quit()


def test_scram_long_but_legal_responses(server):
    """Responses up to 32768 octets are accepted during an exchange: a
    client nonce of 24000 characters makes both client messages ~32 kB of
    base64 (the initial response would exceed 255 octets, so it is sent
    after an empty challenge)."""
    user, pw = server.add_user()
    with server.connect() as c:
        sc = ScramClient("SHA-256", user, pw, nonce="N" * 24000)
        ex = Exchange(c)
        assert ex.start("SCRAM-SHA-256") == b"+ ", ex.transcript()
        first = b64(sc.client_first())
        assert 32000 <= len(first) <= 32768
        r = ex.respond(first)
        assert is_challenge(r), ex.transcript()
        final = b64(sc.client_final_for(ex.challenge(r)))
        assert len(final) <= 32768, "server nonce made client-final %d octets" % len(final)
        r = ex.respond(final)
        assert is_challenge(r), ex.transcript()
        sc.verify_server_final(ex.challenge(r))
        assert_logged_in(ex.respond(""), ex)
        c.quit()


# ---------------------------------------------------------------- cancel

def cancel_after(c, mech, user, pw, steps):
    """Starts mech, answers `steps` challenges correctly, then cancels.
    Returns the reply to '*'."""
    ex = Exchange(c)
    if mech.startswith("SCRAM"):
        sc = ScramClient(mech[6:].replace("-PLUS", ""), user, pw)
        answers = [sc.client_first()]
    elif mech == "LOGIN":
        answers = [user.encode(), pw.encode()]
    else:
        answers = [plain_message(user, pw)]
    r = ex.start(mech)
    for i in range(steps):
        assert is_challenge(r), ex.transcript()
        r = ex.respond(answers[i])
    assert is_challenge(r), ex.transcript()
    r = ex.respond("*")
    assert r.startswith(b"-ERR"), "cancel: %r\n%s" % (r, ex.transcript())
    return r


@pytest.mark.parametrize("mech,steps", [("PLAIN", 0), ("LOGIN", 0), ("LOGIN", 1),
                                        ("SCRAM-SHA-256", 0), ("SCRAM-SHA-256", 1),
                                        ("SCRAM-SHA-1", 1)])
def test_cancel(server, mech, steps):
    user, pw = server.add_user()
    with server.connect() as c:
        cancel_after(c, mech, user, pw, steps)
        # no exchange is left: the next line is a command again
        assert sasl_mechs(c.capa()) == ALL_PLAIN
        assert c.cmd("STAT").startswith(b"-ERR")            # not logged in
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_cancel_is_not_a_failed_login(server):
    """Six cancels in a row do not count as five failed logins."""
    user, pw = server.add_user()
    with server.connect() as c:
        for _ in range(6):
            cancel_after(c, "PLAIN", user, pw, 0)
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_cancel_plain_then_scram_garbage_then_login(server):
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start("PLAIN") == b"+ ", ex.transcript()
        assert ex.respond("*").startswith(b"-ERR"), ex.transcript()
        assert ex.start("SCRAM-SHA-256") == b"+ ", ex.transcript()
        r = ex.respond(b64(os.urandom(40)))
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert ex.start("SCRAM-SHA-256") == b"+ ", ex.transcript()
        r = ex.respond("%%% not base64 %%%")
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, pw)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("garbage", ["!!!!", "abc", "YWJj=", "==", "YW Jj", "Y\tWJj",
                                     "YWJjZA==YWJj", "\xff\xfe", "-_-_"])
def test_malformed_base64_response(server, garbage):
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start("PLAIN") == b"+ ", ex.transcript()
        r = ex.cmd(garbage.encode("latin-1"))
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert b"base64" in r.lower(), "reply does not say the base64 was malformed: %r" % r
        assert_session_goes_on(c, user, pw)
        c.quit()


@pytest.mark.parametrize("garbage", ["!!!!", "abc", "YWJj="])
def test_malformed_base64_initial_response(server, garbage):
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        r = ex.start("PLAIN", garbage)
        assert r.startswith(b"-ERR [AUTH]") and b"base64" in r.lower(), ex.transcript()
        r = ex.start("SCRAM-SHA-256", garbage)
        assert r.startswith(b"-ERR [AUTH]") and b"base64" in r.lower(), ex.transcript()
        assert_session_goes_on(c, user, pw)
        c.quit()


PLAIN_MALFORMED = [b"", b"\0", b"\0\0", b"\0\0\0", b"%(u)s\0%(u)s\0%(p)s\0",
                   b"\0%(u)s\0%(p)s\0", b"\0%(u)s\0\0%(p)s", b"%(u)s\0%(p)s", b"%(u)s",
                   b"\0%(u)s\0", b"\0\0%(p)s", b"\0%(u)s\0%(p)s\0extra\0more"]


@pytest.mark.parametrize("group", [0, 1, 2])
def test_plain_malformed_messages(server, group):
    """Missing, extra and misplaced NULs: each is a failure, never a login
    (in particular not '\\0user\\0pass\\0' cut at the 3rd NUL). Four a
    connection (below the 5-failure limit), then a correct login."""
    user, pw = server.add_user()
    with server.connect() as c:
        for msg in PLAIN_MALFORMED[group * 4:group * 4 + 4]:
            data = msg % {b"u": user.encode(), b"p": pw.encode()}
            ex = Exchange(c)
            assert ex.start("PLAIN") == b"+ ", ex.transcript()
            r = ex.respond(data)
            assert r.startswith(b"-ERR [AUTH]"), "PLAIN message %r:\n%s" % (data, ex.transcript())
            assert c.cmd("STAT").startswith(b"-ERR"), "logged in with %r" % data
        assert_session_goes_on(c, user, pw)
        c.quit()


def test_plain_nul_inside_password(server):
    user, pw = server.add_user()
    with server.connect() as c:
        r, ex = plain(c, user, pw[:3] + "\0" + pw[3:])
        assert_failed(r, ex)
        r, ex = plain(c, user, pw[:5])
        assert_failed(r, ex)
        r, ex = plain(c, user, pw + "\0")
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()


@pytest.mark.parametrize("size", [32772, 40000, 300000])
def test_oversized_response_ends_exchange(server, size):
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start("PLAIN") == b"+ ", ex.transcript()
        r = ex.cmd(b"A" * size)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        # the whole line was consumed: CAPA and a login work
        assert sasl_mechs(c.capa()) == ALL_PLAIN
        assert_session_goes_on(c, user, pw)
        c.quit()


def test_response_of_exactly_32768_octets_is_a_response(server):
    """A 32768-octet response is read as one response (an ordinary wrong
    password here), and the line after it is the next command."""
    user, pw = server.add_user()
    data = plain_message(user, "x")
    data += b"y" * (24576 - len(data))
    assert len(b64(data)) == 32768
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start("PLAIN") == b"+ ", ex.transcript()
        r = ex.respond(data)
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert sasl_mechs(c.capa()) == ALL_PLAIN
        assert_session_goes_on(c, user, pw)
        c.quit()


def test_auth_command_line_limit(server):
    """Other commands stay within 255 octets (RFC 2449), but before login an
    AUTH line may carry a long initial response, as Kerberos and OAuth
    clients (mpop) send it; beyond the SASL response limit (32 KiB) the line
    is refused and the session goes on."""
    user = "m%s@example.org" % ("x" * 40)
    user, pw = server.add_user(user, "Q" * (183 - 2 - len(user)))
    line = "AUTH PLAIN " + b64(plain_message(user, pw))
    assert len(line) + 2 == 257
    with server.connect() as c:
        r = c.cmd("NOOP " + "x" * 300)
        assert r.startswith(b"-ERR Line too long"), r
        r = c.cmd("AUTH PLAIN " + "A" * 40000)
        assert r.startswith(b"-ERR"), r
        assert_logged_in(c.cmd(line))
        r = c.cmd("STAT " + "1" * 300)
        assert r.startswith(b"-ERR Line too long"), r
        c.quit()
    with server.connect() as c:
        # the continuation form works the same
        r, ex = plain(c, user, pw, initial=False)
        assert_logged_in(r, ex)
        c.quit()


def test_empty_line_as_response(server):
    """An empty line is an empty response (not a cancel): PLAIN fails."""
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start("PLAIN") == b"+ "
        r = ex.respond("")
        assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
        assert_session_goes_on(c, user, pw)
        c.quit()


def test_pipelined_exchange(server):
    """RFC 2449 PIPELINING: a client may send the whole PLAIN exchange and
    following commands in one write."""
    user, pw = server.add_user()
    server.deliver(user, make_message("pipelined"))
    with server.connect() as c:
        c.send(("AUTH PLAIN\r\n%s\r\nSTAT\r\nQUIT\r\n" % b64(plain_message(user, pw))).encode())
        assert c.readline() == b"+ "
        assert_logged_in(c.readline())
        assert re.match(rb"^\+OK 1 \d+$", c.readline())
        assert c.readline().startswith(b"+OK")


def test_binary_garbage_during_exchange(server):
    user, pw = server.add_user()
    with server.connect() as c:
        ex = Exchange(c)
        assert ex.start("SCRAM-SHA-1") == b"+ "
        r = ex.cmd(bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b""))
        assert r.startswith(b"-ERR"), ex.transcript()
        assert_session_goes_on(c, user, pw)
        c.quit()


def test_five_failed_auth_close_the_connection(server):
    user, pw = server.add_user()
    with server.connect() as c:
        for i in range(4):
            assert_failed(*plain(c, user, server.secret()))
        r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, server.secret())
        assert_failed(r, ex)
        assert c.wait_closed(10) == b"", "server kept talking after 5 failures"
    # a new connection works
    with server.connect() as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_failed_auth_and_pass_count_together(server):
    user, pw = server.add_user()
    with server.connect() as c:
        for _ in range(2):
            assert c.cmd("USER " + user).startswith(b"+OK")
            assert c.cmd("PASS " + server.secret()) == FAILED
        for _ in range(2):
            r, ex = login_mech(c, user, server.secret())
            assert_failed(r, ex)
        assert_failed(*plain(c, user, server.secret()))
        assert c.wait_closed(10) == b""


# ---------------------------------------------------------------- plaintext before TLS

@pytest.fixture(scope="module")
def tls_only(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}})


def test_tls_only_capa_has_no_plaintext_mechanisms(tls_only):
    with tls_only.connect() as c:
        assert sasl_mechs(c.capa()) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        st, mechs = auth_list(c)
        assert mechs == ["SCRAM-SHA-256", "SCRAM-SHA-1"], (st, mechs)
        assert c.starttls().startswith(b"+OK")
        assert sasl_mechs(c.capa()) == ALL_TLS
        st, mechs = auth_list(c)
        assert mechs == ALL_TLS, (st, mechs)


@pytest.mark.parametrize("line", ["AUTH PLAIN", "AUTH PLAIN %(plain)s", "AUTH LOGIN",
                                  "AUTH LOGIN %(user)s", "auth plain %(plain)s"])
def test_tls_only_plaintext_mechanism_refused_then_stls(tls_only, line):
    user, pw = tls_only.add_user()
    with tls_only.connect() as c:
        r = c.cmd(line % {"plain": b64(plain_message(user, pw)), "user": b64(user)})
        assert PLAINTEXT_REFUSED_RE.match(r), r
        assert c.cmd("STAT").startswith(b"-ERR")
        assert c.starttls().startswith(b"+OK")
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_tls_only_scram_works_without_tls(tls_only):
    user, pw = tls_only.add_user()
    with tls_only.connect() as c:
        r, ex, _ = scram_login(c, "SCRAM-SHA-1", user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_tls_only_pop3s_offers_everything(tls_only):
    user, pw = tls_only.add_user()
    with tls_only.connect_tls() as c:
        assert sasl_mechs(c.capa()) == ALL_TLS
        r, ex = login_mech(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- auth.mechanisms

@pytest.fixture(scope="module")
def reordered(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0",
                                    "mechanisms": "LOGIN, CRAM-MD5, SCRAM-SHA-1-PLUS, "
                                                  "SCRAM-SHA-1, PLAIN"}})


def test_mechanisms_in_configured_order(reordered):
    with reordered.connect() as c:
        assert sasl_mechs(c.capa()) == ["CRAM-MD5", "SCRAM-SHA-1"]
        assert c.starttls().startswith(b"+OK")
        assert sasl_mechs(c.capa()) == ["LOGIN", "CRAM-MD5", "SCRAM-SHA-1-PLUS",
                                        "SCRAM-SHA-1", "PLAIN"]
    with reordered.connect_tls() as c:
        assert auth_list(c)[1] == ["LOGIN", "CRAM-MD5", "SCRAM-SHA-1-PLUS",
                                   "SCRAM-SHA-1", "PLAIN"]
        # not configured: refused even though pobox implements it
        r = c.cmd("AUTH SCRAM-SHA-256")
        assert r.startswith(UNSUPPORTED), r


@pytest.fixture(scope="module")
def plaintext_only(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "no", "failure_delay": "0",
                                    "mechanisms": "PLAIN, LOGIN"}})


def test_no_sasl_line_when_nothing_is_usable(plaintext_only):
    with plaintext_only.connect() as c:
        assert sasl_mechs(c.capa()) is None, "SASL line with nothing usable"
        st, mechs = auth_list(c)
        assert (st.startswith(b"+OK") and mechs == []) or st.startswith(b"-ERR"), (st, mechs)
        r = c.cmd("AUTH SCRAM-SHA-256")
        assert r.startswith(UNSUPPORTED), r
        r = c.cmd("AUTH PLAIN")
        assert PLAINTEXT_REFUSED_RE.match(r), r
        assert c.starttls().startswith(b"+OK")
        assert sasl_mechs(c.capa()) == ["PLAIN", "LOGIN"]


# ---------------------------------------------------------------- CRAM-MD5

@pytest.fixture(scope="module")
def cram(server_factory):
    return server_factory({"auth": {
        "plaintext_without_tls": "no", "failure_delay": "0",
        "mechanisms": "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, "
                      "CRAM-MD5, PLAIN, LOGIN"}})


def cram_login(c, user, secret):
    ex = Exchange(c)
    r = ex.start("CRAM-MD5")
    challenge = ex.challenge(r)
    assert CRAM_CHALLENGE_RE.match(challenge), "CRAM-MD5 challenge %r" % challenge
    return ex.respond(cram_md5_response(user, secret, challenge)), ex, challenge


def test_cram_md5_offered_without_tls_when_configured(cram):
    with cram.connect() as c:
        assert sasl_mechs(c.capa()) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"]
    with cram.connect_tls() as c:
        assert sasl_mechs(c.capa()) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256",
                                        "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "CRAM-MD5",
                                        "PLAIN", "LOGIN"]


@pytest.mark.parametrize("how", ["pop3", "pop3s"])
def test_cram_md5_login(cram, how):
    user, pw = cram.add_user(apop=True)
    cram.deliver(user, make_message("cram"))
    with connect(cram, how) as c:
        r, ex, _ = cram_login(c, user, pw)
        assert_logged_in(r, ex)
        assert c.stat()[0] == 1
        c.quit()


def test_cram_md5_challenge_is_fresh(cram):
    seen = set()
    for _ in range(10):
        with cram.connect() as c:
            ex = Exchange(c)
            ch = ex.challenge(ex.start("CRAM-MD5"))
            assert ch not in seen, "CRAM-MD5 challenge reused: %r" % ch
            seen.add(ch)
            assert ex.respond("*").startswith(b"-ERR")


def test_cram_md5_response_to_another_challenge_fails(cram):
    user, pw = cram.add_user(apop=True)
    with cram.connect() as c:
        ex = Exchange(c)
        old = ex.challenge(ex.start("CRAM-MD5"))
        ex.respond("*")
    with cram.connect() as c:
        ex = Exchange(c)
        ex.challenge(ex.start("CRAM-MD5"))
        assert_failed(ex.respond(cram_md5_response(user, pw, old)), ex)


def test_cram_md5_wrong_secret_unknown_user_and_user_without_apop(cram):
    apop_user, pw = cram.add_user(apop=True)
    plain_user, pw2 = cram.add_user()
    with cram.connect() as c:
        assert_failed(*cram_login(c, apop_user, cram.secret())[:2])
        assert_failed(*cram_login(c, "nobody@example.org", cram.secret())[:2])
        # the password of a user without --apop is not a CRAM-MD5 secret
        assert_failed(*cram_login(c, plain_user, pw2)[:2])
        r, ex, _ = cram_login(c, apop_user, pw)
        assert_logged_in(r, ex)
        c.quit()


def test_cram_md5_malformed_responses(cram):
    user, pw = cram.add_user(apop=True)
    bads = [b"", user.encode(), user.encode() + b" xyz", user.encode() + b" " + b"0" * 31,
            b" " + b"0" * 32, user.encode() + b" " + b"0" * 32 + b" extra",
            user.encode() + b"\0" + b"0" * 32]
    for i in range(0, len(bads), 4):            # fewer than 5 failures a connection
        with cram.connect() as c:
            for bad in bads[i:i + 4]:
                ex = Exchange(c)
                ex.challenge(ex.start("CRAM-MD5"))
                r = ex.respond(bad)
                assert r.startswith(b"-ERR [AUTH]"), ex.transcript()
            r, ex, _ = cram_login(c, user, pw)
            assert_logged_in(r, ex)
            c.quit()


def test_cram_md5_initial_response_refused(cram):
    """CRAM-MD5 is server-first: an initial response is an error and no
    exchange starts (RFC 4422 section 4)."""
    user, pw = cram.add_user(apop=True)
    with cram.connect() as c:
        r = c.cmd("AUTH CRAM-MD5 " + b64(user + " " + "0" * 32))
        assert r.startswith(b"-ERR"), r
        assert not r.startswith(b"+"), r
        # the next line is a command, not a response
        assert sasl_mechs(c.capa()) is not None
        r, ex, _ = cram_login(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- failure delay

@pytest.fixture(scope="module")
def slow(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "1s",
                                    "max_failure_delay": "1s"}})


def test_failed_auth_is_delayed_like_pass(slow):
    user, pw = slow.add_user()
    with slow.connect() as c:
        t0 = time.monotonic()
        r, ex = plain(c, user, slow.secret())
        took_plain = time.monotonic() - t0
        assert_failed(r, ex)
        sc = ScramClient("SHA-256", user, slow.secret())
        r = ex.start("SCRAM-SHA-256", sc.client_first())
        t0 = time.monotonic()
        r = ex.respond(sc.client_final_for(ex.challenge(r)))
        took_scram = time.monotonic() - t0
        assert_failed(r, ex)
    assert took_plain >= 0.8, "failed AUTH PLAIN answered after %.2fs (failure_delay 1s)" % took_plain
    assert took_scram >= 0.8, "failed SCRAM answered after %.2fs (failure_delay 1s)" % took_scram
    # a correct login still works
    with slow.connect() as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


@pytest.fixture(scope="module")
def quick_delay(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes",
                                    "failure_delay": "100ms", "max_failure_delay": "100ms"}})


def test_five_delayed_failures_close_the_connection(quick_delay):
    """With delays, the 5th failure is still answered, then the server
    closes (the close happens after the delayed answer, not before)."""
    srv = quick_delay
    user, pw = srv.add_user()
    with srv.connect() as c:
        for _ in range(3):
            assert_failed(*plain(c, user, srv.secret()))
        assert_failed(*login_mech(c, user, srv.secret()))
        r, ex, _ = scram_login(c, "SCRAM-SHA-1", user, srv.secret())
        assert_failed(r, ex)
        assert c.wait_closed(10) == b""
    with srv.connect() as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- idle in an exchange

@pytest.fixture(scope="module")
def idle(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                           "pop3": {"idle_timeout": "2s"}})


@pytest.mark.parametrize("where", ["plain-challenge", "scram-server-first"])
def test_client_silent_mid_exchange_is_cut_by_idle_timeout(idle, where):
    user, pw = idle.add_user()
    with idle.connect() as c:
        ex = Exchange(c)
        if where == "plain-challenge":
            assert ex.start("PLAIN") == b"+ "
        else:
            sc = ScramClient("SHA-256", user, pw)
            assert is_challenge(ex.start("SCRAM-SHA-256", sc.client_first()))
        t0 = time.monotonic()
        got = c.wait_closed(15)
        took = time.monotonic() - t0
    assert took >= 1.0, "closed after %.2fs, long before the 2s idle timeout" % took
    assert got == b"" or (got.startswith(b"-ERR") and b"inactivity" in got.lower()
                          and got.endswith(b"\r\n") and got.count(b"\r\n") == 1), got
    # the server is fine and the user can log in
    with idle.connect() as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- users file unreadable

@pytest.fixture(scope="module")
def broken(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}})


def test_users_file_unreadable_is_a_temporary_failure(broken):
    user, pw = broken.add_user()
    users = broken.data_dir / "users"
    saved = broken.data_dir / "users.saved-by-test"
    os.rename(users, saved)
    users.mkdir()                       # root reads anything: a directory cannot be read
    try:
        with broken.connect() as c:
            r, ex = plain(c, user, pw)
            assert r.startswith(b"-ERR [SYS/TEMP]"), ex.transcript()
            r, ex = login_mech(c, user, pw)
            assert r.startswith(b"-ERR [SYS/TEMP]"), ex.transcript()
            r, ex, _ = scram_login(c, "SCRAM-SHA-256", user, pw)
            assert r.startswith(b"-ERR [SYS/TEMP]"), ex.transcript()
            # temporary failures are not failed logins: the session goes on
            r, ex = plain(c, user, pw)
            assert r.startswith(b"-ERR [SYS/TEMP]"), ex.transcript()
            assert sasl_mechs(c.capa())
    finally:
        users.rmdir()
        os.rename(saved, users)
    with broken.connect() as c:
        r, ex = plain(c, user, pw)
        assert_logged_in(r, ex)
        c.quit()


# ---------------------------------------------------------------- switching (CVE-2011-1720)

def start_and_cancel(c, name, variant, user, offered):
    """Starts mechanism `name` (any case), goes as far as it can without a
    verdict, cancels. Every step is checked; returns the Exchange."""
    ex = Exchange(c)
    mech = name.upper()
    if mech not in offered:
        assert ex.start(name, b"x" if variant else None).startswith(UNSUPPORTED), \
            ex.transcript()
        return ex
    if mech.startswith("SCRAM-"):
        plus = mech.endswith("-PLUS")
        kw = {}
        if plus:
            cb_type, cb_data = channel_binding(c.sock)
            kw = dict(cbflag="p", cb_type=cb_type, cb_data=cb_data)
        sc = ScramClient(mech[6:].replace("-PLUS", ""), user, "x", **kw)
        if variant:
            r = ex.start(name, sc.client_first())
        else:
            r = ex.start(name)
            assert r == b"+ ", ex.transcript()
            r = ex.respond(sc.client_first())
        ex.challenge(r)                                  # server-first
    elif mech == "LOGIN":
        r = ex.start(name, user.encode()) if variant else ex.start(name)
        ex.challenge(r)
    elif mech == "CRAM-MD5":
        assert CRAM_CHALLENGE_RE.match(ex.challenge(ex.start(name))), ex.transcript()
    else:                    # PLAIN, EXTERNAL, OAUTHBEARER, XOAUTH2, GSSAPI
        assert ex.start(name) == b"+ ", ex.transcript()
    r = ex.respond("*")
    assert r.startswith(b"-ERR"), ex.transcript()
    return ex


@pytest.fixture(scope="module")
def everything(server_factory, tmp_path_factory):
    """Every mechanism that works without Kerberos: SCRAM (+PLUS), EXTERNAL
    (client CA), OAUTHBEARER/XOAUTH2 (JWKS), CRAM-MD5, PLAIN, LOGIN; a high
    bad-command limit so that the loop tests memory safety, not policy."""
    from sasl_fixtures import ClientCA, TokenIssuer
    d = tmp_path_factory.mktemp("sasl_everything_keys")
    ca = ClientCA(d / "ca")
    issuer = TokenIssuer(d / "oauth")
    auth = {"plaintext_without_tls": "yes", "failure_delay": "0",
            "mechanisms": "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, "
                          "SCRAM-SHA-1, GSSAPI, EXTERNAL, OAUTHBEARER, XOAUTH2, "
                          "CRAM-MD5, PLAIN, LOGIN"}
    auth.update(issuer.config())
    srv = server_factory({"auth": auth, "tls": {"client_ca": str(ca.pem_path)},
                          "limits": {"max_bad_commands": "1000"}})
    user, pw = srv.add_user(apop=True)
    cert = ca.client_cert("switcher", email=user)
    return srv, user, pw, cert


@pytest.mark.parametrize("how", ["pop3s-cert", "pop3"])
def test_switching_mechanisms_200_times(everything, how):
    srv, user, pw, (cert, key) = everything
    if how == "pop3s-cert":
        ctx = tls_client_context()
        ctx.load_cert_chain(str(cert), str(key))
        c = srv.connect_tls(context=ctx)
    else:
        c = srv.connect()
    with c:
        offered = sasl_mechs(c.capa())
        if how == "pop3s-cert":
            for m in ("SCRAM-SHA-256-PLUS", "EXTERNAL", "OAUTHBEARER", "XOAUTH2",
                      "CRAM-MD5", "PLAIN"):
                assert m in offered, (m, offered)
        # the offered ones, some not offered here, and lower-case names
        rotation = offered + ["DIGEST-MD5", "GSSAPI", "SCRAM-SHA-256-PLUS", "EXTERNAL",
                              "scram-sha-256", "Plain", "cram-md5"]
        for i in range(200):
            name = rotation[i % len(rotation)]
            variant = (i // len(rotation)) % 2
            start_and_cancel(c, name, variant, user, offered)
        # the connection is healthy: a real login works
        if how == "pop3s-cert":
            r, ex, _ = scram_login(c, "SCRAM-SHA-256-PLUS", user, pw)
        else:
            r, ex, _ = scram_login(c, "SCRAM-SHA-1", user, pw)
        assert_logged_in(r, ex)
        assert c.stat() == (0, 0)
        assert c.quit().startswith(b"+OK")
    srv.assert_alive()
