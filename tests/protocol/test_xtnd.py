"""test_xtnd.py — qpopper's XTND XMIT and XTND XLST (draft-hansen-pop3-xtndext-00;
SPEC section 4, docs/pop3.md "XTND"): XMIT after login only, the message
ended by CRLF.CRLF as SMTP DATA, recipients from To/Cc/Bcc, Bcc removed,
the submission rules and path of SMTP (trace header, Message-ID and Date
added, local delivery once per mailbox, remote recipients queued); XLST of
one header field for all messages or one; pop3.xtnd = no; bad input and a
client that leaves in the middle of a message."""

import re
import time

import pytest

from pobox_harness import (DEAD_SMARTHOST, DOMAIN, check_trace, crlf, dot_stuff,
                           lf, remove_fields, split_trace, unique)

SERVER_CONFIG = {
    "auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
    # queued mail stays in data_dir/queue instead of leaving the machine
    "relay": {"smarthost": DEAD_SMARTHOST},
}

START = b"+OK Start sending message."
SENT = b"+OK Message sent successfully"
XLST_OK = b"+OK xlst command accepted; headers coming."
CAPA_TAG = "X-XTND XMIT XLST"


@pytest.fixture
def users(server):
    """Four fresh users: (address, password) each."""
    return [server.add_user() for _ in range(4)]


def message(sender, to=None, cc=None, bcc=None, subject="xmit test",
            body=b"Hello over XTND XMIT.\r\n", message_id=True, date=True,
            extra=b""):
    """A CRLF message with the given header fields."""
    head = b"From: " + sender.encode() + b"\r\n"
    if to:
        head += b"To: " + to.encode() + b"\r\n"
    if cc:
        head += b"Cc: " + cc.encode() + b"\r\n"
    if bcc:
        head += b"Bcc: " + bcc.encode() + b"\r\n"
    head += b"Subject: " + subject.encode() + b"\r\n"
    if date:
        head += b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
    if message_id:
        head += b"Message-ID: <" + unique("x").encode() + b"@example.org>\r\n"
    return head + extra + b"\r\n" + body


def xmit(c, msg: bytes, raw=False):
    """XTND XMIT then the message (dot-stuffed unless raw); returns the
    reply after the end of the message."""
    r = c.cmd("XTND XMIT")
    assert r == START, r
    c.send(msg if raw else dot_stuff(msg))
    return c.readline()


def wait_files(server, address, n, timeout=5.0):
    """The contents of new/ once it holds n files (the +OK came after the
    fsync, so normally at once)."""
    deadline = time.monotonic() + timeout
    while True:
        got = server.delivered(address)
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def without_bcc(msg: bytes) -> bytes:
    removed, rest = remove_fields(msg, ("bcc",))
    return rest


# ---------------------------------------------------------------- CAPA

def test_capa_advertises_xtnd_in_both_states(server, users):
    alice, pw = users[0]
    with server.connect() as c:
        assert CAPA_TAG in c.capa()
        c.login(alice, pw)
        capa = c.capa()
        assert CAPA_TAG in capa, capa
        c.quit()


# ---------------------------------------------------------------- XMIT

def test_xmit_to_a_local_user(server, users):
    (alice, pw), (bob, _), (carol, _), _ = users
    msg = message(alice, to=bob, bcc=carol,
                  body=b"first line\r\n\r\nsecond paragraph \xc3\xa9\r\n\ttabbed\r\n")
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        assert c.cmd("STAT") == b"+OK 0 0"      # still in TRANSACTION
        c.quit()
    expected = without_bcc(msg)
    assert b"Bcc:" not in expected
    for rcpt in (bob, carol):
        got = wait_files(server, rcpt, 1)
        assert len(got) == 1, got
        received = check_trace(got[0], expected, alice, [rcpt], "ESMTPA")
        assert b"(POP3 XTND XMIT)" in received, received
        assert b"authenticated sender: " + alice.encode() in received, received
        assert b"bcc:" not in got[0].lower(), got[0]


