"""test_transaction.py — the TRANSACTION and UPDATE states: STAT, LIST,
RETR, TOP, UIDL, DELE, RSET, NOOP, QUIT; sizes equal to the RETR octets,
dot-stuffing, deletions only at QUIT (RFC 1939; SPEC section 4)."""

import re
import time

import pytest

from pobox_harness import POBOX, join_lines, make_message, message_id, to_wire, unstuff

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}

# Messages chosen for the edge cases of CRLF conversion and dot-stuffing.
MESSAGES = [
    make_message("plain", b"Line one.\nLine two.\n"),
    make_message("dots", b".\n..\n.hidden\nnot.a.dot\n. \n...\nend\n"),
    make_message("no final newline", b"first line\nlast line without LF"),
    make_message("crlf stored", b"already\r\ncrlf\r\n").replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"),
    make_message("long body", b"".join(b"body line %04d %s\n" % (i, b"x" * (i % 70))
                                       for i in range(400))),
    make_message("8bit", "na\u00efve caf\u00e9 \xff\n".encode("latin-1") + "\u00fcber\n".encode("utf-8")),
]


@pytest.fixture
def mailbox(server):
    """A fresh user with MESSAGES delivered into new/ in order."""
    user, pw = server.add_user()
    for m in MESSAGES:
        server.deliver(user, m)
    return user, pw


def expected_size(m):
    return len(to_wire(m))


def numbered(c):
    """[(message number, original bytes)] for MESSAGES in this session."""
    nums = c.numbers()
    assert len(nums) == len(MESSAGES), nums
    return [(nums[message_id(m)], m) for m in MESSAGES]


# ---------------------------------------------------------------- STAT/LIST

def test_stat_counts_and_sizes(server, mailbox):
    with server.session(*mailbox) as c:
        r = c.cmd("STAT")
        assert r == b"+OK %d %d" % (len(MESSAGES), sum(expected_size(m) for m in MESSAGES)), r
        c.quit()


def test_list_sizes_equal_retr_octets(server, mailbox):
    with server.session(*mailbox) as c:
        listing = c.list()
        assert sorted(listing) == list(range(1, len(MESSAGES) + 1))
        for n in listing:
            r = c.cmd("LIST %d" % n)
            assert r == b"+OK %d %d" % (n, listing[n]), r
            body = c.retr(n)
            assert len(body) == listing[n], "message %d: LIST %d, RETR %d octets" % (
                n, listing[n], len(body))
        c.quit()


def test_retr_sends_crlf_lines_with_dot_stuffing(server, mailbox):
    with server.session(*mailbox) as c:
        for n, m in numbered(c):
            st, raw = c.multi("RETR %d" % n)
            assert st.startswith(b"+OK"), st
            wire = join_lines(raw)
            # every line of the original that starts with '.' is stuffed
            for line in to_wire(m).split(b"\r\n")[:-1]:
                if line.startswith(b"."):
                    assert b"." + line in raw, "line %r not dot-stuffed" % line
            assert join_lines(unstuff(raw)) == to_wire(m), "message %d differs" % n
            assert b"\r\n" in wire and not re.search(rb"(?<!\r)\n", wire)
        c.quit()


def test_retr_dot_lines_exact_wire_bytes(server):
    user, pw = server.add_user()
    server.deliver(user, b"Subject: d\n\n.\n..\n.x\nx.\n")
    with server.session(user, pw) as c:
        c.send(b"RETR 1\r\n")
        assert c.readline().startswith(b"+OK")
        raw = c.read_multi()
        assert raw == [b"Subject: d", b"", b"..", b"...", b"..x", b"x."], raw
        c.quit()


def test_empty_mailbox_listing(server):
    user, pw = server.add_user()
    with server.session(user, pw) as c:
        assert c.cmd("STAT") == b"+OK 0 0"
        assert c.list() == {}
        assert c.uidl() == {}
        assert c.cmd("RETR 1").startswith(b"-ERR")
        assert c.cmd("LIST 1").startswith(b"-ERR")
        c.quit()


# ---------------------------------------------------------------- TOP

def split_header_body(wire):
    head, _, body = wire.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", body


def test_top_zero_sends_header_and_blank_line(server, mailbox):
    with server.session(*mailbox) as c:
        for n, m in numbered(c):
            st, raw = c.multi("TOP %d 0" % n)
            assert st.startswith(b"+OK"), st
            head, _ = split_header_body(to_wire(m))
            assert join_lines(unstuff(raw)) == head, "TOP %d 0: %r" % (n, raw[-3:])
        c.quit()


