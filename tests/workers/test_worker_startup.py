"""A worker refuses to start on a configuration that would lose or forge callbacks, and says
how to fix it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leasegate.testing.redis_server import RedisServer
from leasegate.workers.config import ConfigError, WorkerConfig


def start_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers", "worker",
                           "-P", "solo", "--without-gossip", "--without-mingle",
                           "--without-heartbeat"], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def lru_redis() -> RedisServer:
    with RedisServer(extra_args=("--maxmemory-policy", "allkeys-lru")) as server:
        yield server  # type: ignore[misc]


def base_env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    return {**env, "LEASEGATE_REDIS_URL": url, "LEASEGATE_ARTIFACT_DIR": str(tmp_path)}


def test_refuses_without_a_secret(redis_server: RedisServer, tmp_path: Path) -> None:
    out = start_worker(base_env(redis_server.url, tmp_path))
    assert out.returncode == 1
    assert "LEASEGATE_SECRET is not set" in out.stderr and "LEASEGATE_INSECURE_DEV" in out.stderr


def test_refuses_a_redis_that_evicts(lru_redis: RedisServer, tmp_path: Path) -> None:
    env = {**base_env(lru_redis.url, tmp_path), "LEASEGATE_SECRET": "s" * 20}
    out = start_worker(env)
    assert out.returncode == 1
    assert "allkeys-lru" in out.stderr and "maxmemory-policy noeviction" in out.stderr


def test_refuses_a_short_visibility_timeout(redis_server: RedisServer, tmp_path: Path) -> None:
    env = {**base_env(redis_server.url, tmp_path), "LEASEGATE_SECRET": "s" * 20,
           "LEASEGATE_MAX_DEADLINE": "600", "LEASEGATE_VISIBILITY_TIMEOUT": "300"}
    out = start_worker(env)
    assert out.returncode == 1
    assert "visibility_timeout" in out.stderr and "LEASEGATE_MAX_DEADLINE" in out.stderr


def test_refuses_an_unreachable_redis(tmp_path: Path) -> None:
    from leasegate.testing.redis_server import free_port

    env = {**base_env(f"redis://127.0.0.1:{free_port()}/0", tmp_path),
           "LEASEGATE_SECRET": "s" * 20}
    out = start_worker(env)
    assert out.returncode == 1 and "cannot reach Redis" in out.stderr


def test_config_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="LEASEGATE_CHECK_INTERVAL"):
        WorkerConfig.from_env({"LEASEGATE_CHECK_INTERVAL": "soon"})
    with pytest.raises(ConfigError, match="LEASEGATE_MAX_DEADLINE"):
        WorkerConfig.from_env({"LEASEGATE_MAX_DEADLINE": "-1"})
    with pytest.raises(ConfigError, match="16 bytes"):
        WorkerConfig.from_env({"LEASEGATE_SECRET": "short"}).check()
    insecure = WorkerConfig.from_env({"LEASEGATE_INSECURE_DEV": "1"})
    assert insecure.secrets() and insecure.visibility_timeout > insecure.max_deadline
