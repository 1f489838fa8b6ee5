"""test_badinput.py — malformed commands and arguments (SPEC section 6, the
issue's "Bad input" list): every one gets -ERR and the session goes on; the
server survives format strings, NULs, 8-bit bytes, bare CR/LF, overlong and
1 MB lines."""

import os
import re
import socket
import time

import pytest

from pobox_harness import (join_lines, make_message, message_id, resp_code,
                           to_wire, unstuff)

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}

HUGE = "99999999999999999999"
WRAP32 = "4294967297"            # 2^32 + 1: wraps to 1 in a 32-bit parser
WRAP64 = "18446744073709551617"  # 2^64 + 1

MSGNUM_BAD = ["", " ", " 0", " -1", " " + HUGE, " " + WRAP32, " " + WRAP64,
              " abc", " 1abc", " 0x1", " 1.0", " 4", " 1 2", " 1 1 1", " %n%s"]

BAD_ARGS = {
    "RETR": MSGNUM_BAD,
    "DELE": MSGNUM_BAD,
    "LIST": [a for a in MSGNUM_BAD if a.strip()],   # LIST without argument is valid
    "UIDL": [a for a in MSGNUM_BAD if a.strip()],
    "TOP": ["", " 1", " 1 ", " 0 0", " -1 0", " 1 -1", " %s 0" % HUGE, " %s 0" % WRAP32,
            " %s 0" % WRAP64, " abc 0", " 1 abc", " 1 1x", " 4 0", " 1 0 5", " 1 0x1",
            " 1 -99999999999999999999"],
    "NOOP": [" x"],
    "STAT": [" 1"],
    "RSET": [" 1"],
}

MESSAGES = [make_message("first", b"one\n"), make_message("second", b"two\n.three\n"),
            make_message("third", b"3\n")]


@pytest.fixture
def mailbox(server):
    user, pw = server.add_user()
    for m in MESSAGES:
        server.deliver(user, m)
    return user, pw


@pytest.mark.parametrize("cmd", sorted(BAD_ARGS))
def test_bad_arguments_get_err_and_session_goes_on(server, mailbox, cmd):
    user, pw = mailbox
    with server.session(user, pw) as c:
        stat = c.stat()
        wrong = []
        for arg in BAD_ARGS[cmd]:
            line = cmd + arg
            r = c.cmd(line)
            if not r.startswith(b"-ERR"):
                wrong.append((line, r))
                if r.startswith(b"+OK") and cmd in ("RETR", "TOP", "LIST", "UIDL") \
                        and not re.match(rb"^\+OK \d+ ", r):
                    c.read_multi()
            # the session goes on (and the bad-command counter resets)
            n = c.cmd("NOOP")
            assert n.startswith(b"+OK"), "after %r: NOOP got %r" % (line, n)
        assert not wrong, "accepted malformed commands: %r" % wrong
        # nothing was marked deleted by a malformed DELE
        assert c.stat() == stat
        assert c.quit().startswith(b"+OK")
    assert len(server.message_files(user)) == len(MESSAGES)


def test_top_with_huge_line_count(server, mailbox):
    """TOP n 99999999999999999999: either -ERR or the whole message."""
    with server.session(*mailbox) as c:
        nums = c.numbers()
        n = nums[message_id(MESSAGES[1])]
        st, raw = c.multi("TOP %d %s" % (n, HUGE))
        if st.startswith(b"+OK"):
            assert join_lines(unstuff(raw)) == to_wire(MESSAGES[1])
        else:
            assert st.startswith(b"-ERR"), st
        assert c.cmd("NOOP").startswith(b"+OK")
        c.quit()


def test_top_without_argument_before_and_after_login(server, mailbox):
    """The Cyrus crash: TOP with no argument."""
    with server.connect() as c:
        assert c.cmd("TOP").startswith(b"-ERR")
        c.login(*mailbox)
        assert c.cmd("TOP").startswith(b"-ERR")
        assert c.cmd("TOP ").startswith(b"-ERR")
        assert c.stat()[0] == len(MESSAGES)
        c.quit()
    server.assert_alive()


# ---------------------------------------------------------------- format strings

