"""What every figure needs: real worker processes, polling with a deadline, Redis memory
readings, pipelined Lua calls, and the machine's description."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from leasegate.ownership.scripts import Scripts

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef"


def wait_until(predicate: Callable[[], object], timeout: float, message: str,
               interval: float = 0.005) -> None:
    """Poll ``predicate`` until true; RuntimeError after ``timeout`` s of monotonic time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)  # polling pace; the predicate decides


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def memory_usage(client: redis.Redis, keys: Sequence[str]) -> int:
    """Exact (SAMPLES 0) MEMORY USAGE summed over ``keys``; missing keys count 0."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
    return sum(int(n or 0) for n in pipe.execute())


def count_keys(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=1000))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class Pipelined:
    """Stand-in for a ``Scripts`` object that queues each call on a pipeline and answers with
    a fixed reply, so the library's own code builds the KEYS and ARGV of many calls sent in
    one round trip. ``flush()`` sends them and checks every real reply."""

    def __init__(self, scripts: Scripts, client: redis.Redis, reply: list[Any],
                 check: Callable[[Any], bool], batch: int = 1000) -> None:
        self.scripts = scripts
        self.pipe = client.pipeline(transaction=False)
        self.reply = reply
        self.check = check
        self.batch = batch
        self.queued = 0

    def bind(self, name: str, constants: dict[str, int]) -> str:
        return self.scripts.bind(name, constants)

    def __call__(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        self.scripts(name, keys, args, client=self.pipe)
        self.queued += 1
        if self.queued >= self.batch:
            self.flush()
        return self.reply

    def flush(self) -> None:
        if not self.queued:
            return
        replies = self.pipe.execute()
        bad = [r for r in replies if not self.check(r)]
        if bad:
            raise RuntimeError(f"{len(bad)} pipelined script calls failed: {bad[:3]}")
        self.queued = 0


KILL_MARK = "--- leasegate benchmarks: this worker was SIGKILLed here ---\n"


class Worker:
    """A real ``celery worker`` child process (prefork) with its own log file."""

    def __init__(self, app: str, redis_url: str, namespace: str, workdir: Path, *,
                 name: str, queues: str, concurrency: int = 1, loglevel: str = "WARNING",
                 **env: str) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "LEASEGATE_REDIS_URL": redis_url,
            "LEASEGATE_SECRET": SECRET,
            "LEASEGATE_NAMESPACE": namespace,
            "LEASEGATE_ARTIFACT_DIR": str(workdir / "artifacts"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])),
            **env,
        }
        self.args = [sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork",
                     "-c", str(concurrency), "-Q", queues, "-n", f"{name}@%h",
                     "--loglevel", loglevel, "--without-gossip", "--without-mingle",
                     "--without-heartbeat"]
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@{platform.node()}"

    def start(self) -> Worker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 60.0, count: int = 1) -> None:
        def seen() -> bool:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
            return self.log().count(text) >= count
        wait_until(seen, timeout, f"{text!r} in the log of {self.name}", interval=0.05)

    def children(self) -> list[int]:
        if not self.alive():
            return []
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True,
                             text=True, check=False).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once (a crashed machine)."""
        if self.process is None:
            return
        pids = [self.process.pid, *self.children()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self._close_log()
        with open(self.log_path, "a") as log:  # the checker reads which incarnation died
            log.write(KILL_MARK)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after ``timeout``; no child left behind."""
        if self.alive():
            assert self.process is not None
            children = self.children()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(*workers: Worker) -> Iterator[tuple[Worker, ...]]:
    try:
        yield tuple(w.start() for w in workers)
    finally:
        for w in workers:
            w.stop()


def machine(redis_version: str) -> dict[str, Any]:
    """The machine and versions a result was measured on."""
    import celery
    import kombu

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "redis": redis_version,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "platform": platform.platform(),
    }


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            ticks[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return ticks


def busy_processes(window: float = 1.0, limit: int = 5) -> list[str]:
    """Processes that used >= 5% of a CPU during the last ``window`` seconds (this one
    excluded): who else was running when a figure was taken."""
    if not Path("/proc/self/stat").exists():
        return []
    first = _cpu_ticks()
    time.sleep(window)  # the sampling window itself
    second = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    for pid, (name, ticks) in second.items():
        if pid == os.getpid() or pid not in first:
            continue
        share = (ticks - first[pid][1]) / hz / window * 100
        if share >= 5.0:
            rows.append((share, f"{name}[{pid}] {share:.0f}% cpu"))
    return [row for _, row in sorted(rows, reverse=True)[:limit]]
