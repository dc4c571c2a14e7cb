"""The RabbitMQ compose override agrees with itself, with compose.yaml and with the workers'
start-up check: the consumer_timeout it gives RabbitMQ is the one it tells the workers, and
it covers the default LEASEGATE_MAX_DEADLINE."""

from __future__ import annotations

import re

import yaml

from leasegate.workers.config import WorkerConfig
from leasegate.workers.rabbitmq import check_consumer_timeout, is_amqp
from tests.support.deploy import DEPLOY, compose


def override() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "rabbitmq.compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_override_extends_compose_services_and_mounts_real_files() -> None:
    services = override()["services"]
    assert isinstance(services, dict)
    base = compose()["services"]
    for name, service in services.items():
        assert name == "rabbitmq" or name in base, f"rabbitmq.compose.yaml: no service {name}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
    for name in ("worker", "cron-worker", "beat"):
        env = services[name]["environment"]
        assert is_amqp(env["LEASEGATE_BROKER_URL"]), name
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_consumer_timeout_is_the_servers_and_covers_the_default_deadline() -> None:
    conf = (DEPLOY / "rabbitmq.conf").read_text()
    [server_ms] = re.findall(r"^consumer_timeout\s*=\s*(\d+)\s*$", conf, re.M)
    env = override()["services"]["worker"]["environment"]  # type: ignore[index]
    told = env["LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT"]
    assert float(told) * 1000 == float(server_ms)
    config = WorkerConfig.from_env({"LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT": told})
    check_consumer_timeout(config)  # raises ConfigError if a worker would refuse to start
