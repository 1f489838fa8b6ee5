"""test_smtp_auth.py — SMTP AUTH (RFC 4954) over the SASL service POP3 uses
too (docs/auth.md, docs/smtp.md): the mechanisms EHLO offers are those of
POP3's CAPA SASL on the same kind of connection; PLAIN, LOGIN, SCRAM-SHA-1/256
(and -PLUS), CRAM-MD5 with raw exchanges and smtplib; 235 2.7.0, 535 5.7.8,
'*' (501 5.0.0), malformed base64 (501 5.5.2), over-long responses
(500 5.5.6), unknown mechanisms (504 5.5.4), AUTH twice or inside a
transaction (503 5.5.1), the failure delay, and the ESMTPA/ESMTPSA
protocol in Received:."""

import os
import ssl
import time

import pytest

from pobox_harness import (assert_queued, check_trace, dot_stuff, smtp_message,
                           tls_client_context)
from sasl_client import (CRAM_CHALLENGE_RE, ScramClient, b64, channel_binding,
                         cram_md5_response, plain_message, sasl_mechs, scram_hash_of, unb64)

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}

ALL_PLAIN = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN"]
ALL_TLS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
           "PLAIN", "LOGIN"]

OK_AUTH = (235, [b"2.7.0 Authentication successful"])
FAILED = (535, [b"5.7.8 Authentication credentials invalid"])
CANCELLED = (501, [b"5.0.0 Authentication cancelled"])
UNDECODABLE = (501, [b"5.5.2 Cannot decode response"])
TOO_LONG = (500, [b"5.5.6 Authentication exchange line is too long"])
UNKNOWN_MECH = (504, [b"5.5.4 Unrecognized authentication type"])
ALREADY = (503, [b"5.5.1 Already authenticated"])
IN_TRANSACTION = (503, [b"5.5.1 AUTH not permitted during a mail transaction"])
MAIL_OK = (250, [b"2.1.0 Ok"])
RCPT_OK = (250, [b"2.1.5 Ok"])
OK = (250, [b"2.0.0 Ok"])

TLS12 = tls_client_context(maximum=ssl.TLSVersion.TLSv1_2)


# ---------------------------------------------------------------- helpers

class Exchange:
    """RFC 4954 framing: challenges are '334 BASE64'."""

    def __init__(self, c):
        self.c = c

    def transcript(self):
        return self.c.transcript()

    def start(self, mech, initial=None):
        """AUTH MECH [initial]: bytes are base64-encoded (b'' becomes '='),
        a str is sent as is."""
        line = "AUTH " + mech
        if isinstance(initial, bytes):
            line += " " + (b64(initial) if initial else "=")
        elif isinstance(initial, str):
            line += " " + initial
        return self.c.cmd(line)

    def respond(self, data):
        return self.c.cmd(b64(data) if isinstance(data, bytes) else data)

    def challenge(self, r) -> bytes:
        assert r.code == 334 and len(r.lines) == 1, "not a challenge: %r\n%s" % (
            r, self.transcript())
        return unb64(r.lines[0]) if r.lines[0] else b""


def connect(server, how, context=None):
    """After EHLO: 'smtp' (25, plain), 'submission' (587, plain),
    'starttls' (587 + STARTTLS), 'submissions' (465), 'tls12' (465 with TLS
    1.2)."""
    if how in ("smtp", "submission"):
        return server.smtp_session(how, starttls=False)
    if how == "starttls":
        return server.smtp_session("submission", starttls=True, context=context)
    if how == "submissions":
        return server.smtp_session("submissions", context=context)
    if how == "tls12":
        c = server.smtp_session("submissions", context=TLS12)
        assert c.sock.version() == "TLSv1.2"
        return c
    raise ValueError(how)


def mechs(c):
    return c.extensions().get("AUTH")


def plain(c, user, pw, authzid="", initial=True):
    ex = Exchange(c)
    msg = plain_message(user, pw, authzid)
    if initial:
        return ex.start("PLAIN", msg)
    r = ex.start("PLAIN")
    assert r == (334, [b""]), "PLAIN without initial response: %r\n%s" % (r, c.transcript())
    return ex.respond(msg)


def login(c, user, pw, initial=False):
    ex = Exchange(c)
    if initial:
        r = ex.start("LOGIN", user.encode())
    else:
        r = ex.start("LOGIN")
        ex.challenge(r)
        r = ex.respond(user.encode())
    if r.code != 334:
        return r
    ex.challenge(r)
    return ex.respond(pw.encode())


