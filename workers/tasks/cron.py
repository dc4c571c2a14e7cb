"""Cron jobs: specs that become Celery beat entries; every tick starts a fresh run.

A tick acquires a new run of the job's session key (new run id, larger fence), writes the
job's prompt as its inbox entry 1, and hands the run to the job's runtime callable. An isolated
job supersedes a previous run still live; a non-isolated one skips the tick while one is.
Works with the default beat scheduler and with celery-redbeat, which both read
``app.conf.beat_schedule``.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab

from ...broker import Run
from ...ownership import LeaseHeld, check_seconds, check_session_key

log = logging.getLogger("leasegate.workers")
TICK_TASK = "leasegate.cron_tick"


@dataclass(frozen=True)
class CronJob:
    """``schedule``: seconds between ticks, or a crontab string 'm h dom mon dow'.
    ``runtime``: 'package.module:callable', called with the new Run."""

    name: str
    schedule: float | str
    session_key: str
    prompt: str
    runtime: str
    isolated: bool = True
    ttl: float = 60.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"name must be letters, digits, '-' or '_', got {self.name!r}")
        check_session_key(self.session_key)
        if ":" not in self.runtime:
            raise ValueError(f"runtime must be 'module:callable', got {self.runtime!r}")
        if isinstance(self.schedule, str):
            if len(self.schedule.split()) != 5:
                raise ValueError(f"schedule must be seconds or 5 crontab fields, "
                                 f"got {self.schedule!r}")
        else:
            check_seconds("schedule", self.schedule)
        check_seconds("ttl", self.ttl)

    def celery_schedule(self) -> Any:
        if isinstance(self.schedule, str):
            minute, hour, day_of_month, month, day_of_week = self.schedule.split()
            return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                           month_of_year=month, day_of_week=day_of_week)
        return timedelta(seconds=self.schedule)


def load_jobs(path: str) -> list[CronJob]:
    """Jobs from a JSON file: a list of objects with CronJob's fields."""
    with open(path) as f:
        specs = json.load(f)
    if not isinstance(specs, list):
        raise ValueError(f"{path}: expected a JSON list of job objects")
    return [CronJob(**spec) for spec in specs]


def beat_schedule(jobs: Iterable[CronJob]) -> dict[str, dict[str, Any]]:
    """Beat entries (one per job) that run the tick task with the job's spec."""
    return {
        f"leasegate:{job.name}": {
            "task": TICK_TASK,
            "schedule": job.celery_schedule(),
            "kwargs": {"job": asdict(job)},
        }
        for job in jobs
    }


def resolve(path: str) -> Callable[[Run], Any]:
    module, _, attr = path.partition(":")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"runtime {path} is not callable")
    return target


def tick(client: Any, job: Mapping[str, Any]) -> str | None:
    """Start the job's next run and hand it to its runtime; the run id, or None if skipped."""
    spec = CronJob(**job)
    try:
        run = client.start_run(spec.session_key, prompt=spec.prompt, ttl=spec.ttl,
                               policy="supersede" if spec.isolated else "exclusive")
    except LeaseHeld as held:
        log.info("cron %s: skipped, run %s still holds %s", spec.name, held.holder_run_id,
                 spec.session_key)
        return None
    log.info("cron %s: started run %s (fence %d)", spec.name, run.run_id, run.fence)
    resolve(spec.runtime)(run)
    return str(run.run_id)


def install_cron(app: Celery, jobs: Iterable[CronJob]) -> None:
    """Add the jobs' beat entries to ``app`` (install(app) registers the tick task)."""
    schedule = dict(app.conf.beat_schedule or {})
    schedule.update(beat_schedule(jobs))
    app.conf.beat_schedule = schedule
