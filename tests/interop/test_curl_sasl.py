"""test_curl_sasl.py — curl (libcurl's SASL for POP3) against pobox's AUTH:
with the default mechanisms curl picks one from CAPA's SASL line that works;
--login-options AUTH=PLAIN, AUTH=LOGIN, AUTH=CRAM-MD5 (server with CRAM-MD5
enabled, user with --apop); --oauth2-bearer for OAUTHBEARER and XOAUTH2;
wrong credentials give CURLE_LOGIN_DENIED (67)."""

import re
import shutil
import subprocess
import time
from urllib.parse import quote

import pytest

from pobox_harness import make_message, to_wire

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

# the default configuration apart from what the harness needs
SERVER_CONFIG = {"auth": {"plaintext_without_tls": "no", "failure_delay": "0"}}

MESSAGES = [make_message("curl sasl one", b"first\n.dot\n"),
            make_message("curl sasl two", b"second\n")]
LOGIN_DENIED = 67


def curl(*args, timeout=40):
    return subprocess.run(["curl", "-sS", "-v", "--max-time", "20"] + list(args),
                          capture_output=True, timeout=timeout)


def listing(msgs):
    return b"".join(b"%d %d\r\n" % (i, len(to_wire(m))) for i, m in enumerate(msgs, 1))


def auth_commands(r):
    """The AUTH commands curl sent (from its -v trace)."""
    return re.findall(rb"^> (AUTH \S+)", r.stderr, re.M)


def url(scheme, user, pw, port, path=""):
    return "%s://%s:%s@127.0.0.1:%d/%s" % (scheme, quote(user, safe=""), quote(pw, safe=""),
                                          port, path)


def tail(r):
    return r.stderr.decode("utf-8", "replace")[-2500:]


@pytest.fixture(scope="module")
def mailbox(server):
    user, pw = server.add_user()
    for m in MESSAGES:
        server.deliver(user, m)
    return user, pw


def test_curl_default_mechanism_pop3s(server, mailbox):
    """`curl pop3s://USER:PASS@host/`: curl chooses from the SASL list
    (SCRAM, which it lacks, then PLAIN), logs in, lists."""
    user, pw = mailbox
    r = curl("-k", url("pop3s", user, pw, server.pop3s_port))
    assert r.returncode == 0, tail(r)
    assert r.stdout == listing(MESSAGES)
    assert auth_commands(r), "curl did not use SASL:\n" + tail(r)
    assert b"USER " not in r.stderr and b"APOP " not in r.stderr


def test_curl_default_mechanism_stls(server, mailbox):
    user, pw = mailbox
    r = curl("--ssl-reqd", "-k", "-u", "%s:%s" % (user, pw),
             "pop3://127.0.0.1:%d/2" % server.pop3_port)
    assert r.returncode == 0, tail(r)
    assert r.stdout == to_wire(MESSAGES[1])
    assert auth_commands(r), "curl did not use SASL:\n" + tail(r)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_curl_login_options(server, mailbox, mech):
    user, pw = mailbox
    r = curl("-k", "--login-options", "AUTH=" + mech, url("pop3s", user, pw, server.pop3s_port))
    assert r.returncode == 0, tail(r)
    assert r.stdout == listing(MESSAGES)
    assert [a.split()[1] for a in auth_commands(r)] == [mech.encode()], tail(r)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", None])
def test_curl_wrong_password(server, mailbox, mech):
    user, _ = mailbox
    opts = ["--login-options", "AUTH=" + mech] if mech else []
    r = curl("-k", *opts, url("pop3s", user, server.secret(), server.pop3s_port))
    assert r.returncode == LOGIN_DENIED, (r.returncode, tail(r))
    assert r.stdout == b""


def test_curl_plaintext_mechanism_refused_without_tls(server, mailbox):
    """No TLS: PLAIN and LOGIN are not offered; forcing PLAIN fails."""
    user, pw = mailbox
    r = curl("--login-options", "AUTH=PLAIN", url("pop3", user, pw, server.pop3_port))
    assert r.returncode != 0, "plaintext login without TLS succeeded: %r" % r.stdout
    assert r.stdout == b""


