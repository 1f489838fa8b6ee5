"""test_concurrency.py — sessions that end while their job (password check,
maildrop open, QUIT commit) still runs on the worker pool, parallel sessions
on several I/O threads, racing logins for one maildrop, output flow control
with pipelined RETRs (DESIGN.md "Concurrency")."""

import socket
import threading
import time

import pytest

from pobox_harness import POBOX, make_message, message_id, resp_code, to_wire

SERVER_CONFIG = {"auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
                 "server": {"io_threads": "2", "workers": "2"}}


def test_disconnect_while_login_job_runs_leaves_no_lock(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("still here"))
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", server.pop3_port), timeout=5)
        s.sendall(("USER %s\r\nPASS %s\r\n" % (user, pw)).encode())
        if i % 2:
            s.sendall(b"STAT\r\n")
        s.close()                      # gone before the argon2 check finishes
    time.sleep(0.2)
    server.assert_alive()
    with server.login_retry(user, pw, seconds=10) as c:
        assert c.stat()[0] == 1
        c.quit()


def test_quit_then_immediate_close_still_commits(server):
    user, pw = server.add_user()
    target = make_message("delete me")
    server.deliver(user, target)
    server.deliver(user, make_message("keep me"))
    c = server.session(user, pw)
    n = c.numbers()[message_id(target)]
    c.send(b"DELE %d\r\nQUIT\r\n" % n)
    c.close()                          # do not wait for the replies
    deadline = time.monotonic() + 5
    while len(server.message_files(user)) != 1:
        assert time.monotonic() < deadline, "QUIT sent before the close was not committed"
        time.sleep(0.1)
    assert b"Subject: keep me" in server.message_files(user)[0].read_bytes()


def test_racing_logins_for_one_maildrop(server):
    user, pw = server.add_user()
    conns = [server.connect() for _ in range(8)]
    try:
        for c in conns:
            assert c.cmd("USER " + user).startswith(b"+OK")
        for c in conns:                # all PASS lines at once
            c.send(("PASS %s\r\n" % pw).encode())
        replies = [c.readline() for c in conns]
        ok = [r for r in replies if r.startswith(b"+OK")]
        assert len(ok) == 1, "%d sessions got the maildrop: %r" % (len(ok), replies)
        assert all(resp_code(r) == "IN-USE" for r in replies if not r.startswith(b"+OK")), replies
    finally:
        for c in conns:
            c.close()