def test_xmit_over_tls_records_it(server, users):
    (alice, pw), (bob, _), _, _ = users
    msg = message(alice, to=bob)
    with server.session(alice, pw, tls=True) as c:
        assert xmit(c, msg) == SENT
        c.quit()
    got = wait_files(server, bob, 1)
    assert len(got) == 1
    received = check_trace(got[0], msg, alice, [bob], "ESMTPSA")
    assert b"(POP3 XTND XMIT)" in received and b"(using TLSv1." in received, received


def test_xmit_adds_message_id_and_date(server, users):
    (alice, pw), (bob, _), _, _ = users
    msg = message(alice, to=bob, message_id=False, date=False)
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        c.quit()
    got = wait_files(server, bob, 1)
    assert len(got) == 1
    t = split_trace(got[0], msg)
    assert sorted(t) == ["date", "delivered-to", "message-id", "received", "return-path"], t
    assert re.match(rb"^Message-ID: <[^<>@\s]+@[^<>\s]+>\n$", t["message-id"][0]), t
    assert t["return-path"] == [b"Return-Path: <" + alice.encode() + b">\n"]


def test_xmit_fans_out_to_each_mailbox_once(server, users):
    (alice, pw), (bob, _), (carol, _), (dave, _) = users
    bob_tag = bob.replace("@", "+news@")
    msg = message(alice, to="Bob <%s>, %s" % (bob, carol),
                  cc="%s, %s" % (bob.upper().replace(DOMAIN.upper(), DOMAIN), bob_tag),
                  bcc="%s, %s" % (dave, carol))
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        c.quit()
    expected = without_bcc(msg)
    for rcpt in (bob, carol, dave):
        got = wait_files(server, rcpt, 1)
        time.sleep(0.2)
        got = server.delivered(rcpt)
        assert len(got) == 1, "%s got %d copies" % (rcpt, len(got))
        assert got[0].endswith(lf(expected))
    assert server.delivered(alice) == []


def test_xmit_remote_recipient_is_queued(server, users):
    (alice, pw), (bob, _), _, _ = users
    before = len(server.queue_files("msg"))
    msg = message(alice, to="someone@example.net", bcc="hidden@example.com")
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        c.quit()
    files = server.queue_files("msg")
    assert len(files) == before + 1, files
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    content = newest.read_bytes()
    assert content.endswith(lf(without_bcc(msg))), content[-500:]
    assert b"hidden@example.com" not in content


def test_xmit_from_another_address_is_refused(server, users):
    (alice, pw), (bob, _), _, _ = users
    msg = message("mallory@%s" % DOMAIN, to=bob)
    with server.session(alice, pw) as c:
        r = xmit(c, msg)
        assert r == b"-ERR Unable to send message: From: header address not owned by " \
            + alice.encode(), r
        assert c.cmd("NOOP") == b"+OK"
        c.quit()
    time.sleep(0.2)
    assert server.delivered(bob) == []


def test_xmit_unknown_local_recipient_is_refused(server, users):
    (alice, pw), (bob, _), _, _ = users
    nobody = "nobody-%s@%s" % (unique("n"), DOMAIN)
    msg = message(alice, to="%s, %s" % (bob, nobody))
    with server.session(alice, pw) as c:
        r = xmit(c, msg)
        assert r == b"-ERR Unable to send message: <%s>: Recipient address rejected: " \
            b"User unknown" % nobody.encode(), r
        c.quit()
    time.sleep(0.2)
    assert server.delivered(bob) == []


def test_xmit_without_recipients_is_refused(server, users):
    (alice, pw), _, _, _ = users
    with server.session(alice, pw) as c:
        r = xmit(c, message(alice))
        assert r == b"-ERR Unable to send message: no recipient addresses in To:, Cc: or Bcc:", r
        r = xmit(c, message(alice, to="undisclosed-recipients:;"))
        assert r.startswith(b"-ERR Unable to send message: no recipient"), r
        c.quit()