def scram(c, mech, user, pw, initial=True, authzid=None, cb=None, verify=True):
    """A whole SCRAM exchange; returns the final reply."""
    ex = Exchange(c)
    plus = mech.upper().endswith("-PLUS")
    if plus:
        cb_type, cb_data = cb or channel_binding(c.sock)
        sc = ScramClient(scram_hash_of(mech), user, pw, authzid=authzid, cbflag="p",
                         cb_type=cb_type, cb_data=cb_data)
    else:
        sc = ScramClient(scram_hash_of(mech), user, pw, authzid=authzid)
    if initial:
        r = ex.start(mech, sc.client_first())
    else:
        r = ex.start(mech)
        assert ex.challenge(r) == b"", c.transcript()
        r = ex.respond(sc.client_first())
    if r.code != 334:
        return r
    r = ex.respond(sc.client_final_for(ex.challenge(r)))
    if r.code != 334:
        return r
    final = ex.challenge(r)
    if verify and not final.startswith(b"e="):
        sc.verify_server_final(final)
    return ex.respond("")


def assert_goes_on(c, user=None, pw=None):
    """The next line is a command again and, when given, a login works."""
    assert c.cmd("NOOP") == OK, c.transcript()
    if user:
        assert plain(c, user, pw) == OK_AUTH, c.transcript()


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


# ---------------------------------------------------------------- what is offered

@pytest.mark.parametrize("how", ["smtp", "submission", "starttls", "submissions"])
def test_ehlo_auth_is_pop3s_capa_sasl(server, how):
    """The SASL service is shared: SMTP offers what POP3 offers on the same
    kind of connection."""
    tls = how in ("starttls", "submissions")
    with (server.connect_tls() if tls else server.connect()) as p:
        pop3 = sasl_mechs(p.capa())
    with connect(server, how) as c:
        assert mechs(c) == pop3, "EHLO %r, POP3 CAPA SASL %r" % (c.ehlo_reply, pop3)
        assert mechs(c) == (ALL_TLS if tls else ALL_PLAIN)
        auth_lines = [l for l in c.ehlo_reply.lines if l.upper().startswith(b"AUTH")]
        assert len(auth_lines) == 1, c.ehlo_reply
        c.quit()


# ---------------------------------------------------------------- PLAIN and LOGIN

@pytest.mark.parametrize("how", ["smtp", "submission", "starttls", "submissions"])
@pytest.mark.parametrize("initial", [True, False], ids=["initial", "no-initial"])
def test_plain(server, alice, how, initial):
    user, pw = alice
    with connect(server, how) as c:
        assert plain(c, user, pw, initial=initial) == OK_AUTH, c.transcript()
        assert c.mail(user) == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("how", ["submission", "submissions"])
@pytest.mark.parametrize("initial", [True, False], ids=["initial", "no-initial"])
def test_login(server, alice, how, initial):
    user, pw = alice
    with connect(server, how) as c:
        assert login(c, user, pw, initial=initial) == OK_AUTH, c.transcript()
        assert c.mail(user) == MAIL_OK, c.transcript()
        c.quit()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtplib_login(server, alice, mech):
    user, pw = alice
    s = server.smtplib("submission")
    try:
        s.user, s.password = user, pw
        code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower()))
        assert code == 235, (code, resp)
        code, _ = s.mail(user)
        assert code == 250
    finally:
        s.quit()


def test_plain_wrong_password_and_unknown_user(server, alice):
    user, pw = alice
    with connect(server, "submission") as c:
        assert plain(c, user, server.secret()) == FAILED, c.transcript()
        assert plain(c, "nobody-%s@example.org" % os.urandom(3).hex(), server.secret()) == FAILED
        assert login(c, user, server.secret()) == FAILED, c.transcript()
        # not logged in, and a good login still works on this connection
        assert c.mail(user) == (530, [b"5.7.0 Authentication required"]), c.transcript()
        assert_goes_on(c, user, pw)
        c.quit()


def test_plain_authzid(server, alice):
    user, pw = alice
    other, _ = server.add_user()
    with connect(server, "submission") as c:
        assert plain(c, user, pw, authzid=other) == FAILED, c.transcript()
        assert plain(c, user, pw, authzid=user) == OK_AUTH, c.transcript()
        c.quit()


def test_long_initial_response(server):
    """RFC 4954 4: an AUTH line with an initial response may be longer than
    512 octets (up to 12288)."""
    user, pw = server.add_user("long-%s-%s@example.org" % ("l" * 40, os.urandom(3).hex()),
                               password="P" * 500)
    with connect(server, "submission") as c:
        line = "AUTH PLAIN " + b64(plain_message(user, pw, authzid=user))
        assert len(line) > 800
        assert c.cmd(line) == OK_AUTH, c.transcript()
        c.quit()


