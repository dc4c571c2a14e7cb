"""Make any Celery app leasegate-aware: serializer, owned task defaults, queues, the start-up
check, the signal handlers, image_generate and cron ticks (``install``)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from ..broker import broker_options
from ..ownership import SENTINEL_SCHEME, parse_sentinel_url
from .checks import StartupCheck
from .config import WorkerConfig
from .images import TASK_NAME, image_generate
from .maintenance import connect as connect_maintenance
from .rabbitmq import configure as configure_rabbitmq
from .rabbitmq import is_amqp
from .redis_transport import NAMESPACE_OPTION, TRANSPORT, URL_OPTION
from .signals import connect_signals
from .tasks import WorkerRuntime, owned_task
from .tasks.cron import TICK_TASK, install_cron, load_jobs, tick


def redbeat_prefix(namespace: str) -> str:
    """redbeat's key prefix (schedule, lock) for a namespace: two deployments on one broker
    must not share one beat lock. The default namespace keeps redbeat's own ``redbeat:``, so
    an existing deployment's beat keeps its lock and schedule across the upgrade."""
    return "redbeat:" if namespace == WorkerConfig.namespace else f"{namespace}:redbeat:"


def redbeat_on_sentinels(conf: Any, redis_url: str) -> None:
    """redbeat's schedule and lock on the store's primary, found through its sentinels
    (redbeat's own ``redis-sentinel://`` form: it cannot read ``redis+sentinel://``)."""
    target = parse_sentinel_url(redis_url)
    conf.redbeat_redis_url = "redis-sentinel://"
    conf.redbeat_redis_options = {"sentinels": target.sentinels, "service_name": target.service,
                                  "db": target.db, "password": target.password,
                                  "username": target.username}


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
    url = str(conf.broker_url or "")
    try:  # TLS files (rediss://, amqps://), a sentinel:// master name
        needs = broker_options(url)
    except ValueError:  # the start-up check refuses with the reason (config.check)
        needs = {}
    if "broker_use_ssl" in needs and not conf.broker_use_ssl:
        conf.broker_use_ssl = needs["broker_use_ssl"]
    for key, value in needs.get("broker_transport_options", {}).items():
        options.setdefault(key, value)  # the app's own transport options win
    # rediss:// only with broker_use_ssl: kombu's rediss defaults come from the scheme's name
    if (url.startswith("redis://") or (url.startswith("rediss://") and conf.broker_use_ssl)) \
            and not conf.broker_transport:
        # poison pushed straight onto a queue is quarantined, not fatal to the worker
        conf.broker_transport = TRANSPORT
        options[URL_OPTION], options[NAMESPACE_OPTION] = config.redis_url, config.namespace
    conf.broker_transport_options = options
    queues = list(conf.task_queues or [Queue(conf.task_default_queue)])  # type: ignore[no-untyped-call]
    if all(q.name != config.media_queue for q in queues):
        queues.append(Queue(config.media_queue))  # type: ignore[no-untyped-call]
    conf.task_queues = queues
    if (is_amqp(url) or url.startswith("sentinel://")) and not conf.get("redbeat_redis_url") \
            and config.redis_url.startswith(f"{SENTINEL_SCHEME}://"):
        redbeat_on_sentinels(conf, config.redis_url)  # neither broker URL is one redbeat opens
    if is_amqp(url):  # quorum queues, per-consumer prefetch, no Redis-only options
        configure_rabbitmq(conf, config.redis_url)
    routes = dict(conf.task_routes or {}) if isinstance(conf.task_routes, dict) else {}
    routes.setdefault(TASK_NAME, {"queue": config.media_queue})
    conf.task_routes = routes
    if not conf.get("redbeat_key_prefix"):
        conf.redbeat_key_prefix = redbeat_prefix(config.namespace)  # its schedule and lock
    conf.worker_consumer = "leasegate.workers.consumer:LeasegateConsumer"  # quarantine bad input
    app.steps["worker"].add(StartupCheck)
    connect_signals()  # once per process, whatever the number of apps installed
    connect_maintenance()  # the reaper, dlq sweep and artifact collection, on a timer
    if TASK_NAME not in app.tasks:
        owned_task(app, name=TASK_NAME)(image_generate)  # routed by task_routes
    if TICK_TASK not in app.tasks:

        @app.task(name=TICK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
        def cron_tick(job: dict[str, Any]) -> str | None:
            return tick(WorkerRuntime.for_app(app).client, job)

    if config.cron_file:
        install_cron(app, load_jobs(config.cron_file))
    return app
