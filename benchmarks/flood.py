"""A runtime token flooding the gateway cannot starve the gate (issue 15).

``gate_under_flood_ratio``: ``Gate.deliver`` per second (what workers hand the gate, on its own
connection) while threads flood a real ``leasegate serve`` with one runtime token's requests
(default rate limit: 50/s, burst 100, so nearly all of them are 429s), against the same
deliveries without the flood; rounds alternate, median of the rounds' ratios. Everything
shares the machine's cores, so the ratio includes the flood's CPU, not only Redis's:
``gate_under_healthz_flood_ratio`` is the same flood on ``/healthz`` (no token, no Redis), the
share of the loss that is CPU alone.

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
import uuid
from pathlib import Path
from typing import Any

import httpx

from leasegate.broker import Client
from leasegate.ownership.testing import RedisServer

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


def measure(redis_url: str, workdir: Path, n: int = 2000, rounds: int = 5,
            threads: int = 4) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    namespace = f"flood{uuid.uuid4().hex[:6]}"
    client = Client.from_url(redis_url, namespace, secret=SECRET.encode())
    serve = Serve(redis_url, namespace, workdir, free_port())
    result = {"images": [{"width": 256, "height": 256}]}
    quiet: list[float] = []
    flooded: list[float] = []
    control: list[float] = []  # the same flood on /healthz: no token, no Redis, CPU only
    totals: dict[str, int] = {}
    try:
        run = client.start_run(f"bench:flood:{uuid.uuid4().hex[:8]}", prompt="p", ttl=1800)
        gate_rate(client, envelopes(client, run, 200), result)  # warm: scripts loaded
        for _ in range(rounds):
            quiet.append(gate_rate(client, envelopes(client, run, n), result))
            wires = envelopes(client, run, n)
            with Flood(serve.url, threads) as flood:
                # past the burst: the bucket is empty and the flood is answered 429
                wait_until(lambda f=flood: f.sent.value > 150, 60,
                           "the flood to empty its bucket", interval=0.01)
                flooded.append(gate_rate(client, wires, result))
            totals["sent"] = totals.get("sent", 0) + flood.sent.value
            totals["429"] = totals.get("429", 0) + flood.refused.value
            wires = envelopes(client, run, n)
            with Flood(serve.url, threads, "/healthz") as flood:
                wait_until(lambda f=flood: f.sent.value > 150, 60, "the control flood",
                           interval=0.01)
                control.append(gate_rate(client, wires, result))
    finally:
        serve.stop()
        client.redis.close()
    ratios = [f / q for f, q in zip(flooded, quiet, strict=True)]
    controls = [c / q for c, q in zip(control, quiet, strict=True)]
    return {"gate_under_flood_ratio": round(statistics.median(ratios), 3),
            "gate_under_healthz_flood_ratio": round(statistics.median(controls), 3),
            "gate_deliveries_per_s_quiet": round(statistics.median(quiet)),
            "gate_deliveries_per_s_flooded": round(statistics.median(flooded)),
            "flood_threads": threads, "flood_requests": totals,
            "flood_rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flood", description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lg-flood-") as tmp:
        print(json.dumps(measure(server.url, Path(tmp), args.n, args.rounds, args.threads),
                         indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
