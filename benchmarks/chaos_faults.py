"""The chaos drill's faults, kept apart from its driver and checker (benchmarks/chaos.py):
worker kills, Redis restarts (one with revocations in the outage, one that loses the end of
its AOF), poison on the queue, and what the checker must then accept, because some faults
change what a right ending is for some callbacks.

- Poison: raw items that are not Celery messages, pushed straight onto the workers' queue;
  each distinct item must end as exactly one ``malformed`` dead letter holding its bytes.
- AOF tail loss: Redis is SIGKILLed and the end of its last incremental AOF file is cut, so
  acknowledged writes are lost. A mark (the server time, written every few ms until the kill)
  tells where the loss can begin: every write before the surviving mark survived. A callback
  whose submit may have run at or after that mark may have lost its records (its pending
  entry, its message), so it may have no verdict: it is exempt from "has a verdict", never
  from "is in no other run's inbox" nor from "is in at most one place".
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from leasegate.ownership import RegistryUnavailable, shard_of
from leasegate.testing.redis_cluster import RedisClusterNodes
from leasegate.testing.redis_server import RedisServer

from .chaos_cluster import pick_victim, write_marks_in_slot
from .common import Worker

if TYPE_CHECKING:
    from .chaos import Driver, RecordingRun
    from .chaos_record import Record, RunRecord

T = TypeVar("T")
TRANSIENT = (RegistryUnavailable, redis.exceptions.ConnectionError,
             redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
             # the driver's own raw calls to a cluster mid-failover
             redis.exceptions.ClusterDownError, redis.exceptions.ClusterError)

QUEUE = "media"  # the queue the drill's workers consume
# The drill's tools (benchmarks.apps:chaos declares the two of its own) and their routes.
CHAOS_TASKS = {"hard_limit": ("chaos.hard_limit", QUEUE), "oversized": ("chaos.oversized", QUEUE)}
TOOLS = {"image_generate": ("leasegate.image_generate", QUEUE), **CHAOS_TASKS}
# Distinct inputs; the first is pushed twice, so one letter per distinct input is checked.
POISON = (b"chaos poison: not json", b"\xff\xfe\x00 chaos binary poison",
          b'{"chaos": "json, but no message"}')
MARK_EVERY = 0.01      # seconds between loss marks in the run-up to the kill
MARK_FOR = 1.0         # seconds of marks before the kill
CUT_BYTES = (1024, 6144)  # how much of the AOF tail is cut (a range, drawn per drill)


@dataclass
class Loss:
    """One restart that lost its AOF tail, or a primary kill that lost what its replica had
    not received: writes at server time >= ``mark_ms`` may be lost (up to the kill);
    everything from ``restarted_ms`` on happened after it (the restart; on a cluster, the
    moment the killed primary was dead)."""
    mark_ms: int
    killed_ms: int
    restarted_ms: int
    cut_bytes: int
    mark_survived: bool
    shards: frozenset[int] | None = None  # the only shards it may have hit; None: every one
    marks_lost: int = 0  # marks written after the surviving one: acknowledged, then lost
    promoted_ms: int | None = None  # when the killed primary's replica had taken over

    def covers(self, session_key: str) -> bool:
        """Could it have lost writes of this session (its shard's)?"""
        return self.shards is None or shard_of(session_key) in self.shards

    def may_have_lost(self, began_ms: int | None, ended_ms: int | None) -> bool:
        """Could a call that began and ended at these server times have been erased?"""
        if began_ms is None or ended_ms is None:
            return True  # unknown: assume the worst
        return ended_ms >= self.mark_ms - 1 and began_ms <= self.restarted_ms


def publish_raw(broker_url: str, raw: bytes) -> None:
    """Poison on RabbitMQ: ``raw`` as the body of a message with no properties, published
    straight to the queue (the default exchange), the way a stray producer would."""
    from kombu.connection import Connection

    with Connection(broker_url) as conn:  # type: ignore[no-untyped-call]
        channel: Any = conn.channel()  # py-amqp's own channel: publishes bytes as they are
        channel.basic_publish(channel.prepare_message(raw), exchange="", routing_key=QUEUE)
        channel.close()


SETTLED_AT = re.compile(r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): [^\]]*\] "
                        r"Task [\w.]+\[(?P<task>[0-9a-f]{32})\] (?:succeeded|raised)", re.M)


def settled_in_lost_window(loss: Loss | None, logs: list[str]) -> set[str]:
    """Task ids a worker settled (verdict written, then the message acknowledged) inside the
    window the AOF tail loss erased. With the broker apart from the store (RabbitMQ), the
    acknowledgement outlives the verdict it followed, so only the reaper's no_verdict can
    answer for them. The log line comes after the verdict: its time bounds it from above;
    log times and Redis server time are one host's clock."""
    if loss is None:
        return set()
    settled = set()
    for log in logs:
        for match in SETTLED_AT.finditer(log):
            at_ms = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000
            if loss.mark_ms <= at_ms <= loss.killed_ms + 1000:
                settled.add(match["task"])
    return settled


