"""``leasegate demo`` with the embedded Redis, as a newcomer runs it: its story, its images,
and no process left behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains ``text``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for part in ("cmdline", "environ"):
            try:
                if text.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return found


def test_demo_tells_the_86490_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    leasegate = shutil.which("leasegate", path=str(Path(sys.executable).parent))
    assert leasegate, "the leasegate console script is installed with the package"
    out = subprocess.run([leasegate, "demo", "--out", str(tmp_path / "demo")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "embedded redis-server" in text
    quarantined = [line for line in text.splitlines() if "QUARANTINED " in line and "+" in line]
    assert len(quarantined) == 1 and "run 1" in quarantined[0]
    assert re.search(r"QUARANTINED\s+lease_expired", quarantined[0])
    assert re.search(r"run 2 .*DELIVERED", text)
    assert "1  role=user kind=prompt  Draw today's header" in text
    assert "run 2 entry 1 is its prompt: True" in text
    # the dlq listing the operator would see names the reason and the owning run
    listing = text.split("$ celery -A leasegate.workers dlq ls")[1]
    assert "lease_expired" in listing and "cron:daily-header" in listing
    for name in ("run2-delivered.png", "run1-quarantined.png"):
        with Image.open(tmp_path / "demo" / name) as image:
            image.verify()
            assert image.format == "PNG"
    namespace = re.search(r"namespace: (\S+)", text)
    socket = re.search(r"embedded redis-server \S+ on (\S+)", text)
    assert namespace and socket
    assert processes_mentioning(f"LEASEGATE_NAMESPACE={namespace.group(1)}") == []
    assert processes_mentioning(socket.group(1)) == []


def demo_command(out: Path) -> list[str]:
    leasegate = shutil.which("leasegate", path=str(Path(sys.executable).parent))
    assert leasegate
    return [leasegate, "demo", "--out", str(out)]


def test_demo_runs_against_a_given_redis(redis_server: object, tmp_path: Path) -> None:
    from leasegate.testing.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    env["LEASEGATE_REDIS_URL"] = redis_server.url
    out = subprocess.run(demo_command(tmp_path / "demo"), env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"redis: {redis_server.url}" in out.stdout
    assert "embedded" not in out.stdout
    assert re.search(r"QUARANTINED\s+lease_expired", out.stdout)


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEGATE_")}
    demo = subprocess.Popen(demo_command(tmp_path / "demo"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # a blocking read: the demo's own progress lines
        seen.append(line)
        if "celery beat started" in line:
            break
    text = "".join(seen)
    namespace = re.search(r"namespace: (\S+)", text)
    socket = re.search(r"embedded redis-server \S+ on (\S+)", text)
    assert namespace and socket, text
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, text + rest
    assert "interrupted" in rest
    assert processes_mentioning(f"LEASEGATE_NAMESPACE={namespace.group(1)}") == []
    assert processes_mentioning(socket.group(1)) == []
