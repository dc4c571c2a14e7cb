"""``DeadLetters``: the operator's API over every callback that could not be delivered, kept
with its reason and history: list, show, replay, discard, purge, sweep, drain, stats.

Layout (see includes/deadLetter.lua), per shard (ownership/keys.py): the stream
<ns>:{<shard>}:dlq orders the shard's letters by arrival, the hash
<ns>:{<shard>}:dlq:letter:<id> holds each letter, <ns>:{<shard>}:dlq:idx:{reason,sk,tool,kind,
state}:<value> index them (sorted sets scored by quarantine ms; state: held states only). A
letter's id names its shard (keys.letter_shard). A letter is *held* (in the stream and
indexes) while quarantined, redelivered or archived; expired and discarded ones are
tombstones: record and history only, kept for max-age. Every state change is one Lua script
on one shard's keys, on Redis server time; reads fan out over the shards (index.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import redis

from ...ownership import (
    ErrorCode,
    Scripts,
    as_text,
    check_seconds,
    server_time_ms,
    shard_of,
    unavailable_as_error,
)
from ..codes import REPLAY_REFUSALS
from ..keys import BrokerKeys, letter_shard
from ..settings import Settings
from . import drain as draining
from . import figures
from .index import MAX_LIMIT, LetterIndex, check_name
from .letter import (
    DeadLetter,
    LetterGone,
    LetterNotFound,
    Page,
    ReplayRefused,
    ReplayResult,
    RunRef,
    Stats,
    load_letters,
)

PURGE_BATCH = 500     # letters per purge script call
SWEEP_BATCH = 200     # tombstones per sweep script call: bounds how long Redis is busy

# DeadLetters has a method named ``list``, which hides the builtin in its class body: its
# annotations use this alias, made out here where ``list`` is still the builtin.
LetterIds = list[str]


def by_shard(ids: list[str]) -> list[tuple[int, list[str]]]:
    """Letter ids grouped by the shard that holds them (each group in the given order): a
    script call touches one shard's keys."""
    groups: dict[int, list[str]] = {}
    for letter_id in ids:
        groups.setdefault(letter_shard(letter_id), []).append(letter_id)
    return sorted(groups.items())


