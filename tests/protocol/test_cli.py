"""test_cli.py — the `pobox` command line (SPEC sections 1 and 2): user
add/passwd/del/list against a running server, check, --version, help,
config errors, signals (SIGHUP reload, SIGTERM/SIGINT stop), privilege drop."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pobox_harness import (HOSTNAME, POBOX, VERSION, Server, make_message,
                           resp_code)

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}


def run(*args, input=None, env=None, timeout=30):
    return subprocess.run([str(POBOX)] + list(args), input=input, capture_output=True,
                          timeout=timeout, env=env,
                          stdin=None if input is not None else subprocess.DEVNULL)


def out(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def user_list(server):
    r = server.cli("user", "list")
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().splitlines()


def can_login(server, user, pw):
    with server.connect() as c:
        c.cmd("USER " + user)
        r = c.cmd("PASS " + pw)
        if r.startswith(b"+OK"):
            c.quit()
            return True
        assert resp_code(r) == "AUTH", r
        return False


# ---------------------------------------------------------------- basics

def test_version():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert VERSION in r.stdout.decode(), r.stdout


def test_help():
    r = run("help")
    assert r.returncode == 0, r.stderr
    text = out(r)
    for word in ("serve", "user", "check"):
        assert word in text, text


def test_unknown_subcommand_fails():
    r = run("frobnicate")
    assert r.returncode != 0
    assert r.stderr.strip(), "no error message"


# ---------------------------------------------------------------- check / config

def test_check_valid_config(server):
    r = server.cli("check")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "idle_timeout" in text and HOSTNAME in text, text


def test_check_empty_config_is_valid(tmp_path):
    conf = tmp_path / "empty.conf"
    conf.write_text("")
    r = run("check", "-c", str(conf))
    assert r.returncode == 0, out(r)


def test_check_unknown_key_names_file_line_and_key(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[server]\nhostname = x.example.org\n\n[pop3]\nidle_timout = 7\n")
    r = run("check", "-c", str(conf))
    assert r.returncode == 1, out(r)
    err = r.stderr.decode()
    assert str(conf) in err or "bad.conf" in err, err
    assert re.search(r"\b5\b", err), "line number 5 missing: %r" % err
    assert "idle_timout" in err, err


def test_check_bad_duration_and_bad_number(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[pop3]\nidle_timeout = soon\n[limits]\nmax_connections = many\n")
    r = run("check", "-c", str(conf))
    assert r.returncode == 1, out(r)
    err = r.stderr.decode()
    assert "idle_timeout" in err and "max_connections" in err, err


def test_check_accepts_durations(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text("[auth]\nfailure_delay = 250ms\nmax_failure_delay = 15s\n"
                    "[pop3]\nidle_timeout = 10m\n[tls]\nhandshake_timeout = 30\n")
    r = run("check", "-c", str(conf))
    assert r.returncode == 0, out(r)
    conf.write_text("[auth]\nfailure_delay = 0\n[pop3]\nidle_timeout = 1h\n")
    assert run("check", "-c", str(conf)).returncode == 0


def test_check_override_with_o(server):
    base = server.cli("check")
    over = server.cli("check", "-o", "pop3.idle_timeout=1234")
    assert base.returncode == 0 and over.returncode == 0, over.stderr
    line = lambda t: [l for l in t.decode().splitlines() if "idle_timeout" in l]
    assert line(base.stdout) != line(over.stdout), (line(base.stdout), line(over.stdout))
    assert "1234" in "".join(line(over.stdout)) or "20m" in "".join(line(over.stdout))


def test_check_override_unknown_key_fails(server):
    r = server.cli("check", "-o", "pop3.nosuchkey=1")
    assert r.returncode != 0
    assert "nosuchkey" in r.stderr.decode()


def test_config_from_environment(server):
    env = dict(os.environ, POBOX_CONFIG=str(server.conf))
    r = run("check", env=env)
    assert r.returncode == 0, out(r)
    assert HOSTNAME in r.stdout.decode()


def test_serve_refuses_a_bad_config(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[listen]\npop3 = 127.0.0.1:0\nbogus = 1\n")
    r = run("serve", "-c", str(conf), timeout=15)
    assert r.returncode != 0
    assert "bogus" in r.stderr.decode(), r.stderr


# ---------------------------------------------------------------- users

def test_user_add_list_del(server):
    a, pa = server.add_user()
    b, pb = server.add_user()
    users = user_list(server)
    assert users.count(a) == 1 and users.count(b) == 1, users
    assert all("@" in u and " " not in u for u in users), users
    r = server.cli("user", "del", b)
    assert r.returncode == 0, r.stderr
    users = user_list(server)
    assert a in users and b not in users


def test_user_add_duplicate_fails(server):
    a, _ = server.add_user()
    r = server.cli("user", "add", a, input=b"another-password\n")
    assert r.returncode != 0
    assert r.stderr.strip()
    assert user_list(server).count(a) == 1


@pytest.mark.parametrize("address", ["no-at-sign", "@example.org", "local@",
                                     "a b@example.org", "a@b@example.org", ""])
def test_user_add_invalid_address_fails(server, address):
    r = server.cli("user", "add", address, input=b"Some-password-1\n")
    assert r.returncode != 0, "accepted %r" % address
    assert r.stderr.strip()


def test_user_commands_on_unknown_user_fail(server):
    r = server.cli("user", "passwd", "nobody-here@example.org", input=b"x-password-1\n")
    assert r.returncode != 0 and r.stderr.strip()
    r = server.cli("user", "del", "nobody-here@example.org")
    assert r.returncode != 0 and r.stderr.strip()


def test_user_added_while_running_logs_in_without_restart(server):
    user, pw = server.add_user()
    deadline = time.monotonic() + 5
    while not can_login(server, user, pw):
        assert time.monotonic() < deadline, "new user cannot log in without a restart"
        time.sleep(0.2)


def test_user_passwd_while_running(server):
    user, old = server.add_user()
    assert can_login(server, user, old)
    new = "New-" + os.urandom(6).hex()
    server.passwords.add(new)
    r = server.cli("user", "passwd", user, input=(new + "\n").encode())
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while can_login(server, user, old) or not can_login(server, user, new):
        assert time.monotonic() < deadline, "password change not picked up"
        time.sleep(0.2)


def test_user_del_while_running_and_purge(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("kept"))
    assert can_login(server, user, pw)
    r = server.cli("user", "del", user)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 5
    while can_login(server, user, pw):
        assert time.monotonic() < deadline, "deleted user can still log in"
        time.sleep(0.2)
    md = server.maildir(user)
    assert md.is_dir() and server.message_files(user), "user del without --purge removed mail"
    # --purge removes the mailbox too
    user2, _ = server.add_user()
    server.deliver(user2, make_message("purged"))
    r = server.cli("user", "del", user2, "--purge")
    assert r.returncode == 0, r.stderr
    assert not server.maildir(user2).exists(), "--purge left the mailbox"


def test_users_file_holds_hashes_never_passwords(server):
    user, pw = server.add_user()
    apop_user, apop_pw = server.add_user(apop=True)
    users_file = server.data_dir / "users"
    assert users_file.is_file(), "no users file in data_dir"
    text = users_file.read_text(errors="replace")
    assert user in text
    assert pw not in text, "plaintext password in the users file"
    assert "$argon2id$" in text, "new passwords are not argon2id hashes"
    assert users_file.stat().st_mode & 0o007 == 0, "users file readable by others"
    # no temp files left behind by the atomic rewrite
    leftovers = [p.name for p in server.data_dir.iterdir()
                 if p.name.startswith("users") and p.name != "users"]
    assert not [n for n in leftovers if "tmp" in n or n.endswith("~")], leftovers


def scram_fields(server, user):
    """The scram-sha-1= and scram-sha-256= values of user's line, as dict."""
    lines = [l for l in (server.data_dir / "users").read_text().splitlines()
             if l.startswith(user + ":")]
    assert len(lines) == 1, lines
    extra = lines[0].split(":", 7)[7] if lines[0].count(":") >= 7 else ""
    pairs = dict(t.split("=", 1) for t in extra.split() if "=" in t)
    return {k: v for k, v in pairs.items() if k.startswith("scram-")}


