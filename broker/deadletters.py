"""Dead letters: every callback that could not be delivered, kept with its reason and history.

Layout (see includes/deadLetter.lua): the stream <ns>:dlq orders letters by arrival, the hash
<ns>:dlq:letter:<id> holds each letter, <ns>:dlq:idx:{reason,sk,tool}:<value> index them
(sorted sets scored by quarantine ms). A letter is *held* (in the stream and indexes) while
quarantined, redelivered or archived; expired and discarded ones are tombstones: record and
history only, kept for max-age. Every state change is one Lua script on Redis server time.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from ..ownership import Scripts, as_text, glob_escape, unavailable_as_error
from .artifacts import ArtifactRef
from .codes import QUARANTINED, REASONS, STATES, TOMBSTONES
from .dlqindex import LetterIndex, check_name
from .keys import BrokerKeys
from .records import unpack_body, unpack_refs
from .settings import Settings

MAX_LIMIT = 1000
PURGE_BATCH = 500     # letters per purge script call
SWEEP_BATCH = 200     # tombstones per sweep script call: bounds how long Redis is busy
REPLAY_ERRORS = {-1: "not_found", -2: "already_redelivered", -3: "not_quarantined",
                 -4: "no_payload", -5: "wrong_session", -6: "target_not_alive",
                 -7: "no_inbox"}



def _ms(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name)
    return int(value) / 1000 if value else None


def _seconds(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} seconds, got {value}")
    return float(value)


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


class LetterNotFound(KeyError):
    """No dead letter (not even a tombstone) with that id."""


class LetterGone(Exception):
    """The letter is already a tombstone (expired or discarded)."""

    def __init__(self, dlq_id: str, state: str) -> None:
        super().__init__(f"dead letter {dlq_id} is already {state}")
        self.dlq_id, self.state = dlq_id, state


class ReplayRefused(Exception):
    """``reason`` is one of REPLAY_ERRORS' names; ``detail`` says more (a state, a run id)."""

    def __init__(self, dlq_id: str, reason: str, detail: str = "") -> None:
        super().__init__(f"replay of dead letter {dlq_id} refused: {reason}"
                         + (f" ({detail})" if detail else ""))
        self.dlq_id, self.reason, self.detail = dlq_id, reason, detail


class RunRef(Protocol):
    """What a replay needs of its target: a Run, a Lease or a RunStatus will do."""

    @property
    def session_key(self) -> str: ...
    @property
    def run_id(self) -> str: ...


@dataclass(frozen=True)
class ReplayResult:
    dlq_id: str
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
    """Letters held now, by reason, tool and state; ``counters`` are the raw running totals
    (``reason:*`` and ``total`` ever quarantined, ``expired:age|overflow``, ``state:*``)."""

    counters: dict[str, int]
    held: int
    by_reason: dict[str, int]
    by_tool: dict[str, int]
    by_state: dict[str, int]   # expired and discarded: tombstones ever made
    oldest_age: float | None   # seconds since the oldest held letter arrived (server time)

    def __getitem__(self, name: str) -> int:
        return self.counters[name]

    def get(self, name: str, default: int = 0) -> int:
        return self.counters.get(name, default)


