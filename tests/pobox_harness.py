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
    # listen.smtp, listen.submission and listen.submissions get free
    # loopback ports (write_config); a test disables one by setting it to ""
    "listen": {},
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
        self.smtp_port = None           # listen.smtp (25)
        self.submission_port = None     # listen.submission (587, STARTTLS)
        self.submissions_port = None    # listen.submissions (465, implicit TLS)
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
        for key in SMTP_LISTENERS:
            if cfg["listen"].get(key) is None:
                port = getattr(self, key + "_port")     # None: not started yet
                cfg["listen"][key] = "127.0.0.1:%d" % port if port else ""
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
                        return self._smtp_ready(deadline)
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def smtp_listeners(self):
        """{listen key: port} of the SMTP listeners this server has."""
        return {k: getattr(self, k + "_port") for k in SMTP_LISTENERS
                if self.config.get("listen", {}).get(k) is None}

    def _smtp_ready(self, deadline):
        """Called once POP3 answers: the SMTP listeners accept connections
        and port 25 greets with 220. A binary that does not serve SMTP yet
        (listen.smtp validated but not bound) is detected once and then not
        waited for, so that the POP3 modules keep working with it."""
        key = _binary_key()
        served = _SMTP_SERVED.get(key)
        if served is False:
            return True
        if served is None:
            deadline = min(deadline, time.monotonic() + 1.5)
        ports = self.smtp_listeners()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                for k, port in ports.items():
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                        if k != "submissions":
                            s.settimeout(5)
                            data = b""
                            while b"\r\n" not in data:
                                d = s.recv(4096)
                                if not d:
                                    break
                                data += d
                            if not data.startswith(b"220"):
                                raise OSError("SMTP greeting %r" % data)
                            s.sendall(b"QUIT\r\n")
                _SMTP_SERVED[key] = True
                return True
            except OSError:
                pass
            time.sleep(0.05)
        if served is None:
            _SMTP_SERVED[key] = False
            return True
        return False

    def start(self, new_ports=True):
        assert POBOX.exists(), "%s not built (run make)" % POBOX
        last = ""
        for attempt in range(4):
            if new_ports or self.pop3_port is None or attempt > 0:
                self.pop3_port = free_port()
                self.pop3s_port = free_port()
                for key in SMTP_LISTENERS:
                    setattr(self, key + "_port", free_port())
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

    def assert_smtp_alive(self):
        """The process runs and a new SMTP client gets a 220 greeting."""
        assert self.alive(), "pobox serve died (rc %r); log tail:\n%s" % (
            self.proc and self.proc.returncode, self.log_text()[-2000:])
        with self.smtp_connect() as c:
            assert c.greeting.code == 220, c.greeting
            assert c.cmd("QUIT").code == 221

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

    def smtp_connect(self, listener="smtp", tls=None, **kw) -> "Smtp":
        """A raw SMTP client on listener 'smtp' (25), 'submission' (587)
        or 'submissions' (465, implicit TLS unless tls=False)."""
        if tls is None:
            tls = listener == "submissions"
        return Smtp(getattr(self, listener + "_port"), tls=tls, **kw)

    def smtp_session(self, listener="submission", user=None, password=None,
                     starttls=None, ehlo="client.example.net", **kw) -> "Smtp":
        """A connection after EHLO, STARTTLS and EHLO again (by default on
        587 and on 25; never on 465) and, when user is given, AUTH PLAIN."""
        c = self.smtp_connect(listener, **kw)
        try:
            assert c.greeting.code == 220, c.greeting
            r = c.ehlo(ehlo)
            assert r.code == 250, r
            if starttls is None:
                starttls = not c.tls
            if starttls:
                r = c.starttls()
                assert r.code == 220, r
                r = c.ehlo(ehlo)
                assert r.code == 250, r
            if user is not None:
                r = c.auth_plain(user, password)
                assert r == (235, [b"2.7.0 Authentication successful"]), c.transcript()
        except BaseException:
            c.close()
            raise
        return c

    def smtplib(self, listener="submission", starttls=None, login=None):
        """A smtplib client (10 s timeout, certificate not checked) after
        EHLO, STARTTLS (587 and 25 by default) and, with login=(user, pw),
        AUTH PLAIN."""
        implicit = listener == "submissions"
        s = smtp(getattr(self, listener + "_port"), tls=implicit)
        try:
            s.ehlo("client.example.net")
            if starttls if starttls is not None else not implicit:
                s.starttls(context=tls_client_context())
                s.ehlo("client.example.net")
            if login:
                s.auth("PLAIN", lambda challenge=None: "\0%s\0%s" % login,
                       initial_response_ok=True)
        except BaseException:
            s.close()
            raise
        return s

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

    def alias_add(self, alias, *targets):
        """`pobox alias add ALIAS TARGET...` (ALIAS may be '@domain')."""
        r = self.cli("alias", "add", alias, *targets)
        assert r.returncode == 0, "alias add %s %s: rc=%d stderr=%r" % (
            alias, " ".join(targets), r.returncode, r.stderr)

    def new_files(self, address):
        """The message files in the Maildir's new/, oldest first."""
        d = self.maildir(address) / "new"
        if not d.is_dir():
            return []
        files = [p for p in d.iterdir() if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def delivered(self, address):
        """The contents of the files in new/, oldest first."""
        return [p.read_bytes() for p in self.new_files(address)]

    def tmp_files(self, address):
        d = self.maildir(address) / "tmp"
        return sorted(p for p in d.iterdir()) if d.is_dir() else []

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    def queue_files(self, kind="msg"):
        """The files in data_dir/queue/msg (the messages) or queue/env (the
        envelopes), sorted by name; hidden and temporary names skipped."""
        d = self.queue_dir / kind
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir()
                      if p.is_file() and not p.name.startswith(".")
                      and not p.name.endswith(".tmp"))

    def queue_count(self):
        """(files in queue/msg, files in queue/env)."""
        return len(self.queue_files("msg")), len(self.queue_files("env"))

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


