"""Figure 5: Redis memory.

- Bytes per live run: ``used_memory`` before and after starting K runs (lease, owner pointer,
  fencing counter, inbox with a 40-byte prompt), then after one delivered image callback each
  (inbox entry with an artifact reference, callback memo).
- Keys left after every run ended and the retention passed: a namespace with short retention
  (``Settings(retention=1, dlq_max_age=2)``) sees runs released, expired, superseded and
  parked, callbacks delivered, quarantined, left pending and malformed, and more runtime
  processes record their secret fingerprint than are kept; then, with
  ``Reaper.reap`` and ``DeadLetters.sweep()`` run while waiting (as the workers' maintenance
  timer does), the keys are counted until only what the design
  keeps for ever is left. Kept by design: the fencing counters (a reset would let an old token
  match) and, once per shard (not per run), the dead-letter stream key (empty by then: every
  letter became a tombstone and expired), its counters hash ``<ns>:{<shard>}:dlq:stats`` and
  the metrics counters hash ``<ns>:{<shard>}:metrics``; and, once per deployment, the secret
  fingerprint records ``<ns>:fingerprints:<role>`` (one per process, not per run), only while
  they are bounded: at most ``MAX_RECORDS`` and a TTL of at most ``RECENT`` (they lapse a
  day after the last process recorded). Anything else is ``leaked_keys``.
- An 8 MB image: stored through the worker-side path (``FileArtifactStore.put``, then
  ``Gate.deliver`` with the reference); Redis grows by the reference, not the bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from leasegate.broker import ArtifactRef, Client, FileArtifactStore, Reaper, Run, Settings
from leasegate.broker.fingerprints import MAX_RECORDS, RECENT, fingerprint_key, record

from .common import SECRET, count_keys, memory_usage, used_memory, wait_until
from .gatecall import envelopes

PROMPT = "Draw the header of today's daily digest."  # 40 bytes
IMAGE_RESULT = {"tool": "image_generate", "prompt": "a fox", "size": "1024x1024",
                "generator": "procedural",
                "images": [{"width": 1024, "height": 1024, "seed": 7, "media_type": "image/png"}]}


def run_keys(client: Client, run: Run, callbacks: Sequence[str] = ()) -> list[str]:
    k, sk, rid = client.keys, run.session_key, run.run_id
    return [k.fence(sk), k.owner(sk), k.run(sk, rid), k.inbox(sk, rid), k.pending(sk, rid),
            k.resume(sk, rid), *(k.callback(sk, rid, cb) for cb in callbacks)]


def per_live_run(client: Client, count: int) -> dict[str, Any]:
    r = client.redis
    tag = uuid.uuid4().hex[:6]
    ref = ArtifactRef("ab" * 32, 1_234_567, "image/png")  # a reference is all Redis sees
    before = used_memory(r)
    runs = [client.start_run(f"bench:mem:{tag}:{i}", prompt=PROMPT, ttl=1800)
            for i in range(count)]
    bare = used_memory(r) - before
    bare_keys = memory_usage(r, [key for run in runs for key in run_keys(client, run)])
    callbacks = []
    for run in runs:
        [wire] = envelopes(client, run, 1)
        verdict = client.gate.deliver(wire, IMAGE_RESULT, artifacts=[ref])
        assert verdict.delivered and verdict.callback_id
        callbacks.append(verdict.callback_id)
    with_callback = used_memory(r) - before
    keys = memory_usage(r, [key for run, cb in zip(runs, callbacks, strict=True)
                            for key in run_keys(client, run, [cb])])
    inbox = memory_usage(r, [run.inbox.key for run in runs])
    return {
        "redis_bytes_per_live_run": round(with_callback / count),
        "redis_bytes_per_live_run_bare": round(bare / count),
        "redis_bytes_per_live_run_memory_usage": round(keys / count),
        "redis_bytes_per_live_run_bare_memory_usage": round(bare_keys / count),
        "redis_bytes_per_inbox_stream": round(inbox / count),
        "runs_measured": count,
    }


def image_8mb(client: Client, runs: int = 20) -> dict[str, Any]:
    r = client.redis
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as folder:
        store = FileArtifactStore(folder)
        data = os.urandom(8 * 1024 * 1024)
        targets = [client.start_run(f"bench:img:{tag}:{i}", prompt=PROMPT, ttl=1800)
                   for i in range(runs)]
        wires = [envelopes(client, run, 1)[0] for run in targets]
        callbacks = [client.gate.open(w).callback_id for w in wires]
        keys = [key for run, cb in zip(targets, callbacks, strict=True)
                for key in run_keys(client, run, [cb])]
        keys_before = memory_usage(r, keys)
        before = used_memory(r)
        for wire in wires:
            ref = store.put(data, "image/png")   # what the worker does: bytes to the store...
            verdict = client.gate.deliver(wire, IMAGE_RESULT, artifacts=[ref])  # ...ref to Redis
            assert verdict.delivered
        used_delta = (used_memory(r) - before) / runs
        keys_delta = (memory_usage(r, keys) - keys_before) / runs
        stored = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return {
        "redis_bytes_for_8mb_image": round(max(used_delta, keys_delta)),
        "redis_bytes_for_8mb_image_used_memory": round(used_delta),
        "redis_bytes_for_8mb_image_memory_usage": round(keys_delta),
        "artifact_store_bytes": stored,
        "image_deliveries_measured": runs,
    }


def leaked_keys(url: str, r: redis.Redis, timeout: float = 60.0) -> dict[str, Any]:
    namespace = f"lk{uuid.uuid4().hex[:6]}"
    settings = Settings(retention=1.0, dlq_max_age=2.0)
    nowhere = f"bench-nowhere-{namespace}"
    sender = Celery("bench-leak", broker=url, set_as_current=False)
    client = Client(r, namespace, secret=SECRET.encode(), settings=settings,
                    celery_app=sender, tasks={"noop": ("bench.never_consumed", nowhere)})
    try:
        start = time.perf_counter()
        for i in range(10):     # released after a delivery; one callback left pending
            run = client.start_run(f"lk:released:{i}", prompt=PROMPT, ttl=3)
            [wire] = envelopes(client, run, 1)
            assert client.gate.deliver(wire, {"ok": 1}).delivered
            run.submit("noop", deadline=1.0)  # never taken: the reaper's after its deadline
            run.release("completed")
        for i in range(5):      # superseded, then its late callback is quarantined
            old = client.start_run(f"lk:superseded:{i}", prompt=PROMPT, ttl=3)
            [wire] = envelopes(client, old, 1)
            new = client.start_run(f"lk:superseded:{i}", prompt=PROMPT, ttl=3)
            assert not client.gate.deliver(wire, {"late": 1}).delivered
            new.release("failed")
        expiring: list[tuple[Run, bytes]] = []
        for i in range(5):      # the runtime dies: the lease expires
            run = client.start_run(f"lk:expired:{i}", prompt=PROMPT, ttl=0.3)
            expiring.append((run, envelopes(client, run, 1)[0]))
        for i in range(5):      # parked, a callback lands (resume signal), then it expires
            run = client.start_run(f"lk:parked:{i}", prompt=PROMPT, ttl=3)
            [wire] = envelopes(client, run, 1)
            run.park(until=0.5)
            assert client.gate.deliver(wire, {"ok": 1}).delivered
        for i in range(3):      # bytes that never were an envelope
            client.gate.deliver(f"junk {i}".encode(), {})
        for i in range(MAX_RECORDS + 10):  # runtime processes come and go (host:pid each)
            record(client.scripts, client.keys, "runtime", f"bench-host:{100_000 + i}",
                   [client.fingerprint or ""])
        wait_until(lambda: all(run.status().state.value == "expired" for run, _ in expiring),
                   10, "the short leases to expire", interval=0.05)
        for _run, wire in expiring:
            assert client.gate.deliver(wire, {"late": 1}).reason == "lease_expired"
        made = count_keys(r, f"{namespace}:*")
        k = client.keys
        fences = count_keys(r, k.session_pattern("*", "fence"))
        # kept for good, per shard: the dead-letter stream and counters, the gate's counters
        kept = {key for shard in k.shards
                for key in (k.dead_letters(shard), k.dead_letter_stats(shard), k.metrics(shard))}
        # per deployment, one record per process (this one's, here): kept while bounded
        fingerprints = {fingerprint_key(k, "worker"), fingerprint_key(k, "runtime")}

        def bounded(key: str) -> bool:
            return 0 < int(r.pttl(key)) <= RECENT * 1000 and int(r.zcard(key)) <= MAX_RECORDS

        def others() -> list[str]:
            names = (key.decode() for key in r.scan_iter(match=f"{namespace}:*", count=1000))
            return sorted(name for name in names if not name.endswith("}:fence")
                          and name not in kept and not (name in fingerprints and bounded(name)))

        reaper = Reaper.for_client(client)

        def settled() -> bool:  # what the workers' maintenance timer does
            reaper.reap(grace=0.0)
            client.dead_letters.sweep()
            return not others()

        with contextlib.suppress(RuntimeError):  # what is left is counted below
            wait_until(settled, timeout, "the retention to pass", interval=0.25)
        left = others()
        return {
            "leaked_keys": len(left),
            "leaked_key_names": left[:20],
            "keys_at_peak": made,
            "fence_counters_made": fences,
            "fence_counters_left": count_keys(r, k.session_pattern("*", "fence")),
            "kept_by_policy": sorted(k for k in kept | fingerprints if r.exists(k)),
            "dlq_stream_entries_left": client.dead_letters.count(),
            "seconds_to_settle": round(time.perf_counter() - start, 1),
        }
    finally:
        r.delete(nowhere)
        sender.close()


def measure(client: Client, url: str, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(per_live_run(client, runs))
    out.update(image_8mb(client))
    out.update(leaked_keys(url, client.redis))
    return out
