"""Choosing dead letters page by page, newest first, at a cost that does not grow with their
number: the stream when nothing is filtered, one index (sorted set scored by quarantine ms)
for one filter, the smallest index checked against the others for several. Every filter has
its index (reason, session key, tool, kind, held state): none scans the letters.

Letters live in the shard of their session key (ownership/keys.py): a session key filter reads
its one shard, any other listing every shard, each shard's commands in one pipeline per step,
and merges the shards' answers (merge.py). A page costs a fixed number of round trips.

A cursor is ``s:<stream id>`` (stream) or ``z:<score>:<member>`` (an index); it is a position
in the order of every shard at once (ids and scores are comparable across shards). Equal
scores (same millisecond) sort by member, so a (score, member) position is exact even when
letters are removed between pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from ...ownership import as_text, shard_of
from ..codes import ARCHIVED, KINDS, QUARANTINED, REASONS, REDELIVERED
from ..keys import BrokerKeys
from .merge import Row, bounded_rows, decided, newest_ids, newest_rows

MAX_LIMIT = 1000      # letters per page (and per drain read)
WALK_FACTOR = 20      # several filters: at most WALK_FACTOR * limit letters examined per shard
FILTER_NAMES = {"reason": "reason", "sk": "session_key", "tool": "tool", "kind": "kind",
                "state": "state"}
HELD_STATES = (QUARANTINED, REDELIVERED, ARCHIVED)  # the states a listing can filter on

Ids = tuple[list[str], str | None]   # letter ids, newest first, and the cursor after them


# The argument checks of listing, purge and drain: what a caller may name and for how long.
def check_name(field: str, value: object, limit: int = 512) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{field} must be a non-empty str of at most {limit} chars, "
                         f"got {value!r:.80}")
    return value


@dataclass(frozen=True)
class Filters:
    """Checked filters: (index field, value) pairs and the shards that can hold a match."""

    given: tuple[tuple[str, str], ...]
    shards: tuple[int, ...]

    def index_keys(self, keys: BrokerKeys, shard: int) -> list[str]:
        return [keys.dead_letter_index(shard, f, v) for f, v in self.given]

    def __bool__(self) -> bool:
        return bool(self.given)


@dataclass
class _Walk:
    """One shard's walk: its smallest index, the others, where it is and what it found."""

    walk: str
    others: list[str]
    budget: int
    pos: Row | None
    chunk: int               # rows its next step reads: limit + 1 first, 4 times more after
    found: list[Row] = field(default_factory=list)
    done: bool = False       # every letter it could match is examined (or found enough)


class LetterIndex:
    def __init__(self, client: redis.Redis, keys: BrokerKeys) -> None:
        self.client = client
        self.keys = keys

    def filters(self, reason: str | None, session_key: str | None,
                tool: str | None, kind: str | None = None,
                state: str | None = None) -> Filters:
        """The given filters, checked; ValueError naming a bad one."""
        for name, value, allowed in (("reason", reason, REASONS), ("kind", kind, KINDS),
                                     ("state", state, HELD_STATES)):
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        given = (("reason", reason), ("sk", session_key), ("tool", tool), ("kind", kind),
                 ("state", state))
        checked = tuple((f, check_name(FILTER_NAMES[f], v)) for f, v in given if v is not None)
        shards = (shard_of(session_key),) if session_key is not None else tuple(self.keys.shards)
        return Filters(checked, shards)

    def select(self, filters: Filters, low: int | None, high: int | None, limit: int,
               cursor: str | None) -> Ids:
        """Up to ``limit`` ids of held letters in every index (all, without filters),
        quarantined between ``low`` and ``high`` ms (inclusive), newest first, after
        ``cursor``."""
        kind, pos = parse_cursor(cursor)
        if kind not in (None, "z" if filters else "s"):
            raise ValueError("cursor does not belong to a listing with these filters")
        if not filters:
            return self._from_stream(filters.shards, low, high, limit, pos)
        row = _row(pos) if pos is not None else None
        if len(filters.given) == 1:
            pipe = self.client.pipeline(transaction=False)
            for shard in filters.shards:
                _queue_zpage(pipe, filters.index_keys(self.keys, shard)[0], low, high,
                             limit + 1, row)
            replies = iter(pipe.execute())
            pages = [_parse_zpage(replies, row, limit + 1) for _ in filters.shards]
            rows, nxt = newest_rows(pages, limit)
            return [member for _, member in rows], None if nxt is None else _z_cursor(nxt)
        return self._walk(filters, low, high, limit, row)

    def _from_stream(self, shards: tuple[int, ...], low: int | None, high: int | None,
                     limit: int, pos: str | None) -> Ids:
        top = f"({pos}" if pos else ("+" if high is None else str(high))
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.xrevrange(self.keys.dead_letters(shard), max=top,
                           min="-" if low is None else str(low), count=limit + 1)
        replies: Any = pipe.execute()
        ids, nxt = newest_ids([[as_text(i) for i, _ in rows] for rows in replies], limit)
        return ids, None if nxt is None else "s:" + nxt

    def _walk(self, filters: Filters, low: int | None, high: int | None, limit: int,
              pos: Row | None) -> Ids:
        """Each shard walks its smallest index newest first and checks the others, at most
        WALK_FACTOR * limit rows; all shards step together, one pipeline per step, until
        the page is decided (merge.decided) or every shard is done or out of budget."""
        pipe = self.client.pipeline(transaction=False)
        indexes = [filters.index_keys(self.keys, shard) for shard in filters.shards]
        for keys in indexes:
            for key in keys:
                pipe.zcard(key)
        cards = iter(pipe.execute())
        walks = []
        for keys in indexes:
            sizes = [next(cards) for _ in keys]
            walk, *others = [key for _, key in sorted(zip(sizes, keys, strict=True))]
            walks.append(_Walk(walk, others, WALK_FACTOR * limit, pos, limit + 1,
                               done=min(sizes) == 0))
        while active := [w for w in walks if not w.done and w.budget > 0]:
            chunks = [min(w.budget, w.chunk) for w in active]
            pipe = self.client.pipeline(transaction=False)
            for w, chunk in zip(active, chunks, strict=True):
                _queue_zpage(pipe, w.walk, low, high, chunk, w.pos)
            replies = iter(pipe.execute())
            pages = [_parse_zpage(replies, w.pos, chunk) for w, chunk in zip(active, chunks,
                                                                              strict=True)]
            pipe = self.client.pipeline(transaction=False)
            for w, rows in zip(active, pages, strict=True):
                for key in w.others:
                    pipe.zmscore(key, [member for _, member in rows] or ["-"])
            columns = iter(pipe.execute())
            for w, rows, chunk in zip(active, pages, chunks, strict=True):
                _step(w, rows, [next(columns) for _ in w.others], chunk, limit)
            if decided([w.found for w in walks],
                       [w.pos for w in walks if not w.done and w.pos is not None], limit):
                break
        stops = [w.pos for w in walks if not w.done and w.pos is not None]
        rows, nxt = bounded_rows([w.found for w in walks], stops, limit)
        return [member for _, member in rows], None if nxt is None else _z_cursor(nxt)


