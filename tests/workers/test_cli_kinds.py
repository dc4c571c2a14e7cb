"""Issue 12, the CLI second pass: ``kind`` and ``state`` everywhere (a KIND column, --kind and
--state filters served by their own indexes, a kind=error letter replayed only with --force),
and a drain that never archives a letter whose image it could not export. Real Redis, real
gate scenarios, click's runner over the real commands."""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from leasegate.broker import Client, FileArtifactStore, ReplayRefused
from leasegate.ownership import shard_of
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import WorkerConfig, install
from leasegate.workers.cli.dlq import dlq

SECRET = b"cli-kinds-secret-0123456789abcdef"


@pytest.fixture
def setup(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[
        tuple[Celery, Client, FileArtifactStore]]:
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace, secret=SECRET,
                          artifact_dir=str(tmp_path / "art"))
    app = install(Celery("cli-kinds", set_as_current=False), config)
    client = Client(redis_server.client(), namespace, secret=SECRET)
    yield app, client, config.artifact_store()
    client.redis.close()


def invoke(app: Celery, args: list[str], input: str | None = None) -> Result:
    ctx = CLIContext(app=app, no_color=True, workdir=None, quiet=False)
    return CliRunner().invoke(dlq, args, obj=ctx, input=input, catch_exceptions=False)


