"""What a worker checks before it serves: a configuration that would lose or forge callbacks
stops it at start-up (``StartupCheck``, added to every app by ``install()``), with one line
saying how to fix it."""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

from .config import ConfigError, WorkerConfig


class StartupCheck(bootsteps.Step):  # type: ignore[misc]
    """Refuse to start a worker whose configuration would lose or forge callbacks."""

    name = "leasegate startup check"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        try:
            self.check(worker.app)
        except ConfigError as exc:
            # SystemExit: the worker stops with status 1 and this one line, not a traceback
            raise SystemExit(f"leasegate: worker refused to start: {exc}") from None
        # -E lives on the worker, not in conf: pool processes read it to send our events
        worker.app.conf.worker_send_task_events = bool(getattr(worker, "task_events", False))
        super().__init__(worker, **kwargs)

    @staticmethod
    def check(app: Celery) -> None:
        config: WorkerConfig = app.leasegate_config
        config.check()
        timeout = float((app.conf.broker_transport_options or {}).get(
            "visibility_timeout", 3600))
        if app.conf.broker_url and str(app.conf.broker_url).startswith(("redis", "rediss")) \
                and timeout <= config.max_deadline:
            raise ConfigError(
                f"broker_transport_options visibility_timeout={timeout:g} s does not exceed "
                f"LEASEGATE_MAX_DEADLINE={config.max_deadline:g} s: a running task would be "
                "redelivered. Raise visibility_timeout.")
        check_no_eviction(config.redis_url)


def check_no_eviction(redis_url: str) -> None:
    """An evicted lease or dead letter is lost data: Redis must refuse writes instead."""
    from ..ownership import connect

    client = connect(redis_url)
    try:
        policy = str(client.info("memory").get("maxmemory_policy", "unknown"))
    except Exception as exc:
        raise ConfigError(f"cannot reach Redis at LEASEGATE_REDIS_URL ({exc})") from exc
    finally:
        client.close()
    if policy != "noeviction":
        raise ConfigError(
            f"Redis maxmemory-policy is {policy!r}: it may evict leases and dead letters. "
            "Set `maxmemory-policy noeviction` (redis.conf, or CONFIG SET maxmemory-policy "
            "noeviction) on the Redis leasegate uses.")
