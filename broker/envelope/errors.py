"""What can be wrong with an envelope, as the exceptions the gate turns into quarantines (under
their ``reason``). Kept apart from ``signed`` so that module is only about fields, bytes and
the signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .signed import Envelope

RAW_CAP = 2048  # bytes of undecodable input kept for forensics


class EnvelopeError(ValueError):
    """An envelope that must not be delivered; the gate quarantines it under ``reason``.

    ``raw`` is the input, cut to at most ``RAW_CAP`` bytes (or the cap given to ``decode``);
    ``size`` is the length of the whole input. ``claimed`` holds the fields by name (as
    ``Envelope.to_dict``) when they passed every check but the signature, else it is empty.
    """

    reason: ClassVar[str] = "malformed"

    def __init__(self, message: str, raw: bytes, *, raw_cap: int = RAW_CAP) -> None:
        super().__init__(message)
        self.raw = bytes(raw[:raw_cap])
        self.size = len(raw)
        self.claimed: dict[str, object] = {}


class MalformedEnvelope(EnvelopeError):
    """Not a well-formed envelope. ``field`` names the culprit when there is one."""

    reason: ClassVar[str] = "malformed"

    def __init__(self, message: str, raw: bytes, *, field: str | None = None,
                 raw_cap: int = RAW_CAP) -> None:
        super().__init__(message, raw, raw_cap=raw_cap)
        self.field = field


class BadSignature(EnvelopeError):
    """Every field is valid but no configured key produces its signature.

    ``claimed`` holds the decoded fields: well formed but unverified, for forensics only.
    """

    reason: ClassVar[str] = "bad_signature"

    def __init__(self, message: str, raw: bytes, claimed: Envelope, *,
                 raw_cap: int = RAW_CAP) -> None:
        super().__init__(message, raw, raw_cap=raw_cap)
        self.claimed = claimed.to_dict()


class UnknownKey(BadSignature):
    """Signed with a key this process does not hold: an Ed25519 key id it has no verify key
    for, or a version 2 (HMAC) envelope where no secret is configured."""

    reason: ClassVar[str] = "unknown_key"


class RevokedKey(BadSignature):
    """Signed with a key id listed in LEASEGATE_REVOKED_KEYS: refused even if its public key
    is still configured."""

    reason: ClassVar[str] = "revoked_key"


class InvalidField(ValueError):
    """A field check failed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