def late(client: Client, store: FileArtifactStore | None, kind: str = "result",
         session_key: str | None = None) -> str:
    """A real dead letter: the run is released before its result (or error) arrives."""
    run = client.start_run(session_key or f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    env = run.envelope("image_generate", {"prompt": "x"})
    run.release("failed")
    refs = [store.put(b"\x89PNG " + uuid.uuid4().bytes, "image/png")] if store else []
    if kind == "error":
        verdict = client.gate.deliver(env, {"error": "cancelled"}, kind="error")
    else:
        verdict = client.gate.deliver(env, {"images": 1}, artifacts=refs)
    assert not verdict.delivered
    return verdict.entry_id


def ids(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [x["id"] for x in json.loads(result.output)["letters"]]


def test_kind_column_and_kind_state_filters(setup: Any) -> None:
    app, client, store = setup
    results = [late(client, store) for _ in range(3)]
    errors = [late(client, None, "error") for _ in range(2)]
    out = invoke(app, ["ls"])
    header = out.output.splitlines()[1].split()
    assert header[:5] == ["ID", "QUARANTINED", "REASON", "KIND", "TOOL"]
    rows = {line.split()[0]: line.split() for line in out.output.splitlines()[2:]}
    assert {rows[i][header.index("KIND") + 1] for i in results} == {"result"}  # "3 s ago"
    assert sorted(ids(invoke(app, ["ls", "--kind", "error", "--json"]))) == sorted(errors)
    assert sorted(ids(invoke(app, ["ls", "--kind", "result", "--state", "quarantined",
                                   "--json"]))) == sorted(results)
    bad = invoke(app, ["ls", "--kind", "image"])
    assert bad.exit_code == 2 and "'result', 'error'" in bad.output
    assert invoke(app, ["ls", "--state", "expired"]).exit_code == 2  # tombstones: not listed

    stats = json.loads(invoke(app, ["stats", "--kind", "error", "--json"]).output)
    assert stats["held"] == 2 and stats["by_kind"] == {"error": 2}
    assert stats["by_state"]["quarantined"] == 2 and stats["oldest_age_seconds"] >= 0
    both = json.loads(invoke(app, ["stats", "--kind", "result", "--state", "quarantined",
                                   "--json"]).output)
    assert both["held"] == 3 and both["by_reason"] == {"run_released": 3}
    human = invoke(app, ["stats", "--kind", "error"]).output
    assert "held kind=error: 2" in human and "namespace" in human.splitlines()[0]

    purged = invoke(app, ["purge", "--kind", "error", "--yes"])
    assert purged.exit_code == 0 and "purged 2" in purged.output
    assert {client.dead_letters.get(i).state for i in errors} == {"discarded"}
    assert {client.dead_letters.get(i).state for i in results} == {"quarantined"}
    assert ids(invoke(app, ["ls", "--kind", "error", "--json"])) == []


def test_state_index_follows_every_state_change(setup: Any) -> None:
    app, client, store = setup
    key = f"cron:{uuid.uuid4().hex[:6]}"
    first, second, third = (late(client, store, session_key=key) for _ in range(3))
    target = client.start_run(key, prompt="again", ttl=30)
    client.dead_letters.replay(first, to=target)
    client.dead_letters.discard(second)
    state_ids = {state: ids(invoke(app, ["ls", "--state", state, "--json"]))
                 for state in ("quarantined", "redelivered", "archived")}
    assert state_ids == {"quarantined": [third], "redelivered": [first], "archived": []}
    index = functools.partial(client.keys.dead_letter_index, shard_of(key))
    assert client.redis.zcard(index("state", "redelivered")) == 1  # an index, not a scan
    assert client.redis.zscore(index("state", "quarantined"), second) is None


def test_replay_of_an_error_letter_needs_force(setup: Any) -> None:
    app, client, _ = setup
    key = f"cron:{uuid.uuid4().hex[:6]}"
    error = late(client, None, "error", session_key=key)
    target = client.start_run(key, prompt="again", ttl=30)
    refused = invoke(app, ["replay", error, "--run", target.run_id])
    assert refused.exit_code == 1 and "--force" in refused.output
    assert "error" in refused.output
    assert client.dead_letters.get(error).state == "quarantined"
    assert [e.kind for e in target.inbox.entries()] == ["prompt"]  # nothing handed over
    with pytest.raises(ReplayRefused) as api:  # the API refuses too: the console inherits it
        client.dead_letters.replay(error, to=target)
    assert api.value.reason == "error_kind"
    done = invoke(app, ["replay", error, "--run", target.run_id, "--force"])
    assert done.exit_code == 0 and "replayed" in done.output
    assert client.dead_letters.get(error).state == "redelivered"


def test_drain_keeps_quarantined_the_letters_whose_image_is_missing(setup: Any,
                                                                     tmp_path: Path) -> None:
    app, client, store = setup
    whole = late(client, store)
    broken = late(client, store)
    digest = client.dead_letters.get(broken).artifacts[0].digest
    kept_bytes = Path(store.locate(digest)).read_bytes()
    Path(store.locate(digest)).unlink()
    out = tmp_path / "export"
    first = invoke(app, ["drain", "--to", str(out), "--yes"])
    assert first.exit_code == 1
    assert broken in first.output and "kept quarantined" in first.output
    assert client.dead_letters.get(whole).state == "archived"
    assert client.dead_letters.get(broken).state == "quarantined"  # its image not lost
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [x["id"] for x in manifest] == [whole]

    store.put(kept_bytes, "image/png")  # the operator brings the image back
    second = invoke(app, ["drain", "--to", str(out), "--yes"])
    assert second.exit_code == 0 and "drained 1" in second.output
    assert client.dead_letters.get(broken).state == "archived"
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [x["id"] for x in manifest] == [whole, broken]
    assert all((out / ref["exported"]).is_file() for x in manifest for ref in x["artifacts"])


def test_no_dlq_command_creates_an_artifact_dir_and_an_unknown_store_is_named(
        redis_server: RedisServer, namespace: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEASEGATE_ARTIFACT_DIR", raising=False)
    writer = WorkerConfig(redis_url=redis_server.url, namespace=namespace, secret=SECRET,
                          artifact_dir=str(tmp_path / "workers-art"))
    client = Client(redis_server.client(), namespace, secret=SECRET)
    letter = late(client, writer.artifact_store())
    # the operator's shell: no LEASEGATE_ARTIFACT_DIR, so the default ./leasegate-artifacts
    app = install(Celery("cli-nodir", set_as_current=False),
                  WorkerConfig(redis_url=redis_server.url, namespace=namespace, secret=SECRET))
    listed = invoke(app, ["ls"])
    assert "artifact store unknown" in listed.output
    assert "LEASEGATE_ARTIFACT_DIR is unset" in listed.output
    shown = invoke(app, ["show", letter])
    assert "(not in the store)" in shown.output and "artifact store unknown" in shown.output
    drained = invoke(app, ["drain", "--to", str(tmp_path / "out"), "--yes"])
    assert drained.exit_code == 1 and letter in drained.output
    assert client.dead_letters.get(letter).state == "quarantined"
    assert not (tmp_path / "leasegate-artifacts").exists()  # nothing made in the cwd

    empty = tmp_path / "empty-art"
    empty.mkdir()
    app2 = install(Celery("cli-empty", set_as_current=False),
                   WorkerConfig(redis_url=redis_server.url, namespace=namespace,
                                secret=SECRET, artifact_dir=str(empty)))
    assert "is empty" in invoke(app2, ["show", letter]).output
    client.redis.close()


def test_show_prints_human_times_and_source(setup: Any) -> None:
    app, client, store = setup
    letter = late(client, store)
    out = invoke(app, ["show", letter]).output
    first, *rest = out.splitlines()
    assert first == (f"(redis {app.leasegate_config.redis_url}, "
                     f"namespace {app.leasegate_config.namespace})")
    quarantined = next(line for line in rest if line.startswith("quarantined:"))
    at = datetime.fromtimestamp(client.dead_letters.get(letter).quarantined_at or 0, UTC)
    assert re.fullmatch(rf"quarantined: +{at:%Y-%m-%dT%H:%M:%S}Z \((just now|\d+ s ago)\)",
                        quarantined), quarantined


def test_reindex_indexes_letters_from_before_the_kind_and_state_indexes(setup: Any) -> None:
    app, client, store = setup
    result, error = late(client, store), late(client, None, "error")
    index = client.keys.dead_letter_index
    # as a version without these indexes left them: the letters, but no kind/state entries
    for shard in client.keys.shards:
        client.redis.delete(index(shard, "kind", "result"), index(shard, "kind", "error"),
                            index(shard, "state", "quarantined"))
    assert ids(invoke(app, ["ls", "--kind", "error", "--json"])) == []
    out = invoke(app, ["reindex"])
    assert out.exit_code == 0 and "2 held dead letter(s) indexed" in out.output
    assert ids(invoke(app, ["ls", "--kind", "error", "--json"])) == [error]
    assert sorted(ids(invoke(app, ["ls", "--state", "quarantined", "--json"]))) == sorted(
        [result, error])
    assert invoke(app, ["reindex"]).exit_code == 0  # again: nothing changes
    assert sum(client.redis.zcard(index(shard, "kind", "result"))
               for shard in client.keys.shards) == 1


def test_reason_kind_and_state_complete_in_the_shell(setup: Any) -> None:
    app, _, _ = setup
    command = dlq.commands["ls"]
    ctx = click.Context(command)
    by_name = {p.name: p for p in command.params}
    complete = {name: [c.value for c in by_name[name].type.shell_complete(ctx, by_name[name],
                                                                          prefix)]
                for name, prefix in (("reason", "lease"), ("kind", "e"), ("state", "re"))}
    assert complete == {"reason": ["lease_expired"], "kind": ["error"],
                        "state": ["redelivered"]}
    bad = invoke(app, ["purge", "--reason", "lost"])
    assert bad.exit_code == 2 and "lease_expired" in bad.output
