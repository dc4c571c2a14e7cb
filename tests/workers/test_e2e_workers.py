"""End to end: real ``celery worker`` processes (prefork), a real redis-server, the OpenClaw
scenarios (#86490, #88001, #92120), worker loss and skipped work."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from leasegate.broker import Client, DeadLetter, Run
from leasegate.ownership import RunState
from leasegate.testing.redis_server import RedisServer
from tests.support.celery_workers import SECRET, WorkerProcess
from tests.support.helpers import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def e2e_namespace() -> str:
    return f"e2e{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(e2e_redis: RedisServer, e2e_namespace: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One shared worker: prefork, two children, images take 0.6 s in ten checkpoints."""
    proc = WorkerProcess(e2e_redis.url, e2e_namespace, tmp_path_factory.mktemp("worker"),
                         concurrency=2, LEASEGATE_GENERATOR_LATENCY="0.6")
    yield proc.start()
    proc.stop()


@pytest.fixture
def client(e2e_redis: RedisServer, e2e_namespace: str) -> Client:
    return Client.from_url(e2e_redis.url, e2e_namespace, secret=SECRET.encode())


def job() -> str:
    return f"cron:digest-{uuid.uuid4().hex[:6]}"


def letter_for(client: Client, run: Run | tuple[str, str], callback_id: str,
               timeout: float = 30.0) -> DeadLetter:
    """Wait for a callback's verdict to be a quarantine; return its dead letter."""
    session_key, run_id = (run.session_key, run.run_id) if isinstance(run, Run) else run
    memo = client.keys.callback(session_key, run_id, callback_id)
    wait_until(lambda: client.redis.hget(memo, "d") is not None, timeout,
               message=f"a verdict for callback {callback_id}")
    assert client.redis.hget(memo, "d") == b"0", "expected a quarantine, got a delivery"
    return client.dead_letters.get(client.redis.hget(memo, "entry").decode())


def assert_clean_inbox(run: Run, prompt: str, own_callbacks: set[str]) -> None:
    entries = run.inbox.entries()
    first = entries[0]
    assert (first.seq, first.role, first.kind, first.payload) == (1, "user", "prompt", prompt)
    assert all(e.role == "tool" for e in entries[1:])
    assert {e.callback_id for e in entries[1:]} <= own_callbacks


def five_failed_runs_then_a_live_one(client: Client) -> None:
    """OpenClaw #86490 on whatever the client and worker run on: five runs of one job fail
    with their image in flight, each image is a dead letter of its own run; a run that lives
    gets its own image, and only its own."""
    key = job()
    previous: tuple[Run, str] | None = None
    for attempt in range(5):
        prompt = f"Draw today's header #{attempt}"
        run = client.start_run(key, prompt=prompt, ttl=30)
        if previous:  # the last run's image was still in flight when it failed
            letter = letter_for(client, previous[0], previous[1])
            assert letter.reason in ("run_released", "superseded")
            assert letter.run_id == previous[0].run_id
        cb = run.submit("image_generate", prompt=prompt, size="256x256")
        assert_clean_inbox(run, prompt, {cb})
        run.release("failed")
        previous = (run, cb)
    assert previous is not None
    letter = letter_for(client, previous[0], previous[1])
    assert letter.reason == "run_released"

    final = client.start_run(key, prompt="the live one", ttl=30)
    cb = final.submit("image_generate", prompt="the live one", size="256x256")
    got = final.inbox.wait_for([cb], timeout=30)
    assert got[cb].kind == "result" and got[cb].artifacts
    assert_clean_inbox(final, "the live one", {cb})


def test_86490_released_runs_five_of_five_clean(worker: WorkerProcess, client: Client) -> None:
    five_failed_runs_then_a_live_one(client)


RUNTIME_SCRIPT = textwrap.dedent("""
    import sys, threading
    from leasegate.broker import Client
    url, ns, secret, key, prompt, queue = sys.argv[1:7]
    client = Client.from_url(url, ns, secret=secret.encode(),
                             tasks={"image_generate": ("leasegate.image_generate", queue)})
    run = client.start_run(key, prompt=prompt, ttl=0.8)
    cb = run.submit("image_generate", prompt=prompt, size="256x256")
    print(run.run_id, cb, flush=True)
    while True:
        threading.Event().wait(0.2)
        run.renew()
""")


