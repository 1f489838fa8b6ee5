"""relay_env.py — shared pieces for the outbound relay's end-to-end tests
(tests/protocol/test_relay.py, test_queue_cli.py and
tests/interop/test_relay_postfix.py; issue 5).

What is here:

- DnsServer: tests/dns_server.py run as a child process on a table this
  module writes (MX and A records for the test domains); pobox points
  relay.resolver at it.
- Peer: a scripted SMTP server inside the test process (threads), bound to
  any loopback address and port, whose replies can change from one attempt
  to the next (451 first, then 250), that can stall in the middle of DATA
  until released, and that records every transaction and every accepted
  message.
- RelayEnv: one DNS server, one relay port P and instance B (domain b.test,
  port 25 on 127.0.0.2:P); instances A (domain a.test, port 25 on
  127.0.0.1:P) are made per test with their own relay.* keys. relay.port is
  one port for every MX host, so every receiving MTA here (B, the peers,
  Postfix) listens on port P of its own loopback address:

      a.test      MX 10 mx.a.test      mx.a.test      A 127.0.0.1  (A)
      b.test      MX 10 mx.b.test      mx.b.test      A 127.0.0.2  (B)
      pN.test     MX 10 mx.pN.test     mx.pN.test     A 127.0.1.N  (peer N)
      dead.test   MX 10 mx.dead.test   mx.dead.test   A 127.0.0.9  (nothing)
      nullmx.test MX 0 .                                           (RFC 7505)
      nomx.test, prio.test, v6.test                    (routing, ROUTE_ADDRS)
      servfail.test                                                (SERVFAIL)
      nowhere.test                                                 (NXDOMAIN)

- helpers: bounded polling (wait_until), submitting on A's submission port,
  reading mailboxes, parsing RFC 3464 reports.

Only the Python standard library and tests/pobox_harness.py are used. Every
process and thread started here is stopped by its owner; every wait has a
deadline.
"""

import email
import email.policy
import os
import re
import selectors
import socket
import subprocess
import threading
import time
from pathlib import Path

from pobox_harness import Server, free_port, unique

TESTS = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"

A_DOMAIN, B_DOMAIN = "a.test", "b.test"
A_HOST, B_HOST = "mx.a.test", "mx.b.test"
A_ADDR, B_ADDR = "127.0.0.1", "127.0.0.2"
DEAD_ADDR = "127.0.0.9"
N_PEERS = 40


# fixed addresses of the routing tests (see dns_table)
ROUTE_ADDRS = {"nomx": "127.0.2.1", "dead": "127.0.2.2", "mx20": "127.0.2.3",
               "mx10": "127.0.2.4"}


def peer_addr(n):
    return "127.0.1.%d" % n


# ---------------------------------------------------------------------------
# waiting

def wait_until(fn, timeout=20.0, interval=0.2, what="a condition"):
    """Calls fn until it returns something true (returned) or timeout
    seconds pass (AssertionError naming what; what may be a callable giving
    the text, e.g. with the state seen last)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (
                timeout, what() if callable(what) else what))
        time.sleep(interval)


def stays(fn, seconds, interval=0.25):
    """fn() stays true for seconds (returns True), else False at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not fn():
            return False
        time.sleep(interval)
    return bool(fn())


# ---------------------------------------------------------------------------
# the DNS server

def dns_table(extra=()):
    lines = [
        "%s MX 10 %s" % (A_DOMAIN, A_HOST), "%s A %s" % (A_HOST, A_ADDR),
        "%s MX 10 %s" % (B_DOMAIN, B_HOST), "%s A %s" % (B_HOST, B_ADDR),
        "dead.test MX 10 mx.dead.test", "mx.dead.test A %s" % DEAD_ADDR,
        "nullmx.test MX 0 .",
        "@servfail servfail.test",
        # routing: no MX (the A record is used), preferences and fallback,
        # an IPv6-only MX host
        "nomx.test A %s" % ROUTE_ADDRS["nomx"],
        "prio.test MX 5 mx-dead.prio.test", "mx-dead.prio.test A %s" % ROUTE_ADDRS["dead"],
        "prio.test MX 20 mx-20.prio.test", "mx-20.prio.test A %s" % ROUTE_ADDRS["mx20"],
        "prio.test MX 10 mx-10.prio.test", "mx-10.prio.test A %s" % ROUTE_ADDRS["mx10"],
        "v6.test MX 10 mx.v6.test", "mx.v6.test AAAA ::1",
    ]
    for n in range(1, N_PEERS + 1):
        lines += ["p%d.test MX 10 mx.p%d.test" % (n, n),
                  "mx.p%d.test A %s" % (n, peer_addr(n))]
    return "\n".join(list(lines) + list(extra)) + "\n"