# ---------------------------------------------------------------------------
# SMTP

SMTP_LISTENERS = ("smtp", "submission", "submissions")
_SMTP_SERVED = {}       # binary -> whether it serves SMTP (see _smtp_ready)

# a relay.smarthost where nothing listens: queued mail stays in the queue
# (connection refused is a temporary failure) instead of leaving the machine
DEAD_SMARTHOST = "127.0.0.1:9"


def _binary_key():
    try:
        st = POBOX.stat()
        return (str(POBOX), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(POBOX), 0, 0)


def smtp(port, tls=False, host="127.0.0.1", timeout=TIMEOUT, context=None):
    """smtplib.SMTP (or SMTP_SSL for implicit TLS) connected to the port,
    with a 10 s timeout and no certificate check."""
    import smtplib
    if tls:
        return smtplib.SMTP_SSL(host, port, timeout=timeout,
                                context=context or tls_client_context())
    return smtplib.SMTP(host, port, timeout=timeout)


ENHANCED_RE = re.compile(rb"^([245]\.\d{1,3}\.\d{1,3})(?: |$)")


class Reply(tuple):
    """An SMTP reply: (code, lines), lines being the text after "NNN-" or
    "NNN " of each line. Compares equal to a plain (code, lines) tuple."""

    def __new__(cls, code, lines):
        return tuple.__new__(cls, (code, lines))

    code = property(lambda self: self[0])
    lines = property(lambda self: self[1])

    @property
    def line(self) -> bytes:
        """The last line as sent, e.g. b'250 2.1.0 Ok'."""
        return b"%d %s" % (self.code, self.lines[-1] if self.lines else b"")

    @property
    def enhanced(self):
        """The RFC 3463 enhanced status code of the last line, or None."""
        m = ENHANCED_RE.match(self.lines[-1] if self.lines else b"")
        return m.group(1).decode() if m else None

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.lines)


def dot_stuff(message: bytes) -> bytes:
    """A CRLF message as DATA sends it: leading dots doubled, a final CRLF
    ensured, then '.' CRLF."""
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = re.sub(rb"(?m)^\.", b"..", message)
    return stuffed + b".\r\n"


