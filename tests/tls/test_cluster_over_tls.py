"""The registry suite (tests/ownership/test_registry.py) on a Redis Cluster over TLS: every node
TLS-only (client port, cluster bus, replication), reached through ``connect`` on one node's
``rediss://`` URL with the LEASEGATE_REDIS_TLS_* environment; and one gate round trip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from leasegate.broker import Client
from leasegate.ownership import connect
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisTls
from tests.conftest import SECRET
from tests.ownership.test_registry import *  # noqa: F403 - re-run every test on it


@pytest.fixture(scope="module")
def redis_server(redis_tls: RedisTls,
                 tls_environment: dict[str, str]) -> Iterator[RedisClusterNodes]:
    with RedisClusterNodes(tls=redis_tls) as cluster:
        yield cluster


@pytest.fixture
def redis_client(redis_server: RedisClusterNodes) -> Iterator[redis.Redis]:
    assert redis_server.url.startswith("rediss://")
    client = connect(redis_server.url)  # TLS options from the environment, nothing else
    assert isinstance(client, redis.RedisCluster)
    yield client
    client.close()


def test_a_result_reaches_its_inbox_over_a_tls_cluster(redis_client: redis.Redis,
                                                       namespace: str) -> None:
    client = Client(redis_client, namespace, secret=SECRET)
    run = client.start_run("tls/cluster", prompt="p", ttl=30)
    env = run.envelope("image_generate", {"prompt": "a fox"}, deadline=60)
    verdict = client.gate.deliver(env.encode(), result={"images": []})
    assert verdict.delivered and [e.seq for e in run.inbox.entries()] == [1, 2]
