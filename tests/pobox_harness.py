"""pobox_harness.py — shared helpers for the protocol and interop tests.

Starts a real `build/pobox serve` on free loopback ports with a fresh data
directory, drives the `pobox user ...` commands, drops mail into Maildirs the
way another program would (tmp/ then rename into new/), and speaks POP3 on raw
sockets so that tests can assert the exact bytes on the wire.

Only the Python standard library is used. Every socket has a timeout and every
process started here is stopped by its owner (the fixtures in conftest.py).
"""

import hashlib
import itertools
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POBOX = Path(os.environ.get("POBOX_BIN", ROOT / "build" / "pobox"))
VERSION = (ROOT / "VERSION").read_text().strip()

HOSTNAME = "mail.example.org"
DOMAIN = "example.org"
TIMEOUT = 10.0          # default socket timeout, seconds
START_TIMEOUT = 10.0    # readiness poll, seconds
STOP_TIMEOUT = 20.0     # SIGTERM to exit, seconds (pobox allows sessions a
                        # 10 s grace to finish before it cuts them)

_counter = itertools.count(1)


# ---------------------------------------------------------------------------
# small utilities

def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def unique(prefix="u"):
    """A short name that is unique within this test run."""
    return "%s%d%d" % (prefix, os.getpid() % 10000, next(_counter))