def test_86490_killed_runtime_five_runs_in_a_row(e2e_redis: RedisServer, e2e_namespace: str,
                                                 tmp_path: Path, client: Client) -> None:
    """Each run's process is SIGKILLed while its image is generated; its lease expires, the
    late image is quarantined, and the next run starts with its own prompt."""
    proc = WorkerProcess(e2e_redis.url, e2e_namespace, tmp_path, name="slow",
                         queues="media-slow", LEASEGATE_GENERATOR_LATENCY="2.5")
    proc.start()
    key = job()
    runtimes: list[subprocess.Popen[str]] = []
    try:
        orphans: list[tuple[str, str]] = []
        for attempt in range(5):
            prompt = f"nightly cover #{attempt}"
            runtime = subprocess.Popen(
                [sys.executable, "-c", RUNTIME_SCRIPT, e2e_redis.url, e2e_namespace, SECRET,
                 key, prompt, "media-slow"], stdout=subprocess.PIPE, text=True)
            runtimes.append(runtime)
            assert runtime.stdout is not None
            run_id, cb = runtime.stdout.readline().split()
            proc.wait_log(f"callback {cb} (attempt 1", timeout=30)
            runtime.send_signal(signal.SIGKILL)  # the run dies mid-generation
            runtime.wait()
            run = client.attach(key, run_id)
            assert_clean_inbox(run, prompt, set())
            orphans.append((run_id, cb))
        for run_id, cb in orphans:
            letter = letter_for(client, (key, run_id), cb)
            assert letter.reason in ("lease_expired", "superseded")
            assert letter.run_id == run_id
        # the sixth run lives: entry 1 is its prompt, then its own image
        client.tasks["image_generate"] = ("leasegate.image_generate", "media-slow")
        live = client.start_run(key, prompt="the survivor", ttl=30)
        own = live.submit("image_generate", prompt="the survivor", size="256x256")
        assert live.inbox.wait_for([own], timeout=30)[own].kind == "result"
        assert_clean_inbox(live, "the survivor", {own})
    finally:
        for runtime in runtimes:
            runtime.kill()
            runtime.wait()
            if runtime.stdout:
                runtime.stdout.close()
        proc.stop()


def test_88001_parked_run_gets_its_callback_and_continues(worker: WorkerProcess,
                                                          client: Client) -> None:
    run = client.start_run(job(), prompt="make a poster", ttl=5)
    cb = run.submit("image_generate", prompt="poster", size="256x256")
    run.park(until=60)
    assert run.wait_resume(timeout=30) == cb
    [entry] = [e for e in run.inbox.entries() if e.callback_id == cb]
    assert entry.kind == "result" and entry.artifacts
    # the workflow continues past the image step
    run.renew()
    assert run.status().state is RunState.LIVE
    second = run.submit("image_generate", prompt="poster, variant", size="256x256")
    assert run.inbox.wait_for([second], timeout=30)[second].kind == "result"
    report = run.release("completed")
    assert report.state is RunState.RELEASED and report.pending == {}
    assert [e.seq for e in run.inbox.entries()] == [1, 2, 3]


def test_92120_resume_signal_fires_exactly_once(worker: WorkerProcess, client: Client) -> None:
    run = client.start_run(job(), prompt="wait for it", ttl=5)
    cb = run.submit("image_generate", prompt="the picture", size="256x256")
    run.park(until=60)
    assert run.wait_resume(timeout=30) == cb
    assert run.wait_resume(timeout=0.5) is None
    status = run.status()
    assert status.state is RunState.PARKED  # nothing aborted it
    assert run.pending() == {}
    assert [(e.role, e.callback_id) for e in run.inbox.entries()] == [("user", None),
                                                                       ("tool", cb)]


def test_worker_child_killed_mid_generation_one_entry(e2e_redis: RedisServer,
                                                      e2e_namespace: str, tmp_path: Path,
                                                      client: Client) -> None:
    proc = WorkerProcess(e2e_redis.url, e2e_namespace, tmp_path, name="victim",
                         queues="media-victim", LEASEGATE_GENERATOR_LATENCY="2")
    proc.start()
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-victim")
    try:
        run = client.start_run(job(), prompt="survive a crash", ttl=60)
        cb = run.submit("image_generate", prompt="crash test", size="256x256")
        proc.wait_log(f"callback {cb} (attempt 1")
        [child] = proc.children()
        os.kill(child, signal.SIGKILL)
        got = run.inbox.wait_for([cb], timeout=60)
        assert got[cb].kind == "result"
        assert [e.callback_id for e in run.inbox.entries()].count(cb) == 1
        log = proc.log()
        assert log.count(f"callback {cb} (attempt 1") == 2  # ran again, in a new process
        assert "WorkerLostError" in log or "signal 9" in log
        # its one verdict is the delivery: nothing of it went to the dead letters
        assert client.redis.hget(client.keys.callback(run.session_key, run.run_id, cb), "d") == b"1"
    finally:
        proc.stop()


