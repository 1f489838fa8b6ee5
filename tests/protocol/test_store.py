"""test_store.py — the Maildir store seen through POP3: mail dropped by other
programs, new/ to cur/, stable UIDLs across sessions and restarts, numbers
fixed at login, messages vanishing mid-session, the maildrop lock after a
crash (SPEC sections 3 and 4)."""

import os
import re
import shutil
import time

import pytest

from pobox_harness import make_message, message_id, resp_code, to_wire

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"}}


def test_maildir_created_on_first_login(server):
    user, pw = server.add_user()
    with server.session(user, pw) as c:
        c.quit()
    md = server.maildir(user)
    for d in ("cur", "new", "tmp"):
        assert (md / d).is_dir(), "%s missing after the first login" % (md / d)


def test_mail_in_new_is_visible_and_moved_to_cur(server):
    user, pw = server.add_user()
    f = server.deliver(user, make_message("hello"))
    with server.session(user, pw) as c:
        assert c.stat()[0] == 1
        md = server.maildir(user)
        assert not f.exists(), "new/ file not moved at login"
        cur = list((md / "cur").iterdir())
        assert len(cur) == 1 and cur[0].name.startswith(f.name) and ":2," in cur[0].name, cur
        assert list((md / "new").iterdir()) == []
        c.quit()


def test_mail_in_cur_from_another_program(server):
    user, pw = server.add_user()
    m1 = make_message("seen by dovecot")
    m2 = make_message("flagged")
    server.deliver(user, m1, name="1700000000.M1P1.otherhost:2,S", where="cur")
    server.deliver(user, m2, name="1700000001.M2P2.otherhost:2,FS", where="cur")
    with server.session(user, pw) as c:
        assert c.stat() == (2, len(to_wire(m1)) + len(to_wire(m2)))
        got = {c.retr(1), c.retr(2)}
        assert got == {to_wire(m1), to_wire(m2)}
        c.quit()


def test_dovecot_style_size_in_file_name(server):
    user, pw = server.add_user()
    m = make_message("sized", b"one\ntwo\nthree\n")
    name = "1700000002.M3P3.otherhost,S=%d,W=%d:2," % (len(m), len(to_wire(m)))
    server.deliver(user, m, name=name, where="cur")
    with server.session(user, pw) as c:
        assert c.list() == {1: len(to_wire(m))}
        assert c.retr(1) == to_wire(m)
        c.quit()


def test_empty_message_file(server):
    user, pw = server.add_user()
    server.deliver(user, b"")
    server.deliver(user, make_message("after empty"))
    with server.session(user, pw) as c:
        sizes = c.list()
        assert len(sizes) == 2
        for n in (1, 2):
            assert len(c.retr(n)) == sizes[n]
        c.quit()


def test_uidl_valid_for_long_and_odd_file_names(server):
    user, pw = server.add_user()
    long_name = "1700000003.M%sP4.%s" % ("9" * 40, "h" * 60)           # base > 70 chars
    odd_name = "1700000004.M5P5.h\u00f6st\u00e9"                        # 8-bit in the name
    server.deliver(user, make_message("long"), name=long_name)
    server.deliver(user, make_message("odd"), name=odd_name)
    server.deliver(user, make_message("plain"))
    with server.session(user, pw) as c:
        uids = c.uidl()
        c.quit()
    assert len(uids) == 3
    for uid in uids.values():
        assert re.fullmatch(r"[\x21-\x7e]{1,70}", uid), "invalid UIDL %r" % uid
    assert len(set(uids.values())) == 3
    with server.session(user, pw) as c:
        assert c.uidl() == uids
        c.quit()


