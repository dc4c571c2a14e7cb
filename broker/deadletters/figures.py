"""Counting dead letters for ``DeadLetters.stats``: by reason, tool, kind and held state, of all
held letters or of those of one kind and/or state, from the indexes alone (ZCARD unfiltered,
ZINTERCARD filtered): no letter is read. The tools come from a SCAN over the tool indexes: an
operator's call, not a hot path."""

from __future__ import annotations

from typing import Any

import redis

from ...ownership import as_text, glob_escape, unavailable_as_error
from ..codes import KINDS, REASONS, STATES
from ..keys import BrokerKeys
from .index import HELD_STATES, LetterIndex
from .letter import Stats

OLDEST_WALK = 5000  # filtered: letters examined (oldest first) to find the oldest match


def stats(client: redis.Redis, keys: BrokerKeys, index: LetterIndex, kind: str | None = None,
          state: str | None = None) -> Stats:
    filters = index.index_keys(None, None, None, kind, state)
    k = keys
    with unavailable_as_error():
        tools = sorted({as_text(key) for key in client.scan_iter(
            match=glob_escape(k.dead_letter_index("tool", "")) + "*", count=500,
            _type="zset")})
        groups = [*(k.dead_letter_index("reason", r) for r in REASONS), *tools,
                  *(k.dead_letter_index("kind", x) for x in KINDS),
                  *(k.dead_letter_index("state", s) for s in HELD_STATES)]
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(k.dead_letter_stats)
        pipe.xlen(k.dead_letters)
        pipe.time()
        pipe.xrange(k.dead_letters, count=1)
        pipe.info("server")
        raw, held, (secs, micros), first, server = pipe.execute()
        now = int(secs) * 1000 + int(micros) // 1000
        if not filters:
            pipe = client.pipeline(transaction=False)
            for key in groups:
                pipe.zcard(key)
            cards = pipe.execute()
        elif int(str(server.get("redis_version", "0")).split(".")[0]) >= 7:
            pipe = client.pipeline(transaction=False)
            for names in [*([*filters, key] for key in groups), filters]:
                pipe.zintercard(len(names), names)
            *cards, held = pipe.execute()
        else:
            cards, held = _count_walking(client, filters, groups)
        if filters:
            oldest_ms = _oldest(client, filters)
        else:
            oldest_ms = int(as_text(first[0][0]).split("-")[0]) if first else None
    counters = {as_text(key): int(v) for key, v in raw.items()}
    cards = [int(n) for n in cards]
    n_reason, n_tool = len(REASONS), len(tools)
    prefix = len(k.dead_letter_index("tool", ""))
    by_reason = dict(zip(REASONS, cards[:n_reason], strict=True))
    by_tool = {key[prefix:]: n for key, n in zip(tools, cards[n_reason:n_reason + n_tool],
                                                 strict=True)}
    by_kind = dict(zip(KINDS, cards[n_reason + n_tool:n_reason + n_tool + len(KINDS)],
                       strict=True))
    held_by_state = dict(zip(HELD_STATES, cards[-len(HELD_STATES):], strict=True))
    by_state = (held_by_state if filters
                else {s: counters.get(f"state:{s}", 0) for s in STATES})
    chosen = {name: value for name, value in (("kind", kind), ("state", state)) if value}
    return Stats(counters, int(held), {r: n for r, n in by_reason.items() if n},
                 {t: n for t, n in by_tool.items() if n}, by_state,
                 None if oldest_ms is None else (now - oldest_ms) / 1000,
                 {x: n for x, n in by_kind.items() if n}, chosen)


def _count_walking(client: redis.Redis, filters: list[str],
                   groups: list[str]) -> tuple[list[int], int]:
    """Redis < 7 has no ZINTERCARD: the letters in every filter index, then each group's
    share of them, ZMSCORE by chunk (cost grows with the matching letters, not all)."""
    members: list[str] = []
    start = 0
    while rows := client.zrange(filters[0], start, start + 999):
        start += len(rows)
        pipe = client.pipeline(transaction=False)
        for key in filters[1:]:
            pipe.zmscore(key, [as_text(m) for m in rows])
        columns = pipe.execute()
        members += [as_text(m) for i, m in enumerate(rows)
                    if all(column[i] is not None for column in columns)]
    cards = [0] * len(groups)
    for at in range(0, len(members), 1000):
        pipe = client.pipeline(transaction=False)
        for key in groups:
            pipe.zmscore(key, members[at:at + 1000])
        for n, column in enumerate(pipe.execute()):
            cards[n] += sum(score is not None for score in column)
    return cards, len(members)


def _oldest(client: redis.Redis, filters: list[str]) -> int | None:
    """The quarantine ms of the oldest letter in every filter index (None: none found among
    the OLDEST_WALK oldest of the smallest index)."""
    if len(filters) == 1:
        rows: Any = client.zrange(filters[0], 0, 0, withscores=True)
        return int(rows[0][1]) if rows else None
    pipe = client.pipeline(transaction=False)
    for key in filters:
        pipe.zcard(key)
    walk, *others = [key for _, key in sorted(zip(pipe.execute(), filters, strict=True))]
    for start in range(0, OLDEST_WALK, 500):
        rows = client.zrange(walk, start, start + 499, withscores=True)
        if not rows:
            return None
        pipe = client.pipeline(transaction=False)
        for key in others:
            pipe.zmscore(key, [as_text(m) for m, _ in rows])
        columns = pipe.execute()
        for i, (_, score) in enumerate(rows):
            if all(column[i] is not None for column in columns):
                return int(score)
    return None