def request_id() -> str:
    """One id per state-changing script call: the client's automatic retry after a lost reply
    resends it, and the script answers that retry with the first call's outcome."""
    return uuid.uuid4().hex


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

    def get(self, dead_letter_id: str) -> DeadLetter:
        with unavailable_as_error():
            raw = self.client.hgetall(self.keys.dead_letter(dead_letter_id))
        if not raw:
            raise LetterNotFound(dead_letter_id)
        return DeadLetter.from_hash(raw)

    def count(self) -> int:
        """Letters in the stream (tombstones are not counted)."""
        pipe = self.client.pipeline(transaction=False)
        for shard in self.keys.shards:
            pipe.xlen(self.keys.dead_letters(shard))
        with unavailable_as_error():
            return sum(int(n) for n in pipe.execute())

    def server_time_ms(self) -> int:
        return server_time_ms(self.client)

    # -- listing -------------------------------------------------------------------------------

    def list(self, reason: str | None = None, session_key: str | None = None,
             tool: str | None = None, since: float | None = None,
             newer_than: float | None = None, limit: int = 50,
             cursor: str | None = None, kind: str | None = None,
             state: str | None = None) -> Page:
        """Held letters (quarantined, redelivered, archived), newest first.

        ``since`` is an epoch time in seconds, ``newer_than`` seconds before Redis' now (give
        one). ``kind`` is one of KINDS, ``state`` one of HELD_STATES. No filter reads the
        streams; one of reason / session_key / tool / kind / state reads that index;
        several walk the smallest index and check the others, examining at most
        ``index.WALK_FACTOR * limit`` letters per shard and call: such a page may hold fewer
        than ``limit`` letters, even none, and still carry a cursor. A session_key reads its
        one shard, anything else every shard (merged, see index.py). Each call costs a fixed
        number of Redis commands whatever the number of letters.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an int in 1..{MAX_LIMIT}, got {limit!r}")
        filters = self.index.filters(reason, session_key, tool, kind, state)
        low = self._low_ms(since, newer_than)
        with unavailable_as_error():
            ids, nxt = self.index.select(filters, low, None, limit, cursor)
        return Page(load_letters(self.client, self.keys, ids), nxt)

    def _low_ms(self, since: float | None, newer_than: float | None) -> int | None:
        if since is not None and newer_than is not None:
            raise ValueError("give since or newer_than, not both")
        if since is not None:
            return int(check_seconds("since", since, positive=False) * 1000)
        if newer_than is not None:
            return self.server_time_ms() - int(check_seconds("newer_than", newer_than) * 1000)
        return None

    # -- state changes -------------------------------------------------------------------------

    def replay(self, dead_letter_id: str, to: RunRef, by: str = "api",
               force: bool = False) -> ReplayResult:
        """Append a quarantined letter to ``to``'s inbox as role=tool, kind=recovered, with
        provenance naming the letter and its original run. Only into a live or parked run of
        the letter's session key; only once; a kind=error letter (a notice such as
        ``{"error": "cancelled"}``, not a result) only with ``force``. ``ReplayRefused`` says
        why not."""
        if not force:
            with unavailable_as_error():
                kind, state = self.client.hmget(self.keys.dead_letter(dead_letter_id),
                                                ["kind", "state"])
            # kind never changes; other states get the script's own refusal
            if kind in (b"error", "error") and state in (b"quarantined", "quarantined"):
                raise ReplayRefused(dead_letter_id, "error_kind",
                                    "it is kind=error, an error notice rather than a result; "
                                    "pass --force (force=True) to hand it over anyway")
        k, sk, run_id = self.keys, to.session_key, to.run_id
        shard = letter_shard(dead_letter_id)
        target = [k.run(sk, run_id), k.inbox(sk, run_id), k.resume(sk, run_id)]
        if shard_of(sk) != shard:
            # another shard is another session: the script refuses (wrong_session) before it
            # reads the target's keys, so stand-ins of the letter's shard keep it in one slot
            target = [k.dead_letters(shard) + ":elsewhere"] * 3
        keys = [k.dead_letters(shard), k.dead_letter(dead_letter_id), *target]
        with unavailable_as_error():
            reply = self.scripts("replay", keys, [dead_letter_id, sk, run_id,
                                                  check_name("by", by, 200), request_id()])
        code = int(reply[0])
        if code != 0:
            raise ReplayRefused(dead_letter_id, REPLAY_REFUSALS[ErrorCode(code)],
                                as_text(reply[1]))
        return ReplayResult(dead_letter_id, sk, run_id, as_text(reply[1]), int(reply[2]),
                            as_text(reply[3]) == "parked")

    def discard(self, dead_letter_id: str, by: str = "api", note: str = "") -> str:
        """Make a letter a 'discarded' tombstone (history kept, payload dropped); returns the
        state it had. ``LetterNotFound`` for an unknown id, ``LetterGone`` for a tombstone."""
        keys = [self.keys.dead_letters(letter_shard(dead_letter_id)),
                self.keys.dead_letter(dead_letter_id)]
        with unavailable_as_error():
            reply = self.scripts("discard", keys, [dead_letter_id, check_name("by", by, 200),
                                                   self._keep_ms, note, request_id()])
        code, state = int(reply[0]), as_text(reply[1])
        if code == ErrorCode.LETTER_NOT_FOUND:
            raise LetterNotFound(dead_letter_id)
        if code == ErrorCode.LETTER_GONE:
            raise LetterGone(dead_letter_id, state)
        return state

    def purge(self, reason: str | None = None, older_than: float | None = None,
              session_key: str | None = None, tool: str | None = None,
              dry_run: bool = False, by: str = "api", kind: str | None = None,
              state: str | None = None) -> LetterIds:
        """Discard every held letter that matches (all given filters; ``older_than`` in
        seconds before Redis' now), in batches of PURGE_BATCH. Returns the ids discarded, or
        with ``dry_run`` the ids that would be, changing nothing."""
        filters = self.index.filters(reason, session_key, tool, kind, state)
        age_ms = (None if older_than is None
                  else int(check_seconds("older_than", older_than) * 1000))
        high = None if age_ms is None else self.server_time_ms() - age_ms
        args = [check_name("by", by, 200), self._keep_ms, "" if age_ms is None else age_ms,
                reason or "", session_key or "", tool or "", kind or "", state or ""]
        done: LetterIds = []
        cursor: str | None = None
        while True:
            with unavailable_as_error():
                ids, cursor = self.index.select(filters, None, high, PURGE_BATCH, cursor)
            if dry_run:
                done += ids
            for shard, batch in ([] if dry_run else by_shard(ids)):
                with unavailable_as_error():
                    reply = self.scripts("purge", [self.keys.dead_letters(shard)],
                                         [*args, request_id(), *batch])
                done += [as_text(letter_id) for letter_id in reply]
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
        for shard in self.keys.shards:  # max count holds per shard, as the gate's own sweep
            more = 1
            while done < limit and more:
                with unavailable_as_error():
                    count, more = self.scripts("sweep", [self.keys.dead_letters(shard)],
                                               [self._keep_ms, s.dlq_max_len,
                                                min(SWEEP_BATCH, limit - done)])
                done += int(count)
                more = int(more)
        return done

    def drain(self, handler: Callable[[DeadLetter], None], reason: str | None = None,
              consumer: str | None = None, group: str = "drain", batch: int = 100,
              claim_idle: float = 300.0, by: str = "api", kind: str | None = None) -> int:
        """Hand each quarantined letter to ``handler`` in stream order (ids merged across the
        shards: quarantine order, to the millisecond), then archive and acknowledge it in one
        step. Returns how many were handled.

        A consumer group on each shard's stream remembers progress: a crash loses nothing
        and repeats at most the letter in flight. This consumer's own pending letters come
        first, after claiming those other consumers left pending longer than ``claim_idle``
        seconds (a consumer holds a whole read ``batch`` of each shard). A handler exception
        stops the drain and leaves its letter pending; a handler raising ``KeepQuarantined``
        leaves its letter quarantined and pending (a later drain hands it over again) and the
        drain goes on.
        With ``reason`` (``kind``) the group is ``<group>:<reason>`` (``:kind=<kind>``), so
        letters of other reasons stay for other drains. Letters already redelivered,
        archived or gone are acknowledged and skipped.
        """
        return draining.drain(self, handler, reason, consumer, group, batch, claim_idle, by,
                              kind)

    def reindex(self, batch: int = 500) -> int:
        """Index every held letter by kind and state (letters quarantined before those
        indexes existed); idempotent, in script calls of ``batch`` letters. Returns how many
        were indexed."""
        done = 0
        for stream in map(self.keys.dead_letters, self.keys.shards):
            after = "-"
            while True:
                with unavailable_as_error():
                    rows: Any = self.client.xrange(stream, min=after, count=batch)
                ids = [as_text(entry_id) for entry_id, _ in rows]
                if not ids:
                    break
                with unavailable_as_error():
                    done += int(self.scripts("reindex", [stream], ids))
                after = f"({ids[-1]}"
        return done

    # -- figures -------------------------------------------------------------------------------

    def stats(self, kind: str | None = None, state: str | None = None) -> Stats:
        """Counts by reason, tool, kind and state, and the age of the oldest held letter; of
        the held letters of ``kind`` and/or ``state`` when given (see ``figures``)."""
        return figures.stats(self.client, self.keys, self.index, kind, state)