def test_uidl_and_contents_stable_across_restart(server):
    user, pw = server.add_user(apop=True)     # so that the greeting has a timestamp
    long_name = "1700000005.M%sP6.%s" % ("8" * 40, "k" * 60)
    msgs = [make_message("a"), make_message("b"), make_message("c")]
    server.deliver(user, msgs[0])
    server.deliver(user, msgs[1], name=long_name)
    server.deliver(user, msgs[2], name="1700000006.M7P7.h:2,S", where="cur")
    with server.session(user, pw) as c:
        before = c.uidl()
        bodies = {before[n]: c.retr(n) for n in before}
        greet_before = c.greeting
        c.quit()
    server.restart()
    with server.login_retry(user, pw) as c:
        after = c.uidl()
        assert sorted(after.values()) == sorted(before.values())
        for n, uid in after.items():
            assert c.retr(n) == bodies[uid]
        # the APOP timestamp is not reused across restarts
        assert re.search(rb"<[^>]+>", c.greeting).group(0) != \
            re.search(rb"<[^>]+>", greet_before).group(0)
        c.quit()


def test_uidl_of_deleted_message_not_reused(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("first"))
    with server.session(user, pw) as c:
        gone = c.uidl()[1]
        assert c.cmd("DELE 1").startswith(b"+OK")
        c.quit()
    server.deliver(user, make_message("second"))
    with server.login_retry(user, pw) as c:
        uids = c.uidl()
        assert len(uids) == 1 and gone not in uids.values()
        c.quit()


def test_new_mail_during_session_waits_for_next_session(server):
    user, pw = server.add_user()
    m1, m2 = make_message("before"), make_message("during")
    server.deliver(user, m1)
    with server.session(user, pw) as c:
        st = c.stat()
        server.deliver(user, m2)           # the lock never delays delivery
        time.sleep(0.2)
        assert c.stat() == st
        assert sorted(c.list()) == [1]
        assert c.cmd("RETR 2").startswith(b"-ERR")
        assert c.cmd("LIST 2").startswith(b"-ERR")
        assert c.cmd("UIDL 2").startswith(b"-ERR")
        assert c.cmd("DELE 1").startswith(b"+OK")
        assert c.quit().startswith(b"+OK")
    # QUIT removed only message 1; the new mail is there next time
    with server.login_retry(user, pw) as c:
        assert c.stat() == (1, len(to_wire(m2)))
        assert c.retr(1) == to_wire(m2)
        c.quit()


def _file_of(server, user, msg):
    """The file in cur/ holding msg (after the login moved it there)."""
    hits = [p for p in (server.maildir(user) / "cur").iterdir()
            if p.is_file() and p.read_bytes() == msg]
    assert len(hits) == 1, hits
    return hits[0]


def test_messages_numbered_oldest_first(server):
    user, pw = server.add_user()
    msgs = [make_message("msg %d" % i) for i in range(5)]
    for i, m in enumerate(msgs):
        f = server.deliver(user, m, name="17000000%02d.M%dP1.h" % (10 + i, i))
        os.utime(f, (1700000010 + i, 1700000010 + i))
    with server.session(user, pw) as c:
        nums = c.numbers()
        assert [nums[message_id(m)] for m in msgs] == [1, 2, 3, 4, 5]
        c.quit()


def test_message_deleted_by_another_program_mid_session(server):
    user, pw = server.add_user()
    msgs = [make_message("keep 1"), make_message("vanishes"), make_message("keep 3")]
    for i, m in enumerate(msgs):
        server.deliver(user, m, name="1700000100.M%dP1.h" % i)
    with server.session(user, pw) as c:
        assert c.stat()[0] == 3
        nums = c.numbers()
        n0, n1, n2 = (nums[message_id(m)] for m in msgs)
        os.unlink(_file_of(server, user, msgs[1]))
        r = c.cmd("RETR %d" % n1)
        assert r.startswith(b"-ERR"), "RETR of a vanished message: %r" % r
        r = c.cmd("TOP %d 0" % n1)
        assert r.startswith(b"-ERR"), "TOP of a vanished message: %r" % r
        # the session goes on and other messages are fine
        assert c.cmd("NOOP").startswith(b"+OK")
        assert c.retr(n0) == to_wire(msgs[0])
        assert c.retr(n2) == to_wire(msgs[2])
        # marking the vanished one (either reply is fine) and another one
        # commits cleanly at QUIT
        assert c.cmd("DELE %d" % n1)[:1] in (b"+", b"-")
        assert c.cmd("DELE %d" % n2).startswith(b"+OK")
        assert c.quit().startswith(b"+OK")
    left = server.message_files(user)
    assert len(left) == 1 and left[0].read_bytes() == msgs[0]
    server.assert_alive()


