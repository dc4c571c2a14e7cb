"""The OpenAI-compatible backend against a real local HTTP server with scripted replies."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from leasegate.workers.images.backends import (
    BadRequest,
    Cancelled,
    CancelToken,
    GeneratorError,
    ImageRequest,
    TransientError,
)
from leasegate.workers.images.openai import OpenAIImagesGenerator

KEY = "sk-test-0123456789abcdef"
ENV_VARS = ("LEASEGATE_OPENAI_BASE_URL", "LEASEGATE_OPENAI_API_KEY", "OPENAI_API_KEY",
            "LEASEGATE_OPENAI_MODEL", "LEASEGATE_OPENAI_TIMEOUT", "LEASEGATE_OPENAI_MAX_RETRIES",
            "LEASEGATE_OPENAI_BACKOFF")


def image_bytes(size: tuple[int, int] = (256, 256), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


PNG = image_bytes()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[BaseHTTPRequestHandler], None]


def reply(status: int, payload: object = b"", headers: dict[str, str] | None = None) -> Responder:
    """A scripted answer: bytes as they are, anything else as JSON."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def images(*items: dict[str, str]) -> Responder:
    return reply(200, {"created": 1700000000, "data": list(items)})


def b64(data: bytes = PNG) -> dict[str, str]:
    return {"b64_json": base64.b64encode(data).decode()}


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 that answers each request with the next responder."""

    def __init__(self) -> None:
        self.script: list[Responder] = []
        self.seen: list[Seen] = []
        self.arrived = threading.Event()  # set on every request
        self.release = threading.Event()  # lets handlers that block() go
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                with server._lock:
                    server.seen.append(Seen(self.command, self.path, dict(self.headers.items()),
                                            self.rfile.read(length)))
                    respond = server.script.pop(0) if server.script else reply(599, b"unscripted")
                server.arrived.set()
                respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keeps test output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll makes shutdown() quick; the default 0.5 s would dominate the run time.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)

    def block(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer nothing until the test releases it (the client has given up by then)."""
        self.release.wait(10)
        with contextlib.suppress(OSError):  # the client has closed the connection
            reply(500, b"too late")(handler)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(5)


def make(server: Server, **options: Any) -> OpenAIImagesGenerator:
    settings: dict[str, Any] = {"base_url": f"{server.url}/v1", "api_key": KEY,
                                "timeout": 5.0, "max_retries": 3, "backoff": 0.01}
    settings.update(options)
    return OpenAIImagesGenerator(**settings)


def run(generator: OpenAIImagesGenerator, token: CancelToken | None = None,
        **request: Any) -> list[Any]:
    fields: dict[str, Any] = {"prompt": "a red fox", "size": "256x256"}
    fields.update(request)
    return list(generator.generate(ImageRequest.parse(**fields), token or CancelToken()))


# -- success ---------------------------------------------------------------------------------

def test_success_sends_the_openai_request(server: Server) -> None:
    server.script.append(images(b64()))
    [image] = run(make(server))
    assert (image.data, image.width, image.height) == (PNG, 256, 256)
    assert (image.media_type, image.seed) == ("image/png", None)
    [seen] = server.seen
    assert (seen.method, seen.path) == ("POST", "/v1/images/generations")
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.headers["Content-Type"] == "application/json"
    # gpt-image models reject response_format; seed is sent only when given.
    assert seen.json() == {"model": "gpt-image-1", "prompt": "a red fox", "n": 1,
                           "size": "256x256"}


def test_other_models_ask_for_b64_and_get_the_seed(server: Server) -> None:
    server.script.append(images(b64(), b64(image_bytes((512, 512)))))
    found = run(make(server, model="dall-e-2"), n=2, seed=7, size="512x512")
    assert [(i.width, i.seed) for i in found] == [(256, None), (512, None)]  # reports the truth
    assert server.seen[0].json() == {"model": "dall-e-2", "prompt": "a red fox", "n": 2,
                                     "size": "512x512", "response_format": "b64_json",
                                     "seed": 7}


def test_single_image_keeps_the_requested_seed(server: Server) -> None:
    server.script.append(images(b64()))
    [image] = run(make(server), seed=42)
    assert image.seed == 42
    assert server.seen[0].json()["seed"] == 42


