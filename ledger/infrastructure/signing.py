"""Ed25519 (RFC 8032) receipt signatures, with the `cryptography` package.

The key is a PEM private key: LEDGER_SIGNING_KEY, or one generated on first start under the data
directory (mode 0600). A key is named by its key id: hex SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG = "Ed25519"


class SigningKeyError(ValueError):
    pass


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


class Ed25519Signer:
    """The service's receipt signer (the `ReceiptSigner` port)."""

    alg = ALG

    def __init__(self, private_key: Ed25519PrivateKey, path: Path, created: bool) -> None:
        self._key = private_key
        self.path = path
        self.created = created
        public = private_key.public_key()
        self.key_id = key_id_of(public)
        self.public_key_pem = public_pem(public)

    def sign(self, data: bytes) -> str:
        """The signature over `data`, base64."""
        return base64.b64encode(self._key.sign(data)).decode("ascii")

    @classmethod
    def load_or_create(cls, path: Path) -> Ed25519Signer:
        if path.exists():
            return cls(_load_private(path), path, created=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Created 0600 from the start (never readable by others, not even for a moment); a
        # concurrent first start of another process keeps the key that won.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(_load_private(path), path, created=False)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return cls(key, path, created=True)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM public key, or the public half of a PEM private key."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            return _load_private(path).public_key()
        except SigningKeyError:
            raise SigningKeyError(f"{path} holds no PEM Ed25519 key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def signature_holds(public_key: Ed25519PublicKey, data: bytes, value: str) -> bool:
    """Whether `value` is the base64 (canonical: the one encoding of its bytes) of a valid
    signature over `data`: any other text for the same bytes is not what was signed."""
    try:
        raw = base64.b64decode(value, validate=True)
        if base64.b64encode(raw).decode("ascii") != value:
            return False
        public_key.verify(raw, data)
    except (InvalidSignature, ValueError):
        return False
    return True