@dataclass
class PoisonLog:
    pushed: Counter[bytes] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    amqp_url: str | None = None  # the broker is RabbitMQ: publish there, not LPUSH to Redis

    def push(self, r: redis.Redis, index: int) -> None:
        raw = POISON[index % len(POISON)] if index < len(POISON) else POISON[0]
        if self.amqp_url:
            publish_raw(self.amqp_url, raw)
        else:
            r.lpush(QUEUE, raw)
        with self.lock:
            self.pushed[raw] += 1

    def check(self, letters: list[bytes]) -> list[str]:
        """What is wrong with the ``malformed`` letters' raw bytes, given what was pushed."""
        got = Counter(letters)
        problems = [f"poison {raw!r} (pushed {n}x) has {got[raw]} malformed letters, not 1"
                    for raw, n in self.pushed.items() if got[raw] != 1]
        problems += [f"a malformed letter for input nobody pushed: {raw[:60]!r}"
                     for raw in got if raw not in self.pushed]
        return problems


def write_marks(r: redis.Redis, key: str, stop: threading.Event, seconds: float,
                after_first: Callable[[], None] = lambda: None) -> int:
    """Write the server time to ``key`` every MARK_EVERY s for ``seconds``; the first mark's
    time (every write before it is older than any later mark)."""
    first: int | None = None
    for _ in range(max(1, round(seconds / MARK_EVERY))):
        seconds_, micros = r.time()
        now = int(seconds_) * 1000 + int(micros) // 1000
        r.set(key, now)
        if first is None:
            first = now
            after_first()
        if stop.wait(MARK_EVERY):
            break
    assert first is not None
    return first


def last_aof(directory: str) -> Path:
    files = sorted(Path(directory, "appendonlydir").glob("*.incr.aof"),
                   key=lambda p: int(p.name.split(".")[-3]))
    if not files:
        raise RuntimeError(f"no incremental AOF file under {directory}/appendonlydir")
    return files[-1]


def cut_aof_tail(directory: str, rng: random.Random, keep: tuple[str, int] = ("", 0)) -> int:
    """Cut the end of the last incremental file of Redis 7's multi-part AOF (the server must
    be dead), never into the first ``keep[1]`` bytes of file ``keep[0]`` (where the first loss
    mark is: a surviving mark is what bounds the loss); returns how many bytes were cut."""
    last = last_aof(directory)
    size = last.stat().st_size
    floor = keep[1] if last.name == keep[0] else 0
    cut = min(size - floor, rng.randint(*CUT_BYTES))
    with last.open("r+b") as handle:
        handle.truncate(size - cut)
    return cut


