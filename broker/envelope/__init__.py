"""The envelope: who a background result belongs to, signed. ``signed`` holds the format and
the signature, ``errors`` what can be wrong with one, ``args`` the digest of the task
arguments it signs, ``secrets`` a runtime's str secrets as bytes. Import from here.
"""

from .args import digest_args
from .errors import RAW_CAP, BadSignature, EnvelopeError, MalformedEnvelope
from .secrets import utf8_secrets
from .signed import (
    INCARNATION_HEX,
    MAX_TOOL_BYTES,
    MAX_WIRE_BYTES,
    MIN_SECRET_BYTES,
    VERSION,
    WIRE_KEYS,
    Envelope,
    VerifiedEnvelope,
    check_secrets,
)

__all__ = [
    "INCARNATION_HEX",
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
