"""RabbitMQ as the Celery broker (``LEASEGATE_BROKER_URL=amqp://...``): quorum queues, and the
start-up check against the server's ``consumer_timeout``.

Redis stays the ownership and verdict store (``LEASEGATE_REDIS_URL``); RabbitMQ only carries
the task messages. Every queue a leasegate app declares there is a quorum queue (replicated,
durable, ``x-queue-type: quorum``), and the runtime's producer declares them the same way
(``Transport.for_broker``): RabbitMQ refuses a queue declared with other arguments.

A message a worker holds unacknowledged (acks late) for longer than the server's
``consumer_timeout`` (default 30 min) closes the worker's channel: the task is redelivered and
runs again. The gate's memo keeps that to one verdict, but the generation is paid twice, so a
worker refuses to start when ``LEASEGATE_MAX_DEADLINE`` plus a retry's hold does not fit.

``amqps://`` takes its CA, client certificate and key from ``LEASEGATE_BROKER_TLS_*``
(``broker_options``, applied by ``install()``); a worker whose CA does not trust the server
refuses to start naming that setting, instead of Celery's endless reconnect.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from ..broker import explain_broker_tls_failure
from .config import ConfigError, WorkerConfig

QUORUM = {"x-queue-type": "quorum"}
# an owned task's message is held past its deadline by at most a retry's countdown
# (60 s, +25 % jitter) and the delivery itself: what consumer_timeout must cover besides
HOLD_MARGIN = 120.0
# what the workers and the runtime's producer must agree on (broker/transport.py has the same).
# Direct exchanges: a retry's countdown is held by the worker (a prefetch slot, at most 75 s),
# not routed through Celery's native delayed delivery, whose topic bindings a fresh vhost
# lacks until some worker declared every queue: a retry published then would be dropped.
QUEUE_SETTINGS = {
    "task_default_queue_type": "quorum",
    "task_create_missing_queue_type": "quorum",  # -Q media-x, a tool's own queue
}


def is_amqp(broker_url: str) -> bool:
    """Whether Celery reaches RabbitMQ through this URL (kombu's amqp schemes)."""
    return broker_url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp", "librabbitmq")


def quorum_queue(queue: Queue) -> Queue:
    """``queue``, made a quorum queue (its exchange, routing key and other arguments kept)."""
    declared: Any = queue  # kombu's Queue types none of its declaration attributes
    declared.queue_arguments = {**(declared.queue_arguments or {}), **QUORUM}
    declared.durable = True  # a quorum queue is durable, and RabbitMQ says so at declare
    return queue


def configure(conf: Any, redis_url: str) -> None:
    """Make every queue of a Celery app's conf a quorum queue, declared or created on use."""
    if not conf.get("redbeat_redis_url"):
        conf.redbeat_redis_url = redis_url  # redbeat would take the amqp:// URL for a Redis
    conf.task_queues = [quorum_queue(q) for q in conf.task_queues or []]
    conf.update(QUEUE_SETTINGS)
    # quorum queues have no global QoS: Celery sets prefetch per consumer when it sees them
    conf.worker_detect_quorum_queues = True
    options = dict(conf.broker_transport_options or {})
    options.pop("visibility_timeout", None)  # Redis' redelivery clock; RabbitMQ has none
    # a retry is only handed over once RabbitMQ has it (a quorum queue: on a majority)
    options.setdefault("confirm_publish", True)
    conf.broker_transport_options = options


def check_consumer_timeout(config: WorkerConfig) -> None:
    """Refuse a worker whose longest task would outlive RabbitMQ's consumer_timeout."""
    timeout = config.rabbitmq_consumer_timeout
    if timeout == 0:  # the operator disabled consumer_timeout on the server
        return
    if timeout < config.max_deadline + HOLD_MARGIN:
        raise ConfigError(
            f"LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT={timeout:g} s (RabbitMQ's consumer_timeout) "
            f"does not cover LEASEGATE_MAX_DEADLINE={config.max_deadline:g} s plus "
            f"{HOLD_MARGIN:g} s: RabbitMQ would close the channel of a task still running and "
            "redeliver it. Raise consumer_timeout on the server (rabbitmq.conf: "
            f"consumer_timeout = {int((config.max_deadline + HOLD_MARGIN) * 1000)} or more, "
            "in ms) and LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT to match, or lower "
            "LEASEGATE_MAX_DEADLINE.")


def check_tls(app: Any) -> None:
    """On ``amqps://``, one TLS handshake with the broker: a certificate it does not trust is a
    configuration error (refused); an unreachable broker is left to Celery's reconnects."""
    if str(app.conf.broker_url or "").split("://", 1)[0] != "amqps":
        return
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=5)
    except Exception as exc:
        explained = explain_broker_tls_failure(str(exc))
        if explained != str(exc):
            raise ConfigError(f"cannot reach the broker over TLS: {explained}") from None
