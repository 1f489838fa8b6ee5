"""test_limits.py — abuse limits: max connections (all and per address),
the idle timeout, too many bad commands in a row, growing delays after failed
logins, and half-open TLS handshakes that must not starve real users
(CVE-2014-3430 class). Clients use several 127.0.0.x source addresses."""

import os
import socket
import ssl
import time

from pobox_harness import (make_message, raise_nofile, resp_code, tls_client_context,
                           to_wire)

SERVER_CONFIG = {
    "auth": {"plaintext_without_tls": "yes", "failure_delay": "200ms",
             "max_failure_delay": "1500ms"},
    "limits": {"max_connections": "6", "max_connections_per_ip": "3"},
    "pop3": {"idle_timeout": "2s"},
}


def open_sessions(server, source, n):
    conns = []
    for _ in range(n):
        c = server.connect(source=source)
        assert c.greeting.startswith(b"+OK"), c.greeting
        conns.append(c)
    return conns


def close_all(conns):
    for c in conns:
        c.close()


def eventually_accepted(server, source, seconds=5):
    deadline = time.monotonic() + seconds
    while True:
        c = server.connect(source=source)
        if c.greeting.startswith(b"+OK"):
            c.cmd("QUIT")
            c.close()
            return
        c.close()
        assert time.monotonic() < deadline, "still refused: %r" % c.greeting
        time.sleep(0.2)


def test_max_connections_per_ip(server):
    eventually_accepted(server, "127.0.0.2")
    conns = open_sessions(server, "127.0.0.2", 3)
    try:
        with server.connect(source="127.0.0.2") as extra:
            assert extra.greeting.startswith(b"-ERR"), extra.greeting
            assert resp_code(extra.greeting) == "SYS/TEMP", extra.greeting
            assert extra.wait_closed(5) == b""
        # another address is not affected
        with server.connect(source="127.0.0.3") as other:
            assert other.greeting.startswith(b"+OK"), other.greeting
            other.cmd("QUIT")
        # the open sessions still work
        for c in conns:
            assert c.capa()
    finally:
        close_all(conns)
    eventually_accepted(server, "127.0.0.2")


def test_max_connections_per_ip_on_pop3s(server):
    eventually_accepted(server, "127.0.0.18")
    conns = []
    try:
        for _ in range(3):
            c = server.connect_tls(source="127.0.0.18")
            assert c.greeting.startswith(b"+OK"), c.greeting
            conns.append(c)
        # refused: -ERR [SYS/TEMP] inside TLS, or closed without a reply
        try:
            with server.connect_tls(source="127.0.0.18") as extra:
                assert resp_code(extra.greeting) == "SYS/TEMP", extra.greeting
        except (ssl.SSLError, EOFError, ConnectionResetError):
            pass
        # and the plain port counts the same connections
        with server.connect(source="127.0.0.18") as extra:
            assert resp_code(extra.greeting) == "SYS/TEMP", extra.greeting
    finally:
        close_all(conns)
    eventually_accepted(server, "127.0.0.18")


def test_max_connections_total(server):
    eventually_accepted(server, "127.0.0.4")
    conns = []
    try:
        conns += open_sessions(server, "127.0.0.4", 3)
        conns += open_sessions(server, "127.0.0.5", 3)
        with server.connect(source="127.0.0.6") as extra:
            assert extra.greeting.startswith(b"-ERR"), extra.greeting
            assert resp_code(extra.greeting) == "SYS/TEMP", extra.greeting
            assert extra.wait_closed(5) == b""
    finally:
        close_all(conns)
    eventually_accepted(server, "127.0.0.6")


def test_idle_timeout_before_login(server):
    with server.connect(source="127.0.0.7") as c:
        t0 = time.monotonic()
        c.wait_closed(10)          # may send an -ERR line first
        assert time.monotonic() - t0 >= 1.0, "closed long before the 2s idle timeout"


def test_idle_timeout_after_login(server):
    user, pw = server.add_user()
    with server.session(user, pw, source="127.0.0.7") as c:
        c.wait_closed(10)
    # a session cut by the idle timeout releases the lock
    eventually_accepted(server, "127.0.0.7")
    deadline = time.monotonic() + 5
    while True:
        with server.connect(source="127.0.0.7") as c:
            c.cmd("USER " + user)
            r = c.cmd("PASS " + pw)
            if r.startswith(b"+OK"):
                c.quit()
                break
        assert time.monotonic() < deadline, r
        time.sleep(0.2)


def test_activity_keeps_session_alive(server):
    with server.connect(source="127.0.0.8") as c:
        for _ in range(8):            # 4 s in all, twice the idle timeout
            time.sleep(0.5)
            assert c.capa()
        assert c.cmd("QUIT").startswith(b"+OK")