def test_pipelined_auth_plain_and_transaction(server, alice):
    """RFC 4954 4: AUTH PLAIN with an initial response may be followed by
    pipelined commands."""
    user, pw = alice
    bob, _ = server.add_user()
    msg = smtp_message("pipelined auth", sender=user)
    with connect(server, "starttls") as c:
        c.send(("AUTH PLAIN %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                % (b64(plain_message(user, pw)), user, bob)).encode())
        assert c.replies(3) == [OK_AUTH, MAIL_OK, RCPT_OK], c.transcript()
        assert c.reply().code == 354
        c.send(dot_stuff(msg))
        assert_queued(c.reply(), c)
        c.quit()
    assert len(server.delivered(bob)) == 1


# ---------------------------------------------------------------- SCRAM

@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
@pytest.mark.parametrize("initial", [True, False], ids=["initial", "no-initial"])
@pytest.mark.parametrize("how", ["smtp", "submissions"])
def test_scram(server, alice, mech, initial, how):
    user, pw = alice
    with connect(server, how) as c:
        assert scram(c, mech, user, pw, initial=initial) == OK_AUTH, c.transcript()
        assert c.mail(user) == MAIL_OK
        c.quit()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
@pytest.mark.parametrize("how", ["submissions", "starttls", "tls12"])
def test_scram_plus(server, alice, mech, how):
    user, pw = alice
    with connect(server, how) as c:
        assert scram(c, mech, user, pw) == OK_AUTH, c.transcript()
        c.quit()


def test_scram_plus_with_wrong_binding_fails(server, alice):
    user, pw = alice
    with connect(server, "tls12") as c:
        r = scram(c, "SCRAM-SHA-256-PLUS", user, pw, cb=("tls-unique", b"\0" * 12), verify=False)
        assert r == FAILED, c.transcript()
        assert_goes_on(c, user, pw)
        c.quit()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_wrong_password(server, alice, mech):
    user, _ = alice
    with connect(server, "submission") as c:
        assert scram(c, mech, user, server.secret(), verify=False) == FAILED, c.transcript()
        assert_goes_on(c, *alice)
        c.quit()


def test_scram_unknown_user(server):
    with connect(server, "submission") as c:
        r = scram(c, "SCRAM-SHA-256", "nobody-%s@example.org" % os.urandom(3).hex(),
                  server.secret(), verify=False)
        assert r == FAILED, c.transcript()
        c.quit()


# ---------------------------------------------------------------- cancel, bad input

@pytest.mark.parametrize("mech,steps", [("PLAIN", 0), ("LOGIN", 0), ("LOGIN", 1),
                                        ("SCRAM-SHA-256", 0), ("SCRAM-SHA-256", 1)])
def test_cancel(server, alice, mech, steps):
    user, pw = alice
    with connect(server, "submission") as c:
        ex = Exchange(c)
        r = ex.start(mech)
        if steps:
            if mech == "LOGIN":
                r = ex.respond(user.encode())
            else:
                ex.challenge(r)
                r = ex.respond(ScramClient("SHA-256", user, pw).client_first())
        ex.challenge(r)
        assert ex.respond("*") == CANCELLED, c.transcript()
        assert_goes_on(c, user, pw)
        c.quit()


def test_cancels_do_not_close_the_session(server, alice):
    user, pw = alice
    with connect(server, "submission") as c:
        ex = Exchange(c)
        for _ in range(8):
            ex.challenge(ex.start("PLAIN"))
            assert ex.respond("*") == CANCELLED, c.transcript()
        assert_goes_on(c, user, pw)
        c.quit()


@pytest.mark.parametrize("garbage", ["!!!!", "abc", "YWJj=", "==", "YW Jj", "YWJjZA==YWJj", "-_-_"])
def test_malformed_base64_response(server, alice, garbage):
    with connect(server, "submission") as c:
        ex = Exchange(c)
        ex.challenge(ex.start("PLAIN"))
        assert ex.respond(garbage) == UNDECODABLE, c.transcript()
        assert_goes_on(c, *alice)
        c.quit()


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "LOGIN"])
def test_malformed_base64_initial_response(server, alice, mech):
    with connect(server, "submission") as c:
        assert Exchange(c).start(mech, "!!!!") == UNDECODABLE, c.transcript()
        assert_goes_on(c, *alice)
        c.quit()


