#!/usr/bin/python3
"""smtp_peer.py — a scriptable, misbehaving SMTP server for testing the
relay's client (src/relay/client.c), on the Python standard library.

    python3 tests/smtp_peer.py PORTFILE OPTION...

It listens on 127.0.0.1 (a free port), writes the port into PORTFILE (via a
rename, so a reader never sees half of it) and serves connections, each in
a thread, until killed. TLS uses DIR/cert.pem and DIR/key.pem (DIR is
PORTFILE's folder), made with the openssl CLI when missing (CN and
subjectAltName "localhost" and 127.0.0.1).

What it hears goes to the record files (options record=PATH):
  PATH        one line per event: "C: <command line>" as received (a line
              ending in a bare LF is "C!: ..."), "# tls" when TLS is up,
              "# auth USER PASS" (decoded), "# batch CMD,CMD,..." (the
              commands that had arrived together with MAIL when PIPELINING
              is offered), "# early CMD" (a command that arrived before the
              reply to the one before when PIPELINING is not offered),
              "# bare" (a bare CR or LF in the data), "# data N" (octets
              of data), "# pre-tls data" (bytes before the TLS handshake)
  PATH.raw    the DATA octets exactly as received (dot-stuffed, CRLF),
              without the final "." line
  PATH.data   the same with the dot-stuffing undone

Options:
  record=PATH
  ext=LIST        comma-separated EHLO keywords: pipelining, 8bitmime,
                  smtputf8, dsn, starttls, chunking, size (or size=N),
                  auth (AUTH PLAIN LOGIN), auth=MECH+MECH
  implicit        TLS from the first octet (port 465 style)
  user=U pass=P   credentials AUTH accepts (default: any)
  rcvbuf=N        SO_RCVBUF of accepted sockets (to make the sender block)
  WHEN=SPEC       how to answer: WHEN is greeting, ehlo, helo, starttls,
                  auth, mail, rcpt, data, dataend, quit or rcpt:ADDRESS;
                  SPEC is one of
                    NNN          a reply with that code ("NNN X.0.0 says the test")
                    garbage      "hello there" (not a reply)
                    long         a reply line of 1 MB
                    many         a reply of 10,000 continuation lines
                    stall        never answer (keep reading)
                    close        close the connection instead
                    extra        the normal reply plus an unrequested "250 extra"
                    inject       (starttls) "220" and "250 injected" in one write
                    badtls       (starttls) "220", then garbage instead of TLS
  body=stall      stop reading in the middle of DATA (after 64 KB)
  body=close      close the connection in the middle of DATA (after 1000 octets)
"""
import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

LOCK = threading.Lock()


def parse_args(argv):
    opts = {"ext": [], "replies": {}, "flags": set()}
    for a in argv:
        if "=" in a:
            k, v = a.split("=", 1)
        else:
            k, v = a, ""
        if k == "ext":
            opts["ext"] = [x for x in v.split(",") if x]
        elif k in ("record", "user", "pass", "rcvbuf", "body"):
            opts[k] = v
        elif k == "implicit":
            opts["flags"].add("implicit")
        elif k in ("greeting", "ehlo", "helo", "starttls", "auth", "mail", "rcpt",
                   "data", "dataend", "quit") or k.startswith("rcpt:"):
            opts["replies"][k.lower()] = v
        else:
            raise SystemExit("smtp_peer.py: unknown option " + a)
    return opts