def test_format_strings_in_username(server):
    fmt = "%n%s%x%n%s%x%p%p%p%n"
    with server.connect() as c:
        r = c.cmd("USER " + fmt)
        assert r[:1] in (b"+", b"-"), r
        r = c.cmd("PASS " + fmt)
        assert r.startswith(b"-ERR") and resp_code(r) == "AUTH", r
        r = c.cmd("USER %s@%s.example.org" % (fmt, fmt))
        assert r[:1] in (b"+", b"-"), r
        r = c.cmd("APOP %s %s" % (fmt, "0" * 32))
        assert r.startswith(b"-ERR"), r
        r = c.cmd("APOP %s@example.org %s" % (fmt, fmt))
        assert r.startswith(b"-ERR"), r
        assert c.capa()
        c.cmd("QUIT")
    server.assert_alive()


def test_format_strings_as_commands(server, mailbox):
    with server.connect() as c:
        for line in ("%n%s%x", "%s %s %s", "USER%n", "CAPA %n"):
            r = c.cmd(line)
            assert r.startswith(b"-ERR") or line.startswith("CAPA"), (line, r)
            if r.startswith(b"+OK"):
                c.read_multi()
        c.login(*mailbox)
        for line in ("RETR %n", "TOP %s %n", "%x%x%x%x"):
            assert c.cmd(line).startswith(b"-ERR"), line
        assert c.stat()[0] == len(MESSAGES)
        c.quit()
    server.assert_alive()


def test_format_strings_in_message_headers(server):
    user, pw = server.add_user()
    msg = make_message("%n%s%x%n%s%x %s%s%s%n",
                       b"Body %n%n%n %s%s%s %x%x %99999999d\n",
                       extra_headers=b"X-Fmt: %n%s%x%p\nFrom%n: %s\n")
    server.deliver(user, msg)
    with server.session(user, pw) as c:
        size = c.list()[1]
        assert size == len(to_wire(msg))
        assert c.retr(1) == to_wire(msg)
        st, raw = c.multi("TOP 1 0")
        assert st.startswith(b"+OK")
        assert b"Subject: %n%s%x%n%s%x %s%s%s%n" in raw
        assert c.uidl()
        c.quit()
    server.assert_alive()


# ---------------------------------------------------------------- NUL and 8-bit

def test_nul_bytes_in_commands(server, mailbox):
    user, pw = mailbox
    with server.connect() as c:
        for raw in (b"US\x00ER " + user.encode(), b"CAPA\x00", b"\x00\x00\x00", b"\x00CAPA"):
            r = c.cmd(raw)
            assert r.startswith(b"-ERR"), (raw, r)
        assert c.capa()
        # a NUL must not truncate the password ("C string" bug)
        assert c.cmd("USER " + user).startswith(b"+OK")
        r = c.cmd(b"PASS " + pw.encode() + b"\x00junk")
        assert r.startswith(b"-ERR"), "password followed by NUL accepted: %r" % r
        r = c.cmd(b"USER " + user.encode() + b"\x00junk")
        if r.startswith(b"+OK"):
            r = c.cmd("PASS " + pw)
            assert r.startswith(b"-ERR"), "user name followed by NUL accepted: %r" % r
        c.login(user, pw)
        for raw in (b"RETR 1\x00", b"RETR \x001", b"DELE 1\x00x", b"STAT\x00"):
            r = c.cmd(raw)
            assert r.startswith(b"-ERR"), (raw, r)
            assert c.cmd("NOOP").startswith(b"+OK")
        assert c.stat()[0] == len(MESSAGES)
        c.quit()
    assert len(server.message_files(user)) == len(MESSAGES)


def test_8bit_bytes_in_commands(server, mailbox):
    user, pw = mailbox
    with server.connect() as c:
        for raw in (b"\xff\xfe\xfd", b"C\xc3\x81PA", b"\x80\x81\x82 \x83"):
            r = c.cmd(raw)
            assert r.startswith(b"-ERR"), (raw, r)
        r = c.cmd("USER \u00e9t\u00e9@example.org".encode("utf-8"))
        assert r[:1] in (b"+", b"-"), r
        r = c.cmd(b"PASS \xe9t\xe9")
        assert r.startswith(b"-ERR"), r
        c.login(user, pw)
        for raw in ("RETR \u0661".encode("utf-8"), b"LIST \xb9", b"DELE \xef\xbc\x91"):
            r = c.cmd(raw)
            assert r.startswith(b"-ERR"), (raw, r)
            assert c.cmd("NOOP").startswith(b"+OK")
        assert c.stat()[0] == len(MESSAGES)
        c.quit()


# ---------------------------------------------------------------- line ends

