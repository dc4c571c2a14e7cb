"""Figure 3: from ``Gate.deliver`` returning to a blocked ``inbox.read`` waking.

Each sample is a fresh run. A reader thread, on its own connection, calls
``run.inbox.read(after=1, block=...)``; the deliverer waits until Redis reports that connection
blocked in XREAD (CLIENT LIST), then delivers. The figure is the reader's wake-up time minus
the moment ``deliver`` returned (both ``perf_counter`` in this process). Redis answers the
blocked reader in the same event-loop pass as the deliverer, so the reader can wake before
``deliver`` has returned: such samples are negative and are kept as measured. Also given:
from ``deliver`` being called to the reader waking (the whole hand-over).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis

from leasegate.broker import Client, Run
from leasegate.broker.inbox import Inbox

from .common import percentile, wait_until
from .gatecall import envelopes


class Reader(threading.Thread):
    """Blocks in ``inbox.read`` for each inbox it is handed; records when it woke."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-latency-reader", daemon=True)
        self.client = redis.Redis.from_url(url, socket_timeout=30)
        self.client_id = 0
        self.ready = threading.Event()
        self.todo: list[Inbox | None] = []
        self.todo_ready = threading.Condition()
        self.woke = threading.Event()
        self.woke_at = 0.0
        self.got = 0

    def give(self, inbox_key: str | None) -> None:
        with self.todo_ready:
            self.todo.append(Inbox(self.client, inbox_key) if inbox_key else None)
            self.todo_ready.notify()

    def run(self) -> None:
        self.client_id = int(self.client.client_id())  # the pool reuses this one connection
        self.ready.set()
        while True:
            with self.todo_ready:
                self.todo_ready.wait_for(lambda: bool(self.todo))
                inbox = self.todo.pop(0)
            if inbox is None:
                return
            entries = inbox.read(after=1, block=10.0)
            self.woke_at = time.perf_counter()
            self.got = len(entries)
            self.woke.set()


def blocked(client: redis.Redis, client_id: int) -> bool:
    info: Any = client.client_list(client_id=[client_id])
    return bool(info) and info[0].get("cmd") == "xread" and "b" in info[0].get("flags", "")


def measure(client: Client, url: str, samples: int) -> dict[str, Any]:
    reader = Reader(url)
    reader.start()
    reader.ready.wait(10)
    after_return: list[float] = []
    after_call: list[float] = []
    tag = uuid.uuid4().hex[:8]
    try:
        for i in range(samples + 20):
            run: Run = client.start_run(f"bench:lat:{tag}:{i}", prompt="p", ttl=600)
            [wire] = envelopes(client, run, 1)
            reader.woke.clear()
            reader.give(run.inbox.key)
            wait_until(lambda: blocked(client.redis, reader.client_id), 10,
                       "the reader to block in XREAD", interval=0.0002)
            called = time.perf_counter()
            client.gate.deliver(wire, {"ok": 1})
            returned = time.perf_counter()
            if not reader.woke.wait(10) or reader.got != 1:
                raise RuntimeError(f"sample {i}: the reader did not get the entry")
            if i >= 20:  # the first ones warm up connections and scripts
                after_return.append((reader.woke_at - returned) * 1000)
                after_call.append((reader.woke_at - called) * 1000)
            run.release()
    finally:
        reader.give(None)
        reader.join(15)
        reader.client.close()
    return {
        "latency_p50_ms": round(percentile(after_return, 50), 3),
        "latency_p99_ms": round(percentile(after_return, 99), 3),
        "latency_max_ms": round(max(after_return), 3),
        "latency_negative_samples": sum(1 for x in after_return if x < 0),
        "deliver_call_to_wake_p50_ms": round(percentile(after_call, 50), 3),
        "deliver_call_to_wake_p99_ms": round(percentile(after_call, 99), 3),
        "latency_samples": len(after_return),
    }
