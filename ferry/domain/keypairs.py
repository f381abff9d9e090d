"""Nova's key pairs as values: names, the two key types, fingerprints and making a new pair.
Pure (no I/O): keys are parsed and made in memory with `cryptography`.

An ssh key's fingerprint is the MD5 of its decoded blob in colon-separated hex, an x509
certificate's the SHA-1 of its DER form, as Nova computes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ferry.domain.errors import BadRequest

NAME_PATTERN = re.compile(r"[a-zA-Z0-9 _-]{1,255}")
"""Nova's key pair names before 2.92: letters, digits, space, `_` and `-`, 1 to 255."""
MAX_PUBLIC_KEY = 16384


class KeyType(StrEnum):
    SSH = "ssh"
    X509 = "x509"


@dataclass(frozen=True)
class NewKey:
    public_key: str
    fingerprint: str
    private_key: str | None = None
    """Only for a pair Ferry made: returned once, never stored."""


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.strip() != name:
        raise BadRequest(
            "Invalid input for field/attribute name: a key pair name is 1 to 255 letters, digits, "
            "spaces, '_' or '-', and neither begins nor ends with a space."
        )
    return name


def _colons(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def fingerprint(key_type: KeyType, public_key: str) -> str:
    """The key's fingerprint, or Nova's 400 when the key is not one of its type."""
    try:
        if key_type is KeyType.X509:
            cert = x509.load_pem_x509_certificate(public_key.encode())
            return _colons(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())
        serialization.load_ssh_public_key(public_key.strip().encode())
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (ValueError, IndexError, binascii.Error, TypeError, UnicodeError, UnsupportedAlgorithm):
        raise BadRequest("Keypair data is invalid: failed to generate fingerprint") from None
    return _colons(hashlib.md5(blob).digest())


def imported(key_type: KeyType, public_key: object) -> NewKey:
    if not isinstance(public_key, str) or not 1 <= len(public_key) <= MAX_PUBLIC_KEY:
        raise BadRequest(f"Invalid input for field/attribute public_key: a string of 1 to {MAX_PUBLIC_KEY}.")
    return NewKey(public_key, fingerprint(key_type, public_key))


def generated(key_type: KeyType, name: str, now: datetime) -> NewKey:
    """A new 2048-bit RSA pair: an OpenSSH public key, or a self-signed certificate for x509
    (valid from `now`, for ten years)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    if key_type is KeyType.X509:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name or "ferry")])
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=3650))
            .sign(private, hashes.SHA256())
        )
        public = cert.public_bytes(serialization.Encoding.PEM).decode()
    else:
        openssh = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        public = f"{openssh.decode()} Generated-by-Ferry"
    return NewKey(public, fingerprint(key_type, public), pem)
