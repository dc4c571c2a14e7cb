"""``celery dlq replay --session S --to-current``: the bulk path of replay against a real
Redis, letters quarantined by the real gate. Each letter reaches the live run once; the
refused ones stay dead letters and are named; --dry-run counts and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from leasegate.broker import Client, Run
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import WorkerConfig, install
from leasegate.workers.cli.dlq import dlq

SECRET = "cli-secret-0123456789abcdef"


@pytest.fixture
def setup(redis_server: RedisServer, namespace: str,
          tmp_path: Path) -> Iterator[tuple[Celery, Client]]:
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace,
                          secret=SECRET.encode(), artifact_dir=str(tmp_path / "art"))
    app = install(Celery("cli-redrive", set_as_current=False), config)
    client = Client(redis_server.client(), namespace, secret=SECRET.encode())
    yield app, client
    client.redis.close()


def invoke(app: Celery, args: list[str]) -> Result:
    ctx = CLIContext(app=app, no_color=True, workdir=None, quiet=False)
    return CliRunner().invoke(dlq, ["replay", *args], obj=ctx, catch_exceptions=False)


def orphans(client: Client, key: str, n: int, kind: str = "result") -> tuple[list[str], Run]:
    old = client.start_run(key, prompt="p", ttl=30)
    envs = [old.envelope("image_generate", {"i": i}) for i in range(n)]
    live = client.start_run(key, prompt="again", ttl=30)
    body = {"error": "cancelled"} if kind == "error" else {"images": 1}
    return [client.gate.deliver(e, result=body, kind=kind).entry_id  # type: ignore[arg-type]
            for e in envs], live


def recovered(run: Run) -> list[str]:
    return [str(e.provenance["dead_letter_id"]) for e in run.inbox.entries()
            if e.kind == "recovered"]


def test_bulk_replay_to_current_moves_each_letter_once(setup: Any) -> None:
    app, client = setup
    key = f"cron:{uuid.uuid4().hex[:6]}"
    ids, _ = orphans(client, key, 5)
    errors, live = orphans(client, key, 2, kind="error")
    counted = invoke(app, ["--session", key, "--to-current", "--dry-run"])
    assert counted.exit_code == 0, counted.output
    assert "would replay 5 quarantined letter(s)" in counted.output
    assert "2 kind=error letter(s) left alone" in counted.output and recovered(live) == []
    done = invoke(app, ["--session", key, "--to-current", "--rate", "1000"])
    assert done.exit_code == 0, done.output
    assert "replayed 5 of 5 letter(s) into the current run of its session" in done.output
    assert sorted(recovered(live)) == sorted(ids)
    again = invoke(app, ["--session", key, "--to-current"])
    assert again.exit_code == 0 and "nothing to replay" in again.output
    assert sorted(recovered(live)) == sorted(ids)
    assert {client.dead_letters.get(e).state for e in errors} == {"quarantined"}


def test_bulk_replay_filters_by_kind_and_reason(setup: Any) -> None:
    app, client = setup
    key = f"cron:{uuid.uuid4().hex[:6]}"
    orphans(client, key, 2)
    _, live = orphans(client, key, 1)
    only = invoke(app, ["--session", key, "--to-current", "--kind", "result",
                        "--reason", "run_released"])
    assert only.exit_code == 0 and "nothing to replay" in only.output
    assert recovered(live) == []


def test_refused_letters_are_named_and_exit_1(setup: Any) -> None:
    app, client = setup
    key = f"cron:{uuid.uuid4().hex[:6]}"
    ids, live = orphans(client, key, 3)
    live.release("completed")
    out = invoke(app, ["--session", key, "--to-current"])
    assert out.exit_code == 1
    assert "replayed 0 of 3" in out.output
    assert "3 letter(s) refused and still dead letters (no_current_run: 3)" in out.output
    assert {client.dead_letters.get(i).state for i in ids} == {"quarantined"}


def test_bulk_usage_errors_name_the_option(setup: Any) -> None:
    app, _ = setup
    cases = ((["--to-current"], "--session"), (["--session", "cron:x"], "--to-current"),
             (["--session", "cron:x", "--to-current", "--reason", "late"], "--reason"),
             (["--session", "cron:x", "--to-current", "--rate", "0"], "--rate"),
             (["--session", "cron:x", "--to-current", "--since", "soon"], "--since"),
             (["1-0", "--session", "cron:x", "--to-current"], "DLQ_ID"),
             (["1-0"], "--run"))
    for args, named in cases:
        out = invoke(app, args)
        assert out.exit_code == 2, (args, out.output)
        assert named in out.output, (args, out.output)
