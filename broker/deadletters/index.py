"""Choosing dead letters page by page, newest first, at a cost that does not grow with their
number: the stream when nothing is filtered, one index (sorted set scored by quarantine ms)
for one filter, the smallest index checked against the others for several. Every filter has
its index (reason, session key, tool, kind, held state): none scans the letters.

A cursor is ``s:<stream id>`` (stream) or ``z:<score>:<member>`` (an index). Equal scores
(same millisecond) sort by member, so a (score, member) position is exact even when letters
are removed between pages.
"""

from __future__ import annotations

from typing import Any

import redis

from ...ownership import as_text
from ..codes import ARCHIVED, KINDS, QUARANTINED, REASONS, REDELIVERED
from ..keys import BrokerKeys

MAX_LIMIT = 1000      # letters per page (and per drain read)
WALK_FACTOR = 20      # several filters: at most WALK_FACTOR * limit letters examined per page
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


class LetterIndex:
    def __init__(self, client: redis.Redis, keys: BrokerKeys) -> None:
        self.client = client
        self.keys = keys

    def index_keys(self, reason: str | None, session_key: str | None,
                   tool: str | None, kind: str | None = None,
                   state: str | None = None) -> list[str]:
        """The index keys of the given filters; ValueError naming a bad one."""
        for name, value, allowed in (("reason", reason, REASONS), ("kind", kind, KINDS),
                                     ("state", state, HELD_STATES)):
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        given = (("reason", reason), ("sk", session_key), ("tool", tool), ("kind", kind),
                 ("state", state))
        return [self.keys.dead_letter_index(f, check_name(FILTER_NAMES[f], v))
                for f, v in given if v is not None]

    def select(self, indexes: list[str], low: int | None, high: int | None, limit: int,
               cursor: str | None) -> Ids:
        """Up to ``limit`` ids of held letters in every index (all, without indexes),
        quarantined between ``low`` and ``high`` ms (inclusive), newest first, after
        ``cursor``."""
        kind, pos = parse_cursor(cursor)
        if kind not in (None, "z" if indexes else "s"):
            raise ValueError("cursor does not belong to a listing with these filters")
        if not indexes:
            return self._from_stream(low, high, limit, pos)
        if len(indexes) == 1:
            rows = self._zpage(indexes[0], low, high, limit + 1, pos)
            nxt = _z_cursor(rows[limit - 1]) if len(rows) > limit else None
            return [member for member, _ in rows[:limit]], nxt
        return self._walk(indexes, low, high, limit, pos)

    def _from_stream(self, low: int | None, high: int | None, limit: int,
                     pos: str | None) -> Ids:
        top = f"({pos}" if pos else ("+" if high is None else str(high))
        rows: Any = self.client.xrevrange(self.keys.dead_letters, max=top,
                                          min="-" if low is None else str(low),
                                          count=limit + 1)
        ids = [as_text(entry_id) for entry_id, _ in rows]
        return ids[:limit], ("s:" + ids[limit - 1] if len(ids) > limit else None)

    def _zpage(self, key: str, low: int | None, high: int | None, count: int,
               pos: str | None) -> list[tuple[str, int]]:
        """Up to ``count`` (member, score) of one index, newest first, after ``pos``."""
        bottom = "-inf" if low is None else str(low)
        pipe = self.client.pipeline(transaction=False)
        if pos is None:
            pipe.zrevrangebyscore(key, "+inf" if high is None else str(high), bottom,
                                  start=0, num=count, withscores=True)
            return [(as_text(m), int(s)) for m, s in pipe.execute()[0]]
        score, member = pos.split(":", 1)
        # the ties are the letters of one millisecond: a handful, whatever the total
        pipe.zrevrangebyscore(key, score, score)
        pipe.zrevrangebyscore(key, f"({score}", bottom, start=0, num=count, withscores=True)
        ties, older = pipe.execute()
        rows = [(m, int(score)) for m in map(as_text, ties) if m < member]
        return (rows + [(as_text(m), int(s)) for m, s in older])[:count]

    def _walk(self, indexes: list[str], low: int | None, high: int | None, limit: int,
              pos: str | None) -> Ids:
        pipe = self.client.pipeline(transaction=False)
        for key in indexes:
            pipe.zcard(key)
        cards = pipe.execute()
        if min(cards) == 0:
            return [], None
        walk, *others = [key for _, key in sorted(zip(cards, indexes, strict=True))]
        found: list[str] = []
        budget = WALK_FACTOR * limit
        while budget > 0:
            chunk = min(budget, 4 * limit)
            rows = self._zpage(walk, low, high, chunk, pos)
            pipe = self.client.pipeline(transaction=False)
            for key in others:
                pipe.zmscore(key, [member for member, _ in rows] or ["-"])
            scores = pipe.execute()
            for i, row in enumerate(rows):
                budget -= 1
                pos = _z_cursor(row)[2:]
                if all(column[i] is not None for column in scores):
                    found.append(row[0])
                    if len(found) == limit:
                        return found, "z:" + pos
            if len(rows) < chunk:
                return found, None
        return found, None if pos is None else "z:" + pos


def parse_cursor(cursor: str | None) -> tuple[str | None, str | None]:
    if cursor is None:
        return None, None
    kind, _, pos = cursor.partition(":") if isinstance(cursor, str) else ("", "", "")
    if kind not in ("s", "z") or not pos or (kind == "z" and ":" not in pos):
        raise ValueError(f"cursor {cursor!r:.80} is not one this listing returned")
    return kind, pos


def _z_cursor(row: tuple[str, int]) -> str:
    return f"z:{row[1]}:{row[0]}"
