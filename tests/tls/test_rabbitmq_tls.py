"""RabbitMQ over TLS (``amqps://``) as the Celery broker: a node of our own with only a TLS
listener (certificates made by the test), a real ``celery worker`` delivering an image end to
end with the LEASEGATE_BROKER_TLS_* files, and a CA that does not trust the server refused."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer, RedisTls
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.rabbitmq import RabbitTlsNode
from tests.support.tls import make_certificates

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]


def broker_tls_env(tls: RedisTls) -> dict[str, str]:
    return {"LEASEGATE_BROKER_TLS_CA": tls.ca, "LEASEGATE_BROKER_TLS_CERT": tls.cert,
            "LEASEGATE_BROKER_TLS_KEY": tls.key}


@pytest.fixture(scope="module")
def node(redis_tls: RedisTls, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[RabbitTlsNode]:
    with RabbitTlsNode(Path(tmp_path_factory.mktemp("rabbit-tls")), redis_tls) as started:
        print(f"RabbitMQ TLS node booted in {started.boot_seconds:.1f} s")  # measured, -s
        yield started


@pytest.fixture
def broker_env(redis_tls: RedisTls, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The runtime's side reads the same variables from its environment."""
    env = broker_tls_env(redis_tls)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_a_worker_delivers_an_image_over_amqps(
        node: RabbitTlsNode, redis_server: RedisServer, tls_environment: dict[str, str],
        broker_env: dict[str, str], tmp_path: Path) -> None:
    namespace = f"amqps{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(redis_server.url, namespace, tmp_path, LEASEGATE_BROKER_URL=node.url,
                           LEASEGATE_MAX_DEADLINE="600", LEASEGATE_GENERATOR_LATENCY="0",
                           **tls_environment, **broker_env).start()
    client = Client.from_url(redis_server.url, namespace, secret=SECRET.encode(),
                             broker_url=node.url)
    try:
        run = client.start_run(f"agent:amqps-{uuid.uuid4().hex[:6]}", prompt="Draw", ttl=60)
        callback = run.submit("image_generate", prompt="a padlock", size="256x256")
        got = run.inbox.wait_for([callback], timeout=30)[callback]
        assert got.kind == "result" and len(got.artifacts) == 1
        assert [e.callback_id for e in run.inbox.entries()].count(callback) == 1
        assert "Global QoS is disabled" in worker.log()  # its queues are quorum queues
        assert f"amqps://guest:**@localhost:{node.port}" in worker.log()
        run.release("completed")
    finally:
        worker.stop()
        client.redis.close()


def test_a_ca_that_does_not_trust_the_broker_is_refused_by_name(
        node: RabbitTlsNode, redis_server: RedisServer, tls_environment: dict[str, str],
        redis_tls: RedisTls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery alone would reconnect forever; the worker stops at once, naming the setting."""
    stranger = make_certificates(tmp_path / "other", ca_name="some other CA")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    env.update(tls_environment, **broker_tls_env(redis_tls))
    env.update(LEASEGATE_REDIS_URL=redis_server.url, LEASEGATE_BROKER_URL=node.url,
               LEASEGATE_SECRET=SECRET, LEASEGATE_MAX_DEADLINE="600",
               LEASEGATE_ARTIFACT_DIR=str(tmp_path), LEASEGATE_BROKER_TLS_CA=stranger.ca)
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers", "worker",
                          "-P", "solo", "--without-gossip", "--without-mingle",
                          "--without-heartbeat"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    [line] = [ln for ln in out.stderr.splitlines() if "refused to start" in ln]
    assert "CERTIFICATE_VERIFY_FAILED" in line and "set LEASEGATE_BROKER_TLS_CA" in line, line
    # the runtime's producer: the submit fails, nothing is sent in clear
    monkeypatch.setenv("LEASEGATE_BROKER_TLS_CA", stranger.ca)
    # kombu pools producers per URL (TLS options aside): a URL spelled unlike the first
    # test's, so that this client opens its own connection (the leaf names 127.0.0.1 too)
    stranger_url = node.url.replace("@localhost:", "@127.0.0.1:")
    client = Client.from_url(redis_server.url, "amqpsx", secret=SECRET.encode(),
                             broker_url=stranger_url)
    try:
        run = client.start_run(f"agent:amqps-{uuid.uuid4().hex[:6]}", prompt="Draw", ttl=60)
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            run.submit("image_generate", prompt="never", size="256x256")
    finally:
        client.redis.close()