class DeadLetters:
    def __init__(self, client: redis.Redis, keys: BrokerKeys, scripts: Scripts,
                 settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.settings = settings
        self.index = LetterIndex(client, keys)

    @property
    def _keep_ms(self) -> int:
        return int(self.settings.dlq_max_age * 1000)

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

    def server_time_ms(self) -> int:
        with unavailable_as_error():
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- listing -------------------------------------------------------------------------------

    def list(self, reason: str | None = None, session_key: str | None = None,
             tool: str | None = None, since: float | None = None,
             newer_than: float | None = None, limit: int = 50,
             cursor: str | None = None) -> Page:
        """Held letters (quarantined, redelivered, archived), newest first.

        ``since`` is an epoch time in seconds, ``newer_than`` seconds before Redis' now (give
        one). No filter reads the stream; one of reason / session_key / tool reads that index;
        several walk the smallest index and check the others, examining at most
        ``dlqindex.WALK_FACTOR * limit`` letters per call: such a page may hold fewer than
        ``limit`` letters, even none, and still carry a cursor. Each call costs a fixed number
        of Redis commands whatever the number of letters.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an int in 1..{MAX_LIMIT}, got {limit!r}")
        indexes = self.index.index_keys(reason, session_key, tool)
        low = self._low_ms(since, newer_than)
        with unavailable_as_error():
            ids, nxt = self.index.select(indexes, low, None, limit, cursor)
        return Page(self._load(ids), nxt)

    def _low_ms(self, since: float | None, newer_than: float | None) -> int | None:
        if since is not None and newer_than is not None:
            raise ValueError("give since or newer_than, not both")
        if since is not None:
            return int(_seconds("since", since, positive=False) * 1000)
        if newer_than is not None:
            return self.server_time_ms() - int(_seconds("newer_than", newer_than) * 1000)
        return None

    def _load(self, ids: Sequence[str]) -> builtins.list[DeadLetter]:
        pipe = self.client.pipeline(transaction=False)
        for dlq_id in ids:
            pipe.hgetall(self.keys.letter(dlq_id))
        with unavailable_as_error():
            raws = pipe.execute() if ids else []
        return [DeadLetter.from_hash(raw) for raw in raws if raw]

    # -- state changes -------------------------------------------------------------------------

    def replay(self, dlq_id: str, to: RunRef, by: str = "api") -> ReplayResult:
        """Append a quarantined letter to ``to``'s inbox as role=tool, kind=recovered, with
        provenance naming the letter and its original run. Only into a live or parked run of
        the letter's session key; only once. ``ReplayRefused`` says why not."""
        k, sk, run_id = self.keys, to.session_key, to.run_id
        keys = [k.dlq, k.letter(dlq_id), k.run(sk, run_id), k.inbox(sk, run_id),
                k.resume(sk, run_id)]
        with unavailable_as_error():
            reply = self.scripts("replay", keys, [dlq_id, sk, run_id, check_name("by", by, 200)])
        code = int(reply[0])
        if code != 0:
            raise ReplayRefused(dlq_id, REPLAY_ERRORS[code], as_text(reply[1]))
        return ReplayResult(dlq_id, sk, run_id, as_text(reply[1]), int(reply[2]),
                            as_text(reply[3]) == "parked")

    def discard(self, dlq_id: str, by: str = "api", note: str = "") -> str:
        """Make a letter a 'discarded' tombstone (history kept, payload dropped); returns the
        state it had. ``LetterNotFound`` for an unknown id, ``LetterGone`` for a tombstone."""
        with unavailable_as_error():
            reply = self.scripts("discard", [self.keys.dlq, self.keys.letter(dlq_id)],
                                 [dlq_id, check_name("by", by, 200), self._keep_ms, note])
        code, state = int(reply[0]), as_text(reply[1])
        if code == -1:
            raise LetterNotFound(dlq_id)
        if code == -2:
            raise LetterGone(dlq_id, state)
        return state

    def purge(self, reason: str | None = None, older_than: float | None = None,
              session_key: str | None = None, tool: str | None = None,
              dry_run: bool = False, by: str = "api") -> builtins.list[str]:
        """Discard every held letter that matches (all given filters; ``older_than`` in
        seconds before Redis' now), in batches of PURGE_BATCH. Returns the ids discarded, or
        with ``dry_run`` the ids that would be, changing nothing."""
        indexes = self.index.index_keys(reason, session_key, tool)
        age_ms = None if older_than is None else int(_seconds("older_than", older_than) * 1000)
        high = None if age_ms is None else self.server_time_ms() - age_ms
        args = [check_name("by", by, 200), self._keep_ms, "" if age_ms is None else age_ms,
                reason or "", session_key or "", tool or ""]
        done: builtins.list[str] = []
        cursor: str | None = None
        while True:
            with unavailable_as_error():
                ids, cursor = self.index.select(indexes, None, high, PURGE_BATCH, cursor)
            if dry_run:
                done += ids
            elif ids:
                with unavailable_as_error():
                    reply = self.scripts("purge", [self.keys.dlq], [*args, *ids])
                done += [as_text(dlq_id) for dlq_id in reply]
            if cursor is None:
                return done

    def sweep(self, limit: int = 1000) -> int:
        """Retention now: tombstone letters past max age or beyond max count, oldest first, at
        most ``limit`` in script calls of at most SWEEP_BATCH. Returns how many. Cheap when
        nothing is due, so it can run often (the gate also sweeps on every quarantine)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        done = 0
        s = self.settings
        while done < limit:
            with unavailable_as_error():
                count, more = self.scripts("sweep", [self.keys.dlq],
                                           [self._keep_ms, s.dlq_max_len,
                                            min(SWEEP_BATCH, limit - done)])
            done += int(count)
            if not int(more):
                break
        return done

    # -- drain ---------------------------------------------------------------------------------

    def drain(self, handler: Callable[[DeadLetter], None], reason: str | None = None,
              consumer: str | None = None, group: str = "drain", batch: int = 100,
              claim_idle: float = 300.0, by: str = "api") -> int:
        """Hand each quarantined letter to ``handler`` in stream order, then archive and
        acknowledge it in one step. Returns how many were handled.

        A consumer group on the stream remembers progress: a crash loses nothing and repeats
        at most the letter in flight. This consumer's own pending letters come first, after
        claiming those other consumers left pending longer than ``claim_idle`` seconds (a
        consumer holds a whole read ``batch``). A handler exception stops the drain and
        leaves its letter pending. With ``reason`` the group is ``<group>:<reason>``, so
        letters of other reasons stay for other drains. Letters already redelivered,
        archived or gone are acknowledged and skipped.
        """
        if reason is not None:
            self.index.index_keys(reason, None, None)
            group = f"{group}:{reason}"
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_LIMIT:
            raise ValueError(f"batch must be an int in 1..{MAX_LIMIT}, got {batch!r}")
        idle_ms = int(_seconds("claim_idle", claim_idle, positive=False) * 1000)
        consumer = check_name("consumer", consumer or f"{socket.gethostname()}-{os.getpid()}")
        by = check_name("by", by, 200)
        handled = 0
        with unavailable_as_error():
            self._join(group, consumer, idle_ms, batch)
            for position in ("0", ">"):  # our pending entries first (in order), then new ones
                after = position
                while entries := self._read_group(group, consumer, after, batch):
                    for dlq_id, letter in entries:
                        handled += self._settle(group, consumer, dlq_id, letter, reason,
                                                handler, by)
                    after = entries[-1][0] if position == "0" else ">"
        return handled

    def _join(self, group: str, consumer: str, idle_ms: int, batch: int) -> None:
        """Create the group if need be; take over entries others left pending too long."""
        try:
            self.client.xgroup_create(self.keys.dlq, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start = "0-0"
        while True:  # XAUTOCLAIM pages like SCAN; claimed entries join our own pending list
            reply = self.client.xautoclaim(self.keys.dlq, group, consumer, idle_ms, start,
                                           count=batch)
            start = as_text(reply[0])
            if start == "0-0":
                return

    def _read_group(self, group: str, consumer: str, position: str,
                    batch: int) -> builtins.list[tuple[str, DeadLetter | None]]:
        reply: Any = self.client.xreadgroup(group, consumer, {self.keys.dlq: position}, count=batch)
        ids = [as_text(entry_id) for _, items in reply or [] for entry_id, _ in items]
        letters = {letter.id: letter for letter in self._load(ids)}
        return [(dlq_id, letters.get(dlq_id)) for dlq_id in ids]

    def _settle(self, group: str, consumer: str, dlq_id: str, letter: DeadLetter | None,
                reason: str | None, handler: Callable[[DeadLetter], None], by: str) -> int:
        if letter is None or letter.state != QUARANTINED or reason not in (None,
                                                                          letter.reason):
            self.client.xack(self.keys.dlq, group, dlq_id)  # not ours to hand over
            return 0
        try:
            handler(letter)
        except Exception as exc:
            exc.add_note(f"dead-letter drain stopped at {dlq_id}; it stays pending in {group}")
            raise
        # archived and acknowledged together: a crash before this hands the letter over again
        self.scripts("archive", [self.keys.dlq, self.keys.letter(dlq_id)],
                     [group, dlq_id, by, consumer])
        return 1

    # -- figures -------------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Counts by reason, tool and state, and the age of the oldest held letter. The tools
        come from a SCAN over the tool indexes: an operator's call, not a hot path."""
        k = self.keys
        with unavailable_as_error():
            tools = sorted({as_text(key) for key in self.client.scan_iter(
                match=glob_escape(k.dlq_index("tool", "")) + "*", count=500, _type="zset")})
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k.dlq_stats)
            pipe.xlen(k.dlq)
            pipe.time()
            pipe.xrange(k.dlq, count=1)
            for key in (*(k.dlq_index("reason", r) for r in REASONS), *tools):
                pipe.zcard(key)
            raw, held, (secs, micros), first, *cards = list(pipe.execute())
        counters = {as_text(key): int(v) for key, v in raw.items()}
        now = int(secs) * 1000 + int(micros) // 1000
        oldest = (now - int(as_text(first[0][0]).split("-")[0])) / 1000 if first else None
        prefix = len(k.dlq_index("tool", ""))
        by_reason = dict(zip(REASONS, cards, strict=False))
        by_tool = {key[prefix:]: n for key, n in zip(tools, cards[len(REASONS):], strict=True)}
        return Stats(counters, int(held), {r: n for r, n in by_reason.items() if n},
                     {t: n for t, n in by_tool.items() if n},
                     {s: counters.get(f"state:{s}", 0) for s in STATES}, oldest)
