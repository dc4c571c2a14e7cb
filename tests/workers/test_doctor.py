"""``celery leasegate doctor`` and secret fingerprints, against a real Redis and a real worker:
a runtime whose secret differs from the workers' is reported by the worker at start-up (an
ERROR naming both fingerprints), by the runtime (a WARNING when it starts a run) and by the
doctor (exit 1), never discovered by a lost image; a healthy deployment passes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from leasegate.broker import Client, secret_fingerprint
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import WorkerConfig, install
from leasegate.workers.cli.common import redacted
from leasegate.workers.cli.ops import leasegate
from tests.support.celery_workers import SECRET, WorkerProcess

OTHER = "another-secret-0123456789abcdef"


def doctor(redis_url: str, namespace: str, artifacts: Path, secret: str = SECRET) -> Result:
    config = WorkerConfig(redis_url=redis_url, namespace=namespace, secret=secret.encode(),
                          artifact_dir=str(artifacts))
    app = install(Celery("doctor", broker=redis_url, set_as_current=False), config)
    ctx = CLIContext(app=app, no_color=True, workdir=None, quiet=False)
    return CliRunner().invoke(leasegate, ["doctor"], obj=ctx, catch_exceptions=False)


def test_a_secret_mismatch_is_reported_by_worker_runtime_and_doctor(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    namespace = f"doc{uuid.uuid4().hex[:6]}"
    with RedisServer() as server:
        stranger = Client.from_url(server.url, namespace, secret=OTHER)  # a str secret: UTF-8
        stranger.start_run("cron:stranger", prompt="p", ttl=30)  # records its fingerprint
        worker = WorkerProcess(server.url, namespace, tmp_path)
        worker.start()
        try:
            mine, theirs = secret_fingerprint(SECRET.encode()), secret_fingerprint(OTHER.encode())
            log = worker.log()
            assert "SECRET MISMATCH" in log and mine in log and theirs in log
            assert SECRET not in log and OTHER not in log  # fingerprints, never the secrets

            friend = Client.from_url(server.url, namespace, secret=SECRET.encode())
            with caplog.at_level(logging.WARNING, logger="leasegate.runtime"):
                friend.start_run("cron:friend", prompt="p", ttl=30)
                assert not [r for r in caplog.records if r.name == "leasegate.runtime"]
                late = Client.from_url(server.url, namespace, secret=OTHER)
                late.start_run("cron:late", prompt="p", ttl=30)
            warned = [r.getMessage() for r in caplog.records if r.name == "leasegate.runtime"]
            assert len(warned) == 1 and theirs in warned[0] and mine in warned[0]
            assert not friend.check_secret() and late.check_secret()  # one name per process

            (tmp_path / "artifacts").mkdir(exist_ok=True)
            out = doctor(server.url, namespace, tmp_path / "artifacts")
            assert out.exit_code == 1, out.output
            lines = out.output.splitlines()
            assert lines[0] == f"(redis {server.url}, namespace {namespace})"
            runtimes = next(line for line in lines if "runtimes:" in line)
            assert runtimes.startswith("FAIL") and theirs in runtimes
            assert next(line for line in lines if "workers:" in line).startswith("ok")
            assert "w1@" in out.output and mine in out.output
            for topic in ("redis:", "persist:", "artifacts:", "namespace:", "broker:",
                          "secret:"):
                assert any(topic in line for line in lines), (topic, out.output)
        finally:
            worker.stop()
            stranger.redis.close()


def test_doctor_passes_a_healthy_deployment_and_fails_an_evicting_redis(
        tmp_path: Path) -> None:
    namespace = f"doc{uuid.uuid4().hex[:6]}"
    with RedisServer(aof=True) as server:
        worker = WorkerProcess(server.url, namespace, tmp_path)
        worker.start()
        try:
            client = Client.from_url(server.url, namespace, secret=SECRET)
            run = client.start_run("cron:doctor", prompt="p", ttl=30)
            run.inbox.wait_for([run.submit("image_generate", prompt="x", size="256x256")],
                               timeout=60)
            # the real command line, as an operator types it
            env = {**os.environ, "LEASEGATE_REDIS_URL": server.url, "LEASEGATE_SECRET": SECRET,
                   "LEASEGATE_NAMESPACE": namespace,
                   "LEASEGATE_ARTIFACT_DIR": str(worker.artifact_dir)}
            done = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                                   "leasegate", "doctor"], env=env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "all checks passed" in done.stdout
            assert "maxmemory-policy noeviction" in done.stdout and "AOF on" in done.stdout
            assert "FAIL" not in done.stdout
            server.client().config_set("maxmemory-policy", "allkeys-lru")
            evicting = doctor(server.url, namespace, worker.artifact_dir)
            assert evicting.exit_code == 1
            assert any(line.startswith("FAIL") and "allkeys-lru" in line
                       for line in evicting.output.splitlines())
            client.redis.close()
        finally:
            worker.stop()


def test_redis_urls_are_printed_without_their_password() -> None:
    assert redacted("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("rediss://user:s3cret@host:6380/1") == "rediss://user:***@host:6380/1"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
    assert redacted("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"