def test_user_add_and_passwd_store_scram_credentials(server):
    pw = "Scram-" + os.urandom(6).hex()
    server.passwords.add(pw)
    user, _ = server.add_user(password=pw)
    text = (server.data_dir / "users").read_text()
    assert pw not in text, "plaintext password in the users file"
    creds = scram_fields(server, user)
    assert sorted(creds) == ["scram-sha-1", "scram-sha-256"], creds
    # ITERATIONS,SALT,STOREDKEY,SERVERKEY: 16-octet salt, 20/32-octet keys
    lengths = {"scram-sha-1": 28, "scram-sha-256": 44}
    for key, value in creds.items():
        it, salt, stored, srv = value.split(",")
        assert it == "4096", value
        assert len(salt) == 24 and len(stored) == lengths[key] == len(srv), value
    assert creds["scram-sha-1"].split(",")[1] != creds["scram-sha-256"].split(",")[1]
    assert "apop=" not in text.split(user + ":", 1)[1].splitlines()[0]

    # auth.scram_iterations applies to new credentials
    user2 = "scramiter%d@example.org" % os.getpid()
    r = server.cli("user", "add", user2, "-o", "auth.scram_iterations=8192",
                   input=(pw + "\n").encode())
    assert r.returncode == 0, r.stderr
    creds2 = scram_fields(server, user2)
    assert all(v.startswith("8192,") for v in creds2.values()), creds2
    assert len(creds2) == 2, creds2
    r = server.cli("user", "add", "x" + user2, "-o", "auth.scram_iterations=1000",
                   input=(pw + "\n").encode())
    assert r.returncode != 0 and b"scram_iterations" in r.stderr, r.stderr

    # passwd: new salts and keys, even for the same password; --apop as before
    r = server.cli("user", "passwd", user, "--apop", input=(pw + "\n").encode())
    assert r.returncode == 0, r.stderr
    after = scram_fields(server, user)
    assert sorted(after) == sorted(creds), after
    for key in creds:
        assert after[key].startswith("4096,"), after
        assert after[key].split(",")[1] != creds[key].split(",")[1], "same salt"
    assert "apop=" in [l for l in (server.data_dir / "users").read_text()
                       .splitlines() if l.startswith(user + ":")][0]
    assert can_login(server, user, pw)