@pytest.mark.parametrize("k", [1, 2, 3, 5, 1000])
def test_top_n_lines(server, mailbox, k):
    with server.session(*mailbox) as c:
        for n, m in numbered(c):
            st, raw = c.multi("TOP %d %d" % (n, k))
            assert st.startswith(b"+OK"), st
            head, body = split_header_body(to_wire(m))
            body_lines = body.split(b"\r\n")[:-1] if body else []
            want = head + join_lines(body_lines[:k])
            assert join_lines(unstuff(raw)) == want, "TOP %d %d" % (n, k)
        c.quit()


def test_top_dot_stuffs(server, mailbox):
    with server.session(*mailbox) as c:
        n = dict((m, n) for n, m in numbered(c))[MESSAGES[1]]
        st, raw = c.multi("TOP %d 3" % n)
        assert st.startswith(b"+OK")
        assert raw[-3:] == [b"..", b"...", b"..hidden"], raw[-3:]
        c.quit()


def test_top_message_without_body(server):
    user, pw = server.add_user()
    server.deliver(user, b"Subject: header only\nX-A: b\n")
    with server.session(user, pw) as c:
        size = c.list()[1]
        body = c.retr(1)
        assert len(body) == size
        st, raw = c.multi("TOP 1 0")
        assert st.startswith(b"+OK"), st
        assert raw[:2] == [b"Subject: header only", b"X-A: b"], raw
        st, raw = c.multi("TOP 1 10")
        assert st.startswith(b"+OK"), st
        c.quit()


# ---------------------------------------------------------------- UIDL

def test_uidl_listing_and_single(server, mailbox):
    with server.session(*mailbox) as c:
        uids = c.uidl()
        assert sorted(uids) == list(range(1, len(MESSAGES) + 1))
        assert len(set(uids.values())) == len(uids), "UIDLs not unique: %r" % uids
        for n, uid in uids.items():
            assert re.fullmatch(r"[\x21-\x7e]{1,70}", uid), "bad UIDL %r" % uid
            assert c.cmd("UIDL %d" % n) == b"+OK %d %s" % (n, uid.encode())
        c.quit()


def test_uidl_stable_across_sessions(server, mailbox):
    with server.session(*mailbox) as c:
        first = c.uidl()
        c.quit()
    with server.session(*mailbox) as c:
        assert c.uidl() == first
        c.quit()


# ---------------------------------------------------------------- DELE/RSET/QUIT

def test_dele_marks_and_quit_deletes_the_file(server, mailbox):
    user, pw = mailbox
    with server.session(user, pw) as c:
        uids = c.uidl()
        sizes = c.list()
        assert c.cmd("DELE 2").startswith(b"+OK")
        # the deleted message is hidden for the rest of the session
        assert c.cmd("DELE 2").startswith(b"-ERR")
        assert c.cmd("RETR 2").startswith(b"-ERR")
        assert c.cmd("TOP 2 0").startswith(b"-ERR")
        assert c.cmd("LIST 2").startswith(b"-ERR")
        assert c.cmd("UIDL 2").startswith(b"-ERR")
        assert 2 not in c.list() and 2 not in c.uidl()
        assert c.cmd("STAT") == b"+OK %d %d" % (len(MESSAGES) - 1, sum(sizes.values()) - sizes[2])
        # other message numbers do not shift
        assert c.cmd("UIDL 3") == b"+OK 3 %s" % uids[3].encode()
        files_before = server.message_files(user)
        assert len(files_before) == len(MESSAGES), "a file vanished before QUIT"
        assert c.quit().startswith(b"+OK")
    files = server.message_files(user)
    assert len(files) == len(MESSAGES) - 1
    with server.session(user, pw) as c:
        left = c.uidl()
        assert uids[2] not in left.values()
        assert sorted(left.values()) == sorted(u for n, u in uids.items() if n != 2)
        c.quit()


def test_dele_all_then_quit_empties_mailbox(server, mailbox):
    user, pw = mailbox
    with server.session(user, pw) as c:
        for n in range(1, len(MESSAGES) + 1):
            assert c.cmd("DELE %d" % n).startswith(b"+OK")
        assert c.cmd("STAT") == b"+OK 0 0"
        assert c.quit().startswith(b"+OK")
    assert server.message_files(user) == []