def retrying(call: Callable[[], T], record: Record, timeout: float = 30.0) -> T:
    """Call until Redis answers (a restart takes a moment); only for idempotent calls."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except TRANSIENT:
            record.count("driver_retries")
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling pace while Redis is away


class Faults(threading.Thread):
    def __init__(self, workers: list[Worker], server: RedisServer | RedisClusterNodes,
                 driver: Driver,
                 interval: float, redis_restart: Callable[[], bool],
                 aof_loss: Callable[[], bool], redis_down: float) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.redis_down = redis_down
        self.workers, self.server, self.driver = workers, server, driver
        self.record, self.rng = driver.record, driver.rng
        self.interval = interval
        self.redis_restart_due = redis_restart
        self.aof_loss_due = aof_loss
        self.stop = threading.Event()
        self.spare_url = server.url  # the node the workers were given: never the victim
        self.redis_restarted = False
        self.poison_pushed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            plan = ["child", "worker"]  # at least one of each, then at random
            while not self.stop.wait(self.rng.uniform(0.5, 1.5) * self.interval):
                self.push_poison()
                if not self.redis_restarted and self.redis_restart_due():
                    self.restart_redis()
                    continue
                if self.redis_restarted and self.record.loss is None and self.aof_loss_due() \
                        and isinstance(self.server, RedisServer):
                    self.restart_losing_tail()
                    continue
                kind = plan.pop(0) if plan else self.rng.choice(("child", "child", "worker"))
                self.kill(kind)
        except BaseException as exc:  # reported by the driver
            self.error = exc

    def push_poison(self, pushes: int = 4) -> None:
        """One poison item per fault tick until ``pushes`` (before any data loss)."""
        while self.poison_pushed < pushes and self.record.loss is None:
            retrying(lambda: self.record.poison.push(self.driver.client.redis,
                                                     self.poison_pushed), self.record)
            self.poison_pushed += 1
            self.record.count("poison_pushed")
            if self.poison_pushed % 2 == 1:
                return

    def kill(self, kind: str) -> None:
        worker = self.rng.choice(self.workers)
        if kind == "child":
            children = worker.children()
            if not children:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.rng.choice(children), 9)
            self.record.count("kill_child")
            return
        self.record.kills_ms.append(self.driver.now_ms())
        worker.kill()
        self.record.count("kill_worker")
        worker.start()
        self.record.count("restart_worker")

    def restart_redis(self) -> None:
        """SIGKILL (AOF with appendfsync always loses nothing acknowledged) and restart; runs
        release with cancel_pending just before the kill and while Redis is down. On a
        cluster: SIGKILL a primary instead, its replica promoted (fail_over)."""
        if isinstance(self.server, RedisClusterNodes):
            self.fail_over(self.server)
            return
        victims = self.revocable_runs()
        before = self.driver.now_ms()
        self.record.kills_ms.append(before)
        self.server.kill()
        revokers = self.revoke_in_background(victims[1:], before)
        self.stop.wait(self.redis_down)  # the outage lasts this long (a real restart takes time)
        self.server.start()
        for t in revokers:
            t.join(60)
        self.redis_restarted = True
        self.record.count("restart_redis")

    def revocable_runs(self, session_keys: list[str] | None = None
                       ) -> list[tuple[RecordingRun, RunRecord]]:
        """Three runs with two callbacks each; the first released with cancel_pending now,
        before the fault, the others to be released during it."""
        victims = []
        for _ in range(3):
            key = self.rng.choice(session_keys) if session_keys else None
            run, rec = self.driver.start("revoke", session_key=key, ttl=20.0)
            self.record.count("fate_revoke")
            for _ in range(2):
                self.driver.submit(run, rec, tool="image_generate")
            victims.append((run, rec))
        self.driver.release(*victims[0], "cancelled", cancel=True)
        self.record.count("revoked_before_restart")
        return victims

    def revoke_in_background(self, victims: list[tuple[RecordingRun, RunRecord]],
                             before: int) -> list[threading.Thread]:
        revokers = [threading.Thread(target=self.revoke_in_outage, args=(run, rec, before),
                                     name="chaos-revoke", daemon=True) for run, rec in victims]
        for t in revokers:
            t.start()
        return revokers

    def fail_over(self, cluster: RedisClusterNodes) -> None:
        """SIGKILL the primary of some sessions' shards; the cluster promotes its replica.
        Runs of those sessions release with cancel_pending before the kill and during the
        failover. Marks in a slot of the victim until the kill bound what replication lost."""
        client = self.driver.client
        victim = pick_victim(cluster, client.keys, self.driver.jobs, self.rng, self.spare_url)
        victims = self.revocable_runs(victim.jobs)
        key = client.keys.shard_key(min(victim.shards), "chaos:loss-mark")
        marks = retrying(lambda: write_marks_in_slot(client.redis, key, self.stop, 1.0),
                         self.record)
        killed = self.driver.now_ms()
        self.record.kills_ms.append(killed)
        victim.node.kill()  # cluster.kill_primary(victim), split so revocations start now
        # dead: it acknowledges nothing more (this host's clock is the one Redis reads); the
        # replica takes writes only once promoted, and keeps them
        dead = round(time.time() * 1000)
        revokers = self.revoke_in_background(victims[1:], killed)
        cluster.wait_healthy(60)
        promoted = self.driver.now_ms()
        for t in revokers:
            t.join(60)
        survived = retrying(lambda: client.redis.get(key), self.record)
        mark = int(survived) if survived else 0  # none: nothing bounds the loss on its shards
        self.record.loss = Loss(mark, killed, dead, cut_bytes=0,
                                mark_survived=survived is not None, shards=victim.shards,
                                marks_lost=sum(m > mark for m in marks), promoted_ms=promoted)
        self.redis_restarted = True
        self.record.count("kill_primary")

    def revoke_in_outage(self, run: RecordingRun, rec: RunRecord, before: int) -> None:
        """release(cancel_pending=True) while Redis is down: retried until it answers."""
        deadline, failed = time.monotonic() + 45, 0
        while True:
            try:
                run.release("cancelled", cancel_pending=True)
                break
            except Exception:  # Redis (registry and broker) is away: try again
                failed += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling pace while Redis is away
        # it ran after the kill (server time ``before``) and before this read
        rec.released_before_ms, rec.released_after_ms = before, self.driver.now_ms()
        self.record.count("revoked_in_outage" if failed else "revoked_after_outage")

    def restart_losing_tail(self) -> None:
        """SIGKILL, cut the end of the AOF, restart: the acknowledged writes of the last
        moments are lost. A mark written until the kill bounds what may be lost."""
        server = self.server
        assert isinstance(server, RedisServer), "no AOF cut on a cluster: its loss is a kill"
        r = self.driver.client.redis
        key = f"{self.driver.client.keys.namespace}:chaos:aof-mark"
        keep = ("", 0)

        def first_mark_written() -> None:  # the cut stops short of it, so a mark survives
            nonlocal keep
            aof = last_aof(server.directory)
            keep = (aof.name, aof.stat().st_size)

        retrying(lambda: write_marks(r, key, self.stop, 1.0, first_mark_written), self.record)
        killed = self.driver.now_ms()
        self.record.kills_ms.append(killed)
        server.kill()
        cut = cut_aof_tail(server.directory, self.rng, keep)
        self.stop.wait(self.redis_down)
        server.start()
        restarted = self.driver.now_ms()
        mark = retrying(lambda: r.get(key), self.record)
        # no surviving mark: nothing bounds the loss, so every write may have been lost
        self.record.loss = Loss(int(mark) if mark else 0, killed, restarted, cut,
                                mark is not None)
        self.record.count("restart_redis")
        self.record.count("aof_tail_lost")
