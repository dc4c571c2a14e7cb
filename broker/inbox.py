"""A run's inbox: one Redis stream, entry 1 its prompt, then tool callbacks in arrival order.

Reads block on the server (XREAD BLOCK), so a waiting run needs no polling loop; a long wait
is several blocking reads each inside the socket timeout (``wait_slice``), so it never times
out on the client side.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from ..ownership import as_text, check_seconds, unavailable_as_error, wait_slice
from .artifacts import ArtifactRef
from .records import unpack_body, unpack_refs
from .settings import Settings


@dataclass(frozen=True)
class Entry:
    """One inbox entry. ``role`` is 'user' only for entry 1, the prompt."""

    id: str
    seq: int
    role: str
    kind: str            # 'prompt' | 'result' | 'error' | 'recovered'
    callback_id: str | None
    payload: Any
    artifacts: list[ArtifactRef] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_stream(cls, entry_id: Any, raw: Mapping[Any, Any]) -> Entry:
        f = {as_text(k): v for k, v in raw.items()}
        text = {k: as_text(v) for k, v in f.items() if k not in ("body", "arts")}
        provenance: dict[str, Any] = {
            "source_tool": text.get("tool") or None,
            "task_id": text.get("task") or None,
            "callback_id": text.get("cb") or None,
            "fence": int(text["fence"]) if text.get("fence") else None,
            "delivered_at": int(text["at"]) / 1000 if text.get("at") else None,
            "submitted_at": int(text["sub"]) / 1000 if text.get("sub") else None,
        }
        if text.get("dlq"):  # a recovered entry: where it was, and whose it was
            provenance["dead_letter_id"] = text["dlq"]
            provenance["original_run_id"] = text.get("orig_run") or None
            provenance["original_fence"] = int(text["orig_fence"]) if text.get(
                "orig_fence") else None
            provenance["original_kind"] = text.get("orig_kind") or None
        return cls(
            id=as_text(entry_id),
            seq=int(text["seq"]),
            role=text["role"],
            kind=text["kind"],
            callback_id=text.get("cb") or None,
            payload=unpack_body(f.get("body")),
            artifacts=unpack_refs(f.get("arts")),
            provenance=provenance,
        )


class Inbox:
    """Read side of one run's inbox. Nothing here can write to it: only the gate and
    ``start_run`` do, and neither can write a role=user entry after entry 1."""

    def __init__(self, client: redis.Redis, key: str,
                 max_wait: float = Settings.max_park) -> None:
        self.client = client
        self.key = key
        self.max_wait = max_wait  # the longest a read may block: a run parks no longer

    def entries(self) -> list[Entry]:
        with unavailable_as_error():
            raw: Any = self.client.xrange(self.key)
        return [Entry.from_stream(entry_id, fields) for entry_id, fields in raw]

    def read(self, after: int = 0, block: float | None = None, count: int = 100) -> list[Entry]:
        """Entries with seq > ``after`` (at most ``count``). With ``block`` (seconds, up to
        ``max_wait``), wait up to that long for at least one when there are none yet."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if block is not None:
            check_seconds("block", block, self.max_wait, positive=False)
        current = self.entries()
        found = [e for e in current if e.seq > after][:count]
        if found or not block:
            return found
        last_id = current[-1].id if current else "0-0"
        step = wait_slice(self.client)
        deadline = time.monotonic() + block  # a wait, not an ownership decision
        while (left := deadline - time.monotonic()) > 0:
            with unavailable_as_error():
                reply: Any = self.client.xread({self.key: last_id}, count=count,
                                               block=max(1, int(min(left, step) * 1000)))
            if not reply:
                continue
            _, items = reply[0]
            last_id = as_text(items[-1][0])
            found = [e for e in (Entry.from_stream(i, f) for i, f in items) if e.seq > after]
            if found:
                return found
        return []

    def wait_for(self, callback_ids: Iterable[str], timeout: float) -> dict[str, Entry]:
        """Block until every named callback has an entry, or ``timeout`` seconds pass.
        Returns what arrived (check the keys to see whether all did)."""
        check_seconds("timeout", timeout, self.max_wait, positive=False)
        wanted = set(callback_ids)
        got: dict[str, Entry] = {}
        deadline = time.monotonic() + timeout  # a wait, not an ownership decision
        after = 0
        while not wanted <= got.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # read() returns at once when entries are there, else blocks on the server
            for entry in self.read(after=after, block=left):
                after = max(after, entry.seq)
                if entry.callback_id in wanted:
                    got[entry.callback_id] = entry
        return got