def test_dropped_connection_deletes_nothing(server, mailbox):
    user, pw = mailbox
    c = server.session(user, pw)
    for n in range(1, len(MESSAGES) + 1):
        assert c.cmd("DELE %d" % n).startswith(b"+OK")
    c.sock.close()                   # no QUIT
    deadline = time.monotonic() + 5
    while True:
        with server.connect() as d:
            d.cmd("USER " + user)
            r = d.cmd("PASS " + pw)
            if r.startswith(b"+OK"):
                assert d.stat()[0] == len(MESSAGES)
                d.quit()
                break
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
    assert len(server.message_files(user)) == len(MESSAGES)


def test_rset_unmarks(server, mailbox):
    user, pw = mailbox
    with server.session(user, pw) as c:
        total = c.stat()
        assert c.cmd("DELE 1").startswith(b"+OK")
        assert c.cmd("DELE 3").startswith(b"+OK")
        assert c.stat()[0] == total[0] - 2
        assert c.cmd("RSET").startswith(b"+OK")
        assert c.stat() == total
        assert len(c.retr(1)) == c.list()[1]
        assert c.quit().startswith(b"+OK")
    assert len(server.message_files(user)) == len(MESSAGES)


def test_quit_in_authorization_state_deletes_nothing(server, mailbox):
    user, pw = mailbox
    with server.connect() as c:
        c.cmd("USER " + user)
        assert c.quit().startswith(b"+OK")
    assert len(server.message_files(user)) == len(MESSAGES)


def test_noop_and_rset_reply(server, mailbox):
    with server.session(*mailbox) as c:
        assert c.cmd("NOOP").startswith(b"+OK")
        assert c.cmd("RSET").startswith(b"+OK")
        assert c.stat()[0] == len(MESSAGES)
        c.quit()


# ---------------------------------------------------------------- big message

def test_large_message_retr_intact(server):
    user, pw = server.add_user()
    body = b"".join(b"%07d %s\n" % (i, b"abcdefghij" * 7) for i in range(40000))  # ~3 MB
    body += b".\n.leading dot\n"
    msg = make_message("big", body)
    server.deliver(user, msg)
    with server.session(user, pw) as c:
        size = c.list()[1]
        assert size == len(to_wire(msg))
        got = c.retr(1)
        assert got == to_wire(msg)
        # TOP of the same message stops early
        st, raw = c.multi("TOP 1 2")
        assert st.startswith(b"+OK")
        assert raw[-2:] == [b"0000000 " + b"abcdefghij" * 7, b"0000001 " + b"abcdefghij" * 7]
        c.quit()


def test_retr_same_message_twice(server, mailbox):
    with server.session(*mailbox) as c:
        n = dict((m, n) for n, m in numbered(c))[MESSAGES[1]]
        a = c.retr(n)
        b = c.retr(n)
        assert a == b == to_wire(MESSAGES[1])
        c.quit()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_50mb_retr_is_streamed_not_buffered(server):
    """DESIGN.md: a 50 MB RETR uses as much memory as a 5 KB one. The client
    stops reading for a second so that a server without flow control would
    have to buffer the rest of the message."""
    if b"AddressSanitizer" in POBOX.read_bytes():
        pytest.skip("RSS is meaningless under AddressSanitizer (quarantine)")
    user, pw = server.add_user()
    block = b"".join(b"%06d the quick brown fox jumps over the lazy dog 0123456789 abcdef\n" % i
                     for i in range(1000))
    msg = make_message("fifty megabytes", block * 660)          # ~50 MB
    server.deliver(user, msg)
    pid = server.proc.pid
    with server.session(user, pw) as c:
        c.sock.settimeout(30)
        size = c.list()[1]
        assert size == len(to_wire(msg))
        time.sleep(0.2)
        base = _rss_kb(pid)
        peak = [base]
        c.send(b"RETR 1\r\n")
        assert c.readline().startswith(b"+OK")
        time.sleep(1.0)
        peak[0] = max(peak[0], _rss_kb(pid))

        def sample(total):
            if total % (4 << 20) < 262144:
                peak[0] = max(peak[0], _rss_kb(pid))

        raw = c.read_multi_raw(on_chunk=sample)
        peak[0] = max(peak[0], _rss_kb(pid))
        assert len(raw) == size + 3 and raw.endswith(b"\r\n.\r\n")
        assert raw[:-3] == to_wire(msg)
        growth_mb = (peak[0] - base) / 1024
        assert growth_mb < 20, "server RSS grew by %.1f MB during a 50 MB RETR" % growth_mb
        assert c.quit().startswith(b"+OK")
