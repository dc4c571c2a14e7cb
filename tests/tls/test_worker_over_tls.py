"""A real ``celery worker`` whose broker and ownership store are both rediss:// delivers a real
image to its run's inbox: kombu gets broker_use_ssl from the same LEASEGATE_REDIS_TLS_* files."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_worker(redis_server: RedisServer, tls_environment: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, str]]:
    namespace = f"tls{uuid.uuid4().hex[:8]}"
    proc = WorkerProcess(redis_server.url, namespace, Path(tmp_path_factory.mktemp("tlsw")),
                         LEASEGATE_GENERATOR_LATENCY="0", LEASEGATE_BROKER_URL=redis_server.url,
                         **tls_environment)
    yield proc.start(), namespace
    proc.stop()


def test_a_worker_over_tls_delivers_a_real_image(tls_worker: tuple[WorkerProcess, str],
                                                 redis_server: RedisServer) -> None:
    worker, namespace = tls_worker
    assert worker.env["LEASEGATE_BROKER_URL"].startswith("rediss://")
    client = Client.from_url(redis_server.url, namespace, secret=SECRET.encode())
    run = client.start_run(f"agent:tls-{uuid.uuid4().hex[:6]}", prompt="Draw", ttl=60)
    callback = run.submit("image_generate", prompt="a lock at dusk", size="256x256")
    [image] = run.inbox.read(after=1, block=30)
    assert (image.callback_id, image.kind) == (callback, "result")
    [artifact] = image.artifacts
    assert Path(worker.artifact_dir).exists() and artifact
    assert "redis://" not in worker.log().replace("rediss://", "")  # never fell back to clear
    run.release("completed")
    client.redis.close()


def test_doctor_reaches_a_tls_store_and_broker(tls_worker: tuple[WorkerProcess, str],
                                               redis_server: RedisServer) -> None:
    """The operator's check speaks TLS to both, with the same LEASEGATE_REDIS_TLS_* files."""
    import os
    import subprocess
    import sys

    worker, _ = tls_worker
    env = {**os.environ, **{k: v for k, v in worker.env.items() if k.startswith("LEASEGATE_")}}
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                           "leasegate", "doctor"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    broker = next((line for line in done.stdout.splitlines() if " broker" in line), "")
    assert broker.startswith("ok") and "rediss://" in broker, done.stdout + done.stderr
