"""The README's examples run as written (against the test's own Redis and worker)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess

README = (Path(__file__).parents[2] / "README.md").read_text()


def block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.e2e
def test_runtime_example_runs(tmp_path: Path) -> None:
    code = block_after("## A runtime, in fifteen lines")
    assert len(code.strip().splitlines()) <= 15
    namespace = f"readme{uuid.uuid4().hex[:6]}"
    with RedisServer() as server:
        worker = WorkerProcess(server.url, namespace, tmp_path).start()
        try:
            code = code.replace('"redis://127.0.0.1:6379/0"', repr(server.url))
            code = code.replace('secret=b"the deployment secret (16+ bytes)"',
                                f"secret={SECRET.encode()!r}, namespace={namespace!r}")
            printed: list[object] = []
            exec(compile(code, "README.md", "exec"),
                 {"print": lambda *args: printed.extend(args)})
            payload, artifacts = printed
            assert payload["images"] and artifacts  # type: ignore[index]
        finally:
            worker.stop()


def test_celery_app_example_registers_an_owned_task() -> None:
    code = block_after("## Make an existing Celery app leasegate-aware")
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)
    app = scope["app"]
    task = app.tasks["myapp.transcribe"]  # type: ignore[attr-defined]
    from leasegate.workers import OwnedTask

    assert isinstance(task, OwnedTask) and task.acks_late and task.serializer == "msgpack"
