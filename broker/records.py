"""How payloads and artifact references are stored in Redis: msgpack, written by one function
and read by the others. Inbox entries, dead letters and the artifact collector all read the
same ``body`` and ``arts`` fields, so they decode them with the same code."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

from .artifacts.store import ArtifactRef  # the module, not the face: the collector imports us


def pack_body(field: str, value: Any, limit: int) -> bytes:
    """msgpack-encode a payload and hold it to its size limit."""
    try:
        body: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{field} must be msgpack-encodable: {exc}") from exc
    if len(body) > limit:
        raise ValueError(f"{field} is {len(body)} bytes encoded; the limit is {limit} bytes")
    return body


def unpack_body(raw: bytes | str | None) -> Any:
    """The payload of a ``body`` field (None when there is none)."""
    if not raw:
        return None
    return msgpack.unpackb(raw if isinstance(raw, bytes) else raw.encode(), raw=False)


def unpack_refs(raw: bytes | str | None) -> list[ArtifactRef]:
    """The artifact references of an ``arts`` field, each checked as an ``ArtifactRef``."""
    items = unpack_body(raw) or []
    return [ArtifactRef.from_dict(item) for item in items]


def ref_digests(raw: bytes | str | None, where: str) -> set[str]:
    """Just the digests of an ``arts`` field. Unreadable references stop the collection:
    deleting what they might name could lose an artifact still in use."""
    if not raw:
        return set()
    try:
        return {str(item["digest"]) for item in unpack_body(raw)}
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise ValueError(f"unreadable artifact references in {where}; nothing collected") from exc