def to_wire(content: bytes) -> bytes:
    """What RETR must deliver (after dot-unstuffing, without the final '.'):
    LF line ends turned into CRLF, CRLF kept, a CRLF added when the message
    does not end with a line end (SPEC section 4, core/mailstream.h)."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", content)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def unstuff(lines):
    """RFC 1939 byte-stuffing removal for a list of raw lines."""
    return [l[1:] if l.startswith(b".") else l for l in lines]


def join_lines(lines) -> bytes:
    return b"".join(l + b"\r\n" for l in lines)


def tls_client_context(minimum=None, maximum=None, seclevel0=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():          # TLSv1/TLSv1_1 are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


def apop_digest(greeting: bytes, password: str) -> str:
    m = re.search(rb"<[^<>]*>", greeting)
    assert m, "greeting has no APOP timestamp: %r" % greeting
    return hashlib.md5(m.group(0) + password.encode()).hexdigest()


def status(line: bytes) -> str:
    """'+OK' or '-ERR' (or the raw first token) of a reply line."""
    return line.split(b" ", 1)[0].decode("latin-1")


def resp_code(line: bytes):
    """The RFC 2449 response code of a reply ('AUTH', 'IN-USE', 'SYS/TEMP'...)
    or None."""
    m = re.match(rb"^[+-](?:OK|ERR) \[([^\]]+)\]", line)
    return m.group(1).decode("latin-1") if m else None


def raise_nofile(limit=20000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, limit)) if hard != resource.RLIM_INFINITY else max(soft, limit)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------
# a raw POP3 client

class Pop3:
    """A minimal POP3 client on a raw socket. Lines are split on CRLF only,
    so whatever the server sends is visible byte for byte."""

    def __init__(self, port, host="127.0.0.1", tls=False, context=None,
                 timeout=TIMEOUT, source=None, read_greeting=True, rcvbuf=None):
        self.host, self.port = host, port
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if rcvbuf:              # before connect, so that the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.sock.bind((source, 0))
        try:
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""
        self.pos = 0
        self.tls = False
        if tls:
            self.sock = (context or tls_client_context()).wrap_socket(self.sock)
            self.tls = True
        self.greeting = self.readline() if read_greeting else None

    # -- bytes
    # self.buf[self.pos:] is what was received and not read yet.
    @property
    def unread(self) -> bytes:
        return self.buf[self.pos:]

    def take_unread(self) -> bytes:
        data = self.buf[self.pos:]
        self.buf, self.pos = b"", 0
        return data

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        if self.pos:
            self.buf, self.pos = self.buf[self.pos:], 0
        data = self.sock.recv(262144)
        if not data:
            raise EOFError("connection closed by server; unread %r" % self.buf[:200])
        self.buf += data

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line, self.pos = self.buf[self.pos:i], i + 2
                return line
            self._fill()

    def read_multi(self):
        """Raw lines of a multi-line body up to (not including) the '.'."""
        lines = []
        while True:
            line = self.readline()
            if line == b".":
                return lines
            lines.append(line)

    def read_multi_raw(self, on_chunk=None) -> bytes:
        """The raw bytes of a multi-line body including the final
        '.\r\n', read in big chunks (for big messages); on_chunk(total)
        is called after every chunk. Bytes after the terminator (pipelined
        replies) stay buffered."""
        buf = bytearray(b"\r\n")          # the CRLF that ended the status line
        buf += self.take_unread()
        start = 0
        while True:
            i = buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                end = i + 5
                self.buf, self.pos = bytes(buf[end:]), 0
                return bytes(buf[2:end])
            start = max(0, len(buf) - 4)
            data = self.sock.recv(262144)
            if not data:
                raise EOFError("closed inside a multi-line reply after %d octets" % (len(buf) - 2))
            buf += data
            if on_chunk:
                on_chunk(len(buf) - 2)

    # -- commands
    def cmd(self, line) -> bytes:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.readline()

    def multi(self, line):
        """(status line, raw body lines) of a multi-line command; the body is
        read only after +OK."""
        st = self.cmd(line)
        if st.startswith(b"+OK"):
            return st, self.read_multi()
        return st, None

    def capa(self):
        st, lines = self.multi("CAPA")
        assert st.startswith(b"+OK"), st
        return [l.decode("latin-1") for l in lines]

    def login(self, user, password):
        r = self.cmd("USER " + user)
        assert r.startswith(b"+OK"), "USER %s: %r" % (user, r)
        r = self.cmd("PASS " + password)
        assert r.startswith(b"+OK"), "PASS for %s: %r" % (user, r)
        return r

    def apop(self, user, password):
        return self.cmd("APOP %s %s" % (user, apop_digest(self.greeting, password)))

    def stat(self):
        r = self.cmd("STAT")
        m = re.match(rb"^\+OK (\d+) (\d+)", r)
        assert m, "STAT: %r" % r
        return int(m.group(1)), int(m.group(2))

    def list(self):
        st, lines = self.multi("LIST")
        assert st.startswith(b"+OK"), st
        out = {}
        for l in lines:
            n, size = l.split()
            out[int(n)] = int(size)
        return out

    def uidl(self):
        st, lines = self.multi("UIDL")
        assert st.startswith(b"+OK"), st
        out = {}
        for l in lines:
            n, uid = l.split(b" ", 1)
            out[int(n)] = uid.decode("latin-1")
        return out

    def retr(self, n) -> bytes:
        """The message as delivered: unstuffed lines joined with CRLF."""
        st, lines = self.multi("RETR %d" % n)
        assert st.startswith(b"+OK"), "RETR %d: %r" % (n, st)
        return join_lines(unstuff(lines))

    def numbers(self):
        """{Message-ID header value: message number}, read with TOP n 0, so
        that tests do not depend on the order the server numbers messages."""
        out = {}
        for n in sorted(self.list()):
            st, lines = self.multi("TOP %d 0" % n)
            assert st.startswith(b"+OK"), "TOP %d 0: %r" % (n, st)
            for l in lines:
                if l.lower().startswith(b"message-id:"):
                    out[l.split(b":", 1)[1].strip()] = n
        return out

    def quit(self):
        r = self.cmd("QUIT")
        self.close()
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def starttls(self, context=None):
        r = self.cmd("STLS")
        if r.startswith(b"+OK"):
            assert self.unread == b"", "bytes after the STLS reply: %r" % self.unread
            self.sock = (context or tls_client_context()).wrap_socket(self.sock)
            self.tls = True
        return r

    def pending(self, wait=1.0) -> bytes:
        """Whatever the server sends within `wait` seconds (b'' if nothing,
        b'<EOF>' appended when it closed)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        got = self.take_unread()
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    got += b"<EOF>"
                    break
                got += d
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.settimeout(old)
        return got

    def wait_closed(self, timeout=TIMEOUT):
        """Reads until the server closes; returns all bytes read, or raises
        AssertionError if it is still open after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        got = self.take_unread()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close the connection within "
                                     "%.1fs; got %r" % (timeout, got[:300]))
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return got
            except ssl.SSLError:
                return got
            if not d:
                return got
            got += d

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# ---------------------------------------------------------------------------
# the server under test

DEFAULT_CONFIG = {
    "server": {"hostname": HOSTNAME, "domains": DOMAIN, "user": "",
               "io_threads": "2", "workers": "2"},
    "listen": {"submission": "", "submissions": "", "smtp": ""},
    "tls": {"cert": "", "key": ""},
    "auth": {"plaintext_without_tls": "yes", "failure_delay": "0"},
    "limits": {},
    "pop3": {},
}


class Server:
    """One `pobox serve` process with its own config and data directory."""

    def __init__(self, workdir, config=None, name="pobox"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.data_dir = self.dir / "data"
        self.conf = self.dir / (name + ".conf")
        self.logfile = self.dir / (name + ".log")
        self.config = {s: dict(v) for s, v in DEFAULT_CONFIG.items()}
        for section, keys in (config or {}).items():
            self.config.setdefault(section, {}).update(keys)
        self.proc = None
        self.pop3_port = None
        self.pop3s_port = None
        self.extra_listen = {}      # "pop3" -> extra addresses (e.g. [::1]:p)
        self.passwords = set()      # every password used, for the log check
        self.starts = 0

    # -- configuration
    def write_config(self):
        cfg = {s: dict(v) for s, v in self.config.items()}
        cfg["server"]["data_dir"] = str(self.data_dir)
        pop3 = ["127.0.0.1:%d" % self.pop3_port] + self.extra_listen.get("pop3", [])
        cfg["listen"]["pop3"] = ", ".join(pop3)
        cfg["listen"]["pop3s"] = "127.0.0.1:%d" % self.pop3s_port
        text = "# written by tests/pobox_harness.py\n"
        for section, keys in cfg.items():
            if not keys:
                continue
            text += "\n[%s]\n" % section
            for k, v in keys.items():
                text += "%s = %s\n" % (k, v)
        self.conf.write_text(text)

    def set(self, section, key, value):
        """Changes one key in the config file (takes effect at the next
        start or reload)."""
        if value is None:
            self.config.get(section, {}).pop(key, None)
        else:
            self.config.setdefault(section, {})[key] = value
        self.write_config()

    # -- process
    def _spawn(self):
        log = open(self.logfile, "ab")
        log.write(b"--- harness: start %d\n" % (self.starts + 1))
        log.flush()

        def child():
            os.setsid()
            try:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
            except (ValueError, OSError):
                pass

        self.proc = subprocess.Popen(
            [str(POBOX), "serve", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            preexec_fn=child, cwd=str(self.dir))
        log.close()
        self.starts += 1

    def _ready(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.pop3_port), timeout=2) as s:
                    s.settimeout(5)
                    data = b""
                    while b"\r\n" not in data:
                        d = s.recv(4096)
                        if not d:
                            break
                        data += d
                    if data.startswith(b"+OK"):
                        s.sendall(b"QUIT\r\n")
                        with socket.create_connection(("127.0.0.1", self.pop3s_port), timeout=2):
                            pass
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def start(self, new_ports=True):
        assert POBOX.exists(), "%s not built (run make)" % POBOX
        last = ""
        for attempt in range(4):
            if new_ports or self.pop3_port is None or attempt > 0:
                self.pop3_port = free_port()
                self.pop3s_port = free_port()
                for k, addrs in list(self.extra_listen.items()):
                    self.extra_listen[k] = [re.sub(r":\d+$", ":%d" % free_port("::1"), a)
                                            for a in addrs]
            self.write_config()
            self._spawn()
            if self._ready(time.monotonic() + START_TIMEOUT):
                return self
            self._kill()
            last = self.log_text()[-3000:]
            if "in use" not in last.lower() and "eaddrinuse" not in last.lower():
                break
        raise AssertionError("pobox serve did not become ready; log tail:\n" + last)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait(5)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stops the server; returns its exit code (None if it had to be
        killed with SIGKILL after `timeout` seconds)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self.proc = None
                return None
        rc = self.proc.returncode
        # reap anything left in the process group (there should be nothing)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc = None
        return rc

    def kill9(self):
        self._kill()
        self.proc = None

    def restart(self):
        """Stops (SIGTERM, expecting exit 0) and starts on the same data
        directory and, when possible, the same ports."""
        rc = self.stop()
        assert rc == 0, "pobox serve exited with %r on SIGTERM" % rc
        return self.start(new_ports=False)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        """The process runs and a new client gets a +OK greeting."""
        assert self.alive(), "pobox serve died (rc %r); log tail:\n%s" % (
            self.proc and self.proc.returncode, self.log_text()[-2000:])
        with self.connect() as c:
            assert c.greeting.startswith(b"+OK"), c.greeting
            c.cmd("QUIT")

    def log_text(self):
        try:
            return self.logfile.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- clients
    def connect(self, **kw) -> Pop3:
        return Pop3(self.pop3_port, **kw)

    def connect_tls(self, **kw) -> Pop3:
        return Pop3(self.pop3s_port, tls=True, **kw)

    def session(self, user, password, tls=False, **kw) -> Pop3:
        """A logged-in session (retrying for a few seconds while the
        maildrop is still locked by this user's session that just ended)."""
        return self.login_retry(user, password, tls=tls, **kw)

    def login_retry(self, user, password, seconds=5, tls=False, **kw) -> Pop3:
        """Logs in, retrying while the maildrop is still locked by a session
        of this user that has just ended (QUIT, drop, kill)."""
        deadline = time.monotonic() + seconds
        while True:
            c = self.connect_tls(**kw) if tls else self.connect(**kw)
            r = c.cmd("USER " + user)
            assert r.startswith(b"+OK"), "USER %s: %r" % (user, r)
            r = c.cmd("PASS " + password)
            if r.startswith(b"+OK"):
                return c
            c.close()
            assert resp_code(r) == "IN-USE" and time.monotonic() < deadline, \
                "PASS for %s: %r" % (user, r)
            time.sleep(0.2)

    # -- CLI
    def cli(self, *args, input=None, timeout=60, conf=True):
        argv = [str(POBOX)]
        if conf:
            argv += ["-c", str(self.conf)]
        argv += list(args)
        return subprocess.run(argv, input=input, capture_output=True,
                              timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)

    def add_user(self, address=None, password=None, apop=False):
        """Creates a user with `pobox user add`; returns (address, password)."""
        address = address or "%s@%s" % (unique("user"), DOMAIN)
        password = password or "Pw-%s-%s" % (unique("p"), os.urandom(4).hex())
        self.passwords.add(password)
        if not self.conf.exists():
            self.write_config()
        args = ["user", "add", address] + (["--apop"] if apop else [])
        r = self.cli(*args, input=(password + "\n").encode())
        assert r.returncode == 0, "user add %s: rc=%d stderr=%r" % (
            address, r.returncode, r.stderr)
        return address, password

    # -- storage
    def maildir(self, address) -> Path:
        local, domain = address.lower().split("@")
        return self.data_dir / "mail" / domain / local

    def deliver(self, address, content: bytes, name=None, where="new") -> Path:
        """Puts a message into the Maildir like an MDA: write into tmp/,
        then rename into new/ (or cur/)."""
        md = self.maildir(address)
        for d in ("tmp", "new", "cur"):
            (md / d).mkdir(parents=True, exist_ok=True)
        name = name or "%d.M%06dP%d.testhost" % (time.time(), next(_counter), os.getpid())
        tmp = md / "tmp" / name.split(":")[0]
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        dest = md / where / name
        os.rename(tmp, dest)
        return dest

    def message_files(self, address):
        """Every message file in new/ and cur/ (sorted by name)."""
        md = self.maildir(address)
        files = []
        for d in ("new", "cur"):
            if (md / d).is_dir():
                files += [p for p in (md / d).iterdir() if p.is_file()]
        return sorted(files, key=lambda p: p.name)

    def secret(self):
        """A fresh wrong password, remembered for the log check."""
        pw = "Wrong-%s-%s" % (unique("w"), os.urandom(4).hex())
        self.passwords.add(pw)
        return pw

    def fd_count(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.proc.pid))
        except OSError:
            return -1


