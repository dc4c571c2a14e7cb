"""Redis Sentinel as the Celery broker of the bundled app: ``LEASEGATE_BROKER_URL`` in kombu's
``sentinel://host:port;sentinel://host:port`` form with ``LEASEGATE_BROKER_MASTER_NAME``, the
store on the same set through ``redis+sentinel://``; a real worker delivers an image, before
and after the primary is SIGKILLed and a replica promoted. A sentinel URL without a master
name is refused, naming the setting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import Client
from leasegate.testing.redis_sentinel import SERVICE, SentinelGroup
from leasegate.workers.config import ConfigError, WorkerConfig
from tests.support.celery_workers import SECRET, WorkerProcess

MASTER = "LEASEGATE_BROKER_MASTER_NAME"


def kombu_sentinel_url(group: SentinelGroup) -> str:
    return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in group.sentinels) + "/0"


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


@pytest.mark.e2e
def test_a_worker_on_a_sentinel_broker_delivers_across_a_failover(
        group: SentinelGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = f"sb{uuid.uuid4().hex[:8]}"
    broker = kombu_sentinel_url(group)
    monkeypatch.setenv(MASTER, SERVICE)  # the runtime's producer reads it too
    worker = WorkerProcess(group.url, namespace, tmp_path, LEASEGATE_BROKER_URL=broker,
                           LEASEGATE_GENERATOR_LATENCY="0", **{MASTER: SERVICE}).start()
    client = Client.from_url(group.url, namespace, secret=SECRET.encode(), broker_url=broker)
    try:
        run = client.start_run(f"agent:sb-{uuid.uuid4().hex[:6]}", prompt="Draw", ttl=120)
        first = run.submit("image_generate", prompt="before", size="256x256")
        assert run.inbox.wait_for([first], timeout=30)[first].kind == "result"
        # kombu found the primary through the sentinels: its bindings are there
        assert group.primary.client().exists("_kombu.binding.media")
        old = group.primary_port()
        group.kill_primary()
        group.wait_failover(old)
        second = run.submit("image_generate", prompt="after", size="256x256")
        got = run.inbox.wait_for([second], timeout=60)[second]
        assert got.kind == "result" and "Connection to broker lost" in worker.log()
        assert [e.callback_id for e in run.inbox.entries()].count(second) == 1
        run.release("completed")
    finally:
        worker.stop()
        client.redis.close()


def test_a_sentinel_broker_without_a_master_name_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER, raising=False)
    url = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/0"
    config = WorkerConfig.from_env({"LEASEGATE_BROKER_URL": url})
    with pytest.raises(ConfigError, match=f"sentinel:// URL but {MASTER} is not set"):
        config.check_broker()
    with pytest.raises(ValueError, match=MASTER):
        Client.from_url("redis://127.0.0.1:1/0", "lg", secret=SECRET.encode(), broker_url=url)
    monkeypatch.setenv(MASTER, SERVICE)
    config.check_broker()


def test_the_stores_sentinel_url_as_broker_names_both_settings() -> None:
    config = WorkerConfig.from_env({"LEASEGATE_REDIS_URL": "redis+sentinel://h:1/mymaster"})
    with pytest.raises(ConfigError, match=f"sentinel://host:port.*{MASTER}"):
        config.check_broker()


def test_beat_keeps_its_schedule_on_the_primary_the_sentinels_name(
        group: SentinelGroup, monkeypatch: pytest.MonkeyPatch) -> None:
    """redbeat opens neither URL: install() gives it the store's sentinels in its own form."""
    from celery import Celery
    from redbeat.schedulers import get_redis

    from leasegate.workers import install

    monkeypatch.setenv(MASTER, SERVICE)
    config = WorkerConfig.from_env({"LEASEGATE_REDIS_URL": group.url,
                                    "LEASEGATE_BROKER_URL": kombu_sentinel_url(group),
                                    MASTER: SERVICE})
    app = install(Celery("beat", broker=config.broker_url, set_as_current=False), config)
    assert app.conf.broker_transport_options["master_name"] == SERVICE
    key = f"redbeat-probe-{uuid.uuid4().hex[:6]}"
    get_redis(app).set(key, "1")
    primary = next(s for s in (group.primary, group.replica)
                   if s is not None and s.port == group.primary_port())
    assert primary.client().get(key) == b"1"
