"""The beat and the gateway as Redis ACL users (workers/acl.py): a real ``celery beat``
(redbeat) as ``<ns>-beat`` sends cron ticks a real worker runs, and a real ``leasegate serve``
as ``<ns>-operator`` starts runs, submits, revokes and replays; each is refused outside its
role, and ``doctor`` names the role it runs as."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from leasegate.ownership import Keys
from leasegate.testing.redis_server import find_redis_server, terminate
from leasegate.workers.acl import user_name
from leasegate.workers.installation import redbeat_prefix
from tests.support.acl import Acl, acl_server
from tests.support.celery_workers import WorkerProcess
from tests.support.gateway import GatewayProcess
from tests.support.helpers import wait_for_value, wait_until
from tests.support.runtime_api import start, wait_entries

pytestmark = pytest.mark.e2e

SUPPORT = str(Path(__file__).parents[1] / "support")
IMAGE = {"tool": "image_generate", "args": {"prompt": "a fox at dawn", "size": "256x256"}}


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acl]:
    with acl_server(find_redis_server(), tmp_path_factory.mktemp("acl")) as started:
        yield started


@pytest.fixture(scope="module")
def worker(acl: Acl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker (the worker user) for the cron ticks and the gateway's images; each image
    takes two seconds, so a task submitted behind another is still pending a moment later."""
    proc = WorkerProcess(acl.url("worker"), acl.namespace, tmp_path_factory.mktemp("w"),
                         LEASEGATE_GENERATOR_LATENCY="2",
                         PYTHONPATH=os.pathsep.join(filter(None, [
                             SUPPORT, os.environ.get("PYTHONPATH")])))
    yield proc.start()
    proc.stop()


def doctor_user_line(acl: Acl, role: str, artifacts: Path) -> str:
    artifacts.mkdir(exist_ok=True)
    env = {**acl.env(role), "LEASEGATE_ARTIFACT_DIR": str(artifacts)}
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                           "leasegate", "doctor"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert "NOPERM" not in done.stdout + done.stderr, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.split()[1:2] == ["user:"]]
    assert lines, done.stdout + done.stderr
    return lines[0]


def test_beat_as_the_beat_user_sends_ticks_a_worker_runs(acl: Acl, worker: WorkerProcess,
                                                         tmp_path: Path) -> None:
    key = f"cron:acl-{uuid.uuid4().hex[:6]}"
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "header", "schedule": 1, "session_key": key,
                                 "prompt": "Draw today's header",
                                 "runtime": "cron_runtime:draw_header", "ttl": 30}]))
    admin = acl.server.client()
    fence = Keys(acl.namespace).fence(key)
    with open(tmp_path / "beat.log", "wb") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "leasegate.workers", "beat", "--loglevel",
             "INFO", "-s", str(tmp_path / "beat-schedule"), "-S", "redbeat.RedBeatScheduler"],
            env={**acl.env("beat"), "LEASEGATE_CRON_FILE": str(jobs)}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: int(admin.get(fence) or 0) >= 2, timeout=60,
                       message=f"two cron ticks run by the worker:\n{worker.log()[-2000:]}")
        finally:
            terminate(beat)
    text = (tmp_path / "beat.log").read_text(errors="replace")
    assert "NOPERM" not in text and "Traceback" not in text, text[-3000:]
    prefix = redbeat_prefix(acl.namespace)
    assert list(admin.scan_iter(match=f"{prefix}*"))  # its schedule, kept by the beat user
    # the beat user reaches no leasegate key: not the fence, not an inbox, not by Lua
    beat_user = acl.redis("beat")
    for attempt in [lambda: beat_user.get(fence), lambda: beat_user.set(fence, "99"),
                    lambda: beat_user.eval("return redis.call('GET', KEYS[1])", 1, fence),
                    lambda: beat_user.xadd(f"{acl.namespace}:dead-letters", {"x": "1"}),
                    lambda: beat_user.publish("celery.pidbox", "x")]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    line = doctor_user_line(acl, "beat", tmp_path / "artifacts")
    assert line.startswith("ok") and f"{user_name(acl.namespace, 'beat')} (role beat)" in line


def test_serve_as_the_operator_user_runs_revokes_and_replays(acl: Acl, worker: WorkerProcess,
                                                             tmp_path: Path) -> None:
    with GatewayProcess(acl.url("operator"), acl.namespace, tmp_path) as gateway, \
            gateway.client("runtime") as http, gateway.client("operator") as ops:
        first = start(http)  # Lua (the rate limit's bucket, the acquire) as the operator user
        assert http.post(f"/v1/runs/{first['run']}/tasks", json=IMAGE).status_code == 202
        second = start(http)
        reply = http.post(f"/v1/runs/{second['run']}/tasks", json=IMAGE)
        assert reply.status_code == 202, reply.text
        cb = reply.json()["callback_id"]
        # the worker is still drawing the first image: the second task is pending, revoked
        # through Celery's control channel (pub/sub), and its callback ends as a dead letter
        released = http.post(f"/v1/runs/{second['run']}/release",
                             json={"outcome": "failed", "cancel_pending": True})
        assert released.status_code == 200, released.text
        assert released.json()["pending"] == {cb: "image_generate"}
        assert released.json()["cancelled"] is True
        assert [e["kind"] for e in wait_entries(http, first["run"], 2)] == ["prompt", "result"]

        def letter() -> str | None:
            found = ops.get("/v1/dead-letters", params={"session": second["session_key"]})
            assert found.status_code == 200, found.text
            return next((x["id"] for x in found.json()["letters"]
                         if x["callback_id"] == cb), None)

        letter_id = wait_for_value(letter, 60, message=f"the revoked task's dead letter:\n"
                                   f"{worker.log()[-2000:]}")
        current = start(http, second["session_key"])
        replayed = ops.post(f"/v1/dead-letters/{letter_id}/replay",
                            json={"to_current": True, "force": True})
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["run_id"] == current["run_id"]
        assert "NOPERM" not in gateway.log(), gateway.log()
    line = doctor_user_line(acl, "operator", tmp_path / "artifacts")
    assert f"{user_name(acl.namespace, 'operator')} (role operator)" in line
    assert line.startswith("ok"), line
