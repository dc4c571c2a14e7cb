"""Dead letters against a real redis-server: listing, replay, discard, purge, retention, stats.

Every letter is produced by the gate from a real scenario (released, superseded, expired run,
undecodable bytes), never written by hand.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
import redis

from leasegate.broker import Client, Envelope, LetterGone, LetterNotFound, ReplayRefused, Settings
from leasegate.broker.deadletters.index import Filters
from leasegate.broker.keys import letter_shard
from leasegate.ownership import SHARDS, RunState, shard_of
from tests.conftest import SECRET
from tests.support.helpers import server_time, wait_until


def sk() -> str:
    return f"cron:job-{uuid.uuid4().hex[:8]}"


# -- letters made by the gate --------------------------------------------------------------------

def released(client: Client, n: int, tool: str = "image_generate",
             session_key: str | None = None) -> list[str]:
    """``n`` 'run_released' letters: the run ended before its callbacks came back."""
    run = client.start_run(session_key or sk(), prompt="p", ttl=30)
    now = client.server_time_ms()
    envs = [Envelope.create(SECRET, callback_id=uuid.uuid4().hex, session_key=run.session_key,
                            run_id=run.run_id, fence=run.fence,
                            incarnation=run.lease.incarnation, tool=tool, task_args={"i": i},
                            submitted_at_ms=now, deadline_at_ms=now + 600_000)
            for i in range(n)]
    run.release("failed")
    return [client.gate.deliver(env, result={"i": i}).entry_id for i, env in enumerate(envs)]


def superseded(client: Client, n: int, tool: str = "image_generate",
               session_key: str | None = None) -> list[str]:
    key = session_key or sk()
    old = client.start_run(key, prompt="old", ttl=30)
    envs = [old.envelope(tool, {"i": i}) for i in range(n)]
    client.start_run(key, prompt="new", ttl=30)
    return [client.gate.deliver(env, result={"i": i}).entry_id for i, env in enumerate(envs)]


def expired(client: Client, n: int, tool: str = "image_generate") -> list[str]:
    run = client.start_run(sk(), prompt="p", ttl=0.2)
    envs = [run.envelope(tool, {"i": i}) for i in range(n)]
    wait_until(lambda: run.status().state is RunState.EXPIRED, message="lease expiry")
    return [client.gate.deliver(env, result={"i": i}).entry_id for i, env in enumerate(envs)]


def malformed(client: Client, n: int) -> list[str]:
    return [client.gate.deliver(os.urandom(64), result={}).entry_id for _ in range(n)]


def all_pages(fetch: Callable[[str | None], tuple[list[str], str | None]]) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        ids, cursor = fetch(cursor)
        seen += ids
        if cursor is None:
            return seen
        assert len(seen) < 20_000, "the cursor does not advance"


def ids_of(client: Client, **filters: object) -> list[str]:
    def fetch(cursor: str | None) -> tuple[list[str], str | None]:
        page = client.dead_letters.list(cursor=cursor, **filters)  # type: ignore[arg-type]
        return [letter.id for letter in page.letters], page.cursor
    return all_pages(fetch)


def newest_first(ids: list[str]) -> list[str]:
    """The order of an unfiltered listing: stream ids, as numbers, across shards."""
    return sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")), reverse=True)


def index_order(ids: list[str]) -> list[str]:
    """The order of a filtered listing: quarantine ms (the id's), then the id as bytes, as an
    index sorts one millisecond's letters."""
    return sorted(ids, key=lambda i: (int(i.split("-")[0]), i), reverse=True)


# -- listing -------------------------------------------------------------------------------------

def test_list_filters_by_reason_session_tool_and_time(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    key = sk()
    rel = released(broker_client, 3, session_key=key)
    rel_other_tool = released(broker_client, 2, tool="tts", session_key=key)
    mark = server_time(broker_client.redis)
    wait_until(lambda: server_time(broker_client.redis) > mark + 0.005, message="5 ms later")
    sup = superseded(broker_client, 2)
    exp = expired(broker_client, 2, tool="tts")
    bad = malformed(broker_client, 2)
    everything = rel + rel_other_tool + sup + exp + bad
    assert ids_of(broker_client, limit=50) == newest_first(everything)
    assert ids_of(broker_client, reason="run_released") == index_order(rel + rel_other_tool)
    assert ids_of(broker_client, reason="superseded") == index_order(sup)
    assert ids_of(broker_client, reason="lease_expired") == index_order(exp)
    assert ids_of(broker_client, reason="malformed") == index_order(bad)
    assert ids_of(broker_client, session_key=key) == index_order(rel + rel_other_tool)
    assert ids_of(broker_client, tool="tts") == index_order(rel_other_tool + exp)
    assert ids_of(broker_client, session_key=key, tool="tts") == index_order(rel_other_tool)
    assert ids_of(broker_client, reason="lease_expired", tool="tts") == index_order(exp)
    assert ids_of(broker_client, reason="superseded", tool="tts") == []
    letter = dl.list(reason="lease_expired", limit=1).letters[0]
    assert (letter.reason, letter.state, letter.tool) == ("lease_expired", "quarantined", "tts")
    # time, on the server's clock: only what was quarantined after the mark
    since = mark + 0.002
    assert ids_of(broker_client, since=since) == newest_first(sup + exp + bad)
    assert ids_of(broker_client, since=since, tool="tts") == index_order(exp)
    assert ids_of(broker_client, since=since, session_key=key) == []
    assert ids_of(broker_client, since=since, reason="superseded", tool="image_generate") == (
        index_order(sup))
    assert ids_of(broker_client, newer_than=3600) == newest_first(everything)
    assert ids_of(broker_client, since=server_time(broker_client.redis) + 60) == []


def test_cursor_paging_visits_every_letter_once(broker_client: Client) -> None:
    key = sk()
    mine = released(broker_client, 40, session_key=key)
    tts = released(broker_client, 15, tool="tts")
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({}, mine + tts),
        ({"reason": "run_released"}, mine + tts),
        ({"session_key": key}, mine),
        ({"reason": "run_released", "tool": "tts"}, tts),
        ({"reason": "run_released", "session_key": key, "tool": "image_generate"}, mine),
    ]
    for filters, expected in cases:
        order = index_order if filters else newest_first
        for limit in (1, 3, 7):
            seen = ids_of(broker_client, limit=limit, **filters)
            assert seen == order(expected), (filters, limit)


def test_index_cursor_steps_through_letters_of_one_millisecond(
        broker_client: Client, redis_client: redis.Redis) -> None:
    # the gate quarantines several letters per ms on a fast machine; here, all of them are
    # (in the shards their ids name, as the gate writes them: ties across shards too)
    index, k = broker_client.dead_letters.index, broker_client.keys
    members = [f"1700000000000-{i}" for i in range(70)]
    for m in members:
        redis_client.zadd(k.dead_letter_index(letter_shard(m), "tool", "same-ms"),
                          {m: 1_700_000_000_000})
    redis_client.zadd(k.dead_letter_index(letter_shard("1699999999999-0"), "tool", "same-ms"),
                      {"1699999999999-0": 1_699_999_999_999})
    for m in members[::2]:
        redis_client.zadd(k.dead_letter_index(letter_shard(m), "reason", "superseded"),
                          {m: 1_700_000_000_000})
    for filters, expected in ((index.filters(None, None, "same-ms"),
                               [*members, "1699999999999-0"]),
                              (index.filters("superseded", None, "same-ms"), members[::2])):
        for limit in (1, 4, 10):
            def fetch(cursor: str | None, filters: Filters = filters,
                      limit: int = limit) -> tuple[list[str], str | None]:
                return index.select(filters, None, None, limit, cursor)
            assert all_pages(fetch) == sorted(expected, reverse=True), (filters, limit)


def test_paging_survives_letters_removed_between_pages(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    letters = released(broker_client, 30)
    for filters in ({}, {"reason": "run_released"}):
        seen: list[str] = []
        cursor = None
        while True:
            page = dl.list(limit=4, cursor=cursor, **filters)  # type: ignore[arg-type]
            seen += [letter.id for letter in page.letters]
            if page.cursor is None:
                break
            dl.discard(page.letters[-1].id)  # the cursor's own letter goes away
            cursor = page.cursor
        order = index_order if filters else newest_first
        expected = order([i for i in letters if dl.get(i).state == "quarantined" or i in seen])
        assert seen == expected


def test_several_filters_examine_a_bounded_number_per_page(broker_client: Client) -> None:
    key = sk()  # one session key: one shard walks (test_deadletters_shards.py: several)
    wanted = released(broker_client, 1, tool="tts", session_key=key)
    released(broker_client, 60, session_key=key)           # newer, and not 'tts'
    superseded(broker_client, 70, tool="tts", session_key=key)  # the larger 'tts' index
    page = broker_client.dead_letters.list(reason="run_released", tool="tts", limit=2)
    # the walk goes newest first over the smaller index (61 letters), at most 20 * 2 of them
    assert page.letters == [] and page.cursor is not None
    assert ids_of(broker_client, reason="run_released", tool="tts", limit=2) == wanted


def test_list_validates_its_arguments(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    released(broker_client, 2)
    for bad in (0, 1001, "5", True):
        with pytest.raises(ValueError, match="limit"):
            dl.list(limit=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        dl.list(reason="lost")
    with pytest.raises(ValueError, match="session_key"):
        dl.list(session_key="")
    with pytest.raises(ValueError, match="cursor"):
        dl.list(cursor="nonsense")
    with pytest.raises(ValueError, match="cursor"):
        dl.list(reason="run_released", cursor=dl.list(limit=1).cursor)
    with pytest.raises(ValueError, match="since or newer_than"):
        dl.list(since=1.0, newer_than=1.0)
    with pytest.raises(ValueError, match="newer_than"):
        dl.list(newer_than=-1)


# Not a page's commands: INFO is the measuring itself; REPLCONF no client sends: a replica
# acknowledges its replication offset with it once a second (Redis' replicationCron), so on a
# cluster one lands in a measured window now and then, and a page seemed to cost one command
# more (or, in the idle window, one less): about 1 run in 20 failed.
_NOT_A_PAGE = ("cmdstat_info", "cmdstat_replconf")


def _usage(client: redis.Redis | redis.RedisCluster) -> tuple[int, int]:
    """Commands the server ran (but _NOT_A_PAGE) and bytes it sent, so far. On a cluster, the
    sum over every primary: a page reads every shard, and which node holds a page's letters is
    no part of its cost (a cluster client's INFO asks one node unless told otherwise)."""
    if isinstance(client, redis.RedisCluster):
        primaries = redis.RedisCluster.PRIMARIES
        stats = list(client.info("commandstats", target_nodes=primaries).values())
        traffic = list(client.info("stats", target_nodes=primaries).values())
    else:
        stats, traffic = [client.info("commandstats")], [client.info("stats")]
    commands = sum(int(v["calls"]) for server in stats for k, v in server.items()
                   if not k.startswith(_NOT_A_PAGE))
    return commands, sum(int(server["total_net_output_bytes"]) for server in traffic)


def every_shard_keys(per_shard: int = 1) -> list[str]:
    """Session keys, ``per_shard`` of each shard: letters of them fill every shard."""
    found: dict[int, list[str]] = {shard: [] for shard in range(SHARDS)}
    while any(len(keys) < per_shard for keys in found.values()):
        key = sk()
        if len(found[shard_of(key)]) < per_shard:
            found[shard_of(key)].append(key)
    return [key for keys in found.values() for key in keys]


def test_a_page_costs_the_same_commands_with_2000_letters_as_with_100(
        redis_client: redis.Redis) -> None:
    def costs(per_shard: int) -> list[tuple[int, int]]:
        client = Client(redis_client, f"t{uuid.uuid4().hex[:10]}", secret=SECRET)
        keys = every_shard_keys()
        for key in keys:  # every shard holds letters: each one answers every page
            released(client, per_shard, session_key=key)
        released(client, 10, session_key=keys[0])  # two pages of its own
        dl = client.dead_letters
        calls = []
        for filters in ({}, {"reason": "run_released"}, {"session_key": keys[0]},
                        {"reason": "run_released", "tool": "image_generate"},
                        {"newer_than": 3600.0}):
            first = dl.list(limit=4, **filters)  # type: ignore[arg-type]
            commands, sent = _usage(redis_client)
            idle_commands, idle_sent = _usage(redis_client)  # what measuring alone costs
            page = dl.list(limit=4, cursor=first.cursor, **filters)  # type: ignore[arg-type]
            commands_after, sent_after = _usage(redis_client)
            calls.append((commands_after - 2 * idle_commands + commands,
                          sent_after - 2 * idle_sent + sent))
            assert len(page.letters) == 4 and page.cursor is not None
        return calls

    small, large = costs(3), costs(63)   # about 100 and 2,000 letters over the 32 shards
    assert [c for c, _ in small] == [c for c, _ in large]
    # a fixed number per shard: one XREVRANGE, or an index page's two ZREVRANGEBYSCOREs (and
    # the walk's ZCARDs and ZMSCOREs), plus the letters' HGETALLs
    assert max(c for c, _ in large) <= 6 * SHARDS + 10
    # nor does what the server sends back grow with the letters: at most limit + 1 per shard
    assert all(big <= 2 * little for (_, little), (_, big) in zip(small, large, strict=True))


# -- replay --------------------------------------------------------------------------------------

def test_replay_into_a_live_run_of_the_same_session(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    key = sk()
    [dlq_id] = released(broker_client, 1, session_key=key)
    letter = dl.get(dlq_id)
    target = broker_client.start_run(key, prompt="next", ttl=30)
    result = dl.replay(dlq_id, to=target, by="alice")
    assert (result.run_id, result.seq, result.resumed) == (target.run_id, 2, False)
    entries = target.inbox.entries()
    assert [(e.seq, e.role, e.kind) for e in entries] == [(1, "user", "prompt"),
                                                         (2, "tool", "recovered")]
    got = entries[1]
    assert got.id == result.entry_id and got.payload == letter.payload == {"i": 0}
    assert got.callback_id == letter.callback_id
    assert got.provenance["dead_letter_id"] == dlq_id
    assert got.provenance["original_run_id"] == letter.run_id
    assert int(got.provenance["original_fence"]) == letter.fence == 1
    assert got.provenance["fence"] == target.fence == 2
    after = dl.get(dlq_id)
    assert after.state == "redelivered" and after.redelivered_to == target.run_id
    assert after.history[-1]["by"] == "alice" and after.history[-1]["note"] == target.run_id
    assert [letter.id for letter in dl.list().letters] == [dlq_id]  # still listed
    stats = dl.stats()
    assert (stats.by_state["quarantined"], stats.by_state["redelivered"]) == (0, 1)
    with pytest.raises(ReplayRefused) as refused:
        dl.replay(dlq_id, to=target)
    assert refused.value.reason == "already_redelivered"
    assert len(target.inbox.entries()) == 2


def test_replay_into_a_parked_run_leaves_one_resume_signal(broker_client: Client) -> None:
    [dlq_id] = superseded(broker_client, 1)
    letter = broker_client.dead_letters.get(dlq_id)
    assert letter.session_key is not None and letter.owner_run_id is not None
    owner = broker_client.attach(letter.session_key, letter.owner_run_id)
    owner.park(until=60)
    result = broker_client.dead_letters.replay(dlq_id, to=owner)
    assert result.resumed
    assert owner.wait_resume(timeout=1) == letter.callback_id
    assert owner.wait_resume(timeout=0.05) is None
    assert owner.status().state is RunState.PARKED
    assert [e.kind for e in owner.inbox.entries()] == ["prompt", "recovered"]


def test_replay_refusals_name_their_reason(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    key = sk()
    [first, second] = released(broker_client, 2, session_key=key)
    [bad] = malformed(broker_client, 1)
    stranger = broker_client.start_run(sk(), prompt="other job", ttl=30)
    ended = broker_client.start_run(key, prompt="x", ttl=30)
    ended.release("completed")

    def reason(dlq_id: str, to: object) -> tuple[str, str]:
        with pytest.raises(ReplayRefused) as refused:
            dl.replay(dlq_id, to=to)  # type: ignore[arg-type]
        return refused.value.reason, refused.value.detail

    assert reason(first, stranger) == ("wrong_session", key)
    assert reason(first, ended) == ("target_not_alive", "released")
    assert reason(bad, stranger) == ("no_payload", "malformed")
    assert reason("0-1", stranger)[0] == "not_found"
    bare = broker_client.registry.acquire(key, ttl=30)  # a run with no prompt, so no inbox
    assert reason(first, bare) == ("no_inbox", "")
    assert broker_client.redis.exists(broker_client.keys.inbox(key, bare.run_id)) == 0
    dl.discard(second)
    live = broker_client.start_run(key, prompt="y", ttl=30)
    assert reason(second, live) == ("not_quarantined", "discarded")
    assert [e.role for e in stranger.inbox.entries()] == ["user"]
    assert [e.role for e in live.inbox.entries()] == ["user"]
    assert dl.get(first).state == "quarantined"
    assert dl.replay(first, to=live).seq == 2


def test_replay_refuses_an_expired_target(broker_client: Client) -> None:
    key = sk()
    [dlq_id] = released(broker_client, 1, session_key=key)
    target = broker_client.start_run(key, prompt="x", ttl=0.2)
    wait_until(lambda: target.status().state is RunState.EXPIRED, message="lease expiry")
    with pytest.raises(ReplayRefused, match="target_not_alive") as refused:
        broker_client.dead_letters.replay(dlq_id, to=target)
    assert refused.value.detail == "expired"


# -- discard and purge ---------------------------------------------------------------------------

def test_discard_leaves_a_tombstone_with_history(broker_client: Client,
                                                 redis_client: redis.Redis) -> None:
    dl = broker_client.dead_letters
    [keep, gone] = released(broker_client, 2)
    assert dl.discard(gone, by="bob") == "quarantined"
    letter = dl.get(gone)
    assert letter.state == "discarded" and letter.tombstone and letter.payload is None
    assert [(h["state"], h["by"]) for h in letter.history] == [("quarantined", "gate"),
                                                               ("discarded", "bob")]
    assert [x.id for x in dl.list().letters] == [keep]
    assert ids_of(broker_client, reason="run_released") == [keep]
    assert dl.count() == 1
    ttl_ms = redis_client.pttl(broker_client.keys.dead_letter(gone))
    assert 0 < ttl_ms <= broker_client.settings.dlq_max_age * 1000
    with pytest.raises(LetterGone, match="already discarded"):
        dl.discard(gone)
    with pytest.raises(LetterNotFound):
        dl.discard("1-1")
    assert dl.stats().by_state["discarded"] == 1


def test_purge_dry_run_then_for_real_by_reason(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    rel = released(broker_client, 3)
    sup = superseded(broker_client, 2)
    would = dl.purge(reason="run_released", dry_run=True)
    assert sorted(would) == sorted(rel)
    assert all(dl.get(i).state == "quarantined" for i in rel)
    done = dl.purge(reason="run_released", by="ops")
    assert sorted(done) == sorted(rel)
    assert all(dl.get(i).state == "discarded" and dl.get(i).history[-1]["by"] == "ops"
               for i in rel)
    assert sorted(ids_of(broker_client)) == sorted(sup)
    assert dl.purge(reason="run_released") == []


def test_purge_older_than_keeps_the_young(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    old = released(broker_client, 3)
    marked = server_time(broker_client.redis)
    wait_until(lambda: server_time(broker_client.redis) > marked + 1.0,
               message="server time 1 s later")
    young = released(broker_client, 2)
    assert sorted(dl.purge(older_than=0.5, dry_run=True)) == sorted(old)
    assert sorted(dl.purge(older_than=0.5)) == sorted(old)
    assert sorted(ids_of(broker_client)) == sorted(young)


def test_purge_works_in_batches(broker_client: Client) -> None:
    key = sk()
    letters = released(broker_client, 1100, session_key=key)
    others = superseded(broker_client, 3)
    assert sorted(broker_client.dead_letters.purge(session_key=key)) == sorted(letters)
    assert sorted(ids_of(broker_client)) == sorted(others)


# -- retention -----------------------------------------------------------------------------------

def test_sweep_tombstones_aged_letters_without_new_arrivals(redis_client: redis.Redis,
                                                            namespace: str) -> None:
    client = Client(redis_client, namespace, secret=SECRET, settings=Settings(dlq_max_age=0.3))
    dl = client.dead_letters
    letters = released(client, 10)
    assert dl.sweep() == 0  # not due yet: nothing happens
    born = dl.get(letters[-1]).quarantined_at or 0.0
    wait_until(lambda: server_time(redis_client) > born + 0.31, message="letters past max age")
    assert dl.sweep(limit=4) == 4
    assert dl.sweep() == 6
    assert dl.sweep() == 0
    for dlq_id in letters:
        letter = dl.get(dlq_id)
        assert letter.state == "expired" and letter.payload is None
        last = letter.history[-1]
        assert (last["state"], last["by"], last["note"]) == ("expired", "retention", "age")
    assert dl.count() == 0 and dl.list().letters == []
    assert dl.stats()["expired:age"] == 10


def test_sweep_enforces_a_lowered_count_bound(redis_client: redis.Redis, namespace: str) -> None:
    wide = Client(redis_client, namespace, secret=SECRET)
    letters = released(wide, 8)
    narrow = Client(redis_client, namespace, secret=SECRET, settings=Settings(dlq_max_len=5))
    assert narrow.dead_letters.sweep() == 3
    assert [narrow.dead_letters.get(i).state for i in letters[:4]] == ["expired"] * 3 + [
        "quarantined"]
    assert narrow.dead_letters.stats()["expired:overflow"] == 3


# -- stats ---------------------------------------------------------------------------------------

def test_stats_count_by_reason_tool_state_and_age(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    assert dl.stats().oldest_age is None
    rel = released(broker_client, 3)
    superseded(broker_client, 2, tool="tts")
    malformed(broker_client, 1)
    dl.discard(rel[0])
    stats = dl.stats()
    assert stats.held == 5
    assert stats.by_reason == {"run_released": 2, "superseded": 2, "malformed": 1}
    assert stats.by_tool == {"image_generate": 2, "tts": 2}
    assert stats.by_state == {"quarantined": 5, "redelivered": 0, "archived": 0, "expired": 0,
                              "discarded": 1}
    assert stats["total"] == 6 and stats.get("reason:run_released") == 3
    born = dl.get(rel[1]).quarantined_at or 0.0
    assert stats.oldest_age is not None
    assert 0 <= stats.oldest_age <= server_time(broker_client.redis) - born + 0.01
