"""The envelope: who a background result belongs to, signed, in msgpack.

A run hands one envelope to every background task it submits; the worker hands it back to the
gate with the result. The gate trusts nothing in it until ``Envelope.decode`` has checked every
field and the signature: Ed25519 by a runtime's private key (version 3), or HMAC-SHA256 with
the deployment secret (version 2, for deployments not yet migrated).

Wire format, version 2: a msgpack map with these keys and nothing else.

    v      int    format version, 2
    id     str    callback id, unique per submitted task (the idempotency key of the gate)
    sk     str    session key
    run    str    run id
    fence  int    fencing token of the run, >= 1
    inc    str    incarnation of the run: 32 lowercase hex, the random nonce of its acquire
    tool   str    tool name, 1..64 bytes of [A-Za-z0-9_.:-]
    args   str    hex sha256 of the canonical msgpack of the task args (see ``digest_args``)
    task   str    Celery task id (may equal the callback id)
    at     int    submitted at, Redis server time in ms
    dl     int    deadline, Redis server time in ms, >= ``at``
    sig    bin    32 bytes, HMAC-SHA256 over every other field (see ``Envelope.signed_bytes``)

Version 3 has the same keys and two more, both signed; its ``sig`` is 64 bytes:

    alg    str    "ed25519"
    kid    str    key id of the signer's public key: 16 hex (see ``keyring.key_id``)

Unknown keys are rejected: the signature does not cover them, so they would be
unauthenticated data; a new field means a new version. Version 1 (without ``inc``) is refused
as malformed: drain the queues before upgrading (docs/failure-modes.md, issue 11).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...ownership import check_run_id, check_session_key
from .args import digest_args
from .errors import RAW_CAP, InvalidField
from .keyring import Keyring, check_key_id, key_id

VERSION = 2  # HMAC-SHA256 with a shared secret
VERSION_ED25519 = 3
VERSIONS = (VERSION, VERSION_ED25519)
ED25519 = "ed25519"
MIN_SECRET_BYTES = 16
MAX_WIRE_BYTES = 4096
MAX_TOOL_BYTES = 64
MAX_INT = 2**63 - 1  # Redis integers are signed 64-bit

# Field name -> wire key, in the order the signature covers them (sig itself excluded).
WIRE_KEYS: dict[str, str] = {
    "v": "v",
    "callback_id": "id",
    "session_key": "sk",
    "run_id": "run",
    "fence": "fence",
    "incarnation": "inc",
    "tool": "tool",
    "args_digest": "args",
    "task_id": "task",
    "submitted_at_ms": "at",
    "deadline_at_ms": "dl",
    "sig": "sig",
}
# Version 3: the same, then the algorithm and key id, both covered by the signature.
WIRE_KEYS_V3: dict[str, str] = {**{k: w for k, w in WIRE_KEYS.items() if k != "sig"},
                                "alg": "alg", "kid": "kid", "sig": "sig"}
_FIELD_NAMES = tuple(WIRE_KEYS_V3)  # the dataclass's fields, in order
# Domain separation: these bytes can never be mistaken for another signed message of ours.
_SIGNING_TAG = "leasegate.envelope"
_TOOL = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_TOOL_BYTES}}}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
INCARNATION_HEX = 32
_INCARNATION = re.compile(rf"[0-9a-f]{{{INCARNATION_HEX}}}")


def as_keyring(keys: bytes | Sequence[bytes] | Keyring) -> Keyring:
    """``keys`` as a Keyring: a secret or a list of them is HMAC only (version 2)."""
    return keys if isinstance(keys, Keyring) else Keyring(secrets=check_secrets(keys))


def check_secrets(secret: bytes | Sequence[bytes]) -> list[bytes]:
    """The secrets as a list, current first; ValueError if none or one is too short."""
    secrets = [secret] if isinstance(secret, bytes | bytearray) else list(secret)
    if not secrets:
        raise ValueError("secret: at least one secret is required")
    for one in secrets:
        Envelope.verify_secret_length(one)
    return [bytes(one) for one in secrets]


# Id checks' fast paths: printable ASCII, no separators, far below the byte limits; the full
# check (naming the field and rule) takes the rest (tests/broker/test_gate_fast_path.py).
PLAIN_ID = re.compile(r"[\x20-\x39\x3b-\x7a\x7c\x7e]{1,64}")  # no ':', '{', '}', DEL
PLAIN_SESSION_KEY = re.compile(r"[\x20-\x7a\x7c\x7e]{1,256}")  # no '{', '}', DEL


def _check_id(field: str, check: Callable[[object], str], value: str) -> None:
    plain = PLAIN_SESSION_KEY if check is check_session_key else PLAIN_ID
    if plain.fullmatch(value):
        return
    try:
        check(value)
    except ValueError as exc:
        # keys' messages start with their own field name; we reuse its rules for other ids.
        head, _, rest = str(exc).partition(" ")
        message = f"{field} {rest}" if head in ("run_id", "session_key") else f"{field}: {exc}"
        raise InvalidField(field, message) from exc


@dataclass(frozen=True, eq=False)
class Envelope:
    """One submitted background task's claim on a run. Every instance is valid; none is trusted
    until ``decode`` or ``verify`` has checked its signature (they return a
    ``VerifiedEnvelope``)."""

    v: int
    callback_id: str
    session_key: str
    run_id: str
    fence: int
    incarnation: str
    tool: str
    args_digest: str
    task_id: str
    submitted_at_ms: int
    deadline_at_ms: int
    sig: bytes
    alg: str = ""  # version 3 only
    kid: str = ""  # version 3 only

    _TYPES: ClassVar[dict[str, type]] = {
        "v": int, "callback_id": str, "session_key": str, "run_id": str, "fence": int,
        "incarnation": str, "tool": str, "args_digest": str, "task_id": str, "submitted_at_ms": int,
        "deadline_at_ms": int, "sig": bytes, "alg": str, "kid": str,
    }

    def __post_init__(self) -> None:
        fields = self.__dict__
        for name, expected in self._TYPES.items():
            value = fields[name]
            # type() is not isinstance(): a bool is an int to Python but not to us.
            if type(value) is not expected:
                raise InvalidField(name, f"{name} must be {expected.__name__}, "
                                     f"not {type(value).__name__}")
        if self.v not in VERSIONS:
            raise InvalidField("v", f"unknown envelope version {self.v}; this code reads "
                                    f"{VERSION} and {VERSION_ED25519}")
        _check_id("callback_id", check_run_id, self.callback_id)
        _check_id("session_key", check_session_key, self.session_key)
        _check_id("run_id", check_run_id, self.run_id)
        _check_id("task_id", check_run_id, self.task_id)
        if not _TOOL.fullmatch(self.tool):
            raise InvalidField("tool", f"tool must be 1..{MAX_TOOL_BYTES} bytes of [A-Za-z0-9_.:-]")
        if not _INCARNATION.fullmatch(self.incarnation):
            raise InvalidField("incarnation", f"incarnation must be {INCARNATION_HEX} "
                                              "lowercase hex digits")
        if not _HEX_SHA256.fullmatch(self.args_digest):
            raise InvalidField("args_digest", "args_digest must be 64 lowercase hex digits")
        for name in ("fence", "submitted_at_ms", "deadline_at_ms"):
            value = getattr(self, name)
            low = 1 if name == "fence" else 0
            if not low <= value <= MAX_INT:
                raise InvalidField(name, f"{name} must be in [{low}, 2**63-1], not {value}")
        if self.deadline_at_ms < self.submitted_at_ms:
            raise InvalidField("deadline_at_ms", "deadline_at_ms is before submitted_at_ms")
        self._check_signer()

    def _check_signer(self) -> None:
        if self.v == VERSION:
            if self.alg or self.kid:
                raise InvalidField("alg" if self.alg else "kid", "a version 2 envelope has no "
                                   "alg or kid")
        else:
            if self.alg != ED25519:
                raise InvalidField("alg", f"alg must be {ED25519!r}, not {self.alg[:40]!r}")
            try:
                check_key_id("kid", self.kid)
            except ValueError as exc:
                raise InvalidField("kid", str(exc)) from None
        size = hashlib.sha256().digest_size if self.v == VERSION else 64
        if len(self.sig) != size:
            raise InvalidField("sig", f"sig must be {size} bytes, not {len(self.sig)}")

    @property
    def wire_keys(self) -> dict[str, str]:
        """Field name -> wire key for this envelope's version."""
        return WIRE_KEYS if self.v == VERSION else WIRE_KEYS_V3

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELD_NAMES)

    def __eq__(self, other: object) -> bool:
        # verified or not, the same fields are the same envelope
        return isinstance(other, Envelope) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    @staticmethod
    def verify_secret_length(secret: bytes) -> bytes:
        """Return ``secret`` if it is bytes of at least ``MIN_SECRET_BYTES``; else ValueError."""
        if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"secret must be at least {MIN_SECRET_BYTES} bytes")
        return bytes(secret)

    @classmethod
    def create(cls, secret: bytes | Ed25519PrivateKey, *, callback_id: str, session_key: str,
               run_id: str, fence: int, incarnation: str, tool: str, task_args: Mapping[str, Any],
               submitted_at_ms: int, deadline_at_ms: int,
               task_id: str | None = None) -> Envelope:
        """Build and sign an envelope: version 3 with an Ed25519 private key, version 2 with an
        HMAC secret. Times are Redis server time in ms, never the local clock.

        Raises ValueError/TypeError naming the field when one is invalid.
        """
        ids = (callback_id, session_key, run_id, fence, incarnation, tool, digest_args(task_args),
               callback_id if task_id is None else task_id, submitted_at_ms, deadline_at_ms)
        if isinstance(secret, Ed25519PrivateKey):
            unsigned = cls(VERSION_ED25519, *ids, bytes(64), ED25519,
                           key_id(secret.public_key()))
            return dataclasses.replace(unsigned, sig=secret.sign(unsigned.signed_bytes()))
        if not isinstance(secret, bytes | bytearray | str):  # a str: the length rule says no
            raise TypeError(f"an envelope is signed with a private key or a secret, not a "
                            f"{type(secret).__name__}")
        key = cls.verify_secret_length(secret)
        unsigned = cls(VERSION, *ids, bytes(32))
        return dataclasses.replace(unsigned, sig=unsigned._sign(key))

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers: msgpack of a tagged, fixed-order list.

        Built from the field values, never from the wire, so a re-encoding by another msgpack
        library cannot break the signature.
        """
        values = [getattr(self, name) for name in self.wire_keys if name != "sig"]
        return bytes(msgpack.packb([_SIGNING_TAG, *values], use_bin_type=True))

    def _sign(self, secret: bytes) -> bytes:
        return hmac.digest(secret, self.signed_bytes(), "sha256")

    def encode(self) -> bytes:
        """The wire form: a msgpack map with the short keys listed in the module docstring."""
        wire = {key: getattr(self, name) for name, key in self.wire_keys.items()}
        return bytes(msgpack.packb(wire, use_bin_type=True))

    @classmethod
    def decode(cls, wire: bytes | bytearray | memoryview,
               secret: bytes | Sequence[bytes] | Keyring, *,
               max_bytes: int = MAX_WIRE_BYTES, raw_cap: int = RAW_CAP) -> VerifiedEnvelope:
        """Parse, check and verify ``wire``. ``secret``: an HMAC secret, several (current
        first, then those still accepted during a rotation), or a ``Keyring`` with Ed25519
        verify keys.

        Raises ``MalformedEnvelope`` or ``BadSignature`` (with its ``UnknownKey`` and
        ``RevokedKey``; all ``EnvelopeError``) for any bad input, and nothing else;
        ValueError only for bad keys, which is a deployment mistake, not the input's.
        """
        from .wire import parse

        keyring = as_keyring(secret)
        raw = bytes(wire) if isinstance(wire, bytes | bytearray | memoryview) else b""
        envelope = parse(cls, wire, max_bytes=max_bytes, raw_cap=raw_cap)
        return envelope._verified(keyring, raw, raw_cap)

    def verify(self, secret: bytes | Sequence[bytes] | Keyring) -> VerifiedEnvelope:
        """This envelope, proven signed by one of ``secret``; ``BadSignature`` if not."""
        if isinstance(self, VerifiedEnvelope):
            return self
        return self._verified(as_keyring(secret), None, RAW_CAP)

    def _verified(self, keyring: Keyring, raw: bytes | None,
                  raw_cap: int) -> VerifiedEnvelope:
        from .verify import verified

        return verified(self, keyring, raw, raw_cap)

    def to_dict(self) -> dict[str, object]:
        """The fields by name, ``sig`` as hex: for logs and provenance records."""
        fields = dataclasses.asdict(self)
        fields["sig"] = self.sig.hex()
        if self.v == VERSION:  # version 2 has no alg or kid
            del fields["alg"], fields["kid"]
        return fields


class VerifiedEnvelope(Envelope):
    """An envelope whose signature was checked (by ``Envelope.decode`` or ``verify``): the
    gate takes it without checking again. Built by hand, or changed with
    ``dataclasses.replace``, it is a plain ``Envelope`` again: proof does not survive edits."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Envelope:  # type: ignore[misc]
        return Envelope(*args, **kwargs)

    @classmethod
    def _of(cls, envelope: Envelope) -> VerifiedEnvelope:
        verified: VerifiedEnvelope = object.__new__(cls)
        verified.__dict__.update(envelope.__dict__)  # the same fields, copied in one step
        return verified

    def __reduce__(self) -> tuple[Any, ...]:
        # a copy or a pickle is a plain Envelope: the proof belongs to this process
        return (Envelope, self._values())
