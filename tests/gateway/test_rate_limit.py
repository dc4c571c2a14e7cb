"""Rate limits per token: a token over its bucket gets 429 ``rate_limited`` with Retry-After,
another token is unaffected, and two serve processes on one Redis share one bucket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leasegate.gateway.ratelimit import RateLimit
from leasegate.ownership.testing import RedisServer
from leasegate.workers import ConfigError
from tests.support.gateway import GatewayProcess

# one request per 1000 s: the bucket never refills within a test, whatever the machine's pace
LIMITED = {"LEASEGATE_RATE_LIMIT": "0.001", "LEASEGATE_RATE_BURST": "3"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, gateway_namespace: str,
            gateway_redis: RedisServer) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    workdir = Path(tmp_path_factory.mktemp("limited"))
    namespace = f"{gateway_namespace}rl"
    with GatewayProcess(gateway_redis.url, namespace, workdir, **LIMITED) as one, \
            GatewayProcess(gateway_redis.url, namespace, workdir, **LIMITED) as two:
        yield one, two


def test_a_token_over_its_limit_gets_429_and_another_does_not(
        limited: tuple[GatewayProcess, GatewayProcess]) -> None:
    one, two = limited
    with one.client("runtime") as flood, one.client("other") as bystander:
        remaining = [flood.get("/v1/whoami").headers["X-RateLimit-Remaining"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        refused = flood.get("/v1/whoami")
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and "openclaw" in error["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-RateLimit-Limit"] == "0.001"
        assert bystander.get("/v1/whoami").status_code == 200
    # the other serve process draws from the same bucket in Redis
    with two.client("runtime") as flood_elsewhere:
        assert flood_elsewhere.get("/v1/whoami").status_code == 429


def test_the_default_is_generous_and_zero_is_off() -> None:
    assert RateLimit.from_env({}) == RateLimit(50.0, 100)
    assert not RateLimit.from_env({"LEASEGATE_RATE_LIMIT": "0"}).enabled


@pytest.mark.parametrize(("name", "value"), [("LEASEGATE_RATE_LIMIT", "fast"),
                                             ("LEASEGATE_RATE_LIMIT", "-1"),
                                             ("LEASEGATE_RATE_BURST", "0"),
                                             ("LEASEGATE_RATE_BURST", "2.5")])
def test_bad_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RateLimit.from_env({name: value})


def test_refused_requests_count_too(tmp_path: Path, gateway_redis: RedisServer) -> None:
    """A flood of invalid requests is still a flood: a 422 on a field draws from the bucket
    (a body that is not JSON at all is refused before the token is even looked at)."""
    with GatewayProcess(gateway_redis.url, "rlinvalid", tmp_path, **LIMITED) as server, \
            server.client("runtime") as http:
        invalid = [http.post("/v1/runs", json={"session_key": "cron:x", "prompt": "p",
                                               "ttl": 99999}) for _ in range(3)]
        assert [r.status_code for r in invalid] == [422, 422, 422]
        assert http.get("/v1/whoami").status_code == 429
