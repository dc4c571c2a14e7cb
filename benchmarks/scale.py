"""Figure 4: gate throughput with 100,000 live leases and 100,000 dead letters vs with 10 and
0, on the same Redis; and the dead-letter list's first page at 100,000 letters vs at 10.

The gate workload alternates a delivery to a live run and a quarantine (a callback to a
released run), so both paths, the dead-letter stream, its indexes and its retention sweep are
in it. The fill goes through the library's own code (``Client.start_run``, ``Gate.deliver``)
with its Lua calls queued on pipelines (``common.Pipelined``).

The default ``dlq_max_len`` is 100,000: at that many letters, every new quarantine also
retires the oldest one (a tombstone). ``scale_ratio`` is measured with the cap above the fill
(growth only: the scale question); ``scale_ratio_at_cap`` on the same data with the cap set to
the fill, where each quarantine also trims one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from leasegate.broker import Client, Settings
from leasegate.broker.gate import Gate

from .common import SECRET, Pipelined, median, used_memory
from .gatecall import envelopes

TOOLS = ("image_generate", "tts", "video", "search", "ocr")
LETTERS_PER_RUN = 100


def client_for(r: redis.Redis, namespace: str, **settings: Any) -> Client:
    return Client(r, namespace, secret=SECRET.encode(), settings=Settings(**settings))


def fill_live(client: Client, count: int) -> None:
    """``count`` live runs of as many session keys, each with its prompt."""
    client.check_secret()  # its fingerprint record now, on the real scripts: start-run only below
    real = client.scripts
    pipelined = Pipelined(real, client.redis, [0, 1, 0, 0, "", 0, "0-0"],
                          lambda reply: int(reply[0]) == 0)
    client.scripts = pipelined  # type: ignore[assignment]
    try:
        for i in range(count):
            client.start_run(f"bench:live:{i}", prompt="a prompt of a live run", ttl=3000)
        pipelined.flush()
    finally:
        client.scripts = real


def fill_letters(client: Client, count: int) -> None:
    """``count`` dead letters: callbacks of released runs, spread over session keys and
    tools (so the reason, session and tool indexes all grow)."""
    pipelined = Pipelined(client.scripts, client.redis, "0\nrun_released\n0-0\n0\n0\n",
                          lambda reply: reply.startswith(b"0\n"))  # deliver-9.lua's reply
    gate = Gate(client.redis, client.keys, pipelined, client.secrets,  # type: ignore[arg-type]
                client.settings)
    made = 0
    while made < count:
        run = client.start_run(f"bench:dead:{made // LETTERS_PER_RUN}", prompt="p", ttl=600)
        run.release("failed")
        n = min(LETTERS_PER_RUN, count - made)
        tool = TOOLS[(made // LETTERS_PER_RUN) % len(TOOLS)]
        for wire in envelopes(client, run, n, tool=tool):
            gate.deliver(wire, {"images": 1})
        made += n
    pipelined.flush()


def gate_mix(client: Client, n: int) -> float:
    """Gate calls per second: deliveries to a live run and quarantines, alternating."""
    tag = uuid.uuid4().hex[:8]
    live = client.start_run(f"bench:mix:{tag}:live", prompt="p", ttl=1800)
    dead = client.start_run(f"bench:mix:{tag}:dead", prompt="p", ttl=1800)
    dead.release("failed")
    to_live = envelopes(client, live, n // 2)
    to_dead = envelopes(client, dead, n - n // 2)
    wires = [w for pair in zip(to_live, to_dead, strict=False) for w in pair]
    deliver = client.gate.deliver
    start = time.perf_counter()
    for wire in wires:
        deliver(wire, {"images": 1})
    return len(wires) / (time.perf_counter() - start)


def first_page(client: Client, repeats: int = 30, limit: int = 10, **filters: Any) -> float:
    """Median milliseconds of ``dead_letters.list(limit=...)`` (newest first). The same page
    size at 10 letters and at 100,000, so both pages hold as many letters."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        page = client.dead_letters.list(limit=limit, **filters)
        times.append((time.perf_counter() - start) * 1000)
        assert len(page.letters) == limit
    return median(times)


def measure(r: redis.Redis, live: int, letters: int, n: int, rounds: int) -> dict[str, Any]:
    """Small, then loaded, then small again on the emptied server (FLUSHDB): the small
    figure is the median of both small passes, so a drift of the machine's speed during the
    run does not land on one side only. Run it last: it empties the server."""
    tag = uuid.uuid4().hex[:6]
    uncapped = {"dlq_max_len": 10 * letters + 10 * n * rounds}

    def small_pass(name: str) -> list[float]:
        small = client_for(r, f"sc{tag}{name}", **uncapped)
        fill_live(small, 10)
        return [gate_mix(small, n) for _ in range(rounds)]

    small_rates = small_pass("s1")
    ten = client_for(r, f"sc{tag}t")
    fill_letters(ten, 10)
    page_10 = first_page(ten)
    page_10_reason = first_page(ten, reason="run_released")
    page_10_sk = first_page(ten, session_key="bench:dead:0")

    big = client_for(r, f"sc{tag}b", **uncapped)
    before = used_memory(r)
    start = time.perf_counter()
    fill_live(big, live)
    fill_letters(big, letters)
    fill_seconds = time.perf_counter() - start
    filled_bytes = used_memory(r) - before
    capped = client_for(r, big.keys.namespace, dlq_max_len=letters)  # the same data, at cap
    big_rates: list[float] = []
    capped_rates: list[float] = []
    for _ in range(rounds):
        big_rates.append(gate_mix(big, n))
    held = capped.dead_letters.count()
    for _ in range(rounds):
        capped_rates.append(gate_mix(capped, n))
    page_big = first_page(big)
    page_big_reason = first_page(big, reason="run_released")
    page_big_sk = first_page(big, session_key=f"bench:dead:{letters // LETTERS_PER_RUN - 1}")
    page_big_50 = first_page(big, limit=50)
    keys_loaded = int(r.dbsize())

    r.flushdb()
    small_rates += small_pass("s2")
    small = median(small_rates)
    return {
        "scale_ratio": round(median(big_rates) / small, 3),
        "scale_ratio_at_cap": round(median(capped_rates) / small, 3),
        "gate_calls_per_s_small": [round(x) for x in small_rates],
        "gate_calls_per_s_loaded": [round(x) for x in big_rates],
        "gate_calls_per_s_loaded_at_cap": [round(x) for x in capped_rates],
        "live_leases_loaded": live,
        "dead_letters_loaded": letters,
        "dead_letters_held_at_cap_start": held,
        "redis_keys_loaded": keys_loaded,
        "fill_seconds": round(fill_seconds, 1),
        "fill_redis_bytes": filled_bytes,
        "dlq_first_page_ms_at_10": round(page_10, 3),
        "dlq_first_page_ms_loaded": round(page_big, 3),
        "dlq_first_page_ratio": round(page_big / page_10, 2),
        "dlq_first_page_size": 10,
        "dlq_page_of_50_ms_loaded": round(page_big_50, 3),
        "dlq_first_page_by_reason_ms": [round(page_10_reason, 3), round(page_big_reason, 3)],
        "dlq_first_page_by_session_ms": [round(page_10_sk, 3), round(page_big_sk, 3)],
        "gate_calls_per_round": n,
    }