class DnsServer:
    """tests/dns_server.py on 127.0.0.1 (a free UDP port) serving table."""

    def __init__(self, workdir, table):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.table = self.dir / "dns.table"
        self.table.write_text(table)
        self.log = open(self.dir / "dns.log", "wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(TESTS / "dns_server.py"), "0", str(self.table)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + 10
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                d = os.read(self.proc.stdout.fileno(), 100)
                if not d:
                    break
                line += d
        sel.close()
        if not re.match(rb"^\d+\n$", line):
            self.stop()
            raise AssertionError("dns_server.py did not print its port: %r, %s" % (
                line, (self.dir / "dns.log").read_text(errors="replace")[-2000:]))
        self.port = int(line)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.log.close()


# ---------------------------------------------------------------------------
# a scripted SMTP peer in this process

DEFAULT_EXT = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 104857600")


class PeerClosed(Exception):
    pass


class Peer:
    """A scripted SMTP server on (host, port), one thread per connection.

    Replies: for each stage ("greeting", "ehlo", "mail", "rcpt", "data",
    "dataend", and "rcpt:ADDRESS" for one recipient), `once[stage]` is a
    list of replies used one at a time, then `always[stage]` when set,
    else the normal success reply. A reply is a full line without CRLF
    ("451 4.3.0 busy"), or "close" (drop the connection), "garbage" (a
    line that is no reply) or "many" (a reply of 10,000 lines).

    `stall_data_after = N`: the next DATA stops being read after N octets
    and gets no reply until release() (then the connection is closed);
    `stalled` is set when that happens.

    Recorded: `transactions` (one dict a MAIL: mail, rcpts [(address,
    params, reply code)], result), `deliveries` (the accepted ones, with the
    message in `data`, dot-stuffing undone, CRLF), `commands` (every
    command line), `connections` (a count)."""

    def __init__(self, host="127.0.0.1", port=0, name="peer.test", ext=DEFAULT_EXT):
        self.host, self.name = host, name
        self.ext = list(ext)
        self.once, self.always = {}, {}
        self.stall_data_after = None
        self.stalled = threading.Event()
        self._release = threading.Event()
        self.lock = threading.Lock()
        self.transactions, self.deliveries, self.commands = [], [], []
        self.connections = 0
        self._socks = set()
        self._stop = False
        self.ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # a small receive window, so that a stalled DATA really blocks the
        # sender (accepted sockets inherit it)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.ls.bind((host, port))
        self.port = self.ls.getsockname()[1]
        self.ls.listen(32)
        self.ls.settimeout(0.3)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    # -- control
    def release(self):
        """Ends a stall: the stalled connection is closed; later DATA is
        read normally."""
        self.stall_data_after = None
        self._release.set()

    def close(self):
        self._stop = True
        self._release.set()
        self.thread.join(5)
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def delivered_to(self, address):
        """The accepted messages that had address as a recipient."""
        with self.lock:
            return [d for d in self.deliveries
                    if any(r[0].lower() == address.lower() for r in d["rcpts"])]

    def summary(self):
        with self.lock:
            return "peer %s:%d: %d connections; transactions %r; last commands %r" % (
                self.host, self.port, self.connections,
                [(t["mail"], t["rcpts"], t["result"]) for t in self.transactions][-10:],
                self.commands[-20:])

    # -- the server
    def _accept_loop(self):
        while not self._stop:
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(60)
            with self.lock:
                self.connections += 1
                self._socks.add(s)
            threading.Thread(target=self._session, args=(s,), daemon=True).start()

    def _reply_for(self, stage, default, key=None):
        with self.lock:
            for k in ([key] if key else []) + [stage]:
                if self.once.get(k):
                    return self.once[k].pop(0)
                if k in self.always:
                    return self.always[k]
        return default

    def _session(self, s):
        buf = [b""]

        def send(text):
            try:
                s.sendall(text.encode() + b"\r\n")
            except OSError:
                raise PeerClosed()

        def reply(stage, default, key=None):
            return act(self._reply_for(stage, default, key), default)

        def act(r, default):
            if r == "close":
                raise PeerClosed()
            if r == "garbage":
                send("hello there, this is no SMTP reply")
                return "garbage"
            if r == "many":
                code = default[:3]
                try:
                    s.sendall(("%s-line\r\n" % code).encode() * 10000 +
                              ("%s end" % code).encode() + b"\r\n")
                except OSError:
                    raise PeerClosed()
                return default
            send(r)
            return r

        def readline():
            while b"\n" not in buf[0]:
                try:
                    d = s.recv(65536)
                except OSError:
                    d = b""
                if not d:
                    raise PeerClosed()
                buf[0] += d
            i = buf[0].index(b"\n")
            line, buf[0] = buf[0][:i + 1], buf[0][i + 1:]
            return line.rstrip(b"\r\n").decode("utf-8", "replace")

        txn = None
        try:
            reply("greeting", "220 %s ESMTP scripted test peer" % self.name)
            while not self._stop:
                line = readline()
                with self.lock:
                    self.commands.append(line)
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    lines = ["%s greets %s" % (self.name, line[5:].strip())] + self.ext
                    r = self._reply_for("ehlo", None)
                    if r is None:
                        send("\r\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ", l)
                                         for i, l in enumerate(lines)))
                    else:
                        act(r, "250 " + self.name)
                elif verb == "HELO":
                    reply("helo", "250 %s" % self.name)
                elif verb == "MAIL":
                    m = re.match(r"(?i)^MAIL FROM:\s*<([^>]*)>\s*(.*)$", line)
                    r = reply("mail", "250 2.1.0 sender ok")
                    if m and r.startswith("2"):
                        txn = {"mail": m.group(1), "mail_params": m.group(2),
                               "rcpts": [], "result": None, "helo": None}
                        with self.lock:
                            self.transactions.append(txn)
                elif verb == "RCPT":
                    m = re.match(r"(?i)^RCPT TO:\s*<([^>]*)>\s*(.*)$", line)
                    addr = m.group(1) if m else ""
                    r = reply("rcpt", "250 2.1.5 recipient ok", key="rcpt:" + addr.lower())
                    if txn is not None and m:
                        txn["rcpts"].append((addr, m.group(2), int(r[:3]) if r[:3].isdigit() else 0))
                elif verb == "DATA":
                    ok = txn is not None and any(200 <= c < 300 for _, _, c in txn["rcpts"])
                    if not ok:
                        send("554 5.5.1 no valid recipients")
                        continue
                    r = reply("data", "354 go ahead")
                    if not r.startswith("3"):
                        txn["result"] = r
                        txn = None
                        continue
                    data = self._read_data(s, buf)
                    r = reply("dataend", "250 2.0.0 accepted by the test peer")
                    txn["result"] = r
                    if r.startswith("2"):
                        txn["data"] = data
                        with self.lock:
                            self.deliveries.append({
                                "mail": txn["mail"], "mail_params": txn["mail_params"],
                                "rcpts": [(a, p) for a, p, c in txn["rcpts"] if 200 <= c < 300],
                                "data": data})
                    txn = None
                elif verb == "RSET":
                    txn = None
                    send("250 2.0.0 ok")
                elif verb == "NOOP":
                    send("250 2.0.0 ok")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("502 5.5.2 not implemented here")
        except PeerClosed:
            pass
        finally:
            with self.lock:
                self._socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _read_data(self, s, buf):
        """The data up to CRLF.CRLF, unstuffed (CRLF line ends kept)."""
        data = b"\r\n" + buf[0]
        buf[0] = b""
        limit = self.stall_data_after
        while b"\r\n.\r\n" not in data:
            if limit is not None and len(data) >= limit:
                self.stalled.set()
                while not self._release.wait(0.2):
                    if self._stop:
                        break
                self._release.clear()
                raise PeerClosed()
            try:
                d = s.recv(4096 if limit is not None else 65536)
            except OSError:
                d = b""
            if not d:
                raise PeerClosed()
            data += d
        i = data.index(b"\r\n.\r\n")
        raw, buf[0] = data[2:i + 2], data[i + 5:]
        lines = raw.split(b"\r\n")
        return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


