"""test_deliver.py — `pobox deliver [-f SENDER] RECIPIENT...`, the local
delivery agent (SPEC section 1): the message on stdin lands in the
recipients' Maildirs with the trace headers, aliases and plus-addressing
apply, and the exit codes are the sysexits.h ones MTAs act on (0, 64, 67,
75)."""

import os
import stat

import pytest

from pobox_harness import DOMAIN

EX_OK, EX_USAGE, EX_NOUSER, EX_TEMPFAIL = 0, 64, 67, 75

MESSAGE = (b"From: sender@example.net\nTo: someone\nSubject: via deliver\n\n"
           b"line one\n.leading dot\n\nlast line\n")


def deliver(server, *args, data=MESSAGE):
    return server.cli("deliver", *args, input=data)


def body_after_trace(raw):
    """The message as given, after the headers pobox put in front."""
    lines = raw.split(b"\n")
    i = 0
    while lines[i].startswith((b"Return-Path:", b"Delivered-To:", b"Received:", b"\t")):
        i += 1
    return b"\n".join(lines[i:])


def test_delivers_to_a_user_with_trace_headers(server):
    user, _ = server.add_user()
    r = deliver(server, "-f", "sender@example.net", user)
    assert r.returncode == EX_OK, r.stderr
    got = server.delivered(user)
    assert len(got) == 1
    assert got[0].startswith(b"Return-Path: <sender@example.net>\nDelivered-To: " +
                             user.encode() + b"\nReceived: ")
    assert body_after_trace(got[0]) == MESSAGE


def test_crlf_input_and_mbox_from_line(server):
    user, _ = server.add_user()
    data = b"From sender@example.net Sat Nov 28 10:00:00 2026\r\n" + \
        MESSAGE.replace(b"\n", b"\r\n")
    r = deliver(server, user, data=data)
    assert r.returncode == EX_OK, r.stderr
    assert body_after_trace(server.delivered(user)[0]) == MESSAGE


def test_alias_and_plus_address_each_mailbox_once(server):
    a, _ = server.add_user()
    b, _ = server.add_user()
    alias = "team-%s@%s" % (os.urandom(3).hex(), DOMAIN)
    server.alias_add(alias, a, b)
    plus = a.replace("@", "+tag@")
    r = deliver(server, alias, plus, a)
    assert r.returncode == EX_OK, r.stderr
    assert len(server.delivered(a)) == 1
    assert len(server.delivered(b)) == 1


def test_unknown_user_is_67_and_nothing_is_delivered(server):
    user, _ = server.add_user()
    r = deliver(server, user, "nobody-%s@%s" % (os.urandom(3).hex(), DOMAIN))
    assert r.returncode == EX_NOUSER, r
    assert b"no such local user" in r.stderr
    assert server.delivered(user) == []


def test_remote_recipient_is_not_local_67(server):
    r = deliver(server, "someone@far-away.example")
    assert r.returncode == EX_NOUSER


@pytest.mark.parametrize("args", [(), ("-f",), ("-f", "x@example.net"), ("--bogus", "a@b")])
def test_usage_errors_are_64(server, args):
    r = deliver(server, *args)
    assert r.returncode == EX_USAGE, r
    assert b"usage: pobox deliver" in r.stderr


def test_unreadable_users_file_is_75(server):
    if os.geteuid() == 0:
        pytest.skip("root reads any file; the users file cannot be made unreadable")
    user, _ = server.add_user()
    users = server.data_dir / "users"
    mode = users.stat().st_mode
    users.chmod(0)
    try:
        r = deliver(server, user)
        assert r.returncode == EX_TEMPFAIL, r
    finally:
        users.chmod(stat.S_IMODE(mode))


def test_unwritable_maildir_is_75_and_nothing_half_delivered(server):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    user, _ = server.add_user()
    md = server.maildir(user)
    for d in ("tmp", "new", "cur"):
        (md / d).mkdir(parents=True, exist_ok=True)
    (md / "tmp").chmod(0o500)
    try:
        r = deliver(server, user)
        assert r.returncode == EX_TEMPFAIL, r
        assert server.delivered(user) == []
    finally:
        (md / "tmp").chmod(0o700)


def test_data_dir_unusable_is_75(server):
    """Works as root too: a data_dir below a regular file can be neither
    read nor written."""
    user, _ = server.add_user()
    r = server.cli("-o", "server.data_dir=/etc/passwd/nope", "deliver", user,
                   input=MESSAGE)
    assert r.returncode == EX_TEMPFAIL, r
