"""Real ``celery worker`` processes for end-to-end tests, and a wait on their log lines."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from leasegate.testing.redis_server import terminate

from .helpers import wait_for_value

SECRET = "e2e-secret-0123456789abcdef"


class WorkerProcess:
    """``celery -A leasegate.workers worker`` (prefork) as a child process with its own log."""

    def __init__(self, redis_url: str, namespace: str, workdir: Path, *, name: str = "w1",
                 concurrency: int = 1, queues: str = "media,celery", events: bool = False,
                 **env_overrides: str) -> None:
        self.log_path = workdir / f"{name}.log"
        self.artifact_dir = workdir / "artifacts"
        self.env = {
            **os.environ,
            "LEASEGATE_REDIS_URL": redis_url,
            "LEASEGATE_SECRET": SECRET,
            "LEASEGATE_NAMESPACE": namespace,
            "LEASEGATE_ARTIFACT_DIR": str(self.artifact_dir),
            "LEASEGATE_CHECK_INTERVAL": "0.2",
            **env_overrides,
        }
        self.args = [sys.executable, "-m", "celery", "-A", "leasegate.workers", "worker",
                     "-P", "prefork", "-c", str(concurrency), "-Q", queues,
                     "-n", f"{name}@%h", "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle", "--without-heartbeat", *(["-E"] if events else [])]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.args, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self.wait_log(" ready.", timeout)
        except BaseException:
            self.stop()  # a worker that never came up leaves no process and no open file
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """Poll the worker's log until ``text`` appears ``count`` times (or the worker dies)."""

        def found() -> str | None:
            log = self.log()
            if log.count(text) >= count:
                return log
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{log[-3000:]}")
            return None

        return wait_for_value(found, timeout, 0.05, f"{text!r} x{count} in the worker log",
                              lambda: "\n" + self.log()[-3000:])

    def children(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                             text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after ``timeout``; no child is left behind."""
        if self.process and self.process.poll() is None:
            children = self.children()
            terminate(self.process, timeout)
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if hasattr(self, "_log"):
            self._log.close()
