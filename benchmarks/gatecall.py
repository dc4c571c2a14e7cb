"""Figure 2: ``Gate.deliver`` per second from Python on one connection vs plain ``XADD`` per
second on the same connection (both one round trip).

The deliveries are what a worker hands the gate: envelope wire bytes (decoded and verified by
the gate) and a small result, each a new callback to a live run. The XADD writes the same
fields an inbox entry has. Rounds alternate between the two and the ratio is the median of
the rounds' ratios. Beside it, each one's time inside Redis per call (``INFO commandstats``:
the gate's EVALSHA, with every command its script runs, against the XADD), read per round.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from leasegate.broker import Client, Envelope, pack_body

from .common import server_ms


def envelopes(client: Client, run: Any, n: int, tool: str = "image_generate") -> list[bytes]:
    """``n`` signed envelopes of new callbacks to ``run``, as wire bytes."""
    now = server_ms(client.redis)
    return [Envelope.create(client.secrets[0], callback_id=uuid.uuid4().hex,
                            session_key=run.session_key, run_id=run.run_id, fence=run.fence,
                            incarnation=run.lease.incarnation, tool=tool, task_args={},
                            submitted_at_ms=now,
                            deadline_at_ms=now + 3_600_000).encode() for _ in range(n)]


def gate_rate(client: Client, wires: list[bytes], result: Any) -> float:
    deliver = client.gate.deliver
    start = time.perf_counter()
    for wire in wires:
        deliver(wire, result)
    return len(wires) / (time.perf_counter() - start)


def redis_usec(r: Any, command: str) -> float:
    """Microseconds per call of ``command`` inside Redis since the last CONFIG RESETSTAT."""
    stats = r.info("commandstats").get(f"cmdstat_{command}", {})
    return float(stats.get("usec_per_call", 0.0))


def measure(client: Client, n: int, rounds: int) -> dict[str, Any]:
    r = client.redis
    run = client.start_run(f"bench:gate:{uuid.uuid4().hex[:8]}", prompt="p", ttl=1800)
    result = {"images": [{"width": 256, "height": 256}]}
    stream = f"{client.keys.namespace}:bench:xadd"
    now = server_ms(r)
    fields = {"seq": 2, "role": "tool", "kind": "result", "cb": uuid.uuid4().hex,
              "body": pack_body("result", result, 1 << 20), "arts": pack_body("a", [], 1 << 20),
              "tool": "image_generate", "task": uuid.uuid4().hex, "fence": run.fence,
              "at": now, "sub": now}
    gate_rates: list[float] = []
    xadd_rates: list[float] = []
    gate_usec: list[float] = []
    xadd_usec: list[float] = []
    gate_rate(client, envelopes(client, run, 200), result)  # warm: scripts loaded
    for _ in range(rounds):
        wires = envelopes(client, run, n)
        r.config_resetstat()
        start = time.perf_counter()
        for _ in range(n):
            r.xadd(stream, fields)  # type: ignore[arg-type]
        xadd_rates.append(n / (time.perf_counter() - start))
        xadd_usec.append(redis_usec(r, "xadd"))
        r.config_resetstat()
        gate_rates.append(gate_rate(client, wires, result))
        gate_usec.append(redis_usec(r, "evalsha"))
    connections = len(r.connection_pool._available_connections) + len(  # type: ignore[attr-defined]
        r.connection_pool._in_use_connections)  # type: ignore[attr-defined]
    ratios = sorted(g / x for g, x in zip(gate_rates, xadd_rates, strict=True))
    r.delete(stream)
    return {
        "gate_vs_xadd_ratio": round(ratios[len(ratios) // 2], 3),
        "gate_deliveries_per_s": [round(x) for x in gate_rates],
        "xadd_per_s": [round(x) for x in xadd_rates],
        "gate_redis_usec_per_call": round(sorted(gate_usec)[len(gate_usec) // 2], 2),
        "xadd_redis_usec_per_call": round(sorted(xadd_usec)[len(xadd_usec) // 2], 2),
        "calls_per_round": n,
        "rounds": rounds,
        "connections_used": connections,
    }