# ---------------------------------------------------------------- CRAM-MD5

@pytest.fixture(scope="module")
def cram_server(server_factory):
    return server_factory({"auth": {
        "plaintext_without_tls": "no", "failure_delay": "0",
        "mechanisms": "SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, "
                      "CRAM-MD5, PLAIN, LOGIN"}})


@pytest.mark.parametrize("scheme", ["pop3", "pop3s"])
def test_curl_cram_md5(cram_server, scheme):
    user, pw = cram_server.add_user(apop=True)
    cram_server.deliver(user, MESSAGES[0])
    port = cram_server.pop3s_port if scheme == "pop3s" else cram_server.pop3_port
    r = curl("-k", "--login-options", "AUTH=CRAM-MD5", url(scheme, user, pw, port, "1"))
    assert r.returncode == 0, tail(r)
    assert r.stdout == to_wire(MESSAGES[0])
    assert auth_commands(r) == [b"AUTH CRAM-MD5"], tail(r)


def test_curl_cram_md5_wrong_password(cram_server):
    user, _ = cram_server.add_user(apop=True)
    r = curl("--login-options", "AUTH=CRAM-MD5",
             url("pop3", user, cram_server.secret(), cram_server.pop3_port))
    assert r.returncode == LOGIN_DENIED, (r.returncode, tail(r))


def test_curl_plain_for_user_without_apop_on_cram_server(cram_server):
    """A user without an APOP secret on a server offering CRAM-MD5 picks
    PLAIN explicitly."""
    user, pw = cram_server.add_user()
    cram_server.deliver(user, MESSAGES[1])
    r = curl("-k", "--login-options", "AUTH=PLAIN", url("pop3s", user, pw,
                                                        cram_server.pop3s_port, "1"))
    assert r.returncode == 0, tail(r)
    assert r.stdout == to_wire(MESSAGES[1])


# ---------------------------------------------------------------- OAuth

@pytest.fixture(scope="module")
def oauth(server_factory, tmp_path_factory):
    """{mechanism: (server, issuer, user)}. curl 7.88.1 sends AUTH
    OAUTHBEARER whenever the server offers it, even with --login-options
    AUTH=XOAUTH2 (tried: its -v trace shows '> AUTH OAUTHBEARER'), so
    XOAUTH2 gets a server that offers only XOAUTH2 of the two."""
    from sasl_fixtures import TokenIssuer
    iss = TokenIssuer(tmp_path_factory.mktemp("curl_oauth"))
    out = {}
    for mech, mechanisms in (("OAUTHBEARER", None), ("XOAUTH2", "XOAUTH2, PLAIN, LOGIN")):
        auth = {"plaintext_without_tls": "no", "failure_delay": "0"}
        auth.update(iss.config())
        if mechanisms:
            auth["mechanisms"] = mechanisms
        srv = server_factory({"auth": auth})
        user, _ = srv.add_user()
        srv.deliver(user, MESSAGES[0])
        out[mech] = (srv, iss, user)
    return out


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_curl_oauth2_bearer(oauth, mech):
    srv, iss, user = oauth[mech]
    r = curl("-k", "--oauth2-bearer", iss.token(user, alg="ES256"), "-u", user,
             "pop3s://127.0.0.1:%d/1" % srv.pop3s_port)
    assert r.returncode == 0, tail(r)
    assert r.stdout == to_wire(MESSAGES[0])
    assert [a.split()[1] for a in auth_commands(r)] == [mech.encode()], tail(r)


@pytest.mark.parametrize("mech", ["OAUTHBEARER", "XOAUTH2"])
def test_curl_oauth2_bearer_expired_token(oauth, mech):
    srv, iss, user = oauth[mech]
    now = int(time.time())
    tok = iss.token(user, exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    r = curl("-k", "--oauth2-bearer", tok, "-u", user,
             "pop3s://127.0.0.1:%d/" % srv.pop3s_port)
    assert r.returncode == LOGIN_DENIED, (r.returncode, tail(r))
    assert r.stdout == b""
    assert [a.split()[1] for a in auth_commands(r)] == [mech.encode()], tail(r)
