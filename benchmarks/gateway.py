"""The runtime API's figures (issue 13), on real processes: a ``leasegate serve``, a real
``celery worker``, one Redis.

1. Round trip (submit one image task, receive its result) through the gateway (HTTP submit,
   the result pushed over SSE) vs through the Python ``Client`` directly (submit, XREAD
   BLOCK), alternating rounds; the ratio of round trips per second, target >= 0.7.
2. 1,000 concurrent SSE streams held by one ``serve`` process: results delivered by the gate
   to every run while all are held; delay from the gate's verdict (the entry's
   ``delivered_at``, Redis server time) to the client's receipt, p50/p99 (target p99 < 50
   ms); the serve process's RSS growth per idle stream.

    python -m benchmarks.gateway [--streams 1000] [--trips 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer, terminate

from .common import SECRET, Worker, percentile, running, wait_until

TOKEN = "bench-runtime-token-0123456789"
# The serve's rate limit, kept on (every request still pays its Redis call, as in production)
# but sized for the bench: one token opens every stream (1,000 POST /v1/runs, then 1,000 GET
# /events at once), far past the default 50/s, burst 100, meant for one runtime.
BENCH_RATE_LIMIT = {"LEASEGATE_RATE_LIMIT": "100000", "LEASEGATE_RATE_BURST": "100000"}


def ok(reply: httpx.Response, what: str) -> httpx.Response:
    """``reply`` if it is a 2xx; else RuntimeError naming the request, status and body (a 429
    from the rate limit, a 4xx, a 5xx), never a KeyError on a body that is an error."""
    if not reply.is_success:
        try:
            body = reply.text[:1000]
        except httpx.ResponseNotRead:  # a stream: its caller reads the body first
            body = "(body not read)"
        raise RuntimeError(f"gateway bench: {what} refused: {reply.status_code} {body}")
    return reply


class Serve:
    """``leasegate serve`` as a child process with a one-token book (runtime, ``bench:``)."""

    def __init__(self, redis_url: str, namespace: str, workdir: Path, port: int) -> None:
        book = workdir / "tokens.toml"
        book.write_text(f'[[token]]\nname = "bench"\nrole = "runtime"\nsessions = ["bench:"]\n'
                        f'sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n')
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "LEASEGATE_REDIS_URL": redis_url, "LEASEGATE_SECRET": SECRET,
                    "LEASEGATE_NAMESPACE": namespace, "LEASEGATE_TOKENS_FILE": str(book),
                    "LEASEGATE_ARTIFACT_DIR": str(workdir / "artifacts"), **BENCH_RATE_LIMIT}
        self.args = [sys.executable, "-c", "from leasegate.gateway.cli import main; "
                     "raise SystemExit(main())", "serve", "--port", str(port),
                     "--log-level", "warning"]
        self.log = open(workdir / "serve.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.args, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"leasegate serve exited; see {workdir / 'serve.log'}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, 30, "leasegate serve to answer", interval=0.05)

    def rss(self) -> int:
        """Resident set size in bytes (/proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        terminate(self.process, 10.0)
        self.log.close()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


IMAGE_ARGS = {"prompt": "a fox", "size": "256x256"}


def _sse_entries(lines: Any) -> Any:
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if fields.get("event") == "entry":
                yield json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")


def round_trips(client: Client, url: str, trips: int, rounds: int = 4) -> dict[str, Any]:
    """Round trips per second, direct and through the gateway, alternating rounds."""
    direct: list[float] = []
    gateway: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for _ in range(rounds):
            run = client.start_run(f"bench:direct-{uuid.uuid4().hex[:8]}", "p", ttl=600)
            t0 = time.perf_counter()
            for _ in range(trips):
                cb = run.submit("image_generate", **IMAGE_ARGS)
                if cb not in run.inbox.wait_for([cb], timeout=30):
                    raise RuntimeError("direct: no result within 30 s")
            direct.append(trips / (time.perf_counter() - t0))
            run.release()

            started = http.post("/v1/runs", json={"session_key": f"bench:gw-{uuid.uuid4().hex[:8]}",
                                                  "prompt": "p", "ttl": 600})
            ref = ok(started, "POST /v1/runs").json()["run"]
            with http.stream("GET", f"/v1/runs/{ref}/events") as stream:
                if not stream.is_success:
                    stream.read()
                    ok(stream, f"GET /v1/runs/{ref}/events")
                entries = _sse_entries(stream.iter_lines())
                next(entries)  # the prompt: the stream is held
                t0 = time.perf_counter()
                for _ in range(trips):
                    reply = http.post(f"/v1/runs/{ref}/tasks",
                                      json={"tool": "image_generate", "args": IMAGE_ARGS})
                    cb = ok(reply, f"POST /v1/runs/{ref}/tasks").json()["callback_id"]
                    if next(entries)["callback_id"] != cb:
                        raise RuntimeError("gateway: an unexpected entry")
                gateway.append(trips / (time.perf_counter() - t0))
            ok(http.post(f"/v1/runs/{ref}/release"), f"POST /v1/runs/{ref}/release")
    d, g = sorted(direct)[len(direct) // 2], sorted(gateway)[len(gateway) // 2]
    return {"gateway_round_trips_per_s": round(g, 1), "direct_round_trips_per_s": round(d, 1),
            "gateway_round_trip_ratio": round(g / d, 3), "gateway_trips_per_round": trips}


async def _hold(http: httpx.AsyncClient, ref: str, connected: asyncio.Event,
                delays: list[float]) -> None:
    async with http.stream("GET", f"/v1/runs/{ref}/events") as stream:
        if not stream.is_success:
            await stream.aread()
            ok(stream, f"GET /v1/runs/{ref}/events")
        fields: dict[str, str] = {}
        async for line in stream.aiter_lines():
            if line == "":
                if fields.get("event") == "entry":
                    entry = json.loads(fields["data"])
                    if entry["seq"] == 1:
                        connected.set()
                    else:
                        delays.append(time.time() - entry["provenance"]["delivered_at"])
                        return
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.lstrip(" ")


async def _all_connected(connected: list[asyncio.Event], holders: list[asyncio.Task[None]],
                         timeout: float) -> None:
    """Until every stream has its prompt; a holder that fails first (a refused stream) raises
    its error now, not a timeout later."""
    everyone = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in connected)))
    pending: set[asyncio.Future[Any]] = {everyone, *holders}
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while not everyone.done():
            left = deadline - asyncio.get_running_loop().time()
            done, pending = await asyncio.wait(pending, timeout=max(0.0, left),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError(f"gateway bench: {sum(not e.is_set() for e in connected)} "
                                   f"of {len(connected)} streams not connected in {timeout} s")
            for holder in done - {everyone}:
                holder.result()  # raises what the holder raised
                raise RuntimeError("gateway bench: a stream ended before its prompt")
    except BaseException:
        everyone.cancel()
        for holder in holders:
            holder.cancel()
        raise


async def _streams(client: Client, serve: Serve, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=serve.url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(120, connect=30)) as http:
        started = []
        for i in range(n):
            reply = await http.post("/v1/runs", json={"session_key": f"bench:s{i}-"
                                                      f"{uuid.uuid4().hex[:6]}",
                                                      "prompt": "p", "ttl": 600})
            started.append(ok(reply, "POST /v1/runs").json())
        rss_before = serve.rss()
        connected = [asyncio.Event() for _ in range(n)]
        delays: list[float] = []
        tasks = [asyncio.create_task(_hold(http, s["run"], e, delays))
                 for s, e in zip(started, connected, strict=True)]
        await _all_connected(connected, tasks, 120)
        await asyncio.sleep(2.0)  # idle: every stream parked in XREAD BLOCK
        rss_idle = serve.rss()

        def deliver() -> None:  # the gate's verdicts, paced, from another thread
            for s in started:
                run = client.attach(s["session_key"], s["run_id"])
                env = run.envelope("image_generate", {}, deadline=60)
                client.gate.deliver(env, {"ok": True})
                time.sleep(0.002)
        # a failing sender raises here at once, as does a failing stream
        await asyncio.wait_for(asyncio.gather(asyncio.to_thread(deliver), *tasks), 300)
    if len(delays) != n:
        raise RuntimeError(f"gateway bench: {n - len(delays)} of {n} streams ended without "
                           f"their result")
    ms = [d * 1000 for d in delays]
    return {"sse_streams": n, "sse_delivered": len(ms),
            "sse_delivery_p50_ms": round(percentile(ms, 50), 2),
            "sse_delivery_p99_ms": round(percentile(ms, 99), 2),
            "sse_delivery_max_ms": round(max(ms), 2),
            "sse_rss_bytes_per_idle_stream": round((rss_idle - rss_before) / n),
            "serve_rss_bytes_idle_streams": rss_idle}


def measure(redis_url: str, workdir: Path, streams: int = 1000,
            trips: int = 100) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    namespace = f"gwb{uuid.uuid4().hex[:6]}"
    client = Client.from_url(redis_url, namespace, secret=SECRET.encode())
    worker = Worker("leasegate.workers", redis_url, namespace, workdir, name="gw1",
                    queues="media", concurrency=1, loglevel="INFO",
                    LEASEGATE_GENERATOR_LATENCY="0", LEASEGATE_MAINTENANCE_INTERVAL="0",
                    LEASEGATE_ARTIFACT_DIR=str(workdir / "artifacts"))
    serve = Serve(redis_url, namespace, workdir, free_port())
    try:
        with running(worker):
            worker.wait_log(" ready.")
            results = round_trips(client, serve.url, trips)
        results.update(asyncio.run(_streams(client, serve, streams)))
    finally:
        serve.stop()
        client.redis.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--trips", type=int, default=100)
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lg-gw-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = measure(server.url, workdir, args.streams, args.trips)
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