# ---------------------------------------------------------------------------
# the two instances

def pick_relay_port(addresses):
    """A TCP port free on every one of addresses."""
    for _ in range(50):
        p = free_port(addresses[0])
        socks = []
        try:
            for a in addresses:
                s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET,
                                  socket.SOCK_STREAM)
                socks.append(s)
                s.bind((a, p))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no port free on all of %r" % (addresses,))


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class RelayEnv:
    """The DNS server, the relay port P, instance B and per-test A's."""

    def __init__(self, workdir, extra_dns=(), extra_addresses=()):
        self.dir = Path(workdir)
        addrs = [A_ADDR, B_ADDR, DEAD_ADDR] + list(ROUTE_ADDRS.values()) + \
            [peer_addr(n) for n in range(1, N_PEERS + 1)] + list(extra_addresses)
        if ipv6_loopback():
            addrs.append("::1")
        self.port = pick_relay_port(addrs)
        self.dns = DnsServer(self.dir / "dns", dns_table(extra_dns))
        self.servers = []
        self.peers = []
        self._next_peer = 0
        self._made = 0
        self.b = None
        self.bob = None

    # -- instances
    def relay_config(self, **relay):
        cfg = {"resolver": self.dns.address, "port": str(self.port),
               "retry_schedule": "1s"}
        cfg.update({k: str(v) for k, v in relay.items() if v is not None})
        return cfg

    def make_server(self, name, domain, hostname, smtp_listen, relay=None, config=None):
        cfg = {"server": {"hostname": hostname, "domains": domain},
               "listen": {"smtp": smtp_listen},
               "relay": self.relay_config(**(relay or {}))}
        for section, keys in (config or {}).items():
            cfg.setdefault(section, {}).update(keys)
        self._made += 1
        d = self.dir / ("%s_%d" % (name, self._made))
        srv = Server(d, cfg, name=name)
        self.servers.append(srv)
        srv.start()
        return srv

    def start_b(self, relay=None, config=None):
        self.b = self.make_server("b", B_DOMAIN, B_HOST, "%s:%d" % (B_ADDR, self.port),
                                  relay, config)
        self.bob = self.b.add_user("bob@" + B_DOMAIN)
        return self.b

    def make_a(self, relay=None, config=None):
        """Instance A (a.test, port 25 on 127.0.0.1:P) with alice@a.test.
        Only one A runs at a time (they share 127.0.0.1:P): stop_a() at the
        end of each test."""
        cfg = {"server": {"hostname": A_HOST, "domains": A_DOMAIN},
               "listen": {"smtp": "%s:%d" % (A_ADDR, self.port)},
               "relay": self.relay_config(**(relay or {}))}
        for section, keys in (config or {}).items():
            cfg.setdefault(section, {}).update(keys)
        self._made += 1
        d = self.dir / ("a_%d" % self._made)
        a = Server(d, cfg, name="a")
        self.servers.append(a)
        a.start()
        a.alice = a.add_user("alice@" + A_DOMAIN)
        return a

    def peer_at(self, host, **kw):
        """A new Peer on host:P (for the routing tests)."""
        p = Peer(host, self.port, name="peer-" + host, **kw)
        self.peers.append(p)
        return p

    def peer(self, **kw):
        """A new Peer at mx.pN.test (port P); returns (peer, domain)."""
        self._next_peer += 1
        n = self._next_peer
        assert n <= N_PEERS, "more peers than DNS entries"
        p = Peer(peer_addr(n), self.port, name="mx.p%d.test" % n, **kw)
        self.peers.append(p)
        return p, "p%d.test" % n

    def stop_server(self, srv):
        """SIGTERM; returns problems (exit code, sanitizer reports)."""
        problems = []
        was = srv.alive()
        died = srv.proc is not None and not was
        rc = srv.stop()
        if died:
            problems.append("%s died (rc %r)" % (srv.name, rc))
        elif was and rc != 0:
            problems.append("%s: exit code %r after SIGTERM" % (srv.name, rc))
        log = srv.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                i = log.index(marker)
                problems.append("%s: sanitizer report:\n%s" % (srv.name, log[max(0, i - 200):i + 3000]))
        for pw in srv.passwords:
            if pw in log:
                problems.append("%s: a password appears in the log" % srv.name)
        return problems

    def close(self):
        problems = []
        for p in self.peers:
            p.close()
        for s in self.servers:
            problems += self.stop_server(s)
        self.dns.stop()
        return problems


