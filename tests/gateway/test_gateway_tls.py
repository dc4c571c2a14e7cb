"""``leasegate serve --ssl-certfile --ssl-keyfile`` serves https, and its log (access log on,
info level) never carries a bearer token, not even an unknown one or one typed at /login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leasegate.testing.redis_server import RedisServer
from tests.support.gateway import TOKENS, GatewayProcess
from tests.support.tls import make_certificates


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory, gateway_namespace: str,
                 gateway_redis: RedisServer) -> Iterator[GatewayProcess]:
    workdir = Path(tmp_path_factory.mktemp("https"))
    tls = make_certificates(workdir / "certs")
    with GatewayProcess(gateway_redis.url, gateway_namespace, workdir, https=tls,
                        args=("--log-level", "info")) as server:
        yield server


def test_serve_speaks_https_with_its_certificate(https_server: GatewayProcess) -> None:
    assert https_server.url.startswith("https://")
    with https_server.client("runtime") as http:
        reply = http.get("/v1/whoami")
    assert reply.status_code == 200 and reply.json()["name"] == "openclaw"
    assert reply.url.scheme == "https"


def test_a_client_without_the_ca_is_refused(https_server: GatewayProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), \
            httpx.Client(base_url=https_server.url, verify=True) as http:
        http.get("/healthz")


def test_tokens_never_reach_the_log(https_server: GatewayProcess) -> None:
    unknown = "never-issued-token-5551234"
    typed = "typed-at-login-token-7771234"
    with https_server.client("operator") as http:
        assert http.get("/v1/whoami").status_code == 200
        assert http.get("/v1/whoami", headers={"Authorization": f"Bearer {unknown}"}) \
            .status_code == 401
        assert http.get("/v1/whoami?note=x", headers={"Authorization": f"Bearer {unknown}"}) \
            .status_code == 401
    with https_server.client(None) as http:
        login = http.post("/login", data={"token": typed, "csrf": "x", "next": "/"})
        assert login.status_code in (401, 403)
    log = https_server.log()
    assert "GET /v1/whoami" in log and "POST /login" in log  # the access log is on
    for secret in (*TOKENS.values(), unknown, typed):
        assert secret not in log
