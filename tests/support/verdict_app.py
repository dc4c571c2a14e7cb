"""A Celery app whose owned tasks fail in the ways the gate cannot store as they are, for the
worker-side verdict tests (``celery -A tests.support.verdict_app worker -Q verdicts``).

- ``verdicts.echo``: returns its arguments (a well-behaved tool, to re-send envelopes at);
- ``verdicts.too_large``: returns ``size`` bytes, over the 256 KiB result limit;
- ``verdicts.unencodable``: returns a ``datetime``, which msgpack cannot encode;
- ``verdicts.huge_error``: raises an exception whose message is ``size`` characters;
- ``verdicts.bad_file``: returns a "file" the artifact store cannot write (a str, not bytes),
  so the failure escapes the work's error handling and only the fallback catches it.

Configuration comes from the ``LEASEGATE_*`` environment, as the bundled app's.
"""

from __future__ import annotations

import datetime
from typing import Any

from celery import Celery

from leasegate.workers import OwnedContext, OwnedResult, install, owned_task
from leasegate.workers.config import WorkerConfig

QUEUE = "verdicts"
TASKS = {tool: (f"verdicts.{tool}", QUEUE)
         for tool in ("echo", "too_large", "unencodable", "huge_error", "bad_file")}

config = WorkerConfig.from_env()
app = Celery("verdict-tests", broker=config.broker_url, set_as_current=False)
app.conf.task_default_queue = QUEUE
install(app, config)


@owned_task(app, name="verdicts.echo")
def echo(ctx: OwnedContext, **kwargs: Any) -> OwnedResult:
    return OwnedResult(payload=kwargs)


@owned_task(app, name="verdicts.too_large")
def too_large(ctx: OwnedContext, size: int) -> OwnedResult:
    return OwnedResult(payload={"blob": b"x" * size})


@owned_task(app, name="verdicts.unencodable")
def unencodable(ctx: OwnedContext) -> OwnedResult:
    return OwnedResult(payload={"when": datetime.datetime(2026, 1, 1)})


@owned_task(app, name="verdicts.huge_error")
def huge_error(ctx: OwnedContext, size: int) -> OwnedResult:
    raise RuntimeError("e" * size)


@owned_task(app, name="verdicts.bad_file")
def bad_file(ctx: OwnedContext) -> OwnedResult:
    return OwnedResult(payload={}, files=[("not bytes", "image/png")])  # type: ignore[list-item]