def test_url_items_are_fetched_without_the_key(server: Server) -> None:
    server.script += [images({"url": f"{server.url}/files/a.png?sig=secret"}),
                      reply(200, PNG)]
    [image] = run(make(server))
    assert image.data == PNG
    fetch = server.seen[1]
    assert (fetch.method, fetch.path) == ("GET", "/files/a.png?sig=secret")
    assert "Authorization" not in fetch.headers


def test_non_png_is_converted_and_measured(server: Server) -> None:
    server.script.append(images(b64(image_bytes((300, 200), "JPEG"))))
    [image] = run(make(server))
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (image.width, image.height) == (300, 200)
    with Image.open(io.BytesIO(image.data)) as opened:
        assert (opened.format, opened.size) == ("PNG", (300, 200))


# -- retries -----------------------------------------------------------------------------------

def test_429_with_retry_after_then_success(server: Server) -> None:
    server.script += [reply(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                            {"Retry-After": "0"}),
                      images(b64())]
    began = time.monotonic()
    [image] = run(make(server, backoff=30.0))  # Retry-After wins over the 30 s backoff
    assert image.data == PNG
    assert len(server.seen) == 2
    assert time.monotonic() - began < 5


def test_5xx_until_retries_run_out(server: Server) -> None:
    server.script += [reply(500, {"error": {"message": "boom"}})] * 3
    with pytest.raises(TransientError, match=r"after 3 attempts.*HTTP 500: boom") as caught:
        run(make(server, max_retries=2, backoff=0.01))
    assert len(server.seen) == 3
    assert caught.value.retry_after == pytest.approx(0.04)  # the next backoff step


def test_timeout_is_transient(server: Server) -> None:
    server.script += [server.block, server.block]
    began = time.monotonic()
    try:
        with pytest.raises(TransientError, match=r"after 2 attempts.*timed out"):
            run(make(server, timeout=0.3, max_retries=1, backoff=0.0))
    finally:
        server.release.set()
    assert len(server.seen) == 2
    assert 0.6 <= time.monotonic() - began < 5


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    generator = OpenAIImagesGenerator(f"http://127.0.0.1:{port}/v1", KEY, max_retries=1,
                                      backoff=0.0, timeout=2.0)
    with pytest.raises(TransientError, match="after 2 attempts"):
        generator.generate(ImageRequest("a red fox", "256x256"), CancelToken())


# -- errors that are not retried -------------------------------------------------------------

def test_400_is_a_bad_request_with_the_server_message(server: Server) -> None:
    server.script.append(reply(400, {"error": {
        "message": "Invalid size '256x256' for gpt-image-1.", "type": "invalid_request_error",
        "param": "size", "code": "invalid_value"}}))
    with pytest.raises(BadRequest, match=r"HTTP 400.*Invalid size '256x256'") as caught:
        run(make(server))
    assert caught.value.field == "size"
    assert len(server.seen) == 1


def test_401_is_permanent_and_redacts_the_key(server: Server) -> None:
    server.script.append(reply(401, {"error": {
        "message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error",
        "code": "invalid_api_key"}}))
    with pytest.raises(GeneratorError, match=r"HTTP 401.*Incorrect API key") as caught:
        run(make(server))
    assert not isinstance(caught.value, BadRequest | TransientError)
    assert KEY not in str(caught.value)
    assert "[redacted]" in str(caught.value)
    assert KEY not in repr(make(server))
    assert len(server.seen) == 1


def test_redirect_does_not_carry_the_key(server: Server) -> None:
    server.script += [reply(302, b"", {"Location": f"{server.url}/elsewhere"}),
                      reply(404, b"no such thing")]
    with pytest.raises(GeneratorError, match=r"failed \(HTTP 404\): no such thing"):
        run(make(server))
    assert server.seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert server.seen[1].path == "/elsewhere"
    assert "Authorization" not in server.seen[1].headers


