"""rediss:// end to end: the server speaks only TLS, the settings reach redis-py and kombu, and
a client that does not trust the server's CA is refused with an error naming the setting."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from leasegate.broker import Client
from leasegate.broker.transport import Transport
from leasegate.ownership import (
    Registry,
    RegistryUnavailable,
    broker_use_ssl,
    connect,
    redis_tls_options,
)
from leasegate.testing.redis_server import RedisServer

from ..support.tls import make_certificates, tls_env


def test_the_server_speaks_tls_only(redis_server: RedisServer) -> None:
    clear = redis_server.url.replace("rediss://", "redis://")
    with pytest.raises(RegistryUnavailable):
        Registry.from_url(clear, "t").status("agent:tls", "run-1")


def test_a_client_without_the_ca_is_refused_naming_the_setting(
        redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = make_certificates(tmp_path / "other", ca_name="some other CA")
    for name, value in tls_env(stranger).items():
        monkeypatch.setenv(name, value)
    registry = Registry(connect(redis_server.url), "t")
    with pytest.raises(RegistryUnavailable, match="LEASEGATE_REDIS_TLS_CA") as refused:
        registry.status("agent:tls", "run-1")
    assert "not trusted" in str(refused.value)


def test_a_missing_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEASEGATE_REDIS_TLS_CA", str(tmp_path / "absent.pem"))
    with pytest.raises(ValueError, match=r"LEASEGATE_REDIS_TLS_CA=.*absent\.pem"):
        connect("rediss://localhost:1/0")


def test_a_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch,
                                     tls_environment: dict[str, str]) -> None:
    monkeypatch.delenv("LEASEGATE_REDIS_TLS_KEY")
    with pytest.raises(ValueError, match="LEASEGATE_REDIS_TLS_KEY"):
        redis_tls_options()


def test_redis_and_kombu_get_the_same_files(tls_environment: dict[str, str]) -> None:
    ours = redis_tls_options()
    kombu = broker_use_ssl()
    assert ours["ssl_cert_reqs"] == "required" and kombu["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    for key, name in (("ssl_ca_certs", "LEASEGATE_REDIS_TLS_CA"),
                      ("ssl_certfile", "LEASEGATE_REDIS_TLS_CERT"),
                      ("ssl_keyfile", "LEASEGATE_REDIS_TLS_KEY")):
        assert ours[key] == kombu[key] == tls_environment[name]


def test_the_runtime_producer_submits_over_tls(redis_server: RedisServer,
                                               namespace: str) -> None:
    transport = Transport.for_broker(redis_server.url)
    assert transport.app.conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    client = Client.from_url(redis_server.url, namespace, secret=b"s" * 32,
                             broker_url=redis_server.url)
    run = client.start_run("agent:tls", "draw")
    run.submit("image_generate", prompt="over TLS")
    queued = redis_server.client().llen("media")
    assert queued >= 1  # the task reached the TLS-only broker's queue
