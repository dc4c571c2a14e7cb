"""Celery apps the benchmarks and the chaos driver run as real ``celery worker`` processes.

- ``benchmarks.apps:plain``: plain Celery, the reliable settings (acks_late, reject on worker
  lost, prefetch 1, msgpack, ignore_result); the task signals completion with one INCR.
- ``benchmarks.apps:owned``: the same settings through ``leasegate.workers.install``; the task
  is an owned no-op, so every message goes through the envelope check, the pre-check and the
  gate.
- ``benchmarks.apps:chaos``: the bundled worker setup (``install`` with image_generate), with
  the Redis transport told to look for abandoned messages every second, so that the messages
  of a SIGKILLed worker come back one visibility timeout later instead of up to ~100 s later.
  Two more owned tasks give the drill its own faults: ``chaos.hard_limit`` (tool
  ``hard_limit``) sleeps past its hard ``time_limit`` of 1 s, so Celery kills it and only the
  reaper can give its ``no_verdict``; ``chaos.oversized`` (tool ``oversized``) returns more
  than the 256 KiB result limit, so its verdict is a ``result_too_large`` error.

Configuration comes from the ``LEASEGATE_*`` environment (as the bundled app) plus
``BENCH_QUEUE``, the queue the no-op tasks are consumed from.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from leasegate.workers.config import WorkerConfig
from leasegate.workers.installation import install
from leasegate.workers.tasks.owned import OwnedContext, OwnedResult, owned_task

from .chaos_faults import CHAOS_TASKS

QUEUE = os.environ.get("BENCH_QUEUE", "bench")
PLAIN_TASK = "bench.plain_noop"
OWNED_TASK = "bench.owned_noop"

config = WorkerConfig.from_env()


def _reliable(app: Celery) -> Celery:
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="msgpack",
        accept_content=["json", "msgpack"],
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_transport_options={"visibility_timeout": config.visibility_timeout},
        broker_connection_retry_on_startup=True,
    )
    return app


plain = _reliable(Celery("bench-plain", broker=config.broker_url, set_as_current=False))
_counter_client: tuple[int, redis.Redis] | None = None


def _counter() -> redis.Redis:
    """One client per process (prefork children must not share the parent's socket)."""
    global _counter_client
    if _counter_client is None or _counter_client[0] != os.getpid():
        _counter_client = (os.getpid(), redis.Redis.from_url(config.redis_url))
    return _counter_client[1]


@plain.task(name=PLAIN_TASK, acks_late=True, ignore_result=True, serializer="msgpack")
def plain_noop(counter: str) -> None:
    _counter().incr(counter)


owned = install(_reliable(Celery("bench-owned", broker=config.broker_url,
                                 set_as_current=False)), config)


def owned_noop(ctx: OwnedContext, **_: Any) -> OwnedResult:
    return OwnedResult(payload={})


owned_task(owned, name=OWNED_TASK, tool="noop")(owned_noop)  # e2e.py submits "noop"


chaos = Celery("leasegate-chaos", broker=config.broker_url, set_as_current=False)
chaos.conf.task_default_queue = "celery"
install(chaos, config)
chaos.conf.broker_transport_options = {
    **chaos.conf.broker_transport_options,
    "unacked_restore_interval": 1,   # kombu's sweep for abandoned messages: every second...
    "unacked_restore_throttle": 1,   # ...each time (defaults: 10 s x every 10th = ~100 s)
    "unacked_mutex_expire": 5,       # a worker killed mid-sweep blocks others 5 s, not 300 s
}

HARD_LIMIT_S = 1
OVERSIZED_BYTES = 300 * 1024  # over Settings.max_result_bytes (256 KiB)


def hard_limit(ctx: OwnedContext, **_: Any) -> OwnedResult:
    time.sleep(60)  # the hard time limit kills the pool process long before this returns
    return OwnedResult(payload={})


def oversized(ctx: OwnedContext, **_: Any) -> OwnedResult:
    return OwnedResult(payload={"blob": b"x" * OVERSIZED_BYTES})


owned_task(chaos, name=CHAOS_TASKS["hard_limit"][0], tool="hard_limit",
           time_limit=HARD_LIMIT_S)(hard_limit)
owned_task(chaos, name=CHAOS_TASKS["oversized"][0], tool="oversized")(oversized)
