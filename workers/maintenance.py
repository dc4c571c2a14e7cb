"""Maintenance a deployment needs without anyone scheduling it: the reaper (a verdict for every
callback still pending past its deadline plus a grace), dead-letter retention (sweep) and
artifact collection. Every worker's main process runs a timer thread (``install()`` connects
it to ``worker_ready``), and a Redis lock with a TTL lets one worker at a time do the work, so
neither beat nor cron is needed for the promise to hold.

How often each job runs is decided in Redis too: a job's ``due`` key is set with NX and a TTL
of its interval, so across all workers a job runs at most once per interval (server time).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from redis.exceptions import LockError, RedisError

from ..broker import Client, Reaper, collect_artifacts
from ..ownership import RegistryUnavailable
from ..ownership import connect as connect_redis
from .config import WorkerConfig

log = logging.getLogger("leasegate.maintenance")

REAP_LIMIT = 1000          # callbacks settled per tick: bounds a tick's Redis work
SWEEP_LIMIT = 10_000       # dead letters tombstoned per sweep
# seconds: a SIGKILLed holder blocks the others' reaper at most this long; a round that outlasts it
# overlaps another worker's, which is harmless (every job is one idempotent script per item)
MIN_LOCK_TTL = 20.0
HOOKS_ONLY_INTERVAL = 30.0  # seconds between queue-claim refreshes with maintenance off


def lock_key(namespace: str) -> str:
    return f"{namespace}:maintenance:lock"


def due_key(namespace: str, job: str) -> str:
    return f"{namespace}:maintenance:due:{job}"


class Maintenance:
    """One worker's share of the deployment's maintenance: ``tick`` does a round if this
    worker gets the lock; ``start`` runs ticks on a daemon thread until ``stop``."""

    def __init__(self, config: WorkerConfig, client: Client | None = None) -> None:
        self.config = config
        self.client = client or Client(connect_redis(config.redis_url), config.namespace,
                                       **config.client_keys())  # submits nothing: no Celery
        self.reaper = Reaper.for_client(self.client)
        self.store = config.artifact_store()
        self.lock_ttl = max(MIN_LOCK_TTL, 4 * config.maintenance_interval)
        self.stopped = threading.Event()
        self.leftover: tuple[Any, str] | None = None  # (lock, token) a round failed to release
        self.thread: threading.Thread | None = None
        self.hooks: list[Callable[[], None]] = []  # every tick, lock or not (queue claims)

    def tick(self) -> dict[str, int] | None:
        """Run what is due if this worker holds the lock; None if another worker does."""
        for hook in self.hooks:
            hook()
        if not self.config.maintenance_interval:
            return None  # this worker only keeps its queue claims
        self._free_leftover()
        lock = self.client.redis.lock(lock_key(self.config.namespace), timeout=self.lock_ttl,
                                      blocking=False, thread_local=False)
        token = uuid.uuid4().hex
        try:
            if not lock.acquire(token=token):
                return None
        except RedisError:  # it may have been taken before the reply was lost
            self.leftover = (lock, token)
            raise
        try:
            done = {"reaped": self.reaper.reap(self.config.verdict_grace, REAP_LIMIT)}
            if self._due("sweep", self.config.dlq_sweep_interval):
                lock.reacquire()  # each job starts with the lock's full TTL ahead of it
                done["swept"] = self.client.dead_letters.sweep(SWEEP_LIMIT)
            if self._due("collect", self.config.collect_interval):
                lock.reacquire()
                done["collected"] = len(collect_artifacts(self.client.redis, self.client.keys,
                                                          self.store,
                                                          self.config.collect_grace))
        finally:
            try:
                lock.release()
            except LockError:  # it expired meanwhile: another worker may hold it now
                log.warning("maintenance lock expired during a round (%g s)", self.lock_ttl)
            except RedisError:  # Redis failed mid-round: freed on the next tick, not at its TTL
                self.leftover = (lock, token)
                raise
        if any(done.values()):
            log.info("leasegate maintenance: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        return done

    def _free_leftover(self) -> None:
        """Release the lock a round kept when Redis failed before its release (a restart, a
        cluster failover): left to its TTL, it would stop every worker's reaper that long."""
        if self.leftover is None:
            return
        lock, token = self.leftover
        with contextlib.suppress(LockError):  # expired meanwhile: nothing of ours to free
            lock.do_release(token)
        self.leftover = None

    def _due(self, job: str, interval: float) -> bool:
        return bool(self.client.redis.set(due_key(self.config.namespace, job), 1, nx=True,
                                          px=max(1, int(interval * 1000))))

    def start(self) -> Maintenance:
        self.thread = threading.Thread(target=self._run, name="leasegate-maintenance",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except (RedisError, RegistryUnavailable, OSError) as exc:
                log.warning("leasegate maintenance round failed, retried next tick: %s", exc)
            except Exception:  # a bug must not end the timer: the promise depends on it
                log.exception("leasegate maintenance round failed")
            if self.stopped.wait(self.config.maintenance_interval or HOOKS_ONLY_INTERVAL):
                return


_running: dict[int, Maintenance] = {}


def start_maintenance(sender: Any = None, **_: Any) -> None:
    """worker_ready: start this worker's timer (with LEASEGATE_MAINTENANCE_INTERVAL=0 it only
    refreshes the worker's queue claims)."""
    app = getattr(sender, "app", None)
    config: WorkerConfig | None = getattr(app, "leasegate_config", None)
    claims = getattr(app, "_leasegate_claims", None)
    if config is None or id(app) in _running or not (config.maintenance_interval or claims):
        return
    maintenance = Maintenance(config)
    if claims is not None:
        maintenance.hooks.append(claims.refresh)
    maintenance.hooks.extend(getattr(app, "_leasegate_hooks", []))  # the secret fingerprint
    _running[id(app)] = maintenance.start()
    log.info("leasegate maintenance every %g s (verdict grace %g s)",
             config.maintenance_interval, config.verdict_grace)


def stop_maintenance(sender: Any = None, **_: Any) -> None:
    """worker_shutdown: stop the timer, and give back this worker's queue claims."""
    for maintenance in _running.values():
        maintenance.stop()
    claims = getattr(getattr(sender, "app", None), "_leasegate_claims", None)
    if claims is not None:
        try:
            claims.release()
        except Exception as exc:  # they lapse after their TTL anyway
            log.warning("could not release queue claims: %s", exc)


def connect() -> None:
    """Connect the timer to the worker's life; a repeat is a no-op (the dispatch_uids)."""
    worker_ready.connect(start_maintenance, dispatch_uid="leasegate.start_maintenance")
    worker_shutdown.connect(stop_maintenance, dispatch_uid="leasegate.stop_maintenance")
