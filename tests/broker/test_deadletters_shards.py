"""Dead letters spread over the shards: every listing merges the shards' pages, every count
sums them, every operation by id finds the letter's own shard (a real redis-server; letters
made by the gate)."""

from __future__ import annotations

import itertools
import random

import pytest
import redis

from leasegate.broker import Client, DeadLetter
from leasegate.broker.deadletters.merge import bounded_rows, decided
from leasegate.broker.keys import letter_shard
from leasegate.ownership import SHARDS, shard_of
from tests.broker.test_deadletters import (
    every_shard_keys,
    ids_of,
    index_order,
    malformed,
    newest_first,
    released,
    sk,
    superseded,
)


def other_shard_key(*taken: str) -> str:
    """A session key of a shard none of ``taken`` is in."""
    shards = {shard_of(key) for key in taken}
    return next(key for key in iter(sk, None) if shard_of(key) not in shards)


def test_pages_across_shards_visit_each_letter_once_newest_first(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    keys = every_shard_keys()[::4]  # 8 shards' session keys
    made: dict[tuple[str, str, str], list[str]] = {}
    for n, key in enumerate(keys):
        made[(key, "run_released", "tts")] = released(broker_client, 1 + n % 3, "tts", key)
        made[(key, "run_released", "image_generate")] = released(broker_client, 2, session_key=key)
        made[(key, "superseded", "tts")] = superseded(broker_client, 1 + n % 2, "tts", key)
    made[("", "malformed", "")] = malformed(broker_client, 3)
    assert len({letter_shard(i) for ids in made.values() for i in ids}) >= 8
    for key in keys[2:4]:  # a redelivered letter in two shards
        dl.replay(made[(key, "run_released", "tts")][0],
                  to=broker_client.start_run(key, prompt="again", ttl=30))
    letters = {i: dl.get(i) for ids in made.values() for i in ids}

    def expected(**filters: str) -> list[str]:
        wanted = [i for i, x in letters.items()
                  if all(getattr(x, name) == value for name, value in filters.items())]
        return (index_order if filters else newest_first)(wanted)

    names = {"reason": "run_released", "tool": "tts", "session_key": keys[3], "kind": "result",
             "state": "redelivered"}
    combos = [dict(c) for n in range(6) for c in itertools.combinations(names.items(), n)]
    combos += [{"reason": "superseded", "tool": "image_generate"}, {"reason": "superseded"},
               {"session_key": keys[5], "reason": "superseded", "tool": "tts"}]
    for filters in combos:
        want = expected(**filters)
        assert want or filters.get("tool") == "image_generate", filters
        for limit in (1, 4, 50):
            pages = []
            cursor = None
            while True:
                page = dl.list(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
                pages.append([letter.id for letter in page.letters])
                cursor = page.cursor
                if cursor is None:
                    break
                assert len(pages) < 500, "the cursor does not advance"
            seen = [i for page in pages for i in page]
            assert len(seen) == len(set(seen)), (filters, limit)
            assert seen == want, (filters, limit)
            assert all(len(page) <= limit for page in pages)
    # purge: one script call per shard's batch, every shard's letters
    purged = dl.purge(reason="run_released", tool="tts")
    assert sorted(purged) == sorted(expected(reason="run_released", tool="tts"))
    assert ids_of(broker_client, reason="run_released", tool="tts") == []
    assert ids_of(broker_client, tool="tts") == expected(reason="superseded", tool="tts")


def test_a_walk_stops_at_the_stop_position_of_a_shard_out_of_budget(
        broker_client: Client) -> None:
    walked = sk()
    other = other_shard_key(walked)
    old = released(broker_client, 2, "tts", other)              # older than the stop
    wanted = released(broker_client, 1, "tts", walked)
    released(broker_client, 60, session_key=walked)              # not 'tts': the budget
    superseded(broker_client, 70, "tts", walked)                 # the larger 'tts' index
    young = released(broker_client, 2, "tts", other)             # newer than the stop
    dl = broker_client.dead_letters
    # limit 3: at most 60 letters examined per shard; the walked shard spends them all on the
    # 60 newest 'run_released' letters of its session and stops there, so the other shard's
    # older letters may not be returned yet: the page holds the two young ones and a cursor
    first = dl.list(reason="run_released", tool="tts", limit=3)
    assert [x.id for x in first.letters] == index_order(young) and first.cursor is not None
    second = dl.list(reason="run_released", tool="tts", limit=3, cursor=first.cursor)
    assert [x.id for x in second.letters] == index_order(wanted + old)
    assert ids_of(broker_client, reason="run_released", tool="tts", limit=3) == index_order(
        young + wanted + old)
    # the same through one session key: its one shard
    assert ids_of(broker_client, reason="run_released", tool="tts", session_key=walked,
                  limit=3) == wanted


def test_merging_never_passes_a_stop_position() -> None:
    a, b = [(9, "9-1"), (5, "5-1"), (1, "1-1")], [(8, "8-2"), (2, "2-2")]
    assert bounded_rows([a, b], [], 10) == ([*sorted(a + b, reverse=True)], None)
    assert bounded_rows([a, b], [], 2) == ([(9, "9-1"), (8, "8-2")], (8, "8-2"))
    # a shard stopped at (6, ...): nothing older than it yet, the page is short of limit
    assert bounded_rows([a, b], [(6, "6-3"), (3, "3-4")], 10) == (
        [(9, "9-1"), (8, "8-2")], (6, "6-3"))
    assert bounded_rows([a, b], [(6, "6-3")], 1) == ([(9, "9-1")], (9, "9-1"))
    # equal scores: the member decides, as an index orders one millisecond's letters
    assert bounded_rows([[(5, "5-4")], [(5, "5-36")]], [(5, "5-36")], 5) == (
        [(5, "5-4"), (5, "5-36")], (5, "5-36"))
    assert decided([a, b], [(6, "6-3")], 2) and not decided([a, b], [(6, "6-3")], 3)
    assert decided([a], [], 5)


def test_stats_and_count_sum_every_shard(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    keys = every_shard_keys()
    for n, key in enumerate(keys):
        released(broker_client, 1 + n % 2, "tts" if n % 3 == 0 else "image_generate", key)
    superseded(broker_client, 2)
    bad = malformed(broker_client, 2)
    gone = dl.list(session_key=keys[7]).letters[0].id
    dl.discard(gone)
    rel = sum(1 + n % 2 for n in range(SHARDS))
    tts = sum(1 + n % 2 for n in range(SHARDS) if n % 3 == 0)
    stats = dl.stats()
    assert stats.held == dl.count() == rel + 2 + 2 - 1
    assert stats.by_reason == {"run_released": rel - 1, "superseded": 2, "malformed": 2}
    # keys[7]'s letters are image_generate (7 % 3 != 0), one of them discarded
    assert stats.by_tool == {"tts": tts, "image_generate": rel - tts + 2 - 1}
    assert stats["total"] == rel + 4 and stats.by_state["discarded"] == 1
    assert "last_id" not in stats.counters  # a shard's id clock, not a count
    assert stats.by_state["quarantined"] == stats.held
    filtered = dl.stats(kind="result", state="quarantined")
    assert filtered.held == stats.held - 2  # malformed input has no kind
    assert filtered.by_reason == {"run_released": rel - 1, "superseded": 2}
    assert stats.oldest_age is not None and filtered.oldest_age is not None
    # replay and discard find each letter in its own shard
    assert all(dl.get(i).state == "quarantined" for i in bad)
    assert dl.discard(bad[1]) == "quarantined" and dl.stats().held == stats.held - 1


def test_sweep_and_reindex_visit_every_shard(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    keys = every_shard_keys()[:5]
    for key in keys:
        released(broker_client, 2, session_key=key)
    k = broker_client.keys
    for shard in k.shards:  # as before the kind and state indexes existed
        broker_client.redis.delete(k.dead_letter_index(shard, "kind", "result"),
                                   k.dead_letter_index(shard, "state", "quarantined"))
    assert dl.reindex() == 10
    assert len(ids_of(broker_client, kind="result", state="quarantined")) == 10
    assert dl.sweep() == 0


def test_drain_hands_over_every_shards_letters_in_quarantine_order(
        broker_client: Client) -> None:
    dl = broker_client.dead_letters
    keys = every_shard_keys()[:6]
    letters = [i for _ in range(3) for key in keys for i in released(broker_client, 1,
                                                                     session_key=key)]
    in_order = newest_first(letters)[::-1]  # by id: of one millisecond, by shard
    assert len({letter_shard(i) for i in letters}) == 6
    seen: list[str] = []

    def flaky(letter: DeadLetter) -> None:
        seen.append(letter.id)
        if len(seen) == 8:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        dl.drain(flaky, consumer="c1", batch=2)
    # what it read of the other shards stays its own, and comes first, still in order
    assert dl.drain(flaky, consumer="c1", batch=2) == len(letters) - 7
    assert seen == in_order[:8] + in_order[7:]
    assert {dl.get(i).state for i in letters} == {"archived"}


def test_walks_over_random_shards_match_a_plain_filter(broker_client: Client,
                                                       redis_client: redis.Redis) -> None:
    """Index entries written directly (the shape the gate writes): sparse matches make walks
    run out of budget on some shards and not others; the pages still hold every match once,
    in index order."""
    index, k, rng = broker_client.dead_letters.index, broker_client.keys, random.Random(7)
    tagged: dict[str, set[str]] = {"reason": set(), "tool": set()}
    scores: dict[str, int] = {}
    pipe = redis_client.pipeline(transaction=False)
    for n in range(3000):
        ms = 1_700_000_000_000 + rng.randrange(1000)  # many letters share a millisecond
        letter_id = f"{ms}-{n}"
        scores[letter_id] = ms
        shard, r = letter_shard(letter_id), rng.random()
        # both indexes large, sharing letters only at both ends of the time range (and more
        # in a third of the shards): walks through the middle spend their budget
        edge = not 100 <= ms % 1000 < 900
        shared = 0.4 if shard % 3 else 0.3
        reason, tool = r < 0.5, (r > shared if edge else r >= 0.5)
        for field, value, hit in (("reason", "superseded", reason), ("tool", "rare", tool)):
            if hit:
                tagged[field].add(letter_id)
                pipe.zadd(k.dead_letter_index(shard, field, value), {letter_id: ms})
    pipe.execute()
    both = tagged["reason"] & tagged["tool"]
    expected = sorted(both, key=lambda i: (scores[i], i), reverse=True)
    assert len(expected) > 50
    filters = index.filters("superseded", None, "rare")
    for limit in (1, 4):
        seen: list[str] = []
        cursor, short = None, 0
        while True:
            ids, cursor = index.select(filters, None, None, limit, cursor)
            assert len(ids) <= limit and ids == sorted(ids, key=lambda i: (scores[i], i),
                                                       reverse=True)
            short += cursor is not None and len(ids) < limit
            seen += ids
            if cursor is None:
                break
        assert seen == expected, limit
        if limit == 1:
            assert short > 0  # some pages ended at a shard's stop position


def test_ids_sort_as_text_the_way_they_sort_as_numbers(broker_client: Client) -> None:
    """An index orders the letters of one millisecond by id as text, the stream as numbers:
    every sequence number has seven digits, so both orders agree."""
    ids = released(broker_client, 40, session_key=sk())
    assert all(len(i.split("-")[1]) == 7 for i in ids)
    assert sorted(ids) == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert {letter_shard(i) for i in ids} == {shard_of(broker_client.dead_letters.get(ids[0])
                                                       .session_key or "")}
