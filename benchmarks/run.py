"""``make bench``: every figure against a baseline measured in the same run on the same Redis;
prints a table and writes ``benchmarks/results/latest.json``.

    python -m benchmarks.run [--quick] [--smoke] [--only gate,latency,...] [--output PATH]

``--quick`` is a reduced pass (under a minute on 2 cores) with the same keys; its scale figure
uses 10,000 leases and letters instead of 100,000 (the JSON says which).

``--smoke`` (``make bench-smoke``, which ``make test`` runs, with ``--quick``): the pass must
finish and write its JSON (``benchmarks/results/smoke.json``, never a full run's
``latest.json``). In every mode the targets are reported, not enforced, and the exit status is
1 when a step raises, when a figure of a step that ran is missing or not a finite number, or
when ``leaked_keys`` is not 0 (a correctness check, not a target).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leasegate.broker import Client
from leasegate.ownership.registry import connect
from leasegate.testing.redis_server import RedisServer

from . import cluster, e2e, gatecall, gateway, latency, memory, scale
from .common import SECRET, busy_processes, loadavg, machine

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = ("gate", "latency", "memory", "e2e", "scale", "gateway", "cluster")
SIZES: dict[str, dict[str, int]] = {
    "full": {"gate_n": 5000, "gate_rounds": 5, "latency": 1000, "mem_runs": 2000,
             "e2e_n": 3000, "e2e_rounds": 3, "scale_live": 100_000,
             "scale_letters": 100_000, "scale_n": 4000, "scale_rounds": 4,
             "gw_streams": 1000, "gw_trips": 100, "cluster_n": 3200, "cluster_sessions": 10_000},
    "quick": {"gate_n": 1500, "gate_rounds": 3, "latency": 200, "mem_runs": 300,
              "e2e_n": 800, "e2e_rounds": 1, "scale_live": 10_000,
              "scale_letters": 10_000, "scale_n": 1000, "scale_rounds": 2,
              "gw_streams": 200, "gw_trips": 20, "cluster_n": 640, "cluster_sessions": 10_000},
}
# key -> (target, how it is compared, format)
TARGETS: dict[str, tuple[float, str, str]] = {
    "e2e_ratio": (0.90, ">=", "{:.2f}"),
    "gate_vs_xadd_ratio": (0.80, ">=", "{:.2f}"),
    "latency_p50_ms": (1.0, "<=", "{:.3f} ms"),
    "latency_p99_ms": (5.0, "<=", "{:.3f} ms"),
    "scale_ratio": (0.90, ">=", "{:.2f}"),
    "dlq_first_page_ratio": (10.0, "<=", "{:.2f}x"),
    "redis_bytes_per_live_run": (float("nan"), "", "{:.0f} B"),
    "redis_bytes_for_8mb_image": (4096, "<", "{:.0f} B"),
    "leaked_keys": (0, "==", "{:.0f}"),
    "gateway_round_trip_ratio": (0.70, ">=", "{:.2f}"),
    "sse_delivery_p99_ms": (50.0, "<", "{:.2f} ms"),
    "sse_rss_bytes_per_idle_stream": (float("nan"), "", "{:.0f} B"),
    "cluster_gate_cost_ratio": (1.10, "<=", "{:.2f}x"),
    "cluster_key_spread": (1.20, "<=", "{:.2f}"),
    "cluster_failover_s": (float("nan"), "", "{:.1f} s"),
}

# The figures each step must produce (the table's rows, and what the JSON promises)
FIGURE_KEYS: dict[str, tuple[str, ...]] = {
    "gate": ("gate_vs_xadd_ratio",),
    "latency": ("latency_p50_ms", "latency_p99_ms"),
    "memory": ("redis_bytes_per_live_run", "redis_bytes_for_8mb_image", "leaked_keys"),
    "e2e": ("e2e_ratio",),
    "scale": ("scale_ratio", "scale_ratio_at_cap", "dlq_first_page_ratio"),
    "gateway": ("gateway_round_trip_ratio", "sse_delivery_p99_ms",
                "sse_rss_bytes_per_idle_stream"),
    "cluster": ("cluster_gate_cost_ratio", "cluster_key_spread", "cluster_failover_s"),
}
# Correctness, not performance: enforced in every mode (a target is only reported)
MUST_EQUAL: dict[str, float] = {"leaked_keys": 0}


def problems(results: dict[str, Any], ran: list[str]) -> list[str]:
    """Why this pass is not a valid result: a figure of a step that ran is missing or not a
    finite number, or a correctness check failed."""
    found = []
    for name in ran:
        for key in FIGURE_KEYS[name]:
            value = results.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                found.append(f"{key} (step {name}) is missing: {value!r}")
            elif not math.isfinite(value):
                found.append(f"{key} (step {name}) is not a finite number: {value!r}")
    for key, wanted in MUST_EQUAL.items():
        if key in results and results[key] != wanted:
            extra = (f": {results['leaked_key_names']}" if key == "leaked_keys" else "")
            found.append(f"{key} is {results[key]}, must be {wanted:g}{extra}")
    return found


def met(value: float, target: float, op: str) -> str:
    if not op:
        return "-"
    ok = {">=": value >= target, "<=": value <= target, "<": value < target,
          "==": value == target}[op]
    return "yes" if ok else "NO"


def details(key: str, r: dict[str, Any]) -> str:
    if key == "e2e_ratio":
        return (f"owned {r['owned_tasks_per_s']} vs plain {r['plain_tasks_per_s']} tasks/s "
                f"({r['worker_pool']}, {r['tasks_per_round']} per round)")
    if key == "gate_vs_xadd_ratio":
        return f"gate {r['gate_deliveries_per_s']} vs XADD {r['xadd_per_s']} per s"
    if key == "latency_p50_ms":
        return (f"{r['latency_samples']} samples; deliver call -> wake p50 "
                f"{r['deliver_call_to_wake_p50_ms']} ms")
    if key == "latency_p99_ms":
        return (f"max {r['latency_max_ms']} ms; deliver call -> wake p99 "
                f"{r['deliver_call_to_wake_p99_ms']} ms")
    if key == "scale_ratio":
        return (f"{r['live_leases_loaded']:,} leases + {r['dead_letters_loaded']:,} letters: "
                f"{r['gate_calls_per_s_loaded']} vs {r['gate_calls_per_s_small']} calls/s "
                f"(half delivered, half quarantined); at the cap "
                f"{r['scale_ratio_at_cap']}")
    if key == "dlq_first_page_ratio":
        return (f"page of 10: {r['dlq_first_page_ms_loaded']} ms at "
                f"{r['dead_letters_loaded']:,} vs {r['dlq_first_page_ms_at_10']} ms at 10 letters")
    if key == "redis_bytes_per_live_run":
        return (f"used_memory / run: lease + 40 B prompt + one delivered image callback "
                f"(bare run {r['redis_bytes_per_live_run_bare']} B); MEMORY USAGE of its keys "
                f"{r['redis_bytes_per_live_run_memory_usage']} B, of which the inbox stream "
                f"{r['redis_bytes_per_inbox_stream']} B")
    if key == "redis_bytes_for_8mb_image":
        return (f"used_memory {r['redis_bytes_for_8mb_image_used_memory']} B, MEMORY USAGE "
                f"{r['redis_bytes_for_8mb_image_memory_usage']} B per delivery")
    if key == "leaked_keys":
        return (f"after {r['seconds_to_settle']} s; kept by policy: fences "
                f"{r['fence_counters_left']}, {', '.join(r['kept_by_policy']) or 'nothing'}")
    if key == "gateway_round_trip_ratio":
        return (f"image submit + result: HTTP + SSE {r['gateway_round_trips_per_s']} vs Python "
                f"Client {r['direct_round_trips_per_s']} per s")
    if key == "sse_delivery_p99_ms":
        return (f"{r['sse_streams']} streams held by one serve process; gate verdict -> "
                f"client receipt p50 {r['sse_delivery_p50_ms']} ms, max "
                f"{r['sse_delivery_max_ms']} ms")
    if key == "cluster_gate_cost_ratio":
        return (f"gate's EVALSHA usec/call on a 3+3 cluster {r['cluster_gate_usec_per_call']} vs "
                f"one server with a replica {r['standalone_gate_usec_per_call']}")
    if key == "cluster_key_spread":
        return (f"keys per primary after {r['cluster_key_spread_sessions']:,} session keys: "
                f"{r['cluster_keys_per_primary']}")
    if key == "cluster_failover_s":
        return (f"primary SIGKILLed under deliveries: {r['cluster_failover_failed_calls']} calls "
                f"unavailable for {r['cluster_failover_unavailable_s']} s (retried), doubled "
                f"{r['cluster_failover_doubled']}, acknowledged but lost "
                f"{r['cluster_failover_lost']}")
    if key == "sse_rss_bytes_per_idle_stream":
        return "serve RSS growth / idle streams (each holds a Redis connection in XREAD BLOCK)"
    return ""


def table(results: dict[str, Any]) -> str:
    rows = ["| figure | measured | target | met | details |", "|---|---|---|---|---|"]
    for key, (target, op, fmt) in TARGETS.items():
        if key not in results:
            continue
        value = results[key]
        shown_target = "" if not op else f"{op} {fmt.format(target)}"
        rows.append(f"| {key} | {fmt.format(value)} | {shown_target} | "
                    f"{met(value, target, op)} | {details(key, results)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced pass, under a minute")
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--redis-server", default=None, help="redis-server binary to use")
    parser.add_argument("--smoke", action="store_true",
                        help="a check that every step runs (make test): writes smoke.json; "
                             "exit 1 on a crash, a missing figure or a leaked key")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: benchmarks/results/latest.json (smoke.json with --smoke)")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = RESULTS / ("smoke.json" if args.smoke else "latest.json")
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    size = SIZES["quick" if args.quick else "full"]
    # every quarantine here is on purpose: keep its JSON log line (a WARNING) off the table
    logging.getLogger("leasegate.quarantine").setLevel(logging.ERROR)
    started = time.time()
    results: dict[str, Any] = {"quick": args.quick, "smoke": args.smoke, "sizes": size,
                               "load_before": loadavg(), "busy_before": busy_processes()}
    with RedisServer(args.redis_server) as server, \
            tempfile.TemporaryDirectory(prefix="leasegate-bench-") as workdir:
        r = connect(server.url)
        client = Client(r, f"bench{uuid.uuid4().hex[:6]}", secret=SECRET.encode())
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "gate": lambda: gatecall.measure(client, size["gate_n"], size["gate_rounds"]),
            "latency": lambda: latency.measure(client, server.url, size["latency"]),
            "memory": lambda: memory.measure(client, server.url, size["mem_runs"]),
            "e2e": lambda: e2e.measure(server.url, Path(workdir), size["e2e_n"],
                                       size["e2e_rounds"]),
            "scale": lambda: scale.measure(r, size["scale_live"], size["scale_letters"],
                                           size["scale_n"], size["scale_rounds"]),
            "gateway": lambda: gateway.measure(server.url, Path(workdir) / "gateway",
                                               size["gw_streams"], size["gw_trips"]),
            "cluster": lambda: cluster.measure(size["cluster_n"], size["cluster_sessions"]),
        }
        ran = [name for name in FIGURES if name in only]
        for name in ran:
            t0 = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                results.update(steps[name]())
            except BaseException:
                print(f"[bench] {name} FAILED after {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
                raise
            results.setdefault("seconds_per_figure", {})[name] = round(
                time.perf_counter() - t0, 1)
            results.setdefault("busy_after_figure", {})[name] = busy_processes(0.5)
            print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s (load "
                  f"{loadavg()})", file=sys.stderr, flush=True)
        results["machine"] = machine(server.version())
        results["redis_used_memory_end"] = int(r.info("memory")["used_memory"])
        r.close()
    results["load_after"] = loadavg()
    results["seconds"] = round(time.time() - started, 1)
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    results["problems"] = found = problems(results, ran)
    m = results["machine"]
    mode = ("quick" if args.quick else "full") + (", smoke" if args.smoke else "")
    print(f"\nleasegate benchmarks ({mode}), "
          f"{m['nproc']} x {m['cpu']}, Python {m['python']}, Redis {m['redis']}, "
          f"Celery {m['celery']}; load {results['load_before']} -> {results['load_after']}, "
          f"{results['seconds']} s\n")
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.output}")
    if found:
        print("\nbench FAILED:\n" + "\n".join(f"  {p}" for p in found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
