"""sasl_client.py — the client side of the SASL mechanisms pobox serves, for
the POP3 AUTH tests (RFC 4422 SASL, RFC 5034 POP3 AUTH).

Pure standard library (base64, hashlib, hmac, ctypes). Every function works on
bytes and is independent of POP3, except the small `Exchange` helper at the
end, which speaks RFC 5034 framing over a tests/pobox_harness.py Pop3 object
and keeps a transcript of every line for assertion messages.

  PLAIN        RFC 4616   plain_message()
  LOGIN        draft-murchison-sasl-login   LOGIN_USER_CHALLENGE, ...
  CRAM-MD5     RFC 2195   cram_md5_response()
  SCRAM-SHA-1, SCRAM-SHA-256 (-PLUS)   RFC 5802, RFC 7677   ScramClient
  OAUTHBEARER  RFC 7628   oauthbearer_message()
  XOAUTH2      Google/Microsoft   xoauth2_message()
  channel bindings: tls-unique (RFC 5929), tls-exporter (RFC 9266)
"""

import base64
import binascii
import ctypes
import ctypes.util
import hashlib
import hmac
import os
import re
import sys
import weakref

# ---------------------------------------------------------------------------
# base64 as SASL profiles use it (RFC 4648 alphabet, padded, no line breaks)


def b64(data) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def unb64(text) -> bytes:
    """Strict decoding: raises binascii.Error on anything that is not
    canonical padded base64."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return base64.b64decode(text, validate=True)


# ---------------------------------------------------------------------------
# PLAIN, LOGIN, CRAM-MD5


def plain_message(authcid, password, authzid="") -> bytes:
    """RFC 4616: [authzid] NUL authcid NUL passwd."""
    return b"\0".join(s.encode("utf-8") if isinstance(s, str) else s
                      for s in (authzid, authcid, password))


# The challenges of the LOGIN mechanism (draft-murchison-sasl-login-00 and
# every implementation since Outlook Express, GNU SASL included).
LOGIN_USER_CHALLENGE = b"User Name"
LOGIN_PASSWORD_CHALLENGE = b"Password"

# RFC 2195: the challenge has the syntax of an RFC 822 msg-id, <local@domain>
CRAM_CHALLENGE_RE = re.compile(rb"^<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>$")


def cram_md5_response(user, secret, challenge: bytes) -> bytes:
    """RFC 2195: "user SP lowercase-hex(HMAC-MD5(secret, challenge))"."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    digest = hmac.new(secret, challenge, hashlib.md5).hexdigest()
    return user.encode("utf-8") + b" " + digest.encode("ascii")


# ---------------------------------------------------------------------------
# SCRAM (RFC 5802, RFC 7677)

SCRAM_HASHES = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256}


def scram_hash_of(mech: str) -> str:
    """'SCRAM-SHA-256-PLUS' -> 'SHA-256'."""
    m = re.match(r"^SCRAM-(SHA-1|SHA-256)(-PLUS)?$", mech.upper())
    assert m, "not a SCRAM mechanism: %s" % mech
    return m.group(1)


def saslname(name: str) -> str:
    """RFC 5802 section 5.1: ',' -> '=2C' and '=' -> '=3D'."""
    return name.replace("=", "=3D").replace(",", "=2C")


