"""The digest of a task's arguments that an envelope signs: how a worker proves the arguments
it received are the ones the run signed for. Canonical msgpack, so any encoder agrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgpack  # type: ignore[import-untyped]


def digest_args(task_args: Mapping[str, Any]) -> str:
    """Hex sha256 of the canonical msgpack of ``task_args``: map keys sorted, tuples as lists.

    The worker recomputes it from the args it received to prove they are the ones the run
    signed for. JSON-native values (str, int, float, bool, None, lists, str-keyed dicts) survive
    a JSON round trip with the same digest.
    """
    try:
        packed = msgpack.packb(_canonical(task_args), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"task_args is not msgpack-encodable: {exc}") from exc
    return hashlib.sha256(packed).hexdigest()


def _canonical(value: object) -> object:
    if isinstance(value, Mapping):
        # Sort by the packed key so any msgpack-able key type has one order.
        items = [(_canonical(k), _canonical(v)) for k, v in value.items()]
        items.sort(key=lambda kv: bytes(msgpack.packb(kv[0], use_bin_type=True)))
        return dict(items)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value
