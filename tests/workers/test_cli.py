"""The operator commands against a real Redis, with dead letters made by real gate scenarios;
through click's runner, and once through a real ``celery`` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from leasegate.broker import Client, FileArtifactStore, Run
from leasegate.testing.redis_server import RedisServer
from leasegate.workers import WorkerConfig, install
from leasegate.workers.cli.dlq import dlq
from leasegate.workers.cli.runs import runs
from tests.support.helpers import wait_until

SECRET = "cli-secret-0123456789abcdef"


@pytest.fixture
def setup(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[
        tuple[Celery, Client, FileArtifactStore]]:
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace,
                          secret=SECRET.encode(), artifact_dir=str(tmp_path / "art"))
    app = install(Celery("cli-test", set_as_current=False), config)
    client = Client(redis_server.client(), namespace, secret=SECRET.encode())
    yield app, client, config.artifact_store()
    client.redis.close()


def invoke(app: Celery, group: Any, args: list[str], input: str | None = None) -> Result:
    ctx = CLIContext(app=app, no_color=True, workdir=None, quiet=False)
    return CliRunner().invoke(group, args, obj=ctx, input=input, catch_exceptions=False)


def orphan(client: Client, store: FileArtifactStore, session_key: str | None = None,
           how: str = "released") -> tuple[Run, str]:
    """A real orphan: a run submits, dies, and its image arrives late through the gate."""
    run = client.start_run(session_key or f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    env = run.envelope("image_generate", {"prompt": "x"})
    if how == "released":
        run.release("failed")
    else:
        client.start_run(run.session_key, prompt="next", ttl=30)  # supersedes it
    ref = store.put(b"\x89PNG fake image " + uuid.uuid4().bytes, "image/png")
    verdict = client.gate.deliver(env, result={"images": 1}, artifacts=[ref])
    assert not verdict.delivered
    return run, verdict.entry_id


def test_ls_shows_reason_and_owning_run(setup: Any) -> None:
    app, client, store = setup
    run, released = orphan(client, store)
    _, superseded = orphan(client, store, how="superseded")
    malformed = client.gate.deliver(os.urandom(64), result={}).entry_id
    out = invoke(app, dlq, ["ls"])
    assert out.exit_code == 0
    source, *lines = out.output.splitlines()
    config = app.leasegate_config
    assert source == f"(redis {config.redis_url}, namespace {config.namespace})"
    assert lines[0].split() == ["ID", "QUARANTINED", "REASON", "KIND", "TOOL", "STATE", "OWNING",
                                "RUN"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert set(by_id) == {released, superseded, malformed}
    assert "run_released" in by_id[released] and run.run_id[:12] in by_id[released]
    assert "ago" in by_id[released] or "just now" in by_id[released]
    assert "superseded" in by_id[superseded] and "malformed" in by_id[malformed]

    only = invoke(app, dlq, ["ls", "--reason", "superseded", "--json"])
    data = json.loads(only.output)
    assert [x["id"] for x in data["letters"]] == [superseded] and data["cursor"] is None
    assert data["letters"][0]["artifacts"][0]["path"].startswith(str(store.root))
    assert json.loads(invoke(app, dlq, ["ls", "--since", "1h", "--json"]).output)["letters"]
    assert invoke(app, dlq, ["ls", "--reason", "nope"]).exit_code == 2
    assert invoke(app, dlq, ["ls", "--since", "soon"]).exit_code == 2


def test_ls_pages_with_a_cursor(setup: Any) -> None:
    app, client, store = setup
    ids = {orphan(client, store, session_key="cron:pager")[1] for _ in range(5)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        args = ["ls", "--limit", "2", "--json"] + (["--cursor", cursor] if cursor else [])
        page = json.loads(invoke(app, dlq, args).output)
        seen += [x["id"] for x in page["letters"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


def test_show_human_and_json(setup: Any) -> None:
    app, client, store = setup
    run, dlq_id = orphan(client, store)
    human = invoke(app, dlq, ["show", dlq_id])
    assert human.exit_code == 0
    assert "run_released" in human.output and run.run_id in human.output
    assert "image:" in human.output and str(store.root) in human.output
    assert "quarantined" in human.output.split("history:")[1]
    data = json.loads(invoke(app, dlq, ["show", dlq_id, "--json"]).output)
    assert (data["reason"], data["run_id"], data["fence"]) == ("run_released", run.run_id, 1)
    assert data["payload"] == {"images": 1} and data["history"][0]["state"] == "quarantined"
    missing = invoke(app, dlq, ["show", "1-0"])
    assert missing.exit_code == 1 and "no dead letter" in missing.output


def test_replay_into_live_run_and_refusals(setup: Any) -> None:
    app, client, store = setup
    run, dlq_id = orphan(client, store)
    live = client.start_run(run.session_key, prompt="again", ttl=30)
    ok = invoke(app, dlq, ["replay", dlq_id, "--run", live.run_id])
    assert ok.exit_code == 0, ok.output
    recovered = live.inbox.entries()[-1]
    assert (recovered.role, recovered.kind) == ("tool", "recovered")
    assert recovered.provenance["dead_letter_id"] == dlq_id
    assert recovered.provenance["original_run_id"] == run.run_id
    again = invoke(app, dlq, ["replay", dlq_id, "--run", live.run_id])
    assert again.exit_code == 1 and "refused" in again.output
    letter = client.dead_letters.get(dlq_id)
    assert letter.state == "redelivered" and "cli" in letter.history[-1]["by"]

    _, other = orphan(client, store)
    foreign = invoke(app, dlq, ["replay", other, "--run", live.run_id])
    assert foreign.exit_code == 1 and "wrong_session" in foreign.output
    live.release("completed")
    _, third = orphan(client, store, session_key=run.session_key)
    dead = invoke(app, dlq, ["replay", third, "--run", live.run_id])
    assert dead.exit_code == 1 and "target_not_alive" in dead.output


def test_discard_asks_unless_yes(setup: Any) -> None:
    app, client, store = setup
    _, dlq_id = orphan(client, store)
    declined = invoke(app, dlq, ["discard", dlq_id], input="n\n")
    assert declined.exit_code == 1 and "Discard" in declined.output
    assert client.dead_letters.get(dlq_id).state == "quarantined"
    dry = invoke(app, dlq, ["discard", dlq_id, "--dry-run"])
    assert dry.exit_code == 0 and "would discard" in dry.output
    agreed = invoke(app, dlq, ["discard", dlq_id], input="y\n")
    assert agreed.exit_code == 0
    letter = client.dead_letters.get(dlq_id)
    assert letter.state == "discarded" and letter.payload is None
    assert "cli" in letter.history[-1]["by"]
    assert invoke(app, dlq, ["discard", dlq_id, "--yes"]).exit_code == 1  # already gone


def test_purge_dry_run_then_yes(setup: Any) -> None:
    app, client, store = setup
    ids = [orphan(client, store)[1] for _ in range(3)]
    orphan(client, store, how="superseded")
    dry = invoke(app, dlq, ["purge", "--reason", "run_released", "--dry-run"])
    assert dry.exit_code == 0 and "would purge 3" in dry.output
    assert invoke(app, dlq, ["purge", "--reason", "run_released", "--older-than", "1h",
                             "--yes"]).output.splitlines()[-1].startswith("nothing to purge")
    done = invoke(app, dlq, ["purge", "--reason", "run_released", "--yes"])
    assert done.exit_code == 0 and "purged 3" in done.output
    assert {client.dead_letters.get(i).state for i in ids} == {"discarded"}
    assert client.dead_letters.count() == 1


def test_drain_exports_and_archives(setup: Any, tmp_path: Path) -> None:
    app, client, store = setup
    ids = [orphan(client, store)[1] for _ in range(4)]
    out = invoke(app, dlq, ["drain", "--to", str(tmp_path / "out"), "--yes"])
    assert out.exit_code == 0 and "drained 4" in out.output
    manifest = [json.loads(x) for x in (tmp_path / "out/manifest.jsonl").read_text()
                .splitlines()]
    assert [m["id"] for m in manifest] == ids  # in quarantine order
    for m in manifest:
        assert (tmp_path / "out" / m["artifacts"][0]["exported"]).read_bytes().startswith(
            b"\x89PNG")
    assert {client.dead_letters.get(i).state for i in ids} == {"archived"}
    again = invoke(app, dlq, ["drain", "--to", str(tmp_path / "out"), "--yes"])
    assert "drained 0" in again.output


def test_stats_json(setup: Any) -> None:
    app, client, store = setup
    orphan(client, store)
    orphan(client, store, how="superseded")
    data = json.loads(invoke(app, dlq, ["stats", "--json"]).output)
    assert data["held"] == 2
    assert data["by_reason"] == {"run_released": 1, "superseded": 1}
    assert data["by_tool"] == {"image_generate": 2}
    assert data["oldest_age_seconds"] >= 0
    human = invoke(app, dlq, ["stats"])
    assert "held: 2" in human.output and "run_released" in human.output


def test_runs_ls_show_audit(setup: Any) -> None:
    app, client, _store = setup
    key = f"cron:{uuid.uuid4().hex[:6]}"
    first = client.start_run(key, prompt="one", ttl=30)
    env = first.envelope("image_generate", {})
    second = client.start_run(key, prompt="two", ttl=30)
    client.gate.deliver(env, result={})  # quarantined: superseded
    delivered = client.gate.deliver(second.envelope("image_generate", {}), result={})
    assert delivered.delivered
    listing = json.loads(invoke(app, runs, ["ls", "--json"]).output)["runs"]
    assert {(r["run_id"], r["state"]) for r in listing} == {(first.run_id, "superseded"),
                                                            (second.run_id, "live")}
    live = json.loads(invoke(app, runs, ["ls", "--state", "live", "--json"]).output)["runs"]
    assert [r["run_id"] for r in live] == [second.run_id]
    human = invoke(app, runs, ["ls"]).output
    assert second.run_id in human and "superseded" in human

    shown = json.loads(invoke(app, runs, ["show", first.run_id, "--json"]).output)
    assert shown["run"]["superseded_by"] == second.run_id
    assert [x["reason"] for x in shown["dead_letters"]] == ["superseded"]
    assert [e["role"] for e in json.loads(invoke(app, runs, ["show", second.run_id,
                                                             "--json"]).output)["inbox"]] \
        == ["user", "tool"]
    assert invoke(app, runs, ["show", "nosuchrun"]).exit_code == 1

    clean = invoke(app, runs, ["audit", "--json"])
    assert clean.exit_code == 0 and json.loads(clean.output)["problems"] == []
    # forge what the gate can never write: a second role=user entry
    client.redis.xadd(client.keys.inbox(key, second.run_id),
                      {"seq": 3, "role": "user", "kind": "prompt", "fence": second.fence})
    dirty = invoke(app, runs, ["audit", "--json"])
    assert dirty.exit_code == 1
    assert json.loads(dirty.output)["problems"][0]["run_id"] == second.run_id


def test_audit_skips_a_run_that_expires_between_scan_and_read(
        setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run record may expire after SCAN found it and before the audit reads it: the audit
    reports it as vanished and goes on, instead of crashing with a traceback."""
    from leasegate.ownership import Registry

    app, client, _store = setup
    gone = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="gone", ttl=30)
    kept = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="kept", ttl=30)
    scan = Registry.runs

    def scan_then_expire(self: Registry, *args: Any, **kwargs: Any) -> Iterator[
            tuple[str, str]]:
        for sk, rid in scan(self, *args, **kwargs):
            if rid == gone.run_id:  # what retention does in that instant, on the real Redis
                self.client.delete(client.keys.run(sk, rid))
            yield sk, rid

    monkeypatch.setattr(Registry, "runs", scan_then_expire)
    out = invoke(app, runs, ["audit", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["problems"] == [] and report["runs_checked"] == 1
    assert report["runs_vanished"] == [{"session_key": gone.session_key,
                                        "run_id": gone.run_id}]
    human = invoke(app, runs, ["audit"])
    assert human.exit_code == 0 and "audited 1 run(s)" in human.output
    assert kept.run_id not in human.output


def celery_env(server: RedisServer, namespace: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LEASEGATE_REDIS_URL": server.url, "LEASEGATE_NAMESPACE": namespace,
            "LEASEGATE_SECRET": SECRET, "LEASEGATE_ARTIFACT_DIR": str(tmp_path / "art")}


def test_through_a_real_celery_process(setup: Any, redis_server: RedisServer,
                                       namespace: str, tmp_path: Path) -> None:
    _, client, store = setup
    run, dlq_id = orphan(client, store)
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers", "dlq",
                          "ls", "--json"], env=celery_env(redis_server, namespace, tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    [letter] = json.loads(out.stdout)["letters"]
    assert (letter["id"], letter["run_id"]) == (dlq_id, run.run_id)
    usage = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers", "dlq",
                            "ls", "--limit", "0"],
                           env=celery_env(redis_server, namespace, tmp_path),
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2


def test_drain_killed_half_way_reruns_cleanly(setup: Any, redis_server: RedisServer,
                                              namespace: str, tmp_path: Path) -> None:
    _, client, store = setup
    ids = [orphan(client, store, session_key="cron:bulk")[1] for _ in range(400)]
    out_dir = tmp_path / "export"
    env = celery_env(redis_server, namespace, tmp_path)
    args = [sys.executable, "-m", "celery", "-A", "leasegate.workers", "dlq", "drain", "--to",
            str(out_dir), "--yes"]
    manifest = out_dir / "manifest.jsonl"
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: manifest.exists() and len(manifest.read_text().splitlines()) >= 20,
               timeout=60, message="the drain to be under way")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.stderr is not None
    first.stderr.close()
    written = len(manifest.read_text().splitlines())
    assert written < 400, "the drain finished before it could be killed"
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    lines = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    assert sorted(m["id"] for m in lines) == sorted(ids)  # every letter once, none twice
    assert {client.dead_letters.get(i).state for i in ids} == {"archived"}


