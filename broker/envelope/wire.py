"""Untrusted bytes to an unverified ``Envelope``: size, msgpack, version, keys, field checks.
Every problem is a ``MalformedEnvelope`` naming the field; the signature is ``signed``'s."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgpack  # type: ignore[import-untyped]

from .errors import InvalidField, MalformedEnvelope

if TYPE_CHECKING:
    from .signed import Envelope

_FIELDS_BY_KEY: dict[int, dict[str, str]] = {}  # version -> wire key -> field name


def parse(cls: type[Envelope], wire: object, *, max_bytes: int, raw_cap: int) -> Envelope:
    """``wire`` as an Envelope whose fields all passed their checks, not yet verified."""
    from .signed import VERSION, VERSION_ED25519, VERSIONS, WIRE_KEYS, WIRE_KEYS_V3

    bytes_like = isinstance(wire, bytes | bytearray | memoryview)
    raw = bytes(wire) if isinstance(wire, bytes | bytearray | memoryview) else b""

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
    if type(version) is not int or version not in VERSIONS:
        raise malformed(f"unknown envelope version {version!r:.40}; this code reads "
                        f"{VERSION} and {VERSION_ED25519}", "v")
    wire_keys = WIRE_KEYS if version == VERSION else WIRE_KEYS_V3
    fields_by_key = _FIELDS_BY_KEY.get(version) or _FIELDS_BY_KEY.setdefault(
        version, {key: name for name, key in wire_keys.items()})
    if data.keys() != fields_by_key.keys():  # one set comparison for the usual, valid case
        unknown = sorted(repr(key)[:40] for key in data if key not in fields_by_key)
        if unknown:
            raise malformed(f"unknown keys in a version {version} envelope: "
                            f"{', '.join(unknown)}")
        for name, key in wire_keys.items():
            if key not in data:
                raise malformed(f"missing field {name} (key {key!r})", name)
    try:
        return cls(**{fields_by_key[key]: value for key, value in data.items()})
    except InvalidField as exc:
        raise malformed(str(exc), exc.field) from exc
