"""Figure 1: owned no-op tasks per second through the gate vs plain Celery tasks per second,
the same worker pool (prefork, 2 processes), the same reliable settings, the same Redis.

Each round stops the worker consuming (remote control ``cancel_consumer``), queues N tasks,
lets it consume again and times the drain between the 10th percentile of completions and the
last, so neither the sending nor the worker's wake-up is in the figure. Plain and owned rounds
alternate, so a drift in the machine's load hits both.

Beside the rates, the CPU each round's worker processes (the worker and its pool) used per
task over the same window, from /proc: on a shared machine the rates move with everyone
else's load, the CPU a task costs much less. ``e2e_cpu_ratio`` is plain over owned (like the
rate ratio: 1.0 means owned tasks cost nothing extra). Redis's CPU per task is reported too,
though it includes the driver's polling (20 XLEN per poll for owned, one GET for plain).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from leasegate.broker import Client

from .apps import OWNED_TASK, PLAIN_TASK
from .common import SECRET, Worker, running, wait_until

CONCURRENCY = 2
RUNS = 20  # owned tasks are spread over this many live runs
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its children, from /proc."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Drain:
    """One worker, one queue, one way of counting completions."""

    def __init__(self, worker: Worker, queue: str, sender: Celery, r: redis.Redis) -> None:
        self.worker, self.queue, self.sender, self.redis = worker, queue, sender, r
        self.cpu_per_task: list[float] = []        # the worker's, seconds
        self.redis_cpu_per_task: list[float] = []  # Redis's, seconds

    def pause(self) -> None:
        reply = self.sender.control.cancel_consumer(self.queue, destination=[
            self.worker.hostname], reply=True, timeout=5)
        if not reply:
            raise RuntimeError(f"{self.worker.name} did not confirm cancel_consumer")

    def resume(self) -> None:
        reply = self.sender.control.add_consumer(self.queue, destination=[
            self.worker.hostname], reply=True, timeout=5)
        if not reply:
            raise RuntimeError(f"{self.worker.name} did not confirm add_consumer")

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def done(self) -> int:
        raise NotImplementedError

    def round(self, n: int, timeout: float = 120.0) -> float:
        """Queue ``n`` tasks while paused, then time the drain: tasks per second."""
        self.pause()
        start = self.done()
        self.enqueue(n)
        k0 = start + n // 10
        self.resume()
        wait_until(lambda: self.done() >= k0, timeout, f"{self.queue}: first tenth",
                   interval=0.001)
        t0, k = time.perf_counter(), self.done()
        pid = self.worker.process.pid if self.worker.process else 0
        cpu0, redis0 = tree_cpu(pid), redis_cpu(self.redis)
        wait_until(lambda: self.done() >= start + n, timeout, f"{self.queue}: all {n}",
                   interval=0.002)
        elapsed = time.perf_counter() - t0
        self.cpu_per_task.append((tree_cpu(pid) - cpu0) / (start + n - k))
        self.redis_cpu_per_task.append((redis_cpu(self.redis) - redis0) / (start + n - k))
        return (start + n - k0) / elapsed


class PlainDrain(Drain):
    def __init__(self, worker: Worker, queue: str, sender: Celery, client: redis.Redis) -> None:
        super().__init__(worker, queue, sender, client)
        self.client = client
        self.counter = f"bench:plain:{uuid.uuid4().hex[:8]}"

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.sender.send_task(PLAIN_TASK, args=[self.counter], queue=self.queue,
                                  serializer="msgpack")

    def done(self) -> int:
        return int(self.client.get(self.counter) or 0)


class OwnedDrain(Drain):
    def __init__(self, worker: Worker, queue: str, sender: Celery, client: Client) -> None:
        super().__init__(worker, queue, sender, client.redis)
        self.client = client
        tag = uuid.uuid4().hex[:8]
        self.runs = [client.start_run(f"bench:e2e:{tag}:{i}", prompt="p", ttl=1800)
                     for i in range(RUNS)]
        self.inboxes = [run.inbox.key for run in self.runs]
        self.sent = 0

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.runs[self.sent % RUNS].submit("noop")
            self.sent += 1

    def done(self) -> int:
        pipe = self.client.redis.pipeline(transaction=False)
        for key in self.inboxes:
            pipe.xlen(key)
        return sum(int(n) for n in pipe.execute()) - RUNS  # entry 1 of each is its prompt


def measure(url: str, workdir: Path, n: int, rounds: int) -> dict[str, Any]:
    namespace = f"e2e{uuid.uuid4().hex[:6]}"
    plain_q, owned_q = f"bench-plain-{namespace}", f"bench-owned-{namespace}"
    plain_w = Worker("benchmarks.apps:plain", url, namespace, workdir, name="plain",
                     queues=plain_q, concurrency=CONCURRENCY, BENCH_QUEUE=plain_q)
    owned_w = Worker("benchmarks.apps:owned", url, namespace, workdir, name="owned",
                     queues=owned_q, concurrency=CONCURRENCY, BENCH_QUEUE=owned_q)
    sender = Celery("bench-sender", broker=url, set_as_current=False)
    sender.conf.update(task_serializer="msgpack", accept_content=["json", "msgpack"])
    r = redis.Redis.from_url(url)
    client = Client(r, namespace, secret=SECRET.encode(), celery_app=sender,
                    tasks={"noop": (OWNED_TASK, owned_q)})
    plain_rates: list[float] = []
    owned_rates: list[float] = []
    with running(plain_w, owned_w):
        plain = PlainDrain(plain_w, plain_q, sender, r)
        owned = OwnedDrain(owned_w, owned_q, sender, client)
        for drain in (plain, owned):  # warm up: both workers ready, every process has run
            drain.enqueue(50)
            wait_until(lambda d=drain: d.done() >= 50, 90,
                       f"warm-up of {drain.worker.name}", interval=0.02)
        for _ in range(rounds):
            plain_rates.append(plain.round(n))
            owned_rates.append(owned.round(n))
        errors = [w.name for w in (plain_w, owned_w) if "ERROR" in w.log()]
    ratios = [o / p for o, p in zip(owned_rates, plain_rates, strict=True)]
    cpu_ratios = [p / o for p, o in zip(plain.cpu_per_task, owned.cpu_per_task, strict=True)]
    return {
        "e2e_ratio": round(sorted(ratios)[len(ratios) // 2], 3),
        "e2e_cpu_ratio": round(sorted(cpu_ratios)[len(cpu_ratios) // 2], 3),
        "plain_worker_cpu_us_per_task": [round(x * 1e6) for x in plain.cpu_per_task],
        "owned_worker_cpu_us_per_task": [round(x * 1e6) for x in owned.cpu_per_task],
        "plain_redis_cpu_us_per_task": [round(x * 1e6) for x in plain.redis_cpu_per_task],
        "owned_redis_cpu_us_per_task": [round(x * 1e6) for x in owned.redis_cpu_per_task],
        "plain_tasks_per_s": [round(x) for x in plain_rates],
        "owned_tasks_per_s": [round(x) for x in owned_rates],
        "tasks_per_round": n,
        "rounds": rounds,
        "worker_pool": f"prefork -c {CONCURRENCY}",
        "workers_logged_errors": errors,
    }
