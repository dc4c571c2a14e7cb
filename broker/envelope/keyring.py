"""Ed25519 keys for version 3 envelopes: a runtime signs with a private key, a worker holds
only public keys and verifies. A key id names a public key (the first 8 bytes of the SHA-256
of its 32 raw bytes, as 16 hex digits), so several verify keys overlap during a rotation and
a revoked one is refused by name."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..fingerprints import secret_fingerprint

KEY_ID_HEX = 16
_KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_HEX}}}")


def key_id(public: Ed25519PublicKey) -> str:
    """16 hex digits naming ``public``: what an envelope's ``kid`` carries."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def check_key_id(field: str, value: object) -> str:
    """``value`` if it is a key id (16 lowercase hex digits); ValueError naming ``field``."""
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise ValueError(f"{field}: a key id is {KEY_ID_HEX} lowercase hex digits, "
                         f"not {str(value)[:40]!r}")
    return value


def load_signing_key(pem: bytes | str | Ed25519PrivateKey,
                     field: str = "signing_key") -> Ed25519PrivateKey:
    """An Ed25519 private key from its PEM (PKCS#8, unencrypted); ValueError naming ``field``."""
    if isinstance(pem, Ed25519PrivateKey):
        return pem
    data = pem.encode() if isinstance(pem, str) else pem
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{field} must be PEM bytes, not {type(pem).__name__}")
    try:
        key = serialization.load_pem_private_key(bytes(data), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{field} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{field} must be an Ed25519 key, not {type(key).__name__}")
    return key


def load_verify_key(pem: bytes | str | Ed25519PublicKey,
                    field: str = "verify_keys") -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM (SubjectPublicKeyInfo); ValueError naming ``field``.
    A private key is refused: a worker must never be handed one by mistake."""
    if isinstance(pem, Ed25519PublicKey):
        return pem
    data = pem.encode() if isinstance(pem, str) else pem
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{field} must be PEM bytes, not {type(pem).__name__}")
    if b"PRIVATE KEY" in data:
        raise ValueError(f"{field} holds a private key: give workers the public key "
                         "(verify.pem) only")
    try:
        key = serialization.load_pem_public_key(bytes(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{field} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{field} must be an Ed25519 key, not {type(key).__name__}")
    return key


def generate_pems() -> tuple[bytes, bytes]:
    """A fresh key pair as (private PEM, public PEM): ``leasegate keygen``'s two files."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


class Keyring:
    """What one process holds to sign and check envelopes: HMAC secrets (version 2, for
    deployments not yet migrated), at most one Ed25519 signing key, the public keys it accepts
    (by key id) and the key ids it refuses even if it still holds their public key.

    A signing key's own public key is always accepted (a runtime checks what it signs)."""

    def __init__(self, secrets: Iterable[bytes] = (),
                 signing_key: bytes | str | Ed25519PrivateKey | None = None,
                 verify_keys: Iterable[bytes | str | Ed25519PublicKey] = (),
                 revoked_keys: Iterable[str] = ()) -> None:
        self.secrets = [bytes(s) for s in secrets]
        self.signing_key = None if signing_key is None else load_signing_key(signing_key)
        publics = [load_verify_key(one) for one in verify_keys]
        if self.signing_key is not None:
            publics.insert(0, self.signing_key.public_key())
        self.verify_keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in publics}
        self.revoked = frozenset(check_key_id("revoked_keys", k) for k in revoked_keys)
        if not (self.secrets or self.verify_keys):
            raise ValueError("keys: give a secret, a signing_key or verify_keys")

    @property
    def signing_key_id(self) -> str | None:
        return None if self.signing_key is None else key_id(self.signing_key.public_key())

    @property
    def can_sign(self) -> bool:
        return self.signing_key is not None or bool(self.secrets)

    def fingerprints(self) -> list[str]:
        """Every key this keyring accepts, by name: key ids, then HMAC secret fingerprints
        (what workers record in Redis so a runtime can tell it signs with a key they refuse)."""
        return [kid for kid in self.verify_keys if kid not in self.revoked] + \
            [secret_fingerprint(s) for s in self.secrets]

    def signer_fingerprint(self) -> str:
        """The name of the key this keyring signs with: the key id, else the secret's."""
        if self.signing_key is not None:
            return key_id(self.signing_key.public_key())
        if not self.secrets:
            raise ValueError("this keyring holds no signing key and no secret: it verifies only")
        return secret_fingerprint(self.secrets[0])

    def verify_ed25519(self, kid: str, signature: bytes, signed: bytes) -> str | None:
        """None if ``signature`` over ``signed`` is good under key ``kid``; else the reason
        (``revoked_key``, ``unknown_key`` or ``bad_signature``)."""
        if kid in self.revoked:
            return "revoked_key"
        public = self.verify_keys.get(kid)
        if public is None:
            return "unknown_key"
        try:
            public.verify(signature, signed)
        except InvalidSignature:
            return "bad_signature"
        return None