def test_cli_never_prints_passwords_or_hashes(server):
    pw = "Visible-" + os.urandom(6).hex()
    server.passwords.add(pw)
    user = "printcheck%d@example.org" % os.getpid()
    outputs = []
    r = server.cli("user", "add", user, input=(pw + "\n").encode())
    assert r.returncode == 0, r.stderr
    outputs.append(out(r))
    r = server.cli("user", "passwd", user, "--apop", input=(pw + "x\n").encode())
    server.passwords.add(pw + "x")
    assert r.returncode == 0, r.stderr
    outputs.append(out(r))
    outputs.append(out(server.cli("user", "list")))
    outputs.append(out(server.cli("check")))
    for o in outputs:
        assert pw not in o and "$argon2" not in o, o


def test_user_add_with_apop_enables_apop(server):
    user, pw = server.add_user(apop=True)
    with server.connect() as c:
        assert c.apop(user, pw).startswith(b"+OK")
        c.quit()


# ---------------------------------------------------------------- signals

def test_sighup_keeps_sessions_and_reloads_config(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("during reload"))
    session = server.session(user, pw)
    try:
        with server.connect() as c:
            assert re.search(rb"<[^>]+@", c.greeting), c.greeting
        server.set("auth", "apop", "no")
        server.reload()
        deadline = time.monotonic() + 10
        while True:
            with server.connect() as c:
                g = c.greeting
                c.cmd("QUIT")
            if not re.search(rb"<[^>]+@", g):
                break
            assert time.monotonic() < deadline, "auth.apop = no not applied after SIGHUP"
            time.sleep(0.2)
        # the session survived the reload
        assert session.stat()[0] == 1
        assert session.retr(1)
        assert session.quit().startswith(b"+OK")
    finally:
        session.close()
        server.set("auth", "apop", None)
        server.reload()
    time.sleep(0.5)
    server.assert_alive()


