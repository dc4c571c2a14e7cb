"""The highly available recipes: deploy/sentinel.compose.yaml (on top of compose.yaml and
rabbitmq.compose.yaml) and the deploy/k8s-ha overlay (RabbitMQ, Redis with Sentinel, the
gateway, on top of deploy/k8s). Each parses, every LEASEGATE_* variable it sets is one the code
reads, the workers' start-up checks pass on its settings, and its parts name each other right
(sentinels and their master name, RabbitMQ's nodes and consumer_timeout, KEDA's queue)."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from leasegate.ownership import parse_sentinel_url
from leasegate.workers.config import WorkerConfig
from leasegate.workers.rabbitmq import check_consumer_timeout, is_amqp
from tests.support.deploy import (
    DEPLOY,
    app_queues,
    check_leasegate_script,
    code_vars,
    compose,
    k8s_objects,
)

OVERLAY = DEPLOY / "k8s-ha"
LEASEGATE_PROCESSES = ("worker", "cron-worker", "beat", "metrics")


def merged(base: Any, patch: Any) -> Any:
    """A strategic merge as compose and kustomize do it for these files: mappings merge key by
    key, anything else (lists, scalars) is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merged(base.get(key), value) if key in base else value
        return out
    return copy.deepcopy(patch)


def load(path: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / path).read_text())
    assert isinstance(data, dict), path
    return data


def check_leasegate_env(env: dict[str, Any], where: str) -> None:
    for name in env:
        if name.startswith("LEASEGATE_"):
            assert name in code_vars(), f"{where}: sets {name}, which no code reads"


def check_worker_settings(env: dict[str, str], where: str) -> WorkerConfig:
    config = WorkerConfig.from_env(env)
    assert is_amqp(config.broker_url), f"{where}: the broker is RabbitMQ"
    config.check_broker()  # what a worker refuses at start-up, broker side
    check_consumer_timeout(config)
    parse_sentinel_url(config.redis_url)  # ValueError names what is wrong
    return config


def rabbitmq_consumer_timeout_ms(conf: str) -> int:
    [value] = re.findall(r"^\s*consumer_timeout\s*=\s*(\d+)\s*$", conf, re.M)
    return int(value)


# -- docker compose --------------------------------------------------------------------------

def test_sentinel_compose_extends_the_recipes_and_names_its_sentinels() -> None:
    base, rabbit, sentinel = compose(), load("rabbitmq.compose.yaml"), load(
        "sentinel.compose.yaml")
    services = merged(merged(base["services"], rabbit["services"]), sentinel["services"])
    volumes = {**base.get("volumes", {}), **rabbit.get("volumes", {}),
               **sentinel.get("volumes", {})}
    for name, svc in sentinel["services"].items():
        for dependency in svc.get("depends_on", {}):
            assert dependency in services, f"sentinel.compose.yaml {name}: {dependency}?"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists() if source.startswith(".") else \
                source in volumes, f"sentinel.compose.yaml {name}: {source} missing"
    sentinels = {name: svc for name, svc in services.items() if "--sentinel" in str(
        svc.get("command"))}
    assert len(sentinels) == 3
    [monitor] = {re.search(r"sentinel monitor (\S+) (\S+) 6379 2", str(s["command"])).groups()
                 for s in sentinels.values()}  # type: ignore[union-attr]
    master, first_primary = monitor
    assert first_primary in services
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1] == first_primary
    for name in LEASEGATE_PROCESSES:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        check_leasegate_env(env, f"compose {name}")
        target = parse_sentinel_url(env["LEASEGATE_REDIS_URL"])
        assert target.service == master and {h for h, _ in target.sentinels} == set(sentinels)
        if name != "metrics":
            check_worker_settings(env, f"compose {name}")
        assert set(sentinels) <= set(services[name]["depends_on"])


# -- Kubernetes ------------------------------------------------------------------------------

def overlay_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """deploy/k8s with the overlay's resources added and its patches applied."""
    kustomization = load("k8s-ha/kustomization.yaml")
    files = {p.name for p in OVERLAY.glob("*.yaml")} - {"kustomization.yaml"}
    resources = [r for r in kustomization["resources"] if r != "../k8s"]
    patches = [p["path"] for p in kustomization["patches"]]
    assert "../k8s" in kustomization["resources"]
    assert sorted(resources + patches) == sorted(files), "every file is listed once"
    objects = copy.deepcopy(k8s_objects())
    for name in resources:
        for doc in yaml.safe_load_all((OVERLAY / name).read_text()):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"k8s-ha/{name}: {key} is also in deploy/k8s"
            objects[key] = doc
    for name in patches:
        doc = yaml.safe_load((OVERLAY / name).read_text())
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in objects, f"k8s-ha/{name} patches {key}, which does not exist"
        objects[key] = merged(objects[key], doc)
    return objects


def data(obj: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in {**obj.get("data", {}), **obj.get("stringData", {})}.items()}


