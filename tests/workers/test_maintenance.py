"""Maintenance nobody schedules, with real ``celery worker`` processes: a callback whose task
was killed by a hard time limit still ends in the dead letters (``no_verdict``, once), and a
worker left alone sweeps old dead letters and collects unreferenced artifacts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.broker import HEADER, Client, NamespacedArtifactStore, header_value
from leasegate.broker.reaper import index_member
from leasegate.ownership import shard_of
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until

pytestmark = pytest.mark.e2e

TOOL, TASK = "image_generate", "leasegate.image_generate"


@pytest.fixture
def client(redis_server: RedisServer, namespace: str) -> Iterator[Client]:
    client = Client.from_url(redis_server.url, namespace, secret=SECRET.encode())
    yield client
    client.redis.close()


def test_hard_time_limit_gets_one_no_verdict_letter(redis_server: RedisServer, namespace: str,
                                                    client: Client, tmp_path: Path) -> None:
    worker = WorkerProcess(redis_server.url, namespace, tmp_path,
                           LEASEGATE_GENERATOR_LATENCY="30", LEASEGATE_VERDICT_GRACE="1",
                           LEASEGATE_MAINTENANCE_INTERVAL="0.2").start()
    try:
        run = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=60)
        env = run.envelope(TOOL, {"prompt": "a fox"}, deadline=4)
        # what Run.submit records; sent by hand here, because submit sets no time limit
        client.redis.hset(client.keys.pending(run.session_key, run.run_id), env.callback_id,
                          TOOL)
        index = client.keys.pending_index(shard_of(run.session_key))
        client.redis.zadd(index,
                          {index_member(run.session_key, run.run_id, env.callback_id):
                           env.deadline_at_ms})
        client.celery_app.send_task(TASK, kwargs={"prompt": "a fox"}, task_id=env.task_id,
                                    queue="media", serializer="msgpack",
                                    headers={HEADER: header_value(env)}, time_limit=1)
        worker.wait_log("Hard time limit (1s) exceeded", timeout=30)

        memo = client.keys.callback(run.session_key, run.run_id, env.callback_id)
        wait_until(lambda: client.redis.hget(memo, "entry") is not None, 30,
                   message="the reaper's verdict")
        letters = client.dead_letters.list(session_key=run.session_key).letters
        assert [(x.reason, x.callback_id, x.tool) for x in letters] == [
            ("no_verdict", env.callback_id, TOOL)]
        assert letters[0].completed_at is not None
        assert round(letters[0].completed_at * 1000) >= env.deadline_at_ms + 1000  # + grace
        assert run.pending() == {} and run.inbox.entries()[-1].seq == 1

        late = client.gate.deliver(env, result={"images": 1})  # the worker, much too late
        assert late.repeat and late.entry_id == letters[0].id
        # later rounds of the timer change nothing: a delivered callback's overdue member is
        # dropped (proof that a round ran), and there is still exactly one letter
        other = run.envelope(TOOL, {}, deadline=60)
        assert client.gate.deliver(other, result={}).delivered
        client.redis.zadd(index,
                          {index_member(run.session_key, run.run_id, other.callback_id): 1})
        wait_until(lambda: client.redis.zcard(index) == 0, 10,
                   message="the next round to drop the delivered callback's member")
        assert client.dead_letters.count() == 1
    finally:
        worker.stop()


def old_letter(client: Client, age_days: float) -> str:
    """A dead letter quarantined ``age_days`` ago, laid out as includes/deadLetter.lua writes
    one (the stream id carries its birth time, which is what retention reads)."""
    born = client.server_time_ms() - int(age_days * 86400_000)
    k = client.keys  # sequence 0: a letter of shard 0 (letter_shard)
    letter_id = client.redis.xadd(k.dead_letters(0), {"reason": "malformed", "sk": "",
                                                      "tool": ""}, id=f"{born}-0").decode()
    client.redis.hset(k.dead_letter(letter_id), mapping={
        "id": letter_id, "reason": "malformed", "sk": "", "tool": "", "quarantined": born,
        "state": "quarantined", "raw": b"old bytes", "history": "[]"})
    client.redis.zadd(k.dead_letter_index(0, "reason", "malformed"), {letter_id: born})
    client.redis.hincrby(k.dead_letter_stats(0), "state:quarantined", 1)
    return letter_id


def test_a_worker_left_alone_sweeps_and_collects(redis_server: RedisServer, namespace: str,
                                                 client: Client, tmp_path: Path) -> None:
    worker = WorkerProcess(redis_server.url, namespace, tmp_path,
                           LEASEGATE_MAINTENANCE_INTERVAL="0.2",
                           LEASEGATE_DLQ_SWEEP_INTERVAL="0.5", LEASEGATE_COLLECT_INTERVAL="0.5",
                           LEASEGATE_COLLECT_GRACE="60")
    store = NamespacedArtifactStore(worker.artifact_dir, namespace)
    stale = store.put(b"an image nobody references " + uuid.uuid4().bytes, "image/png")
    fresh = store.put(b"an image not yet delivered " + uuid.uuid4().bytes, "image/png")
    kept = store.put(b"an image an inbox references " + uuid.uuid4().bytes, "image/png")
    hour_ago = store.modified_at(stale.digest) - 3600
    for ref in (stale, kept):
        os.utime(store.path(ref.digest), (hour_ago, hour_ago))
    run = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=60)
    assert client.gate.deliver(run.envelope(TOOL, {}), result={}, artifacts=[kept]).delivered
    # past the 14-day max age; no quarantine after it: that would sweep it on the gate's path
    expired = old_letter(client, age_days=15)

    worker.start()
    try:
        wait_until(lambda: client.dead_letters.get(expired).state == "expired", 20,
                   message="the old letter to be swept")
        wait_until(lambda: not store.exists(stale.digest), 20,
                   message="the unreferenced artifact to be collected")
        assert store.exists(fresh.digest) and store.exists(kept.digest)
        assert client.dead_letters.count() == 0
    finally:
        worker.stop()


def test_one_worker_at_a_time_and_each_job_once_per_interval(
        redis_server: RedisServer, namespace: str, client: Client, tmp_path: Path) -> None:
    from leasegate.workers import WorkerConfig
    from leasegate.workers.maintenance import Maintenance, lock_key

    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace,
                          secret=SECRET.encode(), artifact_dir=str(tmp_path / "art"),
                          dlq_sweep_interval=600, collect_interval=600)
    first, second = Maintenance(config, client), Maintenance(config, client)
    held = client.redis.lock(lock_key(namespace), timeout=30, blocking=False)
    assert held.acquire()
    assert first.tick() is None and second.tick() is None  # another worker holds the lock
    held.release()
    assert first.tick() == {"reaped": 0, "swept": 0, "collected": 0}
    assert second.tick() == {"reaped": 0}  # sweep and collection ran within their interval
    assert not client.redis.exists(lock_key(namespace))  # released after the round


def test_a_round_cut_short_by_redis_does_not_keep_the_lock_for_its_ttl(
        namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis dies while a round holds the lock (a restart, a cluster failover) and comes back
    with the lock in it (AOF): the worker frees it on its next tick instead of leaving every
    worker's reaper idle for the lock's TTL (a minute)."""
    from redis.exceptions import RedisError

    from leasegate.ownership import RegistryUnavailable
    from leasegate.workers import WorkerConfig
    from leasegate.workers.maintenance import Maintenance, due_key, lock_key

    with RedisServer(aof=True) as server:
        client = Client.from_url(server.url, namespace, secret=SECRET.encode())
        config = WorkerConfig(redis_url=server.url, namespace=namespace,
                              secret=SECRET.encode(), artifact_dir=str(tmp_path / "art"))
        for job in ("sweep", "collect"):  # only the reaper is due
            client.redis.set(due_key(namespace, job), 1, px=600_000)
        maintenance = Maintenance(config, client)
        reap = maintenance.reaper.reap

        def dies_mid_round(grace: float, limit: int = 1000) -> int:
            server.kill()
            raise RegistryUnavailable("Redis is unavailable: killed mid-round")

        monkeypatch.setattr(maintenance.reaper, "reap", dies_mid_round)
        with pytest.raises(RedisError):  # the release could not reach Redis either
            maintenance.tick()
        server.start()
        assert client.redis.pttl(lock_key(namespace)) > 50_000  # still held, for a minute
        monkeypatch.setattr(maintenance.reaper, "reap", reap)
        assert maintenance.tick() == {"reaped": 0}  # the next tick freed it and did its round
        assert not client.redis.exists(lock_key(namespace))
        client.redis.close()


def test_config_reads_and_checks_the_maintenance_variables() -> None:
    from leasegate.workers import ConfigError, WorkerConfig

    config = WorkerConfig.from_env({"LEASEGATE_VERDICT_GRACE": "5",
                                    "LEASEGATE_MAINTENANCE_INTERVAL": "0",
                                    "LEASEGATE_DLQ_SWEEP_INTERVAL": "60",
                                    "LEASEGATE_COLLECT_INTERVAL": "120",
                                    "LEASEGATE_COLLECT_GRACE": "30"})
    assert (config.verdict_grace, config.maintenance_interval, config.dlq_sweep_interval,
            config.collect_interval, config.collect_grace) == (5, 0, 60, 120, 30)
    assert WorkerConfig.from_env({}).verdict_grace == 60
    with pytest.raises(ConfigError, match="LEASEGATE_VERDICT_GRACE must be >= 0"):
        WorkerConfig.from_env({"LEASEGATE_VERDICT_GRACE": "-1"})
    with pytest.raises(ConfigError, match="LEASEGATE_DLQ_SWEEP_INTERVAL must be > 0"):
        WorkerConfig.from_env({"LEASEGATE_DLQ_SWEEP_INTERVAL": "0"})
