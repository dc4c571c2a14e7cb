"""Metrics, events and the quarantine log line, from real scenarios on real processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from leasegate.broker import Client
from leasegate.ownership import LeaseLost, shard_of
from leasegate.testing.redis_server import RedisServer, free_port
from leasegate.workers import WorkerConfig, install
from leasegate.workers.cli.ops import leasegate
from tests.broker.test_deadletters import every_shard_keys
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scenario(client: Client) -> None:
    """Two deliveries, a superseded and a released callback, a refused renewal, one live and
    one parked lease."""
    key = f"cron:{uuid.uuid4().hex[:6]}"
    old = client.start_run(key, prompt="p", ttl=30)
    stale = old.envelope("image_generate", {})
    live = client.start_run(key, prompt="p", ttl=30)
    client.gate.deliver(stale, result={})
    with pytest.raises(LeaseLost):
        old.renew()
    client.gate.deliver(live.envelope("image_generate", {}), result={})
    client.gate.deliver(live.envelope("image_generate", {}), result={})
    parked = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    gone = parked.envelope("tts", {})
    parked.park(until=60)
    done = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    late = done.envelope("image_generate", {})
    done.release("failed")
    client.gate.deliver(late, result={})
    assert gone  # parked, nothing delivered to it


def metrics_once(redis_server: RedisServer, namespace: str) -> Result:
    """``celery ... leasegate metrics --once`` of the namespace, through the bundled app."""
    app = install(Celery("m", set_as_current=False),
                  WorkerConfig(redis_url=redis_server.url, namespace=namespace,
                               secret=SECRET.encode()))
    return CliRunner().invoke(leasegate, ["metrics", "--once"],
                              obj=CLIContext(app=app, no_color=True, workdir=None, quiet=False),
                              catch_exceptions=False)


def test_exporter_reports_redis_counters(redis_server: RedisServer, namespace: str) -> None:
    client = Client(redis_server.client(), namespace, secret=SECRET.encode())
    scenario(client)
    out = metrics_once(redis_server, namespace)
    assert out.exit_code == 0
    got = samples(out.output)
    deliveries = "leasegate_deliveries_total"
    assert got[(deliveries, (("reason", ""), ("tool", "image_generate"),
                             ("verdict", "delivered")))] == 2
    assert got[(deliveries, (("reason", "superseded"), ("tool", "image_generate"),
                             ("verdict", "quarantined")))] == 1
    assert got[(deliveries, (("reason", "run_released"), ("tool", "image_generate"),
                             ("verdict", "quarantined")))] == 1
    assert got[("leasegate_lease_renew_failures_total", (("reason", "superseded"),))] == 1
    assert got[("leasegate_leases", (("state", "live"),))] == 1
    assert got[("leasegate_leases", (("state", "parked"),))] == 1
    assert got[("leasegate_dead_letters", (("reason", "superseded"),))] == 1
    assert got[("leasegate_dead_letter_oldest_age_seconds", ())] >= 0


def test_exporter_sums_the_counters_of_every_shard(redis_server: RedisServer,
                                                   namespace: str) -> None:
    client = Client(redis_server.client(), namespace, secret=SECRET.encode())
    keys = every_shard_keys()[::5]  # 7 session keys, 7 shards: 7 counter hashes
    for key in keys:
        run = client.start_run(key, prompt="p", ttl=30)
        late = run.envelope("tts", {})
        run.release("failed")
        client.gate.deliver(late, result={})
    assert len({shard_of(key) for key in keys}) == len(keys)
    out = metrics_once(redis_server, namespace)
    got = samples(out.output)
    assert got[("leasegate_deliveries_total", (("reason", "run_released"), ("tool", "tts"),
                                               ("verdict", "quarantined")))] == len(keys)
    assert got[("leasegate_dead_letters", (("reason", "run_released"),))] == len(keys)


def test_exporter_serves_http_from_a_celery_process(redis_server: RedisServer,
                                                    namespace: str) -> None:
    client = Client(redis_server.client(), namespace, secret=SECRET.encode())
    scenario(client)
    port = free_port()
    env = {**os.environ, "LEASEGATE_REDIS_URL": redis_server.url,
           "LEASEGATE_NAMESPACE": namespace, "LEASEGATE_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                             "leasegate", "metrics", "--port", str(port), "--addr",
                             "127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    body: list[str] = []

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                body.append(r.read().decode())
                return True
        except OSError:
            return False

    try:
        wait_until(scraped, timeout=30, message="the exporter to answer")
    finally:
        proc.terminate()
        proc.wait(10)
    assert "leasegate_deliveries_total" in body[0]
    assert samples(body[0])[("leasegate_leases", (("state", "parked"),))] == 1


def test_one_json_log_line_per_quarantine(broker_client: Client,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="leasegate.quarantine")
    run = broker_client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    run.release("failed")
    for _ in range(3):  # repeats log nothing more
        broker_client.gate.deliver(env, result={})
    broker_client.gate.deliver(os.urandom(40), result={})
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "leasegate.quarantine"]
    assert [x["reason"] for x in lines] == ["run_released", "malformed"]
    first = lines[0]
    for field, value in (("session_key", run.session_key), ("run_id", run.run_id),
                         ("fence", run.fence), ("callback_id", env.callback_id),
                         ("task_id", env.task_id), ("tool", "image_generate")):
        assert first[field] == value
    assert first["dead_letter_id"] and "sig" not in first


def test_worker_events_and_worker_metrics(tmp_path: Path) -> None:
    """A worker with -E emits leasegate-delivered / -quarantined events; with
    LEASEGATE_METRICS_PORT and PROMETHEUS_MULTIPROC_DIR it serves its children's gate
    latency."""
    namespace = f"ev{uuid.uuid4().hex[:6]}"
    port = free_port()
    (tmp_path / "prom").mkdir()
    with RedisServer() as server:
        worker = WorkerProcess(server.url, namespace, tmp_path, events=True,
                               LEASEGATE_METRICS_PORT=str(port),
                               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))
        worker.start()
        seen: list[dict[str, Any]] = []
        app = Celery("events", broker=server.url, set_as_current=False)
        wanted = {"leasegate-delivered", "leasegate-quarantined"}

        receivers: list[Any] = []

        def on_event(event: dict[str, Any]) -> None:
            seen.append(event)
            if wanted <= {e["type"] for e in seen}:
                receivers[0].should_stop = True

        def listen() -> None:
            with app.connection() as conn:
                receivers.append(app.events.Receiver(conn, handlers={"*": on_event}))
                receivers[0].capture(limit=None, timeout=60, wakeup=True)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()

        def probe_arrived() -> bool:
            # events go to a fanout exchange: only once our own probe comes back is the
            # receiver's queue bound, and nothing the worker sends can be missed
            with app.events.default_dispatcher(hostname="probe") as dispatcher:
                dispatcher.send("probe")
            return any(e["type"] == "probe" for e in seen)

        try:
            wait_until(probe_arrived, timeout=20, interval=0.2, message="the event receiver")
            client = Client.from_url(server.url, namespace, secret=SECRET.encode())
            run = client.start_run("cron:events", prompt="p", ttl=30)
            cb = run.submit("image_generate", prompt="ok", size="256x256")
            run.inbox.wait_for([cb], timeout=30)
            other = client.start_run("cron:events-2", prompt="p", ttl=30)
            cb2 = other.submit("image_generate", prompt="too late", size="256x256")
            other.release("failed")
            listener.join(60)
            kinds = {e["type"]: e for e in seen}
            assert kinds["leasegate-delivered"]["callback_id"] == cb
            assert kinds["leasegate-delivered"]["run_id"] == run.run_id
            quarantined = kinds["leasegate-quarantined"]
            assert (quarantined["callback_id"], quarantined["reason"]) == (cb2, "run_released")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            count = samples(text)[("leasegate_gate_latency_seconds_count", ())]
            assert count >= 1
        finally:
            worker.stop()
