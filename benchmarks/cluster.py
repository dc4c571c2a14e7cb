"""Redis Cluster figures, against a standalone server measured in the same run:

- ``cluster_gate_cost_ratio``: the gate's Redis time per delivery (INFO commandstats of the
  script's EVALSHA, summed over the primaries) on a local 3+3 cluster / on one server. The
  script is the same; what could differ is Redis' own cluster bookkeeping per command.
- ``cluster_key_spread``: after one lease for each of 10,000 session keys, the keys per primary
  (DBSIZE), max / mean. The shards' hash tags sit in the middle of equal slot ranges.
- ``cluster_failover_s`` and ``cluster_failover_failed_calls``: a primary SIGKILLed while one
  thread delivers to sessions of every shard: seconds until its replica serves, how many
  deliveries failed as unavailable meanwhile (a worker retries those), and how many
  acknowledged deliveries the promoted replica does not have (asynchronous replication: the
  last writes the victim had not sent) or has twice.

    python -m benchmarks.cluster [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from typing import Any

import redis

from leasegate.broker import Client
from leasegate.ownership import RegistryUnavailable, connect
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisServer

from .common import SECRET, wait_until
from .gatecall import envelopes


def _nodes(r: Any) -> list[redis.Redis]:
    if isinstance(r, redis.RedisCluster):
        return [r.get_redis_connection(n) for n in r.get_primaries()]
    return [r]


def gate_usec_per_call(client: Client, n: int) -> float:
    """Redis time per delivery of ``n`` deliveries to runs of many sessions (every shard)."""
    runs = [client.start_run(f"bench:cost:{uuid.uuid4().hex[:8]}", prompt="p", ttl=600)
            for _ in range(64)]
    wires = [w for run in runs for w in envelopes(client, run, n // len(runs) + 1)]
    result = {"images": [{"width": 256, "height": 256}]}
    warm = set(range(0, len(wires), n // len(runs) + 1))
    for i in warm:  # the script loaded on every primary before the count starts
        client.gate.deliver(wires[i], result)
    for node in _nodes(client.redis):
        node.config_resetstat()
    for i, wire in enumerate(wires):
        if i not in warm:
            client.gate.deliver(wire, result)
    calls = usec = 0
    for node in _nodes(client.redis):
        stats = node.info("commandstats").get("cmdstat_evalsha", {})
        calls += int(stats.get("calls", 0))
        usec += int(stats.get("usec", 0))
    return usec / max(calls, 1)


def key_spread(cluster_client: Any, namespace: str, sessions: int) -> tuple[float, list[int]]:
    client = Client(cluster_client, namespace, secret=SECRET.encode())
    for i in range(sessions):
        client.registry.acquire(f"tenant-{i % 500}/job-{i}", ttl=600)
    sizes = [int(node.dbsize()) for node in _nodes(cluster_client)]
    return max(sizes) / statistics.mean(sizes), sizes


def failover(cluster: RedisClusterNodes, client: Client) -> dict[str, Any]:
    """Deliveries round-robin over 96 sessions while a primary is killed."""
    runs = [client.start_run(f"bench:fo:{uuid.uuid4().hex[:8]}", prompt="p", ttl=600)
            for _ in range(96)]
    victim = cluster.node_of(client.keys.owner(runs[0].session_key))
    stop = threading.Event()
    failed, delivered, first_fail, last_fail = [0], [0], [0.0], [0.0]
    sent: list[tuple[Any, str]] = []

    def deliver() -> None:
        i = 0
        while not stop.is_set():
            run = runs[i % len(runs)]
            i += 1
            [wire] = envelopes(client, run, 1)
            while not stop.is_set():
                try:
                    client.gate.deliver(wire, {"images": []})
                except RegistryUnavailable:  # what a worker retries
                    failed[0] += 1
                    last_fail[0] = time.monotonic()
                    first_fail[0] = first_fail[0] or last_fail[0]
                    continue
                delivered[0] += 1  # acknowledged: it must be in the inbox afterwards
                sent.append((run, client.gate.open(wire).callback_id))
                break

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    wait_until(lambda: delivered[0] >= 500, 30, "deliveries flowing before the kill")
    killed = time.monotonic()
    cluster.kill_primary(victim)
    healthy = time.monotonic() - killed
    after = delivered[0]
    wait_until(lambda: delivered[0] >= after + 500, 30, "deliveries flowing after the failover")
    stop.set()
    thread.join()
    inboxes = {run.run_id: [e.callback_id for e in run.inbox.entries()[1:]] for run in runs}
    doubled = sum(len(ids) - len(set(ids)) for ids in inboxes.values())
    missing = sum(1 for run, cb in sent if cb not in inboxes[run.run_id])
    return {"cluster_failover_s": round(healthy, 2),
            "cluster_failover_unavailable_s": round(last_fail[0] - first_fail[0], 2)
            if failed[0] else 0.0,
            "cluster_failover_failed_calls": failed[0],
            "cluster_failover_deliveries": delivered[0],
            "cluster_failover_doubled": doubled, "cluster_failover_lost": missing}


def measure(n: int, sessions: int) -> dict[str, Any]:
    """The baseline is a server with a replica too: each cluster primary feeds one, and on a
    small host the replicas' CPU is part of what a primary's commands wait for."""
    with RedisServer() as server, RedisClusterNodes() as cluster, \
            RedisServer(extra_args=("--replicaof", "127.0.0.1", "0")) as replica:
        replica.client().replicaof("127.0.0.1", server.port)
        single = Client(connect(server.url), f"bc{uuid.uuid4().hex[:6]}", secret=SECRET.encode())
        spread_client = connect(cluster.url)
        on_cluster = Client(spread_client, f"bc{uuid.uuid4().hex[:6]}", secret=SECRET.encode())
        rounds = [(gate_usec_per_call(on_cluster, n), gate_usec_per_call(single, n))
                  for _ in range(3)]
        ratios = sorted(c / s for c, s in rounds)
        cluster.flushall()
        spread, sizes = key_spread(spread_client, f"bs{uuid.uuid4().hex[:6]}", sessions)
        cluster.flushall()
        result = {"cluster_gate_cost_ratio": round(ratios[1], 3),
                  "cluster_gate_usec_per_call": [round(c, 1) for c, _ in rounds],
                  "standalone_gate_usec_per_call": [round(s, 1) for _, s in rounds],
                  "cluster_key_spread": round(spread, 3), "cluster_keys_per_primary": sizes,
                  "cluster_key_spread_sessions": sessions}
        result.update(failover(cluster, Client(connect(cluster.url), f"bf{uuid.uuid4().hex[:6]}",
                                               secret=SECRET.encode())))
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(measure(640 if args.quick else 3200, 10_000), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