def _step(w: _Walk, rows: list[Row], scores: list[list[Any]], chunk: int, limit: int) -> None:
    """One shard's step of a walk: examine ``rows`` against the other indexes' ``scores``."""
    w.chunk *= 4  # dense matches end in the first step; sparse ones take few, longer steps
    for i, row in enumerate(rows):
        w.budget -= 1
        w.pos = row
        if all(column[i] is not None for column in scores):
            w.found.append(row)
            if len(w.found) == limit:
                # its older letters can never make this page: it has ``limit`` newer
                w.done = True
                return
    if len(rows) < chunk:
        w.done = True


def _queue_zpage(pipe: Any, key: str, low: int | None, high: int | None, count: int,
                 pos: Row | None) -> None:
    """Queue up to ``count`` rows of one index, newest first, after ``pos``: one command,
    two after a position (the ties of its millisecond, then the older rows)."""
    bottom = "-inf" if low is None else str(low)
    if pos is None:
        pipe.zrevrangebyscore(key, "+inf" if high is None else str(high), bottom,
                              start=0, num=count, withscores=True)
        return
    score = str(pos[0])
    # the ties are the letters of one millisecond: a handful, whatever the total
    pipe.zrevrangebyscore(key, score, score)
    pipe.zrevrangebyscore(key, f"({score}", bottom, start=0, num=count, withscores=True)


def _parse_zpage(replies: Iterator[Any], pos: Row | None, count: int) -> list[Row]:
    """The rows ``_queue_zpage`` queued, taken off ``replies``."""
    if pos is None:
        return [(int(s), as_text(m)) for m, s in next(replies)]
    ties, older = next(replies), next(replies)
    rows = [(pos[0], m) for m in map(as_text, ties) if m < pos[1]]
    return (rows + [(int(s), as_text(m)) for m, s in older])[:count]


def parse_cursor(cursor: str | None) -> tuple[str | None, str | None]:
    if cursor is None:
        return None, None
    kind, _, pos = cursor.partition(":") if isinstance(cursor, str) else ("", "", "")
    if kind not in ("s", "z") or not pos or (kind == "z" and ":" not in pos):
        raise ValueError(f"cursor {cursor!r:.80} is not one this listing returned")
    if kind == "s" and not _is_stream_id(pos):
        raise ValueError(f"cursor {cursor!r:.80} is not one this listing returned")
    if kind == "z" and not pos.split(":", 1)[0].lstrip("-").isdigit():
        raise ValueError(f"cursor {cursor!r:.80} is not one this listing returned")
    return kind, pos


def _is_stream_id(pos: str) -> bool:
    ms, dash, seq = pos.partition("-")
    return ms.isdigit() and (not dash or seq.isdigit())


def _row(pos: str) -> Row:
    score, member = pos.split(":", 1)
    return int(score), member


def _z_cursor(row: Row) -> str:
    return f"z:{row[0]}:{row[1]}"