def test_sighup_with_broken_config_keeps_serving(server):
    user, pw = server.add_user()
    good = server.conf.read_text()
    try:
        server.conf.write_text(good + "\n[pop3]\nno_such_key = 1\n")
        server.reload()
        time.sleep(1)
        server.assert_alive()
        assert can_login(server, user, pw)
    finally:
        server.conf.write_text(good)
        server.reload()
    time.sleep(0.5)
    server.assert_alive()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_zero_with_open_sessions(server_factory, sig):
    srv = server_factory(SERVER_CONFIG)
    user, pw = srv.add_user()
    srv.deliver(user, make_message("not deleted"))
    idle = srv.connect()
    busy = srv.session(user, pw)
    assert busy.cmd("DELE 1").startswith(b"+OK")
    try:
        t0 = time.monotonic()
        rc = srv.stop(sig)
        assert rc == 0, "exit code %r after %s" % (rc, sig.name)
        # idle sessions are cut at once (no 10 s grace needed)
        assert time.monotonic() - t0 < 5, "took %.1fs to stop" % (time.monotonic() - t0)
        idle.wait_closed(5)
        busy.wait_closed(5)
    finally:
        idle.close()
        busy.close()
    # the session was cut without QUIT: nothing deleted
    assert len(srv.message_files(user)) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_privilege_drop_to_server_user(tmp_path_factory):
    import pwd
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="pobox-privdrop-", dir="/tmp"))
    srv = None
    try:
        os.chmod(base, 0o755)
        srv = Server(base, {"server": {"user": "nobody"},
                            "auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}})
        srv.pop3_port = srv.pop3s_port = 1      # placeholders until start()
        srv.write_config()
        os.chmod(srv.conf, 0o644)
        srv.data_dir.mkdir()
        user, pw = srv.add_user()
        srv.deliver(user, make_message("as nobody"))
        for root, dirs, files in os.walk(srv.data_dir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), nobody.pw_uid, nobody.pw_gid)
        os.chown(srv.data_dir, nobody.pw_uid, nobody.pw_gid)
        srv.start()
        os.chmod(srv.conf, 0o644)
        status = Path("/proc/%d/status" % srv.proc.pid).read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        assert uids == [str(nobody.pw_uid)] * 4, "running with uids %r, not nobody" % uids
        with srv.session(user, pw) as c:
            assert c.stat()[0] == 1
            assert c.retr(1)
            assert c.cmd("DELE 1").startswith(b"+OK")
            assert c.quit().startswith(b"+OK")
        assert srv.message_files(user) == []
        with srv.connect_tls() as c:       # the TLS key was loaded
            assert c.greeting.startswith(b"+OK")
        assert srv.stop() == 0
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- imported hashes

def _crypt(pw, salt):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    h = crypt.crypt(pw, salt)
    assert h and not h.startswith("*"), "libcrypt cannot make %r" % salt
    return h


def test_imported_dovecot_hashes_verify(server):
    """docs/storage.md: a Dovecot passwd-file can be copied in as it is;
    SHA512/SHA256-crypt, bcrypt and yescrypt verify; plaintext and weak
    schemes are refused."""
    tag = str(os.getpid())
    pw = "Imported-" + os.urandom(4).hex()
    server.passwords.add(pw)
    good = {
        "imp-sha512-%s@example.org" % tag: "{SHA512-CRYPT}" + _crypt(pw, "$6$abcdefgh"),
        "imp-sha512b-%s@example.org" % tag: _crypt(pw, "$6$hgfedcba"),
        "imp-sha256-%s@example.org" % tag: "{SHA256-CRYPT}" + _crypt(pw, "$5$abcdefgh"),
        "imp-blf-%s@example.org" % tag: "{BLF-CRYPT}" + _crypt(pw, "$2y$05$abcdefghijklmnopqrstuu"),
        "imp-blfb-%s@example.org" % tag: _crypt(pw, "$2b$05$uutsrqponmlkjihgfedcba"),
        "imp-yes-%s@example.org" % tag: _crypt(pw, "$y$j9T$abcdefghijklmnop$"),
        "imp-extra-%s@example.org" % tag: "{SHA512-CRYPT}" + _crypt(pw, "$6$zzzzzzzz") + "::::::",
    }
    bad = {
        "imp-plain-%s@example.org" % tag: "{PLAIN}" + pw,
        "imp-cleartext-%s@example.org" % tag: "{CLEARTEXT}" + pw,
        "imp-md5-%s@example.org" % tag: "{MD5-CRYPT}" + _crypt(pw, "$1$abcdefgh"),
        "imp-md5b-%s@example.org" % tag: _crypt(pw, "$1$hgfedcba"),
    }
    server.add_user()                   # the users file exists
    users_file = server.data_dir / "users"
    text = users_file.read_text()
    if not text.endswith("\n"):
        text += "\n"
    text += "".join("%s:%s\n" % kv for kv in list(good.items()) + list(bad.items()))
    tmp = server.data_dir / "users.import-test"
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.rename(tmp, users_file)          # as an admin would replace it
    failed = [u for u in good if not can_login(server, u, pw)]
    assert not failed, "imported hashes that do not verify: %r" % failed
    accepted = [u for u in bad if can_login(server, u, pw)]
    assert not accepted, "plaintext/weak schemes accepted: %r" % accepted
    # wrong passwords still fail for imported hashes
    assert not can_login(server, next(iter(good)), pw + "x")
    assert [u for u in good if u in user_list(server)] == list(good)


def test_address_is_stored_lowercase(server):
    r = server.cli("user", "add", "Mixed.Case%d@Example.ORG" % os.getpid(),
                   input=b"Case-password-1\n")
    assert r.returncode == 0, r.stderr
    server.passwords.add("Case-password-1")
    low = "mixed.case%d@example.org" % os.getpid()
    assert low in user_list(server)
    assert can_login(server, low, "Case-password-1")


def test_user_add_while_logins_run(server):
    """The users file is rewritten atomically: logins running while users
    are added never fail."""
    import threading
    user, pw = server.add_user()
    stop = threading.Event()
    results = []

    def login_loop():
        while not stop.is_set():
            try:
                with server.connect() as c:
                    c.cmd("USER " + user)
                    r = c.cmd("PASS " + pw)
                    results.append(r)
                    if r.startswith(b"+OK"):
                        c.quit()
            except Exception as e:        # reported below
                results.append(repr(e).encode())

    t = threading.Thread(target=login_loop)
    t.start()
    try:
        for _ in range(6):
            server.add_user()
    finally:
        stop.set()
        t.join(30)
    bad = [r for r in results if not r.startswith(b"+OK") and b"IN-USE" not in r]
    assert results and not bad, bad


def test_sighup_storm_keeps_serving(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("storm"))
    with server.session(user, pw) as c:
        for _ in range(20):
            server.reload()
            time.sleep(0.02)
            assert c.cmd("NOOP").startswith(b"+OK")
        assert c.retr(1)
        c.quit()
    time.sleep(0.5)
    server.assert_alive()


def test_example_configs_in_the_repository_are_valid():
    from pobox_harness import ROOT
    confs = sorted((ROOT / "conf").glob("*.conf*"))
    assert confs, "no configuration in conf/"
    for conf in confs:
        r = run("check", "-c", str(conf))
        assert r.returncode == 0, "%s: %s" % (conf.name, out(r))


def test_sigterm_while_login_jobs_run(server_factory):
    """SIGTERM while password checks run on the worker pool: exit 0."""
    srv = server_factory(SERVER_CONFIG)
    user, pw = srv.add_user()
    logins = []
    for _ in range(10):
        c = srv.connect()
        c.send(("USER %s\r\nPASS %s\r\n" % (user, pw + "x")).encode())
        logins.append(c)
    try:
        rc = srv.stop()
        assert rc == 0, "exit code %r; log tail:\n%s" % (rc, srv.log_text()[-1500:])
    finally:
        for c in logins:
            c.close()


def test_sigterm_with_a_stalled_retr(server_factory):
    """SIGTERM while a RETR is blocked on a client that stopped reading: the
    server may give the session a grace period, but must then cut it and
    exit 0, not wait for the client forever."""
    srv = server_factory(SERVER_CONFIG)
    user, pw = srv.add_user()
    srv.deliver(user, make_message("big", (b"b" * 79 + b"\n") * 100000))    # 8 MB
    stalled = srv.session(user, pw)
    try:
        stalled.send(b"RETR 1\r\n")
        assert stalled.readline().startswith(b"+OK")
        time.sleep(0.5)                 # the socket buffers fill up
        t0 = time.monotonic()
        rc = srv.stop(timeout=20)
        assert rc == 0, "exit code %r (None: still running %.0fs after SIGTERM)" % (
            rc, time.monotonic() - t0)
    finally:
        stalled.close()
    # cut without QUIT: nothing deleted, nothing damaged
    assert len(srv.message_files(user)) == 1