def test_xmit_dot_stuffing(server, users):
    (alice, pw), (bob, _), _, _ = users
    body = b".\r\n..\r\n.hidden\r\nnot.a.dot\r\n. \r\n...\r\n.\r\nend\r\n"
    msg = message(alice, to=bob, body=body)
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        c.quit()
    got = wait_files(server, bob, 1)
    assert len(got) == 1
    assert got[0].endswith(b"\n\n" + lf(body)), got[0]


@pytest.mark.parametrize("data", [
    b"Subject: x\r\n\r\nbare\nLF\r\n.\r\n",
    b"Subject: x\r\n\r\nbare\rCR\r\n.\r\n",
    b"Subject: x\r\n\r\nsmuggle\n.\nmore\r\n.\r\n",
    b"Subject: x\r\n\r\nsmuggle\n.\r\nmore\r\n.\r\n",
])
def test_xmit_bare_cr_or_lf_is_refused_after_the_end(server, users, data):
    (alice, pw), (bob, _), _, _ = users
    data = data.replace(b"Subject: x", b"From: " + alice.encode() + b"\r\nTo: "
                        + bob.encode() + b"\r\nSubject: x")
    with server.session(alice, pw) as c:
        r = xmit(c, data, raw=True)
        assert r == b"-ERR Unable to send message: bare CR or LF in the data " \
            b"(use CRLF line ends)", r
        assert c.cmd("NOOP") == b"+OK"        # nothing else was taken as a reply
        assert c.pending(0.3) == b""
        c.quit()
    time.sleep(0.2)
    assert server.delivered(bob) == []


def test_xmit_long_line_is_refused_not_truncated(server, users):
    (alice, pw), (bob, _), _, _ = users
    ok_line = b"a" * 998 + b"\r\n"            # 1000 octets with CRLF: allowed
    msg = message(alice, to=bob, body=ok_line)
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        r = xmit(c, message(alice, to=bob, body=b"b" * 999 + b"\r\nafter\r\n"))
        assert r == b"-ERR Unable to send message: a line is longer than 1000 octets", r
        assert c.cmd("NOOP") == b"+OK"
        c.quit()
    got = wait_files(server, bob, 1)
    time.sleep(0.2)
    got = server.delivered(bob)
    assert len(got) == 1 and got[0].endswith(b"\n" + lf(ok_line))


def test_xmit_pipelined_command_after_the_message(server, users):
    (alice, pw), (bob, _), _, _ = users
    msg = message(alice, to=bob)
    with server.session(alice, pw) as c:
        c.send(b"XTND XMIT\r\n" + dot_stuff(msg) + b"NOOP\r\nSTAT\r\n")
        assert c.readline() == START
        assert c.readline() == SENT
        assert c.readline() == b"+OK"
        assert c.readline() == b"+OK 0 0"
        c.quit()
    assert len(wait_files(server, bob, 1)) == 1


def test_xmit_to_oneself_shows_in_the_next_session(server, users):
    (alice, pw), _, _, _ = users
    msg = message(alice, to=alice, subject="note to self")
    with server.session(alice, pw) as c:
        assert xmit(c, msg) == SENT
        assert c.cmd("STAT") == b"+OK 0 0"    # numbers are fixed at login
        c.quit()
    with server.session(alice, pw) as c:
        assert c.stat()[0] == 1
        assert c.retr(1).endswith(msg)
        c.quit()


def test_xmit_before_login_is_refused(server, users):
    with server.connect() as c:
        assert c.cmd("XTND XMIT") == b"-ERR XTND: log in first"
        # nothing was started: the next line is a command again
        assert c.cmd("CAPA").startswith(b"+OK")
        c.read_multi()
        assert c.cmd("XTND XLST Subject") == b"-ERR XTND: log in first"
        c.quit()