@pytest.mark.parametrize(("answer", "message"), [
    (reply(200, b"<html>oops</html>"), "not JSON"),
    (reply(200, {"data": []}), "no non-empty data"),
    (reply(200, {"result": "ok"}), "no non-empty data"),
    (reply(200, {"data": ["abc"]}), r"data\[0\] is str"),
    (images({"revised_prompt": "x"}), r"data\[0\] has neither"),
    (images({"url": "file:///etc/passwd"}), r"data\[0\] has neither"),
    (images({"b64_json": "not base64!"}), "not valid base64"),
    (images(b64(b"just some bytes")), "not a readable image"),
    (images(b64(PNG[:200])), "not a readable image"),
], ids=["html", "empty-data", "no-data", "str-item", "no-image", "file-url", "bad-base64",
        "not-an-image", "truncated-png"])
def test_malformed_answers(server: Server, answer: Responder, message: str) -> None:
    server.script.append(answer)
    with pytest.raises(GeneratorError, match=message) as caught:
        run(make(server))
    assert not isinstance(caught.value, TransientError)


# -- cancellation ---------------------------------------------------------------------------

def cancel_on_first_request(server: Server, token: CancelToken) -> threading.Thread:
    def canceller() -> None:
        if server.arrived.wait(10):
            token.cancel("owner gone")

    thread = threading.Thread(target=canceller)
    thread.start()
    return thread


def test_cancel_during_backoff_wait(server: Server) -> None:
    server.script += [reply(503, {"error": {"message": "busy"}}, {"Retry-After": "30"})] * 2
    token = CancelToken()
    thread = cancel_on_first_request(server, token)
    began = time.monotonic()
    try:
        with pytest.raises(Cancelled, match="owner gone"):
            run(make(server), token)
    finally:
        token.cancel("test over")
        thread.join(5)
    assert time.monotonic() - began < 5  # vs a 30 s wait
    assert len(server.seen) == 1


def test_cancel_during_a_request_in_flight(server: Server) -> None:
    server.script.append(server.block)
    token = CancelToken()
    thread = cancel_on_first_request(server, token)
    began = time.monotonic()
    try:
        with pytest.raises(Cancelled, match="owner gone"):
            run(make(server, timeout=30.0), token)
    finally:
        token.cancel("test over")
        thread.join(5)
        server.release.set()
    assert time.monotonic() - began < 5  # vs the 30 s timeout


# -- configuration --------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_from_env_reads_the_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LEASEGATE_OPENAI_BASE_URL", "http://images.local:8080/v1/")
    clean_env.setenv("LEASEGATE_OPENAI_API_KEY", "sk-lease")
    clean_env.setenv("OPENAI_API_KEY", "sk-plain")
    clean_env.setenv("LEASEGATE_OPENAI_MODEL", "flux-dev")
    clean_env.setenv("LEASEGATE_OPENAI_TIMEOUT", "12.5")
    generator = OpenAIImagesGenerator.from_env(max_retries=1)
    assert (generator.base_url, generator.model, generator.timeout, generator.max_retries) == (
        "http://images.local:8080/v1", "flux-dev", 12.5, 1)
    assert "sk-lease" not in repr(generator)
    assert OpenAIImagesGenerator.from_env(model="other").model == "other"


def test_from_env_defaults_and_key_fallback(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-plain")
    generator = OpenAIImagesGenerator.from_env()
    assert (generator.base_url, generator.model, generator.timeout) == (
        "https://api.openai.com/v1", "gpt-image-1", 120.0)


def test_from_env_without_a_key_names_both_variables(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"LEASEGATE_OPENAI_API_KEY.*OPENAI_API_KEY"):
        OpenAIImagesGenerator.from_env()
    assert OpenAIImagesGenerator.from_env(api_key="sk-given").name == "openai"


def test_from_env_rejects_a_bad_timeout(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-plain")
    clean_env.setenv("LEASEGATE_OPENAI_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LEASEGATE_OPENAI_TIMEOUT"):
        OpenAIImagesGenerator.from_env()


@pytest.mark.parametrize(("options", "name"), [
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"api_key": " "}, "api_key"),
    ({"model": ""}, "model"),
    ({"timeout": 0}, "timeout"),
    ({"max_retries": -1}, "max_retries"),
    ({"backoff": float("nan")}, "backoff"),
])
def test_options_are_checked(options: dict[str, Any], name: str) -> None:
    settings: dict[str, Any] = {"base_url": "http://127.0.0.1:9/v1", "api_key": KEY}
    settings.update(options)
    with pytest.raises(ValueError, match=name):
        OpenAIImagesGenerator(**settings)
