"""A runtime token flooding the gateway cannot starve the gate in Redis (issue 15).

Threads in another process flood a real ``leasegate serve`` with one runtime token's requests
(default rate limit: 50/s, burst 100, so nearly all of them are 429s). What reaches Redis:

- ``flood_redis_calls_per_request``, ``flood_redis_calls_per_s``: round trips of the rate
  limit's script per flood request, and per second, in a window with no deliveries (a refused
  token is answered from memory until its bucket can have refilled: about 2 x rate per
  second per serve process, whatever the flood's rate). ``flood_redis_cpu_share``: Redis's
  CPU seconds per second in that window.
- ``gate_redis_time_ratio``: the gate's Redis time per ``Gate.deliver`` (INFO commandstats,
  EVALSHA microseconds per call; the flood's own script calls, timed in the window above,
  taken out) under the flood / without it. Redis times a call on the wall clock, so a Redis
  process that loses its core to the flood's CPU counts that too:
  ``gate_redis_time_ratio_healthz_flood`` is the same under the ``/healthz`` flood, which
  sends Redis nothing.

End to end, on one machine: ``gate_under_flood_ratio``, ``Gate.deliver`` per second (one
connection) under the flood / without it, rounds alternating, median of the rounds' ratios.
The flood and ``serve`` share the cores with the driver and Redis, so this includes their CPU:
``gate_under_healthz_flood_ratio`` is the same flood on ``/healthz`` (no token, no Redis), the
loss that is CPU alone, and ``token_flood_vs_healthz_flood`` the gate's rate under the token
flood / under that one (>= 1: the token flood takes nothing from the gate beyond CPU).

    python -m benchmarks.flood [--rounds 5] [--n 2000] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer

from .common import SECRET, wait_until
from .gatecall import envelopes, gate_rate
from .gateway import TOKEN, Serve, free_port


def _flood(url: str, path: str, threads: int, stop: Any, sent: Any, refused: Any) -> None:
    """The flooding process: ``threads`` clients sending ``GET path`` with one token."""

    def send() -> None:
        with httpx.Client(base_url=url, timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while not stop.is_set():
                status = http.get(path).status_code
                with sent.get_lock():
                    sent.value += 1
                    refused.value += status == 429

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


class Flood:
    """A process of its own (the GIL of the measuring loop stays out of it) flooding the
    gateway with one runtime token."""

    def __init__(self, url: str, threads: int, path: str = "/v1/whoami") -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.sent, self.refused = context.Value("i", 0), context.Value("i", 0)
        self.process = context.Process(target=_flood, daemon=True,
                                       args=(url, path, threads, self.stop, self.sent,
                                             self.refused))

    def __enter__(self) -> Flood:
        self.process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.process.join(30)


def script_stats(r: Any) -> tuple[int, float, float]:
    """Script round trips (EVALSHA, EVAL) and their microseconds so far, and Redis's CPU
    seconds so far."""
    commands, cpu = r.info("commandstats"), r.info("cpu")
    scripts = [commands.get(f"cmdstat_{name}", {}) for name in ("evalsha", "eval")]
    return (sum(int(x.get("calls", 0)) for x in scripts),
            sum(float(x.get("usec", 0)) for x in scripts),
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))


def timed_gate(client: Client, wires: list[bytes], result: Any) -> tuple[float, int, float]:
    """Deliveries per second, and the script calls and microseconds Redis counted meanwhile."""
    calls, usec, _ = script_stats(client.redis)
    rate = gate_rate(client, wires, result)
    calls_after, usec_after, _ = script_stats(client.redis)
    return rate, calls_after - calls, usec_after - usec


def flood_window(client: Client, flood: Flood, requests: int) -> dict[str, float]:
    """The flood alone for ``requests`` more of its requests: what it cost Redis."""
    calls, usec, cpu = script_stats(client.redis)
    sent, began = flood.sent.value, time.monotonic()
    wait_until(lambda: flood.sent.value >= sent + requests, 60, "the flood's requests",
               interval=0.01)
    calls_after, usec_after, cpu_after = script_stats(client.redis)
    return {"requests": flood.sent.value - sent, "seconds": time.monotonic() - began,
            "calls": calls_after - calls,
            "usec": usec_after - usec, "cpu": cpu_after - cpu}


def measure(redis_url: str, workdir: Path, n: int = 2000, rounds: int = 5,
            threads: int = 4, window: int = 1000) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    namespace = f"flood{uuid.uuid4().hex[:6]}"
    client = Client.from_url(redis_url, namespace, secret=SECRET.encode())
    serve = Serve(redis_url, namespace, workdir, free_port())
    result = {"images": [{"width": 256, "height": 256}]}
    quiet: list[float] = []
    flooded: list[float] = []
    control: list[float] = []  # the same flood on /healthz: no token, no Redis, CPU only
    gate_usec_quiet: list[float] = []
    gate_usec_flooded: list[tuple[int, float]] = []  # (script calls, usec) under the flood
    gate_usec_control: list[float] = []
    windows: list[dict[str, float]] = []
    totals: dict[str, int] = {}
    try:
        run = client.start_run(f"bench:flood:{uuid.uuid4().hex[:8]}", prompt="p", ttl=1800)
        gate_rate(client, envelopes(client, run, 200), result)  # warm: scripts loaded
        for _ in range(rounds):
            rate, calls, usec = timed_gate(client, envelopes(client, run, n), result)
            quiet.append(rate)
            gate_usec_quiet.append(usec / calls)
            wires = envelopes(client, run, n)
            with Flood(serve.url, threads) as flood:
                # past the burst: the bucket is empty and the flood is answered 429
                wait_until(lambda f=flood: f.sent.value > 150, 60,
                           "the flood to empty its bucket", interval=0.01)
                rate, calls, usec = timed_gate(client, wires, result)
                flooded.append(rate)
                gate_usec_flooded.append((calls, usec))
                windows.append(flood_window(client, flood, window))
            totals["sent"] = totals.get("sent", 0) + flood.sent.value
            totals["429"] = totals.get("429", 0) + flood.refused.value
            wires = envelopes(client, run, n)
            with Flood(serve.url, threads, "/healthz") as flood:
                wait_until(lambda f=flood: f.sent.value > 150, 60, "the control flood",
                           interval=0.01)
                rate, calls, usec = timed_gate(client, wires, result)
                control.append(rate)
                gate_usec_control.append(usec / calls)
    finally:
        serve.stop()
        client.redis.close()
    ratios = [f / q for f, q in zip(flooded, quiet, strict=True)]
    controls = [c / q for c, q in zip(control, quiet, strict=True)]
    flood_calls = sum(w["calls"] for w in windows)
    take_usec = sum(w["usec"] for w in windows) / max(1, flood_calls)
    # the gate's own time under the flood: the flood's script calls (timed alone) taken out
    gate_usec = [(usec - (calls - n) * take_usec) / n for calls, usec in gate_usec_flooded]
    seconds = sum(w["seconds"] for w in windows)
    return {"gate_under_flood_ratio": round(statistics.median(ratios), 3),
            "gate_under_healthz_flood_ratio": round(statistics.median(controls), 3),
            "token_flood_vs_healthz_flood": round(statistics.median(
                f / c for f, c in zip(flooded, control, strict=True)), 3),
            "gate_redis_time_ratio": round(statistics.median(
                f / q for f, q in zip(gate_usec, gate_usec_quiet, strict=True)), 3),
            "gate_redis_time_ratio_healthz_flood": round(statistics.median(
                c / q for c, q in zip(gate_usec_control, gate_usec_quiet, strict=True)), 3),
            "gate_redis_usec_per_call_quiet": round(statistics.median(gate_usec_quiet), 2),
            "gate_redis_usec_per_call_flooded": round(statistics.median(gate_usec), 2),
            "flood_redis_calls_per_request": round(
                flood_calls / sum(w["requests"] for w in windows), 4),
            "flood_redis_calls_per_s": round(flood_calls / seconds, 1),
            "flood_redis_cpu_share": round(sum(w["cpu"] for w in windows) / seconds, 4),
            "flood_requests_per_s": round(sum(w["requests"] for w in windows) / seconds),
            "gate_deliveries_per_s_quiet": round(statistics.median(quiet)),
            "gate_deliveries_per_s_flooded": round(statistics.median(flooded)),
            "flood_threads": threads, "flood_requests": totals,
            "flood_rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flood", description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--window", type=int, default=1000,
                        help="flood requests per round timed with no deliveries")
    args = parser.parse_args(argv)
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lg-flood-") as tmp:
        print(json.dumps(measure(server.url, Path(tmp), args.n, args.rounds, args.threads,
                                 args.window),
                         indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