def test_sweep_and_collect_commands(setup: Any, redis_server: RedisServer,
                                    namespace: str) -> None:
    from leasegate.broker import Settings
    from leasegate.workers.cli.ops import leasegate

    app, client, store = setup
    short = Client(client.redis, namespace, secret=SECRET.encode(),
                   settings=Settings(dlq_max_age=0.2))
    _, old = orphan(short, store)
    wait_until(lambda: short.server_time_ms() / 1000 > short.dead_letters.get(old)
               .quarantined_at + 0.3, message="the letter to pass its max age")
    # the CLI's client uses default retention: sweep through a short-retention app instead
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace,
                          secret=SECRET.encode(), artifact_dir=str(store.root))
    assert invoke(app, dlq, ["sweep"]).exit_code == 0
    short.dead_letters.sweep()
    assert client.dead_letters.get(old).state == "expired"

    stray = store.put(b"nobody points at me", "image/png")
    os.utime(store.locate(stray.digest), (1, 1))  # stored long ago
    dry = invoke(app, leasegate, ["collect-artifacts", "--dry-run"])
    assert dry.exit_code == 0 and "unreferenced" in dry.output
    assert store.exists(stray.digest)
    done = invoke(app, leasegate, ["collect-artifacts", "--grace", "1h"])
    assert done.exit_code == 0 and "removed" in done.output
    assert not store.exists(stray.digest)
    assert config.artifact_dir == str(store.root)


def test_redis_away_is_one_line_and_exit_1(tmp_path: Path) -> None:
    from leasegate.testing.redis_server import free_port

    config = WorkerConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0", namespace="x",
                          secret=SECRET.encode(), artifact_dir=str(tmp_path))
    app = install(Celery("away", set_as_current=False), config)
    out = invoke(app, dlq, ["ls"])
    assert out.exit_code == 1 and out.output.startswith("Error: Redis is unavailable")
    assert "Traceback" not in out.output


def test_drain_rejects_an_unknown_reason(setup: Any, tmp_path: Path) -> None:
    app, _, _ = setup
    out = invoke(app, dlq, ["drain", "--to", str(tmp_path / "x"), "--reason", "bogus",
                            "--yes"])
    assert out.exit_code == 2 and "--reason" in out.output


def test_a_line_cut_short_by_a_crash_is_trimmed(tmp_path: Path) -> None:
    from leasegate.workers.cli.dlq_export import _manifest_ids

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(b'{"id": "1-0"}\n{"id": "2-0"}\n{"id": "3-')
    assert _manifest_ids(manifest) == {"1-0", "2-0"}
    assert manifest.read_bytes() == b'{"id": "1-0"}\n{"id": "2-0"}\n'
