"""test_alias_cli.py — `pobox alias add|del|list` (SPEC section 1): the
aliases file in data_dir (format, atomic rewrite, mode, hand edits kept),
errors and exit codes, and changes seen by a running server without a
restart (RCPT on port 25, delivery through an alias)."""

import os
import stat
import subprocess
import time

import pytest

from pobox_harness import DOMAIN, HOSTNAME, POBOX, assert_queued, smtp_message, unique

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}
OTHER = "remote.example"


def alias_list(server):
    r = server.cli("alias", "list")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b"", r.stderr
    return r.stdout.decode().splitlines()


def add(server, alias, *targets):
    r = server.cli("alias", "add", alias, *targets)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b"", (r.stdout, r.stderr)


def aliases_file(server):
    return server.data_dir / "aliases"


def standalone(tmp_path, *args):
    """`pobox -c CONF ARGS` with a config of its own whose data_dir is
    tmp_path/data (not created)."""
    conf = tmp_path / "pobox.conf"
    conf.write_text("[server]\nhostname = %s\ndomains = %s\ndata_dir = %s\n" % (
        HOSTNAME, DOMAIN, tmp_path / "data"))
    return subprocess.run([str(POBOX), "-c", str(conf)] + list(args),
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- add / list / del

def test_add_list_del(server):
    add(server, "Info@Example.ORG", "alice@" + DOMAIN, "Bob.Smith@Remote.EXAMPLE")
    add(server, "@" + DOMAIN, "postmaster@" + DOMAIN)
    lines = alias_list(server)
    assert "info@%s: alice@%s, Bob.Smith@%s" % (DOMAIN, DOMAIN, OTHER) in lines, lines
    assert "@%s: postmaster@%s" % (DOMAIN, DOMAIN) in lines, lines

    # replacing keeps one line
    add(server, "info@" + DOMAIN, "carol@" + DOMAIN)
    lines = alias_list(server)
    assert [l for l in lines if l.startswith("info@")] == ["info@%s: carol@%s" % (DOMAIN, DOMAIN)]

    r = server.cli("alias", "del", "INFO@" + DOMAIN)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and r.stderr == b""
    r = server.cli("alias", "del", "@" + DOMAIN)
    assert r.returncode == 0, r.stderr
    lines = alias_list(server)
    assert not [l for l in lines if l.startswith("info@") or l.startswith("@")], lines


def test_file_format_mode_and_no_leftovers(server):
    add(server, "format@" + DOMAIN, "a@" + DOMAIN, "b@" + OTHER)
    f = aliases_file(server)
    text = f.read_text()
    assert "format@%s: a@%s, b@%s\n" % (DOMAIN, DOMAIN, OTHER) in text, text
    # the users file's policy: not readable by others
    mode = stat.S_IMODE(f.stat().st_mode)
    assert mode == 0o600, oct(mode)
    leftovers = [p.name for p in server.data_dir.iterdir()
                 if p.name.startswith("aliases") and p.name not in ("aliases", "aliases.lock")]
    assert not leftovers, leftovers


def test_rewrite_is_atomic_and_keeps_hand_edits(server):
    f = aliases_file(server)
    hand = ("# kept comment\n\n"
            "hand@%s:x@%s ,y@%s\n" % (DOMAIN, DOMAIN, OTHER))
    f.write_text(f.read_text() + hand)
    before = f.stat().st_ino
    add(server, "another@" + DOMAIN, "z@" + DOMAIN)
    assert f.stat().st_ino != before, "rewritten in place, not renamed over"
    text = f.read_text()
    assert hand in text, text
    assert "hand@%s: x@%s, y@%s" % (DOMAIN, DOMAIN, OTHER) in alias_list(server)


def test_outside_edit_visible_at_once(server):
    f = aliases_file(server)
    tmp = server.data_dir / "aliases.new"
    tmp.write_text(f.read_text() + "edited@%s: someone@%s\n" % (DOMAIN, OTHER))
    os.rename(tmp, f)
    assert "edited@%s: someone@%s" % (DOMAIN, OTHER) in alias_list(server)


def test_list_without_file(tmp_path):
    r = standalone(tmp_path, "alias", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""
    r = standalone(tmp_path, "alias", "del", "x@" + DOMAIN)
    assert r.returncode == 1 and b"no such alias" in r.stderr, r.stderr
    # the first add creates data_dir and the file
    r = standalone(tmp_path, "alias", "add", "x@" + DOMAIN, "y@" + OTHER)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data" / "aliases").read_text() == "x@%s: y@%s\n" % (DOMAIN, OTHER)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("alias", ["no-at-sign", "local@", "a b@" + DOMAIN,
                                   "a@b@" + DOMAIN, "", "a..b@" + DOMAIN,
                                   "#x@" + DOMAIN, "a@bad_domain.org"])
def test_add_invalid_alias(server, alias):
    r = server.cli("alias", "add", alias, "alice@" + DOMAIN)
    assert r.returncode == 2, (alias, r.returncode, r.stderr)
    err = r.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and "not a valid alias" in err, err
    assert not [l for l in alias_list(server) if l.startswith(alias + ":")]


@pytest.mark.parametrize("target", ["alice", "@" + DOMAIN, "a b@" + DOMAIN,
                                    "alice@", "a,b@" + DOMAIN, "x@y@z.org",
                                    '"quoted"@' + DOMAIN])
