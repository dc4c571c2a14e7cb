"""A refused request reaches nothing: Redis runs no command for a 401, 403, 404 (bad ref),
413 or 422 of the runtime API (counted with INFO commandstats; no worker in this module).

The one exception is the rate limit: every authenticated request, refused or not, draws from
its token's bucket in Redis (tests/gateway/test_rate_limit.py), so here it is off."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from leasegate.testing.redis_server import RedisServer
from tests.support.gateway import GatewayProcess
from tests.support.runtime_api import commands_run, start

IMAGE = {"tool": "image_generate", "args": {"prompt": "a fox"}}


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory: pytest.TempPathFactory, gateway_namespace: str,
                   gateway_redis: RedisServer) -> Iterator[GatewayProcess]:
    with GatewayProcess(gateway_redis.url, gateway_namespace,
                        tmp_path_factory.mktemp("refusals"), LEASEGATE_RATE_LIMIT="0") as server:
        yield server


def refusals(server: GatewayProcess, ref: str, foreign: str) -> list[httpx.Response]:
    out: list[httpx.Response] = []
    start_body = {"session_key": "cron:x", "prompt": "p", "ttl": 5}
    with server.client(None) as http:
        out += [http.post("/v1/runs", json=start_body), http.get(f"/v1/runs/{ref}")]
    with server.client("operator") as http:
        out += [http.post("/v1/runs", json=start_body),
                http.post(f"/v1/runs/{ref}/tasks", json=IMAGE)]
    with server.client("runtime") as http:
        out += [
            http.post("/v1/runs", json={**start_body, "session_key": "other:x"}),
            http.post("/v1/runs", json={**start_body, "ttl": 99999}),
            http.post("/v1/runs", json={**start_body, "prompt": "p" * 300_000}),
            http.post("/v1/runs", content=b"{", headers={"content-type": "application/json"}),
            http.post("/v1/runs", content=b"x" * (2 << 20),
                      headers={"content-type": "application/json"}),
            http.get(f"/v1/runs/{ref}x"),
            http.get(f"/v1/runs/{foreign}/inbox"),
            http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "tool": "nope"}),
            http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "deadline": 10**6}),
            http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "args": {"p": "x" * 70_000}}),
            http.post(f"/v1/runs/{ref}/tasks", json={**IMAGE, "callback_id": "a:b"}),
            http.post(f"/v1/runs/{ref}/park", json={"until": 10**7}),
            http.post(f"/v1/runs/{ref}/renew", json={"ttl": -1}),
            http.get(f"/v1/runs/{ref}/inbox", params={"limit": 5000}),
        ]
    return out


def test_refused_requests_run_no_redis_command(gateway_server: GatewayProcess,
                                               gateway_redis: RedisServer) -> None:
    with gateway_server.client("runtime") as http:
        ref = start(http)["run"]
    with gateway_server.client("other") as http:
        foreign = start(http, "other:job")["run"]
    client = gateway_redis.client()
    before = commands_run(client)
    replies = refusals(gateway_server, ref, foreign)
    after = commands_run(client)
    assert [r.status_code for r in replies] == [401, 401, 403, 403, 403, 422, 422, 422, 413,
                                                404, 403, 422, 422, 422, 422, 422, 422, 422]
    assert all("error" in r.json() for r in replies)
    assert after == before, f"{after - before} Redis commands ran for refused requests"
    with gateway_server.client("runtime") as http:  # the count does see an accepted request
        assert http.get(f"/v1/runs/{ref}").status_code == 200
    assert commands_run(client) > after
    client.close()
