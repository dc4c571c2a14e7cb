"""The Kubernetes recipe agrees with itself (names, selectors, mounts, ports, the
ServiceMonitor) and KEDA scales the media workers on the media queue's list.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from tests.support.deploy import DEPLOY, app_queues, k8s_objects, k8s_value


def test_kubernetes_objects_agree() -> None:
    objects = k8s_objects()
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml")
                                    if p.name != "kustomization.yaml")
    pods = {name: obj["spec"]["template"] for (kind, name), obj in objects.items()
            if kind == "Deployment"}
    for name, template in pods.items():
        selector = objects[("Deployment", name)]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items(), name
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in objects, f"{name}: {claim}"
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in objects, name
    services = {name: obj for (kind, name), obj in objects.items() if kind == "Service"}
    for name, service in services.items():
        matched = [pod for pod in pods.values()
                   if service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()]
        assert matched, f"Service {name} selects no pod"
        ports = {p["name"] for c in matched[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port}"
    monitor = objects[("ServiceMonitor", "leasegate")]
    selected = [s for s in services.values() if monitor["spec"]["selector"]["matchLabels"].items()
                <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in selected} == {"leasegate-metrics",
                                                          "leasegate-worker-metrics"}
    for endpoint in monitor["spec"]["endpoints"]:
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)
    worker = pods["leasegate-worker"]["spec"]["containers"][0]["resources"]
    assert worker["limits"]["nvidia.com/gpu"] == 1 and worker["requests"]["cpu"]


def test_keda_scales_the_media_workers_on_the_media_list() -> None:
    scaled = k8s_objects()[("ScaledObject", "leasegate-worker")]
    assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in k8s_objects()
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    config = k8s_objects()[("ConfigMap", "leasegate-config")]["data"]
    media = config.get("LEASEGATE_MEDIA_QUEUE", "media")
    assert trigger["metadata"]["listName"] == media and media in app_queues()
    url = urlsplit(k8s_value("Secret", "leasegate", "LEASEGATE_REDIS_URL", "secret.yaml"))
    assert trigger["metadata"]["address"] == f"{url.hostname}:{url.port or 6379}"
    assert trigger["metadata"]["databaseIndex"] == (url.path.strip("/") or "0")
