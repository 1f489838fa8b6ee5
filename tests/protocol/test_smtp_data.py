"""test_smtp_data.py — the message data (RFC 5321 4.1.1.4, 4.5.2, 4.5.3.1.6;
RFC 3030 CHUNKING; RFC 1870 SIZE; SPEC sections 5 and 6): only CRLF.CRLF
ends DATA (no SMTP smuggling with bare LF or CR), bare CR/LF and over-long
lines refused with 554 5.6.0 after the real end, dot-unstuffing, the size
limit (552 5.3.4), BDAT chunks of exact sizes, a client vanishing mid-data,
big messages, and a kill -9 right after the 250."""

import os
import socket
import time

import pytest

from pobox_harness import (DEAD_SMARTHOST, assert_queued, check_trace, dot_stuff,
                           smtp_message, split_trace)

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                 "relay": {"smarthost": DEAD_SMARTHOST}}

MAIL_OK = (250, [b"2.1.0 Ok"])
RCPT_OK = (250, [b"2.1.5 Ok"])
OK = (250, [b"2.0.0 Ok"])
BARE = (554, [b"5.6.0 Message refused: bare CR or LF in the data (use CRLF line ends)"])
LONG = (554, [b"5.6.0 Message refused: a line is longer than 1000 octets"])
TOO_BIG = (552, [b"5.3.4 Message size exceeds fixed maximum message size"])
NEED_RCPT = (503, [b"5.5.1 Need RCPT before DATA"])
SENDER = "sender@example.net"


def rnd():
    return os.urandom(3).hex()


def chunk_ok(n):
    return (250, [b"2.0.0 Ok: %d octets received" % n])


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user()


def conn(server):
    c = server.smtp_connect("smtp")
    assert c.greeting.code == 220, c.greeting
    assert c.ehlo("mx.example.net").code == 250, c.transcript()
    return c


def start_data(c, rcpt):
    assert c.mail(SENDER) == MAIL_OK, c.transcript()
    assert c.rcpt(rcpt) == RCPT_OK, c.transcript()
    r = c.cmd("DATA")
    assert r == (354, [b"End data with <CR><LF>.<CR><LF>"]), c.transcript()


def start_bdat(c, rcpt):
    assert c.mail(SENDER) == MAIL_OK, c.transcript()
    assert c.rcpt(rcpt) == RCPT_OK, c.transcript()


def count(server, user):
    return len(server.delivered(user))


def wait_no_tmp(server, user, seconds=5):
    deadline = time.monotonic() + seconds
    while server.tmp_files(user) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.tmp_files(user) == [], "temporary files left: %r" % server.tmp_files(user)


# ---------------------------------------------------------------- dot-stuffing and the end of data

def test_dot_stuffed_lines_are_unstuffed(server, alice):
    user = alice[0]
    body = (b".\r\n..\r\n...\r\n.x\r\n..x\r\n. \r\nx.\r\n.\r\n"
            b"the end\r\n")
    msg = smtp_message("dots", body)
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(dot_stuff(msg))
        assert_queued(c.reply(), c)
        c.quit()
    stored = server.delivered(user)[before]
    check_trace(stored, msg, SENDER, [user], "ESMTP")
    assert b"\n.\n..\n...\n.x\n..x\n. \nx.\n.\nthe end\n" in stored


def test_raw_stuffed_line(server, alice):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(b"Subject: raw\r\n\r\n..x\r\n...\r\n.\r\n")
        assert_queued(c.reply(), c)
        c.quit()
    stored = server.delivered(user)[before]
    split_trace(stored, b"Subject: raw\r\n\r\n.x\r\n..\r\n")


