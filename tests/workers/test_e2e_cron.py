"""Cron jobs end to end: a real ``celery beat`` (default scheduler and redbeat) ticking a job
every second into a real worker; every tick is a fresh isolated run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from leasegate.broker import Client
from leasegate.ownership import RunState
from leasegate.testing.redis_server import RedisServer
from leasegate.workers.tasks.cron import CronJob, beat_schedule
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until

pytestmark = pytest.mark.e2e
SUPPORT = str(Path(__file__).parents[1] / "support")


def test_job_specs_become_beat_entries() -> None:
    jobs = [CronJob("digest", 30, "cron:digest", "Draw", "pkg.mod:fn"),
            CronJob("nightly", "0 3 * * *", "cron:nightly", "Night", "pkg.mod:fn",
                    isolated=False)]
    entries = beat_schedule(jobs)
    assert set(entries) == {"leasegate:digest", "leasegate:nightly"}
    assert entries["leasegate:digest"]["task"] == "leasegate.cron_tick"
    assert entries["leasegate:digest"]["schedule"].total_seconds() == 30
    assert entries["leasegate:nightly"]["schedule"].hour == {3}
    assert entries["leasegate:nightly"]["kwargs"]["job"]["isolated"] is False
    for bad in ({"schedule": 0}, {"schedule": "* *"}, {"session_key": ""},
                {"runtime": "nocolon"}, {"name": "bad name"}):
        spec = {"name": "x", "schedule": 1, "session_key": "k", "prompt": "p",
                "runtime": "m:f", **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            CronJob(**spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheduler", ["default", "redbeat"])
def test_beat_ticks_start_fresh_isolated_runs(scheduler: str, tmp_path: Path) -> None:
    namespace = f"cron{uuid.uuid4().hex[:6]}"
    key = f"cron:header-{uuid.uuid4().hex[:6]}"
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"name": "header", "schedule": 1, "session_key": key,
                                 "prompt": "Draw today's header",
                                 "runtime": "cron_runtime:draw_header", "ttl": 30}]))
    with RedisServer() as server:
        env = {"LEASEGATE_CRON_FILE": str(jobs),
               "PYTHONPATH": os.pathsep.join(filter(None, [SUPPORT,
                                                           os.environ.get("PYTHONPATH")]))}
        worker = WorkerProcess(server.url, namespace, tmp_path, **env).start()
        beat_args = [sys.executable, "-m", "celery", "-A", "leasegate.workers", "beat",
                     "--loglevel", "INFO", "-s", str(tmp_path / "beat-schedule")]
        if scheduler == "redbeat":
            beat_args += ["-S", "redbeat.RedBeatScheduler"]
        with open(tmp_path / "beat.log", "wb") as beat_log:
            beat = subprocess.Popen(beat_args, env=worker.env, stdout=beat_log,
                                    stderr=subprocess.STDOUT)
            client = Client.from_url(server.url, namespace, secret=SECRET.encode())
            fence_key = client.keys.fence(key)
            try:
                wait_until(lambda: int(client.redis.get(fence_key) or 0) >= 3, timeout=30,
                           message="three cron ticks")
            finally:
                beat.terminate()
                beat.wait(20)
                # the ticks beat sent before it stopped still run; let them land
        fence = int(client.redis.get(fence_key) or 0)
        runs = sorted((client.attach(key, k.decode().rsplit(":", 1)[1])
                       for k in client.redis.scan_iter(client.keys.run_prefix(key) + "*")
                       if k.count(b":") == client.keys.run_prefix(key).count(":")),
                      key=lambda r: r.fence)
        try:
            assert [r.fence for r in runs] == list(range(1, fence + 1))
            assert len({r.run_id for r in runs}) == fence
            for run in runs:
                first = run.inbox.entries()[0]
                assert (first.seq, first.role, first.payload) == (1, "user",
                                                                  "Draw today's header")
            for older in runs[:-1]:
                assert older.status().state is RunState.SUPERSEDED
            newest = runs[-1]
            wait_until(lambda: len(newest.inbox.entries()) == 2 or
                       newest.status().state is not RunState.LIVE, timeout=30,
                       message="the newest run's image")
            for run in runs:
                entries = run.inbox.entries()
                assert all(e.provenance["fence"] == run.fence for e in entries)
        finally:
            worker.stop()