def test_xmit_client_leaves_mid_message(server, users):
    (alice, pw), (bob, _), _, _ = users
    base = server.fd_count()
    for _ in range(3):
        c = server.session(alice, pw)
        assert c.cmd("XTND XMIT") == START
        c.send(b"From: " + alice.encode() + b"\r\nTo: " + bob.encode() +
               b"\r\nSubject: cut\r\n\r\npart of a body\r\n")
        time.sleep(0.1)
        c.close()
    deadline = time.monotonic() + 5
    while server.fd_count() > base and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.fd_count() <= base, "descriptors left after aborted XMITs"
    assert server.delivered(bob) == []
    assert "event=xtnd_xmit" in server.log_text() and "result=aborted" in server.log_text()
    # a new session works and sends
    with server.session(alice, pw) as c:
        assert xmit(c, message(alice, to=bob)) == SENT
        c.quit()
    assert len(wait_files(server, bob, 1)) == 1
    server.assert_alive()


def test_xtnd_bad_subcommands(server, users):
    (alice, pw), _, _, _ = users
    with server.session(alice, pw) as c:
        assert c.cmd("XTND") == b"-ERR XTND: missing subcommand (XMIT or XLST)"
        assert c.cmd("XTND FROB") == \
            b"-ERR Unknown XTND subcommand (XMIT and XLST are supported)"
        assert c.cmd("XTND XMIT now") == b"-ERR XTND XMIT: too many arguments"
        assert c.cmd("XTND XLST") == \
            b"-ERR XTND XLST: missing argument (XTND XLST header [msg])"
        assert c.cmd("XTND XLST Subject 1 2") == b"-ERR XTND XLST: too many arguments"
        assert c.cmd("XTND XLST Sub:ject") == b"-ERR XTND XLST: invalid header field name"
        assert c.cmd("XTND XLST Subject x") == \
            b"-ERR Invalid message number: expected 1 to 0"
        assert c.cmd("xtnd xmit") == START     # case-insensitive, then abandoned
        c.send(b".\r\n")
        assert c.readline().startswith(b"-ERR Unable to send message: no recipient")
        assert c.cmd("NOOP") == b"+OK"
        c.quit()


# ---------------------------------------------------------------- size limit

def test_xmit_over_the_size_limit(server_factory):
    srv = server_factory({"limits": {"max_message_size": "2000"},
                          "relay": {"smarthost": DEAD_SMARTHOST}})
    alice, pw = srv.add_user()
    bob, _ = srv.add_user()
    small = message(alice, to=bob, body=b"x" * 500 + b"\r\n")
    big = message(alice, to=bob, body=(b"y" * 70 + b"\r\n") * 40)
    assert len(big) > 2000
    with srv.session(alice, pw) as c:
        r = xmit(c, big)
        assert r == b"-ERR Unable to send message: Message size exceeds fixed maximum " \
            b"message size", r
        assert c.cmd("NOOP") == b"+OK"
        assert xmit(c, small) == SENT
        c.quit()
    got = wait_files(srv, bob, 1)
    time.sleep(0.2)
    assert len(srv.delivered(bob)) == 1


# ---------------------------------------------------------------- pop3.xtnd = no

def test_xtnd_disabled(server_factory):
    srv = server_factory({"pop3": {"xtnd": "no"}})
    alice, pw = srv.add_user()
    with srv.connect() as c:
        assert CAPA_TAG not in c.capa()
        assert not any(l.startswith("X-XTND") for l in c.capa())
        assert c.cmd("XTND XMIT") == b"-ERR Unknown command"
        c.login(alice, pw)
        assert not any(l.startswith("X-XTND") for l in c.capa())
        assert c.cmd("XTND XMIT") == b"-ERR Unknown command"
        assert c.cmd("XTND XLST Subject") == b"-ERR Unknown command"
        assert c.cmd("NOOP") == b"+OK"
        c.quit()


# ---------------------------------------------------------------- XLST

def stored(subject_field: bytes, n: int) -> bytes:
    head = b"From: sender@example.net\nTo: someone@example.org\n"
    return (head + subject_field +
            b"Message-ID: <xlst-" + str(n).encode() + b"-" + unique("m").encode() +
            b"@example.net>\nX-Subject: not this one\n\nbody " + str(n).encode() +
            b"\nSubject: in the body, not a header\n")


