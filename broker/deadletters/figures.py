"""Counting dead letters for ``DeadLetters.stats``: by reason, tool, kind and held state, of all
held letters or of those of one kind and/or state, from the indexes alone (ZCARD unfiltered,
ZINTERCARD filtered): no letter is read. Every shard counts its own letters, in one pipeline
for all shards, and the counts are summed. The tools come from one SCAN over the tool indexes
of every shard: an operator's call, not a hot path."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis

from ...ownership import as_text, glob_escape, one_node_info, server_time_ms, unavailable_as_error
from ..codes import KINDS, REASONS, STATES
from ..keys import BrokerKeys
from .index import HELD_STATES, LetterIndex
from .letter import Stats
from .merge import stream_position

OLDEST_WALK = 5000  # filtered: letters examined (oldest first, per shard) for the oldest match
NOT_COUNTERS = ("last_id",)  # fields of a shard's stats hash that are not running totals


def stats(client: redis.Redis, keys: BrokerKeys, index: LetterIndex, kind: str | None = None,
          state: str | None = None) -> Stats:
    chosen_filters = index.filters(None, None, None, kind, state)
    k, shards = keys, list(keys.shards)
    with unavailable_as_error():
        tools = tool_names(client, keys)
        pipe = client.pipeline(transaction=False)
        for shard in shards:
            pipe.hgetall(k.dead_letter_stats(shard))
            pipe.xlen(k.dead_letters(shard))
            pipe.xrange(k.dead_letters(shard), count=1)
        per_shard = pipe.execute()
        now = server_time_ms(client)  # not in the pipeline: a cluster pipeline takes no TIME
        counters: Counter[str] = Counter()
        for raw in per_shard[0::3]:
            counters.update({as_text(f): int(v) for f, v in raw.items()
                             if as_text(f) not in NOT_COUNTERS})
        held = sum(int(n) for n in per_shard[1::3])
        firsts = [as_text(rows[0][0]) for rows in per_shard[2::3] if rows]
        per_filters = [chosen_filters.index_keys(keys, shard) for shard in shards]
        groups = [_groups(keys, shard, tools) for shard in shards]
        if not chosen_filters:
            shard_cards = _zcards(client, groups)
        elif int(one_node_info(client, "server").get("redis_version", "0").split(".")[0]) >= 7:
            shard_cards, held = _zintercards(client, per_filters, groups)
        else:
            walked = [_count_walking(client, f, g) for f, g in zip(per_filters, groups,
                                                                   strict=True)]
            shard_cards, held = [c for c, _ in walked], sum(n for _, n in walked)
        cards = [sum(column) for column in zip(*shard_cards, strict=True)]
        if chosen_filters:
            oldest_ms = _oldest(client, per_filters)
        else:
            oldest_ms = min((stream_position(i)[0] for i in firsts), default=None)
    n_reason, n_tool = len(REASONS), len(tools)
    by_reason = dict(zip(REASONS, cards[:n_reason], strict=True))
    by_tool = dict(zip(tools, cards[n_reason:n_reason + n_tool], strict=True))
    by_kind = dict(zip(KINDS, cards[n_reason + n_tool:n_reason + n_tool + len(KINDS)],
                       strict=True))
    held_by_state = dict(zip(HELD_STATES, cards[-len(HELD_STATES):], strict=True))
    by_state = (held_by_state if chosen_filters
                else {s: counters.get(f"state:{s}", 0) for s in STATES})
    chosen = {name: value for name, value in (("kind", kind), ("state", state)) if value}
    return Stats(dict(counters), int(held), {r: n for r, n in by_reason.items() if n},
                 {t: n for t, n in by_tool.items() if n}, by_state,
                 None if oldest_ms is None else (now - oldest_ms) / 1000,
                 {x: n for x, n in by_kind.items() if n}, chosen)


def tool_names(client: redis.Redis, keys: BrokerKeys) -> list[str]:
    """The tools any shard has a tool index for, sorted: one SCAN whose pattern covers every
    shard, each key checked against its shard's exact prefix."""
    prefixes = {keys.dead_letter_index(shard, "tool", "") for shard in keys.shards}
    sample = keys.dead_letter_index(0, "tool", "")
    tag_start = len(keys.namespace) + 1
    tail = sample[sample.index("}", tag_start):]  # '}:dlq:idx:tool:' after the shard's tag
    pattern = glob_escape(keys.namespace) + ":{*" + glob_escape(tail) + "*"
    names = set()
    for raw in client.scan_iter(match=pattern, count=500, _type="zset"):
        key = as_text(raw)
        head = key[:key.find("}", tag_start) + len(tail)]
        if head in prefixes and len(key) > len(head):
            names.add(key[len(head):])
    return sorted(names)


def _groups(keys: BrokerKeys, shard: int, tools: list[str]) -> list[str]:
    """The index keys of one shard counted, in the order of ``stats``' cards."""
    return [*(keys.dead_letter_index(shard, "reason", r) for r in REASONS),
            *(keys.dead_letter_index(shard, "tool", t) for t in tools),
            *(keys.dead_letter_index(shard, "kind", x) for x in KINDS),
            *(keys.dead_letter_index(shard, "state", s) for s in HELD_STATES)]


def _zcards(client: redis.Redis, groups: list[list[str]]) -> list[list[int]]:
    """Each shard's ZCARD of each of its groups, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for key in (key for keys in groups for key in keys):
        pipe.zcard(key)
    counts = iter(pipe.execute())
    return [[int(next(counts)) for _ in keys] for keys in groups]


def _zintercards(client: redis.Redis, filters: list[list[str]],
                 groups: list[list[str]]) -> tuple[list[list[int]], int]:
    """Each shard's count of each group's letters matching its filters, and of all those
    letters, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for wanted, keys in zip(filters, groups, strict=True):
        for names in [*([*wanted, key] for key in keys), wanted]:
            pipe.zintercard(len(names), names)
    counts = iter(pipe.execute())
    cards, held = [], 0
    for keys in groups:
        cards.append([int(next(counts)) for _ in keys])
        held += int(next(counts))
    return cards, held


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


def _oldest(client: redis.Redis, filters: list[list[str]]) -> int | None:
    """The quarantine ms of the oldest letter in every filter index of its shard (None: none,
    or none among the OLDEST_WALK oldest of each shard's smallest index)."""
    if len(filters[0]) == 1:
        pipe = client.pipeline(transaction=False)
        for keys in filters:
            pipe.zrange(keys[0], 0, 0, withscores=True)
        return min((int(rows[0][1]) for rows in pipe.execute() if rows), default=None)
    found = (_oldest_walking(client, keys) for keys in filters)
    return min((ms for ms in found if ms is not None), default=None)


def _oldest_walking(client: redis.Redis, filters: list[str]) -> int | None:
    pipe = client.pipeline(transaction=False)
    for key in filters:
        pipe.zcard(key)
    walk, *others = [key for _, key in sorted(zip(pipe.execute(), filters, strict=True))]
    for start in range(0, OLDEST_WALK, 500):
        rows: Any = client.zrange(walk, start, start + 499, withscores=True)
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
