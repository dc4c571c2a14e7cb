"""What ``install(app)`` sets on an ``amqp://`` app, what the runtime's producer declares, and
the consumer_timeout refusal (configuration only: the behaviour on a real RabbitMQ is in
test_e2e_rabbitmq.py)."""

from __future__ import annotations

import pytest
from celery import Celery

from leasegate.broker.transport import Transport
from leasegate.workers import install
from leasegate.workers.config import ConfigError, WorkerConfig
from leasegate.workers.rabbitmq import check_consumer_timeout, is_amqp

AMQP = "amqp://guest:guest@127.0.0.1:5672/nowhere"  # never connected to here


def installed(**env: str) -> Celery:
    config = WorkerConfig.from_env({"LEASEGATE_BROKER_URL": AMQP,
                                    "LEASEGATE_REDIS_URL": "redis://10.1.2.3:6379/4", **env})
    app = Celery("t", broker=config.broker_url, set_as_current=False)
    return install(app, config)


def test_install_on_amqp_declares_quorum_queues_and_keeps_redbeat_on_redis() -> None:
    app = installed()
    conf = app.conf
    assert {q.name for q in conf.task_queues} == {"celery", "media"}
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} and q.durable
               for q in conf.task_queues)
    assert app.amqp.queues["media-other"].queue_arguments == {"x-queue-type": "quorum"}
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_detect_quorum_queues
    assert "visibility_timeout" not in conf.broker_transport_options
    assert conf.broker_transport_options["confirm_publish"] is True
    assert conf.redbeat_redis_url == "redis://10.1.2.3:6379/4"
    assert conf.broker_transport is None  # kombu's own amqp transport, not the Redis channel


def test_install_on_redis_is_unchanged() -> None:
    config = WorkerConfig.from_env({"LEASEGATE_REDIS_URL": "redis://10.1.2.3:6379/4"})
    app = install(Celery("t", broker=config.broker_url, set_as_current=False), config)
    assert all(not q.queue_arguments for q in app.conf.task_queues)
    assert app.conf.broker_transport_options["visibility_timeout"] == 3900


def test_the_runtime_declares_what_the_workers_declare() -> None:
    runtime = Transport.for_broker(AMQP).app
    worker = installed()
    for name in ("media", "media-other"):
        ours, theirs = runtime.amqp.queues[name], worker.amqp.queues[name]
        assert ours.queue_arguments == theirs.queue_arguments == {"x-queue-type": "quorum"}
        assert ours.exchange.type == theirs.exchange.type
    assert runtime.conf.broker_transport_options == {"confirm_publish": True}
    assert not Transport.for_broker("redis://10.1.2.3/0").app.amqp.queues["media"] \
        .queue_arguments


@pytest.mark.parametrize(("timeout", "deadline", "refused"), [
    ("1800", "1800", True),    # both defaults: a full-length task outlives consumer_timeout
    ("1919", "1800", True),
    ("1920", "1800", False),   # deadline + 120 s
    ("7200", "1800", False),
    ("0", "86400", False),     # consumer_timeout disabled on the server
])
def test_consumer_timeout_must_cover_the_longest_deadline(timeout: str, deadline: str,
                                                          refused: bool) -> None:
    config = WorkerConfig.from_env({"LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT": timeout,
                                    "LEASEGATE_MAX_DEADLINE": deadline,
                                    "LEASEGATE_VISIBILITY_TIMEOUT": "90000"})
    if not refused:
        check_consumer_timeout(config)
        return
    with pytest.raises(ConfigError, match="LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT") as refusal:
        check_consumer_timeout(config)
    assert "consumer_timeout = 1920000" in str(refusal.value)


def test_a_bad_consumer_timeout_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT"):
        WorkerConfig.from_env({"LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT": "half an hour"})


@pytest.mark.parametrize(("url", "amqp"), [
    ("amqp://h/v", True), ("amqps://h/v", True), ("pyamqp://h", True),
    ("redis://h/0", False), ("rediss://h/0", False), ("sentinel://h:26379", False),
])
def test_is_amqp(url: str, amqp: bool) -> None:
    assert is_amqp(url) is amqp