@pytest.fixture
def xlst_box(server):
    """A user with four messages: a plain Subject, a folded one, none, and one
    whose Subject is written in lower case with a blank before the colon."""
    user, pw = server.add_user()
    fields = [b"Subject: first\n",
              b"Subject: second,\n\tfolded\n  twice\n",
              b"",
              b"subject : fourth\n"]
    msgs = [stored(f, i + 1) for i, f in enumerate(fields)]
    for m in msgs:
        server.deliver(user, m)
    return user, pw, msgs


def numbers_by_content(c, msgs):
    """[message number of msgs[i]]."""
    ids = c.numbers()
    out = []
    for m in msgs:
        mid = re.search(rb"(?m)^Message-ID: (\S+)", m).group(1)
        out.append(ids[mid])
    return out


def test_xlst_subject_of_all_messages(server, xlst_box):
    user, pw, msgs = xlst_box
    with server.session(user, pw) as c:
        nums = numbers_by_content(c, msgs)
        st, lines = c.multi("XTND XLST Subject")
        assert st == XLST_OK
        expected = {nums[0]: b"Subject: first",
                    nums[1]: b"Subject: second,\tfolded  twice",
                    nums[3]: b"subject : fourth"}
        assert lines == [b"%d %s" % (n, expected[n]) for n in sorted(expected)], lines
        # the argument is case-insensitive and may end with a colon
        assert c.multi("xtnd xlst SUBJECT:") == (st, lines)
        c.quit()


def test_xlst_one_message(server, xlst_box):
    user, pw, msgs = xlst_box
    with server.session(user, pw) as c:
        nums = numbers_by_content(c, msgs)
        assert c.multi("XTND XLST Subject %d" % nums[1]) == \
            (XLST_OK, [b"%d Subject: second,\tfolded  twice" % nums[1]])
        # no such field: an empty listing
        assert c.multi("XTND XLST Subject %d" % nums[2]) == (XLST_OK, [])
        mid = re.search(rb"(?m)^Message-ID: (\S+)", msgs[0]).group(1)
        assert c.multi("XTND XLST Message-Id %d" % nums[0]) == \
            (XLST_OK, [b"%d Message-ID: %s" % (nums[0], mid)])
        assert c.cmd("XTND XLST Subject 5") == b"-ERR Message 5 does not exist."
        assert c.cmd("XTND XLST Subject 0") == b"-ERR Invalid message number: expected 1 to 4"
        c.quit()


def test_xlst_skips_deleted_messages(server, xlst_box):
    user, pw, msgs = xlst_box
    with server.session(user, pw) as c:
        nums = numbers_by_content(c, msgs)
        assert c.cmd("DELE %d" % nums[0]).startswith(b"+OK")
        st, lines = c.multi("XTND XLST Subject")
        assert st == XLST_OK
        got = [int(l.split()[0]) for l in lines]
        assert got == sorted([nums[1], nums[3]]), lines
        assert c.multi("XTND XLST Subject %d" % nums[0]) == (XLST_OK, [])
        assert c.cmd("RSET").startswith(b"+OK")
        st, lines = c.multi("XTND XLST Subject")
        assert len(lines) == 3
        c.quit()


def test_xlst_empty_maildrop_and_pipelining(server, users):
    (alice, pw), _, _, _ = users
    with server.session(alice, pw) as c:
        c.send(b"XTND XLST Subject\r\nNOOP\r\n")
        assert c.readline() == XLST_OK
        assert c.readline() == b"."
        assert c.readline() == b"+OK"
        c.quit()


def test_xlst_big_header_is_cut_not_read_whole(server):
    user, pw = server.add_user()
    filler = b"".join(b"X-Filler-%05d: %s\n" % (i, b"z" * 60) for i in range(3000))
    late = b"From: a@example.net\n" + filler + b"Subject: too late\n\nbody\n"
    early = b"Subject: early\n" + filler + b"\nbody\n"
    server.deliver(user, late)
    server.deliver(user, early)
    with server.session(user, pw) as c:
        st, lines = c.multi("XTND XLST Subject")
        assert st == XLST_OK
        assert len(lines) == 1 and lines[0].endswith(b" Subject: early"), lines
        c.quit()
