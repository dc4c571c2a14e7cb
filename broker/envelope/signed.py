"""The envelope: who a background result belongs to, signed, in msgpack.

A run hands one envelope to every background task it submits; the worker hands it back to the
gate with the result. The gate trusts nothing in it until ``Envelope.decode`` has checked every
field and the HMAC-SHA256 signature made with the deployment secret.

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

from ...ownership import check_run_id, check_session_key
from .args import digest_args
from .errors import RAW_CAP, BadSignature, InvalidField, MalformedEnvelope

VERSION = 2
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
_FIELDS_BY_WIRE_KEY = {wire: name for name, wire in WIRE_KEYS.items()}
# Domain separation: these bytes can never be mistaken for another signed message of ours.
_SIGNING_TAG = "leasegate.envelope"
_TOOL = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_TOOL_BYTES}}}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
INCARNATION_HEX = 32
_INCARNATION = re.compile(rf"[0-9a-f]{{{INCARNATION_HEX}}}")


def check_secrets(secret: bytes | Sequence[bytes]) -> list[bytes]:
    """The secrets as a list, current first; ValueError if none or one is too short."""
    secrets = [secret] if isinstance(secret, bytes | bytearray) else list(secret)
    if not secrets:
        raise ValueError("secret: at least one secret is required")
    for one in secrets:
        Envelope.verify_secret_length(one)
    return [bytes(one) for one in secrets]


def _check_id(field: str, check: Callable[[object], str], value: str) -> None:
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

    _TYPES: ClassVar[dict[str, type]] = {
        "v": int, "callback_id": str, "session_key": str, "run_id": str, "fence": int,
        "incarnation": str, "tool": str, "args_digest": str, "task_id": str, "submitted_at_ms": int,
        "deadline_at_ms": int, "sig": bytes,
    }

    def __post_init__(self) -> None:
        for name, expected in self._TYPES.items():
            value = getattr(self, name)
            # type() is not isinstance(): a bool is an int to Python but not to us.
            if type(value) is not expected:
                raise InvalidField(name, f"{name} must be {expected.__name__}, "
                                     f"not {type(value).__name__}")
        if self.v != VERSION:
            raise InvalidField("v", f"unknown envelope version {self.v}; this code reads {VERSION}")
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
        if len(self.sig) != hashlib.sha256().digest_size:
            raise InvalidField("sig", f"sig must be 32 bytes, not {len(self.sig)}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in WIRE_KEYS)

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
    def create(cls, secret: bytes, *, callback_id: str, session_key: str, run_id: str,
               fence: int, incarnation: str, tool: str, task_args: Mapping[str, Any],
               submitted_at_ms: int, deadline_at_ms: int,
               task_id: str | None = None) -> Envelope:
        """Build and sign an envelope. Times are Redis server time in ms, never the local clock.

        Raises ValueError/TypeError naming the field when one is invalid.
        """
        key = cls.verify_secret_length(secret)
        unsigned = cls(VERSION, callback_id, session_key, run_id, fence, incarnation, tool,
                       digest_args(task_args), callback_id if task_id is None else task_id,
                       submitted_at_ms, deadline_at_ms, bytes(32))
        return dataclasses.replace(unsigned, sig=unsigned._sign(key))

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers: msgpack of a tagged, fixed-order list.

        Built from the field values, never from the wire, so a re-encoding by another msgpack
        library cannot break the signature.
        """
        values = [getattr(self, name) for name in WIRE_KEYS if name != "sig"]
        return bytes(msgpack.packb([_SIGNING_TAG, *values], use_bin_type=True))

    def _sign(self, secret: bytes) -> bytes:
        return hmac.new(secret, self.signed_bytes(), hashlib.sha256).digest()

    def encode(self) -> bytes:
        """The wire form: a msgpack map with the short keys listed in the module docstring."""
        wire = {WIRE_KEYS[name]: getattr(self, name) for name in WIRE_KEYS}
        return bytes(msgpack.packb(wire, use_bin_type=True))

    @classmethod
    def decode(cls, wire: bytes | bytearray | memoryview, secret: bytes | Sequence[bytes], *,
               max_bytes: int = MAX_WIRE_BYTES, raw_cap: int = RAW_CAP) -> VerifiedEnvelope:
        """Parse, check and verify ``wire``. ``secret`` may list several: current first, then
        the previous ones still accepted during a key rotation.

        Raises ``MalformedEnvelope`` or ``BadSignature`` (both ``EnvelopeError``) for any bad
        input, and nothing else; ValueError only for a bad ``secret``, which is a deployment
        mistake, not the input's.
        """
        secrets = check_secrets(secret)

        bytes_like = isinstance(wire, bytes | bytearray | memoryview)
        raw = bytes(wire) if bytes_like else b""

        def malformed(message: str, field: str | None = None) -> MalformedEnvelope:
            return MalformedEnvelope(message, raw, field=field, raw_cap=raw_cap)

        if not bytes_like:
            raise malformed(f"envelope must be bytes, not {type(wire).__name__}")
        if len(raw) > max_bytes:
            raise malformed(f"envelope is {len(raw)} bytes; the limit is {max_bytes} bytes")
        try:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True,
                                   max_str_len=max_bytes, max_bin_len=max_bytes,
                                   max_array_len=max_bytes, max_map_len=max_bytes,
                                   max_ext_len=max_bytes)
        # msgpack raises many exception types (ValueError, StackError, UnicodeDecodeError, ...).
        except Exception as exc:
            raise malformed(f"envelope is not msgpack: {exc}") from exc
        if not isinstance(data, dict):
            raise malformed(f"envelope must be a msgpack map, not {type(data).__name__}")
        # Version first: a future version may have other keys and must get this error.
        version = data.get("v")
        if type(version) is not int or version != VERSION:
            raise malformed(f"unknown envelope version {version!r:.40}; this code reads {VERSION}",
                            "v")
        unknown = sorted(repr(key)[:40] for key in data if key not in _FIELDS_BY_WIRE_KEY)
        if unknown:
            raise malformed(f"unknown keys in a version {VERSION} envelope: "
                            f"{', '.join(unknown)}")
        for name, key in WIRE_KEYS.items():
            if key not in data:
                raise malformed(f"missing field {name} (key {key!r})", name)
        try:
            envelope = cls(**{_FIELDS_BY_WIRE_KEY[key]: value for key, value in data.items()})
        except InvalidField as exc:
            raise malformed(str(exc), exc.field) from exc
        return envelope._verified(secrets, raw, raw_cap)

    def verify(self, secret: bytes | Sequence[bytes]) -> VerifiedEnvelope:
        """This envelope, proven signed by one of ``secret``; ``BadSignature`` if not."""
        if isinstance(self, VerifiedEnvelope):
            return self
        return self._verified(check_secrets(secret), None, RAW_CAP)

    def _verified(self, secrets: list[bytes], raw: bytes | None,
                  raw_cap: int) -> VerifiedEnvelope:
        signed = self.signed_bytes()
        for one in secrets:
            expected = hmac.new(one, signed, hashlib.sha256).digest()
            if hmac.compare_digest(expected, self.sig):
                return VerifiedEnvelope._of(self)
        raise BadSignature("envelope signature matches no configured secret",
                           self.encode() if raw is None else raw, self, raw_cap=raw_cap)

    def to_dict(self) -> dict[str, object]:
        """The fields by name, ``sig`` as hex: for logs and provenance records."""
        fields = dataclasses.asdict(self)
        fields["sig"] = self.sig.hex()
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
        for name in WIRE_KEYS:
            object.__setattr__(verified, name, getattr(envelope, name))
        return verified

    def __reduce__(self) -> tuple[Any, ...]:
        # a copy or a pickle is a plain Envelope: the proof belongs to this process
        return (Envelope, self._values())
