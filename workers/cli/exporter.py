"""The deployment-wide Prometheus exporter behind ``celery leasegate metrics`` (cli/ops.py).

Counters that must add up across every worker and runtime live in Redis (the gate and the
registry move them inside their Lua scripts), so the exporter reports the deployment, whatever
the pool; with PROMETHEUS_MULTIPROC_DIR it adds this host's workers' gate latency histograms.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...ownership import RunState, as_text

if TYPE_CHECKING:
    from ...broker import Client


class RedisCollector(Collector):
    """Deployment-wide figures read from Redis at scrape time (cached for ``interval`` s:
    counting leases walks every run record)."""

    def __init__(self, client: Client, interval: float = 15.0) -> None:
        self.client = client
        self.interval = interval
        self._cache: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > self.interval:
                self._cache = (time.monotonic(), self._read())
            yield from self._cache[1]

    def _read(self) -> list[Metric]:
        pipe = self.client.redis.pipeline(transaction=False)
        for shard in self.client.keys.shards:  # each shard counts its own sessions' events
            pipe.hgetall(self.client.keys.metrics(shard))
        counters: dict[str, int] = {}
        for raw in pipe.execute():
            for k, v in raw.items():
                counters[as_text(k)] = counters.get(as_text(k), 0) + int(v)
        deliveries = CounterMetricFamily("leasegate_deliveries", "Callbacks through the gate",
                                         labels=["verdict", "reason", "tool"])
        renew = CounterMetricFamily("leasegate_lease_renew_failures",
                                    "Renewals refused: the caller was no longer the owner",
                                    labels=["reason"])
        skipped = CounterMetricFamily("leasegate_work_skipped",
                                      "Owned tasks not run because the owner was gone",
                                      labels=["reason", "tool"])
        for name, value in sorted(counters.items()):
            kind, _, rest = name.partition(":")
            if kind == "delivered":
                deliveries.add_metric(["delivered", "", rest], value)
            elif kind == "quarantined":
                reason, _, tool = rest.partition(":")
                deliveries.add_metric(["quarantined", reason, tool], value)
            elif kind == "renew_failed":
                renew.add_metric([rest], value)
            elif kind == "skipped":
                reason, _, tool = rest.partition(":")
                skipped.add_metric([reason, tool], value)
        stats = self.client.dead_letters.stats()
        held = GaugeMetricFamily("leasegate_dead_letters", "Dead letters held, by reason",
                                 labels=["reason"])
        for reason, count in sorted(stats.by_reason.items()):
            held.add_metric([reason], count)
        oldest = GaugeMetricFamily("leasegate_dead_letter_oldest_age_seconds",
                                   "Age of the oldest held dead letter (server time)")
        oldest.add_metric([], stats.oldest_age or 0.0)
        leases = GaugeMetricFamily("leasegate_leases", "Runs owning their session key now",
                                   labels=["state"])
        for state, count in sorted(self._leases().items()):
            leases.add_metric([state], count)
        return [deliveries, renew, skipped, held, oldest, leases]

    def _leases(self) -> dict[str, int]:
        keys = [self.client.keys.run(sk, rid) for sk, rid in self.client.registry.runs()]
        now = self.client.server_time_ms()
        counts = {state.value: 0 for state in RunState if state.alive}  # live, parked
        with self.client.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "state", "exp")
            for state, exp in pipe.execute():
                name = as_text(state) if state else ""
                if name in counts and exp is not None and int(exp) > now:
                    counts[name] += 1
        return counts


def exporter_registry(client: Client, interval: float) -> CollectorRegistry:
    """Deployment-wide figures from Redis, plus this host's workers' histograms under prefork."""
    registry = CollectorRegistry()
    registry.register(RedisCollector(client, interval))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