@pytest.mark.parametrize("size", [32772, 40000, 300000])
def test_oversized_response(server, alice, size):
    with connect(server, "submission") as c:
        ex = Exchange(c)
        ex.challenge(ex.start("PLAIN"))
        assert ex.respond("A" * size) == TOO_LONG, c.transcript()
        # the whole line was consumed
        assert_goes_on(c, *alice)
        c.quit()


def test_response_of_exactly_32768_octets(server, alice):
    user, pw = alice
    data = plain_message(user, "x")
    data += b"y" * (24576 - len(data))
    assert len(b64(data)) == 32768
    with connect(server, "submission") as c:
        ex = Exchange(c)
        ex.challenge(ex.start("PLAIN"))
        assert ex.respond(data) == FAILED, c.transcript()
        assert_goes_on(c, user, pw)
        c.quit()


def test_empty_response_is_not_a_cancel(server, alice):
    with connect(server, "submission") as c:
        ex = Exchange(c)
        ex.challenge(ex.start("PLAIN"))
        r = ex.respond("")
        assert r.code in (535, 501) and r != CANCELLED, c.transcript()
        assert_goes_on(c, *alice)
        c.quit()


@pytest.mark.parametrize("mech", ["FOO", "CRAM-MD5", "GSSAPI", "EXTERNAL", "OAUTHBEARER",
                                  "XOAUTH2", "DIGEST-MD5", "NTLM", "SCRAM-SHA-256-PLUS"])
def test_unknown_or_unusable_mechanism(server, alice, mech):
    """Not configured (CRAM-MD5), no keytab/JWKS/client certificate, or a
    -PLUS mechanism without TLS."""
    with connect(server, "submission") as c:
        assert Exchange(c).start(mech) == UNKNOWN_MECH, c.transcript()
        assert_goes_on(c, *alice)
        c.quit()


def test_auth_without_mechanism(server):
    with connect(server, "submission") as c:
        r = c.cmd("AUTH")
        assert r.code in (501, 504) and r.enhanced == "5.5.4", c.transcript()
        c.quit()


def test_auth_mechanism_is_case_insensitive(server, alice):
    user, pw = alice
    with connect(server, "submission") as c:
        assert c.cmd("auth plain " + b64(plain_message(user, pw))) == OK_AUTH, c.transcript()
        c.quit()


# ---------------------------------------------------------------- state

@pytest.mark.parametrize("param", ["AUTH=<>", "AUTH=%(user)s", "AUTH=alice+2Bx@example.org"])
def test_mail_auth_parameter(server, alice, param):
    """RFC 4954 5: the AUTH= parameter of MAIL is accepted (and, from a
    client pobox does not trust, ignored)."""
    user, pw = alice
    with connect(server, "starttls") as c:
        assert plain(c, user, pw) == OK_AUTH
        assert c.mail(user, param % {"user": user}) == MAIL_OK, c.transcript()
        c.quit()



def test_auth_twice(server, alice):
    user, pw = alice
    with connect(server, "submission") as c:
        assert plain(c, user, pw) == OK_AUTH
        assert plain(c, user, pw) == ALREADY, c.transcript()
        assert c.cmd("AUTH LOGIN") == ALREADY, c.transcript()
        assert c.mail(user) == MAIL_OK
        c.quit()


def test_auth_during_a_transaction(server, alice):
    user, pw = alice
    with connect(server, "smtp") as c:
        assert c.mail("sender@example.net") == MAIL_OK
        assert plain(c, user, pw) == IN_TRANSACTION, c.transcript()
        assert c.cmd("RSET") == OK
        assert plain(c, user, pw) == OK_AUTH, c.transcript()
        c.quit()


def test_auth_before_ehlo(server, alice):
    user, pw = alice
    with server.smtp_connect("submission") as c:
        r = plain(c, user, pw)
        assert r.code == 503 and r.enhanced == "5.5.1", c.transcript()
        c.quit()


def test_received_protocol_esmtpa_and_esmtpsa(server, alice):
    """RFC 3848: ESMTPA for AUTH without TLS, ESMTPSA with TLS."""
    user, pw = alice
    bob, _ = server.add_user()
    for how, proto in (("smtp", "ESMTPA"), ("submission", "ESMTPA"),
                       ("starttls", "ESMTPSA"), ("submissions", "ESMTPSA")):
        msg = smtp_message("auth " + how, sender=user)
        with connect(server, how) as c:
            assert plain(c, user, pw) == OK_AUTH
            assert_queued(c.send_mail(user, [bob], msg), c)
            c.quit()
        check_trace(server.delivered(bob)[-1], msg, user, [bob], proto)


# ---------------------------------------------------------------- CRAM-MD5

