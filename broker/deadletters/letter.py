"""A dead letter as Python sees it, and the answers and refusals of the dead-letter API.

The record is a Redis hash written only by Lua (includes/deadLetter.lua); ``DeadLetter.from_hash``
is its one reader, so the field names of the wire live here and in the Lua, nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from ...ownership import as_text, unavailable_as_error
from ..artifacts import ArtifactRef
from ..codes import TOMBSTONES
from ..keys import BrokerKeys
from ..records import unpack_body, unpack_refs


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
    updated_at: float | None = None
    payload: Any = None
    payload_truncated: int = 0          # size of a body too large to keep (0: kept whole)
    artifacts: list[ArtifactRef] = field(default_factory=list)
    raw: bytes | None = None             # undecodable input, capped, for forensics
    raw_size: int | None = None
    claimed_session_key: str | None = None   # what undecodable input said, unverified
    claimed_tool: str | None = None
    redelivered_to: str | None = None    # run id a replay went to
    redelivered_entry: str | None = None  # its inbox entry id
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tombstone(self) -> bool:
        return self.state in TOMBSTONES

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> DeadLetter:
        binary = {as_text(k): v for k, v in raw.items()}
        f = {k: as_text(v) for k, v in binary.items() if k not in ("body", "arts", "raw")}

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
            updated_at=_ms(f, "updated"),
            payload=unpack_body(binary.get("body")),
            payload_truncated=int(f.get("truncated") or 0),
            artifacts=unpack_refs(binary.get("arts")),
            raw=raw_bytes if isinstance(raw_bytes, bytes) and raw_bytes else None,
            raw_size=opt_int("raw_size"),
            claimed_session_key=opt("claimed_sk"), claimed_tool=opt("claimed_tool"),
            redelivered_to=opt("to_run"), redelivered_entry=opt("to_entry"),
            history=[{**step, "at": step["at"] / 1000} if "at" in step else step
                     for step in (json.loads(f["history"]) if f.get("history") else [])],
        )


def load_letters(client: redis.Redis, keys: BrokerKeys, ids: Sequence[str]) -> list[DeadLetter]:
    """The letters of ``ids`` that still exist, in order, read in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for letter_id in ids:
        pipe.hgetall(keys.dead_letter(letter_id))
    with unavailable_as_error():
        raws = pipe.execute() if ids else []
    return [DeadLetter.from_hash(raw) for raw in raws if raw]


class LetterNotFound(KeyError):
    """No dead letter (not even a tombstone) with that id."""


class LetterGone(Exception):
    """The letter is already a tombstone (expired or discarded)."""

    def __init__(self, dead_letter_id: str, state: str) -> None:
        super().__init__(f"dead letter {dead_letter_id} is already {state}")
        self.dead_letter_id, self.state = dead_letter_id, state


class ReplayRefused(Exception):
    """``reason`` is one of ``codes.REPLAY_REFUSALS``' names; ``detail`` says more (a state, a
    run id)."""

    def __init__(self, dead_letter_id: str, reason: str, detail: str = "") -> None:
        super().__init__(f"replay of dead letter {dead_letter_id} refused: {reason}"
                         + (f" ({detail})" if detail else ""))
        self.dead_letter_id, self.reason, self.detail = dead_letter_id, reason, detail


class KeepQuarantined(Exception):
    """Raised by a drain handler that could not export a letter whole (an image missing): the
    drain leaves it quarantined and pending for a later drain, and goes on with the others."""


class RunRef(Protocol):
    """What a replay needs of its target: a Run, a Lease or a RunStatus will do."""

    @property
    def session_key(self) -> str: ...
    @property
    def run_id(self) -> str: ...


@dataclass(frozen=True)
class ReplayResult:
    dead_letter_id: str
    session_key: str
    run_id: str
    entry_id: str      # the recovered entry in the target's inbox
    seq: int
    resumed: bool      # the target was parked: a resume signal was left for it


@dataclass(frozen=True)
class Page:
    """Newest first. ``cursor`` continues the listing (None: nothing more)."""

    letters: list[DeadLetter]
    cursor: str | None


@dataclass(frozen=True)
class Stats:
    """Letters held now, by reason, tool, state and kind; ``counters`` are the raw running
    totals (``reason:*`` and ``total`` ever quarantined, ``expired:age|overflow``,
    ``state:*``). With ``filters`` every count is of the held letters matching them, and
    ``by_state`` names held states only (tombstones are not indexed)."""

    counters: dict[str, int]
    held: int
    by_reason: dict[str, int]
    by_tool: dict[str, int]
    by_state: dict[str, int]   # expired and discarded: tombstones ever made
    oldest_age: float | None   # seconds since the oldest held letter arrived (server time)
    by_kind: dict[str, int] = field(default_factory=dict)
    filters: dict[str, str] = field(default_factory=dict)  # the kind/state the counts are of

    def __getitem__(self, name: str) -> int:
        return self.counters[name]

    def get(self, name: str, default: int = 0) -> int:
        return self.counters.get(name, default)
