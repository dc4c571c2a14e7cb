"""The console's dead-letter list at 100,000 letters vs at 1,000, through a real
``leasegate serve`` over HTTP: a ratio of page times measured in the same run on the same
Redis (``python -m benchmarks.console [--letters N]``).

Each namespace gets its letters through the library's own Lua (``scale.fill_letters``:
callbacks of released runs over session keys and 5 tools); one ``serve`` process per
namespace. Timed (median of ``--repeats``): the JSON page of 50
(``GET /v1/dead-letters?limit=50``), the HTML page of 50 (``GET /dead-letters``, the
console's default ``state=quarantined``), the page 10 pages deep (its cursor), and a page
filtered by tool plus kind and state (an index plus the checks no index makes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from leasegate.ownership import connect
from leasegate.testing.redis_server import RedisServer
from tests.support.gateway import GatewayProcess

from .scale import client_for, fill_letters

PAGES: dict[str, tuple[str, dict[str, str]]] = {
    "json_page": ("/v1/dead-letters", {"limit": "50"}),
    "html_page": ("/dead-letters", {}),
    "filtered_page": ("/v1/dead-letters", {"limit": "50", "tool": "tts", "kind": "result",
                                           "state": "quarantined"}),
}


def timed(http: httpx.Client, path: str, params: dict[str, str], repeats: int) -> float:
    """Median milliseconds of one GET (a page of 50 letters, each asserted)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reply = http.get(path, params=params)
        times.append((time.perf_counter() - start) * 1000)
        assert reply.status_code == 200, reply.text[:300]
        if path.startswith("/v1"):
            assert len(reply.json()["letters"]) == 50
        else:
            assert reply.text.count("<tr data-letter=") == 50
    return statistics.median(times)


def deep_cursor(http: httpx.Client, pages: int = 10) -> str:
    cursor = ""
    for _ in range(pages):
        cursor = http.get("/v1/dead-letters", params={"limit": "50", "cursor": cursor}
                          ).json()["cursor"]
    return cursor


def measure(letters: int, small: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"letters_loaded": letters, "letters_small": small,
                           "repeats": repeats, "page_size": 50}
    with tempfile.TemporaryDirectory() as work, RedisServer() as redis_server:
        r = connect(redis_server.url)
        timings: dict[int, dict[str, float]] = {}
        for count in (small, letters):
            namespace = f"console{uuid.uuid4().hex[:6]}"
            fill_started = time.perf_counter()
            fill_letters(client_for(r, namespace, dlq_max_len=max(count, 100_000) + 10),
                         count)
            out[f"fill_seconds_{count}"] = round(time.perf_counter() - fill_started, 1)
            folder = Path(work) / namespace
            folder.mkdir()
            with GatewayProcess(redis_server.url, namespace, folder) as server, \
                    server.client("operator") as http:
                for path, params in PAGES.values():  # warm: templates, connections
                    http.get(path, params=params)
                found = {name: timed(http, path, params, repeats)
                         for name, (path, params) in PAGES.items()}
                cursor = deep_cursor(http)
                found["deep_page"] = timed(http, "/v1/dead-letters",
                                           {"limit": "50", "cursor": cursor}, repeats)
                timings[count] = found
        for name in timings[small]:
            out[f"{name}_ms_at_{small}"] = round(timings[small][name], 2)
            out[f"{name}_ms_at_{letters}"] = round(timings[letters][name], 2)
            out[f"{name}_ratio"] = round(timings[letters][name] / timings[small][name], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--letters", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(measure(args.letters, args.small, args.repeats), indent=2))


if __name__ == "__main__":
    main()
