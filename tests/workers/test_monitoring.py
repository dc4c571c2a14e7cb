"""Quarantined work does not look like success in Celery's own monitoring: a real worker (-E)
whose callback is quarantined ends its task in FAILURE with a ``Quarantined`` exception, seen
by a real Flower (its HTTP API) and by an event receiver (what ``celery events`` runs), while
the verdict is still written once and the message acknowledged (no redelivery)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer, free_port, terminate
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until


def flower_tasks(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, ConnectionError):
        return {}


def test_a_quarantined_task_is_a_failure_in_flower_and_in_events(tmp_path: Path) -> None:
    namespace = f"mon{uuid.uuid4().hex[:6]}"
    port = free_port()
    with RedisServer() as server, open(tmp_path / "flower.log", "wb") as flower_log:
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "--broker", server.url, "flower",
             f"--port={port}", "--address=127.0.0.1"],
            env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=flower_log, stderr=subprocess.STDOUT)
        app = Celery("monitor", broker=server.url, set_as_current=False)
        seen: list[dict[str, Any]] = []
        receivers: list[Any] = []

        def listen() -> None:  # what `celery events` does: a receiver on the event exchange
            with app.connection() as conn:
                receivers.append(app.events.Receiver(conn, handlers={"*": seen.append}))
                receivers[0].capture(limit=None, timeout=120, wakeup=True)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        worker = WorkerProcess(server.url, namespace, tmp_path, events=True)
        client = Client.from_url(server.url, namespace, secret=SECRET.encode())
        try:
            probe = uuid.uuid4().hex

            def probe_arrived() -> bool:
                # events go to a fanout exchange: once this probe is back at both Flower and
                # our receiver, their queues are bound and nothing the worker sends is missed
                with app.events.default_dispatcher(hostname="probe") as dispatcher:
                    dispatcher.send("task-received", uuid=probe, name="probe", args="()",
                                    kwargs="{}")
                return probe in flower_tasks(port) and any(
                    e.get("uuid") == probe for e in seen)

            wait_until(probe_arrived, timeout=60, interval=0.5, message="flower and receiver")
            gone = client.start_run("cron:monitor-gone", prompt="p", ttl=30)
            late = gone.submit("image_generate", prompt="too late", size="256x256")
            gone.release("failed")  # before any worker exists: its callback must be quarantined
            live = client.start_run("cron:monitor-live", prompt="p", ttl=30)
            ok = live.submit("image_generate", prompt="fine", size="256x256")
            worker.start()
            live.inbox.wait_for([ok], timeout=60)

            def both_finished() -> bool:
                tasks = flower_tasks(port)
                return all(tasks.get(t, {}).get("state") in ("FAILURE", "SUCCESS")
                           for t in (late, ok))

            wait_until(both_finished, timeout=60, interval=0.5, message="flower's verdicts")
            tasks = flower_tasks(port)
            assert tasks[ok]["state"] == "SUCCESS"
            assert tasks[late]["state"] == "FAILURE"
            assert "Quarantined" in tasks[late]["exception"]
            assert "run_released" in tasks[late]["exception"]

            def failed_event() -> dict[str, Any] | None:
                return next((e for e in seen if e.get("uuid") == late
                             and e["type"] == "task-failed"), None)

            wait_until(failed_event, timeout=30, message="the task-failed event")
            event = failed_event()
            letters = client.dead_letters.list(session_key="cron:monitor-gone").letters
            assert event is not None and letters and letters[0].id in event["exception"]
            assert not [e for e in seen if e.get("uuid") == late
                        and e["type"] == "task-succeeded"]
            assert [e["reason"] for e in seen if e["type"] == "leasegate-quarantined"
                    and e.get("callback_id") == late] == ["run_released"]

            # the promise: one verdict, one dead letter; the message acknowledged, once
            assert [(x.callback_id, x.reason) for x in letters] == [(late, "run_released")]
            log = worker.log()
            assert log.count(f"[{late}] received") == 1
            assert f"[{late}] raised expected: Quarantined" in log
            assert f"[{late}] succeeded" not in log
            assert client.redis.hlen("unacked") == 0  # acked: nothing to restore, ever
            assert client.redis.llen("media") == 0
        finally:
            if receivers:
                receivers[0].should_stop = True
            worker.stop()
            terminate(flower, 10)
            client.redis.close()