def test_slow_client_does_not_block_others(server):
    slow = server.connect(source="127.0.0.9")
    try:
        for ch in b"NOO":
            slow.send(bytes([ch]))
            with server.connect(source="127.0.0.10") as other:
                assert other.greeting.startswith(b"+OK")
                assert other.capa()
            time.sleep(0.3)
    finally:
        slow.close()


def test_too_many_bad_commands_close_the_session(server):
    """limits.max_bad_commands (default 20) bad commands in a row close the
    session."""
    with server.connect(source="127.0.0.11") as c:
        errs = 0
        try:
            for _ in range(30):
                line = c.cmd("BOGUS")
                assert line.startswith(b"-ERR"), line
                errs += 1
        except (EOFError, ConnectionResetError, BrokenPipeError):
            pass
        assert 19 <= errs <= 20, "session closed after %d bad commands" % errs
        c.wait_closed(5)


def test_too_many_pipelined_bad_commands(server):
    with server.connect(source="127.0.0.11") as c:
        c.send(b"BOGUS\r\n" * 30)
        errs = 0
        while True:
            try:
                line = c.readline()
            except (EOFError, ConnectionResetError):
                break
            assert line.startswith(b"-ERR"), line
            errs += 1
            assert errs <= 20, "more than limits.max_bad_commands (20) errors answered"
    server.assert_alive()


def test_bad_command_count_resets_after_a_good_one(server):
    with server.connect(source="127.0.0.11") as c:
        for _ in range(3):
            for _ in range(15):
                assert c.cmd("BOGUS").startswith(b"-ERR")
            assert c.capa()
        assert c.cmd("QUIT").startswith(b"+OK")


def test_failed_login_delay_grows(server):
    """The 3rd failure from one address takes longer than the 1st (delays
    configured 200ms first, at most 1500ms; measured loosely)."""
    user, pw = server.add_user()
    times = []
    with server.connect(source="127.0.0.12") as c:
        for _ in range(3):
            c.cmd("USER " + user)
            t0 = time.monotonic()
            r = c.cmd("PASS " + server.secret())
            times.append(time.monotonic() - t0)
            assert r.startswith(b"-ERR") and resp_code(r) == "AUTH", r
    assert times[0] >= 0.1, "no failure delay at all: %r" % times
    assert times[2] > times[0], "delay did not grow: %r" % times
    # a correct login from another address is not held up by that delay
    with server.connect(source="127.0.0.13") as c:
        c.login(*server.add_user())
        c.quit()


def test_failed_login_delay_is_capped(server):
    """auth.max_failure_delay (1500ms here) caps the growth: the 6th failure
    in a row does not wait 200ms * 2^5 (loose bound)."""
    user, _ = server.add_user()
    c = server.connect(source="127.0.0.16")
    times = []
    try:
        while len(times) < 6:
            try:
                c.cmd("USER " + user)
            except (EOFError, ConnectionResetError):
                c.close()           # the server may close after some failures
                c = server.connect(source="127.0.0.16")
                continue
            t0 = time.monotonic()
            r = c.cmd("PASS " + server.secret())
            times.append(time.monotonic() - t0)
            assert r.startswith(b"-ERR [AUTH]"), r
    finally:
        c.close()
    assert max(times) < 4.0, "failure delays %r with max_failure_delay = 1500ms" % times


def test_slow_reader_of_a_big_message_is_not_idle(server):
    """A client that keeps reading a large RETR for longer than the idle
    timeout (2s) is not idle: it gets the whole message. The message is
    bigger than what the socket buffers hold (server send buffer at most
    4 MB, a small client window) plus 2s of reading, so the server is still
    writing when 2s have passed since the RETR command."""
    user, pw = server.add_user()
    msg = make_message("slowly", (b"s" * 99 + b"\n") * 120000)     # 12 MB
    server.deliver(user, msg)
    with server.connect(source="127.0.0.17", rcvbuf=32768) as c:
        c.login(user, pw)
        assert c.cmd("RETR 1").startswith(b"+OK")
        t0 = time.monotonic()
        rate = 3e6                                   # octets a second

        def throttle(total):
            ahead = t0 + total / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

        try:
            raw = c.read_multi_raw(on_chunk=throttle)
        except (EOFError, ConnectionResetError) as e:
            raise AssertionError("cut off %.1fs into the download: %s" % (
                time.monotonic() - t0, e))
        assert raw[:-3] == to_wire(msg)