def read_until_stat(c, timeout=5):
    """Reads reply lines until a STAT reply; returns the lines before it."""
    before = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = c.readline()
        if re.match(rb"^\+OK \d+ \d+$", line):
            return before
        before.append(line)
    raise AssertionError("no STAT reply; got %r" % before)


def test_bare_lf_line_end(server, mailbox):
    with server.session(*mailbox) as c:
        c.send(b"NOOP\n")
        c.send(b"NOOP\r\n")
        c.send(b"STAT\r\n")
        before = read_until_stat(c)
        assert 1 <= len(before) <= 2, before
        assert c.stat()[0] == len(MESSAGES)
        c.quit()


def test_bare_cr_in_line(server, mailbox):
    with server.session(*mailbox) as c:
        c.send(b"NOOP\rNOOP\r\n")
        c.send(b"STAT\r\n")
        before = read_until_stat(c)
        assert 1 <= len(before) <= 2, before
        c.send(b"DELE\r1\r\nSTAT\r\n")
        before = read_until_stat(c)
        assert before and all(l.startswith(b"-ERR") for l in before), before
        assert c.stat()[0] == len(MESSAGES)
        c.quit()


def test_empty_and_blank_lines(server):
    with server.connect() as c:
        for raw in (b"", b" ", b"   ", b"\t"):
            r = c.cmd(raw)
            assert r.startswith(b"-ERR"), (raw, r)
        assert c.capa()


# ---------------------------------------------------------------- line length

def test_255_octet_line_accepted_256_refused(server):
    """RFC 2449: a command line is at most 255 octets including CRLF."""
    pw_ok = "p" * 248            # "PASS " + 248 + CRLF = 255 octets
    user, _ = server.add_user(password=pw_ok)
    with server.connect() as c:
        assert c.cmd("USER " + user).startswith(b"+OK")
        r = c.cmd("PASS " + pw_ok)
        assert r.startswith(b"+OK"), "255-octet PASS line refused: %r" % r
        c.quit()
    pw_long = "q" * 249          # 256 octets
    user2, _ = server.add_user(password=pw_long)
    with server.connect() as c:
        assert c.cmd("USER " + user2).startswith(b"+OK")
        r = c.cmd("PASS " + pw_long)
        assert r.startswith(b"-ERR"), "256-octet line accepted: %r" % r
        # the session goes on, still in AUTHORIZATION
        assert c.cmd("STAT").startswith(b"-ERR")
        assert c.capa()


def test_overlong_line_then_pipelined_command(server):
    with server.connect() as c:
        c.send(b"X" * 300 + b"\r\nCAPA\r\n")
        r = c.readline()
        assert r.startswith(b"-ERR"), r
        r = c.readline()
        assert r.startswith(b"+OK"), "the command after an overlong line: %r" % r
        assert b"TOP" in [l.split(b" ")[0] for l in c.read_multi()]


def test_one_megabyte_line(server, mailbox):
    with server.session(*mailbox) as c:
        c.sock.settimeout(20)
        # if the server cut the line at 255 octets and ran the rest, message 1
        # would be marked deleted
        c.send(b"DELE 1" + b" " * (1024 * 1024) + b"\r\n")
        r = c.readline()
        assert r.startswith(b"-ERR"), r[:100]
        # one -ERR for the whole line, and the session goes on
        r = c.cmd("NOOP")
        assert r.startswith(b"+OK"), "after a 1 MB line: %r" % r[:100]
        assert c.stat()[0] == len(MESSAGES)
        c.quit()
    server.assert_alive()


def test_one_megabyte_without_line_end_then_close(server):
    with server.connect() as c:
        c.sock.settimeout(20)
        try:
            c.send(b"A" * (1024 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass
    time.sleep(0.2)
    server.assert_alive()


def test_random_binary_garbage(server):
    for seed in range(3):
        with server.connect() as c:
            try:
                c.send(os.urandom(64 * 1024))
                c.pending(0.5)
            except (BrokenPipeError, ConnectionResetError):
                pass
    server.assert_alive()


def test_partial_command_then_disconnect(server, mailbox):
    c = server.session(*mailbox)
    c.send(b"RET")
    c.close()
    s = socket.create_connection(("127.0.0.1", server.pop3_port), timeout=5)
    s.close()                              # connect and close at once
    time.sleep(0.2)
    server.assert_alive()
    with server.login_retry(*mailbox) as d:
        assert d.stat()[0] == len(MESSAGES)
        d.quit()
