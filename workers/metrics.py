"""A worker's own Prometheus metrics: the gate latency histogram, and the registry and endpoint
a worker serves them from (``LEASEGATE_METRICS_PORT``).

The histogram is per process: with prefork, set PROMETHEUS_MULTIPROC_DIR and the worker's own
endpoint (or the exporter, ``celery leasegate metrics``) adds up every process on the host.
Deployment-wide counters live in Redis; the exporter reads them (``workers/cli/exporter.py``).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Histogram, start_http_server

GATE_LATENCY = Histogram(
    "leasegate_gate_latency_seconds", "Time of one Gate.deliver call, as a worker sees it",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))


def process_registry() -> CollectorRegistry:
    """This host's worker processes: one process, or all of them under prefork."""
    from prometheus_client import REGISTRY, multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=registry)