# ---------------------------------------------------------------------------
# mail helpers

def message(sender, to, subject, body=b"Hello from the relay tests.\r\n", extra=b""):
    """A CRLF message with a unique Message-ID; returns (bytes, token), the
    token being a unique word in the subject and the body."""
    token = unique("tok") + os.urandom(3).hex()
    if isinstance(body, str):
        body = body.encode()
    head = ("From: %s\r\nTo: %s\r\nSubject: %s %s\r\n"
            "Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
            "Message-ID: <%s@a.test>\r\n" % (sender, to, subject, token, token)).encode()
    return head + extra + b"\r\n" + body + b"token " + token.encode() + b"\r\n", token


def submit(srv, user, password, recipients, msg, sender=None, mail_params="",
           rcpt_params=None, listener="submission"):
    """Submits msg on srv's submission port as user (STARTTLS, AUTH PLAIN):
    the final reply. rcpt_params: {address: "NOTIFY=..."}; every RCPT must
    get 250."""
    rcpt_params = rcpt_params or {}
    with srv.smtp_session(listener, user=user, password=password) as c:
        r = c.mail(sender or user, mail_params)
        assert r.code == 250, "MAIL: %r\n%s" % (r, c.transcript())
        for rc in recipients:
            r = c.rcpt(rc, rcpt_params.get(rc, ""))
            assert r.code == 250, "RCPT %s: %r\n%s" % (rc, r, c.transcript())
        r354, final = c.data(msg)
        assert r354.code == 354, "DATA: %r\n%s" % (r354, c.transcript())
        assert final is not None and final.code == 250, "end of data: %r\n%s" % (
            final, c.transcript())
        try:
            c.quit()
        except (OSError, EOFError):
            pass
        return final


