"""The chaos drill on a Redis Cluster (``--redis cluster``; benchmarks/chaos.py): the Redis fault
is one primary SIGKILLed mid-drill and its replica promoted by the cluster itself.

Replication is asynchronous, so the kill may lose the last writes that primary acknowledged.
A mark (the victim's own server time, written by a script in a slot it serves every few ms
until the kill) bounds that: the replica applies the primary's writes in order, so every write
the victim acknowledged before the surviving mark survived. The loss window is therefore
from the surviving mark to the moment the victim is dead (its replica takes writes only once
promoted, and keeps them), on the victim's shards only: other primaries lost nothing.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import redis

from leasegate.ownership import Keys, shard_of
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisServer

MARK_EVERY = 0.01      # seconds between loss marks in the run-up to the kill

# one script: the time is the victim's and the write is the victim's, in one step
MARK = ("local t = redis.call('TIME') "
        "local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
        "redis.call('SET', KEYS[1], ms) return ms")


@dataclass
class Victim:
    node: RedisServer
    shards: frozenset[int]   # the shards whose slots it serves
    jobs: list[str]          # the drill's session keys in those shards


def pick_victim(cluster: RedisClusterNodes, keys: Keys, jobs: list[str], rng: random.Random,
                spare_url: str) -> Victim:
    """A primary that serves some of the drill's sessions, never the node of ``spare_url``
    (the URL the workers were given: a worker restarted later connects through it)."""
    ports = {shard: cluster.node_of(keys.shard_key(shard, "x")).port for shard in keys.shards}
    candidates = [node for node in cluster.primaries() if node.url != spare_url
                  and any(ports[shard_of(job)] == node.port for job in jobs)]
    if not candidates:
        raise RuntimeError("no primary to kill serves a session of the drill")
    node = rng.choice(candidates)
    shards = frozenset(s for s, port in ports.items() if port == node.port)
    return Victim(node, shards, [job for job in jobs if shard_of(job) in shards])


def write_marks_in_slot(r: redis.Redis, key: str, stop: threading.Event,
                        seconds: float) -> list[int]:
    """Mark ``key`` (in the victim's slot) with its server time every MARK_EVERY s for
    ``seconds``; every mark written, in order."""
    marks: list[int] = []
    for _ in range(max(1, round(seconds / MARK_EVERY))):
        marks.append(int(r.eval(MARK, 1, key)))
        if stop.wait(MARK_EVERY):
            break
    return marks