def scram_nonce(length=24) -> str:
    """Printable ASCII except ',' (RFC 5802 'printable')."""
    return base64.b64encode(os.urandom(length * 3 // 4 + 3)).decode()[:length].replace(",", "x")


def parse_scram_attrs(msg: bytes) -> list:
    """[(name, value)] of a SCRAM message 'a=1,b=2'. Raises ValueError when
    a field is not 'letter=value'."""
    out = []
    for part in msg.decode("utf-8").split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise ValueError("malformed SCRAM attribute %r in %r" % (part, msg))
        out.append((part[0], part[2:]))
    return out


class ScramError(AssertionError):
    pass


class ScramClient:
    """One SCRAM exchange, client side.

    cbflag: 'n' (no channel binding support), 'y' (client supports it but
    thinks the server does not), 'p' (binding of type cb_type with cb_data).
    authzid: the a= attribute of the GS2 header (None = absent).
    The messages are available after each step for replay tests:
    client_first_bare, server_first, client_final, auth_message."""

    def __init__(self, hash_name, user, password, authzid=None, cbflag="n",
                 cb_type=None, cb_data=b"", nonce=None):
        assert hash_name in SCRAM_HASHES, hash_name
        assert cbflag in ("n", "y", "p")
        assert (cbflag == "p") == (cb_type is not None)
        self.hash_name = hash_name
        self.hf = SCRAM_HASHES[hash_name]
        self.user = user
        self.password = password.encode("utf-8") if isinstance(password, str) else password
        self.cnonce = nonce if nonce is not None else scram_nonce()
        self.cb_data = cb_data
        flag = "p=" + cb_type if cbflag == "p" else cbflag
        self.gs2_header = flag + "," + ("a=" + saslname(authzid) if authzid else "") + ","
        self.client_first_bare = "n=%s,r=%s" % (saslname(user), self.cnonce)
        self.server_first = None
        self.client_final = None
        self.auth_message = None
        self.salt = None
        self.iterations = None
        self.salted_password = None

    def hmac(self, key, msg) -> bytes:
        return hmac.new(key, msg, self.hf).digest()

    def client_first(self) -> bytes:
        return (self.gs2_header + self.client_first_bare).encode("utf-8")

    def client_final_for(self, server_first: bytes, proof_tamper=False,
                         cb_data=None, nonce=None) -> bytes:
        """Builds client-final from server-first. Raises ScramError when the
        server-first message is not well-formed or does not extend our
        nonce. cb_data/nonce override what goes into c=/r= (for tests of
        wrong bindings); proof_tamper flips a bit of the proof."""
        self.server_first = server_first
        try:
            attrs = parse_scram_attrs(server_first)
        except (ValueError, UnicodeDecodeError) as e:
            raise ScramError("server-first: %s" % e)
        names = [a for a, _ in attrs]
        if names[:3] != ["r", "s", "i"]:
            raise ScramError("server-first must start with r=,s=,i=: %r" % server_first)
        if "m" in names:
            raise ScramError("server-first with a mandatory extension: %r" % server_first)
        snonce, salt_b64, iters = attrs[0][1], attrs[1][1], attrs[2][1]
        if not snonce.startswith(self.cnonce) or len(snonce) <= len(self.cnonce):
            raise ScramError("server nonce %r does not extend the client nonce %r"
                             % (snonce, self.cnonce))
        if not re.fullmatch(r"[\x21-\x2b\x2d-\x7e]+", snonce):
            raise ScramError("server nonce has non-printable characters: %r" % snonce)
        try:
            self.salt = unb64(salt_b64)
        except (binascii.Error, ValueError):
            raise ScramError("salt is not base64: %r" % salt_b64)
        if not self.salt:
            raise ScramError("empty salt")
        if not iters.isdigit() or int(iters) < 1:
            raise ScramError("bad iteration count %r" % iters)
        self.iterations = int(iters)
        self.snonce = snonce
        cbind = self.gs2_header.encode() + (self.cb_data if cb_data is None else cb_data)
        without_proof = "c=%s,r=%s" % (b64(cbind), snonce if nonce is None else nonce)
        self.salted_password = hashlib.pbkdf2_hmac(
            self.hash_name.replace("-", "").lower(), self.password, self.salt,
            self.iterations)
        client_key = self.hmac(self.salted_password, b"Client Key")
        stored_key = self.hf(client_key).digest()
        self.auth_message = ",".join((self.client_first_bare, server_first.decode(),
                                      without_proof)).encode("utf-8")
        signature = self.hmac(stored_key, self.auth_message)
        proof = bytearray(a ^ b for a, b in zip(client_key, signature))
        if proof_tamper:
            proof[0] ^= 1
        self.client_final = ("%s,p=%s" % (without_proof, b64(bytes(proof)))).encode()
        return self.client_final

    def expected_server_signature(self) -> bytes:
        server_key = self.hmac(self.salted_password, b"Server Key")
        return self.hmac(server_key, self.auth_message)

    def verify_server_final(self, server_final: bytes):
        """Raises ScramError unless server_final is 'v=' with the right
        ServerSignature (computed here from the password)."""
        try:
            attrs = parse_scram_attrs(server_final)
        except (ValueError, UnicodeDecodeError) as e:
            raise ScramError("server-final: %s" % e)
        if not attrs or attrs[0][0] != "v":
            raise ScramError("server-final is not v=...: %r" % server_final)
        try:
            got = unb64(attrs[0][1])
        except (binascii.Error, ValueError):
            raise ScramError("server signature not base64: %r" % server_final)
        if not hmac.compare_digest(got, self.expected_server_signature()):
            raise ScramError("wrong server signature in %r" % server_final)


# ---------------------------------------------------------------------------
# OAUTHBEARER (RFC 7628) and XOAUTH2


def oauthbearer_message(token, user=None, host="127.0.0.1", port=None) -> bytes:
    gs2 = "n," + ("a=" + saslname(user) if user else "") + ","
    kv = ""
    if host is not None:
        kv += "host=%s\x01" % host
    if port is not None:
        kv += "port=%d\x01" % port
    kv += "auth=Bearer %s\x01" % token
    return (gs2 + "\x01" + kv + "\x01").encode("utf-8")


def xoauth2_message(user, token) -> bytes:
    return ("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode("utf-8")


OAUTHBEARER_ERROR_ACK = b"\x01"     # RFC 7628 3.2.3: the client's dummy answer


# ---------------------------------------------------------------------------
# TLS channel bindings


def tls_unique(sslsock) -> bytes:
    """RFC 5929 tls-unique (TLS <= 1.2 only)."""
    data = sslsock.get_channel_binding("tls-unique")
    assert data, "no tls-unique data (TLS 1.3 has none)"
    return data


try:                    # under pytest, a test that needs it is skipped
    from pytest import skip as _skip
    _Unavailable = _skip.Exception
except ImportError:     # pragma: no cover - used without pytest
    _Unavailable = Exception


class ExporterUnavailable(_Unavailable):
    """The ctypes route to SSL_export_keying_material does not work in this
    Python (the message says why). Under pytest this is a skip: a test
    that needs tls-exporter is skipped with that reason, not failed."""


_libssl = None


def _load_libssl():
    global _libssl
    if _libssl is None:
        name = ctypes.util.find_library("ssl") or "libssl.so.3"
        lib = ctypes.CDLL(name)
        lib.SSL_get_version.restype = ctypes.c_char_p
        lib.SSL_get_version.argtypes = [ctypes.c_void_p]
        lib.SSL_export_keying_material.restype = ctypes.c_int
        lib.SSL_export_keying_material.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
            ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        _libssl = lib
    return _libssl


def _ssl_pointer(sslsock):
    """The OpenSSL SSL* of a Python ssl.SSLSocket. CPython 3.11's
    _ssl._SSLSocket is laid out as PyObject_HEAD (refcount, type), then
    `PyObject *Socket`, then `SSL *ssl`: the 4th pointer-sized word."""
    sslobj = getattr(sslsock, "_sslobj", None)
    if sslobj is None:
        raise ExporterUnavailable("socket has no _sslobj (not an ssl.SSLSocket?)")
    if type(sslobj).__name__ != "_SSLSocket":
        raise ExporterUnavailable("unexpected _sslobj type %r" % type(sslobj))
    words = ctypes.cast(id(sslobj), ctypes.POINTER(ctypes.c_void_p))
    # Check the layout before dereferencing anything: word 2 must be the
    # weak reference to the Python socket (CPython shares callback-less
    # weakrefs, so weakref.ref() returns that very object).
    if words[2] != id(weakref.ref(sslsock)):
        raise ExporterUnavailable(
            "CPython _SSLSocket layout assumption failed: word 2 of _sslobj is "
            "not the weak reference to the socket (Python %s)" % sys.version.split()[0])
    return words[3]


def tls_exporter(sslsock, length=32, label=b"EXPORTER-Channel-Binding") -> bytes:
    """RFC 9266 tls-exporter channel binding: TLS-Exporter(label, empty
    context, 32). Python has no API for it; this calls OpenSSL's
    SSL_export_keying_material on the socket's SSL* found with ctypes, after
    checking that the pointer really is the TLS 1.3 connection (the protocol
    version OpenSSL reports for it must be the one Python reports)."""
    try:
        lib = _load_libssl()
    except OSError as e:
        raise ExporterUnavailable("cannot load libssl: %s" % e)
    ptr = _ssl_pointer(sslsock)
    if not ptr:
        raise ExporterUnavailable("SSL* is NULL")
    if sslsock.version() != "TLSv1.3":
        raise ExporterUnavailable("tls-exporter is used on TLS 1.3 only, this is %s"
                                  % sslsock.version())
    version = lib.SSL_get_version(ptr)
    if version != b"TLSv1.3":
        raise ExporterUnavailable(
            "CPython _SSLSocket layout assumption failed: SSL_get_version(word 3 "
            "of _sslobj) = %r on a TLSv1.3 connection" % (version,))
    out = ctypes.create_string_buffer(length)
    rc = lib.SSL_export_keying_material(ptr, out, length, label, len(label),
                                        None, 0, 0)
    if rc != 1:
        raise ExporterUnavailable("SSL_export_keying_material returned %d" % rc)
    return out.raw


def channel_binding(sslsock):
    """(type, data) the server must use on this TLS connection: tls-unique
    on TLS 1.2, tls-exporter on TLS 1.3."""
    if sslsock.version() == "TLSv1.3":
        return "tls-exporter", tls_exporter(sslsock)
    return "tls-unique", tls_unique(sslsock)


# ---------------------------------------------------------------------------
# RFC 5034 framing over a pobox_harness.Pop3


def is_challenge(line: bytes) -> bool:
    """'+ BASE64' or '+ ' (empty challenge). Some servers send a bare '+'
    for an empty challenge; RFC 5034 says '+ ' but a client accepts both."""
    return line == b"+" or line.startswith(b"+ ")


class Exchange:
    """Drives AUTH on a harness Pop3 connection and records a transcript
    (C: / S: lines) for assertion messages."""

    def __init__(self, conn):
        self.c = conn
        self.log = []

    def _send(self, line: bytes):
        self.log.append(b"C: " + (line if len(line) <= 200 else
                                  line[:120] + b"...(%d octets)" % len(line)))
        self.c.send(line + b"\r\n")

    def _recv(self) -> bytes:
        line = self.c.readline()
        self.log.append(b"S: " + line)
        return line

    def transcript(self) -> str:
        return "\n".join(l.decode("latin-1") for l in self.log)

    def start(self, mech, initial=None) -> bytes:
        """AUTH MECH [initial]. initial: bytes (base64-encoded here; b""
        becomes '='), or a str sent as is."""
        line = "AUTH " + mech
        if isinstance(initial, bytes):
            line += " " + (b64(initial) if initial else "=")
        elif isinstance(initial, str):
            line += " " + initial
        self._send(line.encode())
        return self._recv()

    def respond(self, data) -> bytes:
        """One response: bytes are base64-encoded, a str is sent raw
        ('*' to cancel, garbage for bad-input tests)."""
        self._send(b64(data).encode() if isinstance(data, bytes) else data.encode())
        return self._recv()

    def challenge(self, line: bytes) -> bytes:
        """The decoded data of a challenge line."""
        assert is_challenge(line), "not a challenge: %r\n%s" % (line, self.transcript())
        try:
            return unb64(line[2:])
        except (binascii.Error, ValueError):
            raise AssertionError("challenge is not base64: %r\n%s" % (line, self.transcript()))

    def cmd(self, line) -> bytes:
        self._send(line.encode() if isinstance(line, str) else line)
        return self._recv()


def scram_login(conn, mech, user, password, initial=True, authzid=None,
                cbflag=None, cb_type=None, cb_data=None, verify=True, **final_kw):
    """A whole SCRAM exchange on conn. For a -PLUS mechanism the channel
    binding of the connection is used unless cb_type/cb_data are given.
    Returns (final reply line, Exchange, ScramClient); the final line is the
    -ERR that ended the exchange early, or the reply to the empty answer to
    the server-final message (verified here when verify=True)."""
    plus = mech.upper().endswith("-PLUS")
    if cbflag is None:
        cbflag = "p" if plus else "n"
    if cbflag == "p" and cb_type is None:
        cb_type, cb_data = channel_binding(conn.sock)
    sc = ScramClient(scram_hash_of(mech), user, password, authzid=authzid,
                     cbflag=cbflag, cb_type=cb_type if cbflag == "p" else None,
                     cb_data=cb_data or b"")
    ex = Exchange(conn)
    if initial:
        r = ex.start(mech, sc.client_first())
    else:
        r = ex.start(mech)
        if not is_challenge(r):
            return r, ex, sc
        assert ex.challenge(r) == b"", "first challenge of %s not empty: %r\n%s" % (
            mech, r, ex.transcript())
        r = ex.respond(sc.client_first())
    if not is_challenge(r):
        return r, ex, sc
    r = ex.respond(sc.client_final_for(ex.challenge(r), **final_kw))
    if not is_challenge(r):
        return r, ex, sc
    server_final = ex.challenge(r)
    if server_final.startswith(b"e="):     # RFC 5802 server-error
        return ex.respond(""), ex, sc
    if verify:
        try:
            sc.verify_server_final(server_final)
        except ScramError as e:
            raise ScramError("%s\n%s" % (e, ex.transcript()))
    r = ex.respond("")
    return r, ex, sc


def sasl_mechs(capa_lines):
    """The mechanisms of CAPA's SASL line, or None when there is none."""
    found = [l for l in capa_lines if l.split()[0].upper() == "SASL"]
    assert len(found) <= 1, "more than one SASL line: %r" % capa_lines
    return found[0].split()[1:] if found else None
