"""Dead letters: every callback that could not be delivered, kept with its reason and history.

Layout (see includes/deadLetter.lua): the stream <ns>:dlq orders letters by arrival, the hash
<ns>:dlq:letter:<id> holds each letter, <ns>:dlq:idx:{reason,sk,tool}:<value> index them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from leasegate.ownership.lua import Scripts
from leasegate.ownership.registry import unavailable_as_error

from .artifacts import ArtifactRef
from .inbox import unpack_body, unpack_refs
from .keys import BrokerKeys
from .settings import Settings

STATES = ("quarantined", "redelivered", "archived", "expired", "discarded")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name)
    return int(value) / 1000 if value else None


@dataclass(frozen=True)
class DeadLetter:
    """One quarantined callback. Times are Redis server time in seconds."""

    id: str
    reason: str
    state: str
    detail: str = ""
    session_key: str | None = None
    run_id: str | None = None
    fence: int | None = None
    owner_run_id: str | None = None
    owner_fence: int | None = None
    tool: str | None = None
    task_id: str | None = None
    callback_id: str | None = None
    kind: str | None = None
    run_state: str | None = None
    submitted_at: float | None = None
    completed_at: float | None = None
    quarantined_at: float | None = None
    deadline_at: float | None = None
    payload: Any = None
    payload_truncated: int = 0          # size of a body too large to keep (0: kept whole)
    artifacts: list[ArtifactRef] = field(default_factory=list)
    raw: bytes | None = None             # undecodable input, capped, for forensics
    raw_size: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> DeadLetter:
        binary = {_text(k): v for k, v in raw.items()}
        f = {k: _text(v) for k, v in binary.items() if k not in ("body", "arts", "raw")}

        def opt(name: str) -> str | None:
            return f.get(name) or None

        def opt_int(name: str) -> int | None:
            return int(f[name]) if f.get(name) else None

        raw_bytes = binary.get("raw")
        return cls(
            id=f["id"], reason=f["reason"], state=f["state"], detail=f.get("detail", ""),
            session_key=opt("sk"), run_id=opt("run"), fence=opt_int("fence"),
            owner_run_id=opt("owner_run"), owner_fence=opt_int("owner_fence"),
            tool=opt("tool"), task_id=opt("task"), callback_id=opt("cb"), kind=opt("kind"),
            run_state=opt("run_state"),
            submitted_at=_ms(f, "submitted"), completed_at=_ms(f, "completed"),
            quarantined_at=_ms(f, "quarantined"), deadline_at=_ms(f, "deadline"),
            payload=unpack_body(binary.get("body")),
            payload_truncated=int(f.get("truncated") or 0),
            artifacts=unpack_refs(binary.get("arts")),
            raw=raw_bytes if isinstance(raw_bytes, bytes) and raw_bytes else None,
            raw_size=opt_int("raw_size"),
            history=json.loads(f["history"]) if f.get("history") else [],
        )


class LetterNotFound(KeyError):
    """No dead letter (not even a tombstone) with that id."""


class DeadLetters:
    def __init__(self, client: redis.Redis, keys: BrokerKeys, scripts: Scripts,
                 settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.settings = settings

    def get(self, dlq_id: str) -> DeadLetter:
        with unavailable_as_error():
            raw = self.client.hgetall(self.keys.letter(dlq_id))
        if not raw:
            raise LetterNotFound(dlq_id)
        return DeadLetter.from_hash(raw)

    def count(self) -> int:
        """Letters in the stream (tombstones are not counted)."""
        with unavailable_as_error():
            return int(self.client.xlen(self.keys.dlq))

    def stats(self) -> dict[str, int]:
        with unavailable_as_error():
            raw = self.client.hgetall(self.keys.dlq_stats)
        return {_text(k): int(v) for k, v in raw.items()}