def test_parallel_sessions_get_their_own_mail(server):
    users = [server.add_user() for _ in range(8)]
    mail = {}
    for u, _ in users:
        mail[u] = [make_message("for %s #%d" % (u, i), (b"line for " + u.encode() + b"\n") * 200)
                   for i in range(3)]
        for m in mail[u]:
            server.deliver(u, m)
    errors = []

    def client(u, pw):
        try:
            for _ in range(3):
                with server.login_retry(u, pw, seconds=10) as c:
                    got = sorted(c.retr(n) for n in c.list())
                    if got != sorted(to_wire(m) for m in mail[u]):
                        errors.append("%s got the wrong messages" % u)
                    c.quit()
        except Exception as e:         # reported below
            errors.append("%s: %r" % (u, e))

    threads = [threading.Thread(target=client, args=up) for up in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert not errors, errors


def test_disconnect_in_the_middle_of_a_big_retr(server):
    user, pw = server.add_user()
    big = make_message("big", (b"z" * 70 + b"\n") * 100000)     # ~7 MB
    server.deliver(user, make_message("small"))
    server.deliver(user, big)
    for _ in range(3):
        c = server.login_retry(user, pw)
        c.send(b"RETR %d\r\n" % c.numbers()[message_id(big)])
        c.sock.recv(1000)
        c.sock.close()
    time.sleep(0.3)
    server.assert_alive()
    with server.login_retry(user, pw) as c:
        assert c.stat()[0] == 2
        c.quit()


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_pipelined_retrs_are_flow_controlled(server):
    """200 pipelined RETRs of a 500 KB message (100 MB of replies) to a client
    that does not read: the server must stop reading commands instead of
    queueing the replies in memory."""
    if b"AddressSanitizer" in POBOX.read_bytes():
        pytest.skip("RSS is meaningless under AddressSanitizer")
    user, pw = server.add_user()
    msg = make_message("half a megabyte", (b"w" * 99 + b"\n") * 5000)
    server.deliver(user, msg)
    pid = server.proc.pid
    with server.session(user, pw) as c:
        c.sock.settimeout(30)
        time.sleep(0.2)
        base = _rss_kb(pid)
        c.send(b"RETR 1\r\n" * 200)
        time.sleep(1.5)
        peak = _rss_kb(pid)
        total = 0
        for i in range(200):
            assert c.readline().startswith(b"+OK")
            total += len(c.read_multi_raw())
            if i % 20 == 0:
                peak = max(peak, _rss_kb(pid))
        assert total == 200 * (len(to_wire(msg)) + 3)
        growth = (peak - base) / 1024
        assert growth < 30, "server RSS grew by %.1f MB with unread pipelined RETRs" % growth
        assert c.quit().startswith(b"+OK")


def test_many_messages(server):
    user, pw = server.add_user()
    md = server.maildir(user)
    for d in ("tmp", "new", "cur"):
        (md / d).mkdir(parents=True, exist_ok=True)
    n = 3000
    for i in range(n):
        (md / "cur" / ("1700001000.M%06dP9.h:2,S" % i)).write_bytes(
            b"Subject: m%d\nMessage-ID: <many%d@x>\n\nbody %d\n" % (i, i, i))
    with server.session(user, pw) as c:
        c.sock.settimeout(30)
        count, size = c.stat()
        assert count == n
        listing = c.list()
        assert len(listing) == n and sum(listing.values()) == size
        uids = c.uidl()
        assert len(set(uids.values())) == n
        for k in (1, n // 2, n):
            assert len(c.retr(k)) == listing[k]
        c.quit()


def test_tmp_and_dot_files_are_not_messages(server):
    user, pw = server.add_user()
    md = server.maildir(user)
    server.deliver(user, make_message("real"))
    (md / "tmp" / "1700002000.M1P1.h").write_bytes(make_message("half delivered"))
    (md / "new" / ".hidden").write_bytes(b"Subject: not a message\n\n")
    (md / "cur" / ".nfs0001").write_bytes(b"Subject: not a message\n\n")
    (md / "new" / "subdir").mkdir()
    with server.session(user, pw) as c:
        assert c.stat()[0] == 1
        assert b"Subject: real" in c.retr(1)
        c.quit()


def test_flag_change_by_another_program_keeps_uidl(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("flagged later"))
    with server.session(user, pw) as c:
        uid = c.uidl()[1]
        c.quit()
    cur = list((server.maildir(user) / "cur").iterdir())
    assert len(cur) == 1
    base = cur[0].name.split(":")[0]
    cur[0].rename(cur[0].with_name(base + ":2,FS"))     # a MUA sets flags
    with server.login_retry(user, pw) as c:
        assert c.uidl() == {1: uid}
        c.quit()


def test_no_descriptor_leak_after_many_kinds_of_sessions(server):
    user, pw = server.add_user()
    server.deliver(user, make_message("fd"))
    time.sleep(0.3)
    before = server.fd_count()
    for i in range(60):
        kind = i % 6
        s = socket.create_connection(("127.0.0.1", server.pop3_port), timeout=5)
        if kind == 1:
            s.sendall(b"CAP")
        elif kind == 2:
            s.sendall(b"STLS\r\n")
            s.recv(100)
        elif kind == 3:
            s.sendall(b"STLS\r\n\x16\x03\x01\x00")
        elif kind == 4:
            s.sendall(("USER %s\r\nPASS %s\r\nRETR 1\r\n" % (user, pw)).encode())
            time.sleep(0.05)
        elif kind == 5:
            s.sendall(b"X" * 5000)
        s.close()
        t = socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=5)
        if kind % 2:
            t.sendall(b"\x16\x03\x01\x02\x00\x01")
        t.close()
    deadline = time.monotonic() + 10
    while server.fd_count() > before + 4:
        assert time.monotonic() < deadline, "fds: %d before, %d after" % (before, server.fd_count())
        time.sleep(0.3)
    server.assert_alive()
    with server.login_retry(user, pw, seconds=10) as c:
        assert c.stat()[0] == 1
        c.quit()


def test_idle_logged_in_session_holds_one_descriptor(server):
    """An authenticated session between commands holds its socket and
    nothing else (no Maildir or lock descriptors), so 10,000 idle sessions
    fit in 10,000 descriptors; RETR and QUIT still work afterwards."""
    users = [server.add_user() for _ in range(12)]
    for user, _ in users:
        server.deliver(user, make_message("idle", body=b"x" * 500))
    base = server.fd_count()
    sessions = [server.session(u, p) for u, p in users]
    try:
        for c in sessions:
            assert c.stat()[0] == 1
        assert server.fd_count() - base <= len(sessions), \
            "%d sessions hold %d descriptors" % (len(sessions), server.fd_count() - base)
        for c in sessions:
            assert b"x" * 500 in c.retr(1)
            assert c.cmd("DELE 1").startswith(b"+OK")
        assert server.fd_count() - base <= len(sessions)
        for c in sessions:
            c.quit()
    finally:
        for c in sessions:
            c.close()
    for user, _ in users:
        assert server.message_files(user) == []