def crlf(data: bytes) -> bytes:
    """LF line ends turned into CRLF (CRLF kept)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def lf(data: bytes) -> bytes:
    """CRLF turned into LF, as a Maildir file stores a message."""
    return data.replace(b"\r\n", b"\n")


class Smtp(Pop3):
    """A minimal SMTP client on a raw socket (the socket and buffer code of
    Pop3). Every line sent and received is kept in a transcript for
    assertion messages."""

    def __init__(self, port, host="127.0.0.1", tls=False, context=None,
                 timeout=TIMEOUT, source=None, read_greeting=True, rcvbuf=None):
        self.log = []
        super().__init__(port, host=host, tls=tls, context=context, timeout=timeout,
                         source=source, read_greeting=False, rcvbuf=rcvbuf)
        self.ehlo_reply = None
        self.greeting = self.reply() if read_greeting else None

    # -- transcript
    def _note(self, who, data: bytes):
        if len(data) > 300:
            data = data[:200] + b"...(%d octets)" % len(data)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        self.log.append(who + data.replace(b"\r\n", b"\r\n" + b" " * len(who)))
        del self.log[:-200]

    def transcript(self) -> str:
        return "\n".join(l.decode("utf-8", "replace") for l in self.log)

    def send(self, data: bytes):
        self._note(b"C: ", data)
        self.sock.sendall(data)

    def readline(self) -> bytes:
        line = super().readline()
        self._note(b"S: ", line)
        return line

    # -- replies
    def reply(self) -> Reply:
        """One (possibly multi-line) reply."""
        code, lines = None, []
        while True:
            line = self.readline()
            m = re.match(rb"^([2-5]\d\d)([ -])(.*)$", line, re.S)
            if not m and re.match(rb"^[2-5]\d\d$", line):    # "250" alone
                m = re.match(rb"^(\d\d\d)()()$", line)
            assert m, "malformed SMTP reply line %r\n%s" % (line, self.transcript())
            c = int(m.group(1))
            assert code is None or c == code, \
                "reply code changes inside a multi-line reply\n%s" % self.transcript()
            code = c
            lines.append(m.group(3))
            if m.group(2) != b"-":
                return Reply(code, lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line) -> Reply:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply()

    # -- commands
    def ehlo(self, name="client.example.net") -> Reply:
        r = self.cmd("EHLO " + name)
        if r.code == 250:
            self.ehlo_reply = r
        return r

    def extensions(self):
        """{KEYWORD: [params]} of the last successful EHLO."""
        assert self.ehlo_reply is not None, "no EHLO yet"
        out = {}
        for l in self.ehlo_reply.lines[1:]:
            parts = l.decode("utf-8", "replace").split()
            if parts:
                out[parts[0].upper()] = parts[1:]
        return out

    def starttls(self, context=None) -> Reply:
        r = self.cmd("STARTTLS")
        if r.code == 220:
            assert self.unread == b"", "bytes after the STARTTLS reply: %r" % self.unread
            self.sock = (context or tls_client_context()).wrap_socket(self.sock)
            self.tls = True
            self.ehlo_reply = None
            self._note(b"-- ", b"TLS " + self.sock.version().encode())
        return r

    def auth_plain(self, user, password, authzid="") -> Reply:
        import base64
        msg = ("%s\0%s\0%s" % (authzid, user, password)).encode("utf-8")
        return self.cmd("AUTH PLAIN " + base64.b64encode(msg).decode())

    def mail(self, sender, params="") -> Reply:
        return self.cmd("MAIL FROM:<%s>%s" % (sender, " " + params if params else ""))

    def rcpt(self, recipient, params="") -> Reply:
        return self.cmd("RCPT TO:<%s>%s" % (recipient, " " + params if params else ""))

    def data(self, message: bytes):
        """DATA, then the CRLF message dot-stuffed: (354 reply, final reply),
        the final one None when DATA was refused."""
        r = self.cmd("DATA")
        if r.code != 354:
            return r, None
        self.send(dot_stuff(message))
        return r, self.reply()

    def bdat(self, chunk: bytes, last=False) -> Reply:
        self.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
        return self.reply()

    def send_mail(self, sender, recipients, message: bytes, mail_params="") -> Reply:
        """A whole transaction that must succeed up to DATA's 354; returns
        the reply after the data."""
        r = self.mail(sender, mail_params)
        assert r.code == 250, "MAIL: %r\n%s" % (r, self.transcript())
        for rcpt in recipients:
            r = self.rcpt(rcpt)
            assert r.code == 250, "RCPT %s: %r\n%s" % (rcpt, r, self.transcript())
        r354, final = self.data(message)
        assert r354.code == 354, "DATA: %r\n%s" % (r354, self.transcript())
        return final

    def quit(self) -> Reply:
        try:
            return self.cmd("QUIT")
        finally:
            self.close()


QUEUED_RE = re.compile(rb"^2\.0\.0 Ok: queued as \S+$")


def assert_queued(r: Reply, c: "Smtp" = None):
    """The reply to the end of the data says the message was accepted."""
    assert r is not None and r.code == 250 and len(r.lines) == 1 \
        and QUEUED_RE.match(r.lines[0]), "message not accepted: %r\n%s" % (
            r, c.transcript() if c else "")


def smtp_message(subject="test", body=b"Hello.\r\n", sender="sender@example.net",
                 to="someone@example.org", extra_headers=b"", message_id=True,
                 date=True) -> bytes:
    """A CRLF message for SMTP with From, To, Subject and (unless turned
    off) Message-ID and Date."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    head = b"From: " + sender.encode() + b"\r\nTo: " + to.encode() + b"\r\n"
    head += b"Subject: " + subject.encode("utf-8") + b"\r\n"
    if date:
        head += b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
    if message_id:
        head += b"Message-ID: <" + unique("m").encode() + b"@example.net>\r\n"
    return head + crlf(extra_headers) + b"\r\n" + body