def test_client_that_stops_reading_is_cut_and_unlocks(server):
    """A client that stops reading in the middle of a big RETR is idle: the
    idle timeout (2s) ends its session and frees the maildrop."""
    user, pw = server.add_user()
    server.deliver(user, make_message("stalled", (b"t" * 79 + b"\n") * 100000))   # 8 MB
    stalled = server.session(user, pw, source="127.0.0.19")
    try:
        stalled.send(b"RETR 1\r\n")
        assert stalled.readline().startswith(b"+OK")
        t0 = time.monotonic()
        with server.login_retry(user, pw, seconds=10, source="127.0.0.19") as c:
            assert time.monotonic() - t0 >= 1.0, "lock released before the idle timeout"
            assert c.stat()[0] == 1
            c.quit()
    finally:
        stalled.close()


def test_failed_login_delay_grows_per_account(server):
    """Failures for one account from different addresses: the 3rd is slower
    than the 1st (per-account delay, not only per address)."""
    user, pw = server.add_user()
    times = []
    for src in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
        with server.connect(source=src) as c:
            c.cmd("USER " + user)
            t0 = time.monotonic()
            r = c.cmd("PASS " + server.secret())
            times.append(time.monotonic() - t0)
            assert r.startswith(b"-ERR [AUTH]"), r
    assert times[2] > times[0], "per-account delay did not grow: %r" % times


def test_unknown_user_delay_like_wrong_password(server):
    """Unknown user and wrong password: same reply, similar delay (loose:
    neither answers instantly when the other is delayed)."""
    user, _ = server.add_user()
    with server.connect(source="127.0.0.14") as c:
        c.cmd("USER " + user)
        t0 = time.monotonic()
        r1 = c.cmd("PASS " + server.secret())
        d1 = time.monotonic() - t0
    with server.connect(source="127.0.0.15") as c:
        c.cmd("USER nosuch-%d@example.org" % os.getpid())
        t0 = time.monotonic()
        r2 = c.cmd("PASS " + server.secret())
        d2 = time.monotonic() - t0
    assert r1 == r2 and r1.startswith(b"-ERR [AUTH]"), (r1, r2)
    assert d1 >= 0.1 and d2 >= 0.1, (d1, d2)


# ---------------------------------------------------------------- TLS flood

def half_client_hello():
    """The first half of a real TLS ClientHello."""
    ctx = tls_client_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b"\x16", hello[:5]
    return hello[:len(hello) // 2]


def test_half_open_tls_handshakes_do_not_starve_users(server_factory):
    raise_nofile(20000)
    srv = server_factory({
        "auth": {"plaintext_without_tls": "no", "failure_delay": "0"},
        "limits": {"max_connections": "10000", "max_connections_per_ip": "5000"},
        "tls": {"handshake_timeout": "3s"},
    })
    user, pw = srv.add_user()
    time.sleep(0.5)
    fds_before = srv.fd_count()
    half = half_client_hello()
    socks = []
    try:
        for i in range(2000):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", srv.pop3s_port))
            socks.append(s)
        deadline = time.monotonic() + 15
        pending = list(socks)
        while pending and time.monotonic() < deadline:
            still = []
            for s in pending:
                try:
                    s.send(half)
                except (BlockingIOError, InterruptedError):
                    still.append(s)
                except OSError:
                    pass           # refused or reset: the server may shed load
            pending = still
            if pending:
                time.sleep(0.05)
        # a real user still logs in, over POP3S and over STLS
        t0 = time.monotonic()
        with srv.connect_tls(timeout=10) as c:
            assert c.greeting.startswith(b"+OK"), c.greeting
            c.login(user, pw)
            assert c.stat() == (0, 0)
            c.quit()
        with srv.connect(timeout=10) as c:
            assert c.starttls().startswith(b"+OK")
            c.login(user, pw)
            c.quit()
        assert time.monotonic() - t0 < 20
        # the handshake timeout (3s) closes the half-open connections
        time.sleep(5)
        closed = 0
        sample = socks[:50]
        for s in sample:
            s.setblocking(True)
            s.settimeout(5)
            try:
                while True:
                    d = s.recv(4096)
                    if not d:
                        closed += 1
                        break
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        assert closed == len(sample), \
            "%d of %d half-open handshakes still open after the timeout" % (
                len(sample) - closed, len(sample))
    finally:
        for s in socks:
            s.close()
    srv.assert_alive()
    # nothing leaks: the server's descriptors come back down
    deadline = time.monotonic() + 15
    while srv.fd_count() > fds_before + 10:
        assert time.monotonic() < deadline, "fds: %d before, %d after" % (
            fds_before, srv.fd_count())
        time.sleep(0.5)
    assert "127.0.0.1" in srv.log_text()