def make_message(subject="test", body=b"Hello.\n", extra_headers=b""):
    if isinstance(body, str):
        body = body.encode()
    return (b"From: sender@example.net\n"
            b"To: someone@example.org\n"
            b"Subject: " + subject.encode() + b"\n"
            b"Message-ID: <" + unique("m").encode() + b"@example.net>\n"
            + extra_headers +
            b"\n" + body)


# ---------------------------------------------------------------------------
# pytest fixtures (imported by tests/protocol/conftest.py and
# tests/interop/conftest.py)

@pytest.fixture(scope="module")
def server_factory(request, tmp_path_factory):
    """make(config=None, start=True) -> Server. Every server made is stopped
    at the end of the module; each must exit 0 on SIGTERM and must never
    have logged a password."""
    servers = []
    base = re.sub(r"[^A-Za-z0-9_]", "_", request.module.__name__.split(".")[-1])

    def make(config=None, start=True):
        d = tmp_path_factory.mktemp("%s_%d" % (base, len(servers)))
        s = Server(d, config)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make
    problems = []
    for s in servers:
        was_running = s.alive()
        died = s.proc is not None and not was_running
        rc = s.stop()
        if died:
            problems.append("%s: server had died during the module (rc %r)" % (s.dir, rc))
        elif was_running and rc != 0:
            problems.append("%s: exit code %r after SIGTERM" % (s.dir, rc))
        log = s.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:"):
            if marker in log:
                i = log.index(marker)
                problems.append("%s: sanitizer report in the server log:\n%s" % (
                    s.dir, log[max(0, i - 200):i + 3000]))
        for pw in s.passwords:
            if pw in log:
                problems.append("%s: password %r appears in the server log" % (s.dir, pw))
    if problems:
        pytest.fail("server teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def server(request, server_factory):
    """The module's server, configured by the module-level SERVER_CONFIG
    ({section: {key: value}}) on top of DEFAULT_CONFIG."""
    return server_factory(getattr(request.module, "SERVER_CONFIG", None))


def message_id(msg: bytes) -> bytes:
    m = re.search(rb"(?im)^message-id:[ \t]*(\S+)", msg)
    assert m, "message has no Message-ID"
    return m.group(1)