def header_fields(msg: bytes):
    """([(lower-case name, raw field with its continuation lines and line
    ends)], rest from the empty line on) of a message with LF or CRLF
    line ends."""
    fields, pos = [], 0
    while pos < len(msg):
        end = msg.find(b"\n", pos)
        end = len(msg) if end < 0 else end + 1
        line = msg[pos:end]
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower().decode("latin-1"), line))
        pos = end
    return fields, msg[pos:]


TRACE_FIELDS = ("return-path", "delivered-to", "received")


def split_trace(stored: bytes, original: bytes):
    """A delivered file is the original message (LF line ends) with trace
    fields put on top. Returns {name: [raw fields]} of what was put on top;
    fails when the rest is not byte-identical to the original."""
    expected = lf(original)
    assert stored.endswith(expected), (
        "the stored message does not end with the original\n--- stored:\n%r\n"
        "--- original (LF):\n%r" % (stored[:3000], expected[:3000]))
    prefix = stored[:len(stored) - len(expected)]
    fields, rest = header_fields(prefix + b"\n")
    assert rest == b"\n", "the prefix is not header fields: %r" % prefix
    out = {}
    for name, raw in fields:
        out.setdefault(name, []).append(raw)
    return out


def unfold(field: bytes) -> bytes:
    """A header field on one line (RFC 5322 unfolding, line end removed)."""
    return re.sub(rb"\r?\n(?=[ \t])", b"", field).rstrip(b"\r\n")


def check_received(field: bytes, protocol, client_ip="127.0.0.1", helo=None,
                   max_age=600):
    """Checks the Received: field pobox wrote: 'from HELO ... by HOSTNAME
    ... with PROTOCOL ...; DATE' (RFC 5321 4.4, RFC 3848 protocol types;
    protocol may be a tuple of acceptable ones),
    the client address present (client_ip) or absent (client_ip=None), the
    date recent. Returns the unfolded field."""
    import email.utils
    line = unfold(field)
    assert line.startswith(b"Received: from "), "not a Received: field: %r" % line
    if helo:
        assert line.startswith(b"Received: from " + helo.encode()), \
            "Received: does not start with the EHLO name %s: %r" % (helo, line)
    assert re.search(rb"\bby " + re.escape(HOSTNAME.encode()) + rb"\b", line), \
        "Received: lacks 'by %s': %r" % (HOSTNAME, line)
    m = re.search(rb"\bwith ([A-Za-z0-9]+)\b", line)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    assert m and m.group(1).decode() in protocols, \
        "Received: 'with %s' expected: %r" % (" or ".join(protocols), line)
    if client_ip is None:
        assert b"127.0.0.1" not in line and b"::1" not in line, \
            "the client address is in Received: %r" % line
    else:
        assert client_ip.encode() in line, "Received: lacks %s: %r" % (client_ip, line)
    assert b";" in line, "Received: has no date: %r" % line
    date = line.rsplit(b";", 1)[1].strip().decode("latin-1")
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise AssertionError("Received: date %r does not parse: %r" % (date, line))
    assert when.tzinfo is not None, "Received: date without a zone: %r" % line
    age = time.time() - when.timestamp()
    assert -120 < age < max_age, "Received: date %r is %.0f s off" % (date, age)
    return line