def queued_id(reply):
    m = re.search(rb"queued as (\S+)", reply.lines[-1])
    assert m, "no queue ID in %r" % (reply,)
    return m.group(1).decode()


def mailbox(srv, address):
    """The message files of address's Maildir (new/ and cur/)."""
    return [p.read_bytes() for p in srv.message_files(address)]


def find(srv, address, *needles):
    """The messages in address's Maildir that contain every needle."""
    needles = [n.encode() if isinstance(n, str) else n for n in needles]
    return [m for m in mailbox(srv, address) if all(n in m for n in needles)]


def wait_mail(srv, address, *needles, timeout=20.0, count=1, extra=""):
    """Waits until address's Maildir on srv holds `count` messages with all
    the needles; returns them."""
    return wait_until(
        lambda: (lambda f: f if len(f) >= count else None)(find(srv, address, *needles)),
        timeout, 0.25,
        lambda: "%d message(s) with %r in %s's mailbox on %s; queue now: %s%s\n--- log tail:\n%s" % (
            count, needles, address, srv.name, queue_state(srv), extra,
            srv.log_text()[-2500:]))


def pop3_fetch(srv, user, password):
    """Every message of user's maildrop via POP3 (RETR, no DELE)."""
    c = srv.session(user, password)
    try:
        out = [c.retr(n) for n in sorted(c.list())]
        c.quit()
    finally:
        c.close()
    return out


def pop3_find(srv, user, password, *needles):
    needles = [n.encode() if isinstance(n, str) else n for n in needles]
    return [m for m in pop3_fetch(srv, user, password) if all(n in m for n in needles)]


def queue_state(srv):
    """A short text of what srv's queue holds (for assertion messages)."""
    try:
        envs = srv.queue_files("env")
    except OSError:
        return "?"
    out = []
    for p in envs[:5]:
        try:
            out.append("%s: %r" % (p.name, p.read_text(errors="replace")[-600:]))
        except OSError:
            pass
    return "%d entries %s" % (len(envs), "; ".join(out))


def queue_empty(srv):
    return srv.queue_count() == (0, 0)


def envelope(srv, qid):
    """Parsed queue/env/ID (docs/storage.md): ({key: value}, [rcpt dicts
    with 'address' and the name=value fields]) or None when absent."""
    try:
        text = (srv.queue_dir / "env" / qid).read_text(errors="replace")
    except FileNotFoundError:
        return None
    head, rcpts = {}, []
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "rcpt":
            parts = value.split(" ")
            r = {"address": xtext_decode(parts[0])}
            for f in parts[1:]:
                n, _, v = f.partition("=")
                r[n] = xtext_decode(v)
            rcpts.append(r)
        else:
            head[key] = value
    return head, rcpts


