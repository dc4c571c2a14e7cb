"""Ed25519 (version 3) against HMAC (version 2) envelopes: ``Gate.deliver`` per second of wire
bytes signed each way, on one Redis connection, rounds alternating; the figure is the median
of the rounds' ratios (v3 / v2). Not part of ``make bench``'s table yet:

    python -m benchmarks.signing [--n 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from leasegate.broker import Client, Envelope, Run, generate_pems, load_signing_key
from leasegate.ownership.registry import connect
from leasegate.testing.redis_server import RedisServer

from .common import SECRET, server_ms
from .gatecall import gate_rate


def wires(run: Run, key: bytes | Any, n: int) -> list[bytes]:
    now = server_ms(run.client.redis)
    return [Envelope.create(key, callback_id=uuid.uuid4().hex, session_key=run.session_key,
                            run_id=run.run_id, fence=run.fence,
                            incarnation=run.lease.incarnation, tool="image_generate",
                            task_args={}, submitted_at_ms=now,
                            deadline_at_ms=now + 3_600_000).encode() for _ in range(n)]


def measure(url: str, n: int, rounds: int) -> dict[str, Any]:
    private_pem, public_pem = generate_pems()
    namespace = f"bsig{uuid.uuid4().hex[:6]}"
    # one gate that accepts both versions: only the signature check differs
    client = Client(connect(url), namespace, secret=SECRET, verify_keys=[public_pem])
    run = client.start_run("bench:signing", prompt="p", ttl=1800)
    keys = {"v2": SECRET.encode(), "v3": load_signing_key(private_pem)}
    result = {"images": [{"width": 256, "height": 256}]}
    gate_rate(client, wires(run, keys["v2"], 200) + wires(run, keys["v3"], 200), result)
    rates: dict[str, list[float]] = {"v2": [], "v3": []}
    for _ in range(rounds):
        for version, key in keys.items():
            rates[version].append(gate_rate(client, wires(run, key, n), result))
    ratios = sorted(b / a for a, b in zip(rates["v2"], rates["v3"], strict=True))
    return {"ed25519_vs_hmac_gate_ratio": round(ratios[len(ratios) // 2], 3),
            "hmac_deliveries_per_s": [round(x) for x in rates["v2"]],
            "ed25519_deliveries_per_s": [round(x) for x in rates["v3"]],
            "calls_per_round": n, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.signing")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with RedisServer() as server:
        print(json.dumps(measure(server.url, args.n, args.rounds), indent=2))


if __name__ == "__main__":
    main()
