"""A real ``leasegate serve`` per test module on the session's Redis, in its own namespace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import WorkerProcess
from tests.support.console import Letters
from tests.support.gateway import GatewayProcess


@pytest.fixture(scope="module")
def gateway_namespace() -> str:
    return f"g{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory: pytest.TempPathFactory, gateway_namespace: str,
                   gateway_redis: RedisServer) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gateway")
    with GatewayProcess(gateway_redis.url, gateway_namespace, workdir) as server:
        yield server


@pytest.fixture(scope="session")
def gateway_redis() -> Iterator[RedisServer]:
    """One Redis (the preferred binary) for the gateway's tests: HTTP is not version-bound."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway_worker(tmp_path_factory: pytest.TempPathFactory, gateway_namespace: str,
                   gateway_redis: RedisServer,
                   gateway_server: GatewayProcess) -> Iterator[WorkerProcess]:
    """A real ``celery worker`` of the module's namespace, writing images where the gateway
    reads them; images take a moment (0.3 s), so a test can end a run before one lands."""
    worker = WorkerProcess(gateway_redis.url, gateway_namespace,
                           tmp_path_factory.mktemp("gateway-worker"),
                           LEASEGATE_ARTIFACT_DIR=gateway_server.env["LEASEGATE_ARTIFACT_DIR"],
                           LEASEGATE_GENERATOR_LATENCY="0.3")
    yield worker.start()
    worker.stop()


@pytest.fixture(scope="module")
def letters(gateway_server: GatewayProcess, gateway_namespace: str) -> Iterator[Letters]:
    """Dead letters (images in the server's artifact store) in the server's namespace."""
    made = Letters(gateway_server, gateway_namespace)
    yield made
    made.close()