def test_terminator_split_across_packets(server, alice):
    user = alice[0]
    msg = smtp_message("split terminator")
    before = count(server, user)
    with conn(server) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start_data(c, user)
        c.send(msg[:-2])
        for piece in (b"\r", b"\n", b".", b"\r", b"\n"):
            time.sleep(0.05)
            c.send(piece)
        assert_queued(c.reply(), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


def test_message_sent_byte_by_byte(server, alice):
    user = alice[0]
    msg = smtp_message("byte by byte", b"a\r\n.b\r\n")
    before = count(server, user)
    with conn(server) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start_data(c, user)
        for i in range(len(dot_stuff(msg))):
            c.sock.sendall(dot_stuff(msg)[i:i + 1])
        assert_queued(c.reply(), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


SMUGGLED = (b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<%(victim)s>\r\nDATA\r\n"
            b"From: admin@example.org\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


@pytest.mark.parametrize("fake", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n",
                                  b"\n.\r", b"\r\n.\r", b"\r\n.\rX\n"])
def test_fake_end_of_data_does_not_end_it(server, alice, fake):
    """SMTP smuggling (CVE-2023-51764 class): a message holding <LF>.<LF>
    or the like followed by SMTP commands. Only the real CRLF.CRLF ends the
    data, the message is refused as a whole (bare CR/LF), and the smuggled
    commands are never answered nor executed."""
    user = alice[0]
    victim, _ = server.add_user()
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(b"Subject: outer\r\n\r\nouter body" + fake +
               SMUGGLED % {b"victim": victim.encode()} + b".\r\n" + b"NOOP\r\n")
        assert c.reply() == BARE, c.transcript()
        assert c.reply() == OK, c.transcript()
        assert c.pending(0.3) == b"", "replies to smuggled commands:\n" + c.transcript()
        # the session goes on with a clean transaction state
        assert c.rcpt(user) == (503, [b"5.5.1 Need MAIL before RCPT"]), c.transcript()
        c.quit()
    assert count(server, user) == before, "the outer message was delivered"
    assert server.delivered(victim) == [], "the smuggled message was delivered"


@pytest.mark.parametrize("body", [b"bare LF here\nnext\r\n", b"bare CR here\rnext\r\n",
                                  b"CR CR LF\r\r\n", b"ends with a bare LF\n",
                                  b"LF CR\n\rx\r\n"])
def test_bare_cr_or_lf_refused(server, alice, body):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(b"Subject: bare\r\n\r\n" + body + b"\r\n.\r\n")
        assert c.reply() == BARE, c.transcript()
        # the next transaction in the same session works
        assert_queued(c.send_mail(SENDER, [user], smtp_message("after bare")), c)
        c.quit()
    assert count(server, user) == before + 1


def test_bare_lf_in_the_header(server, alice):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(b"Subject: bare\nX-Other: y\r\n\r\nbody\r\n.\r\n")
        assert c.reply() == BARE, c.transcript()
        c.quit()
    assert count(server, user) == before


# ---------------------------------------------------------------- line length

def test_line_of_998_octets_is_accepted(server, alice):
    user = alice[0]
    msg = smtp_message("998", b"y" * 998 + b"\r\n." + b"z" * 997 + b"\r\n")
    before = count(server, user)
    with conn(server) as c:
        assert_queued(c.send_mail(SENDER, [user], msg), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


@pytest.mark.parametrize("length", [1001, 5000, 200000])
def test_long_line_refused_not_truncated(server, alice, length):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(b"Subject: long\r\n\r\nshort\r\n" + b"L" * length + b"\r\nend\r\n.\r\n")
        assert c.reply() == LONG, c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()
    assert count(server, user) == before


def test_long_header_line_refused(server, alice):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_data(c, user)
        c.send(b"Subject: " + b"S" * 1500 + b"\r\n\r\nbody\r\n.\r\n")
        assert c.reply() == LONG, c.transcript()
        c.quit()
    assert count(server, user) == before


# ---------------------------------------------------------------- size

@pytest.fixture(scope="module")
def small(server_factory):
    return server_factory({"limits": {"max_message_size": "10000"},
                           "relay": {"smarthost": DEAD_SMARTHOST}})


def test_size_in_ehlo(small):
    with conn(small) as c:
        assert c.extensions()["SIZE"] == ["10000"], c.ehlo_reply
        c.quit()


def test_declared_size_over_the_limit(small):
    user, _ = small.add_user()
    with conn(small) as c:
        assert c.mail(SENDER, "SIZE=10001") == TOO_BIG, c.transcript()
        assert c.mail(SENDER, "SIZE=99999999999999999999") == TOO_BIG, c.transcript()
        assert c.mail(SENDER, "SIZE=5000") == MAIL_OK, c.transcript()
        assert c.rcpt(user) == RCPT_OK
        c.quit()


def test_message_over_the_limit_after_data(small):
    user, _ = small.add_user()
    big = smtp_message("too big", (b"x" * 70 + b"\r\n") * 300)       # ~21 kB
    fits = smtp_message("fits", (b"x" * 70 + b"\r\n") * 50)          # ~3.6 kB
    with conn(small) as c:
        r = c.send_mail(SENDER, [user], big)
        assert r == TOO_BIG, c.transcript()
        assert small.delivered(user) == []
        # a lying SIZE= does not help
        r = c.send_mail(SENDER, [user], big, "SIZE=100")
        assert r == TOO_BIG, c.transcript()
        # the session goes on
        assert_queued(c.send_mail(SENDER, [user], fits, "SIZE=%d" % len(fits)), c)
        c.quit()
    got = small.delivered(user)
    assert len(got) == 1
    split_trace(got[0], fits)
    wait_no_tmp(small, user)


def test_huge_data_is_consumed_and_refused(small):
    """3 MB to a 10 kB limit: the server reads to the end of the data (no
    reply before it) and answers 552 once."""
    user, _ = small.add_user()
    with conn(small) as c:
        start_data(c, user)
        line = b"z" * 998 + b"\r\n"
        for _ in range(3):
            c.send(line * 1000)
        c.send(b".\r\nNOOP\r\n")
        assert c.reply() == TOO_BIG, c.transcript()
        assert c.reply() == OK, c.transcript()
        c.quit()
    assert small.delivered(user) == []


def test_bdat_over_the_limit(small):
    user, _ = small.add_user()
    with conn(small) as c:
        start_bdat(c, user)
        assert c.bdat(b"x" * 20000 + b"\r\n", last=True) == TOO_BIG, c.transcript()
        assert c.cmd("NOOP") == OK, c.transcript()
        c.quit()
    assert small.delivered(user) == []


# ---------------------------------------------------------------- BDAT

def test_bdat_chunks_of_exact_sizes(server, alice):
    user = alice[0]
    msg = smtp_message("bdat", b"line one\r\n.\r\n..dots stay\r\n\r\n.\r\nlast\r\n")
    pieces = [msg[:1], msg[1:17], msg[17:-3], msg[-3:]]
    before = count(server, user)
    with conn(server) as c:
        assert "CHUNKING" in c.extensions()
        start_bdat(c, user)
        for p in pieces:
            assert c.bdat(p) == chunk_ok(len(p)), c.transcript()
        assert_queued(c.bdat(b"", last=True), c)
        c.quit()
    # BDAT data is not dot-stuffed: every dot is kept
    split_trace(server.delivered(user)[before], msg)


def test_bdat_crlf_split_between_chunks(server, alice):
    user = alice[0]
    msg = smtp_message("split crlf", b"a\r\nb\r\n")
    i = msg.index(b"\r\n") + 1          # the first chunk ends with CR, the next starts with LF
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        assert c.bdat(msg[:i]) == chunk_ok(i), c.transcript()
        assert_queued(c.bdat(msg[i:], last=True), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


def test_bdat_single_last_chunk_lowercase(server, alice):
    user = alice[0]
    msg = smtp_message("one chunk")
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        c.send(b"bdat %d last\r\n" % len(msg) + msg)
        assert_queued(c.reply(), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


def test_bdat_end_of_data_sequence_inside_a_chunk(server, alice):
    """'\\r\\n.\\r\\n' inside a chunk is just data."""
    user = alice[0]
    msg = smtp_message("dot line in bdat", b"before\r\n.\r\nQUIT\r\nafter\r\n")
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        assert_queued(c.bdat(msg, last=True), c)
        assert c.cmd("NOOP") == OK
        c.quit()
    split_trace(server.delivered(user)[before], msg)


@pytest.mark.parametrize("split", [False, True], ids=["one-chunk", "two-chunks"])
def test_bdat_bare_lf_refused_after_last(server, alice, split):
    user = alice[0]
    msg = b"Subject: bare in bdat\r\n\r\nbare\nLF\r\n"
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        if split:
            assert c.bdat(msg[:10]) == chunk_ok(10), c.transcript()
            assert c.bdat(msg[10:], last=True) == BARE, c.transcript()
        else:
            assert c.bdat(msg, last=True) == BARE, c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()
    assert count(server, user) == before


def test_bdat_long_line_refused(server, alice):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        assert c.bdat(b"Subject: x\r\n\r\n" + b"L" * 3000 + b"\r\n", last=True) == LONG, \
            c.transcript()
        c.quit()
    assert count(server, user) == before


@pytest.mark.parametrize("where", ["no-mail", "no-rcpt", "refused-rcpt"])
def test_bdat_without_recipient_consumes_the_chunk(server, where):
    """503 5.5.1, and the chunk's octets are read and thrown away: here
    they spell QUIT, which must not be executed."""
    with conn(server) as c:
        if where != "no-mail":
            assert c.mail(SENDER) == MAIL_OK
        if where == "refused-rcpt":
            assert c.rcpt("nobody-%s@example.org" % rnd()).code == 550
        c.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n")
        assert c.reply() == NEED_RCPT, c.transcript()
        assert c.reply() == OK, c.transcript()
        c.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
        assert c.reply() == NEED_RCPT, c.transcript()
        assert c.reply() == OK, c.transcript()
        c.quit()


def test_data_after_bdat_is_refused(server, alice):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        chunk = b"Subject: mixed\r\n"
        assert c.bdat(chunk) == chunk_ok(len(chunk)), c.transcript()
        r = c.cmd("DATA")
        assert r.code == 503 and r.enhanced == "5.5.1", c.transcript()
        assert c.cmd("NOOP") == OK
        c.quit()
    assert count(server, user) == before


def test_rset_discards_chunks(server, alice):
    user = alice[0]
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        chunk = b"Subject: discarded\r\n\r\n"
        assert c.bdat(chunk) == chunk_ok(len(chunk)), c.transcript()
        assert c.cmd("RSET") == OK
        msg = smtp_message("after rset")
        start_bdat(c, user)
        assert_queued(c.bdat(msg, last=True), c)
        c.quit()
    got = server.delivered(user)
    assert len(got) == before + 1
    split_trace(got[-1], msg)


@pytest.mark.parametrize("line", ["BDAT", "BDAT abc", "BDAT -1", "BDAT 1x", "BDAT LAST"])
def test_bdat_syntax_errors(server, alice, line):
    with conn(server) as c:
        start_bdat(c, alice[0])
        r = c.cmd(line)
        assert r.code == 501 and r.enhanced == "5.5.4", c.transcript()
        assert c.cmd("NOOP") == OK, c.transcript()
        c.quit()


def test_bdat_big_message_in_many_chunks(server, alice):
    user = alice[0]
    line = b"0123456789" * 9 + b"\r\n"
    msg = smtp_message("1 MB in chunks", line * 11000)
    before = count(server, user)
    with conn(server) as c:
        start_bdat(c, user)
        step = 65536
        for i in range(0, len(msg), step):
            piece = msg[i:i + step]
            assert c.bdat(piece) == chunk_ok(len(piece)), c.transcript()
        assert_queued(c.bdat(b"", last=True), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


def test_big_message_with_data(server, alice):
    user = alice[0]
    line = b"abcdefghij" * 7 + b"\r\n.starts with a dot\r\n"
    msg = smtp_message("5 MB", line * 55000)
    assert len(msg) > 5000000
    before = count(server, user)
    with conn(server) as c:
        assert_queued(c.send_mail(SENDER, [user], msg), c)
        c.quit()
    split_trace(server.delivered(user)[before], msg)


# ---------------------------------------------------------------- client vanishes

@pytest.mark.parametrize("how", ["data", "bdat"])
def test_disconnect_mid_data_delivers_nothing(server, alice, how):
    user = alice[0]
    before = count(server, user)
    q_before = server.queue_count()
    c = conn(server)
    try:
        start_bdat(c, user)
        assert c.rcpt("remote-%s@other.org" % rnd()).code == 554     # not authenticated
        if how == "data":
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 1000 + b"half a li")
        else:
            c.send(b"BDAT 100000 LAST\r\nSubject: cut\r\n\r\nonly some of it\r\n")
        time.sleep(0.2)
    finally:
        c.close()
    wait_no_tmp(server, user)
    assert count(server, user) == before, "a cut message was delivered"
    assert server.queue_count() == q_before
    server.assert_smtp_alive()


def test_disconnect_mid_data_queues_nothing(server, alice):
    """An authenticated client with a remote recipient: nothing queued."""
    q_before = server.queue_count()
    c = server.smtp_session("submission", alice[0], alice[1])
    try:
        assert c.mail(alice[0]) == MAIL_OK, c.transcript()
        assert c.rcpt("remote-%s@other.org" % rnd()) == RCPT_OK, c.transcript()
        assert c.cmd("DATA").code == 354
        c.send(b"From: " + alice[0].encode() + b"\r\nSubject: cut\r\n\r\n" + b"data\r\n" * 500)
        time.sleep(0.2)
    finally:
        c.close()
    time.sleep(0.5)
    assert server.queue_count() == q_before, "a cut message was queued"
    server.assert_smtp_alive()


def test_reset_mid_data(server, alice):
    """A TCP reset instead of a close."""
    user = alice[0]
    before = count(server, user)
    c = conn(server)
    start_data(c, user)
    c.send(b"Subject: reset\r\n\r\nsome data\r\n")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    wait_no_tmp(server, user)
    assert count(server, user) == before
    server.assert_smtp_alive()


# ---------------------------------------------------------------- durability

@pytest.mark.parametrize("how", ["data", "bdat"])
def test_kill9_right_after_250(server_factory, how):
    """SPEC: a 250 means the message is on disk; a kill -9 right after it
    loses nothing. The message is then fetched over POP3 too."""
    srv = server_factory(SERVER_CONFIG)
    user, pw = srv.add_user()
    msg = smtp_message("kill -9 " + how, b"survives\r\n.dot\r\n" + os.urandom(8).hex().encode()
                       + b"\r\n")
    with conn(srv) as c:
        start_bdat(c, user)
        if how == "data":
            assert c.cmd("DATA").code == 354
            c.send(dot_stuff(msg))
            r = c.reply()
        else:
            r = c.bdat(msg, last=True)
        srv.kill9()
        assert_queued(r, c)
    srv.start(new_ports=False)
    got = srv.delivered(user)
    assert len(got) == 1, "after kill -9: %d messages" % len(got)
    check_trace(got[0], msg, SENDER, [user], "ESMTP")
    with srv.session(user, pw) as p:
        assert p.stat()[0] == 1
        assert p.retr(1).endswith(msg)
        p.quit()


def test_kill9_before_the_end_of_data(server_factory):
    """A message cut by a crash before its 250 never shows up, not even
    after the restart."""
    srv = server_factory(SERVER_CONFIG)
    user, _ = srv.add_user()
    with conn(srv) as c:
        start_data(c, user)
        c.send(b"Subject: never acknowledged\r\n\r\n" + b"line\r\n" * 20000)
        time.sleep(0.3)
        srv.kill9()
    srv.start(new_ports=False)
    assert srv.delivered(user) == []
    assert srv.queue_count() == (0, 0)
    srv.assert_smtp_alive()