def xtext_decode(s):
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


# ---------------------------------------------------------------------------
# RFC 3464 reports

class Report:
    """A delivery status notification parsed: .msg (email.message),
    .per_message ({lower-case field: value}), .rcpts ([{field: value}]),
    .human (the first part's text), .returned (the third part's bytes:
    headers or the whole message), .raw."""

    def __init__(self, raw):
        self.raw = raw
        self.msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        ct = self.msg.get_content_type()
        assert ct == "multipart/report", "not multipart/report but %s:\n%r" % (ct, raw[:2000])
        rt = (self.msg.get_param("report-type") or "").lower()
        # global-delivery-status: RFC 6533, for SMTPUTF8 messages
        assert rt in ("delivery-status", "global-delivery-status"), \
            "report-type=%r:\n%r" % (rt, raw[:2000])
        self.report_type = rt
        parts = self.msg.get_payload()
        assert isinstance(parts, list) and len(parts) >= 2, "report parts: %r" % raw[:3000]
        self.human = parts[0].get_payload(decode=True) or b""
        ds = [p for p in parts if p.get_content_type() in
              ("message/delivery-status", "message/global-delivery-status")]
        assert len(ds) == 1, "no single delivery-status part:\n%r" % raw[:3000]
        # the groups, from the part's text (the same way for
        # message/delivery-status and message/global-delivery-status)
        body = re.split(r"\r?\n\r?\n", ds[0].as_string(), 1)[1]
        blocks = [email.message_from_string(b.strip("\r\n") + "\n")
                  for b in re.split(r"\r?\n[ \t]*\r?\n", body) if b.strip()]
        assert len(blocks) >= 2, "delivery-status has %d groups:\n%r" % (len(blocks), raw[:3000])

        def fields(m):
            return {k.lower(): re.sub(r"\s+", " ", v).strip() for k, v in m.items()}
        self.per_message = fields(blocks[0])
        self.rcpts = [fields(b) for b in blocks[1:]]
        self.returned = b""
        rest = [p for p in parts[2:]] if len(parts) > 2 else []
        if rest:
            p = rest[0]
            if p.get_content_type() in ("message/rfc822", "message/global"):
                inner = p.get_payload()
                inner = inner[0] if isinstance(inner, list) else inner
                self.returned = inner.as_bytes() if hasattr(inner, "as_bytes") else str(inner).encode()
            else:
                self.returned = p.get_payload(decode=True) or p.as_bytes()

    def rcpt(self, address):
        """The per-recipient group whose Final-Recipient is address."""
        for r in self.rcpts:
            fr = r.get("final-recipient", "")
            if fr.split(";", 1)[-1].strip().lower() == address.lower():
                return r
        raise AssertionError("no group for %s in %r" % (address, self.rcpts))

    def __repr__(self):
        return "Report(per_message=%r, rcpts=%r)" % (self.per_message, self.rcpts)


STATUS_RE = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")


def check_group(group, action, status_class, diagnostic=None):
    """One per-recipient group: Action, a Status of that class (2, 4 or
    5), and when given a Diagnostic-Code containing diagnostic."""
    assert group.get("action", "").lower() == action, "Action %r, expected %s: %r" % (
        group.get("action"), action, group)
    st = group.get("status", "")
    m = STATUS_RE.match(st)
    assert m and m.group(1) in str(status_class), "Status %r, expected %s.x.x: %r" % (
        st, status_class, group)
    if diagnostic is not None:
        diag = group.get("diagnostic-code", "")
        assert diagnostic.lower() in diag.lower(), \
            "Diagnostic-Code %r lacks %r: %r" % (diag, diagnostic, group)


def return_path(stored):
    m = re.search(rb"(?im)^Return-Path:[ \t]*(<[^>\r\n]*>)", stored)
    return m.group(1).decode() if m else None


def received_lines(msg):
    """The unfolded Received: fields of msg's header, top first."""
    head = re.split(rb"\r?\n\r?\n", msg, 1)[0]
    head = re.sub(rb"\r?\n(?=[ \t])", b" ", head)
    return [l for l in re.split(rb"\r?\n", head) if l.lower().startswith(b"received:")]