def container_env(objects: dict[tuple[str, str], dict[str, Any]],
                  container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source.get("configMapRef") or source["secretRef"]
        env.update(data(objects[(kind, ref["name"])]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item["valueFrom"] or "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"]["configMapKeyRef"]
            kind = "Secret" if "secretKeyRef" in item["valueFrom"] else "ConfigMap"
            env[item["name"]] = data(objects[(kind, ref["name"])])[ref["key"]]
    return env


def pods(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: obj["spec"]["template"] for (kind, name), obj in objects.items()
            if kind in ("Deployment", "StatefulSet")}


def test_k8s_ha_env_names_are_real_and_the_workers_would_start() -> None:
    objects = overlay_objects()
    for (kind, name), obj in objects.items():
        if kind in ("ConfigMap", "Secret"):
            check_leasegate_env(data(obj), f"{kind} {name}")
    for name, template in pods(objects).items():
        for container in template["spec"]["containers"]:
            env = container_env(objects, container)
            check_leasegate_env(env, f"{name}/{container['name']}")
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in {v["name"] for v in template["spec"].get(
                    "volumes", [])} | {t["metadata"]["name"] for t in objects.get(
                        ("StatefulSet", name), {}).get("spec", {}).get(
                        "volumeClaimTemplates", [])}, f"{name}: volume {mount['name']}"
    worker = pods(objects)["leasegate-worker"]["spec"]["containers"][0]
    config = check_worker_settings(container_env(objects, worker), "leasegate-worker")
    assert config.min_replicas == 1
    secrets = data(objects[("Secret", "leasegate")])
    assert urlsplit(secrets["LEASEGATE_BROKER_URL"]).password is None  # no shipped password
    assert not data(objects[("Secret", "rabbitmq")])["RABBITMQ_DEFAULT_PASS"]
    assert not data(objects[("Secret", "rabbitmq")])["RABBITMQ_ERLANG_COOKIE"]


def test_k8s_ha_sentinels_rabbitmq_nodes_and_keda_agree() -> None:
    objects = overlay_objects()
    env = data(objects[("ConfigMap", "leasegate-config")])
    target = parse_sentinel_url(data(objects[("Secret", "leasegate")])["LEASEGATE_REDIS_URL"])
    [(host, port)] = target.sentinels
    assert host == "redis-sentinel.leasegate.svc.cluster.local"
    assert port in [p["port"] for p in objects[("Service", "redis-sentinel")]["spec"]["ports"]]
    scripts = data(objects[("ConfigMap", "redis-sentinel")])
    assert f"sentinel monitor {target.service} " in scripts["start-sentinel.sh"]
    for script in ("start-redis.sh", "start-sentinel.sh"):
        assert f"get-master-addr-by-name {target.service}" in scripts[script]
    shipped = [line for line in (DEPLOY / "redis.conf").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    opened = ("bind ", "protected-mode ", "dir ")  # the pod network, the volume
    for line in shipped:
        if not line.startswith(opened):
            assert line in scripts["redis.conf"].splitlines(), f"redis.conf lacks {line!r}"
    rabbit_conf = data(objects[("ConfigMap", "rabbitmq-config")])["rabbitmq.conf"]
    timeout_ms = rabbitmq_consumer_timeout_ms(rabbit_conf)
    assert timeout_ms == float(env["LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT"]) * 1000 == \
        rabbitmq_consumer_timeout_ms((DEPLOY / "rabbitmq.conf").read_text())
    rabbit = objects[("StatefulSet", "rabbitmq")]["spec"]
    assert ("Service", rabbit["serviceName"]) in objects
    nodes = re.findall(r"classic_config\.nodes\.\d+\s*=\s*(\S+)", rabbit_conf)
    assert nodes == [f"rabbit@rabbitmq-{i}.{rabbit['serviceName']}.leasegate.svc.cluster.local"
                     for i in range(rabbit["replicas"])]
    redis_set = objects[("StatefulSet", "redis")]["spec"]
    assert ("Service", redis_set["serviceName"]) in objects
    assert f"redis-0.{redis_set['serviceName']}.leasegate" in scripts["start-redis.sh"]
    [trigger] = objects[("ScaledObject", "leasegate-worker")]["spec"]["triggers"]
    media = env.get("LEASEGATE_MEDIA_QUEUE", "media")
    assert trigger["type"] == "rabbitmq" and trigger["metadata"]["queueName"] == media
    assert media in app_queues()
    auth = objects[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host" and is_amqp(data(objects[("Secret", ref["name"])])[
        ref["key"]])


def test_k8s_ha_gateway_serves_its_port_with_its_token_book() -> None:
    objects = overlay_objects()
    template = pods(objects)["leasegate-gateway"]
    [container] = template["spec"]["containers"]
    assert container["command"][0] == "leasegate"
    check_leasegate_script(container["command"][1:], "k8s-ha/gateway.yaml")
    env = container_env(objects, container)
    tokens = env["LEASEGATE_TOKENS_FILE"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if tokens.startswith(m["mountPath"] + "/")]
    secret = volumes[mount["name"]]["secret"]["secretName"]
    assert tokens.rsplit("/", 1)[1] in data(objects[("Secret", secret)])
    service = objects[("Service", "leasegate-gateway")]["spec"]
    assert service["selector"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in ports for p in service["ports"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_kustomize_renders_the_overlay_as_these_tests_read_it() -> None:
    """The real kustomize (kubectl's) builds the overlay, with the same objects as
    overlay_objects(): its patches merge and replace as the checks above assume."""
    import shutil
    import subprocess

    if shutil.which("kubectl") is None:
        pytest.fail("this test renders deploy/k8s-ha with kubectl: apt-get install kubectl")
    done = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout)}
    ours = overlay_objects()
    assert set(rendered) == set(ours)
    for key, obj in ours.items():
        obj = {k: v for k, v in obj.items() if k != "_file"}
        if key[0] == "Secret":  # kustomize keeps stringData as it is, merged
            assert data(rendered[key]) == data(obj), key
        else:
            assert rendered[key] == obj, key