@pytest.fixture(scope="module")
def cram(server_factory):
    return server_factory({"auth": {
        "plaintext_without_tls": "no", "failure_delay": "0",
        "mechanisms": "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, "
                      "CRAM-MD5, PLAIN, LOGIN"}})


def test_cram_md5_offered_when_configured(cram):
    with connect(cram, "submission") as c:
        assert mechs(c) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"], c.ehlo_reply
        c.quit()
    with connect(cram, "submissions") as c:
        assert mechs(c) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
                            "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"], c.ehlo_reply
        c.quit()


@pytest.mark.parametrize("how", ["submission", "submissions"])
def test_cram_md5(cram, how):
    user, pw = cram.add_user(apop=True)
    with connect(cram, how) as c:
        ex = Exchange(c)
        ch = ex.challenge(ex.start("CRAM-MD5"))
        assert CRAM_CHALLENGE_RE.match(ch), ch
        assert ex.respond(cram_md5_response(user, pw, ch)) == OK_AUTH, c.transcript()
        assert c.mail(user) == MAIL_OK
        c.quit()


def test_cram_md5_failures(cram):
    apop_user, pw = cram.add_user(apop=True)
    plain_user, pw2 = cram.add_user()
    with connect(cram, "submission") as c:
        for user, secret in ((apop_user, cram.secret()), (plain_user, pw2),
                             ("nobody@example.org", cram.secret())):
            ex = Exchange(c)
            ch = ex.challenge(ex.start("CRAM-MD5"))
            assert ex.respond(cram_md5_response(user, secret, ch)) == FAILED, c.transcript()
        c.quit()


def test_smtplib_login_picks_cram_md5(cram):
    """smtplib's login() prefers CRAM-MD5 when it is offered."""
    user, pw = cram.add_user(apop=True)
    s = cram.smtplib("submission")
    try:
        assert "CRAM-MD5" in s.esmtp_features["auth"].split()
        code, resp = s.login(user, pw)
        assert code == 235, (code, resp)
    finally:
        s.quit()


def test_plaintext_before_tls_refused_with_538(cram):
    user, pw = cram.add_user()
    with connect(cram, "submission") as c:
        r = plain(c, user, pw)
        assert r == (538, [b"5.7.11 Encryption required for requested authentication "
                           b"mechanism"]), c.transcript()
        assert c.starttls().code == 220
        assert c.ehlo().code == 250
        assert plain(c, user, pw) == OK_AUTH
        c.quit()


# ---------------------------------------------------------------- failure delay

@pytest.fixture(scope="module")
def slow(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "1s",
                                    "max_failure_delay": "1s"}})


def test_failed_auth_is_delayed(slow):
    user, pw = slow.add_user()
    with connect(slow, "submission") as c:
        t0 = time.monotonic()
        assert plain(c, user, slow.secret()) == FAILED, c.transcript()
        took_plain = time.monotonic() - t0
        ex = Exchange(c)
        sc = ScramClient("SHA-256", user, slow.secret())
        r = ex.start("SCRAM-SHA-256", sc.client_first())
        t0 = time.monotonic()
        r = ex.respond(sc.client_final_for(ex.challenge(r)))
        took_scram = time.monotonic() - t0
        assert r == FAILED, c.transcript()
    assert took_plain >= 0.8, "failed AUTH PLAIN answered after %.2fs (failure_delay 1s)" % took_plain
    assert took_scram >= 0.8, "failed SCRAM answered after %.2fs (failure_delay 1s)" % took_scram
    with connect(slow, "submission") as c:
        assert plain(c, user, pw) == OK_AUTH, c.transcript()
        c.quit()


# ---------------------------------------------------------------- temporary failure

@pytest.fixture(scope="module")
def broken(server_factory):
    return server_factory({"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}})


def test_users_file_unreadable_is_a_temporary_failure(broken):
    user, pw = broken.add_user()
    users = broken.data_dir / "users"
    saved = broken.data_dir / "users.saved-by-test"
    os.rename(users, saved)
    users.mkdir()                       # root reads anything: a directory cannot be read
    temp = (454, [b"4.7.0 Temporary authentication failure"])
    try:
        with connect(broken, "submission") as c:
            assert plain(c, user, pw) == temp, c.transcript()
            assert login(c, user, pw) == temp, c.transcript()
            assert scram(c, "SCRAM-SHA-256", user, pw) == temp, c.transcript()
            assert c.cmd("NOOP") == OK
    finally:
        users.rmdir()
        os.rename(saved, users)
    with connect(broken, "submission") as c:
        assert plain(c, user, pw) == OK_AUTH, c.transcript()
        c.quit()