def check_trace(stored: bytes, original: bytes, sender, recipients, protocol,
                client_ip="127.0.0.1", helo=None):
    """A delivered file is the original (LF line ends) under exactly one
    Return-Path: <sender>, one Delivered-To: naming one of recipients
    (with or without <>, the domain compared case-insensitively) and one
    Received: line. Returns the unfolded Received: line."""
    t = split_trace(stored, original)
    assert sorted(t) == sorted(TRACE_FIELDS), "trace fields on top: %r" % t
    assert t["return-path"] == [b"Return-Path: <" + sender.encode("utf-8") + b">\n"], t
    assert len(t["delivered-to"]) == 1, t
    m = re.match(rb"^Delivered-To: <?([^<>\s]+)>?\n$", t["delivered-to"][0])
    assert m, t["delivered-to"]
    got = m.group(1).decode("utf-8")

    def norm(a):
        local, _, domain = a.rpartition("@")
        return local + "@" + domain.lower()
    assert norm(got) in [norm(r) for r in recipients], \
        "Delivered-To: %s, expected one of %r" % (got, recipients)
    assert len(t["received"]) == 1, "pobox added %d Received: fields" % len(t["received"])
    return check_received(t["received"][0], protocol, client_ip=client_ip, helo=helo)


def remove_fields(msg: bytes, names):
    """Removes every header field called one of names from the header
    section: (removed {name: [raw]}, message without them)."""
    fields, rest = header_fields(msg)
    removed, kept = {}, []
    for name, raw in fields:
        if name in names:
            removed.setdefault(name, []).append(raw)
        else:
            kept.append(raw)
    return removed, b"".join(kept) + rest


class Msmtp:
    """msmtp (Debian package msmtp) with its own config file: 587 with
    STARTTLS (tls='starttls'), 465 (tls='implicit') or no TLS ('off');
    the password comes from passwordeval, never the command line. msmtp
    adds no From/Date/Message-ID of its own here (set_*_header off), so
    what reaches pobox is exactly the message given."""

    def __init__(self, home, port, user=None, password=None, tls="starttls",
                 auth="plain", sender=None, extra=""):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.rc = self.home / "msmtprc"
        self.log = self.home / "msmtp.log"
        lines = ["defaults",
                 {"starttls": "tls on\ntls_starttls on\ntls_certcheck off",
                  "implicit": "tls on\ntls_starttls off\ntls_certcheck off",
                  "off": "tls off"}[tls],
                 "timeout 20",
                 "logfile %s" % self.log,
                 "set_from_header off",
                 "set_date_header off",
                 "set_msgid_header off",
                 "account test",
                 "host 127.0.0.1",
                 "port %d" % port,
                 "domain client.example.net",
                 "from %s" % (sender or user or "sender@example.net")]
        if user is None:
            lines.append("auth off")
        else:
            pwfile = self.home / "password"
            pwfile.write_text(password + "\n")
            os.chmod(pwfile, 0o600)
            lines += ["auth %s" % auth, "user %s" % user,
                      'passwordeval "cat %s"' % pwfile]
        self.rc.write_text("\n".join(lines) + "\n" + extra)
        os.chmod(self.rc, 0o600)

    def send(self, recipients, message: bytes, *args, timeout=60):
        env = dict(os.environ, HOME=str(self.home))
        return subprocess.run(["msmtp", "-C", str(self.rc), "-a", "test"] + list(args) +
                              ["--"] + list(recipients), input=message,
                              capture_output=True, timeout=timeout, env=env)

    def output(self, r) -> str:
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        return ("rc %d\n%s%s\n%s" % (r.returncode, r.stdout.decode(errors="replace"),
                                     r.stderr.decode(errors="replace"), log))[-4000:]


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
