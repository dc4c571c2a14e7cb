"""What an owned task delivers when its work cannot be delivered as it is: a result too large
or not msgpack-encodable, an error with a huge message, a failure of leasegate's own code.

Every one becomes a small kind=error payload that always fits the gate's limits, so that a
callback never fails at the gate's door and stays pending with no verdict at all.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

MAX_ERROR_TEXT = 2048  # characters of an error message (or field) a verdict keeps
CUT_MARKER = "... [cut: {n} more characters]"

_ENCODABLE = (type(None), bool, int, float, str, bytes, bytearray, memoryview)


def capped(text: object, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` as a string of at most ``limit`` characters plus a marker saying it was cut."""
    value = str(text)
    if len(value) <= limit:
        return value
    return value[:limit] + CUT_MARKER.format(n=len(value) - limit)


def error_payload(kind: str, exc: BaseException, **extra: Any) -> dict[str, Any]:
    """A kind=error payload: the cause, its (capped) message, and small extra fields."""
    return {"error": kind, "message": capped(exc),
            **{k: capped(v) if isinstance(v, str) else v for k, v in extra.items()}}


def internal_payload(exc: BaseException) -> dict[str, Any]:
    """The fallback verdict for anything that escaped the work's own error handling."""
    return {"error": "internal", "type": capped(type(exc).__name__, 200),
            "message": capped(exc)}


def _unencodable_type(value: Any, depth: int = 0) -> str | None:
    """The type name of the first value msgpack cannot encode (None: none found)."""
    if depth > 100:
        return "nesting"
    if isinstance(value, int) and not isinstance(value, bool) and not (
            -(2**63) <= value < 2**64):
        return "int"
    if isinstance(value, _ENCODABLE):
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return type(value).__name__
    for item in items:
        found = _unencodable_type(item, depth + 1)
        if found:
            return found
    return None


def storable(payload: Any, limit: int) -> tuple[Any, str]:
    """``(payload, "result")`` when the gate can store it as it is, else the kind=error
    payload that names why not: result_unencodable (with the type) or result_too_large
    (with the encoded size and the limit)."""
    try:
        size = len(msgpack.packb(payload, use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        return {"error": "result_unencodable",
                "type": capped(_unencodable_type(payload) or type(exc).__name__, 200)}, "error"
    if size > limit:
        return {"error": "result_too_large", "size": size, "limit": limit}, "error"
    return payload, "result"
