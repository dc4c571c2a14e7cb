"""The envelope: who a background result belongs to, signed. ``signed`` holds the format and
the signature, ``errors`` what can be wrong with one, ``args`` the digest of the task
arguments it signs, ``secrets`` a runtime's str secrets as bytes, ``keyring`` the Ed25519 keys
(and HMAC secrets) a process signs and verifies with, ``wire`` the parsing of untrusted bytes.
Import from here.
"""

from .args import digest_args
from .errors import (
    RAW_CAP,
    BadSignature,
    EnvelopeError,
    MalformedEnvelope,
    RevokedKey,
    UnknownKey,
)
from .keyring import (
    KEY_ID_HEX,
    Keyring,
    check_key_id,
    generate_pems,
    key_id,
    load_signing_key,
    load_verify_key,
)
from .secrets import utf8_secrets
from .signed import (
    INCARNATION_HEX,
    MAX_TOOL_BYTES,
    MAX_WIRE_BYTES,
    MIN_SECRET_BYTES,
    VERSION,
    VERSION_ED25519,
    WIRE_KEYS,
    WIRE_KEYS_V3,
    Envelope,
    VerifiedEnvelope,
    as_keyring,
    check_secrets,
)

__all__ = [
    "INCARNATION_HEX",
    "KEY_ID_HEX",
    "VERSION_ED25519",
    "WIRE_KEYS_V3",
    "Keyring",
    "RevokedKey",
    "UnknownKey",
    "as_keyring",
    "check_key_id",
    "generate_pems",
    "key_id",
    "load_signing_key",
    "load_verify_key",
    "MAX_TOOL_BYTES",
    "MAX_WIRE_BYTES",
    "MIN_SECRET_BYTES",
    "RAW_CAP",
    "VERSION",
    "WIRE_KEYS",
    "BadSignature",
    "Envelope",
    "EnvelopeError",
    "MalformedEnvelope",
    "VerifiedEnvelope",
    "check_secrets",
    "utf8_secrets",
    "digest_args",
]
