"""End to end on a Redis Cluster: real ``celery worker`` processes with RabbitMQ as the broker
(kombu has no Redis Cluster transport) and a local 3+3 Redis Cluster as the ownership and
verdict store, reached by one node's URL. The OpenClaw #86490 story, the shards' spread, and
a primary SIGKILLed while callbacks are in flight: its replica takes over and every callback
still ends in exactly one place."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from leasegate.broker import Client, Run
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.gateway import GatewayProcess
from tests.support.helpers import wait_until
from tests.support.rabbitmq import RabbitVhost
from tests.support.runtime_api import start
from tests.support.sse import EventReader
from tests.workers.test_e2e_workers import (
    assert_clean_inbox,
    five_failed_runs_then_a_live_one,
    job,
    letter_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    with RedisClusterNodes() as made:
        yield made


@pytest.fixture(scope="module")
def namespace() -> str:
    return f"cl{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(cluster: RedisClusterNodes, vhost: RabbitVhost, namespace: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(cluster.url, namespace, tmp_path_factory.mktemp("cluster"),
                         concurrency=2, LEASEGATE_BROKER_URL=vhost.url,
                         LEASEGATE_MAX_DEADLINE="600", LEASEGATE_GENERATOR_LATENCY="0.6")
    yield proc.start()
    proc.stop()


@pytest.fixture
def client(cluster: RedisClusterNodes, vhost: RabbitVhost, namespace: str) -> Iterator[Client]:
    made = Client.from_url(cluster.url, namespace, secret=SECRET.encode(), broker_url=vhost.url)
    yield made
    made.redis.close()


def test_the_client_is_a_cluster_client_from_one_nodes_url(client: Client) -> None:
    assert isinstance(client.redis, redis.RedisCluster)


def test_released_runs_five_of_five_clean(worker: WorkerProcess, client: Client) -> None:
    five_failed_runs_then_a_live_one(client)


def _in_sync(cluster: RedisClusterNodes, primary: RedisServer) -> bool:
    """Whether the primary's replicas have everything it has (so a kill now loses nothing)."""
    with primary.client() as client:
        info = client.info("replication")
    offset = int(info["master_repl_offset"])
    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return bool(replicas) and all(int(r["offset"]) == offset for r in replicas)


def test_a_primary_killed_mid_generation_every_callback_ends_once(
        worker: WorkerProcess, client: Client, cluster: RedisClusterNodes) -> None:
    """Runs in sessions spread over every primary; while their images are generated, the
    primary of one of them is SIGKILLed (its replica in sync, so Redis itself lost nothing).
    Every callback gets its one verdict: its own run's inbox, never another's."""
    sessions = [f"cl:{uuid.uuid4().hex[:8]}" for _ in range(6)]
    runs: list[tuple[Run, list[str]]] = []
    for key in sessions:
        run = client.start_run(key, prompt=f"prompt of {key}", ttl=120)
        runs.append((run, [run.submit("image_generate", prompt=f"{key} #{i}", size="256x256")
                           for i in range(2)]))
    victim = cluster.node_of(client.keys.owner(sessions[0]))
    wait_until(lambda: _in_sync(cluster, victim), 10, message="the replicas to catch up")
    worker.wait_log("working on", timeout=30)
    cluster.kill_primary(victim)
    assert cluster.node_of(client.keys.owner(sessions[0])) is not victim
    for run, callbacks in runs:
        got = run.inbox.wait_for(callbacks, timeout=90)
        assert sorted(got) == sorted(callbacks)
        assert_clean_inbox(run, f"prompt of {run.session_key}", set(callbacks))
        delivered = [e.callback_id for e in run.inbox.entries()[1:]]
        assert sorted(delivered) == sorted(callbacks)  # each once


def test_dead_letters_of_many_shards_list_as_one(worker: WorkerProcess, client: Client,
                                                 tmp_path: Path) -> None:
    """Superseded runs' late images in sessions of different shards: one listing shows them,
    newest first, and each letter's own id finds it."""
    made = []
    for _ in range(4):
        key = job()
        old = client.start_run(key, prompt="old", ttl=30)
        late = old.submit("image_generate", prompt="late", size="256x256")
        client.start_run(key, prompt="new", ttl=30)
        made.append(letter_for(client, old, late).id)
    listed = [letter.id for letter in client.dead_letters.list(reason="superseded",
                                                               limit=1000).letters]
    assert set(made) <= set(listed)
    order = [listed.index(i) for i in made]
    assert order == sorted(order, reverse=True)  # quarantined later, listed earlier
    assert all(client.dead_letters.get(i).reason == "superseded" for i in made)


def test_the_gateway_streams_a_runs_inbox_from_the_cluster(
        worker: WorkerProcess, cluster: RedisClusterNodes, vhost: RabbitVhost, namespace: str,
        tmp_path: Path) -> None:
    """``leasegate serve`` on one node's URL: the runtime API starts a run and submits, the
    Server-Sent Events stream (an asyncio cluster client) brings the image and the end."""
    with GatewayProcess(cluster.url, namespace, tmp_path, LEASEGATE_BROKER_URL=vhost.url,
                        LEASEGATE_ARTIFACT_DIR=worker.env["LEASEGATE_ARTIFACT_DIR"],
                        LEASEGATE_SSE_POLL="0.2", LEASEGATE_SSE_HEARTBEAT="0.3") as server, \
            server.client("runtime") as http:
        ref = start(http, prompt="draw")["run"]
        with EventReader(http, f"/v1/runs/{ref}/events") as stream:
            [prompt] = stream.take(1)
            image = {"tool": "image_generate", "args": {"prompt": "a heron", "size": "256x256"}}
            callback = http.post(f"/v1/runs/{ref}/tasks", json=image).json()["callback_id"]
            got = stream.take(1, event="entry")
            http.post(f"/v1/runs/{ref}/release")
            tail = stream.rest()
    entries = [e for e in [prompt, *got, *tail] if e.event == "entry"]
    assert [(e.id, e.data["callback_id"]) for e in entries] == [(1, None), (2, callback)]
    assert tail[-1].event == "state" and tail[-1].data["state"] == "released"


def test_a_worker_refuses_a_cluster_as_its_broker(cluster: RedisClusterNodes, namespace: str,
                                                  tmp_path: Path) -> None:
    """No LEASEGATE_BROKER_URL: the broker would be the cluster, which Celery cannot use."""
    proc = WorkerProcess(cluster.url, namespace, tmp_path, name="nobroker")
    with pytest.raises(AssertionError, match="worker exited"):
        proc.start(timeout=30)
    assert "Celery has no Redis Cluster transport" in proc.log()
