"""``leasegate serve`` on a rediss:// store: it starts a run and its rate-limit buckets (Lua on
server time) live on the TLS-only Redis too."""

from __future__ import annotations

from pathlib import Path

from leasegate.testing.redis_server import RedisServer
from tests.support.gateway import GatewayProcess


def test_serve_over_tls_redis(redis_server: RedisServer, tls_environment: dict[str, str],
                              tmp_path: Path) -> None:
    with GatewayProcess(redis_server.url, "tlsgw", tmp_path, LEASEGATE_RATE_BURST="2",
                        LEASEGATE_RATE_LIMIT="0.001", **tls_environment) as server, \
            server.client("runtime") as http:
        started = http.post("/v1/runs", json={"session_key": "cron:tls", "prompt": "p",
                                              "ttl": 30})
        assert started.status_code in (200, 201), started.text
        assert http.get("/v1/whoami").headers["X-RateLimit-Remaining"] == "0"
        assert http.get("/v1/whoami").status_code == 429
    assert redis_server.client().exists("tlsgw:ratelimit:openclaw") == 1
