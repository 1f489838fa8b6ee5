"""test_mpop_sasl.py — mpop (GNU SASL client, built-in OAUTHBEARER/XOAUTH2)
logging in with each SASL mechanism pobox serves: SCRAM-SHA-256,
SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN, EXTERNAL (TLS client certificate),
OAUTHBEARER, XOAUTH2, and mpop's own choice (`auth on`), over POP3S, STLS
and (where the mechanism is not plaintext) no TLS. Mail is fetched into an
mbox and removed from the server; wrong credentials give a non-zero exit
and leave the mail where it is."""

import os
import shutil
import subprocess
import time

import pytest

from pobox_harness import make_message

pytestmark = pytest.mark.skipif(shutil.which("mpop") is None, reason="mpop is not installed")

MECHANISMS = ("SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1, EXTERNAL, "
              "OAUTHBEARER, XOAUTH2, CRAM-MD5, PLAIN, LOGIN")

TLS_LINES = {
    "implicit": "tls on\ntls_starttls off\ntls_certcheck off\n",
    "starttls": "tls on\ntls_starttls on\ntls_certcheck off\n",
    "off": "tls off\n",
}


class Env:
    pass


@pytest.fixture(scope="module")
def env(server_factory, tmp_path_factory):
    from sasl_fixtures import ClientCA, TokenIssuer
    d = tmp_path_factory.mktemp("mpop_sasl_keys")
    e = Env()
    e.ca = ClientCA(d / "ca")
    e.rogue = ClientCA(d / "rogue", "another CA")
    e.issuer = TokenIssuer(d / "oauth")
    auth = {"plaintext_without_tls": "no", "failure_delay": "0", "mechanisms": MECHANISMS}
    auth.update(e.issuer.config())
    e.server = server_factory({"auth": auth, "tls": {"client_ca": str(e.ca.pem_path)}})
    return e


def run_mpop(env, home, auth, tls, user, secret, cert=None):
    """Runs `mpop -d` for one account; the secret comes from a file
    through passwordeval (tokens are longer than an rc line may be)."""
    home.mkdir(parents=True, exist_ok=True)
    srv = env.server
    port = srv.pop3s_port if tls == "implicit" else srv.pop3_port
    secret_file = home / "secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    extra = ""
    if cert:
        extra = "tls_cert_file %s\ntls_key_file %s\n" % cert
    rc = home / "mpoprc"
    rc.write_text(
        "defaults\n" + TLS_LINES[tls] + extra +
        "timeout 20\n"
        "uidls_file %s\n"
        "account test\n"
        "host 127.0.0.1\n"
        "port %d\n"
        "auth %s\n"
        "user %s\n"
        "passwordeval cat %s\n"
        "delivery mbox %s\n" % (home / "uidls", port, auth, user, secret_file, home / "out.mbox"))
    rc.chmod(0o600)
    r = subprocess.run(["mpop", "-d", "-C", str(rc), "test"], capture_output=True,
                       timeout=60, env=dict(os.environ, HOME=str(home)))
    r.log = (r.stdout + r.stderr).decode("utf-8", "replace")
    r.fetched = (home / "out.mbox").read_bytes() if (home / "out.mbox").exists() else b""
    return r


def auth_lines(r):
    return [l.strip() for l in r.log.splitlines() if l.startswith("--> AUTH")]


def advertised(r):
    return [m for l in r.log.splitlines() if l.startswith("<-- SASL ") for m in l.split()[2:]]


def short(r):
    keep = [l for l in r.log.splitlines()
            if not l.startswith(("TLS", "    ", "mpop: TLS"))]
    return "rc %d\n%s" % (r.returncode, "\n".join(keep)[-3000:])


def credentials(env, auth, user, pw):
    """(secret, client certificate) mpop needs for this mechanism."""
    if auth in ("oauthbearer", "xoauth2"):
        return env.issuer.token(user), None
    if auth == "external":
        return "unused", env.ca.client_cert("mpop-" + user.split("@")[0], email=user)
    return pw, None


