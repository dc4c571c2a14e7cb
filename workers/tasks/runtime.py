"""What a worker process holds for its owned tasks, and how it waits out a Redis outage."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery

from ...broker import Client, Settings
from ...ownership import RegistryUnavailable, connect
from ..config import WorkerConfig
from .watch import OwnerWatch

R = TypeVar("R")
T = TypeVar("T")

log = logging.getLogger("leasegate.workers")


class WorkerRuntime:
    """Per-process resources of a worker: Redis client, gate, artifact store, owner watch,
    and whatever a tool keeps per process (``resource``: a model, a backend client)."""

    def __init__(self, config: WorkerConfig, app: Celery | None = None) -> None:
        self.config = config
        client = connect(config.redis_url)
        # the worker's own app sends what runtimes running here (cron ticks) submit; they are
        # told this deployment's longest deadline up front, as the workers refuse longer ones
        self.client = Client(client, config.namespace, **config.client_keys(), celery_app=app,
                             settings=Settings(max_deadline=config.max_deadline,
                                               min_replicas=config.min_replicas,
                                               min_replicas_timeout_ms=config
                                               .min_replicas_timeout_ms))
        self.gate = self.client.gate
        self.store = config.artifact_store()
        self.watch = OwnerWatch(self, config.check_interval)
        self._resources: dict[str, Any] = {}
        self._lock = threading.Lock()

    def resource(self, name: str, make: Callable[[WorkerRuntime], R]) -> R:
        """The process's one ``name`` (a loaded model, a backend client), made on first use:
        load it once per process, never per task, and never in the prefork parent."""
        with self._lock:
            if name not in self._resources:
                self._resources[name] = make(self)
            return self._resources[name]  # type: ignore[no-any-return]

    @classmethod
    def for_app(cls, app: Celery) -> WorkerRuntime:
        """One runtime per process: prefork children must not share a parent's sockets."""
        cached = getattr(app, "_leasegate_runtime", None)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]  # type: ignore[no-any-return]
        runtime = cls(app.leasegate_config, app)
        app._leasegate_runtime = (os.getpid(), runtime)
        return runtime


OUTAGE_PATIENCE = 30.0  # seconds a task waits out a Redis outage before giving its message back


def patiently(call: Callable[[], T], patience: float = OUTAGE_PATIENCE) -> T:
    """Call, and while Redis is unavailable wait and call again, up to ``patience`` seconds:
    a restart must not cost a callback, nor the GPU minutes already spent on it."""
    delay, deadline = 0.05, time.monotonic() + patience
    while True:
        try:
            return call()
        except RegistryUnavailable:
            if time.monotonic() + delay > deadline:
                raise
            log.debug("Redis unavailable; calling again in %.2f s", delay)
            time.sleep(delay)  # backoff while Redis is away; nothing to wait on but time
            delay = min(delay * 2, 2.0)
