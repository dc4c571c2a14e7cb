"""Auth, refusals and limits of ``leasegate serve``, against a real server process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from leasegate.gateway import Role, TokenBook, TokensFileError
from leasegate.gateway.tokens import digest
from leasegate.testing.redis_server import RedisServer
from tests.support.gateway import TOKENS, GatewayProcess


def test_health_needs_no_token_and_names_the_namespace(gateway_server: GatewayProcess,
                                                        gateway_namespace: str) -> None:
    body = httpx.get(f"{gateway_server.url}/healthz").json()
    assert body["ok"] is True and body["namespace"] == gateway_namespace
    assert body["server_time_ms"] > 0


def test_openapi_is_served_as_3_1(gateway_server: GatewayProcess) -> None:
    schema = httpx.get(f"{gateway_server.url}/openapi.json").json()
    assert schema["openapi"].startswith("3.1")


def test_unknown_route_is_a_json_404(gateway_server: GatewayProcess) -> None:
    with gateway_server.client() as http:
        reply = http.get("/v1/nothing-here")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


def test_a_wrong_or_malformed_token_is_401(gateway_server: GatewayProcess) -> None:
    for header in ("Bearer not-a-token", "Basic abc", "Bearer"):
        reply = httpx.get(f"{gateway_server.url}/v1/whoami", headers={"Authorization": header})
        assert reply.status_code == 401, header
        assert reply.json()["error"]["code"] == "unauthorized"
    reply = httpx.get(f"{gateway_server.url}/v1/whoami")
    assert reply.status_code == 401 and "Bearer" in reply.json()["error"]["message"]


@pytest.mark.parametrize("role", ["operator", "viewer", "runtime"])
def test_whoami_names_each_role(gateway_server: GatewayProcess, role: str) -> None:
    with gateway_server.client(role) as http:
        body = http.get("/v1/whoami").json()
    assert body["role"] == role
    assert body["sessions"] == (["cron:", "agent:"] if role == "runtime" else [])


def test_a_body_over_the_limit_is_413_before_any_route(gateway_server: GatewayProcess) -> None:
    with gateway_server.client("runtime") as http:
        reply = http.post("/v1/whoami", content=b"x" * (2 << 20),
                          headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert reply.json()["error"] == {"code": "too_large", "field": "body",
                                     "message": "the request body exceeds 1048576 bytes"}


def test_serve_refuses_to_start_without_a_token_book(tmp_path: Path,
                                                     gateway_redis: RedisServer) -> None:
    server = GatewayProcess(gateway_redis.url, "nobook", tmp_path, tokens=False)
    done = subprocess.run(server.args, env=server.env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "LEASEGATE_TOKENS_FILE is not set" in done.stderr


def test_insecure_local_is_refused_off_loopback(tmp_path: Path,
                                                gateway_redis: RedisServer) -> None:
    server = GatewayProcess(gateway_redis.url, "nobook", tmp_path, tokens=False,
                            args=("--insecure-local", "--host", "0.0.0.0"))
    done = subprocess.run(server.args, env=server.env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "--insecure-local only listens on a loopback address" in done.stderr


def test_insecure_local_on_loopback_serves_everyone_as_local(
        tmp_path: Path, gateway_redis: RedisServer) -> None:
    with GatewayProcess(gateway_redis.url, "local", tmp_path, tokens=False,
                        args=("--insecure-local",)) as server:
        body = httpx.get(f"{server.url}/v1/whoami").json()
    assert body == {"name": "local", "role": "operator", "sessions": []}


def test_token_book_errors_name_the_entry_and_field(tmp_path: Path) -> None:
    good = digest(TOKENS["operator"])
    cases = [
        ("[[token]]\nname = 'a'\nrole = 'root'\nsha256 = '" + good + "'\n", "role must be one of"),
        ("[[token]]\nname = 'a'\nrole = 'viewer'\nsha256 = 'abc'\n", "sha256 must be 64 hex"),
        ("[[token]]\nname = 'a'\nrole = 'runtime'\nsha256 = '" + good + "'\n",
         "a runtime token needs sessions"),
        ("[[token]]\nname = 'a'\nrole = 'viewer'\nsessions = ['x']\nsha256 = '" + good + "'\n",
         "sessions only applies to role = runtime"),
        ("title = 'nothing'\n", "no [[token]] entries"),
        ("[[token\n", "is not TOML"),
    ]
    for text, expected in cases:
        path = tmp_path / "t.toml"
        path.write_text(text)
        with pytest.raises(TokensFileError, match=expected.replace("[", r"\[")):
            TokenBook.load(path)
    with pytest.raises(TokensFileError, match="does not exist"):
        TokenBook.load(tmp_path / "missing.toml")


def test_a_token_is_found_by_its_digest_only() -> None:
    book = TokenBook.from_entries([{"name": "r", "role": "runtime", "sessions": ["cron:"],
                                    "sha256": digest("secret-bearer")}])
    token = book.find("secret-bearer")
    assert token is not None and token.role is Role.RUNTIME
    assert book.find("secret-bearer ") is None and book.find(digest("secret-bearer")) is None
    assert token.may_use("cron:job-1") and not token.may_use("agent:x")


def test_the_leasegate_script_still_runs_the_workers_commands() -> None:
    done = subprocess.run([sys.executable, "-c", "from leasegate.gateway.cli import main; "
                           "raise SystemExit(main())", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and "demo" in done.stdout


def test_serve_refuses_a_bad_stream_setting_naming_it(tmp_path: Path,
                                                      gateway_redis: RedisServer) -> None:
    server = GatewayProcess(gateway_redis.url, "badsse", tmp_path,
                            LEASEGATE_SSE_HEARTBEAT="soon")
    done = subprocess.run(server.args, env=server.env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "LEASEGATE_SSE_HEARTBEAT='soon' is not a number" in done.stderr
