"""A deploy's SIGTERM ends ``leasegate serve`` even while SSE streams are open: the streams
are closed after a short grace (clients resume elsewhere with Last-Event-ID), and the process
exits by itself rather than waiting for a SIGKILL."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from leasegate.testing.redis_server import RedisServer
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import start
from tests.support.sse import EventReader


def test_sigterm_ends_serve_with_an_open_stream(tmp_path: Path,
                                                gateway_redis: RedisServer) -> None:
    server = GatewayProcess(gateway_redis.url, "shutdown", tmp_path).start()
    try:
        with server.client("runtime") as http:
            run = start(http)
            reader = EventReader(http, f"/v1/runs/{run['run']}/events")
            first = next(iter(reader))
            assert first.event == "entry" and first.id == 1  # the stream is open and held
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            try:
                code = server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
            # uvicorn re-raises the signal it handled once it has shut down: -15 is graceful
            assert code in (0, -signal.SIGTERM), f"no exit on SIGTERM ({code}):\n{server.log()}"
            try:  # the held stream was closed by the server, not left hanging
                rest = list(reader)
            except httpx.HTTPError:
                rest = []
            assert all(e.event != "entry" for e in rest)
    finally:
        server.stop()