CASES = [
    ("scram-sha-256", "implicit"), ("scram-sha-256", "starttls"), ("scram-sha-256", "off"),
    ("scram-sha-1", "implicit"), ("scram-sha-1", "off"),
    ("cram-md5", "off"), ("cram-md5", "implicit"),
    ("plain", "implicit"), ("plain", "starttls"),
    ("login", "implicit"), ("login", "starttls"),
    ("external", "implicit"), ("external", "starttls"),
    ("oauthbearer", "implicit"), ("xoauth2", "starttls"),
    ("on", "implicit"), ("on", "off"),
]


@pytest.mark.parametrize("auth,tls", CASES)
def test_mpop_sasl_fetches_mail(env, tmp_path, auth, tls):
    srv = env.server
    user, pw = srv.add_user(apop=(auth == "cram-md5"))
    subjects = ["mpop %s %s %d" % (auth, tls, i) for i in range(2)]
    for s in subjects:
        srv.deliver(user, make_message(s, b"body\n.dot\n"))
    secret, cert = credentials(env, auth, user, pw)
    r = run_mpop(env, tmp_path / "home", auth, tls, user, secret, cert)
    assert r.returncode == 0, short(r)
    for s in subjects:
        assert b"Subject: " + s.encode() + b"\n" in r.fetched, short(r)
    assert r.fetched.count(b"\nbody\n.dot\n") == 2
    sent = auth_lines(r)
    assert len(sent) == 1, short(r)
    if auth != "on":
        # mpop sends OAUTHBEARER's message as an initial response
        assert sent[0].split()[:3] == ["-->", "AUTH", auth.upper()], short(r)
    else:
        # mpop's own choice (PLAIN on TLS, SCRAM-SHA-256 without) among
        # the advertised ones, never a plaintext one without TLS
        mech = sent[0].split()[2]
        assert mech in advertised(r), short(r)
        if tls == "off":
            assert mech not in ("PLAIN", "LOGIN"), short(r)
    # keep is off: mpop deleted the messages (the QUIT came after DELE)
    deadline = time.monotonic() + 5
    while srv.message_files(user) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert srv.message_files(user) == [], "mail left on the server after mpop's QUIT"


def wrong_credentials(env, auth, user):
    if auth in ("oauthbearer", "xoauth2"):
        now = int(time.time())
        return env.issuer.token(user, exp=now - 3600, iat=now - 7200, nbf=now - 7200), None
    if auth == "external":
        # a certificate for this user from a CA the server does not trust
        return "unused", env.rogue.client_cert("rogue-" + user.split("@")[0], email=user)
    return env.server.secret(), None


@pytest.mark.parametrize("auth,tls", [
    ("scram-sha-256", "implicit"), ("scram-sha-1", "off"), ("cram-md5", "off"),
    ("plain", "implicit"), ("login", "starttls"), ("external", "implicit"),
    ("oauthbearer", "implicit"), ("xoauth2", "implicit"), ("on", "implicit")])
def test_mpop_sasl_wrong_credentials(env, tmp_path, auth, tls):
    srv = env.server
    user, _ = srv.add_user(apop=(auth == "cram-md5"))
    srv.deliver(user, make_message("not for you"))
    secret, cert = wrong_credentials(env, auth, user)
    r = run_mpop(env, tmp_path / "home", auth, tls, user, secret, cert)
    assert r.returncode != 0, short(r)
    assert r.fetched == b""
    assert len(srv.message_files(user)) == 1
    if auth == "external":
        # EXTERNAL is not offered for an untrusted certificate
        assert "EXTERNAL" not in advertised(r), short(r)
    else:
        assert "-ERR [AUTH]" in r.log, short(r)


def test_mpop_plain_refused_without_tls(env, tmp_path):
    """mpop forced to PLAIN on a plain connection: the server refuses
    before any credentials are sent."""
    srv = env.server
    user, pw = srv.add_user()
    srv.deliver(user, make_message("plain without tls"))
    r = run_mpop(env, tmp_path / "home", "plain", "off", user, pw)
    assert r.returncode != 0, short(r)
    assert r.fetched == b""
    assert not any(pw in l for l in r.log.splitlines() if l.startswith("-->")), short(r)
