"""Rate limits per token: a token over its bucket gets 429 ``rate_limited`` with Retry-After,
another token is unaffected, and two serve processes on one Redis share one bucket. Past its
first refusal a flood is answered from memory (no Redis command) until the bucket can have
refilled, and a body that is not JSON draws from the bucket too."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from leasegate.gateway.ratelimit import RateLimit, RateLimiter
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import ConfigError
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import commands_run

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
    """A flood of invalid requests is still a flood: a 422 on a field draws from the bucket,
    and so does a body that is not JSON at all (refused before the route's dependencies run);
    without a token such a body is a 401."""
    with GatewayProcess(gateway_redis.url, f"rl{uuid.uuid4().hex[:8]}", tmp_path,
                        **LIMITED) as server, server.client("runtime") as http, \
            server.client("other") as other, server.client(None) as anonymous:
        invalid = [http.post("/v1/runs", json={"session_key": "cron:x", "prompt": "p",
                                               "ttl": 99999}) for _ in range(3)]
        assert [r.status_code for r in invalid] == [422, 422, 422]
        assert http.get("/v1/whoami").status_code == 429
        json_type = {"content-type": "application/json"}
        charged = [other.post("/v1/runs", content=b"{", headers=json_type) for _ in range(4)]
        assert [r.status_code for r in charged] == [422, 422, 422, 429]
        assert charged[0].json()["error"]["code"] == "bad_json"
        assert charged[3].json()["error"]["code"] == "rate_limited"
        assert anonymous.post("/v1/runs", content=b"{", headers=json_type).status_code == 401


def test_past_the_first_refusal_a_flood_costs_redis_nothing(
        tmp_path: Path, gateway_redis: RedisServer) -> None:
    with GatewayProcess(gateway_redis.url, f"rl{uuid.uuid4().hex[:8]}", tmp_path,
                        **LIMITED) as server, server.client("runtime") as flood, \
            server.client("other") as bystander:
        assert [flood.get("/v1/whoami").status_code for _ in range(4)] == [200, 200, 200, 429]
        redis = gateway_redis.client()
        before = commands_run(redis)
        refused = [flood.get("/v1/whoami") for _ in range(50)]
        assert commands_run(redis) == before, "a refusal inside the empty window reached Redis"
        assert {r.status_code for r in refused} == {429}
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        assert refused[-1].json()["error"]["code"] == "rate_limited"
        assert refused[-1].headers["X-RateLimit-Remaining"] == "0"
        assert bystander.get("/v1/whoami").status_code == 200  # its own bucket, in Redis
        assert commands_run(redis) > before
        redis.close()


def script_calls(redis: Redis) -> int:
    """Round trips of the bucket's script (commandstats also counts the commands inside)."""
    stats = redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "eval"))


def test_a_flood_reaches_redis_about_twice_per_refill_and_never_over_admits(
        gateway_redis: RedisServer) -> None:
    """The limiter in a tight loop for half a second at 50/s: as many admissions as the rate
    allows (the local window never refuses what Redis would admit) and about two Redis calls
    per refill interval, against tens of thousands of attempts."""
    redis = gateway_redis.client()
    limiter = RateLimiter(redis, f"rl{uuid.uuid4().hex[:8]}", RateLimit(50.0, 1))
    limiter.take("flood")  # scripts loaded, the bucket's one request spent
    before = script_calls(redis)
    admitted = attempts = 0
    began = time.monotonic()
    while time.monotonic() - began < 0.5:  # a measured flood, not a wait: no sleep in it
        admitted += limiter.take("flood").admitted
        attempts += 1
    elapsed = time.monotonic() - began
    calls = script_calls(redis) - before
    assert admitted <= 1 + 50 * elapsed + 1, (admitted, elapsed)
    assert admitted >= 0.5 * 50 * elapsed, (admitted, elapsed)  # a loaded box loses some
    assert calls <= 2 * (admitted + 2), (calls, admitted, attempts)
    assert attempts > 20 * calls, (attempts, calls)
    assert limiter.refused_locally == attempts - calls
    redis.close()
