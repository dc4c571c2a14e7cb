"""Two deployments (namespaces) on one Redis: each worker claims its queues for its namespace
and a worker of another namespace refuses them; redbeat's keys and lock carry the namespace;
each namespace's artifacts live under their own root, so one's collector never removes
another's images."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner

from leasegate.broker import Client, FileArtifactStore, NamespacedArtifactStore
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import ConfigError, WorkerConfig, install
from leasegate.workers.checks import QueueClaims, claim_key
from leasegate.workers.cli.ops import leasegate
from tests.support.celery_workers import SECRET, WorkerProcess

SECRET_BYTES = SECRET.encode()


def ns() -> str:
    return f"ns{uuid.uuid4().hex[:8]}"


@pytest.mark.e2e
def test_a_worker_of_another_namespace_refuses_the_queues(tmp_path: Path) -> None:
    with RedisServer() as server:
        blue, green = ns(), ns()
        first = WorkerProcess(server.url, blue, tmp_path, name="blue1").start()
        try:
            assert server.client().get(claim_key("media")) == blue.encode()
            env = {**first.env, "LEASEGATE_NAMESPACE": green}
            out = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                                  "worker", "-P", "solo", "-Q", "media", "--without-gossip",
                                  "--without-mingle", "--without-heartbeat"], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 1, out.stderr[-2000:]
            assert "worker refused to start" in out.stderr
            assert "'media' (namespace " + repr(blue) + ")" in out.stderr
            assert green in out.stderr and "LEASEGATE_BROKER_URL" in out.stderr
            # another worker of the same namespace shares the queues, as it always did
            second = WorkerProcess(server.url, blue, tmp_path, name="blue2").start()
            second.stop()
        finally:
            first.stop()
        # a clean stop gives the claims back: the other deployment may now take the queue
        assert server.client().get(claim_key("media")) is None
        WorkerProcess(server.url, green, tmp_path, name="green1").start().stop()


def test_claims_refresh_their_ttl_and_name_the_holder(redis_server: RedisServer) -> None:
    blue, green, queue = ns(), ns(), f"q{uuid.uuid4().hex[:6]}"
    mine = QueueClaims(redis_server.url, blue, [queue], ttl=60)
    mine.claim()
    redis_server.client().pexpire(claim_key(queue), 500)
    mine.refresh()
    assert redis_server.client().pttl(claim_key(queue)) > 50_000
    with pytest.raises(ConfigError, match=rf"'{queue}' \(namespace '{blue}'\)"):
        QueueClaims(redis_server.url, green, [queue, "other"]).claim()
    mine.release()
    QueueClaims(redis_server.url, green, [queue]).claim()
    mine.release()  # not blue's any more: green's claim stays
    assert redis_server.client().get(claim_key(queue)) == green.encode()


def test_redbeat_keys_and_lock_carry_the_namespace() -> None:
    from redbeat.schedulers import RedBeatConfig

    def beat_conf(namespace: str) -> RedBeatConfig:
        app = Celery("beat", broker="redis://127.0.0.1:1/0", set_as_current=False)
        app.conf.redbeat_redis_url, app.conf.redbeat_redis_options = app.conf.broker_url, {}
        install(app, WorkerConfig(secret=SECRET_BYTES, namespace=namespace))
        return RedBeatConfig(app)

    blue = beat_conf("blue")
    assert blue.lock_key.startswith("blue:redbeat:")
    assert blue.schedule_key.startswith("blue:redbeat:")
    assert beat_conf("lg").lock_key == "redbeat::lock"  # the default keeps redbeat's keys
    assert beat_conf("green").lock_key != blue.lock_key


def test_one_namespace_never_collects_anothers_artifacts(redis_server: RedisServer,
                                                         tmp_path: Path) -> None:
    shared = tmp_path / "artifacts"  # one volume, two deployments
    blue = WorkerConfig(redis_url=redis_server.url, namespace=ns(), secret=SECRET_BYTES,
                        artifact_dir=str(shared))
    green = WorkerConfig(redis_url=redis_server.url, namespace=ns(), secret=SECRET_BYTES,
                         artifact_dir=str(shared))
    blue_store, green_store = blue.artifact_store(), green.artifact_store()
    assert blue_store.root == (shared / blue.namespace).absolute()
    client = Client(redis_server.client(), blue.namespace, secret=SECRET_BYTES)
    run = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=60)
    image = blue_store.put(b"blue's image " + uuid.uuid4().bytes, "image/png")
    assert client.gate.deliver(run.envelope("image_generate", {}), result={},
                               artifacts=[image]).delivered
    stray = green_store.put(b"green's unreferenced image " + uuid.uuid4().bytes, "image/png")
    old = time.time() - 7200
    for store, ref in ((blue_store, image), (green_store, stray)):
        os.utime(store.path(ref.digest), (old, old))

    app = install(Celery("green", set_as_current=False), green)
    out = CliRunner().invoke(leasegate, ["collect-artifacts", "--grace", "1h"],
                             obj=CLIContext(app=app, no_color=True, workdir=None, quiet=False),
                             catch_exceptions=False)
    assert out.exit_code == 0 and "removed 1" in out.output
    assert not green_store.exists(stray.digest)
    assert blue_store.get(image.digest).startswith(b"blue's image")  # referenced only in blue


def test_artifacts_of_the_old_layout_stay_readable(tmp_path: Path) -> None:
    """Before namespaces, artifacts lived at the artifact dir itself: still read, never
    collected by a namespaced store."""
    legacy = FileArtifactStore(tmp_path).put(b"an old image", "image/png")
    store = NamespacedArtifactStore(tmp_path, "lg")
    assert store.exists(legacy.digest) and store.get(legacy.digest) == b"an old image"
    assert store.locate(legacy.digest) == str(tmp_path / legacy.digest[:2] /
                                              legacy.digest[2:4] / legacy.digest)
    assert list(store.digests()) == []
    assert NamespacedArtifactStore(tmp_path, "a/../b").root.name == "a%2F..%2Fb"
    assert NamespacedArtifactStore(tmp_path, "..").root.name == "%2E%2E"