def test_owner_dead_in_queue_means_no_generation(e2e_redis: RedisServer, e2e_namespace: str,
                                                 tmp_path: Path, client: Client) -> None:
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-late")
    run = client.start_run(job(), prompt="never mind", ttl=30)
    cb = run.submit("image_generate", prompt="expensive", size="256x256")
    report = run.release("failed")
    assert report.pending == {cb: "image_generate"}
    proc = WorkerProcess(e2e_redis.url, e2e_namespace, tmp_path, name="late",
                         queues="media-late")
    proc.start()  # only now does any worker read that queue
    try:
        letter = letter_for(client, run, cb)
        assert letter.reason == "run_released"
        assert letter.payload == {"error": "skipped", "reason": "run_released"}
        assert letter.artifacts == []
        assert f"callback {cb} (attempt" not in proc.log()  # the generator never ran
        assert not [p for p in proc.artifact_dir.rglob("*") if p.is_file()]  # no image
    finally:
        proc.stop()


def test_release_cancel_pending_revokes_queued_work(e2e_redis: RedisServer, e2e_namespace: str,
                                                    tmp_path: Path, client: Client) -> None:
    """A busy worker (one process) holds a long task; a second run's task waits in the queue.
    Releasing that run with cancel_pending revokes it: it never runs, and its callback still
    ends in the dead letters."""
    proc = WorkerProcess(e2e_redis.url, e2e_namespace, tmp_path, name="busy",
                         queues="media-busy", LEASEGATE_GENERATOR_LATENCY="3")
    proc.start()
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-busy")
    try:
        long_run = client.start_run(job(), prompt="slow one", ttl=60)
        busy = long_run.submit("image_generate", prompt="slow", size="256x256")
        proc.wait_log(f"callback {busy} (attempt 1")
        run = client.start_run(job(), prompt="changed my mind", ttl=60)
        queued = run.submit("image_generate", prompt="not needed", size="256x256")
        report = run.release("cancelled", cancel_pending=True)
        assert report.pending == {queued: "image_generate"} and report.cancelled
        letter = letter_for(client, run, queued)
        assert letter.reason == "run_released"
        assert letter.payload == {"error": "cancelled", "reason": "revoked"}
        assert f"callback {queued} (attempt" not in proc.log()
        assert long_run.inbox.wait_for([busy], timeout=30)[busy].kind == "result"
    finally:
        proc.stop()


class ImagesAPI:
    """A small OpenAI-compatible images endpoint: scripted replies, in order."""

    def __init__(self, script: list[str]) -> None:
        png = io.BytesIO()
        Image.new("RGB", (256, 256), (10, 120, 200)).save(png, format="PNG")
        ok = json.dumps({"created": 0, "data": [
            {"b64_json": base64.b64encode(png.getvalue()).decode()}]}).encode()
        self.script: list[str] = list(script)
        self.requests: list[dict[str, object]] = []
        self.release = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                api.requests.append(json.loads(body))
                step = api.script.pop(0) if api.script else "ok"
                if step == "stall":  # hold the connection until the test lets go
                    api.release.wait(10)
                    return
                status, payload = (429, b'{"error": {"message": "slow down"}}') \
                    if step == "429" else (200, ok)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_openai_backend_through_a_real_worker(e2e_redis: RedisServer, e2e_namespace: str,
                                              tmp_path: Path, client: Client) -> None:
    api = ImagesAPI(["429", "ok", "stall", "stall"])
    proc = WorkerProcess(e2e_redis.url, e2e_namespace, tmp_path, name="openai",
                         queues="media-openai", LEASEGATE_GENERATOR="openai",
                         LEASEGATE_OPENAI_BASE_URL=api.url, LEASEGATE_OPENAI_API_KEY="sk-e2e",
                         LEASEGATE_OPENAI_TIMEOUT="0.3", LEASEGATE_OPENAI_MAX_RETRIES="0",
                         LEASEGATE_OPENAI_BACKOFF="0.05", LEASEGATE_MAX_RETRIES="1")
    proc.start()
    client.tasks["image_generate"] = ("leasegate.image_generate", "media-openai")
    try:
        run = client.start_run(job(), prompt="use the provider", ttl=60)
        first = run.submit("image_generate", prompt="a blue square", size="256x256")
        got = run.inbox.wait_for([first], timeout=30)[first]
        assert got.kind == "result" and len(got.artifacts) == 1
        assert got.payload["generator"] == "openai"
        # 429 then success: the provider saw the same request twice
        assert [r["prompt"] for r in api.requests] == ["a blue square"] * 2

        second = run.submit("image_generate", prompt="never answered", size="256x256")
        err = run.inbox.wait_for([second], timeout=30)[second]
        assert err.kind == "error" and err.payload["error"] == "transient"
        assert err.payload["retries"] == 1  # one Celery retry under the same callback id
        assert [r["prompt"] for r in api.requests[2:]] == ["never answered"] * 2
        assert [e.callback_id for e in run.inbox.entries()].count(second) == 1
    finally:
        proc.stop()
        api.close()