def ensure_cert(folder):
    cert = os.path.join(folder, "cert.pem")
    key = os.path.join(folder, "key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class Closed(Exception):
    pass


class Session:
    def __init__(self, sock, opts, tls_ctx):
        self.sock = sock
        self.opts = opts
        self.tls_ctx = tls_ctx
        self.inbuf = b""
        self.out = b""
        self.record = opts.get("record")
        self.ext = opts["ext"]
        self.mail_ok = False
        self.good_rcpts = 0

    # ---- recording ----
    def note(self, text):
        if self.record:
            with LOCK, open(self.record, "a", encoding="utf-8", errors="replace") as f:
                f.write(text + "\n")

    def save_data(self, raw):
        if not self.record:
            return
        lines = raw.split(b"\r\n")
        unstuffed = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
        with LOCK:
            with open(self.record + ".raw", "wb") as f:
                f.write(raw)
            with open(self.record + ".data", "wb") as f:
                f.write(unstuffed)

    # ---- I/O ----
    def recv_more(self):
        try:
            d = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            d = b""
        if not d:
            raise Closed()
        self.inbuf += d

    def has_line(self):
        return b"\n" in self.inbuf

    def read_line(self):
        while b"\n" not in self.inbuf:
            self.recv_more()
        i = self.inbuf.index(b"\n")
        line, self.inbuf = self.inbuf[:i + 1], self.inbuf[i + 1:]
        return line

    def flush(self):
        if self.out:
            data, self.out = self.out, b""
            try:
                self.sock.sendall(data)
            except (ConnectionError, ssl.SSLError, OSError):
                raise Closed()

    def send(self, text, now=False):
        self.out += text if isinstance(text, bytes) else text.encode()
        if now or not self.has_line():
            self.flush()

    def stall(self):
        # keep reading (so the client's writes go through) but never answer
        try:
            while True:
                self.recv_more()
                self.inbuf = b""
        except Closed:
            pass
        raise Closed()

    def reply(self, when, default, key=None):
        """Answers as the options say; True when the answer was 2xx/3xx."""
        spec = self.opts["replies"].get(key or when)
        if spec is None and key:
            spec = self.opts["replies"].get(when)
        if spec is None or spec == "":
            self.send(default)
            return default[0] in "23"
        if spec.isdigit():
            code = spec
            cls = code[0]
            self.send("%s %s.0.0 %s says the test\r\n" % (code, cls, when))
            return cls in "23"
        elif spec == "garbage":
            self.send("hello there\r\n", now=True)
        elif spec == "long":
            self.send(b"250 " + b"x" * (1024 * 1024) + b"\r\n", now=True)
        elif spec == "many":
            code = default[:3]
            self.send(("%s-line\r\n" % code) * 10000 + "%s end\r\n" % code, now=True)
        elif spec == "stall":
            self.flush()
            self.stall()
        elif spec == "close":
            self.flush()
            raise Closed()
        elif spec == "extra":
            self.send(default + "250 extra\r\n", now=True)
        else:
            self.send(default)
        return spec in ("extra", "many")

    # ---- the conversation ----
    def ehlo_lines(self, name):
        kws = []
        for e in self.ext:
            if e == "auth":
                kws.append("AUTH PLAIN LOGIN")
            elif e.startswith("auth="):
                kws.append("AUTH " + e[5:].replace("+", " "))
            elif e.startswith("size="):
                kws.append("SIZE " + e[5:])
            elif e == "starttls" and self.tls_active:
                continue
            else:
                kws.append(e.upper())
        lines = ["peer.test greets %s" % name] + kws
        return "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                       for i, l in enumerate(lines))

    def start_tls(self):
        if self.inbuf:
            self.note("# pre-tls data")
            self.inbuf = b""
        self.sock = self.tls_ctx.wrap_socket(self.sock, server_side=True)
        self.tls_active = True
        self.note("# tls")

    def run(self):
        self.tls_active = False
        try:
            if "implicit" in self.opts["flags"]:
                self.start_tls()
            self.reply("greeting", "220 peer.test ESMTP test peer\r\n")
            self.loop()
        except (Closed, ssl.SSLError, ConnectionError, OSError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def loop(self):
        pipelining = "pipelining" in self.ext
        while True:
            raw = self.read_line()
            bare = not raw.endswith(b"\r\n")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            self.note(("C!: " if bare else "C: ") + line)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if not pipelining and self.inbuf and verb not in ("QUIT",):
                self.note("# early " + self.inbuf.split(b" ", 1)[0].split(b"\r")[0]
                          .decode("utf-8", "replace"))
            if verb == "EHLO":
                self.reply("ehlo", self.ehlo_lines(arg))
            elif verb == "HELO":
                self.reply("helo", "250 peer.test\r\n")
            elif verb == "STARTTLS":
                self.do_starttls()
            elif verb == "AUTH":
                self.do_auth(arg)
            elif verb == "MAIL":
                if pipelining:
                    self.note_batch()
                self.good_rcpts = 0
                self.mail_ok = self.reply("mail", "250 2.1.0 sender ok\r\n")
            elif verb == "RCPT":
                addr = arg.split("<", 1)[-1].split(">", 1)[0]
                if not self.mail_ok:
                    self.send("503 5.5.1 MAIL first\r\n")
                elif self.reply("rcpt", "250 2.1.5 recipient ok\r\n",
                                key="rcpt:" + addr.lower()):
                    self.good_rcpts += 1
            elif verb == "DATA":
                self.do_data()
            elif verb == "RSET":
                self.send("250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                self.reply("quit", "221 2.0.0 bye\r\n")
                self.flush()
                raise Closed()
            else:
                self.send("502 5.5.2 what?\r\n")

    def note_batch(self):
        deadline = time.time() + 0.5
        self.sock.settimeout(0.05)
        try:
            while b"DATA\r\n" not in self.inbuf and time.time() < deadline:
                try:
                    self.recv_more()
                except socket.timeout:
                    pass
        finally:
            self.sock.settimeout(None)
        cmds = ["MAIL"] + [l.split(b" ", 1)[0].split(b"\r")[0].decode("utf-8", "replace").upper()
                           for l in self.inbuf.split(b"\n") if l]
        self.note("# batch " + ",".join(cmds))

    def do_starttls(self):
        spec = self.opts["replies"].get("starttls")
        if spec == "inject":
            self.send("220 2.0.0 go ahead\r\n250 injected\r\n", now=True)
        elif spec == "badtls":
            self.send("220 2.0.0 go ahead\r\n", now=True)
            time.sleep(0.2)
            self.send("this is not TLS at all\r\n" * 20, now=True)
            time.sleep(0.2)
            raise Closed()
        elif spec and spec != "":
            self.reply("starttls", "220 2.0.0 go ahead\r\n")
            if not spec.startswith("2"):
                return
        else:
            self.send("220 2.0.0 go ahead\r\n", now=True)
        self.start_tls()

    def do_auth(self, arg):
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if mech == "PLAIN":
            if len(parts) > 1:
                resp = parts[1]
            else:
                self.send("334 \r\n", now=True)
                resp = self.read_line().strip().decode()
            try:
                _, user, pw = base64.b64decode(resp).split(b"\0")
            except ValueError:
                self.send("501 5.5.2 bad\r\n")
                return
        elif mech == "LOGIN":
            self.send("334 VXNlcm5hbWU6\r\n", now=True)
            user = base64.b64decode(self.read_line().strip())
            self.send("334 UGFzc3dvcmQ6\r\n", now=True)
            pw = base64.b64decode(self.read_line().strip())
        else:
            self.send("504 5.5.4 unknown mechanism\r\n")
            return
        user, pw = user.decode(), pw.decode()
        self.note("# auth %s %s %s" % (mech, user, pw))
        want_u, want_p = self.opts.get("user"), self.opts.get("pass")
        if (want_u is not None and user != want_u) or (want_p is not None and pw != want_p):
            self.send("535 5.7.8 authentication failed\r\n")
            return
        self.reply("auth", "235 2.7.0 ok\r\n")

    def do_data(self):
        spec = self.opts["replies"].get("data")
        if not spec and not (self.mail_ok and self.good_rcpts):
            self.send("554 5.5.1 no valid recipients\r\n")
            return
        self.reply("data", "354 go ahead\r\n")
        if spec and not spec.startswith("3"):
            return
        self.flush()
        buf = b"\r\n" + self.inbuf
        self.inbuf = b""
        mode = self.opts.get("body")
        while b"\r\n.\r\n" not in buf:
            if mode == "close" and len(buf) > 1000:
                self.note("# closing mid-data")
                raise Closed()
            if mode == "stall" and len(buf) > 65536:
                self.note("# stalling mid-data")
                time.sleep(3600)
            try:
                d = self.sock.recv(65536)
            except (ConnectionError, ssl.SSLError, OSError):
                d = b""
            if not d:
                raise Closed()
            buf += d
        i = buf.index(b"\r\n.\r\n")
        raw = buf[2:i + 2]
        self.inbuf = buf[i + 5:]
        self.note("# data %d" % len(raw))
        text = raw.replace(b"\r\n", b"")
        if b"\r" in text or b"\n" in text:
            self.note("# bare")
        self.save_data(raw)
        self.reply("dataend", "250 2.0.0 queued as TEST\r\n")


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    portfile = sys.argv[1]
    opts = parse_args(sys.argv[2:])
    folder = os.path.dirname(os.path.abspath(portfile))
    cert, key = ensure_cert(folder)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if opts.get("rcvbuf"):
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(opts["rcvbuf"]))
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(tmp, portfile)
    parent = os.getppid()
    ls.settimeout(1.0)
    while True:
        try:
            s, _ = ls.accept()
        except socket.timeout:
            if os.getppid() != parent:
                return      # the test that started us is gone
            continue
        s.settimeout(None)
        threading.Thread(target=Session(s, opts, ctx).run, daemon=True).start()


if __name__ == "__main__":
    main()