def test_message_replaced_by_unreadable_entry_mid_session(server):
    user, pw = server.add_user()
    msgs = [make_message("ok 1"), make_message("broken")]
    for i, m in enumerate(msgs):
        server.deliver(user, m, name="1700000200.M%dP1.h" % i)
    with server.session(user, pw) as c:
        assert c.stat()[0] == 2
        nums = c.numbers()
        victim = _file_of(server, user, msgs[1])
        os.unlink(victim)
        os.mkdir(victim)                   # same name, now a directory
        try:
            r = c.cmd("RETR %d" % nums[message_id(msgs[1])])
            assert r.startswith(b"-ERR"), "RETR of an unreadable message: %r" % r
            assert c.cmd("NOOP").startswith(b"+OK")
            assert c.retr(nums[message_id(msgs[0])]) == to_wire(msgs[0])
            assert c.quit().startswith(b"+OK")
        finally:
            shutil.rmtree(victim, ignore_errors=True)
    server.assert_alive()


def test_stale_lock_after_kill9_does_not_block(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("survives"))
    c = server.session(user, pw)
    assert c.cmd("DELE 1").startswith(b"+OK")
    server.kill9()                          # dies mid-session, holding the lock
    c.close()
    server.start(new_ports=False)
    with server.login_retry(user, pw, seconds=5) as d:
        # the killed session never reached QUIT: nothing deleted
        assert d.stat()[0] == 1
        d.quit()


def test_lock_holds_across_two_servers_on_one_data_dir(server, server_factory):
    """Two `pobox serve` processes on the same data directory: the maildrop
    lock is not per process."""
    other = server_factory(None, start=False)
    other.data_dir = server.data_dir
    other.start()
    user, pw = server.add_user()
    server.deliver(user, make_message("shared"))
    with server.session(user, pw) as first:
        with other.connect() as second:
            second.cmd("USER " + user)
            r = second.cmd("PASS " + pw)
            assert r.startswith(b"-ERR") and resp_code(r) == "IN-USE", r
        assert first.cmd("DELE 1").startswith(b"+OK")
        first.quit()
    with other.login_retry(user, pw) as c:
        assert c.stat() == (0, 0)
        c.quit()


def test_dovecot_physical_size_only_in_file_name(server):
    """,S= alone is the stored (LF) size, not what RETR sends: LIST must
    still report the CRLF octets."""
    user, pw = server.add_user()
    m1 = make_message("S only, in cur", b"one\ntwo\nthree\n")
    m2 = make_message("S only, in new", b"one\ntwo\n")
    server.deliver(user, m1, name="1700000300.M1P1.h,S=%d:2,S" % len(m1), where="cur")
    server.deliver(user, m2, name="1700000301.M1P1.h,S=%d" % len(m2))
    with server.session(user, pw) as c:
        nums = c.numbers()
        sizes = c.list()
        for m in (m1, m2):
            n = nums[message_id(m)]
            assert sizes[n] == len(to_wire(m)) == len(c.retr(n)), (sizes, len(to_wire(m)))
        c.quit()


@pytest.mark.parametrize("present", [("new", "tmp"), ("cur",), ("new",)])
def test_incomplete_maildir_made_by_another_program(server, present):
    user, pw = server.add_user()
    md = server.maildir(user)
    msg = make_message("in %s" % "+".join(present))
    for d in present:
        (md / d).mkdir(parents=True)
    where = "cur" if "cur" in present else "new"
    (md / where / ("1700000400.M1P1.h" + (":2," if where == "cur" else ""))).write_bytes(msg)
    with server.session(user, pw) as c:
        assert c.stat() == (1, len(to_wire(msg)))
        assert c.retr(1) == to_wire(msg)
        assert c.cmd("DELE 1").startswith(b"+OK")
        assert c.quit().startswith(b"+OK")
    assert server.message_files(user) == []