def test_add_invalid_target(server, target):
    r = server.cli("alias", "add", "bad@" + DOMAIN, "ok@" + DOMAIN, target)
    assert r.returncode == 2, (target, r.returncode, r.stderr)
    err = r.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and "not a valid target" in err, err
    assert not [l for l in alias_list(server) if l.startswith("bad@")]


def test_add_duplicate_target(server):
    r = server.cli("alias", "add", "dup@" + DOMAIN, "a@" + DOMAIN, "a@" + DOMAIN.upper())
    assert r.returncode == 2
    assert "twice" in r.stderr.decode(), r.stderr
    assert not [l for l in alias_list(server) if l.startswith("dup@")]


def test_too_many_targets(server):
    targets = ["t%d@%s" % (i, OTHER) for i in range(1001)]
    r = server.cli("alias", "add", "many@" + DOMAIN, *targets)
    assert r.returncode == 2 and b"too many" in r.stderr, r.stderr
    add(server, "many@" + DOMAIN, *targets[:1000])
    line = [l for l in alias_list(server) if l.startswith("many@")]
    assert len(line) == 1 and line[0].count(",") == 999


def test_usage_errors(server):
    for args in (["alias"], ["alias", "add"], ["alias", "add", "x@" + DOMAIN],
                 ["alias", "del"], ["alias", "del", "a@" + DOMAIN, "b@" + DOMAIN],
                 ["alias", "list", "extra"], ["alias", "frobnicate"]):
        r = server.cli(*args)
        assert r.returncode == 2, (args, r.returncode)
        assert b"usage" in r.stderr, (args, r.stderr)


def test_del_unknown(server):
    r = server.cli("alias", "del", "nobody-here@" + DOMAIN)
    assert r.returncode == 1
    assert b"no such alias" in r.stderr, r.stderr


def test_alias_outside_local_domains_warns(server):
    r = server.cli("alias", "add", "x@" + OTHER, "alice@" + DOMAIN)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and b"not in server.domains" in r.stderr, r.stderr
    assert "x@%s: alice@%s" % (OTHER, DOMAIN) in alias_list(server)


def test_unwritable_data_dir(server):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    d = server.data_dir
    os.chmod(d, 0o500)
    try:
        r = server.cli("alias", "add", "w@" + DOMAIN, "a@" + DOMAIN)
    finally:
        os.chmod(d, 0o700)
    assert r.returncode == 1 and b"cannot write" in r.stderr, r.stderr


def test_unreadable_file_fails(tmp_path):
    (tmp_path / "data" / "aliases").mkdir(parents=True)
    r = standalone(tmp_path, "alias", "list")
    assert r.returncode == 1 and b"cannot read" in r.stderr, r.stderr
    r = standalone(tmp_path, "alias", "add", "x@" + DOMAIN, "a@" + DOMAIN)
    assert r.returncode == 1 and b"cannot write" in r.stderr, r.stderr


def test_help_mentions_alias():
    r = subprocess.run([str(POBOX), "help", "alias"], capture_output=True, timeout=30)
    assert r.returncode == 0 and b"alias add" in r.stdout, r.stdout
    r = subprocess.run([str(POBOX), "help"], capture_output=True, timeout=30)
    assert b"alias" in r.stdout


# ---------------------------------------------------------------- the running server

def rcpt_code(server, address):
    with server.smtp_connect("smtp") as c:
        assert c.greeting.code == 220, c.greeting
        assert c.ehlo().code == 250, c.transcript()
        assert c.mail("sender@example.net").code == 250, c.transcript()
        code = c.rcpt(address).code
        c.quit()
        return code


def wait_rcpt(server, address, code):
    deadline = time.monotonic() + 5
    while rcpt_code(server, address) != code:
        assert time.monotonic() < deadline, "RCPT %s never got %d" % (address, code)
        time.sleep(0.2)


@pytest.fixture
def smtp_served(server):
    if not server.smtp_listeners() or server.smtp_port is None:
        pytest.skip("no SMTP listener")
    try:
        server.assert_smtp_alive()
    except (OSError, AssertionError):
        pytest.skip("this pobox does not serve SMTP")


def test_alias_changes_seen_without_restart(server, smtp_served):
    name = "%s@%s" % (unique("live"), DOMAIN)
    user, _ = server.add_user()
    assert rcpt_code(server, name) == 550
    add(server, name, user)
    wait_rcpt(server, name, 250)
    assert rcpt_code(server, name.upper()) == 250
    r = server.cli("alias", "del", name)
    assert r.returncode == 0, r.stderr
    wait_rcpt(server, name, 550)


def test_delivery_through_alias_once_per_mailbox(server, smtp_served):
    a, _ = server.add_user()
    b, _ = server.add_user()
    team = "%s@%s" % (unique("team"), DOMAIN)
    add(server, team, a, b)
    a_plus = a.replace("@", "+tag@")
    with server.smtp_connect("smtp") as c:
        assert c.ehlo().code == 250, c.transcript()
        assert_queued(c.send_mail("sender@example.net", [team, a_plus, b],
                                  smtp_message(to=team)), c)
        c.quit()
    assert len(server.message_files(a)) == 1, server.message_files(a)
    assert len(server.message_files(b)) == 1, server.message_files(b)
