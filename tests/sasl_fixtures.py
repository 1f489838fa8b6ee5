"""sasl_fixtures.py — key material for the SASL tests: a test CA with client
certificates (SASL EXTERNAL), and RSA/EC signing keys with a JWKS file and
JWT bearer tokens (OAUTHBEARER, XOAUTH2).

Uses python3-cryptography and PyJWT (Debian packages); everything is written
into a directory the caller owns (a pytest tmp_path).
"""

import base64
import datetime
import hashlib
import hmac
import json
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import jwt

# ---------------------------------------------------------------------------
# X.509: a CA and client certificates


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class ClientCA:
    """A self-signed CA (EC P-256) that issues client certificates."""

    def __init__(self, directory, name="pobox test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        slug = "".join(ch if ch.isalnum() else "_" for ch in name)
        self.pem_path = self.dir / ("%s.pem" % slug)
        self.pem_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def client_cert(self, filename, cn=None, email=None, san_email=None,
                    expired=False):
        """Issues a client certificate; returns (cert_path, key_path).
        email goes into the subject as emailAddress, san_email into a
        subjectAltName rfc822Name, cn into the subject's CN."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = []
        if cn is not None:
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        if email is not None:
            attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
        if not attrs:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pobox tests"))
        if expired:
            start, end = _now() - datetime.timedelta(days=10), _now() - datetime.timedelta(days=1)
        else:
            start, end = _now() - datetime.timedelta(days=1), _now() + datetime.timedelta(days=30)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name(attrs))
             .issuer_name(self.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        if san_email is not None:
            b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(san_email)]),
                                critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        cert_path = self.dir / (filename + ".crt")
        key_path = self.dir / (filename + ".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return cert_path, key_path


# ---------------------------------------------------------------------------
# JWKS and JWTs

ISSUER = "https://idp.example.org/"
AUDIENCE = "pobox-pop3"


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk_of(public_key, kid):
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": _b64url_uint(nums.n), "e": _b64url_uint(nums.e)}
    nums = public_key.public_numbers()
    return {"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
            "x": _b64url(nums.x.to_bytes(32, "big")),
            "y": _b64url(nums.y.to_bytes(32, "big"))}


class TokenIssuer:
    """An RSA (kid 'rsa-1', RS256) and an EC P-256 (kid 'ec-1', ES256)
    signing key, published in a JWKS file, and a token factory."""

    RSA_KID = "rsa-1"
    EC_KID = "ec-1"

    def __init__(self, directory, issuer=ISSUER, audience=AUDIENCE):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.issuer, self.audience = issuer, audience
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_path = self.dir / "jwks.json"
        self.jwks_path.write_text(json.dumps({"keys": [
            jwk_of(self.rsa.public_key(), self.RSA_KID),
            jwk_of(self.ec.public_key(), self.EC_KID)]}, indent=1))

    def config(self):
        return {"oauth_jwks": str(self.jwks_path), "oauth_issuer": self.issuer,
                "oauth_audience": self.audience}

    def claims(self, email, /, lifetime=600, **over):
        now = int(time.time())
        c = {"iss": self.issuer, "aud": self.audience, "sub": "sub-" + email,
             "email": email, "iat": now, "nbf": now - 5, "exp": now + lifetime}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, email, /, alg="RS256", kid=None, key=None, headers=None, **over):
        """A signed JWT for email; claims can be overridden (None removes
        one), key/kid replaced to forge bad signatures."""
        if key is None:
            key = self.rsa if alg == "RS256" else self.ec
        if kid is None:
            kid = self.RSA_KID if alg == "RS256" else self.EC_KID
        h = {"kid": kid}
        h.update(headers or {})
        return jwt.encode(self.claims(email, **over), key, algorithm=alg, headers=h)

    def hs256_with_public_key(self, email, kid=None):
        """The classic key-confusion forgery (CVE-2015-9235 class): HS256
        'signed' with the RSA public key's PEM as the HMAC secret. PyJWT
        refuses to do it, so it is built by hand."""
        secret = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "typ": "JWT", "kid": kid or self.RSA_KID}
        return self._hand_made(header, self.claims(email),
                               lambda si: hmac.new(secret, si, hashlib.sha256).digest())

    def alg_none(self, email):
        header = {"alg": "none", "typ": "JWT", "kid": self.RSA_KID}
        return self._hand_made(header, self.claims(email), lambda si: b"")

    @staticmethod
    def _hand_made(header, claims, sign):
        si = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
              _b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        return (si + b"." + _b64url(sign(si)).encode()).decode()
