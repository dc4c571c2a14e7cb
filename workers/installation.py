"""Make any Celery app leasegate-aware: serializer, owned task defaults, queues, checks."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps
from celery.signals import task_revoked, worker_ready
from kombu.entity import Queue

from ..broker import HEADER, EnvelopeError, wire_from_header
from .config import ConfigError, WorkerConfig
from .images import TASK_NAME, image_generate
from .tasks import OwnedTask, WorkerRuntime, owned_task
from .tasks.cron import TICK_TASK, install_cron, load_jobs, tick

log = logging.getLogger("leasegate.workers")


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


def install(app: Celery, config: WorkerConfig | None = None) -> Celery:
    """Configure ``app`` for owned tasks and register image_generate on it."""
    config = config or WorkerConfig.from_env()
    app.leasegate_config = config
    conf = app.conf
    conf.accept_content = sorted({*(conf.accept_content or ["json"]), "json", "msgpack"})
    conf.result_accept_content = sorted({*(conf.result_accept_content or
                                           conf.accept_content), "msgpack"})
    conf.worker_prefetch_multiplier = 1  # a long media task must not hold others hostage
    options = dict(conf.broker_transport_options or {})
    options["visibility_timeout"] = max(float(options.get("visibility_timeout", 0)),
                                        config.visibility_timeout)
    conf.broker_transport_options = options
    queues = list(conf.task_queues or [Queue(conf.task_default_queue)])  # type: ignore[no-untyped-call]
    if all(q.name != config.media_queue for q in queues):
        queues.append(Queue(config.media_queue))  # type: ignore[no-untyped-call]
    conf.task_queues = queues
    routes = dict(conf.task_routes or {}) if isinstance(conf.task_routes, dict) else {}
    routes.setdefault(TASK_NAME, {"queue": config.media_queue})
    conf.task_routes = routes
    conf.worker_consumer = "leasegate.workers.consumer:LeasegateConsumer"  # quarantine bad input
    app.steps["worker"].add(StartupCheck)
    if TASK_NAME not in app.tasks:
        owned_task(app, name=TASK_NAME)(image_generate)  # routed by task_routes
    if TICK_TASK not in app.tasks:

        @app.task(name=TICK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
        def cron_tick(job: dict[str, Any]) -> str | None:
            return tick(WorkerRuntime.for_app(app).client, job)

    if config.cron_file:
        install_cron(app, load_jobs(config.cron_file))
    return app


@worker_ready.connect  # type: ignore[untyped-decorator]
def serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    """With LEASEGATE_METRICS_PORT, a worker serves its processes' metrics itself."""
    config: WorkerConfig | None = getattr(getattr(sender, "app", None), "leasegate_config", None)
    if config is None or not config.metrics_port:
        return
    from .metrics import process_registry, serve

    serve(process_registry(), config.metrics_port)
    log.info("leasegate worker metrics on port %d", config.metrics_port)


@task_revoked.connect  # type: ignore[untyped-decorator]
def quarantine_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """A revoked owned task never runs; its callback still ends in exactly one place."""
    if not isinstance(sender, OwnedTask):
        return
    # request is the task's Context: message headers are its attributes
    value = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    if value is None:
        return
    runtime = WorkerRuntime.for_app(sender.app)
    wire = wire_from_header(value)
    try:
        env = runtime.gate.open(wire)
    except EnvelopeError as exc:
        runtime.gate.quarantine_raw(wire, exc)
        return
    verdict = runtime.gate.deliver(env, {"error": "cancelled", "reason": "revoked"},
                                   kind="error")
    log.info("revoked callback %s: %s", env.callback_id, verdict.reason or "delivered")
