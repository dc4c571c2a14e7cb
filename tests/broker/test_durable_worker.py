"""LEASEGATE_MIN_REPLICAS=1 on a real worker: a verdict that reached the primary but not the
replica is not acknowledged to Celery; the message comes back, the memo answers once the
replica has it, and the callback still has exactly one verdict."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import Client, Settings
from leasegate.testing.redis_sentinel import SentinelGroup
from leasegate.testing.redis_server import RedisServer
from leasegate.workers.config import ConfigError, WorkerConfig
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

REQUEUED = "Redis unavailable for callback work of task"


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_a_verdict_is_acknowledged_only_once_on_a_replica(
        group: SentinelGroup, broker: RedisServer, tmp_path: Path) -> None:
    namespace = f"d{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(group.url, namespace, tmp_path, LEASEGATE_BROKER_URL=broker.url,
                           LEASEGATE_MIN_REPLICAS="1", LEASEGATE_MIN_REPLICAS_TIMEOUT="200")
    worker.start()
    try:
        client = Client.from_url(group.url, namespace, secret=SECRET.encode(),
                                 broker_url=broker.url,
                                 settings=Settings(min_replicas=1, min_replicas_timeout_ms=200))
        run = client.start_run("agent:durable", "draw a lighthouse")
        memo = client.keys.callback(run.session_key, run.run_id, "cb-1")
        queue = broker.client()
        group.pause_replica()
        try:
            run.submit("image_generate", callback_id="cb-1", prompt="a lighthouse",
                       size="256x256")
            # the verdict is on the primary; the message is not acknowledged, and after the
            # worker's patience it goes back to the queue (the path an outage takes)
            wait_until(lambda: client.redis.hget(memo, "d") == b"1", 60,
                       message="the verdict on the primary")
            assert queue.hlen("unacked") + queue.llen("media") == 1
            worker.wait_log(REQUEUED, timeout=90)
            assert queue.hlen("unacked") + queue.llen("media") == 1
        finally:
            group.resume_replica()
        # redelivered: the memo answers, confirmed on the replica, and the message is acked
        worker.wait_log("already has a verdict", timeout=90)
        wait_until(lambda: queue.hlen("unacked") + queue.llen("media") == 0, 30,
                   message="the message acknowledged")
        results = [e for e in run.inbox.entries() if e.callback_id == "cb-1"]
        assert len(results) == 1 and results[0].kind == "result"
        assert group.replica is not None
        assert group.replica.client().hget(memo, "d") == b"1"
        assert client.dead_letters.stats().held == 0
        assert worker.log().count("working on") == 1  # the repeat did no work again
    finally:
        worker.stop()


def test_a_worker_refuses_a_sentinel_url_as_its_celery_broker() -> None:
    config = WorkerConfig.from_env({"LEASEGATE_REDIS_URL": "redis+sentinel://h:1/mymaster",
                                    "LEASEGATE_INSECURE_DEV": "1",
                                    "LEASEGATE_MIN_REPLICAS": "1"})
    assert (config.min_replicas, config.min_replicas_timeout_ms) == (1, 1000)
    with pytest.raises(ConfigError, match=r"LEASEGATE_BROKER_URL.*sentinel://"):
        config.check()
    with pytest.raises(ConfigError, match="LEASEGATE_MIN_REPLICAS_TIMEOUT"):
        WorkerConfig.from_env({"LEASEGATE_MIN_REPLICAS_TIMEOUT": "0"})
