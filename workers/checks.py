"""What a worker checks before it serves: a configuration that would lose or forge callbacks
stops it at start-up (``StartupCheck``, added to every app by ``install()``), with one line
saying how to fix it."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps

from .config import ConfigError, WorkerConfig
from .rabbitmq import check_consumer_timeout, check_tls, is_amqp

log = logging.getLogger("leasegate.workers")


class StartupCheck(bootsteps.Step):  # type: ignore[misc]
    """Refuse to start a worker whose configuration would lose or forge callbacks."""

    name = "leasegate startup check"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        try:
            self.check(worker.app)
            claim_queues(worker)
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
        if is_amqp(str(app.conf.broker_url or "")):
            check_consumer_timeout(config)
            check_tls(app)  # a CA that does not trust the server: refused, not retried forever
        check_no_eviction(config.redis_url)


def claim_queues(worker: Any) -> None:
    """Claim the worker's queues for its namespace (redis brokers only), or refuse."""
    app: Celery = worker.app
    config: WorkerConfig = app.leasegate_config
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        return
    queues = list(app.amqp.queues.consume_from or app.amqp.queues)
    claims = QueueClaims(url, config.namespace, [str(q) for q in queues],
                         max(CLAIM_TTL, 4 * config.maintenance_interval))
    claims.claim()
    app._leasegate_claims = claims  # the maintenance timer refreshes them


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


CLAIM_TTL = 120.0  # seconds a queue claim outlives its last refresh (worker gone: it lapses)


def claim_key(queue: str) -> str:
    """Not namespaced on purpose: the queue it guards is shared by every namespace."""
    return f"leasegate:queue-claim:{queue}"


class QueueClaims:
    """The namespace a worker serves claims each queue it consumes in the broker Redis.

    Celery's queue names are not namespaced: two deployments on one broker would take each
    other's tasks (and quarantine them as ``bad_signature``). A worker whose queue another
    namespace holds refuses to start; the maintenance timer refreshes the claims (TTL
    ``CLAIM_TTL``), so they lapse once no worker of that namespace is left.
    """

    def __init__(self, broker_url: str, namespace: str, queues: list[str],
                 ttl: float = CLAIM_TTL) -> None:
        import redis

        from ..ownership import is_tls, redis_tls_options

        tls = redis_tls_options() if is_tls(broker_url) else {}  # LEASEGATE_REDIS_TLS_*
        self.client = redis.Redis.from_url(broker_url, **tls)
        self.namespace = namespace
        self.queues = sorted(queues)
        self.ttl_ms = int(ttl * 1000)

    def holders(self) -> dict[str, str]:
        """Claim (or refresh) every queue; the queues another namespace holds -> that one."""
        import redis

        taken: dict[str, str] = {}
        for queue in self.queues:
            key = claim_key(queue)
            with self.client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        raw = pipe.get(key)
                        holder = raw.decode() if isinstance(raw, bytes) else raw
                        if holder not in (None, self.namespace):
                            taken[queue] = str(holder)
                            break
                        pipe.multi()
                        pipe.set(key, self.namespace, px=self.ttl_ms)
                        pipe.execute()
                        break
                    except redis.WatchError:  # another worker claimed meanwhile: look again
                        continue
        return taken

    def claim(self) -> None:
        """At start-up: ConfigError naming the queue and its holder if one is taken."""
        from ..ownership import is_cluster

        if is_cluster(self.client):  # kombu would meet MOVED replies it cannot follow
            raise ConfigError(
                "LEASEGATE_BROKER_URL is a Redis Cluster node (it defaults to "
                "LEASEGATE_REDIS_URL), and Celery has no Redis Cluster transport: keep the "
                "registry on the cluster and give the broker RabbitMQ (amqp://...) or a "
                "standalone or Sentinel Redis (docs/scaling.md)")
        try:
            taken = self.holders()
        except Exception as exc:
            raise ConfigError(f"cannot claim queues in the broker Redis ({exc})") from exc
        if taken:
            which = ", ".join(f"{q!r} (namespace {ns!r})" for q, ns in sorted(taken.items()))
            raise ConfigError(
                f"queue(s) {which} on this broker belong to another leasegate namespace than "
                f"LEASEGATE_NAMESPACE={self.namespace!r}: both would take each other's tasks. "
                "Give each deployment its own broker (another database number in "
                "LEASEGATE_BROKER_URL) or other queue names (-Q, LEASEGATE_MEDIA_QUEUE).")

    def release(self) -> None:
        """At a clean shutdown: drop the claims this namespace holds. Another worker of the
        namespace claims them again at its next refresh; a killed worker's claims lapse."""
        import redis

        for queue in self.queues:
            key = claim_key(queue)
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    held = pipe.get(key)
                    if (held.decode() if isinstance(held, bytes) else held) == self.namespace:
                        pipe.multi()
                        pipe.delete(key)
                        pipe.execute()
                except redis.WatchError:  # changed meanwhile: no longer only ours to drop
                    continue

    def refresh(self) -> None:
        """From the maintenance timer: keep the claims; log loudly if one was taken."""
        taken = self.holders()
        if taken:
            log.error("leasegate: queue(s) %s now claimed by another namespace: this worker "
                      "and theirs share tasks; stop one of them", sorted(taken.items()))
